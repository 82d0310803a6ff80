// The distributed event log: Kafka through kafkajs, with a local disk spool so that publishing
// never fails while Kafka is away. This is the only file of the project that imports kafkajs.
//
// Invariants (see libs/events/README.md):
// - publish() resolves only once its events are acknowledged by Kafka (acks=all) or fsync'd
//   to the spool; it rejects only when neither is possible (the disk itself failed).
// - Per partition key, events reach Kafka in publish order: while anything is spooled, new
//   events are spooled behind it, and the spool is re-sent oldest segment first.
// - A consumer commits an offset only after the handler resolved for every event before it,
//   so a crash, a handler error or a rebalance means redelivery, never loss.
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CompressionTypes } from 'kafkajs';
import type { Admin, EachBatchPayload, IHeaders, ITopicConfig, Kafka, KafkaMessage, Message, Producer } from 'kafkajs';
import { partitionKey, RewindError } from './event-log.ts';
import type {
  ConsumedEvent, DeadLetter, EventHeaders, EventLog, PublishedEvent, SubscribeOptions, Subscription,
} from './event-log.ts';
import type { AnyEvent, Topic } from './types.ts';
import { boundedRaw, type UndecodableMessage } from './decode.ts';

/** pino-compatible: `logger.warn({ err }, 'message')`. */
export interface KafkaLogLogger {
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface KafkaLogOptions {
  /** a kafkajs client built by the caller (brokers, TLS, SASL, client-level timeouts) */
  kafka: Kafka;
  /** Kafka topic name = prefix + topic, e.g. `tollgate.` → `tollgate.usage` */
  topicPrefix?: string;
  /** where undelivered events wait while Kafka is unreachable; one process per directory */
  spoolDir: string;
  logger?: KafkaLogLogger;
  /** GZIP record batches (default true) */
  compression?: boolean;
  /** most events per produce request (default 500) */
  batchSize?: number;
  /** how long a small batch waits for company before it is sent (default 5 ms) */
  lingerMs?: number;
  /** a produce (connect included) slower than this counts as Kafka down (default 3000 ms) */
  sendTimeoutMs?: number;
  /** longest pause between attempts to re-send the spool (default 2000 ms) */
  maxRetryDelayMs?: number;
  /** how long close() waits for the spool to drain before leaving it for the next start (default 5000 ms) */
  closeTimeoutMs?: number;
  /** a spool segment is closed for appends after this many events (default 5000) */
  segmentMaxEvents?: number;
  /** most events per handler call (default 1000) */
  consumerBatchSize?: number;
  /** consumer long-poll wait; also bounds how long stop() waits for an idle fetch (default 1000 ms) */
  consumerMaxWaitMs?: number;
  /** replication factor for ensureTopics (default 1) */
  replicationFactor?: number;
}

/** One line of a spool file. The topic is the logical one; the prefix is applied on delivery. */
interface SpoolRecord {
  topic: Topic;
  event: AnyEvent;
  headers: EventHeaders;
}

interface Pending {
  records: SpoolRecord[];
  resolve(): void;
  reject(err: Error): void;
}

interface Segment {
  path: string;
  /** events appended so far (only tracked for the segment being appended to) */
  count: number;
  /** events of this segment already acknowledged by Kafka in this process */
  sent: number;
  records: SpoolRecord[] | null;
}

export const TOPICS: readonly Topic[] = ['usage', 'ledger', 'control'];

/**
 * Per-topic settings for ensureTopics. All topics use the delete policy: the log is the
 * history consumers rebuild from, and every control event (every version of an account or key)
 * is an event with its own event_id, so compaction would silently drop events that a
 * replaying consumer expects to see. Money and control history are kept forever; usage for
 * 7 days (the warehouse holds it for good).
 */
const TOPIC_CONFIG: Record<Topic, Array<{ name: string; value: string }>> = {
  usage: [{ name: 'cleanup.policy', value: 'delete' }, { name: 'retention.ms', value: String(7 * 24 * 3600 * 1000) }],
  ledger: [{ name: 'cleanup.policy', value: 'delete' }, { name: 'retention.ms', value: '-1' }],
  control: [{ name: 'cleanup.policy', value: 'delete' }, { name: 'retention.ms', value: '-1' }],
};

/**
 * The dead-letter topic (`prefix + 'dead-letter'`): poison events consumer groups set aside,
 * kept forever (few, and evidence); the warehouse sink stores them. Not a `Topic`: no event
 * type lives there.
 */
export const DEAD_LETTER_TOPIC = 'dead-letter';
const DEAD_LETTER_CONFIG = [{ name: 'cleanup.policy', value: 'delete' }, { name: 'retention.ms', value: '-1' }];

const SEGMENT_RE = /^spool-(\d{12})\.jsonl$/;

const consoleLogger: KafkaLogLogger = {
  warn: (obj, msg) => console.warn(msg ?? '', obj),
  error: (obj, msg) => console.error(msg ?? '', obj),
};

export class KafkaLog implements EventLog {
  readonly durablePositions = true;
  readonly #kafka: Kafka;
  readonly #prefix: string;
  readonly #spoolDir: string;
  readonly #log: KafkaLogLogger;
  readonly #compression: CompressionTypes;
  readonly #batchSize: number;
  readonly #lingerMs: number;
  readonly #sendTimeoutMs: number;
  readonly #maxRetryDelayMs: number;
  readonly #closeTimeoutMs: number;
  readonly #segmentMaxEvents: number;
  readonly #consumerBatchSize: number;
  readonly #consumerMaxWaitMs: number;
  readonly #replicationFactor: number;

  readonly #ready: Promise<void>;
  #queue: Pending[] = [];
  #queuedEvents = 0;
  #intake: Promise<void> | null = null;
  #drain: Promise<void> | null = null;

  /** spool segments, oldest first; only the last one can be #active */
  #segments: Segment[] = [];
  #active: Segment | null = null;
  #nextSeq = 0;
  /** serialises every spool file operation (append, seal, delete) */
  #fileLock: Promise<unknown> = Promise.resolve();

  #producer: Producer | null = null;
  #producerReady: Promise<Producer> | null = null;

  #subscriptions = new Set<Subscription>();
  #waiters: Array<() => void> = [];
  #wake: (() => void) | null = null;
  #closing = false;
  #stopped = false;

  constructor(options: KafkaLogOptions) {
    this.#kafka = options.kafka;
    this.#prefix = options.topicPrefix ?? '';
    this.#spoolDir = options.spoolDir;
    this.#log = options.logger ?? consoleLogger;
    this.#compression = options.compression === false ? CompressionTypes.None : CompressionTypes.GZIP;
    this.#batchSize = options.batchSize ?? 500;
    this.#lingerMs = options.lingerMs ?? 5;
    this.#sendTimeoutMs = options.sendTimeoutMs ?? 3000;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? 2000;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 5000;
    this.#segmentMaxEvents = options.segmentMaxEvents ?? 5000;
    this.#consumerBatchSize = options.consumerBatchSize ?? 1000;
    this.#consumerMaxWaitMs = options.consumerMaxWaitMs ?? 1000;
    this.#replicationFactor = options.replicationFactor ?? 1;
    this.#ready = this.#openSpool();
    // Errors surface through publish/flush; this only keeps the rejection from being unhandled.
    this.#ready.then(() => this.#kickDrain(), () => {});
  }

  /** Kafka consumer group id: namespaced by the topic prefix. */
  groupName(group: string): string {
    return this.#prefix + group;
  }

  /** Kafka topic name for a logical topic. */
  topicName(topic: Topic): string {
    return this.#prefix + topic;
  }

  /** Kafka topic name of the dead-letter topic. */
  deadLetterTopicName(): string {
    return this.#prefix + DEAD_LETTER_TOPIC;
  }

  /**
   * Sends dead-letter records straight to Kafka (acks=all), keyed by group. Not spooled: a
   * consumer group that cannot reach Kafka is not consuming either, so it retries the batch.
   */
  async deadLetter(records: DeadLetter[]): Promise<void> {
    if (this.#closing) throw new Error('event log is closed');
    if (records.length === 0) return;
    const attempt = (async () => {
      const producer = await this.#connect();
      await producer.send({
        topic: this.deadLetterTopicName(), acks: -1, timeout: this.#sendTimeoutMs,
        messages: records.map((r) => ({ key: r.group, value: JSON.stringify(r) })),
      });
    })();
    await withTimeout(attempt, this.#sendTimeoutMs, 'kafka produce of dead letters timed out');
  }

  /** Creates the missing topics (delete policy, see TOPIC_CONFIG); existing ones are left as they are. */
  async ensureTopics(partitions = 4, replicationFactor = this.#replicationFactor): Promise<void> {
    const admin = this.#kafka.admin();
    await admin.connect();
    try {
      const existing = new Set(await admin.listTopics());
      const missing: ITopicConfig[] = TOPICS.filter((t) => !existing.has(this.topicName(t))).map((t) => ({
        topic: this.topicName(t),
        numPartitions: partitions,
        replicationFactor,
        configEntries: TOPIC_CONFIG[t],
      }));
      if (!existing.has(this.deadLetterTopicName())) {
        missing.push({ topic: this.deadLetterTopicName(), numPartitions: 1, replicationFactor, configEntries: DEAD_LETTER_CONFIG });
      }
      if (missing.length > 0) {
        await admin.createTopics({ topics: missing, waitForLeaders: true });
        await waitForTopicMetadata(admin, missing.map((t) => t.topic), partitionsOf(missing));
      }
    } finally {
      await admin.disconnect();
    }
  }

  /** Resolves once the spool left by an earlier process has been read (not yet delivered). */
  ready(): Promise<void> {
    return this.#ready;
  }

  publish(topic: Topic, events: PublishedEvent[]): Promise<void> {
    if (this.#closing) return Promise.reject(new Error('event log is closed'));
    if (events.length === 0) return Promise.resolve();
    // Queued synchronously, so concurrent publish calls keep their call order.
    return new Promise<void>((resolve, reject) => {
      const records = events.map(({ event, headers }) => ({ topic, event, headers: headers ?? {} }));
      this.#queue.push({ records, resolve, reject });
      this.#queuedEvents += records.length;
      this.#kickIntake();
    });
  }

  /** Waits until everything published so far is acknowledged by Kafka, spool included. */
  async flush(): Promise<void> {
    await this.#ready;
    while (this.#queue.length > 0 || this.#intake || this.#segments.length > 0) {
      if (this.#stopped && !this.#intake) throw new Error('event log is closed with events still spooled');
      await this.#changed();
    }
  }

  /**
   * Flushes for at most closeTimeoutMs; whatever Kafka has not acknowledged by then stays in
   * the spool for the next start. Then stops every subscription and disconnects.
   */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => { timer = setTimeout(r, this.#closeTimeoutMs); });
    await Promise.race([this.flush().catch(() => {}), deadline]);
    clearTimeout(timer);
    this.#stopped = true;
    this.#wake?.();
    await this.#intake; // ends once every queued event is sent or spooled
    await this.#drain;
    await Promise.all([...this.#subscriptions].map((s) => s.stop()));
    const undelivered = this.#segments.length;
    if (undelivered > 0) {
      this.#log.warn({ spoolDir: this.#spoolDir, segments: undelivered }, 'closing with events still spooled; they are delivered on the next start');
    }
    await this.#resetProducer();
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    if (this.#closing) throw new Error('event log is closed');
    const byName = new Map(options.topics.map((t) => [this.topicName(t), t]));
    // Dead letters come through the same consumer (one group, one commit rule); `DEAD_LETTER_TOPIC`
    // is not a Topic, so #consumeBatch routes it to `onDeadLetters` before anything else sees it.
    if (options.onDeadLetters) byName.set(this.deadLetterTopicName(), DEAD_LETTER_TOPIC as Topic);
    const consumer = this.#kafka.consumer({
      // Groups are namespaced like topics, so deployments sharing a broker never share a group.
      groupId: this.groupName(options.group),
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: this.#consumerMaxWaitMs,
      // A consumer that died (kill -9) gives its partitions up after this, not kafkajs' 30 s.
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      rebalanceTimeout: 20_000,
    });
    consumer.on(consumer.events.CRASH, (e) => {
      this.#log.error({ err: e.payload.error, group: options.group, restart: e.payload.restart }, 'kafka consumer crashed');
    });
    const failures = new Map<string, number>();
    await consumer.connect();
    try {
      // The port's default: a group without a stored position starts at the beginning.
      await consumer.subscribe({ topics: [...byName.keys()], fromBeginning: options.fromBeginning !== false });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload) => this.#consumeBatch(options, byName, failures, payload, (to) => {
          for (const t of to) consumer.seek({ topic: this.topicName(t.topic), partition: t.partition, offset: t.offset.toString() });
        }),
      });
    } catch (err) {
      await consumer.disconnect().catch(() => {});
      throw err;
    }
    let stopping: Promise<void> | null = null;
    const subscription: Subscription = {
      stop: () => {
        stopping ??= (async () => {
          this.#subscriptions.delete(subscription);
          await disconnectQuietly(consumer);
        })();
        return stopping;
      },
    };
    this.#subscriptions.add(subscription);
    return subscription;
  }

  // ---------------------------------------------------------------------------------------------
  // Consuming

  async #consumeBatch(
    options: SubscribeOptions,
    byName: Map<string, Topic>,
    failures: Map<string, number>,
    payload: EachBatchPayload,
    rewind: (to: RewindError['to']) => void,
  ): Promise<void> {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale } = payload;
    const topic = byName.get(batch.topic);
    if (!topic) return; // not ours: never happens with an explicit topic list
    const where = `${batch.topic}/${batch.partition}`;
    const messages = batch.messages;
    for (let i = 0; i < messages.length;) {
      if (!isRunning() || isStale()) return;
      const slice = messages.slice(i, i + this.#consumerBatchSize);
      const events: ConsumedEvent[] = [];
      for (const message of slice) events.push(decodeMessage(topic, batch.partition, message));
      if (events.length > 0) {
        // Long handlers keep the group membership alive; kafkajs throttles the heartbeats.
        const beat = setInterval(() => { heartbeat().catch(() => {}); }, 1000);
        try {
          if ((topic as string) === DEAD_LETTER_TOPIC) {
            await options.onDeadLetters!(events.map((e) => ({ partition: e.partition, offset: e.offset, value: e.event })));
          } else {
            await options.handler(events);
          }
          failures.delete(where);
        } catch (err) {
          if (err instanceof RewindError) {
            // The sink's state starts earlier than the committed position: read from there.
            this.#log.warn({ group: options.group, to: err.message }, 'rewinding to the position stored with the effects');
            rewind(err.to);
            return;
          }
          // Nothing of this slice is resolved, so the next fetch of this partition starts at the
          // same offset: the handler sees the same events again after a pause.
          const n = (failures.get(where) ?? 0) + 1;
          failures.set(where, n);
          this.#log.warn({ err, group: options.group, topic: batch.topic, partition: batch.partition, offset: slice[0]!.offset, attempt: n }, 'event handler failed; redelivering');
          await sleep(Math.min(this.#maxRetryDelayMs, 50 * 2 ** n));
          return;
        } finally {
          clearInterval(beat);
        }
      }
      const last = slice[slice.length - 1]!.offset;
      resolveOffset(last);
      await commitOffsetsIfNecessary({
        topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: (BigInt(last) + 1n).toString() }] }],
      });
      await heartbeat();
      i += slice.length;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Producing: one intake loop sends queued events or spools them; one drain loop re-sends the
  // spool. Only one of them talks to Kafka at a time: the intake sends directly only while the
  // spool is empty, and only the intake creates spool segments.

  #kickIntake(): void {
    if (this.#intake) return;
    this.#intake = this.#runIntake().finally(() => {
      this.#intake = null;
      this.#notify();
      if (this.#queue.length > 0) this.#kickIntake();
    });
  }

  async #runIntake(): Promise<void> {
    try {
      await this.#ready;
    } catch (err) {
      for (const p of this.#take(Infinity)) p.reject(err as Error);
      return;
    }
    while (this.#queue.length > 0) {
      if (this.#queuedEvents < this.#batchSize && this.#lingerMs > 0 && !this.#closing) await sleep(this.#lingerMs);
      const batch = this.#take(this.#batchSize);
      const records = batch.flatMap((p) => p.records);
      if (this.#segments.length === 0) {
        try {
          await this.#send(records);
          for (const p of batch) p.resolve();
          continue;
        } catch (err) {
          // Ambiguous: Kafka may have written the batch after all. Re-sending it from the spool
          // can duplicate it in the log; consumers drop the copy by event_id.
          this.#log.warn({ err, events: records.length, spoolDir: this.#spoolDir }, 'kafka unreachable; spooling events to disk');
        }
      }
      try {
        await this.#append(records);
        for (const p of batch) p.resolve();
        this.#kickDrain();
      } catch (err) {
        this.#log.error({ err, events: records.length, spoolDir: this.#spoolDir }, 'cannot spool events; publish fails');
        for (const p of batch) p.reject(err as Error);
      }
    }
  }

  /** Whole publish calls, up to `max` events (at least one call). */
  #take(max: number): Pending[] {
    const out: Pending[] = [];
    let n = 0;
    while (this.#queue.length > 0 && (out.length === 0 || n + this.#queue[0]!.records.length <= max)) {
      const p = this.#queue.shift()!;
      n += p.records.length;
      out.push(p);
    }
    this.#queuedEvents -= n;
    return out;
  }

  #kickDrain(): void {
    if (this.#drain || this.#segments.length === 0 || this.#stopped) return;
    this.#drain = this.#runDrain().finally(() => {
      this.#drain = null;
      this.#notify();
      if (this.#segments.length > 0 && !this.#stopped) this.#kickDrain();
    });
  }

  async #runDrain(): Promise<void> {
    let failures = 0;
    let delivered = 0;
    while (this.#segments.length > 0 && !this.#stopped) {
      const segment = this.#segments[0]!;
      try {
        // Sealed first, so the file read below is complete and never appended to again.
        await this.#locked(async () => { if (this.#active === segment) this.#active = null; });
        segment.records ??= await this.#readSegment(segment.path);
        while (segment.sent < segment.records.length) {
          const chunk = segment.records.slice(segment.sent, segment.sent + this.#batchSize);
          await this.#send(chunk);
          segment.sent += chunk.length;
          delivered += chunk.length;
        }
        await this.#locked(() => rm(segment.path, { force: true }));
        this.#segments.shift();
        failures = 0;
        this.#notify();
      } catch (err) {
        failures++;
        if (failures === 1 || failures % 10 === 0) {
          this.#log.warn({ err, attempt: failures, segments: this.#segments.length, spoolDir: this.#spoolDir }, 'kafka still unreachable; spool kept');
        }
        await this.#pause(Math.min(this.#maxRetryDelayMs, 100 * 2 ** (failures - 1)));
      }
    }
    if (delivered > 0 && this.#segments.length === 0) {
      this.#log.warn({ events: delivered, spoolDir: this.#spoolDir }, 'spooled events delivered to kafka');
    }
  }

  async #send(records: SpoolRecord[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    for (const { topic, event, headers } of records) {
      const name = this.topicName(topic);
      let messages = byTopic.get(name);
      if (!messages) byTopic.set(name, (messages = []));
      messages.push({
        key: partitionKey(event),
        value: JSON.stringify(event),
        headers: { ...headers, event_id: event.event_id },
      });
    }
    const attempt = (async () => {
      const producer = await this.#connect();
      await producer.sendBatch({
        acks: -1,
        timeout: this.#sendTimeoutMs,
        compression: this.#compression,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
    })();
    try {
      await withTimeout(attempt, this.#sendTimeoutMs, 'kafka produce timed out');
    } catch (err) {
      // A fresh producer (new producer id, sequence numbers from 0) after any failure, so an
      // abandoned in-flight request cannot leave the idempotence bookkeeping out of step.
      void this.#resetProducer();
      throw err;
    }
  }

  #connect(): Promise<Producer> {
    if (!this.#producerReady) {
      const producer = this.#kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        // Bounded, so that a request we gave up on stops retrying in the background.
        retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
      });
      this.#producer = producer;
      this.#producerReady = producer.connect().then(() => producer);
      this.#producerReady.catch(() => {});
    }
    return this.#producerReady;
  }

  async #resetProducer(): Promise<void> {
    const producer = this.#producer;
    this.#producer = null;
    this.#producerReady = null;
    if (producer) await disconnectQuietly(producer);
  }

  // ---------------------------------------------------------------------------------------------
  // Spool: `spool-<seq>.jsonl` segments of JSON lines, one SpoolRecord per line, fsync'd per
  // append. A segment is deleted once all of its events are acknowledged by Kafka.

  async #openSpool(): Promise<void> {
    await mkdir(this.#spoolDir, { recursive: true });
    const names = (await readdir(this.#spoolDir)).filter((n) => SEGMENT_RE.test(n)).sort();
    for (const name of names) {
      this.#segments.push({ path: join(this.#spoolDir, name), count: 0, sent: 0, records: null });
      this.#nextSeq = Math.max(this.#nextSeq, Number(SEGMENT_RE.exec(name)![1]) + 1);
    }
    if (names.length > 0) {
      this.#log.warn({ spoolDir: this.#spoolDir, segments: names.length }, 'found spooled events from an earlier run; delivering them first');
    }
  }

  async #append(records: SpoolRecord[]): Promise<void> {
    const data = records.map((r) => JSON.stringify(r) + '\n').join('');
    await this.#locked(async () => {
      let segment = this.#active;
      let created = false;
      if (!segment || segment.count >= this.#segmentMaxEvents) {
        const name = `spool-${String(this.#nextSeq++).padStart(12, '0')}.jsonl`;
        segment = { path: join(this.#spoolDir, name), count: 0, sent: 0, records: null };
        created = true;
      }
      const file = await open(segment.path, 'a');
      try {
        await file.writeFile(data);
        await file.sync();
      } finally {
        await file.close();
      }
      if (created) {
        await syncDir(this.#spoolDir);
        this.#segments.push(segment);
        this.#active = segment;
      }
      segment.count += records.length;
    });
  }

  async #readSegment(path: string): Promise<SpoolRecord[]> {
    const text = await readFile(path, 'utf8');
    const out: SpoolRecord[] = [];
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.trim() === '') continue;
      try {
        const r = JSON.parse(line) as SpoolRecord;
        if (!TOPICS.includes(r.topic) || typeof r.event?.event_id !== 'string') throw new Error('not a spool record');
        out.push({ topic: r.topic, event: r.event, headers: r.headers ?? {} });
      } catch (err) {
        // A torn last line is a write that never returned, so its publish never resolved.
        this.#log.error({ err, path, line: i + 1 }, 'skipping unreadable spool line');
      }
    }
    return out;
  }

  #locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#fileLock.then(fn);
    this.#fileLock = run.catch(() => {});
    return run;
  }

  // ---------------------------------------------------------------------------------------------

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  #changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** A backoff that close() can cut short. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

/**
 * A message as the handler gets it. One that is not even JSON (or empty) is NOT skipped here: it
 * is handed over as an `undecodable` marker at its own offset, so every consumer group
 * quarantines it in its own way and moves its position past it (a consumer that stores
 * positions with its effects would otherwise see a gap at that offset forever). Shapes are
 * checked by the consumers (`decodeEvent`), not here.
 */
function decodeMessage(topic: Topic, partition: number, message: KafkaMessage): ConsumedEvent {
  const offset = BigInt(message.offset);
  const headers = decodeHeaders(message.headers);
  const undecodable = (reason: string, raw: string): ConsumedEvent => {
    const marker: UndecodableMessage = { type: 'undecodable', event_id: `undecodable:${topic}:${partition}:${offset}`, reason, raw: boundedRaw(raw) };
    return { topic, partition, offset, event: marker as unknown as AnyEvent, headers };
  };
  if (!message.value || message.value.length === 0) return undecodable('empty message value', '');
  const text = message.value.toString('utf8');
  let event: unknown;
  try {
    event = JSON.parse(text);
  } catch {
    return undecodable('message value is not JSON', text);
  }
  return { topic, partition, offset, event: event as AnyEvent, headers };
}

function decodeHeaders(headers: IHeaders | undefined): EventHeaders {
  const out: EventHeaders = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    const one = Array.isArray(value) ? value[value.length - 1] : value;
    if (one !== undefined) out[name] = typeof one === 'string' ? one : one.toString('utf8');
  }
  return out;
}

async function disconnectQuietly(client: { disconnect(): Promise<void> }): Promise<void> {
  try {
    await client.disconnect();
  } catch {
    // already gone; nothing to release
  }
}

/** fsync the directory so a new segment's name survives a power cut, where the OS allows. */
async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // not supported on this platform
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  promise.catch(() => {}); // the loser of the race must not become an unhandled rejection
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Partitions each new topic was created with, by name. */
function partitionsOf(topics: readonly ITopicConfig[]): Map<string, number> {
  return new Map(topics.map((t) => [t.topic, t.numPartitions ?? 1]));
}

/**
 * Waits until the broker serves metadata for every new topic with a leader on every partition.
 * `createTopics({waitForLeaders})` can return before a KRaft broker's metadata cache has the
 * topic (a freshly started broker answers UNKNOWN_TOPIC_OR_PARTITION for a moment), and the
 * first producer or consumer then fails instead of the topic being ready. Gives up after
 * `timeoutMs` (10 s) with the last error: a topic that never appears is a real failure.
 */
async function waitForTopicMetadata(
  admin: Admin, topics: readonly string[], partitions: Map<string, number>, timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    try {
      const { topics: meta } = await admin.fetchTopicMetadata({ topics: [...topics] });
      const ready = topics.every((name) => {
        const t = meta.find((m) => m.name === name);
        return t !== undefined && t.partitions.length >= (partitions.get(name) ?? 1) && t.partitions.every((p) => p.leader >= 0);
      });
      if (ready) return;
      if (Date.now() > deadline) throw new Error(`topics ${topics.join(', ')} have no leader after ${timeoutMs} ms`);
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}
