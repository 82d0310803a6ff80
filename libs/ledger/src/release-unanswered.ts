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
 * Releases a hold whose `hold` call failed without an answer: it timed out, or its connection
 * closed before the reply came. Redis may have run it all the same (an auto-pipelined command
 * still unanswered when the connection resets is rejected by ioredis, not re-sent; a command
 * that timed out may be re-sent after a reconnect), and then the credit stays reserved until
 * the hold expires, counted in its spend windows until they end. A single release right away
 * goes out on the same broken connection and fails too, so it is tried again with a growing
 * pause until the store answers; a release of a hold that does not exist is a no-op, so the
 * tries are safe. A try after a reconnect is written after anything ioredis re-sends, so it
 * runs after the hold it undoes. Timers are unref'd: a process that stops leaves the hold to
 * expire (`maxWaitMs` should be the hold's TTL).
 *
 * Resolves `true` once a release was answered, `false` when `maxWaitMs` passed first; never
 * rejects.
 */
export async function releaseUnanswered(
  store: Pick<BalanceStore, 'release'>, holdId: string, accountId: string, options: ReleaseRetryOptions,
): Promise<boolean> {
  try {
    await pRetry(() => store.release(holdId, accountId), {
      retries: Infinity,
      maxRetryTime: options.maxWaitMs,
      minTimeout: options.minDelayMs ?? 100,
      maxTimeout: options.maxDelayMs ?? 2_000,
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
