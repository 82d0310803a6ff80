// The gateway's registry of holds in flight (HoldRegistry) on a real Redis store: it announces
// while the state is lost, re-reserves after the rebuild (exact µc), drops a settled request
// only once its usage is acknowledged and an epoch read confirmed no loss came between, and
// keeps its size bounded when usage piles up in the spool (a long Kafka outage).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryBalanceStore, RedisBalanceStore } from '@tollgate/ledger';
import { HoldRegistry } from '@tollgate/gateway';
import { requireRedis } from '../../../test/support/services.ts';
import { deleteKeysUnder } from '../../../test/support/redis.ts';

async function fixture(t: import('node:test').TestContext) {
  const url = await requireRedis(t);
  if (!url) return undefined;
  const redis = new Redis(url);
  const prefix = `test:reg:${randomUUID()}:`;
  const store = new RedisBalanceStore({ redis, prefix, requireReady: true, restoreWindowMs: 300 });
  const empty = () => deleteKeysUnder(redis, prefix);
  // Polled by hand (a poll interval far beyond the test).
  const restored: Array<{ restored: number; inFlight: number; epoch: string }> = [];
  const registry = new HoldRegistry(store, { pollMs: 3_600_000, onRestored: (r) => restored.push(r) });
  t.after(async () => { registry.stop(); await empty(); redis.disconnect(); });
  await registry.poll(); // its first read (the state not built yet): the tests' polls are the next ones
  return { redis, prefix, store, registry, empty, restored };
}

const snapshot = (balance: bigint) => ({ balances: new Map([['a', balance]]), ledgerEntries: new Map() });

test('hold registry: a Redis data loss with requests in flight: announced while lost, re-reserved at the new epoch (held exact), nothing new admitted in the restore window', async (t) => {
  const f = await fixture(t);
  if (!f) return;
  const { store, registry, empty, restored, redis, prefix } = f;
  await store.load(snapshot(1_000_000n));
  await registry.poll();
  const ts = Date.now();
  for (const [id, amount] of [['r1', 600_000n], ['r2', 50_000n]] as const) {
    assert.equal((await store.hold({ holdId: id, accountId: 'a', keyId: 'k', amount, ttlMs: 60_000 })).ok, true);
    registry.held(id, 'a', 'k', ts, amount, 60_000);
  }
  registry.settled('r2', 30_000n, 60_000); // r2 settled at 30,000 µc, its usage not applied yet
  await store.settle('r2', 'a', 30_000n, 60_000);
  assert.deepEqual(await store.get('a'), { balance: 1_000_000n, held: 630_000n, available: 370_000n });
  await empty(); // Redis restarted empty
  await registry.poll();
  assert.equal(await redis.exists(`${prefix}ledger-ready:restorers`), 1, 'announced while lost');
  await store.load(snapshot(1_000_000n)); // the rebuild
  assert.deepEqual(await store.hold({ holdId: 'new', accountId: 'a', keyId: 'k', amount: 1n, ttlMs: 60_000 }), { ok: false, reason: 'not_ready', available: 0n });
  await registry.poll();
  assert.deepEqual(restored.map(({ restored: n, inFlight }) => ({ n, inFlight })), [{ n: 2, inFlight: 2 }]);
  assert.equal(restored[0]!.epoch, await store.epoch());
  assert.equal(registry.restoring(), undefined);
  assert.deepEqual(await store.get('a'), { balance: 1_000_000n, held: 630_000n, available: 370_000n });
  // The same epoch again: nothing more is restored.
  await registry.poll();
  assert.equal(restored.length, 1);
  assert.equal((await store.get('a')).held, 630_000n);
});

test('hold registry: a settled request leaves the list once its usage is acknowledged and a later epoch read found no loss; one only spooled (Kafka away) stays; one released goes at once', async (t) => {
  const f = await fixture(t);
  if (!f) return;
  const { store, registry, empty } = f;
  await store.load(snapshot(1_000_000n));
  await registry.poll();
  for (const id of ['acked', 'spooled', 'live', 'released']) registry.held(id, 'a', 'k', Date.now(), 100n, 60_000);
  registry.released('released');
  registry.settled('acked', 40n, 60_000);
  registry.published('acked');
  registry.published('spooled', false);
  assert.equal(registry.size, 3);
  // Lost: nothing is dropped (the loss may have come before the acknowledgement reached the log).
  await empty();
  await registry.poll();
  assert.equal(registry.size, 3);
  await store.load(snapshot(1_000_000n));
  await registry.poll(); // restores the three
  assert.equal((await store.get('a')).held, 240n);
  await registry.poll(); // the same epoch: the acknowledged one goes
  assert.equal(registry.size, 2);
});

test('hold registry: bounded: past maxListed the oldest requests whose usage is handed over go first; live ones stay', async (t) => {
  const f = await fixture(t);
  if (!f) return;
  const registry = new HoldRegistry(f.store, { pollMs: 3_600_000, maxListed: 10 });
  t.after(() => registry.stop());
  for (let i = 0; i < 10; i++) {
    registry.held(`r${i}`, 'a', 'k', Date.now(), 1n, 60_000);
    if (i < 6) registry.published(`r${i}`, false);
  }
  assert.equal(registry.size, 10);
  registry.held('r10', 'a', 'k', Date.now(), 1n, 60_000); // 11 > 10: down to 9, r0 and r1 dropped
  assert.equal(registry.size, 9);
  for (let i = 11; i < 20; i++) registry.held(`r${i}`, 'a', 'k', Date.now(), 1n, 60_000);
  // Only r0..r5 could go: the rest are live.
  assert.equal(registry.size, 14);
});

test('hold registry: on a store that is never lost (memory) it turns itself off and lists nothing', async () => {
  const registry = new HoldRegistry(new MemoryBalanceStore(), { pollMs: 3_600_000 });
  await registry.poll();
  registry.held('r', 'a', 'k', Date.now(), 1n, 60_000);
  assert.equal(registry.size, 0);
  registry.stop();
});
