// storeEvents builds its usage rows without checking the columns again (`usageRow` with
// `decoded`): decodeEvent already held every item to its bounds. That is only sound while every
// event decodeEvent accepts is one the column checks (`checkUsageColumns`, what insertUsage and
// insertEvents run for callers without decodeEvent) accept too. This pins it on every edge case
// of the event shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeEvent, type UsageEvent } from '@tollgate/events';
import { checkUsageColumns, WarehouseInputError } from '../src/warehouse.ts';
import { edgeEvents, V1, V2 } from '../../../test/support/event-edges.ts';

test('decoded events need no second column check: every usage event decodeEvent accepts at every edge value passes checkUsageColumns', () => {
  let usage = 0;
  let refusedByDecode = 0;
  for (const value of edgeEvents()) {
    const d = decodeEvent(value);
    if (!d.ok) {
      refusedByDecode++;
      continue;
    }
    if (d.event.type !== 'usage') continue;
    usage++;
    assert.doesNotThrow(() => checkUsageColumns(d.event as UsageEvent), JSON.stringify(value)?.slice(0, 300));
  }
  assert.ok(usage > 1000, `${usage} decoded usage events checked`);
  assert.ok(refusedByDecode > 1000, `${refusedByDecode} edge values refused by decodeEvent`);
});

test('the column checks still refuse what decodeEvent refuses, for callers without it (a lone surrogate, a count past UInt32, a status past UInt16)', () => {
  for (const base of [V1, V2]) {
    assert.doesNotThrow(() => checkUsageColumns(base));
    for (const [field, bad, message] of [
      ['model', 'lone\ud800', /model has half of a UTF-16 surrogate pair/],
      ['latency_ms', 2 ** 32, /latency_ms must be an integer in \[0, 4294967295\], got 4294967296/],
      ['http_status', 65536, /http_status must be an integer in \[0, 65535\], got 65536/],
    ] as const) {
      assert.throws(() => checkUsageColumns({ ...base, [field]: bad } as unknown as UsageEvent), (err: unknown) => err instanceof WarehouseInputError && message.test(err.message));
    }
  }
});
