// Rate limits shared by every gateway through Redis, with an in-process insurance limiter per
// window for when Redis is unreachable (ARCHITECTURE, "When things fail": rate limiting alone may
// fall back; money never does).

import { readFileSync } from 'node:fs';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Redis } from 'ioredis';
import {
  FlexibleRateLimiter, headersFor, limitValue, noRelease, retryAfterMs, tokenCount, TOKENS, WINDOWS,
  type WindowOutcome, type WindowSpec,
} from './flexible-rate-limiter.ts';
import { RATELIMIT_HEADERS } from './limits.ts';
import type { LimitAcquireResult, LimitHeaders, LimitPolicy, RateLimiter } from './limits.ts';

const WINDOWS_LUA = readFileSync(new URL('./lua/windows.lua', import.meta.url), 'utf8');

/** `lua/windows.lua` as ioredis exposes it after `defineCommand` (variable key count). */
interface WindowsScript {
  tollgateLimitsWindows(numKeys: number, ...keysAndArgs: string[]): Promise<number | number[]>;
}

/** A gateway that dies holding concurrency slots stops holding them after this long. */
export const DEFAULT_CONCURRENCY_TTL_SECONDS = 600;

export interface RedisRateLimiterOptions {
  /**
   * Caller-owned, connected ioredis client; `close()` leaves it open. Must not use ioredis'
   * own `keyPrefix`. While its status is not `ready`, limits are decided by the insurance
   * limiter at once rather than queued behind a reconnect.
   */
  redis: Redis;
  /** Prepended to every key, e.g. `tollgate:rl`; unique per test. */
  prefix: string;
  /** Fall back to in-process limits when Redis fails (default true); false makes acquire throw. */
  insurance?: boolean;
  /** Lifetime of a subject's concurrency counter (default 600 s). */
  concurrencyTtlSeconds?: number;
}

/**
 * Plan windows in Redis: every window of a request is consumed (and, on a refusal, given back)
 * by one Lua script call, `lua/windows.lua` — one round trip and one command per acquire,
 * whatever the policy (rate-limiter-flexible would send one script call per window, and a
 * refusal another per window for the give-back). The script does rate-limiter-flexible's own
 * counter arithmetic on the same keys (`<prefix>:<window>:<subject>`), so its insurance limiter
 * (rate-limiter-flexible's `RateLimiterMemory`, per process) takes over with the same meaning
 * while Redis is not ready or a call fails.
 */
export class RedisRateLimiter extends FlexibleRateLimiter implements RateLimiter {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #insurance: boolean;
  readonly #concurrencyTtl: number;
  readonly #script: WindowsScript;
  /** adjust moves not sent yet, per subject (see #adjust) */
  readonly #queued = new Map<string, { moves: Array<[WindowSpec, number]>; sent: Promise<unknown> }>();
  #stopped = false;

  constructor(options: RedisRateLimiterOptions) {
    const ttl = options.concurrencyTtlSeconds ?? DEFAULT_CONCURRENCY_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 1) {
      throw new RangeError(`concurrencyTtlSeconds must be a whole number ≥ 1, got ${ttl}`);
    }
    super(ttl);
    this.#redis = options.redis;
    this.#prefix = options.prefix;
    this.#insurance = options.insurance ?? true;
    this.#concurrencyTtl = ttl;
    options.redis.defineCommand('tollgateLimitsWindows', { lua: WINDOWS_LUA });
    this.#script = options.redis as unknown as WindowsScript;
  }

  #key(spec: WindowSpec, subject: string): string {
    return `${this.#prefix}:${spec.limit}:${subject}`;
  }

  #seconds(spec: WindowSpec): string {
    return String(spec.durationSec ?? this.#concurrencyTtl);
  }

  /**
   * Moves counters by `delta` (> 0 counts, < 0 gives back, never below zero). Every move of one
   * subject made in the same turn of the event loop (a request's slot release and its token
   * correction, issue 11) goes in ONE script call, sent once the turn's synchronous work is done;
   * the script applies them one after the other in call order, so the counters end as with one
   * call each. Resolves (or rejects) with that call.
   */
  #adjust(moves: Array<[WindowSpec, number]>, subject: string): Promise<unknown> {
    const live = moves.filter(([, d]) => d !== 0);
    if (live.length === 0) return Promise.resolve();
    let batch = this.#queued.get(subject);
    if (!batch) {
      const queued: Array<[WindowSpec, number]> = [];
      const sent = Promise.resolve().then(() => {
        this.#queued.delete(subject);
        return this.#script.tollgateLimitsWindows(queued.length, ...queued.map(([w]) => this.#key(w, subject)),
          'adjust', ...queued.flatMap(([w, d]) => [String(d), this.#seconds(w)]));
      });
      batch = { moves: queued, sent };
      this.#queued.set(subject, batch);
    }
    batch.moves.push(...live);
    return batch.sent;
  }

  override async acquire(subject: string, policy: LimitPolicy, estimatedTokens: number): Promise<LimitAcquireResult> {
    if (this.#stopped) throw new Error('rate limiter is closed');
    const tokens = tokenCount('estimatedTokens', estimatedTokens);
    const checks: WindowOutcome['check'][] = [];
    for (const spec of WINDOWS) {
      const points = limitValue(policy, spec);
      if (points !== undefined) checks.push({ spec, points, cost: spec.kind === 'tokens' ? tokens : 1 });
    }
    if (checks.length === 0) return { ok: true, headers: {}, release: noRelease, refund: () => Promise.resolve({}) };
    // Not ready (reconnecting): rate-limiter-flexible's path answers from the insurance limiter at once.
    if (this.#redis.status !== 'ready') return super.acquire(subject, policy, estimatedTokens);
    let reply: number[];
    try {
      reply = await this.#script.tollgateLimitsWindows(checks.length, ...checks.map((c) => this.#key(c.spec, subject)),
        'acquire', ...checks.flatMap((c) => [String(c.cost), this.#seconds(c.spec), String(c.points)])) as number[];
    } catch (err) {
      if (!this.#insurance) throw err;
      return super.acquire(subject, policy, estimatedTokens);
    }
    const now = Date.now();
    const outcomes: WindowOutcome[] = checks.map((check, i) => {
      const consumedPoints = Number(reply[1 + 2 * i]);
      return { check, res: { consumedPoints, msBeforeNext: Number(reply[2 + 2 * i]) }, refused: consumedPoints > check.points };
    });
    if (reply[0] === 1) {
      // The script already gave every window back (refused ones included).
      const refused = outcomes.filter((o) => o.refused);
      let worst = refused[0]!;
      for (const o of refused) if (retryAfterMs(o) > retryAfterMs(worst)) worst = o;
      const wait = retryAfterMs(worst);
      const headers = headersFor(outcomes, true, now);
      headers[RATELIMIT_HEADERS.retryAfter] = String(Math.ceil(wait / 1000));
      return { ok: false, retryAfterMs: wait, limit: worst.check.spec.limit, headers };
    }
    const slot = checks.find((c) => c.spec.kind === 'concurrency');
    let released: Promise<void> | undefined;
    const release = slot === undefined ? noRelease
      : () => (released ??= this.#adjust([[slot.spec, -1]], subject).then(() => {}, () => {}));
    let refunded: Promise<LimitHeaders> | undefined;
    const refund = () => (refunded ??= (async () => {
      // One call gives back every window, the slot included (unless already released).
      const moves = checks.filter((c) => c.spec.kind !== 'concurrency' || released === undefined)
        .map((c): [WindowSpec, number] => [c.spec, -c.cost]);
      if (slot !== undefined) released ??= Promise.resolve();
      await this.#adjust(moves, subject);
      return headersFor(outcomes, true, Date.now());
    })());
    return { ok: true, headers: headersFor(outcomes, false, now), release, refund };
  }

  override async correctTokens(subject: string, policy: LimitPolicy, estimatedTokens: number, actualTokens: number): Promise<void> {
    if (this.#stopped) throw new Error('rate limiter is closed');
    const delta = tokenCount('actualTokens', actualTokens) - tokenCount('estimatedTokens', estimatedTokens);
    if (limitValue(policy, TOKENS) === undefined || delta === 0) return;
    if (this.#redis.status !== 'ready') return super.correctTokens(subject, policy, estimatedTokens, actualTokens);
    try {
      await this.#adjust([[TOKENS, delta]], subject);
    } catch (err) {
      if (!this.#insurance) throw err;
      await super.correctTokens(subject, policy, estimatedTokens, actualTokens);
    }
  }

  override async close(): Promise<void> {
    this.#stopped = true;
    await super.close();
  }

  protected override createLimiter(keyPrefix: string, points: number, durationSec: number): RateLimiterAbstract {
    const prefixed = `${this.#prefix}:${keyPrefix}`;
    return new RateLimiterRedis({
      storeClient: this.#redis,
      keyPrefix: prefixed,
      points,
      duration: durationSec,
      // Without this, a reconnecting ioredis client queues the command and the request waits
      // out the reconnect; with it, the insurance limiter answers immediately.
      rejectIfRedisNotReady: true,
      // Per gateway process: while Redis is down a subject can get up to one full allowance
      // from each gateway, which beats refusing everyone or allowing everything.
      insuranceLimiter: this.#insurance
        ? new RateLimiterMemory({ keyPrefix: prefixed, points, duration: durationSec })
        : undefined,
    });
  }
}
