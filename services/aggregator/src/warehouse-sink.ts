import { boundedRaw, decodeDeadLetter, standInId, type BatchContext, type ConsumedDeadLetter, type ConsumedEvent, type EventLog, type Subscription } from '@tollgate/events';
import { unavailableError, type QuarantineRecord, type StoreItem, type Warehouse } from '@tollgate/warehouse';
import { extractContext, SpanKind, SpanStatusCode, type Metrics, type Tracer } from '@tollgate/telemetry';
import { countByTopic } from './ledger-consumer.ts';

export interface WarehouseSinkDeps {
  log: EventLog;
  warehouse: Warehouse;
  /**
   * ms a buffer smaller than `batchSize` may wait, counted from the start of the previous
   * insert, for more events (MergeTree wants few, large parts): at most one insert of a small
   * buffer begins per `flushMs`, and a slow insert does not add its duration to the next one's
   * wait. One of at least QUIET_FLUSH_EVENTS goes sooner, as soon as no partition batch arrived
   * for GATHER_MS (a backlog's batches come close together).
   */
  flushMs: number;
  /**
   * events inserted at once at most; a buffer this full goes without waiting (default
   * DEFAULT_WAREHOUSE_BATCH). Bigger parts: fewer inserts, each with its fixed cost.
   */
  batchSize?: number;
  /**
   * inserts under way at once (default 2): each holds other partitions (a partition has one
   * batch in flight at a time), so while one insert waits on ClickHouse the partitions it does
   * not hold fill the next. 1: strictly one after the other.
   */
  concurrentInserts?: number;
  /**
   * most events per partition batch the log hands over (its `maxBatch`; default
   * DEFAULT_WAREHOUSE_PARTITION_BATCH): a round of partition batches fills the inserts, so
   * this bounds how big they get on a backlog
   */
  partitionBatch?: number;
  /** partitions consumed at once, sharing one insert buffer (default DEFAULT_CONCURRENT_PARTITIONS) */
  concurrentPartitions?: number;
  group?: string;
  onError?: (err: unknown) => void;
  onFlushed?: (events: ConsumedEvent[]) => void;
  /** poison events of a batch, already stored in the quarantine table (log them) */
  onQuarantined?: (records: QuarantineRecord[]) => void;
  /** a `warehouse insert` span per traced event of each batch (see `traceBatch`) */
  tracer?: Tracer;
  /** events applied, insert time, batch size */
  metrics?: Metrics;
}

/**
 * Events per insert at most, by default: 8 partitions × the log's batches of 1,000 fit, so a
 * full round of partition batches is one insert (measured in bench/README.md, "Where the
 * warehouse group's time goes").
 */
export const DEFAULT_WAREHOUSE_BATCH = 20_000;

/**
 * Events per partition batch the warehouse group asks of the log by default (the log's own
 * default is 1,000): 8 partitions × 1,000 made inserts of ~4,500 events on a backlog (two run
 * at once), and the ClickHouse server's CPU per event falls steeply with the insert's size (its
 * fixed cost per insert: the parts of the raw table and of every view, their merges, the
 * rollup_skip query); with 5,000 a backlog goes in inserts of ~10,000 (bench/README.md,
 * "Warehouse CPU per event"). At a steady low rate batches are whatever arrived, as before.
 */
export const DEFAULT_WAREHOUSE_PARTITION_BATCH = 5000;

/** Partitions handled at once by each consumer group by default (see `concurrentPartitions`). */
export const DEFAULT_CONCURRENT_PARTITIONS = 8;

/**
 * ms without a new partition batch after which a buffer of at least QUIET_FLUSH_EVENTS goes
 * without waiting out `flushMs`: the batches of one fetch arrive close together (each after
 * its partition's commit; 10 ms proved too short on a loaded machine: inserts of ~3,800),
 * and a partition whose fetched batch is used up hands over nothing more until the others'
 * batches are stored (kafkajs fetches again only then), so waiting longer would stall.
 */
const GATHER_MS = 50;
/** ms between tries of an assignment's rollup repair while ClickHouse does not answer. */
const REPAIR_RETRY_MS = 1000;
/** Events a buffer needs before a quiet GATHER_MS sends it: below that, flushMs keeps parts few. */
const QUIET_FLUSH_EVENTS = 1000;

/**
 * The `warehouse` consumer group: batches every event into ClickHouse. A batch counts as
 * consumed only after its inserts succeed; if ClickHouse is down the batch fails, the log
 * delivers it again after a pause, and nothing upstream of the log notices. Reads in the
 * warehouse deduplicate by event id, so a batch inserted twice counts once.
 *
 * Several partitions are consumed at once (`concurrentPartitions`) and their batches share one
 * buffer: one insert carries the events of every partition that arrived meanwhile (MergeTree
 * wants few, large parts, and the fixed cost of an insert and of its rollup_skip query is paid
 * once for all). Each partition's handler resolves only when the insert holding its events
 * succeeded, so each partition still commits only what is stored. Up to `concurrentInserts`
 * (2) inserts run at once, over disjoint partitions (a partition's next batch comes only after
 * its insert): the rollup_skip check (is this event id stored already?) of one does not see
 * the other's rows, which is exact because a duplicate (a redelivery, a producer's re-send)
 * stays in its account's partition. The exception is an account moved to another partition
 * (a partition count changed under traffic), the same rebalance edge two processes have;
 * `rollupsMatchRaw` / `rebuildRollups` find and repair it.
 *
 * When the buffer goes: at `batchSize` events (whole partition batches, up to that many), or
 * with at least QUIET_FLUSH_EVENTS once no batch arrived for GATHER_MS, or `flushMs` after the
 * previous insert began, whichever comes first. From its start, not its end: a partition whose
 * batch waits in the buffer or in an insert hands over nothing more, so an event that comes just
 * after its partition's batch went waits out that batch's interval and insert, then its own: up
 * to two intervals plus two inserts. Counted from the end, each interval also held the insert
 * before it (at 5,000 events/s: event-to-queryable p99 ~1.0–1.1 s against ~0.8 s counted from
 * the start, bench/README.md "The run of 2026-12-01").
 */
export async function startWarehouseSink(deps: WarehouseSinkDeps): Promise<Subscription> {
  const group = deps.group ?? 'warehouse';
  const { tracer, metrics } = deps;
  // A previous sink killed mid-insert may have left rollup rows without their events (or the
  // reverse): repair the last hour's rows before storing anything. A warehouse down then is
  // reported and not fatal: the batch's redelivery repairs its own rows when it meets its ids
  // already stored. The in-process log's group has this one member: at once, every account.
  // A Kafka group may have other members inserting their accounts' usage into the same hour
  // and day buckets, and a rebuild that ran between their raw and view blocks would count or
  // lose their events: so each assignment repairs the accounts of its own partitions, before
  // its first batch is stored and after this member's earlier inserts ended (`repairOwned`).
  const shared = deps.log.sharedGroups === true;
  if (!shared) {
    try {
      await deps.warehouse.repairRecentRollups();
    } catch (err) {
      deps.onError?.(err);
    }
  }
  const batchSize = deps.batchSize ?? DEFAULT_WAREHOUSE_BATCH;
  const durable = deps.log.durablePositions === true;
  // Intervals on the monotonic clock (performance.now, sub-ms): Date.now's whole milliseconds and
  // a timer that fires up to a millisecond early let the next insert start before flushMs had
  // passed (998 ms in a CI run).
  let lastInsertStart = -Infinity;
  let pending: Array<{ batch: ConsumedEvent[]; done: (err?: unknown) => void; fence?: () => Promise<void> }> = [];
  /** when the last partition batch arrived (performance.now ms) */
  let lastArrival = 0;
  let pendingCount = 0;
  let timer: NodeJS.Timeout | undefined;
  /** inserts under way (at most `concurrentInserts`); what arrives meanwhile waits for one to end */
  let inFlight = 0;
  const maxInFlight = Math.max(1, Math.floor(deps.concurrentInserts ?? 2));

  const maybeFlush = (): void => {
    if (inFlight >= maxInFlight || pending.length === 0) return;
    // A full buffer is worth a part of its own at once; a small one waits (up to flushMs after
    // the last insert began) for company: batches of the partitions not in the buffer or in an
    // insert. One of a partition batch's worth or more goes once the arrivals pause for GATHER_MS.
    const now = performance.now();
    const wait = lastInsertStart + deps.flushMs - now;
    const quiet = pendingCount >= QUIET_FLUSH_EVENTS ? lastArrival + GATHER_MS - now : Infinity;
    if (pendingCount < batchSize && wait > 0 && quiet > 0) {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => { timer = undefined; maybeFlush(); }, Math.min(wait, quiet));
      return;
    }
    if (timer) clearTimeout(timer);
    timer = undefined;
    // At most batchSize events (whole partition batches, at least one): the rest waits for
    // the next insert, which this one's end starts.
    let take = 0;
    let count = 0;
    while (take < pending.length && (take === 0 || count + pending[take]!.batch.length <= batchSize)) count += pending[take++]!.batch.length;
    const inserting = pending.slice(0, take);
    pending = pending.slice(take);
    pendingCount -= count;
    inFlight++;
    // Every partition batch's writer check (one consumer's heartbeat: the first call may ask the
    // coordinator, the rest are throttled), right before the usage insert (storeEvents).
    const fences = inserting.flatMap((w) => (w.fence ? [w.fence] : []));
    const beforeWrite = fences.length === 0 ? undefined : async () => { for (const f of fences) await f(); };
    insertBatch(inserting.length === 1 ? inserting[0]!.batch : inserting.flatMap((w) => w.batch), beforeWrite).then(
      () => { for (const w of inserting) w.done(); },
      (err: unknown) => { for (const w of inserting) w.done(err); },
    ).finally(() => {
      inFlight--;
      maybeFlush();
      wakeIdle();
    });
  };

  // The repair of the assignment being started (see above), and who waits for this member's
  // inserts to end (no batch pending, none in flight).
  let repair: { id: number; done: Promise<void> } | undefined;
  let stopped = false;
  let idleWaiters: Array<() => void> = [];
  const idle = (): Promise<void> => (pending.length === 0 && inFlight === 0
    ? Promise.resolve()
    : new Promise<void>((resolve) => { idleWaiters.push(resolve); maybeFlush(); }));
  const wakeIdle = (): void => {
    if (pending.length > 0 || inFlight > 0 || idleWaiters.length === 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const w of waiters) w();
  };
  /**
   * Every batch of an assignment waits for its one repair: the recent rollups of the accounts
   * whose usage partitions this member now holds, rebuilt where they differ from raw, once the
   * batches of its previous assignment are stored (or failed). While ClickHouse does not answer
   * it is tried again (every REPAIR_RETRY_MS; nothing could be stored meanwhile anyway): a
   * repair cut between its DELETE and its INSERT left those rows out of every report until the
   * next rebalance (a breaker's HIGH). Any other failure is reported and not fatal, like the
   * in-process start's; so is a later rebalance or the partition lost (the next assignment
   * repairs).
   */
  const repairOwned = (context: BatchContext): Promise<void> => {
    const a = context.assignment!;
    if (repair === undefined || repair.id < a.id) {
      // After the previous assignment's repair (a rebalance during it), whose held batches
      // then go first: two repairs of one account at once would count its rebuilt rows twice.
      const previous = repair?.done;
      const done = (async () => {
        await previous;
        await idle();
        for (;;) {
          try {
            await deps.warehouse.repairRecentRollups(undefined, { owned: (accounts) => a.owned('usage', accounts), beforeWrite: context.fence });
            return;
          } catch (err) {
            deps.onError?.(err);
            if (!unavailableError(err) || stopped || (repair !== undefined && repair.id > a.id)) return;
          }
          await new Promise((r) => setTimeout(r, REPAIR_RETRY_MS));
        }
      })();
      repair = { id: a.id, done };
    }
    return repair.done;
  };

  const insertBatch = async (batch: ConsumedEvent[], beforeWrite?: () => Promise<void>): Promise<void> => {
    // Two literals, not a spread of a conditional one: no throwaway object per event.
    const items: StoreItem[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i]!;
      items[i] = durable
        ? { event: e.event, topic: e.topic, position: { partition: e.partition, offset: e.offset } }
        : { event: e.event, topic: e.topic };
    }
    const startedAt = performance.now();
    const startTime = Date.now();
    lastInsertStart = startedAt;
    let poison: QuarantineRecord[];
    try {
      // A poison event is quarantined and the rest flows on; only an outage fails the batch.
      poison = await deps.warehouse.storeEvents(items, group, beforeWrite ? { beforeWrite } : {});
    } catch (err) {
      if (tracer) traceBatch(tracer, group, batch, startTime, err);
      deps.onError?.(err);
      throw err;
    }
    if (tracer) traceBatch(tracer, group, batch, startTime, undefined);
    if (poison.length > 0) {
      for (const q of poison) metrics?.eventsQuarantined(group, q.kind);
      deps.onQuarantined?.(poison);
    }
    if (metrics) {
      metrics.warehouseInsert((performance.now() - startedAt) / 1000, batch.length);
      countByTopic(metrics, group, batch);
    }
    deps.onFlushed?.(batch);
  };

  const subscription = await deps.log.subscribe({
    group,
    topics: ['usage', 'ledger', 'control'],
    fromBeginning: true,
    concurrentPartitions: deps.concurrentPartitions ?? DEFAULT_CONCURRENT_PARTITIONS,
    maxBatch: deps.partitionBatch ?? DEFAULT_WAREHOUSE_PARTITION_BATCH,
    // Poison other groups set aside (the ledger's), kept in the same quarantine table.
    onDeadLetters: async (records) => {
      await deps.warehouse.insertQuarantine(records.map(deadLetterRecord));
    },
    handler: async (batch, context) => {
      if (shared && context?.assignment) await repairOwned(context);
      return new Promise<void>((resolve, reject) => {
        lastArrival = performance.now();
        pending.push({ batch, done: (err) => (err === undefined ? resolve() : reject(err)), ...(context ? { fence: context.fence } : {}) });
        pendingCount += batch.length;
        maybeFlush();
      });
    },
  });
  return {
    stop: async () => {
      stopped = true; // a repair waiting for ClickHouse gives up, so its batches can end
      await subscription.stop();
    },
  };
}

/**
 * One insert serves a whole batch, but the span goes into each event's own trace: a span per
 * traced event, all with the batch's start and end, children of the event's producer span.
 * A single batch span could have only one parent (its links do not put it into the other
 * requests' traces, which is where an operator looks for "when did my usage become
 * queryable"). The cost is one span object per event, and only while tracing is on.
 */
function traceBatch(tracer: Tracer, group: string, batch: ConsumedEvent[], startTime: number, err: unknown): void {
  const endTime = Date.now();
  for (const e of batch) {
    if (!e.headers.traceparent) continue;
    const span = tracer.startSpan('warehouse insert', {
      kind: SpanKind.CONSUMER,
      startTime,
      attributes: {
        'messaging.operation.type': 'process', 'messaging.destination.name': e.topic,
        'messaging.consumer.group.name': group, 'messaging.batch.message_count': batch.length,
        'db.system.name': 'clickhouse', 'tollgate.event.id': String(e.event?.event_id),
      },
    }, extractContext(e.headers));
    if (err !== undefined) {
      const message = err instanceof Error ? err.message : String(err);
      span.setStatus({ code: SpanStatusCode.ERROR, message });
    }
    span.end(endTime);
  }
}

/** A dead-letter record as a quarantine row; one that is not a valid record is kept as raw text. */
function deadLetterRecord(d: ConsumedDeadLetter): QuarantineRecord {
  const r = decodeDeadLetter(d.value);
  if (r) return { ...r, offset: BigInt(r.offset), kind: r.kind as QuarantineRecord['kind'] };
  return {
    event_id: standInId(d.value), group: 'dead-letter', topic: 'dead-letter', partition: d.partition, offset: d.offset,
    kind: 'invalid_event', reason: 'not a dead-letter record', raw: boundedRaw(d.value),
  };
}
