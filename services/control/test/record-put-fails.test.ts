// A control record written ahead whose key-directory put failed (the directory's Redis refusing
// writes while the lock's Redis works: the split layout) must not be undone by the next change of
// it, which would read the older record from the directory (a breaker's HIGH, session 49: a
// revocation answered 200, then a rename on another control process read the key as active and
// wrote it with a newer version; once the ledger group had put both, the key was active). Two
// control apps share one balance store, directory and log, as two processes share Redis and Kafka.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryLog, type AnyEvent, type KeyRecord } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore } from '@tollgate/ledger';
import { bundledCatalogPath, loadCatalogFile } from '@tollgate/pricing';
import { buildControl } from '../src/index.ts';

const TOKEN = 'record-put-fails-admin-token-0123456789';

test('a revocation written ahead whose directory put failed: the next change is 503 until the directory has it, then 409; the key stays revoked', async () => {
  const dir = new MemoryKeyDirectory();
  let refuse = false;
  // The directory's Redis refusing writes (maxmemory), as the ledger group's puts would be too.
  const keys = new Proxy(dir, {
    get(target, prop) {
      if (prop === 'putKey') return async (k: KeyRecord) => { if (refuse) throw new Error("OOM command not allowed when used memory > 'maxmemory'"); return target.putKey(k); };
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const log = new MemoryLog();
  const written: AnyEvent[] = [];
  const append = log.append.bind(log);
  log.append = (topic, events) => {
    if (topic === 'control') written.push(...events.map((e) => e.event));
    return append(topic, events);
  };
  const balances = new MemoryBalanceStore();
  const catalog = loadCatalogFile(bundledCatalogPath('cny'));
  const [a, b] = [0, 1].map(() => buildControl({ keys, balances, log, catalog, adminToken: TOKEN, keyHashSecret: 'k'.repeat(32) }));
  const call = (app: typeof a, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) =>
    app!.inject({ method, url, headers: { authorization: `Bearer ${TOKEN}` }, ...(payload ? { payload } : {}) });
  try {
    const account = (await call(a, 'POST', '/admin/v1/accounts', { name: 'x' })).json() as { id: string };
    const key = (await call(a, 'POST', `/admin/v1/accounts/${account.id}/keys`, { name: 'k' })).json() as { id: string };
    refuse = true;
    const revoke = await call(a, 'DELETE', `/admin/v1/keys/${key.id}`);
    assert.deepEqual([revoke.statusCode, revoke.json().status], [200, 'revoked'], 'written ahead: the revocation happened');
    const early = await call(b, 'PATCH', `/admin/v1/keys/${key.id}`, { name: 'renamed' });
    assert.deepEqual([early.statusCode, early.json().error.type], [503, 'overloaded_error'], early.body);
    // The directory takes writes again; the ledger group puts every control record from the log.
    refuse = false;
    for (const e of written) if (e.type === 'key') await dir.putKey(e.key);
    const late = await call(b, 'PATCH', `/admin/v1/keys/${key.id}`, { name: 'renamed' });
    assert.equal(late.statusCode, 409, late.body);
    assert.equal((await dir.key(key.id))?.status, 'revoked');
    assert.deepEqual(written.filter((e) => e.type === 'key').map((e) => (e as { key: KeyRecord }).key.status), ['active', 'revoked'], 'nothing written from the older record');
  } finally {
    await a!.close();
    await b!.close();
    await log.close();
  }
});
