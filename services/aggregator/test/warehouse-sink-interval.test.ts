// The warehouse sink's flush interval (WAREHOUSE_FLUSH_MS) is the least time between the starts
// of two inserts, not a pause after each: a small buffer waits for company until `flushMs` after
// the previous insert began, so a slow insert does not add its own duration to every event's
// wait (event-to-queryable; bench/README.md, "The run of 2026-12-01"). A real chDB warehouse,
// its storeEvents slowed by a known time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLog, type UsageEvent } from '@tollgate/events';
import { createChdbClickHouse, Warehouse } from '@tollgate/warehouse';
import { startWarehouseSink } from '@tollgate/aggregator';

function usage(i: number): UsageEvent {
  return {
    type: 'usage', event_id: `req_${i}`, ts: 1_790_000_000_000 + i, account_id: `acct_${i}`, key_id: 'key_1',
    model: 'm', catalog_model: 'm', upstream_model: 'm', input_tokens: 10, output_tokens: 2,
    cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cost_micros: String(100 + i),
    status: 'ok', http_status: 200, latency_ms: 5, ttft_ms: 2, stream: false, upstream_request_id: null, gateway_id: 'g',
  };
}

test('flush interval counts from the previous insert start: a slow insert does not delay the next small one by its duration', async () => {
  const FLUSH_MS = 1000;
  const INSERT_MS = 800;
  const real = new Warehouse({ client: createChdbClickHouse({ path: mkdtempSync(join(tmpdir(), 'tollgate-wh-')) }) });
  await real.migrate();
  const starts: number[] = [];
  const slow = new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop === 'storeEvents' && typeof v === 'function') {
        return async (...args: unknown[]) => {
          starts.push(performance.now());
          const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          await new Promise((r) => setTimeout(r, INSERT_MS));
          return out;
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const log = new MemoryLog();
  await startWarehouseSink({ log, warehouse: slow, flushMs: FLUSH_MS });
  await log.publish('usage', [{ event: usage(1) }]);
  // The first insert starts at once (no insert before it); the second event comes while it runs.
  for (let i = 0; i < 200 && starts.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  await log.publish('usage', [{ event: usage(2) }]);
  await log.drain();
  assert.equal(starts.length, 2);
  const gap = starts[1]! - starts[0]!;
  // Never sooner than the interval; counted from the end of the first insert it would be
  // INSERT_MS + FLUSH_MS (1,800 ms). 500 ms of slack for a late timer on a busy machine.
  assert.ok(gap >= FLUSH_MS - 1, `second insert ${gap.toFixed(0)} ms after the first began: sooner than flushMs ${FLUSH_MS}`);
  assert.ok(gap < FLUSH_MS + 500, `second insert ${gap.toFixed(0)} ms after the first began: the interval was counted from the insert's end`);
  const totals = await real.usageTotals({});
  assert.equal(totals.requests, 2);
  assert.equal(totals.costMicros, 203n);
  await log.close();
  await real.close();
});
