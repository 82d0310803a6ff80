// The distributed event log: Kafka through kafkajs, with a local disk spool so that publishing
// never fails while Kafka is away. This file and kafka-codecs.ts are the only ones of the
// project's libraries that import kafkajs.
//
// Invariants (see libs/events/README.md):
// - Write-ahead: publish() appends its events to the spool synchronously, before it returns,
//   so a process killed at any later point (kill -9 included) leaves them on disk for the
//   next start; a record leaves the spool only once Kafka acknowledged it (acks=all).
// - publish() resolves once its events are acknowledged by Kafka, or, while Kafka is away,
//   fsync'd in the spool; it rejects only when the append itself failed (the disk failed).
// - Per partition key, events reach Kafka in publish order: one sender sends the spool oldest
//   segment first, and new events are appended behind whatever is still unsent.
// - A consumer commits an offset only after the handler resolved for every event before it,
//   so a crash, a handler error or a rebalance means redelivery, never loss.
import { closeSync, fdatasync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CompressionTypes, Partitioners } from 'kafkajs';
import type { Admin, Consumer, EachBatchPayload, IHeaders, ITopicConfig, Kafka, KafkaMessage, Message, PartitionMetadata, Producer } from 'kafkajs';
import { boundedId, carriedHeaders, EVENT_ID_HEADER, EventTooLargeError, finishedWithin, headersProblem, InvalidEventError, MAX_EVENT_BYTES, MAX_RECORD_BYTES, NotPublishedError, NotYetError, partitionKey, PartitionLostError, RewindError, type BatchContext } from './event-log.ts';
import type {
  Appended, Assignment, ConsumedEvent, DeadLetter, EventHeaders, EventLog, PublishedEvent, SubscribeOptions, Subscription,
} from './event-log.ts';
import type { AnyEvent, Topic } from './types.ts';
import { boundedRaw, type UndecodableMessage } from './decode.ts';
import { probeDirectory, reserveChanged, WriteAheadHealth } from './write-ahead-health.ts';
import { fixKafkajsRequestQueue } from './kafkajs-request-queue.ts';
import { compressionType, registerKafkaCodecs, type KafkaCompression } from './kafka-codecs.ts';
import { commitVia, OffsetCommitter } from './offset-committer.ts';

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
  /**
   * the write-ahead spool: every event is appended here before publish returns and removed once
   * Kafka acknowledged it; what an earlier process left is sent first. One process per directory.
   */
  spoolDir: string;
  /**
   * Called synchronously before each publish writes to the spool: an Error refuses the publish
   * (NotPublishedError, nothing written). A process that may have lost its claim on `spoolDir`
   * to another (services/tollgate's DATA_DIR lock) refuses rather than append to segments the
   * other process may already have read and will delete.
   */
  beforeSpool?: () => Error | undefined;
  /**
   * Bytes that must stay free on the disk of `spoolDir` (default 0: not watched). Below it,
   * `writeAheadProblem()` is a DiskReserveLowError (appends still work) until there is room again.
   */
  reserveBytes?: number;
  logger?: KafkaLogLogger;
  /** the codec of the record batches this log produces (default `gzip`); see `compressMinBytes` */
  compression?: KafkaCompression;
  /**
   * With `compression`, only a produce request whose event values add up to at least this many
   * characters of JSON (≈ bytes) is compressed (default 16384). A smaller one (a batch of one or a few events, the usual
   * case at low concurrency) goes uncompressed: a codec's set-up costs the producer,
   * the broker and every consumer more CPU than the few hundred bytes it saves.
   */
  compressMinBytes?: number;
  /** most events per produce request (default 500) */
  batchSize?: number;
  /**
   * How long a small batch of usage events waits for company before it is sent (default
   * DEFAULT_LINGER_MS, 20 ms; KAFKA_LINGER_MS). No publisher waits for it: a request's answer
   * never waits for Kafka (its event is written ahead to the spool first). Each produce request
   * costs the producer, the broker and every consumer group a fixed amount of CPU (a fetch, a
   * Redis call, a commit), so fewer, fuller ones leave more of a small machine to the requests
   * (docs/decisions.md, "Usage events linger 20 ms before they are sent"). An append to any
   * other topic (control records, grants: their callers wait for Kafka's acknowledgement) and a
   * caller of `acknowledged()` cut the wait short. 0 sends at once.
   */
  lingerMs?: number;
  /**
   * a produce (connect included) slower than this counts as Kafka down (default 3000 ms); the
   * sender stops waiting for it then, but sends its events again only once that produce has
   * settled (see `requestTimeoutMs`)
   */
  sendTimeoutMs?: number;
  /**
   * The `requestTimeout` the `kafka` client was built with, ms (default 30000, kafkajs' own
   * default). kafkajs keeps waiting for a produce request's answer until then, and retries it,
   * so it bounds how long a produce the sender gave up on can still be acknowledged: see
   * `doubtBoundMs`. Larger than the client's only makes that wait longer; smaller can let a
   * late acknowledgement through after the events were sent again (a duplicate).
   */
  requestTimeoutMs?: number;
  /** longest pause between attempts to re-send the spool (default 2000 ms) */
  maxRetryDelayMs?: number;
  /** how long close() waits for the spool to drain before leaving it for the next start (default 5000 ms) */
  closeTimeoutMs?: number;
  /**
   * How long a subscription's stop() waits (ms, default 5000) for its batches in the handler, the
   * commit of what was handled and leaving the group. Past it (Kafka or the sink frozen: kafkajs
   * and the ClickHouse client wait 30 s for an answer) it leaves without them: the partitions'
   * next owner reads from the last commit, which the positions stored with the effects make exact.
   */
  subscriptionStopTimeoutMs?: number;
  /** a spool segment is closed for appends after this many events (default 5000) */
  segmentMaxEvents?: number;
  /** most events per handler call (default 1000) */
  consumerBatchSize?: number;
  /** consumer long-poll wait; also bounds how long stop() waits for an idle fetch (default 1000 ms) */
  consumerMaxWaitMs?: number;
  /**
   * How often a subscription commits the offsets its handler has finished, ms (default 250): one
   * OffsetCommit for all its partitions, in the background, so no partition waits for a commit
   * round trip before its next fetch. 0 = commit after every handler call, awaited (as before
   * issue 11). Either way only handled offsets are committed, and `stop()` commits the rest.
   */
  consumerCommitIntervalMs?: number;
  /**
   * How often (ms, default 1000) a subscription with `storedPositions` compares each partition
   * it holds with the sink's stored position (SubscribeOptions.storedPositions): one call per look.
   */
  positionCheckMs?: number;
  /** replication factor for ensureTopics (default 1) */
  replicationFactor?: number;
}

/** One line of a spool file. The topic is the logical one; the prefix is applied on delivery. */
interface SpoolRecord {
  topic: Topic;
  event: AnyEvent;
  headers: EventHeaders;
  /**
   * `event` as JSON, kept from the spool append so the send does not serialize it again (in
   * memory only; absent for records read back from a file, which are serialized on send).
   */
  value?: string;
  /** `recordBytes` of this record, kept from the spool append like `value` (the send's chunking reads it) */
  bytes?: number;
}

interface Pending {
  /** this process's append sequence number of the call's last event */
  upTo: number;
  resolve(): void;
  reject(err: Error): void;
}

interface Segment {
  path: string;
  /** open while this process appends to it or may still fsync it; null for an earlier run's */
  fd: number | null;
  /** sequence number of its first event in this process's appends; -1 for an earlier run's */
  base: number;
  /** events this process appended to it */
  count: number;
  /** events of `records` already acknowledged by Kafka in this process */
  sent: number;
  /** its events in file order; null until read from the file (an earlier run's, or dropped to bound memory) */
  records: SpoolRecord[] | null;
  /** appended to since its last fsync */
  dirty: boolean;
}

/**
 * A produce the sender gave up on (slower than `sendTimeoutMs`) that kafkajs may still complete:
 * the broker can have written it and only its answer be late, or kafkajs' own retries can get
 * it through once the broker is back. Its chunk is `count` events of `segment` from `from`.
 */
interface InDoubt {
  segment: Segment;
  from: number;
  count: number;
  /** the producer it runs on: kept, not disconnected, until the produce settles or is given up */
  producer: Producer | null;
  /** true: Kafka acknowledged it; false: kafkajs gave up (or it never started); null: not yet */
  outcome: boolean | null;
  settled: Promise<void>;
  /** Date.now() past which the sender stops waiting for it and sends its events again */
  deadline: number;
}

/**
 * The spool producer's kafkajs retry settings: bounded, so that a request we gave up on stops
 * retrying in the background, and so that how long it can still succeed is known (`doubtBoundMs`).
 */
const PRODUCER_RETRY = { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 } as const;

/**
 * How long a produce given up on can still be acknowledged, ms: each of its `retries + 1` tries
 * sends one Produce request, which kafkajs answers or fails within `requestTimeoutMs` (the
 * client enforces it, kafkajs' default), with at most `maxRetryTime` between tries (the first
 * pause, `initialRetryTime` ± 20 %, is shorter). 185,000 ms with kafkajs' 30 s request timeout.
 * Not covered: a try that first reconnects to a broker that is away (the client's
 * `connectionTimeout` and retries), usually a quick refusal; a produce still running past the
 * bound is abandoned and its events sent again, which can duplicate them.
 */
function doubtBoundMs(requestTimeoutMs: number): number {
  return (PRODUCER_RETRY.retries + 1) * requestTimeoutMs + PRODUCER_RETRY.retries * PRODUCER_RETRY.maxRetryTime;
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

/**
 * How long a small batch of usage events waits for company before it is sent, ms (KafkaLog's
 * `lingerMs`, KAFKA_LINGER_MS). Measured in session 50 (bench/cpu-split.ts): against 5 ms, the
 * distributed deployment's CPU per request fell ~3 % at 1,500 requests/s (Kafka's network
 * threads ~30 %), and the ledger's event-to-balance p99 at 5,000 events/s stayed under 100 ms.
 */
export const DEFAULT_LINGER_MS = 20;

const SEGMENT_RE = /^spool-(\d{12})\.jsonl$/;

const consoleLogger: KafkaLogLogger = {
  warn: (obj, msg) => console.warn(msg ?? '', obj),
  error: (obj, msg) => console.error(msg ?? '', obj),
};

/** One consumer-lag measurement: logical group and topic, partition, lag in records. */
export type LagReport = (group: string, topic: string, partition: number, lag: number | null) => void;

export class KafkaLog implements EventLog {
  readonly durablePositions = true;
  readonly sharedGroups = true;
  readonly #kafka: Kafka;
  readonly #prefix: string;
  readonly #spoolDir: string;
  readonly #beforeSpool: (() => Error | undefined) | undefined;
  /** whether the spool can be written now (EventLog.writeAheadProblem): a probe of the spool directory, after the owner's check */
  readonly #health: WriteAheadHealth;
  readonly #log: KafkaLogLogger;
  readonly #compression: CompressionTypes;
  readonly #compressMinBytes: number;
  readonly #batchSize: number;
  readonly #lingerMs: number;
  readonly #sendTimeoutMs: number;
  readonly #doubtBoundMs: number;
  readonly #maxRetryDelayMs: number;
  readonly #closeTimeoutMs: number;
  readonly #subscriptionStopTimeoutMs: number;
  readonly #segmentMaxEvents: number;
  readonly #consumerBatchSize: number;
  readonly #consumerMaxWaitMs: number;
  readonly #consumerCommitIntervalMs: number;
  readonly #positionCheckMs: number;
  readonly #replicationFactor: number;

  readonly #ready: Promise<void>;
  #openError: Error | null = null;
  /** publish calls not yet resolved, in call order (so `upTo` ascends) */
  #pending: Pending[] = [];
  /** events appended by this process so far (the last one's sequence number) */
  #written = 0;
  /** the sequence number (as #written counts) through which Kafka acknowledged this process's events */
  #acknowledgedThrough = 0;
  /**
   * the sequence number (as #written counts) through which someone waits for Kafka's
   * acknowledgement (an append to a topic other than usage, an `acknowledged()` caller): the
   * sender does not linger while it is ahead of #acknowledgedThrough
   */
  #urgentThrough = 0;
  /** ends the sender's linger now (set while it lingers) */
  #wakeLinger: (() => void) | null = null;
  /** acknowledged() calls not yet resolved, in call order (so `upTo` ascends) */
  #ackWaiters: Pending[] = [];
  #sender: Promise<void> | null = null;
  /** the segment the sender is sending from (its records must stay in memory) */
  #sending: Segment | null = null;
  /** the last send failed: publish resolves on fsync instead of waiting for Kafka */
  #down = false;
  #syncing: Promise<void> | null = null;
  #syncAgain = false;
  #dirDirty = false;

  /** spool segments, oldest first; only the last one can be #active */
  #segments: Segment[] = [];
  #active: Segment | null = null;
  /**
   * The last active segment's file, emptied once Kafka acknowledged all of it and kept open for
   * the next segment: opening and unlinking a file per publish was the publish path's largest
   * cost under steady traffic (issue 11, gateway CPU profile). Empty, so a restart re-sends nothing.
   */
  #spare: { path: string; fd: number } | null = null;
  #nextSeq = 0;

  #producer: Producer | null = null;
  #producerReady: Promise<Producer> | null = null;
  /** the dead letters' own producer (see deadLetter), connected on first use */
  #deadLetterReady: Promise<Producer> | null = null;
  /** the last chunk's produce, given up on and not yet settled: nothing is sent before it is */
  #inDoubt: InDoubt | null = null;

  #subscriptions = new Set<Subscription>();
  #waiters: Array<() => void> = [];
  #wake: (() => void) | null = null;
  /** while the sender waits on Kafka (#cuttable): ends that wait (close, with Kafka away) */
  #cutSend: (() => void) | null = null;
  #closing = false;
  #stopped = false;
  /** partitions of the topics the sender makes sure of before its next send (createTopicsBeforeSend); null: nothing to do */
  #topicsBeforeSend: number | null = null;

  constructor(options: KafkaLogOptions) {
    fixKafkajsRequestQueue();
    this.#kafka = options.kafka;
    this.#prefix = options.topicPrefix ?? '';
    this.#spoolDir = options.spoolDir;
    this.#beforeSpool = options.beforeSpool;
    this.#log = options.logger ?? consoleLogger;
    this.#health = new WriteAheadHealth(() => {
      const refused = this.#beforeSpool?.();
      if (refused) throw refused;
      probeDirectory(this.#spoolDir)();
    }, { dir: this.#spoolDir, reserveBytes: options.reserveBytes ?? 0, onChange: (low) => reserveChanged(this.#log, low, this.#spoolDir) });
    registerKafkaCodecs();
    this.#compression = compressionType(options.compression ?? 'gzip');
    this.#compressMinBytes = options.compressMinBytes ?? 16_384;
    if (!(this.#compressMinBytes >= 0)) throw new RangeError(`compressMinBytes must be >= 0, got ${this.#compressMinBytes}`);
    this.#batchSize = options.batchSize ?? 500;
    this.#lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
    if (!Number.isFinite(this.#lingerMs) || this.#lingerMs < 0) throw new RangeError(`lingerMs must be a finite number >= 0, got ${options.lingerMs}`);
    this.#sendTimeoutMs = options.sendTimeoutMs ?? 3000;
    this.#doubtBoundMs = doubtBoundMs(options.requestTimeoutMs ?? 30_000);
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? MAX_RETRY_DELAY_MS;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 5000;
    this.#subscriptionStopTimeoutMs = options.subscriptionStopTimeoutMs ?? 5000;
    this.#segmentMaxEvents = options.segmentMaxEvents ?? 5000;
    this.#consumerBatchSize = options.consumerBatchSize ?? 1000;
    this.#consumerMaxWaitMs = options.consumerMaxWaitMs ?? 1000;
    this.#consumerCommitIntervalMs = Math.max(0, options.consumerCommitIntervalMs ?? 250);
    this.#positionCheckMs = Math.max(10, options.positionCheckMs ?? 1000);
    this.#replicationFactor = options.replicationFactor ?? 1;
    try {
      this.#openSpool();
      this.#ready = Promise.resolve();
      this.#kickSender();
    } catch (err) {
      // Surfaces through publish/flush; the catch only keeps the rejection from being unhandled.
      this.#openError = err as Error;
      this.#ready = Promise.reject(err);
      this.#ready.catch(() => {});
    }
  }

  #lag: { report: LagReport; intervalMs: number } | null = null;
  #lagAdmin: Promise<Admin> | null = null;

  /**
   * Measures consumer lag for every subscription made after this call: each `intervalMs` (and
   * once at once) it asks the broker (admin `fetchTopicOffsets`, `fetchOffsets`) for each
   * subscribed topic's partitions: lag = high watermark − the group's committed offset (the
   * partition's low watermark while the group has committed none), in records, never below 0.
   * `report` gets the logical group and topic names. Failures (broker away) skip a round.
   * Only the partitions this consumer is assigned (its last GROUP_JOIN) are reported, so each
   * partition of a group is exported by exactly one process and `sum` over the group is the
   * group's lag; a partition given up in a rebalance is reported once as `null` (remove the
   * series), so no stale value lingers beside the new owner's.
   */
  reportLag(report: LagReport, intervalMs: number): void {
    this.#lag = { report, intervalMs };
  }

  /**
   * `assigned` is read again after every await: a measurement still in flight when a rebalance
   * or `stop()` took partitions away must not report them (that would bring back a series the
   * member already removed, beside the new owner's).
   */
  async #measureLag(group: string, byName: ReadonlyMap<string, string>, assigned: () => ReadonlyMap<string, ReadonlySet<number>>): Promise<void> {
    const lag = this.#lag;
    if (!lag || this.#closing) return;
    if (assigned().size === 0) return;
    this.#lagAdmin ??= (async () => {
      const admin = this.#kafka.admin();
      await admin.connect();
      return admin;
    })();
    let admin: Admin;
    try {
      admin = await this.#lagAdmin;
    } catch {
      this.#lagAdmin = null;
      return;
    }
    const groupId = this.groupName(group);
    for (const [name, topic] of byName) {
      if (!assigned().get(name)?.size) continue;
      const [marks, committed] = await Promise.all([
        admin.fetchTopicOffsets(name), admin.fetchOffsets({ groupId, topics: [name] }),
      ]);
      const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
      for (const m of marks) {
        if (this.#closing || !assigned().get(name)?.has(m.partition)) continue;
        const c = done.get(m.partition) ?? -1n;
        const from = c < 0n ? BigInt(m.low) : c;
        const n = BigInt(m.high) - from;
        lag.report(group, topic, m.partition, n > 0n ? Number(n) : 0);
      }
    }
  }

  /**
   * Waits until consumer group `group` (logical name) has committed every dead letter that was
   * on the log when called: committed offset ≥ the high watermark read first, on every partition
   * of the dead-letter topic. The warehouse sink stores a dead letter before its offset is
   * committed, and the ledger group sends its dead letter before it records the refusal in hot
   * state; so once this resolves true, every refusal hot state ever recorded is in the
   * warehouse's quarantine (what a rebuild reads). Resolves false after `timeoutMs` (the group
   * is down or far behind, or the broker does not answer). See `committedThrough`.
   */
  async deadLettersCommitted(group: string, timeoutMs: number): Promise<boolean> {
    return this.committedThrough(group, [this.deadLetterTopicName()], timeoutMs);
  }

  /**
   * Waits until consumer group `group` (logical name) has committed every record on `topics`
   * (Kafka topic names: `topicName(…)`, `deadLetterTopicName()`): committed offset ≥ the high
   * watermark, read when called and once more when the group has reached it, on every partition
   * holding any. A group that commits
   * only what it has handled (the warehouse sink: stored) has then stored all of it. A topic not
   * made yet holds nothing. Polls every 100 ms (commits follow handling by
   * `consumerCommitIntervalMs`). Resolves false after `timeoutMs` (the group is down or far
   * behind, or the broker does not answer).
   * `settleMs`: the second read of the ends is made no sooner than this long after the first
   * answered (default 0), so another process's spool, sent within its retry pause of Kafka's
   * return (SPOOL_RESEND_MS), is on the log by then.
   */
  async committedThrough(group: string, topics: readonly string[], timeoutMs: number, options: { settleMs?: number } = {}): Promise<boolean> {
    // The ends are read at the start, and once more when the group has reached them: records
    // that reached the log meanwhile (another process's spool, sent once Kafka is back) are
    // waited for too. Not at every poll: records arriving faster than the group commits would
    // keep the wait from ever ending.
    let want: Map<string, Array<{ partition: number; high: string }>> | undefined;
    let reread = false;
    let firstReadAt = 0;
    const ends = async (admin: Admin, left: () => number) => {
      const existing = new Set(await withTimeout(admin.listTopics(), left(), 'kafka listTopics timed out'));
      const read = new Map<string, Array<{ partition: number; high: string }>>();
      for (const topic of topics) {
        if (!existing.has(topic)) continue;
        const held = (await withTimeout(admin.fetchTopicOffsets(topic), left(), 'kafka fetchTopicOffsets timed out'))
          .filter((m) => BigInt(m.high) > BigInt(m.low));
        if (held.length > 0) read.set(topic, held);
      }
      return read;
    };
    const done = await this.#askAdmin(timeoutMs, async (admin, left) => {
      if (want === undefined) {
        want = await ends(admin, left);
        firstReadAt = Date.now();
      }
      if (want.size > 0) {
        const committed = await withTimeout(admin.fetchOffsets({ groupId: this.groupName(group), topics: [...want.keys()] }), left(), 'kafka fetchOffsets timed out');
        for (const [topic, partitions] of want) {
          const at = new Map((committed.find((c) => c.topic === topic)?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
          if (!partitions.every((m) => (at.get(m.partition) ?? -1n) >= BigInt(m.high))) return undefined;
        }
      }
      if (reread) return true;
      if (Date.now() < firstReadAt + (options.settleMs ?? 0)) return undefined;
      reread = true;
      const again = await ends(admin, left);
      const same = [...again].every(([topic, partitions]) => partitions.every((m) =>
        BigInt(m.high) <= BigInt(want!.get(topic)?.find((w) => w.partition === m.partition)?.high ?? '-1')));
      if (same) return true;
      want = again;
      return undefined;
    });
    return done ?? false;
  }

  /**
   * `BatchContext.assignment` for the join numbered `id`, holding `held` (partitions per Kafka
   * topic name). `owned` reads the topic's partition count from the broker once per assignment
   * (at most 10 s; throws when it does not answer) and places each key with the producer's own
   * partitioner.
   */
  #assignment(id: number, held: ReadonlyMap<string, ReadonlySet<number>>): Assignment {
    const counts = new Map<string, Promise<number>>();
    const count = (name: string): Promise<number> => {
      let c = counts.get(name);
      if (c === undefined) {
        c = this.#askAdmin(10_000, async (admin, left) => {
          const { topics } = await withTimeout(admin.fetchTopicMetadata({ topics: [name] }), left(), 'kafka fetchTopicMetadata timed out');
          const n = topics.find((t) => t.name === name)?.partitions.length;
          return n !== undefined && n > 0 ? n : undefined;
        }).then((n) => {
          if (n === undefined) throw new Error(`kafka did not say how many partitions ${name} has`);
          return n;
        });
        c.catch(() => counts.delete(name)); // asked again next time
        counts.set(name, c);
      }
      return c;
    };
    return {
      id,
      owned: async (topic, keys) => {
        const name = this.topicName(topic);
        const mine = held.get(name);
        if (mine === undefined || mine.size === 0 || keys.length === 0) return [];
        const n = await count(name);
        return keys.filter((key) => mine.has(producerPartition(name, key, n)));
      },
    };
  }

  /**
   * The offset of the last record on each partition of `topics` (high watermark − 1), for
   * partitions holding any (high > low), keyed by logical topic and partition; undefined when
   * the broker does not answer within `timeoutMs`. What a rebuild waits for the warehouse to
   * hold before it reads (services/aggregator rebuild's `logEnd`).
   */
  async lastOffsets(topics: readonly Topic[], timeoutMs: number): Promise<Map<Topic, Map<number, bigint>> | undefined> {
    return this.#askAdmin(timeoutMs, async (admin, left) => {
      const out = new Map<Topic, Map<number, bigint>>();
      const existing = new Set(await withTimeout(admin.listTopics(), left(), 'kafka listTopics timed out'));
      for (const topic of topics) {
        const last = new Map<number, bigint>();
        if (existing.has(this.topicName(topic))) {
          for (const m of await withTimeout(admin.fetchTopicOffsets(this.topicName(topic)), left(), 'kafka fetchTopicOffsets timed out')) {
            if (BigInt(m.high) > BigInt(m.low)) last.set(m.partition, BigInt(m.high) - 1n);
          }
        }
        out.set(topic, last);
      }
      return out;
    });
  }

  /**
   * Asks the broker through a fresh admin client until `ask` answers (not undefined), every
   * 100 ms, for at most `timeoutMs`; a throw (a broker between answers: a topic just made, a
   * leader moving) is asked again. `left()` is the time remaining, ms, for each call's own
   * timeout. Undefined when no answer came in time or the client could not connect.
   */
  async #askAdmin<T>(timeoutMs: number, ask: (admin: Admin, left: () => number) => Promise<T | undefined>): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const admin = this.#kafka.admin();
    try {
      await withTimeout(admin.connect(), left(), 'kafka admin connect timed out');
      for (;;) {
        try {
          const answer = await ask(admin, left);
          if (answer !== undefined) return answer;
        } catch {
          // asked again below
        }
        if (Date.now() + 100 > deadline) return undefined;
        await sleep(100);
      }
    } catch {
      return undefined;
    } finally {
      await admin.disconnect().catch(() => {});
    }
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
   * Throws when the produce fails or takes longer than `sendTimeoutMs` (it may still complete:
   * the warehouse keeps dead letters deduplicated by position). Its own producer, not the
   * spool's: kafkajs sends one request per broker at a time on a producer, so on the spool's a
   * dead letter would wait behind a produce in doubt (#inDoubt, up to `doubtBoundMs`), time out
   * at every try of its consumer, and each abandoned try be written once that produce settled.
   */
  async deadLetter(records: DeadLetter[]): Promise<void> {
    if (this.#closing) throw new Error('event log is closed');
    if (records.length === 0) return;
    const ready = this.#connectDeadLetters();
    const attempt = (async () => {
      await (await ready).send({
        topic: this.deadLetterTopicName(), acks: -1, timeout: this.#sendTimeoutMs,
        messages: records.map((r) => ({ key: r.group, value: JSON.stringify(r) })),
      });
    })();
    try {
      await withTimeout(attempt, this.#sendTimeoutMs, 'kafka produce of dead letters timed out');
    } catch (err) {
      // The next try gets a fresh producer, not one whose request may still be waiting.
      if (this.#deadLetterReady === ready) this.#deadLetterReady = null;
      void ready.then(disconnectQuietly, () => {});
      throw err;
    }
  }

  #connectDeadLetters(): Promise<Producer> {
    if (!this.#deadLetterReady) {
      const producer = this.#kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        retry: { ...PRODUCER_RETRY },
      });
      const ready = producer.connect().then(() => producer, async (err: unknown) => {
        await disconnectQuietly(producer);
        throw err;
      });
      ready.catch(() => {});
      this.#deadLetterReady = ready;
    }
    return this.#deadLetterReady;
  }

  /** Creates the missing topics (delete policy, see TOPIC_CONFIG); existing ones are left as they are. */
  async ensureTopics(partitions = 4, replicationFactor = this.#replicationFactor): Promise<void> {
    await this.#ensureTopicsWith(this.#kafka.admin(), partitions, replicationFactor);
  }

  async #ensureTopicsWith(admin: Admin, partitions: number, replicationFactor: number, connectTimeoutMs?: number): Promise<void> {
    // The sender's check (connectTimeoutMs = sendTimeoutMs): a broker that accepts connections
    // and never answers (frozen, black-holed) held it for kafkajs' request timeout (30 s), and
    // with it every publish waiting for the first send (a stop ran into its hard stop).
    // Each request after the connection is bounded the same way on the sender's path (a broker
    // frozen after it accepted held the first send for kafkajs' 30 s request timeout: a breaker).
    const bounded = <T>(work: Promise<T>, what: string): Promise<T> => answerWithin(work, connectTimeoutMs, what);
    try {
      await bounded(admin.connect(), 'a connection');
    } catch (err) {
      void admin.disconnect().catch(() => {});
      throw err;
    }
    try {
      const existing = new Set(await bounded(admin.listTopics(), 'a topic list'));
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
        // Our own wait, not kafkajs' `waitForLeaders`: that retries only LEADER_NOT_AVAILABLE,
        // and a broker may answer UNKNOWN_TOPIC_OR_PARTITION for a topic it created a moment ago
        // (a fresh KRaft broker in CI did), which failed the caller's start.
        await bounded(admin.createTopics({ topics: missing, waitForLeaders: false }), 'a topic creation');
        await waitForTopicMetadata(admin, missing.map((t) => t.topic), partitionsOf(missing), undefined, undefined, connectTimeoutMs);
      }
      // The count asked for is used only when a topic is made: say so when the topics have
      // another (an operator who raised KAFKA_PARTITIONS later would otherwise believe it took
      // effect, and a process racing another's start may find them made with the other's count).
      // One line each time the topics are made sure of: a consumer's start (ensureTopics), a
      // publisher's first send (createTopicsBeforeSend). Advice only: a metadata answer that
      // fails or is late (ADVICE_TIMEOUT_MS, the sender's bound on its path) skips it, never the start.
      const names = TOPICS.map((t) => this.topicName(t));
      const meta = await withTimeout(admin.fetchTopicMetadata({ topics: names }), connectTimeoutMs ?? ADVICE_TIMEOUT_MS, 'late').catch(() => undefined);
      const other = (meta?.topics ?? []).filter((t) => t.partitions.length !== partitions).map((t) => `${t.name}: ${t.partitions.length}`).sort();
      if (other.length > 0) {
        this.#log.warn({ asked: partitions, topics: other },
          `topics already on the log have another partition count than the ${partitions} asked (KAFKA_PARTITIONS), which is used only when a topic is made; to add partitions, alter the topics (kafka-topics.sh --alter --partitions N) while traffic is quiesced (docs/scaling.md, "Partitions per consumer")`);
      }
    } finally {
      // kafkajs' disconnect waits for a request still unanswered (one given up on above): bounded
      // too, the rest of it left to run in the background.
      await withTimeout(admin.disconnect(), connectTimeoutMs ?? ADVICE_TIMEOUT_MS, 'late').catch(() => {});
    }
  }

  /**
   * Has the sender make sure of the topics (`ensureTopics(partitions)`) before its first send,
   * retried with the sends while Kafka is away, instead of the caller awaiting `ensureTopics`
   * at start: a process that only publishes (a gateway, control) then starts and serves through
   * a Kafka outage, its events spooled, and the topics are made once Kafka answers.
   */
  createTopicsBeforeSend(partitions = 4): void {
    this.#topicsBeforeSend = partitions;
  }

  /** Resolves once the spool left by an earlier process has been read (not yet delivered). */
  ready(): Promise<void> {
    return this.#ready;
  }

  /**
   * Appends the events to the spool synchronously (one `write`, no fsync: the page cache
   * survives the process), then resolves once Kafka acknowledged them (acks=all) or, while
   * Kafka is away, once they are fsync'd. Rejects at once, with nothing written, when the log
   * is closed or the append fails (the spool directory cannot be written).
   */
  publish(topic: Topic, events: PublishedEvent[]): Promise<void> {
    const appended = this.append(topic, events);
    return appended.error ? Promise.reject(appended.error) : appended.durable;
  }

  /** `publish`, its spool write's outcome told at once (EventLog.append). */
  append(topic: Topic, events: PublishedEvent[]): Appended {
    if (this.#closing) return { error: new NotPublishedError('event log is closed') };
    if (this.#openError) return { error: new NotPublishedError(`event log could not open its spool: ${this.#openError.message}`, { cause: this.#openError }) };
    if (events.length === 0) return { durable: Promise.resolve() };
    const refused = this.#beforeSpool?.();
    if (refused) {
      this.#health.failed(refused);
      return { error: new NotPublishedError(`event log refused to spool: ${refused.message}`, { cause: refused }) };
    }
    const records = events.map(({ event, headers }) => ({ topic, event, headers: headers ?? {} }));
    try {
      this.#write(records);
    } catch (err) {
      this.#log.error({ err, events: records.length, spoolDir: this.#spoolDir }, 'cannot spool events; publish fails');
      if (!(err instanceof InvalidEventError)) this.#health.failed(err as Error);
      return { error: err as Error };
    }
    this.#health.succeeded();
    return {
      durable: new Promise<void>((resolve, reject) => {
        this.#pending.push({ upTo: this.#written, resolve, reject });
        if (topic !== 'usage') {
          this.#urgentThrough = this.#written;
          this.#wakeLinger?.();
        }
        if (this.#down) this.#kickSync();
        this.#kickSender();
      }),
    };
  }

  /**
   * EventLog.writeAheadProblem: the spool could not be opened, or its last append failed and no
   * probe has succeeded since, or (DiskReserveLowError) its disk is below `reserveBytes`.
   */
  writeAheadProblem(): Error | undefined {
    return this.#openError ?? this.#health.problem();
  }

  /** False while Kafka is known away (the last send failed), true otherwise: see EventLog.reachable. */
  reachable(): boolean {
    return !this.#down;
  }

  /**
   * Resolves once every event this process published before the call is acknowledged by Kafka
   * (acks=all), not merely fsync'd in the spool (what `publish` settles for while Kafka is away);
   * events published after the call are not waited for, so steady traffic cannot starve it
   * (unlike `flush`). Rejects when the log stops first. What a caller that must know its record
   * reached the log waits for (the control role's ControlRecordRegistry).
   */
  acknowledged(): Promise<void> {
    const upTo = this.#written;
    if (this.#acknowledgedThrough >= upTo) return Promise.resolve();
    if (this.#stopped) return Promise.reject(new Error('event log is closed with events not acknowledged by kafka'));
    if (upTo > this.#urgentThrough) this.#urgentThrough = upTo;
    this.#wakeLinger?.();
    // Resolved in order where the acknowledgements advance (#acknowledgedUpTo): one shift per
    // call, not a wake-up of every waiter at each change (a publish per request while Kafka is away).
    return new Promise<void>((resolve, reject) => this.#ackWaiters.push({ upTo, resolve, reject }));
  }

  /** Waits until everything published so far is acknowledged by Kafka, spool included. */
  async flush(): Promise<void> {
    if (!(await this.#handedOn(false))) throw new Error('event log is closed with events still spooled');
  }

  /**
   * Resolves true once every event published so far is acknowledged by Kafka or, when
   * `spoolSuffices` and Kafka is away (the last send failed), fsync'd in the spool (what close
   * waits for before it stops the sender); false if the sender stopped first.
   */
  async #handedOn(spoolSuffices: boolean): Promise<boolean> {
    await this.#ready;
    while (this.#pending.length > 0 || (this.#segments.length > 0 && !(spoolSuffices && this.#down))) {
      if (this.#stopped && !this.#sender) return false;
      await this.#changed();
    }
    return true;
  }

  /**
   * Waits at most closeTimeoutMs for Kafka to acknowledge what was published; with Kafka away
   * it does not wait for Kafka to return (only for the spool's fsync). Whatever is not
   * acknowledged then stays in the spool for the next start, a produce still in doubt included
   * (not waited for: the next start sends its events again). Then stops every subscription and
   * disconnects. So a stop with Kafka known away takes about the spool's fsync, and one whose
   * first connection is still being tried about closeTimeoutMs, never more plus the retries
   * of a connection that cannot succeed.
   */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#wakeLinger?.();
    this.#health.stop();
    const late = !(await finishedWithin(this.#handedOn(true).catch(() => {}), this.#closeTimeoutMs));
    this.#stopped = true;
    this.#wake?.();
    // A Kafka call of the sender's under way is given up on as on a timeout (in doubt: its
    // events stay in the spool) when Kafka is away or closeTimeoutMs has passed (a first
    // connection still retrying, a produce slower than that); otherwise it ends quickly.
    if (this.#down || late) this.#cutSend?.();
    await this.#sender; // ends after its send in flight, if any, or as it waits for one in doubt
    const doubt = this.#inDoubt;
    this.#inDoubt = null;
    if (doubt?.outcome === true && doubt.segment.sent === doubt.from && this.#segments.includes(doubt.segment)) {
      doubt.segment.sent += doubt.count; // acknowledged after the sender stopped waiting for it
      if (doubt.segment.base >= 0) this.#acknowledgedUpTo(doubt.segment.base + doubt.segment.sent - 1);
    } else if (doubt?.outcome === null) {
      // Not waited for beyond closeTimeoutMs: its events stay in the spool, and the next start
      // sends them again, which duplicates them if this produce succeeds after all.
      this.#log.warn({ events: doubt.count, spoolDir: this.#spoolDir }, 'closing with a produce in doubt; its events stay in the spool and may reach kafka twice');
    }
    if (doubt && doubt.outcome !== true) this.#dropProducer(doubt);
    for (const segment of [...this.#segments]) {
      if (segment.records !== null && segment.sent >= segment.records.length) this.#retire(segment);
    }
    // Unacknowledged events are left for the next start: made durable, as while Kafka is away.
    this.#down = true;
    this.#kickSync();
    while (this.#syncing) await this.#syncing;
    for (const p of this.#pending.splice(0)) p.reject(new Error('event log closed before its events were acknowledged or fsync\'d'));
    for (const w of this.#ackWaiters.splice(0)) w.reject(new Error('event log is closed with events not acknowledged by kafka'));
    for (const segment of this.#segments) {
      if (segment.fd !== null) closeSync(segment.fd);
      segment.fd = null;
    }
    if (this.#spare) {
      closeSync(this.#spare.fd);
      rmSync(this.#spare.path, { force: true });
      this.#spare = null;
    }
    this.#active = null;
    this.#notify();
    await Promise.all([...this.#subscriptions].map((s) => s.stop()));
    if (this.#lagAdmin) await this.#lagAdmin.then((a) => a.disconnect()).catch(() => {});
    const undelivered = this.#segments.length;
    if (undelivered > 0) {
      this.#log.warn({ spoolDir: this.#spoolDir, segments: undelivered }, 'closing with events still spooled; they are delivered on the next start');
    }
    const deadLetters = this.#deadLetterReady;
    this.#deadLetterReady = null;
    await Promise.all([this.#resetProducer(), deadLetters?.then(disconnectQuietly, () => {})]);
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    if (this.#closing) throw new Error('event log is closed');
    if (options.maxBatch !== undefined && !(Number.isSafeInteger(options.maxBatch) && options.maxBatch > 0)) {
      throw new TypeError(`subscribe: maxBatch must be a positive integer, got ${options.maxBatch}`);
    }
    const byName = new Map(options.topics.map((t) => [this.topicName(t), t]));
    // Dead letters come through the same consumer (one group, one commit rule); `DEAD_LETTER_TOPIC`
    // is not a Topic, so #consumeBatch routes it to `onDeadLetters` before anything else sees it.
    if (options.onDeadLetters) byName.set(this.deadLetterTopicName(), DEAD_LETTER_TOPIC as Topic);
    // This member's partitions per Kafka topic name, replaced at every rebalance (lag export).
    let assigned = new Map<string, Set<number>>();
    // What handlers are told this member holds (BatchContext.assignment): a new one per join.
    let joins = 0;
    let assignment = this.#assignment(0, assigned);
    /** the consumer crashed on a connection failure and has not joined its group since */
    let kafkaAway = false;
    const failures = new Map<string, number>();
    const committer = new OffsetCommitter(this.#consumerCommitIntervalMs, this.#log, options.group);
    // Batches in the handler right now, and whether stop() has begun: stop() lets them finish,
    // refuses new ones, commits what was handled and only then leaves the group.
    let halted = false;
    let inFlight = 0;
    let drained: (() => void) | null = null;
    // With `storedPositions`: per `<kafka topic>|<partition>`, the next offset this member will
    // handle (unknown after a join until the first check), and the partitions in the handler.
    const nextOffset = new Map<string, bigint>();
    // partitions paused at the last join until the next look has moved them (with storedPositions)
    let heldAtJoin: { consumer: Consumer; joins: number; partitions: Array<{ topic: string; partitions: number[] }> } | null = null;
    let lookNow: (() => void) | undefined;
    const busy = new Set<string>();
    // batches begun per partition: a look at the store skips a partition that began one while
    // the store was being read (its positions may predate what that batch then handled)
    const begun = new Map<string, number>();
    const watched = options.storedPositions
      ? { ...options, handler: async (events: ConsumedEvent[], context?: BatchContext) => {
        await options.handler(events, context);
        const last = events[events.length - 1];
        if (last) nextOffset.set(`${this.topicName(last.topic)}|${last.partition}`, last.offset + 1n);
      } }
      : options;
    // The kafkajs consumer serving this subscription now. kafkajs restarts a consumer after a
    // crash only when it deems the error retriable; after any other (BROKER_NOT_AVAILABLE,
    // UNKNOWN_SERVER_ERROR, ILLEGAL_GENERATION outside a fetch… answered while a broker restarts)
    // its consumer stays stopped for good while the process looks healthy, and the group applies
    // nothing. So a crash kafkajs gives up on makes this subscription start a new consumer in
    // the same group, after a growing pause; the group's committed offsets say where to resume,
    // and what was handled but not committed comes again as duplicates (positions with effects).
    let current: Consumer | null = null;
    let generation = 0;
    let restarts = 0;
    let restartTimer: NodeJS.Timeout | undefined;
    let restarting: Promise<void> | null = null;
    const startConsumer = async (): Promise<Consumer> => {
      const mine = ++generation;
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
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        restarts = 0;
        if (kafkaAway) {
          kafkaAway = false;
          this.#log.warn({ group: options.group }, 'kafka reachable again; the consumer is back in its group');
        }
        const next = new Map<string, Set<number>>();
        for (const [name, partitions] of Object.entries(e.payload.memberAssignment)) next.set(name, new Set(partitions));
        for (const [name, partitions] of assigned) {
          const topic = byName.get(name);
          for (const p of partitions) if (topic && !next.get(name)?.has(p)) this.#lag?.report(options.group, topic, p, null);
        }
        assigned = next;
        assignment = this.#assignment(++joins, next);
        committer.joined();
        nextOffset.clear(); // every partition is checked against the store at the next look
        if (options.storedPositions) {
          // Fetched only once the next look has moved each partition to its stored position
          // (a breaker's finding): a seek made before this join and never applied (the fetch
          // loop held up by a long batch, then a rebalance) is kept by kafkajs while its
          // partition is away and would fire when it comes back, reading from an old position
          // and committing it over the newer owner's.
          const held = [...next].filter(([name]) => byName.get(name) !== (DEAD_LETTER_TOPIC as Topic))
            .map(([topic, partitions]) => ({ topic, partitions: [...partitions] }));
          if (held.length > 0) {
            consumer.pause(held);
            heldAtJoin = { consumer, joins: committer.joins, partitions: held };
            lookNow?.();
          }
        }
      });
      consumer.on(consumer.events.CRASH, (e) => {
        const restart = e.payload.restart;
        const away = restart ? connectionFailure(e.payload.error) : undefined;
        if (away !== undefined) {
          // Kafka away (an outage, a restart): expected, and kafkajs restarts the consumer until
          // it answers. One line, no stack, until the consumer is back in its group.
          if (!kafkaAway) this.#log.warn({ group: options.group, reason: away }, 'kafka unreachable; the consumer retries until it answers');
          kafkaAway = true;
          return;
        }
        this.#log.error({ err: e.payload.error, group: options.group, restart }, restart
          ? 'kafka consumer crashed; kafkajs restarts it'
          : 'kafka consumer crashed and kafkajs will not restart it; starting a new consumer in the group');
        if (!restart && mine === generation && !halted) scheduleRestart();
      });
      await consumer.connect();
      try {
        // The port's default: a group without a stored position starts at the beginning.
        await consumer.subscribe({ topics: [...byName.keys()], fromBeginning: options.fromBeginning !== false });
        await consumer.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          // Each partition still goes batch by batch, in order, and commits its own offsets.
          partitionsConsumedConcurrently: Math.max(1, Math.floor(options.concurrentPartitions ?? 1)),
          eachBatch: async (payload) => {
            if (halted) return;
            inFlight++;
            const key = `${payload.batch.topic}|${payload.batch.partition}`;
            busy.add(key);
            begun.set(key, (begun.get(key) ?? 0) + 1);
            try {
              const pause = await this.#consumeBatch(watched, byName, failures, payload, committer, () => halted, assignment, (to) => {
                for (const t of to) {
                  committer.drop(this.topicName(t.topic), t.partition);
                  consumer.seek({ topic: this.topicName(t.topic), partition: t.partition, offset: t.offset.toString() });
                  nextOffset.set(`${this.topicName(t.topic)}|${t.partition}`, t.offset);
                }
              });
              // The pause after a failed batch is out of the handler: the stored-position check
              // may move the partition meanwhile (a lost state rebuilt while its batch waited).
              busy.delete(key);
              if (pause !== undefined && !halted) await sleep(pause);
            } finally {
              busy.delete(key);
              if (--inFlight === 0) drained?.();
            }
          },
        });
      } catch (err) {
        await consumer.disconnect().catch(() => {});
        throw err;
      }
      return consumer;
    };
    const scheduleRestart = (): void => {
      if (halted || restartTimer || restarting) return;
      const delay = Math.min(this.#maxRetryDelayMs, 250 * 2 ** restarts++);
      restartTimer = setTimeout(() => {
        restartTimer = undefined;
        restarting = (async () => {
          const dead = current;
          current = null;
          if (dead) await disconnectQuietly(dead);
          if (halted) return true;
          try {
            const next = await startConsumer();
            if (halted) await disconnectQuietly(next);
            else current = next;
            return true;
          } catch (err) {
            this.#log.error({ err, group: options.group }, 'kafka consumer could not be started again; retrying');
            return false;
          }
        })().then((started) => {
          restarting = null;
          if (!started) scheduleRestart();
        });
      }, delay);
    };
    current = await startConsumer();
    let stopping: Promise<void> | null = null;
    let lagTimer: NodeJS.Timeout | undefined;
    // Each partition this member holds resumes from the sink's stored position: checked at once
    // after a join and every `positionCheckMs` (a rebuilt state may stand behind what was
    // handled, and nothing else would read an idle partition again). A partition in the handler,
    // or one that began a batch while the store was read (what was read may predate what that
    // batch handled), is left for the next look (its batch meets the gap itself). Moving to stored + 1 is safe
    // either way: what is at or before the stored position is a duplicate there.
    let positionTimer: NodeJS.Timeout | undefined;
    if (options.storedPositions) {
      const storedPositions = options.storedPositions;
      let checking = false;
      const check = async () => {
        const consumer = current;
        if (!consumer || halted) return;
        const joins = committer.joins;
        const before = new Map(begun);
        const held = heldAtJoin !== null && heldAtJoin.consumer === consumer && heldAtJoin.joins === joins ? heldAtJoin : null;
        // What the join paused is fetched again after this look (a later join holds its own).
        const release = () => {
          if (held && heldAtJoin === held) {
            heldAtJoin = null;
            consumer.resume(held.partitions);
          }
        };
        let positions: ReadonlyMap<string, bigint> | undefined;
        try {
          positions = await storedPositions();
        } catch (err) {
          release();
          throw err;
        }
        // Unknown (the state is lost): fetched anyway, the handler waits for the rebuild.
        if (positions === undefined) release();
        if (positions === undefined || halted || current !== consumer || joins !== committer.joins) return;
        const moved: Promise<void>[] = [];
        try {
          for (const [name, partitions] of assigned) {
            const topic = byName.get(name);
            if (!topic || (topic as string) === DEAD_LETTER_TOPIC) continue;
            for (const p of partitions) {
              const key = `${name}|${p}`;
              if (busy.has(key) || begun.get(key) !== before.get(key)) continue;
              const stored = positions.get(`${topic}:${p}`) ?? -1n;
              const known = nextOffset.get(key);
              if (known !== undefined && stored + 1n >= known) continue;
              if (known !== undefined) this.#log.warn({ group: options.group, topic: name, partition: p, from: String(known), to: String(stored + 1n) }, 'the stored position is behind what was handled (state rebuilt); reading the partition again from there');
              committer.drop(name, p);
              consumer.seek({ topic: name, partition: p, offset: (stored + 1n).toString() });
              nextOffset.set(key, stored + 1n);
              // And the group's committed offset follows: everything before stored + 1 has its
              // effects in the sink. Else a partition moved forward past what this group committed
              // (state rebuilt from a warehouse that held more) and then idle kept its old commit:
              // consumer lag read > 0 for good, and a restart read it all again.
              moved.push(committer.handled(name, p, (stored + 1n).toString(), commitVia(consumer), joins));
            }
          }
        } finally {
          release();
        }
        await Promise.all(moved);
      };
      // A join asks for a look at once (its partitions wait for it); one already under way when
      // the join came returns without moving them, so another follows it as soon as it ends.
      let lookAgain = false;
      const tick = () => {
        if (checking) return;
        checking = true;
        check().catch((err: unknown) => this.#log.warn({ err, group: options.group }, 'stored position check failed; will retry'))
          .finally(() => {
            checking = false;
            if (lookAgain) {
              lookAgain = false;
              tick();
            }
          });
      };
      positionTimer = setInterval(tick, this.#positionCheckMs);
      positionTimer.unref();
      lookNow = () => {
        if (checking) lookAgain = true;
        else tick();
      };
      if (heldAtJoin) lookNow();
    }
    if (this.#lag) {
      let measuring = false;
      const measure = () => {
        if (measuring) return;
        measuring = true;
        this.#measureLag(options.group, byName, () => assigned).catch(() => {}).finally(() => { measuring = false; });
      };
      measure();
      lagTimer = setInterval(measure, this.#lag.intervalMs);
      lagTimer.unref();
    }
    const subscription: Subscription = {
      stop: () => {
        clearInterval(lagTimer);
        clearInterval(positionTimer);
        // This member leaves the group: its partitions go to others, which report them.
        for (const [name, partitions] of assigned) {
          const topic = byName.get(name);
          for (const p of partitions) if (topic) this.#lag?.report(options.group, topic, p, null);
        }
        assigned = new Map();
        stopping ??= (async () => {
          this.#subscriptions.delete(subscription);
          halted = true;
          clearTimeout(restartTimer);
          // The batches in the handler finish (their offsets are recorded), then what was
          // handled is committed while this member still belongs to the group; all of it within
          // subscriptionStopTimeoutMs (see there), or this member leaves without it.
          const orderly = (async () => {
            while (restarting) await restarting;
            while (inFlight > 0) await new Promise<void>((r) => { drained = r; });
            await committer.flush();
            if (current) await disconnectQuietly(current);
            return true;
          })();
          if (!(await finishedWithin(orderly, this.#subscriptionStopTimeoutMs))) {
            this.#log.warn({ group: options.group, inFlight, waitedMs: this.#subscriptionStopTimeoutMs },
              'subscription stopped without finishing its batch, commit or group leave (Kafka or the sink not answering); the next owner reads from the last commit');
            if (current) void disconnectQuietly(current);
          }
          current = null;
        })();
        return stopping;
      },
    };
    this.#subscriptions.add(subscription);
    return subscription;
  }

  // ---------------------------------------------------------------------------------------------
  // Consuming

  /**
   * Hands one kafkajs batch to the subscription's handler, slice by slice, resolving and
   * recording (committer) each slice handled. Resolves the pause in ms the caller waits before
   * the partition is fetched again when the handler failed (the same events come again), else
   * undefined.
   */
  async #consumeBatch(
    options: SubscribeOptions,
    byName: Map<string, Topic>,
    failures: Map<string, number>,
    payload: EachBatchPayload,
    committer: OffsetCommitter,
    halted: () => boolean,
    assignment: Assignment,
    rewind: (to: RewindError['to']) => void,
  ): Promise<number | undefined> {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale } = payload;
    // The membership this batch was fetched in: what it handles after a new join is not
    // committed (another member may have owned the partition meanwhile; see OffsetCommitter.joined).
    const joins = committer.joins;
    const topic = byName.get(batch.topic);
    if (!topic) return; // not ours: never happens with an explicit topic list
    const where = `${batch.topic}/${batch.partition}`;
    const messages = batch.messages;
    // kafkajs' heartbeat: a request only when the last one that succeeded is over a second old
    // (so one after any freeze), which throws once the coordinator dropped this member or is
    // rebalancing (its `lastRequest` moves only on success, so the `beat` below swallowing one
    // failure does not hide it from the next call).
    const context: BatchContext = {
      fence: async () => {
        if (!isRunning() || halted()) throw new PartitionLostError(new Error('the subscription is stopping'));
        try {
          await heartbeat();
        } catch (err) {
          throw new PartitionLostError(err);
        }
      },
      assignment,
    };
    const max = options.maxBatch ?? this.#consumerBatchSize;
    for (let i = 0; i < messages.length;) {
      if (!isRunning() || isStale() || halted()) return;
      const slice = messages.slice(i, i + max);
      const events: ConsumedEvent[] = [];
      for (const message of slice) events.push(decodeMessage(topic, batch.partition, message));
      if (events.length > 0) {
        // Long handlers keep the group membership alive; kafkajs throttles the heartbeats. Not
        // once the subscription stopped: a handler that never ends (its stop gave up on it) must
        // not keep this member, and its partitions, in the group.
        const beat = setInterval(() => { if (!halted()) heartbeat().catch(() => {}); }, 1000);
        try {
          if ((topic as string) === DEAD_LETTER_TOPIC) {
            await options.onDeadLetters!(events.map((e) => ({ partition: e.partition, offset: e.offset, value: e.event })));
          } else {
            await options.handler(events, context);
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
          if (err instanceof NotYetError) {
            // An expected wait (see NotYetError): one line per partition until it clears.
            if (n === 1) this.#log.warn({ reason: err.message, group: options.group, topic: batch.topic, partition: batch.partition, offset: slice[0]!.offset }, 'events wait until their handler can apply them; redelivering');
          } else {
            this.#log.warn({ err, group: options.group, topic: batch.topic, partition: batch.partition, offset: slice[0]!.offset, attempt: n }, 'event handler failed; redelivering');
          }
          return Math.min(this.#maxRetryDelayMs, 50 * 2 ** n);
        } finally {
          clearInterval(beat);
        }
      }
      const last = slice[slice.length - 1]!.offset;
      resolveOffset(last);
      await committer.handled(batch.topic, batch.partition, (BigInt(last) + 1n).toString(), commitOffsetsIfNecessary, joins);
      await heartbeat();
      i += slice.length;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Producing: publish appends to the spool; one sender loop sends the spool to Kafka, oldest
  // segment first, and deletes each segment once Kafka acknowledged all of it. While Kafka is
  // away, a sync step fsyncs what was appended and resolves those publishers instead.

  #kickSender(): void {
    if (this.#sender || this.#stopped || this.#segments.length === 0) return;
    this.#sender = this.#runSender().finally(() => {
      this.#sender = null;
      this.#sending = null;
      this.#notify();
      this.#kickSender();
    });
  }

  async #runSender(): Promise<void> {
    let failures = 0;
    let delivered = 0;
    while (this.#segments.length > 0 && !this.#stopped) {
      const segment = this.#segments[0]!;
      try {
        segment.records ??= await this.#readSegment(segment.path);
        if (segment.sent >= segment.records.length) {
          // Fully acknowledged; the active segment too (the next publish opens a new one), so
          // a restart never re-sends what Kafka already has, beyond the last unfinished batch.
          this.#retire(segment);
          continue;
        }
        this.#sending = segment;
        let acknowledged = 0;
        const doubt = this.#inDoubt;
        if (doubt) {
          // The last produce was given up on, but may still be acknowledged: sending its events
          // again before it settled would put them in the log twice whenever it succeeds.
          if (doubt.outcome === null) await this.#pause(doubt.deadline - Date.now(), doubt.settled);
          if (doubt.outcome === null && this.#stopped) break; // close() leaves it to the spool
          this.#inDoubt = null;
          if (doubt.outcome === true && doubt.segment === segment && doubt.from === segment.sent) {
            this.#log.warn({ events: doubt.count, spoolDir: this.#spoolDir }, 'a produce given up on was acknowledged after all; its events are not sent again');
            acknowledged = doubt.count;
          } else {
            if (doubt.outcome === null) {
              this.#log.warn({ events: doubt.count, boundMs: this.#doubtBoundMs, spoolDir: this.#spoolDir }, 'a produce given up on has not settled within its retry budget; sending its events again (they may reach kafka twice)');
            }
            // Failed (or given up): a fresh producer sends the chunk again below.
            this.#dropProducer(doubt);
          }
        }
        if (acknowledged === 0) {
          const unsent = segment.records.length - segment.sent;
          if (segment === this.#active && unsent < this.#batchSize && this.#lingerMs > 0 && !this.#closing && failures === 0 && !this.#urgent()) {
            await this.#linger();
          }
          const chunk = nextChunk(segment.records, segment.sent, this.#batchSize);
          if (this.#topicsBeforeSend !== null) {
            // Before the first send (a failure here is a send failure: the spool keeps the events).
            // No connection retries of its own: a Kafka that is away fails it at once (a refused
            // port) or within kafkajs' connection timeout, so the publishes waiting for this first
            // send resolve from the fsync'd spool as soon as with any other send failure.
            await this.#cuttable(this.#ensureTopicsWith(this.#kafka.admin({ retry: { retries: 0 } }), this.#topicsBeforeSend, this.#replicationFactor, this.#sendTimeoutMs));
            this.#topicsBeforeSend = null;
          }
          await this.#send(segment, chunk);
          acknowledged = chunk.length;
        }
        segment.sent += acknowledged;
        if (segment.base >= 0) this.#acknowledgedUpTo(segment.base + segment.sent - 1);
        else delivered += acknowledged;
        if (this.#down) {
          this.#down = false;
          this.#log.warn({ spoolDir: this.#spoolDir }, 'kafka reachable again; sending the spool');
        }
        failures = 0;
        this.#notify();
      } catch (err) {
        failures++;
        if (!this.#down) {
          // A produce that timed out is settled before its events are sent again (#inDoubt); one
          // that failed is ambiguous only if kafkajs' last try failed after Kafka wrote it: then
          // the re-send duplicates it in the log, and consumers drop the copy by event_id.
          this.#down = true;
          this.#log.warn({ err, spoolDir: this.#spoolDir }, 'kafka unreachable; spooling events to disk');
        } else if (failures % 10 === 0) {
          this.#log.warn({ err, attempt: failures, segments: this.#segments.length, spoolDir: this.#spoolDir }, 'kafka still unreachable; spool kept');
        }
        this.#kickSync();
        await this.#pause(Math.min(this.#maxRetryDelayMs, 100 * 2 ** (failures - 1)));
      } finally {
        this.#sending = null;
      }
    }
    if (delivered > 0) {
      this.#log.warn({ events: delivered, spoolDir: this.#spoolDir }, 'spooled events delivered to kafka');
    }
  }

  /** Kafka acknowledged this process's events through `seq`: their publishers and acknowledged() waiters resolve. */
  #acknowledgedUpTo(seq: number): void {
    if (seq > this.#acknowledgedThrough) this.#acknowledgedThrough = seq;
    while (this.#ackWaiters.length > 0 && this.#ackWaiters[0]!.upTo <= this.#acknowledgedThrough) this.#ackWaiters.shift()!.resolve();
    this.#resolveUpTo(seq);
  }

  #resolveUpTo(seq: number): void {
    while (this.#pending.length > 0 && this.#pending[0]!.upTo <= seq) this.#pending.shift()!.resolve();
  }

  /** fsyncs every segment appended to since its last fsync, then resolves the publishers it covers. */
  #kickSync(): void {
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    this.#syncing = this.#runSync().finally(() => {
      this.#syncing = null;
      this.#notify();
      if (this.#syncAgain) {
        this.#syncAgain = false;
        this.#kickSync();
      }
    });
  }

  async #runSync(): Promise<void> {
    const upTo = this.#written;
    const dirty = this.#segments.filter((s) => s.dirty && s.fd !== null);
    for (const s of dirty) s.dirty = false;
    try {
      // A segment's fd is closed only when it is deleted (#retire), after which its fsync no
      // longer matters; each fsync runs on libuv's pool, off the event loop.
      await Promise.all(dirty.map((s) => new Promise<void>((resolve, reject) => {
        fdatasync(s.fd!, (err) => (err && s.fd !== null ? reject(err) : resolve()));
      })));
      if (this.#dirDirty) {
        this.#dirDirty = false;
        await syncDir(this.#spoolDir);
      }
      this.#resolveUpTo(upTo);
    } catch (err) {
      for (const s of dirty) s.dirty = true;
      // The disk failed: the publishers keep waiting for Kafka's acknowledgement instead.
      this.#log.error({ err, spoolDir: this.#spoolDir }, 'cannot fsync the spool');
    }
  }

  /**
   * Sends one chunk of `segment` (its records from `segment.sent`) in one produce request and
   * resolves once Kafka acknowledged it (acks=all). Throws when the produce failed, or took longer
   * than `sendTimeoutMs`; in that last case the produce keeps running in kafkajs and is recorded
   * in `#inDoubt`, for the sender to settle before it sends these events again.
   */
  async #send(segment: Segment, records: SpoolRecord[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    let bytes = 0;
    for (const { topic, event, headers, value } of records) {
      const name = this.topicName(topic);
      let messages = byTopic.get(name);
      if (!messages) byTopic.set(name, (messages = []));
      const json = value ?? JSON.stringify(event);
      bytes += json.length;
      messages.push({
        key: partitionKey(event),
        value: json,
        // The publisher's headers only: no `event_id` header (see RESERVED_HEADERS).
        headers,
      });
    }
    const compression = bytes >= this.#compressMinBytes ? this.#compression : CompressionTypes.None;
    const ready = this.#connect();
    const producer = this.#producer;
    // Given up on (a timeout, or close cutting it short) before its producer connected, the
    // produce is never sent, so it is a plain failure; once sendBatch was called it is in doubt.
    let sending = false;
    let abandoned = false;
    const attempt = (async () => {
      const connected = await ready;
      if (abandoned) throw new Error('kafka produce given up on before its producer connected; not sent');
      sending = true;
      await connected.sendBatch({
        acks: -1,
        timeout: this.#sendTimeoutMs,
        compression,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
    })();
    let timedOut = false;
    const giveUp = () => {
      if (sending) timedOut = true;
      else abandoned = true;
    };
    try {
      await withTimeout(this.#cuttable(attempt, giveUp), this.#sendTimeoutMs, 'kafka produce timed out', giveUp);
    } catch (err) {
      if (timedOut) {
        // Not disconnected and not replaced yet: the producer finishes this produce (kafkajs
        // retries it with the same producer id and sequence numbers, which the broker dedupes),
        // and the sender waits for its outcome before it sends these events again.
        const doubt: InDoubt = {
          segment, from: segment.sent, count: records.length, producer, outcome: null,
          settled: Promise.resolve(), deadline: Date.now() + this.#doubtBoundMs,
        };
        doubt.settled = attempt.then(() => { doubt.outcome = true; }, () => { doubt.outcome = false; });
        this.#inDoubt = doubt;
      } else {
        // It failed and is over. A fresh producer (new producer id, sequence numbers from 0)
        // after any failure, so that nothing of the failed session's idempotence bookkeeping
        // (sequence numbers kafkajs rolled back, a fenced or expired producer id) carries over.
        void this.#resetProducer();
      }
      throw err;
    }
  }

  /**
   * `work` (a call of the sender's to Kafka), whose wait close() can end when Kafka is away: then
   * `onCut` runs and the result rejects, while `work` goes on unobserved (a connection that
   * cannot succeed, or retries to a broker that is down). One such wait at a time: the sender's.
   */
  #cuttable<T>(work: Promise<T>, onCut?: () => void): Promise<T> {
    const cut = new Promise<never>((_, reject) => {
      this.#cutSend = () => {
        onCut?.();
        reject(new Error('given up on: the event log is closing with kafka unreachable'));
      };
    });
    work.catch(() => {}); // the loser of the race must not become an unhandled rejection
    return Promise.race([work, cut]).finally(() => { this.#cutSend = null; });
  }

  /**
   * Replaces the producer a produce in doubt ran on, without waiting for it: disconnected now
   * (kafkajs lets a request in flight finish first) and once more when the produce settles,
   * since a kafkajs retry after a disconnect reconnects its cluster. Its outcome no longer counts.
   */
  #dropProducer(doubt: InDoubt): void {
    const producer = doubt.producer;
    if (producer === null) return;
    doubt.producer = null;
    if (this.#producer === producer) void this.#resetProducer();
    else void disconnectQuietly(producer);
    if (doubt.outcome === null) void doubt.settled.then(() => disconnectQuietly(producer));
  }

  #connect(): Promise<Producer> {
    if (!this.#producerReady) {
      const producer = this.#kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        retry: { ...PRODUCER_RETRY },
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
  // Spool: `spool-<seq>.jsonl` segments of JSON lines, one SpoolRecord per line, written ahead
  // by publish (no fsync unless Kafka is away). A segment is deleted once all of its events are
  // acknowledged by Kafka.

  #openSpool(): void {
    mkdirSync(this.#spoolDir, { recursive: true });
    const names = readdirSync(this.#spoolDir).filter((n) => SEGMENT_RE.test(n)).sort();
    for (const name of names) {
      this.#segments.push({ path: join(this.#spoolDir, name), fd: null, base: -1, count: 0, sent: 0, records: null, dirty: false });
      this.#nextSeq = Math.max(this.#nextSeq, Number(SEGMENT_RE.exec(name)![1]) + 1);
    }
    if (names.length > 0) {
      this.#log.warn({ spoolDir: this.#spoolDir, segments: names.length }, 'found spooled events from an earlier run; delivering them first');
    }
  }

  /**
   * One synchronous append of whole lines. A failed write seals its segment, so a torn line
   * never has a later record glued to it (the torn line is skipped when the file is read).
   */
  #write(records: SpoolRecord[]): void {
    let segment = this.#active;
    if (!segment || segment.count >= this.#segmentMaxEvents) {
      try {
        segment = this.#rotate();
      } catch (err) {
        // No segment to write to (the file could not be made: no space, no inodes, read-only):
        // nothing of this publish was written.
        throw new NotPublishedError(`spool append failed, nothing written: ${(err as Error).message}`, { cause: err });
      }
    }
    let data = '';
    for (const r of records) {
      // The line is JSON.stringify({ topic, event, headers }), built around the event's JSON,
      // which the send reuses (one serialization per event instead of two).
      r.value = JSON.stringify(r.event);
      // Refused before anything is written: Kafka would refuse it on every send, holding the
      // spool (and every event behind it) at this event.
      const size = eventBytes(r.value);
      if (size > MAX_EVENT_BYTES) {
        throw new EventTooLargeError(`event ${boundedId(r.event.event_id)} is ${size} bytes of JSON; one event on the log is at most ${MAX_EVENT_BYTES} (nothing of this publish was written)`);
      }
      // A header Kafka cannot carry (kafkajs throws on it at every send), or the log's own, is refused here too.
      const problem = headersProblem(r.event.event_id, r.headers);
      if (problem !== undefined) throw new InvalidEventError(problem);
      r.bytes = recordBytes(r as SpoolRecord & { value: string }, size);
      if (r.bytes > MAX_RECORD_BYTES) {
        throw new EventTooLargeError(`event ${boundedId(r.event.event_id)} is ${r.bytes} bytes as a Kafka record (its JSON, key and headers); one record on the log is at most ${MAX_RECORD_BYTES} (nothing of this publish was written)`);
      }
      data += `{"topic":${JSON.stringify(r.topic)},"event":${r.value},"headers":${JSON.stringify(r.headers)}}\n`;
    }
    // A segment whose file was removed from under the process (DATA_DIR/spool deleted) takes
    // writes that no start will ever read: refused, and the next append makes a new one (once
    // the directory is back: the write ahead's probe makes it again). Appends to it went on
    // silently, and a kill -9 lost every answer since (a breaker's HIGH). ~1.3 µs a call here.
    if (fstatSync(segment.fd!).nlink === 0) {
      this.#active = null;
      throw new NotPublishedError(`spool append refused, nothing written: its segment ${segment.path} was removed from under this process`);
    }
    const bytes = Buffer.from(data, 'utf8');
    let off = 0;
    try {
      while (off < bytes.length) off += writeSync(segment.fd!, bytes, off);
    } catch (err) {
      this.#active = null;
      // What this call wrote is cut off again, so nothing of this publish is ever sent (a line
      // missing only its newline would be read back whole and sent: a request answered 503
      // "nothing is charged" was charged at the next start).
      try {
        if (off > 0) ftruncateSync(segment.fd!, fstatSync(segment.fd!).size - off);
        off = 0;
      } catch { /* the truncation failed too: judged by what is left below */ }
      // Not even the first record's JSON is whole (its newline aside): the torn line is skipped when read, so
      // nothing of this publish will ever be sent (the caller may reuse what it claimed for it).
      const firstLine = Buffer.byteLength(data.slice(0, data.indexOf('\n') + 1), 'utf8');
      if (off < firstLine - 1) throw new NotPublishedError(`spool append failed, nothing written: ${(err as Error).message}`, { cause: err });
      throw err;
    }
    segment.records!.push(...records);
    segment.count += records.length;
    segment.dirty = true;
    this.#written += records.length;
  }

  #rotate(): Segment {
    const old = this.#active;
    // While Kafka is away the backlog lives on disk, not in memory: a sealed segment nothing
    // was sent from is read back when its turn comes.
    if (old && this.#down && old.sent === 0 && old !== this.#sending && old !== this.#inDoubt?.segment) old.records = null;
    const spare = this.#spare;
    this.#spare = null;
    const path = spare?.path ?? join(this.#spoolDir, `spool-${String(this.#nextSeq++).padStart(12, '0')}.jsonl`);
    const segment: Segment = { path, fd: spare?.fd ?? openSync(path, 'a'), base: this.#written + 1, count: 0, sent: 0, records: [], dirty: false };
    this.#segments.push(segment);
    this.#active = segment;
    this.#dirDirty = true;
    return segment;
  }

  /** Deletes a fully acknowledged segment and resolves whoever waited on its events. */
  #retire(segment: Segment): void {
    let kept = false;
    if (segment === this.#active && segment.fd !== null && this.#spare === null && !this.#closing) {
      try {
        ftruncateSync(segment.fd, 0); // opened for append: the next write lands at 0
        this.#spare = { path: segment.path, fd: segment.fd };
        kept = true;
      } catch { /* removed below instead */ }
    }
    if (!kept) {
      if (segment.fd !== null) closeSync(segment.fd);
      rmSync(segment.path, { force: true });
    }
    segment.fd = null;
    const i = this.#segments.indexOf(segment);
    if (i >= 0) this.#segments.splice(i, 1);
    if (this.#active === segment) this.#active = null;
    if (segment.base >= 0) this.#acknowledgedUpTo(segment.base + segment.count - 1);
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
        // a line an earlier version wrote may hold headers publish now refuses: kafkajs would throw on it at every send
        out.push({ topic: r.topic, event: r.event, headers: carriedHeaders(r.headers) });
      } catch (err) {
        // A torn last line is a write that never returned, so its publish never resolved.
        this.#log.error({ err, path, line: i + 1 }, 'skipping unreadable spool line');
      }
    }
    return out;
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

  /** Someone waits for Kafka's acknowledgement of an event not yet acknowledged (see #urgentThrough). */
  #urgent(): boolean {
    return this.#urgentThrough > this.#acknowledgedThrough;
  }

  /**
   * The sender's wait for company (lingerMs), cut short by an urgent append, an
   * `acknowledged()` caller or close().
   */
  #linger(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.#wakeLinger === done) this.#wakeLinger = null;
        resolve();
      };
      const timer = setTimeout(done, this.#lingerMs);
      this.#wakeLinger = done;
    });
  }

  /**
   * A backoff that close() cuts short (none once the log is stopped); ends early too once `until`
   * settles (it must not reject).
   */
  #pause(ms: number, until?: Promise<unknown>): Promise<void> {
    return new Promise((resolve) => {
      if (this.#stopped) {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, Math.min(Math.max(0, ms), 2 ** 31 - 1));
      this.#wake = done;
      until?.then(done);
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

/**
 * The headers the publisher gave (EventHeaders). An `event_id` header, which records carried
 * before 2026-12-03 (see RESERVED_HEADERS), is left out, so a consumer gets exactly the
 * publisher's headers from records of either age.
 */
function decodeHeaders(headers: IHeaders | undefined): EventHeaders {
  const out: EventHeaders = {};
  // for-in, not Object.entries: no array per header of every message (kafkajs makes a plain object)
  for (const name in headers) {
    if (name === EVENT_ID_HEADER || !Object.hasOwn(headers, name)) continue;
    const value = headers[name];
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

/**
 * The connection failure a kafkajs error is or was caused by (its message, e.g. "Connection
 * error: connect ECONNREFUSED 127.0.0.1:9092"), or undefined for any other error. kafkajs wraps a
 * connection error in KafkaJSNumberOfRetriesExceeded (`cause`) once its retries ran out.
 */
function connectionFailure(err: unknown): string | undefined {
  for (let e = err as { name?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.name === 'KafkaJSConnectionError' || e.name === 'KafkaJSConnectionClosedError') return String(e.message);
  }
  return undefined;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string, onTimeout?: () => void): Promise<T> {
  promise.catch(() => {}); // the loser of the race must not become an unhandled rejection
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(message));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** `work` as it is, or bounded by `ms` (when given): then "kafka did not answer <what> within <ms> ms" once late. */
function answerWithin<T>(work: Promise<T>, ms: number | undefined, what: string): Promise<T> {
  return ms === undefined ? work : withTimeout(work, ms, `kafka did not answer ${what} within ${ms} ms`);
}

/** The producer's partitioner (kafkajs' default: murmur2 of the key, as Java's client), for `producerPartition`. */
const DEFAULT_PARTITIONER = Partitioners.DefaultPartitioner();
/** Partition metadata of `n` partitions, every one with a leader: all the partitioner reads for a keyed record is their count. */
const metadataByCount = new Map<number, PartitionMetadata[]>();
const metadataOf = (n: number): PartitionMetadata[] => {
  let m = metadataByCount.get(n);
  if (m === undefined) {
    m = Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
    metadataByCount.set(n, m);
  }
  return m;
};

/** Longest wait, ms, for the metadata the partition-count warning reads at a consumer's start (advice: skipped when late). */
const ADVICE_TIMEOUT_MS = 3_000;

/** The spool sender's longest pause between tries, ms (`maxRetryDelayMs`' default). */
const MAX_RETRY_DELAY_MS = 2_000;

/**
 * How long after Kafka answers again another process's spool is on the log at the latest, ms:
 * its sender's longest pause between tries (MAX_RETRY_DELAY_MS) and a produce (~1,000 usual). A
 * rebuild's wait for the control records reads the log's ends again no sooner than this
 * (`committedThrough`'s `settleMs`).
 */
export const SPOOL_RESEND_MS = MAX_RETRY_DELAY_MS + 1_000;

/** The partition (0 … `partitions` − 1) the producer puts a record keyed `key` on, in a topic of `partitions` partitions. */
export function producerPartition(topic: string, key: string, partitions: number): number {
  return DEFAULT_PARTITIONER({ topic, partitionMetadata: metadataOf(partitions), message: { key, value: null } });
}

/** Partitions each new topic was created with, by name. */
function partitionsOf(topics: readonly ITopicConfig[]): Map<string, number> {
  return new Map(topics.map((t) => [t.topic, t.numPartitions ?? 1]));
}

/**
 * Waits until the broker serves metadata for every new topic with a leader on every partition,
 * retrying any error meanwhile. A KRaft broker's metadata cache can lag the topic's creation (a
 * freshly started broker answers UNKNOWN_TOPIC_OR_PARTITION for a moment): the first producer
 * or consumer then failed, and kafkajs' own `createTopics({waitForLeaders: true})` threw it
 * (it retries only LEADER_NOT_AVAILABLE), so `ensureTopics` does not ask for that. A topic with
 * fewer partitions than asked, every one led, is taken once that count has held for `settleMs`
 * (1 s): another process made it first with another KAFKA_PARTITIONS (two starting at once),
 * which the caller's partition-count warning names; it failed the later start before (a
 * breaker). `requestTimeoutMs`: each metadata request's bound (a late one is retried), none by
 * default. Exported for its tests only (not from the package). Throws after `timeoutMs` (10 s; a
 * request under way may run past it by kafkajs' own timeouts): "topics not ready after … ms: "
 * and, per topic, what is missing (not in the metadata, no leader for partitions …, or fewer
 * partitions than asked that had not held for `settleMs`), or the last error when the broker
 * did not answer at all.
 */
export async function waitForTopicMetadata(
  admin: Admin, topics: readonly string[], partitions: Map<string, number>, timeoutMs = 10_000, settleMs = 1_000, requestTimeoutMs?: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  /** topic → since when (ms) it has shown fewer partitions than asked, all led */
  const short = new Map<string, number>();
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    let problems: string[] | undefined;
    try {
      const { topics: meta } = await answerWithin(admin.fetchTopicMetadata({ topics: [...topics] }), requestTimeoutMs, 'a metadata request');
      const now = Date.now();
      problems = topics.flatMap((name) => {
        const t = meta.find((m) => m.name === name);
        const asked = partitions.get(name) ?? 1;
        if (t === undefined) return [`${name}: not in the broker's metadata`];
        const leaderless = t.partitions.filter((p) => p.leader < 0).map((p) => p.partitionId);
        if (leaderless.length > 0) return [`${name}: no leader for partition(s) ${leaderless.join(', ')}`];
        // Another process created it first, with fewer partitions (a different KAFKA_PARTITIONS),
        // or the broker's metadata does not list them all yet: taken once the count holds.
        if (t.partitions.length < asked) {
          const held = `${name}:${t.partitions.length}`;
          if (!short.has(held)) short.set(held, now);
          return now - short.get(held)! >= settleMs ? [] : [`${name}: ${t.partitions.length} partition(s), ${asked} asked`];
        }
        return [];
      });
      if (problems.length === 0) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (problems && Date.now() > deadline) throw new Error(`topics not ready after ${timeoutMs} ms: ${problems.join('; ')}`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * UTF-8 bytes of `json`, exactly: a produce's size is their sum (the UTF-16 length, taken for
 * texts too short to pass the bound alone, let three events of 300,000 CJK characters, 2.7 MB,
 * into one produce).
 */
function eventBytes(json: string): number {
  return Buffer.byteLength(json, 'utf8');
}

/** An event id for a message: at most 200 characters of it. */


/**
 * Bytes a record adds to a v2 record batch beyond its value, key and headers (its length,
 * attributes, timestamp and offset deltas, key and value lengths, header count: varints of at
 * most 5 bytes each, counted high), and per header beyond its name and value.
 */
const RECORD_FRAMING_BYTES = 32;
const HEADER_FRAMING_BYTES = 10;

/**
 * What a record takes in an uncompressed record batch (bytes): its value (the event's JSON),
 * its key, its headers (the caller's) and their framing, counted high.
 */
function recordBytes(r: SpoolRecord & { value: string }, valueBytes = eventBytes(r.value)): number {
  let n = valueBytes + eventBytes(partitionKey(r.event)) + RECORD_FRAMING_BYTES;
  for (const name in r.headers) n += eventBytes(name) + eventBytes(r.headers[name]!) + HEADER_FRAMING_BYTES;
  return n;
}

/**
 * The records one produce sends from `from`: at most `max` of them and at most MAX_EVENT_BYTES
 * of records (values, keys, headers and framing: what an uncompressed batch holds, and more
 * than a compressed one can), but always at least one. A broker caps a record batch at ~1 MiB:
 * events of a few hundred KB each, e.g. price versions spooled while Kafka was away, in one
 * produce were refused together on every try, and so were 500 uncompressed events of 2 KB
 * with a trace context each (`KAFKA_COMPRESSION=none`) while only their values were counted.
 * A record read back from the spool gets its JSON here, kept for the send.
 */
function nextChunk(records: SpoolRecord[], from: number, max: number): SpoolRecord[] {
  let end = from;
  let bytes = 0;
  while (end < records.length && end - from < max) {
    const r = records[end]!;
    r.value ??= JSON.stringify(r.event);
    const size = (r.bytes ??= recordBytes(r as SpoolRecord & { value: string }));
    if (end > from && bytes + size > MAX_EVENT_BYTES) break;
    bytes += size;
    end++;
  }
  return records.slice(from, end);
}
