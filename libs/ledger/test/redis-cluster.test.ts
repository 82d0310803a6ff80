// The ledger's scripts on a REAL Redis Cluster (issue 11, outcome 5): every script the store has
// (hold, settle, extend, release, get, the apply scripts, quarantine, claimReference, load,
// snapshot, positions, expire-holds, the slot markers per node) runs through RedisBalanceStore
// on an ioredis `Cluster` client, with accounts on different nodes. Redis Cluster refuses a script whose keys are in
// more than one slot (CROSSSLOT) or on another node, so a script that crosses slots fails here;
// the balances are checked exactly (µc). Needs `bash deploy/redis-cluster.sh start`
// (REDIS_CLUSTER_NODES); skips loudly without it, fails under TOLLGATE_REQUIRE_SERVICES=1.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import { MAX_MONEY_MICROS, type LedgerEvent, type UsageEvent } from '@tollgate/events';
import { RebuildSupersededError, RedisBalanceStore } from '@tollgate/ledger';
import { findRedisCluster, NEEDS_REDIS, requireRedisCluster } from '../../../test/support/services.ts';
import { deleteClusterKeysUnder, testRedisCluster } from '../../../test/support/redis.ts';
import { balanceStoreContract } from './balance-store.contract.ts';
import { admissionContract } from './admission.contract.ts';

function usage(eventId: string, accountId: string, cost: bigint): UsageEvent {
  return {
    type: 'usage', event_id: eventId, ts: Date.now(), account_id: accountId, key_id: `k-${accountId}`, model: 'm', catalog_model: 'm',
    upstream_model: 'm', input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0,
    cache_write_1h_tokens: 0, cost_micros: cost.toString(), status: 'ok', http_status: 200, latency_ms: 1, ttft_ms: null,
    stream: false, upstream_request_id: null, gateway_id: 'g',
  };
}
function credit(eventId: string, accountId: string, amount: bigint): LedgerEvent {
  return { type: 'ledger', event_id: eventId, ts: Date.now(), account_id: accountId, kind: 'grant', amount_micros: amount.toString(), reference: eventId };
}
const at = (offset: bigint, partition = 0) => ({ topic: 'usage', partition, offset });

/** The master serving each slot (CLUSTER SLOTS), as `host:port`. */
async function slotOwners(cluster: Cluster): Promise<(slot: number) => string> {
  const ranges = (await cluster.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
  return (slot) => {
    const r = ranges.find(([from, to]) => slot >= from && slot <= to)!;
    return `${r[2][0]}:${r[2][1]}`;
  };
}

const CLIENT_OPTIONS = { redisOptions: { maxRetriesPerRequest: 2 } };

function connect(nodes: string): Cluster {
  return new Cluster(nodes.split(',').map((hp) => {
    const [host, port] = hp.split(':');
    return { host: host!, port: Number(port) };
  }), CLIENT_OPTIONS);
}

const found = await findRedisCluster();
if (found !== undefined) {
  // The whole BalanceStore contract (and the admission one) in the Cluster layout on the real
  // cluster: each case starts from a rebuild (load) of an empty state, as a Cluster store must.
  const shared = connect(found);
  const fresh = async (now?: () => number) => {
    const prefix = `test:cluster:${randomUUID()}:`;
    const store = new RedisBalanceStore({ redis: shared, prefix, ...(now ? { now } : {}) });
    await store.load({ balances: new Map(), ledgerEntries: new Map() });
    return { store, cleanup: () => deleteClusterKeysUnder(shared, prefix) };
  };
  balanceStoreContract('redis cluster', () => fresh());
  admissionContract('redis cluster', (now) => fresh(now));
  test.after(() => shared.disconnect());
}

test('Redis Cluster: every ledger script runs on a real 3-master cluster, accounts on different nodes, exact balances and exactly once', async (t) => {
  const own = await testRedisCluster(t, 'cluster', CLIENT_OPTIONS);
  if (!own) return;
  const { cluster, prefix } = own;
  const store = new RedisBalanceStore({ redis: cluster, prefix });
  const owner = await slotOwners(cluster);
  // Three accounts on three different nodes (found by slot, checked below).
  const pick = (n: string) => owner(calculateSlot(`${prefix}bal:{${n}}`));
  const names = Array.from({ length: 200 }, (_, i) => `acct-${i}`);
  const [A, B, C] = [...new Map(names.map((n) => [pick(n), n])).values()] as [string, string, string];
  assert.equal(new Set([A, B, C].map(pick)).size, 3, 'the accounts live on three different masters');
  // Every master is recent enough for the scripts (asked of each: INFO server).
  assert.equal(await store.serverProblem(), undefined);
  const CLOSE = 'billing-close-lock';
  const reason = 'balance_out_of_range: test';

  // 1. Old-layout keys (standalone names) do not make a Cluster store ready: it answers
  //    not_ready until a rebuild (load) wrote its own layout.
  await cluster.set(`${prefix}ledger-ready`, '1');
  assert.equal(await store.ready(), false);
  assert.deepEqual(await store.hold({ holdId: 'h0', accountId: A, keyId: 'k', amount: 1n, ttlMs: 60_000 }), { ok: false, reason: 'not_ready', available: 0n });
  assert.deepEqual(await store.applyBatch([{ event: usage('u0', A, 1n), position: at(0n) }]), [{ verdict: 'not_ready' }]);
  assert.equal(await store.applyUsage(usage('u0', A, 1n), at(0n)), 'not_ready');

  // 2. load (rebuild): balances, ledger entries and usage ids in their accounts' slots.
  await store.load({
    balances: new Map([[A, 1_000_000n], [B, 2_000_000n], [C, 0n]]),
    ledgerEntries: new Map([[`credit:${A}:r0`, { amount: 1_000_000n, kind: 'grant' as const }]]),
    usageIds: ['u-old'],
    eventAccounts: new Map([[`credit:${A}:r0`, A], ['u-old', B]]),
    positions: new Map([['usage:0', 9n]]),
  });
  assert.equal(await store.ready(), true);
  assert.equal(await store.position('usage', 0), 9n);
  assert.deepEqual(await store.ledgerEntry(`credit:${A}:r0`, A), { amount: 1_000_000n, kind: 'grant' });

  // 3. The request path: hold (five windows, clamp), extend, settle, release, get.
  const windows = [
    { name: 'key_hourly' as const, limit: 500_000n }, { name: 'key_daily' as const, limit: 900_000n },
    { name: 'key_total' as const, limit: 950_000n }, { name: 'account_daily' as const, limit: 990_000n },
    { name: 'account_monthly' as const, limit: 999_000n },
  ];
  const admission = { policy: 'clamp' as const, base: 100n, segments: [{ perOutputToken: 10n, tokens: null }], maxTokens: 1000, floorTokens: 1 };
  assert.deepEqual(await store.hold({ holdId: 'h1', accountId: A, keyId: 'kA', amount: 10_100n, ttlMs: 60_000, windows, admission }),
    { ok: true, available: 989_900n, amount: 10_100n, maxTokens: 1000 });
  assert.deepEqual(await store.hold({ holdId: 'h2', accountId: B, keyId: 'kB', amount: 500n, ttlMs: 60_000 }), { ok: true, available: 1_999_500n, amount: 500n });
  await store.extend('h1', A, 60_000);
  await store.settle('h1', A, 7_000n, 60_000);
  await store.release('h2', B);
  assert.deepEqual(await store.get(A), { balance: 1_000_000n, held: 7_000n, available: 993_000n });
  assert.deepEqual(await store.get(B), { balance: 2_000_000n, held: 0n, available: 2_000_000n });
  assert.equal(await store.windowUsed('key_hourly', A, 'kA'), 7_000n);
  // expire-holds: a hold past its ttl stops counting on the next read.
  assert.equal((await store.hold({ holdId: 'h3', accountId: C, keyId: 'kC', amount: 0n, ttlMs: 1, overdraft: 1_000n })).ok, true);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await store.get(C), { balance: 0n, held: 0n, available: 0n });

  // 4. A batch of one partition over three accounts (three nodes), balances after each debit.
  const batch = [
    { event: usage('h1', A, 7_000n), position: at(10n) },
    { event: credit(`credit:${B}:r1`, B, 5_000n), position: at(11n) },
    { event: usage('uc', C, 300n), position: at(12n) },
    { event: usage('u-old', B, 40n), position: at(13n) }, // applied before the rebuild: by id
    { event: usage('ua2', A, 200n), position: at(14n) },
  ];
  assert.deepEqual(await store.applyBatch(batch, { balanceAfter: true }), [
    { verdict: 'applied', balanceAfter: 993_000n }, { verdict: 'applied' }, { verdict: 'applied', balanceAfter: -300n },
    { verdict: 'duplicate' }, { verdict: 'applied', balanceAfter: 992_800n },
  ]);
  assert.equal(await store.position('usage', 0), 14n);
  assert.deepEqual(await store.get(A), { balance: 992_800n, held: 0n, available: 992_800n });
  assert.equal(await store.windowUsed('key_hourly', A, 'kA'), 7_000n);

  // 5. A crash after the account calls and before the partition advance: the position is
  //    behind the effects; the replay is all duplicates (each account's own position).
  await cluster.hset(`${prefix}{ledger}pos`, 'usage:0', '9');
  assert.deepEqual((await store.applyBatch(batch)).map((o) => o.verdict), ['duplicate', 'duplicate', 'duplicate', 'duplicate', 'duplicate']);
  assert.equal(await store.position('usage', 0), 14n);
  assert.equal(await store.applyUsage(usage('uc', C, 300n), at(12n)), 'duplicate'); // at or before the partition position
  assert.equal(await store.applyUsage(usage('ux', C, 1n), at(16n)), 'gap');
  assert.equal(await store.applyLedger(credit(`credit:${B}:r2`, B, 1_000n), at(15n)), 'applied');

  // 6. out_of_range stops the batch at that event; another account's later event may already
  //    be in (its own position): the caller's retry of it is answered `applied`, as standalone
  //    would (the store kept that answer), and debited once (balances in step 9).
  assert.deepEqual(await store.applyBatch([
    { event: credit(`credit:${A}:big`, A, MAX_MONEY_MICROS), position: at(16n) },
    { event: usage('ub', B, 100n), position: at(17n) },
  ]), [{ verdict: 'out_of_range' }]);
  assert.equal(await store.position('usage', 0), 15n);
  assert.equal(await store.quarantine({ event_id: `credit:${A}:big`, topic: 'usage', partition: 0, offset: 16n, kind: 'apply_failed', reason }, at(16n), A), 'applied');
  assert.equal(await store.quarantine({ event_id: `credit:${A}:big`, topic: 'usage', partition: 0, offset: 16n, kind: 'apply_failed', reason }, at(16n), A), 'duplicate');
  assert.deepEqual((await store.applyBatch([{ event: usage('ub', B, 100n), position: at(17n) }])).map((o) => o.verdict), ['applied']);
  assert.deepEqual((await store.applyBatch([{ event: usage('ub', B, 100n), position: at(17n) }])).map((o) => o.verdict), ['duplicate']);
  assert.equal(await store.position('usage', 0), 17n);
  assert.equal(await store.quarantineReason(`credit:${A}:big`, A), reason);
  assert.deepEqual(await store.claimReference(`credit:${A}:big`, { amount: 5n, kind: 'grant' }, 60_000, A), { claimed: false, refused: reason });
  assert.equal(await store.waitApplied(`credit:${A}:big`, 1_000, A), false);
  assert.equal((await store.quarantined()).length, 1);

  // 7. References: claim, release, apply, then answered from the ledger entry.
  const r3 = `credit:${B}:r3`;
  assert.deepEqual(await store.claimReference(r3, { amount: 700n, kind: 'grant' }, 60_000, B), { claimed: true });
  assert.deepEqual(await store.claimReference(r3, { amount: 700n, kind: 'grant' }, 60_000, B), { claimed: false, entry: { amount: 700n, kind: 'grant' } });
  await store.releaseReference(r3, B);
  assert.deepEqual(await store.claimReference(r3, { amount: 700n, kind: 'grant' }, 60_000, B), { claimed: true });
  assert.equal(await store.applyLedger(credit(r3, B, 700n), at(18n)), 'applied');
  assert.deepEqual(await store.ledgerEntry(r3, B), { amount: 700n, kind: 'grant' });
  assert.equal(await store.waitApplied(r3, 1_000, B), true);
  assert.equal(await store.waitApplied('ub', 1_000, B), true);
  assert.deepEqual(await store.claimReference(r3, { amount: 900n, kind: 'grant' }, 60_000, B), { claimed: false, entry: { amount: 700n, kind: 'grant' } });
  // A lock (the billing close's) lives in the store-wide slot.
  assert.equal(await store.acquireLock(CLOSE, 60_000), true);
  assert.equal(await store.acquireLock(CLOSE, 60_000), false);
  await store.releaseLock(CLOSE);
  assert.equal(await store.acquireLock(CLOSE, 60_000), true);

  // 8. Control records: the position check and advance only.
  assert.equal(await store.checkPosition({ topic: 'control', partition: 1, offset: 0n }), 'applied');
  await store.advancePosition({ topic: 'control', partition: 1, offset: 0n });
  assert.equal(await store.checkPosition({ topic: 'control', partition: 1, offset: 0n }), 'duplicate');

  // 9. snapshot and balances: every account, exact.
  const expected = new Map([[A, 992_800n], [B, 2_000_000n + 5_000n + 1_000n - 100n + 700n], [C, -300n]]);
  assert.deepEqual(await store.balances(), expected);
  const snap = await store.snapshot();
  assert.deepEqual(snap, { ready: true, balances: expected, positions: new Map([['usage:0', 18n], ['control:1', 0n]]) });

  // storedPositions: the partition positions and the store-wide mark, in one read of the {ledger} slot.
  assert.deepEqual(await store.storedPositions(), new Map([['usage:0', 18n], ['control:1', 0n]]));

  // 10. A second rebuild at an earlier position replaces balances and every account's own
  //     positions: the event after it is applied again onto the rebuilt balance, exactly once.
  await store.load({ balances: new Map([[A, 1_000n]]), ledgerEntries: new Map(), positions: new Map([['usage:0', 4n]]) });
  assert.equal(await store.position('usage', 0), 4n);
  assert.deepEqual((await store.applyBatch([{ event: usage('h1', A, 7_000n), position: at(10n) }])).map((o) => o.verdict), ['gap']);
  assert.deepEqual((await store.applyBatch([{ event: usage('re5', A, 10n), position: at(5n) }])).map((o) => o.verdict), ['applied']);
  assert.deepEqual(await store.balances(), new Map([[A, 990n]]));
  await assert.rejects(store.load({ balances: new Map(), ledgerEntries: new Map([['x', { amount: 1n }]]) }), /no account in snapshot.eventAccounts/);

  // 11. One master restarts empty (simulated: its keys of this store deleted): its slots lose
  //     their ready markers with their balances. ready() says so; its accounts answer
  //     not_ready (never "no credit"); the other nodes' accounts go on.
  await store.load({ balances: new Map([[A, 1_000n], [B, 1_000n]]), ledgerEntries: new Map(), positions: new Map() });
  await deleteClusterKeysUnder(cluster, prefix, pick(A));
  assert.equal(await store.ready(), false);
  assert.deepEqual(await store.hold({ holdId: 'h9', accountId: A, keyId: 'k', amount: 1n, ttlMs: 60_000 }), { ok: false, reason: 'not_ready', available: 0n });
  assert.equal((await store.hold({ holdId: 'h9', accountId: B, keyId: 'k', amount: 1n, ttlMs: 60_000 })).ok, true);
});

test('Redis Cluster: two overlapping rebuilds never mix their snapshots: the state is one of them whole, positions included', async (t) => {
  const own = await testRedisCluster(t, 'cluster', CLIENT_OPTIONS);
  if (!own) return;
  const { cluster, prefix } = own;
  const accounts = Array.from({ length: 60 }, (_, i) => `acct-${i}`);
  const snap = (n: bigint) => ({
    balances: new Map(accounts.map((a, i) => [a, n * 1_000n + BigInt(i)])),
    ledgerEntries: new Map(accounts.map((a) => [`credit:${a}:${n}`, { amount: n, kind: 'grant' as const }])),
    eventAccounts: new Map(accounts.map((a) => [`credit:${a}:${n}`, a])),
    positions: new Map([['usage:0', n]]),
  });
  // Two processes (two stores, one client each) rebuilding at once, three times.
  const other = cluster.duplicate();
  t.after(() => other.disconnect());
  const one = new RedisBalanceStore({ redis: cluster, prefix });
  const two = new RedisBalanceStore({ redis: other, prefix });
  for (let round = 0; round < 3; round++) {
    const results = await Promise.allSettled([one.load(snap(1n)), two.load(snap(2n))]);
    const failed = results.filter((r) => r.status === 'rejected');
    for (const f of failed) {
      assert.match(String((f as PromiseRejectedResult).reason), /another rebuild started meanwhile/);
      assert.ok((f as PromiseRejectedResult).reason instanceof RebuildSupersededError);
    }
    assert.ok(failed.length <= 1, 'at most the earlier rebuild gives up');
    assert.equal(await one.ready(), true);
    const position = await one.position('usage', 0);
    const won = snap(position);
    assert.deepEqual(await one.balances(), won.balances, `round ${round}: the balances of snapshot ${position} exactly`);
    for (const a of accounts) {
      assert.deepEqual(await one.ledgerEntry(`credit:${a}:${position}`, a), { amount: position, kind: 'grant' });
      assert.equal(await one.ledgerEntry(`credit:${a}:${3n - position}`, a), undefined);
    }
  }
});

test('Redis Cluster: the 16,384 slot markers go in one script call per node (ready() and a rebuild send none one by one); a stale slot map, as during a resharding, sends one per slot for the node it names wrongly only, with the same answers', async (t) => {
  const own = await testRedisCluster(t, 'markers', CLIENT_OPTIONS);
  if (!own) return;
  const { cluster, prefix } = own;
  const store = new RedisBalanceStore({ redis: cluster, prefix });
  // The marker commands the Cluster client sends one slot at a time: a GET of a marker, or
  // cluster-load-put.lua with the marker as both of its keys (mark, ready). The per-node
  // script goes through each node's own connection, not this one.
  let oneByOne = 0;
  const r = cluster as unknown as { sendCommand: (c: { name: string; args: unknown[] }, ...rest: unknown[]) => unknown };
  const send = r.sendCommand.bind(cluster);
  r.sendCommand = (command, ...rest) => {
    const a = command.args.map(String);
    const isMarker = (k: string | undefined) => k !== undefined && k.startsWith(`${prefix}ready:{`);
    if ((command.name === 'get' && isMarker(a[0])) || (command.name === 'evalsha' && isMarker(a[2]) && a[3] === a[2])) oneByOne++;
    return send(command, ...rest);
  };

  await store.load({ balances: new Map([['acct-a', 1_000n]]), ledgerEntries: new Map() });
  assert.equal(await store.ready(), true);
  assert.equal(oneByOne, 0, 'the rebuild and ready() sent no marker command one slot at a time');

  // A stale map: 100 slots said to be on the master of slot 16,000, which does not serve them.
  const owners = cluster.slots.map((nodes) => nodes[0]);
  const wrong = owners[16_000]!;
  const moved = [...owners.keys()].filter((s) => owners[s] !== wrong).slice(0, 100);
  assert.equal(moved.length, 100);
  const named = owners.filter((o) => o === wrong).length + 100;
  const stale = () => { for (const s of moved) cluster.slots[s] = [wrong]; };
  stale();
  oneByOne = 0;
  assert.equal(await store.ready(), true);
  assert.equal(oneByOne, named, 'every slot the stale map gives that master, one at a time, and no other');
  stale();
  oneByOne = 0;
  await store.load({ balances: new Map([['acct-a', 2_500n]]), ledgerEntries: new Map() });
  assert.ok(oneByOne >= named, `the rebuild's mark pass went one slot at a time for that master (${oneByOne})`);
  assert.equal(await store.ready(), true);
  assert.deepEqual(await store.get('acct-a'), { balance: 2_500n, held: 0n, available: 2_500n });

  // Another process's rebuild finishes between ready()'s read of the generation and its read
  // of the markers (held here until it has): every marker then holds the newer generation,
  // and the answer is still true, not a false that would start one more rebuild.
  const other = cluster.duplicate();
  t.after(() => other.disconnect());
  const rebuilder = new RedisBalanceStore({ redis: other, prefix });
  const first = cluster.nodes('master')[0]!;
  const check = first.evalsha_ro.bind(first);
  let held = false;
  (first as unknown as { evalsha_ro: (...a: unknown[]) => Promise<unknown> }).evalsha_ro = async (...a: unknown[]) => {
    if (!held) {
      held = true;
      await rebuilder.load({ balances: new Map([['acct-a', 3_000n]]), ledgerEntries: new Map() });
    }
    return (check as (...x: unknown[]) => Promise<unknown>)(...a);
  };
  const before = await cluster.get(`${prefix}{ledger}ready`);
  assert.equal(await store.ready(), true);
  assert.ok(held, 'the rebuild ran inside ready()');
  assert.notEqual(await cluster.get(`${prefix}{ledger}ready`), before, 'a new generation');
  assert.deepEqual(await store.get('acct-a'), { balance: 3_000n, held: 0n, available: 3_000n });

  // One marker lost (a slot whose node restarted empty loses it): not ready, and only that
  // slot was read again one at a time.
  // (asked of every master: only the one serving slot 5 has keys in it, whatever the map says)
  const inSlot = (await Promise.all(cluster.nodes('master').map((n) => n.cluster('GETKEYSINSLOT', 5, 1000) as Promise<string[]>))).flat();
  const lost = inSlot.filter((k) => k.startsWith(`${prefix}ready:{`));
  assert.equal(lost.length, 1, 'slot 5 has one marker of this store');
  // cluster-load-put.lua's 'ready' is done already where the marker holds its generation (a pass
  // repeated after a per-node call failed part way), and refused to any other rebuild.
  const gen = (await cluster.get(`${prefix}{ledger}ready`))!;
  const put = (cluster as unknown as { tollgateLedgerClusterLoadPut: (...a: string[]) => Promise<number> }).tollgateLedgerClusterLoadPut.bind(cluster);
  assert.equal(await put(lost[0]!, lost[0]!, `L${gen}`, 'ready', gen), 1);
  assert.equal(await put(lost[0]!, lost[0]!, 'L0000000000000001-00', 'ready', '0000000000000001-00'), 0);
  assert.equal(await cluster.get(lost[0]!), gen);
  await cluster.del(lost[0]!);
  oneByOne = 0;
  assert.equal(await store.ready(), false);
  assert.equal(oneByOne, 1);
});

test('Redis Cluster: restore window after a rebuild a restorer was announced for: every slot holds new holds back for the window, restores go through; the epoch is the generation', async (t) => {
  const own = await testRedisCluster(t, 'cluster', CLIENT_OPTIONS);
  if (!own) return;
  const { cluster, prefix } = own;
  // A window a loaded machine's round trips fit in (600 ms did not always).
  const store = new RedisBalanceStore({ redis: cluster, prefix, restoreWindowMs: 3_000 });
  // the same state as a control process reads it (stateLost answers only where a rebuild is required)
  const reader = new RedisBalanceStore({ redis: cluster, prefix, restoreWindowMs: 3_000, requireReady: true });
  assert.equal(await store.epoch(), null);
  await store.load({ balances: new Map([['a', 10_000n], ['b', 10_000n]]), ledgerEntries: new Map() });
  const first = await store.epoch();
  assert.equal(first, await cluster.get(`${prefix}{ledger}ready`));
  const hold = (holdId: string, accountId: string) => store.hold({ holdId, accountId, keyId: 'k', amount: 100n, ttlMs: 60_000 });
  assert.equal((await hold('h1', 'a')).ok, true, 'no restorer announced: admitted at once');
  assert.equal(await reader.stateLost(), false, 'no restorer announced: no window for readers either');
  assert.equal(await store.epoch(5_000), first, 'not lost: the epoch, and no announcement');
  assert.equal(await cluster.exists(`${prefix}{ledger}ready:restorers`), 0);
  await cluster.del(`${prefix}{ledger}ready`);
  assert.equal(await store.epoch(5_000, 'ctl-1'), null, 'lost: announced in the same step');
  assert.equal(await cluster.exists(`${prefix}{ledger}ready:restorers`), 1);
  assert.deepEqual(await cluster.smembers(`${prefix}{ledger}ready:record-restorers`), ['ctl-1']);
  await store.load({ balances: new Map([['a', 10_000n], ['b', 10_000n]]), ledgerEntries: new Map() });
  assert.notEqual(await store.epoch(), first);
  assert.equal(await cluster.exists(`${prefix}{ledger}ready:restorers`), 0, 'the load took the announcement');
  assert.deepEqual(await cluster.smembers(`${prefix}{ledger}ready:pending`), ['ctl-1'], 'readers wait for it');
  for (const a of ['a', 'b']) assert.deepEqual(await hold(`h2-${a}`, a), { ok: false, reason: 'not_ready', available: 0n });
  assert.equal(await reader.stateLost(), true, 'in the restore window: not yet a state to read absence from');
  // h1 is still there (the load keeps holds): nothing to restore; a lost one comes back.
  const ts = Date.now();
  assert.equal(await store.restoreHolds([
    { holdId: 'h1', accountId: 'a', keyId: 'k', amount: 100n, ttlMs: 60_000, ts },
    { holdId: 'h0', accountId: 'b', keyId: 'k', amount: 250n, ttlMs: 60_000, ts },
  ]), 1);
  assert.deepEqual([await store.get('a'), await store.get('b')], [
    { balance: 10_000n, held: 100n, available: 9_900n }, { balance: 10_000n, held: 250n, available: 9_750n },
  ]);
  await new Promise((r) => setTimeout(r, 3_050));
  for (const a of ['a', 'b']) assert.equal((await hold(`h2-${a}`, a)).ok, true, 'holds wait the window only');
  assert.equal(await reader.stateLost(), true, 'the window over, but ctl-1 not done');
  await store.restored('ctl-1');
  assert.equal(await reader.stateLost(), false, 'every restorer done');
});

test('Redis Cluster: a control process marked holding unacknowledged records before the loss, stalled since (it never announced), is waited for after the load; one that holds none any more is not', async (t) => {
  const own = await testRedisCluster(t, 'holders', CLIENT_OPTIONS);
  if (!own) return;
  const { cluster, prefix } = own;
  const store = new RedisBalanceStore({ redis: cluster, prefix, restoreWindowMs: 50 });
  const reader = new RedisBalanceStore({ redis: cluster, prefix, restoreWindowMs: 50, requireReady: true });
  await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
  const epoch = await store.epoch();
  assert.equal(await reader.epoch(undefined, 'ctl-1', true), epoch);
  assert.equal(await reader.epoch(undefined, 'ctl-2', true), epoch);
  assert.equal(await reader.epoch(undefined, 'ctl-2', false), epoch);
  assert.deepEqual(await cluster.zrange(`${prefix}{ledger}ready:record-holders`, '0', '-1'), ['ctl-1']);
  assert.equal(await store.ready(), true, 'the watch\'s check remembers ctl-1');
  // a rebuild of the live state waits for nobody
  await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
  assert.equal(await cluster.exists(`${prefix}{ledger}ready:pending`), 0);
  assert.equal(await store.ready(), true, 'seen again');
  await cluster.del(`${prefix}{ledger}ready`);
  assert.equal(await store.ready(), false);
  await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map(), afterLoss: true });
  assert.deepEqual(await cluster.smembers(`${prefix}{ledger}ready:pending`), ['ctl-1'], 'readers wait for it');
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(await reader.stateLost(), true, 'the window over, ctl-1 not done');
  await store.restored('ctl-1');
  assert.equal(await reader.stateLost(), false);
});

test('Redis Cluster with the key directory on its own Redis: an empty directory Redis is a lost state (ready false, stateLost, epoch null and announced) until the next load marks it; then a new epoch and the restore window', async (t) => {
  // Kind (a breaker's MEDIUM): the ledger on REDIS_CLUSTER_NODES, the directory on REDIS_URL.
  // The Cluster's marks said ready while the standalone Redis had restarted empty: every key 401,
  // every account 404, for good, since no rebuild was ever started.
  const own = await clusterWithDirectory(t, 'cluster-directory');
  if (!own) return;
  const { cluster, prefix, directory } = own;
  const store = new RedisBalanceStore({ redis: cluster, prefix, restoreWindowMs: 2_000, directory });
  assert.equal(await store.ready(), false, 'never loaded');
  await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
  const first = await store.epoch();
  assert.equal(typeof first, 'string');
  assert.deepEqual([await store.ready(), await store.stateLost()], [true, false]);
  // The standalone Redis restarts empty: only its mark goes (the Cluster keeps everything).
  assert.equal(await directory.del(`${prefix}directory-ready`), 1);
  assert.deepEqual([await store.ready(), await store.stateLost()], [false, true]);
  assert.equal(await store.epoch(5_000, 'ctl-1'), null, 'lost, and announced');
  assert.deepEqual(await cluster.smembers(`${prefix}{ledger}ready:record-restorers`), ['ctl-1']);
  // The rebuild's load marks it again, in a new generation, with the restore window open.
  await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
  assert.equal(await store.ready(), true);
  assert.notEqual(await store.epoch(), first);
  assert.equal(await store.stateLost(), true, 'in the restore window');
  assert.deepEqual(await store.hold({ holdId: 'h', accountId: 'a', keyId: 'k', amount: 100n, ttlMs: 60_000 }), { ok: false, reason: 'not_ready', available: 0n });
  await new Promise((r) => setTimeout(r, 2_050));
  assert.equal(await store.stateLost(), true, 'the window over, ctl-1 not done');
  await store.restored('ctl-1');
  assert.equal(await store.stateLost(), false);
  assert.equal((await store.hold({ holdId: 'h', accountId: 'a', keyId: 'k', amount: 100n, ttlMs: 60_000 })).ok, true);
});

test('Redis Cluster with the key directory on its own Redis: a rebuild whose mark is gone (the directory\'s Redis lost its data while it ran) loads nothing and marks nothing ready', async (t) => {
  // Kind: a load that marks a flushed Redis ready without the directory the rebuild put back
  // before it (every key 401 until another rebuild; a breaker's MEDIUM). The standalone store's
  // load.lua refuses in its one step (services/aggregator/test/rebuild-on-loss.test.ts).
  const own = await clusterWithDirectory(t, 'cluster-rebuild-mark');
  if (!own) return;
  const { cluster, prefix, directory } = own;
  const store = new RedisBalanceStore({ redis: cluster, prefix, directory });
  await store.markRebuild('r1', 60_000);
  assert.equal(await directory.exists(`${prefix}rebuild-mark:r1`), 1, 'the mark is in the directory\'s Redis');
  assert.equal(await store.rebuildMarked('r1'), true);
  await directory.del(`${prefix}rebuild-mark:r1`); // the directory's Redis restarted empty
  await assert.rejects(store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() }),
    (err: unknown) => err instanceof RebuildSupersededError && /its mark is gone/.test(err.message));
  assert.equal(await store.ready(), false, 'nothing marked ready');
  assert.equal(await directory.exists(`${prefix}directory-ready`), 0);
  await store.unmarkRebuild('r1');
  // The next rebuild, its mark in place, loads.
  await store.markRebuild('r2', 60_000);
  await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
  await store.unmarkRebuild('r2');
  assert.equal(await store.ready(), true);
  assert.deepEqual(await store.get('a'), { balance: 10_000n, held: 0n, available: 10_000n });
  assert.equal(await directory.exists(`${prefix}rebuild-mark:r2`), 0);
});

/**
 * A Cluster (its keys under a fresh prefix) and a standalone Redis as the key directory's, whose
 * keys under that prefix are removed after the test; undefined (reported skipped) without both.
 */
async function clusterWithDirectory(t: TestContext, name: string) {
  const own = await testRedisCluster(t, name, CLIENT_OPTIONS);
  if (!own) return undefined;
  const { Redis } = await import('ioredis');
  const { findRedis } = await import('../../../test/support/services.ts');
  const url = await findRedis();
  if (url === undefined) { t.skip(NEEDS_REDIS); return undefined; }
  const directory = new Redis(url);
  t.after(async () => {
    const keys = await directory.keys(`${own.prefix}*`);
    if (keys.length > 0) await directory.del(...keys);
    directory.disconnect();
  });
  return { ...own, directory };
}
