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
import type { UsageEventV2 } from '@tollgate/events';
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

test('usage insert format: a value of the wrong type or range for its column is a WarehouseInputError naming the field (quarantined alone by storeEvents), not a crash of the batch', async () => {
  const { w, sent } = recording('native');
  const bad = v2({ event_id: 'req_bad', ts: Date.UTC(2026, 0, 1), account_id: 'acc_1', model: 7 as unknown as string });
  await assert.rejects(w.insertUsage([bad]), (err: unknown) => err instanceof WarehouseInputError && err.message === 'model must be a string, got number');
  const key = v2({ event_id: 'req_key', ts: Date.UTC(2026, 0, 1), account_id: 'acc_1', upstream_request_id: 5 as unknown as string });
  await assert.rejects(w.insertUsage([key]), (err: unknown) => err instanceof WarehouseInputError && err.message === 'upstream_request_id must be a string or null, got number');
  const status = v2({ event_id: 'req_http', ts: Date.UTC(2026, 0, 1), account_id: 'acc_1', http_status: 70_000 });
  await assert.rejects(w.insertUsage([status]), /http_status must be an integer in \[0, 65535\], got 70000/);
  assert.equal(sent.length, 0);
});

test('usage rows refuse what a column cannot store exactly, in either body: half surrogate pairs, wrong types, inherited or array-made map keys, positions out of Int32/Int64 (WarehouseInputError naming the field, nothing sent)', async () => {
  // Kind: a value the two bodies store differently (a tester's findings): Native wrote U+FFFD for
  // half a surrogate pair where the JSON body failed or kept invalid UTF-8, wrote '' for an
  // undefined nullable text where JSON wrote NULL, made `{'0':'a'}` of an array, read inherited
  // keys; both wrapped a partition or offset past its column. decodeEvent refuses all of these
  // on the consumer path; `insertUsage` is public.
  const ts = Date.UTC(2026, 0, 1);
  const good = v2({ event_id: 'req_ok', ts, account_id: 'acc_1' });
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['high surrogate in key_id', { key_id: 'a\ud800' }, /^key_id has half of a UTF-16 surrogate pair$/],
    ['low surrogate in event_id', { event_id: 'dup\udc00' }, /^event_id has half of a UTF-16 surrogate pair$/],
    ['surrogate in account_id', { account_id: '\udbff' }, /^account_id has half/],
    ['surrogate in a unit price key', { unit_prices: { 'in\ud800': '1' } }, /^unit_prices key has half/],
    ['surrogate in a unit price', { unit_prices: { input: '\udc00' } }, /^unit_prices\.input has half/],
    ['surrogate in unpriced', { unpriced: ['x', '\ud800'] }, /^unpriced\[1\] has half/],
    ['undefined upstream_request_id', { upstream_request_id: undefined }, /^upstream_request_id must be a string or null, got undefined$/],
    ['number served_model', { served_model: 7 }, /^served_model must be a string or null, got number$/],
    ['unit_prices as an array', { unit_prices: ['a'] }, /^unit_prices must be a plain object$/],
    ['unit_prices as a string', { unit_prices: 'ab' }, /^unit_prices must be a plain object$/],
    ['unit_prices with a prototype', { unit_prices: Object.create({ inherited: '9' }) as unknown }, /^unit_prices must be a plain object$/],
    ['anomalies as a string', { anomalies: 'abc' }, /^anomalies must be an array of strings$/],
    ['a null in multipliers', { multipliers: [null] }, /^multipliers\[0\] must be a string, got null$/],
    ['null quantities', { quantities: null }, /^quantities must be a plain object$/],
    ['null iterations', { iterations: null }, /^iterations must be an array$/],
  ];
  for (const insertFormat of ['native', 'json'] as const) {
    for (const [what, o, message] of cases) {
      const { w, sent } = recording(insertFormat);
      const bad = { ...v2({ event_id: 'req_bad', ts, account_id: 'acc_1' }), ...o } as UsageEventV2;
      await assert.rejects(w.insertUsage([good, bad]), (err: unknown) => err instanceof WarehouseInputError && message.test(err.message), `${insertFormat}: ${what}`);
      assert.equal(sent.length, 0, `${insertFormat}: ${what}`);
    }
    for (const [what, position, message] of [
      ['partition 1.5', { partition: 1.5, offset: 0n }, /^log partition must be an integer in \[0, 2147483647\], got 1\.5$/],
      ['partition 2^31', { partition: 2 ** 31, offset: 0n }, /^log partition must be an integer/],
      ['offset 2^63', { partition: 0, offset: 2n ** 63n }, /^log offset must be a bigint in \[0, 9223372036854775807\], got 9223372036854775808$/],
      ['offset -2', { partition: 0, offset: -2n }, /^log offset must be a bigint/],
      ['offset as a number', { partition: 0, offset: 5 as unknown as bigint }, /^log offset must be a bigint/],
    ] as const) {
      const { w, sent } = recording(insertFormat);
      await assert.rejects(w.insertUsage([good], [position]), (err: unknown) => err instanceof WarehouseInputError && message.test(err.message), `${insertFormat}: ${what}`);
      assert.equal(sent.length, 0);
    }
    // The edges still pass: Int32 and Int64 max, '' and null kept apart, a null-prototype map.
    const { w, sent } = recording(insertFormat);
    await w.insertUsage([v2({ event_id: 'req_edge', ts, account_id: 'acc_1', upstream_request_id: '', served_model: null,
      unit_prices: Object.assign(Object.create(null) as Record<string, string>, { input: '1' }) })],
    [{ partition: 2 ** 31 - 1, offset: 2n ** 63n - 1n }]);
    assert.equal(sent.length, 1, insertFormat);
  }
});
