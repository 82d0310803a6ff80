// The BalanceStore contract against a real Redis, plus what only a shared store can show:
// two gateways (two clients) racing for the same credit, and the key layout the scripts keep.
// Each case uses its own key prefix so the suite can run in parallel on a shared Redis.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { MIN_REDIS_VERSION, RECORD_HOLDER_MS, RedisBalanceStore, redisVersionProblem, releaseUnanswered, StoreNotReadyError, type LogPosition } from '@tollgate/ledger';
import type { LedgerEvent, UsageEvent } from '@tollgate/events';
import { findRedis, requireRedis } from '../../../test/support/services.ts';
import { startRelay } from '../../../test/support/redis-relay.ts';
import { usageEvent } from '../../../test/support/events.ts';
import { balanceStoreContract } from './balance-store.contract.ts';
import { admissionContract } from './admission.contract.ts';

const url = await findRedis();

async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  const match = `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    out.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return out.sort();
}

/** Every key under `prefix` with its value (strings; hashes, sets and sorted sets in order) and whether it expires; the prefix itself reads `<prefix>`, the state's epoch `<epoch>`. */
async function dumpUnder(redis: Redis, prefix: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const key of await keysUnder(redis, prefix)) {
    const type = await redis.type(key);
    const value = type === 'string' ? await redis.get(key)
      : type === 'hash' ? Object.entries(await redis.hgetall(key)).sort()
        : type === 'zset' ? await redis.zrange(key, '0', '-1', 'WITHSCORES')
          : type === 'set' ? (await redis.smembers(key)).sort() : type;
    out[key.slice(prefix.length)] = { value, expires: (await redis.pttl(key)) > 0 };
  }
  // Values naming other keys (a hold's window marker) name them under the prefix too; the
  // epoch a load drew (random) is named, not compared.
  const epoch = await redis.hget(`${prefix}ledger-pos`, '#epoch');
  let text = JSON.stringify(out).split(prefix).join('<prefix>');
  if (epoch) text = text.split(epoch).join('<epoch>');
  return JSON.parse(text) as Record<string, unknown>;
}

/**
 * Applies `items` one at a time (applyUsage / applyLedger, the one-event scripts), the
 * reference a batch is compared with; stops at the first that throws, answered `failed`.
 */
async function oneByOne(store: RedisBalanceStore, items: Array<{ event: UsageEvent | LedgerEvent; position?: LogPosition }>): Promise<string[]> {
  const verdicts: string[] = [];
  for (const { event, position } of items) {
    try {
      verdicts.push(event.type === 'usage' ? await store.applyUsage(event, position) : await store.applyLedger(event, position));
    } catch {
      verdicts.push('failed');
      break;
    }
  }
  return verdicts;
}

test('Redis too old for the ledger: a server below 6.2 (no SET … GET) is named with its version and what is needed; 6.2 and later, or an answer without a version, pass', () => {
  // Kind: the usage apply's SET … GET is a syntax error before Redis 6.2: every apply would fail
  // and the consumer stall on its batch, so the runtime refuses such a server at start.
  const info = (v: string) => `# Server\r\nredis_version:${v}\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n`;
  assert.deepEqual(MIN_REDIS_VERSION, [6, 2]);
  for (const old of ['5.0.6', '6.0.16', '6.1.9', '2.8.24']) {
    assert.equal(redisVersionProblem(info(old)),
      `is Redis ${old}; Tollgate needs Redis 6.2 or later (the ledger writes a usage id marker and reads the one it replaces with SET … GET)`);
  }
  for (const recent of ['6.2.0', '6.2.14', '7.0.15', '7.4.1', '8.0.0', '10.1.2', '7.2']) assert.equal(redisVersionProblem(info(recent)), undefined, recent);
  assert.equal(redisVersionProblem('# Server\r\nredis_mode:standalone\r\n'), undefined);
});

if (url === undefined) {
  // Skips loudly, or fails when services are required (CI).
  test('RedisBalanceStore contract', async (t) => {
    await requireRedis(t);
  });
} else {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  before(() => redis.connect());
  after(() => redis.quit());

  balanceStoreContract('redis', async () => {
    const prefix = `test:${randomUUID()}:`;
    return {
      store: new RedisBalanceStore({ redis, prefix }),
      cleanup: () => deletePrefix(redis, prefix),
    };
  });

  admissionContract('redis', async (now) => {
    const prefix = `test:${randomUUID()}:`;
    return { store: new RedisBalanceStore({ redis, prefix, now }), cleanup: () => deletePrefix(redis, prefix) };
  });

  // The gateway's REDIS_URL connection auto-pipelines (REDIS_AUTO_PIPELINING, on by default):
  // every script must answer the same when many calls go out in one pipeline.
  const pipelined = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableAutoPipelining: true });
  before(() => pipelined.connect());
  after(() => pipelined.quit());

  balanceStoreContract('redis, auto-pipelined', async () => {
    const prefix = `test:${randomUUID()}:`;
    return { store: new RedisBalanceStore({ redis: pipelined, prefix }), cleanup: () => deletePrefix(redis, prefix) };
  });

  admissionContract('redis, auto-pipelined', async (now) => {
    const prefix = `test:${randomUUID()}:`;
    return { store: new RedisBalanceStore({ redis: pipelined, prefix, now }), cleanup: () => deletePrefix(redis, prefix) };
  });

  describe('RedisBalanceStore specifics', () => {
    test('auto-pipelining: 300 holds issued at once go out together and hold exactly what the balance allows; settlements shrink them exactly', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis: pipelined, prefix });
      await store.applyLedger({
        type: 'ledger', event_id: 'credit:a:1', ts: 0, account_id: 'a', kind: 'grant', amount_micros: '50000000', reference: '1',
      });
      const holds = Array.from({ length: 300 }, (_, i) => store.hold({ holdId: `r${i}`, accountId: 'a', keyId: 'k', amount: 1_000_000n, ttlMs: 60_000 }));
      // Issued in one tick: queued for one pipeline, not written one by one.
      assert.equal(pipelined.autoPipelineQueueSize, 300);
      const results = await Promise.all(holds);
      const held = results.flatMap((r, i) => (r.ok ? [`r${i}`] : []));
      assert.equal(held.length, 50);
      assert.deepEqual(held, Array.from({ length: 50 }, (_, i) => `r${i}`), 'first come, first held: the pipeline keeps the order of the calls');
      // Each hold shrinks to what the request cost: 50 × 400,000 µc stay held.
      await Promise.all(held.map((id) => store.settle(id, 'a', 400_000n, 60_000)));
      assert.deepEqual(await store.get('a'), { balance: 50_000_000n, held: 20_000_000n, available: 30_000_000n });
      // (Redis forgetting its scripts under auto-pipelining, NOSCRIPT: cluster.fault.test.ts
      // restarts Redis empty under a gateway; a SCRIPT FLUSH here would hit the suites that run
      // beside this one on the shared Redis.)
    });

    test('unanswered hold (connection reset mid-pipeline after Redis ran it): releaseUnanswered retries past the reconnect and gives back exactly what was reserved, spend window included', async (t) => {
      // A TCP proxy in front of Redis that passes the client's commands whole and cuts the
      // connection after the first CUT bytes of replies: an auto-pipeline of holds that Redis
      // ran is then partly unanswered, and ioredis rejects the rest without re-sending them.
      const CUT = 2_000;
      const proxy = await startRelay(new URL(url));
      const client = new Redis(`redis://127.0.0.1:${proxy.port}`, {
        // the gateway's options (services/tollgate/src/adapters.ts), with a reconnect slow enough
        // that the first release tries meet the broken connection
        lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000,
        retryStrategy: () => 500, enableAutoPipelining: true, autoResendUnfulfilledCommands: false,
      });
      client.on('error', () => {});
      const prefix = `test:${randomUUID()}:`;
      t.after(async () => {
        client.disconnect();
        await proxy.close();
        await deletePrefix(redis, prefix);
      });
      await client.connect();
      const store = new RedisBalanceStore({ redis: client, prefix });
      const direct = new RedisBalanceStore({ redis, prefix });
      await direct.applyLedger({
        type: 'ledger', event_id: 'credit:a:1', ts: 0, account_id: 'a', kind: 'grant', amount_micros: '1000000000000', reference: '1',
      });
      // The scripts are loaded on this connection first, so the cut falls on the holds' replies.
      assert.equal((await store.hold({ holdId: 'warm', accountId: 'a', keyId: 'k', amount: 1n, ttlMs: 60_000 })).ok, true);
      await store.release('warm', 'a');

      proxy.cutAfter(CUT);
      const amount = (i: number) => BigInt(1_000 + i);
      const window = [{ name: 'account_monthly' as const, limit: 10n ** 12n }];
      const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) =>
        store.hold({ holdId: `h${i}`, accountId: 'a', keyId: 'k', amount: amount(i), ttlMs: 600_000, windows: window })));
      const answered = results.flatMap((r, i) => (r.status === 'fulfilled' && r.value.ok ? [i] : []));
      const unanswered = results.flatMap((r, i) => (r.status === 'rejected' ? [i] : []));
      assert.equal(answered.length + unanswered.length, 200);
      assert.ok(answered.length > 0 && unanswered.length > 0, `the cut falls inside the pipeline: ${answered.length} answered`);
      // What the fault leaves: holds Redis made whose callers were told they failed.
      const orphans = unanswered;
      const reserved = new Set(Object.keys(await redis.hgetall(`${prefix}holds:{a}`)));
      assert.ok(orphans.some((i) => reserved.has(`h${i}`)), 'some unanswered holds were made by Redis');

      let failedTries = 0;
      const released = await Promise.all(orphans.map((i) => releaseUnanswered(store, `h${i}`, 'a', {
        maxWaitMs: 10_000, minDelayMs: 20, maxDelayMs: 200, onFailedTry: () => { failedTries++; },
      })));
      assert.ok(released.every(Boolean), 'every release was answered');
      assert.ok(failedTries > 0, 'the first tries met the broken connection and were retried');
      const expected = answered.reduce((sum, i) => sum + amount(i), 0n);
      assert.deepEqual(Object.keys(await redis.hgetall(`${prefix}holds:{a}`)).sort(), answered.map((i) => `h${i}`).sort());
      assert.deepEqual(await direct.get('a'), { balance: 1_000_000_000_000n, held: expected, available: 1_000_000_000_000n - expected });
      assert.equal(await direct.windowUsed('account_monthly', 'a', 'k'), expected);
    });

    test('two gateways on separate clients cannot overspend one account', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      const clients = [new Redis(url), new Redis(url), new Redis(url)];
      t.after(async () => {
        await deletePrefix(redis, prefix);
        await Promise.all(clients.map((c) => c.quit()));
      });
      const stores = clients.map((c) => new RedisBalanceStore({ redis: c, prefix }));
      await stores[0]!.applyLedger({
        type: 'ledger', event_id: 'credit:a:1', ts: 0, account_id: 'a', kind: 'grant',
        amount_micros: '50000000', reference: '1',
      });
      const results = await Promise.all(Array.from({ length: 300 }, (_, i) =>
        stores[i % stores.length]!.hold({ holdId: `r${i}`, accountId: 'a', keyId: 'k', amount: 1_000_000n, ttlMs: 60_000 })));
      assert.equal(results.filter((r) => r.ok).length, 50);
      assert.deepEqual(await stores[1]!.get('a'), { balance: 50_000_000n, held: 50_000_000n, available: 0n });
      assert.equal(await redis.hlen(`${prefix}holds:{a}`), 50);
      assert.equal(await redis.zcard(`${prefix}hexp:{a}`), 50);
    });

    test('the Redis of the tests is recent enough for the ledger (serverProblem asks INFO server)', async () => {
      assert.equal(await new RedisBalanceStore({ redis, prefix: `test:${randomUUID()}:` }).serverProblem(), undefined);
    });

    test('keys are laid out under the prefix, hash-tagged by account, and tidy after use', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis, prefix, usageMemoryMs: 60_000 });
      await store.applyLedger({
        type: 'ledger', event_id: 'credit:a:1', ts: 0, account_id: 'a', kind: 'grant',
        amount_micros: '1000', reference: '1',
      });
      assert.equal((await store.hold({ holdId: 'req-1', accountId: 'a', keyId: 'k', amount: 600n, ttlMs: 60_000 })).ok, true);
      assert.deepEqual(await keysUnder(redis, prefix),
        [`${prefix}bal:{a}`, `${prefix}held:{a}`, `${prefix}hexp:{a}`, `${prefix}holds:{a}`, `${prefix}ledger`, `${prefix}ledger-accounts`]);
      assert.equal(await redis.get(`${prefix}held:{a}`), '600');
      assert.equal(await redis.hget(`${prefix}holds:{a}`, 'req-1'), '600');

      await store.applyUsage({
        type: 'usage', event_id: 'req-1', ts: 0, account_id: 'a', key_id: 'k', model: 'm', catalog_model: 'm',
        upstream_model: 'm', input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0, cost_micros: '250', status: 'ok', http_status: 200, latency_ms: 1, ttft_ms: 1,
        stream: false, upstream_request_id: null, gateway_id: 'g',
      });
      // The hold is gone entirely (no zero counters left behind); the usage id is remembered with a TTL.
      assert.deepEqual(await keysUnder(redis, prefix), [`${prefix}bal:{a}`, `${prefix}ledger`, `${prefix}ledger-accounts`, `${prefix}u:req-1`]);
      assert.equal(await redis.get(`${prefix}bal:{a}`), '750');
      const ttl = await redis.pttl(`${prefix}u:req-1`);
      assert.ok(ttl > 0 && ttl <= 60_000, `u: key must expire, pttl=${ttl}`);
      assert.equal(await redis.hget(`${prefix}ledger`, 'credit:a:1'), '1000 grant');
    });

    test('storedPositions: every partition position in one read, undefined while the state is not ready (requireReady)', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis, prefix, requireReady: true });
      assert.equal(await store.storedPositions(), undefined);
      await store.load({ balances: new Map(), ledgerEntries: new Map(), positions: new Map([['usage:0', 4n], ['ledger:3', -1n]]) });
      assert.deepEqual(await store.storedPositions(), new Map([['usage:0', 4n], ['ledger:3', -1n]]));
      const g = { type: 'ledger' as const, event_id: 'g', ts: 0, account_id: 'a', kind: 'grant' as const, amount_micros: '1', reference: 'g' };
      assert.equal(await store.applyLedger(g, { topic: 'ledger', partition: 3, offset: 0n }), 'applied');
      assert.deepEqual(await store.storedPositions(), new Map([['usage:0', 4n], ['ledger:3', 0n]]));
      await redis.del(`${prefix}ledger-ready`); // lost
      assert.equal(await store.storedPositions(), undefined);
      // Without requireReady the state is always usable: its positions are answered as they are.
      assert.deepEqual(await new RedisBalanceStore({ redis, prefix }).storedPositions(), new Map([['usage:0', 4n], ['ledger:3', 0n]]));
    });

    test('a control process holding unacknowledged records, stalled since before the loss (never announced): the rebuilding store saw its mark and the load waits for it; one that holds none any more, or whose mark it never saw, is not waited for', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const ready = `${prefix}ledger-ready`;
      const store = new RedisBalanceStore({ redis, prefix, requireReady: true, restoreWindowMs: 50 });
      await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
      const epoch = await store.epoch();
      // Two control processes hold records; a third held some and no longer does.
      assert.equal(await store.epoch(undefined, 'ctl-1', true), epoch);
      assert.equal(await store.epoch(undefined, 'ctl-2', true), epoch);
      assert.equal(await store.epoch(undefined, 'ctl-3', true), epoch);
      assert.equal(await store.epoch(undefined, 'ctl-3', false), epoch);
      const score = Number(await redis.zscore(`${ready}:record-holders`, 'ctl-1'));
      const [seconds] = await redis.time();
      assert.ok(Math.abs(score - Number(seconds) * 1000 - RECORD_HOLDER_MS) < 5_000, `marked for RECORD_HOLDER_MS: ${score}`);
      // A gateway never marks (no restorer id), nor does a caller that says nothing of holding.
      assert.equal(await store.epoch(undefined, '', true), epoch);
      assert.equal(await store.epoch(undefined, 'ctl-4'), epoch);
      assert.deepEqual((await redis.zrange(`${ready}:record-holders`, '0', '-1')).sort(), ['ctl-1', 'ctl-2']);
      assert.equal(await store.ready(), true, 'the watch\'s check: it remembers ctl-1 and ctl-2');
      // A manual rebuild of the live state lost nothing: it waits for nobody (a breaker's HIGH:
      // 1 s of 503 for every paid request, 10 s with a holder that died).
      await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
      assert.deepEqual([await redis.exists(`${ready}:pending`), await redis.exists(`${ready}:restoring`), await store.stateLost()], [0, 0, false]);
      assert.equal(await store.ready(), true, 'seen again');
      // Lost; nobody announces (both stalled); the rebuild loads.
      await deletePrefix(redis, prefix);
      assert.equal(await store.ready(), false);
      await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map(), afterLoss: true });
      assert.deepEqual((await redis.smembers(`${ready}:pending`)).sort(), ['ctl-1', 'ctl-2'], 'readers wait for both');
      await new Promise((r) => setTimeout(r, 80));
      assert.equal(await store.stateLost(), true, 'the window over, two holders not done');
      await store.restored('ctl-1');
      await store.restored('ctl-2');
      assert.equal(await store.stateLost(), false);
      // Forgotten once loaded: the next loss finds nobody (no mark since, none seen).
      await deletePrefix(redis, prefix);
      await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map(), afterLoss: true });
      assert.equal(await redis.exists(`${ready}:pending`), 0);
      // A mark the rebuilding store never read before the loss is not known to it.
      const other = new RedisBalanceStore({ redis, prefix, requireReady: true, restoreWindowMs: 50 });
      assert.equal(typeof await other.epoch(undefined, 'ctl-5', true), 'string');
      await deletePrefix(redis, prefix);
      await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map(), afterLoss: true });
      assert.equal(await redis.exists(`${ready}:pending`), 0);
      // Two warehouse owners load after one loss; the second saw only P: Q, which the first
      // made pending, stays pending (a RENAME dropped it: a breaker's MEDIUM).
      await store.epoch(undefined, 'P', true);
      await store.epoch(undefined, 'Q', true);
      assert.equal(await store.ready(), true);
      await store.epoch(undefined, 'Q', false);
      assert.equal(await other.ready(), true);
      await deletePrefix(redis, prefix);
      await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map(), afterLoss: true });
      assert.deepEqual((await redis.smembers(`${ready}:pending`)).sort(), ['P', 'Q']);
      await store.restored('P');
      await other.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map(), afterLoss: true });
      assert.deepEqual((await redis.smembers(`${ready}:pending`)).sort(), ['P', 'Q'], 'Q still waited for; P again (it restores into the new epoch too)');
      await store.restored('P');
      await store.restored('Q');
      await new Promise((r) => setTimeout(r, 80)); // the restore window (50 ms)
      assert.equal(await store.stateLost(), false);
      // While the state is lost a mark is not written (the announcement is what counts then).
      await deletePrefix(redis, prefix);
      assert.equal(await store.epoch(undefined, 'ctl-6', true), null);
      assert.equal(await redis.exists(`${ready}:record-holders`), 0);
    });

    test('restore window: after a load that a restorer was announced for, holds answer not_ready for the window while restores go through; without an announcement none', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      // Windows a loaded machine's round trips fit in (400 ms did not always).
      const store = new RedisBalanceStore({ redis, prefix, requireReady: true, restoreWindowMs: 2_000 });
      const hold = (holdId: string) => store.hold({ holdId, accountId: 'a', keyId: 'k', amount: 100n, ttlMs: 60_000 });
      assert.equal(await store.epoch(), null, 'never built: no epoch');
      await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
      const first = await store.epoch();
      assert.match(String(first), /^[0-9a-f]{32}$/);
      assert.equal((await hold('h1')).ok, true, 'no restorer announced: admitted at once');
      assert.equal(await store.stateLost(), false, 'no restorer announced: no window for readers either');
      // Lost, a gateway with requests in flight announces, the rebuild loads: the window starts.
      await deletePrefix(redis, prefix);
      assert.equal(await store.epoch(), null);
      assert.equal(await store.restoreHolds([{ holdId: 'h1', accountId: 'a', keyId: 'k', amount: 100n, ttlMs: 60_000, ts: Date.now() }]), 'not_ready');
      assert.equal(await store.epoch(5_000), null, 'lost: a gateway announced in the same step');
      assert.equal(await store.epoch(5_000, 'ctl-1'), null, 'a control process with records announces');
      assert.equal(await store.epoch(5_000, 'ctl-2'), null, 'and a second one');
      assert.equal(await redis.get(`${prefix}ledger-ready:restorers`), '1', 'the flag every version reads');
      assert.deepEqual((await redis.smembers(`${prefix}ledger-ready:record-restorers`)).sort(), ['ctl-1', 'ctl-2']);
      await store.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
      const second = await store.epoch();
      assert.notEqual(second, first);
      assert.equal(await redis.exists(`${prefix}ledger-ready:restorers`), 0, 'the load took the announcement');
      assert.equal(await redis.exists(`${prefix}ledger-ready:record-restorers`), 0);
      assert.deepEqual((await redis.smembers(`${prefix}ledger-ready:pending`)).sort(), ['ctl-1', 'ctl-2'], 'readers wait for both');
      assert.deepEqual(await hold('h2'), { ok: false, reason: 'not_ready', available: 0n });
      // Readers that would take a record not yet put back for an absent one wait the window too.
      assert.equal(await store.stateLost(), true, 'in the restore window: not yet a state to read absence from');
      assert.equal(await store.restoreHolds([{ holdId: 'h1', accountId: 'a', keyId: 'k', amount: 100n, ttlMs: 60_000, ts: Date.now() }]), 1);
      assert.deepEqual(await store.get('a'), { balance: 10_000n, held: 100n, available: 9_900n });
      const pttl = await redis.pttl(`${prefix}ledger-ready:restoring`);
      assert.ok(pttl > 0 && pttl <= 2_000, `the window lives restoreWindowMs: pttl ${pttl}`);
      await new Promise((r) => setTimeout(r, pttl + 20));
      // Holds wait the window only; readers wait for every announced restorer (a control
      // process stalled past the window had its spool-only records read as absent: 404, 401).
      assert.equal((await hold('h2')).ok, true);
      assert.deepEqual(await store.get('a'), { balance: 10_000n, held: 200n, available: 9_800n });
      assert.equal(await store.stateLost(), true, 'the window over, two restorers not done');
      await store.restored('ctl-2');
      assert.equal(await store.stateLost(), true, 'ctl-1 not done');
      await store.restored('ctl-1');
      assert.equal(await store.stateLost(), false, 'every restorer done');
      assert.equal(await redis.exists(`${prefix}ledger-ready:pending`), 0);
      // One that never comes back is waited for restoreWaitMaxMs at most.
      const capped = new RedisBalanceStore({ redis, prefix, requireReady: true, restoreWindowMs: 500, restoreWaitMaxMs: 2_500 });
      await deletePrefix(redis, prefix);
      assert.equal(await capped.epoch(5_000, 'gone'), null);
      await capped.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
      assert.equal(await capped.stateLost(), true);
      const waitTtl = await redis.pttl(`${prefix}ledger-ready:pending`);
      assert.ok(waitTtl > 500 && waitTtl <= 2_500, `the wait lives restoreWaitMaxMs: pttl ${waitTtl}`);
      await new Promise((r) => setTimeout(r, waitTtl + 20));
      assert.equal(await capped.stateLost(), false, 'given up on it');
      // A gateway's announcement (or one of a process from before 2026-12-05, the same flag): the
      // window, no wait for readers.
      await deletePrefix(redis, prefix);
      assert.equal(await capped.epoch(5_000), null);
      await capped.load({ balances: new Map([['a', 10_000n]]), ledgerEntries: new Map() });
      assert.equal(await redis.exists(`${prefix}ledger-ready:pending`), 0);
      const windowTtl = await redis.pttl(`${prefix}ledger-ready:restoring`);
      assert.ok(windowTtl > 0 && windowTtl <= 500, `the window is open: pttl ${windowTtl}`);
      await new Promise((r) => setTimeout(r, windowTtl + 20));
      assert.equal(await capped.stateLost(), false, 'the window (500 ms) over: nobody to wait for');
      assert.equal(await capped.epoch(5_000, 'new'), await redis.get(`${prefix}ledger-ready`), 'not lost: no announcement');
      // Without requireReady nothing is ever lost: no epoch, no announcement kept.
      const plain = new RedisBalanceStore({ redis, prefix: `${prefix}plain:` });
      assert.equal(await plain.epoch(), undefined);
      assert.equal(await plain.epoch(5_000), undefined);
      assert.deepEqual(await keysUnder(redis, `${prefix}plain:`), []);
    });

    test('log positions: stored with the effect; at or before → duplicate, past +1 → gap', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis, prefix });
      const grant = (id: string, amount: string) => ({
        type: 'ledger' as const, event_id: id, ts: 0, account_id: 'a', kind: 'grant' as const, amount_micros: amount, reference: id,
      });
      const at = (offset: bigint) => ({ topic: 'ledger', partition: 2, offset });
      assert.equal(await store.applyLedger(grant('g0', '100'), at(0n)), 'applied');
      assert.equal(await store.applyLedger(grant('g1', '10'), at(1n)), 'applied');
      assert.equal(await store.applyLedger(grant('g1-again', '10'), at(1n)), 'duplicate'); // redelivered offset
      assert.equal(await store.applyLedger(grant('g3', '1'), at(3n)), 'gap');
      assert.equal(await store.position('ledger', 2), 1n);
      // a producer-side duplicate at a new offset: no second credit, but the position moves
      assert.equal(await store.applyLedger(grant('g1', '10'), at(2n)), 'duplicate');
      assert.equal(await store.position('ledger', 2), 2n);
      assert.equal(await store.applyLedger(grant('g3', '1'), at(3n)), 'applied');
      assert.equal((await store.get('a')).balance, 111n);
      assert.equal(await store.checkPosition({ topic: 'control', partition: 0, offset: 0n }), 'applied');
      await store.advancePosition({ topic: 'control', partition: 0, offset: 0n });
      assert.equal(await store.checkPosition({ topic: 'control', partition: 0, offset: 0n }), 'duplicate');
      await store.advancePosition({ topic: 'control', partition: 0, offset: -5n }); // never backwards
      assert.equal(await store.position('control', 0), 0n);
    });

    test('poison ledger event: quarantined with its position moved past it atomically, so the next offset is no gap', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis, prefix });
      const at = (offset: bigint) => ({ topic: 'ledger', partition: 1, offset });
      const grant = (id: string, amount: string) => ({
        type: 'ledger' as const, event_id: id, ts: 0, account_id: 'a', kind: 'grant' as const, amount_micros: amount, reference: id,
      });
      assert.equal(await store.applyLedger(grant('g0', '100'), at(0n)), 'applied');
      const record = { event_id: 'credit:a:huge', topic: 'ledger', partition: 1, offset: 1n, kind: 'invalid_event', reason: 'amount_micros: out of range' };
      assert.equal(await store.quarantine(record, at(3n)), 'gap'); // never past a hole
      assert.equal(await store.quarantine(record, at(1n)), 'applied');
      assert.equal(await store.position('ledger', 1), 1n);
      assert.equal(await store.quarantine(record, at(1n)), 'duplicate'); // redelivered
      assert.equal(await store.applyLedger(grant('g2', '5'), at(2n)), 'applied');
      assert.equal((await store.get('a')).balance, 105n);
      assert.deepEqual(await store.quarantined(), [record]);
    });

    test('requireReady: lost state refuses holds and applies until a load; load and snapshot are atomic', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis, prefix, requireReady: true });
      assert.equal(await store.ready(), false);
      const hold = await store.hold({ holdId: 'r', accountId: 'a', keyId: 'k', amount: 1n, ttlMs: 60_000 });
      assert.deepEqual(hold, { ok: false, reason: 'not_ready', available: 0n });
      const g = { type: 'ledger' as const, event_id: 'late', ts: 0, account_id: 'b', kind: 'grant' as const, amount_micros: '7', reference: 'late' };
      assert.equal(await store.applyLedger(g, { topic: 'ledger', partition: 0, offset: 5n }), 'not_ready');

      await redis.set(`${prefix}bal:{stale}`, '99');
      await redis.sadd(`${prefix}ledger-accounts`, 'stale');
      await store.load({
        balances: new Map([['a', 9_007_199_254_740_993n], ['b', 3n]]),
        ledgerEntries: new Map([['credit:a:x', { amount: 9_007_199_254_740_993n, kind: 'grant' as const }]]),
        positions: new Map([['ledger:0', 4n], ['usage:1', 10n]]),
      });
      assert.equal(await store.ready(), true);
      assert.equal(await redis.get(`${prefix}bal:{stale}`), null);
      assert.equal(await store.applyLedger(g, { topic: 'ledger', partition: 0, offset: 5n }), 'applied');
      const snap = await store.snapshot();
      assert.equal(snap.ready, true);
      assert.deepEqual(snap.balances, new Map([['a', 9_007_199_254_740_993n], ['b', 10n]]));
      assert.deepEqual(snap.positions, new Map([['ledger:0', 5n], ['usage:1', 10n]]));
      assert.deepEqual(await store.ledgerEntry('credit:a:x'), { amount: 9_007_199_254_740_993n, kind: 'grant' });
      assert.equal((await store.hold({ holdId: 'r', accountId: 'a', keyId: 'k', amount: 1n, ttlMs: 60_000 })).ok, true);
    });

    test('a prefix with glob characters only touches its own keys', async (t) => {
      const base = `test:${randomUUID()}:`;
      const prefix = `${base}[x]*:`;
      const neighbour = `${base}x:`;
      t.after(async () => {
        await deletePrefix(redis, prefix);
        await deletePrefix(redis, neighbour);
      });
      await redis.set(`${neighbour}bal:{n}`, '5');
      const store = new RedisBalanceStore({ redis, prefix });
      await store.applyLedger({
        type: 'ledger', event_id: 'e', ts: 0, account_id: 'a', kind: 'grant', amount_micros: '9', reference: 'e',
      });
      assert.deepEqual(await store.balances(), new Map([['a', 9n]]));
      await store.load({ balances: new Map(), ledgerEntries: new Map() });
      assert.deepEqual(await store.balances(), new Map());
      assert.equal(await redis.get(`${neighbour}bal:{n}`), '5');
    });

    test('a repeated hold id replaces its hold instead of leaking it', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis, prefix });
      await store.applyLedger({
        type: 'ledger', event_id: 'e', ts: 0, account_id: 'a', kind: 'grant', amount_micros: '100', reference: 'e',
      });
      const req = { holdId: 'r', accountId: 'a', keyId: 'k', ttlMs: 60_000 };
      assert.deepEqual(await store.hold({ ...req, amount: 80n }), { ok: true, available: 20n, amount: 80n });
      assert.deepEqual(await store.hold({ ...req, amount: 90n }), { ok: true, available: 10n, amount: 90n });
      assert.deepEqual(await store.hold({ ...req, amount: 101n }), { ok: false, reason: 'insufficient_credits', available: 10n, required: 101n });
      assert.deepEqual(await store.get('a'), { balance: 100n, held: 90n, available: 10n });
      await store.release('r', 'a');
      assert.deepEqual(await store.get('a'), { balance: 100n, held: 0n, available: 100n });
    });

    test('amounts outside signed 64 bits are refused before Redis sees them', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis, prefix });
      await assert.rejects(store.applyLedger({
        type: 'ledger', event_id: 'e', ts: 0, account_id: 'a', kind: 'grant', amount_micros: (2n ** 63n).toString(), reference: 'e',
      }), RangeError);
      assert.equal(await store.ledgerEntry('e'), undefined);
    });

    test('a ledger entry stored before kinds were kept (a bare amount) still answers with its amount and no kind; new ones carry their kind', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const store = new RedisBalanceStore({ redis, prefix });
      await redis.hset(`${prefix}ledger`, 'credit:a:old', '5000000');
      assert.deepEqual(await store.ledgerEntry('credit:a:old'), { amount: 5_000_000n });
      assert.deepEqual(await store.claimReference('credit:a:old', { amount: 1n, kind: 'refund' }, 60_000), { claimed: false, entry: { amount: 5_000_000n } });
      await store.applyLedger({ type: 'ledger', event_id: 'credit:a:new', ts: 0, account_id: 'a', kind: 'top_up', amount_micros: '7', reference: 'new' });
      assert.equal(await redis.hget(`${prefix}ledger`, 'credit:a:new'), '7 top_up');
      // A claim holds the entry too, so a racing request of another kind is told it.
      assert.deepEqual(await store.claimReference('credit:a:c', { amount: -3n, kind: 'adjustment' }, 60_000), { claimed: true });
      assert.equal(await redis.get(`${prefix}claim:credit:a:c`), '-3 adjustment');
      assert.deepEqual(await store.claimReference('credit:a:c', { amount: -3n, kind: 'grant' }, 60_000), { claimed: false, entry: { amount: -3n, kind: 'adjustment' } });
      // A lock holds '0', what a lock of before was (a claim of 0 µc): a process of before that
      // claims it as a reference reads it as held, and waits, instead of failing its parse.
      assert.equal(await store.acquireLock('billing:month-close', 60_000), true);
      assert.equal(await redis.get(`${prefix}claim:billing:month-close`), '0');
      assert.deepEqual(await store.claimReference('billing:month-close', { amount: 0n, kind: 'grant' }, 60_000), { claimed: false, entry: { amount: 0n } });
      await redis.hset(`${prefix}ledger`, 'credit:a:bad', '7 gift');
      await assert.rejects(store.ledgerEntry('credit:a:bad'), /ledger entry not understood: "7 gift"/);
    });

    test('usage apply closes every trace of its hold: settled at the cost (window marker dropped, window exact), at another cost (window moved), none (counted itself); an overflowing debit leaves the id marker as it was', async (t) => {
      // Kind: the apply reads less than it used to (the marker's GET is SET's GET option, the
      // balance DECRBY's reply, the window marker's presence HDEL's): each way a hold can end
      // must still leave exactly what the full reads left, in µc and in keys.
      const prefix = `test:${randomUUID()}:`;
      t.after(() => deletePrefix(redis, prefix));
      const NOON = Date.UTC(2099, 10, 30, 12);
      const clock = { t: NOON };
      const store = new RedisBalanceStore({ redis, prefix, usageMemoryMs: 60_000, now: () => clock.t });
      await store.applyLedger({ type: 'ledger', event_id: 'credit:a:1', ts: 0, account_id: 'a', kind: 'grant', amount_micros: '100000', reference: '1' });
      const windows = [{ name: 'key_hourly' as const, limit: 1_000_000n }];
      const use = (id: string, cost: bigint) => usageEvent(id, 'a', { key_id: 'k', ts: NOON, cost_micros: cost.toString() });
      const hourly = () => store.windowUsed('key_hourly', 'a', 'k');
      // 1. Settled at 150, its usage costs 150: the window keeps 150, the marker goes.
      assert.equal((await store.hold({ holdId: 'r1', accountId: 'a', keyId: 'k', amount: 900n, ttlMs: 60_000, windows })).ok, true);
      await store.settle('r1', 'a', 150n, 60_000);
      assert.deepEqual(await store.applyBatch([{ event: use('r1', 150n) }], { balanceAfter: true }), [{ verdict: 'applied', balanceAfter: 99_850n }]);
      assert.equal(await hourly(), 150n);
      assert.equal(await redis.exists(`${prefix}hwin:{a}`, `${prefix}holds:{a}`, `${prefix}hexp:{a}`, `${prefix}held:{a}`), 0);
      // 2. Settled at 150, its usage costs 170: the window moves to 170 (150 + 170).
      assert.equal((await store.hold({ holdId: 'r2', accountId: 'a', keyId: 'k', amount: 900n, ttlMs: 60_000, windows })).ok, true);
      await store.settle('r2', 'a', 150n, 60_000);
      assert.deepEqual(await store.applyBatch([{ event: use('r2', 170n) }], { balanceAfter: true }), [{ verdict: 'applied', balanceAfter: 99_680n }]);
      assert.equal(await hourly(), 320n);
      assert.equal(await redis.exists(`${prefix}hwin:{a}`, `${prefix}holds:{a}`, `${prefix}hexp:{a}`, `${prefix}held:{a}`), 0);
      // 3. No hold ever seen: the event counts itself; its redelivery is a duplicate that counts nothing.
      assert.deepEqual(await store.applyBatch([{ event: use('r3', 5n) }], { balanceAfter: true }), [{ verdict: 'applied', balanceAfter: 99_675n }]);
      assert.equal(await store.applyUsage(use('r3', 5n)), 'duplicate');
      assert.equal(await hourly(), 325n);
      assert.equal((await store.get('a')).balance, 99_675n);
      // 4. After a load (a new epoch) the marker of r3 no longer makes it a duplicate. Its debit
      //    overflows 64 bits: failed, and the marker is put back as it was (still the old epoch's, so
      //    a later apply of r3 debits once and counts no window again).
      const marker = await redis.get(`${prefix}u:r3`);
      assert.ok(marker !== null);
      const INT64_MIN = -(2n ** 63n);
      await store.load({ balances: new Map([['a', INT64_MIN + 3n]]), ledgerEntries: new Map() });
      const [failed] = await store.applyBatch([{ event: use('r3', 5n) }]);
      assert.equal(failed!.verdict, 'failed');
      assert.match(failed!.error!.message, /overflow/);
      assert.equal(await redis.get(`${prefix}u:r3`), marker);
      assert.equal((await store.get('a')).balance, INT64_MIN + 3n);
      await store.load({ balances: new Map([['a', 1_000n]]), ledgerEntries: new Map() });
      assert.deepEqual(await store.applyBatch([{ event: use('r3', 5n) }], { balanceAfter: true }), [{ verdict: 'applied', balanceAfter: 995n }]);
      assert.equal(await hourly(), 325n);
      // 5. A balance beyond 2^53 is answered exactly (not through a Lua double).
      await store.load({ balances: new Map([['a', 2n ** 60n + 1n]]), ledgerEntries: new Map() });
      assert.deepEqual(await store.applyBatch([{ event: use('r4', 2n) }], { balanceAfter: true }), [{ verdict: 'applied', balanceAfter: 2n ** 60n - 1n }]);
      // And an id never marked before stays unmarked when its debit fails.
      await store.load({ balances: new Map([['a', INT64_MIN + 1n]]), ledgerEntries: new Map() });
      assert.equal((await store.applyBatch([{ event: use('r5', 2n) }]))[0]!.verdict, 'failed');
      assert.equal(await redis.exists(`${prefix}u:r5`), 0);
    });

    test('a batch applies exactly as its events one by one: holds closed (settled at the cost, at another cost, expired with its window marker, none), duplicates, credits between, a failure midway', async (t) => {
      // Kind: apply-batch.lua keeps state across the events of a call (positions, the accounts
      // set, the window table) and stops at a failure; whatever mix of events a partition batch
      // holds, the state it leaves must be the one-event-at-a-time script's, key for key and
      // value for value.
      const prefixes = [`test:${randomUUID()}:`, `test:${randomUUID()}:`];
      t.after(() => Promise.all(prefixes.map((p) => deletePrefix(redis, p))));
      const NOON = Date.UTC(2099, 10, 30, 12);
      const INT64_MIN = -(2n ** 63n);
      const windows = [{ name: 'key_hourly' as const, limit: 1_000_000_000n }, { name: 'account_daily' as const, limit: 1_000_000_000n }];
      const at = (offset: number) => ({ topic: 'usage', partition: 2, offset: BigInt(offset) });
      const use = (id: string, account: string, cost: bigint) => usageEvent(id, account, { key_id: 'k', ts: NOON, cost_micros: cost.toString() });
      const credit = (id: string, account: string, amount: bigint) => ({
        type: 'ledger' as const, event_id: id, ts: 0, account_id: account, kind: 'grant' as const, amount_micros: amount.toString(), reference: id,
      });
      // The same state under both prefixes: three funded accounts with holds, one about to overflow.
      const stores = await Promise.all(prefixes.map(async (prefix) => {
        const clock = { t: NOON };
        const store = new RedisBalanceStore({ redis, prefix, usageMemoryMs: 600_000, now: () => clock.t });
        for (const a of ['a', 'b', 'c']) await store.applyLedger(credit(`credit:${a}`, a, 1_000_000n));
        await store.load({ balances: new Map([['a', 1_000_000n], ['b', 1_000_000n], ['c', 1_000_000n], ['z', INT64_MIN + 10n]]), ledgerEntries: new Map() });
        const hold = async (id: string, account: string, amount: bigint, ttlMs = 60_000) =>
          assert.equal((await store.hold({ holdId: id, accountId: account, keyId: 'k', amount, ttlMs, windows })).ok, true);
        for (let i = 0; i < 6; i++) { await hold(`a${i}`, 'a', 5_000n); await store.settle(`a${i}`, 'a', BigInt(100 + i), 60_000); }
        await hold('b0', 'b', 7_000n);
        await store.settle('b0', 'b', 300n, 60_000);
        await hold('b1', 'b', 2_000n);
        await hold('b2', 'b', 4_000n, 1_000); // expires: its window marker stays, counted at 4,000
        await hold('c0', 'c', 9_000n);
        clock.t = NOON + 5_000;
        assert.equal((await store.get('b')).held, 2_300n); // b2 expired (get runs the expiry): b0's 300 and b1's 2,000
        return store;
      }));
      const items = [
        { event: use('a0', 'a', 100n), position: at(0) },
        { event: use('b0', 'b', 300n), position: at(1) }, // settled at its cost
        { event: use('a1', 'a', 101n), position: at(2) },
        { event: credit('credit:a:2', 'a', 50n), position: at(3) },
        { event: use('b1', 'b', 2_500n), position: at(4) }, // never settled: moves its windows 2,000 → 2,500
        { event: use('a2', 'a', 999n), position: at(5) }, // settled at 102, costs 999
        { event: use('a1', 'a', 101n), position: at(6) }, // a producer's duplicate at a new offset
        { event: use('b2', 'b', 3_000n), position: at(7) }, // its hold expired: the marker goes, nothing counted again
        { event: use('n1', 'c', 40n), position: at(8) }, // no hold: counts itself
        { event: use('a3', 'a', 103n), position: at(9) },
        { event: use('z0', 'z', 11n), position: at(10) }, // overflows 64 bits: failed, the call stops
        { event: use('a4', 'a', 104n), position: at(11) },
      ];
      const batched = await stores[0]!.applyBatch(items, { balanceAfter: true });
      const single = await oneByOne(stores[1]!, items);
      assert.deepEqual(batched.map((o) => o.verdict), single);
      assert.deepEqual(single, ['applied', 'applied', 'applied', 'applied', 'applied', 'applied', 'duplicate', 'applied', 'applied', 'applied', 'failed']);
      assert.deepEqual(batched.filter((o) => o.balanceAfter !== undefined).map((o) => o.balanceAfter),
        [999_900n, 999_700n, 999_799n, 997_200n, 998_850n, 994_200n, 999_960n, 998_747n]);
      const [one, other] = await Promise.all(prefixes.map((p) => dumpUnder(redis, p)));
      assert.deepEqual(one, other);
      // And the figures themselves (µc): b's key_hourly 7,000 → 300 (b0) + 2,500 (b1) + 4,000 (b2's expired hold); nothing held.
      assert.deepEqual(await Promise.all(['a', 'b', 'c'].map((a) => stores[0]!.get(a))), [
        { balance: 998_747n, held: 209n, available: 998_538n }, // a4 and a5 still held (settled at 104 and 105)
        { balance: 994_200n, held: 0n, available: 994_200n },
        { balance: 999_960n, held: 9_000n, available: 990_960n },
      ]);
      assert.equal(await stores[0]!.windowUsed('key_hourly', 'b', 'k'), 6_800n);
    });

    test('a batch closes its holds together, exactly as one by one: many holds of one account, amounts whose sum passes 2^53, a 16-digit amount, a zero hold, closings before a failure', async (t) => {
      // Kind: apply-batch.lua defers each applied usage's hold closing (HDEL holds and hwin, ZREM
      // hexp, DECRBY held) to the end of the call, one of each per account, held lowered by the
      // closed amounts' sum (position.lua, hold_closer). A sum is exact in Lua only below 2^53,
      // so larger ones must not be summed there; closings made before a failure still happen.
      // The state must be the one-event-at-a-time script's, key for key, and held the exact µc.
      const prefixes = [`test:${randomUUID()}:`, `test:${randomUUID()}:`];
      t.after(() => Promise.all(prefixes.map((p) => deletePrefix(redis, p))));
      const NOON = Date.UTC(2099, 10, 30, 12);
      const INT64_MIN = -(2n ** 63n);
      const BIG = 2n ** 52n + 1n; // three of them sum past 2^53 (an odd sum a double cannot hold)
      const SIXTEEN = 10n ** 15n + 7n; // 16 digits: lowered at once
      const windows = [{ name: 'key_daily' as const, limit: 2n ** 62n }];
      const at = (offset: number) => ({ topic: 'usage', partition: 5, offset: BigInt(offset) });
      const use = (id: string, account: string, cost: bigint) => usageEvent(id, account, { key_id: 'k', ts: NOON, cost_micros: cost.toString() });
      const stores = await Promise.all(prefixes.map(async (prefix) => {
        const store = new RedisBalanceStore({ redis, prefix, usageMemoryMs: 600_000, now: () => NOON });
        await store.load({ balances: new Map([['w', 2n ** 62n], ['s', 1_000_000n], ['z', INT64_MIN + 10n]]), ledgerEntries: new Map() });
        const hold = async (id: string, account: string, amount: bigint) =>
          assert.equal((await store.hold({ holdId: id, accountId: account, keyId: 'k', amount, ttlMs: 60_000, windows })).ok, true, id);
        for (let i = 0; i < 4; i++) await hold(`w${i}`, 'w', BIG);
        await hold('w4', 'w', SIXTEEN);
        await hold('w5', 'w', 0n);
        await hold('w6', 'w', 999n); // stays open
        for (let i = 0; i < 40; i++) { await hold(`s${i}`, 's', 1_000n); if (i % 2 === 0) await store.settle(`s${i}`, 's', BigInt(10 + i), 60_000); }
        return store;
      }));
      const items = [
        ...[0, 1, 2].map((i) => ({ event: use(`w${i}`, 'w', BIG) })), // settled at the hold: sum 3·(2^52 + 1)
        { event: use('w3', 'w', 7n) }, // another cost: its window moves from 2^52 + 1 to 7
        { event: use('w4', 'w', SIXTEEN) },
        { event: use('w5', 'w', 0n) },
        ...Array.from({ length: 39 }, (_, i) => ({ event: use(`s${i}`, 's', i % 2 === 0 ? BigInt(10 + i) : 500n) })),
        { event: use('z0', 'z', 11n) }, // overflows 64 bits: failed, the call stops
        { event: use('s39', 's', 500n) },
      ].map((item, i) => ({ ...item, position: at(i) }));
      const batched = await stores[0]!.applyBatch(items, { balanceAfter: true });
      const single = await oneByOne(stores[1]!, items);
      assert.deepEqual(batched.map((o) => o.verdict), single);
      assert.deepEqual(single, [...Array<string>(45).fill('applied'), 'failed']);
      const [one, other] = await Promise.all(prefixes.map((p) => dumpUnder(redis, p)));
      assert.deepEqual(one, other);
      // The figures (µc): w holds only w6's 999, s only s39's 1,000 (its usage came after the failure).
      assert.deepEqual(await Promise.all(['w', 's'].map(async (a) => (await stores[0]!.get(a)).held)), [999n, 1_000n]);
      assert.equal((await stores[0]!.get('w')).balance, 2n ** 62n - 3n * BIG - 7n - SIXTEEN);
      assert.equal(await stores[0]!.windowUsed('key_daily', 'w', 'k'), 3n * BIG + 7n + SIXTEEN + 999n);
      assert.deepEqual(await redis.hkeys(`${prefixes[0]}holds:{w}`), ['w6']);
      assert.deepEqual(await redis.zrange(`${prefixes[0]}hexp:{s}`, '0', '-1'), ['s39']);
    });

    test('an error closing a hold in a batch fails its event where one by one would, never the whole call: keys of the wrong kind, held passing ±2^63 through holds settled below zero', async (t) => {
      // Kind: the batch defers most hold closings to the end of the call (hold_closer). An
      // error the closing can raise (WRONGTYPE on holds/hexp/hwin/held, held not an integer, a
      // 64-bit overflow of held) must still fail the event whose closing raised it, with the
      // events before it applied and nothing after: the same verdicts and the same state, key
      // for key, as applying the events one at a time. Deferring must also keep the order of
      // the arithmetic on held, which holds settled at a negative cost make non-monotonic.
      const MAX = 2n ** 63n - 1n;
      const MIN = -(2n ** 63n);
      const NOON = Date.UTC(2099, 10, 30, 12);
      const windows = [{ name: 'key_hourly' as const, limit: 2n ** 62n }];
      const use = (id: string, account: string, cost: bigint) => usageEvent(id, account, { key_id: 'k', ts: NOON, cost_micros: cost.toString() });
      const hold = async (store: RedisBalanceStore, id: string, account: string, amount: bigint) =>
        assert.equal((await store.hold({ holdId: id, accountId: account, keyId: 'k', amount, ttlMs: 60_000, windows, overdraft: 2n ** 62n })).ok, true, id);
      /** The same setup under two prefixes; `ids` applied as one batch under the first and one by one under the second. */
      const compare = async (setup: (store: RedisBalanceStore, prefix: string) => Promise<void>, ids: Array<[string, string, bigint]>) => {
        const prefixes = [`test:${randomUUID()}:`, `test:${randomUUID()}:`];
        t.after(() => Promise.all(prefixes.map((p) => deletePrefix(redis, p))));
        const stores = await Promise.all(prefixes.map(async (prefix) => {
          const store = new RedisBalanceStore({ redis, prefix, usageMemoryMs: 600_000, now: () => NOON });
          await store.load({ balances: new Map(['a', 'b', 'c'].map((a) => [a, 1_000_000n])), ledgerEntries: new Map() });
          await setup(store, prefix);
          return store;
        }));
        const items = ids.map(([id, account, cost], i) => ({ event: use(id, account, cost), position: { topic: 'usage', partition: 3, offset: BigInt(i) } }));
        const batched = (await stores[0]!.applyBatch(items)).map((o) => o.verdict);
        const single = await oneByOne(stores[1]!, items);
        assert.deepEqual(batched, single);
        const [one, other] = await Promise.all(prefixes.map((p) => dumpUnder(redis, p)));
        assert.deepEqual(one, other);
        return { batched, prefix: prefixes[0]! };
      };
      const twoEach = async (store: RedisBalanceStore) => { for (const a of ['a', 'b', 'c']) for (const i of [0, 1]) await hold(store, `${a}${i}`, a, 100n); };
      const order: Array<[string, string, bigint]> = [['a0', 'a', 100n], ['b0', 'b', 100n], ['a1', 'a', 100n], ['b1', 'b', 100n], ['c0', 'c', 100n]];
      // A key of the wrong kind: the account's first closing in the call meets it, at once.
      for (const key of ['hexp', 'hwin', 'holds', 'held']) {
        const { batched } = await compare(async (store, prefix) => {
          await twoEach(store);
          await redis.del(`${prefix}${key}:{b}`);
          await redis.sadd(`${prefix}${key}:{b}`, 'x');
        }, order);
        assert.deepEqual(batched, ['applied', 'failed'], key);
      }
      // held not an integer
      assert.deepEqual((await compare(async (store, prefix) => { await twoEach(store); await redis.set(`${prefix}held:{b}`, 'x'); }, order)).batched, ['applied', 'failed']);
      // held at 2^63 − 1 through a hold settled at −10: q (1), p (10, deferred), n (−10) must
      // lower held by p's 10 before raising it by n's, or it passes 2^63 − 1 and n fails.
      const top = await compare(async (store) => {
        for (const [id, amount] of [['q', 1n], ['p', 10n], ['n', 0n], ['x', 1n]] as const) await hold(store, id, 'a', amount);
        await store.settle('n', 'a', -10n, 60_000); // held 12 → 2
        await store.settle('x', 'a', MAX - 1n, 60_000); // held 2 → 2^63 − 1
        assert.equal((await store.get('a')).held, MAX);
      }, [['q', 'a', 1n], ['p', 'a', 10n], ['n', 'a', -10n]]);
      assert.deepEqual(top.batched, ['applied', 'applied', 'applied']);
      assert.equal(await redis.get(`${top.prefix}held:{a}`), (MAX - 1n).toString()); // x's hold alone
      // held 5 above −2^63: nothing is deferred there (a sum lowered at the end would overflow
      // outside any event); p's own closing overflows and fails p, as one by one.
      const bottom = await compare(async (store) => {
        for (const [id, amount] of [['q', 1n], ['p', 10n], ['m1', 0n], ['m2', 0n]] as const) await hold(store, id, 'a', amount);
        await store.settle('m1', 'a', MIN + 1n, 60_000); // held 11 → −2^63 + 12
        await store.settle('m2', 'a', -7n, 60_000); // → −2^63 + 5
        assert.equal((await store.get('a')).held, MIN + 5n);
      }, [['q', 'a', 1n], ['p', 'a', 10n], ['c0', 'c', 0n]]);
      assert.deepEqual(bottom.batched, ['applied', 'failed']);
      assert.equal(await redis.get(`${bottom.prefix}held:{a}`), (MIN + 4n).toString());
    });

    test('admission (balance, five spend windows, clamp, overdraft, hold) is one Redis round trip', async (t) => {
      const prefix = `test:${randomUUID()}:`;
      const client = new Redis(url);
      t.after(async () => { await deletePrefix(redis, prefix); await client.quit(); });
      const store = new RedisBalanceStore({ redis: client, prefix });
      await store.applyLedger({
        type: 'ledger', event_id: 'credit:a:1', ts: 0, account_id: 'a', kind: 'grant', amount_micros: '10000000', reference: '1',
      });
      const windows = (['key_hourly', 'key_daily', 'key_total', 'account_daily', 'account_monthly'] as const)
        .map((name) => ({ name, limit: 1_000_000_000n }));
      const admission = { policy: 'clamp' as const, base: 144_000n, segments: [{ perOutputToken: 360n, tokens: null }], maxTokens: 64_000, floorTokens: 1_024 };
      const hold = (i: number) => store.hold({ holdId: `r${i}`, accountId: 'a', keyId: 'k', amount: 23_184_000n, ttlMs: 60_000,
        overdraft: 0n, windows, admission });
      await hold(0); // loads the script (EVALSHA, then EVAL once on NOSCRIPT)
      // Count what the client sends: ioredis routes every command, scripts included, through sendCommand.
      const sent: string[] = [];
      const original = client.sendCommand.bind(client);
      client.sendCommand = ((command: { name: string }, ...rest: unknown[]) => {
        sent.push(command.name);
        return (original as (...a: unknown[]) => unknown)(command, ...rest);
      }) as typeof client.sendCommand;
      const r = await hold(1);
      assert.ok(r.ok === false); // the first hold took 9,999,720 of 10,000,000; 280 µc is below the floor
      await store.release('r0', 'a');
      const again = await hold(2);
      assert.deepEqual(again, { ok: true, amount: 9_999_720n, maxTokens: 27_377, available: 280n });
      assert.deepEqual(sent, ['evalsha', 'evalsha', 'evalsha']); // hold, release, hold
    });

    test('Redis unreachable: a hold rejects (the gateway answers 503, fail closed) and reserves nothing', async (t) => {
      const down = new Redis({ port: 1, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
      down.on('error', () => {});
      t.after(() => down.disconnect());
      const store = new RedisBalanceStore({ redis: down, prefix: `test:${randomUUID()}:` });
      // Refused before sending (no offline queue): said as such, so the gateway knows nothing was reserved.
      await assert.rejects(store.hold({ holdId: 'r', accountId: 'a', keyId: 'k', amount: 1n, ttlMs: 1_000,
        windows: [{ name: 'key_hourly', limit: 10n }] }), StoreNotReadyError);
    });

    test('close() leaves the caller\'s client open', async () => {
      const store = new RedisBalanceStore({ redis, prefix: `test:${randomUUID()}:` });
      await store.close();
      assert.equal(await redis.ping(), 'PONG');
    });
  });
}
