// Settlement rules of services/gateway/src/metering.ts that need no stack: the cap at the hold,
// the status an anomaly gives, and the bound on the upstream's request id (issue 6, item 2);
// and `settle` itself on real in-process adapters: its publish waits for the hold's shrink, and
// a shrink that fails (hot state away) still publishes the usage event (issue 11).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryLog, type ConsumedEvent } from '@tollgate/events';
import type { KeyEntry } from '@tollgate/keys';
import { MemoryBalanceStore, RedisBalanceStore, type BalanceStore } from '@tollgate/ledger';
import { bundledCatalogPath, loadCatalogFile, priceVersion, resolveModel } from '@tollgate/pricing';
import type { GatewayDeps } from '../src/deps.ts';
import { advisorBoundKey, boundedUpstreamId, MAX_UPSTREAM_ID_CHARS, settle, settlement as fullSettlement, type Metered, type Outcome } from '../src/metering.ts';

// sonnet-4-5 in the CNY catalog: input 72, output 360 µc per token
const version = priceVersion(loadCatalogFile(bundledCatalogPath('cny')));
const resolved = resolveModel(version.catalog, 'claude-sonnet-4-5')!;
const usage = { input: 800, output: 120, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 };
/** cost, status and anomalies (the usage is checked where the rule changes it) */
const settlement = (...args: Parameters<typeof fullSettlement>) => {
  const { cost, status, anomalies } = fullSettlement(...args);
  return { cost, status, anomalies };
};
const outcome = (o: Partial<Outcome>): Outcome => ({
  status: 'ok', httpStatus: 200, usage, billable: true, firstByteAt: null, firstTokenAt: null, upstreamRequestId: null, ...o,
});

test('cost within the hold: charged as the tokens say (800×72 + 120×360 = 100,800 µc), status unchanged', () => {
  assert.deepEqual(settlement({ resolved, version, holdMicros: 100_800n }, outcome({})), { cost: 100_800n, status: 'ok', anomalies: [] });
  assert.deepEqual(settlement({ resolved, version, holdMicros: 1n }, outcome({ billable: false, status: 'upstream_error' })),
    { cost: 0n, status: 'upstream_error', anomalies: [] });
});

test('cost above the hold: capped at the hold, flagged cost_over_bound, ok becomes usage_anomaly', () => {
  assert.deepEqual(settlement({ resolved, version, holdMicros: 100_799n }, outcome({})),
    { cost: 100_799n, status: 'usage_anomaly', anomalies: ['cost_over_bound'] });
  // a client_disconnect keeps its status; the anomaly is still recorded
  assert.deepEqual(settlement({ resolved, version, holdMicros: 50_000n }, outcome({ status: 'client_disconnect', anomalies: ['count_decreased'] })),
    { cost: 50_000n, status: 'client_disconnect', anomalies: ['cost_over_bound', 'count_decreased'] });
});

test('any usage anomaly turns ok into usage_anomaly; unmetered stays unmetered, charged 0', () => {
  assert.deepEqual(settlement({ resolved, version, holdMicros: 1_000_000n }, outcome({ anomalies: ['missing_message_stop', 'invalid_count'] })),
    { cost: 100_800n, status: 'usage_anomaly', anomalies: ['invalid_count', 'missing_message_stop'] });
  assert.deepEqual(settlement({ resolved, version, holdMicros: 1_000_000n }, outcome({ status: 'unmetered', usage: null, billable: false, anomalies: ['no_usage'] })),
    { cost: 0n, status: 'unmetered', anomalies: ['no_usage'] });
});

test('output above max_tokens × server-loop iterations: clamped to that bound, flagged output_over_max_tokens', () => {
  // max_tokens 10, one step: output 120 → 10. 800×72 + 10×360 = 57,600 + 3,600 = 61,200 µc
  const clamped = fullSettlement({ resolved, version, holdMicros: 1_000_000n, maxOutputTokens: 10 }, outcome({}));
  assert.deepEqual([clamped.cost, clamped.status, clamped.anomalies, clamped.usage, clamped.quantities.output],
    [61_200n, 'usage_anomaly', ['output_over_max_tokens'], { input: 800, output: 10, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 }, 10]);
  // exactly at the bound (max_tokens 40 × 3 iterations = 120): charged as reported, not flagged
  const exact = fullSettlement({ resolved, version, holdMicros: 1_000_000n, maxOutputTokens: 120 }, outcome({}));
  assert.deepEqual([exact.cost, exact.status, exact.anomalies, exact.usage], [100_800n, 'ok', [], usage]);
  // a client_disconnect keeps its status; the clamp applies as well
  assert.deepEqual(settlement({ resolved, version, holdMicros: 1_000_000n, maxOutputTokens: 119 }, outcome({ status: 'client_disconnect' })),
    { cost: 100_440n, status: 'client_disconnect', anomalies: ['output_over_max_tokens'] });
});

test('upstream request id: printable ASCII up to 128 characters, anything else null', () => {
  assert.equal(boundedUpstreamId('req_011CV5Jab2wbxbWpKxPQY3Tc'), 'req_011CV5Jab2wbxbWpKxPQY3Tc');
  assert.equal(boundedUpstreamId('x'.repeat(MAX_UPSTREAM_ID_CHARS)), 'x'.repeat(128));
  for (const bad of ['x'.repeat(129), '', 'req\u0000id', 'req\nid', 'réq', 'req_🔥', '\u007f', null, undefined]) {
    assert.equal(boundedUpstreamId(bad), null, JSON.stringify(bad));
  }
});

test('iterations: totals are per dimension the larger of the top level and Σ iterations (compaction left out of the top level is charged once)', async () => {
  const { UsageTally } = await import('@tollgate/anthropic');
  const tally = new UsageTally();
  tally.add({
    input_tokens: 23_000, output_tokens: 1_000, server_tool_use: { web_search_requests: 2 },
    iterations: [{ type: 'compaction', input_tokens: 180_000, output_tokens: 3_500 }, { type: 'message', input_tokens: 23_000, output_tokens: 1_000 }],
  });
  const report = { tally, model: 'claude-sonnet-4-5-20250929', stopReason: 'end_turn', outputSeen: true };
  const s = fullSettlement({ resolved, version, holdMicros: 10n ** 12n }, outcome({ usage: tally.usage(), report }));
  assert.deepEqual([s.quantities.input, s.quantities.output, s.quantities.web_search_requests], [203_000, 4_500, 2]);
  // 203,000 input-side tokens > 200,000: the compaction step (180,000) alone is not over the tier,
  // each step is priced with its own tier: 180,000×72 + 3,500×360 + 23,000×72 + 1,000×360
  //   + the remainder at the serving model: 2 searches × 240,000
  // = 12,960,000 + 1,260,000 + 1,656,000 + 360,000 + 480,000 = 16,716,000 µc
  assert.equal(s.cost, 16_716_000n);
  assert.deepEqual(s.iterations.map((i) => [i.type, i.model]), [['compaction', 'claude-sonnet-4-5-20250929'], ['message', 'claude-sonnet-4-5-20250929']]);
});

test('an unknown usage field and an unknown server tool count are recorded as unpriced; the rest is charged', async () => {
  const { UsageTally } = await import('@tollgate/anthropic');
  const tally = new UsageTally();
  tally.add({ input_tokens: 800, output_tokens: 120, hologram_units: 4, server_tool_use: { teleport_requests: 1 } });
  const s = fullSettlement({ resolved, version, holdMicros: 10n ** 9n }, outcome({ usage: tally.usage(), report: { tally, model: null, stopReason: 'end_turn', outputSeen: true } }));
  assert.deepEqual([s.cost, [...s.priced.unpriced].sort()], [100_800n, ['hologram_units', 'server_tool_use.teleport_requests']]);
});

test('hostile iterations naming 64 × 16 unknown server-tool fields: at most 16 names recorded, the rest as other_usage_fields', async () => {
  const { UsageTally } = await import('@tollgate/anthropic');
  const tally = new UsageTally();
  const iterations = Array.from({ length: 64 }, (_, i) => ({
    type: 'message', input_tokens: 1, output_tokens: 1,
    server_tool_use: Object.fromEntries(Array.from({ length: 16 }, (_, j) => [`t${i}_${j}`, 1])),
  }));
  tally.add({ input_tokens: 64, output_tokens: 64, iterations });
  const s = fullSettlement({ resolved, version, holdMicros: 10n ** 9n }, outcome({ usage: tally.usage(), report: { tally, model: null, stopReason: 'end_turn', outputSeen: true } }));
  assert.equal(s.priced.unpriced.length, 17);
  assert.ok(s.priced.unpriced.includes('other_usage_fields'));
  // 64 steps of 1 input + 1 output at sonnet-4-5: 64 × (72 + 360) = 27,648 µc
  assert.equal(s.cost, 27_648n);
});

test('server-tool uses above the declared max_uses: clamped to the bound (totals and iterations in order), flagged units_over_max_uses', async () => {
  const { UsageTally } = await import('@tollgate/anthropic');
  const tally = new UsageTally();
  tally.add({ input_tokens: 2000, output_tokens: 300, server_tool_use: { web_search_requests: 60 } });
  const report = { tally, model: null, stopReason: 'end_turn', outputSeen: true };
  // max_uses 5: 2,000×72 + 300×360 + 5×240,000 = 144,000 + 108,000 + 1,200,000 = 1,452,000 (not 60 searches: 14,652,000)
  const s = fullSettlement({ resolved, version, holdMicros: 10n ** 12n, maxUnits: { web_search_requests: 5 } }, outcome({ usage: tally.usage(), report }));
  assert.deepEqual([s.cost, s.status, s.anomalies, s.quantities.web_search_requests], [1_452_000n, 'usage_anomaly', ['units_over_max_uses'], 5]);
  // exactly at the bound, or no bound declared (code execution): charged as reported
  const at = fullSettlement({ resolved, version, holdMicros: 10n ** 12n, maxUnits: { web_search_requests: 60, code_execution_seconds: null } }, outcome({ usage: tally.usage(), report }));
  assert.deepEqual([at.cost, at.status, at.anomalies], [14_652_000n, 'ok', []]);
  // across iterations: 3 + 4 searches with max_uses 5 → the first step keeps 3, the second 2
  const it = new UsageTally();
  it.add({
    input_tokens: 2000, output_tokens: 200, server_tool_use: { web_search_requests: 7 },
    iterations: [
      { type: 'message', input_tokens: 1000, output_tokens: 100, server_tool_use: { web_search_requests: 3 } },
      { type: 'message', input_tokens: 1000, output_tokens: 100, server_tool_use: { web_search_requests: 4 } },
    ],
  });
  const r = fullSettlement({ resolved, version, holdMicros: 10n ** 12n, maxUnits: { web_search_requests: 5 } },
    outcome({ usage: it.usage(), report: { tally: it, model: null, stopReason: 'end_turn', outputSeen: true } }));
  // 2,000×72 + 200×360 + 5×240,000 = 144,000 + 72,000 + 1,200,000
  assert.deepEqual([r.cost, r.anomalies, r.quantities.web_search_requests, r.iterations.map((i) => i.quantities.web_search_requests)],
    [1_416_000n, ['units_over_max_uses'], 5, [3, 2]]);
});

test('cache writes split differently by the top level and the iterations are one count, charged once (5 m 90, 1 h 144 µc per token)', async () => {
  const { UsageTally } = await import('@tollgate/anthropic');
  const settled = (usage: Record<string, unknown>) => {
    const tally = new UsageTally();
    tally.add(usage);
    const s = fullSettlement({ resolved, version, holdMicros: 10n ** 12n }, outcome({ usage: tally.usage(), report: { tally, model: null, stopReason: 'end_turn', outputSeen: true } }));
    return [s.cost, s.quantities.cache_write_5m, s.quantities.cache_write_1h, s.anomalies];
  };
  const step = { type: 'message', input_tokens: 100, output_tokens: 50, cache_creation_input_tokens: 1000 };
  // the top level says 1 h, the one step gives no breakdown (read as 5 m): 1,000 writes at 1 h,
  // 100×72 + 50×360 + 1,000×144 = 7,200 + 18,000 + 144,000 (was 259,200: 1,000 more at 5 m)
  assert.deepEqual(settled({ input_tokens: 100, output_tokens: 50, cache_creation_input_tokens: 1000,
    cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 }, iterations: [step] }), [169_200n, 0, 1000, []]);
  // a 600 / 400 split over a step without one: 600×90 + 400×144 = 54,000 + 57,600, + 25,200 (was 172,800)
  assert.deepEqual(settled({ input_tokens: 100, output_tokens: 50, cache_creation_input_tokens: 1000,
    cache_creation: { ephemeral_5m_input_tokens: 600, ephemeral_1h_input_tokens: 400 }, iterations: [step] }), [136_800n, 600, 400, []]);
  // a step that says 1 h where the top level says 5 m: the dearer reading, once
  assert.deepEqual(settled({ input_tokens: 100, output_tokens: 50, cache_creation_input_tokens: 1000,
    iterations: [{ ...step, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 } }] }), [169_200n, 0, 1000, []]);
  // a compaction step's 1 h writes, left out of the top level, are added once, at 1 h:
  // compaction 1,000×72 + 200×360 + 300×144 = 187,200; message 100×72 + 50×360 + 500×90 = 70,200
  assert.deepEqual(settled({ input_tokens: 100, output_tokens: 50, cache_creation_input_tokens: 500, iterations: [
    { type: 'compaction', input_tokens: 1000, output_tokens: 200, cache_creation_input_tokens: 300, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 300 } },
    { ...step, cache_creation_input_tokens: 500 }] }), [257_400n, 500, 300, []]);
  // the top level's 1 h (1,000, its message step) and the compaction step's own 1 h (500), left out
  // of it, are 1,500 at 1 h; the message step without a breakdown is moved to 1 h:
  // compaction 1,000×72 + 200×360 + 500×144 = 216,000; message 100×72 + 50×360 + 1,000×144 = 169,200
  assert.deepEqual(settled({ input_tokens: 100, output_tokens: 50, cache_creation_input_tokens: 1000,
    cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 }, iterations: [
      { type: 'compaction', input_tokens: 1000, output_tokens: 200, cache_creation_input_tokens: 500, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 500 } },
      step] }), [385_200n, 0, 1500, []]);
});

test('output above max_tokens × steps is clamped in the iterations too, in order: the excess is never charged; a compaction summary is outside the bound', async () => {
  const { UsageTally } = await import('@tollgate/anthropic');
  const settled = (usage: Record<string, unknown>, maxOutputTokens: number, outputBounds: Record<string, number> = { compaction: 1000 }) => {
    const tally = new UsageTally();
    tally.add(usage);
    const s = fullSettlement({ resolved, version, holdMicros: 10n ** 12n, maxOutputTokens, outputBounds }, outcome({ usage: tally.usage(), report: { tally, model: null, stopReason: 'end_turn', outputSeen: true } }));
    return [s.cost, s.quantities.output, s.iterations.map((i) => i.quantities.output), s.anomalies];
  };
  // one step reporting 5,000 against max_tokens 100: 10×72 + 100×360 = 36,720 (was 1,800,720)
  assert.deepEqual(settled({ input_tokens: 10, output_tokens: 100, iterations: [{ type: 'message', input_tokens: 10, output_tokens: 5000 }] }, 100),
    [36_720n, 100, [100], ['output_over_max_tokens']]);
  // two steps of 80 against 100 (max_tokens 50 × 2 steps): 80 and 20; 20×72 + 100×360
  assert.deepEqual(settled({ input_tokens: 20, output_tokens: 160, iterations: [
    { type: 'message', input_tokens: 10, output_tokens: 80 }, { type: 'message', input_tokens: 10, output_tokens: 80 }] }, 100),
  [37_440n, 100, [80, 20], ['output_over_max_tokens']]);
  // a compaction's summary has its own bound, the max_tokens the hold priced it at (1,000), beside
  // the step's: 800 and 1,000 are charged whole, 50,000×72 + 800×360 + 5,000×72 + 1,000×360
  assert.deepEqual(settled({ input_tokens: 5000, output_tokens: 1000, iterations: [
    { type: 'compaction', input_tokens: 50_000, output_tokens: 800 }, { type: 'message', input_tokens: 5000, output_tokens: 1000 }] }, 1000),
  [4_608_000n, 1800, [800, 1000], []]);
  // a 3,000-token summary and a 4,000-token step are each clamped to 1,000 (a summary above what
  // the hold priced was charged up to the hold, a breaker's HIGH): 3,600,000 + 360,000 + 360,000 + 360,000
  assert.deepEqual(settled({ input_tokens: 5000, output_tokens: 4000, iterations: [
    { type: 'compaction', input_tokens: 50_000, output_tokens: 3000 }, { type: 'message', input_tokens: 5000, output_tokens: 4000 }] }, 1000),
  [4_680_000n, 2000, [1000, 1000], ['output_over_max_tokens']]);
  // a step labelled compaction on a request that cannot compact is under the ceiling like any
  // other (a breaker's: 5,000 "compaction" tokens on max_tokens 100 were charged up to the hold):
  // 100 in order, the first step keeps it, the second 0; 110×72 + 100×360
  assert.deepEqual(settled({ input_tokens: 100, output_tokens: 100, iterations: [
    { type: 'compaction', input_tokens: 10, output_tokens: 5000 }, { type: 'message', input_tokens: 100, output_tokens: 100 }] }, 100, {}),
  [43_920n, 100, [100, 0], ['output_over_max_tokens']]);
  // an advisor's answer on a request with an advisor tool is outside the executor's ceiling: nine
  // steps of 100 (max_tokens 100 × 10 steps) and an advisor of 500 at its own model, all charged
  assert.deepEqual(settled({ input_tokens: 900, output_tokens: 900, iterations: [
    ...Array.from({ length: 9 }, () => ({ type: 'message', input_tokens: 100, output_tokens: 100 })),
    { type: 'advisor_message', model: 'claude-sonnet-4-5', input_tokens: 0, output_tokens: 500 }] }, 1000, { [advisorBoundKey(resolved.model.id)]: 4096 }),
  [64_800n + 324_000n + 180_000n, 1400, [...Array.from({ length: 9 }, () => 100), 500], []]);
  // …up to what the hold priced for them (max_uses × each call's bound): three answers of 4,096
  // against 1 × 4,096 keep the first; 300×72 + 4,096×360
  assert.deepEqual(settled({ input_tokens: 300, output_tokens: 0, iterations: Array.from({ length: 3 }, () =>
    ({ type: 'advisor_message', model: 'claude-sonnet-4-5', input_tokens: 100, output_tokens: 4096 })) }, 1000, { [advisorBoundKey(resolved.model.id)]: 4096 }),
  [21_600n + 1_474_560n, 4096, [4096, 0, 0], ['output_over_max_tokens']]);
  // each advisor model has its own bound: output held at haiku's rate (10 × 64,000) is not charged
  // at sonnet's, whose tool allows 1 token (a breaker's: 640,001 tokens charged at the dear model)
  const haiku = resolveModel(version.catalog, 'claude-haiku-4-5')!.model.id;
  assert.deepEqual(settled({ input_tokens: 100, output_tokens: 0, iterations: [
    { type: 'advisor_message', model: 'claude-sonnet-4-5', input_tokens: 100, output_tokens: 640_001 }] }, 1000,
  { [advisorBoundKey(haiku)]: 640_000, [advisorBoundKey(resolved.model.id)]: 1 }),
  [7_200n + 360n, 1, [1], ['output_over_max_tokens']]);
});

test('an advisor answered by one of its model\'s catalog fallback_models draws on that advisor\'s bound, as the hold priced it', async () => {
  const { UsageTally } = await import('@tollgate/anthropic');
  const { parseCatalog } = await import('@tollgate/pricing');
  // cny with haiku-4-5 falling back to opus-4-6 (input 300, output 1,500 µc per token)
  const doc = structuredClone(loadCatalogFile(bundledCatalogPath('cny')).document) as { models: Array<Record<string, unknown>> };
  doc.models.find((m) => m['id'] === 'claude-haiku-4-5-20251001')!['fallback_models'] = ['claude-opus-4-6'];
  const v = priceVersion(parseCatalog(doc, 'haiku falls back'));
  const haiku = resolveModel(v.catalog, 'claude-haiku-4-5')!.model.id;
  const tally = new UsageTally();
  tally.add({ input_tokens: 100, output_tokens: 0, iterations: [
    { type: 'advisor_message', model: 'claude-opus-4-6', input_tokens: 100, output_tokens: 3000 },
    { type: 'advisor_message', model: 'claude-opus-4-6', input_tokens: 100, output_tokens: 3000 }] });
  const s = fullSettlement({ resolved: resolveModel(v.catalog, 'claude-sonnet-4-5')!, version: v, holdMicros: 10n ** 12n, maxOutputTokens: 1000, outputBounds: { [advisorBoundKey(haiku)]: 3000 } },
    outcome({ usage: tally.usage(), report: { tally, model: null, stopReason: 'end_turn', outputSeen: true } }));
  // a haiku advisor of 3,000 answered by opus-4-6: 100 × 300 + 3,000 × 1,500, and the second call
  // is beyond the one call held: 100 × 300 (the first was cut to 0 as no tool's: 60,000)
  assert.deepEqual([s.cost, s.iterations.map((i) => i.quantities.output), s.anomalies], [4_560_000n, [3000, 0], ['output_over_max_tokens']]);
});

test('server-tool uses of a unit no tool of the request enables are clamped to 0 (the hold priced none), flagged units_over_max_uses', async () => {
  const { UsageTally } = await import('@tollgate/anthropic');
  const tally = new UsageTally();
  tally.add({ input_tokens: 2000, output_tokens: 300, server_tool_use: { web_search_requests: 2, web_fetch_requests: 1 } });
  const report = { tally, model: null, stopReason: 'end_turn', outputSeen: true };
  // no tools: 2,000×72 + 300×360 = 252,000 (not + 2 × 240,000)
  const none = fullSettlement({ resolved, version, holdMicros: 10n ** 12n, maxUnits: {} }, outcome({ usage: tally.usage(), report }));
  assert.deepEqual([none.cost, none.anomalies, none.quantities.web_search_requests, none.quantities.web_fetch_requests], [252_000n, ['units_over_max_uses'], 0, 0]);
  // a web fetch tool enabled, no search tool: the fetch is kept (0 µc each here), the searches go
  const fetch = fullSettlement({ resolved, version, holdMicros: 10n ** 12n, maxUnits: { web_fetch_requests: 5 } }, outcome({ usage: tally.usage(), report }));
  assert.deepEqual([fetch.cost, fetch.quantities.web_search_requests, fetch.quantities.web_fetch_requests], [252_000n, 0, 1]);
});

/** A request of `account` (hold bound 200,000 µc) answered with `usage` (100,800 µc), settled through `settle`. */
async function settleOne(balances: BalanceStore, account: string): Promise<{ published: ConsumedEvent[]; errors: unknown[]; cost: string; requestId: string }> {
  const log = new MemoryLog();
  const published: ConsumedEvent[] = [];
  await log.subscribe({ group: 'watch', topics: ['usage'], handler: async (events) => { published.push(...events); } });
  const requestId = `req-${randomUUID()}`;
  const deps = { balances, log, holdTtlMs: 60_000, gatewayId: 'gw-test' } as unknown as GatewayDeps;
  const caller = { account: { id: account }, key: { id: 'key-1' } } as unknown as KeyEntry;
  const m: Metered = { requestId, ts: Date.now(), startedAt: performance.now(), caller, resolved, stream: false, holdMicros: 200_000n, version };
  const errors: unknown[] = [];
  const { event, publish } = await settle(deps, m, outcome({}), (err) => errors.push(err));
  const publication = publish();
  assert.equal(publication.refused, undefined);
  await publication.done;
  await log.drain();
  return { published, errors, cost: event.cost_micros, requestId };
}

/**
 * An account granted 1,000,000 µc on a memory store, a request of it holding 200,000 µc, and
 * that request settled with `usage` (100,800 µc) through `settle` on a MemoryLog whose usage
 * topic `published` watches.
 */
async function heldAndSettled() {
  const balances = new MemoryBalanceStore();
  const account = `acct-${randomUUID()}`;
  await balances.applyLedger({ type: 'ledger', event_id: `g-${randomUUID()}`, ts: Date.now(), account_id: account, kind: 'grant', amount_micros: '1000000', reference: 'r' });
  const requestId = `req-${randomUUID()}`;
  assert.equal((await balances.hold({ holdId: requestId, accountId: account, keyId: 'key-1', amount: 200_000n, ttlMs: 60_000 })).ok, true);
  const log = new MemoryLog();
  const published: ConsumedEvent[] = [];
  await log.subscribe({ group: 'watch', topics: ['usage'], handler: async (events) => { published.push(...events); } });
  const deps = { balances, log, holdTtlMs: 60_000, gatewayId: 'gw-test' } as unknown as GatewayDeps;
  const caller = { account: { id: account }, key: { id: 'key-1' } } as unknown as KeyEntry;
  const m: Metered = { requestId, ts: Date.now(), startedAt: performance.now(), caller, resolved, stream: false, holdMicros: 200_000n, version };
  const errors: unknown[] = [];
  const { event, publish } = await settle(deps, m, outcome({}), (err) => errors.push(err));
  return { balances, account, requestId, log, published, errors, event, publish };
}

test('settle: publish() resolves once the event is published and the hold shrunk to the cost (200,000 → 100,800 µc held)', async () => {
  const { balances, account, requestId, log, published, errors, event, publish } = await heldAndSettled();
  assert.equal(event.cost_micros, '100800');
  const publication = publish();
  assert.equal(publication.refused, undefined, 'written ahead');
  await publication.done;
  assert.deepEqual(await balances.get(account), { balance: 1_000_000n, held: 100_800n, available: 899_200n });
  await log.drain();
  assert.deepEqual(published.map((e) => [e.event.event_id, (e.event as { cost_micros?: string }).cost_micros]), [[requestId, '100800']]);
  assert.deepEqual(errors, []);
});

test('settle: a hold that cannot be shrunk (Redis away) is reported once, and the usage event is still published', async () => {
  // a client that never connects: every command fails at once (no offline queue)
  const redis = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  try {
    const { published, errors, cost, requestId } = await settleOne(new RedisBalanceStore({ redis, prefix: `t:${randomUUID()}:` }), `acct-${randomUUID()}`);
    assert.equal(cost, '100800');
    assert.equal(errors.length, 1);
    assert.deepEqual(published.map((e) => [e.event.event_id, (e.event as { cost_micros?: string }).cost_micros]), [[requestId, '100800']]);
  } finally {
    redis.disconnect();
  }
});

test('unrecorded usage: a publication whose write ahead is refused says so at once, publishes nothing and releases the hold (200,000 µc held → 0, balance untouched)', async () => {
  // Kind: any append the log refuses inside the call (a DATA_DIR lock taken over, a spool that
  // cannot be written, a closed log): the caller must learn it before the answer leaves.
  const { balances, account, log, published, errors, publish } = await heldAndSettled();
  await log.close(); // every append is refused from now on
  const publication = publish();
  assert.equal(publication.refused?.name, 'NotPublishedError');
  await publication.done;
  assert.deepEqual(await balances.get(account), { balance: 1_000_000n, held: 0n, available: 1_000_000n });
  assert.deepEqual(published, []);
  assert.deepEqual(errors, []);
});
