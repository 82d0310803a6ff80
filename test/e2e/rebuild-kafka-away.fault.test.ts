// Hot state lost while Kafka is away, with key changes made meanwhile (a tester's HIGH): control
// applied the revocation and the new limit to Redis and spooled their records, Redis then lost
// everything, and once Kafka was back the rebuild read the warehouse before those records were on
// the log and stored. The revoked key was served for 10 s (79 requests), and a key's 0.2-credit
// daily limit was spent 60 times over. The rebuild now reads the log's end first (refusing while
// Kafka is away), and waits until the warehouse group has stored every control record, read
// again at each poll so a spool sent after Kafka's return counts; if that does not happen within
// its wait it refuses too, and gateways keep answering 503. This file stops the shared Kafka:
// `npm test` runs it alone, after every other suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { NEEDS_KAFKA_AND_REDIS, requireFaultControl, startKafka, stopKafka } from '../support/services.ts';
import { emptyPrefix, newAccount, startCluster } from '../support/cluster.ts';

test('Redis lost while Kafka is away, a key revoked and a limit set meanwhile: after Kafka is back the first answers already honour both (401, the limit), exact µc', async (t) => {
  if (!(await requireFaultControl(t, 'kafka'))) return;
  const started = await startCluster([
    ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
    ['control', { roles: 'control' }],
    ['gw', { roles: 'gateway' }],
  ]);
  if (!started) { t.skip(NEEDS_KAFKA_AND_REDIS); return; }
  const { cluster: c, close } = started;
  const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let kafkaDown = false;
  try {
    await redis.connect();
    await c.allReady('agg', 'control', 'gw');
    const acct = await newAccount(c, 10); // 10,000,000 µc
    const second = await c.admin<{ id: string; key: string }>('POST', `/admin/v1/accounts/${acct.accountId}/keys`, {});
    const client = (key: string) => new Anthropic({ apiKey: key, baseURL: c.url('gw'), maxRetries: 0, logLevel: 'error' });
    const status = (key: string, output: number) => client(key).messages.create({
      model: 'claude-haiku-4-5', max_tokens: 2_000, messages: [{ role: 'user', content: `[[sim input=10 output=${output}]] hi` }],
    }).then(() => 200, (err: unknown) => (err as { status?: number }).status ?? -1);
    // haiku-4-5 (cny): 10 × 24 + 2 × 120 = 480 µc each.
    assert.deepEqual([await status(acct.secret, 2), await status(second.json.key, 2)], [200, 200]);
    await c.eventually('both settled', async () => {
      const v = await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${acct.accountId}`);
      return v.json.balance_micro_credits === '9999040' ? true : undefined;
    });
    await stopKafka();
    kafkaDown = true;
    // Control applies both to Redis at once and spools their records.
    assert.equal((await c.admin('DELETE', `/admin/v1/keys/${acct.keyId}`)).status, 200);
    assert.equal((await c.admin('PATCH', `/admin/v1/keys/${second.json.id}`, { daily_credits: 0.2 })).status, 200);
    assert.equal(await status(acct.secret, 2), 401);
    assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0);
    await new Promise((r) => setTimeout(r, 3000));
    await startKafka();
    kafkaDown = false;
    // From Kafka's return: 503 until the state is rebuilt; then the revoked key is refused and
    // the second key gets exactly one request of 10 + 1,250 tokens (240 + 150,000 = 150,240 µc
    // of its 200,000 µc day, which already holds 480 µc) before its limit refuses (429).
    const answers = await c.eventually('the first answers after the rebuild', async () => {
      const revoked = await status(acct.secret, 1_250);
      const limited = await status(second.json.key, 1_250);
      if (revoked === 503 || limited === 503) return undefined;
      return [revoked, limited, await status(second.json.key, 1_250), await status(acct.secret, 1_250)];
    }, 90_000);
    assert.deepEqual(answers, [401, 200, 429, 401]);
    await c.eventually('balance 9,848,800 µc', async () => {
      const v = await c.admin<{ balance_micro_credits: string; held_credits: number }>('GET', `/admin/v1/accounts/${acct.accountId}`);
      return v.json.balance_micro_credits === String(9_999_040 - 150_240) && v.json.held_credits === 0 ? true : undefined;
    }, 30_000);
  } finally {
    if (kafkaDown) await startKafka();
    redis.disconnect();
    await close();
  }
});
