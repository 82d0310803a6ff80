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

  test('a query\'s own settings stay with it: after storeEvents (a dedup token) and its existence check (no key index for IN sets), the session holds neither', async () => {
    // Kind: a per-query setting leaking into the session. chDB's connection applies
    // `clickhouse_settings` as `SET` on its one session: the usage block's dedup token stayed set
    // for every later insert of the process, and the check's index switch for every later
    // IN (the billing pass read every granule). They are SETTINGS clauses of their statements now.
    const client = createChdbClickHouse({ path: dir });
    const w = new Warehouse({ client, tablePrefix: `s${Date.now() % 100000}_` });
    try {
      await w.migrate();
      const event = {
        type: 'usage' as const, event_id: 'leak-1', ts: Date.UTC(2026, 10, 3), account_id: 'acc_a', key_id: 'k', model: 'm', catalog_model: 'm',
        upstream_model: 'm', input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0,
        cost_micros: '7', status: 'ok' as const, http_status: 200, latency_ms: 1, ttft_ms: null, stream: false, upstream_request_id: null, gateway_id: 'g',
      };
      assert.deepEqual(await w.storeEvents([{ event, topic: 'usage', position: { partition: 0, offset: 0n } }], 'warehouse'), []);
      const rs = await client.query({
        query: "SELECT name, value FROM system.settings WHERE name IN ('insert_deduplication_token', 'use_index_for_in_with_subqueries', 'deduplicate_blocks_in_dependent_materialized_views') ORDER BY name",
        format: 'JSONEachRow',
      });
      assert.deepEqual(await rs.json(), [
        { name: 'deduplicate_blocks_in_dependent_materialized_views', value: '1' }, // the engine's default too
        { name: 'insert_deduplication_token', value: '' },
        { name: 'use_index_for_in_with_subqueries', value: '1' },
      ]);
      assert.equal((await w.usageTotals({})).costMicros, 7n);
    } finally {
      await w.close();
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
