// tryWithLock (held-lock.ts): a lock held for a long operation is renewed while it runs (so a
// second caller cannot take it after ttlMs), given back by its owner only, and refused at once
// while another holds it; an acquire that failed on the client is given back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBalanceStore, tryWithLock } from '@tollgate/ledger';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('held lock: an operation three times longer than the ttl keeps its lock to the end; a second caller is refused meanwhile and gets it after', async () => {
  const store = new MemoryBalanceStore();
  const seen: string[] = [];
  const long = tryWithLock(store, 'close', 60, async () => {
    await tick(180);
    return 'closed';
  });
  for (const at of [30, 90, 150]) {
    await tick(at - (at === 30 ? 0 : 60));
    const other = await tryWithLock(store, 'close', 60, async () => 'second');
    seen.push(other.held ? 'taken' : 'refused');
  }
  assert.deepEqual(await long, { held: true, value: 'closed' });
  assert.deepEqual(seen, ['refused', 'refused', 'refused']);
  assert.deepEqual(await tryWithLock(store, 'close', 60, async () => 'second'), { held: true, value: 'second' });
});

test('held lock: a holder whose lock lapsed (frozen past the ttl) never frees the lock its successor took', async () => {
  const store = new MemoryBalanceStore();
  let successor: Promise<unknown> | undefined;
  // The holder's renewals cannot run while its event loop is blocked: a frozen process.
  const first = tryWithLock(store, 'repair', 40, async () => {
    const until = Date.now() + 100;
    while (Date.now() < until) { /* frozen */ }
    successor = tryWithLock(store, 'repair', 1_000, async () => { await tick(100); return 'mine'; });
    await tick(20);
  });
  await first;
  // the first one's release (by its owner token) left the successor's lock in place
  assert.equal(await store.acquireLock('repair', 1_000, 'third'), false);
  assert.deepEqual(await successor, { held: true, value: 'mine' });
  assert.equal(await store.acquireLock('repair', 1_000, 'third'), true);
});

test('held lock: an operation that throws gives the lock back; an acquire that failed on the client but landed is given back', async () => {
  const store = new MemoryBalanceStore();
  await assert.rejects(tryWithLock(store, 'm', 1_000, async () => { throw new Error('boom'); }), /boom/);
  assert.equal(await store.acquireLock('m', 1_000, 'x'), true);
  await store.releaseLock('m', 'x');
  const flaky = {
    acquireLock: async (name: string, ttlMs: number, owner?: string) => { await store.acquireLock(name, ttlMs, owner); throw new Error('Command timed out'); },
    releaseLock: store.releaseLock.bind(store),
    extendLock: store.extendLock.bind(store),
  };
  await assert.rejects(tryWithLock(flaky, 'm', 1_000, async () => 'never'), /timed out/);
  await tick(1);
  assert.equal(await store.acquireLock('m', 1_000, 'y'), true);
});
