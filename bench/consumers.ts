// Consumer throughput per process and event-to-effect latency (issue 11, outcome 2): the ledger
// group (Kafka → Redis) and the warehouse group (Kafka → chDB), each run in THIS process with
// the real consumer code (`startLedgerConsumer`, `startWarehouseSink`) on the real KafkaLog, so
// the figure is what one consumer process moves. Kafka and Redis as the test suites find them;
// every run uses its own topic prefix, Redis key prefix and chDB directory, removed at the end.
//
//   node bench/consumers.ts [--events 1000000] [--partitions 8] [--accounts 1000]
//                           [--rate 5000] [--seconds 20] [--modes per-event,batch] [--groups ledger,warehouse]
//                           [--warehouse chdb|server|chdb,server] [--sink-batch 1000,20000]
//                           [--sink-inserts 1,2]
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
// path (`applyBatch`: one script call per partition batch).
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';
import { KafkaLog, type ConsumedEvent, type PublishedEvent } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore, type BalanceStore, type BatchItem, type BatchOutcome } from '@tollgate/ledger';
import { createChdbClickHouse, createHttpClickHouse, Warehouse } from '@tollgate/warehouse';
import { startLedgerConsumer, startWarehouseSink } from '@tollgate/aggregator';
import { findClickHouse, findKafka, findRedis } from '../test/support/services.ts';
import { usageEvent } from './stack.ts';

export interface ConsumerBenchOptions {
  events: number;
  partitions: number;
  accounts: number;
  /** events/s of the latency phase, and how long it lasts */
  rate: number;
  seconds: number;
  modes: Array<'per-event' | 'batch'>;
  groups: Array<'ledger' | 'warehouse'>;
  /** where the warehouse group inserts (default: both when a ClickHouse server answers, else chdb) */
  warehouses?: WarehouseKind[];
  /** warehouse sink `batchSize`s to run, one throughput run each (default: the sink's own default) */
  sinkBatches?: number[];
  /** warehouse sink `concurrentInserts` to run, one throughput run each (default: the sink's own default) */
  sinkInserts?: number[];
}

/** `chdb`: the embedded engine in this process; `server`: a ClickHouse server over HTTP. */
export type WarehouseKind = 'chdb' | 'server';

export interface ThroughputFigure {
  group: 'ledger' | 'warehouse';
  mode: 'per-event' | 'batch';
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
  const kafkaLog = new KafkaLog({ kafka, topicPrefix, spoolDir: tmp('spool'), logger: quiet });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
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
    const runs: Array<{ group: 'ledger' | 'warehouse'; mode: 'per-event' | 'batch'; kind?: WarehouseKind; sinkBatch?: number; sinkInserts?: number }> = [];
    for (const group of o.groups) {
      if (group === 'ledger') for (const mode of o.modes) runs.push({ group, mode });
      else {
        for (const kind of kinds) {
          for (const sinkBatch of o.sinkBatches ?? [undefined]) {
            for (const sinkInserts of o.sinkInserts ?? [undefined]) runs.push({ group, mode: 'batch', kind, ...(sinkBatch ? { sinkBatch } : {}), ...(sinkInserts ? { sinkInserts } : {}) });
          }
        }
      }
    }
    {
      for (const { group, mode, kind, sinkBatch, sinkInserts } of runs) {
        const tag = kind === undefined ? `${group}-${mode}` : `${group}-${kind}${sinkBatch ? `-b${sinkBatch}` : ''}${sinkInserts ? `-i${sinkInserts}` : ''}`;
        let applied = 0;
        let done!: () => void;
        const finished = new Promise<void>((r) => { done = r; });
        const count = (batch: ConsumedEvent[]) => { applied += batch.length; if (applied >= o.events) done(); };
        let storeMs = 0;
        let inserts = 0;
        let selectMs = 0;
        let insertMs = 0;
        let exact = false;
        t0 = performance.now();
        let cpu0 = process.cpuUsage();
        const cpuSeconds = () => { const c = process.cpuUsage(cpu0); return (c.user + c.system) / 1e6; };
        if (group === 'ledger') {
          const real = new RedisBalanceStore({ redis, prefix: `${redisPrefix}${tag}:`, requireReady: true });
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
          const { warehouse, client, drop } = await openWarehouse(kind!, `cb_${id}_${sinkBatch ?? 0}_${sinkInserts ?? 0}`);
          const timed = <K extends 'query' | 'insert'>(name: K, add: (ms: number) => void) => {
            const original = client[name].bind(client) as (...a: unknown[]) => Promise<unknown>;
            (client as unknown as Record<string, unknown>)[name] = async (...a: unknown[]) => {
              const s = performance.now();
              try { return await original(...a); } finally { add(performance.now() - s); }
            };
          };
          timed('query', (ms) => { selectMs += ms; });
          timed('insert', (ms) => { insertMs += ms; });
          const storeEvents = warehouse.storeEvents.bind(warehouse);
          warehouse.storeEvents = async (items, g) => {
            inserts++;
            const s = performance.now();
            try { return await storeEvents(items, g); } finally { storeMs += performance.now() - s; }
          };
          const pid = kind === 'server' ? clickHousePid() : undefined;
          const server0 = pid === undefined ? undefined : processCpuSeconds(pid);
          t0 = performance.now();
          cpu0 = process.cpuUsage();
          const sub = await startWarehouseSink({ log: kafkaLog, warehouse, flushMs: 500, group: `bench-${tag}`, onFlushed: count,
            ...(sinkBatch ? { batchSize: sinkBatch } : {}), ...(sinkInserts ? { concurrentInserts: sinkInserts } : {}) });
          await finished;
          const seconds = (performance.now() - t0) / 1000;
          const cpu = cpuSeconds();
          const server1 = pid === undefined ? undefined : processCpuSeconds(pid);
          await sub.stop();
          const totals = await warehouse.usageTotals();
          exact = totals.requests === o.events && totals.costMicros === cost;
          result.throughput.push({ group, mode, warehouse: kind, events: o.events, seconds, eventsPerS: o.events / seconds, eventsPerCpuS: o.events / cpu, exact,
            ...(kind === 'server' ? { serverCpuS: server0 === undefined || server1 === undefined ? null : server1 - server0 } : {}),
            inserts, storeShare: storeMs / 1000 / seconds, selectShare: selectMs / 1000 / seconds, insertShare: insertMs / 1000 / seconds });
          await drop();
        }
        const f = result.throughput.at(-1)!;
        const server = f.serverCpuS === undefined ? ''
          : f.serverCpuS === null ? ', server CPU: pid not found'
          : `, server ${f.serverCpuS.toFixed(1)} CPU-s: ${(f.events / (f.events / f.eventsPerCpuS + f.serverCpuS)).toFixed(0)} events per CPU-second of consumer + server`;
        log(`  ${tag.padEnd(18)} ${f.eventsPerS.toFixed(0).padStart(7)} events/s, ${f.eventsPerCpuS.toFixed(0).padStart(7)} events per CPU-second  (${f.seconds.toFixed(1)} s, exact: ${f.exact}${f.storeShare !== undefined ? `, ${f.inserts} inserts of ${(f.events / f.inserts!).toFixed(0)} events, ${(f.storeShare * 100).toFixed(0)}% in storeEvents: ${(f.selectShare! * 100).toFixed(0)}% rollup_skip queries (summed), ${(f.insertShare! * 100).toFixed(0)}% insert` : ''}${server})`);
      }
    }

    // 3. Latency at a steady rate, one group at a time (as deployed: AGGREGATOR_GROUPS splits
    // them into processes; chDB's calls run on the calling thread and would stall a ledger
    // sharing the process): events published at o.rate/s on fresh topics; each event's publish
    // time against the moment its effect is done (the balance script returned / the warehouse
    // insert returned, after which a query sees the row).
    const latencyRuns = o.rate > 0 && o.seconds > 0 ? runs.filter((r) => r.mode === 'batch' && r.sinkBatch === undefined && r.sinkInserts === undefined) : [];
    for (const { group: which, kind } of latencyRuns) {
      const kafkaLog = new KafkaLog({ kafka, topicPrefix: `${topicPrefix}lat-${which}${kind ? `-${kind}` : ''}.`, spoolDir: tmp('spool-lat'), logger: quiet });
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
      let drop: (() => Promise<void>) | undefined;
      if (which === 'ledger') {
        const store = new RedisBalanceStore({ redis, prefix: `${redisPrefix}lat:`, requireReady: true });
        await store.load({ balances: new Map(), ledgerEntries: new Map() });
        sub = await startLedgerConsumer({ log: kafkaLog, balances: store, keys: new MemoryKeyDirectory(), group: `bench-lat-ledger-${id}`, onApplied: seen });
      } else {
        const opened = await openWarehouse(kind!, `cl_${id}`);
        drop = opened.drop;
        sub = await startWarehouseSink({ log: kafkaLog, warehouse: opened.warehouse, flushMs: 500, group: `bench-lat-warehouse-${kind}-${id}`, onFlushed: seen });
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
      await drop?.();
      const l = lat.sort((a, b) => a - b);
      const f: LatencyFigure = { group: which, ...(kind ? { warehouse: kind } : {}), rate: o.rate, events: l.length, p50Ms: percentile(l, 50), p99Ms: percentile(l, 99), maxMs: l.at(-1) ?? NaN };
      result.latency.push(f);
      log(`  ${which === 'ledger' ? 'event-to-balance  ' : `event-to-queryable (${kind})`} at ${o.rate}/s: p50 ${f.p50Ms.toFixed(1)} ms, p99 ${f.p99Ms.toFixed(1)} ms, max ${f.maxMs.toFixed(1)} ms (${f.events} of ${total} events)`);
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
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

/**
 * The ClickHouse server's pid: CLICKHOUSE_PID, else the pid file deploy/clickhouse.sh writes
 * (TOLLGATE_DEPLOY_DIR or /work/main/.deploy, then this checkout's .deploy), else `pgrep -f
 * server.py`; undefined when none names a live process.
 */
export function clickHousePid(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const live = (n: number) => Number.isInteger(n) && n > 0 && existsSync(`/proc/${n}/stat`);
  if (env.CLICKHOUSE_PID && live(Number(env.CLICKHOUSE_PID))) return Number(env.CLICKHOUSE_PID);
  const here = join(import.meta.dirname, '..', '.deploy');
  for (const dir of [env.TOLLGATE_DEPLOY_DIR, '/work/main/.deploy', here]) {
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

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '1000000' }, partitions: { type: 'string', default: '8' },
      accounts: { type: 'string', default: '1000' }, rate: { type: 'string', default: '5000' },
      seconds: { type: 'string', default: '20' }, modes: { type: 'string', default: 'per-event,batch' },
      groups: { type: 'string', default: 'ledger,warehouse' },
      warehouse: { type: 'string' }, 'sink-batch': { type: 'string' }, 'sink-inserts': { type: 'string' },
    },
  });
  const r = await measureConsumerGroups({
    events: Number(values.events), partitions: Number(values.partitions), accounts: Number(values.accounts),
    rate: Number(values.rate), seconds: Number(values.seconds),
    modes: values.modes.split(',') as ConsumerBenchOptions['modes'], groups: values.groups.split(',') as ConsumerBenchOptions['groups'],
    ...(values['sink-inserts'] ? { sinkInserts: values['sink-inserts'].split(',').map(Number) } : {}),
    ...(values['sink-batch'] ? { sinkBatches: values['sink-batch'].split(',').map(Number) } : {}),
    ...(values.warehouse ? { warehouses: values.warehouse.split(',') as WarehouseKind[] } : {}),
  }, (line) => console.log(line));
  console.log(JSON.stringify(r));
  process.exit(0);
}
