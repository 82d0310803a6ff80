import type { ConsumedEvent, EventLog, Subscription } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import type { BalanceStore } from '@tollgate/ledger';

export interface LedgerConsumerDeps {
  log: EventLog;
  balances: BalanceStore;
  keys: KeyDirectory;
  group?: string;
  /** called after each applied batch (metrics, tests) */
  onApplied?: (events: ConsumedEvent[]) => void;
}

/** Applies one event to hot state. Every branch is idempotent, so redelivery changes nothing. */
export async function applyEvent(deps: Pick<LedgerConsumerDeps, 'balances' | 'keys'>, e: ConsumedEvent): Promise<void> {
  const ev = e.event;
  switch (ev.type) {
    case 'usage':
      await deps.balances.applyUsage(ev);
      return;
    case 'ledger':
      await deps.balances.applyLedger(ev);
      return;
    case 'account':
      await deps.keys.putAccount(ev.account);
      return;
    case 'key':
      await deps.keys.putKey(ev.key);
      return;
  }
}

/**
 * The `ledger` consumer group: usage debits, credits, and control records into hot state.
 * Events of one account are in one partition and applied in order.
 */
export function startLedgerConsumer(deps: LedgerConsumerDeps): Promise<Subscription> {
  return deps.log.subscribe({
    group: deps.group ?? 'ledger',
    topics: ['usage', 'ledger', 'control'],
    fromBeginning: true,
    handler: async (batch) => {
      for (const e of batch) await applyEvent(deps, e);
      deps.onApplied?.(batch);
    },
  });
}
