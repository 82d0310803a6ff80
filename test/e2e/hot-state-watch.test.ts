// Redis comes back empty and nobody sends a request: the process that owns the warehouse must
// notice by itself and rebuild hot state, so every role's /ready comes back without traffic.
// Both deploy layouts: compose (one aggregator with ledger and warehouse) and Kubernetes
// (ledger and warehouse aggregators in separate processes, so no ledger consumer lives beside
// the warehouse).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { emptyPrefix, newAccount, startCluster, type Cluster, type ProcessSpec } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

const LAYOUTS: Record<string, ReadonlyArray<readonly [string, ProcessSpec]>> = {
  // docker-compose.yml
  compose: [
    ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
    ['control', { roles: 'control' }],
    ['gw', { roles: 'gateway' }],
  ],
  // deploy/kubernetes/base: aggregator-warehouse and aggregator-ledger Deployments
  kubernetes: [
    ['agg-warehouse', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'warehouse' } }],
    ['agg-ledger', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger' } }],
    ['control', { roles: 'control' }],
    ['gw', { roles: 'gateway' }],
  ],
};

async function balance(c: Cluster, accountId: string): Promise<bigint> {
  const v = await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${accountId}`);
  return BigInt(v.json.balance_micro_credits);
}

for (const [layout, processes] of Object.entries(LAYOUTS)) {
  test(`hot state lost with no traffic (${layout} layout): the warehouse owner rebuilds it, every /ready is 200 again, balances exact`, async (t) => {
    const started = await startCluster(processes);
    if (!started) { t.skip(NEEDS_KAFKA_AND_REDIS); return; }
    const { cluster: c, close } = started;
    const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      const names = processes.map(([n]) => n);
      await c.allReady(...names);
      const acct = await newAccount(c, 10); // 10 credits = 10_000_000 µc
      const client = new Anthropic({ apiKey: acct.secret, baseURL: c.url('gw'), maxRetries: 0, logLevel: 'error' });
      const ask = () => client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: '[[sim input=10 output=2]]' }] });
      await ask();
      // haiku-4-5: 10 × 24 + 2 × 120 = 480 µc
      await c.eventually('first request settled', async () => ((await balance(c, acct.accountId)) === 9_999_520n ? true : undefined));
      // Redis restarted empty: every key of this deployment's prefix is gone, in one step.
      assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0, 'the prefix had keys to lose');

      // No request is sent: readiness must come back by itself on every process.
      for (const n of names) {
        const body = await c.eventually(`${n} /ready 200 after the loss`, async () => {
          const res = await fetch(`${c.url(n)}/ready`);
          return res.status === 200 ? res.json() : undefined;
        }, 60_000);
        assert.deepEqual(body, { status: 'ready', reasons: [] }, n);
      }
      assert.equal(await redis.exists(`${c.env.REDIS_PREFIX!}ledger-ready`), 1, 'rebuilt: the ready mark is back');
      // Rebuilt as of the warehouse's own log positions; an event the warehouse had not stored yet
      // (its flush is up to WAREHOUSE_FLUSH_MS behind) is applied by the ledger consumer's replay
      // from there, just after readiness (README "Distributed mode", rebuild): exact, and only once.
      await c.eventually('balance rebuilt exactly', async () => ((await balance(c, acct.accountId)) === 9_999_520n ? true : undefined), 30_000);

      // Paid traffic flows again and settles exactly: 9_999_520 − 480 = 9_999_040 µc. A gateway
      // that still listed the first request (its ack not yet confirmed by an epoch read) asked
      // for the restore window: up to RESTORE_WINDOW_MS of 503 `retry-after`, which a client retries.
      await new Anthropic({ apiKey: acct.secret, baseURL: c.url('gw'), maxRetries: 3, logLevel: 'error' })
        .messages.create({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: '[[sim input=10 output=2]]' }] });
      await c.eventually('second request settled', async () => ((await balance(c, acct.accountId)) === 9_999_040n ? true : undefined));
    } finally {
      redis.disconnect();
      await close();
    }
  });
}
