// Redis Cluster readiness of the ledger's scripts (issue 11, outcome 5). Redis Cluster runs a
// script only when every key in its KEYS[] hashes to one slot (CRC16 of the `{hash tag}`, mod
// 16384). Every script call the store makes is recorded as it goes to Redis (the client's
// command stream, instrumented), and its keys' slots are computed with `cluster-key-slot`, the
// function ioredis' own Cluster client routes by.
//
// Pinned, standalone layout (the default on a plain Redis): the request path (hold with spend
// windows, settle, extend, release, get) keeps each call in ONE slot, the account's. The
// consumer and operator scripts that do not are listed exactly (docs/scaling.md, "Redis
// Cluster"): a new script that crosses slots, or one of these that stops crossing, fails here.
// Pinned, Cluster layout (`cluster: true`, the default on a Cluster client): EVERY script call
// stays in one slot, the account's or the store-wide `{ledger}` one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import type { UsageEvent } from '@tollgate/events';
import { RedisBalanceStore } from '@tollgate/ledger';
import { requireRedis } from '../../../test/support/services.ts';

interface Call { script: string; keys: string[] }

/**
 * Records the name and KEYS[] of every script call: each `tollgateLedger*` method marks which
 * script is being sent, and `sendCommand` reads the keys off the EVALSHA/EVAL it sends
 * (argument 2 is the key count, the keys follow).
 */
function instrument(redis: Redis): Call[] {
  const calls: Call[] = [];
  let current: string | undefined;
  const r = redis as unknown as Record<string, unknown> & { sendCommand: (c: { name: string; args: unknown[] }, ...rest: unknown[]) => unknown };
  for (const name of Object.keys(r).filter((n) => n.startsWith('tollgateLedger') && !n.endsWith('Buffer'))) {
    const original = r[name] as (...a: unknown[]) => unknown;
    r[name] = (...args: unknown[]) => {
      current = name;
      try {
        return original.apply(redis, args);
      } finally {
        current = undefined;
      }
    };
  }
  const send = r.sendCommand.bind(redis);
  r.sendCommand = (command, ...rest) => {
    if ((command.name === 'evalsha' || command.name === 'eval') && current !== undefined) {
      const n = Number(String(command.args[1]));
      calls.push({ script: current, keys: command.args.slice(2, 2 + n).map(String) });
    }
    return send(command, ...rest);
  };
  return calls;
}

const slotsOf = (keys: string[]) => new Set(keys.map((k) => calculateSlot(k)));

function usage(eventId: string, accountId: string, cost: string): UsageEvent {
  return {
    type: 'usage', event_id: eventId, ts: Date.now(), account_id: accountId, key_id: `k-${accountId}`, model: 'm', catalog_model: 'm',
    upstream_model: 'm', input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0,
    cache_write_1h_tokens: 0, cost_micros: cost, status: 'ok', http_status: 200, latency_ms: 1, ttft_ms: null,
    stream: false, upstream_request_id: null, gateway_id: 'g',
  };
}

test('standalone layout: every request-path script call keeps its keys in the one slot of its account; the cross-slot scripts are exactly the documented ones', async (t) => {
  const url = await requireRedis(t);
  if (!url) return;
  const redis = new Redis(url);
  const prefix = `test:slots:${randomUUID()}:`;
  const store = new RedisBalanceStore({ redis, prefix });
  const calls = instrument(redis);
  // Account ids chosen to land in different slots from each other (checked below).
  const accounts = ['acct_alpha', 'acct_beta', 'acct_gamma'];
  try {
    await store.load({ balances: new Map(accounts.map((a) => [a, 1_000_000n])), ledgerEntries: new Map() });
    for (const [i, a] of accounts.entries()) {
      const windows = [
        { name: 'key_hourly' as const, limit: 500_000n }, { name: 'key_daily' as const, limit: 900_000n },
        { name: 'key_total' as const, limit: 950_000n }, { name: 'account_daily' as const, limit: 990_000n },
        { name: 'account_monthly' as const, limit: 999_000n },
      ];
      const admission = { policy: 'clamp' as const, base: 100n, segments: [{ perOutputToken: 10n, tokens: null }], maxTokens: 1000, floorTokens: 1 };
      assert.equal((await store.hold({ holdId: `h1-${a}`, accountId: a, keyId: `k-${a}`, amount: 10_100n, ttlMs: 60_000, windows, admission })).ok, true);
      assert.equal((await store.hold({ holdId: `h2-${a}`, accountId: a, keyId: `k-${a}`, amount: 500n, ttlMs: 60_000 })).ok, true);
      await store.extend(`h1-${a}`, a, 60_000);
      await store.settle(`h1-${a}`, a, 7_000n, 60_000);
      await store.release(`h2-${a}`, a);
      await store.get(a);
      // Consumer side, with positions as the Kafka consumer passes them.
      await store.applyUsage(usage(`h1-${a}`, a, '7000'), { topic: 'usage', partition: i, offset: 0n });
      await store.applyLedger({ type: 'ledger', event_id: `grant-${a}`, ts: Date.now(), account_id: a, kind: 'grant', amount_micros: '5000', reference: `r-${a}` },
        { topic: 'ledger', partition: i, offset: 0n });
      await store.applyBatch([{ event: usage(`b-${a}`, a, '10'), position: { topic: 'usage', partition: i, offset: 1n } }]);
      await store.claimReference(`claim-${a}`, { amount: 10n, kind: 'grant' }, 60_000);
      await store.quarantine({ event_id: `q-${a}`, topic: 'usage', partition: i, offset: 2n, kind: 'invalid_event', reason: 'test' },
        { topic: 'usage', partition: i, offset: 2n });
      await store.checkPosition({ topic: 'control', partition: i, offset: 0n });
      await store.advancePosition({ topic: 'control', partition: i, offset: 0n });
    }
    await store.snapshot();

    const accountSlots = accounts.map((a) => calculateSlot(`{${a}}`));
    assert.equal(new Set(accountSlots).size, accounts.length, 'the test accounts land in distinct slots');

    const requestPath = ['tollgateLedgerHold', 'tollgateLedgerExtend', 'tollgateLedgerSettle', 'tollgateLedgerRelease', 'tollgateLedgerGet'];
    for (const script of requestPath) {
      const mine = calls.filter((c) => c.script === script);
      assert.ok(mine.length >= accounts.length, `${script} was called (${mine.length})`);
      for (const c of mine) {
        const account = accounts.find((a) => c.keys.some((k) => k.includes(`{${a}}`)))!;
        assert.deepEqual([...slotsOf(c.keys)], [calculateSlot(`{${account}}`)], `${script} keys ${c.keys.join(' ')}`);
      }
    }
    // The hold with five windows sent 11 keys, all tagged by its account.
    assert.equal(calls.find((c) => c.script === 'tollgateLedgerHold')!.keys.length, 11);

    // Multi-slot today (docs/scaling.md, "Redis Cluster"): the consumer's scripts store the
    // partition position and the event id beside the account's balance; the control scripts
    // share store-wide hashes without a common tag. load and snapshot also name balance keys
    // that are not in KEYS[] at all (every account's), and so does applyBatch: it derives each
    // event's keys from the prefix (docs/decisions.md, "Ledger batch encoding").
    const crossing = [...new Set(calls.filter((c) => slotsOf(c.keys).size > 1).map((c) => c.script))].sort();
    assert.deepEqual(crossing, [
      'tollgateLedgerApplyBatch', 'tollgateLedgerApplyLedger', 'tollgateLedgerApplyUsage', 'tollgateLedgerClaimReference',
      'tollgateLedgerLoad', 'tollgateLedgerQuarantine', 'tollgateLedgerSnapshot',
    ]);
  } finally {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
});

test('Redis Cluster layout: every script call of every kind keeps its keys in one slot (the account\'s, or the store-wide {ledger} one)', async (t) => {
  const url = await requireRedis(t);
  if (!url) return;
  // The Cluster layout on a plain Redis: the same scripts and keys as on a Cluster, recorded
  // here; libs/ledger/test/redis-cluster.test.ts runs them on a real one. Not recorded:
  // lua/cluster-markers.lua, which declares no key and reads the slot markers of its own node
  // from ARGV (flag allow-cross-slot-keys); that test pins it on a real cluster.
  const redis = new Redis(url);
  const prefix = `test:slots:${randomUUID()}:`;
  const store = new RedisBalanceStore({ redis, prefix, cluster: true });
  const calls = instrument(redis);
  const accounts = ['acct_alpha', 'acct_beta', 'acct_gamma'];
  try {
    await store.load({
      balances: new Map(accounts.map((a) => [a, 1_000_000n])), ledgerEntries: new Map([['g0', { amount: 1n, kind: 'grant' as const }]]),
      usageIds: ['u0'], eventAccounts: new Map([['g0', accounts[0]!], ['u0', accounts[1]!]]), positions: new Map([['usage:0', 0n]]),
    });
    for (const [i, a] of accounts.entries()) {
      const windows = [{ name: 'key_hourly' as const, limit: 500_000n }, { name: 'account_monthly' as const, limit: 999_000n }];
      assert.equal((await store.hold({ holdId: `h1-${a}`, accountId: a, keyId: `k-${a}`, amount: 10_100n, ttlMs: 60_000, windows })).ok, true);
      await store.extend(`h1-${a}`, a, 60_000);
      await store.settle(`h1-${a}`, a, 7_000n, 60_000);
      await store.release(`h1-${a}`, a);
      await store.get(a);
      assert.equal(await store.applyUsage(usage(`u1-${a}`, a, '7000'), { topic: 'usage', partition: 1 + i, offset: 0n }), 'applied');
      assert.equal(await store.applyLedger({ type: 'ledger', event_id: `grant-${a}`, ts: Date.now(), account_id: a, kind: 'grant', amount_micros: '5000', reference: `r-${a}` },
        { topic: 'ledger', partition: i, offset: 0n }), 'applied');
      await store.claimReference(`claim-${a}`, { amount: 10n, kind: 'grant' }, 60_000, a);
      await store.releaseReference(`claim-${a}`, a);
      await store.quarantine({ event_id: `q-${a}`, topic: 'usage', partition: 1 + i, offset: 1n, kind: 'apply_failed', reason: 'test' },
        { topic: 'usage', partition: 1 + i, offset: 1n }, a);
      await store.checkPosition({ topic: 'control', partition: i, offset: 0n });
      await store.advancePosition({ topic: 'control', partition: i, offset: 0n });
    }
    // One batch over the three accounts: one call per account, plus the store-wide begin and advance.
    assert.deepEqual((await store.applyBatch(accounts.map((a, j) => ({ event: usage(`b-${a}`, a, '10'), position: { topic: 'usage', partition: 0, offset: BigInt(j + 1) } }))))
      .map((o) => o.verdict), ['applied', 'applied', 'applied']);
    await store.acquireLock('billing-lock', 60_000);
    await store.snapshot();

    const scripts = new Set(calls.map((c) => c.script));
    for (const s of ['tollgateLedgerHold', 'tollgateLedgerExtend', 'tollgateLedgerSettle', 'tollgateLedgerRelease', 'tollgateLedgerGet',
      'tollgateLedgerApplyBatch', 'tollgateLedgerClusterBegin', 'tollgateLedgerClusterAdvance', 'tollgateLedgerClusterLoad',
      'tollgateLedgerQuarantine', 'tollgateLedgerReject', 'tollgateLedgerClaimReference', 'tollgateLedgerCheckPosition', 'tollgateLedgerAdvancePosition',
      'tollgateLedgerClusterLoadPut']) {
      assert.ok(scripts.has(s), `${s} was called`);
    }
    const wide = calculateSlot(`${prefix}{ledger}pos`);
    for (const c of calls) {
      const slots = [...slotsOf(c.keys)];
      assert.equal(slots.length, 1, `${c.script} keys ${c.keys.join(' ')}`);
      // A slot's own ready marker (the rebuild marks and readies every slot).
      if (c.keys.every((k) => k.startsWith(`${prefix}ready:{`))) continue;
      const account = accounts.find((a) => c.keys.some((k) => k.includes(`{${a}}`)));
      assert.equal(slots[0], account ? calculateSlot(`{${account}}`) : wide, `${c.script} keys ${c.keys.join(' ')}`);
    }
    // The batch over three accounts went out as three account calls.
    assert.equal(calls.filter((c) => c.script === 'tollgateLedgerApplyBatch').length, 3 * 2 + 3);
  } finally {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
});
