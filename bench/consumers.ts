// Consumer throughput per process and event-to-effect latency (issue 11, outcome 2): the ledger
// group (Kafka → Redis) and the warehouse group (Kafka → chDB), each run in THIS process with
// the real consumer code (`startLedgerConsumer`, `startWarehouseSink`) on the real KafkaLog, so
// the figure is what one consumer process moves. Kafka and Redis as the test suites find them;
// every run uses its own topic prefix, Redis key prefix and chDB directory, removed at the end.
//
//   node bench/consumers.ts [--events 1000000] [--partitions 8] [--accounts 1000]
//                           [--rate 5000] [--seconds 20] [--modes per-event,batch] [--groups ledger,warehouse]
//
// `per-event` is the ledger consumer as it was before batching, rebuilt faithfully: one
// applyUsage script call (one round trip) per event, awaited in order. `batch` is the current
// path (`applyBatch`: one script call per partition batch). `cluster` (ledger only, not in the
// default modes) is `batch` with the store on the Redis Cluster of REDIS_CLUSTER_NODES (or
// deploy/redis-cluster.sh): its Cluster layout, one script call per account of a batch.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { Cluster, Redis } from 'ioredis';
import { KafkaLog, type ConsumedEvent, type PublishedEvent } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore, type BalanceStore, type BatchItem, type BatchOutcome } from '@tollgate/ledger';
import { createChdbClickHouse, Warehouse } from '@tollgate/warehouse';
import { startLedgerConsumer, startWarehouseSink } from '@tollgate/aggregator';
import { findKafka, findRedis, findRedisCluster } from '../test/support/services.ts';
import { usageEvent } from './stack.ts';

export interface ConsumerBenchOptions {
  events: number;
  partitions: number;
  accounts: number;
  /** events/s of the latency phase, and how long it lasts */
  rate: number;
  seconds: number;
  modes: Array<'per-event' | 'batch' | 'cluster'>;
  groups: Array<'ledger' | 'warehouse'>;
}

export interface ThroughputFigure {
  group: 'ledger' | 'warehouse';
  mode: 'per-event' | 'batch' | 'cluster';
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
  /** warehouse only: share of the wall time inside storeEvents (decode + rows + rollup_skip query + insert) */
  storeShare?: number;
  /** warehouse only: share of the wall time in the rollup_skip SELECT, and in the INSERT */
  selectShare?: number;
  insertShare?: number;
}

export interface LatencyFigure {
  group: 'ledger' | 'warehouse';
  rate: number;
  events: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface ConsumerBenchResult {
  produceEventsPerS: number;
  throughput: ThroughputFigure[];
  latency: LatencyFigure[];
}

type Log = (line: string) => void;

/**
 * The ledger consumer before batching: every event its own applyUsage call, in order (what
 * `startLedgerConsumer` did per event until issue 11). Everything else is the store's own.
 */
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

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs the whole consumer bench; cleans up its topics, keys and chDB directory whatever happens. */
export async function measureConsumerGroups(o: ConsumerBenchOptions, log: Log): Promise<ConsumerBenchResult> {
  const [kafkaUrl, redisUrl] = await Promise.all([findKafka(), findRedis()]);
  if (!kafkaUrl || !redisUrl) throw new Error(`consumer bench needs Kafka and Redis (found kafka=${kafkaUrl} redis=${redisUrl})`);
  const id = randomUUID().slice(0, 8);
  const topicPrefix = `bench-cons-${id}.`;
  const redisPrefix = `bench:cons:${id}:`;
  const kafka = new Kafka({ clientId: `tollgate-bench-cons-${id}`, brokers: kafkaUrl.split(','), logLevel: logLevel.NOTHING });
  const dirs: string[] = [];
  const tmp = (name: string) => { const d = mkdtempSync(join(tmpdir(), `tollgate-bench-${name}-`)); dirs.push(d); return d; };
  const quiet = { warn: () => {}, error: () => {} };
  const kafkaLog = new KafkaLog({ kafka, topicPrefix, spoolDir: tmp('spool'), logger: quiet });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  let cluster: Cluster | undefined;
  const chdbPath = tmp('chdb');
  const result: ConsumerBenchResult = { produceEventsPerS: 0, throughput: [], latency: [] };
  const latencyLogs: KafkaLog[] = [];
  try {
    await kafkaLog.ensureTopics(o.partitions);
    // 1. The backlog: o.events usage events, published as gateways do (spool, then Kafka).
    const now = Date.now();
    let cost = 0n;
    let t0 = performance.now();
    const CHUNK = 2000;
    for (let i = 0; i < o.events; i += CHUNK * 10) {
      const waits: Promise<void>[] = [];
      for (let j = i; j < Math.min(o.events, i + CHUNK * 10); j += CHUNK) {
        const events: PublishedEvent[] = [];
        for (let k = j; k < Math.min(o.events, j + CHUNK); k++) {
          const e = usageEvent(k, o.accounts, now - 3600_000 + Math.floor(k * 3600_000 / o.events));
          cost += BigInt(e.cost_micros);
          events.push({ event: e });
        }
        waits.push(kafkaLog.publish('usage', events));
      }
      await Promise.all(waits);
      if ((i / (CHUNK * 10)) % 10 === 0) log(`  produce ${i + CHUNK * 10} / ${o.events}`);
    }
    await kafkaLog.flush();
    result.produceEventsPerS = o.events / ((performance.now() - t0) / 1000);
    log(`bench consumers: ${o.events} usage events on ${o.partitions} partitions (${o.accounts} accounts) produced at ${result.produceEventsPerS.toFixed(0)} events/s`);

    // 2. Throughput: each group drains the backlog alone, from offset 0, in this process.
    for (const group of o.groups) {
      for (const mode of group === 'ledger' ? o.modes : ['batch' as const]) {
        const tag = `${group}-${mode}`;
        let applied = 0;
        let done!: () => void;
        const finished = new Promise<void>((r) => { done = r; });
        const count = (batch: ConsumedEvent[]) => { applied += batch.length; if (applied >= o.events) done(); };
        let storeMs = 0;
        let selectMs = 0;
        let insertMs = 0;
        let exact = false;
        t0 = performance.now();
        let cpu0 = process.cpuUsage();
        const cpuSeconds = () => { const c = process.cpuUsage(cpu0); return (c.user + c.system) / 1e6; };
        if (group === 'ledger') {
          if (mode === 'cluster' && !cluster) {
            const nodes = await findRedisCluster();
            if (!nodes) throw new Error('mode cluster needs a Redis Cluster (REDIS_CLUSTER_NODES or bash deploy/redis-cluster.sh start)');
            cluster = new Cluster(nodes.split(',').map((n) => ({ host: n.split(':')[0]!, port: Number(n.split(':')[1]) })), { redisOptions: { maxRetriesPerRequest: 2 } });
          }
          const real = new RedisBalanceStore({ redis: mode === 'cluster' ? cluster! : redis, prefix: `${redisPrefix}${tag}:`, requireReady: true });
          await real.load({ balances: new Map(), ledgerEntries: new Map() });
          const balances = mode === 'per-event' ? perEventStore(real) : real;
          t0 = performance.now();
          cpu0 = process.cpuUsage();
          const sub = await startLedgerConsumer({ log: kafkaLog, balances, keys: new MemoryKeyDirectory(), group: `bench-${tag}`, onApplied: count });
          await finished;
          const seconds = (performance.now() - t0) / 1000;
          const cpu = cpuSeconds();
          await sub.stop();
          let sum = 0n;
          for (const b of (await real.balances()).values()) sum += b;
          exact = sum === -cost;
          result.throughput.push({ group, mode, events: o.events, seconds, eventsPerS: o.events / seconds, eventsPerCpuS: o.events / cpu, exact });
        } else {
          // Timed at the client: the rollup_skip existence query (a SELECT) and the INSERT.
          const client = createChdbClickHouse({ path: chdbPath });
          const timed = <K extends 'query' | 'insert'>(name: K, add: (ms: number) => void) => {
            const original = client[name].bind(client) as (...a: unknown[]) => Promise<unknown>;
            (client as unknown as Record<string, unknown>)[name] = async (...a: unknown[]) => {
              const s = performance.now();
              try { return await original(...a); } finally { add(performance.now() - s); }
            };
          };
          timed('query', (ms) => { selectMs += ms; });
          timed('insert', (ms) => { insertMs += ms; });
          const warehouse = new Warehouse({ client, tablePrefix: `cb_${id.replace(/-/g, '')}_` });
          await warehouse.migrate();
          const storeEvents = warehouse.storeEvents.bind(warehouse);
          warehouse.storeEvents = async (items, g) => {
            const s = performance.now();
            try { return await storeEvents(items, g); } finally { storeMs += performance.now() - s; }
          };
          t0 = performance.now();
          cpu0 = process.cpuUsage();
          const sub = await startWarehouseSink({ log: kafkaLog, warehouse, flushMs: 500, group: `bench-${tag}`, onFlushed: count });
          await finished;
          const seconds = (performance.now() - t0) / 1000;
          const cpu = cpuSeconds();
          await sub.stop();
          const totals = await warehouse.usageTotals();
          exact = totals.requests === o.events && totals.costMicros === cost;
          result.throughput.push({ group, mode, events: o.events, seconds, eventsPerS: o.events / seconds, eventsPerCpuS: o.events / cpu, exact, storeShare: storeMs / 1000 / seconds,
            selectShare: selectMs / 1000 / seconds, insertShare: insertMs / 1000 / seconds });
          await warehouse.close();
        }
        const f = result.throughput.at(-1)!;
        log(`  ${tag.padEnd(18)} ${f.eventsPerS.toFixed(0).padStart(7)} events/s, ${f.eventsPerCpuS.toFixed(0).padStart(7)} events per CPU-second  (${f.seconds.toFixed(1)} s, exact: ${f.exact}${f.storeShare !== undefined ? `, ${(f.storeShare * 100).toFixed(0)}% in storeEvents: ${(f.selectShare! * 100).toFixed(0)}% rollup_skip query, ${(f.insertShare! * 100).toFixed(0)}% insert` : ''})`);
      }
    }

    // 3. Latency at a steady rate, one group at a time (as deployed: AGGREGATOR_GROUPS splits
    // them into processes; chDB's calls run on the calling thread and would stall a ledger
    // sharing the process): events published at o.rate/s on fresh topics; each event's publish
    // time against the moment its effect is done (the balance script returned / the warehouse
    // insert returned, after which a query sees the row).
    for (const which of o.rate > 0 && o.seconds > 0 ? o.groups : []) {
      const kafkaLog = new KafkaLog({ kafka, topicPrefix: `${topicPrefix}lat-${which}.`, spoolDir: tmp('spool-lat'), logger: quiet });
      latencyLogs.push(kafkaLog);
      await kafkaLog.ensureTopics(o.partitions);
      const published = new Map<string, number>();
      const lat: number[] = [];
      const seen = (batch: ConsumedEvent[]) => {
        const at = performance.now();
        for (const e of batch) {
          const p = published.get(e.event.event_id);
          if (p !== undefined) lat.push(at - p);
        }
      };
      let sub;
      let warehouse: Warehouse | undefined;
      if (which === 'ledger') {
        const store = new RedisBalanceStore({ redis, prefix: `${redisPrefix}lat:`, requireReady: true });
        await store.load({ balances: new Map(), ledgerEntries: new Map() });
        sub = await startLedgerConsumer({ log: kafkaLog, balances: store, keys: new MemoryKeyDirectory(), group: `bench-lat-ledger-${id}`, onApplied: seen });
      } else {
        warehouse = new Warehouse({ client: createChdbClickHouse({ path: chdbPath }), tablePrefix: `cl_${id.replace(/-/g, '')}_` });
        await warehouse.migrate();
        sub = await startWarehouseSink({ log: kafkaLog, warehouse, flushMs: 500, group: `bench-lat-warehouse-${id}`, onFlushed: seen });
      }
      // Fresh topics (no backlog); the group gets its partitions assigned, then the paced phase.
      await sleep(3000);
      const total = o.rate * o.seconds;
      const tickMs = 10;
      const perTick = Math.max(1, Math.round((o.rate * tickMs) / 1000));
      const start = performance.now();
      let sent = 0;
      while (sent < total) {
        const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * o.rate) + perTick);
        const batch: PublishedEvent[] = [];
        for (; sent < due; sent++) {
          const e = usageEvent(o.events + sent, o.accounts, Date.now());
          published.set(e.event_id, performance.now());
          batch.push({ event: e });
        }
        // Each gateway request publishes its own event; grouping one tick's worth is the
        // KafkaLog's linger doing what it does for concurrent requests anyway.
        if (batch.length) void kafkaLog.publish('usage', batch);
        await sleep(tickMs);
      }
      const deadline = performance.now() + 60_000;
      while (lat.length < total && performance.now() < deadline) await sleep(50);
      await sub.stop();
      await warehouse?.close();
      const l = lat.sort((a, b) => a - b);
      const f: LatencyFigure = { group: which, rate: o.rate, events: l.length, p50Ms: percentile(l, 50), p99Ms: percentile(l, 99), maxMs: l.at(-1) ?? NaN };
      result.latency.push(f);
      log(`  ${which === 'ledger' ? 'event-to-balance  ' : 'event-to-queryable'} at ${o.rate}/s: p50 ${f.p50Ms.toFixed(1)} ms, p99 ${f.p99Ms.toFixed(1)} ms, max ${f.maxMs.toFixed(1)} ms (${f.events} of ${total} events)`);
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

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '1000000' }, partitions: { type: 'string', default: '8' },
      accounts: { type: 'string', default: '1000' }, rate: { type: 'string', default: '5000' },
      seconds: { type: 'string', default: '20' }, modes: { type: 'string', default: 'per-event,batch' },
      groups: { type: 'string', default: 'ledger,warehouse' },
    },
  });
  const r = await measureConsumerGroups({
    events: Number(values.events), partitions: Number(values.partitions), accounts: Number(values.accounts),
    rate: Number(values.rate), seconds: Number(values.seconds),
    modes: values.modes.split(',') as ConsumerBenchOptions['modes'], groups: values.groups.split(',') as ConsumerBenchOptions['groups'],
  }, (line) => console.log(line));
  console.log(JSON.stringify(r));
  process.exit(0);
}
