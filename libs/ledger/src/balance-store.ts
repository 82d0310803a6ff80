import type { LedgerEvent, LedgerKind, UsageEvent } from '@tollgate/events';

/**
 * A spend window: a cap on what one key or one account may spend in a calendar period of the
 * store's clock (UTC; the Redis server's clock in distributed mode). The window counts spent +
 * held micro-credits: a hold reserves its amount in every window it names, `settle` moves it
 * to the actual cost, `release` gives it back. A hold that expires (its gateway died) stays
 * counted, so a window errs toward its limit and never past it.
 * - `key_hourly`, `key_daily`, `key_total` count the request's key (`total` never resets);
 * - `account_daily`, `account_monthly` count the account.
 */
export type SpendWindowName = 'key_hourly' | 'key_daily' | 'key_total' | 'account_daily' | 'account_monthly';

export interface SpendWindow {
  name: SpendWindowName;
  /** the cap, micro-credits (>= 0) */
  limit: bigint;
}

/** The window names in the order the store checks them (the first binding one is reported). */
export const SPEND_WINDOW_NAMES: readonly SpendWindowName[] =
  ['key_hourly', 'key_daily', 'key_total', 'account_daily', 'account_monthly'];

/**
 * One stretch of a hold's output (`HoldSegment` of @tollgate/pricing): up to `tokens` output
 * tokens at `perOutputToken` µc each; null tokens: every token left.
 */
export interface AdmissionSegment {
  /** µc per output token, rounded up to a whole µc (so the clamped hold stays a bound) */
  perOutputToken: bigint;
  /** how many tokens this rate covers, or null for all that are left */
  tokens: number | null;
}

/**
 * Admission policy inputs (see `admission` in @tollgate/pricing, which computes them exactly):
 * a hold of `maxTokens` output tokens costs `amount`; a hold of t tokens is bounded by
 * `admissionHoldAt(admission, t)`: `base` plus the t tokens laid over `segments` in order (the
 * output's rates, dearest first, each for up to its `tokens`; tokens past the last segment cost
 * nothing). Under `clamp`, when `amount` does not fit, the store reserves for the largest t in
 * [floorTokens, maxTokens] that fits (`clampAdmission`) and reports t (`maxTokens` of the
 * result); under `strict` it reserves `amount` or refuses.
 */
export interface HoldAdmission {
  policy: 'strict' | 'clamp';
  /** input-side worst case (every input token at the dearest class, tools, extras), µc */
  base: bigint;
  /** the output's rates, dearest first (one `{perOutputToken, tokens: null}` for a single model) */
  segments: readonly AdmissionSegment[];
  /** the request's max_tokens */
  maxTokens: number;
  /** clamp never goes below this many output tokens (<= maxTokens) */
  floorTokens: number;
}

/** The µc the admission terms reserve for `tokens` output tokens: `base` plus those tokens laid over the segments. */
export function admissionHoldAt(a: HoldAdmission, tokens: number): bigint {
  let held = a.base;
  let left = BigInt(tokens);
  for (const s of a.segments) {
    if (left <= 0n) break;
    const take = s.tokens !== null && BigInt(s.tokens) < left ? BigInt(s.tokens) : left;
    held += take * s.perOutputToken;
    left -= take;
  }
  return held;
}

/**
 * The clamp of `admission` to `headroom` µc: the largest t in [floorTokens, maxTokens] whose
 * hold (`admissionHoldAt`) fits, with that hold; null when not even the floor fits, or when no
 * segment has a price (fewer tokens would not help). The headroom above `base` is spent over
 * the segments in order: a segment that fits whole adds its tokens, the first that does not
 * adds ⌊what is left / its rate⌋ and ends the count. Pure; the Redis store's hold.lua applies
 * the same rule inside its atomic step.
 */
export function clampAdmission(headroom: bigint, a: HoldAdmission): { tokens: number; amount: bigint } | null {
  if (!a.segments.some((s) => s.perOutputToken > 0n)) return null;
  if (headroom < admissionHoldAt(a, a.floorTokens)) return null;
  const max = BigInt(a.maxTokens);
  let room = headroom - a.base;
  let t = 0n;
  let ended = false;
  for (const s of a.segments) {
    const whole = s.tokens === null ? null : BigInt(s.tokens);
    if (s.perOutputToken === 0n) { t = whole === null ? max : t + whole; } else if (whole !== null && whole * s.perOutputToken <= room) {
      room -= whole * s.perOutputToken;
      t += whole;
    } else {
      t += room / s.perOutputToken;
      ended = true;
    }
    if (ended || whole === null || t >= max) break;
  }
  if (!ended && (a.segments.length === 0 || a.segments.at(-1)!.tokens !== null)) t = max; // past the last segment, tokens cost nothing
  const tokens = Number(t < max ? t : max);
  return { tokens, amount: admissionHoldAt(a, tokens) };
}

export interface HoldRequest {
  /** the request id; the usage event of the request carries the same id and closes the hold */
  holdId: string;
  accountId: string;
  keyId: string;
  /** worst-case cost of the request as sent (at its full max_tokens), micro-credits */
  amount: bigint;
  /** a hold no one settles (its gateway died) stops counting after this long */
  ttlMs: number;
  /** how far below zero the account may go (its `overdraft_credits`), µc; default 0 */
  overdraft?: bigint;
  /** spend windows checked and reserved in the same atomic step; default none */
  windows?: SpendWindow[];
  /** admission policy; absent = strict on `amount` */
  admission?: HoldAdmission;
}

/**
 * A hold a gateway still has in flight, as it re-reserves it after hot state was lost and
 * rebuilt (`BalanceStore.restoreHolds`).
 */
export interface RestoredHold {
  /** the request id (= the usage event id that closes it) */
  holdId: string;
  accountId: string;
  keyId: string;
  /** what it reserves now, µc: the hold's amount, or its settled cost once settled */
  amount: bigint;
  /** how much longer it lives, ms (> 0): what was left of its TTL */
  ttlMs: number;
  /** the request's start, epoch ms (its usage event's `ts`): the spend windows it counts in */
  ts: number;
}

export type HoldResult =
  /**
   * `amount`: what was reserved (µc); `maxTokens`: the output tokens it covers, lower than the
   * request's when clamped (absent without `admission`); `available`: balance − held after it.
   */
  | { ok: true; available: bigint; amount: bigint; maxTokens?: number }
  /** `available`: balance − held (+ overdraft) before this hold; `required`: the smallest hold that was asked for */
  | { ok: false; reason: 'insufficient_credits'; available: bigint; required?: bigint }
  /**
   * A spend window would be crossed. `used`: spent + held in it (a retried hold id's own earlier
   * hold left out), µc; `resetAt`: epoch ms of the
   * window's end (null for `key_total`).
   */
  | { ok: false; reason: 'spend_limit_exceeded'; available: bigint; window: SpendWindowName; limit: bigint;
      used: bigint; resetAt: number | null; required: bigint }
  /** hot state was lost and is not rebuilt yet: nothing can be decided about money */
  | { ok: false; reason: 'not_ready'; available: bigint };

/** Start and end (epoch ms, UTC) of the window containing `now`; end null for `key_total`. */
export function windowBounds(name: SpendWindowName, now: number): { start: number; end: number | null } {
  const d = new Date(now);
  switch (name) {
    case 'key_hourly': { const s = now - (now % 3600_000); return { start: s, end: s + 3600_000 }; }
    case 'key_daily': case 'account_daily': { const s = now - (now % 86_400_000); return { start: s, end: s + 86_400_000 }; }
    case 'account_monthly':
      return { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
    case 'key_total': return { start: 0, end: null };
  }
}

/** Where an event sits in a durable log; stored with the event's effect. */
export interface LogPosition {
  topic: string;
  partition: number;
  offset: bigint;
}

/** `${topic}:${partition}`, the key of a stored position. */
export function positionKey(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

export interface AccountBalance {
  /** credits granted minus usage applied, micro-credits */
  balance: bigint;
  /** sum of the outstanding holds */
  held: bigint;
  /** balance − held: what a new request may reserve */
  available: bigint;
}

/**
 * What the ledger consumer saw when it applied an event:
 * - `applied`, `duplicate` (already in: by event id, or at or before the stored position; a
 *   ledger event whose id the ledger refused before is a duplicate too: one id, one decision);
 * - `gap`: the event is past the stored position + 1, so the events between were not applied
 *   here (hot state was rebuilt from an earlier point): the consumer must rewind;
 * - `not_ready`: hot state was lost and not yet rebuilt;
 * - `out_of_range` (`applyLedger` only): the balance would leave ±MAX_MONEY_MICROS (2^53 − 1 µc),
 *   the one bound every stage holds exactly. Nothing changed and the position did not move: the
 *   consumer quarantines the event (`balance_out_of_range`), which moves the position past it.
 *   Checked in the same atomic step as the credit, so no concurrency can slip past it.
 */
export type ApplyResult = 'applied' | 'duplicate' | 'gap' | 'not_ready' | 'out_of_range';

/** One event of an `applyBatch` call; `position` as for `applyUsage` (absent: no durable log). */
export interface BatchItem {
  event: UsageEvent | LedgerEvent;
  position?: LogPosition;
}

/**
 * The outcome of one event of an `applyBatch` call. `failed`: the event itself cannot be
 * applied (a RangeError before the script, or a Redis reply error such as a 64-bit overflow
 * inside it); nothing of it was written, `error` says why (the consumer quarantines it).
 */
export interface BatchOutcome {
  verdict: ApplyResult | 'failed';
  /** an applied usage debit, when asked for: the account's balance right after it, µc (balance.low trigger) */
  balanceAfter?: bigint;
  error?: Error;
}

/** An event the ledger consumer could not apply, set aside with its log position passed. */
export interface LedgerQuarantine {
  /** the event's id, or a stand-in when it has no usable one (see the warehouse's QuarantineRecord) */
  event_id: string;
  topic: string;
  /** -1 / -1n without a durable log */
  partition: number;
  offset: bigint;
  /** `undecodable`, `invalid_event` or `apply_failed` */
  kind: string;
  reason: string;
}

/**
 * A credit entry as the hot ledger remembers it under its event id (`credit:<account>:<reference>`),
 * to answer a repeated reference: the same entry is a duplicate, another one a conflict.
 */
export interface LedgerEntry {
  /** signed micro-credits */
  amount: bigint;
  /**
   * the entry's kind; undefined for an entry a Redis ledger stored before kinds were kept
   * (2026-12: its amount alone is compared, until a rebuild from the warehouse brings the kind)
   */
  kind?: LedgerKind;
}

/**
 * Whether a quarantine record decides its event id for good (`quarantineReason`, refused
 * references, the apply scripts' refused ids): only a refusal to apply (`apply_failed`: a grant
 * past the money bound, a debit Redis refused). An event nothing could decode (`undecodable`,
 * `invalid_event`) was not stored by the warehouse either, and may be a malformed copy of an id
 * whose valid event is applied before or after it: that id stays open. The warehouse's money
 * reads use the same rule (LEDGER_REFUSED_IDS of @tollgate/warehouse).
 */
export function isRefusal(record: Pick<LedgerQuarantine, 'kind'>): boolean {
  return record.kind === 'apply_failed';
}

/** The outcome of `claimReference`. */
export type ReferenceClaim =
  | { claimed: true }
  /** someone else holds the claim (or it is applied): for this entry */
  | { claimed: false; entry: LedgerEntry }
  /**
   * the ledger refused an event of this id (quarantined it, e.g. `balance_out_of_range: …`):
   * a reference names one decision for good, so the warehouse's rows stay facts keyed by event id
   */
  | { claimed: false; refused: string };

export interface StateSnapshot {
  balances: Map<string, bigint>;
  /** last applied offset per `${topic}:${partition}` */
  positions: Map<string, bigint>;
  ready: boolean;
}

/**
 * Hot state for money: balances and holds. Invariant: available = balance − Σ outstanding
 * holds, checked and changed atomically, so concurrent requests can never reserve credit
 * that is not there. The warehouse is the source of truth; a store can be rebuilt from it.
 */
export interface BalanceStore {
  /** True when `load` needs `BalanceSnapshot.eventAccounts` (a Redis Cluster layout). */
  readonly needsEventAccounts?: boolean;
  /** Reserves `amount` if available ≥ amount and the balance is positive; one atomic step. */
  hold(request: HoldRequest): Promise<HoldResult>;
  /**
   * Shrinks a hold to the actual cost once it is known, and keeps it `ttlMs` longer: it must
   * outlive the trip of the usage event through the log. No-op if the hold is gone.
   */
  settle(holdId: string, accountId: string, actual: bigint, ttlMs: number): Promise<void>;
  /** Keeps a live request's hold from expiring for another `ttlMs`; no-op if it is gone. */
  extend(holdId: string, accountId: string, ttlMs: number): Promise<void>;
  /** Drops a hold with nothing to charge (failed before the upstream billed anything). */
  release(holdId: string, accountId: string): Promise<void>;
  /**
   * What identifies the state's current build: a value every `load` (rebuild) replaces (Redis:
   * the ready key's, a random epoch or the Cluster's generation). Null while the state is lost
   * or loading; undefined for a store that never loses holds its callers made (memory: it lives
   * and dies with them; Redis without `requireReady`). A gateway that sees it change re-reserves
   * its requests in flight (`restoreHolds`): the rebuild could not know them. `announceMs`:
   * while the state is lost, also say in the same step that this caller has holds to restore,
   * so the next `load` admits no hold for the store's restore window (Redis: `restoreWindowMs`,
   * 1,000 ms by default) while every gateway restores; the announcement lapses after that long.
   * `restorer`: the announcing process's id; readers wait (`stateLost`) until each announced one
   * calls `restored` after the load, or the store's longest wait (Redis: `restoreWaitMaxMs`,
   * RESTORE_WAIT_MAX_MS, 10,000 ms) has passed. `holding` (with `restorer`, while the state is
   * NOT lost): true, this process holds records the log has not acknowledged (Redis: marked for
   * RECORD_HOLDER_MS); false, it holds none any more (the mark goes); undefined, no change. The
   * process that rebuilds remembers the marks its last `ready()` saw, and its next `load` after a
   * loss (`afterLoss`) waits for them too: one stalled from before the loss to after the load
   * never announced.
   */
  epoch(announceMs?: number, restorer?: string, holding?: boolean): Promise<string | null | undefined>;
  /**
   * The process `restorer` (as it announced itself to `epoch`) has put back into the rebuilt
   * state what it announced: readers stop waiting for it. A no-op for a store never lost.
   */
  restored?(restorer: string): Promise<void>;
  /**
   * Re-reserves holds of requests still in flight after a rebuild, unrefusable (the requests are
   * already running): each one not present and whose usage was not applied here is held again
   * at its amount, counted in the spend windows of its `ts` still open (as a rebuild counts
   * usage), and closed by its usage or release as any hold. Answers how many were restored, or
   * `not_ready` while the state is lost or loading (nothing done: try again).
   */
  restoreHolds(holds: RestoredHold[]): Promise<number | 'not_ready'>;
  get(accountId: string): Promise<AccountBalance>;
  /**
   * Spent + held in the spend window `name` that contains now (of the key for `key_*`, of the
   * account otherwise), µc; 0 when nothing is counted there yet.
   */
  windowUsed(name: SpendWindowName, accountId: string, keyId: string): Promise<bigint>;
  /**
   * Starts the spend windows `names` afresh, of the key `keyId` for the `key_*` windows and of
   * the account otherwise: a limit newly set on a window (unset before) counts from that moment
   * (README, "Spend limits"). The counter of each window open now (by the store's clock) goes,
   * and every hold counted in it (in flight, or expired and still counted) stops being counted
   * there: its settle, release or usage no longer moves it, and its usage is not counted there
   * as a hold-less request would be. Control calls it before it publishes the limit, so every
   * hold made under the limit is counted. Works while the state is lost too (a rebuild then
   * raises the windows to what the warehouse counted).
   */
  restartWindows(accountId: string, keyId: string, names: readonly SpendWindowName[]): Promise<void>;

  /**
   * Ledger consumer: debits the cost and closes the hold of the same id. Idempotent by
   * event_id and, given a position, by log offset (stored atomically with the debit).
   */
  applyUsage(event: UsageEvent, position?: LogPosition): Promise<ApplyResult>;
  /** Ledger consumer: credits or debits the amount. Idempotent by event_id and position. */
  applyLedger(event: LedgerEvent, position?: LogPosition): Promise<ApplyResult>;
  /**
   * Ledger consumer, the fast path: usage and ledger events of one or more log partitions,
   * each partition's in log order (ApplyCoalescer merges the partitions' batches), each with
   * exactly the effect `applyUsage` / `applyLedger` would have (its position stored
   * with it), in one round trip. Answers one outcome per event handled, in order, and stops
   * after the first that is neither `applied` nor `duplicate` (gap, not_ready, out_of_range,
   * failed): the caller deals with that one and calls again with the rest. Events before it
   * keep their effects. Throws only for an outage (nothing of the failed call is known
   * applied; a redelivery sorts it out by position). `options.balanceAfter`: answer each applied
   * usage debit's resulting balance (one more read per debit; the balance.low trigger needs it).
   */
  applyBatch(items: BatchItem[], options?: { balanceAfter?: boolean }): Promise<BatchOutcome[]>;
  /** For events whose effect lives elsewhere (control records): only the position check. */
  checkPosition(position: LogPosition): Promise<ApplyResult>;
  /** …and the position advance once that effect is done (idempotent effects only). */
  advancePosition(position: LogPosition): Promise<void>;
  /** Last applied offset of a partition (-1 = none). */
  position(topic: string, partition: number): Promise<bigint>;
  /**
   * Hot state is present (false after it was lost and before a rebuild). A store that can lose
   * it (Redis) also remembers, from an answer true, the control processes marked holding
   * records (`epoch`'s `holding`), for its next `load` to wait for.
   */
  ready(): Promise<boolean>;
  /**
   * True when this store waits for a rebuild (it requires one, and its store-wide ready mark is
   * missing: Redis lost its data, or a rebuild is loading) or was rebuilt a moment ago and is in
   * its restore window (RESTORE_WINDOW_MS, opened when a process announced records or holds to
   * put back: what only its spool held is missing until then), or some process that announced
   * has not said it is done (`restored`; at most RESTORE_WAIT_MAX_MS): one round trip (on a Cluster the
   * store-wide keys only, not every slot's mark as `ready()` reads). For readers that would take
   * a missing record for an absent one: the operator routes (503 `state_unavailable` rather than
   * "no such account"), a gateway's key miss (503 rather than 401). A store that needs no
   * rebuild (memory, or Redis without `requireReady`): false.
   */
  stateLost(): Promise<boolean>;
  /**
   * Every stored log position (`<topic>:<partition>` → last applied offset) in one cheap read, or
   * undefined while the state is not ready (lost, or being rebuilt). On a Cluster "ready" is the
   * store-wide mark only, not every slot's (`ready()`, 16,384 reads): what the ledger group's
   * position watch needs once a second, where a wrong answer costs re-reading, never money.
   */
  storedPositions(): Promise<Map<string, bigint> | undefined>;
  /** Balances and positions read in one atomic step (for reconcile). */
  snapshot(): Promise<StateSnapshot>;
  /**
   * The entry a ledger event was applied with (amount and kind), if it was (to answer a
   * repeated reference).
   * `accountId` (the event's account): where a Redis Cluster keeps the id; the methods below
   * that take it too need it there (without it they look at the store-wide ids only), and a
   * standalone store ignores it.
   */
  ledgerEntry(eventId: string, accountId?: string): Promise<LedgerEntry | undefined>;
  /**
   * Ledger consumer: sets aside an event it cannot apply (poison) and moves the log position
   * past it in the same atomic step (a position left behind would make every later event of
   * the partition a gap). Verdicts as for `applyLedger`; idempotent by position (or event id).
   * `accountId`: the event's account when it is known (see `ledgerEntry`).
   */
  quarantine(record: LedgerQuarantine, position?: LogPosition, accountId?: string): Promise<ApplyResult>;
  /** Every event the ledger consumer quarantined, oldest first. */
  quarantined(): Promise<LedgerQuarantine[]>;
  /**
   * Control API: claims a ledger event id (`credit:<account>:<reference>`) for one `entry`
   * (amount and kind), atomically, so exactly one of many concurrent requests publishes it.
   * A claim lapses after `ttlMs` (its claimant may have died before publishing; a later retry
   * then claims it again, and the ledger's event-id idempotency keeps a double publish harmless).
   * A reference already applied (or claimed) answers `claimed: false` with its entry; one the ledger
   * refused answers `claimed: false` with `refused` (the quarantine reason).
   */
  claimReference(eventId: string, entry: Required<LedgerEntry>, ttlMs: number, accountId?: string): Promise<ReferenceClaim>;
  /**
   * Gives a claim up early: its event was certainly not published (the log refused it before
   * writing anything), so a retry need not wait for `ttlMs`.
   */
  releaseReference(eventId: string, accountId?: string): Promise<void>;
  /**
   * The claim's event is published (or may be): the claim no longer lapses. Until the ledger
   * applies or refuses the event, only the claim says which entry the reference names; a claim
   * that lapsed then would let another entry be published under the same event id. Once the
   * event is applied or refused, `claimReference` answers from that first, so the kept claim
   * only costs its key.
   */
  keepReference(eventId: string, accountId?: string): Promise<void>;
  /**
   * A lock across the processes sharing this store (a month close, a rollup repair, a
   * warehouse migration): true when this caller now holds `name`, false while another does.
   * It lapses after `ttlMs` (ms) should its holder die; `releaseLock` gives it up. Not a
   * ledger entry: it never answers a credit reference. `owner` (default `'0'`) is a token of
   * this holder that `releaseLock` can check.
   */
  acquireLock(name: string, ttlMs: number, owner?: string): Promise<boolean>;
  /**
   * Gives a lock up. With `owner`, only while that owner still holds it: a holder that outlived
   * its `ttlMs` (a stall) leaves the lock another caller took since alone. Without, whoever
   * holds it (call it only after `acquireLock` answered true).
   */
  releaseLock(name: string, owner?: string): Promise<void>;
  /**
   * A fencing check of a lock taken with `owner`: true, and its life set to `ttlMs` (ms) from
   * now, while `owner` still holds it; false once it lapsed (another caller may hold it since),
   * and then nothing changes.
   */
  extendLock(name: string, owner: string, ttlMs: number): Promise<boolean>;
  /** The owner token lock `name` holds while it is held; null once released or lapsed. */
  lockOwner(name: string): Promise<string | null>;
  /**
   * Resolves true once the event is applied; false after `timeoutMs`, or as soon as the event is
   * quarantined instead (then `quarantineReason` says why).
   */
  waitApplied(eventId: string, timeoutMs: number, accountId?: string): Promise<boolean>;
  /**
   * Why the ledger consumer quarantined the event with this id (the record's `reason`, e.g.
   * `balance_out_of_range: …`), or undefined. Kept for good (a rebuild loads them back from the
   * warehouse, `BalanceSnapshot.refusals`): a refused reference stays refused (`claimReference`
   * answers `refused`).
   */
  quarantineReason(eventId: string, accountId?: string): Promise<string | undefined>;

  /**
   * Replaces every balance, ledger entry and position in one atomic step (rebuild from the
   * warehouse) and marks the state ready; holds are left as they are. The spend windows of
   * `snapshot.spendWindows` are raised to their counts before the state turns ready.
   */
  load(snapshot: BalanceSnapshot): Promise<void>;
  /** Every account's balance (for reconcile). */
  balances(): Promise<Map<string, bigint>>;
  close(): Promise<void>;
}

/**
 * What a spend window counted, as a rebuild reads it back from the warehouse: the cost of the
 * usage events whose `ts` (the request's start) falls in the window, as of the rebuild's log
 * positions. `load` raises the store's counter of that window to at least `used`.
 */
export interface SpendWindowCount {
  name: SpendWindowName;
  accountId: string;
  /** the key the window counts, for the `key_*` windows */
  keyId?: string;
  /** the window's start, epoch ms UTC (`windowBounds`; 0 for `key_total`) */
  start: number;
  /** µc, ≥ 0 */
  used: bigint;
}

export interface BalanceSnapshot {
  balances: Map<string, bigint>;
  /** ledger event ids already in the balances, with their entries (keeps references idempotent) */
  ledgerEntries: Map<string, LedgerEntry>;
  /**
   * event ids the ledger refused (quarantined) → reason (`quarantineReason`): a refused reference
   * stays refused across the rebuild. Given, it replaces what the store held; absent, the store's
   * refusals are left as they are.
   */
  refusals?: Map<string, string>;
  /** the log positions the balances are exact as of (`${topic}:${partition}` → offset) */
  positions?: Map<string, bigint>;
  /**
   * ids of recent usage events already in the balances: remembered again, so a producer-side
   * duplicate of one of them (a spool re-send) arriving after the rebuild is not debited twice
   */
  usageIds?: string[];
  /**
   * event id → account id for every ledger entry and usage id above: a Redis Cluster keeps
   * each in its account's slot, so its load needs them (and throws without); others ignore it.
   */
  eventAccounts?: Map<string, string>;
  /**
   * the spend windows open at the rebuild, with what the warehouse counted in each (a key's or
   * an account's daily, hourly, monthly or lifetime spend): without them a lost hot state (Redis
   * flushed, an embedded process restarted) started every window from 0, and a customer could
   * spend a daily limit again. `load` only ever raises a counter to the count, never lowers one:
   * a counter also holds requests in flight, which the warehouse has no row of yet.
   */
  spendWindows?: SpendWindowCount[];
  /**
   * The state was lost before this load (a rebuild after a loss, not of a live state): the
   * load also waits for the control processes this store's `ready()` last saw holding records
   * the log had not acknowledged. A rebuild of a live state lost nothing, so waits for nobody.
   */
  afterLoss?: boolean;
}

/**
 * Throws a RangeError unless `ttlMs` (how long a hold lives, ms) is a finite number ≥ 0: what
 * `hold`, `settle` and `extend` of every adapter accept. NaN or Infinity would otherwise make a
 * hold expire at once (Redis) or never (memory) while the call reports success.
 */
export function checkTtlMs(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs < 0) throw new RangeError(`ttlMs must be a finite number >= 0, got ${ttlMs}`);
}

/**
 * Thrown by `hold` when the store's connection is not ready, before anything is sent: nothing
 * can have been reserved, so there is nothing to release (unlike a call that timed out or lost
 * its connection while in flight, which `releaseUnanswered` undoes).
 */
/**
 * A rebuild's `load` gave way to a later one that started meanwhile (Redis Cluster: two processes
 * rebuilding at once), or refused because Redis lost its data while the rebuild ran (its mark,
 * `RedisBalanceStore.markRebuild`, is gone: what it put back before the load went with it);
 * the later rebuild decides the state, so this one changed nothing that counts.
 */
export class RebuildSupersededError extends Error {
  constructor(message = 'load on Redis Cluster: another rebuild started meanwhile; it decides the state') {
    super(message);
    this.name = 'RebuildSupersededError';
  }
}

export class StoreNotReadyError extends Error {
  constructor(status: string) {
    super(`the balance store's connection is not ready (${status}); nothing was sent`);
    this.name = 'StoreNotReadyError';
  }
}
