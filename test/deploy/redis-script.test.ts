// deploy/redis.sh and deploy/redis-cluster.sh stop only the servers they started: run for real
// (Debian's redis-server), with their state in a temporary directory and ports of their own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { requireRedis } from '../support/services.ts';

const ROOT = join(import.meta.dirname, '../..');

/** A TCP port that was free a moment ago (the OS's pick). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

async function pings(port: number): Promise<boolean> {
  const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {}); // a refused connection is the answer here
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

test('redis.sh stop with another REDIS_PORT than its start stops its own server, never the Redis that serves that port', async (t) => {
  // Kind: a stop addressed a SHUTDOWN to whatever served REDIS_PORT (default 6379), so `down`
  // without the start's port variables shut down someone else's Redis (a new user's finding).
  if (!(await requireRedis(t))) return;
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-redis-sh-'));
  const [ours, foreign] = [await freePort(), await freePort()];
  const other = spawn('redis-server', ['--port', String(foreign), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { cwd: dir, stdio: 'ignore' });
  t.after(() => { other.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });
  const script = (cmd: string, port: number) => spawnSync('bash', [join(ROOT, 'deploy/redis.sh'), cmd], {
    encoding: 'utf8', env: { ...process.env, TOLLGATE_DEPLOY_DIR: join(dir, 'state'), REDIS_PORT: String(port) },
  });
  const start = script('start', ours);
  assert.equal(start.status, 0, start.stderr);
  for (let i = 0; i < 100 && !(await pings(foreign)); i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual([await pings(ours), await pings(foreign)], [true, true]);
  const stop = script('stop', foreign);
  assert.equal(stop.status, 0, stop.stderr);
  assert.doesNotMatch(stop.stderr, /SIGKILL/, 'its own server stopped on SIGTERM');
  assert.deepEqual([await pings(ours), await pings(foreign)], [false, true]);
});
