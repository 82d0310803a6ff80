import type { ConsumedEvent, ControlEvent, EventLog, LedgerEvent, Subscription, UsageEvent } from '@tollgate/events';
import type { LogPosition, Warehouse } from '@tollgate/warehouse';

export interface WarehouseSinkDeps {
  log: EventLog;
  warehouse: Warehouse;
  /** small batches wait up to this long for company: MergeTree wants few, large parts */
  flushMs: number;
  /** a batch at least this large is inserted at once (default 1000) */
  batchSize?: number;
  group?: string;
  onError?: (err: unknown) => void;
  onFlushed?: (events: ConsumedEvent[]) => void;
}

/**
 * The `warehouse` consumer group: batches every event into ClickHouse. A batch counts as
 * consumed only after its inserts succeed; if ClickHouse is down the batch fails, the log
 * delivers it again after a pause, and nothing upstream of the log notices. Reads in the
 * warehouse deduplicate by event id, so a batch inserted twice counts once.
 */
export function startWarehouseSink(deps: WarehouseSinkDeps): Promise<Subscription> {
  let lastFlush = 0;
  return deps.log.subscribe({
    group: deps.group ?? 'warehouse',
    topics: ['usage', 'ledger', 'control'],
    fromBeginning: true,
    handler: async (batch) => {
      const wait = lastFlush + deps.flushMs - Date.now();
      // A small batch waits (more events queue up behind it and arrive together next time);
      // a large one is worth a part of its own at once.
      if (wait > 0 && batch.length < (deps.batchSize ?? 1000)) await new Promise((r) => setTimeout(r, wait));
      const usage: UsageEvent[] = [];
      const usageAt: (LogPosition | undefined)[] = [];
      const ledger: LedgerEvent[] = [];
      const ledgerAt: (LogPosition | undefined)[] = [];
      const control: ControlEvent[] = [];
      const durable = deps.log.durablePositions === true;
      for (const { event, partition, offset } of batch) {
        const at = durable ? { partition, offset } : undefined;
        if (event.type === 'usage') {
          usage.push(event);
          usageAt.push(at);
        } else if (event.type === 'ledger') {
          ledger.push(event);
          ledgerAt.push(at);
        } else control.push(event);
      }
      try {
        if (control.length) await deps.warehouse.insertControl(control);
        if (ledger.length) await deps.warehouse.insertLedger(ledger, ledgerAt);
        if (usage.length) await deps.warehouse.insertUsage(usage, usageAt);
      } catch (err) {
        deps.onError?.(err);
        throw err;
      } finally {
        lastFlush = Date.now();
      }
      deps.onFlushed?.(batch);
    },
  });
}
