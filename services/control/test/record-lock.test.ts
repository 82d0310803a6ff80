// The record lock of the control API (record-lock.ts): changes of one record run one at a time,
// across control processes sharing a store and within one; others run side by side; a lock held
// elsewhere past the wait answers 503 overloaded_error; a failed change gives the lock up; a
// change that outlived its lock writes nothing (the fence); a wait in this process's own queue
// counts against the wait; an acquire that failed on the client but landed is given back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBalanceStore } from '@tollgate/ledger';
import { GatewayError } from '@tollgate/anthropic';
import { recordExclusive } from '../src/record-lock.ts';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('record lock: changes of one record never overlap, in one process or two sharing the store; other records run beside them', async () => {
  const store = new MemoryBalanceStore();
  const processes = [recordExclusive(store), recordExclusive(store)];
  const inside = new Map<string, number>();
  const most = new Map<string, number>();
  const order: string[] = [];
  const change = (p: number, record: string, label: string) => processes[p]!(record, async () => {
    inside.set(record, (inside.get(record) ?? 0) + 1);
    most.set(record, Math.max(most.get(record) ?? 0, inside.get(record)!));
    order.push(`${record} ${label}`);
    await tick(15);
    inside.set(record, inside.get(record)! - 1);
    return label;
  });
  const started = Date.now();
  const results = await Promise.all([
    change(0, 'key:a', '0'), change(1, 'key:a', '1'), change(0, 'key:a', '2'), change(1, 'key:a', '3'),
    change(0, 'key:b', 'x'), change(1, 'plan:c', 'y'),
  ]);
  assert.deepEqual(results, ['0', '1', '2', '3', 'x', 'y']);
  assert.deepEqual(Object.fromEntries(most), { 'key:a': 1, 'key:b': 1, 'plan:c': 1 });
  // one process's changes of a record keep their arrival order
  const a = order.filter((o) => o.startsWith('key:a')).map((o) => o.slice(-1));
  assert.ok(a.indexOf('0') < a.indexOf('2') && a.indexOf('1') < a.indexOf('3'), a.join(','));
  // key:b and plan:c did not wait for key:a's four changes
  assert.ok(order.indexOf('key:b x') < 3 && order.indexOf('plan:c y') < 3, order.join(' | '));
  assert.ok(Date.now() - started >= 4 * 15);
});

test('record lock: held by another process past the wait: 503 overloaded_error with retry-after 1, and fn never runs', async () => {
  const store = new MemoryBalanceStore();
  assert.equal(await store.acquireLock('record:key:k', 60_000, 'elsewhere'), true);
  const exclusive = recordExclusive(store, store, { waitMs: 60 });
  let ran = false;
  const err = await exclusive('key:k', async () => { ran = true; }).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof GatewayError, String(err));
  assert.deepEqual([err.status, err.type, err.headers, err.message], [503, 'overloaded_error', { 'retry-after': '1' }, 'key k is being changed by another request for over 60 ms; retry']);
  assert.equal(ran, false);
  // the other holder's lock is untouched
  assert.equal(await store.acquireLock('record:key:k', 60_000), false);
});

test('record lock: a change that throws gives the lock up, and the next change of the record runs', async () => {
  const store = new MemoryBalanceStore();
  const exclusive = recordExclusive(store, store, { waitMs: 200 });
  await assert.rejects(exclusive('account:a', async () => { throw new Error('boom'); }), /boom/);
  assert.equal(await exclusive('account:a', async () => 'next'), 'next');
  assert.equal(await store.acquireLock('record:account:a', 1_000), true);
});

test('record lock fence: a change stalled past the lock\'s ttl is refused (503) before it writes, and the change made meanwhile stands', async () => {
  const store = new MemoryBalanceStore();
  const a = recordExclusive(store, store, { ttlMs: 50, waitMs: 1_000 });
  const b = recordExclusive(store, store, { ttlMs: 50, waitMs: 1_000 });
  let record = 'active';
  // A reads, then stalls past the ttl; B takes the lapsed lock, revokes and writes.
  const stalled = a('key:k', async (fence) => {
    const read = record;
    await tick(120);
    await fence();
    record = `${read} renamed`; // never reached
  }).then(() => undefined, (e: unknown) => e);
  await tick(70);
  await b('key:k', async (fence) => { await fence(); record = 'revoked'; });
  const err = await stalled;
  assert.ok(err instanceof GatewayError, String(err));
  assert.deepEqual([err.status, err.type, err.message], [503, 'overloaded_error', 'key k was not changed: this change took over 50 ms, and another may have been made meanwhile; retry']);
  assert.equal(record, 'revoked');
  // A fence in time holds the lock a ttl more for the write.
  await a('key:k', async (fence) => { await tick(30); await fence(); await tick(30); assert.equal(await store.acquireLock('record:key:k', 1_000, 'x'), false); });
});

test('record lock: the wait behind this process\'s own changes of the record counts: past waitMs the change is 503, not run late', async () => {
  const store = new MemoryBalanceStore();
  const exclusive = recordExclusive(store, store, { waitMs: 150 });
  const started = Date.now();
  const answers = await Promise.all([0, 1, 2, 3].map((i) => exclusive('key:q', async () => { await tick(100); return i; })
    .then((v) => `ok ${v}`, (e: unknown) => (e instanceof GatewayError ? `${e.status} ${e.type}` : String(e)))));
  assert.deepEqual(answers, ['ok 0', 'ok 1', '503 overloaded_error', '503 overloaded_error']);
  assert.ok(Date.now() - started < 400, 'the late ones were not run');
});

test('record lock: an acquire that failed on the client but landed in the store (a timeout) is given back through the direct store', async () => {
  const store = new MemoryBalanceStore();
  const flaky = {
    acquireLock: async (name: string, ttlMs: number, owner?: string) => {
      await store.acquireLock(name, ttlMs, owner);
      throw new Error('Command timed out');
    },
    releaseLock: store.releaseLock.bind(store),
    extendLock: store.extendLock.bind(store),
    lockOwner: store.lockOwner.bind(store),
  };
  const exclusive = recordExclusive(flaky, store);
  await assert.rejects(exclusive('account:t', async () => 'never'), /timed out/);
  await tick(1);
  assert.equal(await store.acquireLock('record:account:t', 1_000, 'next'), true, 'no lock left that nobody holds');
});

test('record lock behind mark: a change written ahead but not put in the directory refuses the next change (503) until the directory holds its version', async () => {
  const store = new MemoryBalanceStore();
  let directory = 5; // the version the key directory holds
  const exclusive = recordExclusive(store, store, { version: async () => directory });
  // A change whose put failed: on the log at version 9, the directory still at 5.
  await exclusive('key:b', async (fence) => { await fence(); await fence.behind(9); });
  let ran = false;
  const err = await exclusive('key:b', async () => { ran = true; }).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof GatewayError, String(err));
  assert.deepEqual([err.status, err.type, err.message, ran], [503, 'overloaded_error', 'key b was not changed: its last change is on the event log but not yet in the key directory (its Redis refused the write); retry once it is', false]);
  assert.equal(await store.acquireLock('record:key:b', 1_000, 'x'), true, 'the refused change gave its lock back');
  await store.releaseLock('record:key:b', 'x');
  // The ledger group put version 9 there: the next change runs, and the mark is gone.
  directory = 9;
  assert.equal(await exclusive('key:b', async () => 'ran'), 'ran');
  assert.equal(await store.lockOwner('record-behind:key:b'), null);
  // A newer mark replaces an older one.
  await exclusive('key:b', async (fence) => { await fence.behind(10); });
  await exclusive('key:b', async (fence) => { await fence.behind(12); }).catch(() => {});
  assert.equal(await store.lockOwner('record-behind:key:b'), '10', 'refused before it wrote: the mark stays');
});
