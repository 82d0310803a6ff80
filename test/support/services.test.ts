// Tests for test/support/services.ts: discovery from env, local probes, and that requireX
// really *skips* (not passes) when nothing is found, and throws when services are required.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  childEnv,
  findClickHouse,
  findKafka,
  findRedis,
  findRedisCluster,
  requireClickHouse,
  requireRedisCluster,
  notControllable,
  requireFaultControl,
  requireKafka,
  requireRedis,
  servicesRequired,
  probeRedis,
  probeTcp,
} from './services.ts';
import type { Env, SkippableContext } from './services.ts';

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

/** A TCP server on a random port; `reply` decides what to answer to incoming bytes. */
async function fakeServer(reply: ((data: string) => string) | undefined): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => {
      if (reply) socket.write(reply(data));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  const close = (): Promise<void> => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return { port: address.port, close };
}

/** Records t.skip() calls. */
function fakeContext(): SkippableContext & { skipped: string[] } {
  const skipped: string[] = [];
  return {
    skipped,
    skip(message?: string) {
      skipped.push(message ?? '');
    },
  };
}

/** An environment where nothing is configured and both local probes hit closed ports. */
async function emptyEnv(extra: Env = {}): Promise<Env> {
  return { REDIS_PORT: String(await closedPort()), KAFKA_PORT: String(await closedPort()), ...extra };
}


/** The own-ports advice every skip message ends with (services.ts' OWN_PORTS, spelled out: the message is what is tested). */
const OWN_PORTS = 'on ports of your own: REDIS_PORT=… KAFKA_PORT=… KAFKA_CONTROLLER_PORT=… CLICKHOUSE_PORT=… REDIS_CLUSTER_PORTS=… TOLLGATE_DEPLOY_DIR=… bash deploy/services.sh up, then export what it prints';

test('findRedis / findKafka return the URL from the environment when set', async () => {
  const env: Env = { REDIS_URL: 'redis://redis.example:7000', KAFKA_BROKERS: 'k1:9092,k2:9092' };
  assert.equal(await findRedis(env), 'redis://redis.example:7000');
  assert.equal(await findKafka(env), 'k1:9092,k2:9092');
});

test('findRedis probes 127.0.0.1:$REDIS_PORT with PING and requires +PONG', async () => {
  const redisLike = await fakeServer((d) => (d.startsWith('PING') ? '+PONG\r\n' : '-ERR\r\n'));
  const httpLike = await fakeServer(() => 'HTTP/1.1 400 Bad Request\r\n\r\n');
  const silent = await fakeServer(undefined);
  try {
    assert.equal(await findRedis({ REDIS_PORT: String(redisLike.port) }), `redis://127.0.0.1:${redisLike.port}`);
    assert.equal(await findRedis({ REDIS_PORT: String(httpLike.port) }), undefined);
    const t0 = Date.now();
    assert.equal(await probeRedis('127.0.0.1', silent.port), false, 'silent server is not Redis');
    assert.ok(Date.now() - t0 < 2000, 'probe times out quickly');
  } finally {
    await Promise.all([redisLike.close(), httpLike.close(), silent.close()]);
  }
});

test('findKafka probes 127.0.0.1:$KAFKA_PORT with a TCP connect', async () => {
  const listener = await fakeServer(undefined);
  try {
    assert.equal(await findKafka({ KAFKA_PORT: String(listener.port) }), `127.0.0.1:${listener.port}`);
  } finally {
    await listener.close();
  }
  assert.equal(await probeTcp('127.0.0.1', listener.port), false);
});

test('nothing found on closed ports', async () => {
  const env = await emptyEnv();
  assert.equal(await findRedis(env), undefined);
  assert.equal(await findKafka(env), undefined);
});

test('servicesRequired: TOLLGATE_REQUIRE_SERVICES=1 or CI=true', () => {
  assert.equal(servicesRequired({}), false);
  assert.equal(servicesRequired({ TOLLGATE_REQUIRE_SERVICES: '1' }), true);
  assert.equal(servicesRequired({ CI: 'true' }), true);
  assert.equal(servicesRequired({ TOLLGATE_REQUIRE_SERVICES: '0', CI: 'false' }), false);
});

test('requireX calls t.skip() with a loud message when nothing is found and not required', async () => {
  const env = await emptyEnv();
  const t = fakeContext();
  assert.equal(await requireRedis(t, env), undefined);
  assert.equal(await requireKafka(t, env), undefined);
  assert.deepEqual(t.skipped, [
    `SKIPPED: needs Redis (set REDIS_URL or run \`bash deploy/services.sh up\` (${OWN_PORTS}))`,
    `SKIPPED: needs Kafka (set KAFKA_BROKERS or run \`bash deploy/services.sh up\` (${OWN_PORTS}))`,
  ]);
});

test('requireX under TOLLGATE_TEST_SERVICES=none: the skip names the variable to set and how to start services of one\'s own on free ports (not the default ports ruled out)', async () => {
  const t = fakeContext();
  assert.equal(await requireRedis(t, { TOLLGATE_TEST_SERVICES: 'none' }), undefined);
  assert.equal(await requireKafka(t, { TOLLGATE_TEST_SERVICES: 'none' }), undefined);
  const tail = `e.g. to services started ${OWN_PORTS}`;
  assert.deepEqual(t.skipped, [
    `SKIPPED: needs Redis (TOLLGATE_TEST_SERVICES=none probes no default port: set REDIS_URL, ${tail})`,
    `SKIPPED: needs Kafka (TOLLGATE_TEST_SERVICES=none probes no default port: set KAFKA_BROKERS, ${tail})`,
  ]);
});

test('requireX throws instead of skipping when services are required', async () => {
  for (const extra of [{ TOLLGATE_REQUIRE_SERVICES: '1' }, { CI: 'true' }]) {
    const env = await emptyEnv(extra);
    const t = fakeContext();
    await assert.rejects(requireRedis(t, env), /Redis is required/);
    await assert.rejects(requireKafka(t, env), /Kafka is required/);
    assert.deepEqual(t.skipped, []);
  }
});

test('requireX returns the env URL without skipping', async () => {
  const t = fakeContext();
  const env: Env = { REDIS_URL: 'redis://r:1', KAFKA_BROKERS: 'k:1', CI: 'true' };
  assert.equal(await requireRedis(t, env), 'redis://r:1');
  assert.equal(await requireKafka(t, env), 'k:1');
  assert.deepEqual(t.skipped, []);
});

/** Runs a real node:test file in a child process and returns its TAP output and exit code. */
async function runNodeTest(file: string, env: Env): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, ['--test', '--test-reporter=tap', file], {
    env: env as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, out };
}

test('under a real node:test runner, requireX reports skip (not pass), or fail when required', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-services-'));
  try {
    const file = join(dir, 'fixture.test.mjs');
    const helper = new URL('./services.ts', import.meta.url).href;
    await writeFile(
      file,
      `import { test } from 'node:test';
import { requireRedis, requireKafka } from ${JSON.stringify(helper)};
test('needs redis', async (t) => {
  const url = await requireRedis(t);
  if (!url) return;
  throw new Error('unexpectedly found Redis at ' + url);
});
test('needs kafka', async (t) => {
  const url = await requireKafka(t);
  if (!url) return;
  throw new Error('unexpectedly found Kafka at ' + url);
});
`,
    );
    const base: Env = { ...process.env };
    for (const k of ['CI', 'TOLLGATE_REQUIRE_SERVICES', 'TOLLGATE_TEST_SERVICES', 'REDIS_URL', 'KAFKA_BROKERS', 'REDIS_PORT', 'KAFKA_PORT', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS']) {
      delete base[k];
    }
    const env = await emptyEnv(base);

    const skipped = await runNodeTest(file, env);
    assert.equal(skipped.code, 0, skipped.out);
    assert.match(skipped.out, /^# skip(ped)? 2$/m, skipped.out);
    assert.match(skipped.out, /^# pass 0$/m, skipped.out);
    assert.match(skipped.out, /^# fail 0$/m, skipped.out);
    assert.ok(skipped.out.includes(`SKIPPED: needs Redis (set REDIS_URL or run \`bash deploy/services.sh up\` (${OWN_PORTS}))`), skipped.out);
    assert.match(skipped.out, /SKIPPED: needs Kafka/);

    const required = await runNodeTest(file, { ...env, TOLLGATE_REQUIRE_SERVICES: '1' });
    assert.notEqual(required.code, 0, required.out);
    assert.match(required.out, /^# fail 2$/m, required.out);
    assert.match(required.out, /^# skip(ped)? 0$/m, required.out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// The real thing: with `bash deploy/services.sh up` (or in CI, where services are required)
// this finds both services through the normal path; otherwise it is reported as skipped.
test('real Redis answers PING when available', async (t) => {
  const url = await requireRedis(t);
  if (!url) return;
  const { hostname, port } = new URL(url);
  assert.equal(await probeRedis(hostname, Number(port || 6379), 2000), true, `Redis at ${url} did not PONG`);
});

test('real Kafka accepts TCP connections when available', async (t) => {
  const brokers = await requireKafka(t);
  if (!brokers) return;
  const first = brokers.split(',')[0] ?? '';
  const i = first.lastIndexOf(':');
  assert.ok(i > 0, `bad broker address ${first}`);
  assert.equal(await probeTcp(first.slice(0, i), Number(first.slice(i + 1)), 2000), true, `Kafka at ${first} refused`);
});

test('fault tests against a service this checkout did not start: skipped loudly and counted, or failed when services are required', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-services-'));
  try {
    // No pid file: deploy/*.sh of this checkout did not start them.
    assert.equal(notControllable('redis', { TOLLGATE_DEPLOY_DIR: dir }), `Redis was not started by deploy/redis.sh of this checkout (no ${join(dir, 'redis', 'redis.pid')})`);
    // A pid file naming a process that is not the service (this test runner).
    await mkdir(join(dir, 'kafka'), { recursive: true });
    await writeFile(join(dir, 'kafka', 'kafka.pid'), `${process.pid}\n`);
    assert.equal(notControllable('kafka', { TOLLGATE_DEPLOY_DIR: dir }), `${join(dir, 'kafka', 'kafka.pid')} names no running Kafka (pid "${process.pid}")`);
    // Services given by URL elsewhere cannot be stopped from here.
    assert.equal(notControllable('redis', { REDIS_URL: 'redis://10.1.2.3:6379' }), 'REDIS_URL=redis://10.1.2.3:6379 is not this checkout\'s local Redis on 127.0.0.1:6379');

    const file = join(dir, 'fault.test.mjs');
    const helper = new URL('./services.ts', import.meta.url).href;
    await writeFile(file, `import { test } from 'node:test';
import { requireFaultControl } from ${JSON.stringify(helper)};
test('stops kafka', async (t) => {
  if (!(await requireFaultControl(t, 'kafka'))) return;
  throw new Error('would have stopped a broker it does not control');
});
test('stops redis', async (t) => {
  if (!(await requireFaultControl(t, 'redis'))) return;
  throw new Error('would have stopped a Redis it does not control');
});
`);
    const base: Env = { ...process.env };
    for (const k of ['CI', 'TOLLGATE_REQUIRE_SERVICES', 'TOLLGATE_TEST_SERVICES', 'REDIS_URL', 'KAFKA_BROKERS', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS']) delete base[k];
    const env = { ...base, TOLLGATE_DEPLOY_DIR: join(dir, 'empty') };
    const skipped = await runNodeTest(file, env);
    assert.equal(skipped.code, 0, skipped.out);
    assert.match(skipped.out, /^# skip(ped)? 2$/m, skipped.out);
    assert.match(skipped.out, /^# pass 0$/m, skipped.out);
    assert.match(skipped.out, /\*\*\* SKIPPED: fault test needs a Kafka it can stop: Kafka was not started by deploy\/kafka\.sh of this checkout/);
    assert.match(skipped.out, /\*\*\* SKIPPED: fault test needs a Redis it can stop/);
    const required = await runNodeTest(file, { ...env, TOLLGATE_REQUIRE_SERVICES: '1' });
    assert.notEqual(required.code, 0, required.out);
    assert.match(required.out, /^# fail 2$/m, required.out);
    assert.match(required.out, /^# skip(ped)? 0$/m, required.out);
    assert.match(required.out, /fault injection on Kafka is required \(TOLLGATE_REQUIRE_SERVICES=1 or CI=true\) but not possible/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('requireFaultControl against a fake context: skip when not controllable, throw when required', async () => {
  const skips: string[] = [];
  const t: SkippableContext = { skip: (m?: string) => { skips.push(String(m)); } };
  const env = { TOLLGATE_DEPLOY_DIR: '/nonexistent-tollgate-deploy' };
  assert.equal(await requireFaultControl(t, 'redis', env), false);
  assert.deepEqual(skips, [`SKIPPED: fault test needs a Redis it can stop: Redis was not started by deploy/redis.sh of this checkout (no /nonexistent-tollgate-deploy/redis/redis.pid); start it with \`bash deploy/services.sh up\` from this checkout to run fault tests, with the TOLLGATE_DEPLOY_DIR and ports the tests are given (${OWN_PORTS})`]);
  await assert.rejects(requireFaultControl(t, 'redis', { ...env, TOLLGATE_REQUIRE_SERVICES: '1' }), /fault injection on Redis is required/);
});

test('findClickHouse: CLICKHOUSE_URL as given, else 127.0.0.1:$CLICKHOUSE_PORT only when GET /ping answers Ok.', async () => {
  assert.equal(await findClickHouse({ CLICKHOUSE_URL: 'http://ch.example:8123' }), 'http://ch.example:8123');
  const ok = await fakeServer(() => 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nOk.\n');
  const other = await fakeServer(() => 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n');
  try {
    assert.equal(await findClickHouse({ CLICKHOUSE_PORT: String(ok.port) }), `http://127.0.0.1:${ok.port}`);
    assert.equal(await findClickHouse({ CLICKHOUSE_PORT: String(other.port) }), undefined); // an HTTP server, not ClickHouse
    assert.equal(await findClickHouse({ CLICKHOUSE_PORT: String(await closedPort()) }), undefined);
  } finally {
    await ok.close();
    await other.close();
  }
});

test('requireClickHouse: a loud skip without a server, a failure when services are required', async () => {
  const t = fakeContext();
  const env = { CLICKHOUSE_PORT: String(await closedPort()) };
  assert.equal(await requireClickHouse(t, env), undefined);
  assert.deepEqual(t.skipped, [`SKIPPED: needs a ClickHouse server (set CLICKHOUSE_URL or run \`bash deploy/services.sh up\` (or \`bash deploy/clickhouse.sh start\`; ${OWN_PORTS}))`]);
  await assert.rejects(requireClickHouse(fakeContext(), { ...env, TOLLGATE_REQUIRE_SERVICES: '1' }), /a ClickHouse server is required/);
});

test('a ClickHouse server elsewhere (CLICKHOUSE_URL on another host) cannot be stopped by a fault test', () => {
  assert.equal(notControllable('clickhouse', { CLICKHOUSE_URL: 'http://ch.example:8123', CLICKHOUSE_PORT: '8123' }),
    'CLICKHOUSE_URL=http://ch.example:8123 is not this checkout\'s local ClickHouse on 127.0.0.1:8123');
});

test('findRedisCluster: REDIS_CLUSTER_NODES as given, else every local port of deploy/redis-cluster.sh answering PING; requireRedisCluster skips loudly or fails when required', async () => {
  assert.equal(await findRedisCluster({ REDIS_CLUSTER_NODES: ' r1:7001,r2:7002 ' }), 'r1:7001,r2:7002');
  const a = await fakeServer((d) => (d.startsWith('PING') ? '+PONG\r\n' : '-ERR\r\n'));
  const b = await fakeServer((d) => (d.startsWith('PING') ? '+PONG\r\n' : '-ERR\r\n'));
  try {
    assert.equal(await findRedisCluster({ REDIS_CLUSTER_PORTS: `${a.port} ${b.port}` }), `127.0.0.1:${a.port},127.0.0.1:${b.port}`);
    const closed = await closedPort();
    assert.equal(await findRedisCluster({ REDIS_CLUSTER_PORTS: `${a.port},${closed}` }), undefined, 'one node down: no cluster');
    const t = fakeContext();
    assert.equal(await requireRedisCluster(t, { REDIS_CLUSTER_PORTS: String(closed) }), undefined);
    assert.deepEqual(t.skipped, [`SKIPPED: needs a Redis Cluster (set REDIS_CLUSTER_NODES or run \`bash deploy/redis-cluster.sh start\` (or \`bash deploy/services.sh up\`; ${OWN_PORTS}))`]);
    await assert.rejects(requireRedisCluster(fakeContext(), { REDIS_CLUSTER_PORTS: String(closed), TOLLGATE_REQUIRE_SERVICES: '1' }), /a Redis Cluster is required/);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('a spawned child never inherits a discovery-only variable: REDIS_CLUSTER_NODES is dropped from the inherited environment, the rest kept, explicit values win', () => {
  const parent = { PATH: '/bin', REDIS_URL: 'redis://r:1', REDIS_CLUSTER_NODES: '127.0.0.1:7001,127.0.0.1:7002' };
  assert.deepEqual(childEnv({ ADMIN_TOKEN: 't' }, parent), { PATH: '/bin', REDIS_URL: 'redis://r:1', ADMIN_TOKEN: 't' });
  // a child meant for the cluster is handed it explicitly
  assert.deepEqual(childEnv({ REDIS_CLUSTER_NODES: 'n:1' }, parent), { PATH: '/bin', REDIS_URL: 'redis://r:1', REDIS_CLUSTER_NODES: 'n:1' });
  assert.equal(parent.REDIS_CLUSTER_NODES, '127.0.0.1:7001,127.0.0.1:7002', 'the parent environment is not changed');
});

test('freePort draws test ports below the kernel\'s ephemeral range, so no outbound connection takes one while its process restarts', async () => {
  const { freePort } = await import('./cluster.ts');
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
  for (const p of ports) assert.ok(p >= 20000 && p < low, `port ${p} outside 20000–${low - 1}`);
});
