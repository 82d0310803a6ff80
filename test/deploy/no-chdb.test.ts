// The image runs every role; chDB's native library exists only for x64 (linux/arm64 images have
// none). Roles that never open the embedded warehouse must start without it, and the one that
// needs it must say why it cannot start and what to do instead.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from '../support/cluster.ts';
import { childEnv, requireKafka, requireRedis } from '../support/services.ts';

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'services/tollgate/src/main.ts');
const NO_CHDB = ['--import', join(ROOT, 'test/support/no-chdb.ts')];

test('chDB unloadable (linux/arm64): the hook really hides it', () => {
  const r = spawnSync(process.execPath, [...NO_CHDB, '-e', "require('chdb/connection')"], { cwd: ROOT, encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /no chDB binding for this platform/);
});

test('chDB unloadable (linux/arm64): --version, and distributed gateway and control start and answer /health', async (t) => {
  const v = spawnSync(process.execPath, [...NO_CHDB, MAIN, '--version'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(v.status, 0, v.stderr);
  const [kafka, redis] = [await requireKafka(t), await requireRedis(t)];
  if (!kafka || !redis) return;
  const id = randomUUID().slice(0, 8);
  for (const role of ['gateway', 'control']) {
    const port = await freePort();
    const child: ChildProcess = spawn(process.execPath, [...NO_CHDB, MAIN, '--roles', role], {
      cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...childEnv(), KAFKA_BROKERS: kafka, REDIS_URL: redis, KAFKA_TOPIC_PREFIX: `t-nochdb-${id}.`, REDIS_PREFIX: `t:nochdb:${id}:`,
        KEY_HASH_SECRET: `key-hash-secret-${id}-0123456789`, ADMIN_TOKEN: 'no-chdb-admin-token-0123456789', HOST: '127.0.0.1', PORT: String(port),
        DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-nochdb-')), LOG_LEVEL: 'warn', UPSTREAM_URL: 'http://127.0.0.1:9', UPSTREAM_API_KEY: 'k',
      },
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    try {
      let health: { status: number; body: unknown } | undefined;
      for (let i = 0; i < 600 && !health && child.exitCode === null; i++) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/health`);
          health = { status: res.status, body: await res.json() };
        } catch { await new Promise((r) => setTimeout(r, 100)); }
      }
      assert.equal(child.exitCode, null, `${role} exited: ${stderr}`);
      assert.deepEqual(health, { status: 200, body: { status: 'ok' } }, role);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    }
  }
});

test('chDB unloadable (linux/arm64): the embedded process refuses to start with a message naming the platform and CLICKHOUSE_URL', () => {
  const r = spawnSync(process.execPath, [...NO_CHDB, MAIN], {
    cwd: ROOT, encoding: 'utf8', timeout: 60_000,
    env: { ...childEnv(), KAFKA_BROKERS: '', REDIS_URL: '', CLICKHOUSE_URL: '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'warn', DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-nochdb-e-')) },
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr + r.stdout, new RegExp(`the embedded warehouse \\(chDB\\) cannot be loaded on ${process.platform}/${process.arch}: .*Set CLICKHOUSE_URL`));
});
