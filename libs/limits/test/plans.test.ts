// Plans as the limiter sees them: the seed plans' windows, and the exact headers of each
// decision (Anthropic's, x-ratelimit-*, Claude Code's unified ones) on a fixed clock; then the
// 5-hour window of a plan shared by two limiters (two gateways) on one real Redis.

import { after, describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryRateLimiter, RedisRateLimiter, SEED_PLANS, findPlan, policyOfPlan, seedPlan } from '../src/index.ts';
import type { LimitAcquireResult } from '../src/index.ts';
import { findRedis, requireRedis } from '../../../test/support/services.ts';

// 2026-11-30T12:00:00.250Z: a quarter second past the second, so every reset rounds up.
const T0 = 1_796_040_000_250;

describe('seed plans', () => {
  test('the four reference plans carry the issue\'s requests per minute / 5 h / week, nothing else', () => {
    assert.deepEqual(SEED_PLANS.map((p) => [p.id, p.requests_per_minute, p.requests_per_5h, p.requests_per_week, p.tokens_per_minute, p.concurrent_requests]), [
      ['free', 10, 40, 200, null, null],
      ['pro', 20, 400, 2_000, null, null],
      ['max-5x', 60, 1_200, 6_000, null, null],
      ['max-20x', 120, 3_000, 15_000, null, null],
    ]);
    assert.deepEqual(policyOfPlan(seedPlan('pro')!), { requestsPerMinute: 20, requestsPer5h: 400, requestsPerWeek: 2_000 });
    assert.deepEqual(policyOfPlan({ requests_per_minute: null, tokens_per_minute: 0, concurrent_requests: 3 }), { tokensPerMinute: 0, concurrentRequests: 3 });
  });

  test('a stored plan replaces the seed of its id, a tombstone of a seed id is the seed again (a seed always exists), an unknown id is no plan', async () => {
    const stored = new Map<string, { id: string; name: string; requests_per_minute: number | null; deleted?: boolean }>([
      ['pro', { id: 'pro', name: 'Pro (changed)', requests_per_minute: 25 }],
      ['free', { id: 'free', name: 'Free', requests_per_minute: 10, deleted: true }],
    ]);
    const lookup = async (id: string) => stored.get(id);
    assert.equal((await findPlan('pro', lookup))?.requests_per_minute, 25);
    assert.deepEqual(await findPlan('free', lookup), seedPlan('free'));
    // a tombstone of a plan the operator created is no plan
    stored.set('own', { id: 'own', name: 'Own', requests_per_minute: 5, deleted: true });
    assert.equal(await findPlan('own', lookup), undefined);
    assert.deepEqual(await findPlan('max-5x', lookup), seedPlan('max-5x'));
    assert.equal(await findPlan('gold', lookup), undefined);
  });
});

describe('headers of the free plan on a fixed clock (memory)', () => {
  test('every window\'s limit, remaining and reset; unified status allowed → allowed_warning at 80 % → rejected by the 5 h window', async (t) => {
    mock.timers.enable({ apis: ['Date'], now: T0 });
    t.after(() => mock.timers.reset());
    const rl = new MemoryRateLimiter();
    const policy = policyOfPlan(seedPlan('free')!);
    const go = () => rl.acquire('key_a', policy, 0);

    const first = await go();
    assert.equal(first.ok, true);
    assert.deepEqual(first.headers, {
      // the most restrictive request window: the minute (9 left of 10)
      'anthropic-ratelimit-requests-limit': '10',
      'anthropic-ratelimit-requests-remaining': '9',
      'anthropic-ratelimit-requests-reset': '2026-11-30T12:01:01Z',
      'x-ratelimit-limit': '10',
      'x-ratelimit-remaining': '9',
      'x-ratelimit-reset': '1796040061',
      // 1 of 40 and 1 of 200
      'anthropic-ratelimit-unified-5h-utilization': '0.025',
      'anthropic-ratelimit-unified-5h-reset': '1796058001',
      'anthropic-ratelimit-unified-7d-utilization': '0.005',
      'anthropic-ratelimit-unified-7d-reset': '1796644801',
      'anthropic-ratelimit-unified-status': 'allowed',
      'anthropic-ratelimit-unified-representative-claim': 'five_hour',
      'anthropic-ratelimit-unified-reset': '1796058001',
    });

    for (let i = 2; i <= 10; i++) assert.equal((await go()).ok, true);
    // The 11th in the first minute: refused by the minute window, 60 s before it resets.
    const minute = await go();
    assert.equal(minute.ok, false);
    assert.equal(minute.ok === false && minute.limit, 'requests_per_minute');
    assert.equal(minute.ok === false && minute.retryAfterMs, 60_000);
    assert.equal(minute.headers['retry-after'], '60');
    assert.equal(minute.headers['x-ratelimit-remaining'], '0');
    assert.equal(minute.headers['anthropic-ratelimit-requests-remaining'], '0');
    // refunded: 10 of 40 used, and the subscription windows did not refuse
    assert.equal(minute.headers['anthropic-ratelimit-unified-5h-utilization'], '0.25');
    assert.equal(minute.headers['anthropic-ratelimit-unified-status'], 'allowed');

    let last: LimitAcquireResult = first;
    for (let m = 1; m <= 3; m++) {
      mock.timers.setTime(T0 + m * 61_000);
      for (let i = 0; i < 10; i++) {
        last = await go();
        assert.equal(last.ok, true);
        const used = 10 * m + i + 1;
        assert.equal(last.headers['anthropic-ratelimit-unified-5h-utilization'], String(used / 40));
        // 32 of 40 is 80 %: the warning starts there
        assert.equal(last.headers['anthropic-ratelimit-unified-status'], used >= 32 ? 'allowed_warning' : 'allowed', `request ${used}`);
      }
    }
    // The 40th: the 5 h window is now the most restrictive (0 left) and the representative claim.
    assert.equal(last.headers['anthropic-ratelimit-requests-limit'], '40');
    assert.equal(last.headers['anthropic-ratelimit-requests-remaining'], '0');
    assert.equal(last.headers['anthropic-ratelimit-requests-reset'], '2026-11-30T17:00:01Z');
    assert.equal(last.headers['anthropic-ratelimit-unified-7d-utilization'], '0.2');

    // 41st, at T0 + 244 s: the 5 h window refuses until 17:00:00.250, 18,000 − 244 s away.
    mock.timers.setTime(T0 + 244_000);
    const refused = await go();
    assert.equal(refused.ok, false);
    assert.equal(refused.ok === false && refused.limit, 'requests_per_5h');
    assert.equal(refused.ok === false && refused.retryAfterMs, 17_756_000);
    assert.deepEqual(refused.headers, {
      'anthropic-ratelimit-requests-limit': '40',
      'anthropic-ratelimit-requests-remaining': '0',
      'anthropic-ratelimit-requests-reset': '2026-11-30T17:00:01Z',
      // a fresh minute window, refunded: all 10 left, resetting 60 s after T0 + 244 s
      'x-ratelimit-limit': '10',
      'x-ratelimit-remaining': '10',
      'x-ratelimit-reset': '1796040305',
      'anthropic-ratelimit-unified-5h-utilization': '1',
      'anthropic-ratelimit-unified-5h-reset': '1796058001',
      'anthropic-ratelimit-unified-7d-utilization': '0.2',
      'anthropic-ratelimit-unified-7d-reset': '1796644801',
      'anthropic-ratelimit-unified-status': 'rejected',
      'anthropic-ratelimit-unified-representative-claim': 'five_hour',
      'anthropic-ratelimit-unified-reset': '1796058001',
      'retry-after': '17756',
    });
  });

  test('a plan without 5 h and 7 d windows sends no unified headers; one with tokens sends the token window', async (t) => {
    mock.timers.enable({ apis: ['Date'], now: T0 });
    t.after(() => mock.timers.reset());
    const rl = new MemoryRateLimiter();
    const d = await rl.acquire('key_b', policyOfPlan({ tokens_per_minute: 1_000, concurrent_requests: 2 }), 300);
    assert.equal(d.ok, true);
    assert.deepEqual(d.headers, {
      'anthropic-ratelimit-tokens-limit': '1000',
      'anthropic-ratelimit-tokens-remaining': '700',
      'anthropic-ratelimit-tokens-reset': '2026-11-30T12:01:01Z',
    });
    await d.release?.();
  });
});

const redisUrl = await findRedis();

describe('a plan\'s 5-hour window across two gateways (Redis)', () => {
  const clients: Redis[] = [];
  after(async () => { for (const c of clients) c.disconnect(); });

  test('100 concurrent requests of one key through two limiters on two connections: exactly 40 pass (free plan 5 h window alone)', async (t) => {
    if (!(await requireRedis(t))) return;
    const prefix = `test:plans:${randomUUID()}`;
    const [a, b] = [new Redis(redisUrl!), new Redis(redisUrl!)];
    clients.push(a, b);
    await Promise.all([a.ping(), b.ping()]);
    t.after(async () => {
      const keys = await a.keys(`${prefix}*`);
      if (keys.length > 0) await a.del(...keys);
    });
    const gw1 = new RedisRateLimiter({ redis: a, prefix, insurance: false });
    const gw2 = new RedisRateLimiter({ redis: b, prefix, insurance: false });
    const policy = policyOfPlan({ requests_per_5h: seedPlan('free')!.requests_per_5h });
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? gw1 : gw2).acquire('key_c', policy, 0)));
    const passed = results.filter((r) => r.ok);
    assert.equal(passed.length, 40);
    // each of the 40 saw a different count: remaining 39 … 0, every one once
    assert.deepEqual(passed.map((r) => Number(r.headers['anthropic-ratelimit-requests-remaining'])).sort((x, y) => x - y),
      Array.from({ length: 40 }, (_, i) => i));
    for (const r of results.filter((x) => !x.ok)) {
      assert.equal(r.ok === false && r.limit, 'requests_per_5h');
      assert.equal(r.headers['anthropic-ratelimit-unified-status'], 'rejected');
      assert.equal(r.headers['anthropic-ratelimit-unified-representative-claim'], 'five_hour');
    }
    // after the burst the shared counter holds exactly the 40 that passed
    const after = await gw1.acquire('key_c', policy, 0);
    assert.equal(after.ok, false);
    assert.equal(after.headers['anthropic-ratelimit-unified-5h-utilization'], '1');
    const stored = await a.keys(`${prefix}*`);
    assert.equal(stored.length, 1);
    assert.equal(await a.get(stored[0]!), '40');
  });
});
