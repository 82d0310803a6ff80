// The consumer boundary for usage events of both versions: every version 2 field at and past
// its bound (each failure names the field), version 1 still accepted and normalised by toV2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DIMENSION_KEYS } from '@tollgate/pricing';
import {
  decodeEvent, toV2, MAX_CATALOG_BYTES, MAX_ITERATIONS, MAX_LABEL_CHARS, MAX_MONEY_MICROS, MAX_NAMES, MAX_TEXT_CHARS,
  type UsageEventV1, type UsageEventV2,
} from '@tollgate/events';

const UINT32_MAX = 2 ** 32 - 1;

const q = (o: Partial<Record<string, number>> = {}) => ({
  input: 0, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0,
  web_search_requests: 0, web_fetch_requests: 0, code_execution_seconds: 0, ...o,
});

// A fallback request on cny sonnet-4-5 with 3 web searches (2,000 × 72 + 300 × 360 + 3 × 240,000 = 972,000 µc).
const V2: UsageEventV2 = {
  type: 'usage', v: 2, event_id: 'req_v2', ts: Date.UTC(2026, 10, 1), account_id: 'acc_1', key_id: 'key_1',
  model: 'claude-sonnet-4-5', catalog_model: 'claude-sonnet-4-5-20250929', upstream_model: 'claude-sonnet-4-5-20250929',
  served_model: 'claude-sonnet-4-5-20250929',
  quantities: q({ input: 2000, output: 300, web_search_requests: 3 }),
  iterations: [{ type: 'message', model: 'claude-sonnet-4-5-20250929', catalog_model: 'claude-sonnet-4-5-20250929', quantities: q({ input: 2000, output: 300 }), cost_micros: '252000' }],
  service_tier: 'standard', inference_geo: 'global', speed: null, stop_reason: 'end_turn', thinking_tokens: 120,
  cost_micros: '972000', upstream_cost_micros: '40500', upstream_currency: 'USD', price_version: '0123456789ab',
  price_list: 'default', unit_prices: { input: '72000000', output: '360000000', web_search_requests: '240000' },
  tier: null, multipliers: [], unpriced: [],
  status: 'ok', http_status: 200, latency_ms: 900, ttft_ms: 200, stream: true, upstream_request_id: 'req_up', gateway_id: 'gw1',
};

const V1: UsageEventV1 = {
  type: 'usage', event_id: 'req_v1', ts: Date.UTC(2026, 9, 1), account_id: 'acc_1', key_id: 'key_1',
  model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001', upstream_model: 'claude-haiku-4-5-20251001',
  input_tokens: 10, output_tokens: 5, cache_read_tokens: 1000, cache_write_5m_tokens: 7, cache_write_1h_tokens: 9,
  cost_micros: '4116', status: 'usage_anomaly', http_status: 200, latency_ms: 12, ttft_ms: null, stream: false,
  upstream_request_id: null, gateway_id: 'gw0', anomalies: ['cache_breakdown_mismatch'],
};

function decodes(e: unknown): unknown {
  const r = decodeEvent(e);
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r.event;
}

function refuses(e: unknown, field: string): void {
  const r = decodeEvent(e);
  assert.equal(r.ok, false, `${field} should be refused: ${JSON.stringify(e).slice(0, 200)}`);
  // the reason names the field first (`path: problem`)
  if (!r.ok) assert.ok(r.reason.startsWith(`${field}:`) || r.reason.startsWith(`${field}.`), `${field}: ${r.reason}`);
}

test('usage v2: a well-formed event decodes unchanged; unknown fields are dropped', () => {
  assert.deepEqual(decodes(V2), V2);
  assert.deepEqual(decodes({ ...V2, added_by_a_newer_gateway: 1 }), V2);
});

test('usage v2: every dimension of quantities is a UInt32; a missing one is 0; a key that is no dimension is dropped', () => {
  for (const k of DIMENSION_KEYS) {
    assert.equal((decodes({ ...V2, quantities: q({ [k]: UINT32_MAX }) }) as UsageEventV2).quantities[k], UINT32_MAX);
    for (const bad of [-1, UINT32_MAX + 1, 1.5, '1', null]) refuses({ ...V2, quantities: q({ [k]: bad as number }) }, `quantities.${k}`);
  }
  const partial = { ...V2.quantities } as Record<string, number>;
  delete partial['code_execution_seconds'];
  assert.equal((decodes({ ...V2, quantities: { ...partial, brand_new_unit: 4 } }) as UsageEventV2).quantities.code_execution_seconds, 0);
  assert.equal('brand_new_unit' in (decodes({ ...V2, quantities: { ...partial, brand_new_unit: 4 } }) as UsageEventV2).quantities, false);
  refuses({ ...V2, quantities: [] }, 'quantities');
  refuses({ ...V2, quantities: undefined }, 'quantities');
});

test('usage v2: iterations hold at most MAX_ITERATIONS entries, each with bounded text, quantities and money', () => {
  const it = V2.iterations[0]!;
  decodes({ ...V2, iterations: [] });
  decodes({ ...V2, iterations: Array.from({ length: MAX_ITERATIONS }, () => it) });
  refuses({ ...V2, iterations: Array.from({ length: MAX_ITERATIONS + 1 }, () => it) }, 'iterations');
  refuses({ ...V2, iterations: undefined }, 'iterations');
  decodes({ ...V2, iterations: [{ ...it, catalog_model: null }] });
  refuses({ ...V2, iterations: [{ ...it, type: '' }] }, 'iterations.0.type');
  refuses({ ...V2, iterations: [{ ...it, type: 'x'.repeat(MAX_LABEL_CHARS + 1) }] }, 'iterations.0.type');
  refuses({ ...V2, iterations: [{ ...it, model: 'x'.repeat(MAX_TEXT_CHARS + 1) }] }, 'iterations.0.model');
  refuses({ ...V2, iterations: [{ ...it, model: 'a\u0000b' }] }, 'iterations.0.model');
  refuses({ ...V2, iterations: [{ ...it, quantities: q({ output: -1 }) }] }, 'iterations.0.quantities.output');
  refuses({ ...V2, iterations: [{ ...it, cost_micros: '-1' }] }, 'iterations.0.cost_micros');
  refuses({ ...V2, iterations: [{ ...it, cost_micros: (MAX_MONEY_MICROS + 1n).toString() }] }, 'iterations.0.cost_micros');
});

test('usage v2: money is integer µc text within 2^53 − 1; upstream cost may be null, its currency ISO 4217', () => {
  decodes({ ...V2, cost_micros: MAX_MONEY_MICROS.toString(), upstream_cost_micros: MAX_MONEY_MICROS.toString() });
  for (const bad of ['-1', '1.5', '1e3', '', (MAX_MONEY_MICROS + 1n).toString(), 5]) {
    refuses({ ...V2, cost_micros: bad }, 'cost_micros');
    refuses({ ...V2, upstream_cost_micros: bad }, 'upstream_cost_micros');
  }
  decodes({ ...V2, upstream_cost_micros: null, upstream_currency: null });
  for (const bad of ['usd', 'US', 'USDT', '']) refuses({ ...V2, upstream_currency: bad }, 'upstream_currency');
});

test('usage v2: served model, conditions, tier and price version are bounded text or null', () => {
  decodes({ ...V2, served_model: null, service_tier: null, inference_geo: null, speed: null, stop_reason: null, tier: null, thinking_tokens: null });
  refuses({ ...V2, served_model: 'x'.repeat(MAX_TEXT_CHARS + 1) }, 'served_model');
  refuses({ ...V2, served_model: '\ud800' }, 'served_model');
  for (const f of ['service_tier', 'inference_geo', 'speed', 'stop_reason', 'tier'] as const) {
    decodes({ ...V2, [f]: 'x'.repeat(MAX_LABEL_CHARS) });
    refuses({ ...V2, [f]: 'x'.repeat(MAX_LABEL_CHARS + 1) }, f);
    refuses({ ...V2, [f]: 'a\nb' }, f);
    refuses({ ...V2, [f]: 7 }, f);
  }
  decodes({ ...V2, thinking_tokens: UINT32_MAX });
  refuses({ ...V2, thinking_tokens: -1 }, 'thinking_tokens');
  refuses({ ...V2, thinking_tokens: UINT32_MAX + 1 }, 'thinking_tokens');
  refuses({ ...V2, price_version: '' }, 'price_version');
  refuses({ ...V2, price_version: 'x'.repeat(MAX_LABEL_CHARS + 1) }, 'price_version');
  refuses({ ...V2, price_list: '' }, 'price_list');
  refuses({ ...V2, price_list: 'x'.repeat(MAX_TEXT_CHARS + 1) }, 'price_list');
});

test('usage v2: unit prices are exact non-negative decimals; names lists are bounded', () => {
  decodes({ ...V2, unit_prices: { input: '79200000', output: '0.5', cache_read: '0' } });
  for (const bad of ['-1', '1e3', '.5', '1.', '01', ' 1', '1'.repeat(65), 72]) refuses({ ...V2, unit_prices: { input: bad } }, 'unit_prices');
  refuses({ ...V2, unit_prices: Object.fromEntries(Array.from({ length: MAX_NAMES + 1 }, (_, i) => [`d${i}`, '1'])) }, 'unit_prices');
  decodes({ ...V2, multipliers: ['batch', 'us_geo'], unpriced: ['code_execution_seconds', 'speed:fast', `model:${'m'.repeat(MAX_TEXT_CHARS)}`] });
  refuses({ ...V2, multipliers: Array.from({ length: MAX_NAMES + 1 }, () => 'batch') }, 'multipliers');
  refuses({ ...V2, multipliers: [''] }, 'multipliers.0');
  refuses({ ...V2, unpriced: Array.from({ length: MAX_NAMES + 1 }, () => 'x') }, 'unpriced');
  refuses({ ...V2, unpriced: ['a\u0007'] }, 'unpriced.0');
});

test('usage v2: the version 1 fields it shares keep their bounds', () => {
  refuses({ ...V2, event_id: '' }, 'event_id');
  refuses({ ...V2, ts: -1 }, 'ts');
  refuses({ ...V2, account_id: '' }, 'account_id');
  refuses({ ...V2, status: 'fine' }, 'status');
  refuses({ ...V2, http_status: 70000 }, 'http_status');
  refuses({ ...V2, latency_ms: UINT32_MAX + 1 }, 'latency_ms');
  refuses({ ...V2, stream: 'yes' }, 'stream');
  refuses({ ...V2, anomalies: Array.from({ length: 33 }, () => 'x') }, 'anomalies');
});

test('usage event of an unknown version is refused by name, not guessed at', () => {
  for (const v of [1, 3, '2', null]) refuses({ ...V2, v }, 'v');
});

test('usage v1 is still accepted as it is, and toV2 maps it to version 2 with its totals kept', () => {
  assert.deepEqual(decodes(V1), V1);
  // a version 1 event with version 2 fields mixed in is still version 1 (they are dropped)
  assert.deepEqual(decodes({ ...V1, quantities: q({ input: 5 }) }), V1);
  refuses({ ...V1, input_tokens: -1 }, 'input_tokens');
  const v2 = toV2(V1);
  assert.deepEqual(v2, {
    type: 'usage', v: 2, event_id: 'req_v1', ts: V1.ts, account_id: 'acc_1', key_id: 'key_1',
    model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001', upstream_model: 'claude-haiku-4-5-20251001',
    served_model: null, quantities: q({ input: 10, output: 5, cache_read: 1000, cache_write_5m: 7, cache_write_1h: 9 }),
    iterations: [], service_tier: null, inference_geo: null, speed: null, stop_reason: null, thinking_tokens: null,
    cost_micros: '4116', upstream_cost_micros: null, upstream_currency: null, price_version: 'v1', price_list: 'default',
    unit_prices: {}, tier: null, multipliers: [], unpriced: [],
    status: 'usage_anomaly', http_status: 200, latency_ms: 12, ttft_ms: null, stream: false, upstream_request_id: null,
    gateway_id: 'gw0', anomalies: ['cache_breakdown_mismatch'],
  });
  // the normalised event is itself a valid version 2 event
  assert.deepEqual(decodes(v2), v2);
  assert.equal(toV2(V2), V2);
});

test('price_version events: a catalog content id, an effective time and a bounded catalog object', () => {
  const e = { type: 'price_version', event_id: 'price_version:0123456789ab:0', ts: 1, id: '0123456789ab', effective_at: 0, catalog: { version: 1 } };
  assert.deepEqual(decodes(e), e);
  refuses({ ...e, id: '0123456789AB' }, 'id');
  refuses({ ...e, id: 'v1' }, 'id');
  refuses({ ...e, effective_at: -1 }, 'effective_at');
  refuses({ ...e, catalog: [] }, 'catalog');
  refuses({ ...e, catalog: { notes: 'x'.repeat(MAX_CATALOG_BYTES) } }, 'catalog');
});
