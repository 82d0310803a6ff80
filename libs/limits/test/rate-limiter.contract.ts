// The RateLimiter contract: every adapter (memory, Redis) runs this same suite. Counts and
// header values are asserted exactly; times only as "positive" and "within the window".

import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { CONCURRENCY_RETRY_AFTER_MS, RATELIMIT_HEADERS as H } from '../src/index.ts';
import type { LimitAcquireResult, LimitGrant, LimitPolicy, LimitRefusal, RateLimiter } from '../src/index.ts';

/** Returns a fresh limiter with its own key space, or undefined when the test was skipped. */
export type MakeRateLimiter = (t: TestContext) => Promise<RateLimiter | undefined>;

const MINUTE_MS = 60_000;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

function subject(): string {
  return `key-${randomUUID()}`;
}

function granted(d: LimitAcquireResult): LimitGrant {
  assert.equal(d.ok, true, `expected a grant, got ${JSON.stringify(d)}`);
  return d as LimitGrant;
}

function refused(d: LimitAcquireResult): LimitRefusal {
  assert.equal(d.ok, false, `expected a refusal, got ${JSON.stringify(d)}`);
  return d as LimitRefusal;
}

function assertReset(value: string | undefined, windowMs: number): void {
  assert.ok(value !== undefined && RFC3339.test(value), `reset ${value} is RFC 3339`);
  const at = Date.parse(value);
  assert.ok(at > Date.now() - 1000, 'reset is not in the past');
  assert.ok(at <= Date.now() + windowMs + 1000, 'reset is within the window');
}

export function rateLimiterContract(name: string, make: MakeRateLimiter): void {
  describe(`RateLimiter contract: ${name}`, () => {
    async function setup(t: TestContext): Promise<RateLimiter | undefined> {
      const limiter = await make(t);
      if (limiter !== undefined) t.after(() => limiter.close());
      return limiter;
    }

    test('N requests per minute pass, then the next is refused with retry-after', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const policy: LimitPolicy = { requestsPerMinute: 3 };
      for (const remaining of [2, 1, 0]) {
        const d = granted(await rl.acquire(key, policy, 0));
        assert.equal(d.headers[H.requestsLimit], '3');
        assert.equal(d.headers[H.requestsRemaining], String(remaining));
        assertReset(d.headers[H.requestsReset], MINUTE_MS);
        assert.equal(d.headers[H.retryAfter], undefined);
        await d.release();
      }
      const r = refused(await rl.acquire(key, policy, 0));
      assert.equal(r.limit, 'requests_per_minute');
      assert.ok(r.retryAfterMs > 0 && r.retryAfterMs <= MINUTE_MS, `retryAfterMs ${r.retryAfterMs}`);
      assert.equal(r.headers[H.retryAfter], String(Math.ceil(r.retryAfterMs / 1000)));
      assert.equal(r.headers[H.requestsRemaining], '0');
      assert.equal(r.release, undefined);
      // Refused again: a client retrying early is refused and its count stays at the limit.
      const again = refused(await rl.acquire(key, policy, 0));
      assert.equal(again.headers[H.requestsRemaining], '0');
    });

    test('subjects are counted separately', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const policy: LimitPolicy = { requestsPerMinute: 1 };
      const a = subject();
      granted(await rl.acquire(a, policy, 0));
      refused(await rl.acquire(a, policy, 0));
      const d = granted(await rl.acquire(subject(), policy, 0));
      assert.equal(d.headers[H.requestsRemaining], '0');
    });

    test('tokens per minute refuses an estimate larger than the remainder', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const policy: LimitPolicy = { tokensPerMinute: 100 };
      const first = granted(await rl.acquire(key, policy, 60));
      assert.equal(first.headers[H.tokensLimit], '100');
      assert.equal(first.headers[H.tokensRemaining], '40');
      assertReset(first.headers[H.tokensReset], MINUTE_MS);
      assert.equal(first.headers[H.requestsLimit], undefined, 'no request window, no request headers');

      const r = refused(await rl.acquire(key, policy, 41));
      assert.equal(r.limit, 'tokens_per_minute');
      assert.ok(r.retryAfterMs > 0 && r.retryAfterMs <= MINUTE_MS);
      assert.equal(r.headers[H.tokensRemaining], '40', 'the refused estimate is not counted');
      assert.equal(r.headers[H.retryAfter], String(Math.ceil(r.retryAfterMs / 1000)));

      const exact = granted(await rl.acquire(key, policy, 40));
      assert.equal(exact.headers[H.tokensRemaining], '0');
    });

    test('a token refusal consumes no request and no concurrency slot', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const policy: LimitPolicy = { requestsPerMinute: 5, tokensPerMinute: 100, concurrentRequests: 1 };
      const a = granted(await rl.acquire(key, policy, 80));
      assert.equal(a.headers[H.requestsRemaining], '4');
      await a.release();

      const r = refused(await rl.acquire(key, policy, 50));
      assert.equal(r.limit, 'tokens_per_minute');
      assert.equal(r.headers[H.requestsRemaining], '4');
      assert.equal(r.headers[H.tokensRemaining], '20');

      // The concurrency slot the refused request touched is free again: this one gets it.
      const b = granted(await rl.acquire(key, policy, 20));
      assert.equal(b.headers[H.requestsRemaining], '3');
      assert.equal(b.headers[H.tokensRemaining], '0');
      await b.release();
    });

    test('a request refusal consumes no tokens', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      granted(await rl.acquire(key, { requestsPerMinute: 1, tokensPerMinute: 100 }, 10));
      const r = refused(await rl.acquire(key, { requestsPerMinute: 1, tokensPerMinute: 100 }, 10));
      assert.equal(r.limit, 'requests_per_minute');
      assert.equal(r.headers[H.tokensRemaining], '90');
      // A raised request limit counts on from the 1 already used (the refusal took nothing).
      const d = granted(await rl.acquire(key, { requestsPerMinute: 2, tokensPerMinute: 100 }, 0));
      assert.equal(d.headers[H.requestsRemaining], '0');
      assert.equal(d.headers[H.tokensRemaining], '90');
    });

    test('the most restrictive request window is reported and enforced', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const policy: LimitPolicy = { requestsPerMinute: 10, requestsPer5h: 2, requestsPerWeek: 100 };
      const first = granted(await rl.acquire(key, policy, 0));
      assert.equal(first.headers[H.requestsLimit], '2');
      assert.equal(first.headers[H.requestsRemaining], '1');
      assertReset(first.headers[H.requestsReset], 5 * 3600_000);
      granted(await rl.acquire(key, policy, 0));
      const r = refused(await rl.acquire(key, policy, 0));
      assert.equal(r.limit, 'requests_per_5h');
      assert.ok(r.retryAfterMs > MINUTE_MS && r.retryAfterMs <= 5 * 3600_000, `retryAfterMs ${r.retryAfterMs}`);
      // The refusal was refunded in the per-minute window too: 8 left there, not 7.
      const minuteOnly = granted(await rl.acquire(key, { requestsPerMinute: 10 }, 0));
      assert.equal(minuteOnly.headers[H.requestsRemaining], '7');

      const weekly = { requestsPerWeek: 1 };
      const fresh = subject();
      granted(await rl.acquire(fresh, weekly, 0));
      const w = refused(await rl.acquire(fresh, weekly, 0));
      assert.equal(w.limit, 'requests_per_week');
    });

    test('concurrency: 3 slots, the 4th waits for a release', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const policy: LimitPolicy = { concurrentRequests: 3 };
      const held = [
        granted(await rl.acquire(key, policy, 0)),
        granted(await rl.acquire(key, policy, 0)),
        granted(await rl.acquire(key, policy, 0)),
      ];
      const r = refused(await rl.acquire(key, policy, 0));
      assert.equal(r.limit, 'concurrent_requests');
      assert.equal(r.retryAfterMs, CONCURRENCY_RETRY_AFTER_MS);
      assert.equal(r.headers[H.retryAfter], String(Math.ceil(CONCURRENCY_RETRY_AFTER_MS / 1000)));

      await held[0]?.release();
      const next = granted(await rl.acquire(key, policy, 0));
      refused(await rl.acquire(key, policy, 0));
      await next.release();
      await held[1]?.release();
      await held[2]?.release();
      for (let i = 0; i < 3; i++) granted(await rl.acquire(key, policy, 0));
      refused(await rl.acquire(key, policy, 0));
    });

    test('release is idempotent', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const policy: LimitPolicy = { concurrentRequests: 2 };
      const a = granted(await rl.acquire(key, policy, 0));
      granted(await rl.acquire(key, policy, 0));
      await a.release();
      await a.release();
      await Promise.all([a.release(), a.release()]);
      // One slot was freed, not four: one more passes, then the limit holds.
      granted(await rl.acquire(key, policy, 0));
      refused(await rl.acquire(key, policy, 0));
    });

    test('concurrent acquires never overshoot the concurrency limit', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const decisions = await Promise.all(
        Array.from({ length: 20 }, () => rl.acquire(key, { concurrentRequests: 5 }, 0)),
      );
      const passed = decisions.filter((d) => d.ok).length;
      assert.ok(passed >= 1 && passed <= 5, `${passed} passed`);
    });

    test('an unlimited policy always passes, with no headers', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      for (let i = 0; i < 50; i++) {
        const d = granted(await rl.acquire(key, {}, 1_000_000));
        assert.deepEqual(d.headers, {});
        await d.release();
      }
      await rl.correctTokens(key, {}, 10, 1_000_000);
    });

    test('correctTokens moves the remaining count exactly and never below zero use', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const policy: LimitPolicy = { tokensPerMinute: 1000 };
      const d = granted(await rl.acquire(key, policy, 100));
      assert.equal(d.headers[H.tokensRemaining], '900');

      await rl.correctTokens(key, policy, 100, 250); // used 150 more than estimated
      assert.equal(granted(await rl.acquire(key, policy, 0)).headers[H.tokensRemaining], '750');

      await rl.correctTokens(key, policy, 100, 40); // 60 fewer
      assert.equal(granted(await rl.acquire(key, policy, 0)).headers[H.tokensRemaining], '810');

      await rl.correctTokens(key, policy, 50, 50);
      assert.equal(granted(await rl.acquire(key, policy, 0)).headers[H.tokensRemaining], '810');

      // Over-refunding (190 in use, 1000 given back) leaves the window empty, not in credit.
      await rl.correctTokens(key, policy, 1000, 0);
      assert.equal(granted(await rl.acquire(key, policy, 1000)).headers[H.tokensRemaining], '0');
      assert.equal(refused(await rl.acquire(key, policy, 1)).limit, 'tokens_per_minute');

      // Going over the limit after the fact is recorded, and refuses the next request.
      const other = subject();
      granted(await rl.acquire(other, policy, 900));
      await rl.correctTokens(other, policy, 900, 1200);
      const r = refused(await rl.acquire(other, policy, 1));
      assert.equal(r.headers[H.tokensRemaining], '0');
    });

    test('fractional estimates round up; invalid inputs are rejected', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      const d = granted(await rl.acquire(key, { tokensPerMinute: 10 }, 2.1));
      assert.equal(d.headers[H.tokensRemaining], '7');
      await assert.rejects(rl.acquire(key, { tokensPerMinute: 10 }, -1), RangeError);
      await assert.rejects(rl.acquire(key, { tokensPerMinute: 10 }, Number.NaN), RangeError);
      await assert.rejects(rl.acquire(key, { requestsPerMinute: 1.5 }, 0), RangeError);
      await assert.rejects(rl.correctTokens(key, { tokensPerMinute: 10 }, 1, -5), RangeError);
    });

    test('a zero limit refuses everything', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const r = refused(await rl.acquire(subject(), { requestsPerMinute: 0 }, 0));
      assert.equal(r.limit, 'requests_per_minute');
      assert.equal(r.headers[H.requestsLimit], '0');
      assert.equal(r.headers[H.requestsRemaining], '0');
    });

    test('refund after admission gives every window back exactly what the request took, once', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const policy: LimitPolicy = { requestsPer5h: 3, requestsPerWeek: 10, tokensPerMinute: 1000, concurrentRequests: 1 };
      const k2 = subject();
      const g = granted(await rl.acquire(k2, policy, 250));
      assert.equal(g.headers[H.requestsRemaining], '2');
      assert.equal(g.headers[H.tokensRemaining], '750');
      const after = await g.refund();
      assert.equal(after[H.requestsRemaining], '3');
      assert.equal(after[H.tokensRemaining], '1000');
      assert.equal(after[H.unified5hUtilization], '0');
      await g.refund(); // idempotent: nothing given back twice
      // The slot was released too, and the windows are whole again: 3 more requests pass, the 4th not.
      for (const remaining of ['2', '1', '0']) {
        const n = granted(await rl.acquire(k2, policy, 0));
        assert.equal(n.headers[H.requestsRemaining], remaining);
        await n.release();
      }
      assert.equal(refused(await rl.acquire(k2, policy, 0)).limit, 'requests_per_5h');
    });

    test('changed limit applies to the count already made: 3 used of 3, raised to 4 gives exactly one more', async (t) => {
      const rl = await setup(t);
      if (!rl) return;
      const key = subject();
      for (let i = 0; i < 3; i++) granted(await rl.acquire(key, { requestsPer5h: 3 }, 0));
      refused(await rl.acquire(key, { requestsPer5h: 3 }, 0));
      const one = granted(await rl.acquire(key, { requestsPer5h: 4 }, 0));
      assert.equal(one.headers[H.requestsLimit], '4');
      assert.equal(one.headers[H.requestsRemaining], '0');
      const r = refused(await rl.acquire(key, { requestsPer5h: 4 }, 0));
      assert.equal(r.limit, 'requests_per_5h');
      // Lowered below the count: refused at once, nothing forgiven.
      refused(await rl.acquire(key, { requestsPer5h: 2 }, 0));
      // Tokens too: 700 of 1,000 used, limit lowered to 800 → 100 left.
      const tk = subject();
      granted(await rl.acquire(tk, { tokensPerMinute: 1000 }, 700));
      const d = granted(await rl.acquire(tk, { tokensPerMinute: 800 }, 0));
      assert.equal(d.headers[H.tokensRemaining], '100');
      assert.equal(refused(await rl.acquire(tk, { tokensPerMinute: 800 }, 101)).limit, 'tokens_per_minute');
    });
  });
}
