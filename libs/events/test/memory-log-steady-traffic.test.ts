// The in-process log under steady publishing (embedded mode with traffic): `drain` waits for
// what was published before the call, not for a quiet moment that never comes (a report or
// `reconcile` waited minutes under 6 concurrent requests; a tester's finding), and `quiesce`
// holds every group at one point while a reader compares them (reconcile's hot state against
// the warehouse), then lets them go on with nothing lost or doubled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryLog, type ConsumedEvent, type LedgerEvent } from '@tollgate/events';

const grant = (i: number): LedgerEvent => ({
  type: 'ledger', event_id: `credit:a:${i}`, ts: i, account_id: 'a', kind: 'grant', amount_micros: String(i), reference: String(i),
});
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Publishes one event every millisecond until stopped; `count()` is how many were published. */
function steadyPublisher(log: MemoryLog) {
  let n = 0;
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      await log.publish('ledger', [{ event: grant(n) }]);
      n++;
      await tick(1);
    }
  })();
  return { count: () => n, stop: async () => { stopped = true; await done; } };
}

/** A group that takes `ms` per batch and records the offsets it consumed. */
async function slowGroup(log: MemoryLog, group: string, ms: number): Promise<bigint[]> {
  const seen: bigint[] = [];
  await log.subscribe({
    group, topics: ['ledger'],
    handler: async (batch: ConsumedEvent[]) => { await tick(ms); for (const e of batch) seen.push(e.offset); },
  });
  return seen;
}

test('steady traffic: drain resolves once everything published before the call is consumed, while publishing goes on', { timeout: 60_000 }, async () => {
  const log = new MemoryLog({ maxBatch: 3 });
  const seen = await slowGroup(log, 'warehouse', 5);
  const publisher = steadyPublisher(log);
  await tick(50);
  const before = publisher.count();
  await log.drain(); // before the change: resolved only when the group was idle, i.e. never here
  const consumed = new Set(seen);
  for (let i = 0; i < before; i++) assert.ok(consumed.has(BigInt(i)), `offset ${i}, published before drain, was consumed`);
  assert.equal(publisher.count() > before, true, 'publishing went on during the drain');
  await publisher.stop();
  await log.close();
  assert.deepEqual(seen, Array.from({ length: publisher.count() }, (_, i) => BigInt(i)), 'each event once, in order');
});

test('steady traffic: quiesce runs its reader with every group at the same offset, holds delivery meanwhile, then resumes with nothing lost or doubled', { timeout: 60_000 }, async () => {
  const log = new MemoryLog({ maxBatch: 4 });
  const fast = await slowGroup(log, 'ledger', 0);
  const slow = await slowGroup(log, 'warehouse', 7);
  const publisher = steadyPublisher(log);
  await tick(60);
  const before = publisher.count();
  const inside = await log.quiesce(async () => {
    const at = { fast: fast.length, slow: slow.length, published: publisher.count() };
    await tick(40); // published meanwhile, not delivered to anyone
    return { ...at, fastAfter: fast.length, slowAfter: slow.length, publishedAfter: publisher.count() };
  });
  assert.equal(inside.fast, inside.slow, 'both groups at one point');
  assert.ok(inside.fast >= before, 'at least what was published before the call');
  assert.ok(inside.publishedAfter > inside.fast, 'publishing went on');
  assert.equal(inside.fastAfter, inside.fast, 'nothing delivered to the fast group while held');
  assert.equal(inside.slowAfter, inside.slow, 'nothing delivered to the slow group while held');
  await publisher.stop();
  await log.close();
  const all = Array.from({ length: publisher.count() }, (_, i) => BigInt(i));
  assert.deepEqual(fast, all);
  assert.deepEqual(slow, all);
});
