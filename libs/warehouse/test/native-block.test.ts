// The Native block writer, byte for byte: every expected block below is what a ClickHouse server
// (26.7) itself wrote for the same values with `FORMAT Native` over HTTP, checked by hand against
// the layout in libs/warehouse/src/native-block.ts. And the usage insert's choice of body.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  LOW_CARDINALITY_VERSION, LowCardinalityValues, NativeWriter, Warehouse, WarehouseInputError, createChdbClickHouse,
  createHttpClickHouse, isTextOnlyClient, nativeBlock, type NativeColumn,
} from '@tollgate/warehouse';
import { v2 } from './usage-fixtures.ts';

const hex = (b: Buffer): string => b.toString('hex');
/** `String` bytes: one LEB128 length byte (< 128) and the ASCII text. */
const str = (s: string): string => (s.length.toString(16).padStart(2, '0')) + Buffer.from(s).toString('hex');
const u64 = (n: number): string => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return hex(b); };

/** A column of one part, written by `fill`. */
function column(name: string, type: string, fill: (w: NativeWriter) => void): NativeColumn {
  const w = new NativeWriter(16);
  fill(w);
  return { name, type, parts: () => [w] };
}

/** A LowCardinality column (or an Array of one): the version, then `before` (an Array's totals), then the dictionary data. */
function lowCardinality(name: string, type: string, nullable: boolean, values: Array<string | null>, before?: (w: NativeWriter) => void): NativeColumn {
  const head = new NativeWriter(16);
  head.uint64(LOW_CARDINALITY_VERSION);
  before?.(head);
  const lc = new LowCardinalityValues(nullable);
  for (const v of values) lc.add(v);
  const data = new NativeWriter(16);
  lc.writeData(data);
  return { name, type, parts: () => [head, data] };
}

test('native block layout: fixed-width, String, Array, Map, Nullable, Bool and DateTime64 columns as a server writes them', () => {
  // SELECT 1::UInt8 AS a, 'x' AS s, ['p','q']::Array(String) AS arr, map('k','v') AS m,
  //        NULL::Nullable(UInt32) AS n, true AS b, toDateTime64(1, 3, 'UTC') AS t FORMAT Native
  const block = nativeBlock(1, [
    column('a', 'UInt8', (w) => { w.reserve(1); w.uint8(1); }),
    column('s', 'String', (w) => w.string('x')),
    column('arr', 'Array(String)', (w) => { w.reserve(8); w.uint64(2); w.string('p'); w.string('q'); }),
    column('m', 'Map(String, String)', (w) => { w.reserve(8); w.uint64(1); w.string('k'); w.string('v'); }),
    column('n', 'Nullable(UInt32)', (w) => { w.reserve(5); w.uint8(1); w.uint32(0); }),
    column('b', 'Bool', (w) => { w.reserve(1); w.uint8(1); }),
    column('t', "DateTime64(3, 'UTC')", (w) => { w.reserve(8); w.int64(1000); }),
  ]);
  assert.equal(hex(block),
    '0701' + str('a') + str('UInt8') + '01' + str('s') + str('String') + str('x')
    + str('arr') + str('Array(String)') + u64(2) + str('p') + str('q')
    + str('m') + str('Map(String, String)') + u64(1) + str('k') + str('v')
    + str('n') + str('Nullable(UInt32)') + '01' + '00000000'
    + str('b') + str('Bool') + '01'
    + str('t') + str("DateTime64(3, 'UTC')") + 'e803000000000000');
});

test('native block layout: LowCardinality dictionaries (the default first, NULL before it), Array(LowCardinality) with and without elements, Map of two', () => {
  // SELECT toLowCardinality(arrayJoin(['b','a','b',''])) AS s FORMAT Native
  assert.equal(hex(nativeBlock(4, [lowCardinality('s', 'LowCardinality(String)', false, ['b', 'a', 'b', ''])])),
    '0104' + str('s') + str('LowCardinality(String)') + u64(1) + u64(0x600) + u64(3) + str('') + str('b') + str('a') + u64(4) + '01020100');
  // SELECT CAST(arrayJoin(['b',NULL,'a','b']) AS LowCardinality(Nullable(String))) AS s FORMAT Native
  assert.equal(hex(nativeBlock(4, [lowCardinality('s', 'LowCardinality(Nullable(String))', true, ['b', null, 'a', 'b'])])),
    '0104' + str('s') + str('LowCardinality(Nullable(String))') + u64(1) + u64(0x600) + u64(4) + str('') + str('') + str('b') + str('a') + u64(4) + '02000302');
  // SELECT CAST(arrayJoin([['x','y'],[],['x']]) AS Array(LowCardinality(String))) AS s FORMAT Native
  const totals = (list: number[]) => (w: NativeWriter) => { w.reserve(8 * list.length); for (const t of list) w.uint64(t); };
  assert.equal(hex(nativeBlock(3, [lowCardinality('s', 'Array(LowCardinality(String))', false, ['x', 'y', 'x'], totals([2, 2, 3]))])),
    '0103' + str('s') + str('Array(LowCardinality(String))') + u64(1) + u64(2) + u64(2) + u64(3)
    + u64(0x600) + u64(3) + str('') + str('x') + str('y') + u64(3) + '010201');
  // SELECT CAST(arrayJoin([[],[]]) AS Array(LowCardinality(String))) AS s FORMAT Native: no dictionary at all
  assert.equal(hex(nativeBlock(2, [lowCardinality('s', 'Array(LowCardinality(String))', false, [], totals([0, 0]))])),
    '0102' + str('s') + str('Array(LowCardinality(String))') + u64(1) + u64(0) + u64(0));
  assert.throws(() => new LowCardinalityValues(false).add(null), TypeError);
  assert.throws(() => new LowCardinalityValues(false).add(7 as unknown as string), TypeError);
});

test('native block layout: lengths past one LEB128 byte, UTF-8, index widths of 2 and 4 bytes, Int64 from text at both ends', () => {
  const w = new NativeWriter(4); // grows
  w.string('é'.repeat(42)); // 42 units, 84 bytes: one length byte
  w.string('é'.repeat(64)); // 128 bytes: 0x80 0x01
  w.string('😀'); // a surrogate pair: 4 bytes
  w.reserve(40);
  w.int64Text('9223372036854775807');
  w.int64Text('-9223372036854775808');
  w.int64Text('123456789012345');
  w.int64(-1);
  w.uint64(2 ** 53 - 1);
  assert.equal(hex(w.finish()),
    '54' + 'c3a9'.repeat(42) + '8001' + 'c3a9'.repeat(64) + '04f09f9880'
    + 'ffffffffffffff7f' + '0000000000000080' + '79df0d8648700000' + 'ffffffffffffffff' + 'ffffffffffff1f00');
  const width = (distinct: number): string => {
    const lc = new LowCardinalityValues(false);
    for (let i = 0; i < distinct; i++) lc.add(`v${i}`);
    const out = new NativeWriter(16);
    lc.writeData(out);
    return hex(out.finish().subarray(0, 8));
  };
  assert.equal(width(255), u64(0x600)); // 256 keys with the default: UInt8
  assert.equal(width(256), u64(0x601)); // 257: UInt16
  assert.equal(width(65_535), u64(0x601));
  assert.equal(width(65_536), u64(0x602)); // UInt32
});

/** A Warehouse on a client that records each usage insert's statement and body and answers at once. */
function recording(insertFormat?: 'native' | 'json'): { w: Warehouse; sent: Array<{ query: string; body: Buffer }> } {
  const sent: Array<{ query: string; body: Buffer }> = [];
  const client = {
    query: async () => ({ json: async () => [] }),
    command: async () => {},
    exec: async (p: { query: string; values: Readable }) => {
      const chunks: Buffer[] = [];
      for await (const c of p.values) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
      sent.push({ query: p.query, body: Buffer.concat(chunks) });
      return { stream: Readable.from([]) };
    },
  };
  return { w: new Warehouse({ client: client as never, ...(insertFormat ? { insertFormat } : {}) }), sent };
}

test('usage insert format: Native for a server client, JSONCompactEachRow for chDB\'s (its connection passes text only) or when asked', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-native-'));
  try {
    const chdb = createChdbClickHouse({ path: dir });
    const http = createHttpClickHouse({ url: 'http://127.0.0.1:1' });
    assert.equal(isTextOnlyClient(chdb), true);
    assert.equal(isTextOnlyClient(http), false);
    await chdb.close();
    await http.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const e = v2({ event_id: 'req_1', ts: Date.UTC(2026, 0, 1), account_id: 'acc_1', cost_micros: '42' });
  for (const [asked, format] of [[undefined, 'Native'], ['native', 'Native'], ['json', 'JSONCompactEachRow']] as const) {
    const { w, sent } = recording(asked);
    await w.insertUsage([e], [{ partition: 2, offset: 7n }]);
    assert.equal(sent.length, 1);
    assert.match(sent[0]!.query, new RegExp(`FORMAT ${format}$`));
    if (format === 'JSONCompactEachRow') assert.equal(sent[0]!.body.toString().startsWith('[2,"7","req_1","2026-01-01 00:00:00.000","acc_1",'), true);
    else assert.equal(hex(sent[0]!.body.subarray(0, 2)), '2d01'); // 45 columns (every one of usage_events but inserted_at), 1 row
  }
});

test('usage insert format: a value of the wrong type for its column is a WarehouseInputError naming the column (quarantined alone by storeEvents), not a crash of the batch', async () => {
  const { w, sent } = recording('native');
  const bad = v2({ event_id: 'req_bad', ts: Date.UTC(2026, 0, 1), account_id: 'acc_1', model: 7 as unknown as string });
  await assert.rejects(w.insertUsage([bad]), (err: unknown) => err instanceof WarehouseInputError && /^model: /.test(err.message));
  const key = v2({ event_id: 'req_key', ts: Date.UTC(2026, 0, 1), account_id: 'acc_1', upstream_request_id: 5 as unknown as string });
  await assert.rejects(w.insertUsage([key]), (err: unknown) => err instanceof WarehouseInputError && /^upstream_request_id: /.test(err.message));
  const status = v2({ event_id: 'req_http', ts: Date.UTC(2026, 0, 1), account_id: 'acc_1', http_status: 70_000 });
  await assert.rejects(w.insertUsage([status]), /http_status must be an integer in \[0, 65535\], got 70000/);
  assert.equal(sent.length, 0);
});
