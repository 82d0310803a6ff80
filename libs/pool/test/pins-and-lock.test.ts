// Breaker brk10a on the store contract, memory and Redis: a pin refreshed by a request without a
// 1-hour breakpoint keeps the 1-hour expiry (#2), and `exclusive` makes a check-and-write of pool
// records atomic across processes (#3: an upstream deleted while a group is created listing it).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryPoolStore, PoolBusyError, RedisPoolStore, type GroupRecord, type PoolStore, type UpstreamRecord } from '../src/index.ts';
import { testRedis } from '../../../test/support/redis.ts';
import { NEEDS_REDIS } from '../../../test/support/services.ts';

const upstream = (id: string, version: number, o: Partial<UpstreamRecord> = {}): UpstreamRecord => ({
  id, name: id, platform: 'anthropic', base_url: `https://${id}.example.com`, api_key_sealed: null, models: null,
  weight: 1, priority: 0, max_concurrency: null, status: 'active', created_at: 0, deleted: false, version, ...o,
});
const group = (id: string, version: number, o: Partial<GroupRecord> = {}): GroupRecord => ({
  id, name: id, platform: 'anthropic', upstream_ids: ['up_a'], model_mapping: null, created_at: 0, deleted: false, version, ...o,
});

const HOUR = 3_600_000;
const FIVE_MIN = 300_000;

const { redis, redisUrl, prefix } = await testRedis('pins');

test('memory store: a 1-hour pin refreshed by a 5-minute request keeps its 1-hour expiry; a pin moved to another upstream takes the new ttl', async () => {
  let now = 1_000_000;
  const s = new MemoryPoolStore({ now: () => now });
  await s.setAffinity('grp', 'sess', 'up_a', HOUR);
  now += 1_000;
  await s.setAffinity('grp', 'sess', 'up_a', FIVE_MIN);
  // 30 minutes later: the 1-hour cache written at t0 is alive, and so is the pin (expires at t0 + 1 h)
  now = 1_000_000 + 30 * 60_000;
  assert.equal(await s.affinity('grp', 'sess'), 'up_a');
  now = 1_000_000 + HOUR - 1;
  assert.equal(await s.affinity('grp', 'sess'), 'up_a');
  now = 1_000_000 + HOUR;
  assert.equal(await s.affinity('grp', 'sess'), undefined);
  // failover moves the pin: the old upstream's longer expiry is not carried over
  now = 5_000_000;
  await s.setAffinity('grp', 'sess2', 'up_a', HOUR);
  await s.setAffinity('grp', 'sess2', 'up_b', FIVE_MIN);
  now = 5_000_000 + FIVE_MIN;
  assert.equal(await s.affinity('grp', 'sess2'), undefined);
});

test('redis store: a 1-hour pin refreshed by a 5-minute request keeps its 1-hour PTTL; a pin moved to another upstream takes the new one', async (t) => {
  if (!redis) return t.skip(NEEDS_REDIS);
  const p = `${prefix}ttl:`;
  const s = new RedisPoolStore({ redis, prefix: p });
  await s.setAffinity('grp', 'sess', 'up_a', HOUR);
  await s.setAffinity('grp', 'sess', 'up_a', FIVE_MIN);
  const [key] = await redis.keys(`${p}pool:pin:*`);
  assert.ok(key);
  const left = await redis.pttl(key);
  // the 5-minute refresh did not shorten it: still more than 5 minutes, at most 1 hour
  assert.ok(left > FIVE_MIN && left <= HOUR, `pttl ${left}`);
  assert.equal(await s.affinity('grp', 'sess'), 'up_a');
  await s.setAffinity('grp', 'sess', 'up_b', FIVE_MIN);
  const moved = await redis.pttl(key);
  assert.ok(moved > 0 && moved <= FIVE_MIN, `pttl ${moved}`);
  assert.equal(await s.affinity('grp', 'sess'), 'up_b');
});

const stores: Array<[string, () => [PoolStore, PoolStore] | undefined]> = [
  ['memory', () => { const m = new MemoryPoolStore(); return [m, m]; }],
  // two stores on two connections: two control processes sharing one Redis
  ['redis', () => {
    if (!redis || !redisUrl) return undefined;
    const p = `${prefix}${randomUUID()}:`;
    const other = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    after(() => other.disconnect());
    return [new RedisPoolStore({ redis, prefix: p }), new RedisPoolStore({ redis: other, prefix: p })];
  }],
];

for (const [name, make] of stores) {
  describe(`${name} pool store exclusive`, () => {
    test('an upstream delete racing a group create listing it (30 rounds): exactly one wins and no group lists a deleted upstream', async (t) => {
      const pair = make();
      if (!pair) return t.skip(NEEDS_REDIS);
      const [one, two] = pair;
      const yieldNow = () => new Promise((r) => setImmediate(r));
      for (let round = 0; round < 30; round++) {
        const id = `up_${round}`;
        await one.putUpstream(upstream(id, 1));
        // the control API's checks, with a pause between check and write (a warehouse insert)
        const del = one.exclusive(async () => {
          const listed = (await one.groups()).some((g) => !g.deleted && g.upstream_ids.includes(id));
          await yieldNow();
          if (listed) return 'conflict';
          await one.putUpstream(upstream(id, 2, { deleted: true }));
          return 'deleted';
        });
        const create = two.exclusive(async () => {
          const live = await two.upstream(id);
          await yieldNow();
          if (!live || live.deleted) return 'refused';
          await two.putGroup(group(`grp_${round}`, 1, { upstream_ids: [id] }));
          return 'created';
        });
        const outcome = [await del, await create];
        assert.ok(JSON.stringify(outcome) === '["deleted","refused"]' || JSON.stringify(outcome) === '["conflict","created"]', `round ${round}: ${outcome}`);
        const g = await one.group(`grp_${round}`);
        const u = await one.upstream(id);
        assert.equal(g !== undefined && u?.deleted === true, false, `round ${round}: group lists deleted ${id}`);
      }
    });

    test('exclusive: an fn that throws releases the lock (the next caller runs) and its error reaches the caller', async (t) => {
      const pair = make();
      if (!pair) return t.skip(NEEDS_REDIS);
      const [one, two] = pair;
      await assert.rejects(one.exclusive(async () => { throw new Error('boom'); }), /boom/);
      assert.equal(await two.exclusive(async () => 'ran'), 'ran');
    });
  });
}

test('redis pool store exclusive fence: a holder whose lock lapsed and was taken (frozen past POOL_LOCK_TTL_MS) is refused before it writes; a holder in time writes', async (t) => {
  if (!redis) return t.skip(NEEDS_REDIS);
  const p = `${prefix}${randomUUID()}:`;
  const store = new RedisPoolStore({ redis, prefix: p });
  const outcome = await store.exclusive(async (fence) => {
    await fence(); // in time
    const ttl = await redis!.pttl(`${p}pool:lock`);
    // its lease ran out and another control process took the lock
    await redis!.set(`${p}pool:lock`, 'another-holder', 'PX', 30_000);
    const refused = await fence().then(() => 'written', (e: unknown) => (e instanceof PoolBusyError ? e.message : String(e)));
    return { ttl, refused };
  });
  assert.ok(outcome.ttl > 29_000, `the fence gave the lock its time again: ${outcome.ttl}`);
  assert.equal(outcome.refused, 'this change of the upstream pool took over 30000 ms, and another may have been made meanwhile; nothing was changed; retry');
  assert.equal(await redis.get(`${p}pool:lock`), 'another-holder', 'the late holder\'s release left the other one\'s lock');
  await redis.del(`${p}pool:lock`);
});
