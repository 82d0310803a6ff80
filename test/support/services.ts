// Helpers for Tollgate's tests to find (and, for fault tests, stop/start) real backing services.
//
// Where a service is looked for, in order:
//   1. the environment: REDIS_URL / KAFKA_BROKERS / CLICKHOUSE_URL (trusted as given, not probed);
//   2. a local probe of 127.0.0.1 on REDIS_PORT (default 6379) / KAFKA_PORT (default 9092) /
//      CLICKHOUSE_PORT (default 8123, `GET /ping`), i.e. what `bash deploy/services.sh up` starts;
//   3. (out of scope here) where a Docker engine exists, testcontainers would be the third
//      source: start a throwaway container and return its URL. This machine and CI have no
//      Docker daemon and testcontainers is not installed, so we stop at 2.
//
// If nothing is found, requireRedis/requireKafka skip the test loudly, unless services are
// required (TOLLGATE_REQUIRE_SERVICES=1 or CI=true), in which case they throw, so CI can never
// go green by silently skipping the real-engine suites.
//
// Only node built-ins are used. Runs under Node 24 type stripping.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

export interface ServiceHandle {
  /** Redis: `redis://host:port`; Kafka: brokers `host:port,host:port`. */
  url: string;
}

/** Environment to read; defaults to process.env. Tests can inject their own. */
export type Env = Record<string, string | undefined>;

export const PROBE_TIMEOUT_MS = 500;

/**
 * Variables a child process must never inherit from the test runner or bench: they are there to
 * FIND a service, but in a child they select a mode. REDIS_CLUSTER_NODES (printed by
 * `deploy/services.sh up`, exported by .ci/run) would put a child's ledger on the Redis Cluster
 * (and an embedded child refuses to start with it and no REDIS_URL). A child that should use the
 * cluster is given it explicitly.
 */
export const DISCOVERY_ONLY_ENV = ['REDIS_CLUSTER_NODES'] as const;

/** `process.env` (or `env`) without DISCOVERY_ONLY_ENV, plus `extra`: the environment for a spawned Tollgate, CLI or bench child. */
export function childEnv(extra: Record<string, string | undefined> = {}, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const k of DISCOVERY_ONLY_ENV) delete out[k];
  return { ...out, ...extra };
}

const HOST = '127.0.0.1';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const KAFKA_SH = fileURLToPath(new URL('../../deploy/kafka.sh', import.meta.url));
const REDIS_SH = fileURLToPath(new URL('../../deploy/redis.sh', import.meta.url));
const CLICKHOUSE_SH = fileURLToPath(new URL('../../deploy/clickhouse.sh', import.meta.url));

/** How to start the services on ports and a state directory of one's own (a shared machine), the variables to export printed by `up`. */
const OWN_PORTS = 'on ports of your own: REDIS_PORT=… KAFKA_PORT=… KAFKA_CONTROLLER_PORT=… CLICKHOUSE_PORT=… REDIS_CLUSTER_PORTS=… TOLLGATE_DEPLOY_DIR=… bash deploy/services.sh up, then export what it prints';
const REDIS_HINT = `set REDIS_URL or run \`bash deploy/services.sh up\` (${OWN_PORTS})`;
const REDIS_CLUSTER_HINT = `set REDIS_CLUSTER_NODES or run \`bash deploy/redis-cluster.sh start\` (or \`bash deploy/services.sh up\`; ${OWN_PORTS})`;
const KAFKA_HINT = `set KAFKA_BROKERS or run \`bash deploy/services.sh up\` (${OWN_PORTS})`;
const CLICKHOUSE_HINT = `set CLICKHOUSE_URL or run \`bash deploy/services.sh up\` (or \`bash deploy/clickhouse.sh start\`; ${OWN_PORTS})`;
/** The skip message of a test that needs Redis and found none (requireRedis' own, outside it). */
export const NEEDS_REDIS = `SKIPPED: needs Redis (${REDIS_HINT})`;
/** The skip message of a test that needs both Kafka and Redis (a distributed deployment) and found them not. */
export const NEEDS_KAFKA_AND_REDIS = `SKIPPED: needs Kafka and Redis (set KAFKA_BROKERS and REDIS_URL, or run \`bash deploy/services.sh up\`; ${OWN_PORTS})`;

function nonEmpty(v: string | undefined): string | undefined {
  const s = v?.trim();
  return s ? s : undefined;
}

function portFrom(env: Env, name: string, fallback: number): number {
  const n = Number(nonEmpty(env[name]) ?? fallback);
  return Number.isInteger(n) && n > 0 && n < 65536 ? n : fallback;
}

/** Local Redis port that deploy/redis.sh uses (REDIS_PORT, default 6379). */
export function localRedisPort(env: Env = process.env): number {
  return portFrom(env, 'REDIS_PORT', 6379);
}

/** Local Kafka port that deploy/kafka.sh uses (KAFKA_PORT, default 9092). */
export function localKafkaPort(env: Env = process.env): number {
  return portFrom(env, 'KAFKA_PORT', 9092);
}

/** Local ClickHouse HTTP port that deploy/clickhouse.sh uses (CLICKHOUSE_PORT, default 8123). */
export function localClickHousePort(env: Env = process.env): number {
  return portFrom(env, 'CLICKHOUSE_PORT', 8123);
}

/** True when a TCP connection to host:port succeeds within timeoutMs. */
export function probeTcp(host: string, port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let settled = false;
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** True when host:port answers `PING` with `+PONG` within timeoutMs. */
export function probeRedis(host: string, port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let settled = false;
    let buf = '';
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.setEncoding('latin1');
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.startsWith('+PONG')) done(true);
      else if (!'+PONG'.startsWith(buf)) done(false); // anything else (-NOAUTH, HTTP, ...) is not ours

    });
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

/** REDIS_URL from the environment, else redis://127.0.0.1:<REDIS_PORT|6379> if it answers PING. */
export async function findRedis(env: Env = process.env): Promise<string | undefined> {
  const fromEnv = nonEmpty(env.REDIS_URL);
  if (fromEnv) return fromEnv;
  if (noProbing(env)) return undefined;
  const port = localRedisPort(env);
  return (await probeRedis(HOST, port)) ? `redis://${HOST}:${port}` : undefined;
}

/** Local Redis Cluster ports that deploy/redis-cluster.sh uses (REDIS_CLUSTER_PORTS, default "7001 7002 7003"). */
export function localRedisClusterPorts(env: Env = process.env): number[] {
  const ports = (nonEmpty(env.REDIS_CLUSTER_PORTS) ?? '7001 7002 7003').split(/[\s,]+/).map(Number);
  return ports.every((p) => Number.isInteger(p) && p > 0 && p < 65536) ? ports : [7001, 7002, 7003];
}

/**
 * A Redis Cluster's seed nodes `host:port,host:port`: REDIS_CLUSTER_NODES from the environment
 * (trusted as given), else the local ports of deploy/redis-cluster.sh when every one answers
 * PING. Undefined when neither.
 */
export async function findRedisCluster(env: Env = process.env): Promise<string | undefined> {
  const fromEnv = nonEmpty(env.REDIS_CLUSTER_NODES);
  if (fromEnv) return fromEnv;
  if (noProbing(env)) return undefined;
  const ports = localRedisClusterPorts(env);
  const up = await Promise.all(ports.map((p) => probeRedis(HOST, p)));
  return up.every(Boolean) ? ports.map((p) => `${HOST}:${p}`).join(',') : undefined;
}

/** True when `GET http://host:port/ping` answers 200 `Ok.` (ClickHouse's liveness reply) within timeoutMs. */
export async function probeClickHouse(host: string, port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  try {
    const res = await fetch(`http://${host}:${port}/ping`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok && (await res.text()).trim() === 'Ok.';
  } catch {
    return false;
  }
}

/**
 * CLICKHOUSE_URL from the environment, else http://127.0.0.1:<CLICKHOUSE_PORT|8123> if it answers
 * `/ping`. Undefined when neither: callers then use chDB (embedded) or skip.
 */
export async function findClickHouse(env: Env = process.env): Promise<string | undefined> {
  const fromEnv = nonEmpty(env.CLICKHOUSE_URL);
  if (fromEnv) return fromEnv;
  if (noProbing(env)) return undefined;
  const port = localClickHousePort(env);
  return (await probeClickHouse(HOST, port)) ? `http://${HOST}:${port}` : undefined;
}

/**
 * TOLLGATE_TEST_SERVICES=none: no local probe (a shared machine whose default ports serve someone
 * else's services); only the services named by the variables are used, the rest skip.
 */
function noProbing(env: Env): boolean {
  return env.TOLLGATE_TEST_SERVICES === 'none';
}

/** KAFKA_BROKERS from the environment, else 127.0.0.1:<KAFKA_PORT|9092> if a TCP connect succeeds. */
export async function findKafka(env: Env = process.env): Promise<string | undefined> {
  const fromEnv = nonEmpty(env.KAFKA_BROKERS);
  if (fromEnv) return fromEnv;
  if (noProbing(env)) return undefined;
  const port = localKafkaPort(env);
  return (await probeTcp(HOST, port)) ? `${HOST}:${port}` : undefined;
}

/** Services must be present (never skip): TOLLGATE_REQUIRE_SERVICES=1 or CI=true. */
export function servicesRequired(env: Env = process.env): boolean {
  return env.TOLLGATE_REQUIRE_SERVICES === '1' || env.CI === 'true';
}

/** The part of node:test's TestContext these helpers use (lets tests pass a fake). */
export type SkippableContext = Pick<TestContext, 'skip'>;

async function requireService(
  t: SkippableContext,
  name: string,
  variable: string,
  defaultHint: string,
  find: (env: Env) => Promise<string | undefined>,
  env: Env,
): Promise<string | undefined> {
  const url = await find(env);
  if (url) return url;
  // With the default ports ruled out, starting the services there is not the way: the user
  // opted out of what serves them (someone else's, on a shared machine).
  const hint = noProbing(env)
    ? `TOLLGATE_TEST_SERVICES=none probes no default port: set ${variable}, e.g. to services started ${OWN_PORTS}`
    : defaultHint;
  if (servicesRequired(env)) {
    throw new Error(
      `${name} is required (TOLLGATE_REQUIRE_SERVICES=1 or CI=true) but none was found: ${hint}`,
    );
  }
  const message = `SKIPPED: needs ${name} (${hint})`;
  process.stderr.write(`\n*** ${message} ***\n`);
  t.skip(message);
  return undefined;
}

/**
 * For node:test: returns the Redis URL, or calls t.skip() with a loud message (also written to
 * stderr) and returns undefined; when services are required, throws instead of skipping.
 * t.skip() does not stop the test function, so callers must return on undefined:
 *
 *   test('...', async (t) => { const url = await requireRedis(t); if (!url) return; ... });
 */
export async function requireRedis(t: SkippableContext, env: Env = process.env): Promise<string | undefined> {
  return requireService(t, 'Redis', 'REDIS_URL', REDIS_HINT, findRedis, env);
}

/** Like requireRedis, for a Redis Cluster; returns its seed nodes `host:port,host:port`. */
export async function requireRedisCluster(t: SkippableContext, env: Env = process.env): Promise<string | undefined> {
  return requireService(t, 'a Redis Cluster', 'REDIS_CLUSTER_NODES', REDIS_CLUSTER_HINT, findRedisCluster, env);
}

/** Like requireRedis, for Kafka; returns brokers `host:port[,host:port]`. */
export async function requireKafka(t: SkippableContext, env: Env = process.env): Promise<string | undefined> {
  return requireService(t, 'Kafka', 'KAFKA_BROKERS', KAFKA_HINT, findKafka, env);
}

/** Like requireRedis, for a ClickHouse server; returns its HTTP URL `http://host:port`. */
export async function requireClickHouse(t: SkippableContext, env: Env = process.env): Promise<string | undefined> {
  return requireService(t, 'a ClickHouse server', 'CLICKHOUSE_URL', CLICKHOUSE_HINT, findClickHouse, env);
}

// ---------------------------------------------------------------------------------------------
// Fault injection: stop/start the local services started by deploy/*.sh. These only control
// instances started by those scripts (same TOLLGATE_DEPLOY_DIR / ports); a service found via
// REDIS_URL / KAFKA_BROKERS on another host cannot be stopped, and stop*() throws in that case
// rather than letting a fault test pass without a fault.

/** The services a fault test can stop and start through deploy/*.sh. */
export type ControllableService = 'kafka' | 'redis' | 'clickhouse';

const DEPLOY = {
  kafka: { name: 'Kafka', dir: 'kafka', pidfile: 'kafka.pid', pattern: /kafka\.Kafka/, port: localKafkaPort, url: 'KAFKA_BROKERS' },
  redis: { name: 'Redis', dir: 'redis', pidfile: 'redis.pid', pattern: /redis-server/, port: localRedisPort, url: 'REDIS_URL' },
  clickhouse: { name: 'ClickHouse', dir: 'clickhouse', pidfile: 'clickhouse.pid', pattern: /deploy\/clickhouse\/server\.py/, port: localClickHousePort, url: 'CLICKHOUSE_URL' },
} as const;

/**
 * Why deploy/<service>.sh of this checkout cannot stop the `service` the tests use, or
 * undefined when it can: its pid file under `${TOLLGATE_DEPLOY_DIR:-<repo>/.deploy}` names a
 * live process of that service (what the script's own `pid_alive` checks), and the tests'
 * `REDIS_URL` / `KAFKA_BROKERS`, when set, point at that local port. A service someone else
 * started (a system Redis, a broker from another checkout) cannot be stopped from here, so a
 * fault test against it would measure nothing.
 */
export function notControllable(service: ControllableService, env: Env = process.env): string | undefined {
  const d = DEPLOY[service];
  const port = d.port(env);
  const given = nonEmpty(env[d.url]);
  if (given !== undefined) {
    const local = given.split(',').map((s) => s.trim().replace(/^(redis|https?):\/\//, '').replace(/\/.*$/, ''));
    if (!local.every((hp) => hp === `${HOST}:${port}` || hp === `localhost:${port}`)) {
      return `${d.url}=${given} is not this checkout's local ${d.name} on ${HOST}:${port}`;
    }
  }
  const stateDir = nonEmpty(env.TOLLGATE_DEPLOY_DIR) ?? join(REPO_ROOT, '.deploy');
  const pidfile = join(stateDir, d.dir, d.pidfile);
  let pid: string;
  try {
    pid = readFileSync(pidfile, 'utf8').trim();
  } catch {
    return `${d.name} was not started by deploy/${service}.sh of this checkout (no ${pidfile})`;
  }
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch { /* not running, or not Linux */ }
  if (!/^\d+$/.test(pid) || !d.pattern.test(cmdline)) {
    return `${pidfile} names no running ${d.name} (pid ${JSON.stringify(pid.slice(0, 20))})`;
  }
  return undefined;
}

/**
 * For fault tests, before stopping `service`: true when this checkout's deploy scripts control
 * it (`notControllable`). Otherwise the test is skipped, loudly (stderr) and counted by the
 * runner as a skip — never a pass, never a "still up after stop" failure — unless services are
 * required (TOLLGATE_REQUIRE_SERVICES=1 or CI=true), where it throws, so CI cannot go green
 * without its fault tests:
 *
 *   test('…', async (t) => { if (!(await requireFaultControl(t, 'kafka'))) return; … });
 */
export async function requireFaultControl(t: SkippableContext, service: ControllableService, env: Env = process.env): Promise<boolean> {
  const why = notControllable(service, env);
  if (why === undefined) return true;
  const hint = `start it with \`bash deploy/services.sh up\` from this checkout to run fault tests, with the TOLLGATE_DEPLOY_DIR and ports the tests are given (${OWN_PORTS})`;
  if (servicesRequired(env)) {
    throw new Error(`fault injection on ${DEPLOY[service].name} is required (TOLLGATE_REQUIRE_SERVICES=1 or CI=true) but not possible: ${why}; ${hint}`);
  }
  const message = `SKIPPED: fault test needs a ${DEPLOY[service].name} it can stop: ${why}; ${hint}`;
  process.stderr.write(`\n*** ${message} ***\n`);
  t.skip(message);
  return false;
}

export interface ServiceControl {
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
}

function runScript(script: string, command: string, env: Env, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [script, command],
      { cwd: REPO_ROOT, env: env as NodeJS.ProcessEnv, timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`bash ${script} ${command} failed: ${error.message}\n${stderr}`));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

async function assertDown(name: string, port: number): Promise<void> {
  if (await probeTcp(HOST, port)) {
    throw new Error(
      `${name} on ${HOST}:${port} is still up after stop: it was not started by deploy/ scripts ` +
        `with this TOLLGATE_DEPLOY_DIR, so this test cannot inject the fault`,
    );
  }
}

/** `bash deploy/kafka.sh stop`; throws if the broker port is still open afterwards. */
export async function stopKafka(env: Env = process.env): Promise<void> {
  await runScript(KAFKA_SH, 'stop', env, 60_000);
  await assertDown('Kafka', localKafkaPort(env));
}

/** `bash deploy/kafka.sh start` (idempotent); resolves when the broker answers metadata. */
export async function startKafka(env: Env = process.env): Promise<void> {
  await runScript(KAFKA_SH, 'start', env, 120_000);
}

/** `bash deploy/redis.sh stop`; throws if the Redis port is still open afterwards. */
export async function stopRedis(env: Env = process.env): Promise<void> {
  await runScript(REDIS_SH, 'stop', env, 30_000);
  await assertDown('Redis', localRedisPort(env));
}

/** `bash deploy/redis.sh start` (idempotent); resolves when Redis answers PING. */
export async function startRedis(env: Env = process.env): Promise<void> {
  await runScript(REDIS_SH, 'start', env, 120_000);
}

/** `bash deploy/clickhouse.sh stop`; throws if the HTTP port is still open afterwards. */
export async function stopClickHouse(env: Env = process.env): Promise<void> {
  await runScript(CLICKHOUSE_SH, 'stop', env, 30_000);
  await assertDown('ClickHouse', localClickHousePort(env));
}

/** `bash deploy/clickhouse.sh start` (idempotent); resolves when `/ping` answers. */
export async function startClickHouse(env: Env = process.env): Promise<void> {
  await runScript(CLICKHOUSE_SH, 'start', env, 120_000);
}

/** Stop/start handle for the local ClickHouse server (for fault tests). */
export function clickhouseControl(env: Env = process.env): ServiceControl {
  return {
    stop: () => stopClickHouse(env),
    start: () => startClickHouse(env),
    restart: async () => {
      await stopClickHouse(env);
      await startClickHouse(env);
    },
  };
}

/** Stop/start handle for the local Kafka broker (for fault tests). */
export function kafkaControl(env: Env = process.env): ServiceControl {
  return {
    stop: () => stopKafka(env),
    start: () => startKafka(env),
    restart: async () => {
      await stopKafka(env);
      await startKafka(env);
    },
  };
}

/** Stop/start handle for the local Redis (for fault tests). */
export function redisControl(env: Env = process.env): ServiceControl {
  return {
    stop: () => stopRedis(env),
    start: () => startRedis(env),
    restart: async () => {
      await stopRedis(env);
      await startRedis(env);
    },
  };
}
