// Consumer throughput per process and event-to-effect latency (issue 11, outcome 2): the ledger
// group (Kafka → Redis) and the warehouse group (Kafka → chDB), each run in THIS process with
// the real consumer code (`startLedgerConsumer`, `startWarehouseSink`) on the real KafkaLog, so
// the figure is what one consumer process moves. Kafka and Redis as the test suites find them;
// every run uses its own topic prefix, Redis key prefix and chDB directory, removed at the end.
//
//   node bench/consumers.ts [--events 1000000] [--partitions 8] [--accounts 1000]
//                           [--rate 5000] [--seconds 20] [--modes per-event,batch] [--groups ledger,warehouse]
//                           [--warehouse chdb|server|chdb,server] [--sink-batch 1000,20000]
//                           [--sink-inserts 1,2] [--coalesce 1000]
//
// `--warehouse`: where the warehouse group inserts. `server` is the distributed deployment's
// ClickHouse server (CLICKHOUSE_URL, else 127.0.0.1:8123 if it answers /ping; a database of its
// own, dropped at the end); `chdb` the embedded engine in this process. Default: both when a
// server answers, else chdb. With a server, its CPU time over the run is read from
// /proc/<pid>/stat (CLICKHOUSE_PID, else deploy/clickhouse's pid file, else `pgrep -f server.py`)
// and reported beside the consumer's, so moving work into the server cannot pass for speed.
// `--sink-batch` / `--sink-inserts`: one warehouse throughput run per sink `batchSize` /
// `concurrentInserts` (A/B in one run); the latency phase then runs only when neither is given.
//
// `per-event` is the ledger consumer as it was before batching, rebuilt faithfully: one
// applyUsage script call (one round trip) per event, awaited in order. `batch` is the current
// path (`applyBatch`: one script call per partition batch). `cluster` (ledger only, not in the
// default modes) is `batch` with the store on the Redis Cluster of REDIS_CLUSTER_NODES (or
// deploy/redis-cluster.sh): its Cluster layout, one script call per account of a batch.
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { Cluster, Redis } from 'ioredis';
import { decodeEvent, decodeEventBySchema, KAFKA_COMPRESSIONS, KafkaLog, type KafkaCompression, type ConsumedEvent, type PublishedEvent, type SubscribeOptions } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore, type BalanceStore, type BatchItem, type BatchOutcome } from '@tollgate/ledger';
import { createChdbClickHouse, createHttpClickHouse, Warehouse } from '@tollgate/warehouse';
import { startLedgerConsumer, startWarehouseSink } from '@tollgate/aggregator';
import { findClickHouse, findKafka, findRedis, findRedisCluster } from '../test/support/services.ts';
import { benchUsageEvent, cpuSeconds, localServicePids, machineBusySeconds, waitForIdle } from './stack.ts';
import { choiceList, commandLine, numberList, numberValue, oneChoice, runMain } from './cli.ts';

export interface ConsumerBenchOptions {
  events: number;
  partitions: number;
  accounts: number;
  /** events/s of the latency phase, and how long it lasts */
  rate: number;
  seconds: number;
  modes: Array<'per-event' | 'batch' | 'cluster'>;
  groups: Array<'ledger' | 'warehouse'>;
  /** where the warehouse group inserts (default: both when a ClickHouse server answers, else chdb) */
  warehouses?: WarehouseKind[];
  /** warehouse sink `batchSize`s to run, one throughput run each (default: the sink's own default) */
  sinkBatches?: number[];
  /** warehouse sink `concurrentInserts` to run, one throughput run each (default: the sink's own default) */
  sinkInserts?: number[];
  /**
   * ledger runs: members of the ledger group in this process (what LEDGER_CONSUMERS starts in
   * an aggregator), one throughput run each (default [1]); the latency phase uses 1
   */
  ledgerMembers?: number[];
  /**
   * warehouse sink `partitionBatch`es (events per partition batch from the log) to run, one
   * throughput run each (default: BENCH_WAREHOUSE_PARTITION_BATCH, a comma list, else the sink's own default)
   */
  partitionBatches?: number[];
  /** usage event version produced (default 2, as gateways publish now; 1 for comparison with older runs) */
  eventVersion?: 1 | 2;
  /** the codec the events are produced with (KAFKA_COMPRESSION; default gzip) */
  compression?: KafkaCompression;
  /**
   * Ledger runs: `seeded` (default) leaves each event's hold outstanding before the clock starts
   * (`seedHolds`), so each apply closes one as in production; `none` has no hold to close.
   */
  holds?: 'seeded' | 'none';
  /**
   * Ledger runs: most events per merged store call (the consumer's `coalesceMaxEvents`; 1: one
   * call per partition batch, as before 2026-12-04). Default: the consumer's own.
   */
  coalesce?: number;
}

/** `chdb`: the embedded engine in this process; `server`: a ClickHouse server over HTTP. */
export type WarehouseKind = 'chdb' | 'server';

export interface ThroughputFigure {
  group: 'ledger' | 'warehouse';
  mode: 'per-event' | 'batch' | 'cluster';
  /** ledger only, when more than 1: members of the group in this process (LEDGER_CONSUMERS) */
  members?: number;
  /** warehouse only: where it inserted */
  warehouse?: WarehouseKind;
  /** warehouse on a server only: CPU-seconds the server process used meanwhile (null: its pid was not found) */
  serverCpuS?: number | null;
  events: number;
  seconds: number;
  eventsPerS: number;
  /**
   * events per CPU-second of this process (its threads: the consumer, kafkajs, chDB's engine):
   * what one process moves per core it gets, whatever else the machine runs meanwhile
   */
  eventsPerCpuS: number;
  /** the effect checked afterwards: Σ balances = −Σ cost (ledger), rows and Σ cost (warehouse) */
  exact: boolean;
  /**
   * µs of CPU the whole machine spent per event over the drain (/proc/stat: every process, so
   * this consumer, Kafka, Redis or the ClickHouse server, and anything else that ran meanwhile;
   * work a service leaves for after the drain, such as the server's merges, is not in it);
   * absent without /proc. `cores` × 10^6 ÷ it is the most events/s this pipeline could drain
   * on this machine with every core busy (`machineCeiling`).
   */
  machineCpuUsPerEvent?: number;
  /** warehouse only: storeEvents calls (inserts into usage_events), o.events / inserts events each on average */
  inserts?: number;
  /** warehouse only: share of the wall time inside storeEvents (decode + rows + rollup_skip query + insert) */
  storeShare?: number;
  /** warehouse only: share of the wall time in the rollup_skip SELECT, and in the INSERT */
  selectShare?: number;
  insertShare?: number;
}

export interface LatencyFigure {
  group: 'ledger' | 'warehouse';
  warehouse?: WarehouseKind;
  rate: number;
  events: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /**
   * ledger only: where the time of one event goes, per stage (p50 / p99 / max ms of each):
   * `produce` publish → Kafka acknowledged it (the KafkaLog's linger and the produce request),
   * `fetch` acknowledged → the consumer's handler got it (fetch wait, the fetch, decompression,
   * waiting behind other partitions' batches of the same fetch), `decode` handler → its
   * applyBatch call started, `redis` the applyBatch call, `after` its return → the batch done
   */
  /**
   * CPU µs of this process (the consumer alone: the publisher is a child process) per event
   * over the phase, from the first publish to the last effect: at a steady moderate rate its
   * fixed cost per fetch and per batch, which a drain spreads over thousands of events
   */
  cpuUsPerEvent?: number;
  /**
   * CPU µs per event of the Redis and Kafka servers over the same phase (deploy/'s pid files;
   * absent when not found), with the publisher's share in Kafka's
   */
  redisCpuUsPerEvent?: number;
  kafkaCpuUsPerEvent?: number;
  /** ledger only: events per applyBatch call (the partitions' batches of a turn merged, ApplyCoalescer) */
  eventsPerStoreCall?: number;
  /** the event-loop delay of this process during the phase, ms (the consumer alone) */
  loopDelayP99Ms?: number;
  loopDelayMaxMs?: number;
  stages?: Record<'produce' | 'fetch' | 'decode' | 'redis' | 'after', { p50Ms: number; p99Ms: number; maxMs: number }>;
}

export interface ConsumerBenchResult {
  produceEventsPerS: number;
  /**
   * CPU µs per event of `decodeEvent` (the hand-written fast path) and of `decodeEventBySchema`
   * (zod alone, what every consumer paid before issue 11), on 20,000 of the bench's usage events
   * as JSON.parse gives them, best of 3 passes each
   */
  decodeUs?: { fast: number; schema: number };
  /** CPUs of this machine (os.cpus()), what `machineCpuUsPerEvent` is shared out over */
  cores?: number;
  throughput: ThroughputFigure[];
  latency: LatencyFigure[];
}

/**
 * The most events/s a drain could reach on this machine with all `cores` busy, at
 * `machineUsPerEvent` µs of the machine's CPU per event (ThroughputFigure.machineCpuUsPerEvent):
 * `cores` × 10^6 ÷ it. What a group's throughput is judged against when the machine, not one
 * waiting part, bounds it (docs/scaling.md, "What bounds each tier").
 */
export function machineCeiling(machineUsPerEvent: number, cores: number): number {
  return (cores * 1e6) / machineUsPerEvent;
}

type Log = (line: string) => void;

/**
 * The ledger consumer before batching: every event its own applyUsage call, in order (what
 * `startLedgerConsumer` did per event until issue 11). Everything else is the store's own.
 */
/**
 * Leaves every event's hold as its gateway did before the event reached the ledger: held at its
 * cost (settled), in no spend window (a key without limits), in the store's key layout
 * (lua/hold.lua; RedisBalanceStore's key table). Real traffic always has them, and the usage
 * apply closes each. Without them every event took the path of usage whose hold was lost with
 * the state (lua/usage-fn.lua: counted in its five spend windows), which a live ledger takes
 * only after a loss; and the figures before 2026-12-03 measured applies with no hold to close.
 * Written in bulk, a few commands per account, before the clock starts.
 */
async function seedHolds(redis: Redis | Cluster, prefix: string, holds: Map<string, { ids: string[]; amounts: string[]; total: bigint }>, now: number): Promise<void> {
  const CHUNK = 5_000;
  const expiry = String(now + 3_600_000);
  await Promise.all([...holds].map(async ([account, h]) => {
    const tag = `{${account}}`;
    for (let i = 0; i < h.ids.length; i += CHUNK) {
      const ids = h.ids.slice(i, i + CHUNK);
      const amounts = h.amounts.slice(i, i + CHUNK);
      await Promise.all([
        redis.hset(`${prefix}holds:${tag}`, ...ids.flatMap((id, j) => [id, amounts[j]!])),
        redis.zadd(`${prefix}hexp:${tag}`, ...ids.flatMap((id) => [expiry, id])),
      ]);
    }
    await redis.set(`${prefix}held:${tag}`, h.total.toString());
  }));
}

function perEventStore(store: BalanceStore): BalanceStore {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'applyBatch') {
        return async (items: BatchItem[]): Promise<BatchOutcome[]> => {
          const out: BatchOutcome[] = [];
          for (const { event, position } of items) {
            const verdict = event.type === 'usage' ? await target.applyUsage(event, position) : await target.applyLedger(event, position);
            out.push({ verdict });
            if (verdict !== 'applied' && verdict !== 'duplicate') break;
          }
          return out;
        };
      }
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** decodeEvent vs decodeEventBySchema, CPU µs per event (see ConsumerBenchResult.decodeUs). */
function measureDecode(accounts: number, version: 1 | 2): { fast: number; schema: number } {
  const events = Array.from({ length: 20_000 }, (_, i) => JSON.parse(JSON.stringify(benchUsageEvent(version, i, accounts, Date.now()))) as unknown);
  const best = (decode: typeof decodeEvent) => {
    let min = Infinity;
    for (let pass = 0; pass < 3; pass++) {
      const c = process.cpuUsage();
      for (const e of events) if (!decode(e).ok) throw new Error('bench event refused by the decoder');
      const used = process.cpuUsage(c);
      min = Math.min(min, (used.user + used.system) / events.length);
    }
    return min;
  };
  return { fast: best(decodeEvent), schema: best(decodeEventBySchema) };
}

/** Wall-clock ms with sub-ms precision, comparable across processes of this machine. */
function wall(): number {
  return performance.timeOrigin + performance.now();
}

interface Pace {
  /** events/s, for `seconds`; event ids are made from `base` onwards, over `accounts` accounts */
  rate: number;
  seconds: number;
  base: number;
  accounts: number;
  /** usage event version to publish */
  eventVersion: 1 | 2;
  compression: KafkaCompression;
}

/**
 * Publishes `rate × seconds` usage events at a steady `rate`, one tick's worth every 10 ms,
 * noting when each was published and when Kafka acknowledged it (`wall()` ms). `onBatch`, if
 * given, hears of each tick's events before they are published.
 */
async function publishPaced(
  log: KafkaLog, o: Pace, published: Map<string, number>, acked: Map<string, number>,
  onBatch?: (at: number, ids: string[]) => void, onAcked?: (at: number, ids: string[]) => void,
): Promise<void> {
  const total = o.rate * o.seconds;
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((o.rate * tickMs) / 1000));
  const start = performance.now();
  let sent = 0;
  const acks: Promise<void>[] = [];
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * o.rate) + perTick);
    const batch: PublishedEvent[] = [];
    const at = wall();
    for (; sent < due; sent++) {
      const e = benchUsageEvent(o.eventVersion, o.base + sent, o.accounts, Date.now());
      published.set(e.event_id, at);
      batch.push({ event: e });
    }
    // Each gateway request publishes its own event; grouping one tick's worth is the
    // KafkaLog's linger doing what it does for concurrent requests anyway.
    if (batch.length) {
      const ids = batch.map((b) => b.event.event_id);
      onBatch?.(at, ids);
      acks.push(log.publish('usage', batch).then(() => {
        const done = wall();
        for (const eid of ids) acked.set(eid, done);
        onAcked?.(done, ids);
      }));
    }
    await sleep(tickMs);
  }
  await Promise.all(acks);
}

/**
 * publishPaced in a child process (`node bench/consumers.ts --publisher <json>`): its lines
 * `P <wall ms> <id,id,…>` (published) and `A <wall ms> <id,id,…>` (acknowledged) fill the maps.
 * Resolves once the child has published everything and exited.
 */
async function publishFromChild(
  o: Pace & { brokers: string; topicPrefix: string }, published: Map<string, number>, acked: Map<string, number>,
): Promise<void> {
  const child = spawn(process.execPath, [import.meta.filename, '--publisher', JSON.stringify(o)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', (line) => {
    const [kind, at, ids] = line.split(' ');
    const map = kind === 'P' ? published : kind === 'A' ? acked : undefined;
    if (map && ids) for (const eid of ids.split(',')) map.set(eid, Number(at));
  });
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`the publisher process exited with ${code}`);
}

/** The child side of publishFromChild. */
async function publisherMain(json: string): Promise<void> {
  const o = JSON.parse(json) as Pace & { brokers: string; topicPrefix: string };
  const kafka = new Kafka({ clientId: 'tollgate-bench-cons-pub', brokers: o.brokers.split(','), logLevel: logLevel.NOTHING });
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-pub-'));
  const log = new KafkaLog({ kafka, topicPrefix: o.topicPrefix, spoolDir: dir, logger: { warn: () => {}, error: () => {} }, compression: o.compression });
  try {
    // The producer connects before the clock starts (the consumer applies this one like any other).
    await log.publish('usage', [{ event: benchUsageEvent(o.eventVersion, o.base + o.rate * o.seconds, o.accounts, Date.now()) }]);
    const out: string[] = [];
    const flush = () => { if (out.length) process.stdout.write(`${out.join('\n')}\n`); out.length = 0; };
    const timer = setInterval(flush, 20);
    await publishPaced(log, o, new Map(), new Map(), (at, ids) => out.push(`P ${at} ${ids.join(',')}`), (at, ids) => out.push(`A ${at} ${ids.join(',')}`));
    clearInterval(timer);
    flush();
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Waits (up to 20 s) until the local Kafka, Redis and ClickHouse server together use under 10 %
 * of a core, so a phase does not start beside the flushes and merges the one before left them;
 * logs a wait of a second or more, or starting anyway, under `tag`.
 */
async function servicesIdle(tag: string, log: Log): Promise<void> {
  const pids = localServicePids();
  const idle = await waitForIdle([pids.kafka, pids.redis, clickHousePid()], 0.1, 500, 20_000);
  if (!idle.idle) log(`  ${tag}: Kafka, Redis and ClickHouse still used ${(idle.load * 100).toFixed(0)}% of a core after ${idle.waitedS.toFixed(1)} s; starting anyway`);
  else if (idle.waitedS >= 1) log(`  ${tag}: waited ${idle.waitedS.toFixed(1)} s for Kafka, Redis and ClickHouse to go idle`);
}

/**
 * ensureTopics, tried again a few times: a broker starved of CPU by the rest of the machine can
 * answer UNKNOWN_TOPIC_OR_PARTITION while it brings a new topic's leaders up.
 */
async function ensureTopics(log: KafkaLog, partitions: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await log.ensureTopics(partitions);
    } catch (err) {
      if (attempt >= 4) throw err;
      await sleep(1000 * attempt);
    }
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs the whole consumer bench; cleans up its topics, keys and chDB directory whatever happens. */
export async function measureConsumerGroups(o: ConsumerBenchOptions, log: Log): Promise<ConsumerBenchResult> {
  const eventVersion = o.eventVersion ?? 2;
  const compression = o.compression ?? 'gzip';
  const [kafkaUrl, redisUrl] = await Promise.all([findKafka(), findRedis()]);
  if (!kafkaUrl || !redisUrl) throw new Error(`consumer bench needs Kafka and Redis (found kafka=${kafkaUrl ?? 'none'} redis=${redisUrl ?? 'none'}): start them (bash deploy/services.sh up prints their variables) or set KAFKA_BROKERS and REDIS_URL`);
  const clickHouseUrl = await findClickHouse();
  const kinds: WarehouseKind[] = o.warehouses ?? (clickHouseUrl ? ['server', 'chdb'] : ['chdb']);
  if (kinds.includes('server') && !clickHouseUrl) throw new Error('--warehouse server needs a ClickHouse server (CLICKHOUSE_URL or 127.0.0.1:8123)');
  const id = randomUUID().slice(0, 8);
  const topicPrefix = `bench-cons-${id}.`;
  const redisPrefix = `bench:cons:${id}:`;
  const kafka = new Kafka({ clientId: `tollgate-bench-cons-${id}`, brokers: kafkaUrl.split(','), logLevel: logLevel.NOTHING });
  const dirs: string[] = [];
  const tmp = (name: string) => { const d = mkdtempSync(join(tmpdir(), `tollgate-bench-${name}-`)); dirs.push(d); return d; };
  const quiet = { warn: () => {}, error: () => {} };
  const kafkaLog = new KafkaLog({ kafka, topicPrefix, spoolDir: tmp('spool'), logger: quiet, compression });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  let cluster: Cluster | undefined;
  const chdbPath = tmp('chdb');
  /**
   * A fresh, migrated warehouse of `kind`: on the server a database of its own, in chDB a table
   * prefix in this run's directory. `drop` removes the server's database and closes the client.
   */
  const openWarehouse = async (kind: WarehouseKind, name: string) => {
    const client = kind === 'server' ? createHttpClickHouse({ url: clickHouseUrl! }) : createChdbClickHouse({ path: chdbPath });
    const database = `bench_${name}`;
    const warehouse = kind === 'server' ? new Warehouse({ client, database }) : new Warehouse({ client, tablePrefix: `${name}_` });
    await warehouse.migrate();
    const drop = async () => {
      if (kind === 'server') await warehouse.command(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => {});
      await warehouse.close();
    };
    return { warehouse, client, drop };
  };
  const result: ConsumerBenchResult = { produceEventsPerS: 0, cores: cpus().length, throughput: [], latency: [] };
  const latencyLogs: KafkaLog[] = [];
  try {
    await ensureTopics(kafkaLog, o.partitions);
    // 1. The backlog: o.events usage events, published as gateways do (spool, then Kafka).
    const now = Date.now();
    let cost = 0n;
    /** each account's requests, as the holds their gateways left (seedHolds) */
    const holds = new Map<string, { ids: string[]; amounts: string[]; total: bigint }>();
    const t0 = performance.now();
    const CHUNK = 2000;
    for (let i = 0; i < o.events; i += CHUNK * 10) {
      const waits: Promise<void>[] = [];
      for (let j = i; j < Math.min(o.events, i + CHUNK * 10); j += CHUNK) {
        const events: PublishedEvent[] = [];
        for (let k = j; k < Math.min(o.events, j + CHUNK); k++) {
          const e = benchUsageEvent(eventVersion, k, o.accounts, now - 3600_000 + Math.floor(k * 3600_000 / o.events));
          cost += BigInt(e.cost_micros);
          events.push({ event: e });
          let h = holds.get(e.account_id);
          if (!h) holds.set(e.account_id, (h = { ids: [], amounts: [], total: 0n }));
          h.ids.push(e.event_id);
          h.amounts.push(e.cost_micros);
          h.total += BigInt(e.cost_micros);
        }
        waits.push(kafkaLog.publish('usage', events));
      }
      await Promise.all(waits);
      if ((i / (CHUNK * 10)) % 10 === 0) log(`  produce ${i + CHUNK * 10} / ${o.events}`);
    }
    await kafkaLog.flush();
    result.produceEventsPerS = o.events / ((performance.now() - t0) / 1000);
    log(`bench consumers: ${o.events} usage events on ${o.partitions} partitions (${o.accounts} accounts) produced at ${result.produceEventsPerS.toFixed(0)} events/s`);

    // 1b. The consumer boundary alone, both ways (one CPU, no I/O).
    result.decodeUs = measureDecode(o.accounts, eventVersion);
    log(`  decodeEvent ${result.decodeUs.fast.toFixed(2)} µs per usage event (zod schema alone: ${result.decodeUs.schema.toFixed(2)} µs)`);

    // 2. Throughput: each group drains the backlog alone, from offset 0, in this process.
    const runs: Array<{ group: 'ledger' | 'warehouse'; mode: ThroughputFigure['mode']; kind?: WarehouseKind; sinkBatch?: number; sinkInserts?: number; partitionBatch?: number; members?: number }> = [];
    const partitionBatches = o.partitionBatches
      ?? (process.env.BENCH_WAREHOUSE_PARTITION_BATCH ? process.env.BENCH_WAREHOUSE_PARTITION_BATCH.split(',').map(Number) : undefined);
    for (const group of o.groups) {
      if (group === 'ledger') {
        for (const mode of o.modes) for (const members of o.ledgerMembers ?? [1]) runs.push({ group, mode, ...(members > 1 ? { members } : {}) });
      }
      else {
        for (const kind of kinds) {
          for (const sinkBatch of o.sinkBatches ?? [undefined]) {
            for (const sinkInserts of o.sinkInserts ?? [undefined]) {
              for (const partitionBatch of partitionBatches ?? [undefined]) {
                runs.push({ group, mode: 'batch', kind, ...(sinkBatch ? { sinkBatch } : {}), ...(sinkInserts ? { sinkInserts } : {}), ...(partitionBatch ? { partitionBatch } : {}) });
              }
            }
          }
        }
      }
    }
    {
      // A value given twice (`--sink-inserts 2,3,2`) is a run of its own: its group, Redis prefix
      // and warehouse database get `-r<n>`, or the repeat would find the first run's committed
      // offsets at the end of the topic and wait forever for events it was never going to get.
      const seenTags = new Map<string, number>();
      for (const { group, mode, kind, sinkBatch, sinkInserts, partitionBatch, members } of runs) {
        const base = kind === undefined ? `${group}-${mode}${members ? `-m${members}` : ''}` : `${group}-${kind}${sinkBatch ? `-b${sinkBatch}` : ''}${sinkInserts ? `-i${sinkInserts}` : ''}${partitionBatch ? `-p${partitionBatch}` : ''}`;
        const repeat = (seenTags.get(base) ?? 0) + 1;
        seenTags.set(base, repeat);
        const tag = repeat === 1 ? base : `${base}-r${repeat}`;
        // The services first finish what the produce or the run before left them (Kafka's
        // flushes, the ClickHouse server's merges of the last run's parts), which would
        // otherwise take a core from this run's drain.
        await servicesIdle(tag, log);
        let applied = 0;
        let done!: () => void;
        const finished = new Promise<void>((r) => { done = r; });
        const count = (batch: ConsumedEvent[]) => { applied += batch.length; if (applied >= o.events) done(); };
        let storeMs = 0;
        let inserts = 0;
        let selectMs = 0;
        let insertMs = 0;
        let exact = false;
        // The drain's clocks: wall time, this process's CPU and the whole machine's (no figure
        // without /proc/stat), started right before the consumer and read as it has drained.
        let clocks0 = { wall: 0, cpu: process.cpuUsage(), machine: undefined as number | undefined };
        const startClocks = () => { clocks0 = { wall: performance.now(), cpu: process.cpuUsage(), machine: machineBusySeconds() }; };
        const readClocks = () => {
          const m1 = machineBusySeconds();
          const c = process.cpuUsage(clocks0.cpu);
          return { seconds: (performance.now() - clocks0.wall) / 1000, cpu: (c.user + c.system) / 1e6,
            machine: clocks0.machine === undefined || m1 === undefined ? {} : { machineCpuUsPerEvent: ((m1 - clocks0.machine) * 1e6) / o.events } };
        };
        if (group === 'ledger') {
          if (mode === 'cluster' && !cluster) {
            const nodes = await findRedisCluster();
            if (!nodes) throw new Error('mode cluster needs a Redis Cluster (REDIS_CLUSTER_NODES or bash deploy/redis-cluster.sh start)');
            cluster = new Cluster(nodes.split(',').map((n) => ({ host: n.split(':')[0]!, port: Number(n.split(':')[1]) })), { redisOptions: { maxRetriesPerRequest: 2 } });
          }
          const real = new RedisBalanceStore({ redis: mode === 'cluster' ? cluster! : redis, prefix: `${redisPrefix}${tag}:`, requireReady: true });
          await real.load({ balances: new Map(), ledgerEntries: new Map() });
          if (o.holds !== 'none') await seedHolds(mode === 'cluster' ? cluster! : redis, `${redisPrefix}${tag}:`, holds, now);
          const balances = mode === 'per-event' ? perEventStore(real) : real;
          const profiling = await startDrainProfile();
          startClocks();
          // Each member is a consumer of its own with its own fetch loop, as LEDGER_CONSUMERS
          // starts them in an aggregator: one's fetch and decode overlap the other's store calls.
          const subs = await Promise.all(Array.from({ length: members ?? 1 }, () => startLedgerConsumer({
            log: kafkaLog, balances, keys: new MemoryKeyDirectory(), group: `bench-${tag}`, onApplied: count,
            ...(o.coalesce !== undefined ? { coalesceMaxEvents: o.coalesce } : {}),
          })));
          await drained(finished, () => applied, o.events, tag);
          const { seconds, cpu, machine } = readClocks();
          await profiling?.(tag);
          await Promise.all(subs.map((sub) => sub.stop()));
          let sum = 0n;
          for (const b of (await real.balances()).values()) sum += b;
          exact = sum === -cost;
          result.throughput.push({ group, mode, ...(members ? { members } : {}), events: o.events, seconds, eventsPerS: o.events / seconds, eventsPerCpuS: o.events / cpu, exact, ...machine });
        } else {
          // Timed at the client: the rollup_skip existence query (a SELECT) and the INSERT.
          const { warehouse, client, drop } = await openWarehouse(kind!, `cb_${id}_${sinkBatch ?? 0}_${sinkInserts ?? 0}_${partitionBatch ?? 0}_${repeat}`);
          const timed = <K extends 'query' | 'insert' | 'exec'>(name: K, add: (ms: number) => void) => {
            const original = client[name].bind(client) as (...a: unknown[]) => Promise<unknown>;
            (client as unknown as Record<string, unknown>)[name] = async (...a: unknown[]) => {
              const s = performance.now();
              try { return await original(...a); } finally { add(performance.now() - s); }
            };
          };
          timed('query', (ms) => { selectMs += ms; });
          timed('insert', (ms) => { insertMs += ms; });
          // The usage insert goes through `exec` (a prebuilt JSONCompactEachRow body).
          timed('exec', (ms) => { insertMs += ms; });
          const storeEvents = warehouse.storeEvents.bind(warehouse);
          warehouse.storeEvents = async (items, g) => {
            inserts++;
            const s = performance.now();
            try { return await storeEvents(items, g); } finally { storeMs += performance.now() - s; }
          };
          const pid = kind === 'server' ? clickHousePid() : undefined;
          const server0 = pid === undefined ? undefined : processCpuSeconds(pid);
          const profiling = await startDrainProfile();
          startClocks();
          const sub = await startWarehouseSink({ log: kafkaLog, warehouse, flushMs: 500, group: `bench-${tag}`, onFlushed: count,
            ...(sinkBatch ? { batchSize: sinkBatch } : {}), ...(sinkInserts ? { concurrentInserts: sinkInserts } : {}),
            ...(partitionBatch ? { partitionBatch } : {}) });
          await drained(finished, () => applied, o.events, tag);
          const { seconds, cpu, machine } = readClocks();
          const server1 = pid === undefined ? undefined : processCpuSeconds(pid);
          await profiling?.(tag);
          await sub.stop();
          const totals = await warehouse.usageTotals();
          exact = totals.requests === o.events && totals.costMicros === cost;
          result.throughput.push({ group, mode, warehouse: kind, events: o.events, seconds, eventsPerS: o.events / seconds, eventsPerCpuS: o.events / cpu, exact,
            ...(kind === 'server' ? { serverCpuS: server0 === undefined || server1 === undefined ? null : server1 - server0 } : {}),
            ...machine,
            inserts, storeShare: storeMs / 1000 / seconds, selectShare: selectMs / 1000 / seconds, insertShare: insertMs / 1000 / seconds });
          await drop();
        }
        const f = result.throughput.at(-1)!;
        const server = f.serverCpuS === undefined ? ''
          : f.serverCpuS === null ? ', server CPU: pid not found'
          : `, server ${f.serverCpuS.toFixed(1)} CPU-s: ${(f.events / (f.events / f.eventsPerCpuS + f.serverCpuS)).toFixed(0)} events per CPU-second of consumer + server`;
        const machine = f.machineCpuUsPerEvent === undefined ? ''
          : `; the machine ${f.machineCpuUsPerEvent.toFixed(1)} µs per event: at most ${machineCeiling(f.machineCpuUsPerEvent, result.cores!).toFixed(0)} events/s on its ${result.cores} cores`;
        log(`  ${tag.padEnd(18)} ${f.eventsPerS.toFixed(0).padStart(7)} events/s, ${f.eventsPerCpuS.toFixed(0).padStart(7)} events per CPU-second  (${f.seconds.toFixed(1)} s, exact: ${f.exact}${f.storeShare !== undefined ? `, ${f.inserts} inserts of ${(f.events / f.inserts!).toFixed(0)} events, ${(f.storeShare * 100).toFixed(0)}% in storeEvents: ${(f.selectShare! * 100).toFixed(0)}% rollup_skip queries (summed), ${(f.insertShare! * 100).toFixed(0)}% insert` : ''}${server}${machine})`);
      }
    }

    // The backlog's holds (a million ids and amounts, ~100 MB of this process's heap) were for
    // the drains only: a consumer process as deployed holds nothing like them, so the latency
    // phase below does not either (each of its major GCs would mark them).
    holds.clear();

    // 3. Latency at a steady rate, one group at a time (as deployed: AGGREGATOR_GROUPS splits
    // them into processes; chDB's calls run on the calling thread and would stall a ledger
    // sharing the process): events published at o.rate/s on fresh topics; each event's publish
    // time against the moment its effect is done (the balance script returned / the warehouse
    // insert returned, after which a query sees the row).
    const latencyRuns = o.rate > 0 && o.seconds > 0 ? runs.filter((r) => r.mode === 'batch' && r.members === undefined && r.sinkBatch === undefined && r.sinkInserts === undefined && r.partitionBatch === undefined) : [];
    for (const { group: which, kind } of latencyRuns) {
      // As before each drain: the services first finish what the drains left them (the ClickHouse
      // server's merges of a million rows, Kafka's flushes), which would otherwise take a core
      // from the steady 5,000/s and put their stalls into its tail.
      await servicesIdle(`latency ${which}${kind ? ` (${kind})` : ''}`, log);
      const kafkaLog = new KafkaLog({ kafka, topicPrefix: `${topicPrefix}lat-${which}${kind ? `-${kind}` : ''}.`, spoolDir: tmp('spool-lat'), logger: quiet, compression });
      latencyLogs.push(kafkaLog);
      await ensureTopics(kafkaLog, o.partitions);
      // Every time here is wall-clock ms with sub-ms precision (`wall()`), so that a publisher in
      // another process can report its own.
      const published = new Map<string, number>();
      const doneAt = new Map<string, number>();
      const seen = (batch: ConsumedEvent[]) => {
        const at = wall();
        for (const e of batch) if (!doneAt.has(e.event.event_id)) doneAt.set(e.event.event_id, at);
      };
      let sub;
      // Per-event stage times (ledger): when Kafka acknowledged it, when the handler got it,
      // when its applyBatch call started and returned.
      const acked = new Map<string, number>();
      const received = new Map<string, number>();
      const applyStart = new Map<string, number>();
      const applyEnd = new Map<string, number>();
      let drop: (() => Promise<void>) | undefined;
      /** applyBatch calls the ledger consumer made (one per partition batch before ApplyCoalescer) */
      let storeCalls = 0;
      if (which === 'ledger') {
        const store = new RedisBalanceStore({ redis, prefix: `${redisPrefix}lat:`, requireReady: true });
        await store.load({ balances: new Map(), ledgerEntries: new Map() });
        const timedStore = new Proxy(store, {
          get(target, prop) {
            if (prop === 'applyBatch') {
              return async (items: BatchItem[], opts?: { balanceAfter?: boolean }) => {
                const s = wall();
                storeCalls++;
                for (const it of items) if (!applyStart.has(it.event.event_id)) applyStart.set(it.event.event_id, s);
                const out = await target.applyBatch(items, opts);
                const e = wall();
                for (const it of items) applyEnd.set(it.event.event_id, e);
                return out;
              };
            }
            const v = Reflect.get(target, prop) as unknown;
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        });
        const timedLog = new Proxy(kafkaLog, {
          get(target, prop) {
            if (prop === 'subscribe') {
              return (options: SubscribeOptions) => target.subscribe({
                ...options,
                handler: (batch) => {
                  const at = wall();
                  for (const e of batch) received.set(e.event.event_id, at);
                  return options.handler(batch);
                },
              });
            }
            const v = Reflect.get(target, prop) as unknown;
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        });
        sub = await startLedgerConsumer({ log: timedLog, balances: timedStore, keys: new MemoryKeyDirectory(), group: `bench-lat-ledger-${id}`, onApplied: seen,
          ...(o.coalesce !== undefined ? { coalesceMaxEvents: o.coalesce } : {}) });
      } else {
        const opened = await openWarehouse(kind!, `cl_${id}`);
        drop = opened.drop;
        sub = await startWarehouseSink({ log: kafkaLog, warehouse: opened.warehouse, flushMs: 500, group: `bench-lat-warehouse-${kind}-${id}`, onFlushed: seen });
      }
      // Fresh topics (no backlog); the group gets its partitions assigned, then the paced phase.
      await sleep(3000);
      const total = o.rate * o.seconds;
      const loopDelay = monitorEventLoopDelay({ resolution: 5 });
      loopDelay.enable();
      const pace = { rate: o.rate, seconds: o.seconds, base: o.events, accounts: o.accounts, eventVersion, compression };
      // As deployed, gateways publish from their own processes: the publisher runs in a child
      // process, so this process's CPU and event-loop delay are the consumer's alone.
      const cpuBefore = process.cpuUsage();
      const services = localServicePids();
      const redisCpu0 = cpuSeconds(services.redis);
      const kafkaCpu0 = cpuSeconds(services.kafka);
      await publishFromChild({ brokers: kafkaUrl, topicPrefix: `${topicPrefix}lat-${which}${kind ? `-${kind}` : ''}.`, ...pace }, published, acked);
      const deadline = performance.now() + 60_000;
      const doneCount = () => { let n = 0; for (const eid of published.keys()) if (doneAt.has(eid)) n++; return n; };
      while (doneCount() < total && performance.now() < deadline) await sleep(50);
      const cpuUsed = process.cpuUsage(cpuBefore);
      const redisCpu1 = cpuSeconds(services.redis);
      const kafkaCpu1 = cpuSeconds(services.kafka);
      loopDelay.disable();
      const lat: number[] = [];
      for (const [eid, t] of doneAt) {
        const p = published.get(eid);
        if (p !== undefined) lat.push(t - p);
      }
      await sub.stop();
      await drop?.();
      const l = lat.sort((a, b) => a - b);
      const f: LatencyFigure = { group: which, ...(kind ? { warehouse: kind } : {}), rate: o.rate, events: l.length, p50Ms: percentile(l, 50), p99Ms: percentile(l, 99), maxMs: l.at(-1) ?? NaN,
        cpuUsPerEvent: (cpuUsed.user + cpuUsed.system) / Math.max(1, l.length),
        ...(redisCpu0 !== undefined && redisCpu1 !== undefined ? { redisCpuUsPerEvent: ((redisCpu1 - redisCpu0) * 1e6) / Math.max(1, l.length) } : {}),
        ...(kafkaCpu0 !== undefined && kafkaCpu1 !== undefined ? { kafkaCpuUsPerEvent: ((kafkaCpu1 - kafkaCpu0) * 1e6) / Math.max(1, l.length) } : {}),
        ...(which === 'ledger' ? { eventsPerStoreCall: l.length / Math.max(1, storeCalls) } : {}) };
      if (which === 'ledger') {
        const stage = (from: Map<string, number>, to: Map<string, number>) => {
          const d: number[] = [];
          for (const [eid, t] of to) {
            const s = from.get(eid);
            if (s !== undefined) d.push(Math.max(0, t - s));
          }
          d.sort((a, b) => a - b);
          return { p50Ms: percentile(d, 50), p99Ms: percentile(d, 99), maxMs: d.at(-1) ?? NaN };
        };
        f.stages = {
          produce: stage(published, acked), fetch: stage(acked, received), decode: stage(received, applyStart),
          redis: stage(applyStart, applyEnd), after: stage(applyEnd, doneAt),
        };
      }
      result.latency.push(f);
      log(`  ${which === 'ledger' ? 'event-to-balance  ' : `event-to-queryable (${kind})`} at ${o.rate}/s: p50 ${f.p50Ms.toFixed(1)} ms, p99 ${f.p99Ms.toFixed(1)} ms, max ${f.maxMs.toFixed(1)} ms (${f.events} of ${total} events)`);
      log(`    CPU µs per event: the consumer ${f.cpuUsPerEvent!.toFixed(0)}${f.redisCpuUsPerEvent !== undefined ? `, Redis ${f.redisCpuUsPerEvent.toFixed(0)}` : ''}${f.kafkaCpuUsPerEvent !== undefined ? `, Kafka ${f.kafkaCpuUsPerEvent.toFixed(0)}` : ''}${f.eventsPerStoreCall !== undefined ? `; ${f.eventsPerStoreCall.toFixed(1)} events per store call` : ''}`);
      f.loopDelayP99Ms = loopDelay.percentile(99) / 1e6;
      f.loopDelayMaxMs = loopDelay.max / 1e6;
      log(`    event-loop delay of this process meanwhile (the consumer alone: the publisher is a child process): p99 ${f.loopDelayP99Ms.toFixed(1)} ms, max ${f.loopDelayMaxMs.toFixed(1)} ms`);
      if (f.stages) {
        log(`    by stage, p50 / p99 / max ms: ${Object.entries(f.stages).map(([k, v]) => `${k} ${v.p50Ms.toFixed(1)} / ${v.p99Ms.toFixed(1)} / ${v.maxMs.toFixed(1)}`).join(', ')}`);
      }
    }
    return result;
  } finally {
    await kafkaLog.close().catch(() => {});
    for (const l of latencyLogs) await l.close().catch(() => {});
    const admin = kafka.admin();
    try {
      await admin.connect();
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(topicPrefix));
      if (topics.length) await admin.deleteTopics({ topics, timeout: 10_000 });
    } catch { /* best effort */ } finally { await admin.disconnect().catch(() => {}); }
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    redis.disconnect();
    for (const node of cluster?.nodes('master') ?? []) {
      let c = '0';
      do {
        const [next, keys] = await node.scan(c, 'MATCH', `${redisPrefix}*`, 'COUNT', 1000);
        if (keys.length) await keys.reduce((p, key) => p.del(key), node.pipeline()).exec();
        c = next;
      } while (c !== '0');
    }
    cluster?.disconnect();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

/**
 * The ClickHouse server's pid: CLICKHOUSE_PID, else the pid file deploy/clickhouse.sh writes
 * (TOLLGATE_DEPLOY_DIR, then this checkout's .deploy), else `pgrep -f
 * server.py`; undefined when none names a live process.
 */
export function clickHousePid(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const live = (n: number) => Number.isInteger(n) && n > 0 && existsSync(`/proc/${n}/stat`);
  if (env.CLICKHOUSE_PID && live(Number(env.CLICKHOUSE_PID))) return Number(env.CLICKHOUSE_PID);
  const here = join(import.meta.dirname, '..', '.deploy');
  for (const dir of [env.TOLLGATE_DEPLOY_DIR, here]) {
    if (!dir || !existsSync(join(dir, 'clickhouse'))) continue;
    for (const f of readdirSync(join(dir, 'clickhouse')).filter((n) => n.endsWith('.pid'))) {
      const n = Number(readFileSync(join(dir, 'clickhouse', f), 'utf8').trim());
      if (live(n)) return n;
    }
  }
  try {
    const n = Number(execFileSync('pgrep', ['-f', 'server.py'], { encoding: 'utf8' }).split('\n')[0]);
    return live(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

let clockTicks: number | undefined;
/** CPU-seconds (user + system, all threads, waited-for children) of process `pid` so far; undefined when it is gone. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is [0], utime [11], stime [12], cutime [13], cstime [14].
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    return (f[11]! + f[12]! + f[13]! + f[14]!) / clockTicks;
  } catch {
    return undefined;
  }
}

const CONSUMERS_USAGE = `Usage: node bench/consumers.ts [options]   (also a section of npm run bench)

Consumer throughput per process and event-to-effect latency: the ledger group (Kafka -> Redis)
and the warehouse group (Kafka -> ClickHouse server or chDB) run in this process with the real
consumer code on fresh topics, Redis key prefix and warehouse database, removed at the end.
Needs Kafka and Redis. Each group first drains --events events (throughput), then follows
--rate events/s for --seconds (latency). See bench/README.md "The consumer groups in one process".

Options:
  --events <n>        usage events produced for the throughput runs, 1 to 100000000
                      (default 1000000)
  --partitions <n>    partitions of the usage topic, 1 to 1024 (default 8)
  --accounts <n>      accounts the events are spread over, 1 to 10000000 (default 1000)
  --rate <n>          events/s of the latency phase, 0 to 1000000 (default 5000; 0 skips the phase)
  --seconds <s>       duration of the latency phase, 0 to 3600 seconds (default 20; 0 skips
                      the phase)
  --modes <a,b>       ledger consumer paths: per-event, batch, cluster (Redis Cluster, ledger
                      only) (default per-event,batch)
  --groups <a,b>      consumer groups: ledger, warehouse (default ledger,warehouse)
  --warehouse <a,b>   where the warehouse group inserts: chdb, server (default both when a
                      ClickHouse server answers, else chdb)
  --sink-batch <a,b>  one warehouse throughput run per sink batch size, 1 to 10000000 events
                      (default: the sink's own; given, the latency phase is skipped; a value
                      given twice is run twice)
  --sink-inserts <a,b>  one warehouse throughput run per concurrent inserts count, 1 to 64
                      (default: the sink's own; given, the latency phase is skipped; a value
                      given twice is run twice)
  --event-version <n> usage events of version 2 (as gateways publish them now: unit prices,
                      price version, served model) or 1 (as before issue 7; what runs before
                      2026-12-01 night measured) (default 2)
  --compression <c>   the codec the events are produced with, as KAFKA_COMPRESSION: gzip,
                      zstd, none (default gzip; runs before 2026-12-02 used kafkajs' own
                      gzip, the run of 2026-12-02 early zstd)
  --holds <h>         the ledger runs: seeded (each event's hold is outstanding, as its gateway
                      left it, and the apply closes it, as in production) or none (no hold to
                      close: what runs before 2026-12-03 measured) (default seeded)
  --ledger-members <a,b>  one ledger throughput run per count of ledger group members in this
                      process (what LEDGER_CONSUMERS starts in an aggregator), 1 to 64 (default
                      1; the latency phase always runs with 1). The first drain of a process
                      runs cold (JIT, connections): compare counts over 500000 events or more
                      and in both orders
  --coalesce <n>      the ledger runs: most events per store call when the partitions' batches
                      of a turn are merged into one, 1 to 100000; 1 is one call per partition
                      batch, as before 2026-12-04 (default: the consumer's own, 1000)
  -h, --help          show this help

Progress and the figures as they are measured go to stderr; the result (JSON, one line) to stdout.
A run's label is its group and path (ledger-batch, warehouse-server, …), then -m<n> for n ledger
members, -b/-i/-p<n> for a sink batch / inserts / partition batch given, -r<n> for a value given
again (its n-th run).

Environment:
  KAFKA_BROKERS, REDIS_URL   Kafka and Redis (default 127.0.0.1:9092, redis://127.0.0.1:6379)
  CLICKHOUSE_URL             the ClickHouse server for --warehouse server (default
                             http://127.0.0.1:8123 when it answers /ping)
  REDIS_CLUSTER_NODES        host:port,... of the Redis Cluster for --modes cluster (default
                             the one of bash deploy/redis-cluster.sh)
  TOLLGATE_TEST_SERVICES     none: look for no service at its default address (the run then needs
                             KAFKA_BROKERS and REDIS_URL), as the tests do
  TOLLGATE_DEPLOY_DIR        where deploy/services.sh keeps its state (default .deploy): the Kafka,
                             Redis and ClickHouse pid files read for their CPU time
  CLICKHOUSE_PID             the server's pid, for its CPU time (default the pid file under
                             TOLLGATE_DEPLOY_DIR, else the process whose command line has
                             server.py, found by pgrep: on a machine running two servers, set it)
  BENCH_CPU_PROF             a directory: a V8 CPU profile of each drain, ledger or warehouse (this
                             process, the drain's window alone) is written there; read it with
                             node bench/profiles/summarize.ts <file>

Example:
  node bench/consumers.ts --groups warehouse --events 200000 --warehouse server > result.json

Exit status: 0 done, 1 the run failed (a service missing or a check failed), 2 bad usage.`;

if (import.meta.main && process.argv[2] === '--publisher') {
  await publisherMain(process.argv[3]!);
  process.exit(0);
} else if (import.meta.main) {
  const { values } = commandLine({ name: 'bench/consumers', usage: CONSUMERS_USAGE, options: {
    events: { type: 'string' }, partitions: { type: 'string' },
    accounts: { type: 'string' }, rate: { type: 'string' },
    seconds: { type: 'string' }, modes: { type: 'string' },
    groups: { type: 'string' },
    warehouse: { type: 'string' }, 'sink-batch': { type: 'string' }, 'sink-inserts': { type: 'string' },
    'event-version': { type: 'string' }, compression: { type: 'string' }, holds: { type: 'string' },
    coalesce: { type: 'string' }, 'ledger-members': { type: 'string' },
  } });
  runMain('bench/consumers', async () => {
    const o: ConsumerBenchOptions = {
      events: numberValue('--events', values.events, 1_000_000, { min: 1, max: 100_000_000, integer: true }),
      partitions: numberValue('--partitions', values.partitions, 8, { min: 1, max: 1024, integer: true }),
      accounts: numberValue('--accounts', values.accounts, 1000, { min: 1, max: 10_000_000, integer: true }),
      rate: numberValue('--rate', values.rate, 5000, { min: 0, max: 1_000_000, integer: true }),
      seconds: numberValue('--seconds', values.seconds, 20, { min: 0, max: 3600 }),
      modes: choiceList('--modes', values.modes ?? 'per-event,batch', ['per-event', 'batch', 'cluster'] as const),
      groups: choiceList('--groups', values.groups ?? 'ledger,warehouse', ['ledger', 'warehouse'] as const),
      ...(values['sink-inserts'] !== undefined ? { sinkInserts: numberList('--sink-inserts', values['sink-inserts'], { min: 1, max: 64, integer: true }) } : {}),
      ...(values['sink-batch'] !== undefined ? { sinkBatches: numberList('--sink-batch', values['sink-batch'], { min: 1, max: 10_000_000, integer: true }) } : {}),
      ...(values['ledger-members'] !== undefined ? { ledgerMembers: numberList('--ledger-members', values['ledger-members'], { min: 1, max: 64, integer: true }) } : {}),
      ...(values.warehouse !== undefined ? { warehouses: choiceList('--warehouse', values.warehouse, ['chdb', 'server'] as const) } : {}),
      eventVersion: numberValue('--event-version', values['event-version'], 2, { min: 1, max: 2, integer: true }) as 1 | 2,
      compression: oneChoice('--compression', values.compression ?? 'gzip', KAFKA_COMPRESSIONS),
      holds: oneChoice('--holds', values.holds ?? 'seeded', ['seeded', 'none'] as const),
      ...(values.coalesce !== undefined ? { coalesce: numberValue('--coalesce', values.coalesce, 1000, { min: 1, max: 100_000, integer: true }) } : {}),
    };
    // The figures as they come are progress (stderr); the result is the JSON line on stdout.
    const r = await measureConsumerGroups(o, (line) => process.stderr.write(`${line}\n`));
    process.stdout.write(`${JSON.stringify(r)}\n`);
    const inexact = r.throughput.filter((f) => !f.exact);
    if (inexact.length > 0) process.stderr.write(`bench/consumers: failed: effects not exact in ${inexact.map((f) => `${f.group} ${f.mode}${f.warehouse ? ` (${f.warehouse})` : ''}`).join(', ')}\n`);
    return inexact.length > 0 ? 1 : 0;
  });
}

/**
 * Waits for a throughput run's `finished`, but fails it (Error naming the run and how far it
 * got) once no event was applied for STALL_MS: a run that stopped making progress would
 * otherwise wait forever (a consumer that crashed, a group that found nothing left to read).
 */
/**
 * With BENCH_CPU_PROF=<dir>, for a drain (ledger or warehouse): starts a V8 CPU profile of this process (node:inspector) and
 * returns the function that stops it and writes <dir>/<tag>-<epoch ms>.cpuprofile: the drain's
 * window alone, not the produce before it (read it with bench/profiles/summarize.ts).
 */
async function startDrainProfile(): Promise<((tag: string) => Promise<void>) | undefined> {
  const dir = process.env.BENCH_CPU_PROF;
  if (!dir) return undefined;
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async (tag) => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    const { mkdirSync, writeFileSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${tag}-${Date.now()}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    process.stderr.write(`  cpu profile of the drain: ${file}\n`);
  };
}

async function drained(finished: Promise<void>, applied: () => number, events: number, tag: string): Promise<void> {
  let last = applied();
  let lastAt = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      const now = applied();
      if (now !== last) { last = now; lastAt = performance.now(); return; }
      if (performance.now() - lastAt > STALL_MS) reject(new Error(`${tag}: no event applied for ${STALL_MS / 1000} s (${now} of ${events})`));
    }, 1000);
  });
  try {
    await Promise.race([finished, stalled]);
  } finally {
    clearInterval(timer);
  }
}

/** How long a throughput run may apply nothing before it fails (ms). */
const STALL_MS = 120_000;
