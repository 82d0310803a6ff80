// releaseUnanswered's own rules; its retries against a connection cut mid-reply are in
// redis-balance-store.test.ts ("unanswered hold").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBalanceStore, releaseUnanswered } from '@tollgate/ledger';

test('releaseUnanswered: a store that answers releases at once; a hold that does not exist is a no-op that counts as answered', async () => {
  const store = new MemoryBalanceStore();
  await store.applyLedger({ type: 'ledger', event_id: 'credit:a:1', ts: 0, account_id: 'a', kind: 'grant', amount_micros: '5000', reference: '1' });
  assert.equal((await store.hold({ holdId: 'h', accountId: 'a', keyId: 'k', amount: 2_000n, ttlMs: 60_000 })).ok, true);
  let failed = 0;
  assert.equal(await releaseUnanswered(store, 'h', 'a', { maxWaitMs: 1_000, onFailedTry: () => { failed++; } }), true);
  assert.equal(await releaseUnanswered(store, 'never-held', 'a', { maxWaitMs: 1_000 }), true);
  assert.equal(failed, 0);
  assert.deepEqual(await store.get('a'), { balance: 5_000n, held: 0n, available: 5_000n });
});

test('releaseUnanswered: bad retry options (no deadline, a zero pause that would spin on microtasks) are a RangeError before any try', async () => {
  const store = new MemoryBalanceStore();
  for (const options of [
    { maxWaitMs: NaN }, { maxWaitMs: Infinity }, { maxWaitMs: -1 },
    { maxWaitMs: 1_000, minDelayMs: 0 }, { maxWaitMs: 1_000, minDelayMs: 10, maxDelayMs: 5 }, { maxWaitMs: 1_000, maxDelayMs: Infinity },
  ]) {
    await assert.rejects(releaseUnanswered(store, 'h', 'a', options), RangeError, JSON.stringify(options));
  }
});
