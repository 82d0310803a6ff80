// applyBatch's wire encoding (issue 11, ledger consumer CPU): each event goes to apply-batch.lua
// as ONE packed argument (`packEvent`: byte lengths for the event id and account id), and on a
// standalone Redis the script derives the event's keys itself from the prefix. Pinned here on
// hostile values: ids and accounts holding the old separators, spaces, digits that look like
// lengths, braces, a NUL byte and multi-byte UTF-8; amounts at the 64-bit edges. The keys the
// script derives must be exactly the ones the request path uses (a hold made by `hold` is
// closed by the usage), and the balances are checked exactly in µc, on a plain Redis and, when
// one runs, on the Redis Cluster layout (which keeps declaring its keys).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import type { LedgerEvent, UsageEvent } from '@tollgate/events';
import { RedisBalanceStore } from '@tollgate/ledger';
import { packEvent } from '../src/redis-balance-store.ts';
import { requireRedis, requireRedisCluster } from '../../../test/support/services.ts';
import { usageEvent } from '../../../test/support/events.ts';

/** A usage event of `cost` µc (the ledger reads only its id, account and cost). */
const usage = (id: string, account: string, cost: bigint): UsageEvent => usageEvent(id, account, { cost_micros: cost.toString() });
function credit(eventId: string, accountId: string, amount: bigint): LedgerEvent {
  return { type: 'ledger', event_id: eventId, ts: Date.now(), account_id: accountId, kind: 'grant', amount_micros: amount.toString(), reference: eventId };
}
const at = (offset: bigint) => ({ topic: 'usage', partition: 3, offset });

const INT64_MAX = 2n ** 63n - 1n;
const MAX_MONEY = 2n ** 53n - 1n;

test('batch encoding: packEvent is type+amount(+ledger kind), offset, UTF-8 byte lengths of id and account, ts and key length (usage), then id, account, key and position field', () => {
  const u = (event_id: string, key_id = 'k 1', ts = 1_764_800_000_123) => ({ type: 'usage' as const, event_id, key_id, ts });
  assert.equal(packEvent(u('req 1'), '7000', 'acct|9', at(42n)), 'u7000 42 5 6 1764800000123 3 req 1acct|9k 1usage:3');
  // 'é' is 2 bytes and '🚀' 4 in UTF-8: the lengths count bytes, as Lua's string.sub does.
  assert.equal(packEvent({ type: 'ledger', event_id: 'é', kind: 'adjustment' }, '-5', '🚀', undefined), 'l-5adjustment  2 4  0 é🚀');
  assert.equal(packEvent({ type: 'ledger', event_id: 'g', kind: 'top_up' }, '5', 'a', at(1n)), 'l5top_up 1 1 1  0 gausage:3');
  assert.equal(packEvent(u('', '🚀 9', 0), INT64_MAX.toString(), '3 4 ', at(0n)), `u${INT64_MAX} 0 0 4 0 6 3 4 🚀 9usage:3`);
  // A ts the decoder would have refused is refused here too, before anything is sent.
  assert.throws(() => packEvent(u('x', 'k', 1.5), '1', 'a', undefined), /usage ts must be a non-negative integer/);
});

/**
 * The same scenario on either layout: a credit near the money bound, usages that close holds
 * made by `hold`, one debit of 2^63 − 1 and one that overflows (failed, nothing written), then
 * the whole batch redelivered (all duplicates). Returns nothing; asserts exact µc.
 */
async function hostileScenario(store: RedisBalanceStore, accounts: { a: string; b: string }, ids: string[]): Promise<void> {
  const { a, b } = accounts;
  const [holdA, holdB, grant, big, over] = ids as [string, string, string, string, string];
  const grants = [{ event: credit(grant, a, MAX_MONEY), position: at(0n) }];
  assert.deepEqual(await store.applyBatch(grants), [{ verdict: 'applied' }]);
  assert.equal((await store.hold({ holdId: holdA, accountId: a, keyId: 'k', amount: 9_000n, ttlMs: 60_000 })).ok, true);
  assert.equal((await store.hold({ holdId: holdB, accountId: b, keyId: 'k', amount: 1n, ttlMs: 60_000 })).ok, false);
  assert.deepEqual(await store.get(a), { balance: MAX_MONEY, held: 9_000n, available: MAX_MONEY - 9_000n });
  const batch = [
    { event: usage(holdA, a, 7_000n), position: at(1n) },
    { event: usage(big, b, INT64_MAX), position: at(2n) },
  ];
  assert.deepEqual(await store.applyBatch(batch, { balanceAfter: true }), [
    { verdict: 'applied', balanceAfter: MAX_MONEY - 7_000n },
    { verdict: 'applied', balanceAfter: -INT64_MAX },
  ]);
  // The usage closed the hold `hold` made: the script's derived keys are the request path's.
  assert.deepEqual(await store.get(a), { balance: MAX_MONEY - 7_000n, held: 0n, available: MAX_MONEY - 7_000n });
  assert.deepEqual(await store.get(b), { balance: -INT64_MAX, held: 0n, available: -INT64_MAX });

  // −(2^63 − 1) − 2 does not fit in 64 bits: that event fails, nothing of it is written.
  const tail = [{ event: usage(over, b, 2n), position: at(3n) }];
  const [failed] = await store.applyBatch(tail);
  assert.equal(failed!.verdict, 'failed');
  assert.match(failed!.error!.message, /overflow/);
  assert.deepEqual(await store.get(b), { balance: -INT64_MAX, held: 0n, available: -INT64_MAX });

  // Both batches redelivered: every event a duplicate, the balances exactly as they were.
  assert.deepEqual((await store.applyBatch([...grants, ...batch])).map((o) => o.verdict), ['duplicate', 'duplicate', 'duplicate']);
  const balances = await store.balances();
  assert.equal(balances.get(a), MAX_MONEY - 7_000n);
  assert.equal(balances.get(b), -INT64_MAX);
}

test('batch encoding (standalone layout): hostile ids and accounts, 64-bit amounts, exact balances in µc, keys where the request path has them', async (t) => {
  const url = await requireRedis(t);
  if (!url) return;
  const redis = new Redis(url);
  const prefix = `test:pack:${randomUUID()}:`;
  t.after(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });
  const store = new RedisBalanceStore({ redis, prefix });
  // Separators of the old and of other encodings, digits and spaces shaped like the length
  // fields, braces, a NUL byte, multi-byte UTF-8.
  const a = 'acct|1 2 3 {x}:é\u0000';
  const b = '7 7 7 🚀 l-1 ';
  const ids = ['u5 5 5 |req|', 'req\nwith newline', `credit:${a}:ref 1`, '0 0 0 ', 'ü|over'];
  await hostileScenario(store, { a, b }, ids);
  // Exactly the keys the request path names (nothing else was derived), with exact values.
  assert.equal(await redis.get(`${prefix}bal:{${a}}`), (MAX_MONEY - 7_000n).toString());
  assert.equal(await redis.get(`${prefix}bal:{${b}}`), (-INT64_MAX).toString());
  assert.equal(await redis.exists(`${prefix}u:${ids[0]}`, `${prefix}u:${ids[3]}`, `${prefix}u:${ids[4]}`), 2);
  assert.equal(await redis.hget(`${prefix}ledger`, ids[2]!), `${MAX_MONEY} grant`);
  assert.equal(await redis.hget(`${prefix}ledger-pos`, 'usage:3'), '2');
  assert.deepEqual((await redis.smembers(`${prefix}ledger-accounts`)).sort(), [a, b].sort());
});

test('batch encoding (Cluster layout, keys declared): hostile ids and accounts, 64-bit amounts, exact balances in µc', async (t) => {
  const nodes = await requireRedisCluster(t);
  if (!nodes) return;
  const cluster = new Cluster(nodes.split(',').map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) })),
    { redisOptions: { maxRetriesPerRequest: 2 } });
  const prefix = `test:pack-cluster:${randomUUID()}:`;
  t.after(async () => {
    for (const node of cluster.nodes('master')) {
      const keys = await node.keys(`${prefix}*`);
      for (const key of keys) await node.del(key);
    }
    cluster.disconnect();
  });
  const store = new RedisBalanceStore({ redis: cluster, prefix });
  await store.load({ balances: new Map(), ledgerEntries: new Map() });
  // No braces here: on a Cluster the account id is the hash tag itself.
  const a = 'acct|1 2 3 :é\u0000';
  const b = '7 7 7 🚀 l-1 ';
  await hostileScenario(store, { a, b }, ['u5 5 5 |req|', 'req\nwith newline', `credit:${a}:ref 1`, '0 0 0 ', 'ü|over']);
});
