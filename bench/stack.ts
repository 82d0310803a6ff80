// The system under test, each service in its own child process so the gateway, the simulator
// and the load generator do not share one event loop (they still share the machine's cores).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UsageEvent, UsageEventV2 } from '@tollgate/events';
import { toV2 } from '@tollgate/events';
import { childEnv } from '../test/support/services.ts';

export const ROOT = resolve(import.meta.dirname, '..');
export const UPSTREAM_API_KEY = 'sk-ant-bench-upstream-key';
export const ADMIN_TOKEN = 'bench-admin-token-0123456789';

/** A child process we started; `stop()` is safe to call more than once. */
export interface Service {
  name: string;
  url: string;
  child: ChildProcess;
  /** the last lines the child wrote (stdout and stderr), for error messages */
  output(): string;
  stop(): Promise<void>;
}

/** A service failed; the message carries its last output, so no stack is needed. */
export class ServiceFailure extends Error {}

const running = new Map<Service, (() => void) | undefined>();

let onUnexpectedExit: ((service: Service, status: string) => void) | undefined;
/** Called when a ready service exits without being asked to (it crashed, or was killed). */
export function whenServiceDies(handler: (service: Service, status: string) => void): void {
  onUnexpectedExit = handler;
}

/** Kills every child still running; synchronous, for `process.on('exit')`. */
export function killAllNow(): void {
  for (const [s, cleanup] of running) {
    if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    try { cleanup?.(); } catch { /* best effort while exiting */ }
  }
  running.clear();
}

/** Stops every child still running, gracefully first. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running.keys()].map((s) => s.stop()));
}

function tailBuffer(limit = 40) {
  const lines: string[] = [];
  let partial = '';
  return {
    push(chunk: Buffer) {
      const parts = (partial + chunk.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      lines.push(...parts);
      if (lines.length > limit) lines.splice(0, lines.length - limit);
    },
    text: () => [...lines, partial].filter(Boolean).join('\n'),
  };
}

interface SpawnOptions {
  name: string;
  script: string;
  /** on top of the inherited environment; an undefined value removes the inherited variable */
  env: Record<string, string | undefined>;
  /** resolves the service URL from the child's output, or undefined to keep waiting */
  urlFromOutput?: (text: string) => string | undefined;
  /** known in advance (a port we picked) */
  url?: string;
  readyTimeoutMs: number;
  /** runs once the child is gone (also from killAllNow) */
  cleanup?: () => void;
}

async function spawnService(o: SpawnOptions): Promise<Service> {
  const child = spawn(process.execPath, [o.script], {
    cwd: ROOT,
    env: childEnv(o.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = tailBuffer();
  let seen = '';
  child.stdout!.on('data', (c: Buffer) => { out.push(c); if (seen.length < 16_384) seen += c.toString('utf8'); });
  child.stderr!.on('data', (c: Buffer) => { out.push(c); if (seen.length < 16_384) seen += c.toString('utf8'); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));

  let stopping: Promise<void> | undefined;
  const service: Service = {
    name: o.name,
    url: o.url ?? '',
    child,
    output: out.text,
    stop: () => (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const gone = await Promise.race([exited.then(() => true), sleep(8000).then(() => false)]);
        if (!gone) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      running.delete(service);
      o.cleanup?.();
    })()),
  };
  running.set(service, o.cleanup);

  const deadline = Date.now() + o.readyTimeoutMs;
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new ServiceFailure(`${o.name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${out.text()}`);
      }
      if (!service.url && o.urlFromOutput) service.url = o.urlFromOutput(seen) ?? '';
      if (service.url && await healthy(service.url)) {
        child.once('exit', (code, signal) => {
          if (!stopping) onUnexpectedExit?.(service, code === null ? `signal ${signal}` : `status ${code}`);
        });
        return service;
      }
      if (Date.now() > deadline) throw new ServiceFailure(`${o.name} not ready after ${o.readyTimeoutMs} ms:\n${out.text()}`);
      await sleep(50);
    }
  } catch (err) {
    await service.stop();
    throw err;
  }
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * A port the OS says is free right now, bound and released (Tollgate logs nothing at a quiet log
 * level to read it from); nothing listens on it, so connections to it are refused until taken.
 */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port'))));
    });
  });
}

/** The simulator with no pacing at all: every microsecond it adds is CPU, not sleep. */
export async function startSimulator(): Promise<Service> {
  return spawnService({
    name: 'simulator',
    script: join(ROOT, 'services/simulator/src/main.ts'),
    env: {
      SIMULATOR_HOST: '127.0.0.1',
      SIMULATOR_PORT: '0',
      SIMULATOR_API_KEY: UPSTREAM_API_KEY,
      SIMULATOR_LATENCY_MS: '0',
      SIMULATOR_TTFT_MS: '0',
      SIMULATOR_TPS: '0',
      SIMULATOR_LOG: '0',
    },
    urlFromOutput: (text) => /listening on (http:\/\/\S+)/.exec(text)?.[1],
    readyTimeoutMs: 30_000,
  });
}

export interface TollgateService extends Service {
  dataDir: string;
  adminToken: string;
}

/**
 * Tollgate on a fresh DATA_DIR: by default in its single-machine mode (all roles, embedded
 * adapters, chDB); `extraEnv` turns it into one process of a distributed deployment
 * (TOLLGATE_ROLES, KAFKA_BROKERS, REDIS_URL, …).
 */
export async function startTollgate(upstreamUrl: string, extraEnv: Record<string, string> = {}, name = 'tollgate'): Promise<TollgateService> {
  // Another process could take the port between our check and Tollgate's listen; retry then.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-'));
    try {
      const svc = await spawnService({
        name,
        script: join(ROOT, 'services/tollgate/src/main.ts'),
        env: {
          DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: String(port),
          // error, not silent: a failure during the run still shows up in the output tail
          LOG_LEVEL: 'error',
          UPSTREAM_URL: upstreamUrl, UPSTREAM_API_KEY, ADMIN_TOKEN,
          SHUTDOWN_GRACE_MS: '5000',
          // The load generator is one key at up to --concurrency 4096: the tenant-fairness gates
          // (per-key in-flight cap, upstream pool) must not be what the benchmark measures.
          KEY_MAX_CONCURRENT_REQUESTS: '100000', UPSTREAM_MAX_CONNECTIONS: '4096',
          // The tests' discovery variables (exported for `npm run bench` as for the suites) must
          // not turn the embedded Tollgate distributed: a deployment passes its own in extraEnv.
          KAFKA_BROKERS: undefined, REDIS_URL: undefined, CLICKHOUSE_URL: undefined,
          ...extraEnv,
        },
        url: `http://127.0.0.1:${port}`,
        readyTimeoutMs: 120_000,
        cleanup: () => rmSync(dataDir, { recursive: true, force: true }),
      });
      return Object.assign(svc, { dataDir, adminToken: ADMIN_TOKEN });
    } catch (err) {
      if (attempt >= 3 || !/EADDRINUSE/.test(String(err))) throw err;
    }
  }
}

// ---- CPU accounting ----------------------------------------------------------------------

/**
 * The pids of the Kafka broker, Redis and the ClickHouse server started by `bash
 * deploy/services.sh up` (their pid files under TOLLGATE_DEPLOY_DIR, default <repo>/.deploy),
 * when those processes are alive and are what the pid file says; for the CPU accounting and
 * `bench/dist-ab.ts --pin` only.
 */
export function localServicePids(): { kafka: number | undefined; redis: number | undefined; clickhouse: number | undefined } {
  const dir = process.env.TOLLGATE_DEPLOY_DIR || join(ROOT, '.deploy');
  const pidOf = (file: string, cmdline: RegExp) => {
    try {
      const pid = Number(readFileSync(join(dir, file), 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 0) return undefined;
      return cmdline.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')) ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  return { kafka: pidOf('kafka/kafka.pid', /kafka\.Kafka/), redis: pidOf('redis/redis.pid', /redis-server/), clickhouse: pidOf('clickhouse/clickhouse.pid', /clickhouse\/server\.py/) };
}

const CLOCK_TICKS_PER_S = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far, from /proc; undefined elsewhere. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** CPU seconds the whole machine has been busy (all cores, all processes), from /proc/stat. */
export function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    // cpu user nice system idle iowait irq softirq steal ...
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLOCK_TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/**
 * Waits until the processes together use less than `maxLoad` of one core over a `windowMs`
 * window, or `timeoutMs` passes. Without /proc it returns at once.
 */
export async function waitForIdle(pids: Array<number | undefined>, maxLoad = 0.05, windowMs = 500, timeoutMs = 30_000): Promise<{ idle: boolean; load: number; waitedS: number }> {
  const started = Date.now();
  const total = () => {
    let sum = 0;
    for (const pid of pids) {
      const s = cpuSeconds(pid);
      if (s === undefined && pid !== undefined) return undefined;
      sum += s ?? 0;
    }
    return sum;
  };
  let load = 0;
  for (;;) {
    const before = total();
    if (before === undefined) return { idle: true, load: 0, waitedS: 0 };
    const t0 = performance.now();
    await sleep(windowMs);
    const after = total() ?? before;
    load = (after - before) / ((performance.now() - t0) / 1000);
    const waitedS = (Date.now() - started) / 1000;
    if (load < maxLoad) return { idle: true, load, waitedS };
    if (Date.now() - started > timeoutMs) return { idle: false, load, waitedS };
  }
}

// ---- control API -------------------------------------------------------------------------

export interface AccountView {
  id: string;
  balance_micro_credits: string;
  held_credits: number;
}

/** One control-API call with the bench's admin token; throws on a non-2xx answer. */
export async function admin<T>(url: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

/** An account granted `credits` (a decimal string) with one key; waits until the grant is applied. */
export async function createCustomer(url: string, credits: string): Promise<{ accountId: string; keyId: string; secret: string; balance: bigint }> {
  const account = await admin<{ id: string }>(url, 'POST', '/admin/v1/accounts', { name: 'bench' });
  const key = await admin<{ id: string; key: string }>(url, 'POST', `/admin/v1/accounts/${account.id}/keys`, { name: 'bench' });
  await admin(url, 'POST', `/admin/v1/accounts/${account.id}/credits`, { credits, reference: `bench-${account.id}` });
  const balance = await settledBalance(url, account.id, (b) => b > 0n);
  return { accountId: account.id, keyId: key.id, secret: key.key, balance };
}

/** Never reached by a bench run: every window and spend limit is checked, none refuses. */
const HIGH_WINDOW = 1_000_000_000;
const HIGH_CREDITS = '1000000000';

/**
 * Puts a customer on the full admission path (issue 8 item 9), through the admin API: a plan
 * with every window (requests per minute / 5 h / week, tokens per minute, concurrent requests),
 * key spend limits (hourly / daily / total credits), account spend limits (daily / monthly), an
 * `ip_allowlist` holding 127.0.0.1 and `allowed_models` holding `model`. Every limit is far
 * above what a run uses, so the bench measures the checks, never a refusal.
 */
export async function applyFullAdmission(url: string, c: { accountId: string; keyId: string }, model: string): Promise<void> {
  const plan = await admin<{ id: string }>(url, 'POST', '/admin/v1/plans', {
    name: `bench full admission ${c.keyId}`,
    requests_per_minute: HIGH_WINDOW, requests_per_5h: HIGH_WINDOW, requests_per_week: HIGH_WINDOW,
    tokens_per_minute: HIGH_WINDOW, concurrent_requests: 100_000,
  });
  await admin(url, 'PATCH', `/admin/v1/keys/${c.keyId}`, {
    plan_id: plan.id, hourly_credits: HIGH_CREDITS, daily_credits: HIGH_CREDITS, total_credits: HIGH_CREDITS,
    ip_allowlist: ['127.0.0.1'], allowed_models: [model],
  });
  await admin(url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { daily_credits: HIGH_CREDITS, monthly_credits: HIGH_CREDITS });
}

export function accountView(url: string, accountId: string): Promise<AccountView> {
  return admin<AccountView>(url, 'GET', `/admin/v1/accounts/${accountId}`);
}

/**
 * Waits until no hold is outstanding and the balance reads the same twice in a row (the
 * ledger consumer applies usage asynchronously); returns the balance in micro-credits.
 */
export async function settledBalance(url: string, accountId: string, accept: (b: bigint) => boolean = () => true, timeoutMs = 60_000): Promise<bigint> {
  const deadline = Date.now() + timeoutMs;
  let previous: bigint | undefined;
  for (;;) {
    const view = await accountView(url, accountId);
    const balance = BigInt(view.balance_micro_credits);
    if (view.held_credits === 0 && accept(balance)) {
      if (previous === balance) return balance;
      previous = balance;
    } else {
      previous = undefined;
    }
    if (Date.now() > deadline) {
      throw new Error(`account ${accountId} did not settle within ${timeoutMs} ms (held ${view.held_credits} credits, balance ${balance} µ)`);
    }
    await sleep(100);
  }
}

// ---- usage events ------------------------------------------------------------------------

const MODELS = [
  { id: 'claude-sonnet-4-6', input: 180, output: 900 },
  { id: 'claude-haiku-4-5', input: 24, output: 120 },
  { id: 'claude-opus-4-6', input: 300, output: 1500 },
];

/** A usage event as a gateway publishes it; cost = input × in-price + output × out-price (µc). */
export function usageEvent(i: number, accounts: number, ts: number): UsageEvent {
  const m = MODELS[i % MODELS.length]!;
  const input = 200 + ((i * 7919) % 3800);
  const output = 16 + ((i * 104_729) % 1000);
  const a = String(i % accounts).padStart(5, '0');
  return {
    type: 'usage', event_id: `req_${randomBytes(18).toString('base64url')}`, ts,
    account_id: `acct_cb_${a}`, key_id: `key_cb_${a}`, model: m.id, catalog_model: m.id, upstream_model: m.id,
    input_tokens: input, output_tokens: output, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0,
    cost_micros: String(input * m.input + output * m.output), status: 'ok', http_status: 200, latency_ms: 400 + (i % 900),
    ttft_ms: 150 + (i % 500), stream: i % 3 !== 0, upstream_request_id: null, gateway_id: 'bench-gw',
  };
}

/**
 * `usageEvent` as today's gateway publishes it (version 2, services/gateway/src/metering.ts):
 * the same tokens and cost, with what pricing adds: the price version and list, the unit
 * prices of the dimensions used (µc per million tokens, decimal text), the served model and
 * stop reason, an upstream cost on every other event, and the pool upstream that served it
 * (`upstream_id`, `attempts`). About twice the JSON of version 1.
 */
export function usageEventV2(i: number, accounts: number, ts: number): UsageEventV2 {
  const v1 = usageEvent(i, accounts, ts);
  const m = MODELS[i % MODELS.length]!;
  const e = toV2(v1) as UsageEventV2;
  return {
    ...e,
    served_model: `${m.id}-20260101`, service_tier: 'standard', stop_reason: i % 5 === 0 ? 'max_tokens' : 'end_turn',
    upstream_cost_micros: i % 2 === 0 ? v1.cost_micros : null, upstream_currency: i % 2 === 0 ? 'USD' : null,
    price_version: 'pv_2026-11-01T00:00:00.000Z_3f9c2a7e', price_list: 'default',
    unit_prices: { input: String(m.input * 1_000_000), output: String(m.output * 1_000_000) },
    // which pool upstream served it, after how many attempts: on every event since issue 10,
    // set last (services/gateway/src/routes/messages.ts); the bench left them out before 2026-12-02, evening
    upstream_id: `up_bench_${i % 2}`, attempts: 1,
  };
}

/** A bench usage event of `version` (1: as gateways wrote before issue 7; 2: as they write now). */
export function benchUsageEvent(version: 1 | 2, i: number, accounts: number, ts: number): UsageEvent {
  return version === 1 ? usageEvent(i, accounts, ts) : usageEventV2(i, accounts, ts);
}

// Run directly (`node bench/stack.ts`): say what to run instead of silently doing nothing.
if (import.meta.main) (await import('./cli.ts')).notACommand(import.meta, 'npm run bench (see npm run bench -- --help)');
