// Requests in flight when Redis loses its data: their holds die with it, and the rebuild (which
// reads the warehouse) cannot know them. A tester's HIGH: one slow request of 468,000 µc in flight
// during a FLUSHALL, then 1,260,000 µc spent against a 1,000,000 limit, a prepaid balance at
// −260,000 µc. Each gateway now re-reserves its requests in flight when it sees the state rebuilt
// (HoldRegistry), and the rebuild admits no hold meanwhile on any gateway (the restore window).
// Two gateways: the slow request on one, the new ones on the other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { emptyPrefix, newAccount, startCluster, TWO_GATEWAYS } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

const MODEL = 'claude-haiku-4-5';

test('requests in flight at a Redis data loss: their holds are restored after the rebuild, on every gateway, before any new request is admitted; the balance never goes below zero, exact µc', async (t) => {
  const started = await startCluster(TWO_GATEWAYS);
  if (!started) { t.skip(NEEDS_KAFKA_AND_REDIS); return; }
  const { cluster: c, close } = started;
  const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await c.allReady('agg', 'gw1', 'gw2');
    // 1 credit = 1,000,000 µc, no overdraft.
    const acct = await newAccount(c, 1);
    const slow = new Anthropic({ apiKey: acct.secret, baseURL: c.url('gw1'), maxRetries: 0, logLevel: 'error' });
    const other = new Anthropic({ apiKey: acct.secret, baseURL: c.url('gw2'), maxRetries: 0, logLevel: 'error' });
    // A: haiku (the cny catalog: 2.40 and 12.00 CNY per MTok at 10 credits per CNY, so 24 µc
    // per input token and 120 per output token), 10 in and 3,700 out, answered after 25 s:
    // 10 × 24 + 3,700 × 120 = 444,240 µc. Its hold (max_tokens 7,500) is 900,000 µc plus the
    // input bound, so less than 100,000 µc stays available.
    const a = slow.messages.create({
      model: MODEL, max_tokens: 7_500, messages: [{ role: 'user', content: '[[sim input=10 output=3700 latency_ms=25000]] hello' }],
    });
    // B: 10 in, 1,250 out: 240 + 150,000 = 150,240 µc. Its hold (max_tokens 2,000) is 240,000 µc
    // plus the input bound; clamped, at least 1,024 tokens (122,880 µc): more than is left beside A.
    const b = () => other.messages.create({
      model: MODEL, max_tokens: 2_000, messages: [{ role: 'user', content: '[[sim input=10 output=1250]] hello' }],
    });
    let aEnded = false;
    a.then(() => { aEnded = true; }, () => { aEnded = true; }); // awaited below; not an unhandled rejection meanwhile
    const status = (p: Promise<unknown>) => p.then(() => 200, (err: unknown) => (err as { status?: number }).status ?? -1);
    await c.eventually('A holds its worst case', async () => {
      const v = await c.admin<{ available_credits: number }>('GET', `/admin/v1/accounts/${acct.accountId}`);
      return v.json.available_credits < 0.1 ? true : undefined;
    });
    // Redis restarted empty, for this deployment; the aggregator (which owns the warehouse) rebuilds.
    assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0);
    // While the state is lost or in its restore window, paid requests get 503; the first other
    // answer is already decided with A's hold restored: 402, not admitted.
    const first = await c.eventually('an answer other than 503 on gw2', async () => {
      const s = await status(b());
      return s === 503 ? undefined : s;
    }, 20_000);
    const refused = [first, await status(b()), await status(b())];
    // (the rebuild and its restore window must end within A's 25 s: asserted, not assumed)
    assert.equal(aEnded, false, 'A still in flight when B was refused');
    assert.deepEqual(refused, [402, 402, 402], 'while A is in flight, nothing fits beside its restored hold');
    // A ends and is charged; then B fits once.
    const done = await a;
    assert.deepEqual([done.usage.input_tokens, done.usage.output_tokens], [10, 3_700]);
    assert.equal(await status(b()), 200);
    const want = 1_000_000n - 444_240n - 150_240n;
    const balance = await c.eventually(`balance ${want} µc`, async () => {
      const v = await c.admin<{ balance_micro_credits: string; held_credits: number }>('GET', `/admin/v1/accounts/${acct.accountId}`);
      return BigInt(v.json.balance_micro_credits) === want && v.json.held_credits === 0 ? v.json : undefined;
    }, 20_000);
    assert.deepEqual([balance.balance_micro_credits, balance.held_credits], ['405520', 0]);
    assert.match(c.logOf('gw1'), /re-reserved the holds of this gateway's requests in flight/);
  } finally {
    redis.disconnect();
    await close();
  }
});
