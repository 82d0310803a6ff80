// What a gateway reads: CachedPoolView over a store. The group of a caller (key → account →
// default; a group that is gone falls through), the configured default until one is stored,
// only active upstreams with their credentials unsealed, a snapshot never older than its ttl,
// the previous snapshot kept while the store cannot be read, and a credential sealed under
// another secret left out rather than sent without its key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seal } from '@tollgate/keys';
import {
  CachedPoolView, configuredGroup, configuredUpstream, MemoryPoolStore, UPSTREAM_KEY_PURPOSE, type GroupRecord, type PoolStore, type UpstreamRecord,
} from '../src/index.ts';

const SECRET = 'key-hash-secret-for-pool-view-0123456789';
const T = Date.UTC(2026, 10, 30, 12, 0, 0);
const CONFIGURED = { url: 'http://127.0.0.1:4010', apiKey: 'sk-ant-configured' };
const up = (id: string, version: number, o: Partial<UpstreamRecord> & { key?: string } = {}): UpstreamRecord => {
  const { key, ...rest } = o;
  return {
    id, name: id, platform: 'anthropic', base_url: `https://${id}.example.com`,
    api_key_sealed: key === undefined ? null : seal(key, SECRET, UPSTREAM_KEY_PURPOSE, id), models: null,
    weight: 1, priority: 0, max_concurrency: null, status: 'active', created_at: T, deleted: false, version, ...rest,
  };
};
const grp = (id: string, version: number, upstreamIds: string[], o: Partial<GroupRecord> = {}): GroupRecord => ({
  id, name: id, platform: 'anthropic', upstream_ids: upstreamIds, model_mapping: null, created_at: T, deleted: false, version, ...o,
});
const ids = (g: { upstreams: Array<{ record: { id: string }; apiKey: string | undefined }> }) => g.upstreams.map((u) => [u.record.id, u.apiKey]);

test('group of a caller: the key\'s, else the account\'s, else the default; a deleted or unknown group falls through', async () => {
  const store = new MemoryPoolStore();
  await store.putUpstream(up('up_a', 1, { key: 'sk-a' }));
  await store.putUpstream(up('up_b', 1, { key: 'sk-b' }));
  await store.putGroup(grp('grp_k', 1, ['up_a']));
  await store.putGroup(grp('grp_acct', 1, ['up_b', 'default']));
  await store.putGroup(grp('grp_gone', 2, ['up_a'], { deleted: true }));
  const view = new CachedPoolView({ store, configured: CONFIGURED, keyHashSecret: SECRET, ttlMs: 0 });

  const byKey = await view.groupFor({ group_id: 'grp_acct' }, { group_id: 'grp_k' });
  assert.deepEqual([byKey.source, byKey.group.id, ids(byKey)], ['key', 'grp_k', [['up_a', 'sk-a']]]);
  const byAccount = await view.groupFor({ group_id: 'grp_acct' }, { group_id: null });
  assert.deepEqual([byAccount.source, byAccount.group.id, ids(byAccount)], ['account', 'grp_acct', [['up_b', 'sk-b'], ['default', 'sk-ant-configured']]]);
  const fallsThrough = await view.groupFor({ group_id: 'grp_acct' }, { group_id: 'grp_gone' });
  assert.deepEqual([fallsThrough.source, fallsThrough.group.id], ['account', 'grp_acct']);
  const neither = await view.groupFor({ group_id: 'grp_nope' }, {});
  assert.deepEqual([neither.source, neither.group, ids(neither)], ['default', configuredGroup(), [['default', 'sk-ant-configured']]]);
  assert.deepEqual((await view.upstream('default'))?.record, configuredUpstream(CONFIGURED));
  // `default` named explicitly on a key is the key's choice
  assert.equal((await view.groupFor({ group_id: 'grp_acct' }, { group_id: 'default' })).source, 'key');
});

test('a stored group "default" replaces the configured one; its tombstone brings the configured one back', async () => {
  const store = new MemoryPoolStore();
  await store.putUpstream(up('up_a', 1, { key: 'sk-a' }));
  const view = new CachedPoolView({ store, configured: CONFIGURED, keyHashSecret: SECRET, ttlMs: 0 });
  await store.putGroup(grp('default', 5, ['up_a']));
  assert.deepEqual(ids(await view.groupFor({}, {})), [['up_a', 'sk-a']]);
  await store.putGroup(grp('default', 6, ['up_a'], { deleted: true }));
  assert.deepEqual(ids(await view.groupFor({}, {})), [['default', 'sk-ant-configured']]);
});

test('members: disabled, deleted and unknown upstreams left out, the group\'s order kept, an upstream without a credential has apiKey undefined', async () => {
  const store = new MemoryPoolStore();
  await store.putUpstream(up('up_a', 1, { key: 'sk-a', status: 'disabled' }));
  await store.putUpstream(up('up_b', 1, { key: 'sk-b', deleted: true }));
  await store.putUpstream(up('up_c', 1));
  await store.putUpstream(up('up_d', 1, { key: 'sk-d', priority: 5 }));
  await store.putGroup(grp('grp_x', 1, ['up_a', 'up_d', 'up_b', 'up_none', 'up_c']));
  const view = new CachedPoolView({ store, configured: CONFIGURED, keyHashSecret: SECRET, ttlMs: 0 });
  assert.deepEqual(ids((await view.group('grp_x'))!), [['up_d', 'sk-d'], ['up_c', undefined]]);
  assert.equal(await view.upstream('up_a'), undefined);
  assert.equal(await view.group('grp_none'), undefined);
});

test('a changed weight or a disabled upstream is seen once the snapshot is ttlMs old, not before; invalidate() reads at once', async () => {
  const store = new MemoryPoolStore();
  let now = 1_000_000;
  await store.putUpstream(up('up_a', 1, { key: 'sk-a', weight: 1 }));
  await store.putUpstream(up('up_b', 1, { key: 'sk-b' }));
  await store.putGroup(grp('grp_x', 1, ['up_a', 'up_b']));
  const view = new CachedPoolView({ store, configured: CONFIGURED, keyHashSecret: SECRET, ttlMs: 500, now: () => now });
  assert.equal((await view.group('grp_x'))!.upstreams[0]!.record.weight, 1);
  await store.putUpstream(up('up_a', 2, { key: 'sk-a', weight: 9 }));
  now += 499;
  assert.equal((await view.group('grp_x'))!.upstreams[0]!.record.weight, 1, 'the snapshot is younger than ttlMs');
  now += 1;
  assert.equal((await view.group('grp_x'))!.upstreams[0]!.record.weight, 9);
  await store.putUpstream(up('up_a', 3, { key: 'sk-a', weight: 9, status: 'disabled' }));
  view.invalidate();
  assert.deepEqual(ids((await view.group('grp_x'))!), [['up_b', 'sk-b']]);
  assert.throws(() => new CachedPoolView({ store, configured: CONFIGURED, keyHashSecret: SECRET, ttlMs: 1001 }), /ttlMs must be 0 … 1000/);
});

test('a rotated credential is unsealed again (per record version)', async () => {
  const store = new MemoryPoolStore();
  await store.putUpstream(up('up_a', 1, { key: 'sk-old' }));
  const view = new CachedPoolView({ store, configured: CONFIGURED, keyHashSecret: SECRET, ttlMs: 0 });
  assert.equal((await view.upstream('up_a'))?.apiKey, 'sk-old');
  await store.putUpstream(up('up_a', 2, { key: 'sk-new' }));
  assert.equal((await view.upstream('up_a'))?.apiKey, 'sk-new');
});

test('store unreadable: the previous snapshot is kept and the error reported; with no snapshot yet the error is thrown', async () => {
  const inner = new MemoryPoolStore();
  await inner.putUpstream(up('up_a', 1, { key: 'sk-a' }));
  await inner.putGroup(grp('grp_x', 1, ['up_a']));
  let broken = false;
  const store: PoolStore = Object.assign(Object.create(inner) as PoolStore, {
    upstreams: () => (broken ? Promise.reject(new Error('redis down')) : inner.upstreams()),
    groups: () => (broken ? Promise.reject(new Error('redis down')) : inner.groups()),
  });
  const errors: string[] = [];
  const view = new CachedPoolView({ store, configured: CONFIGURED, keyHashSecret: SECRET, ttlMs: 0, onError: (err, what) => errors.push(`${(err as Error).message}: ${what}`) });
  broken = true;
  await assert.rejects(view.group('grp_x'), /redis down/);
  broken = false;
  assert.deepEqual(ids((await view.group('grp_x'))!), [['up_a', 'sk-a']]);
  broken = true;
  assert.deepEqual(ids((await view.group('grp_x'))!), [['up_a', 'sk-a']]);
  assert.deepEqual(errors, ['redis down: pool records could not be read; using the previous snapshot']);
});

test('a credential sealed under another KEY_HASH_SECRET (or for another upstream id): the upstream is left out, never sent without its key', async () => {
  const store = new MemoryPoolStore();
  await store.putUpstream({ ...up('up_a', 1), api_key_sealed: seal('sk-a', 'another-secret-0123456789abcdef', UPSTREAM_KEY_PURPOSE, 'up_a') });
  // a sealed value copied from another record does not open under this id
  await store.putUpstream({ ...up('up_b', 1), api_key_sealed: seal('sk-c', SECRET, UPSTREAM_KEY_PURPOSE, 'up_c') });
  await store.putUpstream(up('up_c', 1, { key: 'sk-c' }));
  await store.putGroup(grp('grp_x', 1, ['up_a', 'up_b', 'up_c']));
  const errors: string[] = [];
  const view = new CachedPoolView({ store, configured: CONFIGURED, keyHashSecret: SECRET, ttlMs: 0, onError: (_err, what) => errors.push(what) });
  assert.deepEqual(ids((await view.group('grp_x'))!), [['up_c', 'sk-c']]);
  assert.deepEqual(errors, [
    'upstream up_a: its credential cannot be unsealed (was KEY_HASH_SECRET changed?); left out of every group',
    'upstream up_b: its credential cannot be unsealed (was KEY_HASH_SECRET changed?); left out of every group',
  ]);
});
