import { EpochRegistry, RESTORE_POLL_MS, type BalanceStore, type EpochRegistryOptions, type RestoredHold } from '@tollgate/ledger';

export { RESTORE_POLL_MS };

/**
 * Requests a registry lists at most before it drops the oldest whose usage is already handed
 * over (spooled during a long Kafka outage they stay otherwise until their hold's TTL: at 5,000
 * requests/s, millions). ~200 bytes each: ~20 MB.
 */
export const MAX_LISTED = 100_000;

interface Entry {
  accountId: string;
  keyId: string;
  /** the request's start, epoch ms (its usage event's `ts`) */
  ts: number;
  /** what the hold reserves now, µc: the amount held, then the settled cost */
  amount: bigint;
  /** when the hold expires, this process's clock (ms) */
  expiresAt: number;
  /**
   * its usage event: 'no' not yet handed over; 'acked' acknowledged by the log (Kafka); 'spooled'
   * written to the local spool while Kafka is away (sent later, with no word to this registry)
   */
  published: 'no' | 'acked' | 'spooled';
}

export interface HoldRegistryOptions extends EpochRegistryOptions {
  /** holds re-reserved after a rebuild: how many the store restored, of how many this gateway had */
  onRestored?: (r: { restored: number; inFlight: number; epoch: string }) => void;
  /** entries listed at most (default MAX_LISTED) */
  maxListed?: number;
  /**
   * Once per rebuilt state (a new epoch), when it no longer waits for control processes to put
   * back their records (`recordsPending` false): the gateway's key cache forgets what it read.
   */
  onRecordsRestored?: () => void;
}

/**
 * The holds of this gateway's requests in flight, kept so it can re-reserve them when hot state
 * was lost and rebuilt. A hold lives only in Redis and here: a Redis that lost its data (flushed,
 * restarted empty) loses it, and the rebuild, which reads the warehouse, cannot know it. Without
 * a restore, new requests were admitted past the lost holds until their usage landed, so a
 * balance or a spend limit could be overspent by what the requests in flight at the loss cost.
 *
 * How: every `pollMs` the registry reads the store's `epoch` (which every rebuild replaces).
 * While the state is lost (null) and requests are in flight, it announces a restore
 * (`epoch(announceMs)`), so the rebuild admits no hold for its restore window; on a new epoch it
 * re-reserves every hold it knows (`restoreHolds`: unrefusable, skipped where the hold is still
 * there or its usage was applied), and this gateway admits no new hold before that is done
 * (`restoring`). A settled request stays listed until its usage event is acknowledged by the
 * log and a later poll found the same epoch: from then on any rebuild reads it from the
 * warehouse (a rebuild waits for the warehouse to hold the whole log). Entries go when their
 * hold would have expired. A store that is never lost (`epoch` undefined: memory) turns the
 * registry off at its first poll. See docs/decisions.md, "Holds in flight are restored after a
 * rebuild".
 */
export class HoldRegistry extends EpochRegistry<Entry> {
  readonly #options: HoldRegistryOptions;
  #restoring: Promise<void> | undefined;
  #recordsPending = false;
  #recordsRestoredAt = Number.NEGATIVE_INFINITY;
  /** the epoch whose wait for record restorers was seen over */
  #waitedOut: string | undefined;

  constructor(store: BalanceStore, options: HoldRegistryOptions = {}) {
    super(store, options);
    this.#options = options;
  }

  /**
   * True while, as of the last poll (every RESTORE_POLL_MS; one `stateLost` read per poll after
   * a new epoch, until it answers false), the rebuilt state waits for control
   * processes to put back records only their spools held (`stateLost`: `<ready>:pending`, or
   * the restore window): a key revoked or an account suspended through one of them would be
   * served meanwhile (a breaker's HIGH), so no new hold is admitted (503 `state_unavailable`).
   */
  recordsPending(): boolean {
    return this.#recordsPending;
  }

  /**
   * performance.now() when the last rebuilt state was seen no longer waiting for records (the
   * key cache forgotten then), -Infinity before: a key read before it may be a revoked one read
   * active, so its request is not admitted (a breaker-style race: read just before, held just after).
   */
  recordsRestoredAt(): number {
    return this.#recordsRestoredAt;
  }

  /** Read after each new epoch until the wait is over; nothing more until the next rebuild. */
  protected override async polled(epoch: string | null): Promise<void> {
    if (epoch === null) {
      this.#recordsPending = false; // lost: holds are refused as not ready anyway
      return;
    }
    if (epoch === this.#waitedOut) return;
    const pending = await this.store.stateLost();
    // A rebuild this gateway lived through (not the state it started on, unless it started
    // while that waited): what was read while the records were missing (a revoked key, active in
    // the rebuilt state) is neither served from a cache nor admitted once holds are again.
    if (!pending && (this.#waitedOut !== undefined || this.#recordsPending)) {
      this.#options.onRecordsRestored?.();
      this.#recordsRestoredAt = performance.now();
    }
    if (!pending) this.#waitedOut = epoch;
    this.#recordsPending = pending;
  }

  /**
   * While this gateway re-reserves its holds after a rebuild, the promise of that (a new hold
   * waits for it: it must not be admitted past them); undefined otherwise.
   */
  restoring(): Promise<void> | undefined {
    return this.#restoring;
  }

  /** A hold of `amount` µc was made for `holdId`, living `ttlMs`; `ts`: the request's start (ms). */
  held(holdId: string, accountId: string, keyId: string, ts: number, amount: bigint, ttlMs: number): void {
    if (this.off) return;
    this.entries.set(holdId, { accountId, keyId, ts, amount, expiresAt: Date.now() + ttlMs, published: 'no' });
    if (this.entries.size > (this.#options.maxListed ?? MAX_LISTED)) this.#trim();
  }

  /** Drops the oldest entries whose usage is handed over, down to 90 % of the cap (Map order is insertion order). */
  #trim(): void {
    let over = this.entries.size - Math.floor(0.9 * (this.#options.maxListed ?? MAX_LISTED));
    for (const [id, e] of this.entries) {
      if (over <= 0) break;
      if (e.published !== 'no') {
        this.entries.delete(id);
        over--;
      }
    }
  }

  /** The hold lives `ttlMs` longer (the request is still running). */
  extended(holdId: string, ttlMs: number): void {
    const e = this.entries.get(holdId);
    if (e) e.expiresAt = Date.now() + ttlMs;
  }

  /** The hold shrank to the request's cost `amount` (µc) and lives `ttlMs` longer. */
  settled(holdId: string, amount: bigint, ttlMs: number): void {
    const e = this.entries.get(holdId);
    if (e) {
      e.amount = amount;
      e.expiresAt = Date.now() + ttlMs;
    }
  }

  /** The hold was given back (nothing to charge). */
  released(holdId: string): void {
    this.entries.delete(holdId);
  }

  /**
   * The request's usage event is handed over: acknowledged by the log (Kafka: written to its
   * replicas), or only written to the spool while Kafka is away (`acknowledged` false).
   */
  published(holdId: string, acknowledged = true): void {
    const e = this.entries.get(holdId);
    if (e) e.published = acknowledged ? 'acked' : 'spooled';
  }

  /** Entries whose hold would have expired by now go. */
  protected override prune(now: number): void {
    for (const [id, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(id);
  }

  /** Re-reserves every hold listed; new holds wait for it (`restoring`). */
  protected override async restore(epoch: string): Promise<boolean> {
    const restore = this.#restore(epoch);
    // What new holds wait for: never rejects (a failed restore is tried again at the next poll).
    const waited = restore.then(() => {}, () => {});
    this.#restoring = waited;
    try {
      return await restore;
    } finally {
      if (this.#restoring === waited) this.#restoring = undefined;
    }
  }

  async #restore(epoch: string): Promise<boolean> {
    const now = Date.now();
    const holds: RestoredHold[] = [];
    for (const [holdId, e] of this.entries) {
      if (e.expiresAt <= now) continue;
      holds.push({ holdId, accountId: e.accountId, keyId: e.keyId, amount: e.amount, ttlMs: e.expiresAt - now, ts: e.ts });
    }
    const restored = holds.length === 0 ? 0 : await this.store.restoreHolds(holds);
    // Lost or loading again: the epoch stays the old one, so the next poll tries again.
    if (restored === 'not_ready') return false;
    this.#options.onRestored?.({ restored, inFlight: holds.length, epoch });
    return true;
  }
}
