import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LedgerEvent } from '@tollgate/events';
import { MemoryBalanceStore } from '@tollgate/ledger';
import { balanceStoreContract } from './balance-store.contract.ts';
import { admissionContract } from './admission.contract.ts';

balanceStoreContract('memory', async () => ({ store: new MemoryBalanceStore(), cleanup: async () => {} }));

admissionContract('memory', async (now) => ({ store: new MemoryBalanceStore({ now }), cleanup: async () => {} }));

// Expiry is checked lazily (`#earliestExpiry`, a lower bound per account): a hold whose expiry
// is moved earlier by settle, or later by extend, must still expire exactly when it is due.
test('memory: hold expiry follows every change of a hold\'s expiry (settle shortens, extend lengthens), with other holds live', async () => {
  const clock = { t: 1_000_000 };
  const store = new MemoryBalanceStore({ now: () => clock.t });
  const acct = 'acct-expiry';
  const grant: LedgerEvent = { type: 'ledger', event_id: 'grant-1', ts: 0, account_id: acct, kind: 'grant', amount_micros: '1000', reference: 'grant-1' };
  assert.equal(await store.applyLedger(grant), 'applied');
  const hold = (holdId: string, amount: bigint, ttlMs: number) => store.hold({ holdId, accountId: acct, keyId: 'k', amount, ttlMs });
  assert.equal((await hold('a', 100n, 10_000)).ok, true);
  assert.equal((await hold('b', 200n, 20_000)).ok, true);
  assert.equal((await hold('c', 300n, 30_000)).ok, true);
  // b's expiry moves earlier than every other (settled at 150 µc, 50 ms to live); a's moves later.
  await store.settle('b', acct, 150n, 50);
  await store.extend('a', acct, 40_000);
  clock.t += 49;
  assert.deepEqual(await store.get(acct), { balance: 1_000n, held: 550n, available: 450n });
  clock.t += 1; // b is due
  assert.deepEqual(await store.get(acct), { balance: 1_000n, held: 400n, available: 600n });
  clock.t += 29_950 - 1; // c (1,030,000) not yet
  assert.deepEqual(await store.get(acct), { balance: 1_000n, held: 400n, available: 600n });
  clock.t += 1; // c is due, a (extended to 1,040,000) is not
  assert.deepEqual(await store.get(acct), { balance: 1_000n, held: 100n, available: 900n });
  clock.t = 1_040_000;
  assert.deepEqual(await store.get(acct), { balance: 1_000n, held: 0n, available: 1_000n });
  // a new hold after all expired starts a fresh bound
  assert.equal((await hold('d', 10n, 5)).ok, true);
  clock.t += 5;
  assert.deepEqual(await store.get(acct), { balance: 1_000n, held: 0n, available: 1_000n });
});
