import pRetry from 'p-retry';
import type { BalanceStore } from './balance-store.ts';

/** How `releaseUnanswered` retries; every field in ms. */
export interface ReleaseRetryOptions {
  /** give up this long after the first try: the hold's own TTL, after which it has expired anyway */
  maxWaitMs: number;
  /** first pause between tries (default 100), doubling up to `maxDelayMs` (default 2,000), randomized ×1–2 */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** each failed try, with the try's number (from 1); for logs and metrics */
  onFailedTry?: (err: unknown, tryNumber: number) => void;
}

/**
 * Releases a hold whose `hold` call was sent but failed without an answer: it timed out, or
 * its connection closed before the reply came (not a `StoreNotReadyError`: that hold was never
 * sent). Redis may have run it all the same, and then the credit stays reserved until the hold
 * expires, counted in its spend windows until they end. A single release right away goes out
 * on the same broken connection and fails too, so it is tried again with a growing pause until
 * the store answers; a release of a hold that does not exist is a no-op, so the tries are
 * safe. The gateway's connection never re-sends an unanswered command after a reconnect
 * (`autoResendUnfulfilledCommands: false`), so the hold cannot run after its release. Timers
 * are unref'd: a process that stops leaves the hold to expire (`maxWaitMs` should be the
 * hold's TTL).
 *
 * Resolves `true` once a release was answered, `false` when `maxWaitMs` passed first (or a
 * non-network TypeError, a bug, ended the tries). Throws a RangeError at once for a `maxWaitMs`
 * that is not a finite number ≥ 0 or delays outside 1 ≤ min ≤ max < ∞.
 */
export async function releaseUnanswered(
  store: Pick<BalanceStore, 'release'>, holdId: string, accountId: string, options: ReleaseRetryOptions,
): Promise<boolean> {
  const minDelayMs = options.minDelayMs ?? 100;
  const maxDelayMs = options.maxDelayMs ?? 2_000;
  // A pause of 0 would retry on microtasks alone and starve the event loop; no deadline, forever.
  if (!Number.isFinite(options.maxWaitMs) || options.maxWaitMs < 0) throw new RangeError(`maxWaitMs must be a finite number >= 0, got ${options.maxWaitMs}`);
  if (!(minDelayMs >= 1) || !(maxDelayMs >= minDelayMs) || !Number.isFinite(maxDelayMs)) {
    throw new RangeError(`delays must be finite with 1 <= minDelayMs <= maxDelayMs, got ${minDelayMs} and ${maxDelayMs}`);
  }
  try {
    await pRetry(() => store.release(holdId, accountId), {
      retries: Infinity,
      maxRetryTime: options.maxWaitMs,
      minTimeout: minDelayMs,
      maxTimeout: maxDelayMs,
      factor: 2,
      randomize: true,
      unref: true,
      onFailedAttempt: ({ error, attemptNumber }) => options.onFailedTry?.(error, attemptNumber),
    });
    return true;
  } catch {
    return false;
  }
}
