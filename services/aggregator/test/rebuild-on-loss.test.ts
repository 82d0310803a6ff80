// When the warehouse owner rebuilds hot state after a reported loss: against a real Redis
// balance store, whose ready mark is what decides. A stale report (read before a rebuild's load,
// handed over after it ended: a failed CI) starts no second rebuild.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { LOST_DURING_REBUILD, RebuildSupersededError, RedisBalanceStore } from '@tollgate/ledger';
import { RebuildOnLoss } from '@tollgate/aggregator';
import { requireRedis } from '../../../test/support/services.ts';
import { deleteKeysUnder } from '../../../test/support/redis.ts';

test('a loss reported while hot state is present (stale not_ready) starts no rebuild; a real loss starts exactly one however often reported', async (t) => {
  const e = await storeOnRedis(t);
  if (!e) return;
  const { redis, prefix, balances } = e;
  const reloads: true[] = [];
  let failNext = false;
  const events: string[] = [];
  const rebuilds = new RebuildOnLoss({
    ready: () => balances.ready(),
    rebuild: async () => {
      reloads.push(true);
      if (failNext) {
        failNext = false;
        throw new Error('ClickHouse away');
      }
      await balances.load({ balances: new Map([['acct_a', 5n]]), ledgerEntries: new Map() });
    },
    onLossConfirmed: () => events.push('confirmed'),
    onRebuildFailed: (err) => events.push(`failed: ${(err as Error).message}`),
    onCheckFailed: (err) => events.push(`check failed: ${(err as Error).message}`),
  });

  // Never built: reported five times at once (every ledger consumer, the watch), one rebuild.
  assert.equal(await balances.ready(), false);
  await Promise.all([1, 2, 3, 4, 5].map(() => rebuilds.reportLoss()));
  assert.ok(rebuilds.running, 'a rebuild is under way');
  await Promise.all([1, 2, 3].map(() => rebuilds.reportLoss())); // while it runs: nothing more
  await rebuilds.running;
  assert.equal(rebuilds.running, null);
  assert.deepEqual(reloads, [true]);
  assert.equal(await balances.ready(), true);

  // The stale report: the state is present now, so no second rebuild.
  await rebuilds.reportLoss();
  await rebuilds.reportLoss();
  assert.equal(rebuilds.running, null);
  assert.deepEqual(reloads, [true]);
  assert.deepEqual(events, ['confirmed']);

  // Lost again (Redis restarted empty): one rebuild; it fails, and the next report retries.
  await deleteKeysUnder(redis, prefix);
  failNext = true;
  await rebuilds.reportLoss();
  await rebuilds.running;
  assert.deepEqual(reloads, [true, true]);
  assert.equal(await balances.ready(), false);
  await rebuilds.reportLoss();
  await rebuilds.running;
  assert.deepEqual(reloads, [true, true, true]);
  assert.equal(await balances.ready(), true);
  assert.deepEqual(events, ['confirmed', 'confirmed', 'failed: ClickHouse away', 'confirmed']);
  assert.deepEqual(await balances.balances(), new Map([['acct_a', 5n]]));

  // At start the rebuild is asked for directly (no report): one at a time.
  await deleteKeysUnder(redis, prefix);
  const [first, second] = [rebuilds.start(), rebuilds.start()];
  assert.equal(first, second);
  await first;
  assert.deepEqual(reloads, [true, true, true, true]);

  // A rebuild by hand (`POST /ops/v1/rebuild`) is the one rebuild while it runs: a loss reported
  // meanwhile starts nothing, and a second by hand is refused (the route's 409).
  await deleteKeysUnder(redis, prefix);
  let release!: () => void;
  const byHand = rebuilds.exclusive(async () => {
    await new Promise<void>((r) => { release = r; });
    await balances.load({ balances: new Map([['acct_a', 7n]]), ledgerEntries: new Map() });
    return 'report';
  });
  await new Promise((r) => setImmediate(r));
  assert.ok(rebuilds.running);
  await rebuilds.reportLoss();
  assert.equal(await rebuilds.exclusive(async () => 'second'), undefined);
  assert.deepEqual(reloads, [true, true, true, true], 'nothing else started');
  release();
  assert.deepEqual(await byHand, { value: 'report' });
  // ended when it answers: another by hand right after is taken, not refused
  assert.equal(rebuilds.running, null);
  assert.deepEqual(await rebuilds.exclusive(async () => 'right after'), { value: 'right after' });
  assert.deepEqual(await balances.balances(), new Map([['acct_a', 7n]]));
  // A failing one by hand rejects to its caller and frees the slot.
  await assert.rejects(rebuilds.exclusive(async () => { throw new Error('warehouse away'); }), /warehouse away/);
  await new Promise((r) => setImmediate(r));
  assert.equal(rebuilds.running, null);
  assert.deepEqual(await rebuilds.exclusive(async () => 1), { value: 1 });
});

test('Redis lost while a rebuild runs (by hand on a present state, or after a loss): the rebuild\'s mark is gone at its end and another rebuild, reloading pools, starts at once; a rebuild left alone runs once', async (t) => {
  // Kind: a loss no report can start a rebuild for. Reports during a rebuild do nothing, and the
  // load marks the flushed Redis ready: the pools and webhooks the rebuild put back before the
  // load were gone for good (customers of a group sent to the default upstream; a breaker's HIGH).
  const e = await storeOnRedis(t);
  if (!e) return;
  const { redis, prefix, balances } = e;
  const runs: Array<{ reload: true; pools: string | null }> = [];
  const events: string[] = [];
  // What a rebuild puts back before its load (pools, in the runtime): a key of its own here.
  const pool = `${prefix}pool:upstreams`;
  let gate: Promise<void> | undefined;
  const rebuilds = new RebuildOnLoss({
    ready: () => balances.ready(),
    mark: {
      set: (token) => balances.markRebuild(token, 60_000),
      present: (token) => balances.rebuildMarked(token),
      clear: (token) => balances.unmarkRebuild(token),
    },
    rebuild: async () => {
      await redis.set(pool, 'restored');
      await gate;
      await balances.load({ balances: new Map([['acct_a', 5n]]), ledgerEntries: new Map() });
      runs.push({ reload: true, pools: await redis.get(pool) });
    },
    onLossConfirmed: () => events.push('confirmed'),
    onLostDuringRebuild: () => events.push('lost during'),
    onRebuildFailed: (err) => events.push(`failed: ${(err as Error).message}`),
  });

  // A rebuild left alone: once, its mark removed.
  await rebuilds.reportLoss();
  await rebuilds.running;
  assert.deepEqual(runs, [{ reload: true, pools: 'restored' }]);
  assert.deepEqual(await redis.keys(`${prefix}rebuild-mark:*`), []);

  // By hand on a present state; Redis restarts empty while it waits (before its load).
  let open!: () => void;
  gate = new Promise((r) => { open = r; });
  const byHand = rebuilds.exclusive(async () => {
    await redis.set(pool, 'restored');
    await gate;
    await balances.load({ balances: new Map([['acct_a', 5n]]), ledgerEntries: new Map() });
    return 'done';
  });
  await new Promise((r) => setTimeout(r, 50));
  await deleteKeysUnder(redis, prefix);
  await rebuilds.reportLoss(); // the watch's report: nothing while a rebuild runs
  assert.equal(await redis.get(pool), null);
  gate = undefined;
  open();
  // Its load wrote nothing into the flushed Redis (its mark was gone): refused, not marked ready
  // without the directory and pools it had put back (every key 401 until another rebuild).
  await assert.rejects(byHand, (err: unknown) => err instanceof RebuildSupersededError && err.message === LOST_DURING_REBUILD);
  // And another rebuild started at its end, reloading the pools.
  for (let i = 0; i < 100 && runs.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  await rebuilds.running;
  assert.deepEqual(runs, [{ reload: true, pools: 'restored' }, { reload: true, pools: 'restored' }]);
  assert.equal(await balances.ready(), true);
  assert.equal(await redis.get(pool), 'restored');
  assert.deepEqual(events, ['confirmed', 'lost during']);

  // After a loss, Redis lost again while the rebuild waits: the same (the first load refused).
  await deleteKeysUnder(redis, prefix);
  gate = new Promise((r) => { open = r; });
  await rebuilds.reportLoss();
  await new Promise((r) => setTimeout(r, 50));
  await deleteKeysUnder(redis, prefix);
  gate = undefined;
  open();
  for (let i = 0; i < 100 && runs.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
  await rebuilds.running;
  assert.equal(runs.length, 3);
  assert.equal(await balances.ready(), true);
  assert.equal(await redis.get(pool), 'restored');
  assert.deepEqual(events, ['confirmed', 'lost during', 'confirmed', `failed: ${LOST_DURING_REBUILD}`, 'lost during']);
  assert.deepEqual(await redis.keys(`${prefix}rebuild-mark:*`), []);

  // A stop waits for the rebuild under way and starts none after it, not even the one its lost
  // mark would start; reports and rebuilds by hand are refused from then on.
  await deleteKeysUnder(redis, prefix);
  gate = new Promise((r) => { open = r; });
  await rebuilds.reportLoss();
  await new Promise((r) => setTimeout(r, 50));
  await deleteKeysUnder(redis, prefix);
  const stopped = rebuilds.stop();
  gate = undefined;
  open();
  await stopped;
  assert.equal(rebuilds.running, null);
  await rebuilds.reportLoss();
  assert.equal(rebuilds.running, null);
  assert.equal(await rebuilds.exclusive(async () => 'after stop'), undefined);
  assert.equal(runs.length, 3, 'nothing ran after the stop');
});

test('a callback that throws (a logger failing) never wedges the rebuilds: the next report still rebuilds', async () => {
  let ready = false;
  let rebuilt = 0;
  const rebuilds = new RebuildOnLoss({
    ready: async () => ready,
    mark: { set: async () => {}, present: async () => { throw new Error('Redis away'); }, clear: async () => {} },
    rebuild: async () => { rebuilt++; ready = true; },
    onLossConfirmed: () => { throw new Error('log down'); },
    onCheckFailed: () => { throw new Error('log down'); },
    onLostDuringRebuild: () => { throw new Error('log down'); },
  });
  await rebuilds.reportLoss();
  await rebuilds.running;
  assert.equal(rebuilt, 1);
  // The mark could not be read (Redis away): the next report rebuilds though the state reads
  // ready (never at once: that would spin while Redis stays away); then only a real loss does.
  await rebuilds.reportLoss();
  await rebuilds.running;
  assert.equal(rebuilt, 2);
  assert.equal(rebuilds.running, null, 'nothing wedged');
  await rebuilds.stop();
});

/** A Redis balance store that requires a rebuild, under a fresh prefix removed after the test; undefined (reported skipped) without Redis. */
async function storeOnRedis(t: TestContext): Promise<{ redis: Redis; prefix: string; balances: RedisBalanceStore } | undefined> {
  const url = await requireRedis(t);
  if (!url) return undefined;
  const redis = new Redis(url);
  const prefix = `test:${randomUUID()}:`;
  t.after(async () => {
    await deleteKeysUnder(redis, prefix);
    redis.disconnect();
  });
  return { redis, prefix, balances: new RedisBalanceStore({ redis, prefix, requireReady: true, restoreWindowMs: 0 }) };
}
