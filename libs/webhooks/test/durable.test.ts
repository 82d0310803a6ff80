// The durable copy (migration 9) and the rebuild path: a Redis restarted empty gets every
// webhook back from the warehouse (chDB here), newest version of each, tombstones included, and
// a newer record already in Redis is not overwritten by an older stored one.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Warehouse, createChdbClickHouse } from '@tollgate/warehouse';
import { MemoryWebhookStore, RedisWebhookStore, restoreWebhooks, saveWebhook, type WebhookRecord, type WebhookStore } from '../src/index.ts';
import { testRedis } from '../../../test/support/redis.ts';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-webhooks-durable-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const T = Date.UTC(2026, 10, 30, 12, 0, 0, 123);
const hook = (id: string, version: number, o: Partial<WebhookRecord> = {}): WebhookRecord => ({
  id, url: `https://hooks.example.com/${id}`, events: ['balance.low'], description: null,
  secret_sealed: `sealed1.${id}.${version}`, created_at: T, deleted: false, version, ...o,
});

const { redis, prefix } = await testRedis('whd');

test('webhooks restored from the warehouse into an empty store: newest version each, tombstones kept, newer hot records win', async () => {
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: `wh${randomBytes(3).toString('hex')}_` });
  try {
    await w.migrate();
    const a1 = hook('wh_a', 1);
    const a2 = hook('wh_a', 2, { events: ['balance.low', 'event.quarantined'], description: 'ops pager' });
    const b1 = hook('wh_b', 5);
    const bGone = hook('wh_b', 6, { deleted: true });
    const c1 = hook('wh_c', 1);
    for (const h of [a2, a1, b1, bGone, c1]) await saveWebhook(w, h);
    const stores: Array<[string, WebhookStore]> = [['memory', new MemoryWebhookStore()]];
    if (redis) stores.push(['redis', new RedisWebhookStore({ redis, prefix, cacheMs: 0 })]);
    for (const [name, store] of stores) {
      const c9 = hook('wh_c', 9, { url: 'https://hooks.example.com/newer' });
      await store.put(c9); // changed after the warehouse copy was read (a racing write): stays
      assert.equal(await restoreWebhooks(w, store), 3, name);
      const got = (await store.list()).sort((x, y) => (x.id < y.id ? -1 : 1));
      assert.deepEqual(got, [a2, bGone, c9], name);
    }
  } finally {
    await w.close();
  }
});
