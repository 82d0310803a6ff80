// The control records (accounts, keys, plans) this process wrote whose place on the log is not
// confirmed yet, so it can put them back into hot state when a rebuild could not read them.
import type { ControlEvent, EventLog } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import { RESTORE_POLL_MS, type BalanceStore } from '@tollgate/ledger';

/** A control record kept in the key directory: an account, key or plan (not a price version). */
export type DirectoryRecordEvent = Extract<ControlEvent, { type: 'account' | 'key' | 'plan' }>;

interface Entry {
  event: DirectoryRecordEvent;
  /**
   * where its record is: 'no' put (or being put) into hot state, not yet handed to the log;
   * 'spooled' handed to the log, not yet acknowledged by it (Kafka away: in the local spool);
   * 'acked' acknowledged by the log
   */
  published: 'no' | 'spooled' | 'acked';
}

export interface ControlRecordRegistryOptions {
  /** ms between epoch reads (default RESTORE_POLL_MS, 250) */
  pollMs?: number;
  /** a read or re-put that failed (hot state away), the first of a run: tried again at the next poll */
  onError?: (err: unknown) => void;
  /** records put back after a rebuild: how many were written (newer than what the rebuild read), of how many listed */
  onRestored?: (r: { written: number; listed: number; epoch: string }) => void;
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
export class ControlRecordRegistry {
  readonly #store: BalanceStore;
  readonly #keys: KeyDirectory;
  readonly #log: EventLog;
  readonly #options: ControlRecordRegistryOptions;
  /** by record (`account:<id>`, `key:<id>`, `plan:<id>`): the latest version written */
  readonly #entries = new Map<string, Entry>();
  #epoch: string | undefined;
  #off = false;
  #timer: NodeJS.Timeout | undefined;
  #polling = false;
  #failing = false;

  /**
   * `store`: the balance store whose `epoch` tells a rebuild; `keys`: the key directory the
   * records are put back into (unguarded: the registry reads the state's epoch itself); `log`:
   * where `save` publishes the records.
   */
  constructor(store: BalanceStore, keys: KeyDirectory, log: EventLog, options: ControlRecordRegistryOptions = {}) {
    this.#store = store;
    this.#keys = keys;
    this.#log = log;
    this.#options = options;
    this.#timer = setInterval(() => void this.poll(), options.pollMs ?? RESTORE_POLL_MS);
    this.#timer.unref();
    void this.poll();
  }

  /** Records listed (written, and not yet known to be on the log and past a rebuild check). */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Writes a control record: lists it, runs `put` (the key directory write), publishes `event`
   * on the `control` topic, and follows it until the log acknowledges it. Rejects with `put`'s or
   * `publish`'s error (the record is then no longer listed, unless a newer version of it is).
   */
  async save(event: DirectoryRecordEvent, put: () => Promise<unknown>): Promise<void> {
    const id = recordId(event);
    const entry: Entry = { event, published: 'no' };
    const before = this.#entries.get(id);
    if (!this.#off && !(before && version(before.event) > version(event))) this.#entries.set(id, entry);
    try {
      await put();
      await this.#log.publish('control', [{ event }]);
    } catch (err) {
      if (this.#entries.get(id) === entry) this.#entries.delete(id);
      throw err;
    }
    if (this.#entries.get(id) !== entry) return;
    if (!this.#log.acknowledged) {
      entry.published = 'acked';
      return;
    }
    entry.published = 'spooled';
    // Not awaited: the caller is answered once the record is durable (as before); a log that
    // closes first leaves it listed, harmlessly (the process is stopping).
    this.#log.acknowledged().then(() => { entry.published = 'acked'; }, () => {});
  }

  /** One poll (the timer's; tests call it to step): read the epoch, then announce, restore or prune. */
  async poll(): Promise<void> {
    if (this.#off || this.#polling) return;
    this.#polling = true;
    try {
      const acknowledged: Array<[string, Entry]> = [];
      for (const pair of this.#entries) if (pair[1].published === 'acked') acknowledged.push(pair);
      const pollMs = this.#options.pollMs ?? RESTORE_POLL_MS;
      const epoch = await this.#store.epoch(this.#entries.size > 0 ? 8 * pollMs : undefined);
      if (epoch === undefined) {
        this.#off = true;
        this.#entries.clear();
        this.stop();
        return;
      }
      if (epoch === null) return;
      if (this.#epoch === undefined || epoch === this.#epoch) {
        // The first read (nothing of this process's was lost before it), or no rebuild since:
        // what the log had acknowledged before the read is read by any later rebuild.
        this.#epoch = epoch;
        for (const [id, e] of acknowledged) if (this.#entries.get(id) === e) this.#entries.delete(id);
        return;
      }
      const listed = [...this.#entries.values()];
      let written = 0;
      for (const { event } of listed) if (await put(this.#keys, event)) written++;
      this.#epoch = epoch;
      this.#failing = false;
      this.#options.onRestored?.({ written, listed: listed.length, epoch });
    } catch (err) {
      if (!this.#failing) this.#options.onError?.(err);
      this.#failing = true;
    } finally {
      this.#polling = false;
    }
  }

  /** Stops polling (the process is closing). */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

function recordId(event: DirectoryRecordEvent): string {
  switch (event.type) {
    case 'account': return `account:${event.account.id}`;
    case 'key': return `key:${event.key.id}`;
    case 'plan': return `plan:${event.plan.id}`;
  }
}

function version(event: DirectoryRecordEvent): number {
  switch (event.type) {
    case 'account': return event.account.version;
    case 'key': return event.key.version;
    case 'plan': return event.plan.version;
  }
}

/** The versioned put of `event`'s record; true when it was newer than what the directory held. */
function put(keys: KeyDirectory, event: DirectoryRecordEvent): Promise<boolean> {
  switch (event.type) {
    case 'account': return keys.putAccount(event.account);
    case 'key': return keys.putKey(event.key);
    case 'plan': return keys.putPlan(event.plan);
  }
}
