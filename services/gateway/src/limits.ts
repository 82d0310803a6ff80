import { gatewayError } from '@tollgate/anthropic';
import type { GatewayDeps } from './deps.ts';
import { guardState } from './state.ts';

/** `KEY_MAX_CONCURRENT_REQUESTS` when not configured. */
export const DEFAULT_KEY_MAX_CONCURRENT = 64;

/**
 * In-process concurrency of one gateway: at most `perKey` requests of one key, and at most
 * `pool` requests in all (the upstream connection pool's size: with HTTP/1.1 each request in
 * flight holds one connection), counted from admission until the request's upstream work ends.
 * Both checks are synchronous and local, so a refusal costs no Redis call and no waiting —
 * unlike the cluster-wide `RATE_LIMIT_CONCURRENT`, which needs a Redis round trip.
 */
export class ConcurrencyGates {
  readonly perKey: number;
  readonly pool: number;
  #inFlight = 0;
  #byKey = new Map<string, number>();

  constructor(options: { perKey: number; pool: number }) {
    this.perKey = options.perKey;
    this.pool = options.pool;
  }

  /**
   * Takes a slot for `keyId`, or throws: the key already has `perKey` in flight → 429
   * `rate_limit_exceeded`; the pool is full → 503 `overloaded`. Both with `retry-after: 1` (a
   * slot frees when any request ends, which cannot be predicted). Returns the release, which
   * frees the slot on its first call only.
   */
  acquire(keyId: string): () => void {
    const mine = this.#byKey.get(keyId) ?? 0;
    if (mine >= this.perKey) {
      throw gatewayError('rate_limit_exceeded',
        `Too many concurrent requests for this key (${this.perKey} in flight on this gateway); retry when one finishes`,
        { headers: { 'retry-after': '1' } });
    }
    if (this.#inFlight >= this.pool) {
      throw gatewayError('overloaded', 'The gateway\'s upstream connections are all in use; retry shortly',
        { headers: { 'retry-after': '1' } });
    }
    this.#inFlight++;
    this.#byKey.set(keyId, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      const left = (this.#byKey.get(keyId) ?? 1) - 1;
      if (left === 0) this.#byKey.delete(keyId);
      else this.#byKey.set(keyId, left);
    };
  }

  /** requests in flight in this process, all keys */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** requests of `keyId` in flight in this process */
  inFlightOf(keyId: string): number {
    return this.#byKey.get(keyId) ?? 0;
  }
}

export interface LimitTicket {
  headers: Record<string, string>;
  /**
   * Ends the request for the limiter: frees its concurrency slots (in-process and, with a
   * limiter, cluster-wide) and, given the tokens it really used, corrects the token window.
   * Safe to call more than once; only the first counts.
   */
  done(usedTokens: number | null): Promise<void>;
}

/**
 * The in-process slot of a request that goes upstream without rate limits (count_tokens).
 * Throws as `ConcurrencyGates.acquire`; the returned function releases (idempotent).
 */
export function acquireSlot(deps: GatewayDeps, keyId: string): () => void {
  return deps.concurrency ? deps.concurrency.acquire(keyId) : () => {};
}

/**
 * Limits before any credit is held, cheapest first: the in-process gates (429 per key, 503 when
 * the upstream pool is full), then the cluster-wide limiter when one is configured (refused →
 * 429 `rate_limit_exceeded` with retry-after and its `anthropic-ratelimit-*` headers).
 */
export async function acquireLimits(deps: GatewayDeps, keyId: string, estimatedTokens: number): Promise<LimitTicket> {
  const releaseSlot = acquireSlot(deps, keyId);
  const policy = deps.limits;
  if (!deps.limiter || !policy || Object.keys(policy).length === 0) {
    return { headers: {}, done: async () => releaseSlot() };
  }
  const limiter = deps.limiter;
  // A request estimated above a whole minute's token allowance could never pass; count it as
  // exactly the allowance so it waits its turn instead of failing forever.
  const estimate = policy.tokensPerMinute ? Math.min(estimatedTokens, policy.tokensPerMinute) : estimatedTokens;
  let decision;
  try {
    decision = await guardState(() => limiter.acquire(keyId, policy, estimate));
  } catch (err) {
    releaseSlot();
    throw err;
  }
  if (!decision.ok) {
    releaseSlot();
    throw gatewayError('rate_limit_exceeded', `Rate limit exceeded (${decision.limit}); retry after the reset`, { headers: decision.headers });
  }
  let done = false;
  return {
    headers: decision.headers,
    async done(usedTokens) {
      if (done) return;
      done = true;
      releaseSlot();
      await Promise.all([
        decision.release?.().catch(() => {}),
        usedTokens !== null && policy.tokensPerMinute
          ? limiter.correctTokens(keyId, policy, estimate, usedTokens).catch(() => {})
          : undefined,
      ]);
    },
  };
}
