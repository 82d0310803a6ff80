// The BalanceStore contract: every adapter (memory, Redis) runs this same suite. Money
// assertions are exact bigint micro-credits.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { LedgerEvent, UsageEvent } from '@tollgate/events';
import type { BalanceStore } from '@tollgate/ledger';

export interface BalanceStoreFixture {
  store: BalanceStore;
  cleanup(): Promise<void>;
}

const CREDIT = 1_000_000n; // micro-credits per credit
const HOUR = 3600_000;

function id(kind: string): string {
  return `${kind}-${randomUUID()}`;
}

function ledgerEvent(accountId: string, amount: bigint, eventId = id('credit')): LedgerEvent {
  return {
    type: 'ledger', event_id: eventId, ts: Date.now(), account_id: accountId,
    kind: amount >= 0n ? 'grant' : 'adjustment', amount_micros: amount.toString(), reference: eventId,
  };
}

/** A grant entry of `amount` µc (what claimReference claims). */
const grant = (amount: bigint) => ({ amount, kind: 'grant' as const });

function usageEvent(accountId: string, eventId: string, cost: bigint): UsageEvent {
  return {
    type: 'usage', event_id: eventId, ts: Date.now(), account_id: accountId, key_id: 'key-1',
    model: 'claude-test', catalog_model: 'claude-test', upstream_model: 'claude-test',
    input_tokens: 10, output_tokens: 20, cache_read_tokens: 0, cache_write_5m_tokens: 0,
    cache_write_1h_tokens: 0, cost_micros: cost.toString(), status: 'ok', http_status: 200,
    latency_ms: 5, ttft_ms: 1, stream: false, upstream_request_id: null, gateway_id: 'gw-test',
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function balanceStoreContract(name: string, make: () => Promise<BalanceStoreFixture>): void {
  // Each case gets a fresh store and always cleans up, even when an assertion fails.
  const it = (title: string, body: (store: BalanceStore) => Promise<void>) =>
    test(title, async () => {
      const { store, cleanup } = await make();
      try {
        await body(store);
      } finally {
        await store.close();
        await cleanup();
      }
    });

  async function funded(store: BalanceStore, amount: bigint): Promise<string> {
    const account = id('acct');
    assert.equal(await store.applyLedger(ledgerEvent(account, amount)), 'applied');
    return account;
  }

  const hold = (store: BalanceStore, accountId: string, amount: bigint, holdId = id('req'), ttlMs = HOUR) =>
    store.hold({ holdId, accountId, keyId: 'key-1', amount, ttlMs });

  describe(`BalanceStore contract: ${name}`, () => {
    it('an unknown account has nothing', async (store) => {
      assert.deepEqual(await store.get(id('acct')), { balance: 0n, held: 0n, available: 0n });
    });

    it('hold succeeds when available equals the amount, and reports what is left', async (store) => {
      const account = await funded(store, 10n * CREDIT);
      assert.deepEqual(await hold(store, account, 4n * CREDIT), { ok: true, available: 6n * CREDIT, amount: 4n * CREDIT });
      assert.deepEqual(await hold(store, account, 6n * CREDIT), { ok: true, available: 0n, amount: 6n * CREDIT });
      assert.deepEqual(await store.get(account), { balance: 10n * CREDIT, held: 10n * CREDIT, available: 0n });
    });

    it('bad hold lifetime: hold, settle and extend refuse a ttlMs that is NaN, ±Infinity or negative with a RangeError and change nothing', async (store) => {
      const account = await funded(store, 10n * CREDIT);
      const held = id('req');
      assert.deepEqual(await hold(store, account, 2n * CREDIT, held), { ok: true, available: 8n * CREDIT, amount: 2n * CREDIT });
      for (const ttlMs of [NaN, Infinity, -Infinity, -1]) {
        await assert.rejects(hold(store, account, CREDIT, id('req'), ttlMs), RangeError);
        await assert.rejects(store.settle(held, account, CREDIT, ttlMs), RangeError);
        await assert.rejects(store.extend(held, account, ttlMs), RangeError);
      }
      assert.deepEqual(await store.get(account), { balance: 10n * CREDIT, held: 2n * CREDIT, available: 8n * CREDIT });
      await store.extend(held, account, HOUR);
      await store.settle(held, account, CREDIT, HOUR);
      assert.deepEqual(await store.get(account), { balance: 10n * CREDIT, held: CREDIT, available: 9n * CREDIT });
    });

    it('hold fails one micro-credit above available and changes nothing', async (store) => {
      const account = await funded(store, 10n * CREDIT);
      assert.deepEqual(await hold(store, account, 3n * CREDIT), { ok: true, available: 7n * CREDIT, amount: 3n * CREDIT });
      assert.deepEqual(await hold(store, account, 7n * CREDIT + 1n),
        { ok: false, reason: 'insufficient_credits', available: 7n * CREDIT, required: 7n * CREDIT + 1n });
      assert.deepEqual(await store.get(account), { balance: 10n * CREDIT, held: 3n * CREDIT, available: 7n * CREDIT });
      // The boundary itself still fits after the refusal.
      assert.deepEqual(await hold(store, account, 7n * CREDIT), { ok: true, available: 0n, amount: 7n * CREDIT });
    });

    it('hold fails on a zero balance even for amount 0, and on a negative balance', async (store) => {
      const empty = id('acct');
      assert.deepEqual(await hold(store, empty, 0n), { ok: false, reason: 'insufficient_credits', available: 0n, required: 0n });
      const zeroed = await funded(store, 5n);
      await store.applyLedger(ledgerEvent(zeroed, -5n));
      assert.deepEqual(await hold(store, zeroed, 0n), { ok: false, reason: 'insufficient_credits', available: 0n, required: 0n });
      const debt = await funded(store, 5n);
      await store.applyUsage(usageEvent(debt, id('req'), 8n));
      assert.deepEqual(await hold(store, debt, 0n), { ok: false, reason: 'insufficient_credits', available: -3n, required: 0n });
      assert.deepEqual(await store.get(empty), { balance: 0n, held: 0n, available: 0n });
    });

    it('a positive balance allows a zero-cost hold', async (store) => {
      const account = await funded(store, 1n);
      assert.deepEqual(await hold(store, account, 0n), { ok: true, available: 1n, amount: 0n });
    });

    it('accounts do not share credit', async (store) => {
      const a = await funded(store, 5n);
      const b = await funded(store, 7n);
      assert.equal((await hold(store, a, 5n)).ok, true);
      assert.deepEqual(await hold(store, b, 7n), { ok: true, available: 0n, amount: 7n });
      assert.deepEqual(await store.get(a), { balance: 5n, held: 5n, available: 0n });
    });

    it('settle shrinks a hold to the actual cost', async (store) => {
      const account = await funded(store, 100n);
      const holdId = id('req');
      await hold(store, account, 60n, holdId);
      await store.settle(holdId, account, 25n, 60_000);
      assert.deepEqual(await store.get(account), { balance: 100n, held: 25n, available: 75n });
      // The settled hold still reserves exactly its new amount.
      assert.deepEqual(await hold(store, account, 76n),
        { ok: false, reason: 'insufficient_credits', available: 75n, required: 76n });
      assert.deepEqual(await hold(store, account, 75n), { ok: true, available: 0n, amount: 75n });
    });

    it('settle of an unknown hold is a no-op', async (store) => {
      const account = await funded(store, 100n);
      await store.settle(id('req'), account, 40n, 60_000);
      assert.deepEqual(await store.get(account), { balance: 100n, held: 0n, available: 100n });
    });

    it('release drops a hold and a second release is a no-op', async (store) => {
      const account = await funded(store, 100n);
      const keep = id('req');
      const drop = id('req');
      await hold(store, account, 30n, keep);
      await hold(store, account, 50n, drop);
      await store.release(drop, account);
      assert.deepEqual(await store.get(account), { balance: 100n, held: 30n, available: 70n });
      await store.release(drop, account);
      await store.release(id('req'), account);
      assert.deepEqual(await store.get(account), { balance: 100n, held: 30n, available: 70n });
    });

    it('applyUsage debits the exact cost and closes the hold of the same id', async (store) => {
      const account = await funded(store, 1_000n);
      const other = id('req');
      const requestId = id('req');
      await hold(store, account, 400n, other);
      await hold(store, account, 300n, requestId);
      assert.equal(await store.applyUsage(usageEvent(account, requestId, 123n)), 'applied');
      assert.deepEqual(await store.get(account), { balance: 877n, held: 400n, available: 477n });
      // The closed hold cannot be settled back into existence.
      await store.settle(requestId, account, 50n, 60_000);
      assert.deepEqual(await store.get(account), { balance: 877n, held: 400n, available: 477n });
    });

    it('applyUsage without a hold still debits', async (store) => {
      const account = await funded(store, 1_000n);
      assert.equal(await store.applyUsage(usageEvent(account, id('req'), 1_001n)), 'applied');
      assert.deepEqual(await store.get(account), { balance: -1n, held: 0n, available: -1n });
    });

    it('a duplicate applyUsage is a no-op', async (store) => {
      const account = await funded(store, 1_000n);
      const requestId = id('req');
      await hold(store, account, 300n, requestId);
      const event = usageEvent(account, requestId, 200n);
      assert.equal(await store.applyUsage(event), 'applied');
      assert.equal(await store.applyUsage(event), 'duplicate');
      assert.equal(await store.applyUsage({ ...event, cost_micros: '999' }), 'duplicate');
      assert.deepEqual(await store.get(account), { balance: 800n, held: 0n, available: 800n });
    });

    it('a duplicate applyLedger is a no-op and ledgerEntry returns the first entry, amount and kind', async (store) => {
      const account = id('acct');
      const eventId = id('credit');
      assert.equal(await store.ledgerEntry(eventId, account), undefined);
      assert.equal(await store.applyLedger(ledgerEvent(account, 500n, eventId)), 'applied');
      assert.equal(await store.applyLedger(ledgerEvent(account, 500n, eventId)), 'duplicate');
      assert.equal(await store.applyLedger(ledgerEvent(account, 900n, eventId)), 'duplicate');
      assert.equal(await store.applyLedger({ ...ledgerEvent(account, 500n, eventId), kind: 'refund' }), 'duplicate');
      assert.deepEqual(await store.ledgerEntry(eventId, account), { amount: 500n, kind: 'grant' });
      const refund = id('credit');
      assert.equal(await store.applyLedger(ledgerEvent(account, -120n, refund)), 'applied');
      assert.deepEqual(await store.ledgerEntry(refund, account), { amount: -120n, kind: 'adjustment' });
      assert.deepEqual(await store.get(account), { balance: 380n, held: 0n, available: 380n });
      // Every kind is kept as it was applied (the batch path included).
      const kinds = ['grant', 'top_up', 'refund', 'adjustment'] as const;
      const ids = kinds.map(() => id('credit'));
      assert.deepEqual((await store.applyBatch(kinds.map((kind, i) => ({ event: { ...ledgerEvent(account, 1n, ids[i]), kind } })))).map((o) => o.verdict),
        ['applied', 'applied', 'applied', 'applied']);
      for (const [i, kind] of kinds.entries()) assert.deepEqual(await store.ledgerEntry(ids[i]!, account), { amount: 1n, kind });
      assert.deepEqual(await store.get(account), { balance: 384n, held: 0n, available: 384n });
    });

    it('waitApplied resolves true for applied ledger and usage events', async (store) => {
      const account = id('acct');
      const credit = ledgerEvent(account, 10n);
      await store.applyLedger(credit);
      assert.equal(await store.waitApplied(credit.event_id, 1_000, credit.account_id), true);
      const usage = usageEvent(account, id('req'), 3n);
      await store.applyUsage(usage);
      assert.equal(await store.waitApplied(usage.event_id, 1_000, account), true);
    });

    it('waitApplied resolves true when the event is applied while waiting', async (store) => {
      const credit = ledgerEvent(id('acct'), 10n);
      const waiting = store.waitApplied(credit.event_id, 5_000, credit.account_id);
      await sleep(30);
      await store.applyLedger(credit);
      assert.equal(await waiting, true);
    });

    it('waitApplied resolves false on timeout', async (store) => {
      assert.equal(await store.waitApplied(id('never'), 60), false);
    });

    it('an expired hold stops counting', async (store) => {
      const account = await funded(store, 100n);
      // (a ttl a loaded machine's next round trip cannot outlast: 50 ms did once in a while)
      await hold(store, account, 70n, id('req'), 500);
      assert.deepEqual(await hold(store, account, 31n),
        { ok: false, reason: 'insufficient_credits', available: 30n, required: 31n });
      await sleep(600);
      assert.deepEqual(await store.get(account), { balance: 100n, held: 0n, available: 100n });
      assert.deepEqual(await hold(store, account, 100n), { ok: true, available: 0n, amount: 100n });
    });

    it('settle keeps the settled cost reserved for a new ttl (until its usage event closes it)', async (store) => {
      const account = await funded(store, 100n);
      const h = id('req');
      await hold(store, account, 70n, h, 50);
      await store.settle(h, account, 40n, 60_000);
      await sleep(120); // past the first expiry
      assert.deepEqual(await store.get(account), { balance: 100n, held: 40n, available: 60n });
      assert.equal(await store.applyUsage(usageEvent(account, h, 40n)), 'applied');
      assert.deepEqual(await store.get(account), { balance: 60n, held: 0n, available: 60n });
    });

    it('extend keeps a long request\'s hold alive; a gone hold is not recreated', async (store) => {
      const account = await funded(store, 100n);
      const h = id('req');
      await hold(store, account, 70n, h, 50);
      await store.extend(h, account, 60_000);
      await sleep(120);
      assert.deepEqual(await store.get(account), { balance: 100n, held: 70n, available: 30n });
      await store.release(h, account);
      await store.extend(h, account, 60_000);
      assert.deepEqual(await store.get(account), { balance: 100n, held: 0n, available: 100n });
    });

    it('an expired hold is released by the next hold on its account', async (store) => {
      const account = await funded(store, 100n);
      await hold(store, account, 100n, id('req'), 50);
      await sleep(120);
      assert.deepEqual(await hold(store, account, 100n), { ok: true, available: 0n, amount: 100n });
      assert.deepEqual(await store.get(account), { balance: 100n, held: 100n, available: 0n });
    });

    it('load replaces every balance and the ledger entries, and leaves holds', async (store) => {
      const kept = await funded(store, 10n);
      const dropped = await funded(store, 20n);
      const added = id('acct');
      const oldEntry = id('credit');
      await store.applyLedger(ledgerEvent(kept, 5n, oldEntry));
      const holdId = id('req');
      await hold(store, kept, 4n, holdId);

      const loadedEntry = id('credit');
      await store.load({
        balances: new Map([[kept, 1_000n], [added, 7n]]),
        ledgerEntries: new Map([[loadedEntry, { amount: 1_007n, kind: 'grant' as const }]]),
        eventAccounts: new Map([[loadedEntry, added]]),
      });

      assert.deepEqual(await store.balances(), new Map([[kept, 1_000n], [added, 7n]]));
      assert.deepEqual(await store.get(dropped), { balance: 0n, held: 0n, available: 0n });
      assert.deepEqual(await store.get(kept), { balance: 1_000n, held: 4n, available: 996n });
      assert.equal(await store.ledgerEntry(oldEntry, kept), undefined);
      assert.deepEqual(await store.ledgerEntry(loadedEntry, added), { amount: 1_007n, kind: 'grant' });
      assert.equal(await store.applyLedger(ledgerEvent(added, 1_007n, loadedEntry)), 'duplicate');
      assert.deepEqual(await store.get(added), { balance: 7n, held: 0n, available: 7n });
      // The hold survived the load and still closes with its usage.
      await store.applyUsage(usageEvent(kept, holdId, 3n));
      assert.deepEqual(await store.get(kept), { balance: 997n, held: 0n, available: 997n });
    });

    it('rebuild voids the usage id markers of effects it discarded: the replayed usage debits again, a snapshot usage id stays a duplicate', async (store) => {
      const account = id('acct');
      const inSnapshot = id('req');
      // The warehouse snapshot at usage:0 = -1 (nothing of the partition yet); it knows one usage
      // id from another partition.
      const snapshot = {
        balances: new Map([[account, 1_000_000n]]), ledgerEntries: new Map(), positions: new Map([['usage:0', -1n]]),
        usageIds: [inSnapshot], eventAccounts: new Map([[inSnapshot, account]]),
      };
      await store.load(snapshot);
      const replayed = usageEvent(account, id('req'), 250_000n);
      assert.equal(await store.applyUsage(replayed, { topic: 'usage', partition: 0, offset: 0n }), 'applied');
      assert.deepEqual(await store.get(account), { balance: 750_000n, held: 0n, available: 750_000n });
      // Rebuilt at the same snapshot (the warehouse has not got offset 0 yet): the debit is gone.
      await store.load(snapshot);
      assert.deepEqual(await store.get(account), { balance: 1_000_000n, held: 0n, available: 1_000_000n });
      // The consumer re-reads offset 0: the rebuilt state never saw it, so it must debit again.
      assert.equal(await store.applyUsage(replayed, { topic: 'usage', partition: 0, offset: 0n }), 'applied');
      assert.deepEqual(await store.get(account), { balance: 750_000n, held: 0n, available: 750_000n });
      // A re-send of an event the snapshot holds, at a new offset, is still a duplicate.
      assert.equal(await store.applyUsage(usageEvent(account, inSnapshot, 1_000n), { topic: 'usage', partition: 0, offset: 1n }), 'duplicate');
      assert.deepEqual(await store.get(account), { balance: 750_000n, held: 0n, available: 750_000n });
    });

    it('balances lists every account exactly', async (store) => {
      const a = await funded(store, 3n);
      const b = await funded(store, 2n ** 53n - 1n);
      await store.applyUsage(usageEvent(b, id('req'), 1n));
      assert.deepEqual(await store.balances(), new Map([[a, 3n], [b, 2n ** 53n - 2n]]));
    });

    it('amounts up to the 2^53 − 1 bound stay exact', async (store) => {
      const max = 2n ** 53n - 1n; // the largest integer a double holds exactly, and the money bound
      const account = await funded(store, max);
      const h = id('req');
      assert.deepEqual(await hold(store, account, max - 2n, h), { ok: true, available: 2n, amount: max - 2n });
      assert.deepEqual(await hold(store, account, 3n), { ok: false, reason: 'insufficient_credits', available: 2n, required: 3n });
      await store.settle(h, account, max - 1n, 60_000);
      assert.deepEqual(await store.get(account), { balance: max, held: max - 1n, available: 1n });
      await store.applyUsage(usageEvent(account, h, max - 3n));
      assert.deepEqual(await store.get(account), { balance: 3n, held: 0n, available: 3n });
      const entry = id('credit');
      await store.applyLedger(ledgerEvent(account, -max, entry));
      assert.deepEqual(await store.ledgerEntry(entry, account), { amount: -max, kind: 'adjustment' });
      assert.deepEqual(await store.balances(), new Map([[account, 3n - max]]));
    });

    it('a ledger event that would take the balance outside ±(2^53 − 1) is not applied: out_of_range', async (store) => {
      const max = 2n ** 53n - 1n;
      // 9,007,199,253.740991 credits: one credit below the bound, as in the overflow race.
      const account = await funded(store, max - CREDIT);
      const results: string[] = [];
      for (let i = 0; i < 10; i++) results.push(await store.applyLedger(ledgerEvent(account, 200_000n, `race-${account}-${i}`)));
      // 5 × 0.2 credit reach the bound exactly; the other 5 would pass it.
      assert.deepEqual(results, ['applied', 'applied', 'applied', 'applied', 'applied',
        'out_of_range', 'out_of_range', 'out_of_range', 'out_of_range', 'out_of_range']);
      assert.equal((await store.get(account)).balance, max);
      assert.equal(await store.ledgerEntry(`race-${account}-5`, account), undefined);
      // Below: a debit past −(2^53 − 1) is refused; one that lands on it exactly is applied.
      const low = await funded(store, 1n);
      assert.equal(await store.applyLedger(ledgerEvent(low, -max - 2n)), 'out_of_range'); // 1 − max − 2 = −max − 1
      assert.equal(await store.applyLedger(ledgerEvent(low, -max)), 'applied');
      assert.equal((await store.get(low)).balance, 1n - max);
      assert.equal(await store.applyLedger(ledgerEvent(low, -2n)), 'out_of_range');
      assert.equal((await store.get(low)).balance, 1n - max);
    });

    it('refusals across a rebuild: load with refusals replaces them (a refused reference stays refused, not applied), without leaves them', async (store) => {
      const account = id('acct');
      const refused = `credit:${account}:refused`;
      const old = `credit:${account}:old-refusal`;
      const reason = `balance_out_of_range: 5 micro-credits would take the balance of ${account} outside ±9007199254740991 micro-credits`;
      await store.quarantine({ event_id: old, topic: 'ledger', partition: -1, offset: -1n, kind: 'apply_failed', reason: 'old' }, undefined, account);
      const base = { balances: new Map([[account, 10n]]), ledgerEntries: new Map(), positions: new Map([['ledger:0', 3n]]), eventAccounts: new Map([[refused, account], [old, account]]) };
      await store.load({ ...base, refusals: new Map([[refused, reason]]) });
      assert.equal(await store.quarantineReason(refused, account), reason);
      assert.equal(await store.quarantineReason(old, account), undefined);
      assert.equal(await store.ledgerEntry(refused, account), undefined);
      assert.deepEqual(await store.claimReference(refused, grant(5n), HOUR, account), { claimed: false, refused: reason });
      assert.equal(await store.waitApplied(refused, 1_000, account), false);
      await store.load(base); // no refusals given: the store's stay
      assert.equal(await store.quarantineReason(refused, account), reason);
      await store.load({ ...base, refusals: new Map() });
      assert.equal(await store.quarantineReason(refused, account), undefined);
      assert.deepEqual(await store.get(account), { balance: 10n, held: 0n, available: 10n });
    });

    it('a quarantined ledger event wakes its waiter with false, keeps its reason, and its reference stays refused', async (store) => {
      const account = id('acct');
      const entry = `credit:${account}:ref-refused`;
      assert.deepEqual(await store.claimReference(entry, grant(5n), HOUR, account), { claimed: true });
      const waiting = store.waitApplied(entry, 5_000, account);
      const reason = 'balance_out_of_range: 5 micro-credits would take the balance outside the bound';
      assert.equal(await store.quarantine({ event_id: entry, topic: 'ledger', partition: -1, offset: -1n, kind: 'apply_failed', reason }, undefined, account), 'applied');
      assert.equal(await waiting, false);
      assert.equal(await store.waitApplied(entry, 5_000, account), false); // at once, not after 5 s
      assert.equal(await store.quarantineReason(entry, account), reason);
      assert.equal(await store.quarantineReason(`credit:${account}:other`, account), undefined);
      await store.releaseReference(entry, account);
      assert.deepEqual(await store.claimReference(entry, grant(4n), HOUR, account), { claimed: false, refused: reason });
      // A later event under the refused id (a claim lost with Redis, say) is a duplicate id: it
      // changes nothing, whatever it says, and the id stays refused.
      assert.equal(await store.applyLedger(ledgerEvent(account, 1n, entry)), 'duplicate');
      assert.deepEqual((await store.applyBatch([{ event: { ...ledgerEvent(account, 2n, entry), kind: 'top_up' } }])).map((o) => o.verdict), ['duplicate']);
      assert.equal(await store.ledgerEntry(entry, account), undefined);
      assert.equal((await store.get(account)).balance, 0n);
      assert.equal(await store.quarantineReason(entry, account), reason);
      // An applied id keeps its applied outcome even if a redelivered copy went bad.
      const paid = `credit:${account}:ref-paid`;
      await store.applyLedger(ledgerEvent(account, 4n, paid));
      assert.equal(await store.quarantine({ event_id: paid, topic: 'ledger', partition: -1, offset: -1n, kind: 'apply_failed', reason }, undefined, account), 'applied');
      assert.equal(await store.quarantineReason(paid, account), undefined);
      assert.equal(await store.waitApplied(paid, 1_000, account), true);
    });

    it('50 concurrent claims of one credit reference: exactly one is claimed, the rest see its entry (amount and kind)', async (store) => {
      const account = id('acct');
      const entry = `credit:${account}:ref-1`;
      const claims = await Promise.all(Array.from({ length: 50 }, (_, i) =>
        store.claimReference(entry, { amount: 7n * CREDIT, kind: i % 2 ? 'grant' : 'refund' }, HOUR, account)));
      const won = claims.findIndex((c) => c.claimed);
      assert.equal(claims.filter((c) => c.claimed).length, 1);
      const claimed = { amount: 7n * CREDIT, kind: won % 2 ? 'grant' : 'refund' };
      for (const c of claims) if (!c.claimed) assert.deepEqual(c, { claimed: false, entry: claimed });
      // Once applied, the reference answers with the applied entry for good, kind included.
      await store.applyLedger({ ...ledgerEvent(account, 7n * CREDIT, entry), kind: 'top_up' });
      assert.deepEqual(await store.claimReference(entry, grant(9n * CREDIT), HOUR, account), { claimed: false, entry: { amount: 7n * CREDIT, kind: 'top_up' } });
      assert.deepEqual(await store.ledgerEntry(entry, account), { amount: 7n * CREDIT, kind: 'top_up' });
    });

    it('a lock: one holder at a time across stores sharing it, released at once or lapsing after ttlMs', async (store) => {
      const name = `lock:${id('l')}`;
      assert.equal(await store.acquireLock(name, HOUR), true);
      assert.equal(await store.acquireLock(name, HOUR), false);
      await store.releaseLock(name);
      assert.equal(await store.acquireLock(name, 50), true);
      await sleep(120);
      assert.equal(await store.acquireLock(name, HOUR), true);
      assert.equal(await store.acquireLock(name, HOUR), false);
      await store.releaseLock(name);
    });

    it('a lock released by its owner token: a holder that outlived its ttlMs leaves the next holder\'s lock alone', async (store) => {
      const name = `lock:${id('l')}`;
      assert.equal(await store.acquireLock(name, 50, 'first'), true);
      await sleep(120);
      // lapsed: another caller takes it; the first one's late release must not free it
      assert.equal(await store.acquireLock(name, HOUR, 'second'), true);
      await store.releaseLock(name, 'first');
      assert.equal(await store.acquireLock(name, HOUR, 'third'), false);
      assert.equal(await store.lockOwner(name), 'second');
      assert.equal(await store.lockOwner(`${name}:none`), null);
      // the fencing check: only the owner, and not once lapsed
      assert.equal(await store.extendLock(name, 'first', HOUR), false);
      assert.equal(await store.extendLock(name, 'second', 50), true);
      await sleep(120);
      assert.equal(await store.extendLock(name, 'second', HOUR), false, 'lapsed: no longer held');
      assert.equal(await store.lockOwner(name), null, 'lapsed: nobody');
      assert.equal(await store.acquireLock(name, HOUR, 'second'), true);
      // its owner's release frees it
      await store.releaseLock(name, 'second');
      assert.equal(await store.acquireLock(name, HOUR, 'third'), true);
      await store.releaseLock(name, 'third');
      assert.equal(await store.acquireLock(name, HOUR), true);
      await store.releaseLock(name);
    });

    it('a claimant that died: its claim lapses after ttlMs and the reference can be claimed again', async (store) => {
      const account = id('acct');
      const entry = `credit:${account}:ref-dead`;
      assert.deepEqual(await store.claimReference(entry, grant(5n), 500, account), { claimed: true });
      assert.deepEqual(await store.claimReference(entry, grant(5n), 500, account), { claimed: false, entry: grant(5n) });
      await sleep(600);
      assert.deepEqual(await store.claimReference(entry, grant(5n), 500, account), { claimed: true });
      await store.releaseReference(entry, account);
      assert.deepEqual(await store.claimReference(entry, grant(6n), HOUR, account), { claimed: true });
      // Published: the claim is kept and no longer lapses (until the ledger decides the event).
      // (A ttl a loaded machine's round trips cannot outlast before the keep.)
      const kept = `credit:${account}:ref-kept`;
      assert.deepEqual(await store.claimReference(kept, grant(5n), 1_000, account), { claimed: true });
      await store.keepReference(kept, account);
      await sleep(1_100);
      assert.deepEqual(await store.claimReference(kept, { amount: 5n, kind: 'refund' }, 50, account), { claimed: false, entry: grant(5n) });
    });

    it('a quarantined event nothing could decode does not decide its id: a valid event under it is applied, and a malformed copy of an applied id changes nothing', async (store) => {
      const account = id('acct');
      const open = `credit:${account}:open`;
      const bad = (event_id: string) => ({ event_id, topic: 'ledger', partition: -1, offset: -1n, kind: 'invalid_event', reason: 'amount_micros: must be an integer decimal string' });
      assert.equal(await store.quarantine(bad(open), undefined, account), 'applied');
      assert.equal(await store.quarantineReason(open, account), undefined);
      assert.deepEqual(await store.claimReference(open, grant(5n), HOUR, account), { claimed: true });
      assert.equal(await store.applyLedger(ledgerEvent(account, 5n, open)), 'applied');
      const paid = `credit:${account}:paid`;
      assert.equal(await store.applyLedger(ledgerEvent(account, 7n, paid)), 'applied');
      assert.equal(await store.quarantine(bad(paid), undefined, account), 'applied');
      assert.deepEqual(await store.ledgerEntry(paid, account), grant(7n));
      assert.equal(await store.waitApplied(paid, 1_000, account), true);
      assert.deepEqual(await store.get(account), { balance: 12n, held: 0n, available: 12n });
    });

    it('a quarantined event is recorded once and changes no balance', async (store) => {
      const account = await funded(store, 10n * CREDIT);
      const record = { event_id: 'bad-1', topic: 'usage', partition: -1, offset: -1n, kind: 'invalid_event', reason: 'cost_micros: must be an integer decimal string' };
      assert.equal(await store.quarantine(record), 'applied');
      assert.equal(await store.quarantine(record), 'duplicate');
      assert.deepEqual(await store.quarantined(), [record]);
      assert.deepEqual(await store.get(account), { balance: 10n * CREDIT, held: 0n, available: 10n * CREDIT });
    });

    it('200 concurrent holds of 1 credit against 50 credits: exactly 50 succeed', async (store) => {
      const account = await funded(store, 50n * CREDIT);
      const results = await Promise.all(
        Array.from({ length: 200 }, () => hold(store, account, CREDIT)),
      );
      const granted = results.filter((r) => r.ok).length;
      assert.equal(granted, 50);
      for (const r of results) assert.ok(r.available >= 0n, `available went negative: ${r.available}`);
      assert.deepEqual(await store.get(account), { balance: 50n * CREDIT, held: 50n * CREDIT, available: 0n });
    });
  });
}
