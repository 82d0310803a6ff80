// ApplyCoalescer: the ledger consumer's partition batches of one turn merged into one
// applyBatch call, each caller answered its own share. On the in-memory store everywhere and on
// a real Redis (skipped loudly without one); money exact to the µc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { ApplyCoalescer, MemoryBalanceStore, RedisBalanceStore, type BalanceStore, type BatchItem, type BatchOutcome } from '@tollgate/ledger';
import { requireRedis } from '../../../test/support/services.ts';
import { grantEvent, usageEvent } from '../../../test/support/events.ts';
import { MAX_MONEY_MICROS } from '@tollgate/events';

/** A usage debit of `cost` µc at `offset` of usage partition `partition`. */
function debit(id: string, account: string, cost: string, partition: number, offset: bigint): BatchItem {
  return { event: usageEvent(id, account, { cost_micros: cost }), position: { topic: 'usage', partition, offset } };
}

/** A credit grant of `amount` µc at `offset` of ledger partition `partition`. */
function credit(account: string, reference: string, amount: string, partition: number, offset: bigint): BatchItem {
  return { event: grantEvent(account, reference, amount), position: { topic: 'ledger', partition, offset } };
}

/** The store with every applyBatch call's size recorded. */
function counted(store: BalanceStore): { store: BalanceStore; calls: number[] } {
  const calls: number[] = [];
  const applyBatch = store.applyBatch.bind(store);
  return {
    calls,
    store: Object.assign(Object.create(store) as BalanceStore, {
      applyBatch: (items: BatchItem[], o?: { balanceAfter?: boolean }) => {
        calls.push(items.length);
        return applyBatch(items, o);
      },
    }),
  };
}

const verdicts = (o: BatchOutcome[]) => o.map((x) => x.verdict);

/** Each case on the memory store and on Redis; `prefix` a fresh key prefix (removed after). */
function bothStores(name: string, body: (store: BalanceStore) => Promise<void>): void {
  test(`${name} (memory store)`, async () => {
    await body(new MemoryBalanceStore());
  });
  test(`${name} (Redis)`, async (t) => {
    const url = await requireRedis(t);
    if (!url) return;
    const redis = new Redis(url);
    const prefix = `test:coalesce:${randomUUID().slice(0, 8)}:`;
    try {
      await body(new RedisBalanceStore({ redis, prefix }));
    } finally {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    }
  });
}

bothStores('coalescing: the calls of one turn go as ONE store call, each caller answered its own events in order', async (base) => {
  await base.load({ balances: new Map([['a', 1000n], ['b', 500n], ['c', 0n]]), ledgerEntries: new Map() });
  const { store, calls } = counted(base);
  const coalescer = new ApplyCoalescer(store);
  const [a, b, c] = await Promise.all([
    coalescer.apply([debit('a1', 'a', '100', 0, 0n), debit('a2', 'a', '250', 0, 1n)]),
    coalescer.apply([debit('b1', 'b', '70', 1, 0n)]),
    coalescer.apply([debit('c1', 'c', '5', 2, 0n), debit('c2', 'c', '6', 2, 1n), debit('c3', 'c', '7', 2, 2n)]),
  ]);
  assert.deepEqual(calls, [6]);
  assert.deepEqual([verdicts(a), verdicts(b), verdicts(c)], [['applied', 'applied'], ['applied'], ['applied', 'applied', 'applied']]);
  assert.equal((await base.get('a')).balance, 650n); // 1000 − 100 − 250
  assert.equal((await base.get('b')).balance, 430n); // 500 − 70
  assert.equal((await base.get('c')).balance, -18n); // − 5 − 6 − 7
  // A later turn is a call of its own.
  assert.deepEqual(verdicts(await coalescer.apply([debit('b2', 'b', '30', 1, 1n)])), ['applied']);
  assert.deepEqual(calls, [6, 1]);
  assert.equal((await base.get('b')).balance, 400n);
});

bothStores('coalescing stop: an event that stops the merged call answers its caller up to it; a caller after it gets no outcome and its next call applies its events once', async (base) => {
  // `rich` sits 10 µc below the money bound (2^53 − 1): a grant of 100 is out of range, refused.
  const richStart = MAX_MONEY_MICROS - 10n;
  await base.load({ balances: new Map([['a', 1000n], ['rich', richStart], ['b', 0n]]), ledgerEntries: new Map() });
  const { store, calls } = counted(base);
  const coalescer = new ApplyCoalescer(store);
  const first = [credit('a', 'r1', '100', 0, 0n), credit('rich', 'r2', '100', 0, 1n), credit('a', 'r3', '200', 0, 2n)];
  const second = [debit('b1', 'b', '50', 1, 0n), debit('b2', 'b', '25', 1, 1n)];
  const [x, y] = await Promise.all([coalescer.apply(first), coalescer.apply(second)]);
  assert.deepEqual(calls, [5]);
  assert.deepEqual(verdicts(x), ['applied', 'out_of_range']);
  assert.deepEqual(y, []);
  assert.equal((await base.get('b')).balance, 0n); // nothing of the second caller applied yet
  // The first caller sets its stop aside (as the consumer does: the position moves past it),
  // then each goes on with its rest: merged again, all applied, nothing twice.
  await base.quarantine({ event_id: 'credit:rich:r2', topic: 'ledger', partition: 0, offset: 1n, kind: 'apply_failed', reason: 'balance_out_of_range' },
    first[1]!.position, 'rich');
  const [x2, y2] = await Promise.all([coalescer.apply(first.slice(2)), coalescer.apply(second)]);
  assert.deepEqual(calls, [5, 3]);
  assert.deepEqual([verdicts(x2), verdicts(y2)], [['applied'], ['applied', 'applied']]);
  assert.equal((await base.get('a')).balance, 1300n); // 1000 + 100 + 200
  assert.equal((await base.get('b')).balance, -75n); // − 50 − 25
  assert.equal((await base.get('rich')).balance, richStart);
});

bothStores('coalescing limit: whole callers up to maxEvents per call, a caller\'s events never split, calls in order', async (base) => {
  await base.load({ balances: new Map([['a', 0n], ['b', 0n], ['c', 0n], ['d', 0n]]), ledgerEntries: new Map() });
  const { store, calls } = counted(base);
  const coalescer = new ApplyCoalescer(store, { maxEvents: 3 });
  const answers = await Promise.all([
    coalescer.apply([debit('a1', 'a', '1', 0, 0n), debit('a2', 'a', '2', 0, 1n)]),
    coalescer.apply([debit('b1', 'b', '3', 1, 0n), debit('b2', 'b', '4', 1, 1n)]),
    coalescer.apply([debit('c1', 'c', '5', 2, 0n)]),
    // bigger than maxEvents alone: one call of its own, whole
    coalescer.apply([debit('d1', 'd', '6', 3, 0n), debit('d2', 'd', '7', 3, 1n), debit('d3', 'd', '8', 3, 2n), debit('d4', 'd', '9', 3, 3n)]),
  ]);
  assert.deepEqual(calls, [2, 3, 4]);
  assert.deepEqual(answers.map(verdicts), [['applied', 'applied'], ['applied', 'applied'], ['applied'], ['applied', 'applied', 'applied', 'applied']]);
  assert.deepEqual(await Promise.all(['a', 'b', 'c', 'd'].map(async (id) => (await base.get(id)).balance)), [-3n, -7n, -5n, -30n]);
});

test('coalescing outage: a merged call that fails rejects every caller in it with the store\'s error (nothing answered, the log redelivers)', async () => {
  // A Redis client that never connects (nothing listens on port 1) and queues nothing: every call fails at once.
  const redis = new Redis({ host: '127.0.0.1', port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  const store = new RedisBalanceStore({ redis, prefix: 'test:coalesce:outage:' });
  const coalescer = new ApplyCoalescer(store);
  const results = await Promise.allSettled([
    coalescer.apply([debit('a1', 'a', '1', 0, 0n)]),
    coalescer.apply([debit('b1', 'b', '1', 1, 0n)]),
  ]);
  assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
  const reasons = results.map((r) => String((r as PromiseRejectedResult).reason));
  assert.equal(reasons[0], reasons[1]);
  assert.match(reasons[0]!, /enableOfflineQueue/);
  redis.disconnect();
});

test('coalescing outage, thrown: a store call that throws instead of rejecting rejects its callers, and the next group still goes', async () => {
  const base = new MemoryBalanceStore();
  await base.load({ balances: new Map([['b', 10n]]), ledgerEntries: new Map() });
  let calls = 0;
  const store = {
    applyBatch: (items: BatchItem[], o?: { balanceAfter?: boolean }) => {
      if (calls++ === 0) throw new Error('thrown, not rejected');
      return base.applyBatch(items, o);
    },
  };
  const coalescer = new ApplyCoalescer(store, { maxEvents: 1 });
  const [first, second] = await Promise.allSettled([
    coalescer.apply([debit('a1', 'a', '1', 0, 0n)]),
    coalescer.apply([debit('b1', 'b', '4', 1, 0n)]),
  ]);
  assert.equal(first.status, 'rejected');
  assert.match(String((first as PromiseRejectedResult).reason), /thrown, not rejected/);
  assert.deepEqual(second.status === 'fulfilled' ? verdicts(second.value) : second, ['applied']);
  assert.equal((await base.get('b')).balance, 6n);
});
