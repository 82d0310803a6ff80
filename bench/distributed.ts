// The distributed-mode figures of `npm run bench` (issue 3): consumer throughput per consumer
// process, event-to-balance and event-to-queryable lag, and what a distributed gateway needs
// from the machine. Real Kafka and Redis (the local ones from `bash deploy/services.sh up`, or
// KAFKA_BROKERS / REDIS_URL), each deployment under its own topic and key prefix, removed at
// the end. See bench/README.md.
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { KafkaLog, type PublishedEvent, type UsageEvent } from '@tollgate/events';
import { findKafka, findRedis, probeTcp } from '../test/support/services.ts';
import { summarize, type Summary } from './load.ts';
import { ADMIN_TOKEN, cpuSeconds, localServicePids, machineBusySeconds, startTollgate, type TollgateService } from './stack.ts';

/** As Tollgate's own default; set explicitly so that the environment cannot change the figures. */
export const WAREHOUSE_FLUSH_MS = 500;
export const KAFKA_PARTITIONS = 4;

export interface Services {
  kafka: string;
  redis: string;
}

/** Kafka and Redis as the test suites find them, or what is missing. */
export async function findServices(): Promise<Services | { missing: string[] }> {
  const [kafka, redis] = await Promise.all([findKafka(), findRedis()]);
  // Given in the environment, they are taken as given by the suites' lookup: check that
  // something answers there before saying so (the first broker; the Redis URL's host and port).
  const kafkaAt = kafka === undefined ? undefined : endpoint(`kafka://${kafka.split(',')[0]!.trim()}`, 9092);
  const redisAt = redis === undefined ? undefined : endpoint(redis, 6379);
  const [kafkaUp, redisUp] = await Promise.all([kafkaAt, redisAt].map((e) => (e ? probeTcp(e.host, e.port) : false)));
  if (kafka && redis && kafkaUp && redisUp) return { kafka, redis };
  // named by host and port only: the Redis URL may carry a password
  const why = (name: string, at: Endpoint | undefined, up: boolean | undefined, variable: string) =>
    up ? [] : [at === undefined ? `${name} not found` : `${name} at ${at.host}:${at.port} (${variable}) not answering`];
  return { missing: [...why('Kafka', kafkaAt, kafkaUp, 'KAFKA_BROKERS'), ...why('Redis', redisAt, redisUp, 'REDIS_URL')] };
}

interface Endpoint { host: string; port: number }

/** Host and port of a URL (`redis://[user:pass@]host[:port][/db]`, `kafka://host:port`), credentials left out; undefined when it is not one. */
function endpoint(url: string, defaultPort: number): Endpoint | undefined {
  try {
    const u = new URL(url);
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : defaultPort };
  } catch {
    return undefined;
  }
}

/** `host:port` of a Redis URL without its credentials, for logs and reports. */
export function redisHostPort(url: string): string {
  const e = endpoint(url, 6379);
  return e ? `${e.host}:${e.port}` : '(unparsable REDIS_URL)';
}

/** One distributed deployment: every process shares these prefixes, unique to this run. */
export interface Deployment {
  services: Services;
  topicPrefix: string;
  redisPrefix: string;
  env: Record<string, string>;
}

const RUN_ID = randomUUID().slice(0, 8);

/** deployments whose topics and keys are not removed yet (for Ctrl-C and failures) */
const live = new Set<Deployment>();
const removals = new Map<Deployment, Promise<void>>();

/** Removes what every deployment left in Kafka and Redis, waiting for removals under way; for Ctrl-C and failures. */
export async function removeAllDeployments(): Promise<void> {
  for (const d of live) void removeDeployment(d);
  await Promise.all(removals.values());
}

export function deployment(services: Services, tag: string): Deployment {
  const topicPrefix = `bench-${RUN_ID}-${tag}.`;
  const redisPrefix = `bench:${RUN_ID}:${tag}:`;
  const d: Deployment = {
    services, topicPrefix, redisPrefix,
    env: {
      KAFKA_BROKERS: services.kafka,
      REDIS_URL: services.redis,
      KAFKA_TOPIC_PREFIX: topicPrefix,
      KAFKA_CLIENT_ID: `tollgate-bench-${RUN_ID}`,
      KAFKA_PARTITIONS: String(KAFKA_PARTITIONS),
      REDIS_PREFIX: redisPrefix,
      KEY_HASH_SECRET: `bench-key-hash-secret-${RUN_ID}-0123456789`,
      ADMIN_TOKEN,
      WAREHOUSE_FLUSH_MS: String(WAREHOUSE_FLUSH_MS),
    },
  };
  live.add(d);
  return d;
}

/** One process of a deployment (`roles`: gateway, control, aggregator), as an operator starts it. */
export function startRole(d: Deployment, upstreamUrl: string, name: string, roles: string, env: Record<string, string> = {}): Promise<TollgateService> {
  return startTollgate(upstreamUrl, { ...d.env, TOLLGATE_ROLES: roles, GATEWAY_ID: `bench-${name}`, ...env }, name);
}

function kafkaClient(brokers: string): Kafka {
  return new Kafka({
    clientId: `tollgate-bench-${RUN_ID}`,
    brokers: brokers.split(',').map((b) => b.trim()).filter(Boolean),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
  });
}

function redisClient(url: string): Redis {
  return new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2, connectTimeout: 3000 });
}

/**
 * Commands Redis has executed so far, all clients together: the sum of `calls` over
 * `INFO commandstats` (EVALSHA of a Lua script counts once; the commands a script runs inside
 * count too, as `cmdstat_<command>` lines). For the round trips per request of the admission path.
 */
export async function redisCommandCalls(url: string): Promise<{ total: number; byCommand: Record<string, number> }> {
  const r = redisClient(url);
  try {
    await r.connect();
    const info = await r.info('commandstats');
    const byCommand: Record<string, number> = {};
    let total = 0;
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      byCommand[m[1]!] = Number(m[2]);
      total += Number(m[2]);
    }
    return { total, byCommand };
  } finally {
    r.disconnect();
  }
}

/** What one process sends to Redis per request, from MONITOR (see `redisRoundTrips`). */
export interface RoundTrips {
  requests: number;
  /** commands the gateway process sent per request (a pipelined batch counts each command) */
  gatewayCommandsPerRequest: number;
  /** of those, EVAL / EVALSHA / FCALL */
  gatewayScriptsPerRequest: number;
  /**
   * gateway commands per request sent before the response headers reached the client (for a
   * stream: after the upstream answered, so this bounds the admission's round trips from above)
   */
  gatewayBeforeHeadersPerRequest: number;
  /** commands Lua scripts ran inside Redis per request (no round trip of their own), all processes */
  luaCommandsPerRequest: number;
  /** commands of the other processes of the deployment (aggregator, control) per request */
  otherCommandsPerRequest: number;
  /** gateway commands per request by name */
  gatewayByCommand: Record<string, number>;
}

/** Local ports of the Redis connections a process holds, from `ss -tnp` (Linux). */
function redisPortsOf(pid: number, redisUrl: string): Set<string> {
  const port = new URL(redisUrl).port || '6379';
  const out = execFileSync('ss', ['-tnpH', `dport = :${port}`], { encoding: 'utf8' });
  const ports = new Set<string>();
  for (const line of out.split('\n')) {
    if (!line.includes(`pid=${pid},`)) continue;
    const local = line.trim().split(/\s+/)[3];
    if (local) ports.add(local.slice(local.lastIndexOf(':') + 1));
  }
  return ports;
}

/**
 * Redis round trips per request of one gateway process: `n` requests sent one after another
 * by `send` while a MONITOR connection records every command; commands from the gateway's own
 * connections (found with `ss -tnp`) are its round trips (an upper bound: a pipelined batch is
 * one round trip but shows as several commands); lines marked `lua` ran inside a script. `send`
 * returns when (epoch ms) the response headers arrived; requests are 30 ms apart so that a
 * request's settle falls outside the next one's window. Waits 1 s after the last response so
 * that its settle is counted too.
 */
const GAP_MS = 30;

export async function redisRoundTrips(redisUrl: string, gatewayPid: number, n: number, send: () => Promise<number>): Promise<RoundTrips> {
  const ports = redisPortsOf(gatewayPid, redisUrl);
  /** per request: [sent, headers received], epoch ms (MONITOR times are the same clock) */
  const windows: Array<[number, number]> = [];
  if (ports.size === 0) throw new Error(`no Redis connection of pid ${gatewayPid} found with ss -tnp`);
  // ioredis emits "Command queue state error" for a MONITOR line that arrives while the
  // connection is not in its monitoring state: in the same read as MONITOR's +OK (ioredis sets
  // the state a promise job later) and as the monitor disconnects, both common on a busy
  // Redis. Unhandled, that 'error' event killed the whole bench, so the listener is attached
  // before the connection exists (Redis#monitor() attaches its own only until the state is set).
  // The lines lost are before counting starts (`on`) or after it ends.
  const monitor = new Redis(redisUrl, { lazyConnect: true, monitor: true, connectTimeout: 3000 });
  monitor.on('error', () => {});
  // (not events.once: it would reject on the very 'error' events this waits past)
  const monitoring = new Promise((resolve) => monitor.once('monitoring', resolve));
  await monitor.connect();
  await monitoring;
  const byCommand: Record<string, number> = {};
  let gateway = 0;
  let scripts = 0;
  let lua = 0;
  let other = 0;
  let on = false;
  const gatewayTimes: number[] = [];
  monitor.on('monitor', (time: string, args: string[], source: string) => {
    if (!on) return;
    const cmd = String(args[0] ?? '').toLowerCase();
    if (source === 'lua') { lua++; return; }
    const port = source.slice(source.lastIndexOf(':') + 1);
    if (!ports.has(port)) { other++; return; }
    gateway++;
    gatewayTimes.push(Number(time) * 1000);
    byCommand[cmd] = (byCommand[cmd] ?? 0) + 1;
    if (cmd === 'eval' || cmd === 'evalsha' || cmd === 'fcall' || cmd === 'evalsha_ro' || cmd === 'eval_ro') scripts++;
  });
  try {
    await sleep(200);
    on = true;
    for (let i = 0; i < n; i++) {
      const startedAt = Date.now();
      windows.push([startedAt, await send()]);
      // a quiet gap, so that this request's settle is not timed into the next one's window
      await sleep(GAP_MS);
    }
    await sleep(1000);
    on = false;
  } finally {
    monitor.disconnect();
  }
  const before = gatewayTimes.filter((t) => windows.some(([a, b]) => t >= a - 1 && t <= b)).length;
  return {
    requests: n, gatewayCommandsPerRequest: gateway / n, gatewayScriptsPerRequest: scripts / n, gatewayBeforeHeadersPerRequest: before / n,
    luaCommandsPerRequest: lua / n, otherCommandsPerRequest: other / n,
    gatewayByCommand: Object.fromEntries(Object.entries(byCommand).map(([k, v]) => [k, v / n])),
  };
}

/** Deletes a deployment's topics and keys; best effort (a leftover costs disk, not correctness). */
export function removeDeployment(d: Deployment): Promise<void> {
  let removal = removals.get(d);
  if (!removal) {
    live.delete(d);
    removal = removeNow(d);
    removals.set(d, removal);
  }
  return removal;
}

async function removeNow(d: Deployment): Promise<void> {
  const admin = kafkaClient(d.services.kafka).admin();
  try {
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(d.topicPrefix));
    if (topics.length) await admin.deleteTopics({ topics, timeout: 10_000 });
  } catch { /* best effort */ } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const redis = redisClient(d.services.redis);
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${d.redisPrefix}*`, 'COUNT', 1000);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } catch { /* best effort */ } finally {
    redis.disconnect();
  }
}

async function opsJson<T>(url: string, path: string): Promise<T> {
  const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

export interface WarehouseTotals {
  requests: number;
  costMicros: string;
}

/** Every stored event (GET /admin/v1/usage over 1970 … 2100 by month: read from the day rollup). */
export async function warehouseTotals(aggregatorUrl: string, accountId?: string): Promise<WarehouseTotals> {
  const r = await opsJson<{ totals: { requests: number; cost_micros: string } }>(aggregatorUrl,
    `/admin/v1/usage?granularity=month&from=1970-01-01&to=2100-01-01${accountId ? `&account_id=${encodeURIComponent(accountId)}` : ''}`);
  return { requests: r.totals.requests, costMicros: r.totals.cost_micros };
}

// ---- 1. consumer throughput ---------------------------------------------------------------

const MODELS = [
  // id, alias, µcr per input token, per output token (libs/pricing/catalogs/cny.json)
  { id: 'claude-sonnet-4-5-20250929', alias: 'claude-sonnet-4-5', input: 72, output: 360, weight: 6 },
  { id: 'claude-haiku-4-5-20251001', alias: 'claude-haiku-4-5', input: 24, output: 120, weight: 3 },
  { id: 'claude-sonnet-4-20250514', alias: 'claude-sonnet-4-0', input: 72, output: 360, weight: 1 },
] as const;
const MODEL_CYCLE = MODELS.flatMap((m) => Array.from({ length: m.weight }, () => m));
export const SYNTHETIC_ACCOUNTS = 50;

function reqId(): string {
  return `req_${randomBytes(18).toString('base64url')}`;
}

/** A usage event as a gateway publishes it, for one of 50 accounts (3 keys each). */
function syntheticUsage(i: number, now: number): UsageEvent {
  const account = i % SYNTHETIC_ACCOUNTS;
  const m = MODEL_CYCLE[(i * 7) % MODEL_CYCLE.length]!;
  const input = 200 + ((i * 7919) % 3800);
  const output = 16 + ((i * 104_729) % 1000);
  const failed = i % 97 === 0;
  const stream = i % 3 !== 0;
  return {
    type: 'usage',
    event_id: reqId(),
    ts: now - 60_000 + Math.floor((i * 60_000) / 1e6),
    account_id: `acct_bench_${String(account).padStart(3, '0')}`,
    key_id: `key_bench_${String(account).padStart(3, '0')}_${i % 3}`,
    model: m.alias,
    catalog_model: m.id,
    upstream_model: m.id,
    input_tokens: failed ? 0 : input,
    output_tokens: failed ? 0 : output,
    cache_read_tokens: 0,
    cache_write_5m_tokens: 0,
    cache_write_1h_tokens: 0,
    cost_micros: failed ? '0' : String(input * m.input + output * m.output),
    status: failed ? 'upstream_error' : 'ok',
    http_status: failed ? 529 : 200,
    latency_ms: 400 + (i % 9000),
    ttft_ms: failed ? null : 150 + (i % 900),
    stream,
    upstream_request_id: failed ? null : reqId(),
    gateway_id: `bench-gw-${i % 2}`,
  };
}

export interface ConsumerResult {
  group: 'warehouse' | 'ledger';
  /** WAREHOUSE_FLUSH_MS of the measured process (warehouse only) */
  flushMs: number | undefined;
  events: number;
  /** spawn until /health answered */
  startupS: number;
  /** /health answered until every event was consumed */
  seconds: number;
  eventsPerS: number;
  /** /health answered until the first events showed (join, first fetch, first flush) */
  firstSeenS: number | undefined;
  /** the consumer process's CPU over `seconds`, per 1000 events */
  cpuMsPer1000: number | undefined;
  /** how often completion was polled (the resolution of `seconds`) */
  pollMs: number;
  /** cores used meanwhile by processes other than the consumer, this one, Kafka and Redis */
  otherCores: number | undefined;
}

export interface ConsumerFigures {
  events: number;
  partitions: number;
  accounts: number;
  produceS: number;
  produceEventsPerS: number;
  results: ConsumerResult[];
  /**
   * Diagnostic: the warehouse group again, on fresh topics, with WAREHOUSE_FLUSH_MS=50: how
   * much of its throughput is the configured insert pacing rather than the inserts themselves.
   */
  warehouseFastFlush: ConsumerResult | undefined;
  /** Σ cost of the produced events = what the warehouse reports (a check of the consumer) */
  costMicros: string;
  warehouseCostOk: boolean;
}

type Log = (line: string) => void;

async function produce(d: Deployment, n: number, log: Log): Promise<{ seconds: number; costMicros: bigint }> {
  const spoolDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-spool-'));
  const kafkaLog = new KafkaLog({ kafka: kafkaClient(d.services.kafka), topicPrefix: d.topicPrefix, spoolDir, logger: { warn: () => {}, error: () => {} } });
  try {
    await kafkaLog.ensureTopics(KAFKA_PARTITIONS);
    const now = Date.now();
    let cost = 0n;
    const started = performance.now();
    const CHUNK = 1000;
    const pending: Promise<void>[] = [];
    let acked = 0;
    for (let i = 0; i < n; i += CHUNK) {
      const events: PublishedEvent[] = [];
      for (let j = i; j < Math.min(n, i + CHUNK); j++) {
        const e = syntheticUsage(j, now);
        cost += BigInt(e.cost_micros);
        events.push({ event: e });
      }
      pending.push(kafkaLog.publish('usage', events).then(() => {
        acked += events.length;
        if (acked % 10_000 < CHUNK || acked === n) log(`  produce           ${String(acked).padStart(7)} / ${n} events acknowledged by Kafka`);
      }));
    }
    await Promise.all(pending);
    await kafkaLog.flush();
    return { seconds: (performance.now() - started) / 1000, costMicros: cost };
  } finally {
    await kafkaLog.close();
    rmSync(spoolDir, { recursive: true, force: true });
  }
}

/** Polls `done()` until it reports `n`; returns when it did, and when the first progress showed. */
async function until(
  what: string, n: number, pollMs: number, timeoutMs: number, log: Log, signal: AbortSignal,
  count: () => Promise<number>,
): Promise<{ doneAt: number; firstAt: number | undefined }> {
  const start = performance.now();
  let firstAt: number | undefined;
  let lastLog = start;
  for (;;) {
    if (signal.aborted) throw new Error('interrupted');
    const c = await count().catch(() => 0);
    const now = performance.now();
    if (c > 0 && firstAt === undefined) firstAt = now;
    if (c >= n) return { doneAt: now, firstAt };
    if (now - lastLog >= 1000) {
      lastLog = now;
      log(`  ${what.padEnd(17)} ${String(c).padStart(7)} / ${n} events  ${((now - start) / 1000).toFixed(1)} s`);
    }
    if (now - start > timeoutMs) throw new Error(`${what}: only ${c} of ${n} events after ${(timeoutMs / 1000).toFixed(0)} s`);
    await sleep(pollMs);
  }
}

/**
 * Produces `n` usage events into fresh topics, then starts one aggregator process with only
 * the warehouse group and times it to the last event in the warehouse; then one with only the
 * ledger group, timed to the last event applied in Redis.
 */
export async function measureConsumers(services: Services, upstreamUrl: string, n: number, log: Log, signal: AbortSignal): Promise<ConsumerFigures> {
  const d = deployment(services, 'consumers');
  const started: TollgateService[] = [];
  const redis = redisClient(services.redis);
  try {
    log(`bench: consumer throughput: producing ${n} usage events (${SYNTHETIC_ACCOUNTS} accounts, ${KAFKA_PARTITIONS} partitions) into Kafka topics ${d.topicPrefix}*`);
    const produced = await produce(d, n, log);
    if (signal.aborted) throw new Error('interrupted');
    log(`  produce: ${n} events in ${produced.seconds.toFixed(2)} s (${(n / produced.seconds).toFixed(0)} events/s from one KafkaLog)`);
    await redis.connect();
    const timeoutMs = Math.max(120_000, n * 5);
    const results: ConsumerResult[] = [];

    // Warehouse group first: its process rebuilds the (empty) hot state at start and marks it
    // ready, which a ledger-only process needs before it applies anything.
    log('bench: starting an aggregator with AGGREGATOR_GROUPS=warehouse (chDB)');
    let t = performance.now();
    const wh = await startRole(d, upstreamUrl, 'aggregator-warehouse', 'aggregator', { AGGREGATOR_GROUPS: 'warehouse' });
    started.push(wh);
    results.push(await timeConsumer('warehouse', WAREHOUSE_FLUSH_MS, wh, (performance.now() - t) / 1000, n, 100, timeoutMs, log, signal,
      async () => (await warehouseTotals(wh.url)).requests));
    const totals = await warehouseTotals(wh.url);
    const warehouseCostOk = BigInt(totals.costMicros) === produced.costMicros && totals.requests === n;
    if (!warehouseCostOk) log(`bench: warehouse totals ${totals.requests} events / ${totals.costMicros} µ; produced ${n} / ${produced.costMicros}`);

    const readyKey = `${d.redisPrefix}ledger-ready`;
    await until('hot state ready', 1, 50, 30_000, log, signal, async () => redis.exists(readyKey));
    if (signal.aborted) throw new Error('interrupted');
    log('bench: starting an aggregator with AGGREGATOR_GROUPS=ledger');
    t = performance.now();
    const ledger = await startRole(d, upstreamUrl, 'aggregator-ledger', 'aggregator', { AGGREGATOR_GROUPS: 'ledger' });
    started.push(ledger);
    // Each applied event stores its offset in `<prefix>ledger-pos` (field `usage:<partition>`)
    // in the same Lua step as the debit; fresh topics start at offset 0.
    const posKey = `${d.redisPrefix}ledger-pos`;
    results.push(await timeConsumer('ledger', undefined, ledger, (performance.now() - t) / 1000, n, 20, timeoutMs, log, signal, async () => {
      const pos = await redis.hgetall(posKey);
      let applied = 0;
      for (const [field, offset] of Object.entries(pos)) if (field.startsWith('usage:')) applied += Number(offset) + 1;
      return applied;
    }));
    redis.disconnect();
    for (const s of started.reverse()) await s.stop();
    started.length = 0;
    await removeDeployment(d);
    const warehouseFastFlush = signal.aborted ? undefined : await fastFlushWarehouse(services, upstreamUrl, n, timeoutMs, log, signal);
    return {
      events: n, partitions: KAFKA_PARTITIONS, accounts: SYNTHETIC_ACCOUNTS,
      produceS: produced.seconds, produceEventsPerS: n / produced.seconds,
      results, warehouseFastFlush, costMicros: produced.costMicros.toString(), warehouseCostOk,
    };
  } finally {
    redis.disconnect();
    for (const s of started.reverse()) await s.stop();
    await removeDeployment(d);
  }
}

export const FAST_FLUSH_MS = 50;

async function fastFlushWarehouse(services: Services, upstreamUrl: string, n: number, timeoutMs: number, log: Log, signal: AbortSignal): Promise<ConsumerResult> {
  const d = deployment(services, 'consumers-flush');
  let wh: TollgateService | undefined;
  try {
    log(`bench: diagnostic: the warehouse group again with WAREHOUSE_FLUSH_MS=${FAST_FLUSH_MS} on ${n} fresh events`);
    await produce(d, n, log);
    if (signal.aborted) throw new Error('interrupted');
    const t = performance.now();
    wh = await startRole(d, upstreamUrl, 'aggregator-warehouse-flush', 'aggregator', { AGGREGATOR_GROUPS: 'warehouse', WAREHOUSE_FLUSH_MS: String(FAST_FLUSH_MS) });
    const svc = wh;
    return await timeConsumer('warehouse', FAST_FLUSH_MS, svc, (performance.now() - t) / 1000, n, 50, timeoutMs, log, signal,
      async () => (await warehouseTotals(svc.url)).requests);
  } finally {
    await wh?.stop();
    await removeDeployment(d);
  }
}

async function timeConsumer(
  group: 'warehouse' | 'ledger', flushMs: number | undefined, svc: TollgateService, startupS: number, n: number, pollMs: number,
  timeoutMs: number, log: Log, signal: AbortSignal, count: () => Promise<number>,
): Promise<ConsumerResult> {
  const t0 = performance.now();
  const local = localServicePids();
  const ours = () => [process.pid, local.kafka, local.redis].reduce((sum: number, pid) => sum + (cpuSeconds(pid) ?? 0), 0);
  const cpu0 = cpuSeconds(svc.child.pid);
  const ours0 = ours();
  const machine0 = machineBusySeconds();
  log(`  ${group}: ready after ${startupS.toFixed(1)} s; consuming`);
  const { doneAt, firstAt } = await until(group, n, pollMs, timeoutMs, log, signal, count);
  const cpu1 = cpuSeconds(svc.child.pid);
  const machine1 = machineBusySeconds();
  const seconds = (doneAt - t0) / 1000;
  const wallS = (performance.now() - t0) / 1000;
  const otherCores = machine0 === undefined || machine1 === undefined || cpu0 === undefined || cpu1 === undefined
    ? undefined
    : Math.max(0, (machine1 - machine0 - (cpu1 - cpu0) - (ours() - ours0)) / wallS);
  const r: ConsumerResult = {
    group, flushMs, events: n, startupS, seconds, eventsPerS: n / seconds,
    firstSeenS: firstAt === undefined ? undefined : (firstAt - t0) / 1000,
    cpuMsPer1000: cpu0 === undefined || cpu1 === undefined ? undefined : ((cpu1 - cpu0) * 1000 * 1000) / n,
    pollMs, otherCores,
  };
  log(`  ${group}: ${n} events in ${seconds.toFixed(2)} s = ${r.eventsPerS.toFixed(0)} events/s (first seen after ${r.firstSeenS?.toFixed(2) ?? '-'} s)`);
  return r;
}

// ---- 2. lag --------------------------------------------------------------------------------

interface LagSample {
  id: string;
  completedAt: number;
  balanceMs?: number | undefined;
  queryableMs?: number | undefined;
}

export interface LagFigures {
  samples: number;
  pollMs: number;
  /** response complete → `<prefix>u:<request id>` exists in Redis */
  balance: Summary;
  /** response complete → GET /admin/v1/usage/events/<request id> answers 200 */
  queryable: Summary;
  /** samples never seen within the bound */
  balanceTimeouts: number;
  queryableTimeouts: number;
  warehouseFlushMs: number;
}

/**
 * Follows sampled requests from the moment their response completed until their usage event is
 * applied to the balance in Redis and until the warehouse answers for it. Two loops, each
 * polling every `pollMs` for every sample still open: Redis with one pipelined EXISTS per
 * sample; the warehouse with GET /admin/v1/usage/events/<id>, oldest sample first and, once it
 * answers, all the others at once (one account = one partition, so events reach the
 * warehouse in completion order and the oldest open sample is the one to wait for).
 */
export class LagProbe {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #ops: Pool;
  readonly #pollMs: number;
  readonly #timeoutMs: number;
  readonly #samples: LagSample[] = [];
  #openBalance: LagSample[] = [];
  #openQueryable: LagSample[] = [];
  #stopping = false;
  #loops: Promise<void>[] = [];
  #balanceTimeouts = 0;
  #queryableTimeouts = 0;

  constructor(redisUrl: string, redisPrefix: string, aggregatorUrl: string, pollMs = 5, timeoutMs = 30_000) {
    this.#redis = redisClient(redisUrl);
    this.#prefix = redisPrefix;
    this.#ops = new Pool(aggregatorUrl, { connections: 16, pipelining: 1 });
    this.#pollMs = pollMs;
    this.#timeoutMs = timeoutMs;
  }

  get count(): number {
    return this.#samples.length;
  }

  async start(): Promise<void> {
    await this.#redis.connect();
    this.#loops = [this.#balanceLoop(), this.#queryableLoop()];
  }

  add(id: string, completedAt: number): void {
    const s: LagSample = { id, completedAt };
    this.#samples.push(s);
    this.#openBalance.push(s);
    this.#openQueryable.push(s);
  }

  /** Waits until every sample is seen (or timed out) and returns the figures. */
  async finish(): Promise<LagFigures> {
    this.#stopping = true;
    try {
      await Promise.all(this.#loops);
    } finally {
      this.#redis.disconnect();
      await this.#ops.close();
    }
    const seen = (k: 'balanceMs' | 'queryableMs') => this.#samples.map((s) => s[k]).filter((v): v is number => v !== undefined);
    return {
      samples: this.#samples.length, pollMs: this.#pollMs,
      balance: summarize(seen('balanceMs')), queryable: summarize(seen('queryableMs')),
      balanceTimeouts: this.#balanceTimeouts, queryableTimeouts: this.#queryableTimeouts,
      warehouseFlushMs: WAREHOUSE_FLUSH_MS,
    };
  }

  async #tick(started: number): Promise<void> {
    await sleep(Math.max(0, started + this.#pollMs - performance.now()));
  }

  async #balanceLoop(): Promise<void> {
    while (!this.#stopping || this.#openBalance.length > 0) {
      const started = performance.now();
      const open = [...this.#openBalance];
      if (open.length > 0) {
        const pipe = this.#redis.pipeline();
        for (const s of open) pipe.exists(`${this.#prefix}u:${s.id}`);
        const replies = (await pipe.exec()) ?? [];
        const at = performance.now();
        const still: LagSample[] = [];
        open.forEach((s, i) => {
          if (replies[i]?.[1] === 1) s.balanceMs = at - s.completedAt;
          else if (at - s.completedAt > this.#timeoutMs) this.#balanceTimeouts++;
          else still.push(s);
        });
        // Samples added while the pipeline was out are kept.
        this.#openBalance = [...still, ...this.#openBalance.slice(open.length)];
      }
      await this.#tick(started);
    }
  }

  async #exists(id: string): Promise<boolean> {
    const res = await this.#ops.request({
      path: `/admin/v1/usage/events/${encodeURIComponent(id)}`, method: 'GET',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    await res.body.dump();
    if (res.statusCode !== 200 && res.statusCode !== 404) throw new Error(`GET /admin/v1/usage/events/${id}: HTTP ${res.statusCode}`);
    return res.statusCode === 200;
  }

  async #queryableLoop(): Promise<void> {
    while (!this.#stopping || this.#openQueryable.length > 0) {
      const started = performance.now();
      const oldest = this.#openQueryable[0];
      if (oldest) {
        const found = await this.#exists(oldest.id);
        let at = performance.now();
        if (found) {
          oldest.queryableMs = at - oldest.completedAt;
          const rest = this.#openQueryable.slice(1);
          const seen = await Promise.all(rest.map((s) => this.#exists(s.id).then((ok) => ({ ok, at: performance.now() }))));
          rest.forEach((s, i) => { if (seen[i]!.ok) s.queryableMs = seen[i]!.at - s.completedAt; });
          at = performance.now();
        }
        const still: LagSample[] = [];
        for (const s of this.#openQueryable) {
          if (s.queryableMs !== undefined) continue;
          if (at - s.completedAt > this.#timeoutMs) this.#queryableTimeouts++;
          else still.push(s);
        }
        this.#openQueryable = still;
      }
      await this.#tick(started);
    }
  }
}

// Run directly (`node bench/distributed.ts`): say what to run instead of silently doing nothing.
if (import.meta.main) (await import('./cli.ts')).notACommand(import.meta, 'npm run bench (its distributed section runs when Kafka and Redis answer; see npm run bench -- --help), or node bench/consumers.ts / node bench/dist-ab.ts for one part');
