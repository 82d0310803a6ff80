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

/**
 * The largest token count Tollgate accepts from the wire: 2^32 − 1, what the warehouse stores
 * per class (UInt32). A larger value cannot be stored exactly, so it is no count at all.
 */
export const MAX_TOKEN_COUNT = 4_294_967_295;

/**
 * What can be wrong with the usage an upstream reports, one name per rule (README, "Money and
 * billing rules"). Recorded in the usage event's `anomalies` and counted by the metric
 * `tollgate_usage_anomalies_total{kind}`.
 * - `invalid_count`: a count that is not a non-negative safe integer ≤ `MAX_TOKEN_COUNT`
 *   (negative, fractional, NaN, 1e20, a string), or a required count (`output_tokens`; in a
 *   JSON message also `input_tokens`) missing or null. Ignored: the earlier value is kept.
 * - `count_decreased`: a report lower than an earlier one of the same message. Counters only
 *   grow, so the larger is kept.
 * - `duplicate_message_start`: a second `message_start`; its usage merges by max.
 * - `event_after_stop`: an event after `message_stop`; ignored.
 * - `malformed_event`: an SSE `data:` payload that is not a JSON object; ignored.
 * - `missing_message_stop`: the answer ended (`message_delta` with `stop_reason`) but
 *   `message_stop` never came; charged as complete.
 * - `no_usage`: a 2xx answer without readable usage (not JSON, no `usage`); charged 0.
 * - `cost_over_bound`: the cost came out above the request's hold, the proven upper bound;
 *   charged the hold.
 * - `cache_breakdown_mismatch`: a report's `cache_creation` breakdown does not add up to its own
 *   `cache_creation_input_tokens`; charged as the larger of the two readings.
 * - `error_after_answer`: an SSE `error` event after the answer was complete (a final
 *   `message_delta` with `stop_reason`); the answer is charged, the error not relayed.
 * - `output_over_max_tokens`: more output than `max_tokens` × the server-loop iterations of the
 *   request (`inputTokenBound(...).iterations`) allow; charged that bound.
 */
export type UsageAnomaly =
  | 'invalid_count'
  | 'count_decreased'
  | 'duplicate_message_start'
  | 'event_after_stop'
  | 'malformed_event'
  | 'missing_message_stop'
  | 'no_usage'
  | 'cost_over_bound'
  | 'cache_breakdown_mismatch'
  | 'error_after_answer'
  | 'output_over_max_tokens';

/** Every `UsageAnomaly`, for metrics that should exist at zero from the start. */
export const USAGE_ANOMALIES: readonly UsageAnomaly[] = Object.freeze([
  'invalid_count', 'count_decreased', 'duplicate_message_start', 'event_after_stop',
  'malformed_event', 'missing_message_stop', 'no_usage', 'cost_over_bound',
  'cache_breakdown_mismatch', 'error_after_answer', 'output_over_max_tokens',
]);

/** A usable token count: a non-negative safe integer no larger than `MAX_TOKEN_COUNT`. */
export function isTokenCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= MAX_TOKEN_COUNT;
}

/** A token count from the wire: anything but a usable count is 0. */
function count(v: unknown): number {
  return isTokenCount(v) ? v : 0;
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
 * Safe on any input: missing, null, negative, non-integer or too large (> `MAX_TOKEN_COUNT`)
 * counts are 0. To learn which values were bad, use `UsageTally`.
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

const TOP_COUNTS = ['input_tokens', 'output_tokens', 'cache_read_input_tokens'] as const;
const CACHE_TOTAL = 'cache_creation_input_tokens';
const BREAKDOWN_COUNTS = ['ephemeral_5m_input_tokens', 'ephemeral_1h_input_tokens'] as const;

/** One report's cache writes: its reading (the larger of total and breakdown sum) and its split. */
interface CacheReading {
  tokens: number;
  /** the breakdown as reported (valid fields only), null when the report gave none */
  split: { ephemeral_5m_input_tokens?: number; ephemeral_1h_input_tokens?: number } | null;
}

/**
 * The usage of one message, gathered from every report of it (`message_start.message.usage`,
 * each `message_delta.usage`, or the one `usage` of a JSON message).
 *
 * Rule: usage is cumulative and counters only grow, so each count is the largest valid value
 * any report gave for it. A field absent or null keeps the earlier value (Anthropic sends
 * `input_tokens: null` in `message_delta`). A lower value never erases a higher one
 * (`count_decreased`); an unusable value is ignored (`invalid_count`). Non-count fields
 * (`server_tool_use`, `service_tier`, …) are kept as the latest report gave them, for `wire()`.
 *
 * Cache writes are one counter with a split, not two counters: each report reads as the larger
 * of its `cache_creation_input_tokens` and its breakdown's sum (they should agree; when not, the
 * report is `cache_breakdown_mismatch`). The message's cache writes are the largest reading any
 * report gave, split as the latest report that gave that reading with a breakdown split them,
 * else as the latest breakdown, the excess counted as 5 m (the default TTL). So a split that
 * moves between reports (5 m 1000 then 1 h 1000, both totalling 1000) is charged 1000, never
 * the per-field maxima (2000).
 */
export class UsageTally {
  #counts = new Map<string, number>();
  #extra: Record<string, unknown> = {};
  /** largest cache-write reading so far and the split chosen for it */
  #cache: CacheReading | null = null;
  /** the latest breakdown any report gave */
  #lastSplit: CacheReading['split'] = null;
  /** anomalies seen in the reports, in the order first seen */
  readonly anomalies = new Set<UsageAnomaly>();

  /**
   * Adds one usage report. `required` names top-level counts that must be present (Anthropic:
   * `output_tokens` in every report; a JSON message also has `input_tokens`): missing or null
   * there is `invalid_count`. A report that is not an object is `invalid_count`. Never throws.
   */
  add(report: unknown, required: readonly string[] = ['output_tokens']): void {
    if (!isRecord(report)) {
      this.anomalies.add('invalid_count');
      return;
    }
    for (const field of required) {
      if (report[field] == null) this.anomalies.add('invalid_count');
    }
    for (const field of TOP_COUNTS) this.#take(field, report[field]);
    this.#takeCache(report);
    for (const [key, value] of Object.entries(report)) {
      if (value == null || key === 'cache_creation' || key === CACHE_TOTAL || (TOP_COUNTS as readonly string[]).includes(key)) continue;
      this.#extra[key] = value;
    }
  }

  #take(key: string, value: unknown): void {
    if (value == null) return;
    if (!isTokenCount(value)) {
      this.anomalies.add('invalid_count');
      return;
    }
    const earlier = this.#counts.get(key);
    if (earlier !== undefined && value < earlier) {
      this.anomalies.add('count_decreased');
      return;
    }
    this.#counts.set(key, value);
  }

  #takeCache(report: Record<string, unknown>): void {
    let total: number | null = null;
    const rawTotal = report[CACHE_TOTAL];
    if (rawTotal != null) {
      if (isTokenCount(rawTotal)) total = rawTotal;
      else this.anomalies.add('invalid_count');
    }
    let split: CacheReading['split'] = null;
    let sum = 0;
    const cc = report.cache_creation;
    if (isRecord(cc)) {
      for (const field of BREAKDOWN_COUNTS) {
        const v = cc[field];
        if (v == null) continue;
        if (!isTokenCount(v)) {
          this.anomalies.add('invalid_count');
          continue;
        }
        split ??= {};
        split[field] = v;
        sum += v;
      }
    } else if (cc != null) {
      this.anomalies.add('invalid_count');
    }
    if (total === null && split === null) return;
    if (total !== null && split !== null && total !== sum) this.anomalies.add('cache_breakdown_mismatch');
    const tokens = Math.max(total ?? 0, sum);
    if (split !== null) this.#lastSplit = split;
    const earlier = this.#cache;
    if (earlier !== null && tokens < earlier.tokens) {
      this.anomalies.add('count_decreased');
      return;
    }
    // An equal reading without a split keeps the split of the earlier one.
    this.#cache = { tokens, split: split ?? (earlier !== null && earlier.tokens === tokens ? earlier.split : null) };
  }

  /** At least one valid count was reported. */
  get hasCounts(): boolean {
    return this.#counts.size > 0 || this.#cache !== null;
  }

  /**
   * The merged usage in wire shape: the kept counts plus the latest non-count fields. Cache
   * writes: `cache_creation_input_tokens` is the largest reading, `cache_creation` the split
   * chosen for it (see the class rule); `usageFromWire` counts any excess over the split as 5 m.
   */
  wire(): Usage {
    const out: Usage = { ...this.#extra };
    for (const field of TOP_COUNTS) {
      const v = this.#counts.get(field);
      if (v !== undefined) out[field] = v;
    }
    if (this.#cache !== null) {
      out[CACHE_TOTAL] = this.#cache.tokens;
      const split = this.#cache.split ?? this.#lastSplit;
      // Any split's sum is at most its own report's reading, so at most the largest one.
      if (split !== null) out.cache_creation = { ...split };
    }
    return out;
  }

  /** The billable counts (`usageFromWire` of `wire()`). */
  usage(): TokenUsage {
    return usageFromWire(this.wire());
  }
}

/** What a non-streaming Messages body says about usage. */
export interface MessageUsage {
  usage: TokenUsage;
  /** `invalid_count` when a count was unusable or a required one missing; else empty */
  anomalies: UsageAnomaly[];
}

/**
 * The usage of a non-streaming Messages response body: null when it is not a message with a
 * `usage` object (the caller charges nothing and records `no_usage`). Unusable counts are 0
 * and reported as `invalid_count`.
 */
export function readMessageUsage(json: unknown): MessageUsage | null {
  if (!isRecord(json) || json.type !== 'message' || !isRecord(json.usage)) return null;
  const tally = new UsageTally();
  tally.add(json.usage, ['input_tokens', 'output_tokens']);
  return { usage: tally.usage(), anomalies: [...tally.anomalies] };
}

/** Usage of a non-streaming Messages response body; null when it is not a message with usage. */
export function usageFromMessage(json: unknown): TokenUsage | null {
  return readMessageUsage(json)?.usage ?? null;
}
