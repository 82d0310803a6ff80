// A plan's windows are per key and exact across gateways: two gateway processes on one Redis
// (plus control and a ledger aggregator on Kafka), one key, concurrent traffic through both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { newAccount, startCluster, TWO_GATEWAYS, useCluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

const run = useCluster(() => startCluster(TWO_GATEWAYS));

test('a plan\'s 5-hour window holds exactly across two gateways: 7 of 20 concurrent requests pass, 13 get 429 rate_limit_exceeded, 7 are billed', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const c = run.cluster;
  const plan = await c.admin<{ id: string }>('POST', '/admin/v1/plans', { name: 'seven per 5 h', requests_per_5h: 7, requests_per_week: 100 });
  assert.equal(plan.status, 201);
  // The account, its key and 1 credit; a ledger consumer that is still joining its group may
  // take longer than the grant waits (202), so wait for the balance instead.
  const acct = await newAccount(c, 1, 'plans');
  assert.equal((await c.admin('PATCH', `/admin/v1/keys/${acct.keyId}`, { plan_id: plan.json.id })).status, 200);

  const clients = ['gw1', 'gw2'].map((gw) => new Anthropic({ apiKey: acct.secret, baseURL: c.url(gw), maxRetries: 0, logLevel: 'error' }));
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) =>
    clients[i % 2]!.messages.create({ model: 'claude-haiku-4-5', max_tokens: 4, messages: [{ role: 'user', content: '[[sim input=1 output=1]]' }] })
      .withResponse()));

  const passed = results.flatMap((r) => r.status === 'fulfilled' ? [r.value.response.headers] : []);
  const refused = results.flatMap((r) => r.status === 'rejected' ? [r.reason as unknown] : []);
  assert.equal(passed.length, 7);
  assert.equal(refused.length, 13);
  // each passing request saw its own count of the one shared window: 6 … 0 left, every one once
  assert.deepEqual(passed.map((h) => Number(h.get('anthropic-ratelimit-requests-remaining'))).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6]);
  for (const err of refused) {
    assert.ok(err instanceof Anthropic.RateLimitError, String(err));
    assert.equal((err.error as { error: { type: string; code: string } }).error.type, 'rate_limit_error');
    assert.equal((err.error as { error: { type: string; code: string } }).error.code, 'rate_limit_exceeded');
    assert.equal(err.headers?.get('anthropic-ratelimit-unified-status'), 'rejected');
    assert.equal(err.headers?.get('anthropic-ratelimit-unified-5h-utilization'), '1');
    assert.ok(Number(err.headers?.get('retry-after')) > 0);
  }
  // billed the 7 that passed, 24 + 120 µc each (haiku, 1 input and 1 output token)
  const expected = 1_000_000n - 7n * 144n;
  await c.eventually('the 7 requests settled', async () => {
    const v = await c.admin<{ held_credits: number; balance_micro_credits: string }>('GET', `/admin/v1/accounts/${acct.accountId}`);
    return v.json.held_credits === 0 && BigInt(v.json.balance_micro_credits) === expected ? true : undefined;
  });
  // and the window stays shut on both gateways
  for (const client of clients) {
    await assert.rejects(client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 4, messages: [{ role: 'user', content: 'x' }] }), Anthropic.RateLimitError);
  }
});
