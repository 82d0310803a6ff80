// The algorithm both adapters share, over rate-limiter-flexible's limiters. An adapter only
// decides where counters live (createLimiter); consuming, refunding, headers and release are here
// so the memory and Redis adapters cannot drift apart.

import { RateLimiterRes } from 'rate-limiter-flexible';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { RATELIMIT_HEADERS, UNIFIED_WARNING_UTILIZATION } from './limits.ts';
import type {
  LimitAcquireResult, LimitHeaders, LimitName, LimitPolicy, RateLimiter,
} from './limits.ts';

type WindowKind = 'requests' | 'tokens' | 'concurrency';

/** One plan window: which policy field limits it, what it counts, how long it lasts. */
export interface WindowSpec {
  limit: LimitName;
  field: keyof LimitPolicy;
  kind: WindowKind;
  /** fixed window length; undefined for concurrency, whose counter lifetime the adapter sets */
  durationSec: number | undefined;
}

const MINUTE = 60;
export const WINDOWS: readonly WindowSpec[] = [
  { limit: 'requests_per_minute', field: 'requestsPerMinute', kind: 'requests', durationSec: MINUTE },
  { limit: 'requests_per_5h', field: 'requestsPer5h', kind: 'requests', durationSec: 5 * 60 * MINUTE },
  { limit: 'requests_per_week', field: 'requestsPerWeek', kind: 'requests', durationSec: 7 * 24 * 60 * MINUTE },
  { limit: 'tokens_per_minute', field: 'tokensPerMinute', kind: 'tokens', durationSec: MINUTE },
  { limit: 'concurrent_requests', field: 'concurrentRequests', kind: 'concurrency', durationSec: undefined },
];
export const TOKENS = WINDOWS.find((w) => w.kind === 'tokens') as WindowSpec;

/**
 * A slot frees whenever any in-flight request of the subject ends, which nobody can predict;
 * the counter's own expiry (minutes) would be a misleading retry-after.
 */
export const CONCURRENCY_RETRY_AFTER_MS = 1000;

interface Check {
  spec: WindowSpec;
  points: number;
  cost: number;
  limiter: RateLimiterAbstract;
}

interface Outcome {
  check: Check;
  res: RateLimiterRes;
  refused: boolean;
}

/**
 * What the headers need of one window after a consume, whatever store counted it: the count
 * after this request (`consumedPoints`) and ms until the window resets (`msBeforeNext`).
 */
export interface WindowOutcome {
  check: { spec: WindowSpec; points: number; cost: number };
  res: { consumedPoints: number; msBeforeNext: number };
  refused: boolean;
}

export function limitValue(policy: LimitPolicy, spec: WindowSpec): number | undefined {
  const value = policy[spec.field];
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`limit policy ${spec.field} must be a whole number ≥ 0, got ${value}`);
  }
  return value;
}

/** Token counts are whole and non-negative; fractions round up so estimates never undercount. */
export function tokenCount(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number ≥ 0, got ${value}`);
  }
  return Math.ceil(value);
}

/** RFC 3339, whole seconds, rounded up so a client waiting until then finds the window reset. */
function resetAt(now: number, msBeforeNext: number): string {
  const at = Math.ceil((now + Math.max(0, msBeforeNext)) / 1000) * 1000;
  return new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Remaining points as the caller will see them: after this request, or after its refund. */
function remainingAfter(o: WindowOutcome, refunded: boolean): number {
  const consumed = o.res.consumedPoints - (refunded ? o.check.cost : 0);
  return Math.min(o.check.points, Math.max(0, o.check.points - consumed));
}

/** The response headers of a request's windows (see `RATELIMIT_HEADERS`), after it or after its refund. */
export function headersFor(outcomes: readonly WindowOutcome[], refunded: boolean, now: number): LimitHeaders {
  const headers: LimitHeaders = {};
  let requests: { o: WindowOutcome; remaining: number } | undefined;
  for (const o of outcomes) {
    const remaining = remainingAfter(o, refunded);
    if (o.check.spec.kind === 'requests') {
      // The most restrictive request window is the one a client must pace itself by; of two
      // with as few left, the one that resets later (the client must wait for that one).
      if (requests === undefined || remaining < requests.remaining
        || (remaining === requests.remaining && o.res.msBeforeNext > requests.o.res.msBeforeNext)) requests = { o, remaining };
    } else if (o.check.spec.kind === 'tokens') {
      headers[RATELIMIT_HEADERS.tokensLimit] = String(o.check.points);
      headers[RATELIMIT_HEADERS.tokensRemaining] = String(remaining);
      headers[RATELIMIT_HEADERS.tokensReset] = resetAt(now, o.res.msBeforeNext);
    }
  }
  if (requests !== undefined) {
    headers[RATELIMIT_HEADERS.requestsLimit] = String(requests.o.check.points);
    headers[RATELIMIT_HEADERS.requestsRemaining] = String(requests.remaining);
    headers[RATELIMIT_HEADERS.requestsReset] = resetAt(now, requests.o.res.msBeforeNext);
  }
  const minute = outcomes.find((o) => o.check.spec.limit === 'requests_per_minute');
  if (minute !== undefined) {
    headers[RATELIMIT_HEADERS.xLimit] = String(minute.check.points);
    headers[RATELIMIT_HEADERS.xRemaining] = String(remainingAfter(minute, refunded));
    headers[RATELIMIT_HEADERS.xReset] = String(resetEpochSeconds(now, minute.res.msBeforeNext));
  }
  Object.assign(headers, unifiedHeaders(outcomes, refunded, now));
  return headers;
}

/** Epoch seconds, rounded up like `resetAt`. */
function resetEpochSeconds(now: number, msBeforeNext: number): number {
  return Math.ceil((now + Math.max(0, msBeforeNext)) / 1000);
}

/** Used share of a window after this request (or its refund), 4 decimals; a 0 limit is fully used. */
function utilization(o: WindowOutcome, refunded: boolean): number {
  if (o.check.points === 0) return 1;
  const used = o.check.points - remainingAfter(o, refunded);
  return Math.round((used / o.check.points) * 10_000) / 10_000;
}

/**
 * Claude Code's subscription headers from the 5 h and 7 d request windows (none when the policy
 * has neither): `-status` is `rejected` when one of them refused this request, `allowed_warning`
 * when one is at least `UNIFIED_WARNING_UTILIZATION` used, else `allowed`; the representative
 * claim is the refusing window, else the more used one (5 h on a tie), and `-unified-reset` is
 * its reset. Utilization is a fraction (0.025 = 2.5 %), resets are epoch seconds.
 */
function unifiedHeaders(outcomes: readonly WindowOutcome[], refunded: boolean, now: number): LimitHeaders {
  const claims = [
    { claim: 'five_hour', o: outcomes.find((o) => o.check.spec.limit === 'requests_per_5h'),
      util: RATELIMIT_HEADERS.unified5hUtilization, reset: RATELIMIT_HEADERS.unified5hReset },
    { claim: 'seven_day', o: outcomes.find((o) => o.check.spec.limit === 'requests_per_week'),
      util: RATELIMIT_HEADERS.unified7dUtilization, reset: RATELIMIT_HEADERS.unified7dReset },
  ].flatMap((c) => c.o === undefined ? [] : [{ ...c, o: c.o, used: utilization(c.o, refunded), at: resetEpochSeconds(now, c.o.res.msBeforeNext) }]);
  if (claims.length === 0) return {};
  const headers: LimitHeaders = {};
  for (const c of claims) {
    headers[c.util] = String(c.used);
    headers[c.reset] = String(c.at);
  }
  const refusing = claims.find((c) => c.o.refused);
  let representative = claims[0]!;
  for (const c of claims) if (c.used > representative.used) representative = c;
  if (refusing !== undefined) representative = refusing;
  headers[RATELIMIT_HEADERS.unifiedStatus] = refusing !== undefined
    ? 'rejected'
    : representative.used >= UNIFIED_WARNING_UTILIZATION ? 'allowed_warning' : 'allowed';
  headers[RATELIMIT_HEADERS.unifiedClaim] = representative.claim;
  headers[RATELIMIT_HEADERS.unifiedReset] = String(representative.at);
  return headers;
}

/** ms a refused caller must wait for this window: its reset, or `CONCURRENCY_RETRY_AFTER_MS` for a slot. */
export function retryAfterMs(o: WindowOutcome): number {
  if (o.check.spec.kind === 'concurrency') return CONCURRENCY_RETRY_AFTER_MS;
  return Math.max(1, o.res.msBeforeNext);
}

/**
 * Gives points back without ever leaving a counter below zero: if the window rolled over (or a
 * concurrency counter hit its safety expiry) since the points were taken, a plain reward would
 * leave a negative count, i.e. extra quota nobody paid for. The second call is rare.
 */
async function giveBack(limiter: RateLimiterAbstract, subject: string, points: number): Promise<void> {
  if (points <= 0) return;
  const res = await limiter.reward(subject, points);
  if (res.consumedPoints < 0) await limiter.penalty(subject, -res.consumedPoints);
}

/**
 * The points every counter is created with: far above any limit, so rate-limiter-flexible only
 * counts and the policy's limit (which may change between requests) decides refusal.
 */
export const UNBOUNDED_POINTS = Number.MAX_SAFE_INTEGER;

export const noRelease = (): Promise<void> => Promise.resolve();

export abstract class FlexibleRateLimiter implements RateLimiter {
  readonly #limiters = new Map<string, RateLimiterAbstract>();
  readonly #concurrencyTtlSec: number;
  #closed = false;

  /** @param concurrencyTtlSec lifetime of a concurrency counter; 0 = never expires */
  protected constructor(concurrencyTtlSec: number) {
    this.#concurrencyTtlSec = concurrencyTtlSec;
  }

  /**
   * One limiter per window, keyed by window and subject only (never by the limit value): a
   * changed limit applies to the count already made in the current window, so raising or
   * lowering a plan's limit neither resets anyone's window nor forgives what was used.
   * `points` is always `UNBOUNDED_POINTS`: this class compares the count with the policy's
   * limit itself, so one counter serves every limit value.
   */
  protected abstract createLimiter(keyPrefix: string, points: number, durationSec: number): RateLimiterAbstract;

  #limiter(spec: WindowSpec): RateLimiterAbstract {
    const keyPrefix = spec.limit;
    let limiter = this.#limiters.get(keyPrefix);
    if (limiter === undefined) {
      limiter = this.createLimiter(keyPrefix, UNBOUNDED_POINTS, spec.durationSec ?? this.#concurrencyTtlSec);
      this.#limiters.set(keyPrefix, limiter);
    }
    return limiter;
  }

  #open(): void {
    if (this.#closed) throw new Error('rate limiter is closed');
  }

  async acquire(subject: string, policy: LimitPolicy, estimatedTokens: number): Promise<LimitAcquireResult> {
    this.#open();
    const tokens = tokenCount('estimatedTokens', estimatedTokens);
    const checks: Check[] = [];
    for (const spec of WINDOWS) {
      const points = limitValue(policy, spec);
      if (points === undefined) continue;
      // A zero-token consume still returns the window's state, which the headers need.
      checks.push({ spec, points, cost: spec.kind === 'tokens' ? tokens : 1, limiter: this.#limiter(spec) });
    }
    if (checks.length === 0) return { ok: true, headers: {}, release: noRelease, refund: () => Promise.resolve({}) };

    // Every window in parallel: one store round trip in wall time, whatever the policy.
    const settled = await Promise.allSettled(checks.map((c) => c.limiter.consume(subject, c.cost)));
    const outcomes: Outcome[] = [];
    let failure: { error: unknown } | undefined;
    settled.forEach((s, i) => {
      const check = checks[i] as Check;
      // The counter never refuses (UNBOUNDED_POINTS); the policy's limit decides here.
      if (s.status === 'fulfilled') outcomes.push({ check, res: s.value, refused: s.value.consumedPoints > check.points });
      else if (s.reason instanceof RateLimiterRes) outcomes.push({ check, res: s.reason, refused: true });
      else failure ??= { error: s.reason }; // the store failed and there is no insurance: nothing applied
    });

    if (failure !== undefined) {
      // Best effort: the caller sees the store error, and must not also lose the windows that did count.
      await Promise.allSettled(outcomes.map((o) => giveBack(o.check.limiter, subject, o.check.cost)));
      throw failure.error;
    }

    const now = Date.now();
    const refused = outcomes.filter((o) => o.refused);
    if (refused.length > 0) {
      // rate-limiter-flexible counts a refused consume too, so every window is refunded,
      // the refusing ones included: a client retrying while refused does not push its reset out.
      await Promise.all(outcomes.map((o) => giveBack(o.check.limiter, subject, o.check.cost)));
      // The caller cannot pass before the slowest refusing window lets it.
      let worst = refused[0] as Outcome;
      for (const o of refused) if (retryAfterMs(o) > retryAfterMs(worst)) worst = o;
      const wait = retryAfterMs(worst);
      const headers = headersFor(outcomes, true, now);
      headers[RATELIMIT_HEADERS.retryAfter] = String(Math.ceil(wait / 1000));
      return { ok: false, retryAfterMs: wait, limit: worst.check.spec.limit, headers };
    }

    const slot = outcomes.find((o) => o.check.spec.kind === 'concurrency');
    let release = noRelease;
    if (slot !== undefined) {
      // Bound to the limiter that took the slot, so a policy change meanwhile frees the right one.
      const limiter = slot.check.limiter;
      let released: Promise<void> | undefined;
      release = () => (released ??= giveBack(limiter, subject, 1));
    }
    let refunded: Promise<LimitHeaders> | undefined;
    // Refused downstream (no credit, spend limit): the request was never served, so it must not
    // use up the customer's windows, or a client retrying a 402/429 burns its 5 h and weekly quota.
    const refund = () => (refunded ??= (async () => {
      await Promise.all(outcomes.filter((o) => o.check.spec.kind !== 'concurrency')
        .map((o) => giveBack(o.check.limiter, subject, o.check.cost)));
      await release();
      return headersFor(outcomes, true, Date.now());
    })());
    return { ok: true, headers: headersFor(outcomes, false, now), release, refund };
  }

  async correctTokens(subject: string, policy: LimitPolicy, estimatedTokens: number, actualTokens: number): Promise<void> {
    this.#open();
    const delta = tokenCount('actualTokens', actualTokens) - tokenCount('estimatedTokens', estimatedTokens);
    const points = limitValue(policy, TOKENS);
    if (points === undefined || delta === 0) return;
    const limiter = this.#limiter(TOKENS);
    // The tokens were used whatever the window says now, so a correction never refuses.
    if (delta > 0) await limiter.penalty(subject, delta);
    else await giveBack(limiter, subject, -delta);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#limiters.clear();
  }
}
