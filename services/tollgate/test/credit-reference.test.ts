// A credit reference names one entry (amount and kind) for good, also while the ledger is behind:
// a request whose claim would have lapsed before its event was applied must not let another
// entry publish under the same event id (the ledger applies the first, the warehouse kept the
// last: money split between them, and a rebuild moved the balance). The control API over a real
// balance store (memory, and Redis when there) and the in-process log, with the ledger consumer
// started only later, as a ledger that was down or behind.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { Redis } from 'ioredis';
import { MemoryLog, type LedgerEvent } from '@tollgate/events';
import { MemoryKeyDirectory, RedisKeyDirectory, type KeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore, RedisBalanceStore, type BalanceStore } from '@tollgate/ledger';
import { loadCatalogFile } from '@tollgate/pricing';
import { buildControl } from '@tollgate/control';
import { startLedgerConsumer } from '@tollgate/aggregator';
import { requireRedis } from '../../../test/support/services.ts';

const TOKEN = 'admin-token-for-credit-reference';
// Long enough that a loaded machine's claim → publish → keep fits in it, short for the test.
const CLAIM_TTL_MS = 1_000;

async function scenario(t: TestContext, balances: BalanceStore, keys: KeyDirectory): Promise<void> {
  const log = new MemoryLog();
  const published: LedgerEvent[] = [];
  const publish = log.publish.bind(log);
  log.publish = async (topic, events) => {
    for (const { event } of events) if (event.type === 'ledger') published.push(event);
    return publish(topic, events);
  };
  const app = buildControl({
    keys, balances, log, adminToken: TOKEN, keyHashSecret: 'k'.repeat(32),
    catalog: loadCatalogFile(resolve(import.meta.dirname, '../../../libs/pricing/catalogs/cny.json')),
    applyTimeoutMs: 20, claimTtlMs: CLAIM_TTL_MS,
  });
  t.after(() => app.close());
  const call = async (method: 'GET' | 'POST', path: string, payload?: object) => {
    const r = await app.inject({ method, url: path, headers: { authorization: `Bearer ${TOKEN}` }, ...(payload ? { payload } : {}) });
    return { status: r.statusCode, json: r.json() as { error?: { message: string }; duplicate?: boolean; pending?: boolean; balance_micro_credits?: string } };
  };
  const id = ((await call('POST', '/admin/v1/accounts', { name: 'refs' })).json as unknown as { id: string }).id;
  const credits = `/admin/v1/accounts/${id}/credits`;

  // The ledger is not consuming: the first request publishes and answers 202 pending.
  const first = await call('POST', credits, { credits: '5', reference: 'inv-1' });
  assert.deepEqual([first.status, first.json.duplicate, first.json.pending], [202, false, true]);
  await new Promise((r) => setTimeout(r, CLAIM_TTL_MS * 1.5)); // its claim's ttl is long past
  // Another kind, another amount: refused, nothing published; the same entry: a pending duplicate.
  const refund = await call('POST', credits, { credits: '5', kind: 'refund', reference: 'inv-1' });
  assert.deepEqual([refund.status, refund.json.error?.message], [409, 'reference inv-1 was already used for 5 credits (kind grant)']);
  const more = await call('POST', credits, { credits: '7', reference: 'inv-1' });
  assert.deepEqual([more.status, more.json.error?.message], [409, 'reference inv-1 was already used for 5 credits (kind grant)']);
  const again = await call('POST', credits, { credits: '5', kind: 'grant', reference: 'inv-1' });
  assert.deepEqual([again.status, again.json.duplicate, again.json.pending], [202, true, true]);
  assert.deepEqual(published.map((e) => [e.event_id, e.kind, e.amount_micros]), [[`credit:${id}:inv-1`, 'grant', '5000000']]);

  // The ledger catches up: exactly the one entry is credited, and the reference keeps naming it.
  const ledger = await startLedgerConsumer({ log, balances, keys });
  t.after(() => ledger.stop());
  await log.drain();
  assert.equal((await balances.get(id)).balance, 5_000_000n);
  const after = await call('POST', credits, { credits: '5', kind: 'refund', reference: 'inv-1' });
  assert.equal(after.status, 409);
  const done = await call('POST', credits, { credits: '5', reference: 'inv-1' });
  assert.deepEqual([done.status, done.json.duplicate, done.json.pending, done.json.balance_micro_credits], [200, true, false, '5000000']);
}

test('credit reference claim outlives its published event: after the claim ttl, another kind or amount is 409 and nothing else is published (memory store)', async (t) => {
  await scenario(t, new MemoryBalanceStore(), new MemoryKeyDirectory());
});

test('credit reference claim outlives its published event: after the claim ttl, another kind or amount is 409 and nothing else is published (Redis)', async (t) => {
  const url = await requireRedis(t);
  if (url === undefined) return;
  const redis = new Redis(url);
  const prefix = `test:credit-ref:${randomUUID()}:`;
  t.after(async () => {
    const left = await redis.keys(`${prefix}*`);
    if (left.length > 0) await redis.del(...left);
    redis.disconnect();
  });
  const balances = new RedisBalanceStore({ redis, prefix });
  await balances.load({ balances: new Map(), ledgerEntries: new Map() });
  await scenario(t, balances, new RedisKeyDirectory({ redis, prefix }));
  // The published claim has no expiry left (PERSIST).
  const claims = await redis.keys(`${prefix}claim:*`);
  assert.equal(claims.length, 1);
  assert.equal(await redis.pttl(claims[0]!), -1);
});
