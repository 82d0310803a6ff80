// The one contract every warehouse transport passes. Each test works in its own table prefix,
// so runs can share one chDB path or one ClickHouse server.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { ControlEvent, KeyRecord, LedgerEvent, UsageEventV1 } from '@tollgate/events';
import { MAX_USAGE_EPOCH_MS, zeroQuantities } from '@tollgate/events';
import type { Dimension } from '@tollgate/pricing';
import { rollupsMatchRaw, stringTable, WarehouseInputError } from '@tollgate/warehouse';
import type { UsageTotals, Warehouse } from '@tollgate/warehouse';
import { q, v2 } from './usage-fixtures.ts';

/**
 * Returns a Warehouse whose tables are named by `tablePrefix`. Called again with the same prefix
 * (after the first one was closed) it must reach the same stored data: that is how persistence
 * is tested. The contract calls `migrate()` itself.
 */
export type MakeWarehouse = (tablePrefix: string) => Warehouse | Promise<Warehouse>;

/** 2^53 + 1: the smallest integer a JS number cannot hold. */
const ABOVE_2_53 = 9_007_199_254_740_993n;

const T0 = Date.UTC(2025, 0, 1, 23, 59, 59, 999); // last ms of 2025-01-01
const T1 = Date.UTC(2025, 0, 2, 0, 0, 0, 0); // first ms of 2025-01-02
const T2 = Date.UTC(2025, 0, 2, 12, 0, 0, 0);

let seq = 0;
function newPrefix(): string {
  seq += 1;
  return `t${randomBytes(3).toString('hex')}_${seq}_`;
}

/**
 * Expected sums: `quantities` completed with zeros. `upstreamCostUnknown` defaults to
 * `requests` (version 1 events carry no upstream cost and every one here is charged).
 */
export function sums(requests: number, q: Partial<Record<Dimension, number>>, costMicros: bigint, o: Partial<UsageTotals> = {}): UsageTotals {
  return {
    requests, quantities: { ...zeroQuantities(), ...q }, costMicros, upstreamCost: {}, upstreamCostUnknown: requests,
    unpricedRequests: 0, ...o,
  };
}

/** A version 1 usage event, as the gateway wrote them before issue 7. */
export function usage(o: Partial<UsageEventV1> & Pick<UsageEventV1, 'event_id'>): UsageEventV1 {
  return {
    type: 'usage',
    ts: T2,
    account_id: 'acc_a',
    key_id: 'key_a1',
    model: 'claude-sonnet-4-5',
    catalog_model: 'claude-sonnet-4-5',
    upstream_model: 'claude-sonnet-4-5-20250929',
    input_tokens: 100,
    output_tokens: 20,
    cache_read_tokens: 0,
    cache_write_5m_tokens: 0,
    cache_write_1h_tokens: 0,
    cost_micros: '1000',
    status: 'ok',
    http_status: 200,
    latency_ms: 1200,
    ttft_ms: 300,
    stream: true,
    upstream_request_id: 'req_up_1',
    gateway_id: 'gw1',
    ...o,
  };
}

export function ledger(
  o: Partial<LedgerEvent> & Pick<LedgerEvent, 'account_id' | 'reference' | 'amount_micros'>,
): LedgerEvent {
  return {
    type: 'ledger',
    event_id: `credit:${o.account_id}:${o.reference}`,
    ts: T0,
    kind: 'grant',
    ...o,
  };
}

function keyRecord(o: Partial<KeyRecord> & Pick<KeyRecord, 'id' | 'version'>): KeyRecord {
  return {
    account_id: 'acc_a',
    name: 'ci key',
    prefix: 'sk-tg-ab',
    hash: 'ab'.repeat(32),
    status: 'active',
    created_at: T0,
    revoked_at: null,
    ...o,
  };
}

// Three events on two accounts, two days, two keys and two models; one costs more than 2^53.
const USAGE: UsageEventV1[] = [
  usage({
    event_id: 'req_1', ts: T0, input_tokens: 10, output_tokens: 5, cache_read_tokens: 1000,
    cache_write_5m_tokens: 7, cost_micros: ABOVE_2_53.toString(),
  }),
  usage({
    event_id: 'req_2', ts: T1, key_id: 'key_a2', catalog_model: 'claude-haiku-4-5', model: 'haiku',
    input_tokens: 20, output_tokens: 6, cache_write_1h_tokens: 9, cost_micros: '7',
    status: 'client_disconnect', ttft_ms: null, stream: false, upstream_request_id: null,
  }),
  usage({
    event_id: 'req_3', ts: T2, account_id: 'acc_b', key_id: 'key_b1', input_tokens: 30,
    output_tokens: 7, cost_micros: '3', status: 'upstream_error', http_status: 529,
  }),
];

const LEDGER: LedgerEvent[] = [
  ledger({ account_id: 'acc_a', reference: 'topup-1', amount_micros: (ABOVE_2_53 * 2n).toString() }),
  ledger({ account_id: 'acc_a', reference: 'refund-1', kind: 'refund', amount_micros: '500' }),
  ledger({ account_id: 'acc_a', reference: 'fix-1', kind: 'adjustment', amount_micros: '-200' }),
  ledger({ account_id: 'acc_b', reference: 'topup-1', amount_micros: '1' }),
];

export function warehouseContract(name: string, makeWarehouse: MakeWarehouse): void {
  async function fresh(prefix = newPrefix()): Promise<Warehouse> {
    const w = await makeWarehouse(prefix);
    await w.migrate();
    return w;
  }

  async function withWarehouse(fn: (w: Warehouse, prefix: string) => Promise<void>): Promise<void> {
    const prefix = newPrefix();
    const w = await fresh(prefix);
    try {
      await fn(w, prefix);
    } finally {
      await w.close();
    }
  }

  describe(`warehouse contract: ${name}`, () => {
    test('migrate is idempotent and an empty warehouse reads as empty', () =>
      withWarehouse(async (w) => {
        await w.migrate();
        assert.deepEqual(await w.usageTotals({}), sums(0, {}, 0n));
        assert.deepEqual(await w.balances(), new Map());
        assert.deepEqual(await w.loadAccounts(), []);
        assert.deepEqual(await w.loadKeys(), []);
        assert.deepEqual(await w.usageBreakdown({ groupBy: 'model' }), []);
        assert.deepEqual(await w.ledgerTotals(), {
          entries: 0, amountMicros: 0n, byKind: { grant: 0n, top_up: 0n, adjustment: 0n, refund: 0n },
        });
        await w.insertUsage([]);
        await w.insertLedger([]);
        await w.insertControl([]);
      }));

    test('usage inserted twice counts once, with exact totals above 2^53', () =>
      withWarehouse(async (w) => {
        await w.insertUsage(USAGE);
        assert.deepEqual(await w.duplicateUsageIds(), []);
        await w.insertUsage(USAGE); // a consumer re-reading its batch
        await w.insertUsage([USAGE[1]!]);
        // Raw rows do hold the second copies (this is what the exactly-once tests look for)...
        assert.deepEqual(await w.duplicateUsageIds(), ['req_1', 'req_2', 'req_3']);
        // ...and no read counts them.
        assert.deepEqual(await w.usageTotals({}),
          sums(3, { input: 60, output: 18, cache_read: 1000, cache_write_5m: 7, cache_write_1h: 9 }, ABOVE_2_53 + 10n));
        assert.equal((await w.usageTotals({})).costMicros, 9_007_199_254_741_003n);
        assert.deepEqual(await w.usageEventIds({}), ['req_1', 'req_2', 'req_3']);
        assert.deepEqual(await w.usageTotals({ accountId: 'acc_a' }),
          sums(2, { input: 30, output: 11, cache_read: 1000, cache_write_5m: 7, cache_write_1h: 9 }, ABOVE_2_53 + 7n));
      }));

    test('a repeat inside one insert (a producer retry whose copies land in one batch) is written as two raw rows, not collapsed at the insert (optimize_on_insert = 0), and every read counts it once', () =>
      withWarehouse(async (w) => {
        // Kind: a read that relied on the server merging a block with itself at insert time. The
        // usage insert turns that off (it cost 10-25 % of the server's CPU per event), so raw
        // and usage_event_ids keep both copies until a background merge, and each rollup block
        // its rows as the view's GROUP BY gave them. 3 events of 1,000 / 20 / 300 µc on one
        // account (100 input and 20 output tokens each), req_b twice in the batch: totals 3 requests,
        // 300 and 60 tokens, 1,320 µc.
        const base = { account_id: 'acc_r', ts: T2 };
        const batch = [
          usage({ ...base, event_id: 'req_a', cost_micros: '1000' }),
          usage({ ...base, event_id: 'req_b', cost_micros: '20', ts: T2 + 1 }),
          usage({ ...base, event_id: 'req_c', cost_micros: '300', ts: T2 + 2 }),
          usage({ ...base, event_id: 'req_b', cost_micros: '20', ts: T2 + 1 }),
        ];
        await w.insertUsage(batch, batch.map((_, i) => ({ partition: 0, offset: BigInt(i) })));
        assert.deepEqual(await w.duplicateUsageIds(), ['req_b']);
        const raw = await w.select(`SELECT toString(count()) AS n FROM ${w.tables.usage}`);
        assert.equal(raw[0]!['n'], '4');
        assert.deepEqual(await w.usageTotals({}), sums(3, { input: 300, output: 60 }, 1_320n));
        assert.deepEqual(await w.usageEventIds({}), ['req_a', 'req_b', 'req_c']);
        for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table}`);
          assert.deepEqual([r[0]!['n'], r[0]!['c']], ['3', '1320'], table);
        }
        assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
        assert.equal((await w.logPositions()).usage.get(0), 3n);
      }));

    test('a batch whose event ids overflow one URL field of a server (300 KB of ids, 128 KiB cap): stored once; redelivered whole, at new offsets and with a repeat inside, every rollup still equals raw', () =>
      withWarehouse(async (w) => {
        // 3,000 events of 100-character ids over 300 accounts, one per second: the existence
        // query's and the repair's parameters must be cut into chunks to reach a server at all.
        const events = Array.from({ length: 3000 }, (_, i) => usage({
          event_id: `evt_${String(i).padStart(6, '0')}_${'x'.repeat(89)}`, account_id: `acc_${i % 300}`,
          ts: T2 + i * 1000, cost_micros: String(i + 1),
        }));
        const items = (offset: number) => events.map((event, i) => ({ event, topic: 'usage', position: { partition: 3, offset: BigInt(offset + i) } }));
        assert.deepEqual(await w.storeEvents(items(0), 'warehouse'), []);
        assert.deepEqual(await w.storeEvents(items(0), 'warehouse'), []); // the same batch redelivered
        assert.deepEqual(await w.storeEvents(items(3000), 'warehouse'), []); // re-sent by a producer: new offsets
        assert.deepEqual(await w.storeEvents([...items(6000).slice(0, 2), ...items(6000).slice(0, 2)], 'warehouse'), []);
        // Σ 1..3000 = 4,501,500 µc
        const totals = await w.usageTotals({});
        assert.equal(totals.requests, 3000);
        assert.equal(totals.costMicros, 4_501_500n);
        for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table}`);
          assert.deepEqual([r[0]!['n'], r[0]!['c']], ['3000', '4501500'], table);
        }
        assert.equal((await w.logPositions()).usage.get(3), 6001n);
      }));

    test('a list that grows with the data never rides in the URL: a batch of 3,000 ledger events with 100-character ids (~330 KB, past a server\'s 128 KiB field cap) is stored, a conflicting copy quarantined', () =>
      withWarehouse(async (w) => {
        // Kind: an id list sent as a query parameter (a URL field on a server). The ledger's
        // conflicting-duplicate check sent every ledger id of the batch as one: on a server the
        // whole batch failed ("Field value too long") and was retried forever. Here 3,000 grants
        // of 1..3,000 µc on 30 accounts, then the batch again with one grant's amount changed.
        const ref = (i: number) => `bulk-${String(i).padStart(5, '0')}-${'r'.repeat(80)}`;
        const grants = Array.from({ length: 3000 }, (_, i) => ledger({ account_id: `acc_${i % 30}`, reference: ref(i), amount_micros: String(i + 1) }));
        assert.ok(grants[0]!.event_id.length >= 100);
        const items = (events: LedgerEvent[], offset: number) => events.map((event, i) => ({ event, topic: 'ledger', position: { partition: 1, offset: BigInt(offset + i) } }));
        assert.deepEqual(await w.storeEvents(items(grants, 0), 'warehouse'), []);
        const changed = grants.map((g, i) => (i === 1234 ? { ...g, amount_micros: '999' } : g));
        const poison = await w.storeEvents(items(changed, 3000), 'warehouse');
        assert.deepEqual(poison.map((p) => [p.kind, p.event_id, p.offset]), [['conflicting_duplicate', grants[1234]!.event_id, 4234n]]);
        // Σ 1..3000 = 4,501,500 µc over the 30 accounts; acc_0 holds i = 0, 30, …, 2970: Σ (i + 1) = 148,600
        assert.deepEqual(await w.ledgerTotals(), { entries: 3000, amountMicros: 4_501_500n, byKind: { grant: 4_501_500n, top_up: 0n, adjustment: 0n, refund: 0n } });
        assert.equal((await w.ledgerTotals('acc_0')).amountMicros, 148_600n);
      }));

    test('a query carrying a list near the parser\'s 256 KiB default (262,144 bytes): every size from below to above it runs, the client\'s FORMAT suffix included; an empty list is an empty table', () =>
      withWarehouse(async (w) => {
        // Kind: a query whose text passes max_query_size only once the client appends its
        // FORMAT clause: sizeSettings measured the text without it, so 262,125–262,143 bytes
        // failed (code 62) on both transports, and a batch of that size forever.
        assert.deepEqual(await w.select(`SELECT toString(count()) AS n FROM ${stringTable([])}`), [{ n: '0' }]);
        for (const target of [262_000, 262_120, 262_125, 262_130, 262_143, 262_144, 262_145, 263_500]) {
          const head = `SELECT toString(count()) AS n, toString(sum(length(v))) AS chars FROM ${stringTable(['x'.repeat(260_000)])}`;
          const query = head + ' '.repeat(target - Buffer.byteLength(head));
          assert.equal(Buffer.byteLength(query), target);
          assert.deepEqual(await w.select(query), [{ n: '1', chars: '260000' }], `${target} bytes`);
        }
      }));

    test('a usage event dated past 2106-02-07T06:28:15.999Z (the last second a rollup bucket, a DateTime, holds) is quarantined at decode and refused by insertUsage; the last millisecond is stored and counted in every rollup', () =>
      withWarehouse(async (w) => {
        // Kind: a value one stage accepts and a later one cannot store. Usage ts up to 2299 was
        // accepted and stored raw, but its minute, hour and day buckets (DateTime, 32-bit
        // seconds) overflowed and the event fell out of every rollup (a tester's case).
        const last = usage({ event_id: 'edge_last', ts: MAX_USAGE_EPOCH_MS, cost_micros: '11' });
        const past = usage({ event_id: 'edge_past', ts: MAX_USAGE_EPOCH_MS + 1, cost_micros: '13' });
        const poison = await w.storeEvents([last, past].map((event, i) => ({ event, topic: 'usage', position: { partition: 0, offset: BigInt(i) } })), 'warehouse');
        assert.deepEqual(poison.map((p) => [p.kind, p.offset, p.reason]), [['invalid_event', 1n,
          'ts: must be at most 4294967295999 (2106-02-07T06:28:15.999Z, the last second a usage rollup\'s DateTime bucket holds)']]);
        await assert.rejects(w.insertUsage([past]), (e: unknown) => e instanceof WarehouseInputError
          && e.message === "ts 4294967296000 is past 2106-02-07T06:28:15.999Z, the last second a usage rollup's DateTime bucket holds");
        assert.equal((await w.usageTotals({})).costMicros, 11n);
        for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c, toString(min(bucket)) AS b FROM ${table}`);
          assert.equal(r[0]!['n'], '1', table);
          assert.equal(r[0]!['c'], '11', table);
          assert.match(String(r[0]!['b']), /^2106-02-0[67] /, table);
        }
      }));

    test('event ids are data, whatever their characters: quotes, backslashes, JSON escapes, %, +, &, U+2028 and non-ASCII are each found stored on redelivery, every rollup still equals raw', () =>
      withWarehouse(async (w) => {
        // Kind: an event id the existence check (ids in the query text since issue 11) could
        // misread: it would then count a redelivered event twice in the rollups, or not at all.
        const odd = ["it's", 'back\\slash', '\\', "\\'", "'); DROP TABLE x; --", 'quote"d', '\\u0041',
          '100%25+1&x=y#z', 'naïve ☃ 𝄞', '\u2028sep', ']["x'];
        const events = odd.map((event_id, i) => usage({ event_id, ts: T2 + i, cost_micros: String(10 ** i) }));
        const items = (offset: number) => events.map((event, i) => ({ event, topic: 'usage', position: { partition: 0, offset: BigInt(offset + i) } }));
        assert.deepEqual(await w.storeEvents(items(0), 'warehouse'), []);
        assert.deepEqual(await w.storeEvents(items(100), 'warehouse'), []); // re-sent: new offsets
        // 10^0 + … + 10^10 = 11,111,111,111 µc, once (control characters never get here: decodeEvent refuses them)
        const totals = await w.usageTotals({});
        assert.equal(totals.requests, odd.length);
        assert.equal(totals.costMicros, 11_111_111_111n);
        assert.deepEqual((await w.usageEventIds({})).sort(), [...odd].sort());
        for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table}`);
          assert.deepEqual([r[0]!['n'], r[0]!['c']], [String(odd.length), '11111111111'], table);
        }
        assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
      }));

    test('a batch whose events lie hours apart (a lagging partition beside a fresh one): the existence check reads each time span and finds the stored ids at both ends', () =>
      withWarehouse(async (w) => {
        // Kind: ids far apart in time in one check. The check reads usage_event_ids within the
        // batch's ts spans, cut at gaps over a minute (at most 16 spans, the widest gaps cut):
        // a span that missed an end would count its redelivered events again.
        const at = [T0 - 3 * 3_600_000, T0 - 3 * 3_600_000 + 5, T0, T0 + 59_000, T0 + 3_600_000,
          ...Array.from({ length: 20 }, (_, i) => T2 + i * 120_000)];
        const events = at.map((ts, i) => usage({ event_id: `span_${i}`, ts, account_id: `acc_${i % 3}`, cost_micros: String(i + 1) }));
        const items = (list: UsageEventV1[], offset: number) => list.map((event, i) => ({ event, topic: 'usage', position: { partition: 0, offset: BigInt(offset + i) } }));
        assert.deepEqual(await w.storeEvents(items(events.slice(0, 3), 0), 'warehouse'), []);
        assert.deepEqual(await w.storeEvents(items(events.slice(-2), 3), 'warehouse'), []);
        // all 25 together: the first three and the last two are stored already
        assert.deepEqual(await w.storeEvents(items(events, 10), 'warehouse'), []);
        // Σ 1..25 = 325 µc, each event once in raw and in every rollup
        assert.equal((await w.usageTotals({})).costMicros, 325n);
        for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table}`);
          assert.deepEqual([r[0]!['n'], r[0]!['c']], ['25', '325'], table);
        }
      }));

    test('a batch whose events span more months than ClickHouse lets one insert block write (max_partitions_per_insert_block, 100): stored whole, and redelivered at new offsets counted once, every rollup equal to raw', () =>
      withWarehouse(async (w) => {
        // Kind: a batch refused for a combination of its rows, each storable alone. 101 events a
        // month apart (2010-01 to 2018-05: a spool or a producer replaying old events) failed
        // with TOO_MANY_PARTS (252), not a data error, so the warehouse group retried the batch
        // for ever and its partition stalled (a breaker's HIGH). Event i costs i + 1 µc:
        // Σ 1..101 = 5,151 µc.
        const events = Array.from({ length: 101 }, (_, i) => usage({ event_id: `month_${i}`, ts: Date.UTC(2010, i, 15), account_id: `acc_${i % 3}`, cost_micros: String(i + 1) }));
        const items = (offset: number) => events.map((event, i) => ({ event, topic: 'usage', position: { partition: 0, offset: BigInt(offset + i) } }));
        assert.deepEqual(await w.storeEvents(items(0), 'warehouse'), []);
        // redelivered whole at new offsets (a producer retry): the existence check and the
        // repair of the rollup rows they fall in span the same 101 months
        assert.deepEqual(await w.storeEvents(items(101), 'warehouse'), []);
        assert.deepEqual(await w.usageTotals({}), sums(101, { input: 10_100, output: 2_020 }, 5_151n));
        for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
          const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table}`);
          assert.deepEqual([r[0]!['n'], r[0]!['c']], ['101', '5151'], table);
        }
        assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
      }));

    test('a writer that may have lost its partition (storeEvents\' beforeWrite rejects) writes no usage: asked after the existence check, right before the insert; the batch stored later counts once', () =>
      withWarehouse(async (w) => {
        // Kind: two consumers inserting the same events, the first frozen past its group's
        // session timeout between its existence check and its insert: both marked the events
        // new and the rollups counted them twice. Event i costs i + 1 µc: Σ 1..5 = 15 µc.
        const events = Array.from({ length: 5 }, (_, i) => usage({ event_id: `fence_${i}`, ts: T2 + i, cost_micros: String(i + 1) }));
        const items = events.map((event, i) => ({ event, topic: 'usage', position: { partition: 0, offset: BigInt(i) } }));
        let asked = 0;
        await assert.rejects(w.storeEvents(items, 'warehouse', { beforeWrite: async () => { asked++; throw new Error('partition lost'); } }), /partition lost/);
        assert.equal(asked, 1);
        assert.deepEqual(await w.usageTotals({}), sums(0, {}, 0n));
        assert.deepEqual(await w.usageEventIds({}), []);
        // the partition's owner stores the batch (its fence resolves), then the same batch again
        assert.deepEqual(await w.storeEvents(items, 'warehouse', { beforeWrite: async () => {} }), []);
        assert.deepEqual(await w.storeEvents(items, 'warehouse'), []);
        assert.deepEqual(await w.usageTotals({}), sums(5, { input: 500, output: 100 }, 15n));
        assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
      }));

    test('log positions: the highest offset per partition, duplicates included; ledger entries by id', () =>
      withWarehouse(async (w) => {
        assert.deepEqual(await w.logPositions(), { usage: new Map(), ledger: new Map() });
        await w.insertUsage(USAGE, [{ partition: 0, offset: 7n }, { partition: 3, offset: 2n }, undefined]);
        await w.insertUsage([USAGE[0]!], [{ partition: 0, offset: 9n }]); // the same event again, later in the log
        const l = ledger({ account_id: 'acc_a', reference: 'ref-1', amount_micros: '5000000' });
        const r = ledger({ account_id: 'acc_a', reference: 'ref-2', amount_micros: '70', kind: 'refund' });
        await w.insertLedger([l, r], [{ partition: 1, offset: 4n }, { partition: 1, offset: 5n }]);
        const p = await w.logPositions();
        assert.deepEqual([...p.usage], [[0, 9n], [3, 2n]]);
        assert.deepEqual([...p.ledger], [[1, 5n]]);
        // Amount and kind: a rebuilt hot ledger tells a retried entry from another under one reference.
        const entries = new Map([['credit:acc_a:ref-1', { amount: 5_000_000n, kind: 'grant' }], ['credit:acc_a:ref-2', { amount: 70n, kind: 'refund' }]]);
        assert.deepEqual(await w.ledgerEntries(), entries);
        assert.deepEqual(await w.ledgerEntriesAt(p), entries);
        // A grant the ledger refused is a fact here, but neither an entry nor money: a refusal.
        const big = ledger({ account_id: 'acc_a', reference: 'ref-3', amount_micros: '9007199254740991' });
        await w.insertLedger([big], [{ partition: 1, offset: 6n }]);
        const reason = 'balance_out_of_range: 9007199254740991 micro-credits would take the balance of acc_a outside ±9007199254740991 micro-credits';
        await w.insertQuarantine([{ event_id: big.event_id, group: 'ledger', topic: 'ledger', partition: 1, offset: 6n, kind: 'apply_failed', reason, raw: '{}' }]);
        await w.insertQuarantine([{ event_id: 'credit:acc_a:ref-2', group: 'warehouse', topic: 'ledger', partition: 1, offset: 5n, kind: 'invalid_event', reason: 'not the ledger', raw: '{}' }]);
        assert.deepEqual(await w.ledgerEntriesAt(await w.logPositions()), entries);
        assert.deepEqual(await w.ledgerEntries(), entries);
        assert.deepEqual(await w.ledgerRefusals(), new Map([[big.event_id, reason]]));
        // A malformed copy of an applied id the ledger group set aside refuses nothing: the
        // applied grant stays in money and in the entries (hot state kept its applied outcome).
        const before = (await w.balances()).get('acc_a');
        await w.insertQuarantine([{ event_id: 'credit:acc_a:ref-1', group: 'ledger', topic: 'ledger', partition: 1, offset: 7n, kind: 'invalid_event', reason: 'amount_micros: must be an integer decimal string', raw: '{}' }]);
        assert.deepEqual(await w.ledgerEntriesAt(await w.logPositions()), entries);
        assert.deepEqual(await w.ledgerRefusals(), new Map([[big.event_id, reason]]));
        assert.equal((await w.balances()).get('acc_a'), before);
        assert.equal((await w.ledgerTotals('acc_a')).amountMicros, 5_000_070n);
      }));

    test('balances as of log positions count only facts at or before them', () =>
      withWarehouse(async (w) => {
        const grant = (ref: string, amount: string) => ledger({ account_id: 'acc_p', reference: ref, amount_micros: amount });
        await w.insertLedger([grant('a', '1000'), grant('b', '200'), grant('c', '30')],
          [{ partition: 0, offset: 0n }, { partition: 0, offset: 1n }, { partition: 2, offset: 0n }]);
        await w.insertLedger([grant('embedded', '4')]); // no position: always counts
        const u = usage({ event_id: 'req_p', account_id: 'acc_p', cost_micros: '5' });
        await w.insertUsage([u], [{ partition: 1, offset: 10n }]);
        const at = (usage: [number, bigint][], ledger: [number, bigint][]) => ({ usage: new Map(usage), ledger: new Map(ledger) });
        assert.equal((await w.balancesAt(await w.logPositions())).get('acc_p'), 1234n - 5n);
        assert.equal((await w.balancesAt(at([[1, 9n]], [[0, 0n]]))).get('acc_p'), 1004n);
        assert.equal((await w.balancesAt(at([[1, 10n]], [[0, 1n], [2, 0n]]))).get('acc_p'), 1229n);
        assert.deepEqual([...(await w.ledgerEntriesAt(at([], [[0, 0n]]))).keys()].sort(),
          ['credit:acc_p:a', 'credit:acc_p:embedded']);
        assert.deepEqual(await w.usageIdsAt(at([[1, 10n]], []), 0), ['req_p']);
        assert.deepEqual(await w.usageIdsAt(at([[1, 9n]], []), 0), []);
        assert.deepEqual(await w.usageIdsAt(at([[1, 10n]], []), u.ts + 1), []);
        // Their accounts (a ledger on Redis Cluster keeps each id in its account's slot).
        assert.deepEqual(await w.eventAccountsAt(at([[1, 10n]], [[0, 0n]]), 0),
          new Map([['credit:acc_p:a', 'acc_p'], ['credit:acc_p:embedded', 'acc_p'], ['req_p', 'acc_p']]));
        assert.deepEqual(await w.eventAccountsAt(at([[1, 9n]], []), 0), new Map([['credit:acc_p:embedded', 'acc_p']]));
      }));

    test('a fact whose later copy lies past the positions still counts as of them (usage and ledger, copies in later and in the same batch): balancesAt, ledgerEntriesAt and eventAccountsAt agree with usageIdsAt', () =>
      withWarehouse(async (w) => {
        // Kind: the position bound applied after FINAL folded the copies. FINAL keeps the newest
        // copy; when a producer's retry stored it past the bound, the whole event fell out of
        // the balance while usageIdsAt still named it, so a rebuild from that snapshot forgot
        // its charge for good (a tester: -7 µc for -107). acc_c: usage X 100 µc at p0:5, Y 7 µc
        // at p0:6, grant G 1,000 µc at p1:3; then copies X at p0:14 and G at p1:9, and in one
        // batch Z 20 µc at p0:15 and its copy at p0:16.
        const x = usage({ event_id: 'req_x', account_id: 'acc_c', cost_micros: '100' });
        const y = usage({ event_id: 'req_y', account_id: 'acc_c', cost_micros: '7', ts: T2 + 1 });
        const z = usage({ event_id: 'req_z', account_id: 'acc_c', cost_micros: '20', ts: T2 + 2 });
        const g = ledger({ account_id: 'acc_c', reference: 'g', amount_micros: '1000' });
        await w.insertUsage([x, y], [{ partition: 0, offset: 5n }, { partition: 0, offset: 6n }]);
        await w.insertLedger([g], [{ partition: 1, offset: 3n }]);
        const snapshot = await w.logPositions();
        assert.deepEqual([snapshot.usage, snapshot.ledger], [new Map([[0, 6n]]), new Map([[1, 3n]])]);
        await w.insertUsage([x], [{ partition: 0, offset: 14n }]);
        await w.insertLedger([g], [{ partition: 1, offset: 9n }]);
        await w.insertUsage([z, z], [{ partition: 0, offset: 15n }, { partition: 0, offset: 16n }]);
        // 1,000 − 100 − 7 = 893 as of the snapshot; 893 − 20 = 873 now
        assert.equal((await w.balancesAt(snapshot)).get('acc_c'), 893n);
        assert.deepEqual([...(await w.ledgerEntriesAt(snapshot)).keys()], [g.event_id]);
        assert.deepEqual((await w.usageIdsAt(snapshot, 0)).sort(), ['req_x', 'req_y']);
        assert.deepEqual(await w.eventAccountsAt(snapshot, 0), new Map([[g.event_id, 'acc_c'], ['req_x', 'acc_c'], ['req_y', 'acc_c']]));
        const between = { usage: new Map([[0, 15n]]), ledger: new Map([[1, 3n]]) };
        assert.equal((await w.balancesAt(between)).get('acc_c'), 873n);
        assert.equal((await w.balancesAt(await w.logPositions())).get('acc_c'), 873n);
        assert.equal((await w.balances()).get('acc_c'), 873n);
      }));

    test('a usage event round-trips exactly', () =>
      withWarehouse(async (w) => {
        await w.insertUsage(USAGE);
        for (const e of USAGE) assert.deepEqual(await w.getUsageEvent(e.event_id), e);
        assert.equal(await w.getUsageEvent('nope'), undefined);
      }));

    test('hostile values round-trip exactly: tabs, newlines, backslashes, quotes, NUL, \\N, unicode, int64 beyond 2^53, nulls, ms precision', () =>
      withWarehouse(async (w) => {
        const nasty = 'a\tb\nc\r\\d\\N"e\'f\u0000g\u0001\u007f\u2028é😀{}[],:\\t';
        const full = v2({
          event_id: `req_${nasty}`, ts: Date.UTC(2025, 5, 30, 23, 59, 59, 7), account_id: `acc_${nasty}`, key_id: `key_${nasty}`,
          model: `m_${nasty}`, catalog_model: `cm_${nasty}`, upstream_model: `um_${nasty}`, served_model: `sm_${nasty}`,
          quantities: q({ input: 4_294_967_295, output: 1, cache_read: 7, web_search_requests: 3 }),
          iterations: [{ type: 'message', model: `it_${nasty}`, catalog_model: `itc_${nasty}`, quantities: q({ input: 5 }), cost_micros: '9223372036854775807' }],
          service_tier: `st_${nasty}`, inference_geo: `geo_${nasty}`, speed: `sp_${nasty}`, stop_reason: `sr_${nasty}`, thinking_tokens: 4_294_967_295,
          cost_micros: '9223372036854775807', upstream_cost_micros: '9007199254740993', upstream_currency: `cur_${nasty}`,
          price_version: `pv_${nasty}`, price_list: `pl_${nasty}`, unit_prices: { [`k_${nasty}`]: `v_${nasty}`, input: '0.000001' },
          tier: `tier_${nasty}`, multipliers: [`mul_${nasty}`, ''], unpriced: [`un_${nasty}`],
          http_status: 599, latency_ms: 4_294_967_295, ttft_ms: 0, upstream_request_id: `up_${nasty}`, gateway_id: `gw_${nasty}`,
          upstream_id: `ups_${nasty}`, attempts: 255, anomalies: [`an_${nasty}`],
        });
        const nulls = v2({
          event_id: `req_nulls_${nasty}`, ts: Date.UTC(1970, 0, 1, 0, 0, 0, 1), account_id: 'acc_nulls', served_model: null,
          service_tier: null, inference_geo: null, speed: null, stop_reason: null, thinking_tokens: null, upstream_cost_micros: null,
          upstream_currency: null, tier: null, ttft_ms: null, upstream_request_id: null, stream: false, cost_micros: '0',
        });
        const old = usage({ event_id: `req_v1_${nasty}`, ts: MAX_USAGE_EPOCH_MS, // the last ms a rollup bucket holds (2106-02-07T06:28:15.999Z)
          cost_micros: ABOVE_2_53.toString(), upstream_request_id: null });
        await w.insertUsage([full, nulls, old], [{ partition: 3, offset: 9_007_199_254_740_993n }, undefined, { partition: 0, offset: 0n }]);
        for (const e of [full, nulls, old]) assert.deepEqual(await w.getUsageEvent(e.event_id), e, e.event_id);
        assert.deepEqual(await w.usageTotals({ accountId: `acc_${nasty}` }), sums(1, { input: 4_294_967_295, output: 1, cache_read: 7, web_search_requests: 3 },
          9_223_372_036_854_775_807n, { upstreamCost: { [`cur_${nasty}`]: 9_007_199_254_740_993n }, upstreamCostUnknown: 0, unpricedRequests: 1 }));
        const at = await w.logPositions();
        assert.equal(at.usage.get(3), 9_007_199_254_740_993n);
        assert.deepEqual(await rollupsMatchRaw(w), { ok: true, mismatchedRows: { minute: 0, hour: 0, day: 0 } });
      }));

    test('filters: account, key, from inclusive, to exclusive', () =>
      withWarehouse(async (w) => {
        await w.insertUsage(USAGE);
        assert.deepEqual(await w.usageEventIds({ accountId: 'acc_a' }), ['req_1', 'req_2']);
        assert.deepEqual(await w.usageEventIds({ keyId: 'key_a2' }), ['req_2']);
        assert.deepEqual(await w.usageEventIds({ from: T1 }), ['req_2', 'req_3']);
        assert.deepEqual(await w.usageEventIds({ to: T1 }), ['req_1']);
        assert.deepEqual(await w.usageEventIds({ from: T0, to: T2 }), ['req_1', 'req_2']);
        assert.deepEqual(await w.usageEventIds({ accountId: 'acc_b', to: T2 }), []);
        assert.equal((await w.usageTotals({ accountId: 'acc_a', from: T1 })).costMicros, 7n);
        // values are bound as parameters, not spliced into SQL
        assert.deepEqual(await w.usageEventIds({ accountId: "acc_a' OR '1'='1" }), []);
      }));

    test('breakdowns by model, key, day (UTC) and status', () =>
      withWarehouse(async (w) => {
        await w.insertUsage(USAGE);
        await w.insertUsage(USAGE);
        const r1 = sums(1, { input: 10, output: 5, cache_read: 1000, cache_write_5m: 7 }, ABOVE_2_53);
        const r2 = sums(1, { input: 20, output: 6, cache_write_1h: 9 }, 7n);
        const r3 = sums(1, { input: 30, output: 7 }, 3n);
        assert.deepEqual(await w.usageBreakdown({ groupBy: 'model' }), [
          { group: 'claude-haiku-4-5', ...r2 },
          { group: 'claude-sonnet-4-5', ...sums(2, { input: 40, output: 12, cache_read: 1000, cache_write_5m: 7 }, ABOVE_2_53 + 3n) },
        ]);
        assert.deepEqual(await w.usageBreakdown({ groupBy: 'key', accountId: 'acc_a' }), [
          { group: 'key_a1', ...r1 },
          { group: 'key_a2', ...r2 },
        ]);
        assert.deepEqual(await w.usageBreakdown({ groupBy: 'day' }), [
          { group: '2025-01-01', ...r1 },
          { group: '2025-01-02', ...sums(2, { input: 50, output: 13, cache_write_1h: 9 }, 10n) },
        ]);
        assert.deepEqual(await w.usageBreakdown({ groupBy: 'status', from: T1 }), [
          { group: 'client_disconnect', ...r2 },
          { group: 'upstream_error', ...r3 },
        ]);
        await assert.rejects(
          // a JS caller can pass anything
          w.usageBreakdown({ groupBy: 'account_id; DROP TABLE x' as 'model' }),
          WarehouseInputError,
        );
      }));

    test('ledger inserted twice counts once; balances = Σ ledger − Σ usage, exact', () =>
      withWarehouse(async (w) => {
        await w.insertLedger(LEDGER);
        await w.insertLedger(LEDGER);
        await w.insertUsage(USAGE);
        await w.insertUsage(USAGE);
        assert.deepEqual(await w.ledgerTotals('acc_a'), {
          entries: 3,
          amountMicros: ABOVE_2_53 * 2n + 300n,
          byKind: { grant: ABOVE_2_53 * 2n, top_up: 0n, adjustment: -200n, refund: 500n },
        });
        assert.deepEqual(await w.ledgerTotals(), {
          entries: 4,
          amountMicros: ABOVE_2_53 * 2n + 301n,
          byKind: { grant: ABOVE_2_53 * 2n + 1n, top_up: 0n, adjustment: -200n, refund: 500n },
        });
        assert.deepEqual(await w.duplicateLedgerIds(), LEDGER.map((e) => e.event_id).sort());
        assert.deepEqual(
          await w.balances(),
          new Map([
            ['acc_a', ABOVE_2_53 * 2n + 300n - (ABOVE_2_53 + 7n)], // 9007199254741286
            ['acc_b', 1n - 3n],
          ]),
        );
        assert.equal((await w.balances()).get('acc_a'), 9_007_199_254_741_286n);
      }));

    test('control records: the highest version wins, whatever the insert order', () =>
      withWarehouse(async (w) => {
        const acc = { id: 'acc_a', name: 'Acme', status: 'active' as const, created_at: T0, version: 1 };
        const key1 = keyRecord({ id: 'key_a1', version: 1 });
        const key1revoked = keyRecord({ id: 'key_a1', version: 2, status: 'revoked', revoked_at: T2 });
        const key2 = keyRecord({ id: 'key_a2', version: 1, prefix: 'sk-tg-cd', hash: 'cd'.repeat(32) });
        const events: ControlEvent[] = [
          { type: 'account', event_id: 'c1', ts: T0, account: acc },
          { type: 'key', event_id: 'c3', ts: T2, key: key1revoked },
          { type: 'key', event_id: 'c2', ts: T0, key: key1 },
          { type: 'key', event_id: 'c4', ts: T0, key: key2 },
        ];
        await w.insertControl(events);
        await w.insertControl(events);
        // an older version delivered late loses
        await w.insertControl([{ type: 'key', event_id: 'c2', ts: T0, key: key1 }]);
        await w.insertControl([
          { type: 'account', event_id: 'c5', ts: T2, account: { ...acc, name: 'Acme Ltd', status: 'disabled', version: 2 } },
        ]);
        assert.deepEqual(await w.loadAccounts(), [{ ...acc, name: 'Acme Ltd', status: 'disabled', version: 2 }]);
        // an assigned price list survives a rebuild from the warehouse; unassigning it too
        await w.insertControl([{ type: 'account', event_id: 'c6', ts: T2, account: { ...acc, price_list: 'vip', version: 3 } }]);
        assert.deepEqual(await w.loadAccounts(), [{ ...acc, price_list: 'vip', version: 3 }]);
        await w.insertControl([{ type: 'account', event_id: 'c7', ts: T2, account: { ...acc, price_list: null, version: 4 } }]);
        assert.deepEqual(await w.loadAccounts(), [{ ...acc, version: 4 }]);
        assert.deepEqual(await w.loadKeys(), [key1revoked, key2]);
      }));

    test('a key never stores more than its hash and prefix', () =>
      withWarehouse(async (w) => {
        const withSecret = { ...keyRecord({ id: 'key_s', version: 1 }), secret: 'sk-tg-SECRET' };
        await w.insertControl([{ type: 'key', event_id: 'c1', ts: T0, key: withSecret }]);
        const [k] = await w.loadKeys();
        assert.deepEqual(k, keyRecord({ id: 'key_s', version: 1 }));
        assert.ok(!JSON.stringify(await w.loadKeys()).includes('SECRET'));
      }));

    test('invalid money or counts are refused before anything is written', () =>
      withWarehouse(async (w) => {
        const bad: Array<Partial<UsageEventV1>> = [
          { cost_micros: '1.5' },
          { cost_micros: '9223372036854775808' }, // Int64 max + 1: ClickHouse would wrap it
          { cost_micros: '-1' },
          { cost_micros: '1e3' },
          { input_tokens: -1 },
          { output_tokens: 2 ** 32 },
          { ts: 1.5 },
        ];
        for (const b of bad) {
          await assert.rejects(
            w.insertUsage([usage({ event_id: 'ok' }), usage({ event_id: 'bad', ...b })]),
            WarehouseInputError,
            JSON.stringify(b),
          );
        }
        await assert.rejects(
          w.insertLedger([ledger({ account_id: 'a', reference: 'r', amount_micros: '-9223372036854775809' })]),
          WarehouseInputError,
        );
        assert.deepEqual(await w.usageEventIds({}), []);
        // the int64 extremes themselves are fine
        await w.insertLedger([
          ledger({ account_id: 'a', reference: 'max', amount_micros: '9223372036854775807' }),
          ledger({ account_id: 'a', reference: 'min', amount_micros: '-9223372036854775808' }),
        ]);
        assert.equal((await w.ledgerTotals('a')).amountMicros, -1n);
        // summed wider than Int64, so no wrap-around either
        await w.insertLedger([ledger({ account_id: 'b', reference: 'max', amount_micros: '9223372036854775807' })]);
        await w.insertLedger([ledger({ account_id: 'b', reference: 'max2', amount_micros: '9223372036854775807' })]);
        assert.equal((await w.ledgerTotals('b')).amountMicros, 2n * (2n ** 63n - 1n));
      }));

    test('data survives closing and reopening the client', async () => {
      const prefix = newPrefix();
      const first = await fresh(prefix);
      await first.insertUsage(USAGE);
      await first.insertLedger(LEDGER);
      await first.insertControl([
        { type: 'key', event_id: 'c1', ts: T0, key: keyRecord({ id: 'k', version: 3, status: 'revoked', revoked_at: T1 }) },
      ]);
      const before = { totals: await first.usageTotals({}), balances: await first.balances() };
      await first.close();

      const second = await fresh(prefix);
      try {
        assert.deepEqual(await second.usageTotals({}), before.totals);
        assert.deepEqual(await second.balances(), before.balances);
        assert.equal((await second.usageTotals({})).costMicros, ABOVE_2_53 + 10n);
        assert.deepEqual(await second.loadKeys(), [keyRecord({ id: 'k', version: 3, status: 'revoked', revoked_at: T1 })]);
      } finally {
        await second.close();
      }
    });

    test('table prefixes isolate warehouses on the same storage', async () => {
      const a = await fresh();
      const b = await fresh();
      try {
        await a.insertUsage(USAGE);
        assert.equal((await a.usageTotals({})).requests, 3);
        assert.equal((await b.usageTotals({})).requests, 0);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
