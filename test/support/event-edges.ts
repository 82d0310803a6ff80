// Event values at and past every bound the event shapes have: the well-formed usage (v1, v2) and
// ledger events, each field of each set to every edge value (or removed), and the nested
// collections past their bounds. decodeEvent's fast path is held to the schema on them
// (libs/events/test/decode-fast.test.ts); the warehouse holds its column checks to decodeEvent
// on them (libs/warehouse/test/decoded-rows.test.ts).
import { DIMENSION_KEYS } from '@tollgate/pricing';
import {
  MAX_EVENT_ID_CHARS, MAX_ITERATIONS, MAX_LABEL_CHARS, MAX_NAMES, MAX_REFERENCE_CHARS, MAX_TEXT_CHARS, MAX_USAGE_EPOCH_MS,
  type LedgerEvent, type UsageEventV1, type UsageEventV2, type UsageQuantities,
} from '@tollgate/events';

const UINT32_MAX = 2 ** 32 - 1;
const q = (o: Partial<Record<string, number>> = {}) => ({ ...Object.fromEntries(DIMENSION_KEYS.map((k) => [k, 0])), ...o }) as UsageQuantities;

export const V1: UsageEventV1 = {
  type: 'usage', event_id: 'req_v1', ts: Date.UTC(2026, 9, 1), account_id: 'acc_1', key_id: 'key_1',
  model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001', upstream_model: 'claude-haiku-4-5-20251001',
  input_tokens: 10, output_tokens: 5, cache_read_tokens: 1000, cache_write_5m_tokens: 7, cache_write_1h_tokens: 9,
  cost_micros: '4116', status: 'usage_anomaly', http_status: 200, latency_ms: 12, ttft_ms: null, stream: false,
  upstream_request_id: null, gateway_id: 'gw0', upstream_id: 'up1', attempts: 2, anomalies: ['cache_breakdown_mismatch'],
};

export const V2: UsageEventV2 = {
  type: 'usage', v: 2, event_id: 'req_v2', ts: Date.UTC(2026, 10, 1), account_id: 'acc_1', key_id: 'key_1',
  model: 'claude-sonnet-4-5', catalog_model: 'claude-sonnet-4-5-20250929', upstream_model: 'claude-sonnet-4-5-20250929',
  served_model: 'claude-sonnet-4-5-20250929',
  quantities: q({ input: 2000, output: 300, web_search_requests: 3 }),
  iterations: [{ type: 'message', model: 'claude-sonnet-4-5-20250929', catalog_model: null, quantities: q({ input: 2000, output: 300 }), cost_micros: '252000' }],
  service_tier: 'standard', inference_geo: 'global', speed: null, stop_reason: 'end_turn', thinking_tokens: 120,
  cost_micros: '972000', upstream_cost_micros: '40500', upstream_currency: 'USD', price_version: '0123456789ab',
  price_list: 'default', unit_prices: { input: '72000000', output: '360000000.5', web_search_requests: '240000' },
  tier: null, multipliers: ['long_context'], unpriced: ['model:x'],
  status: 'ok', http_status: 200, latency_ms: 900, ttft_ms: 200, stream: true, upstream_request_id: 'req_up', gateway_id: 'gw1',
};

export const LEDGER: LedgerEvent[] = (['grant', 'top_up', 'refund', 'adjustment'] as const).map((kind) => ({
  type: 'ledger', kind, event_id: `credit:acc_1:${kind}`, ts: Date.UTC(2026, 10, 2), account_id: 'acc_1', amount_micros: '5000000', reference: `ref-${kind}`,
}));

/** Values at and past every bound, of every wrong type. */
const TEXTS = ['', 'a', 'x'.repeat(MAX_LABEL_CHARS), 'x'.repeat(MAX_LABEL_CHARS + 1), 'x'.repeat(MAX_REFERENCE_CHARS), 'x'.repeat(MAX_REFERENCE_CHARS + 1),
  'x'.repeat(MAX_TEXT_CHARS), 'x'.repeat(MAX_TEXT_CHARS + 1), 'x'.repeat(MAX_TEXT_CHARS + 8), 'x'.repeat(MAX_TEXT_CHARS + 9),
  'x'.repeat(MAX_EVENT_ID_CHARS), 'x'.repeat(MAX_EVENT_ID_CHARS + 1), 'tab\there', 'del\u007f', 'c1\u0085', 'lone\ud800', 'pair\ud83d\ude00', 'ünï',
  'USD', 'usd', 'US', '0123456789ab'];
const NUMBERS = [0, -0, 1, -1, 1.5, 255, 256, 65535, 65536, UINT32_MAX, UINT32_MAX + 1, Date.UTC(2299, 11, 31), Date.UTC(2299, 11, 31) + 1, MAX_USAGE_EPOCH_MS, MAX_USAGE_EPOCH_MS + 1,
  Number.MAX_SAFE_INTEGER, 2 ** 53, NaN, Infinity, -Infinity];
const MONEY = ['0', '-0', '1', '-1', '01', '+1', ' 1', '1 ', '1e3', '1.5', '', '9007199254740991', '9007199254740992', '-9007199254740991',
  '-9007199254740992', '999999999999999', '1000000000000000', '-999999999999999', '99999999999999999999', '72000000', '0.5', '00.5', '.5',
  'x'.repeat(65), '1'.repeat(64), '1'.repeat(65)];
const OTHERS: unknown[] = [null, undefined, true, false, {}, [], ['a'], [''], 'ok', 'usage_anomaly', 'OK', 'grant', 'top_up', 'refund',
  'adjustment', 'usage', 'ledger', 1n, 2, '2', { input: 1 }, Array.from({ length: 33 }, () => 'a'), Array.from({ length: MAX_NAMES + 1 }, () => 'a'),
  Array.from({ length: MAX_NAMES }, () => 'a')];
export const VALUES: unknown[] = [...TEXTS, ...NUMBERS, ...MONEY, ...OTHERS];

export const DELETE = Symbol('delete');

export function withField(base: object, path: Array<string | number>, value: unknown): unknown {
  const copy = structuredClone(base) as Record<string | number, unknown>;
  let at = copy;
  for (const p of path.slice(0, -1)) at = at[p] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (value === DELETE) delete at[last];
  else at[last] = value;
  return copy;
}

export function fieldPaths(v: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (typeof v !== 'object' || v === null) return [];
  const out: Array<Array<string | number>> = [];
  for (const [k, child] of Object.entries(v)) {
    const p = [...prefix, Array.isArray(v) ? Number(k) : k];
    out.push(p, ...fieldPaths(child, p));
  }
  return out;
}

/**
 * Every edge case: each field of V1, V2 and every ledger kind removed or set to each of VALUES,
 * then the nested collections past their bounds and odd containers (over 10,000 values).
 */
export function* edgeEvents(): Generator<unknown> {
  for (const base of [V1, V2, ...LEDGER]) {
    for (const path of fieldPaths(base)) {
      yield withField(base, path, DELETE);
      for (const value of VALUES) yield withField(base, path, value);
    }
  }
  // the nested collections past their bounds, and odd containers
  yield { ...V2, iterations: Array.from({ length: MAX_ITERATIONS }, () => V2.iterations[0]) };
  yield { ...V2, iterations: Array.from({ length: MAX_ITERATIONS + 1 }, () => V2.iterations[0]) };
  yield { ...V2, unit_prices: Object.fromEntries(Array.from({ length: MAX_NAMES }, (_, i) => [`n${i}`, '1'])) };
  yield { ...V2, unit_prices: Object.fromEntries(Array.from({ length: MAX_NAMES + 1 }, (_, i) => [`n${i}`, '1'])) };
  yield { ...V2, unit_prices: JSON.parse('{"__proto__": "1"}') };
  yield { ...V2, unit_prices: { '': '1' } };
  yield { ...V2, unit_prices: { ['x'.repeat(MAX_LABEL_CHARS + 1)]: '1' } };
  yield { ...V2, v: undefined };
  yield { ...V1, v: 1 };
  yield Object.assign(Object.create(null), V1);
  yield new (class E { constructor() { Object.assign(this, V1); } })();
  // containers JSON.parse would not make, at each depth of a v2 event: the decoder may keep a
  // value's own objects only where they are exactly what the schema gives
  const json = () => JSON.parse(JSON.stringify(V2)) as Record<string, any>;
  const bare = (o: object) => Object.assign(Object.create(null), o) as Record<string, any>;
  class Listed<T> extends Array<T> {}
  yield bare(json());
  for (const field of ['quantities', 'unit_prices'] as const) yield { ...json(), [field]: bare(V2[field]) };
  yield { ...json(), iterations: [bare(V2.iterations[0]!)] };
  yield { ...json(), iterations: [{ ...V2.iterations[0]!, quantities: bare(V2.iterations[0]!.quantities) }] };
  for (const field of ['multipliers', 'unpriced', 'iterations'] as const) yield { ...json(), [field]: Listed.from(json()[field] as unknown[]) };
  yield { ...json(), anomalies: Listed.from(['client_gone']) };
  // several iterations, only one of them (first, middle, last) with something to drop or fill
  for (const k of [0, 1, 2]) {
    const v = json();
    v['iterations'] = [0, 1, 2].map((i) => ({ ...v['iterations'][0], cost_micros: String(i) }));
    v['iterations'][k].added_later = true;
    yield v;
    const w = json();
    w['iterations'] = [0, 1, 2].map((i) => ({ ...w['iterations'][0], quantities: { ...w['iterations'][0].quantities }, cost_micros: String(i) }));
    delete w['iterations'][k].quantities.cache_read;
    yield w;
  }
  for (const odd of [null, undefined, 1, 'usage', [], [V1], {}]) yield odd;
}
