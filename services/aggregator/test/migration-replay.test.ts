// Migration 4 (usage event v2) on a warehouse that already holds version 1 usage: the rows
// written by the pre-issue-7 schema and writer keep every total to the micro-credit once the
// columns are added, read back as the version 1 events they were, and replaying the same v1 log
// through the warehouse sink (a consumer group reset, a Kafka redelivery) changes nothing; v2
// events then add exactly their own amounts. Real chDB, the real sink on the in-process log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MemoryLog, type LedgerEvent, type UsageEventV1 } from '@tollgate/events';
import { bundledCatalogPath, costMicros, loadCatalogFile, resolveModel } from '@tollgate/pricing';
import { createChdbClickHouse, migrations, tableNames, Warehouse } from '@tollgate/warehouse';
import { startWarehouseSink } from '@tollgate/aggregator';
import { haikuV1, usGeo, v1, webSearch } from '../../../libs/warehouse/test/usage-fixtures.ts';
import { sums } from '../../../libs/warehouse/test/warehouse.contract.ts';

const catalog = loadCatalogFile(bundledCatalogPath('cny'));
const MODELS = ['claude-haiku-4-5', 'claude-sonnet-4-5', 'claude-sonnet-4-6', 'claude-opus-4-6'];
const T0 = Date.UTC(2026, 9, 1);

/**
 * A version 1 log as the pre-issue-7 gateway wrote it: every token class, the legacy price
 * (⌈Σ tokens × price / 1e6⌉ at the catalog model's five prices), a usage anomaly now and then,
 * an upstream error at 0. Deterministic, so the sums below are fixed.
 */
function v1Log(n: number): UsageEventV1[] {
  return Array.from({ length: n }, (_, i) => {
    const m = resolveModel(catalog, MODELS[i % MODELS.length]!)!.model;
    const usage = { input: 100 + i * 37, output: 20 + i * 11, cacheRead: i % 3 === 0 ? 5000 + i : 0, cacheWrite5m: i % 4 === 1 ? 300 + i : 0, cacheWrite1h: i % 5 === 2 ? 700 + i : 0 };
    const failed = i % 17 === 16;
    return v1({
      event_id: `req_v1_${i}`, ts: T0 + i * 3_600_000, account_id: `acc_${i % 3}`, key_id: `key_${i % 3}`,
      model: MODELS[i % MODELS.length]!, catalog_model: m.id, upstream_model: m.upstreamModel,
      input_tokens: failed ? 0 : usage.input, output_tokens: failed ? 0 : usage.output, cache_read_tokens: failed ? 0 : usage.cacheRead,
      cache_write_5m_tokens: failed ? 0 : usage.cacheWrite5m, cache_write_1h_tokens: failed ? 0 : usage.cacheWrite1h,
      cost_micros: failed ? '0' : costMicros(usage, m.prices).toString(),
      status: failed ? 'upstream_error' : i % 7 === 3 ? 'usage_anomaly' : 'ok', http_status: failed ? 529 : 200,
      ...(i % 7 === 3 ? { anomalies: ['cache_breakdown_mismatch'] } : {}),
    });
  });
}

/** The row the pre-issue-7 `insertUsage` wrote (schema of migration 3), field by field. */
function oldRow(e: UsageEventV1): Record<string, unknown> {
  return {
    log_partition: -1, log_offset: '-1', event_id: e.event_id, ts: new Date(e.ts).toISOString().replace('T', ' ').replace('Z', ''),
    account_id: e.account_id, key_id: e.key_id, model: e.model, catalog_model: e.catalog_model, upstream_model: e.upstream_model,
    input_tokens: e.input_tokens, output_tokens: e.output_tokens, cache_read_tokens: e.cache_read_tokens,
    cache_write_5m_tokens: e.cache_write_5m_tokens, cache_write_1h_tokens: e.cache_write_1h_tokens, cost_micros: e.cost_micros,
    status: e.status, http_status: e.http_status, latency_ms: e.latency_ms, ttft_ms: e.ttft_ms, stream: e.stream,
    upstream_request_id: e.upstream_request_id, gateway_id: e.gateway_id, anomalies: e.anomalies ?? [],
  };
}

test('migration 4 over a version 1 warehouse: v1 totals kept to the µc, the v1 log replayed through the sink changes nothing, v2 adds exactly', async () => {
  const client = createChdbClickHouse({ path: mkdtempSync(join(tmpdir(), 'tollgate-migrate-')) });
  const prefix = `m${randomBytes(3).toString('hex')}_`;
  const t = tableNames('tollgate', prefix);
  // The warehouse as it stood before issue 7, filled by the old writer.
  for (const query of migrations(t, 3)) await client.command({ query });
  const log1 = v1Log(120);
  await client.insert({ table: t.usage, values: log1.map(oldRow), format: 'JSONEachRow' });
  const grants: LedgerEvent[] = [0, 1, 2].map((a) => ({
    type: 'ledger', event_id: `credit:acc_${a}:start`, ts: T0 - 1, account_id: `acc_${a}`, kind: 'grant', amount_micros: '1000000000', reference: 'start',
  }));
  await client.insert({
    table: t.ledger, format: 'JSONEachRow',
    values: grants.map((g) => ({ event_id: g.event_id, ts: '2026-09-30 23:59:59.999', account_id: g.account_id, kind: g.kind, amount_micros: g.amount_micros, reference: g.reference })),
  });

  // What the old schema itself says, read with plain SQL before the migration.
  const raw = await (await client.query({
    query: `SELECT count() AS n, toString(sum(toInt128(cost_micros))) AS cost, sum(input_tokens) AS i, sum(output_tokens) AS o,
            sum(cache_read_tokens) AS cr, sum(cache_write_5m_tokens) AS w5, sum(cache_write_1h_tokens) AS w1 FROM ${t.usage} FINAL`,
    format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 1 },
  })).json<Record<string, string>>();
  const before = raw[0]!;
  // The same sums computed from the log itself.
  const sum = (f: (e: UsageEventV1) => number) => log1.reduce((s, e) => s + f(e), 0);
  const cost = log1.reduce((s, e) => s + BigInt(e.cost_micros), 0n);
  const expected = sums(120, {
    input: sum((e) => e.input_tokens), output: sum((e) => e.output_tokens), cache_read: sum((e) => e.cache_read_tokens),
    cache_write_5m: sum((e) => e.cache_write_5m_tokens), cache_write_1h: sum((e) => e.cache_write_1h_tokens),
  }, cost, { upstreamCostUnknown: log1.filter((e) => e.cost_micros !== '0').length });
  assert.deepEqual(
    [Number(before['n']), BigInt(before['cost']!), Number(before['i']), Number(before['o']), Number(before['cr']), Number(before['w5']), Number(before['w1'])],
    [120, cost, expected.quantities.input, expected.quantities.output, expected.quantities.cache_read, expected.quantities.cache_write_5m, expected.quantities.cache_write_1h],
  );

  const w = new Warehouse({ client, tablePrefix: prefix });
  await w.migrate();
  await w.migrate(); // every start runs it again
  assert.deepEqual(await w.usageTotals({}), expected);
  const balancesBefore = await w.balances();
  for (const a of [0, 1, 2]) {
    const spent = log1.filter((e) => e.account_id === `acc_${a}`).reduce((s, e) => s + BigInt(e.cost_micros), 0n);
    assert.equal(balancesBefore.get(`acc_${a}`), 1_000_000_000n - spent);
  }
  for (const e of [log1[0]!, log1[3]!, log1[16]!]) assert.deepEqual(await w.getUsageEvent(e.event_id), e);

  // Replay the whole v1 log through the real warehouse sink: nothing moves.
  const log = new MemoryLog();
  await startWarehouseSink({ log, warehouse: w, flushMs: 5 });
  for (const e of log1) await log.publish('usage', [{ event: e }]);
  await log.drain();
  assert.deepEqual(await w.usageTotals({}), expected);
  assert.deepEqual(await w.balances(), balancesBefore);
  assert.deepEqual(await w.quarantined(), []);

  // Version 2 events after the upgrade: 972,000 + 396,000 µc and 40,500 + 6,600 µ$; one v1 haiku 3,882 µc.
  const pv = catalog.contentId;
  for (const e of [webSearch('req_v2_a', T0 + 1, 'acc_0', pv), usGeo('req_v2_b', T0 + 2, 'acc_1', pv), haikuV1('req_v1_late', T0 + 3, 'acc_2')]) {
    await log.publish('usage', [{ event: e }]);
  }
  await log.drain();
  const q = expected.quantities;
  assert.deepEqual(await w.usageTotals({}), sums(123, {
    ...q, input: q.input + 2000 + 1000 + 10, output: q.output + 300 + 200 + 5, cache_read: q.cache_read + 1000,
    cache_write_5m: q.cache_write_5m + 7, cache_write_1h: q.cache_write_1h + 9, web_search_requests: 3,
  }, cost + 972_000n + 396_000n + 3_882n, { upstreamCost: { USD: 47_100n }, upstreamCostUnknown: expected.upstreamCostUnknown + 1 }));
  assert.equal((await w.balances()).get('acc_0'), balancesBefore.get('acc_0')! - 972_000n);
  assert.deepEqual(await w.duplicateUsageIds().then((ids) => ids.filter((id) => id.startsWith('req_v2'))), []);
  await log.close();
  await w.close();
});
