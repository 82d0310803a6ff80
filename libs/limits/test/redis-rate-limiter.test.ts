// The RateLimiter contract against a real Redis, plus what only Redis shows: limits shared by
// two gateways, slot counters that expire, and the insurance limiter when Redis is unreachable.
// Each case uses its own key prefix so the suite can run in parallel on a shared Redis.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { DEFAULT_CONCURRENCY_TTL_SECONDS, RedisRateLimiter } from '../src/index.ts';
import type { LimitPolicy } from '../src/index.ts';
import { findRedis, requireRedis } from '../../../test/support/services.ts';
import { rateLimiterContract } from './rate-limiter.contract.ts';

const url = await findRedis();

async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const match = `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
    out.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return out.sort();
}

async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(redis, prefix);
  if (keys.length > 0) await redis.del(...keys);
}

function newPrefix(): string {
  return `test:limits:${randomUUID()}`;
}

/** A client that can never connect and fails commands at once instead of queueing them. */
function unreachableRedis(): Redis {
  return new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
}

describe('RedisRateLimiter with Redis unreachable', () => {
  test('the insurance limiter still enforces every window, without throwing', async (t) => {
    const redis = unreachableRedis();
    t.after(() => redis.disconnect());
    const rl = new RedisRateLimiter({ redis, prefix: newPrefix() });
    const key = `key-${randomUUID()}`;
    const policy: LimitPolicy = { requestsPerMinute: 2, tokensPerMinute: 100, concurrentRequests: 1 };

    const a = await rl.acquire(key, policy, 30);
    assert.equal(a.ok, true);
    assert.equal(a.headers['anthropic-ratelimit-requests-remaining'], '1');
    assert.equal(a.headers['anthropic-ratelimit-tokens-remaining'], '70');
    const busy = await rl.acquire(key, policy, 1);
    assert.equal(busy.ok, false);
    assert.equal(busy.ok === false && busy.limit, 'concurrent_requests');
    await a.release?.();

    const tooBig = await rl.acquire(key, policy, 71);
    assert.equal(tooBig.ok === false && tooBig.limit, 'tokens_per_minute');
    const b = await rl.acquire(key, policy, 70);
    assert.equal(b.ok, true);
    await b.release?.();
    const c = await rl.acquire(key, policy, 0);
    assert.equal(c.ok === false && c.limit, 'requests_per_minute');
    assert.ok(c.ok === false && c.retryAfterMs > 0);

    await rl.correctTokens(key, policy, 70, 10); // no throw either
    await rl.close();
  });

  test('without insurance, acquire fails instead of guessing', async (t) => {
    const redis = unreachableRedis();
    t.after(() => redis.disconnect());
    const rl = new RedisRateLimiter({ redis, prefix: newPrefix(), insurance: false });
    await assert.rejects(rl.acquire('k', { requestsPerMinute: 5 }, 0));
    // An unlimited policy touches no store at all.
    assert.equal((await rl.acquire('k', {}, 0)).ok, true);
  });
});

if (url === undefined) {
  // Skips loudly, or fails when services are required (CI).
  test('RedisRateLimiter contract', async (t) => {
    await requireRedis(t);
  });
} else {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  // The adapter answers from insurance until the client is ready, so connect first.
  before(() => redis.connect());
  after(() => redis.quit());

  rateLimiterContract('redis', async (t) => {
    const prefix = newPrefix();
    t.after(() => deletePrefix(redis, prefix));
    return new RedisRateLimiter({ redis, prefix });
  });

  describe('RedisRateLimiter specifics', () => {
    test('two gateways with separate clients share one allowance', async (t) => {
      const prefix = newPrefix();
      const other = new Redis(url);
      await other.ping();
      t.after(async () => {
        await deletePrefix(redis, prefix);
        await other.quit();
      });
      const gw1 = new RedisRateLimiter({ redis, prefix });
      const gw2 = new RedisRateLimiter({ redis: other, prefix });
      const key = `key-${randomUUID()}`;
      const policy: LimitPolicy = { requestsPerMinute: 3, concurrentRequests: 2 };
      const a = await gw1.acquire(key, policy, 0);
      const b = await gw2.acquire(key, policy, 0);
      assert.equal(a.ok && b.ok, true);
      assert.equal((await gw1.acquire(key, policy, 0)).ok === false, true, 'slots are shared');
      await a.release?.(); // released by the gateway that took it, seen by the other
      const c = await gw2.acquire(key, policy, 0);
      assert.equal(c.ok, true);
      assert.equal(c.headers['anthropic-ratelimit-requests-remaining'], '0');
      const d = await gw1.acquire(key, { requestsPerMinute: 3 }, 0);
      assert.equal(d.ok === false && d.limit, 'requests_per_minute');
    });

    test('keys live under the prefix, with the window and limit in the name, and all expire', async (t) => {
      const prefix = newPrefix();
      t.after(() => deletePrefix(redis, prefix));
      const rl = new RedisRateLimiter({ redis, prefix });
      const key = `key-${randomUUID()}`;
      const d = await rl.acquire(key, { requestsPerMinute: 7, tokensPerMinute: 500, concurrentRequests: 4 }, 10);
      assert.equal(d.ok, true);
      assert.deepEqual(await keysUnder(redis, prefix), [
        `${prefix}:concurrent_requests:${key}`,
        `${prefix}:requests_per_minute:${key}`,
        `${prefix}:tokens_per_minute:${key}`,
      ]);
      assert.equal(await redis.get(`${prefix}:tokens_per_minute:${key}`), '10');
      const slotTtl = await redis.pttl(`${prefix}:concurrent_requests:${key}`);
      // A gateway that dies holding this slot stops holding it within the safety TTL.
      assert.ok(slotTtl > 0 && slotTtl <= DEFAULT_CONCURRENCY_TTL_SECONDS * 1000, `pttl ${slotTtl}`);
      const minuteTtl = await redis.pttl(`${prefix}:requests_per_minute:${key}`);
      assert.ok(minuteTtl > 0 && minuteTtl <= 60_000, `pttl ${minuteTtl}`);
      await d.release?.();
      assert.equal(await redis.get(`${prefix}:concurrent_requests:${key}`), '0');
    });

    test('round trips: every window of a request is one script call to acquire, to refuse, to refund; its release and correction one more', async (t) => {
      const prefix = newPrefix();
      const own = new Redis(url);
      await own.ping();
      const watcher = new Redis(url);
      const monitor = await watcher.monitor();
      const seen: string[] = [];
      const port = String(own.stream.localPort);
      // Only what this client sends: Lua's own commands show as source "lua", other suites' under their ports.
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        if (source.endsWith(`:${port}`)) seen.push(String(args[0]).toLowerCase());
      });
      t.after(async () => {
        monitor.disconnect();
        watcher.disconnect();
        await deletePrefix(redis, prefix);
        await own.quit();
      });
      const rl = new RedisRateLimiter({ redis: own, prefix });
      const policy: LimitPolicy = {
        requestsPerMinute: 2, requestsPer5h: 100, requestsPerWeek: 1000, tokensPerMinute: 10_000, concurrentRequests: 5,
      };
      await rl.acquire(`warm-${randomUUID()}`, policy, 1); // loads the script (EVALSHA, NOSCRIPT, EVAL) once
      await own.ping();
      const counted = async <T>(f: () => Promise<T>): Promise<[T, string[]]> => {
        await new Promise((r) => setTimeout(r, 50));
        seen.length = 0;
        const v = await f();
        await own.ping(); // MONITOR has relayed everything sent before this answer
        await new Promise((r) => setTimeout(r, 50));
        return [v, seen.filter((c) => c !== 'ping')];
      };
      const key = `key-${randomUUID()}`;
      const [a, acquire] = await counted(() => rl.acquire(key, policy, 100));
      assert.equal(a.ok, true);
      assert.deepEqual(acquire, ['evalsha'], 'five windows, one call');
      const [, done] = await counted(() => Promise.all([a.release!(), rl.correctTokens(key, policy, 100, 40)]));
      assert.deepEqual(done, ['evalsha'], 'release and correction in the same turn: one call');
      const [b, second] = await counted(() => rl.acquire(key, policy, 100));
      assert.equal(b.ok, true);
      assert.deepEqual(second, ['evalsha']);
      const [, refund] = await counted(() => b.refund!());
      assert.deepEqual(refund, ['evalsha'], 'every window and the slot given back in one call');
      await rl.acquire(key, policy, 100); // 2 of 2 per minute
      const [c, refusal] = await counted(() => rl.acquire(key, policy, 100));
      assert.equal(c.ok === false && c.limit, 'requests_per_minute');
      assert.deepEqual(refusal, ['evalsha'], 'a refusal gives back inside the same call');
      // 100 + 100 + 100 estimated, 60 corrected away, the refund's 100 back, the refusal's 100 back: 140.
      assert.equal(await redis.get(`${prefix}:tokens_per_minute:${key}`), '140');
      assert.equal(await redis.get(`${prefix}:requests_per_minute:${key}`), '2');
      assert.equal(await redis.get(`${prefix}:concurrent_requests:${key}`), '1');
    });

    test('moves of one turn share a call but apply in order: two corrections of one window end as one after the other', async (t) => {
      const prefix = newPrefix();
      t.after(() => deletePrefix(redis, prefix));
      const rl = new RedisRateLimiter({ redis, prefix });
      const key = `key-${randomUUID()}`;
      const policy: LimitPolicy = { tokensPerMinute: 10_000 };
      const a = await rl.acquire(key, policy, 5);
      assert.equal(a.ok, true);
      // 5 − 10 stops at 0 (never below zero), then + 7: 7. Summed first (−3) it would be 2.
      await Promise.all([rl.correctTokens(key, policy, 10, 0), rl.correctTokens(key, policy, 0, 7)]);
      assert.equal(await redis.get(`${prefix}:tokens_per_minute:${key}`), '7');
    });

    test('a slot released after its counter expired does not mint an extra slot', async (t) => {
      const prefix = newPrefix();
      t.after(() => deletePrefix(redis, prefix));
      const rl = new RedisRateLimiter({ redis, prefix });
      const key = `key-${randomUUID()}`;
      const policy: LimitPolicy = { concurrentRequests: 1 };
      const d = await rl.acquire(key, policy, 0);
      assert.equal(d.ok, true);
      await redis.del(`${prefix}:concurrent_requests:${key}`); // what the safety TTL does
      await d.release?.();
      assert.equal(await redis.get(`${prefix}:concurrent_requests:${key}`), '0');
      assert.equal((await rl.acquire(key, policy, 0)).ok, true);
      assert.equal((await rl.acquire(key, policy, 0)).ok, false);
    });
  });
}
