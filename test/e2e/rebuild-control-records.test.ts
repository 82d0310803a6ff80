// Control records the warehouse had not stored yet when Redis lost its data (a tester's MEDIUM):
// an account and key made, and a limit set, just before the loss, while the warehouse group's
// inserts lagged by WAREHOUSE_FLUSH_MS. The rebuild read the directory from the warehouse without
// them: the new key answered 401 and the limit was the old one until their records were read
// again. The rebuild now waits (at most 15 s) until the warehouse group has stored every control
// record on the log, as it already did for dead letters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { emptyPrefix, newAccount, startCluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

test('rebuild after a Redis loss with the warehouse behind on control records: a key made just before the loss authenticates at the first request after the rebuild, with its account\'s balance exact', async (t) => {
  const started = await startCluster([
    // The warehouse inserts at most every 4 s, so the records below are not in it yet at the loss.
    ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse', WAREHOUSE_FLUSH_MS: '4000' } }],
    ['control', { roles: 'control' }],
    ['gw', { roles: 'gateway' }],
  ]);
  if (!started) { t.skip(NEEDS_KAFKA_AND_REDIS); return; }
  const { cluster: c, close } = started;
  const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await c.allReady('agg', 'control', 'gw');
    // Let the warehouse's first (startup) insert window pass.
    await new Promise((r) => setTimeout(r, 4500));
    const acct = await newAccount(c, 1); // 1,000,000 µc, applied by the ledger (201)
    // The account's record goes into the warehouse at once (the last insert was over 4 s ago),
    // its key and grant with the next insert, 4 s later; 5 s on, the next insert is 3 s away.
    // A second key now: a control record with no usage or ledger event after it, which the
    // rebuild's wait for the usage and ledger topics alone does not cover.
    await new Promise((r) => setTimeout(r, 5000));
    const key = await c.admin<{ key: string }>('POST', `/admin/v1/accounts/${acct.accountId}/keys`, {});
    assert.equal(key.status, 201);
    assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0);
    // Asked from the loss on: 503 while the state is lost or being rebuilt; the first other
    // answer, the moment the rebuilt state is ready, must know the key (not 401) and serve.
    const client = new Anthropic({ apiKey: key.json.key, baseURL: c.url('gw'), maxRetries: 0, logLevel: 'error' });
    const ask = () => client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: '[[sim input=10 output=2]] hi' }] });
    const first = await c.eventually('an answer other than 503', async () => {
      try {
        return await ask();
      } catch (err) {
        const status = (err as { status?: number }).status;
        if (status === 503) return undefined;
        return { status };
      }
    }, 40_000);
    assert.ok('usage' in first, `the first answer after the rebuild: ${JSON.stringify(first)}`);
    assert.deepEqual([first.usage.input_tokens, first.usage.output_tokens], [10, 2]);
    // haiku-4-5 (cny): 10 × 24 + 2 × 120 = 480 µc
    await c.eventually('balance 999,520 µc', async () => {
      const v = await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${acct.accountId}`);
      return v.json.balance_micro_credits === '999520' ? true : undefined;
    });
  } finally {
    redis.disconnect();
    await close();
  }
});
