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
import { RedisBalanceStore, RESTORE_POLL_MS } from '@tollgate/ledger';
import { HoldRegistry } from '@tollgate/gateway';
import { createChdbClickHouse, Warehouse } from '@tollgate/warehouse';
import { rebuild, RebuildLogUnavailableError, reconcile } from '@tollgate/aggregator';
import { requireRedis } from '../../../test/support/services.ts';
import { deleteKeysUnder } from '../../../test/support/redis.ts';

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
    await deleteKeysUnder(redis, prefix);
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

test('a manual rebuild while the ledger group is behind the warehouse is taken as of the ledger\'s positions: the events in between are applied by the ledger, which closes their holds (none left to expire, available exact)', async (t) => {
  // Kind: a rebuild of a live state at positions past what the ledger applied. The events in
  // between were in the loaded balances, the ledger resumed past them, and their holds were never
  // closed: available read that much lower until HOLD_TTL_MS (false 402s meanwhile).
  const e = await engines(t);
  if (!e) return;
  const { warehouse, balances, keys } = e;
  await warehouse.insertLedger([grant], [{ partition: 0, offset: 0n }]);
  await warehouse.insertUsage([usage('u1', '300')], [{ partition: 1, offset: 0n }]);
  assert.deepEqual((await rebuild({ warehouse, balances, keys })).positions, { 'usage:1': '0', 'ledger:0': '0' });
  // Two requests held and settled (50 and 25 µc); the warehouse stores their usage, the ledger
  // group has not applied it yet.
  for (const [id, cost] of [['u2', 50n], ['u3', 25n]] as const) {
    assert.equal((await balances.hold({ holdId: id, accountId: 'acct_r', keyId: 'key_r', amount: 1_000n, ttlMs: 3_600_000 })).ok, true);
    await balances.settle(id, 'acct_r', cost, 3_600_000);
  }
  await warehouse.insertUsage([usage('u2', '50'), usage('u3', '25')], [{ partition: 1, offset: 1n }, { partition: 1, offset: 2n }]);
  assert.deepEqual(await balances.get('acct_r'), { balance: 999_700n, held: 75n, available: 999_625n });
  const report = await rebuild({ warehouse, balances, keys });
  assert.deepEqual([report.ledger_behind, report.positions], [true, { 'usage:1': '0', 'ledger:0': '0' }]);
  assert.deepEqual(await balances.get('acct_r'), { balance: 999_700n, held: 75n, available: 999_625n });
  // The ledger goes on from where it was: each event debits once and closes its hold.
  const at = (offset: bigint) => ({ topic: 'usage', partition: 1, offset });
  assert.equal(await balances.applyUsage(usage('u2', '50'), at(1n)), 'applied');
  assert.equal(await balances.applyUsage(usage('u3', '25'), at(2n)), 'applied');
  assert.deepEqual(await balances.get('acct_r'), { balance: 999_625n, held: 0n, available: 999_625n });
  // Caught up: the next rebuild is the warehouse's own, and changes nothing.
  const again = await rebuild({ warehouse, balances, keys });
  assert.deepEqual([again.ledger_behind, again.positions], [false, { 'usage:1': '2', 'ledger:0': '0' }]);
  assert.deepEqual(await balances.get('acct_r'), { balance: 999_625n, held: 0n, available: 999_625n });
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

test('a rebuild waits for the warehouse to hold what is on the log (logEnd) before it reads: the events past its positions are in the rebuilt balance, not left to a replay after gateways admit again', async (t) => {
  // Kind (a tester's HIGH): a warehouse behind the log at the rebuild turned hot state ready at
  // its positions, and requests admitted before the ledger's replay landed spent a limit and a
  // prepaid balance past their bounds (−762,000 µc with no overdraft).
  const e = await engines(t);
  if (!e) return;
  const { warehouse, balances, keys } = e;
  await warehouse.insertLedger([grant], [{ partition: 0, offset: 0n }]);
  await warehouse.insertUsage([usage('c1', '300')], [{ partition: 1, offset: 0n }]);
  // The log already holds usage/1@1 and @2, which the warehouse group stores 400 ms from now.
  const end = { usage: new Map([[1, 2n]]), ledger: new Map([[0, 0n]]) };
  const late = setTimeout(() => {
    void warehouse.insertUsage([usage('c2', '50'), usage('c3', '7')], [{ partition: 1, offset: 1n }, { partition: 1, offset: 2n }]);
  }, 400);
  t.after(() => clearTimeout(late));
  const report = await rebuild({ warehouse, balances, keys, logEnd: async () => end });
  assert.equal(report.warehouse_caught_up, true);
  assert.deepEqual(report.positions, { 'usage:1': '2', 'ledger:0': '0' });
  assert.equal((await balances.get('acct_r')).balance, 1_000_000n - 300n - 50n - 7n);
  // Windows too: the key's lifetime spend holds all three.
  assert.equal(await balances.windowUsed('key_total', 'acct_r', 'key_r'), 357n);

  // A warehouse that does not get there within the wait: read as it is, and said so.
  const behind = await rebuild({ warehouse, balances, keys, logEnd: async () => ({ usage: new Map([[1, 9n]]), ledger: new Map() }) }, { catchUpMs: 300 });
  assert.equal(behind.warehouse_caught_up, false);
  assert.deepEqual(behind.positions, { 'usage:1': '2', 'ledger:0': '0' });
  // Without a durable log there is nothing to wait for.
  assert.equal((await rebuild({ warehouse, balances, keys })).warehouse_caught_up, null);
});

test('a rebuild whose log cannot say where it ends (Kafka away) refuses and leaves hot state lost: gateways keep failing closed rather than admit against a warehouse that may be behind', async (t) => {
  // Kind (a tester's HIGH): with Kafka stopped the rebuild read a lagging warehouse as it was,
  // and every limit and prepaid balance of the test was overspent by ~1.2 credits.
  const e = await engines(t);
  if (!e) return;
  const { warehouse, balances, keys } = e;
  await warehouse.insertLedger([grant], [{ partition: 0, offset: 0n }]);
  await assert.rejects(rebuild({ warehouse, balances, keys, logEnd: async () => undefined }), RebuildLogUnavailableError);
  assert.equal(await balances.ready(), false);
  assert.deepEqual(await balances.hold({ holdId: 'h', accountId: 'acct_r', keyId: 'key_r', amount: 1n, ttlMs: 60_000 }), { ok: false, reason: 'not_ready', available: 0n });
  // Once the log answers, the rebuild goes through.
  const report = await rebuild({ warehouse, balances, keys, logEnd: async () => ({ usage: new Map(), ledger: new Map([[0, 0n]]) }) });
  assert.equal(report.warehouse_caught_up, true);
  assert.equal((await balances.get('acct_r')).balance, 1_000_000n);
});

test('a loss rebuilt sooner than a gateway\'s next epoch poll: the rebuild loads only once every gateway has seen the state lost, so the hold in flight gets its restore window and nothing is admitted past it', async (t) => {
  const e = await engines(t);
  if (!e) return;
  const { redis, prefix, warehouse, balances, keys } = e;
  await warehouse.insertLedger([grant], [{ partition: 0, offset: 0n }]);
  await rebuild({ warehouse, balances, keys });
  // A gateway: its registry reads the epoch every RESTORE_POLL_MS (driven here, so that its last
  // read is just before the loss, the case a fast rebuild slipped through).
  const restored: number[] = [];
  const registry = new HoldRegistry(balances, { pollMs: 3_600_000, onRestored: (r) => restored.push(r.restored) });
  let polls: NodeJS.Timeout | undefined;
  t.after(() => { clearInterval(polls); registry.stop(); });
  await registry.poll();
  assert.equal((await balances.hold({ holdId: 'r1', accountId: 'acct_r', keyId: 'key_r', amount: 600_000n, ttlMs: 60_000 })).ok, true);
  registry.held('r1', 'acct_r', 'key_r', Date.now(), 600_000n, 60_000);
  await deleteKeysUnder(redis, prefix); // Redis restarted empty
  polls = setInterval(() => void registry.poll(), RESTORE_POLL_MS);
  // The ledger noticed at once and the rebuild runs now (on this small warehouse it reads and
  // loads in well under a poll).
  await rebuild({ warehouse, balances, keys });
  assert.equal(await redis.exists(`${prefix}ledger-ready:restoring`), 1, 'the load found the gateway\'s announcement: a restore window');
  // Another gateway's request of 500,000 µc in the window: not admitted (the 600,000 µc in flight
  // would leave only 400,000 µc).
  assert.deepEqual(await balances.hold({ holdId: 'other', accountId: 'acct_r', keyId: 'key_r', amount: 500_000n, ttlMs: 60_000 }), { ok: false, reason: 'not_ready', available: 0n });
  // The gateway restores its hold at its next poll; after the window the request is refused on money.
  for (let i = 0; i < 100 && restored.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(restored, [1]);
  for (let i = 0; i < 200 && (await redis.exists(`${prefix}ledger-ready:restoring`)) === 1; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await balances.get('acct_r'), { balance: 1_000_000n, held: 600_000n, available: 400_000n });
  assert.deepEqual(await balances.hold({ holdId: 'other', accountId: 'acct_r', keyId: 'key_r', amount: 500_000n, ttlMs: 60_000 }), { ok: false, reason: 'insufficient_credits', available: 400_000n, required: 500_000n });
});
