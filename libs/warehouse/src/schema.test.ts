import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tableNames } from './schema.ts';

test('table names come from the database and a validated prefix only', () => {
  const t = tableNames('tollgate', 't1_');
  assert.equal(t.usage, '`tollgate`.`t1_usage_events`');
  assert.equal(t.keys, '`tollgate`.`t1_api_keys`');
  for (const bad of ['A', 'x-', 'x`', 'x.y', "x'", ' ']) {
    assert.throws(() => tableNames('tollgate', bad), TypeError, bad);
  }
  for (const bad of ['', '1db', 'a-b', 'a`b', 'a.b']) {
    assert.throws(() => tableNames(bad, ''), TypeError, bad);
  }
});
