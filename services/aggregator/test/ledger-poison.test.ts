// The ledger consumer against real Redis: an event Redis itself refuses to apply (the debit
// would overflow the signed 64-bit balance) is poison: quarantined as `apply_failed`, counted,
// and the events behind it are applied. An outage (the connection is gone) is not poison: the
// batch is retried and applied once Redis is back, nothing quarantined.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryLog, type UsageEvent } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore } from '@tollgate/ledger';
import { createMetrics } from '@tollgate/telemetry';
import { isPoisonError, startLedgerConsumer } from '@tollgate/aggregator';
import { requireRedis } from '../../../test/support/services.ts';
import { freePort } from '../../../test/support/cluster.ts';
import { usageEvent } from '../../../test/support/events.ts';

/** A usage event of `accountId` costing `cost` µc. */
function usage(eventId: string, accountId: string, cost: string): UsageEvent {
  return usageEvent(eventId, accountId, { cost_micros: cost });
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300 && !(await check()); i++) await new Promise((r) => setTimeout(r, 20));
}

test('a debit Redis refuses (int64 overflow) is quarantined as apply_failed; the events behind it are applied', async (t) => {
  const url = await requireRedis(t);
  if (!url) return;
  const redis = new Redis(url);
  const prefix = `test:${randomUUID()}:`;
  const store = new RedisBalanceStore({ redis, prefix });
  // A balance 10 µc above Int64's minimum: a debit of 100 cannot be stored.
  await store.load({ balances: new Map([['deep', -(2n ** 63n) + 10n], ['fine', 1000n]]), ledgerEntries: new Map() });
  const log = new MemoryLog();
  const metrics = createMetrics({ defaultMetrics: false });
  const seen: string[] = [];
  const sub = await startLedgerConsumer({ log, balances: store, keys: new MemoryKeyDirectory(), metrics, onQuarantined: (q) => seen.push(q.event_id) });
  try {
    await log.publish('usage', [{ event: usage('u-overflow', 'deep', '100') }, { event: usage('u-fine', 'fine', '250') }]);
    await log.drain();
    assert.equal((await store.get('fine')).balance, 750n);
    assert.equal((await store.get('deep')).balance, -(2n ** 63n) + 10n);
    const [q] = await store.quarantined();
    assert.deepEqual([q!.event_id, q!.kind, q!.topic], ['u-overflow', 'apply_failed', 'usage']);
    assert.match(q!.reason, /would overflow/);
    assert.deepEqual(seen, ['u-overflow']);
    assert.match(await metrics.scrape(), /tollgate_events_quarantined_total\{group="ledger",reason="apply_failed"\} 1\n/);
  } finally {
    await sub.stop();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
});

test('an outage is not poison: while Redis refuses the connection the batch is retried again and again, nothing quarantined', async (t) => {
  const url = await requireRedis(t);
  if (!url) return;
  const redis = new Redis(url);
  const prefix = `test:${randomUUID()}:`;
  // The consumer's own client points at a port nobody listens on: every call fails to connect.
  const closedPort = await freePort();
  const dead = new Redis({ host: '127.0.0.1', port: closedPort, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
  dead.on('error', () => {}); // the refused connects are the point of this test
  const errors: unknown[] = [];
  const store = new RedisBalanceStore({ redis: dead, prefix });
  const counted = new Proxy(store, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        try {
          return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } catch (err) {
          errors.push(err);
          throw err;
        }
      };
    },
  });
  const log = new MemoryLog();
  const sub = await startLedgerConsumer({ log, balances: counted, keys: new MemoryKeyDirectory() });
  try {
    await log.publish('usage', [{ event: usage('u-outage', 'acct', '40') }]);
    await until(async () => errors.length >= 2);
    assert.ok(errors.length >= 2, `retried: ${errors.length} attempts`);
    for (const err of errors) assert.equal(isPoisonError(err), false, String(err));
    // Nothing was quarantined or applied (read through a working client on the same prefix).
    const live = new RedisBalanceStore({ redis, prefix });
    assert.deepEqual(await live.quarantined(), []);
    assert.equal((await live.get('acct')).balance, 0n);
  } finally {
    await sub.stop();
    dead.disconnect();
    redis.disconnect();
  }
});
