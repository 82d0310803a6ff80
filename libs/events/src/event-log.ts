import type { AnyEvent, Topic } from './types.ts';

/**
 * Trace context and anything else that travels beside an event, never inside it: string values
 * only. `event_id` is reserved (RESERVED_HEADERS); a consumer gets back exactly the publisher's
 * headers, on every log.
 */
export type EventHeaders = Record<string, string>;

/** An event id as error messages quote it: at most 200 characters, then `…`. */
export function boundedId(id: unknown): string {
  const s = String(id);
  return s.length <= 200 ? s : `${s.slice(0, 200)}…`;
}

/**
 * The header Kafka records carried the event's id under until 2026-12-03, for tools reading a
 * topic without parsing values. No longer written: decoding it cost every consumer a header
 * object and buffer per record (kafkajs builds them eagerly for a whole fetch, and they lived
 * through the fetch's handling): a median of ~7 % of a consumer's CPU per event, inside the
 * machine's noise (bench/README.md, "The event_id header"); the value's JSON holds the id. Still reserved, so records written before
 * and after read back alike (a publisher's own `event_id` header would be indistinguishable
 * from an old record's).
 */
export const EVENT_ID_HEADER = 'event_id';

/** Header names a publisher may not use (see EVENT_ID_HEADER). */
export const RESERVED_HEADERS: readonly string[] = Object.freeze([EVENT_ID_HEADER]);

/**
 * Headers read back from a file (a spool or journal line) as every log can carry them: string
 * values kept, numbers and booleans as text, other values (null, objects) and reserved names
 * left out; anything but an object gives {}. `publish` refuses such headers (headersProblem),
 * but a line an earlier version wrote, or a damaged one, may still hold them, and re-publishing
 * it must not fail (a journal replay at start, the spool's sender).
 */
export function carriedHeaders(headers: unknown): EventHeaders {
  const out: EventHeaders = {};
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) return out;
  for (const [name, v] of Object.entries(headers)) {
    if (RESERVED_HEADERS.includes(name)) continue;
    if (typeof v === 'string') out[name] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[name] = String(v);
  }
  return out;
}

/**
 * Why `headers` cannot travel beside event `eventId` on any log, or undefined: a value that is
 * not a string (Kafka carries strings only; kafkajs throws on anything else at every send) or a
 * reserved name. Every log's `publish` refuses such events with NotPublishedError before
 * writing anything, so the embedded log never accepts what Kafka would refuse.
 */
export function headersProblem(eventId: unknown, headers: EventHeaders | undefined): string | undefined {
  for (const name in headers) {
    if (RESERVED_HEADERS.includes(name)) return `event ${boundedId(eventId)} has header "${name}", which the log reserves (records of earlier versions carry the event's id under it); leave it out (nothing of this publish was written)`;
    if (typeof headers[name] !== 'string') {
      return `event ${boundedId(eventId)} has header ${JSON.stringify(name.slice(0, 100))} of type ${typeof headers[name]}; header values are strings (nothing of this publish was written)`;
    }
  }
  return undefined;
}

export interface PublishedEvent {
  event: AnyEvent;
  headers?: EventHeaders;
}

export interface ConsumedEvent {
  topic: Topic;
  partition: number;
  /** position in the partition; strictly increasing per (topic, partition) */
  offset: bigint;
  event: AnyEvent;
  headers: EventHeaders;
}

/**
 * Called with a batch of events in log order per partition. The batch counts as consumed
 * only when the promise resolves; if it rejects or the process dies, the same events are
 * delivered again, so handlers must be idempotent by `event_id`.
 */
export type BatchHandler = (batch: ConsumedEvent[], context?: BatchContext) => Promise<void>;

/** What a log tells a handler about its batch besides the events. */
export interface BatchContext {
  /**
   * Resolves while this consumer still holds the batch's partition as far as the log can tell;
   * rejects (`PartitionLostError`) when it may have lost it: Kafka's group coordinator no longer
   * knows this member (its process was frozen, or its heartbeats stopped, past the session
   * timeout, 10 s) or is rebalancing, so another member may be handling the same events now.
   * One heartbeat round trip at most once a second (kafkajs throttles them), else free. A
   * handler calls it right before a write that must not race another member's (the warehouse's
   * usage insert: two writers of one batch count it twice in the rollups). The in-process log
   * has no other member: always resolves.
   */
  fence(): Promise<void>;
  /**
   * What this member holds between two rebalances of its group, on a log whose groups may have
   * members in other processes (`EventLog.sharedGroups`: Kafka); absent on the in-process log
   * (one member, every partition, for good).
   */
  assignment?: Assignment;
}

/**
 * A member's share of its group's partitions from one rebalance to the next (Kafka's group
 * generation, as this member joined it). Work that must not race another member's writes of
 * the same accounts (the warehouse's repair of recent rollups) runs once per assignment, on
 * the accounts it returns, before the assignment's first batch is stored.
 */
export interface Assignment {
  /** the same for every batch of one assignment; larger for each later one of this subscription */
  readonly id: number;
  /**
   * Those of `keys` (partition keys, `partitionKey`: an account id for usage and ledger
   * events) whose events the producer puts on a partition of `topic` this member holds, in
   * their order: the producer's own partitioner (kafkajs' default, murmur2 as Java's client)
   * over the topic's partition count, read from the broker once per assignment. Throws when
   * the broker cannot tell that count (Kafka away).
   */
  owned(topic: Topic, keys: readonly string[]): Promise<string[]>;
}

/** `BatchContext.fence`'s rejection: the batch is redelivered, to whichever member holds its partition. */
export class PartitionLostError extends Error {
  constructor(cause: unknown) {
    super(`this consumer may no longer hold the partition (the group coordinator answered: ${(cause as Error)?.message ?? String(cause)}); not writing, the batch is redelivered`, { cause });
    this.name = 'PartitionLostError';
  }
}

/**
 * Thrown by a handler whose sink has fallen behind the group's committed position (its state
 * was rebuilt from an earlier point): the log delivers the named partitions again from these
 * offsets, and nothing of the batch counts as consumed.
 */
export class RewindError extends Error {
  readonly to: ReadonlyArray<{ topic: Topic; partition: number; offset: bigint }>;
  constructor(to: ReadonlyArray<{ topic: Topic; partition: number; offset: bigint }>) {
    super(`rewind to ${to.map((t) => `${t.topic}/${t.partition}@${t.offset}`).join(', ')}`);
    this.name = 'RewindError';
    this.to = to;
  }
}

/**
 * Thrown by a handler that cannot apply its batch yet, for an expected reason that clears by
 * itself (its sink's state is being rebuilt, or was never built: a fresh deployment's first
 * minutes): delivered again after the same pause as any failure, and logged as a wait (its
 * message, once per partition until it clears; no stack), not as a failure.
 */
export class NotYetError extends Error {
  override readonly name: string = 'NotYetError';
}

/**
 * `publish` rejected before anything of its events was written anywhere (the log is closed, or
 * never opened; a spool append that failed before its first record was whole, e.g. a full
 * disk): the caller may treat them as never published. Any other rejection leaves it unknown (a
 * close while they waited: a spooled event is sent at the next start), so a caller that must
 * not publish twice treats it as published.
 */
export class NotPublishedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NotPublishedError';
  }
}

/**
 * The most bytes of JSON (UTF-8) one event may take on Kafka, and the most bytes of records
 * (values, keys, headers, framing) one produce carries (a lone event over it aside, none is):
 * under a broker's default
 * `message.max.bytes` (1,048,588 bytes, per record batch) with room for keys, headers and the
 * batch's own framing. A broker refuses a batch over its limit on every try, so one event (or
 * produce) over it used to hold the spool at that event for good, and every event behind it was
 * never sent (usage never billed). Every event the decoder accepts is well under it (the
 * largest, a price version, carries at most MAX_CATALOG_BYTES of catalog).
 */
export const MAX_EVENT_BYTES = 1_000_000;

/**
 * The most bytes one event may take as a Kafka record: its JSON (at most MAX_EVENT_BYTES), key,
 * headers and framing, counted high. Under a broker's default `message.max.bytes` (1,048,588
 * per record batch) with room for the batch's own framing (61 bytes) and what compression adds
 * to incompressible data (~0.03 %): a lone event at MAX_EVENT_BYTES with a trace context fits,
 * one whose headers (or key) push it past this is refused at publish, as an event over
 * MAX_EVENT_BYTES is (a tester: a 60 KB `baggage` header on a 1,000,000-byte event held the
 * spool for good).
 */
export const MAX_RECORD_BYTES = 1_040_000;

/**
 * `publish` refused an event no log can ever carry (a header Kafka cannot, or the log's own:
 * `headersProblem`; one too large: EventTooLargeError), before anything was written: a fault
 * of the event, not of the log, so the log's write ahead is not counted as failing for it.
 */
export class InvalidEventError extends NotPublishedError {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidEventError';
  }
}

/**
 * `publish` refused an event whose JSON is over MAX_EVENT_BYTES, or whose record (JSON, key,
 * headers) is over MAX_RECORD_BYTES, before anything of the publish was written (a NotPublishedError: the caller may treat its events as never published).
 */
export class EventTooLargeError extends InvalidEventError {
  constructor(message: string) {
    super(message);
    this.name = 'EventTooLargeError';
  }
}

/**
 * A poison event a consumer group set aside instead of stopping (see `decodeEvent`). The log
 * carries it on its dead-letter topic (Kafka: `<prefix>dead-letter`) to the warehouse sink,
 * which stores it in the warehouse's `quarantine` table, so the evidence outlives the group's
 * own state.
 */
export interface DeadLetter {
  /** the event's id, or a stand-in (`standInId`, `undecodable:<topic>:<partition>:<offset>`) */
  event_id: string;
  /** the consumer group that set it aside */
  group: string;
  topic: string;
  /** -1 without a durable log */
  partition: number;
  /** log offset as decimal text; "-1" without a durable log */
  offset: string;
  /** `undecodable`, `invalid_event`, `rejected_by_warehouse` or `apply_failed` */
  kind: string;
  reason: string;
  /** the payload as JSON text, at most 4 KiB */
  raw: string;
  /** epoch ms when it was set aside */
  ts: number;
}

/** A dead-letter record as delivered: not yet trusted (check it before storing). */
export interface ConsumedDeadLetter {
  partition: number;
  offset: bigint;
  value: unknown;
}

export interface Subscription {
  /** Stops delivering; an in-flight batch finishes first. */
  stop(): Promise<void>;
}

export interface SubscribeOptions {
  /** consumer group: each group sees every event once; members of a group split partitions */
  group: string;
  topics: Topic[];
  handler: BatchHandler;
  /** start from the beginning of the log when the group has no stored position */
  fromBeginning?: boolean;
  /**
   * Also deliver the dead-letter topic to this group (the warehouse sink): same commit rules
   * as `handler`, a rejection means redelivery.
   */
  onDeadLetters?: (records: ConsumedDeadLetter[]) => Promise<void>;
  /**
   * How many partitions' batches may be in the handler at once (default 1: one after
   * another). Events of one partition are always handed over in order, one batch at a time;
   * above 1 the handler must be safe to run for several partitions at the same time. Logs
   * without partitions ignore it.
   */
  concurrentPartitions?: number;
  /**
   * Most events per handler call for this subscription (a positive integer), when it wants
   * other batches than the log's default (KafkaLog `consumerBatchSize`, 1000): the warehouse
   * sink takes bigger ones, since each insert has a fixed cost on the ClickHouse server. Logs
   * without partitions (the in-process MemoryLog) keep their own `maxBatch`.
   */
  maxBatch?: number;
  /**
   * The positions the group's sink stored with its effects (`<topic>:<partition>` → last
   * applied offset; a partition absent: -1, nothing), read in one call, or undefined while it
   * cannot say (its state is lost). Given, a log with durable positions resumes every partition
   * of this member from there (stored + 1): at each assignment, and whenever the stored position
   * falls behind what the member handled (the sink's state was rebuilt from an earlier point).
   * Without it such a partition would wait for its next event to find the gap, and an idle one
   * would never be read again. Logs without durable positions ignore it.
   */
  storedPositions?: () => Promise<ReadonlyMap<string, bigint> | undefined>;
}

/**
 * What `EventLog.append` did inside the call: wrote the events ahead (`durable`, settled as
 * `publish`'s promise would be), or failed (`error`: NotPublishedError when nothing was written).
 */
export type Appended = { readonly durable: Promise<void>; readonly error?: undefined } | { readonly error: Error; readonly durable?: undefined };

/**
 * The event log port. `publish` resolves once the events are durable enough that the caller
 * may forget them (acknowledged by the log, or written to the local spool); it never drops.
 */
export interface EventLog {
  /**
   * Offsets survive a restart (Kafka): sinks may store them with their effects, and hot state
   * rebuilt from the warehouse resumes from them. False for the in-process log, whose offsets
   * start again at 0 with every process.
   */
  readonly durablePositions?: boolean;
  /**
   * A consumer group may have members in other processes (Kafka), each holding some
   * partitions: handlers get `BatchContext.assignment`. False or absent for the in-process
   * log: one subscriber per group, which holds everything from its start.
   */
  readonly sharedGroups?: boolean;
  /** Rejects with `NotPublishedError` when certainly nothing was written (see there). */
  publish(topic: Topic, events: PublishedEvent[]): Promise<void>;
  /**
   * `publish`, with the part it does inside the call told at once. Every log writes its events
   * ahead before `publish` returns (KafkaLog: one `write` to `DATA_DIR/spool`; MemoryLog: its
   * journal and its list), so `{ durable }` says they are recorded (a crash now loses none;
   * `durable` settles as `publish`'s promise would) and `{ error }` that the append failed
   * (NotPublishedError: nothing was written; another error: unknown). For a caller that must
   * hold back what may only happen once the events are recorded: the gateway's answer's last
   * bytes (a refused spool write, e.g. a DATA_DIR lock taken over, is then no answer at all
   * rather than an answer nobody is billed for).
   */
  append(topic: Topic, events: PublishedEvent[]): Appended;
  /**
   * Synchronous: why the write ahead is failing now (the last append failed for a reason of the
   * log's, not of the event: a full or read-only disk, a DATA_DIR lock taken over), until a
   * probe write succeeds again (WriteAheadHealth, once a second); or a DiskReserveLowError while
   * the disk written ahead to has less free space than the reserve (WRITE_AHEAD_RESERVE_MB;
   * appends still work then, so requests in flight record theirs); undefined while it works. A
   * gateway refuses paid requests before forwarding them meanwhile (an answer it could not
   * record would be withheld after the upstream was paid, and a stream's text would have left),
   * cuts the streams it is relaying unless the problem is only the reserve, and `/ready` reports
   * it. Absent: never failing.
   */
  writeAheadProblem?(): Error | undefined;
  /**
   * Publishes dead-letter records (durably, like `publish`; rejects while the log is
   * unreachable, so the caller retries rather than forgets).
   */
  deadLetter(records: DeadLetter[]): Promise<void>;
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  /** Waits until everything published so far is handed to the log (not to consumers). */
  flush(): Promise<void>;
  /**
   * Resolves once everything this process published before the call is acknowledged by the log
   * itself, not merely kept in a local spool (Kafka: acks=all), however long Kafka is away;
   * rejects when the log closes first. Absent: `publish` resolving means acknowledged (the
   * in-process log).
   */
  acknowledged?(): Promise<void>;
  /**
   * False while the log knows it cannot deliver (Kafka away: its last send failed; events are
   * kept in the spool until it returns), else true. A caller that waits for a consumer's effect
   * of what it published (a credit grant waiting for the ledger) need not wait then. Absent: always true.
   */
  reachable?(): boolean;
  close(): Promise<void>;
}

/** Key that orders events: everything about one account lands in one partition, in order. */
export function partitionKey(event: AnyEvent): string {
  switch (event.type) {
    case 'usage':
    case 'ledger':
      return event.account_id;
    case 'account':
      return event.account.id;
    case 'key':
      return event.key.id;
    case 'plan':
      return `plan:${event.plan.id}`;
    case 'price_version':
      return `price_version:${event.id}`;
  }
}

/**
 * Waits for `promise` at most `ms`: true once it fulfilled, false once `ms` passed first (it
 * goes on unawaited); rejects with its error if it rejected in time. What each bounded wait of a
 * stop is built on (KafkaLog's close and subscription stop, the runtime's wait for a rebuild).
 */
export async function finishedWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise.then(() => true), new Promise<false>((r) => { timer = setTimeout(() => r(false), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}
