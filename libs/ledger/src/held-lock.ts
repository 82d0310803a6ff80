// A lock of the balance store held for the length of a long operation (a month close, a rollup
// repair, a warehouse migration): taken with an owner token of its own, renewed while the
// operation runs, and given back by that token only.
import { randomUUID } from 'node:crypto';
import type { BalanceStore } from './balance-store.ts';

type LockStore = Pick<BalanceStore, 'acquireLock' | 'releaseLock' | 'extendLock'>;

/**
 * Runs `fn` while this caller holds the store's lock `name`, if it can take it now: `{ held:
 * true, value }` once `fn` resolved (rejects as `fn` does), `{ held: false }` at once while
 * another holds it (`fn` not run). The lock lapses `ttlMs` (ms) after its holder's last renewal,
 * and is renewed every `ttlMs / 3` while `fn` runs, so an operation longer than `ttlMs` keeps it
 * (before, a month close of over 120 s let a second close start beside it) while a holder that
 * died frees it within `ttlMs`. Given back with its owner token: a holder that lapsed (frozen
 * past `ttlMs`) never frees its successor's lock (before, any release deleted it).
 * @throws what the store's `acquireLock` throws (its Redis away); an acquire that failed on the
 *   client but may have landed (a timeout) is given back first.
 */
export async function tryWithLock<T>(store: LockStore, name: string, ttlMs: number, fn: () => Promise<T>): Promise<{ held: true; value: T } | { held: false }> {
  const owner = randomUUID();
  if (!(await acquireOwned(store, name, ttlMs, owner))) return { held: false };
  const renew = setInterval(() => { void store.extendLock(name, owner, ttlMs).catch(() => {}); }, Math.max(1, Math.floor(ttlMs / 3)));
  renew.unref();
  try {
    return { held: true, value: await fn() };
  } finally {
    clearInterval(renew);
    await store.releaseLock(name, owner).catch(() => {});
  }
}

/**
 * `store.acquireLock(name, ttlMs, owner)`: true when `owner` now holds the lock. When the call
 * fails on the client (a timeout, the connection cut) the SET may still have landed: the lock
 * is given back by `owner` through `release` (default `store`; not awaited) before the error is
 * rethrown, so no lock is left that nobody holds for `ttlMs`.
 */
export async function acquireOwned(
  store: Pick<BalanceStore, 'acquireLock'>, name: string, ttlMs: number, owner: string,
  release: Pick<BalanceStore, 'releaseLock'> = store as Pick<BalanceStore, 'acquireLock' | 'releaseLock'>,
): Promise<boolean> {
  try {
    return await store.acquireLock(name, ttlMs, owner);
  } catch (err) {
    void release.releaseLock(name, owner).catch(() => {});
    throw err;
  }
}
