// A rebuild generation can never be reused (issue 11 breaker finding 2). The generation lives in
// `P {ledger}gen` on ONE master; it was a counter, so when that master restarted empty the next
// rebuild took "1" again, and a batch stalled since before the loss, holding the old "1",
// passed every check: it applied onto the rebuilt state and moved the partition position past
// events the rebuilt state never got (money lost). Now a generation is `<µs>-<128 random bits>`,
// compared for equality: "the generation I read is still current" cannot hold across a loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import type { UsageEvent } from '@tollgate/events';
import { RedisBalanceStore } from '@tollgate/ledger';
import { testRedisCluster } from '../../../test/support/redis.ts';
import { usageEvent } from '../../../test/support/events.ts';

/** A usage event of `cost` µc (the ledger reads only its id, account and cost). */
const usage = (id: string, account: string, cost: bigint): UsageEvent => usageEvent(id, account, { cost_micros: cost.toString() });
const at = (offset: bigint) => ({ topic: 'usage', partition: 0, offset });

test('Redis Cluster: a rebuild after the {ledger} master lost its keys takes a new generation; a batch stalled before answers not_ready and nothing is skipped (700,000 µc)', async (t) => {
  const own = await testRedisCluster(t, 'gen');
  if (!own) return;
  const { cluster, prefix } = own;
  const store = new RedisBalanceStore({ redis: cluster, prefix });
  const A = `a-${randomUUID()}`;
  const snapshot0 = { balances: new Map([[A, 1_000_000n]]), ledgerEntries: new Map(), positions: new Map([['usage:0', -1n]]), usageIds: [], eventAccounts: new Map() };
  await store.load(snapshot0);
  const first = await cluster.get(`${prefix}{ledger}gen`);
  assert.match(first!, /^\d{16}-[0-9a-f]{32}$/);
  const ev = [0n, 1n, 2n].map((o) => usage(`u${o}-${A}`, A, 100_000n));
  assert.deepEqual((await store.applyBatch([{ event: ev[0]!, position: at(0n) }, { event: ev[1]!, position: at(1n) }])).map((o) => o.verdict), ['applied', 'applied']);

  // The consumer's next batch (@2) has read the generation and position 1, and stalls before its
  // account call (the real script runs once resumed).
  const c = cluster as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const original = c['tollgateLedgerApplyBatch']!.bind(cluster);
  let resume!: () => void;
  const paused = new Promise<void>((r) => { resume = r; });
  let reached!: () => void;
  const atPause = new Promise<void>((r) => { reached = r; });
  c['tollgateLedgerApplyBatch'] = async (...args: unknown[]) => { reached(); await paused; return original(...args); };
  const stale = store.applyBatch([{ event: ev[2]!, position: at(2n) }]);
  await atPause;
  c['tollgateLedgerApplyBatch'] = original;

  // The master holding {ledger} restarts empty: its {ledger}* keys are gone.
  for (const k of ['gen', 'ready', 'pos', 'layout']) await cluster.del(`${prefix}{ledger}${k}`);
  // The operator rebuilds from the warehouse, which has none of @0..@2 yet.
  await store.load(snapshot0);
  const second = await cluster.get(`${prefix}{ledger}gen`);
  assert.notEqual(second, first);
  resume();
  assert.deepEqual((await stale).map((o) => o.verdict), ['not_ready']);
  assert.equal(await store.position('usage', 0), -1n);

  // The consumer replays @0..@2 onto the rebuilt state: each debits once (the ids applied
  // before the rebuild do not count: they vouch for effects it discarded).
  assert.deepEqual((await store.applyBatch(ev.map((event, o) => ({ event, position: at(BigInt(o)) })))).map((o) => o.verdict), ['applied', 'applied', 'applied']);
  assert.equal((await store.get(A)).balance, 700_000n);
  assert.equal(await store.position('usage', 0), 2n);
  assert.equal(await store.ready(), true);
});
