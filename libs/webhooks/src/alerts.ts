// The glue between where alerts are detected and the dispatcher: one object the runtime hands
// to the gateway (`alerts`), the ledger consumer (`onUsageApplied`) and the consumer groups'
// quarantine callbacks. Every entry returns at once or is bounded, and never throws.

import type { KeyDirectory } from '@tollgate/keys';
import type { BalanceStore, SpendWindowName } from '@tollgate/ledger';
import type { DispatcherLogger, WebhookDispatcher } from './dispatcher.ts';
import { balanceLow, eventQuarantined, planWindowExhausted, spendLimitReached } from './triggers.ts';

/** The plan windows that are windows (a refused concurrency slot frees when a request ends: not alerted). */
const PLAN_WINDOWS = new Set(['requests_per_minute', 'requests_per_5h', 'requests_per_week', 'tokens_per_minute']);

export interface AlertHooks {
  /** for GatewayDeps.alerts */
  gateway: {
    spendLimitReached(r: { accountId: string; keyId: string; window: SpendWindowName; limit: bigint; used: bigint; resetAt: number | null }): void;
    planWindowExhausted(r: { accountId: string; keyId: string; limit: string; retryAfterMs: number }): void;
  };
  /**
   * For the ledger consumer's `onUsageApplied`: reads the account's threshold
   * (`low_balance_credits`, else `lowBalanceMicros`) and its balance after the debit, only when
   * a live webhook subscribes to `balance.low` (cached list: no read otherwise).
   */
  onUsageApplied(ev: { event_id: string; account_id: string; cost_micros: string; ts: number }, balanceAfter?: bigint): Promise<void>;
  /** for the `onQuarantined` callbacks of every consumer group */
  quarantined(group: string, q: { event_id: string; topic: string; partition: number; offset: bigint | string; kind: string; reason: string }): void;
}

export function alertHooks(deps: {
  dispatcher: WebhookDispatcher;
  keys: Pick<KeyDirectory, 'account'>;
  balances: Pick<BalanceStore, 'get'>;
  /** LOW_BALANCE_CREDITS in µc; undefined: only accounts with their own threshold are watched */
  lowBalanceMicros: bigint | undefined;
  log?: DispatcherLogger;
}): AlertHooks {
  const { dispatcher } = deps;
  return {
    gateway: {
      spendLimitReached: (r) => dispatcher.notify(spendLimitReached(r)),
      planWindowExhausted: (r) => { if (PLAN_WINDOWS.has(r.limit)) dispatcher.notify(planWindowExhausted(r)); },
    },
    async onUsageApplied(ev, balanceAfter) {
      try {
        if (BigInt(ev.cost_micros) <= 0n || !(await dispatcher.wants('balance.low'))) return;
        const account = await deps.keys.account(ev.account_id);
        const own = account?.low_balance_credits;
        const threshold = own === null || own === undefined ? deps.lowBalanceMicros : BigInt(own);
        if (threshold === undefined) return;
        // The ledger consumer passes the balance this debit left (its batch may debit again).
        const balance = balanceAfter ?? (await deps.balances.get(ev.account_id)).balance;
        const o = balanceLow(ev, balance, threshold);
        if (o) dispatcher.notify(o);
      } catch (err) {
        // An alert is never worth stopping the ledger: logged, the debit stays applied.
        deps.log?.warn({ err, event: ev.event_id }, 'webhook: balance.low check failed');
      }
    },
    quarantined: (group, q) => dispatcher.notify(eventQuarantined(group, q)),
  };
}
