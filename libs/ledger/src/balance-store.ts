import type { LedgerEvent, UsageEvent } from '@tollgate/events';

export interface HoldRequest {
  /** the request id; the usage event of the request carries the same id and closes the hold */
  holdId: string;
  accountId: string;
  keyId: string;
  /** worst-case cost of the request, micro-credits */
  amount: bigint;
  /** a hold no one settles (its gateway died) stops counting after this long */
  ttlMs: number;
}

export type HoldResult =
  | { ok: true; available: bigint }
  | { ok: false; reason: 'insufficient_credits'; available: bigint };

export interface AccountBalance {
  /** credits granted minus usage applied, micro-credits */
  balance: bigint;
  /** sum of the outstanding holds */
  held: bigint;
  /** balance − held: what a new request may reserve */
  available: bigint;
}

/** What the ledger consumer saw when it applied an event. */
export type ApplyResult = 'applied' | 'duplicate';

/**
 * Hot state for money: balances and holds. Invariant: available = balance − Σ outstanding
 * holds, checked and changed atomically, so concurrent requests can never reserve credit
 * that is not there. The warehouse is the source of truth; a store can be rebuilt from it.
 */
export interface BalanceStore {
  /** Reserves `amount` if available ≥ amount and the balance is positive; one atomic step. */
  hold(request: HoldRequest): Promise<HoldResult>;
  /** Shrinks a hold to the actual cost once it is known; no-op if the hold is gone. */
  settle(holdId: string, accountId: string, actual: bigint): Promise<void>;
  /** Drops a hold with nothing to charge (failed before the upstream billed anything). */
  release(holdId: string, accountId: string): Promise<void>;
  get(accountId: string): Promise<AccountBalance>;

  /** Ledger consumer: debits the cost and closes the hold of the same id. Idempotent by event_id. */
  applyUsage(event: UsageEvent): Promise<ApplyResult>;
  /** Ledger consumer: credits or debits the amount. Idempotent by event_id. */
  applyLedger(event: LedgerEvent): Promise<ApplyResult>;
  /** The amount a ledger event was applied with, if it was (to answer a repeated reference). */
  ledgerEntry(eventId: string): Promise<bigint | undefined>;
  /** Resolves true once the event is applied, false after `timeoutMs`. */
  waitApplied(eventId: string, timeoutMs: number): Promise<boolean>;

  /** Replaces every balance (rebuild from the warehouse); holds are left as they are. */
  load(snapshot: BalanceSnapshot): Promise<void>;
  /** Every account's balance (for reconcile). */
  balances(): Promise<Map<string, bigint>>;
  close(): Promise<void>;
}

export interface BalanceSnapshot {
  balances: Map<string, bigint>;
  /** ledger event ids already in the balances, with their amounts (keeps references idempotent) */
  ledgerEntries: Map<string, bigint>;
}
