// Hand-built log events for tests that feed the pipeline directly (poison, replay): what a
// gateway or control process would publish, with every field overridable — including to
// values no edge accepts, which is the point of a poison test.
import { toV2, type LedgerEvent, type UsageEvent, type UsageEventV1, type UsageEventV2 } from '@tollgate/events';

/** The v1 flat token fields (`input_tokens`, …) beside a usage event of either version, for tests written against v1. */
export type FlatUsage = UsageEventV2 & {
  input_tokens: number; output_tokens: number; cache_read_tokens: number; cache_write_5m_tokens: number; cache_write_1h_tokens: number;
};

/** A usage event of either version as v2 (`toV2`) with the token classes also under their v1 names. */
export function flatUsage(e: UsageEvent): FlatUsage {
  const v2 = toV2(e);
  const q = v2.quantities;
  return {
    ...v2, input_tokens: q.input, output_tokens: q.output, cache_read_tokens: q.cache_read,
    cache_write_5m_tokens: q.cache_write_5m, cache_write_1h_tokens: q.cache_write_1h,
  };
}

/**
 * A valid usage event of `accountId` on haiku-4-5 (1 input, 1 output token, cost `0` µc unless
 * overridden). `o` replaces any field, typed loosely so a test can put in what no type allows.
 */
export function usageEvent(eventId: string, accountId: string, o: Partial<Record<keyof UsageEventV1, unknown>> = {}): UsageEvent {
  return {
    type: 'usage', event_id: eventId, ts: Date.now(), account_id: accountId, key_id: 'key_direct',
    model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5', upstream_model: 'claude-haiku-4-5',
    input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0,
    cost_micros: '0', status: 'ok', http_status: 200, latency_ms: 5, ttft_ms: null, stream: false,
    upstream_request_id: null, gateway_id: 'test', ...o,
  } as UsageEvent;
}

/** A credit grant of `amount` µc (decimal text, any value) under `reference`, as control publishes it. */
export function grantEvent(accountId: string, reference: string, amount: string): LedgerEvent {
  return {
    type: 'ledger', event_id: `credit:${accountId}:${reference}`, ts: Date.now(), account_id: accountId,
    kind: 'grant', amount_micros: amount, reference,
  };
}
