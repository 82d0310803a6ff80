import {
  boundedRaw, decodeEvent, MAX_MONEY_MICROS, NotYetError, RewindError, standInId, type ConsumedEvent, type EventLog, type LedgerEvent, type Subscription, type Topic, type UsageEvent,
} from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import { ApplyCoalescer, type ApplyResult, type BalanceStore, type BatchOutcome, type LedgerQuarantine, type LogPosition } from '@tollgate/ledger';
import { extractContext, failSpan, SpanKind, withSpan, type Metrics, type Tracer } from '@tollgate/telemetry';

export interface LedgerConsumerDeps {
  log: EventLog;
  balances: BalanceStore;
  keys: KeyDirectory;
  group?: string;
  /** hot state was found lost (not ready): the process that can rebuild it should */
  onNotReady?: () => void;
  /** called after each applied batch (metrics, tests) */
  onApplied?: (events: ConsumedEvent[]) => void;
  /** a `ledger apply` span per event that carries a trace context */
  tracer?: Tracer;
  /** `tollgate_events_applied_total{group="ledger"}`, `tollgate_events_quarantined_total` */
  metrics?: Metrics;
  /** an event was set aside (already recorded in the balance store): log it */
  onQuarantined?: (record: LedgerQuarantine) => void;
  /**
   * A usage debit was applied (not a duplicate): the `balance.low` webhook trigger. Called in
   * log order once the batch holding it is applied, with `balanceAfter`, the balance this debit
   * left (µc; from the same atomic step, so later debits of the batch do not blur a crossing).
   * Must not throw.
   */
  onUsageApplied?: (event: UsageEvent, balanceAfter?: bigint) => Promise<void>;
  /** partitions applied at once (default 8); 1 = one batch at a time, as before issue 11 */
  concurrentPartitions?: number;
  /**
   * most events per store call when the partitions' batches of one turn are merged into one
   * (ApplyCoalescer; default DEFAULT_COALESCE_MAX_EVENTS, 1,000); 1: one call per partition
   * batch, as before 2026-12-04
   */
  coalesceMaxEvents?: number;
}

/**
 * True for a failure caused by the event itself, never by an outage: a RangeError from the
 * store's own checks, or a Redis reply error about the event's numbers or the script running on
 * them (INCRBY/DECRBY overflow, "not an integer or out of range", a Lua runtime error). Anything
 * else (connection refused, timeout, max clients, loading, failover, OOM) is an outage: retried,
 * never quarantined, since quarantining a good event would lose its money.
 */
export function isPoisonError(err: unknown): boolean {
  if (err instanceof RangeError) return true;
  const e = err as { name?: unknown; message?: unknown } | null;
  if (e?.name !== 'ReplyError' || typeof e.message !== 'string') return false;
  return /would overflow|not an integer or out of range|not a valid float|user_script:\d+:/.test(e.message);
}

/**
 * The quarantine reason of a ledger event the store refused because the balance would leave
 * ±MAX_MONEY_MICROS: starts with `balance_out_of_range` (what finance and control look for).
 */
export function balanceOutOfRange(accountId: string, amountMicros: string): string {
  return `balance_out_of_range: ${amountMicros} micro-credits would take the balance of ${accountId} outside ±${MAX_MONEY_MICROS} micro-credits (2^53 − 1, the bound every stage holds exactly)`;
}

/**
 * Hot state is gone (or was never built) and not rebuilt yet; the batch is retried after a
 * pause, logged as a wait (NotYetError), not as a failure.
 */
export class StateNotReadyError extends NotYetError {
  override readonly name = 'StateNotReadyError';
  constructor() {
    super('hot state is not ready (lost, or never built, and not rebuilt yet: the warehouse owner\'s rebuild builds it)');
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
    case 'key':
    case 'plan': {
      // Control records live in the key directory and are idempotent by version, so the
      // position check and the position advance may be separate steps.
      const verdict = position ? await deps.balances.checkPosition(position) : 'applied';
      if (verdict !== 'applied') return verdict;
      if (ev.type === 'account') await deps.keys.putAccount(ev.account);
      else if (ev.type === 'plan') await deps.keys.putPlan(ev.plan);
      else await deps.keys.putKey(ev.key);
      if (position) await deps.balances.advancePosition(position);
      return 'applied';
    }
    case 'price_version': {
      // Only the warehouse keeps price versions; hot state just moves past them.
      const verdict = position ? await deps.balances.checkPosition(position) : 'applied';
      if (verdict !== 'applied') return verdict;
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
  const group = deps.group ?? 'ledger';
  const { tracer, metrics } = deps;
  // One store call for the partitions' batches of a turn (a fetch's): at a moderate rate the
  // fixed cost per call, not the events, was most of this consumer's CPU.
  const coalescer = new ApplyCoalescer(deps.balances, {
    balanceAfter: deps.onUsageApplied !== undefined, ...(deps.coalesceMaxEvents === undefined ? {} : { maxEvents: deps.coalesceMaxEvents }),
  });

  /** Sets an event aside with its position (dead letter first, then the store's record). */
  const setAside = async (raw: ConsumedEvent, position: LogPosition | undefined, poison: Poison): Promise<ApplyResult> => {
    const record: LedgerQuarantine = {
      ...poison, reason: poison.reason.slice(0, 1000), topic: raw.topic,
      partition: durable ? raw.partition : -1, offset: durable ? raw.offset : -1n,
    };
    // The dead letter first (the warehouse keeps it for good, deduplicated by position),
    // then the record with the position: a crash in between re-sends, never loses it.
    await deps.log.deadLetter([{ ...record, group, offset: record.offset.toString(), raw: boundedRaw(raw.event), ts: Date.now() }]);
    // The event's account, when it has one: a Redis Cluster records the refusal in its slot.
    const account = (raw.event as { account_id?: unknown } | null)?.account_id;
    const verdict = await deps.balances.quarantine(record, position, typeof account === 'string' ? account : undefined);
    if (verdict === 'applied') {
      metrics?.eventsQuarantined(group, record.kind);
      deps.onQuarantined?.(record);
    }
    return verdict;
  };

  /** Not ready and gap stop the batch: the log redelivers (after a rebuild) or rewinds. */
  const stopOn = async (verdict: ApplyResult | undefined, raw: ConsumedEvent): Promise<void> => {
    if (verdict === 'not_ready') {
      deps.onNotReady?.();
      throw new StateNotReadyError();
    }
    if (verdict === 'gap') {
      const stored = await deps.balances.position(raw.topic, raw.partition);
      throw new RewindError([{ topic: raw.topic, partition: raw.partition, offset: stored + 1n }]);
    }
  };

  /**
   * Usage and ledger events, in log order, in as few store calls as the outcomes allow (one
   * when nothing is poison): the store stops at an event it did not apply or skip, which is
   * handled here before the rest goes on. The call is merged with the other partitions' of this
   * turn, so an answer may also stop short at another partition's event (even before the
   * first of this run): the rest is simply sent again.
   */
  const applyRun = async (run: ConsumedEvent[]): Promise<void> => {
    let rest = run;
    while (rest.length > 0) {
      const items = rest.map((e) => ({
        event: e.event as UsageEvent | LedgerEvent,
        ...(durable ? { position: { topic: e.topic, partition: e.partition, offset: e.offset } } : {}),
      }));
      const startTime = Date.now();
      const outcomes = await coalescer.apply(items);
      if (tracer) traceRun(tracer, group, rest, outcomes, startTime);
      for (let i = 0; i < outcomes.length; i++) {
        const { verdict, balanceAfter, error } = outcomes[i]!;
        const e = rest[i]!;
        if (verdict === 'applied' && e.event.type === 'usage') await deps.onUsageApplied?.(e.event, balanceAfter);
        if (verdict === 'applied' || verdict === 'duplicate') continue;
        let poison: Poison | undefined;
        if (verdict === 'failed') {
          if (!isPoisonError(error)) throw error;
          poison = { event_id: e.event.event_id, kind: 'apply_failed', reason: error!.message };
        } else if (verdict === 'out_of_range' && e.event.type === 'ledger') {
          // The store refused it atomically; the control request that published it reads this
          // reason (quarantineReason) and answers 400.
          poison = { event_id: e.event.event_id, kind: 'apply_failed', reason: balanceOutOfRange(e.event.account_id, e.event.amount_micros) };
        }
        if (poison) await stopOn(await setAside(e, items[i]!.position, poison), e);
        else if (verdict === 'gap' || verdict === 'not_ready') await stopOn(verdict, e);
        // Never skip an event silently: the store stopped at it, so it must be handled here.
        else throw new Error(`ledger: unexpected verdict ${verdict} for ${e.event.type} event ${e.event.event_id}`);
      }
      rest = rest.slice(outcomes.length);
    }
  };

  return deps.log.subscribe({
    group,
    topics: ['usage', 'ledger', 'control'],
    fromBeginning: true,
    // Partitions are independent here (an account lives in one; each has its own stored
    // position), so their batches' round trips overlap; within a partition order is kept.
    concurrentPartitions: deps.concurrentPartitions ?? 8,
    // Each partition resumes from the position stored with the effects, also when hot state was
    // rebuilt behind what this member handled and no event comes to find the gap (an idle
    // account's grant would read 0 until then). Unknown while the state is lost.
    ...(durable ? { storedPositions: () => deps.balances.storedPositions() } : {}),
    handler: async (batch) => {
      // Consecutive usage and ledger events are applied together; anything else (poison,
      // control records) ends the run and is handled on its own, in log order.
      let run: ConsumedEvent[] = [];
      for (const raw of batch) {
        // Checked at the boundary: a value the stores cannot hold is quarantined here, with
        // its position moved past it, instead of failing this batch forever.
        const decoded = decodeEvent(raw.event);
        if (decoded.ok && (decoded.event.type === 'usage' || decoded.event.type === 'ledger')) {
          // decoded in place (nothing to drop or fill): the consumed record as it is, no copy per event
          run.push(decoded.event === raw.event ? raw : { ...raw, event: decoded.event });
          continue;
        }
        await applyRun(run);
        run = [];
        const position = durable ? { topic: raw.topic, partition: raw.partition, offset: raw.offset } : undefined;
        let verdict: ApplyResult;
        if (!decoded.ok) {
          const kind = (raw.event as { type?: unknown } | null)?.type === 'undecodable' ? 'undecodable' : 'invalid_event';
          verdict = await setAside(raw, position, { event_id: decoded.eventId ?? standInId(raw.event), kind, reason: decoded.reason });
        } else {
          const e: ConsumedEvent = { ...raw, event: decoded.event };
          try {
            verdict = tracer && e.headers.traceparent
              ? await tracedApply(tracer, group, deps, e, position)
              : await applyEvent(deps, e, position);
          } catch (err) {
            if (!isPoisonError(err)) throw err;
            verdict = await setAside(raw, position, { event_id: e.event.event_id, kind: 'apply_failed', reason: err instanceof Error ? err.message : String(err) });
          }
        }
        await stopOn(verdict, raw);
      }
      await applyRun(run);
      if (metrics) countByTopic(metrics, group, batch);
      deps.onApplied?.(batch);
    },
  });
}

type Poison = Omit<LedgerQuarantine, 'topic' | 'partition' | 'offset'>;

/**
 * A `ledger apply` span per traced event of a batched call, each in its own request's trace,
 * all with the call's start and end (the call is the unit of work), and the event's verdict.
 * Events past the outcomes (the store stopped before them) get theirs in the next call.
 */
function traceRun(tracer: Tracer, group: string, run: ConsumedEvent[], outcomes: BatchOutcome[], startTime: number): void {
  const endTime = Date.now();
  outcomes.forEach((o, i) => {
    const e = run[i]!;
    if (!e.headers.traceparent) return;
    const span = tracer.startSpan('ledger apply', {
      kind: SpanKind.CONSUMER, startTime, attributes: spanAttributes(group, e),
    }, extractContext(e.headers));
    span.setAttribute('tollgate.ledger.verdict', o.verdict);
    span.setAttribute('messaging.batch.message_count', run.length);
    if (o.error) failSpan(span, o.error);
    span.end(endTime);
  });
}

function spanAttributes(group: string, e: ConsumedEvent) {
  return {
    'messaging.operation.type': 'process', 'messaging.destination.name': e.topic,
    'messaging.consumer.group.name': group, 'messaging.destination.partition.id': String(e.partition),
    'messaging.kafka.offset': Number(e.offset), 'tollgate.event.id': e.event.event_id, 'tollgate.event.type': e.event.type,
  };
}

/**
 * A child span per event, not one per batch: the ledger applies events one at a time (one
 * atomic script each, with its own verdict), so each span measures real work, and it sits in
 * the trace of the request that produced the event, showing when its balance was debited.
 */
async function tracedApply(
  tracer: Tracer, group: string, deps: Pick<LedgerConsumerDeps, 'balances' | 'keys'>, e: ConsumedEvent,
  position: LogPosition | undefined,
): Promise<ApplyResult> {
  const span = tracer.startSpan('ledger apply', {
    kind: SpanKind.CONSUMER,
    attributes: spanAttributes(group, e),
  }, extractContext(e.headers));
  try {
    const verdict = await withSpan(span, () => applyEvent(deps, e, position));
    span.setAttribute('tollgate.ledger.verdict', verdict);
    return verdict;
  } catch (err) {
    failSpan(span, err);
    throw err;
  } finally {
    span.end();
  }
}

export function countByTopic(metrics: Metrics, group: string, batch: ConsumedEvent[]): void {
  let usage = 0;
  let ledger = 0;
  let control = 0;
  for (const e of batch) {
    if (e.topic === 'usage') usage++;
    else if (e.topic === 'ledger') ledger++;
    else control++;
  }
  if (usage) metrics.eventsApplied(group, 'usage', usage);
  if (ledger) metrics.eventsApplied(group, 'ledger', ledger);
  if (control) metrics.eventsApplied(group, 'control', control);
}
