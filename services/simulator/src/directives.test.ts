import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDirectives, stripDirectives } from './directives.ts';

test('text directives merge over headers, later text over earlier', () => {
  const d = parseDirectives('a [[sim output=3 fault=drop_after:2]] b [[sim output=9]]', {
    'x-sim-output': '1',
    'x-sim-cache-write-1h': '40',
    'x-sim-tps': '12.5',
    'x-api-key': 'ignored',
  });
  assert.deepEqual(d, { output: 9, cache_write_1h: 40, tps: 12.5, fault: { kind: 'drop_after', after: 2 } });
});

test('each fault form parses; bad values are rejected with a 400', () => {
  assert.deepEqual(parseDirectives('[[sim fault=overloaded]]', {}).fault, { kind: 'overloaded' });
  assert.deepEqual(parseDirectives('[[sim fault=drop]]', {}).fault, { kind: 'drop' });
  assert.deepEqual(parseDirectives('[[sim fault=sse_error_after:0]]', {}).fault, { kind: 'sse_error_after', after: 0 });
  for (const bad of ['[[sim fault=drop_after]]', '[[sim input=1.5]]', '[[sim tps=-1]]', '[[sim status=302]]', '[[sim nope=1]]', '[[sim output]]']) {
    assert.throws(() => parseDirectives(bad, {}), (err: unknown) => (err as { status?: number }).status === 400, bad);
  }
});

test('text without a directive yields none, and stripping removes only directives', () => {
  assert.deepEqual(parseDirectives('[[not sim]] [sim output=1]', {}), {});
  assert.equal(stripDirectives('hi [[sim output=1]] there'), 'hi   there');
});
