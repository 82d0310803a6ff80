// What a process made in hot state that a rebuild from the warehouse cannot know yet, kept so the
// process can put it back once it sees the state rebuilt: the common part of the gateway's holds
// in flight (HoldRegistry) and the control role's records (ControlRecordRegistry).
import { randomUUID } from 'node:crypto';
import type { BalanceStore } from './balance-store.ts';
import { RESTORE_ANNOUNCE_MS, RESTORE_POLL_MS } from './redis-balance-store.ts';

/** An entry of an EpochRegistry: where the event that puts it in the warehouse is. */
export interface RegistryEntry {
  /**
   * 'no' not yet handed to the log; 'spooled' handed over but only in the local spool (Kafka
   * away); 'acked' acknowledged by the log (Kafka has it): from then on a rebuild reads it
   */
  published: 'no' | 'spooled' | 'acked';
}

export interface EpochRegistryOptions {
  /** ms between epoch reads (default RESTORE_POLL_MS, 250) */
  pollMs?: number;
  /** a read or restore that failed (the state store away), the first of a run: tried again at the next poll */
  onError?: (err: unknown) => void;
}

/**
 * Entries by id, and the poll that follows the state's `epoch` (which every rebuild replaces):
 * - every `pollMs`, one read of the epoch; while the state is lost (null) and entries are listed,
 *   the read also announces a restore (`epoch(announceMs, id)`, lasting RESTORE_ANNOUNCE_MS), so
 *   the rebuilt state admits no hold for its restore window while this process puts its entries
 *   back, and, for records others read (`holdsBackReaders`), no reader takes one for absent and
 *   no gateway admits a hold until it has;
 * - on a new epoch, `restore` puts every listed entry back (the subclass's work), then the
 *   registry tells the store it is done (`restored(id)`: nobody waits for it any longer); until
 *   both succeed the old epoch is kept, so the next poll tries again;
 * - on the same epoch, entries acknowledged by the log before the read are dropped: any later
 *   rebuild reads them from the warehouse (a rebuild waits for the warehouse to hold the log);
 * - a store that is never lost (`epoch` undefined: memory) turns the registry off for good.
 * See docs/decisions.md, "Holds in flight are restored after a rebuild".
 */
export abstract class EpochRegistry<E extends RegistryEntry> {
  /** listed entries by id (Map order: insertion order, oldest first) */
  protected readonly entries = new Map<string, E>();
  /** the state store whose epoch is followed (and into which a subclass restores) */
  protected readonly store: BalanceStore;
  readonly #pollMs: number;
  readonly #onError: ((err: unknown) => void) | undefined;
  /** the epoch these entries are in (or were restored in); undefined before the first read */
  #epoch: string | undefined;
  #off = false;
  #timer: NodeJS.Timeout | undefined;
  /** the poll under way, if any */
  #polling: Promise<void> | undefined;
  /** the last poll failed (its error was reported; the next ones' are not, until one succeeds) */
  #failing = false;
  /** the last read found the state alive and marked this process holding records (`epoch`'s `holding`) */
  #marked = false;
  /** this registry's id in the store's announcements (`epoch`, `restored`) */
  readonly #restorer = randomUUID();

  /** Starts polling `store`'s epoch every `pollMs` (the timer does not keep the process alive). */
  constructor(store: BalanceStore, options: EpochRegistryOptions = {}) {
    this.store = store;
    this.#pollMs = options.pollMs ?? RESTORE_POLL_MS;
    this.#onError = options.onError;
    this.#timer = setInterval(() => void this.poll(), this.#pollMs);
    this.#timer.unref();
    void this.poll();
  }

  /** Entries listed. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Whether what this registry puts back is read by others (a control process's records: an
   * account, a key, a revocation): then its announcement names it, and after the load readers
   * that find a record absent and gateways' new holds wait until it has put them back
   * (`restored`). A gateway's holds are its own: they are waited for by the restore window only.
   */
  protected get holdsBackReaders(): boolean {
    return false;
  }

  /** True once the store was found never to lose its state: nothing is listed from then on. */
  protected get off(): boolean {
    return this.#off;
  }

  /** After each epoch read (null: lost), before any restore (default: nothing). */
  protected async polled(_epoch: string | null): Promise<void> {}

  /** Drops what no longer needs putting back, after each epoch read (default: nothing). */
  protected prune(_now: number): void {}

  /**
   * Puts every listed entry back into the state of `epoch`, just rebuilt. Resolves false when the
   * state is lost or loading again (nothing done: the next poll tries again); a rejection is
   * reported through `onError` and tried again too.
   */
  protected abstract restore(epoch: string): Promise<boolean>;

  /**
   * One poll (the timer's; tests call it to step): read the epoch, then announce, restore or
   * prune. While one is under way, its promise (no second read is started).
   */
  poll(): Promise<void> {
    if (this.#off) return Promise.resolve();
    this.#polling ??= this.#poll().finally(() => { this.#polling = undefined; });
    return this.#polling;
  }

  async #poll(): Promise<void> {
    try {
      await this.#step();
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) this.#onError?.(err);
      this.#failing = true;
    }
  }

  async #step(): Promise<void> {
    // Acknowledged before the read was sent: droppable if the read finds the same epoch.
    const acknowledged: Array<[string, E]> = [];
    for (const pair of this.entries) if (pair[1].published === 'acked') acknowledged.push(pair);
    // Lost: the next rebuild must wait for this process's restore (announced in the same step).
    // A process whose records others read marks itself while it holds some the log has not
    // acknowledged, so a rebuild waits for it even if it stalls before it can announce.
    const holding = this.holdsBackReaders && [...this.entries.values()].some((e) => e.published !== 'acked');
    const epoch = await this.store.epoch(this.entries.size > 0 ? RESTORE_ANNOUNCE_MS : undefined, this.holdsBackReaders ? this.#restorer : undefined,
      holding || this.#marked ? holding : undefined);
    if (typeof epoch === 'string') this.#marked = holding;
    if (epoch === undefined) {
      this.#off = true;
      this.entries.clear();
      this.stop();
      return;
    }
    this.prune(Date.now());
    await this.polled(epoch);
    if (epoch === null) return;
    if (this.#epoch === undefined || epoch === this.#epoch) {
      // The first read (nothing of this process's was lost before it), or no rebuild since.
      this.#epoch = epoch;
      for (const [id, e] of acknowledged) if (this.entries.get(id) === e) this.entries.delete(id);
      return;
    }
    if (await this.restore(epoch)) {
      if (this.holdsBackReaders) await this.store.restored?.(this.#restorer);
      this.#epoch = epoch;
    }
  }

  /** Stops polling (the process is closing). */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
