import { randomUUID } from 'node:crypto';
import { gatewayError } from '@tollgate/anthropic';
import { acquireOwned, type BalanceStore } from '@tollgate/ledger';

/**
 * How long one change of a record may hold the record's lock at most (ms). A change reads the
 * record, writes it ahead to the log and into the key directory; a holder that dies (or stalls
 * past this) lets the next change in after it, and its own write is then refused by the fence.
 * docs/decisions.md, "A record's changes are made one at a time".
 */
export const RECORD_LOCK_TTL_MS = 15_000;
/** How long a change waits for its record's lock before it answers 503 `overloaded_error` (ms). */
export const RECORD_LOCK_WAIT_MS = 5_000;
/**
 * How long the mark "this record's last change is written ahead but not in the key directory"
 * lasts at most (ms). The next change of the record that finds the directory caught up removes
 * it; until then every change of the record is refused (it would read the older record).
 */
export const RECORD_BEHIND_MS = 24 * 3600_000;

/**
 * Right before a change writes anything: resolves while its lock is still held (and gives the
 * lock RECORD_LOCK_TTL_MS more for the write).
 * @throws GatewayError 503 `overloaded_error` (`retry-after: 1`) once the lock lapsed (the change
 *   stalled past RECORD_LOCK_TTL_MS: another change may have read and written the record since);
 *   nothing may be written then.
 */
export interface RecordFence {
  (): Promise<void>;
  /**
   * After the write: the record (at `version`) is written ahead to the log but its key-directory
   * put failed (that Redis refusing writes), so the directory still holds the older record until
   * the ledger group puts it there. Marks the record behind (RECORD_BEHIND_MS): no later change
   * starts from the older record (a breaker's HIGH: a revocation so written was undone by the
   * next change, which read the key as active and wrote it with a newer version).
   */
  behind(version: number): Promise<void>;
}

/**
 * Runs `fn`, a read-modify-write of the control record `record` (`key:<id>`, `account:<id>`,
 * `plan:<id>`), while no other change of that record runs in any control process; resolves or
 * rejects as `fn` does. `fn` must call its fence right before it writes.
 * @throws GatewayError 503 `overloaded_error` (`retry-after: 1`) when the lock was not had within
 *   RECORD_LOCK_WAIT_MS of the change's arrival (its wait behind this process's own changes of
 *   the record included); what the store's `acquireLock` throws (503 `state_unavailable` through
 *   control's guarded store) when hot state cannot be reached.
 */
export type RecordExclusive = <T>(record: string, fn: (fence: RecordFence) => Promise<T>) => Promise<T>;

type LockStore = Pick<BalanceStore, 'acquireLock' | 'releaseLock' | 'extendLock' | 'lockOwner'>;

/**
 * The record lock of the control API over the balance store's cross-process lock (`record:<id>`,
 * owned by a random token). Within this process changes of one record queue in arrival order
 * before they compete for the store's lock, so they do not poll each other. Without it two
 * changes of one record, each made from what it read, lost one of them: a rename read before a
 * revocation and written after it made the revoked key active again (versions grow with the
 * clock, so the later write wins).
 *
 * `store` takes the lock and makes the fence check (control's guarded store: 503
 * `state_unavailable` while hot state is lost or away); `direct` (the same store unguarded)
 * gives the lock back, also after an acquire that failed on the client but may have landed (a
 * timeout), so a Redis blip leaves no lock nobody holds (a breaker's MEDIUM: 15 s of 503).
 */
export function recordExclusive(
  store: LockStore,
  direct: Pick<BalanceStore, 'releaseLock'> = store,
  options: {
    ttlMs?: number;
    waitMs?: number;
    /** the version of `record` the key directory holds now (undefined: none), checked against a behind mark */
    version?: (record: string) => Promise<number | undefined>;
  } = {},
): RecordExclusive {
  const ttlMs = options.ttlMs ?? RECORD_LOCK_TTL_MS;
  const waitMs = options.waitMs ?? RECORD_LOCK_WAIT_MS;
  const queues = new Map<string, Promise<unknown>>();
  const busy = (message: string) => gatewayError('overloaded', message, { headers: { 'retry-after': '1' } });
  return async <T>(record: string, fn: (fence: RecordFence) => Promise<T>): Promise<T> => {
    const deadline = Date.now() + waitMs;
    const before = queues.get(record) ?? Promise.resolve();
    const run = before.then(() => holding(record, deadline, fn), () => holding(record, deadline, fn));
    const tail = run.catch(() => {});
    queues.set(record, tail);
    void tail.then(() => { if (queues.get(record) === tail) queues.delete(record); });
    return run;
  };

  /** `deadline`: epoch ms, from the change's arrival (its wait in this process's queue counts). */
  async function holding<T>(record: string, deadline: number, fn: (fence: RecordFence) => Promise<T>): Promise<T> {
    const name = `record:${record}`;
    const owner = randomUUID();
    const what = record.replace(':', ' ');
    const waited = () => busy(`${what} is being changed by another request for over ${waitMs} ms; retry`);
    for (;;) {
      if (Date.now() >= deadline) throw waited();
      // Failed here (a timeout, Redis away) but possibly made there: given back through `direct`.
      if (await acquireOwned(store, name, ttlMs, owner, direct)) break;
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 20)));
    }
    const mark = `record-behind:${record}`;
    const fence: RecordFence = Object.assign(async () => {
      if (!(await store.extendLock(name, owner, ttlMs))) {
        throw busy(`${what} was not changed: this change took over ${ttlMs} ms, and another may have been made meanwhile; retry`);
      }
    }, {
      behind: async (version: number) => {
        await store.releaseLock(mark); // an older mark of this record: ours is newer
        await store.acquireLock(mark, RECORD_BEHIND_MS, String(version));
      },
    });
    try {
      // The last change of this record is written ahead but was not in the directory then: wait
      // for nothing, read nothing older. Refused until the directory holds that version.
      const behind = await store.lockOwner(mark);
      if (behind !== null && options.version) {
        const now = await options.version(record);
        if (now === undefined || now < Number(behind)) {
          throw busy(`${what} was not changed: its last change is on the event log but not yet in the key directory (its Redis refused the write); retry once it is`);
        }
        await store.releaseLock(mark, behind);
      }
      return await fn(fence);
    } finally {
      await direct.releaseLock(name, owner).catch(() => {});
    }
  }
}
