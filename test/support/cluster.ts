// A real multi-process Tollgate for end-to-end tests: each role is its own `node main.ts`
// process (as in production), sharing the local Kafka and Redis under prefixes unique to the
// test, so suites can run side by side. With a ClickHouse server (CLICKHOUSE_URL, or one on
// 127.0.0.1:$CLICKHOUSE_PORT) the warehouse is that server, in a database of the cluster's own
// (dropped on close); without one it is chDB inside the one `warehouse` aggregator.
// Logs go to files under the run's directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { after, before } from 'node:test';
import type { Redis } from 'ioredis';
import { childEnv } from './services.ts';

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'services/tollgate/src/main.ts');
export const CLUSTER_ADMIN_TOKEN = 'cluster-admin-token-0123456789';

/**
 * The lowest port the kernel hands out as an outbound connection's source port (Linux's
 * `ip_local_port_range`, 32768 by default; that default where the file cannot be read).
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Lowest port `freePort` draws from. */
const PORT_FLOOR = 20000;

/** Whether a listener can bind `port` on 127.0.0.1 right now (0: any free port; resolves the port bound, or undefined). */
function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => {
      const bound = (s.address() as { port: number }).port;
      s.close(() => resolve(bound));
    });
  });
}

/**
 * A port no listener holds on 127.0.0.1, for a test process that may be stopped and started
 * again on it. Drawn at random below the kernel's ephemeral range (PORT_FLOOR up to
 * `ephemeralLow()` − 1): a port of that range, free while its process was down, could be taken
 * meanwhile as the source port of any outbound connection on the machine, and the restart
 * then failed "port … is in use" (a CI run with other work on the machine). Falls back to a
 * port the kernel picks when that range is empty or 100 draws find none free.
 */
export async function freePort(): Promise<number> {
  const high = ephemeralLow() - 1;
  for (let i = 0; high > PORT_FLOOR && i < 100; i++) {
    const port = PORT_FLOOR + Math.floor(Math.random() * (high - PORT_FLOOR + 1));
    if (await tryListen(port) !== undefined) return port;
  }
  const any = await tryListen(0);
  if (any === undefined) throw new Error('no free port on 127.0.0.1');
  return any;
}

export interface ProcessSpec {
  roles: string;
  env?: Record<string, string>;
  /** Another member's DATA_DIR instead of one of its own (a second process on one directory: a takeover). */
  dataDirOf?: string;
}

interface Member {
  spec: ProcessSpec;
  port: number;
  dataDir: string;
  child: ChildProcess | null;
  url: string;
}

export class Cluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'tollgate-cluster-'));
  readonly id = randomUUID().slice(0, 8);
  readonly env: Record<string, string>;
  #members = new Map<string, Member>();

  /** The ClickHouse server's HTTP URL when the warehouse is a server (else chDB), and its database. */
  readonly clickhouse: { url: string; database: string } | undefined;

  /**
   * `clickhouse`: a ClickHouse server's HTTP URL; defaults to CLICKHOUSE_URL of this process,
   * which the child processes would inherit anyway, so every cluster gets its own database
   * (`tg_<id>`) rather than sharing the default one.
   */
  constructor(base: { kafka: string; redis: string; upstreamUrl: string; upstreamKey: string; clickhouse?: string; extra?: Record<string, string> }) {
    const chUrl = base.clickhouse ?? (process.env['CLICKHOUSE_URL']?.trim() || undefined);
    this.clickhouse = chUrl === undefined ? undefined : { url: chUrl, database: `tg_${this.id}` };
    this.env = {
      KAFKA_BROKERS: base.kafka,
      REDIS_URL: base.redis,
      KAFKA_TOPIC_PREFIX: `t-${this.id}.`,
      KAFKA_CLIENT_ID: `tollgate-${this.id}`,
      REDIS_PREFIX: `t:${this.id}:`,
      KEY_HASH_SECRET: `key-hash-secret-${this.id}-0123456789`,
      ADMIN_TOKEN: CLUSTER_ADMIN_TOKEN,
      UPSTREAM_URL: base.upstreamUrl,
      UPSTREAM_API_KEY: base.upstreamKey,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      WAREHOUSE_FLUSH_MS: '100',
      KAFKA_PARTITIONS: '4',
      ...(this.clickhouse ? { CLICKHOUSE_URL: this.clickhouse.url, CLICKHOUSE_DATABASE: this.clickhouse.database } : {}),
      ...base.extra,
    };
  }

  url(name: string): string {
    const m = this.#members.get(name);
    if (!m) throw new Error(`no process ${name}`);
    return m.url;
  }

  async add(name: string, spec: ProcessSpec): Promise<string> {
    const port = await freePort();
    const dataDir = spec.dataDirOf === undefined ? join(this.dir, name) : this.#members.get(spec.dataDirOf)!.dataDir;
    mkdirSync(dataDir, { recursive: true });
    const m: Member = { spec, port, dataDir, child: null, url: `http://127.0.0.1:${port}` };
    this.#members.set(name, m);
    await this.start(name);
    return m.url;
  }

  /** Starts (again) a process by name and waits until it answers /health. */
  async start(name: string): Promise<void> {
    const m = this.#members.get(name)!;
    const log = createWriteStream(join(this.dir, `${name}.log`), { flags: 'a' });
    const child = spawn(process.execPath, [MAIN, '--roles', m.spec.roles], {
      cwd: ROOT,
      env: { ...childEnv(), ...this.env, ...m.spec.env, PORT: String(m.port), DATA_DIR: m.dataDir, GATEWAY_ID: name },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    m.child = child;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}:\n${this.logOf(name)}`);
      try {
        const res = await fetch(`${m.url}/health`);
        if (res.ok) return;
      } catch { /* not up yet */ }
      if (Date.now() > deadline) throw new Error(`${name} did not start:\n${this.logOf(name)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  logOf(name: string): string {
    try {
      return readFileSync(join(this.dir, `${name}.log`), 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '';
    }
  }

  /**
   * The last `lines` lines of every process's log (stdout and stderr, all its starts), each
   * under a `--- name (log path) ---` header: what a failing test prints to say why.
   */
  logTails(lines = 40): string {
    return [...this.#members.keys()].map((name) => {
      let tail = '';
      try {
        tail = readFileSync(join(this.dir, `${name}.log`), 'utf8').split('\n').slice(-lines).join('\n');
      } catch { /* never started */ }
      return `--- ${name} (${join(this.dir, `${name}.log`)}) ---\n${tail}`;
    }).join('\n');
  }

  /** kill -9 (or a graceful SIGTERM) and wait for the exit. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const m = this.#members.get(name)!;
    const child = m.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
    m.child = null;
  }

  /**
   * SIGSTOP: the process keeps its sockets and group membership (for less than Kafka's 10 s
   * session) but does nothing until `resume`. What a test uses to hold a consumer back while
   * requests pile up behind it.
   */
  pause(name: string): void {
    const child = this.#members.get(name)?.child;
    if (!child || child.exitCode !== null) throw new Error(`${name} is not running`);
    child.kill('SIGSTOP');
  }

  /** Resolves with process `name`'s exit code once it has exited on its own (at once if it is not running). */
  exited(name: string): Promise<number | null> {
    const child = this.#members.get(name)?.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child?.exitCode ?? null);
    return new Promise((r) => child.once('exit', (code) => r(code)));
  }

  /** SIGCONT: a paused process goes on where it stopped. */
  resume(name: string): void {
    this.#members.get(name)?.child?.kill('SIGCONT');
  }

  async restart(name: string): Promise<void> {
    await this.kill(name, 'SIGTERM');
    await this.start(name);
  }

  async stopAll(): Promise<void> {
    // Gateways first (their events must reach the log), consumers last.
    const order = [...this.#members.keys()].sort((a, b) => Number(a.startsWith('agg')) - Number(b.startsWith('agg')));
    for (const name of order) await this.kill(name, 'SIGTERM');
  }

  /**
   * Removes what the cluster left in the shared Kafka and Redis: its topics (`KAFKA_TOPIC_PREFIX`,
   * dead-letter topic included) and its keys on REDIS_URL (`REDIS_PREFIX`). A developer's local
   * services outlive the test runs (CI starts fresh ones); without this every run of the suites
   * left a few dozen topics and thousands of keys behind for good. Best effort: a failure here is
   * written to stderr, never a test failure. Keys on a Redis Cluster (REDIS_CLUSTER_NODES in
   * `extra`) are left: that cluster's deploy state is recreated by its script.
   */
  async dropLogAndState(): Promise<void> {
    const { Kafka, logLevel } = await import('kafkajs');
    // kafkajs' request queue without its 1 ms poll (and its negative-timer warning), as in the product's processes
    (await import('@tollgate/events')).fixKafkajsRequestQueue();
    const { Redis } = await import('ioredis');
    const { deleteKeysUnder } = await import('./redis.ts');
    const topicPrefix = this.env['KAFKA_TOPIC_PREFIX']!;
    const keyPrefix = this.env['REDIS_PREFIX']!;
    const admin = new Kafka({ brokers: this.env['KAFKA_BROKERS']!.split(','), logLevel: logLevel.NOTHING }).admin();
    try {
      await admin.connect();
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(topicPrefix));
      if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
    } catch (err) {
      process.stderr.write(`cluster ${this.id}: could not delete its Kafka topics (${topicPrefix}*): ${String(err)}\n`);
    } finally {
      await admin.disconnect().catch(() => {});
    }
    const redis = new Redis(this.env['REDIS_URL']!, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      await deleteKeysUnder(redis, keyPrefix);
    } catch (err) {
      process.stderr.write(`cluster ${this.id}: could not delete its Redis keys (${keyPrefix}*): ${String(err)}\n`);
    } finally {
      redis.disconnect();
    }
  }

  /**
   * Stops every process, then removes what the cluster left in the shared services: its
   * warehouse database on a ClickHouse server, its Kafka topics and its Redis keys. For a test's
   * `after`; a failed removal is reported on stderr, never thrown.
   */
  async stopAndRemove(): Promise<void> {
    await this.stopAll();
    await this.dropWarehouse().catch((err: unknown) => process.stderr.write(`cluster ${this.id}: could not drop its warehouse: ${String(err)}\n`));
    await this.dropLogAndState();
  }

  /** Drops the cluster's database on the ClickHouse server (nothing with chDB: its files go with `dir`). */
  async dropWarehouse(): Promise<void> {
    if (!this.clickhouse) return;
    const res = await fetch(this.clickhouse.url, { method: 'POST', body: `DROP DATABASE IF EXISTS \`${this.clickhouse.database}\`` });
    if (!res.ok) throw new Error(`DROP DATABASE ${this.clickhouse.database} answered ${res.status}: ${await res.text()}`);
  }

  async admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown, base = this.url('control')): Promise<{ status: number; json: T }> {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${CLUSTER_ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as T };
  }

  /** Waits until each named process's `/ready` answers 200, one after the other (`eventually`'s time each). */
  async allReady(...names: string[]): Promise<void> {
    for (const n of names) await this.eventually(`${n} ready`, async () => ((await fetch(`${this.url(n)}/ready`)).ok ? true : undefined));
  }

  /** Polls until `check` returns a value (not undefined) or the time is up. */
  async eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const v = await check();
        if (v !== undefined) return v;
      } catch (err) {
        last = err;
      }
      if (Date.now() > deadline) {
        // A timeout in a multi-process test says little by itself: the processes' own logs
        // (consumer groups joining, Kafka reconnects, refusals) say why, so they go with it.
        throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}\n${this.logTails()}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * The standard cluster of the end-to-end suites: the simulator upstream, two aggregators (two
 * `ledger` consumers), control, two gateways. With a ClickHouse server both aggregators are in
 * the `warehouse` group too (its partitions split between two processes, as in production); with
 * chDB only `agg1` is (chDB lives inside one process). Undefined (after a loud skip message) when
 * Kafka or Redis is missing and not required.
 */
export async function startStandardCluster(): Promise<{ cluster: Cluster; close(): Promise<void> } | undefined> {
  const { findClickHouse } = await import('./services.ts');
  const server = await findClickHouse();
  return startCluster([
    ['agg1', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
    ['agg2', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: server ? 'ledger,warehouse' : 'ledger' } }],
    ['control', { roles: 'control' }],
    ['gw1', { roles: 'gateway' }],
    ['gw2', { roles: 'gateway' }],
  ]);
}

/** An aggregator (ledger and warehouse), control and one gateway, `gw1`. */
export const ONE_GATEWAY: ReadonlyArray<readonly [string, ProcessSpec]> = [
  ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
  ['control', { roles: 'control' }],
  ['gw1', { roles: 'gateway' }],
];

/**
 * The smallest cluster that shows a rule across gateways: an aggregator with both groups,
 * control, and two gateway processes on one Redis.
 */
export const TWO_GATEWAYS: ReadonlyArray<readonly [string, ProcessSpec]> = [
  ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
  ['control', { roles: 'control' }],
  ['gw1', { roles: 'gateway' }],
  ['gw2', { roles: 'gateway' }],
];

/**
 * A cluster of the named processes, started in order (an aggregator with the `warehouse` group
 * first: hot state is rebuilt from the warehouse before the ledger applies anything), against a
 * fresh simulator upstream; `extra` is environment for every process. Undefined (after a loud
 * skip message) when Kafka or Redis is missing and not required. `close` stops the processes
 * and the simulator.
 */
export async function startCluster(
  processes: ReadonlyArray<readonly [string, ProcessSpec]>,
  extra?: Record<string, string>,
): Promise<{ cluster: Cluster; kafka: string; close(): Promise<void> } | undefined> {
  const { findClickHouse, requireKafka, requireRedis } = await import('./services.ts');
  const { startSimulator, UPSTREAM_KEY } = await import('./tollgate.ts');
  const t = { skip: (msg?: string) => { process.stderr.write(`${msg ?? 'skipped'}\n`); } };
  const [kafka, redis] = [await requireKafka(t), await requireRedis(t)];
  if (!kafka || !redis) return undefined;
  const clickhouse = await findClickHouse();
  const { sim, simUrl } = await startSimulator();
  const cluster = new Cluster({ kafka, redis, upstreamUrl: simUrl, upstreamKey: UPSTREAM_KEY, ...(clickhouse ? { clickhouse } : {}), ...(extra ? { extra } : {}) });
  try {
    for (const [name, spec] of processes) await cluster.add(name, spec);
  } catch (err) {
    // A process that did not start must not leave the others and the simulator holding the
    // test runner open: stop them, then fail with the process's log.
    await cluster.stopAndRemove();
    await sim.close();
    throw err;
  }
  return {
    cluster,
    kafka,
    async close() {
      await cluster.stopAndRemove();
      await sim.close();
    },
  };
}

/**
 * A cluster for the tests of the file (or `describe`) where this is called: a `before` hook starts
 * it with `start` (`startCluster`, `startStandardCluster`), an `after` hook closes it. `cluster` is
 * undefined until the `before` ran, and stays so when Kafka or Redis is missing (the tests skip).
 */
export function useCluster(start: () => Promise<{ cluster: Cluster; close(): Promise<void> } | undefined>): { readonly cluster: Cluster | undefined } {
  const run: { cluster: Cluster | undefined } = { cluster: undefined };
  let close: (() => Promise<void>) | undefined;
  before(async () => {
    const started = await start();
    run.cluster = started?.cluster;
    close = started?.close;
  });
  after(async () => { await close?.(); });
  return run;
}

/**
 * An account named `name` with `credits` granted (an integer, or a decimal string of at most 6
 * places) and one key. The grant is applied by the ledger: 201, or 202
 * `pending` when the ledger did not apply it within control's wait (a loaded machine: a CI run
 * failed so); then this waits until the balance shows it.
 */
export async function newAccount(c: Cluster, credits: number | string, name = 'cluster'): Promise<{ accountId: string; keyId: string; secret: string }> {
  const a = await c.admin<{ id: string }>('POST', '/admin/v1/accounts', { name });
  if (a.status !== 201) throw new Error(`account create answered ${a.status}: ${JSON.stringify(a.json)}`);
  const k = await c.admin<{ id: string; key: string }>('POST', `/admin/v1/accounts/${a.json.id}/keys`, {});
  if (k.status !== 201) throw new Error(`key create answered ${k.status}: ${JSON.stringify(k.json)}`);
  const g = await c.admin('POST', `/admin/v1/accounts/${a.json.id}/credits`, { credits, reference: `start-${a.json.id}` });
  if (g.status === 202) {
    // credits: an integer, or a decimal string with at most 6 places
    const [whole, frac = ''] = String(credits).split('.');
    const want = String(BigInt(whole!) * 1_000_000n + BigInt(frac.padEnd(6, '0') || '0'));
    await c.eventually(`the pending grant to ${a.json.id} applied`, async () => {
      const r = await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${a.json.id}`);
      return r.status === 200 && r.json.balance_micro_credits === want ? true : undefined;
    });
  } else if (g.status !== 201) throw new Error(`credit grant answered ${g.status}: ${JSON.stringify(g.json)}`);
  return { accountId: a.json.id, keyId: k.json.id, secret: k.json.key };
}

/**
 * Redis restarted empty, for one deployment: every key under `prefix` is gone in one step (a
 * SCAN over a shared Redis may take longer than a rebuild; deleting as it goes would race it).
 * Returns how many keys were deleted.
 */
export async function emptyPrefix(redis: Redis, prefix: string): Promise<number> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  return keys.length > 0 ? redis.del(...keys) : 0;
}
