// Hot state unreachable on operator routes: every control route that touches Redis (key
// directory, balances) answers 503 `state_unavailable` with `retry-after: 2`, not a 500, and
// works again once Redis is back. Real Redis; the gateway's own client options (no offline
// queue), so a lost connection fails fast exactly as in a deployment.
import { test, type TestContext } from 'node:test';
import { once } from 'node:events';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { Redis } from 'ioredis';
import { MemoryLog } from '@tollgate/events';
import { RedisKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore } from '@tollgate/ledger';
import { loadCatalogFile } from '@tollgate/pricing';
import { buildControl } from '../src/index.ts';
import { requireRedis } from '../../../test/support/services.ts';

const TOKEN = 'admin-token-for-state-test';

/**
 * The control app on `redis` under `prefix` with `balances`; its keys are deleted and the client
 * disconnected after the test. `call` sends an admin request.
 */
function controlOn(t: TestContext, redis: Redis, prefix: string, balances: RedisBalanceStore) {
  const app = buildControl({
    keys: new RedisKeyDirectory({ redis, prefix }), balances, log: new MemoryLog(),
    catalog: loadCatalogFile(resolve(import.meta.dirname, '../../../libs/pricing/catalogs/cny.json')),
    adminToken: TOKEN, keyHashSecret: 'k'.repeat(32), applyTimeoutMs: 50,
  });
  t.after(async () => {
    await app.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });
  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, payload?: object) =>
    app.inject({ method, url: path, headers: { authorization: `Bearer ${TOKEN}` }, ...(payload ? { payload } : {}) });
  return { app, call };
}

/** Sends each route in turn and asserts its answer is 503 `state_unavailable` with `message` and `retry-after: 2`. */
async function allStateUnavailable(routes: Array<[string, () => Promise<{ statusCode: number; headers: Record<string, unknown>; json(): unknown }>]>, message: string): Promise<void> {
  for (const [name, send] of routes) {
    const res = await send();
    const { request_id: _id, ...body } = res.json() as Record<string, unknown>;
    assert.deepEqual({ route: name, status: res.statusCode, retryAfter: res.headers['retry-after'], body }, {
      route: name, status: 503, retryAfter: '2',
      body: { type: 'error', error: { type: 'api_error', code: 'state_unavailable', message } },
    });
  }
}

test('hot state unreachable: every control route is 503 state_unavailable with retry-after, not 500; served again once back', async (t) => {
  const url = await requireRedis(t);
  if (url === undefined) return;
  const redis = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000 });
  redis.on('error', () => {});
  await redis.connect();
  const prefix = `test:control-state:${randomUUID()}`;
  const { call } = controlOn(t, redis, prefix, new RedisBalanceStore({ redis, prefix }));

  const account = (await call('POST', '/admin/v1/accounts', { name: 'state' })).json() as { id: string };
  const key = (await call('POST', `/admin/v1/accounts/${account.id}/keys`, {})).json() as { id: string };
  assert.equal((await call('PATCH', `/admin/v1/keys/${key.id}`, { name: 'up' })).statusCode, 200);

  redis.disconnect(); // the connection is gone; the client does not queue commands
  // ioredis ends the connection on the socket's close event, not at once: until then its status
  // is still "ready" (and connect() below refused "already connecting/connected" on a loaded CI)
  if (redis.status !== 'end') await once(redis, 'end');
  const routes: Array<[string, () => ReturnType<typeof call>]> = [
    ['PATCH key', () => call('PATCH', `/admin/v1/keys/${key.id}`, { status: 'disabled' })],
    ['GET key', () => call('GET', `/admin/v1/keys/${key.id}`)],
    ['DELETE key', () => call('DELETE', `/admin/v1/keys/${key.id}`)],
    ['POST account', () => call('POST', '/admin/v1/accounts', { name: 'x' })],
    ['GET account', () => call('GET', `/admin/v1/accounts/${account.id}`)],
    ['PATCH account', () => call('PATCH', `/admin/v1/accounts/${account.id}`, { daily_credits: '1' })],
    ['POST key', () => call('POST', `/admin/v1/accounts/${account.id}/keys`, {})],
    ['GET keys', () => call('GET', `/admin/v1/accounts/${account.id}/keys`)],
    ['POST credits', () => call('POST', `/admin/v1/accounts/${account.id}/credits`, { credits: '1', reference: 'r-1' })],
    ['GET plans', () => call('GET', '/admin/v1/plans')],
  ];
  await allStateUnavailable(routes, 'Hot state (Redis) is temporarily unreachable; retry shortly');

  await redis.connect();
  const back = await call('PATCH', `/admin/v1/keys/${key.id}`, { status: 'disabled' });
  assert.equal(back.statusCode, 200);
  assert.equal((back.json() as { status: string }).status, 'disabled');
});

test('hot state lost (Redis answers but lost its data, not rebuilt yet): every control route that reads or writes it is 503 state_unavailable naming the rebuild, never an empty list or "does not exist"; served again once rebuilt', async (t) => {
  // Kind (a tester's MEDIUM): with the ready mark gone the directory reads as empty, and the
  // routes answered 200 {"data":[]} and 404 "account … does not exist" for every account.
  const url = await requireRedis(t);
  if (url === undefined) return;
  const redis = new Redis(url);
  const prefix = `test:control-lost:${randomUUID()}:`;
  const balances = new RedisBalanceStore({ redis, prefix, requireReady: true });
  await balances.load({ balances: new Map(), ledgerEntries: new Map() });
  const { call } = controlOn(t, redis, prefix, balances);
  const account = (await call('POST', '/admin/v1/accounts', { name: 'lost' })).json() as { id: string };
  assert.equal((await call('GET', '/admin/v1/accounts')).statusCode, 200);

  // Redis lost the state: the ready mark is what every reader goes by (a FLUSHALL takes it too).
  await redis.del(`${prefix}ledger-ready`);
  await new Promise((r) => setTimeout(r, 300)); // past the reuse of the last "present" answer
  const routes: Array<[string, () => ReturnType<typeof call>]> = [
    ['GET accounts', () => call('GET', '/admin/v1/accounts')],
    ['GET account', () => call('GET', `/admin/v1/accounts/${account.id}`)],
    ['GET keys', () => call('GET', `/admin/v1/accounts/${account.id}/keys`)],
    ['POST credits', () => call('POST', `/admin/v1/accounts/${account.id}/credits`, { credits: '1', reference: 'r-1' })],
    ['POST account', () => call('POST', '/admin/v1/accounts', { name: 'y' })],
    ['GET plans', () => call('GET', '/admin/v1/plans')],
  ];
  await allStateUnavailable(routes, 'Hot state (Redis) is not ready (lost, or not built yet): the process that owns the warehouse rebuilds it; retry shortly');
  // Rebuilt: served again, once the restore window is over if a put-back was announced (a write
  // tried while lost was listed for one): 503 until then, never 404.
  await balances.load({ balances: new Map(), ledgerEntries: new Map() });
  const answers: number[] = [];
  for (const until = Date.now() + 3_000; answers.at(-1) !== 200 && Date.now() < until;) {
    answers.push((await call('GET', `/admin/v1/accounts/${account.id}`)).statusCode);
  }
  assert.equal(answers.at(-1), 200, answers.join(' '));
  assert.deepEqual(answers.filter((s) => s !== 200 && s !== 503), [], answers.join(' '));
});

test('hot state lost just after a "present" check (within its reuse): a read that comes back absent is confirmed fresh, so every route is 503, never 404 or an empty list', async (t) => {
  // Kind (a breaker's MEDIUM, 10 of 10 per round): the presence check is reused for
  // LOST_CHECK_REUSE_MS, so a loss right after one let reads find nothing and answer 404
  // "account … does not exist", an empty key list and a 404 credit grant for accounts that exist.
  const url = await requireRedis(t);
  if (url === undefined) return;
  const redis = new Redis(url);
  const prefix = `test:control-lost-reuse:${randomUUID()}:`;
  const balances = new RedisBalanceStore({ redis, prefix, requireReady: true });
  await balances.load({ balances: new Map(), ledgerEntries: new Map() });
  const { call } = controlOn(t, redis, prefix, balances);
  const account = (await call('POST', '/admin/v1/accounts', { name: 'reuse' })).json() as { id: string };
  for (let round = 0; round < 3; round++) {
    // A read that finds the state present (once a restore window of the last rebuild is over),
    // then the whole state goes at once (a FLUSHALL).
    for (const end = Date.now() + 3_000; (await call('GET', `/admin/v1/accounts/${account.id}`)).statusCode !== 200;) {
      assert.ok(Date.now() < end, 'served again after the rebuild');
    }
    const keys = await redis.keys(`${prefix}*`);
    await redis.del(...keys);
    const answers = [
      await call('GET', `/admin/v1/accounts/${account.id}`),
      await call('GET', `/admin/v1/accounts/${account.id}/keys`),
      await call('POST', `/admin/v1/accounts/${account.id}/credits`, { credits: '1', reference: `r-${round}` }),
      await call('GET', '/admin/v1/accounts'),
    ].map((r) => r.statusCode);
    assert.deepEqual(answers, [503, 503, 503, 503], `round ${round}`);
    // Rebuilt with the account (as the warehouse would have it).
    await balances.load({ balances: new Map(), ledgerEntries: new Map() });
    await new RedisKeyDirectory({ redis, prefix }).putAccount({ id: account.id, name: 'reuse', status: 'active', created_at: 0, version: 1 });
  }
});
