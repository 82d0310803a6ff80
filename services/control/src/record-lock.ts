import { randomUUID } from 'node:crypto';
import { gatewayError } from '@tollgate/anthropic';
import type { BalanceStore } from '@tollgate/ledger';

/**
 * How long one change of a record may hold the record's lock at most (ms). A change reads the
 * record, writes it ahead to the log and into the key directory; a holder that dies (or stalls
 * past this) lets the next change in after it. docs/decisions.md, "A record's changes are made
 * one at a time".
 */
export const RECORD_LOCK_TTL_MS = 15_000;
/** How long a change waits for its record's lock before it answers 503 `overloaded_error` (ms). */
export const RECORD_LOCK_WAIT_MS = 5_000;

/**
 * Runs `fn`, a read-modify-write of the control record `record` (`key:<id>`, `account:<id>`,
 * `plan:<id>`), while no other change of that record runs in any control process; resolves or
 * rejects as `fn` does.
 * @throws GatewayError 503 `overloaded_error` (`retry-after: 1`) when the lock was not had within
 *   RECORD_LOCK_WAIT_MS; what the store's `acquireLock` throws (503 `state_unavailable` through
 *   control's guarded store) when hot state cannot be reached.
 */
export type RecordExclusive = <T>(record: string, fn: () => Promise<T>) => Promise<T>;

/**
 * The record lock of the control API over the balance store's cross-process lock (`record:<id>`,
 * owned by a random token, so a holder that outlived RECORD_LOCK_TTL_MS never frees its
 * successor's). Within this process changes of one record queue in arrival order before they
 * compete for the store's lock, so they do not poll each other. Without it two changes of one
 * record, each made from what it read, lost one of them: a rename read before a revocation and
 * written after it made the revoked key active again (versions grow with the clock, so the
 * later write wins).
 */
export function recordExclusive(
  store: Pick<BalanceStore, 'acquireLock' | 'releaseLock'>,
  options: { ttlMs?: number; waitMs?: number } = {},
): RecordExclusive {
  const ttlMs = options.ttlMs ?? RECORD_LOCK_TTL_MS;
  const waitMs = options.waitMs ?? RECORD_LOCK_WAIT_MS;
  const queues = new Map<string, Promise<unknown>>();
  return async <T>(record: string, fn: () => Promise<T>): Promise<T> => {
    const deadline = Date.now() + waitMs;
    const before = queues.get(record) ?? Promise.resolve();
    const run = before.then(() => holding(record, deadline, fn), () => holding(record, deadline, fn));
    const tail = run.catch(() => {});
    queues.set(record, tail);
    void tail.then(() => { if (queues.get(record) === tail) queues.delete(record); });
    return run;
  };

  /** `deadline`: epoch ms, from the change's arrival (its wait in this process's queue counts). */
  async function holding<T>(record: string, deadline: number, fn: () => Promise<T>): Promise<T> {
    const name = `record:${record}`;
    const owner = randomUUID();
    while (!(await store.acquireLock(name, ttlMs, owner))) {
      if (Date.now() >= deadline) {
        throw gatewayError('overloaded', `${record.replace(':', ' ')} is being changed by another request for over ${waitMs} ms; retry`, { headers: { 'retry-after': '1' } });
      }
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 20)));
    }
    try {
      return await fn();
    } finally {
      await store.releaseLock(name, owner).catch(() => {});
    }
  }
}
