// Two control processes close the same month at the same moment: each has its own Redis
// connection (the balance store's claimReference is the lock) and its own warehouse client on
// one warehouse (chDB, the same path). Real Redis; skipped loudly without it.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { registerBilling, type ReportDeps } from '@tollgate/control';
import type { LedgerEvent } from '@tollgate/events';
import { createHttpServer } from '@tollgate/http';
import { RedisBalanceStore } from '@tollgate/ledger';
import { bundledCatalogPath, loadCatalogFile, priceVersion } from '@tollgate/pricing';
import { Warehouse, createChdbClickHouse } from '@tollgate/warehouse';
import { requireRedis } from '../support/services.ts';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-close-race-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const ADMIN = 'admin-token-0123456789abcdef';
const version = priceVersion(loadCatalogFile(bundledCatalogPath('cny')));

test('two control processes close one month at once: one 201, one 200 with the same closed_at, one close and one snapshot written', async (t) => {
  const url = await requireRedis(t);
  if (url === undefined) return;
  const prefix = `b${randomBytes(3).toString('hex')}_`;
  const keyPrefix = `tollgate-test:${prefix}`;
  const month = new Date().toISOString().slice(0, 7);
  const processes = await Promise.all([0, 1].map(async () => {
    const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
    const warehouse = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: prefix });
    await warehouse.migrate();
    const app = createHttpServer({ logger: false, bodyLimitBytes: 1024 });
    registerBilling(app, {
      warehouse, adminToken: ADMIN, prices: { current: () => version }, balances: new RedisBalanceStore({ redis, prefix: keyPrefix }),
    } as unknown as ReportDeps);
    await app.ready();
    return { app, redis, warehouse };
  }));
  try {
    const grant: LedgerEvent = { type: 'ledger', event_id: 'credit:acc_r:g', ts: Date.now(), account_id: 'acc_r', kind: 'grant', amount_micros: '1000000', reference: 'g' };
    await processes[0]!.warehouse.insertEvents([grant]);
    const close = (i: number) => processes[i]!.app.inject({ method: 'POST', url: `/admin/v1/billing/months/${month}/close`, headers: { authorization: `Bearer ${ADMIN}` } });
    const [x, y] = await Promise.all([close(0), close(1)]);
    assert.deepEqual([x.statusCode, y.statusCode].sort(), [200, 201]);
    assert.equal(x.json().closed_at, y.json().closed_at);
    const t0 = processes[0]!.warehouse.tables;
    assert.deepEqual(await processes[0]!.warehouse.select(`SELECT count() AS n FROM ${t0.billingCloses}`), [{ n: '1' }]);
    assert.deepEqual(await processes[1]!.warehouse.select(`SELECT count() AS n, uniqExact(close_id) AS ids FROM ${t0.billingDocuments}`), [{ n: '1', ids: '1' }]);
    // the lock is given back: a later month closes at once
    const later = await processes[1]!.app.inject({ method: 'POST', url: `/admin/v1/billing/months/${month}/close`, headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(later.statusCode, 200);
  } finally {
    for (const p of processes) {
      await p.app.close();
      const keys = await p.redis.keys(`${keyPrefix}*`);
      if (keys.length > 0) await p.redis.del(...keys);
      p.redis.disconnect();
      await p.warehouse.close();
    }
  }
});
