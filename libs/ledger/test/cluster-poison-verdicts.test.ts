// The same per-event verdicts in both layouts after a poison event in the middle of a batch
// (issue 11 breaker finding 4). Batch [A usage @0, B grant @1 (out of range: poison), A usage
// @2]. Standalone stops at @1, and after the quarantine answers `applied` (balance 100 µc) for
// @2. On a Cluster A's one call already applied @2 with @0 (accounts run in parallel); its
// answer, past the stop, was thrown away, so the retry answered `duplicate`, and the ledger
// consumer, which acts on `applied` usage only, never reported it (no balance.low alert).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { MAX_MONEY_MICROS, type LedgerEvent, type UsageEvent } from '@tollgate/events';
import { RedisBalanceStore, type BatchOutcome } from '@tollgate/ledger';
import { requireRedis } from '../../../test/support/services.ts';
import { usageEvent } from '../../../test/support/events.ts';
import { testRedisCluster } from '../../../test/support/redis.ts';
import calculateSlot from 'cluster-key-slot';

/** A usage event of `cost` µc (the ledger reads only its id, account and cost). */
const usage = (id: string, account: string, cost: bigint): UsageEvent => usageEvent(id, account, { cost_micros: cost.toString() });
const grant = (id: string, a: string, amount: bigint): LedgerEvent => ({
  type: 'ledger', event_id: id, ts: Date.now(), account_id: a, kind: 'grant', amount_micros: amount.toString(), reference: id,
});
const at = (offset: bigint) => ({ topic: 'usage', partition: 0, offset });
const brief = (o: BatchOutcome[]) => o.map((x) => `${x.verdict}${x.balanceAfter !== undefined ? `:${x.balanceAfter}` : ''}`);

/** The answers of the first attempt, of the retry after the quarantine, and of a second retry. */
async function poisonInTheMiddle(store: RedisBalanceStore): Promise<string[][]> {
  const A = `a-${randomUUID()}`, B = `b-${randomUUID()}`, C = `c-${randomUUID()}`;
  await store.load({ balances: new Map([[A, 1000n], [B, MAX_MONEY_MICROS - 5n], [C, 50n]]), ledgerEntries: new Map(), positions: new Map([['usage:0', -1n]]), usageIds: [], eventAccounts: new Map() });
  const items = [
    { event: usage(`u0-${A}`, A, 100n), position: at(0n) },
    { event: grant(`g1-${B}`, B, 10n), position: at(1n) },
    { event: usage(`u2-${A}`, A, 800n), position: at(2n) },
    { event: usage(`u3-${C}`, C, 20n), position: at(3n) },
  ];
  const first = brief(await store.applyBatch(items, { balanceAfter: true }));
  assert.equal(await store.quarantine({ event_id: `g1-${B}`, topic: 'usage', partition: 0, offset: 1n, kind: 'apply_failed', reason: 'balance_out_of_range' }, at(1n), B), 'applied');
  const second = brief(await store.applyBatch(items.slice(2), { balanceAfter: true }));
  const third = brief(await store.applyBatch(items.slice(2), { balanceAfter: true }));
  // Money is exact in both layouts.
  assert.deepEqual([(await store.get(A)).balance, (await store.get(B)).balance, (await store.get(C)).balance], [100n, MAX_MONEY_MICROS - 5n, 30n]);
  assert.equal(await store.position('usage', 0), 3n);
  return [first, second, third];
}

const expected = [['applied:900', 'out_of_range'], ['applied:100', 'applied:30'], ['duplicate', 'duplicate']];

test('standalone Redis: after a poison in the middle of a batch, the events after it are answered applied with the balance they left', async (t) => {
  const url = await requireRedis(t);
  if (!url) return;
  const redis = new Redis(url);
  const prefix = `test:poison:${randomUUID()}:`;
  t.after(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });
  assert.deepEqual(await poisonInTheMiddle(new RedisBalanceStore({ redis, prefix, requireReady: true })), expected);
});

test('Redis Cluster: after a poison in the middle of a batch, the same per-event verdicts as standalone (applied:100, then duplicate)', async (t) => {
  const own = await testRedisCluster(t, 'poison');
  if (!own) return;
  const { cluster, prefix } = own;
  assert.deepEqual(await poisonInTheMiddle(new RedisBalanceStore({ redis: cluster, prefix })), expected);
});

test('Redis Cluster: one account\'s call of a batch fails as a whole (a reply error): the other accounts\' events it applied are answered applied, with their balance, on the retry', async (t) => {
  const own = await testRedisCluster(t, 'onefails');
  if (!own) return;
  const { cluster, prefix } = own;
  const store = new RedisBalanceStore({ redis: cluster, prefix });
  const A = `a-${randomUUID()}`, B = `b-${randomUUID()}`;
  await store.load({ balances: new Map([[A, 1000n], [B, 500n]]), ledgerEntries: new Map(), positions: new Map([['usage:0', -1n]]), usageIds: [], eventAccounts: new Map() });
  // A's slot's ready marker made a hash: A's call fails before it applies anything (its GET of
  // the marker is a WRONGTYPE reply error, outside any event's pcall), B's call runs.
  const slot = calculateSlot(`${prefix}bal:{${A}}`);
  let marker: string | undefined;
  for (const node of cluster.nodes('master')) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}ready:*`, 'COUNT', 2000);
      cursor = next;
      marker ??= keys.find((k) => calculateSlot(k) === slot);
    } while (cursor !== '0' && marker === undefined);
  }
  assert.ok(marker, `the ready marker of slot ${slot}`);
  const generation = await cluster.get(marker);
  await cluster.del(marker);
  await cluster.hset(marker, 'x', '1');
  const items = [
    { event: usage(`u0-${A}`, A, 100n), position: at(0n) },
    { event: usage(`u1-${B}`, B, 40n), position: at(1n) },
  ];
  await assert.rejects(store.applyBatch(items, { balanceAfter: true }), /WRONGTYPE/);
  assert.deepEqual([(await store.get(A)).balance, (await store.get(B)).balance], [1000n, 460n]);
  await cluster.del(marker);
  await cluster.set(marker, generation!);
  // Before: B answered `duplicate` (its account's position had it), so its balance.low check never ran.
  assert.deepEqual(brief(await store.applyBatch(items, { balanceAfter: true })), ['applied:900', 'applied:460']);
  assert.deepEqual(brief(await store.applyBatch(items, { balanceAfter: true })), ['duplicate', 'duplicate']);
  assert.deepEqual([(await store.get(A)).balance, (await store.get(B)).balance, await store.position('usage', 0)], [900n, 460n, 1n]);
});
