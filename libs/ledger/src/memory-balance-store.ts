import { MAX_MONEY_MICROS, type LedgerEvent, type UsageEvent } from '@tollgate/events';
import { admissionHoldAt, checkTtlMs, clampAdmission, isRefusal, SPEND_WINDOW_NAMES, windowBounds } from './balance-store.ts';
import type {
  AccountBalance, ApplyResult, BalanceSnapshot, BalanceStore, BatchItem, BatchOutcome, HoldRequest, HoldResult, LedgerEntry, LedgerQuarantine, LogPosition,
  ReferenceClaim, RestoredHold, SpendWindowName, StateSnapshot,
} from './balance-store.ts';

interface Hold {
  accountId: string;
  amount: bigint;
  expiresAt: number;
  /** the spend-window counters this hold is counted in */
  windows: string[];
  /**
   * whether it was counted in any window when held (kept when `restartWindows` takes its windows
   * away): an expired hold so counted is not counted again by its usage (Redis: its hwin entry)
   */
  counted: boolean;
}

/**
 * The single-process balance store. JavaScript runs one step at a time, so each method is
 * atomic without locks. Usage ids are remembered for a bounded time (long enough to catch a
 * redelivery); ledger ids forever, since a repeated credit reference must never pay twice.
 * The in-process log has no durable positions, so positions are accepted and ignored: this
 * store lives and dies with its log, and is rebuilt from the warehouse at every start.
 */
export class MemoryBalanceStore implements BalanceStore {
  #balances = new Map<string, bigint>();
  #holds = new Map<string, Hold>();
  /** hold ids per account, so expiring an account's holds never walks everyone's */
  #accountHolds = new Map<string, Set<string>>();
  /**
   * per account, a time at or before which none of its holds expires (ms): `#expireHolds` walks
   * an account's holds only once one may have expired, not on every hold (issue 11: at
   * concurrency N each hold walked the N live ones). Lowered whenever a hold's expiry is set.
   */
  #earliestExpiry = new Map<string, number>();
  #heldByAccount = new Map<string, bigint>();
  #ledgerEntries = new Map<string, LedgerEntry>();
  #usageSeen = new Map<string, number>();
  /**
   * usage ids applied before the last `load`, with when (ms): their spend windows, which a load
   * keeps, counted them then, so a replay of one after the load is not counted again.
   */
  #appliedBefore = new Map<string, number>();
  /**
   * ids of holds counted in spend windows that expired unsettled, with when (ms): still counted
   * there at their amount, so their usage must not be counted again (Redis: the hwin entry).
   */
  #expiredHolds = new Map<string, number>();
  #usageMemoryMs: number;
  #waiters = new Map<string, Array<(applied: boolean) => void>>();
  #now: () => number;
  #quarantine = new Map<string, LedgerQuarantine>();
  #claims = new Map<string, { entry: Required<LedgerEntry>; until: number }>();
  /** lock name → the time (ms) it lapses, and its holder's owner token */
  #locks = new Map<string, { until: number; owner: string }>();
  /** event id → reason, for events the consumer quarantined (control answers from it) */
  #rejected = new Map<string, string>();

  constructor(options: { usageMemoryMs?: number; now?: () => number } = {}) {
    this.#usageMemoryMs = options.usageMemoryMs ?? 24 * 3600_000;
    this.#now = options.now ?? Date.now;
  }

  async hold(req: HoldRequest): Promise<HoldResult> {
    checkTtlMs(req.ttlMs);
    this.#expireHolds(req.accountId);
    const now = this.#now();
    const balance = this.#balances.get(req.accountId) ?? 0n;
    const overdraft = req.overdraft ?? 0n;
    // A repeated hold id (a retry of the same request) replaces its earlier hold, so
    // held = Σ holds; a refused retry leaves the earlier hold as it was.
    const prev = this.#holds.get(req.holdId);
    const previous = prev?.amount ?? 0n;
    const available = balance - (this.#heldByAccount.get(req.accountId) ?? 0n) + previous;
    let headroom = available + overdraft;
    // The binding window: the first (in SPEND_WINDOW_NAMES order) whose headroom is least.
    let binding: { name: SpendWindowName; key: string; limit: bigint; used: bigint; headroom: bigint } | undefined;
    const counted: string[] = [];
    for (const name of SPEND_WINDOW_NAMES) {
      const w = req.windows?.find((x) => x.name === name);
      if (!w) continue;
      const key = this.#windowKey(name, req, now);
      counted.push(key);
      const used = this.#windowValue(key, now) - (prev?.windows.includes(key) ? previous : 0n);
      const room = w.limit - used;
      if (room < headroom) { headroom = room; binding = { name, key, limit: w.limit, used, headroom: room }; }
    }
    const refuse = (required: bigint): HoldResult => binding
      ? { ok: false, reason: 'spend_limit_exceeded', available: available - previous + overdraft, window: binding.name,
          limit: binding.limit, used: binding.used,
          resetAt: windowBounds(binding.name, now).end, required }
      : { ok: false, reason: 'insufficient_credits', available: available - previous + overdraft, required };
    if (balance + overdraft <= 0n) return { ok: false, reason: 'insufficient_credits', available: available - previous + overdraft, required: req.amount };
    let amount = req.amount;
    let maxTokens = req.admission?.maxTokens;
    if (headroom < amount) {
      const a = req.admission;
      if (!a || a.policy !== 'clamp' || !a.segments.some((x) => x.perOutputToken > 0n)) return refuse(req.amount);
      const clamped = clampAdmission(headroom, a);
      if (clamped === null) return refuse(admissionHoldAt(a, a.floorTokens));
      amount = clamped.amount;
      maxTokens = clamped.tokens;
    }
    this.#dropHold(req.holdId, true);
    this.#expiredHolds.delete(req.holdId);
    for (const key of counted) this.#addWindow(key, amount, now);
    this.#holds.set(req.holdId, { accountId: req.accountId, amount, expiresAt: now + req.ttlMs, windows: counted, counted: counted.length > 0 });
    this.#noteExpiry(req.accountId, now + req.ttlMs);
    let ids = this.#accountHolds.get(req.accountId);
    if (!ids) this.#accountHolds.set(req.accountId, (ids = new Set()));
    ids.add(req.holdId);
    this.#addHeld(req.accountId, amount);
    return maxTokens === undefined
      ? { ok: true, available: available - amount, amount }
      : { ok: true, available: available - amount, amount, maxTokens };
  }

  async settle(holdId: string, _accountId: string, actual: bigint, ttlMs: number): Promise<void> {
    checkTtlMs(ttlMs);
    const hold = this.#holds.get(holdId);
    if (!hold) return;
    this.#addHeld(hold.accountId, actual - hold.amount);
    this.#shiftWindows(hold.windows, actual - hold.amount);
    hold.amount = actual;
    hold.expiresAt = this.#now() + ttlMs;
    this.#noteExpiry(hold.accountId, hold.expiresAt);
  }

  /** Spent + held in one spend window, µc (for tests and reconcile); 0 when nothing is counted. */
  async windowUsed(name: SpendWindowName, accountId: string, keyId: string): Promise<bigint> {
    const now = this.#now();
    return this.#windowValue(this.#windowKey(name, { accountId, keyId }, now), now);
  }

  /** BalanceStore.restartWindows: the open windows' counters go, and no hold names them any more. */
  async restartWindows(accountId: string, keyId: string, names: readonly SpendWindowName[]): Promise<void> {
    const now = this.#now();
    const gone = new Set(names.map((name) => this.#windowKey(name, { accountId, keyId }, now)));
    for (const key of gone) this.#windows.delete(key);
    for (const id of this.#accountHolds.get(accountId) ?? []) {
      const hold = this.#holds.get(id);
      if (hold && hold.windows.some((k) => gone.has(k))) hold.windows = hold.windows.filter((k) => !gone.has(k));
    }
  }

  async extend(holdId: string, _accountId: string, ttlMs: number): Promise<void> {
    checkTtlMs(ttlMs);
    const hold = this.#holds.get(holdId);
    if (hold) {
      hold.expiresAt = this.#now() + ttlMs;
      this.#noteExpiry(hold.accountId, hold.expiresAt);
    }
  }

  async release(holdId: string): Promise<void> {
    this.#dropHold(holdId, true);
  }

  /** Never lost while its callers live (it is in their process): no epoch to watch. */
  async epoch(): Promise<undefined> {
    return undefined;
  }

  /** The Redis store's rule (lua/restore-holds.lua), for the contract; a gateway never needs it here. */
  async restoreHolds(holds: RestoredHold[]): Promise<number> {
    let restored = 0;
    const now = this.#now();
    for (const h of holds) {
      if (h.amount < 0n) throw new RangeError(`restored hold amount must not be negative, got ${h.amount}`);
      if (!Number.isFinite(h.ttlMs) || h.ttlMs <= 0) throw new RangeError(`restored hold ttlMs must be > 0, got ${h.ttlMs}`);
    }
    for (const h of holds) {
      this.#expireHolds(h.accountId);
      if (this.#holds.has(h.holdId) || this.#expiredHolds.has(h.holdId) || this.#usageSeen.has(h.holdId) || this.#appliedBefore.has(h.holdId)) continue;
      const windows = h.amount === 0n ? [] : this.#countWindows({ account_id: h.accountId, key_id: h.keyId, ts: h.ts }, h.amount);
      this.#holds.set(h.holdId, { accountId: h.accountId, amount: h.amount, expiresAt: now + h.ttlMs, windows, counted: windows.length > 0 });
      this.#noteExpiry(h.accountId, now + h.ttlMs);
      let ids = this.#accountHolds.get(h.accountId);
      if (!ids) this.#accountHolds.set(h.accountId, (ids = new Set()));
      ids.add(h.holdId);
      this.#addHeld(h.accountId, h.amount);
      restored++;
    }
    return restored;
  }

  async get(accountId: string): Promise<AccountBalance> {
    this.#expireHolds(accountId);
    const balance = this.#balances.get(accountId) ?? 0n;
    const held = this.#heldByAccount.get(accountId) ?? 0n;
    return { balance, held, available: balance - held };
  }

  async applyUsage(event: UsageEvent, _position?: LogPosition): Promise<ApplyResult> {
    if (this.#usageSeen.has(event.event_id)) return 'duplicate';
    this.#usageSeen.set(event.event_id, this.#now());
    this.#forgetOldUsage();
    this.#credit(event.account_id, -BigInt(event.cost_micros));
    // The windows count the actual cost from here on (settle already moved them to it when
    // the gateway settled first; this covers usage that closes an unsettled hold). A hold
    // counted in windows that expired stays counted at its amount. A request with no hold here
    // (made before a restart or a load, or expired without windows) and not applied before a
    // load is counted by its event, as a rebuild counts it: the Redis store's rule
    // (lua/usage-fn.lua, step 6).
    const cost = BigInt(event.cost_micros);
    const open = this.#holds.get(event.event_id);
    if (open) this.#shiftWindows(open.windows, cost - open.amount);
    else if (!this.#expiredHolds.delete(event.event_id) && !this.#appliedBefore.has(event.event_id) && cost !== 0n) {
      this.#countWindows(event, cost);
    }
    this.#dropHold(event.event_id);
    this.#notify(event.event_id, true);
    return 'applied';
  }

  async applyLedger(event: LedgerEvent, _position?: LogPosition): Promise<ApplyResult> {
    // One event id, one decision: applied or refused, a later event under it changes nothing.
    if (this.#ledgerEntries.has(event.event_id) || this.#rejected.has(event.event_id)) return 'duplicate';
    const amount = BigInt(event.amount_micros);
    const after = (this.#balances.get(event.account_id) ?? 0n) + amount;
    if (after > MAX_MONEY_MICROS || after < -MAX_MONEY_MICROS) return 'out_of_range';
    this.#ledgerEntries.set(event.event_id, { amount, kind: event.kind });
    this.#claims.delete(event.event_id);
    this.#credit(event.account_id, amount);
    this.#notify(event.event_id, true);
    return 'applied';
  }

  /** One event at a time (each step is atomic here anyway); see `BalanceStore.applyBatch`. Always answers `balanceAfter`. */
  async applyBatch(items: BatchItem[], _options?: { balanceAfter?: boolean }): Promise<BatchOutcome[]> {
    const out: BatchOutcome[] = [];
    for (const { event } of items) {
      let verdict: ApplyResult;
      try {
        verdict = event.type === 'usage' ? await this.applyUsage(event) : await this.applyLedger(event);
      } catch (err) {
        out.push({ verdict: 'failed', error: err instanceof Error ? err : new Error(String(err)) });
        return out;
      }
      if (verdict === 'applied' && event.type === 'usage') {
        out.push({ verdict, balanceAfter: this.#balances.get(event.account_id) ?? 0n });
      } else {
        out.push({ verdict });
      }
      if (verdict !== 'applied' && verdict !== 'duplicate') return out;
    }
    return out;
  }

  async checkPosition(_position: LogPosition): Promise<ApplyResult> {
    return 'applied';
  }

  async advancePosition(_position: LogPosition): Promise<void> {}

  async position(): Promise<bigint> {
    return -1n;
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async stateLost(): Promise<boolean> {
    return false;
  }

  /** No log positions here (the in-process log's offsets start again with every process). */
  async storedPositions(): Promise<Map<string, bigint> | undefined> {
    return undefined;
  }

  async snapshot(): Promise<StateSnapshot> {
    return { balances: new Map(this.#balances), positions: new Map(), ready: true };
  }

  async ledgerEntry(eventId: string): Promise<LedgerEntry | undefined> {
    const entry = this.#ledgerEntries.get(eventId);
    return entry && { ...entry };
  }

  async quarantine(record: LedgerQuarantine, _position?: LogPosition): Promise<ApplyResult> {
    const key = record.offset >= 0n ? `${record.topic}:${record.partition}:${record.offset}` : record.event_id;
    if (this.#quarantine.has(key)) return 'duplicate';
    this.#quarantine.set(key, { ...record });
    if (isRefusal(record) && !this.#ledgerEntries.has(record.event_id)) {
      this.#rejected.set(record.event_id, record.reason);
      this.#notify(record.event_id, false);
    }
    return 'applied';
  }

  async quarantineReason(eventId: string): Promise<string | undefined> {
    return this.#rejected.get(eventId);
  }

  async quarantined(): Promise<LedgerQuarantine[]> {
    return [...this.#quarantine.values()].map((r) => ({ ...r }));
  }

  async claimReference(eventId: string, entry: Required<LedgerEntry>, ttlMs: number): Promise<ReferenceClaim> {
    const applied = this.#ledgerEntries.get(eventId);
    if (applied !== undefined) return { claimed: false, entry: { ...applied } };
    const refused = this.#rejected.get(eventId);
    if (refused !== undefined) return { claimed: false, refused };
    const now = this.#now();
    const claim = this.#claims.get(eventId);
    if (claim && claim.until > now) return { claimed: false, entry: { ...claim.entry } };
    this.#claims.set(eventId, { entry: { ...entry }, until: now + ttlMs });
    return { claimed: true };
  }

  async releaseReference(eventId: string): Promise<void> {
    this.#claims.delete(eventId);
  }

  async keepReference(eventId: string): Promise<void> {
    const claim = this.#claims.get(eventId);
    if (claim) claim.until = Infinity;
  }

  async acquireLock(name: string, ttlMs: number, owner = '0'): Promise<boolean> {
    const now = this.#now();
    if ((this.#locks.get(name)?.until ?? -Infinity) > now) return false;
    this.#locks.set(name, { until: now + ttlMs, owner });
    return true;
  }

  async extendLock(name: string, owner: string, ttlMs: number): Promise<boolean> {
    const lock = this.#locks.get(name);
    const now = this.#now();
    if (!lock || lock.owner !== owner || lock.until <= now) return false;
    lock.until = now + ttlMs;
    return true;
  }

  async lockOwner(name: string): Promise<string | null> {
    const lock = this.#locks.get(name);
    return lock && lock.until > this.#now() ? lock.owner : null;
  }

  async releaseLock(name: string, owner?: string): Promise<void> {
    const lock = this.#locks.get(name);
    if (lock && (owner === undefined || (lock.owner === owner && lock.until > this.#now()))) this.#locks.delete(name);
  }

  waitApplied(eventId: string, timeoutMs: number): Promise<boolean> {
    if (this.#ledgerEntries.has(eventId) || this.#usageSeen.has(eventId)) return Promise.resolve(true);
    if (this.#rejected.has(eventId)) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        const list = this.#waiters.get(eventId)?.filter((f) => f !== wake);
        if (list?.length) this.#waiters.set(eventId, list);
        else this.#waiters.delete(eventId);
        resolve(ok);
      };
      const wake = (applied: boolean) => done(applied);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#waiters.set(eventId, [...(this.#waiters.get(eventId) ?? []), wake]);
    });
  }

  async load(snapshot: BalanceSnapshot): Promise<void> {
    // Spend windows first (never lowered: see BalanceSnapshot.spendWindows); one already ended is left out.
    const now = this.#now();
    for (const c of snapshot.spendWindows ?? []) {
      const end = windowBounds(c.name, c.start).end;
      if (end !== null && end <= now) continue;
      const key = this.#windowKey(c.name, { accountId: c.accountId, keyId: c.keyId ?? '' }, c.start);
      const w = this.#windows.get(key);
      if (!w) this.#windows.set(key, { value: c.used, end });
      else if (w.value < c.used) w.value = c.used;
    }
    this.#balances = new Map(snapshot.balances);
    this.#ledgerEntries = new Map(snapshot.ledgerEntries);
    if (snapshot.refusals) this.#rejected = new Map(snapshot.refusals);
    // The ids remembered vouch for effects the load just replaced: only the snapshot's count now.
    // They stay known as applied before the load, whose windows kept them.
    for (const [id, at] of this.#usageSeen) this.#appliedBefore.set(id, at);
    this.#usageSeen = new Map();
    for (const id of snapshot.usageIds ?? []) this.#usageSeen.set(id, this.#now());
  }

  async balances(): Promise<Map<string, bigint>> {
    return new Map(this.#balances);
  }

  async close(): Promise<void> {}

  #credit(accountId: string, amount: bigint): void {
    this.#balances.set(accountId, (this.#balances.get(accountId) ?? 0n) + amount);
  }

  #addHeld(accountId: string, delta: bigint): void {
    const next = (this.#heldByAccount.get(accountId) ?? 0n) + delta;
    if (next === 0n) this.#heldByAccount.delete(accountId);
    else this.#heldByAccount.set(accountId, next);
  }

  /** `giveBack`: also take the amount out of its spend windows (release); expiry keeps it counted. */
  #dropHold(holdId: string, giveBack = false): void {
    const hold = this.#holds.get(holdId);
    if (!hold) return;
    this.#holds.delete(holdId);
    const ids = this.#accountHolds.get(hold.accountId);
    ids?.delete(holdId);
    if (ids?.size === 0) this.#accountHolds.delete(hold.accountId);
    this.#addHeld(hold.accountId, -hold.amount);
    if (giveBack) this.#shiftWindows(hold.windows, -hold.amount);
  }

  /**
   * `cost` µc in every spend window of the event's key and account at its `ts` still open now;
   * answers the window keys counted (lua/windows-fn.lua's count_windows).
   */
  #countWindows(event: Pick<UsageEvent, 'account_id' | 'key_id' | 'ts'>, cost: bigint): string[] {
    const now = this.#now();
    const counted: string[] = [];
    for (const name of SPEND_WINDOW_NAMES) {
      const end = windowBounds(name, event.ts).end;
      if (end !== null && end <= now) continue;
      const key = this.#windowKey(name, { accountId: event.account_id, keyId: event.key_id }, event.ts);
      this.#addWindow(key, cost, event.ts);
      counted.push(key);
    }
    return counted;
  }

  #windows = new Map<string, { value: bigint; end: number | null }>();

  #windowKey(name: SpendWindowName, who: { accountId: string; keyId: string }, now: number): string {
    const owner = name.startsWith('key_') ? `k:${who.keyId}` : `a:${who.accountId}`;
    return `${name}:${owner}:${windowBounds(name, now).start}`;
  }

  #windowValue(key: string, now: number): bigint {
    const w = this.#windows.get(key);
    if (!w) return 0n;
    if (w.end !== null && w.end <= now) { this.#windows.delete(key); return 0n; }
    return w.value;
  }

  #addWindow(key: string, delta: bigint, now: number): void {
    const name = key.slice(0, key.indexOf(':')) as SpendWindowName;
    const w = this.#windows.get(key);
    if (w) w.value += delta;
    else this.#windows.set(key, { value: delta, end: windowBounds(name, now).end });
  }

  /** Moves counters of windows still open; a window that ended keeps what it had. */
  #shiftWindows(keys: string[], delta: bigint): void {
    if (delta === 0n) return;
    for (const key of keys) {
      const w = this.#windows.get(key);
      if (w) w.value += delta;
    }
  }

  #expireHolds(accountId: string): void {
    const ids = this.#accountHolds.get(accountId);
    if (!ids) return;
    const now = this.#now();
    const bound = this.#earliestExpiry.get(accountId);
    if (bound !== undefined && bound > now) return;
    let earliest = Infinity;
    for (const id of ids) {
      const at = this.#holds.get(id)!.expiresAt;
      if (at <= now) {
        // Counted in windows: it stays so (hwin's entry in the Redis store), and its usage adds nothing.
        if (this.#holds.get(id)!.counted) this.#expiredHolds.set(id, now);
        this.#dropHold(id);
      }
      else if (at < earliest) earliest = at;
    }
    if (earliest === Infinity) this.#earliestExpiry.delete(accountId);
    else this.#earliestExpiry.set(accountId, earliest);
  }

  /** A hold of `accountId` now expires at `at` (ms): keeps `#earliestExpiry` a lower bound. */
  #noteExpiry(accountId: string, at: number): void {
    const bound = this.#earliestExpiry.get(accountId);
    if (bound === undefined || at < bound) this.#earliestExpiry.set(accountId, at);
  }

  /** Forgets usage ids, ids applied before a load and expired holds' ids older than the usage memory. */
  #forgetOldUsage(): void {
    // Map iteration is insertion order, so the oldest ids come first.
    const horizon = this.#now() - this.#usageMemoryMs;
    for (const ids of [this.#usageSeen, this.#appliedBefore, this.#expiredHolds]) {
      for (const [id, at] of ids) {
        if (at > horizon) break;
        ids.delete(id);
      }
    }
  }

  #notify(eventId: string, applied: boolean): void {
    const list = this.#waiters.get(eventId);
    if (!list) return;
    this.#waiters.delete(eventId);
    for (const wake of list) wake(applied);
  }
}
