// Version 2 usage rows beside version 1 rows in one warehouse (chDB): exact sums per dimension,
// cost and upstream cost per currency, both versions read back in their own shape, paging,
// and stored price versions.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PriceBook, bundledCatalogPath, loadCatalogFile } from '@tollgate/pricing';
import { Warehouse, createChdbClickHouse } from '@tollgate/warehouse';
import { haikuV1, q, usGeo, v2, vipBatch, webSearch } from './usage-fixtures.ts';
import { sums } from './warehouse.contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-warehouse-v2-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function fresh(): Promise<Warehouse> {
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: `v2${randomBytes(3).toString('hex')}_` });
  await w.migrate();
  return w;
}

const T = Date.UTC(2026, 10, 3, 10);
const PV = '9f8027b1475e';
const EVENTS = [
  webSearch('u1', T, 'acc_a', PV), // 972,000 µc, 40,500 µ$
  usGeo('u2', T + 1, 'acc_a', PV), // 396,000 µc, 6,600 µ$
  vipBatch('u3', T + 2, 'acc_b', PV), // 43,200 µc, 2,250 µ$, code execution unpriced
  haikuV1('u4', T + 3, 'acc_b'), // 3,882 µc, version 1: upstream cost unknown
];

test('v2 and v1 rows side by side: exact sums per dimension, cost and upstream cost, inserted twice', async () => {
  const w = await fresh();
  try {
    await w.insertUsage(EVENTS);
    await w.insertUsage(EVENTS); // redelivered: counted once
    // input 2,000 + 1,000 + 1,000 + 10; output 300 + 200 + 100 + 5; cost 972,000 + 396,000 + 43,200 + 3,882
    assert.deepEqual(await w.usageTotals({}), sums(4, {
      input: 4010, output: 605, cache_read: 1000, cache_write_5m: 7, cache_write_1h: 9,
      web_search_requests: 3, code_execution_seconds: 30,
    }, 1_415_082n, { upstreamCost: { USD: 49_350n }, upstreamCostUnknown: 1, unpricedRequests: 1 }));
    assert.deepEqual(await w.usageTotals({ accountId: 'acc_a' }), sums(2, { input: 3000, output: 500, web_search_requests: 3 }, 1_368_000n,
      { upstreamCost: { USD: 47_100n }, upstreamCostUnknown: 0 }));
    assert.deepEqual(await w.usageBreakdown({ groupBy: 'price_list' }), [
      { group: 'default', ...sums(3, { input: 3010, output: 505, cache_read: 1000, cache_write_5m: 7, cache_write_1h: 9, web_search_requests: 3 }, 1_371_882n,
        { upstreamCost: { USD: 47_100n }, upstreamCostUnknown: 1 }) },
      { group: 'vip', ...sums(1, { input: 1000, output: 100, code_execution_seconds: 30 }, 43_200n,
        { upstreamCost: { USD: 2250n }, upstreamCostUnknown: 0, unpricedRequests: 1 }) },
    ]);
    assert.deepEqual((await w.usageBreakdown({ groupBy: 'served_model' })).map((g) => [g.group, g.requests, g.costMicros]), [
      ['', 1, 3882n], ['claude-sonnet-4-5-20250929', 2, 1_015_200n], ['claude-sonnet-4-6', 1, 396_000n],
    ]);
    assert.deepEqual((await w.usageBreakdown({ groupBy: 'price_version' })).map((g) => [g.group, g.requests]), [[PV, 3], ['v1', 1]]);
  } finally {
    await w.close();
  }
});

test('each row reads back in the version it was written in, every v2 field exact', async () => {
  const w = await fresh();
  try {
    // A fallback: the request asked for opus-4-6, sonnet-4-6 served an iteration.
    const fallback = v2({
      event_id: 'u5', ts: T, account_id: 'acc_c', model: 'claude-opus-4-6', catalog_model: 'claude-opus-4-6', upstream_model: 'claude-opus-4-6',
      served_model: 'claude-sonnet-4-6', quantities: q({ input: 500, output: 50 }),
      iterations: [{ type: 'message', model: 'claude-sonnet-4-6', catalog_model: 'claude-sonnet-4-6', quantities: q({ input: 500, output: 50 }), cost_micros: '135000' }],
      cost_micros: '135000', upstream_cost_micros: null, upstream_currency: null, stop_reason: 'refusal', thinking_tokens: 0,
      unit_prices: { input: '180000000', output: '0.5' }, tier: 'long_context', anomalies: ['output_over_max_tokens'],
      unpriced: ['model:claude-unknown-9'], ttft_ms: null, upstream_request_id: null,
    });
    await w.insertUsage([...EVENTS, fallback]);
    for (const e of [...EVENTS, fallback]) assert.deepEqual(await w.getUsageEvent(e.event_id), e, e.event_id);
  } finally {
    await w.close();
  }
});

test('usageEvents pages in time order after a cursor, within the filter', async () => {
  const w = await fresh();
  try {
    await w.insertUsage(EVENTS);
    const first = await w.usageEvents({ from: T, to: T + 10, limit: 2 });
    assert.deepEqual(first.map((e) => e.event_id), ['u1', 'u2']);
    const last = first[1]!;
    assert.deepEqual((await w.usageEvents({ from: T, to: T + 10, limit: 2, after: { ts: last.ts, eventId: last.event_id } })).map((e) => e.event_id), ['u3', 'u4']);
    assert.deepEqual((await w.usageEvents({ accountId: 'acc_b' })).map((e) => e.event_id), ['u3', 'u4']);
    assert.deepEqual(await w.usageEvents({ to: T }), []);
    await assert.rejects(w.usageEvents({ limit: 0 }), /limit/);
  } finally {
    await w.close();
  }
});

test('price versions are stored once per id and time, and rebuild the price book exactly', async () => {
  const w = await fresh();
  try {
    const catalog = loadCatalogFile(bundledCatalogPath('cny'));
    const book = new PriceBook(catalog, Date.UTC(2026, 10, 1));
    await w.insertPriceVersions(book.toStored());
    await w.insertControl([{ type: 'price_version', event_id: `price_version:${catalog.contentId}:x`, ts: T, id: catalog.contentId, effective_at: Date.UTC(2026, 10, 1), catalog: catalog.document }]);
    const stored = await w.priceVersions();
    assert.equal(stored.length, 1);
    assert.deepEqual(stored, book.toStored());
    const again = PriceBook.fromStored(stored);
    assert.equal(again.at(T)?.id, catalog.contentId);
    assert.equal(again.at(Date.UTC(2026, 9, 31)), undefined);
  } finally {
    await w.close();
  }
});
