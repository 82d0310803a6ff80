// Rebuild and reconcile against the real engines (Redis, chDB): the rebuilt state is exact as
// of the warehouse's log positions, later events apply once, earlier ones (and producer-side
// duplicates of them at new offsets) not again, and a consumer ahead of the snapshot is told
// to rewind.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { LedgerEvent, UsageEvent } from '@tollgate/events';
import { RedisKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore } from '@tollgate/ledger';
import { createChdbClickHouse, Warehouse } from '@tollgate/warehouse';
import { rebuild, reconcile } from '@tollgate/aggregator';
import { requireRedis } from '../../../test/support/services.ts';

const usage = (id: string, cost: string): UsageEvent => ({
  type: 'usage', event_id: id, ts: Date.now(), account_id: 'acct_r', key_id: 'key_r', model: 'm', catalog_model: 'm',
  upstream_model: 'm', input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0,
  cache_write_1h_tokens: 0, cost_micros: cost, status: 'ok', http_status: 200, latency_ms: 1, ttft_ms: 1, stream: false,
  upstream_request_id: null, gateway_id: 'g',
});
const grant: LedgerEvent = { type: 'ledger', event_id: 'credit:acct_r:start', ts: Date.now(), account_id: 'acct_r', kind: 'grant', amount_micros: '1000000', reference: 'start' };

/**
 * Redis (its keys under a fresh prefix, removed after the test), a migrated chDB warehouse in a
 * temporary directory and the hot state's stores on them; undefined when Redis is absent (the
 * test then reports itself skipped).
 */
async function engines(t: TestContext) {
  const url = await requireRedis(t);
  if (!url) return undefined;
  const redis = new Redis(url);
  const prefix = `test:${randomUUID()}:`;
  const warehouse = new Warehouse({ client: createChdbClickHouse({ path: mkdtempSync(join(tmpdir(), 'tollgate-rb-')) }) });
  t.after(async () => {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    redis.disconnect();
    await warehouse.close();
  });
  await warehouse.migrate();
  return { redis, prefix, warehouse, balances: new RedisBalanceStore({ redis, prefix, requireReady: true }), keys: new RedisKeyDirectory({ redis, prefix }) };
}

test('rebuild from the warehouse as of its positions; later events once, earlier ones never again', async (t) => {
  const e = await engines(t);
  if (!e) return;
  const { redis, prefix, warehouse, balances, keys } = e;

  // The warehouse holds: the grant at ledger/0@0, usage u1 at usage/1@0 and u2 at usage/1@1.
  await warehouse.insertLedger([grant], [{ partition: 0, offset: 0n }]);
  await warehouse.insertUsage([usage('u1', '300'), usage('u2', '50')], [{ partition: 1, offset: 0n }, { partition: 1, offset: 1n }]);

  assert.equal(await balances.ready(), false);
  const report = await rebuild({ warehouse, balances, keys });
  assert.deepEqual(report.positions, { 'usage:1': '1', 'ledger:0': '0' });
  assert.equal(report.usage_ids, 2);
  assert.equal(await balances.ready(), true);
  assert.equal((await balances.get('acct_r')).balance, 1_000_000n - 350n);

  const at = (offset: bigint) => ({ topic: 'usage', partition: 1, offset });
  // Redelivery of what the snapshot holds: nothing happens.
  assert.equal(await balances.applyUsage(usage('u2', '50'), at(1n)), 'duplicate');
  // A spool re-send of u1 that Kafka stored again at a new offset: recognised by id.
  assert.equal(await balances.applyUsage(usage('u1', '300'), at(2n)), 'duplicate');
  // A consumer that is ahead of the snapshot is told to rewind, and nothing is applied.
  assert.equal(await balances.applyUsage(usage('u9', '7'), at(9n)), 'gap');
  // The next event after the snapshot applies once.
  assert.equal(await balances.applyUsage(usage('u3', '25'), at(3n)), 'applied');
  assert.equal((await balances.get('acct_r')).balance, 1_000_000n - 375n);

  // The warehouse catches up with u3; hot state and warehouse agree to the micro-credit.
  await warehouse.insertUsage([usage('u3', '25')], [{ partition: 1, offset: 3n }]);
  const rec = await reconcile({ warehouse, balances }, { timeoutMs: 5000 });
  assert.deepEqual(rec.differences, []);
  assert.equal(rec.ok, true);

  // A difference is found and named.
  await redis.incrby(`${prefix}bal:{acct_r}`, 5);
  const bad = await reconcile({ warehouse, balances }, { timeoutMs: 5000 });
  assert.equal(bad.ok, false);
  assert.deepEqual(bad.differences, [{ account_id: 'acct_r', hot_state_micros: '999630', warehouse_micros: '999625', difference_micros: '5' }]);
});

test('reconcile with the warehouse ahead of hot state past a copy of an applied event (a producer retry stored at a new offset) finds no difference', async (t) => {
  // Kind: the warehouse's balance as of the hot state's positions dropped an event whose later
  // copy lay past them (the bound applied after FINAL kept the newest copy): reconcile named a
  // difference of the event's whole cost that did not exist, and a rebuild from such a
  // snapshot kept the event's id as applied but not its charge.
  const e = await engines(t);
  if (!e) return;
  const { warehouse, balances, keys } = e;
  await warehouse.insertLedger([grant], [{ partition: 0, offset: 0n }]);
  const u1 = usage('u1', '300'); // one event: its copy is the same JSON, the same ts
  await warehouse.insertUsage([u1, usage('u2', '50')], [{ partition: 1, offset: 0n }, { partition: 1, offset: 1n }]);
  await rebuild({ warehouse, balances, keys });
  // The warehouse group stores the copy of u1 at usage/1@2 before the ledger group reaches it.
  await warehouse.insertUsage([u1], [{ partition: 1, offset: 2n }]);
  const rec = await reconcile({ warehouse, balances }, { timeoutMs: 5000 });
  assert.deepEqual(rec.differences, []);
  assert.equal(rec.ok, true);
  // 1,000,000 − 300 − 50 on both sides; the copy, once the ledger reaches it, changes nothing.
  assert.equal((await balances.get('acct_r')).balance, 999_650n);
  assert.equal(await balances.applyUsage(u1, { topic: 'usage', partition: 1, offset: 2n }), 'duplicate');
  assert.deepEqual((await reconcile({ warehouse, balances }, { timeoutMs: 5000 })).differences, []);
});

test('reconcile while the ledger group is behind copies that ClickHouse already merged (only the newest copy left, past hot state\'s positions): no difference once hot state catches up, and a real one is still named', async (t) => {
  // Kind: a passing difference from merged copies. After OPTIMIZE … FINAL only the copies of u1
  // (usage/1@2) and of the grant (ledger/0@1) remain, both past hot state's positions (usage/1@1,
  // ledger/0@0), so the warehouse as of those positions leaves them out: 1,000,000 − 50 = 999,950
  // less the grant = −50 against hot state's 999,650. Reconcile looks again once hot state holds
  // what the warehouse holds, and the difference is gone; a real one (5 µc) stays.
  const e = await engines(t);
  if (!e) return;
  const { redis, prefix, warehouse, balances, keys } = e;
  await warehouse.insertLedger([grant], [{ partition: 0, offset: 0n }]);
  const u1 = usage('u1', '300');
  await warehouse.insertUsage([u1, usage('u2', '50')], [{ partition: 1, offset: 0n }, { partition: 1, offset: 1n }]);
  await rebuild({ warehouse, balances, keys });
  await warehouse.insertUsage([u1], [{ partition: 1, offset: 2n }]);
  await warehouse.insertLedger([grant], [{ partition: 0, offset: 1n }]);
  for (const table of [warehouse.tables.usage, warehouse.tables.ledger]) await warehouse.command(`OPTIMIZE TABLE ${table} FINAL`);
  assert.equal((await warehouse.balancesAt({ usage: new Map([[1, 1n]]), ledger: new Map([[0, 0n]]) })).get('acct_r'), -50n);
  // The ledger group reaches the copies (duplicates) while reconcile waits.
  const catchUp = (async () => {
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await balances.applyUsage(u1, { topic: 'usage', partition: 1, offset: 2n }), 'duplicate');
    assert.equal(await balances.applyLedger(grant, { topic: 'ledger', partition: 0, offset: 1n }), 'duplicate');
  })();
  const rec = await reconcile({ warehouse, balances }, { timeoutMs: 10_000 });
  await catchUp;
  assert.deepEqual(rec.differences, []);
  assert.equal(rec.ok, true);
  assert.equal((await balances.get('acct_r')).balance, 999_650n);
  await redis.incrby(`${prefix}bal:{acct_r}`, 5);
  const bad = await reconcile({ warehouse, balances }, { timeoutMs: 5000 });
  assert.deepEqual(bad.differences, [{ account_id: 'acct_r', hot_state_micros: '999655', warehouse_micros: '999650', difference_micros: '5' }]);
});

test('a rebuild whose reads straddle a merge of an event\'s copies reads again until they agree: the event is charged once', async (t) => {
  // Kind: the rebuild's reads as of one snapshot seeing different parts. The copy of u1 lands
  // at usage/1@2 right after the rebuild read the positions (usage/1@1), and ClickHouse merges
  // it with the first copy between the balance read and the ids read (forced here: the ids read
  // waits for the balance read, then OPTIMIZE … FINAL). The balance read still counted u1 (its
  // copy at @0), the ids read no longer sees it, so the replay of u1@2 would be applied on top:
  // 1,000,000 − 300 − 50 − 300. Read again until two reads agree, both leave u1 out, and its
  // replay charges it once: 999,650.
  const e = await engines(t);
  if (!e) return;
  const { warehouse: base, balances, keys } = e;
  const u1 = usage('u1', '300');
  let balanceRead: () => void = () => {};
  const balanceDone = new Promise<void>((r) => { balanceRead = r; });
  let copied = false;
  let merged = false;
  const warehouse = new Proxy(base, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (name === 'logPositions') {
        return async () => {
          const at = await target.logPositions();
          if (!copied) { copied = true; await target.insertUsage([u1], [{ partition: 1, offset: 2n }]); }
          return at;
        };
      }
      if (name === 'balancesAt') return async (...a: Parameters<Warehouse['balancesAt']>) => { try { return await target.balancesAt(...a); } finally { balanceRead(); } };
      if (name === 'usageIdsAt') {
        return async (...a: Parameters<Warehouse['usageIdsAt']>) => {
          if (!merged) { merged = true; await balanceDone; await target.command(`OPTIMIZE TABLE ${target.tables.usage} FINAL`); }
          return target.usageIdsAt(...a);
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
  await base.insertLedger([grant], [{ partition: 0, offset: 0n }]);
  await base.insertUsage([u1, usage('u2', '50')], [{ partition: 1, offset: 0n }, { partition: 1, offset: 1n }]);
  const report = await rebuild({ warehouse, balances, keys });
  assert.deepEqual([copied, merged], [true, true]);
  assert.deepEqual(report.positions, { 'usage:1': '1', 'ledger:0': '0' });
  assert.equal((await balances.get('acct_r')).balance, 999_950n); // u1 left out, u2 in
  assert.equal(await balances.applyUsage(u1, { topic: 'usage', partition: 1, offset: 2n }), 'applied');
  assert.equal((await balances.get('acct_r')).balance, 999_650n);
  assert.deepEqual((await reconcile({ warehouse: base, balances }, { timeoutMs: 5000 })).differences, []);
});
