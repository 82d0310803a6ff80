// Token usage as the gateway bills it. `TokenUsage` is the shape libs/pricing prices; keep the
// two in step.

import type { Usage } from './types.ts';
import { isRecord } from './record.ts';

export interface TokenUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite5m: number;
  cacheWrite1h: number;
}

export const ZERO_USAGE: Readonly<TokenUsage> = Object.freeze({
  input: 0,
  output: 0,
  cacheRead: 0,
  cacheWrite5m: 0,
  cacheWrite1h: 0,
});

/** A token count from the wire: anything but a non-negative safe integer counts as 0. */
function count(v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0;
}

/**
 * The billable token counts of a wire `usage` object.
 *
 * Cache writes: when the `cache_creation` breakdown is present it splits them into 5 m and 1 h.
 * When only `cache_creation_input_tokens` is present, all of it counts as 5 m (the default TTL,
 * and the cheaper rate). When both are present and the total exceeds the breakdown's sum — which
 * happens when a later cumulative `message_delta` raised the total without repeating the
 * breakdown — the excess counts as 5 m, so no token the upstream reported is dropped.
 *
 * Safe on any input: missing, null, negative or non-integer counts are 0.
 */
export function usageFromWire(u: Usage | null | undefined): TokenUsage {
  if (!isRecord(u)) return { ...ZERO_USAGE };
  const total = count(u.cache_creation_input_tokens);
  let cacheWrite5m = total;
  let cacheWrite1h = 0;
  const cc = u.cache_creation;
  if (isRecord(cc) && (cc.ephemeral_5m_input_tokens != null || cc.ephemeral_1h_input_tokens != null)) {
    cacheWrite5m = count(cc.ephemeral_5m_input_tokens);
    cacheWrite1h = count(cc.ephemeral_1h_input_tokens);
    const excess = total - cacheWrite5m - cacheWrite1h;
    if (excess > 0) cacheWrite5m += excess;
  }
  return {
    input: count(u.input_tokens),
    output: count(u.output_tokens),
    cacheRead: count(u.cache_read_input_tokens),
    cacheWrite5m,
    cacheWrite1h,
  };
}

/**
 * Merges a later wire usage into an earlier one, Anthropic's streaming rule: `message_delta`
 * usage is cumulative, so each field present (and not null) in the later object replaces the
 * earlier value; absent or null fields keep it. Nested objects (`cache_creation`,
 * `server_tool_use`) are replaced whole. Returns a new object; neither input is changed.
 */
export function mergeUsage(earlier: Usage, later: Usage): Usage {
  const merged: Usage = { ...earlier };
  for (const [key, value] of Object.entries(later)) {
    if (value !== undefined && value !== null) merged[key] = value;
  }
  return merged;
}

/** Usage of a non-streaming Messages response body; null when it is not a message with usage. */
export function usageFromMessage(json: unknown): TokenUsage | null {
  if (!isRecord(json) || json.type !== 'message' || !isRecord(json.usage)) return null;
  return usageFromWire(json.usage);
}
