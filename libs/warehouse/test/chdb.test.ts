// The warehouse contract over chDB (in process), plus what this transport allows and refuses.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Warehouse, createChdbClickHouse } from '@tollgate/warehouse';
import { warehouseContract } from './warehouse.contract.ts';

// chDB binds one data directory per process, so every warehouse in this file shares one path
// and is isolated by its table prefix.
const dir = mkdtempSync(join(tmpdir(), 'tollgate-warehouse-'));
after(() => rmSync(dir, { recursive: true, force: true }));

warehouseContract('chdb', (tablePrefix) =>
  new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix }));

describe('chDB transport', () => {
  test('per-query clickhouse_settings are honoured (64-bit integers come back quoted)', async () => {
    const client = createChdbClickHouse({ path: dir });
    try {
      const plain = await client.query({ query: 'SELECT toInt64(9007199254740993) AS n', format: 'JSONEachRow' });
      // Without the setting the text has the right digits but JSON.parse rounds them.
      assert.equal(await plain.text(), '{"n":9007199254740993}\n');
      const quoted = await client.query({
        query: 'SELECT toInt64(9007199254740993) AS n',
        format: 'JSONEachRow',
        clickhouse_settings: { output_format_json_quote_64bit_integers: 1 },
      });
      assert.deepEqual(await quoted.json(), [{ n: '9007199254740993' }]);
    } finally {
      await client.close();
    }
  });

  test('two clients on the same path coexist; closing one leaves the other working', async () => {
    const a = createChdbClickHouse({ path: dir });
    const b = createChdbClickHouse({ path: dir });
    await a.close();
    const rs = await b.query({ query: 'SELECT 1 AS one', format: 'JSONEachRow' });
    assert.deepEqual(await rs.json(), [{ one: 1 }]);
    await b.close();
  });

  test('a second path is refused while one is open, and accepted once it is closed', async () => {
    const other = mkdtempSync(join(tmpdir(), 'tollgate-warehouse-other-'));
    try {
      const a = createChdbClickHouse({ path: dir });
      assert.throws(() => createChdbClickHouse({ path: other }), /only one active data directory per process/);
      await a.close();
      const b = createChdbClickHouse({ path: other });
      const rs = await b.query({ query: 'SELECT 1 AS one', format: 'JSONEachRow' });
      assert.deepEqual(await rs.json(), [{ one: 1 }]);
      await b.close();
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  test(':memory: is refused: a billing store must persist', () => {
    assert.throws(() => createChdbClickHouse({ path: ':memory:' }), TypeError);
  });
});
