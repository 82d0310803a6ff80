// Rate limits shared by every gateway through Redis, with an in-process insurance limiter per
// window for when Redis is unreachable (ARCHITECTURE, "When things fail": rate limiting alone may
// fall back; money never does).

import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Redis } from 'ioredis';
import { FlexibleRateLimiter } from './flexible-rate-limiter.ts';
import type { RateLimiter } from './limits.ts';

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

export class RedisRateLimiter extends FlexibleRateLimiter implements RateLimiter {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #insurance: boolean;

  constructor(options: RedisRateLimiterOptions) {
    const ttl = options.concurrencyTtlSeconds ?? DEFAULT_CONCURRENCY_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 1) {
      throw new RangeError(`concurrencyTtlSeconds must be a whole number ≥ 1, got ${ttl}`);
    }
    super(ttl);
    this.#redis = options.redis;
    this.#prefix = options.prefix;
    this.#insurance = options.insurance ?? true;
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
