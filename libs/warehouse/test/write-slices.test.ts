// Cooperative write path (issue 11, the latency tail): the embedded warehouse stores events on
// the thread that serves requests, so decoding a batch and building its rows is done in slices
// of WRITE_SLICE_MS, letting the event loop run between them. Real chDB. What is stored must be
// exactly what it was without the slices.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Warehouse, createChdbClickHouse, type StoreItem } from '@tollgate/warehouse';
import { usage } from './warehouse.contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-slices-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('slices: the event loop runs while a 20,000-event batch is decoded, and every event is stored once with its exact cost', async () => {
  const prefix = `s${randomBytes(3).toString('hex')}_`;
  const client = createChdbClickHouse({ path: dir });
  const w = new Warehouse({ client, tablePrefix: prefix });
  await w.migrate();
  const n = 20_000;
  const items: StoreItem[] = Array.from({ length: n }, (_, i) => ({
    topic: 'usage', event: usage({ event_id: `slice-${i}`, cost_micros: String(1000 + (i % 7)) }), position: { partition: 0, offset: BigInt(i) },
  }));
  // How far the decoding got: every item read through the array counts.
  let read = 0;
  const watched = new Proxy(items, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) read++;
      return Reflect.get(target, key, receiver);
    },
  });
  let readWhenLoopRan = -1;
  setImmediate(() => { readWhenLoopRan = read; });
  const poison = await w.storeEvents(watched, 'warehouse');
  assert.deepEqual(poison, []);
  // The immediate ran after decoding began and before it ended: the batch was not one block.
  assert.ok(readWhenLoopRan > 0 && readWhenLoopRan < n, `the loop ran after ${readWhenLoopRan} of ${n} items were read`);

  const rows = await (await client.query({
    query: `SELECT count() AS n, toString(sum(cost_micros)) AS cost, uniqExact(event_id) AS ids, countIf(rollup_skip = 1) AS skipped FROM tollgate.${prefix}usage_events`,
    format: 'JSONEachRow',
  })).json<{ n: string; cost: string; ids: string; skipped: string }>();
  // Σ (1000 + i mod 7) over i < 20,000 = 20,000 × 1000 + 2,857 cycles × 21 + (0) = 20,059,997
  const expected = BigInt(n) * 1000n + Array.from({ length: n }, (_, i) => BigInt(i % 7)).reduce((a, b) => a + b, 0n);
  assert.deepEqual(rows, [{ n: String(n), cost: expected.toString(), ids: String(n), skipped: '0' }]);
  assert.equal(expected, 20_059_997n);
  await client.close();
});
