// CachedKeyDirectory's own promises, over the memory directory with a fake clock: how many
// lookups reach the inner directory, when entries expire, and how writes invalidate.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AccountRecord, KeyRecord } from '@tollgate/events';
import { CachedKeyDirectory, MemoryKeyDirectory } from '@tollgate/keys';
import type { KeyEntry } from '@tollgate/keys';
import { keyDirectoryContract } from './key-directory.contract.ts';

/** The memory directory, counting byHash calls that reach it. */
class CountingDirectory extends MemoryKeyDirectory {
  lookups = 0;
  override async byHash(hash: string): Promise<KeyEntry | undefined> {
    this.lookups += 1;
    return super.byHash(hash);
  }
}

const ACCOUNT: AccountRecord = { id: 'a1', name: 'A', status: 'active', created_at: 1, version: 1 };

function key(id: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id, account_id: 'a1', name: id, prefix: 'sk-tg-x', hash: `hash-${id}`, status: 'active',
    created_at: 1, revoked_at: null, version: 1, ...overrides,
  };
}

async function setup(options: { ttlMs?: number; maxEntries?: number } = {}) {
  const clock = { now: 1_000 };
  const inner = new CountingDirectory();
  await inner.putAccount(ACCOUNT);
  const cached = new CachedKeyDirectory(inner, { ...options, now: () => clock.now });
  return { clock, inner, cached };
}

// Over memory, a second "instance" cannot share storage; the peer is the inner directory,
// written behind the cache's back, which is exactly what another gateway's write looks like.
keyDirectoryContract('cached(memory)', async () => {
  const inner = new MemoryKeyDirectory();
  const directory = new CachedKeyDirectory(inner, { ttlMs: 100 });
  return { directory, peer: inner, propagationMs: 100, cleanup: () => directory.close() };
});

test('a hit within the TTL costs no lookup; after the TTL it looks again', async () => {
  const { clock, inner, cached } = await setup({ ttlMs: 500 });
  await inner.putKey(key('k1'));
  assert.equal((await cached.byHash('hash-k1'))?.key.id, 'k1');
  clock.now += 499;
  assert.equal((await cached.byHash('hash-k1'))?.key.id, 'k1');
  assert.equal(inner.lookups, 1);
  clock.now += 1;
  assert.equal((await cached.byHash('hash-k1'))?.key.id, 'k1');
  assert.equal(inner.lookups, 2);
});

test('a change behind the cache shows once the TTL has passed', async () => {
  const { clock, inner, cached } = await setup({ ttlMs: 500 });
  await inner.putKey(key('k1'));
  await cached.byHash('hash-k1');
  await inner.putKey(key('k1', { status: 'revoked', version: 2 }));
  assert.equal((await cached.byHash('hash-k1'))?.key.status, 'active'); // stale, within TTL
  clock.now += 500;
  assert.equal((await cached.byHash('hash-k1'))?.key.status, 'revoked');
});

test('misses are cached for the TTL too', async () => {
  const { clock, inner, cached } = await setup({ ttlMs: 500 });
  assert.equal(await cached.byHash('unknown'), undefined);
  assert.equal(await cached.byHash('unknown'), undefined);
  assert.equal(inner.lookups, 1);
  clock.now += 500;
  assert.equal(await cached.byHash('unknown'), undefined);
  assert.equal(inner.lookups, 2);
});

test('concurrent misses for one hash share one lookup', async () => {
  const { inner, cached } = await setup();
  await inner.putKey(key('k1'));
  const results = await Promise.all(Array.from({ length: 20 }, () => cached.byHash('hash-k1')));
  assert.ok(results.every((r) => r?.key.id === 'k1'));
  assert.equal(inner.lookups, 1);
});

test('the cache is bounded and evicts the least recently used entry', async () => {
  const { inner, cached } = await setup({ maxEntries: 3 });
  for (const id of ['k1', 'k2', 'k3', 'k4']) await inner.putKey(key(id));
  await cached.byHash('hash-k1');
  await cached.byHash('hash-k2');
  await cached.byHash('hash-k3');
  await cached.byHash('hash-k1'); // k1 is now the most recently used; k2 the least
  await cached.byHash('hash-k4');
  assert.equal(cached.size, 3);
  assert.equal(inner.lookups, 4);
  await cached.byHash('hash-k1');
  await cached.byHash('hash-k3');
  await cached.byHash('hash-k4');
  assert.equal(inner.lookups, 4, 'k1, k3 and k4 are still cached');
  await cached.byHash('hash-k2');
  assert.equal(inner.lookups, 5, 'k2 was evicted');
});

test('a key written through the cache is seen at once', async () => {
  const { inner, cached } = await setup();
  await cached.putKey(key('k1'));
  await cached.byHash('hash-k1');
  assert.equal(await cached.putKey(key('k1', { status: 'revoked', version: 2 })), true);
  assert.equal((await cached.byHash('hash-k1'))?.key.status, 'revoked');
  assert.equal(inner.lookups, 2);
});

test('a write through the cache replaces a cached miss', async () => {
  const { cached } = await setup();
  assert.equal(await cached.byHash('hash-k1'), undefined);
  await cached.putKey(key('k1'));
  assert.equal((await cached.byHash('hash-k1'))?.key.id, 'k1');
});

test('an account written through the cache drops its keys\' entries', async () => {
  const { inner, cached } = await setup();
  await inner.putKey(key('k1'));
  await inner.putKey(key('k2'));
  await cached.byHash('hash-k1');
  await cached.byHash('hash-k2');
  await cached.putAccount({ ...ACCOUNT, status: 'disabled', version: 2 });
  assert.equal((await cached.byHash('hash-k1'))?.account.status, 'disabled');
  assert.equal((await cached.byHash('hash-k2'))?.account.status, 'disabled');
  assert.equal(inner.lookups, 4);
});

test('a lookup that raced a write is not cached', async () => {
  // An inner directory whose first byHash waits until released, so a write lands mid-lookup.
  let release = () => {};
  let calls = 0;
  class SlowDirectory extends MemoryKeyDirectory {
    override async byHash(hash: string): Promise<KeyEntry | undefined> {
      calls += 1;
      const answer = await super.byHash(hash);
      if (calls === 1) await new Promise<void>((resolve) => { release = resolve; });
      return answer;
    }
  }
  const slow = new SlowDirectory();
  await slow.putAccount(ACCOUNT);
  await slow.putKey(key('k1'));
  const cached = new CachedKeyDirectory(slow, { ttlMs: 60_000 });
  const racing = cached.byHash('hash-k1');
  await new Promise<void>((resolve) => setImmediate(resolve));
  await cached.putKey(key('k1', { status: 'revoked', version: 2 }));
  release();
  assert.equal((await racing)?.key.status, 'active'); // it read before the write
  assert.equal((await cached.byHash('hash-k1'))?.key.status, 'revoked');
  assert.equal(calls, 2);
});

test('forgetAll (records put back after a rebuild): a key read active and revoked behind the cache is read again at once, hits and misses alike', async () => {
  const { inner, cached } = await setup({ ttlMs: 60_000 });
  await inner.putKey(key('k1'));
  assert.equal((await cached.byHash('hash-k1'))?.key.status, 'active');
  assert.equal(await cached.byHash('hash-k2'), undefined);
  // Revoked (and k2 made) behind the cache, as a control process's put-back after a rebuild is.
  await inner.putKey(key('k1', { status: 'revoked', revoked_at: 2, version: 2 }));
  await inner.putKey(key('k2'));
  assert.equal((await cached.byHash('hash-k1'))?.key.status, 'active', 'still cached before');
  const lookups = inner.lookups;
  cached.forgetAll();
  assert.equal((await cached.byHash('hash-k1'))?.key.status, 'revoked');
  assert.equal((await cached.byHash('hash-k2'))?.key.id, 'k2');
  assert.equal(inner.lookups, lookups + 2);
});
