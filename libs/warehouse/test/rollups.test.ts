// Usage rollups (migration 7) against real chDB: each event counted once in every rollup however
// often it is delivered, rollup answers equal raw answers, and the analytics numbers exact.

import { after, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { UsageEventV2 } from '@tollgate/events';
import {
  Warehouse, createChdbClickHouse, migrations, type WarehouseOptions, rebuildRollups, repairMismatchedRollups, repairRollups, rollupMismatches, rollupSelect, rollupTable, rollupsMatchRaw, usageEventPage, usageReport, type StoreItem,
} from '@tollgate/warehouse';
import { q, v2 } from './usage-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-rollups-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function fresh(onRepair?: WarehouseOptions['onRepair']): Promise<{ w: Warehouse; prefix: string }> {
  const prefix = `r${randomBytes(3).toString('hex')}_`;
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: prefix, ...(onRepair ? { onRepair } : {}) });
  await w.migrate();
  return { w, prefix };
}

const T = (iso: string) => Date.parse(iso);

// Events either side of minute, hour, day and month boundaries (2026-01-31T23:59:59.999 →
// 2026-02-01T00:00:00.000), two accounts, three keys, two models, errors and streams.
// cost_micros are hand-picked integers; Σ = 1,000 + 2,000 + 3,000 + 4,000 + 5,000 + 9,007,199,254,740,993 (> 2^53)
// + 7 + 0 = 9,007,199,254,756,000 µc.
function events(): UsageEventV2[] {
  return [
    v2({ event_id: 'e1', ts: T('2026-01-31T23:58:59.999Z'), account_id: 'acc_a', key_id: 'k_a1', cost_micros: '1000', upstream_cost_micros: '10', quantities: q({ input: 100, output: 10, cache_read: 300 }), latency_ms: 1000, ttft_ms: 200 }),
    v2({ event_id: 'e2', ts: T('2026-01-31T23:59:00.000Z'), account_id: 'acc_a', key_id: 'k_a1', cost_micros: '2000', upstream_cost_micros: '20', quantities: q({ input: 100, output: 20 }), latency_ms: 1200, ttft_ms: 200 }),
    v2({ event_id: 'e3', ts: T('2026-01-31T23:59:59.999Z'), account_id: 'acc_a', key_id: 'k_a2', cost_micros: '3000', upstream_cost_micros: '30', quantities: q({ input: 50, output: 30, cache_write_5m: 50 }), stream: false, latency_ms: 500, ttft_ms: 500 }),
    v2({ event_id: 'e4', ts: T('2026-02-01T00:00:00.000Z'), account_id: 'acc_a', key_id: 'k_a2', catalog_model: 'claude-haiku-4-5-20251001', cost_micros: '4000', upstream_cost_micros: '40', quantities: q({ input: 10, output: 40 }), latency_ms: 2200, ttft_ms: 200 }),
    v2({ event_id: 'e5', ts: T('2026-02-01T00:59:59.999Z'), account_id: 'acc_b', key_id: 'k_b1', cost_micros: '5000', upstream_cost_micros: null, upstream_currency: null, quantities: q({ input: 5, output: 5 }), latency_ms: 300, ttft_ms: null, stream: false }),
    v2({ event_id: 'e6', ts: T('2026-02-01T01:00:00.000Z'), account_id: 'acc_b', key_id: 'k_b1', cost_micros: '9007199254740993', upstream_cost_micros: '9007199254740993', quantities: q({ input: 1, output: 1 }), latency_ms: 400, ttft_ms: 100 }),
    v2({ event_id: 'e7', ts: T('2026-02-02T00:00:00.000Z'), account_id: 'acc_b', key_id: 'k_b1', cost_micros: '7', upstream_cost_micros: '1', status: 'stream_error', quantities: q({ input: 1, output: 0 }), latency_ms: 50, ttft_ms: 50 }),
    v2({ event_id: 'e8', ts: T('2026-02-02T00:00:00.001Z'), account_id: 'acc_b', key_id: 'k_b1', cost_micros: '0', upstream_cost_micros: '0', status: 'upstream_error', http_status: 529, quantities: q(), latency_ms: 10, ttft_ms: null, stream: false }),
  ];
}
const TOTAL_COST = 9_007_199_254_756_000n;

/** Σ cost per rollup grain straight from the rollup tables (sum over all rows). */
async function rollupCosts(w: Warehouse): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [grain, table] of [['minute', w.tables.rollupMinute], ['hour', w.tables.rollupHour], ['day', w.tables.rollupDay]] as const) {
    const r = await w.select(`SELECT toString(sum(cost)) AS c, toString(sum(requests)) AS n FROM ${table}`);
    out[grain] = `${r[0]!['n']}:${r[0]!['c']}`;
  }
  return out;
}

/**
 * The other half of a cut insert, of `account`, a minute ago: two events (`<id>1` 1,000 µc and
 * `<id>2` 2,000 µc) stored, then the raw row of the second lost with its view rows kept: raw
 * 1 request / 1,000 µc, every rollup 2 / 3,000 more. Returns the minute (epoch s) and the events.
 */
async function viewRowsWithoutRaw(w: Warehouse, account: string, id: string): Promise<{ minute: number; events: UsageEventV2[] }> {
  const now = Math.floor(Date.now() / 60_000) * 60_000 - 60_000;
  const events = [
    v2({ event_id: `${id}1`, ts: now + 1_000, account_id: account, cost_micros: '1000', quantities: q({ input: 1 }) }),
    v2({ event_id: `${id}2`, ts: now + 2_000, account_id: account, cost_micros: '2000', quantities: q({ input: 1 }) }),
  ];
  await w.insertUsage(events);
  await w.command(`DELETE FROM ${w.tables.usage} WHERE event_id = {id:String}`, { id: `${id}2` });
  return { minute: now / 1000, events };
}

test('redelivered and overlapping batches: every rollup equals the raw totals', async () => {
  const { w, prefix } = await fresh();
  try {
    const all = events();
    const item = (e: UsageEventV2, offset: number): StoreItem => ({ topic: 'usage', event: e, position: { partition: 0, offset: BigInt(offset) } });
    // The same batch twice (a consumer re-reading it), then overlapping batches, a batch that
    // repeats an event inside itself, and a single event sent again at a later log offset.
    await w.insertUsage(all.slice(0, 4));
    await w.insertUsage(all.slice(0, 4));
    await w.insertUsage(all.slice(2, 6));
    await w.insertUsage([all[6]!, all[6]!, all[5]!]);
    await w.storeEvents([item(all[0]!, 40)], 'warehouse');
    // A batch split by bisect: ClickHouse refuses one event (a real CONSTRAINT), the batch is
    // re-inserted in halves, and the good events in it (e8 new, e1 and e2 again) count once.
    const raw = createChdbClickHouse({ path: dir });
    await raw.command({ query: `ALTER TABLE tollgate.${prefix}usage_events ADD CONSTRAINT no_poison CHECK model != 'claude-refused'` });
    await raw.close();
    const poison = v2({ event_id: 'poison', ts: T('2026-02-01T00:00:00.000Z'), account_id: 'acc_a', model: 'claude-refused', cost_micros: '123' });
    const quarantined = await w.storeEvents([item(all[0]!, 50), item(poison, 51), item(all[7]!, 52), item(all[1]!, 53)], 'warehouse');
    assert.deepEqual(quarantined.map((r) => [r.event_id, r.kind]), [['poison', 'rejected_by_warehouse']]);

    // Raw rows held second copies (merges may have collapsed them by now); the rollups never did.
    assert.equal((await w.usageTotals({})).costMicros, TOTAL_COST);
    const eight = `8:${TOTAL_COST}`;
    assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
    // The log positions still count the redelivered copies (offset 53 is a repeat of e2).
    assert.equal((await w.logPositions()).usage.get(0), 53n);

    // Per bucket across the boundaries: 23:58, 23:59 (e2, e3), then February.
    const minutes = await usageReport(w, { from: T('2026-01-31T23:58:00Z'), to: T('2026-02-01T00:01:00Z'), granularity: 'minute' });
    assert.equal(minutes.source, 'rollup_minute');
    assert.deepEqual(minutes.series.map((p) => [new Date(p.bucket).toISOString(), p.requests, p.costMicros]), [
      ['2026-01-31T23:58:00.000Z', 1, 1000n], ['2026-01-31T23:59:00.000Z', 2, 5000n], ['2026-02-01T00:00:00.000Z', 1, 4000n],
    ]);
    const months = await usageReport(w, { from: T('2026-01-01T00:00:00Z'), to: T('2026-03-01T00:00:00Z'), granularity: 'month' });
    assert.equal(months.source, 'rollup_day');
    // January: e1 + e2 + e3 = 6,000 µc; February: 4,000 + 5,000 + 9,007,199,254,740,993 + 7 + 0.
    assert.deepEqual(months.series.map((p) => [new Date(p.bucket).toISOString(), p.requests, p.costMicros]), [
      ['2026-01-01T00:00:00.000Z', 3, 6000n], ['2026-02-01T00:00:00.000Z', 5, 9_007_199_254_750_000n],
    ]);

    // A rollup emptied by hand is rebuilt from raw, exactly.
    await w.command(`TRUNCATE TABLE ${w.tables.rollupHour}`);
    assert.deepEqual((await rollupsMatchRaw(w)).mismatchedRows.hour, 7); // the 7 (hour, account, key, model, status, http, currency) rows of raw
    await rebuildRollups(w);
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
    assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
  } finally {
    await w.close();
  }
});

test('a window on rollup buckets and the same window read from raw events give the same report', async () => {
  const { w } = await fresh();
  try {
    await w.insertUsage(events());
    const from = T('2026-01-31T00:00:00Z');
    const to = T('2026-02-03T00:00:00Z');
    for (const granularity of ['hour', 'day', 'month'] as const) {
      for (const groupBy of [undefined, 'account', 'key', 'model', 'status'] as const) {
        const rolled = await usageReport(w, { from, to, granularity, ...(groupBy ? { groupBy } : {}) });
        // One millisecond earlier: no event there, so the same events, but not on a bucket: raw.
        const raw = await usageReport(w, { from: from - 1, to, granularity, ...(groupBy ? { groupBy } : {}) });
        assert.equal(rolled.source, granularity === 'hour' ? 'rollup_hour' : 'rollup_day');
        assert.equal(raw.source, granularity === 'hour' ? 'rollup_hour+raw' : 'rollup_day+raw');
        const shift = (r: typeof raw) => ({ ...r, source: '', series: r.series.map((p) => ({ ...p, bucket: Math.max(p.bucket, from) })) });
        assert.deepEqual(shift(rolled), shift(raw), `${granularity} × ${groupBy}`);
      }
    }
  } finally {
    await w.close();
  }
});

test('analytics numbers: filters, top spenders, error rates by code, cache-hit ratio, output speed, exact', async () => {
  const { w } = await fresh();
  try {
    await w.insertUsage(events());
    const from = T('2026-01-01T00:00:00Z');
    const to = T('2026-03-01T00:00:00Z');
    const all = await usageReport(w, { from, to, granularity: 'day', limit: 2 });
    assert.equal(all.totals.requests, 8);
    assert.equal(all.totals.costMicros, TOTAL_COST);
    // Upstream USD: 10 + 20 + 30 + 40 + 9,007,199,254,740,993 + 1 + 0 (e5 has none: unknown, it cost 5,000 µc).
    assert.deepEqual(all.totals.upstreamCost, { USD: 9_007_199_254_741_094n });
    assert.equal(all.totals.upstreamCostUnknown, 1);
    // Errors: e7 (stream_error) and e8 (529).
    assert.equal(all.totals.errors, 2);
    assert.deepEqual(all.byHttpStatus, [{ code: '200', requests: 7, rate: 0.875 }, { code: '529', requests: 1, rate: 0.125 }]);
    assert.deepEqual(all.byStatus.map((s) => [s.code, s.requests]), [['ok', 6], ['stream_error', 1], ['upstream_error', 1]]);
    // Cache hits: 300 cache-read ÷ (input 267 + cache read 300 + cache write 50) = 300 / 617.
    assert.equal(all.totals.quantities.input, 267);
    assert.equal(all.totals.cacheHitRatio, Math.round((300 / 617) * 1e6) / 1e6);
    // Output speed over streams with a first token and latency > ttft: e1 (10 tokens, 800 ms),
    // e2 (20, 1,000 ms), e4 (40, 2,000 ms), e6 (1, 300 ms); e3 is JSON, e7 has latency = ttft.
    // 71 tokens ÷ 4.1 s = 17.317… tokens/s.
    assert.equal(all.totals.outputTokensPerSecond, Math.round((71 / 4.1) * 1000) / 1000);
    // ttft over the 6 requests that have one: 200 + 200 + 500 + 200 + 100 + 50 = 1,250 → avg 208.333333.
    assert.equal(all.totals.ttftMs.count, 6);
    assert.equal(all.totals.ttftMs.avg, 208.333333);
    assert.equal(all.totals.latencyMs.p50 !== null && all.totals.latencyMs.p99! >= all.totals.latencyMs.p50, true);
    // Top by spend: acc_b (5,000 + 9,007,199,254,740,993 + 7 + 0) then acc_a (10,000); limit 2.
    assert.deepEqual(all.topAccounts.map((a) => [a.id, a.requests, a.costMicros]), [['acc_b', 4, 9_007_199_254_746_000n], ['acc_a', 4, 10_000n]]);
    assert.deepEqual(all.topKeys.map((k) => [k.id, k.accountId, k.costMicros]), [['k_b1', 'acc_b', 9_007_199_254_746_000n], ['k_a2', 'acc_a', 7000n]]);
    assert.deepEqual(all.byModel.map((m) => [m.model, m.requests, m.costMicros]), [
      ['claude-sonnet-4-5-20250929', 7, 9_007_199_254_752_000n], ['claude-haiku-4-5-20251001', 1, 4000n],
    ]);
    // Each filter narrows to exactly its events.
    const one = async (f: Record<string, string>) => (await usageReport(w, { from, to, granularity: 'day', ...f })).totals;
    assert.equal((await one({ accountId: 'acc_a' })).costMicros, 10_000n);
    assert.equal((await one({ keyId: 'k_a2' })).costMicros, 7000n);
    assert.equal((await one({ model: 'claude-haiku-4-5-20251001' })).requests, 1);
    assert.equal((await one({ status: 'upstream_error' })).requests, 1);
    assert.equal((await one({ accountId: 'acc_a', keyId: 'k_b1' })).requests, 0);
    // group_by key per day.
    const byKey = await usageReport(w, { from, to, granularity: 'day', groupBy: 'key', accountId: 'acc_a' });
    assert.deepEqual(byKey.series.map((p) => [new Date(p.bucket).toISOString().slice(0, 10), p.group, p.costMicros]), [
      ['2026-01-31', 'k_a1', 3000n], ['2026-01-31', 'k_a2', 3000n], ['2026-02-01', 'k_a2', 4000n],
    ]);
    // Too many buckets is refused naming granularity.
    await assert.rejects(usageReport(w, { from: 0, to: T('2026-01-01T00:00:00Z'), granularity: 'minute' }), /^WarehouseInputError: granularity/);
  } finally {
    await w.close();
  }
});

test('usage by upstream: group_by upstream and the upstream_id filter read raw events (FINAL: a redelivery counts once), sums exact per upstream, \'\' for requests no upstream was tried for', async () => {
  // Kind: a report split or filtered by a column the rollups do not keep.
  const { w } = await fresh();
  try {
    const on = (upstream_id: string, e: UsageEventV2): UsageEventV2 => ({ ...e, upstream_id, attempts: upstream_id === '' ? 0 : 1 });
    const all = events();
    // e1–e3 on up_a, e4–e6 on up_b, e7 on up_a, e8 tried nothing (an overloaded pool)
    const tagged = [on('up_a', all[0]!), on('up_a', all[1]!), on('up_a', all[2]!), on('up_b', all[3]!), on('up_b', all[4]!), on('up_b', all[5]!), on('up_a', all[6]!), on('', all[7]!)];
    await w.insertUsage(tagged);
    await w.insertUsage(tagged.slice(0, 2)); // a redelivery
    const from = T('2026-01-01T00:00:00Z');
    const to = T('2026-03-01T00:00:00Z');
    const report = await usageReport(w, { from, to, granularity: 'day', groupBy: 'upstream' });
    assert.equal(report.source, 'raw');
    // per day: 01-31 e1+e2+e3 (up_a 6,000); 02-01 e4+e5+e6 (up_b 4,000 + 5,000 + 9,007,199,254,740,993); 02-02 e7 (up_a 7), e8 ('' 0)
    assert.deepEqual(report.series.map((p) => [new Date(p.bucket).toISOString().slice(0, 10), p.group, p.requests, p.costMicros]), [
      ['2026-01-31', 'up_a', 3, 6000n],
      ['2026-02-01', 'up_b', 3, 9_007_199_254_749_993n],
      ['2026-02-02', '', 1, 0n],
      ['2026-02-02', 'up_a', 1, 7n],
    ]);
    assert.equal(report.totals.costMicros, TOTAL_COST);
    const only = async (f: Record<string, string>) => usageReport(w, { from, to, granularity: 'month', ...f });
    const a = await only({ upstreamId: 'up_a' });
    assert.deepEqual([a.source, a.totals.requests, a.totals.costMicros, a.totals.errors], ['raw', 4, 6007n, 1]);
    assert.deepEqual((await only({ upstreamId: 'up_b', accountId: 'acc_a' })).totals.costMicros, 4000n);
    assert.deepEqual((await only({ upstreamId: 'up_c' })).totals.requests, 0);
    // with another grouping, the filter still reads raw: per account on up_b
    const byAccount = await only({ upstreamId: 'up_b', groupBy: 'account' });
    assert.deepEqual(byAccount.series.map((p) => [p.group, p.costMicros]), [['acc_a', 4000n], ['acc_b', 9_007_199_254_745_993n]]);
    // an empty window still has the upstream's shape
    assert.deepEqual((await usageReport(w, { from, to: from, granularity: 'day', groupBy: 'upstream' })).series, []);
    // the filter follows every text filter's rule
    await assert.rejects(only({ upstreamId: 'up\u0001' }), /^WarehouseInputError: upstream_id: contains a control character/);
    // without upstream, the same window is still read from the rollups
    assert.equal((await only({})).source, 'rollup_day');
    // the events behind an upstream's figures: the event pages take the same filter
    const page = await usageEventPage(w, { from, to, limit: 100, upstreamId: 'up_b' });
    assert.deepEqual(page.events.map((e) => [e.event_id, e.upstream_id]), [['e4', 'up_b'], ['e5', 'up_b'], ['e6', 'up_b']]);
  } finally {
    await w.close();
  }
});

test('event pages: (ts, id) cursor order, every filter, full v2 records', async () => {
  const { w } = await fresh();
  try {
    await w.insertUsage(events());
    const from = T('2026-01-01T00:00:00Z');
    const to = T('2026-03-01T00:00:00Z');
    const ids: string[] = [];
    let after: { ts: number; eventId: string } | undefined;
    for (;;) {
      const page = await usageEventPage(w, { from, to, limit: 3, ...(after ? { after } : {}) });
      ids.push(...page.events.map((e) => e.event_id));
      if (!page.hasMore) break;
      const last = page.events[page.events.length - 1]!;
      after = { ts: last.ts, eventId: last.event_id };
    }
    assert.deepEqual(ids, ['e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7', 'e8']);
    const b = await usageEventPage(w, { from, to, limit: 10, accountId: 'acc_b', status: 'ok' });
    assert.deepEqual(b.events.map((e) => e.event_id), ['e5', 'e6']);
    assert.equal(b.events[1]!.cost_micros, '9007199254740993');
    assert.equal(b.events[1]!.v, 2);
    assert.deepEqual(b.events[1]!.quantities, q({ input: 1, output: 1 }));
  } finally {
    await w.close();
  }
});

test('percentiles are the same bytes from every source (raw, minute, hour, day rollups), before and after OPTIMIZE … FINAL merges the states', async () => {
  const { w } = await fresh();
  try {
    // 300 events over 03:00–07:59 of one day, in three inserts (three parts per rollup, merged
    // later), two accounts so rows split; latencies 1..250 ms (37 is coprime to 250: every
    // value once or twice), ttft half of it, none on every fifth event.
    const all: UsageEventV2[] = [];
    for (let i = 0; i < 300; i++) {
      const latency = ((i * 37) % 250) + 1;
      all.push(v2({
        event_id: `p${i}`, ts: T('2026-03-10T03:00:00Z') + i * 60_000, account_id: i % 2 === 0 ? 'acc_a' : 'acc_b',
        latency_ms: latency, ttft_ms: i % 5 === 0 ? null : Math.floor(latency / 2),
      }));
    }
    for (let i = 0; i < 3; i++) await w.insertUsage(all.slice(i * 100, i * 100 + 100));
    const windows = [
      ['rollup_day', { from: T('2026-03-10T00:00:00Z'), to: T('2026-03-11T00:00:00Z'), granularity: 'day' }],
      ['rollup_hour', { from: T('2026-03-10T01:00:00Z'), to: T('2026-03-10T22:00:00Z'), granularity: 'hour' }],
      ['rollup_minute', { from: T('2026-03-10T02:59:00Z'), to: T('2026-03-10T08:01:00Z'), granularity: 'minute' }],
      ['rollup_hour+rollup_minute+raw', { from: T('2026-03-10T00:00:00.001Z'), to: T('2026-03-11T00:00:00Z'), granularity: 'day' }],
      ['raw', { from: T('2026-03-10T00:00:00.001Z'), to: T('2026-03-11T00:00:00Z'), granularity: 'day', rawOnly: true }],
    ] as const;
    const percentiles = async () => {
      const out: string[] = [];
      for (const [source, window] of windows) {
        const r = await usageReport(w, window, { rawOnly: 'rawOnly' in window });
        assert.equal(r.source, source);
        assert.equal(r.totals.requests, 300);
        out.push(JSON.stringify([r.totals.latencyMs, r.totals.ttftMs, r.byModel.map((m) => [m.latencyMs, m.ttftMs])]));
      }
      return out;
    };
    const before = await percentiles();
    // Integers up to 256 are exact in bfloat16, so these are exact order statistics of the data,
    // no interpolation (the ⌈q·n⌉-th smallest here): latencies, n = 300 (1..250 once, and the 50 values of i = 0..49
    // again): 150th = 124, 270th = 225, 297th = 248, Σ = 37,500 → avg 125; ttft ⌊latency / 2⌋ of
    // the 240 events with one: 120th = 62, 216th = 112, 238th = 124, Σ = 14,935 → avg 62.229167.
    const expected = JSON.stringify([
      { avg: 125, p50: 124, p90: 225, p99: 248 },
      { count: 240, avg: 62.229167, p50: 62, p90: 112, p99: 124 },
    ]);
    assert.equal(JSON.stringify(JSON.parse(before[0]!).slice(0, 2)), expected);
    for (const s of before) assert.equal(s, before[0]);
    for (const table of [w.tables.usage, w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) await w.command(`OPTIMIZE TABLE ${table} FINAL`);
    assert.deepEqual(await percentiles(), before);
  } finally {
    await w.close();
  }
});

test('non-aligned windows: the rollups for whole buckets plus raw rims equal raw events alone, sums exact and percentiles the same', async () => {
  const { w } = await fresh();
  try {
    // 600 events over three days with millisecond jitter (deterministic LCG), 3 accounts, 2 keys each,
    // 2 models, every status; costs up to ~10^15 µc so sums pass 2^53.
    let seed = 12345;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
    const start = T('2026-05-01T00:00:00Z');
    const statuses = ['ok', 'ok', 'ok', 'upstream_error', 'stream_error', 'client_disconnect'] as const;
    const all: UsageEventV2[] = [];
    for (let i = 0; i < 600; i++) {
      const latency = 1 + rnd(5000);
      const account = rnd(3);
      const status = statuses[rnd(statuses.length)]!;
      all.push(v2({
        upstream_id: `up_${i % 3}`, attempts: 1,
        event_id: `n${i}`, ts: start + rnd(3 * 86_400_000), account_id: `acc_${account}`, key_id: `k_${account}_${rnd(2)}`,
        catalog_model: rnd(2) === 0 ? 'claude-haiku-4-5-20251001' : 'claude-sonnet-4-5-20250929',
        status, http_status: status === 'upstream_error' ? 529 : 200,
        cost_micros: String(BigInt(rnd(1_000_000)) * 1_000_000_000n + BigInt(rnd(1000))),
        quantities: q({ input: rnd(4000), output: rnd(800), cache_read: rnd(3) === 0 ? rnd(2000) : 0 }),
        latency_ms: latency, ttft_ms: rnd(4) === 0 ? null : Math.floor(latency / 3), stream: rnd(3) !== 0,
      }));
    }
    for (let i = 0; i < 6; i++) await w.insertUsage(all.slice(i * 100, i * 100 + 100));
    const grans = ['minute', 'hour', 'day', 'month'] as const;
    const groups = [undefined, 'account', 'key', 'model', 'status'] as const;
    for (let round = 0; round < 12; round++) {
      const granularity = grans[round % 4]!;
      const span = granularity === 'minute' ? 3 * 3_600_000 : 3 * 86_400_000;
      const from = start - 3_600_000 + rnd(span / 2);
      const to = from + 1 + rnd(span / 2 + 3_600_000);
      const groupBy = groups[rnd(groups.length)];
      const filter = rnd(3) === 0 ? { accountId: 'acc_1' } : {};
      const query = { from, to, granularity, limit: 50, ...filter, ...(groupBy ? { groupBy } : {}) };
      const mixed = await usageReport(w, query);
      const raw = await usageReport(w, query, { rawOnly: true });
      assert.equal(raw.source, 'raw');
      assert.match(mixed.source, /^(rollup_(day|hour|minute)\+?)*(raw)?$/, JSON.stringify(query));
      assert.deepEqual({ ...mixed, source: '' }, { ...raw, source: '' }, `${JSON.stringify(query)} from ${mixed.source}`);
      // By upstream (raw events for the whole window, summed at the buckets' own grain): the same
      // totals, percentiles included, and per bucket the groups add up to the bucket.
      const { groupBy: _g, ...plain } = query;
      const whole = await usageReport(w, plain);
      const perUpstream = await usageReport(w, { ...plain, groupBy: 'upstream' });
      assert.deepEqual(perUpstream.totals, whole.totals, JSON.stringify(query));
      const summed = new Map<number, [number, bigint]>();
      for (const p of perUpstream.series) {
        const [n, c] = summed.get(p.bucket) ?? [0, 0n];
        summed.set(p.bucket, [n + p.requests, c + p.costMicros]);
      }
      assert.deepEqual([...summed], whole.series.map((p) => [p.bucket, [p.requests, p.costMicros]]), JSON.stringify(query));
      let filtered = 0;
      for (const upstreamId of ['up_0', 'up_1', 'up_2']) filtered += (await usageReport(w, { ...plain, upstreamId })).totals.requests;
      assert.equal(filtered, whole.totals.requests);
    }
    // A window with whole days in the middle uses every grain and raw for the rims.
    const wide = { from: start + 1_234, to: start + 2 * 86_400_000 + 3_723_456, granularity: 'hour' as const };
    const mixed = await usageReport(w, wide);
    assert.equal(mixed.source, 'rollup_hour+rollup_minute+raw');
    assert.deepEqual({ ...mixed, source: '' }, { ...(await usageReport(w, wide, { rawOnly: true })), source: '' });
    assert.ok(mixed.totals.requests > 300);
  } finally {
    await w.close();
  }
});

/** Detaches (`on` false) or attaches the materialized views of `grains`: an insert meanwhile writes raw rows only, as a process killed between the raw block and the view blocks leaves them. */
async function views(w: Warehouse, on: boolean, grains: ReadonlyArray<'minute' | 'hour' | 'day'>): Promise<void> {
  for (const grain of grains) {
    const table = grain === 'minute' ? w.tables.rollupMinute : grain === 'hour' ? w.tables.rollupHour : w.tables.rollupDay;
    await w.command(`${on ? 'ATTACH' : 'DETACH'} TABLE ${table.slice(0, -1)}_mv\``);
  }
}

test('insert cut between the raw block and its views (kill -9 mid-insert): the redelivered batch repairs every rollup exactly', async () => {
  const { w } = await fresh();
  try {
    const all = events();
    await w.insertUsage([all[0]!]); // e1 whole: its rows must survive the repair of its buckets
    await views(w, false, ['minute', 'hour', 'day']);
    await w.insertUsage(all.slice(1)); // raw rows of e2…e8 written, no view saw them
    await views(w, true, ['minute', 'hour', 'day']);
    // The cut: rollups hold e1 only (1,000 µc) while raw holds all eight.
    assert.deepEqual(await rollupCosts(w), { minute: '1:1000', hour: '1:1000', day: '1:1000' });
    assert.equal((await rollupsMatchRaw(w)).ok, false);

    // Redelivery: every id is stored (rollup_skip = 1, no view adds them), so only the repair can.
    await w.insertUsage(all.slice(1));
    const eight = `8:${TOTAL_COST}`;
    assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
    // Redelivered once more: rollups already exact, nothing rebuilt, nothing counted twice.
    await w.insertUsage(all.slice(1));
    assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
    assert.deepEqual(await repairRollups(w, [{ accountId: 'acc_a', minute: T('2026-01-31T23:59:00Z') / 1000 }]), { minute: 0, hour: 0, day: 0 });

    // A cut after the minute view but before the hour and day views: only those two are rebuilt.
    const e9 = v2({ event_id: 'e9', ts: T('2026-02-01T00:00:30.000Z'), account_id: 'acc_a', key_id: 'k_a2', catalog_model: 'claude-haiku-4-5-20251001', cost_micros: '11', quantities: q({ input: 1 }), latency_ms: 20, ttft_ms: 10 });
    await views(w, false, ['hour', 'day']);
    await w.insertUsage([e9]);
    await views(w, true, ['hour', 'day']);
    const nine = `9:${TOTAL_COST + 11n}`; // + e9's 11 µc
    assert.deepEqual(await rollupCosts(w), { minute: nine, hour: eight, day: eight });
    await w.insertUsage([e9]);
    assert.deepEqual(await rollupCosts(w), { minute: nine, hour: nine, day: nine });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
  } finally {
    await w.close();
  }
});

/** e1 stored whole, then e2…e8 inserted with the id view detached: raw and rollups hold them, usage_event_ids does not (a cut). */
async function cutBeforeIdView(w: Warehouse, all: UsageEventV2[]): Promise<void> {
  await w.insertUsage([all[0]!]);
  await w.command(`DETACH TABLE ${w.tables.usageIds.slice(0, -1)}_mv\``);
  await w.insertUsage(all.slice(1));
  await w.command(`ATTACH TABLE ${w.tables.usageIds.slice(0, -1)}_mv\``);
}

/** e9 (11 µc, 2026-02-02, acc_b): an event after a cut, which the log redelivers with the cut batch. */
function afterCut(): UsageEventV2 {
  return v2({ event_id: 'e9', ts: T('2026-02-02T00:00:01.000Z'), account_id: 'acc_b', key_id: 'k_b1', cost_micros: '11', quantities: q({ input: 1 }), latency_ms: 20, ttft_ms: 10 });
}

test('insert cut before the id view (its raw rows and rollup rows written, their ids not): the redelivery after a restart counts every event once', async () => {
  // Kind: a cut that lost usage_event_ids rows, whatever the rollup views got. The rollup_skip
  // check reads only that table, so before the start repair put the ids back, the redelivered
  // e2…e8 were marked new and counted a second time in every rollup (16 requests).
  const repairs: unknown[] = [];
  const { w } = await fresh((what) => repairs.push(what));
  try {
    const all = events();
    await cutBeforeIdView(w, all); // raw and rollups hold e2…e8; usage_event_ids does not
    const eight = `8:${TOTAL_COST}`;
    assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
    // What a restarted sink does first: 7 ids put back, no rollup row to rebuild.
    assert.deepEqual(await w.repairRecentRollups(), { minute: 0, hour: 0, day: 0 });
    assert.equal(Number((await w.select(`SELECT uniqExact(event_id) AS n FROM ${w.tables.usageIds}`))[0]!['n']), 8);
    // and the process is told (it logs a warning): 7 ids put back at the start
    assert.deepEqual(repairs, [{ rollupRows: { minute: 0, hour: 0, day: 0 }, idsRestored: 7, where: 'start' }]);
    // The log redelivers from the committed offset, with events after the cut: e9 (11 µc) is new.
    const e9 = afterCut();
    await w.insertUsage([...all.slice(1), e9]);
    const nine = `9:${TOTAL_COST + 11n}`;
    assert.deepEqual(await rollupCosts(w), { minute: nine, hour: nine, day: nine });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
    assert.equal(await w.restoreRecentIds(), 0, 'nothing left to put back');
  } finally {
    await w.close();
  }
});

test('insert cut before the id view, then the process died and its successor\'s start repair failed (ClickHouse away): the successor\'s first insert puts the ids back itself, and the redelivery counts every event once', async () => {
  // Kind: a cut whose only marker died with its process. The flag that makes an insert restore
  // lost ids first lived in the failed process; a new one started clean, its start repair
  // failed and was skipped, and the redelivered e2…e8 were counted twice in every rollup
  // (a tester's case).
  const { w, prefix } = await fresh();
  try {
    const all = events();
    await cutBeforeIdView(w, all); // raw and rollups hold e2…e8; usage_event_ids does not
  } finally {
    await w.close();
  }
  const repairs: unknown[] = [];
  const next = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: prefix, onRepair: (what) => repairs.push(what) });
  try {
    // no repairRecentRollups(): it failed at this start. The log redelivers from the committed
    // offset with an event after the cut (e9, 11 µc): another block than the cut one, so no
    // dedup window drops it.
    const e9 = afterCut();
    await next.insertUsage([...events().slice(1), e9]);
    const nine = `9:${TOTAL_COST + 11n}`;
    assert.deepEqual(await rollupCosts(next), { minute: nine, hour: nine, day: nine });
    assert.deepEqual(await rollupsMatchRaw(next), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
    assert.deepEqual(repairs, [{ idsRestored: 7, where: 'insert' }]);
  } finally {
    await next.close();
  }
});

/**
 * Stores e1, then inserts e2…e8 with a view that throws on e5's row (a stand-in for a memory
 * limit or a server fault in a view): ClickHouse fails the INSERT after the raw block and the
 * views before it were written. `failingAt` (ms, this process's clock) dates the failed insert.
 * Then checks the cut: raw holds e1…e8, the id table fewer (it missed the failed block).
 */
async function cutInLaterView(w: Warehouse, prefix: string, all: UsageEventV2[], failingAt?: number): Promise<void> {
  const failing = `\`${prefix}fail_mv\``;
  await w.insertUsage([all[0]!]);
  await w.command(`CREATE TABLE \`${prefix}fail_sink\` (x UInt8) ENGINE = Null`);
  await w.command(`CREATE MATERIALIZED VIEW ${failing} TO \`${prefix}fail_sink\` AS SELECT throwIf(event_id = 'e5', 'simulated view failure') AS x FROM ${w.tables.usage}`);
  if (failingAt !== undefined) mock.timers.enable({ apis: ['Date'], now: failingAt });
  try {
    await assert.rejects(w.insertUsage(all.slice(1)), /simulated view failure/);
  } finally {
    if (failingAt !== undefined) mock.timers.reset();
  }
  await w.command(`DROP TABLE ${failing}`);
  const count = async (table: string) => Number((await w.select(`SELECT uniqExact(event_id) AS n FROM ${table}`))[0]!['n']);
  assert.equal(await count(w.tables.usage), 8);
  assert.ok(await count(w.tables.usageIds) < 8, 'the failing view cut the block before the id view');
}

/** The log retries the cut batch e2…e8: every rollup then counts the eight events once, and equals raw. */
async function retryCountsOnce(w: Warehouse, all: UsageEventV2[]): Promise<void> {
  await w.insertUsage(all.slice(1));
  const eight = `8:${TOTAL_COST}`;
  assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
  assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
}

test('insert that failed in a later view (the server cut it, the process lives on): the next insert puts lost ids back first, and the retried batch counts every event once', async () => {
  const { w, prefix } = await fresh();
  try {
    const all = events();
    await cutInLaterView(w, prefix, all);
    await retryCountsOnce(w, all);
  } finally {
    await w.close();
  }
});

test('insert that failed in a later view, then ClickHouse away for longer than the restore\'s hour: the next insert still puts the lost ids back (it looks back to the failure), and the retried batch counts every event once', async () => {
  // Kind: a cut older than the restore's look-back. The failed insert started two hours ago by
  // this process's clock (Date mocked for it alone) and its rows carry inserted_at two hours back
  // (aged by a mutation, as the server's clock would have them after the outage); a one-hour
  // look-back misses them, and the retried batch counts the cut's events a second time in every
  // rollup the cut reached (13 requests for 8 in the minute and hour rollups).
  const { w, prefix } = await fresh();
  try {
    const all = events();
    await cutInLaterView(w, prefix, all, Date.now() - 2 * 3_600_000);
    await w.command(`ALTER TABLE ${w.tables.usage} UPDATE inserted_at = inserted_at - toIntervalHour(2) WHERE 1 SETTINGS mutations_sync = 2`);
    await retryCountsOnce(w, all);
  } finally {
    await w.close();
  }
});

test('two writers racing one account past the rollup_skip check (different, overlapping batches): rollupsMatchRaw finds the double count, repairMismatchedRollups makes every settled bucket exact and leaves the current ones', async () => {
  // The state a race leaves: each event of the overlap stored twice with rollup_skip = 0, so
  // counted twice by every view. Made here by hiding the first batch's ids from the check.
  const { w } = await fresh();
  try {
    const all = events();
    const now = Math.floor(Date.now() / 60_000) * 60_000;
    const live = v2({ event_id: 'live', ts: now, account_id: 'acc_a', key_id: 'k_a1', cost_micros: '5', quantities: q({ input: 1 }), latency_ms: 20, ttft_ms: 10 });
    await w.insertUsage([...all.slice(0, 5), live]);
    await w.command(`DELETE FROM ${w.tables.usageIds} WHERE event_id IN ('e2', 'e3', 'live')`);
    await w.insertUsage([...all.slice(1), live]); // e2, e3 and live counted again; e4…e8 are stored but seen (ids kept); e6…e8 new
    const check = await rollupsMatchRaw(w);
    assert.equal(check.ok, false);
    // e2 (2,000 µc), e3 (3,000) and live (5) doubled: 12 requests for 9 events
    const doubled = `12:${TOTAL_COST + 5n + 5_005n}`;
    assert.deepEqual(await rollupCosts(w), { minute: doubled, hour: doubled, day: doubled });
    const report = await repairMismatchedRollups(w);
    // e2 and e3 share acc_a's 23:59 minute, the 23:00 hour and 31 January; live's buckets have not settled
    assert.deepEqual(report, { repaired: { minute: 1, hour: 1, day: 1 }, leftRecent: { minute: 1, hour: 1, day: 1 } });
    const ten = `10:${TOTAL_COST + 5n + 5n}`; // live still doubled: 10 requests, its 5 µc twice
    assert.deepEqual(await rollupCosts(w), { minute: ten, hour: ten, day: ten });
    // once its buckets have settled (a day and ten minutes later), the same call repairs them too
    assert.deepEqual(await repairMismatchedRollups(w, { now: now + 86_400_000 + 600_000 }), { repaired: { minute: 1, hour: 1, day: 1 }, leftRecent: { minute: 0, hour: 0, day: 0 } });
    const exact = `9:${TOTAL_COST + 5n}`;
    assert.deepEqual(await rollupCosts(w), { minute: exact, hour: exact, day: exact });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
    assert.deepEqual(await repairMismatchedRollups(w), { repaired: { minute: 0, hour: 0, day: 0 }, leftRecent: { minute: 0, hour: 0, day: 0 } });
  } finally {
    await w.close();
  }
});

test('an insert in flight (its raw block written, its view blocks not yet) is not a cut: a repair running meanwhile leaves its buckets, and the rollups end exact when its views land', async () => {
  // Kind: a repair racing a live insert. Rebuilt from raw at once, the in-flight events were
  // counted by the rebuild and again by their views (rollups over raw by exactly those events).
  const { w } = await fresh();
  try {
    const all = events();
    await w.insertUsage([all[0]!]);
    await views(w, false, ['minute', 'hour', 'day']);
    await w.insertUsage(all.slice(1)); // e2…e8: raw rows and ids written; their view blocks "still on the way"
    const pairs = all.slice(1).map((e) => ({ accountId: e.account_id, minute: Math.floor(e.ts / 60_000) * 60 }));
    // The repair finds them different; while it waits, the insert's view blocks land: exactly
    // what the three views would have added.
    let waited = false;
    const landing = async () => {
      waited = true;
      const ids = all.slice(1).map((e) => `'${e.event_id}'`).join(', ');
      for (const grain of ['minute', 'hour', 'day'] as const) {
        await w.command(`INSERT INTO ${rollupTable(w.tables, grain)} SETTINGS insert_deduplicate = 0 ${rollupSelect(grain, w.tables.usage, `WHERE rollup_skip = 0 AND event_id IN (${ids})`)}`);
      }
      await views(w, true, ['minute', 'hour', 'day']);
    };
    assert.deepEqual(await repairRollups(w, pairs, { beforeConfirm: landing }), { minute: 0, hour: 0, day: 0 });
    assert.ok(waited, 'the repair saw the difference and waited');
    const eight = `8:${TOTAL_COST}`;
    assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
  } finally {
    await w.close();
  }
});

test('view blocks written without their raw block (the other half of a cut): the repair at sink start takes them out of the rollups', async () => {
  const { w } = await fresh();
  try {
    // Recent events: the start repair looks at the last hour (server inserted_at, minute rollup buckets).
    // The raw row of n2 gone, its rollup rows kept: raw 1 request / 1,000 µc, rollups 2 / 3,000.
    const { events: [, b] } = await viewRowsWithoutRaw(w, 'acc_a', 'n');
    assert.deepEqual(await rollupCosts(w), { minute: '2:3000', hour: '2:3000', day: '2:3000' });
    // One (account, bucket) row per grain rebuilt, then exact; redelivering n2 adds it once.
    assert.deepEqual(await w.repairRecentRollups(), { minute: 1, hour: 1, day: 1 });
    assert.deepEqual(await rollupCosts(w), { minute: '1:1000', hour: '1:1000', day: '1:1000' });
    await w.insertUsage([b!]);
    assert.deepEqual(await rollupCosts(w), { minute: '2:3000', hour: '2:3000', day: '2:3000' });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
  } finally {
    await w.close();
  }
});

test('a recent-rollups repair limited to owned accounts, and one whose fence rejects: only owned accounts are rebuilt, and a rejected fence writes nothing', async () => {
  const { w } = await fresh();
  try {
    for (const acc of ['acc_a', 'acc_b']) await viewRowsWithoutRaw(w, acc, acc);
    assert.deepEqual(await rollupCosts(w), { minute: '4:6000', hour: '4:6000', day: '4:6000' });
    // A fence that rejects (the partitions were lost meanwhile): thrown, nothing rebuilt.
    const lost = new Error('partition lost');
    await assert.rejects(w.repairRecentRollups(undefined, { beforeWrite: async () => { throw lost; } }), (err) => err === lost);
    assert.deepEqual(await rollupCosts(w), { minute: '4:6000', hour: '4:6000', day: '4:6000' });
    // Asked about both accounts, owning acc_b only: acc_b rebuilt (1 request, 1,000 µc), acc_a left.
    const asked: string[][] = [];
    const owned = async (accounts: string[]) => { asked.push([...accounts].sort()); return accounts.filter((a) => a === 'acc_b'); };
    assert.deepEqual(await w.repairRecentRollups(undefined, { owned }), { minute: 1, hour: 1, day: 1 });
    assert.deepEqual(asked, [['acc_a', 'acc_b']]);
    assert.deepEqual(await rollupCosts(w), { minute: '3:4000', hour: '3:4000', day: '3:4000' });
  } finally {
    await w.close();
  }
});

test('a rebuild cut between its DELETE and its INSERT: the INSERT is tried again, so the rows are rebuilt, not left deleted; a fence that fails after the DELETE stops the INSERT', async () => {
  // Kind: a repair's two statements are not atomic. A failed INSERT left the deleted rows out
  // of every report until the next repair (a breaker's HIGH), and a writer frozen between them
  // wrote its INSERT after the partition's new owner had rebuilt the same rows (doubled).
  const { w } = await fresh();
  try {
    const cut = async () => {
      const { minute } = await viewRowsWithoutRaw(w, 'acc_cut', 'c');
      assert.deepEqual(await rollupCosts(w), { minute: '2:3000', hour: '2:3000', day: '2:3000' });
      return [{ accountId: 'acc_cut', minute }];
    };
    const pairs = await cut();
    // The server drops the connection on the first rebuilding INSERT (into the minute rollup).
    const sent: string[] = [];
    let failures = 0;
    const flaky = {
      tables: w.tables,
      select: w.select.bind(w),
      command: w.command.bind(w),
      commandSettled: async (query: string, params?: Record<string, unknown>) => {
        sent.push(query.trimStart().split(' ', 1)[0]!);
        if (query.startsWith(`INSERT INTO ${w.tables.rollupMinute}`) && failures++ === 0) {
          throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
        }
        await w.commandSettled(query, params);
      },
    };
    assert.deepEqual(await repairRollups(flaky, pairs, { confirmAfterMs: 0 }), { minute: 1, hour: 1, day: 1 });
    assert.deepEqual(sent, ['DELETE', 'INSERT', 'INSERT', 'DELETE', 'INSERT', 'DELETE', 'INSERT']);
    assert.deepEqual(await rollupCosts(w), { minute: '1:1000', hour: '1:1000', day: '1:1000' });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });

    // Again cut; this time the fence passes before the DELETE and rejects before the INSERT
    // (the partition went to another member meanwhile): the INSERT is never sent.
    await w.command(`DELETE FROM ${w.tables.usage} WHERE event_id = 'c1'`);
    for (const t of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) await w.command(`TRUNCATE TABLE ${t}`);
    await w.command(`TRUNCATE TABLE ${w.tables.usageIds}`);
    const again = await cut();
    let fences = 0;
    const lost = new Error('partition lost');
    await assert.rejects(repairRollups(w, again, { confirmAfterMs: 0, beforeWrite: async () => { if (fences++ === 1) throw lost; } }), (err) => err === lost);
    assert.equal(fences, 2);
    // The minute rows deleted and not written back (the partition's owner rebuilds them), the
    // hour and day rows not touched yet.
    assert.deepEqual(await rollupCosts(w), { minute: '0:0', hour: '2:3000', day: '2:3000' });
  } finally {
    await w.close();
  }
});

test('migration 13 over a warehouse of migration 6 (events stored before the rollup views existed): every rollup counts them once, and only once', async () => {
  // Kind: an upgrade from before migration 7. Its views never saw the stored events, so every
  // rollup read 0 for the whole past (a tester saw 0 requests for 100 stored).
  const prefix = `r${randomBytes(3).toString('hex')}_`;
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: prefix });
  try {
    for (const statement of migrations(w.tables, 6)) await w.command(statement);
    // e1…e8 as a migration-6 gateway stored them: its columns only, e3 twice (a redelivery)
    const all = events();
    const old = (e: UsageEventV2) => ({
      event_id: e.event_id, ts: e.ts, account_id: e.account_id, key_id: e.key_id, model: e.model, catalog_model: e.catalog_model,
      upstream_model: e.upstream_model, input_tokens: e.quantities.input, output_tokens: e.quantities.output,
      cache_read_tokens: e.quantities.cache_read, cache_write_5m_tokens: e.quantities.cache_write_5m, cache_write_1h_tokens: e.quantities.cache_write_1h,
      cost_micros: e.cost_micros, status: e.status, http_status: e.http_status, latency_ms: e.latency_ms, ttft_ms: e.ttft_ms,
      stream: e.stream, upstream_request_id: null, gateway_id: 'gw-old', upstream_cost_micros: e.upstream_cost_micros, upstream_currency: e.upstream_currency,
    });
    // and one of this very minute (13 µc): the current buckets hold the past too
    const today = v2({ event_id: 'today', ts: Date.now(), account_id: 'acc_a', key_id: 'k_a1', cost_micros: '13', quantities: q({ input: 1 }), latency_ms: 20, ttft_ms: 10 });
    await w.insertRows(w.tables.usage, [...all, all[2]!, today].map(old));
    // The views' creation is stamped in whole seconds: the old rows lie in an earlier second.
    await new Promise((r) => setTimeout(r, 1100));
    await w.migrate();
    const nine = `9:${TOTAL_COST + 13n}`;
    assert.deepEqual(await rollupCosts(w), { minute: nine, hour: nine, day: nine });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
    // every start migrates: nothing is added again, even with the marker gone (a restore from a
    // backup of before it, a crash before it was written): the backfill only repairs what differs
    await w.migrate();
    await w.command(`TRUNCATE TABLE ${w.tables.rollupsBackfilled}`);
    await w.migrate();
    assert.deepEqual(await rollupCosts(w), { minute: nine, hour: nine, day: nine });
    // the old events redelivered add nothing; a new one adds itself
    await w.insertUsage([...all, today]);
    const e9 = afterCut();
    await w.insertUsage([e9]);
    const ten = `10:${TOTAL_COST + 24n}`;
    assert.deepEqual(await rollupCosts(w), { minute: ten, hour: ten, day: ten });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
  } finally {
    await w.close();
  }
});

test('migration 13 over a warehouse of migration 12 (every event already in the rollups): the backfill adds nothing', async () => {
  const { w } = await fresh();
  try {
    const all = events();
    await w.insertUsage(all);
    await w.insertUsage(all.slice(0, 3)); // redelivered: rows with rollup_skip = 1
    await w.command(`DROP TABLE ${w.tables.rollupsBackfilled}`); // as migration 12 left it
    await w.migrate();
    const eight = `8:${TOTAL_COST}`;
    assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
    assert.deepEqual((await w.select(`SELECT grain FROM ${w.tables.rollupsBackfilled} ORDER BY grain`)).map((r) => r['grain']), ['day', 'hour', 'minute']);
  } finally {
    await w.close();
  }
});

test('migration 12 over a warehouse of migration 11: its stored ids are copied into usage_event_ids once, so their redelivery adds nothing to any rollup', async () => {
  const { w } = await fresh();
  try {
    const all = events();
    await w.insertUsage(all);
    // The warehouse as migration 11 left it: events stored, no id table, view or marker.
    await w.command(`DROP TABLE ${w.tables.usageIds.slice(0, -1)}_mv\``);
    await w.command(`DROP TABLE ${w.tables.usageIds}`);
    await w.command(`DROP TABLE ${w.tables.usageIdsBackfilled}`);
    await w.migrate();
    const ids = async () => (await w.select(`SELECT event_id FROM ${w.tables.usageIds} ORDER BY event_id`)).map((r) => r['event_id']);
    assert.deepEqual(await ids(), ['e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7', 'e8']);
    await w.migrate(); // every start migrates: the copy is not made again
    assert.equal((await ids()).length, 8);

    await w.insertUsage(all); // the old events redelivered after the upgrade
    const eight = `8:${TOTAL_COST}`;
    assert.deepEqual(await rollupCosts(w), { minute: eight, hour: eight, day: eight });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
  } finally {
    await w.close();
  }
});

test('a rollup row whose sums differ from raw events is one mismatched row, not one per side of the comparison', async () => {
  // Kind (a tester's LOW): a row present on both sides with different sums was counted twice
  // by reconcile --rollups and the repair's check.
  const { w } = await fresh();
  try {
    const a = v2({ event_id: 'both-a', ts: T('2099-11-30T10:00:10.000Z'), account_id: 'acc', key_id: 'k', cost_micros: '100' });
    const b = v2({ event_id: 'both-b', ts: T('2099-11-30T10:00:20.000Z'), account_id: 'acc', key_id: 'k', cost_micros: '200' });
    await w.insertUsage([a, b]);
    await w.command(`DELETE FROM ${w.tables.usage} WHERE event_id = 'both-b'`); // raw 100, rollups 300
    const now = T('2099-12-01T00:10:00.000Z'); // every bucket settled
    assert.deepEqual(await rollupMismatches(w, { now }), { settled: { minute: 1, hour: 1, day: 1 }, recent: { minute: 0, hour: 0, day: 0 } });
    assert.deepEqual(await rollupsMatchRaw(w), { ok: false, mismatchedRows: { minute: 1, hour: 1, day: 1 } });
  } finally {
    await w.close();
  }
});

test('rollup mismatches by settlement: a bucket still being written (an insert in flight under traffic) is counted apart from a settled one, by ROLLUP_SETTLE_MS after its end', async () => {
  // Kind (a tester's MEDIUM): `reconcile --rollups` failed under traffic on rows an insert in
  // flight had written to raw but not yet to its views; only settled buckets may fail it.
  const { w } = await fresh();
  try {
    const now = T('2099-11-30T12:00:00.000Z'); // settled: buckets that ended by 11:50:00
    const old = v2({ event_id: 'old', ts: T('2099-11-30T10:00:30.000Z'), account_id: 'acc', key_id: 'k', cost_micros: '100' });
    const fresh1 = v2({ event_id: 'new', ts: T('2099-11-30T11:59:30.000Z'), account_id: 'acc', key_id: 'k', cost_micros: '200' });
    await w.insertUsage([old, fresh1]);
    assert.deepEqual(await rollupMismatches(w, { now }), { settled: { minute: 0, hour: 0, day: 0 }, recent: { minute: 0, hour: 0, day: 0 } });
    // Their raw rows gone (as if only the views' parts had been written): every bucket differs.
    await w.command(`DELETE FROM ${w.tables.usage} WHERE event_id IN ('old', 'new')`);
    // 10:00 minute and 10:00 hour ended before 11:50: settled; 11:59 minute, 11:00 hour and the
    // day (one row for both: same account, key, model, status) are still being written.
    assert.deepEqual(await rollupMismatches(w, { now }), { settled: { minute: 1, hour: 1, day: 0 }, recent: { minute: 1, hour: 1, day: 1 } });
    assert.deepEqual(await rollupMismatches(w, { now: T('2099-12-01T00:10:00.000Z') }), { settled: { minute: 2, hour: 2, day: 1 }, recent: { minute: 0, hour: 0, day: 0 } });
  } finally {
    await w.close();
  }
});
