import { RewindError, type ConsumedEvent, type EventLog, type Subscription } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import type { ApplyResult, BalanceStore, LogPosition } from '@tollgate/ledger';

export interface LedgerConsumerDeps {
  log: EventLog;
  balances: BalanceStore;
  keys: KeyDirectory;
  group?: string;
  /** hot state was found lost (not ready): the process that can rebuild it should */
  onNotReady?: () => void;
  /** called after each applied batch (metrics, tests) */
  onApplied?: (events: ConsumedEvent[]) => void;
}

/** Hot state is gone and not rebuilt yet; the batch is retried after a pause. */
export class StateNotReadyError extends Error {
  constructor() {
    super('hot state is not ready (lost and not rebuilt yet)');
    this.name = 'StateNotReadyError';
  }
}

/**
 * Applies one event to hot state. Every branch is idempotent: by log position (stored with the
 * effect, in the same atomic step) and by event id, so redelivery changes nothing.
 */
export async function applyEvent(
  deps: Pick<LedgerConsumerDeps, 'balances' | 'keys'>,
  e: ConsumedEvent,
  position: LogPosition | undefined,
): Promise<ApplyResult> {
  const ev = e.event;
  switch (ev.type) {
    case 'usage':
      return deps.balances.applyUsage(ev, position);
    case 'ledger':
      return deps.balances.applyLedger(ev, position);
    case 'account':
    case 'key': {
      // Control records live in the key directory and are idempotent by version, so the
      // position check and the position advance may be separate steps.
      const verdict = position ? await deps.balances.checkPosition(position) : 'applied';
      if (verdict !== 'applied') return verdict;
      if (ev.type === 'account') await deps.keys.putAccount(ev.account);
      else await deps.keys.putKey(ev.key);
      if (position) await deps.balances.advancePosition(position);
      return 'applied';
    }
  }
}

/**
 * The `ledger` consumer group: usage debits, credits, and control records into hot state.
 * Events of one account are in one partition and applied in order. When the state is behind
 * the group's committed position (it was rebuilt from the warehouse), the partition is read
 * again from the state's own position; when the state is lost, the batch waits for a rebuild.
 */
export function startLedgerConsumer(deps: LedgerConsumerDeps): Promise<Subscription> {
  const durable = deps.log.durablePositions === true;
  return deps.log.subscribe({
    group: deps.group ?? 'ledger',
    topics: ['usage', 'ledger', 'control'],
    fromBeginning: true,
    handler: async (batch) => {
      for (const e of batch) {
        const position = durable ? { topic: e.topic, partition: e.partition, offset: e.offset } : undefined;
        const verdict = await applyEvent(deps, e, position);
        if (verdict === 'not_ready') {
          deps.onNotReady?.();
          throw new StateNotReadyError();
        }
        if (verdict === 'gap') {
          const stored = await deps.balances.position(e.topic, e.partition);
          throw new RewindError([{ topic: e.topic, partition: e.partition, offset: stored + 1n }]);
        }
      }
      deps.onApplied?.(batch);
    },
  });
}
