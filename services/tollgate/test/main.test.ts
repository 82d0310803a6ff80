// The program's command line: conventions (help on stdout, diagnostics on stderr, exit codes)
// and config errors that name every bad variable before anything starts.
import { Redis } from 'ioredis';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONFIG_VARIABLES } from '@tollgate/config';
import { DEAD_LETTER_TOPIC, TOPICS } from '@tollgate/events';
import { Kafka, logLevel } from 'kafkajs';
import { requireClickHouse, requireKafka, requireRedis } from '../../../test/support/services.ts';
import { deleteKeysUnder } from '../../../test/support/redis.ts';
import { startRelay } from '../../../test/support/redis-relay.ts';

const MAIN = join(import.meta.dirname, '../src/main.ts');
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 });

test('--help prints usage on stdout and exits 0', () => {
  const r = run(['--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^Usage: tollgate/);
  assert.match(r.stdout, /\n  1 {2}could not start or stopped on a failure: the port is in use/);
  const ops = run(['rebuild', '--help']);
  assert.equal(ops.status, 0);
  assert.match(ops.stdout, /rebuild\s+rebuild hot state/);
});

test('--help names settings that exist, with the defaults the README gives, and examples that start', () => {
  // Kind: help text drifting from the configuration (a renamed variable, a changed default).
  const r = run(['--help']);
  const named = [...new Set(r.stdout.match(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g) ?? [])];
  const known = new Set([...CONFIG_VARIABLES, 'TOLLGATE_URL']);
  assert.deepEqual(named.filter((v) => !known.has(v)), [], 'named by --help but not a setting');
  for (const v of ['PORT', 'HOST', 'DATA_DIR', 'PRICING_FILE', 'KAFKA_BROKERS', 'REDIS_URL', 'CLICKHOUSE_URL']) {
    assert.match(r.stdout, new RegExp(`\\b${v}\\b`), v);
  }
  const readme = readFileSync(join(import.meta.dirname, '../../../README.md'), 'utf8');
  assert.match(readme, /^\| `PORT`, `HOST` \| `8080`, `0\.0\.0\.0` \|/m);
  assert.match(r.stdout, /PORT, HOST +where the API listens \(8080, 0\.0\.0\.0\)/);
  assert.match(readme, /^\| `DATA_DIR` \| `\.\/data` \|/m);
  assert.match(r.stdout, /DATA_DIR +.*\(\.\/data\)/);
  assert.match(readme, /^\| `PRICING_FILE` \| `libs\/pricing\/catalogs\/cny\.json` \|/m);
  assert.match(r.stdout, /PRICING_FILE +the catalog \(libs\/pricing\/catalogs\/cny\.json\)/);
});

test('bad settings: every problem named on stderr, exit 2, nothing started', () => {
  const r = run([], { PORT: 'eighty', UPSTREAM_URL: 'not a url', STREAM_ERROR_BILLING: 'maybe', DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-')) });
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  for (const name of ['PORT', 'UPSTREAM_URL', 'STREAM_ERROR_BILLING']) assert.match(r.stderr, new RegExp(`- ${name}: `));
});

test('a broken catalog file is refused with its path and problem, exit 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tg-main-'));
  const file = join(dir, 'catalog.json');
  writeFileSync(file, JSON.stringify({ version: 1, name: 'x', credit: { currency: 'USD', unit_per_credit: '0.005' }, price_unit: 'credits', models: [{ id: 'm', upstream_model: 'm', prices: { input: 'cheap' } }] }));
  const r = run([], { PRICING_FILE: file, DATA_DIR: dir, PORT: '0' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /models\[0\] "m"\.prices\.input: expected a decimal string/);
});

test('a catalog file that cannot be read is refused before anything is written: exit 2, its path and the README section named, no DATA_DIR made', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'tg-main-')), 'data');
  const missing = join(tmpdir(), `tg-no-such-catalog-${process.pid}.json`);
  const r = run([], { PRICING_FILE: missing, DATA_DIR: dir, PORT: '0' });
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `tollgate: invalid pricing catalog ${missing}:\n  - (file): cannot read: ENOENT: no such file or directory, open '${missing}'\n`
    + '(PRICING_FILE names the catalog; see README.md "Model catalog" for its format)\n');
  // A new user's LOW: the refused start had already written admin-token and key-hash-secret there.
  assert.equal(existsSync(dir), false);
});

test('unknown commands and bad options exit 2', () => {
  assert.equal(run(['frobnicate']).status, 2);
  const r = run(['reconcile', '--timeout-ms', 'soon'], { ADMIN_TOKEN: 'x'.repeat(20) });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--timeout-ms must be a whole number/);
  const down = run(['reconcile', '--url', 'http://127.0.0.1:1'], { ADMIN_TOKEN: 'x'.repeat(20) });
  assert.equal(down.status, 1);
  assert.match(down.stderr, /cannot reach/);
});

test('configuration values that land in events are bounded at start: GATEWAY_ID of 300 characters exits 2 naming it', () => {
  const r = run([], { GATEWAY_ID: 'gw-'.repeat(100), DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-')), PORT: '0' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'tollgate: invalid configuration:\n  - GATEWAY_ID: must be at most 256 characters (it is stored in every usage event)\n(see tollgate --help, and README.md "Configuration" for every variable)\n');
});

test('catalog model names that land in events are bounded at start: a control character in upstream_model exits 2 with its path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tg-main-'));
  const file = join(dir, 'catalog.json');
  const prices = { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' };
  writeFileSync(file, JSON.stringify({ version: 1, name: 'x', credit: { currency: 'USD', unit_per_credit: '0.005' }, price_unit: 'credits', models: [{ id: 'm', upstream_model: 'm\u0007', prices }] }));
  const r = run([], { PRICING_FILE: file, DATA_DIR: dir, PORT: '0' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /models\[0\] "m"\.upstream_model: must not contain control characters \(it is stored in usage events\)/);
});

test('port already in use: one line naming the port and what to set, exit 1, no stack trace', async () => {
  const holder = createServer();
  holder.listen({ host: '127.0.0.1', port: 0 });
  await once(holder, 'listening');
  const { port } = holder.address() as AddressInfo;
  try {
    const child = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-')), LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const [code] = await once(child, 'exit') as [number | null];
    assert.equal(code, 1);
    assert.equal(stderr, `tollgate: port ${port} on 127.0.0.1 is in use; set PORT (and HOST) to another\n`);
  } finally {
    holder.close();
  }
});

/** A port that was just free: nothing answers there. */
async function freePort(): Promise<number> {
  const s = createServer();
  s.listen({ host: '127.0.0.1', port: 0 });
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Starts the server with a distributed environment plus `env`; its exit code and stderr. */
async function startDistributed(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(await freePort()), DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-')), LOG_LEVEL: 'silent',
      KEY_HASH_SECRET: 'key-hash-secret-0123456789abcdef', ADMIN_TOKEN: 'admin-token-0123456789abcdef', ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  // One that starts instead of refusing is stopped (its exit then is no code, a failed assertion, not a hung test).
  const refuseWithin = setTimeout(() => child.kill('SIGKILL'), STARTS_INSTEAD_MS);
  const [code] = await once(child, 'exit') as [number | null];
  clearTimeout(refuseWithin);
  return { code, stderr };
}

/** How long startDistributed waits for a process that should refuse to start. */
const STARTS_INSTEAD_MS = 30_000;

test('Redis not answering at start: one line naming it, where (host:port, never the password) and the variable, exit 1, no stack trace', async () => {
  const [redisPort, kafkaPort] = [await freePort(), await freePort()];
  const noRedis = await startDistributed({ TOLLGATE_ROLES: 'gateway', KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`, REDIS_URL: `redis://:pw-never-printed@127.0.0.1:${redisPort}/0` });
  assert.deepEqual(noRedis, { code: 1, stderr: `tollgate: Redis at 127.0.0.1:${redisPort} (REDIS_URL) is not answering: connect ECONNREFUSED 127.0.0.1:${redisPort}; start it, or set REDIS_URL\n` });
});

test('Redis too old for the ledger at start (below 6.2: no SET … GET): one line naming it, where, its version and what is needed, exit 1, no stack trace', { timeout: 60_000 }, async (t) => {
  // Kind: a Redis on which every usage apply would fail (the consumer stalled, no usage billed)
  // is refused at start, not found out at the first event. The real Redis, through a relay that
  // makes its INFO say an older version of the same length.
  const url = await requireRedis(t);
  if (url === undefined) return;
  const probe = new Redis(url);
  const version = /^redis_version:(\S+)/m.exec(await probe.info('server'))![1]!;
  probe.disconnect();
  const old = `6.0.${'9'.repeat(Math.max(1, version.length - 4))}`; // as long as `version` (x.y.z)
  const relay = await startRelay(new URL(url));
  t.after(() => relay.close());
  relay.rewriteReplies(`redis_version:${version}`, `redis_version:${old}`);
  const kafkaPort = await freePort();
  const tooOld = await startDistributed({ TOLLGATE_ROLES: 'gateway', KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`, REDIS_URL: `redis://127.0.0.1:${relay.port}/0` });
  assert.deepEqual(tooOld, {
    code: 1,
    stderr: `tollgate: Redis at 127.0.0.1:${relay.port} (REDIS_URL) is Redis ${old}; Tollgate needs Redis 6.2 or later (the ledger writes a usage id marker and reads the one it replaces with SET … GET)\n`,
  });
});

test('Kafka not answering when an aggregator starts: one line naming it and KAFKA_BROKERS, exit 1, no stack trace (a gateway starts without it: cluster.fault.test.ts)', async (t) => {
  const redis = await requireRedis(t);
  if (redis === undefined) return;
  const kafkaPort = await freePort();
  const noKafka = await startDistributed({ TOLLGATE_ROLES: 'aggregator', AGGREGATOR_GROUPS: 'ledger', KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`, REDIS_URL: redis });
  assert.deepEqual(noKafka, { code: 1, stderr: `tollgate: Kafka at 127.0.0.1:${kafkaPort} (KAFKA_BROKERS) is not answering: Connection error: connect ECONNREFUSED 127.0.0.1:${kafkaPort}; an aggregator needs it to start (start it, or set KAFKA_BROKERS)\n` });
});

/** Starts the server with `env` over the base environment of startDistributed (no Kafka or Redis: embedded); its exit code, stdout and stderr. */
async function startWith(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(await freePort()), DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-')),
      KEY_HASH_SECRET: 'key-hash-secret-0123456789abcdef', ADMIN_TOKEN: 'admin-token-0123456789abcdef', ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const [code] = await once(child, 'exit') as [number | null];
  return { code, stdout, stderr };
}

test('ClickHouse not answering at start (CLICKHOUSE_URL): one line naming its origin (never the URL\'s user or password) and the variable, exit 1, no stack trace; embedded and distributed alike', async (t) => {
  // Kind: a backing service missing at start. Redis and Kafka had their line; a ClickHouse
  // server printed "failed to start" with a stack.
  const port = await freePort();
  const line = `tollgate: ClickHouse at http://127.0.0.1:${port} (CLICKHOUSE_URL) is not answering: connect ECONNREFUSED 127.0.0.1:${port}; start it, or set CLICKHOUSE_URL\n`;
  const embedded = await startWith({ CLICKHOUSE_URL: `http://tg:pw-never-printed@127.0.0.1:${port}/`, LOG_LEVEL: 'info' });
  assert.deepEqual([embedded.code, embedded.stderr], [1, line]);
  assert.doesNotMatch(embedded.stdout, /pw-never-printed/);
  // Something else answers on that port: a plain HTTP server (a 404 page), spoken to in HTTP and in TLS.
  const other = createHttpServer((_req, res) => { res.writeHead(404, { 'content-type': 'text/plain' }).end('not here\nsecond line'); });
  other.listen({ host: '127.0.0.1', port: 0 });
  await once(other, 'listening');
  const otherPort = (other.address() as AddressInfo).port;
  try {
    const foreign = await startWith({ CLICKHOUSE_URL: `http://tg:pw-never-printed@127.0.0.1:${otherPort}` });
    assert.deepEqual([foreign.code, foreign.stderr], [1, `tollgate: ClickHouse at http://127.0.0.1:${otherPort} (CLICKHOUSE_URL) did not answer as a ClickHouse server ("not here"); check CLICKHOUSE_URL\n`]);
    const tls = await startWith({ CLICKHOUSE_URL: `https://tg:pw-never-printed@127.0.0.1:${otherPort}` });
    assert.equal(tls.code, 1);
    assert.match(tls.stderr, new RegExp(`^tollgate: ClickHouse at https://127\\.0\\.0\\.1:${otherPort} \\(CLICKHOUSE_URL\\) failed in TLS: [^\\n]*wrong version number[^\\n]*; check the scheme \\(https only for a TLS port\\) and that this process trusts the server's certificate \\(NODE_EXTRA_CA_CERTS\\)\\n$`));
    for (const r of [foreign, tls]) assert.doesNotMatch(r.stdout + r.stderr, /pw-never-printed/);
  } finally {
    other.close();
  }
  const redis = await requireRedis(t);
  if (redis === undefined) return;
  // The control role reads a ClickHouse server: it opened Redis and the log first, and closes them (the process exits).
  const control = await startDistributed({ TOLLGATE_ROLES: 'control', KAFKA_BROKERS: `127.0.0.1:${await freePort()}`, REDIS_URL: redis, CLICKHOUSE_URL: `http://127.0.0.1:${port}` });
  assert.deepEqual(control, { code: 1, stderr: line });
});

test('ClickHouse refusing the configured user at start: one line naming the user and the variables to check (never the password), exit 1, no stack trace', async (t) => {
  const url = await requireClickHouse(t);
  if (url === undefined) return;
  const origin = new URL(url).origin;
  const refused = (user: string) => `tollgate: ClickHouse at ${origin} (CLICKHOUSE_URL) refused the user "${user}" (AUTHENTICATION_FAILED); check the user and password (CLICKHOUSE_USER and CLICKHOUSE_PASSWORD, or those in CLICKHOUSE_URL)\n`;
  const r = await startWith({ CLICKHOUSE_URL: url, CLICKHOUSE_USER: 'tg_no_such_user', CLICKHOUSE_PASSWORD: 'pw-never-printed', LOG_LEVEL: 'info' });
  assert.deepEqual([r.code, r.stderr], [1, refused('tg_no_such_user')]);
  assert.doesNotMatch(r.stdout, /pw-never-printed/);
  // The user in the URL is the one sent, and the one named.
  const inUrl = new URL(url);
  inUrl.username = 'tg_url_user';
  inUrl.password = 'pw%40never-printed';
  const u = await startWith({ CLICKHOUSE_URL: inUrl.href, LOG_LEVEL: 'info' });
  assert.deepEqual([u.code, u.stderr], [1, refused('tg_url_user')]);
  assert.doesNotMatch(u.stdout + u.stderr, /never-printed/);
});

/**
 * Starts the server with exactly `env` (PATH added) and waits for its `tollgate started` line:
 * the child (kill it), its stdout up to then, and the start line parsed. Rejects if it exits first.
 */
async function startServing(env: Record<string, string>): Promise<{ child: ChildProcess; out: string; started: Record<string, unknown> }> {
  const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8');
  const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.on('data', (d: string) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"tollgate started"'));
      if (line) resolve(JSON.parse(line) as Record<string, unknown>);
    });
    child.on('exit', (code) => reject(new Error(`exited ${code} before the start line: ${out}`)));
  });
  return { child, out, started };
}

/** SIGKILL and wait for the exit (nothing to keep: these processes have no Kafka to flush to). */
async function killNow(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
}

test('two distributed processes on one DATA_DIR: the second waits for the lock, then exits 1 with one line naming the directory, and the first keeps its spool; only a gateway warns of a missing UPSTREAM_API_KEY', async (t) => {
  // Kind: processes sharing a directory of per-process state. The README's distributed example
  // ran every role from one working directory without DATA_DIR; each process's start sent and
  // deleted the others' live spool segments, and events appended after that were never billed.
  const redis = await requireRedis(t);
  if (redis === undefined) return;
  const dataDir = mkdtempSync(join(tmpdir(), 'tg-main-shared-'));
  const env = {
    PATH: process.env.PATH ?? '', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', TOLLGATE_ROLES: 'gateway',
    KEY_HASH_SECRET: 'key-hash-secret-0123456789abcdef', KAFKA_BROKERS: `127.0.0.1:${await freePort()}`, REDIS_URL: redis, REDIS_PREFIX: 'tg-main-shared:',
  };
  const { child: first, out, started } = await startServing({ ...env, PORT: String(await freePort()) });
  try {
    // (a gateway without UPSTREAM_API_KEY says so; the control process below does not)
    assert.match(out, /UPSTREAM_API_KEY is not set: the upstream will see no credential/);
    const second = await startWith({ ...env, PORT: String(await freePort()) });
    assert.deepEqual([second.code, second.stderr],
      [1, `tollgate: DATA_DIR ${dataDir} is in use by another process (its spool of events is one process's); stop it or set DATA_DIR to another\n`]);
    assert.match(second.stdout, /"DATA_DIR is locked: waiting for the lock of a process that stopped to go stale/);
    assert.doesNotMatch(second.stdout, /found spooled events from an earlier run/, 'the second process never read the spool');
    assert.equal(first.exitCode, null, 'the first process still runs');
    // A gateway has no admin API: it names the process that has (a CLI pointed at it read "does not exist").
    const admin = await fetch(`${String(started.url)}/admin/v1/accounts?limit=1`, { headers: { authorization: 'Bearer admin-token-0123456789abcdef' } });
    assert.deepEqual([admin.status, ((await admin.json()) as { error: unknown }).error], [404, {
      type: 'not_found_error', code: 'not_found', message: 'GET /admin/v1/accounts: paths under /admin/ are served by a process running the control role (the admin API; usage, billing, invoices, statements, credit history, webhooks and upstreams by the process that owns the warehouse where control has no CLICKHOUSE_URL), not by this one' }]);
    // A method and path the control process has no route for either: the answer names where
    // /admin/ paths live, never claims that this route is served there.
    const put = await fetch(`${String(started.url)}/admin/v1/usage`, { method: 'PUT', headers: { authorization: 'Bearer admin-token-0123456789abcdef' } });
    assert.deepEqual([put.status, ((await put.json()) as { error: { message: string } }).error.message],
      [404, 'PUT /admin/v1/usage: paths under /admin/ are served by a process running the control role (the admin API; usage, billing, invoices, statements, credit history, webhooks and upstreams by the process that owns the warehouse where control has no CLICKHOUSE_URL), not by this one']);
  } finally {
    await killNow(first);
  }
  // Another directory: a control process starts, and does not warn about the upstream's key it never uses.
  const control = await startServing({
    ...env, TOLLGATE_ROLES: 'control', ADMIN_TOKEN: 'admin-token-0123456789abcdef', DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-ctl-')), PORT: String(await freePort()),
  });
  try {
    assert.doesNotMatch(control.out, /UPSTREAM_API_KEY/);
    assert.equal('upstream' in control.started, false, 'a control process forwards nothing: no upstream in its start line');
    // A control process without a warehouse (no CLICKHOUSE_URL: one chDB, the warehouse
    // owner's) has no usage or billing routes: it says where they are, not "does not exist".
    const usage = await fetch(`${String(control.started.url)}/admin/v1/usage`, { headers: { authorization: 'Bearer admin-token-0123456789abcdef' } });
    assert.deepEqual([usage.status, ((await usage.json()) as { error: { message: string } }).error.message], [404,
      'GET /admin/v1/usage is not served by this process: this control process has no warehouse (CLICKHOUSE_URL is not set), so usage, billing, invoices, statements, credit history, webhooks and upstreams are served by the process that owns the warehouse (an aggregator running the warehouse group); any other path does not exist']);
    const accounts = await fetch(`${String(control.started.url)}/admin/v1/accounts?limit=1`, { headers: { authorization: 'Bearer admin-token-0123456789abcdef' } });
    assert.notEqual(accounts.status, 404, 'its own routes are served');
    // A control process has no customer API: it names the process that has.
    const messages = await fetch(`${String(control.started.url)}/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'sk-anything', 'content-type': 'application/json' }, body: '{}' });
    assert.deepEqual([messages.status, ((await messages.json()) as { error: unknown }).error], [404, {
      type: 'not_found_error', code: 'not_found', message: 'POST /v1/messages: paths under /v1/ are served by a process running the gateway role (the customer API), not by this one' }]);
    const aliased = await fetch(`${String(control.started.url)}/api/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.deepEqual([aliased.status, ((await aliased.json()) as { error: { message: string } }).error.message],
      [404, 'POST /api/v1/messages: paths under /api/v1/ are served by a process running the gateway role (the customer API), not by this one']);
  } finally {
    await killNow(control.child);
  }
});

test('unknown options on the server command line exit 2 naming the option as typed, nothing started; --version prints the version, exit 0', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tg-main-'));
  for (const [args, named] of [
    [['--bogus'], '--bogus'], [['-v'], '-v'], [['-x'], '-x'],
    [['--roles', 'gateway,aggregator,control', '--bogus'], '--bogus'], [['--roles=gateway,aggregator,control', '--port=1'], '--port'],
  ] as const) {
    const r = run([...args], { DATA_DIR: dataDir, PORT: '0' });
    assert.deepEqual([r.status, r.stdout, r.stderr], [2, '', `tollgate: unknown option "${named}"\n(see tollgate --help)\n`], args.join(' '));
  }
  const extra = run(['--roles', 'gateway,aggregator,control', 'serve'], { DATA_DIR: dataDir, PORT: '0' });
  assert.equal(extra.status, 2);
  assert.match(extra.stderr, /serve/);
  const v = run(['--version']);
  const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string };
  assert.deepEqual([v.status, v.stdout, v.stderr], [0, `tollgate ${version}\n`, '']);
});

test('the start line says where events go, in which codec and after which linger (kafka.brokers, topicPrefix, compression as parsed: " ZSTD " is zstd, lingerMs: " 35 " is 35), for an operator checking a rollout', async (t) => {
  const redis = await requireRedis(t);
  if (redis === undefined) return;
  const kafkaPort = await freePort(); // a gateway starts and serves while Kafka is away (events spool)
  const { child, started } = await startServing({
    HOST: '127.0.0.1', PORT: String(await freePort()), DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-')),
    KEY_HASH_SECRET: 'key-hash-secret-0123456789abcdef', ADMIN_TOKEN: 'admin-token-0123456789abcdef', TOLLGATE_ROLES: 'gateway',
    KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`, KAFKA_TOPIC_PREFIX: 'tg-main-start.', KAFKA_COMPRESSION: ' ZSTD ', KAFKA_LINGER_MS: ' 35 ', REDIS_URL: redis, REDIS_PREFIX: 'tg-main-start:',
  });
  try {
    assert.deepEqual(started['kafka'], { brokers: [`127.0.0.1:${kafkaPort}`], topicPrefix: 'tg-main-start.', partitions: 4, compression: 'zstd', lingerMs: 35 });
    assert.equal('aggregator' in started, false, 'a gateway runs no consumer group');
    // which Redis (host:port only) and, on a gateway, which default upstream; no ClickHouse server here
    const r = new URL(redis);
    assert.deepEqual([started['redis'], started['upstream'], 'clickhouse' in started], [{ endpoint: `${r.hostname}:${r.port || '6379'}` }, 'https://api.anthropic.com', false]);
  } finally {
    await killNow(child);
  }
});

test('an aggregator\'s start line names its consumer groups and ledger members (AGGREGATOR_GROUPS, LEDGER_CONSUMERS) and the partitions asked of the topics (KAFKA_PARTITIONS), as parsed', async (t) => {
  const redis = await requireRedis(t);
  const kafka = await requireKafka(t);
  if (redis === undefined || kafka === undefined) return;
  const prefix = `tg-main-agg-${process.pid}.`;
  const { child, started } = await startServing({
    HOST: '127.0.0.1', PORT: String(await freePort()), DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-')),
    KEY_HASH_SECRET: 'key-hash-secret-0123456789abcdef', ADMIN_TOKEN: 'admin-token-0123456789abcdef', TOLLGATE_ROLES: 'aggregator',
    AGGREGATOR_GROUPS: 'ledger', LEDGER_CONSUMERS: ' 2 ', KAFKA_PARTITIONS: ' 2 ', KAFKA_BROKERS: kafka, KAFKA_TOPIC_PREFIX: prefix,
    REDIS_URL: redis, REDIS_PREFIX: `tg-main-agg-${process.pid}:`,
  });
  try {
    assert.deepEqual(started['aggregator'], { groups: ['ledger'], ledgerConsumers: 2 });
    assert.equal((started['kafka'] as { partitions: unknown }).partitions, 2);
  } finally {
    await killNow(child);
    const r = new Redis(redis);
    try {
      await deleteKeysUnder(r, `tg-main-agg-${process.pid}:`);
    } finally {
      r.disconnect();
    }
    const admin = new Kafka({ clientId: 'tg-main-test', brokers: kafka.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      await admin.deleteTopics({ topics: [...TOPICS.map((topic) => prefix + topic), prefix + DEAD_LETTER_TOPIC] }).catch(() => {});
    } finally {
      await admin.disconnect();
    }
  }
});

test('Kafka away (connections refused, or accepted and never answered): the start does not wait for it, and SIGTERM, also with a request in flight, leaves the unacknowledged events in the spool and exits 0 with its stopped line, not the hard stop\'s exit 1', async (t) => {
  // Kind: a clean stop while a backing service the stop flushes to is away. The stop waited for
  // Kafka's acknowledgement of every event without a bound, so a gateway stopped (a rollout, a
  // scale-down) during a Kafka outage ran into the hard stop after SHUTDOWN_GRACE_MS + 10 s and
  // exited 1. A broker that accepts connections and never answers (frozen, black-holed) held
  // the first send's topic check for kafkajs' 30 s request timeout, and every publish with it: a
  // request in flight at the stop did the same (a tester's finding). The account created below
  // is a control event, spooled while Kafka is away.
  const redis = await requireRedis(t);
  if (redis === undefined) return;
  const held = new Set<import('node:net').Socket>();
  const blackHole = createServer((socket) => { held.add(socket); socket.on('error', () => {}); });
  await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', r));
  try {
    for (const [kind, brokers] of [['refused', `127.0.0.1:${await freePort()}`], ['black-holed', `127.0.0.1:${(blackHole.address() as AddressInfo).port}`]] as const) {
      const dataDir = mkdtempSync(join(tmpdir(), 'tg-main-stop-'));
      const port = await freePort();
      // Hot state built (no warehouse owner runs here to build it): control serves its routes.
      const r = new Redis(redis);
      await r.set(`tg-main-stop-${process.pid}:ledger-ready`, '1');
      r.disconnect();
      const { child, out: startOut } = await startServing({
        HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '1000',
        KEY_HASH_SECRET: 'key-hash-secret-0123456789abcdef', ADMIN_TOKEN: 'admin-token-0123456789abcdef', TOLLGATE_ROLES: 'gateway,control',
        KAFKA_BROKERS: brokers, REDIS_URL: redis, REDIS_PREFIX: `tg-main-stop-${process.pid}:`,
      });
      let out = '';
      child.stdout!.on('data', (d: string) => { out += d; });
      try {
        // The start does not wait for Kafka either: the price version it publishes is appended
        // to the spool, and the start went on only once Kafka's first send had failed before.
        assert.doesNotMatch(startOut, /kafka unreachable; spooling events to disk/, kind);
        // (a process without the operator routes says which one has them)
        const ops = await fetch(`http://127.0.0.1:${port}/ops/v1/reconcile?timeout_ms=5`);
        assert.deepEqual([ops.status, ((await ops.json()) as { error: unknown }).error], [404, { type: 'not_found_error', code: 'not_found', message: 'GET /ops/v1/reconcile: paths under /ops/ are served by the process that owns the warehouse (an aggregator running the warehouse group), not by this one' }]);
        const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
        const created = fetch(`http://127.0.0.1:${port}/admin/v1/accounts`, {
          method: 'POST', headers: { authorization: 'Bearer admin-token-0123456789abcdef', 'content-type': 'application/json' }, body: JSON.stringify({ name: 'stopped-in-an-outage' }),
        }).then(async (res) => ({ status: res.status, body: await res.text() }));
        // black-holed: the stop comes while the request waits for its event's first send (once
        // the process logged it arriving: a fixed 300 ms could come before, on a loaded machine)
        if (kind === 'black-holed') {
          void (async () => {
            for (const end = Date.now() + 10_000; Date.now() < end && !/"method":"POST","url":"\/admin\/v1\/accounts"[^\n]*"msg":"incoming request"/.test(out);) await new Promise((r) => setTimeout(r, 20));
            await new Promise((r) => setTimeout(r, 100));
            child.kill('SIGTERM');
          })();
        }
        const res = await created;
        assert.equal(res.status, 201, `${kind}: ${res.body}`);
        const { id } = JSON.parse(res.body) as { id: string };
        if (kind === 'refused') child.kill('SIGTERM');
        const [code] = await exited;
        assert.equal(code, 0, `${kind}: ${out}`);
        assert.match(out, /"msg":"closing with events still spooled; they are delivered on the next start"/, kind);
        assert.match(out, /"signal":"SIGTERM","ms":\d+,"msg":"stopped"/, kind);
        const spooled = readdirSync(join(dataDir, 'spool')).filter((n) => n.endsWith('.jsonl'))
          .flatMap((n) => readFileSync(join(dataDir, 'spool', n), 'utf8').split('\n').filter((l) => l !== ''));
        assert.ok(spooled.some((l) => l.includes(id)), `${kind}: the account's event is in the spool: ${spooled.join('\n')}`);
      } finally {
        await killNow(child);
      }
    }
  } finally {
    for (const s of held) s.destroy();
    blackHole.close();
    const { Redis } = await import('ioredis');
    const { deleteKeysUnder } = await import('../../../test/support/redis.ts');
    const r = new Redis(redis);
    await deleteKeysUnder(r, `tg-main-stop-${process.pid}:`).finally(() => r.disconnect());
  }
});

test('a stop asked for during the start (SIGTERM while Redis has not answered yet): the start finishes, then the process stops cleanly, exit 0, with DATA_DIR\'s lock given back', async (t) => {
  // Kind: a signal before the process has started. Node's default for it killed the process
  // (exit 143, no line) and left DATA_DIR's lock for the next start to wait out (LOCK_STALE_MS).
  // Redis is reached through a proxy that holds the first connection until the signal is in.
  const redis = await requireRedis(t);
  if (redis === undefined) return;
  const target = new URL(redis);
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  let connected!: () => void;
  const reached = new Promise<void>((r) => { connected = r; });
  const sockets = new Set<import('node:net').Socket>();
  const proxy = createServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
    connected();
    void released.then(() => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const dataDir = mkdtempSync(join(tmpdir(), 'tg-main-early-'));
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(await freePort()), DATA_DIR: dataDir, LOG_LEVEL: 'info', TOLLGATE_ROLES: 'gateway',
      KEY_HASH_SECRET: 'key-hash-secret-0123456789abcdef', KAFKA_BROKERS: `127.0.0.1:${await freePort()}`,
      REDIS_URL: `redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`, REDIS_PREFIX: `tg-main-early-${process.pid}:`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let [stdout, stderr] = ['', ''];
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  try {
    await reached;
    child.kill('SIGTERM');
    while (!stderr.includes('\n') && child.exitCode === null && child.signalCode === null) await new Promise((r) => setTimeout(r, 20));
    // The same Ctrl-C can come twice (the terminal, and `npm start`'s launcher forwarding it):
    // one again within a second is not a second request.
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    release();
    const [code, signal] = await exited;
    assert.deepEqual([code, signal, stderr], [0, null, 'tollgate: SIGTERM during the start; stopping once it has finished (at most 25000 ms)\n']);
    const lines = stdout.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.deepEqual(lines.filter((m) => ['tollgate started', 'shutting down', 'stopped'].includes(m)), ['tollgate started', 'shutting down', 'stopped']);
    assert.deepEqual(readdirSync(dataDir).filter((n) => n.startsWith('tollgate.lock') && n !== 'tollgate.lock.owner'), [], 'the lock is given back');
  } finally {
    release();
    if (child.exitCode === null && child.signalCode === null) await killNow(child);
    for (const s of sockets) s.destroy();
    proxy.close();
  }
});

test('a price reload while hot state is lost is not applied (the account directory reads empty, so a dropped list in use would pass); once the state is back the file is read again and judged on the real directory', async (t) => {
  // Kind: a safety check fed by state that reads empty while lost (a breaker's MEDIUM). A new
  // PRICING_FILE that drops the `vip` list an account still uses passed the check while Redis was
  // empty, and that account would have paid full price unseen.
  const redis = await requireRedis(t);
  if (redis === undefined) return;
  const dir = mkdtempSync(join(tmpdir(), 'tg-main-prices-'));
  const pricing = join(dir, 'prices.json');
  const catalog = JSON.parse(readFileSync(new URL('../../../libs/pricing/catalogs/cny.json', import.meta.url), 'utf8')) as { price_lists: Record<string, unknown> };
  writeFileSync(pricing, JSON.stringify(catalog));
  const prefix = `tg-main-prices-${process.pid}:`;
  const r = new Redis(redis);
  t.after(() => r.disconnect());
  await r.set(`${prefix}ledger-ready`, '1'); // built (no warehouse owner runs here)
  const port = await freePort();
  const { child } = await startServing({
    HOST: '127.0.0.1', PORT: String(port), DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-prices-data-')), LOG_LEVEL: 'info',
    KEY_HASH_SECRET: 'key-hash-secret-0123456789abcdef', ADMIN_TOKEN: 'admin-token-0123456789abcdef', TOLLGATE_ROLES: 'gateway,control',
    KAFKA_BROKERS: `127.0.0.1:${await freePort()}`, REDIS_URL: redis, REDIS_PREFIX: prefix, PRICING_FILE: pricing, UPSTREAM_API_KEY: 'sk-unused',
  });
  let out = '';
  child.stdout!.on('data', (d: string) => { out += d; });
  t.after(() => killNow(child));
  const admin = (method: string, path: string, body: unknown) => fetch(`http://127.0.0.1:${port}${path}`, {
    method, headers: { authorization: 'Bearer admin-token-0123456789abcdef', 'content-type': 'application/json' }, body: JSON.stringify(body),
  }).then(async (res) => ({ status: res.status, json: await res.json() as { id: string } }));
  const acct = await admin('POST', '/admin/v1/accounts', { name: 'vip-customer' });
  assert.equal(acct.status, 201);
  assert.equal((await admin('PATCH', `/admin/v1/accounts/${acct.json.id}`, { price_list: 'vip' })).status, 200);
  const until = async (what: RegExp) => {
    for (let i = 0; i < 100 && !what.test(out); i++) await new Promise((res) => setTimeout(res, 100));
    assert.match(out, what);
  };
  // Lost (Redis restarted empty: the directory reads no account at all): the file without `vip`
  // is not applied (the watch reads it, the check cannot judge it).
  const keys = await r.keys(`${prefix}*`);
  const saved = await Promise.all(keys.map(async (k) => [k, await r.dumpBuffer(k)] as const));
  await r.del(...keys);
  delete catalog.price_lists['vip'];
  writeFileSync(pricing, JSON.stringify(catalog));
  await until(/price file not applied yet: hot state is lost/);
  assert.doesNotMatch(out, /prices changed/);
  // Rebuilt (the same keys back): read again by itself, and refused on the real directory.
  for (const [k, v] of saved) if (v) await r.restore(k, 0, v, 'REPLACE');
  await until(/price file refused: price list \\"vip\\" is assigned to 1 account\(s\)/);
  assert.doesNotMatch(out, /prices changed/);
  await deleteKeysUnder(r, prefix);
});
