// The KeyDirectory contract: memory, Redis and Cached(Redis) all run this same suite.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { AccountRecord, KeyRecord, PlanRecord } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';

export interface KeyDirectoryFixture {
  directory: KeyDirectory;
  /**
   * Another instance over the same storage (another gateway, the control plane). For the
   * memory directory, which cannot share storage, the directory itself.
   */
  peer: KeyDirectory;
  /** How long a write through `peer` may take to show in `directory.byHash` (cache TTL). */
  propagationMs: number;
  cleanup(): Promise<void>;
}

/** Scheduling slack on top of propagationMs; a correctness bound, not a speed assertion. */
const MARGIN_MS = 150;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function account(overrides: Partial<AccountRecord> = {}): AccountRecord {
  return { id: `acct-${randomUUID()}`, name: 'Acme', status: 'active', created_at: 1_700_000_000_000, version: 1, ...overrides };
}

function key(accountId: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  const id = `key-${randomUUID()}`;
  return {
    id, account_id: accountId, name: 'default', prefix: 'sk-tg-AbCdEf', hash: `h-${randomUUID()}`,
    status: 'active', created_at: 1_700_000_000_000, revoked_at: null, version: 1, ...overrides,
  };
}

function revoked(k: KeyRecord): KeyRecord {
  return { ...k, status: 'revoked', revoked_at: 1_700_000_100_000, version: k.version + 1 };
}

const byId = <T extends { id: string }>(records: T[]) => [...records].sort((a, b) => (a.id < b.id ? -1 : 1));

export function keyDirectoryContract(name: string, make: () => Promise<KeyDirectoryFixture>): void {
  const it = (title: string, body: (f: KeyDirectoryFixture) => Promise<void>) =>
    test(title, async () => {
      const fixture = await make();
      try {
        await body(fixture);
      } finally {
        await fixture.cleanup();
      }
    });

  describe(`KeyDirectory contract: ${name}`, () => {
    it('unknown ids and hashes find nothing', async ({ directory }) => {
      assert.equal(await directory.account('nope'), undefined);
      assert.equal(await directory.key('nope'), undefined);
      assert.equal(await directory.byHash('nope'), undefined);
      assert.deepEqual(await directory.keysOf('nope'), []);
    });

    it('stores accounts and lists them', async ({ directory }) => {
      const a = account();
      const b = account({ name: 'Beta', status: 'disabled' });
      assert.equal(await directory.putAccount(a), true);
      assert.equal(await directory.putAccount(b), true);
      assert.deepEqual(await directory.account(a.id), a);
      assert.deepEqual(byId(await directory.accounts()), byId([a, b]));
    });

    it('an account version never goes backwards', async ({ directory }) => {
      const v2 = account({ version: 2, name: 'v2' });
      assert.equal(await directory.putAccount(v2), true);
      assert.equal(await directory.putAccount({ ...v2, version: 1, name: 'v1' }), false);
      assert.equal(await directory.putAccount({ ...v2, name: 'same version' }), false);
      assert.deepEqual(await directory.account(v2.id), v2);
      const v3 = { ...v2, version: 3, name: 'v3', status: 'disabled' as const };
      assert.equal(await directory.putAccount(v3), true);
      assert.deepEqual(await directory.account(v2.id), v3);
    });

    it('a key version never goes backwards', async ({ directory }) => {
      const a = account();
      await directory.putAccount(a);
      const k = key(a.id, { version: 5 });
      assert.equal(await directory.putKey(k), true);
      assert.equal(await directory.putKey({ ...k, version: 4, status: 'revoked' }), false);
      assert.equal(await directory.putKey({ ...k, name: 'same version' }), false);
      assert.deepEqual(await directory.key(k.id), k);
      assert.deepEqual(await directory.byHash(k.hash), { key: k, account: a });
    });

    it('byHash finds a key with its account', async ({ directory }) => {
      const a = account();
      const k = key(a.id);
      await directory.putAccount(a);
      await directory.putKey(k);
      assert.deepEqual(await directory.byHash(k.hash), { key: k, account: a });
      assert.equal(await directory.byHash(`${k.hash}x`), undefined);
    });

    it('byHash finds nothing for a key whose account is unknown', async ({ directory }) => {
      const k = key(`acct-${randomUUID()}`);
      await directory.putKey(k);
      assert.equal(await directory.byHash(k.hash), undefined);
      assert.deepEqual(await directory.key(k.id), k);
    });

    it('a revoked key stays findable with status revoked', async ({ directory }) => {
      const a = account();
      const k = key(a.id);
      await directory.putAccount(a);
      await directory.putKey(k);
      assert.equal((await directory.byHash(k.hash))?.key.status, 'active');
      const r = revoked(k);
      assert.equal(await directory.putKey(r), true);
      // Written through this instance: visible at once, even through a cache.
      assert.deepEqual(await directory.byHash(k.hash), { key: r, account: a });
      assert.deepEqual(await directory.key(k.id), r);
      // A late replay of the active record does not resurrect it.
      assert.equal(await directory.putKey(k), false);
      assert.equal((await directory.byHash(k.hash))?.key.status, 'revoked');
    });

    it('an account change written here shows in byHash at once', async ({ directory }) => {
      const a = account();
      const k = key(a.id);
      await directory.putAccount(a);
      await directory.putKey(k);
      assert.equal((await directory.byHash(k.hash))?.account.status, 'active');
      const disabled = { ...a, status: 'disabled' as const, version: 2 };
      await directory.putAccount(disabled);
      assert.deepEqual(await directory.byHash(k.hash), { key: k, account: disabled });
    });

    it('keysOf lists exactly the account\'s keys, revoked ones included', async ({ directory }) => {
      const a = account();
      const b = account();
      await directory.putAccount(a);
      await directory.putAccount(b);
      const k1 = key(a.id);
      const k2 = key(a.id, { name: 'ci' });
      const other = key(b.id);
      for (const k of [k1, k2, other]) await directory.putKey(k);
      await directory.putKey(revoked(k2));
      assert.deepEqual(byId(await directory.keysOf(a.id)), byId([k1, revoked(k2)]));
      assert.deepEqual(await directory.keysOf(b.id), [other]);
    });

    it('issue-8 access and limit fields are carried exactly; a change through another instance shows within the cache TTL', async ({ directory, peer, propagationMs }) => {
      const a = account({ status: 'suspended', plan_id: 'pro', daily_credits: '5000000', monthly_credits: null, overdraft_credits: '0', admission_policy: 'strict' });
      const k = key(a.id, {
        status: 'disabled', plan_id: null, hourly_credits: '1', daily_credits: null, total_credits: '9007199254740991',
        ip_allowlist: ['10.0.0.0/8', '2001:db8::/32'], allowed_models: ['claude-haiku-4-5-20251001'], expires_at: 1_800_000_000_000,
      });
      await directory.putAccount(a);
      await directory.putKey(k);
      assert.deepEqual(await directory.byHash(k.hash), { key: k, account: a });
      const lifted = { ...k, status: 'active' as const, ip_allowlist: [], expires_at: null, version: k.version + 1 };
      await peer.putKey(lifted);
      await sleep(propagationMs + MARGIN_MS);
      assert.deepEqual(await directory.byHash(k.hash), { key: lifted, account: a });
    });

    it('a revocation made through another instance shows within the cache TTL', async ({ directory, peer, propagationMs }) => {
      const a = account();
      const k = key(a.id);
      await peer.putAccount(a);
      await peer.putKey(k);
      assert.deepEqual(await directory.byHash(k.hash), { key: k, account: a }); // now warm in any cache
      const r = revoked(k);
      assert.equal(await peer.putKey(r), true);
      await sleep(propagationMs + MARGIN_MS);
      assert.deepEqual(await directory.byHash(k.hash), { key: r, account: a });
    });

    it('an older version written through another instance never overwrites a newer one', async ({ directory, peer }) => {
      const a = account({ version: 7 });
      assert.equal(await directory.putAccount(a), true);
      assert.equal(await peer.putAccount({ ...a, version: 6, status: 'disabled' }), false);
      assert.deepEqual(await peer.account(a.id), a);
      const k = key(a.id, { version: 3 });
      assert.equal(await peer.putKey(k), true);
      assert.equal(await directory.putKey({ ...k, version: 2, name: 'stale' }), false);
      assert.deepEqual(await directory.key(k.id), k);
    });

    it('plans: the newest version wins whichever instance writes, a tombstone is kept, a change shows within the cache TTL', async ({ directory, peer, propagationMs }) => {
      const plan: PlanRecord = {
        id: `plan-${randomUUID()}`, name: 'Team', requests_per_minute: 30, requests_per_5h: null, requests_per_week: null,
        tokens_per_minute: 100_000, concurrent_requests: null, created_at: 1_700_000_000_000, version: 5,
      };
      assert.equal(await directory.plan(plan.id), undefined);
      assert.equal(await peer.putPlan(plan), true);
      await sleep(propagationMs + MARGIN_MS); // the miss above may be cached
      assert.deepEqual(await directory.plan(plan.id), plan);
      assert.equal(await directory.putPlan({ ...plan, name: 'stale', version: 4 }), false);
      const gone = { ...plan, deleted: true, version: 6 };
      assert.equal(await peer.putPlan(gone), true);
      await sleep(propagationMs + MARGIN_MS);
      assert.deepEqual(await directory.plan(plan.id), gone);
      assert.deepEqual((await directory.plans()).filter((p) => p.id === plan.id), [gone]);
    });
  });
}
