// The rate-limit port: what the gateway's hot path asks before it holds credit and forwards.

/** A key's limits; an absent field is unlimited. Values are whole numbers ≥ 0 (0 refuses all). */
export interface LimitPolicy {
  requestsPerMinute?: number;
  requestsPer5h?: number;
  requestsPerWeek?: number;
  /** estimated tokens (input + max output) consumed at acquire, corrected after the response */
  tokensPerMinute?: number;
  concurrentRequests?: number;
}

/** Which limit refused a request; also the machine-readable reason the gateway logs. */
export type LimitName =
  | 'requests_per_minute'
  | 'requests_per_5h'
  | 'requests_per_week'
  | 'tokens_per_minute'
  | 'concurrent_requests';

/**
 * Response headers in Anthropic's names (lower case):
 * `anthropic-ratelimit-requests-{limit,remaining,reset}` for the most restrictive request
 * window, `anthropic-ratelimit-tokens-{limit,remaining,reset}` for the per-minute token window,
 * and `retry-after` (whole seconds, rounded up) on a refusal. Resets are RFC 3339 timestamps.
 */
export type LimitHeaders = Record<string, string>;

export type LimitDecision =
  | { ok: true; headers: LimitHeaders }
  | { ok: false; retryAfterMs: number; limit: LimitName; headers: LimitHeaders };

/**
 * An allowed request; `release` must be called once when it ends (repeat calls are no-ops).
 * `refund` is for a request refused after it was admitted, before anything was served (the
 * gateway: 402 insufficient credits, 429 spend limit, 503 hot state): it gives every window
 * back what this request took (one request per request window, its estimated tokens), releases
 * its slot, and resolves to the headers as they stand after the refund. Idempotent; after it,
 * `release` and `correctTokens` for this request must not be called.
 */
export type LimitGrant = Extract<LimitDecision, { ok: true }> & {
  release: () => Promise<void>;
  refund: () => Promise<LimitHeaders>;
};

/** A refused request holds nothing, so it has nothing to release. */
export type LimitRefusal = Extract<LimitDecision, { ok: false }> & { release?: undefined; refund?: undefined };

/** Assignable to `LimitDecision & { release?: () => Promise<void> }`. */
export type LimitAcquireResult = LimitGrant | LimitRefusal;

/**
 * Invariants:
 * - an allowed request has consumed one request from every request window, `estimatedTokens`
 *   from the token window and one concurrency slot;
 * - a refused request has consumed nothing: every window it touched is refunded, so a caller is
 *   never punished twice (once by the refusal, again by the points the refusal used up);
 * - counters never go below zero, so a correction or a late release cannot mint extra quota.
 */
export interface RateLimiter {
  acquire(subject: string, policy: LimitPolicy, estimatedTokens: number): Promise<LimitAcquireResult>;
  /** After the response: moves the token window by (actual − estimated); never refuses. */
  correctTokens(subject: string, policy: LimitPolicy, estimatedTokens: number, actualTokens: number): Promise<void>;
  /** Drops cached limiters; leaves caller-owned clients open. */
  close(): Promise<void>;
}

export const RATELIMIT_HEADERS = {
  requestsLimit: 'anthropic-ratelimit-requests-limit',
  requestsRemaining: 'anthropic-ratelimit-requests-remaining',
  requestsReset: 'anthropic-ratelimit-requests-reset',
  tokensLimit: 'anthropic-ratelimit-tokens-limit',
  tokensRemaining: 'anthropic-ratelimit-tokens-remaining',
  tokensReset: 'anthropic-ratelimit-tokens-reset',
  retryAfter: 'retry-after',
  /** the per-minute request window in the de-facto `x-ratelimit-*` names (reset: epoch seconds) */
  xLimit: 'x-ratelimit-limit',
  xRemaining: 'x-ratelimit-remaining',
  xReset: 'x-ratelimit-reset',
  /** Claude Code's subscription headers, synthesised from the plan's 5 h and 7 d request windows */
  unifiedStatus: 'anthropic-ratelimit-unified-status',
  unifiedReset: 'anthropic-ratelimit-unified-reset',
  unifiedClaim: 'anthropic-ratelimit-unified-representative-claim',
  unified5hUtilization: 'anthropic-ratelimit-unified-5h-utilization',
  unified5hReset: 'anthropic-ratelimit-unified-5h-reset',
  unified7dUtilization: 'anthropic-ratelimit-unified-7d-utilization',
  unified7dReset: 'anthropic-ratelimit-unified-7d-reset',
} as const;

/** `anthropic-ratelimit-unified-status` turns `allowed_warning` at this fraction of a 5 h / 7 d window used. */
export const UNIFIED_WARNING_UTILIZATION = 0.8;
