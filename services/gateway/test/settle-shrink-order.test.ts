// Lost settle on a graceful stop: `settle`'s publish() must resolve only once the hold's shrink
// is done, traced or not (metering.ts: "a request is done, for a graceful stop, only once its
// hold is settled"; the stop disconnects Redis right after the requests end). The untraced fast
// path (no tracer: the default) returned the bare log publish and left the shrink behind.
// Real Redis, reached through a TCP relay of this test's own that can hold the gateway's
// commands back (a slow Redis), and a direct connection to read what Redis holds.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { MemoryLog, type ConsumedEvent } from '@tollgate/events';
import type { KeyEntry } from '@tollgate/keys';
import { RedisBalanceStore } from '@tollgate/ledger';
import { bundledCatalogPath, loadCatalogFile, priceVersion, resolveModel } from '@tollgate/pricing';
import type { GatewayDeps } from '../src/deps.ts';
import { settle, type Metered, type Outcome } from '../src/metering.ts';
import { testRedis } from '../../../test/support/redis.ts';
import { startRelay } from '../../../test/support/redis-relay.ts';
import { requireRedis } from '../../../test/support/services.ts';

// sonnet-4-5 in the CNY catalog: input 72, output 360 µc per token: 800 in + 120 out = 100,800 µc
const version = priceVersion(loadCatalogFile(bundledCatalogPath('cny')));
const resolved = resolveModel(version.catalog, 'claude-sonnet-4-5')!;
const outcome: Outcome = {
  status: 'ok', httpStatus: 200, usage: { input: 800, output: 120, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 },
  billable: true, firstByteAt: null, firstTokenAt: null, upstreamRequestId: null,
};

const { redis: direct, redisUrl, prefix } = await testRedis('settle-order');

test('lost settle: an untraced request\'s publish() resolves only after its hold shrank (200,000 → 100,800 µc held)', async (t) => {
  if (!(await requireRedis(t))) return;
  const proxy = await startRelay(new URL(redisUrl!));
  const gatewayRedis = new Redis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 1 });
  after(async () => { gatewayRedis.disconnect(); await proxy.close(); });
  const balances = new RedisBalanceStore({ redis: gatewayRedis, prefix });
  const view = new RedisBalanceStore({ redis: direct!, prefix });
  const account = `acct-${randomUUID()}`;
  await balances.applyLedger({ type: 'ledger', event_id: `g-${randomUUID()}`, ts: Date.now(), account_id: account, kind: 'grant', amount_micros: '1000000', reference: 'r' });
  const requestId = `req-${randomUUID()}`;
  assert.equal((await balances.hold({ holdId: requestId, accountId: account, keyId: 'key-1', amount: 200_000n, ttlMs: 60_000 })).ok, true);

  const log = new MemoryLog();
  const published: ConsumedEvent[] = [];
  await log.subscribe({ group: 'watch', topics: ['usage'], handler: async (events) => { published.push(...events); } });
  // no tracer: the untraced fast path, as a gateway without an OpenTelemetry exporter runs
  const deps = { balances, log, holdTtlMs: 60_000, gatewayId: 'gw-test' } as unknown as GatewayDeps;
  const caller = { account: { id: account }, key: { id: 'key-1' } } as unknown as KeyEntry;
  const m: Metered = { requestId, ts: Date.now(), startedAt: performance.now(), caller, resolved, stream: false, holdMicros: 200_000n, version };
  const errors: unknown[] = [];

  proxy.hold(); // Redis is slow to receive the shrink
  const { event, publish } = await settle(deps, m, outcome, (err) => errors.push(err));
  assert.equal(event.cost_micros, '100800');
  // Let the shrink through later. The answer does not depend on when: publish() must wait for it.
  const release = setTimeout(() => proxy.release(), 300);
  try {
    const publication = publish();
    assert.equal(publication.refused, undefined);
    await publication.done;
    // What Redis holds once the request counts as done (a graceful stop disconnects now).
    assert.deepEqual(await view.get(account), { balance: 1_000_000n, held: 100_800n, available: 899_200n });
  } finally {
    clearTimeout(release);
    proxy.release();
  }
  await log.drain();
  assert.deepEqual(published.map((e) => [e.event.event_id, (e.event as { cost_micros?: string }).cost_micros]), [[requestId, '100800']]);
  assert.deepEqual(errors, []);
});
