// The durable copy (migration 10) and the rebuild path: an empty store (embedded restart, Redis
// restarted empty) gets every upstream and group back from the warehouse (chDB here), the newest
// version of each, tombstones included; a newer record already in the store stays; the
// credential is in the warehouse only sealed.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seal } from '@tollgate/keys';
import { Warehouse, createChdbClickHouse } from '@tollgate/warehouse';
import {
  loadGroups, loadUpstreams, MemoryPoolStore, RedisPoolStore, restorePool, saveGroup, saveUpstream, UPSTREAM_KEY_PURPOSE,
  type GroupRecord, type PoolStore, type UpstreamRecord,
} from '../src/index.ts';
import { testRedis } from '../../../test/support/redis.ts';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-pool-durable-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const SECRET = 'key-hash-secret-for-pool-durable-0123456789';
const CLEAR_KEY = 'sk-ant-api03-CLEARTEXT-upstream-credential-must-not-be-stored';
const T = Date.UTC(2026, 10, 30, 12, 0, 0, 123);
const up = (id: string, version: number, o: Partial<UpstreamRecord> = {}): UpstreamRecord => ({
  id, name: `upstream ${id}`, platform: 'anthropic', base_url: `https://${id}.example.com/v`, api_key_sealed: null, models: null,
  weight: 1, priority: 0, max_concurrency: null, status: 'active', created_at: T, deleted: false, version, ...o,
});
const grp = (id: string, version: number, o: Partial<GroupRecord> = {}): GroupRecord => ({
  id, name: `group ${id}`, platform: 'anthropic', upstream_ids: ['up_a'], model_mapping: null, created_at: T, deleted: false, version, ...o,
});

const { redis, prefix } = await testRedis('poold');

test('upstreams and groups restored from the warehouse into an empty store: newest version each, every field, tombstones kept, newer hot records win', async () => {
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: `pl${randomBytes(3).toString('hex')}_` });
  try {
    await w.migrate();
    const a1 = up('up_a', 1, { api_key_sealed: seal(CLEAR_KEY, SECRET, UPSTREAM_KEY_PURPOSE, 'up_a') });
    const a2 = up('up_a', 2, {
      platform: 'openai', api_key_sealed: seal(CLEAR_KEY, SECRET, UPSTREAM_KEY_PURPOSE, 'up_a'), models: ['claude-haiku-4-5-20251001', 'claude-sonnet-4-5-20250929'],
      weight: 1000, priority: -1000, max_concurrency: 100_000, status: 'disabled',
    });
    const b1 = up('up_b', 5, { priority: 1000 });
    const bGone = up('up_b', 6, { deleted: true, priority: 1000 });
    const c1 = up('up_c', 1);
    const g1 = grp('grp_a', 1);
    const g2 = grp('grp_a', 2, { platform: 'openai', upstream_ids: ['up_a', 'up_c', 'default'], model_mapping: { 'claude-haiku-4-5-20251001': 'gpt-4o-mini', 'claude-sonnet-4-5-20250929': 'gpt-4.1' } });
    const dGone = grp('default', 9, { deleted: true, upstream_ids: ['up_c'] });
    for (const u of [a2, a1, b1, bGone, c1]) await saveUpstream(w, u);
    for (const g of [g2, g1, dGone]) await saveGroup(w, g);
    assert.deepEqual(await loadUpstreams(w), [a2, bGone, c1]);
    assert.deepEqual(await loadGroups(w), [dGone, g2]);
    // every column of every row, as the warehouse answers it (its files may be compressed)
    const rows = JSON.stringify(await w.select(`SELECT * FROM ${w.tables.upstreams}`));
    assert.ok(rows.includes(a1.api_key_sealed!), 'the sealed credential is what is stored');
    assert.ok(!rows.includes('CLEARTEXT'), 'the credential in clear in a warehouse row');

    const stores: Array<[string, PoolStore]> = [['memory', new MemoryPoolStore()]];
    if (redis) stores.push(['redis', new RedisPoolStore({ redis, prefix })]);
    for (const [name, store] of stores) {
      const c9 = up('up_c', 9, { weight: 42 });
      await store.putUpstream(c9); // changed after the warehouse copy was read (a racing write): stays
      assert.deepEqual(await restorePool(w, store), { upstreams: 3, groups: 2 }, name);
      const sorted = <R extends { id: string }>(rs: R[]) => rs.sort((x, y) => (x.id < y.id ? -1 : 1));
      assert.deepEqual(sorted(await store.upstreams()), [a2, bGone, c9], name);
      assert.deepEqual(sorted(await store.groups()), [dGone, g2], name);
      // twice is harmless
      await restorePool(w, store);
      assert.deepEqual(sorted(await store.upstreams()), [a2, bGone, c9], name);
    }
    if (redis) {
      for (const k of await redis.keys(`${prefix}*`)) {
        const type = await redis.type(k);
        const values = type === 'hash' ? await redis.hvals(k) : type === 'string' ? [await redis.get(k) ?? ''] : [];
        for (const v of values) assert.ok(!v.includes(CLEAR_KEY) && !v.includes('CLEARTEXT'), `the credential in clear in Redis ${k}`);
      }
    }
  } finally {
    await w.close();
  }
  const files: string[] = [];
  const walk = (d: string) => { for (const n of readdirSync(d)) { const p = join(d, n); if (statSync(p).isDirectory()) walk(p); else files.push(p); } };
  walk(dir);
  assert.ok(files.length > 0);
  for (const f of files) assert.ok(!readFileSync(f).includes(Buffer.from('CLEARTEXT')), `the credential in clear in ${f}`);
});
