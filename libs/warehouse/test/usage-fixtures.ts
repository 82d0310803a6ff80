// Usage events of both versions with hand-computed charges under the shipped cny catalog
// (µc per token: sonnet-4-5 input 72, output 360, web search 240,000 per search; sonnet-4-6
// input 180, output 900; haiku-4-5 input 24, output 120, cache read 2.4, cache write 5 m 30,
// 1 h 48) and upstream USD list prices (µ$ per token: sonnet 3 / 15, haiku 1 / 5, cache read
// 0.1×, 5 m write 1.25×, 1 h write 2× of input; $0.01 = 10,000 µ$ per search).

import type { UsageEventV1, UsageEventV2, UsageQuantities } from '@tollgate/events';

export const q = (o: Partial<UsageQuantities> = {}): UsageQuantities => ({
  input: 0, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0,
  web_search_requests: 0, web_fetch_requests: 0, code_execution_seconds: 0, ...o,
});

/** A version 2 event with everything a gateway fills in; `o` overrides. */
export function v2(o: Partial<UsageEventV2> & Pick<UsageEventV2, 'event_id' | 'ts' | 'account_id'>): UsageEventV2 {
  return {
    type: 'usage', v: 2, key_id: 'key_1',
    model: 'claude-sonnet-4-5', catalog_model: 'claude-sonnet-4-5-20250929', upstream_model: 'claude-sonnet-4-5-20250929',
    served_model: 'claude-sonnet-4-5-20250929', quantities: q(), iterations: [],
    service_tier: 'standard', inference_geo: 'global', speed: null, stop_reason: 'end_turn', thinking_tokens: null,
    cost_micros: '0', upstream_cost_micros: '0', upstream_currency: 'USD', price_version: 'v1', price_list: 'default',
    unit_prices: {}, tier: null, multipliers: [], unpriced: [],
    status: 'ok', http_status: 200, latency_ms: 800, ttft_ms: 150, stream: true, upstream_request_id: 'req_up', gateway_id: 'gw1',
    ...o,
  };
}

/** A version 1 event as the gateway wrote them before issue 7 (metering.ts `settle`). */
export function v1(o: Partial<UsageEventV1> & Pick<UsageEventV1, 'event_id' | 'ts' | 'account_id'>): UsageEventV1 {
  return {
    type: 'usage', key_id: 'key_1',
    model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001', upstream_model: 'claude-haiku-4-5-20251001',
    input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0,
    cost_micros: '0', status: 'ok', http_status: 200, latency_ms: 40, ttft_ms: 10, stream: false,
    upstream_request_id: 'req_up_v1', gateway_id: 'gw0',
    ...o,
  };
}

/**
 * Three searches on sonnet-4-5: 2,000 × 72 + 300 × 360 + 3 × 240,000 = 972,000 µc;
 * upstream 2,000 × 3 + 300 × 15 + 3 × 10,000 = 40,500 µ$.
 */
export function webSearch(eventId: string, ts: number, accountId: string, priceVersion: string): UsageEventV2 {
  return v2({
    event_id: eventId, ts, account_id: accountId, quantities: q({ input: 2000, output: 300, web_search_requests: 3 }),
    thinking_tokens: 40, cost_micros: '972000', upstream_cost_micros: '40500', price_version: priceVersion,
    unit_prices: { input: '72000000', output: '360000000', cache_read: '7200000', cache_write_5m: '90000000', cache_write_1h: '144000000', web_search_requests: '240000', web_fetch_requests: '0' },
  });
}

/**
 * US-only inference on sonnet-4-6: (1,000 × 180 + 200 × 900) × 1.1 = 396,000 µc;
 * upstream (1,000 × 3 + 200 × 15) × 1.1 = 6,600 µ$.
 */
export function usGeo(eventId: string, ts: number, accountId: string, priceVersion: string): UsageEventV2 {
  return v2({
    event_id: eventId, ts, account_id: accountId, model: 'claude-sonnet-4-6', catalog_model: 'claude-sonnet-4-6',
    upstream_model: 'claude-sonnet-4-6', served_model: 'claude-sonnet-4-6', inference_geo: 'us',
    quantities: q({ input: 1000, output: 200 }), cost_micros: '396000', upstream_cost_micros: '6600', price_version: priceVersion,
    unit_prices: { input: '198000000', output: '990000000', cache_read: '19800000', cache_write_5m: '247500000', cache_write_1h: '396000000', web_search_requests: '240000', web_fetch_requests: '0' },
    multipliers: ['us_geo'],
  });
}

/**
 * Batch on the vip list (0.5 × 0.8 = 0.4) on sonnet-4-5 with 30 s of code execution, which
 * has no price: 1,000 × 28.8 + 100 × 144 = 43,200 µc; upstream (1,000 × 3 + 100 × 15) × 0.5
 * = 2,250 µ$ (the list is the operator's own discount, not the upstream's).
 */
export function vipBatch(eventId: string, ts: number, accountId: string, priceVersion: string): UsageEventV2 {
  return v2({
    event_id: eventId, ts, account_id: accountId, service_tier: 'batch', stream: false,
    quantities: q({ input: 1000, output: 100, code_execution_seconds: 30 }), cost_micros: '43200', upstream_cost_micros: '2250',
    price_version: priceVersion, price_list: 'vip',
    unit_prices: { input: '28800000', output: '144000000', cache_read: '2880000', cache_write_5m: '36000000', cache_write_1h: '57600000', web_search_requests: '192000', web_fetch_requests: '0' },
    multipliers: ['batch'], unpriced: ['code_execution_seconds'],
  });
}

/**
 * Version 1 on haiku-4-5, every token class: 10 × 24 + 5 × 120 + 1,000 × 2.4 + 7 × 30 + 9 × 48
 * = 240 + 600 + 2,400 + 210 + 432 = 3,882 µc (no upstream cost recorded in version 1).
 */
export function haikuV1(eventId: string, ts: number, accountId: string): UsageEventV1 {
  return v1({
    event_id: eventId, ts, account_id: accountId, input_tokens: 10, output_tokens: 5, cache_read_tokens: 1000,
    cache_write_5m_tokens: 7, cache_write_1h_tokens: 9, cost_micros: '3882',
  });
}
