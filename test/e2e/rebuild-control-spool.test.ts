// A key revoked through a control process that cannot reach Kafka (its record only in that
// process's spool), then Redis lost its data: the rebuild reads the warehouse, which never got
// the revocation, so the rebuilt state had the key active and served it until that spool reached
// Kafka (any time later: the rebuild waits for a spool only SPOOL_RESEND_MS after Kafka's
// return, and here this process never reaches it). The control process now puts back the records
// the log has not acknowledged when it sees the state rebuilt (ControlRecordRegistry), and the
// rebuilt state admits no request before that (the restore window it announced).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { emptyPrefix, newAccount, startCluster } from '../support/cluster.ts';

test('rebuild after a Redis loss with a key revocation only in a control process\'s spool (Kafka away for that process): the key is never served again (401 from the first answer after the rebuild)', async (t) => {
  const started = await startCluster([
    ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
    ['control', { roles: 'control' }],
    // Kafka away for this control process alone: nothing listens there.
    ['cut-off', { roles: 'control', env: { KAFKA_BROKERS: '127.0.0.1:1' } }],
    ['gw', { roles: 'gateway' }],
  ]);
  if (!started) { t.skip('Kafka or Redis absent'); return; }
  const { cluster: c, close } = started;
  const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await c.allReady('agg', 'control', 'cut-off', 'gw');
    const acct = await newAccount(c, 10); // through `control`: every record on the log
    const client = new Anthropic({ apiKey: acct.secret, baseURL: c.url('gw'), maxRetries: 0, logLevel: 'error' });
    const status = () => client.messages.create({
      model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: '[[sim input=10 output=2]] hi' }],
    }).then(() => 200, (err: unknown) => (err as { status?: number }).status ?? -1);
    assert.equal(await status(), 200);
    // Revoked through the cut-off process: in Redis at once, its record in that process's spool.
    const revoked = await c.admin('DELETE', `/admin/v1/keys/${acct.keyId}`, undefined, c.url('cut-off'));
    assert.equal(revoked.status, 200);
    await c.eventually('the revocation in force', async () => ((await status()) === 401 ? true : undefined));
    // Give its poll time to see the epoch before the loss (250 ms apart).
    await new Promise((r) => setTimeout(r, 600));
    assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0);
    // From the loss on: 503 while the state is lost or rebuilt (and in its restore window), then
    // 401; never 200.
    const seen: number[] = [];
    const first = await c.eventually('an answer other than 503', async () => {
      const s = await status();
      seen.push(s);
      return s === 503 ? undefined : s;
    }, 40_000);
    assert.equal(first, 401, `answers after the loss: ${seen.join(' ')}`);
    for (let i = 0; i < 10; i++) {
      assert.equal(await status(), 401);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    redis.disconnect();
    await close();
  }
});
