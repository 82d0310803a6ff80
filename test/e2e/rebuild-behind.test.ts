// Hot state rebuilt behind what the ledger group already handled: the warehouse had not stored
// the latest grants yet (its inserts lag by WAREHOUSE_FLUSH_MS) when Redis lost everything and the
// aggregator was killed. The rebuild is exact as of the warehouse's positions; the ledger group's
// committed offsets are past the missing grants. With no further traffic, each partition must
// still be read again from the position stored with the effects, so every grant answered 201
// comes back to the µc (a tester saw all six balances at 0, and reconcile said ok).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { emptyPrefix, startCluster, type Cluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

async function balance(c: Cluster, accountId: string): Promise<bigint> {
  const v = await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${accountId}`);
  return BigInt(v.json.balance_micro_credits);
}

test('rebuild behind the ledger group (warehouse lagging, aggregator killed, Redis emptied): with no traffic every granted credit comes back, exact', async (t) => {
  const started = await startCluster([
    // The warehouse inserts at most every 4 s, so the grants below are not in it yet at the kill.
    ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse', WAREHOUSE_FLUSH_MS: '4000' } }],
    ['control', { roles: 'control' }],
  ]);
  if (!started) { t.skip(NEEDS_KAFKA_AND_REDIS); return; }
  const { cluster: c, close } = started;
  const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await c.allReady('agg', 'control');
    // Let the warehouse's first (startup) insert window pass, then grant: the next insert is 4 s away.
    await new Promise((r) => setTimeout(r, 4500));
    const accounts: string[] = [];
    for (let i = 0; i < 6; i++) {
      const a = await c.admin<{ id: string }>('POST', '/admin/v1/accounts', { name: `behind-${i}` });
      accounts.push(a.json.id);
    }
    const grants = await Promise.all(accounts.map((id, i) =>
      c.admin('POST', `/admin/v1/accounts/${id}/credits`, { credits: String(i + 1), reference: `g-${i}` })));
    // 201 applied, or 202 pending when the ledger took longer than control waits (a loaded machine)
    assert.ok(grants.every((g) => g.status === 201 || g.status === 202), grants.map((g) => g.status).join(','));
    // The ledger applied them and commits its offsets within 250 ms; then everything is lost.
    await new Promise((r) => setTimeout(r, 800));
    await c.kill('agg');
    assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0, 'the prefix had keys to lose');
    await c.start('agg');
    await c.eventually('agg ready', async () => ((await fetch(`${c.url('agg')}/ready`)).ok ? true : undefined));
    // No request from here on: the ledger group reads each partition again from the rebuilt
    // positions by itself.
    for (const [i, id] of accounts.entries()) {
      const want = BigInt(i + 1) * 1_000_000n;
      await c.eventually(`balance of account ${i} back to ${want} µc`, async () => ((await balance(c, id)) === want ? true : undefined), 30_000);
    }
    const rec = await c.eventually('reconcile ok', async () => {
      const r = await c.admin<{ ok: boolean; differences: unknown[] }>('GET', '/ops/v1/reconcile?timeout_ms=10000', undefined, c.url('agg'));
      return r.status === 200 ? r.json : undefined;
    });
    assert.deepEqual([rec.ok, rec.differences], [true, []]);
    // Retrying a grant is a duplicate, not a second credit.
    const again = await c.admin<{ duplicate: boolean; balance_micro_credits: string }>('POST', `/admin/v1/accounts/${accounts[5]}/credits`, { credits: '6', reference: 'g-5' });
    assert.deepEqual([again.status, again.json.duplicate, again.json.balance_micro_credits], [200, true, '6000000']);
  } finally {
    redis.disconnect();
    await close();
  }
});
