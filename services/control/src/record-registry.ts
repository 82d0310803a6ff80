// The control records (accounts, keys, plans) this process wrote whose place on the log is not
// confirmed yet, so it can put them back into hot state when a rebuild could not read them.
import type { ControlEvent, EventLog } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import { EpochRegistry, type BalanceStore, type EpochRegistryOptions } from '@tollgate/ledger';

/** A control record kept in the key directory: an account, key or plan (not a price version). */
export type DirectoryRecordEvent = Extract<ControlEvent, { type: 'account' | 'key' | 'plan' }>;

/** Records put back at once after a rebuild (one pipeline of versioned puts each). */
export const RESTORE_PUTS_AT_ONCE = 256;

interface Entry {
  event: DirectoryRecordEvent;
  /**
   * where its record is: 'no' put (or being put) into hot state, not yet handed to the log;
   * 'spooled' handed to the log, not yet acknowledged by it (Kafka away: in the local spool);
   * 'acked' acknowledged by the log
   */
  published: 'no' | 'spooled' | 'acked';
}

export interface ControlRecordRegistryOptions extends EpochRegistryOptions {
  /** records put back after a rebuild: how many were written (newer than what the rebuild read), of how many listed */
  onRestored?: (r: { written: number; listed: number; epoch: string }) => void;
  /** a save's directory write failed after its record was written ahead (the ledger group puts it in later) */
  onPutError?: (err: unknown) => void;
}

/**
 * The accounts, keys and plans this control process wrote that a rebuild of hot state may not
 * have read, put back into the key directory when it sees the state rebuilt.
 *
 * Why: a write goes to the key directory (Redis) at once and to the log (Kafka) for good; the
 * rebuild after a Redis loss reads the directory from the warehouse, which holds only what
 * reached the log. With Kafka away the record waits in this process's spool, and the rebuild
 * waits for a spool only so long (SPOOL_RESEND_MS after Kafka's return): a record that reached
 * Kafka later than that, or whose process reaches Kafka later than the aggregator, was missing
 * from the rebuilt state: a key revoked meanwhile was served again, a new limit read as the old
 * one, until the record was finally on the log and applied.
 *
 * How (as the gateway's HoldRegistry does for holds): a record is listed before it is written.
 * Every `pollMs` the registry reads the store's `epoch`, which every rebuild replaces. While the
 * state is lost and records are listed it announces a restore (`epoch(announceMs)`), so the
 * rebuilt state admits no hold for its restore window (no request is served on a key revoked
 * before the loss while the registry puts it back). On a new epoch it writes every listed record
 * again (versioned puts: one the rebuild read, or an operator replaced since, is left as it is).
 * A record leaves the list once the log acknowledged it (`EventLog.acknowledged`: Kafka has it,
 * not merely the spool) and a later epoch read found no rebuild since: from then on every
 * rebuild reads it (a rebuild waits for the warehouse to hold every control record on the log).
 * A store that is never lost (`epoch` undefined: memory) turns the registry off at its first poll.
 * See docs/decisions.md, "Control records this process wrote are put back after a rebuild".
 */
export class ControlRecordRegistry extends EpochRegistry<Entry> {
  readonly #keys: KeyDirectory;
  readonly #log: EventLog;
  readonly #onRestored: ControlRecordRegistryOptions['onRestored'];
  readonly #onPutError: ControlRecordRegistryOptions['onPutError'];

  /**
   * `store`: the balance store whose `epoch` tells a rebuild; `keys`: the key directory the
   * records are put back into (unguarded: the registry reads the state's epoch itself); `log`:
   * where `save` publishes the records.
   */
  constructor(store: BalanceStore, keys: KeyDirectory, log: EventLog, options: ControlRecordRegistryOptions = {}) {
    super(store, options);
    this.#keys = keys;
    this.#log = log;
    this.#onRestored = options.onRestored;
    this.#onPutError = options.onPutError;
  }

  /**
   * Writes a control record: writes `event` ahead on the `control` topic (EventLog.append), lists
   * it (by record: `account:<id>`, `key:<id>`, `plan:<id>`, its latest version), runs `put` (the
   * key directory write) and follows the event until the log acknowledges it. Rejects with the
   * append's error when the log refuses it (NotPublishedError: nothing written, nothing changed,
   * nothing listed), else with the delivery's error (the record still listed). A failing `put`
   * does not fail the save (`onPutError` hears of it): the record is on the log, and the ledger
   * group puts it into the directory.
   */
  /** A control process's records are read by every process: readers and new holds wait for their put-back. */
  protected override get holdsBackReaders(): boolean {
    return true;
  }

  async save(event: DirectoryRecordEvent, put: () => Promise<unknown>): Promise<void> {
    const id = recordId(event);
    // Written ahead first, before anything changes: a log that cannot take the record (a full
    // disk, a DATA_DIR taken over) refuses here and the directory stays as it was. Written to the
    // directory first, a refused publish left a revocation in Redis alone: answered 503, its
    // retry found the key revoked and published nothing, and a rebuild brought the key back (a
    // breaker's HIGH). The ledger group puts every control record into the directory too
    // (versioned), so a put that fails after this is made good from the log.
    const appended = this.#log.append('control', [{ event }]);
    if (appended.error !== undefined) throw appended.error;
    const entry: Entry = { event, published: 'no' };
    const before = this.entries.get(id);
    if (!this.off && !(before && recordVersion(before.event) > recordVersion(event))) this.entries.set(id, entry);
    // A put that fails (Redis refusing writes, or away) does not fail the write: the record is
    // on the log and the ledger group puts it into the directory once Redis takes it. Failing
    // it answered "retry" for a change that happened all the same, and retries duplicated
    // accounts, keys and plans (a breaker's MEDIUM).
    await put().catch((err: unknown) => this.#onPutError?.(err));
    // Written ahead: listed until the log acknowledges it. A delivery that fails after the write
    // (the log closed) leaves it listed too: its spool is sent at the next start.
    let deliveryError: unknown;
    await appended.durable.catch((err: unknown) => { deliveryError = err; });
    if (this.entries.get(id) === entry) {
      if (!this.#log.acknowledged) entry.published = 'acked';
      else {
        entry.published = 'spooled';
        // Not awaited: the caller is answered once the record is durable (as before); a log that
        // closes first leaves it listed, harmlessly (the process is stopping).
        this.#log.acknowledged().then(() => { entry.published = 'acked'; }, () => {});
      }
    }
    if (deliveryError !== undefined) throw deliveryError;
  }

  /**
   * Writes every listed record again (versioned: one the rebuild read, or a newer one, stays),
   * RESTORE_PUTS_AT_ONCE at a time: the rebuilt state's restore window (1 s) must cover the
   * put-back, and a gateway's key cache (500 ms) what it read before it (4,000 records one by
   * one took 1.6 s on the development VM, a tester's MEDIUM).
   */
  protected override async restore(epoch: string): Promise<boolean> {
    const listed = [...this.entries.values()];
    let written = 0;
    for (let i = 0; i < listed.length; i += RESTORE_PUTS_AT_ONCE) {
      const applied = await Promise.all(listed.slice(i, i + RESTORE_PUTS_AT_ONCE).map(({ event }) => putRecord(this.#keys, event)));
      written += applied.filter(Boolean).length;
    }
    this.#onRestored?.({ written, listed: listed.length, epoch });
    return true;
  }
}

function recordId(event: DirectoryRecordEvent): string {
  switch (event.type) {
    case 'account': return `account:${event.account.id}`;
    case 'key': return `key:${event.key.id}`;
    case 'plan': return `plan:${event.plan.id}`;
  }
}

/** The version of the record `event` carries. */
export function recordVersion(event: DirectoryRecordEvent): number {
  switch (event.type) {
    case 'account': return event.account.version;
    case 'key': return event.key.version;
    case 'plan': return event.plan.version;
  }
}

/** The versioned put of `event`'s record into `keys`; true when it was newer than what the directory held. */
export function putRecord(keys: KeyDirectory, event: DirectoryRecordEvent): Promise<boolean> {
  switch (event.type) {
    case 'account': return keys.putAccount(event.account);
    case 'key': return keys.putKey(event.key);
    case 'plan': return keys.putPlan(event.plan);
  }
}
