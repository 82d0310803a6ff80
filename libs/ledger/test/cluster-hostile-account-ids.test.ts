// Hash tags built from untrusted text (issue 11 breaker finding 3). On Redis Cluster every key
// of an account carries the hash tag `{<account>}`; an id that is empty or starts with `}`
// makes the tag empty, Redis then hashes each whole key, the account's keys land in different
// slots and every multi-key script fails with CROSSSLOT (quarantine of such an invalid event
// stopped its partition for good). Every tag goes through `accountHashTag`: here, on the real
// cluster, EVERY store call that takes an account runs with hostile ids, exact µc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import type { LedgerEvent, UsageEvent } from '@tollgate/events';
import { accountHashTag, RedisBalanceStore } from '@tollgate/ledger';
import { testRedisCluster } from '../../../test/support/redis.ts';
import { usageEvent } from '../../../test/support/events.ts';

/** Empty, brace-led, brace-only, nested, and ids starting with the escape character itself. */
const HOSTILE = ['', '}', '}x', '{', '{}', '}{', 'a}b', '{a}', '\u0001', '\u0001}', 'x{y}z'];

/** A usage event of `cost` µc (the ledger reads only its id, account and cost). */
const usage = (id: string, account: string, cost: bigint): UsageEvent => usageEvent(id, account, { cost_micros: cost.toString() });
const grant = (eventId: string, accountId: string, amount: bigint): LedgerEvent =>
  ({ type: 'ledger', event_id: eventId, ts: Date.now(), account_id: accountId, kind: 'grant', amount_micros: amount.toString(), reference: eventId });

/** Redis' own rule: the text between the first `{` and the first `}` after it, if not empty. */
function redisTag(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

test('accountHashTag: a non-empty Redis tag for any id, one slot for every key of an account, one-to-one, schema-valid ids unchanged', () => {
  const ids = [...HOSTILE, 'acct-1', 'a'.repeat(300), 'ü}{'];
  const seen = new Map<string, string>();
  for (const id of ids) {
    const tag = accountHashTag(id);
    for (const key of [`p:bal:{${tag}}`, `p:u:{${tag}}:evt`, `p:sw:{${tag}}:key_daily:k:k1:0`]) {
      assert.notEqual(redisTag(key), undefined, `key ${JSON.stringify(key)} has an empty hash tag`);
    }
    assert.equal(calculateSlot(`p:u:{${tag}}:evt`), calculateSlot(`p:bal:{${tag}}`), `id ${JSON.stringify(id)}`);
    assert.equal(seen.get(tag), undefined, `ids ${JSON.stringify(seen.get(tag))} and ${JSON.stringify(id)} share tag`);
    seen.set(tag, id);
  }
  // Ids the event schema accepts (no control characters, not empty) keep their keys, braces and all.
  for (const id of ['acct-1', 'a}b', '{a}', 'x{y}z', '{']) assert.equal(accountHashTag(id), id);
  assert.equal(accountHashTag(''), '\u0001');
  assert.equal(accountHashTag('}x'), '\u0001}x');
  assert.equal(accountHashTag('\u0001'), '\u0001\u0001');
});

test('Redis Cluster: every call that takes an account works for hostile account ids (no CROSSSLOT), exact µc', async (t) => {
  const own = await testRedisCluster(t, 'hostile');
  if (!own) return;
  const { cluster, prefix } = own;
  const store = new RedisBalanceStore({ redis: cluster, prefix });
  // load: a balance, a ledger entry and a usage id per hostile account (each in its account's slot).
  const loaded = new Map(HOSTILE.map((a) => [a, 1_000n]));
  await store.load({
    balances: loaded, positions: new Map([['usage:0', -1n]]),
    ledgerEntries: new Map(HOSTILE.map((a, i) => [`old-l${i}`, { amount: 1_000n, kind: 'grant' as const }])),
    usageIds: HOSTILE.map((_, i) => `old-u${i}`),
    eventAccounts: new Map(HOSTILE.flatMap((a, i) => [[`old-l${i}`, a], [`old-u${i}`, a]])),
  });
  assert.deepEqual(await store.balances(), loaded);
  let offset = 0n;
  const at = () => ({ topic: 'usage', partition: 0, offset: offset++ });
  for (const [i, a] of HOSTILE.entries()) {
    const what = `account ${JSON.stringify(a)}`;
    assert.deepEqual(await store.ledgerEntry(`old-l${i}`, a), { amount: 1_000n, kind: 'grant' }, what);
    assert.equal(await store.applyLedger(grant(`old-l${i}`, a, 1_000n), at()), 'duplicate', what);
    assert.equal(await store.applyUsage(usage(`old-u${i}`, a, 1n), at()), 'duplicate', what);
    assert.equal(await store.applyLedger(grant(`g${i}`, a, 500n), at()), 'applied', what);
    // hold with every spend window, extend, settle, then its usage closes it
    const held = await store.hold({
      holdId: `h${i}`, accountId: a, keyId: 'k1', amount: 300n, ttlMs: 60_000,
      windows: [{ name: 'key_hourly', limit: 10_000n }, { name: 'key_daily', limit: 10_000n }, { name: 'key_total', limit: 10_000n },
        { name: 'account_daily', limit: 10_000n }, { name: 'account_monthly', limit: 10_000n }],
    });
    assert.deepEqual(held, { ok: true, available: 1_200n, amount: 300n }, what);
    await store.extend(`h${i}`, a, 120_000);
    await store.settle(`h${i}`, a, 200n, 60_000);
    assert.equal(await store.windowUsed('account_daily', a, 'k1'), 200n, what);
    const [outcome] = await store.applyBatch([{ event: usage(`h${i}`, a, 200n), position: at() }], { balanceAfter: true });
    assert.deepEqual(outcome, { verdict: 'applied', balanceAfter: 1_300n }, what);
    // a second hold released
    assert.equal((await store.hold({ holdId: `r${i}`, accountId: a, keyId: 'k1', amount: 50n, ttlMs: 60_000 })).ok, true, what);
    await store.release(`r${i}`, a);
    assert.deepEqual(await store.get(a), { balance: 1_300n, held: 0n, available: 1_300n }, what);
    assert.equal(await store.waitApplied(`h${i}`, 1_000, a), true, what);
    // reference claims
    assert.deepEqual(await store.claimReference(`c${i}`, { amount: 7n, kind: 'grant' }, 60_000, a), { claimed: true }, what);
    assert.deepEqual(await store.claimReference(`c${i}`, { amount: 7n, kind: 'grant' }, 60_000, a), { claimed: false, entry: { amount: 7n, kind: 'grant' } }, what);
    await store.releaseReference(`c${i}`, a);
    // quarantine of a refused event carrying this account id: recorded in its slot, position moved past it
    const q = at();
    assert.equal(await store.quarantine({ event_id: `bad${i}`, topic: 'usage', partition: 0, offset: q.offset, kind: 'apply_failed', reason: 'account_id' }, q, a), 'applied', what);
    assert.equal(await store.quarantineReason(`bad${i}`, a), 'account_id', what);
    assert.equal(await store.position('usage', 0), q.offset, what);
  }
  assert.deepEqual(await store.balances(), new Map(HOSTILE.map((a) => [a, 1_300n])));
  // one batch across all hostile accounts at once
  const batch = HOSTILE.map((a, i) => ({ event: usage(`b${i}`, a, 300n), position: at() }));
  assert.deepEqual((await store.applyBatch(batch)).map((o) => o.verdict), HOSTILE.map(() => 'applied'));
  assert.deepEqual(await store.balances(), new Map(HOSTILE.map((a) => [a, 1_000n])));
  assert.equal(await store.position('usage', 0), offset - 1n);
});
