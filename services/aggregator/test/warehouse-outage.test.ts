// "ClickHouse unreachable": the warehouse consumer's inserts fail for a while. The hot path
// (the ledger group) must not notice, nothing may be lost, and once inserts work again every
// event is in the warehouse exactly once. The warehouse is a real chDB one; only its first
// inserts are made to fail, the way a down server fails them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLog, type UsageEvent } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore } from '@tollgate/ledger';
import { createChdbClickHouse, Warehouse } from '@tollgate/warehouse';
import { startLedgerConsumer, startWarehouseSink } from '@tollgate/aggregator';

function usage(i: number): UsageEvent {
  return {
    type: 'usage', event_id: `req_${i}`, ts: 1_790_000_000_000 + i, account_id: 'acct_1', key_id: 'key_1',
    model: 'm', catalog_model: 'm', upstream_model: 'm', input_tokens: 10, output_tokens: 2,
    cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cost_micros: String(100 + i),
    status: 'ok', http_status: 200, latency_ms: 5, ttft_ms: 2, stream: false, upstream_request_id: null, gateway_id: 'g',
  };
}

test('warehouse inserts failing: ledger unaffected, events retried, each stored once', async () => {
  const real = new Warehouse({ client: createChdbClickHouse({ path: mkdtempSync(join(tmpdir(), 'tollgate-wh-')) }) });
  await real.migrate();
  let failuresLeft = 3;
  let failed = 0;
  // Same object, but the first inserts throw like a connection refused.
  const flaky = new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop === 'storeEvents' && typeof v === 'function') {
        return async (...args: unknown[]) => {
          if (failuresLeft > 0) {
            failuresLeft--;
            failed++;
            throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' });
          }
          return (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const log = new MemoryLog();
  const balances = new MemoryBalanceStore();
  const keys = new MemoryKeyDirectory();
  const errors: unknown[] = [];
  await startLedgerConsumer({ log, balances, keys });
  await startWarehouseSink({ log, warehouse: flaky, flushMs: 10, onError: (e) => errors.push(e) });

  const events = Array.from({ length: 50 }, (_, i) => usage(i));
  for (const e of events) await log.publish('usage', [{ event: e }]);
  const expected = events.reduce((s, e) => s + BigInt(e.cost_micros), 0n);

  // The hot path applied everything while the warehouse was failing.
  for (let i = 0; i < 100 && (await balances.get('acct_1')).balance !== -expected; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal((await balances.get('acct_1')).balance, -expected);

  await log.drain();
  assert.equal(failed, 3);
  assert.equal(errors.length, 3);
  const totals = await real.usageTotals({});
  assert.equal(totals.requests, 50);
  assert.equal(totals.costMicros, expected);
  assert.deepEqual(await real.duplicateUsageIds(), []);
  await log.close();
  await real.close();
});
