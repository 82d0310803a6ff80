// Billing over a real chDB warehouse: invoice lines exact to the µc with the rounding line,
// statements that close, month close freezing documents byte for byte, late facts landing in
// the next open month exactly once (redelivered too), and the customer's credit history.
// Prices of the shipped cny catalog (µc per token): sonnet-4-5 input 72, output 360, web search
// 240,000 per search; sonnet-4-6 under us_geo ×1.1: input 198, output 990; haiku-4-5 input 24,
// cache read 2.4, output 120.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { LedgerEvent, LedgerKind } from '@tollgate/events';
import { bundledCatalogPath, loadCatalogFile, parseCatalog, priceVersion } from '@tollgate/pricing';
import {
  BillingInputError, Warehouse, accountDocuments, closeMonth, createChdbClickHouse, creditHistory, creditHistoryPage, invoiceFor, invoiceLinesForMonth,
  listCloses, parseBillingMonth, parseClosableMonth, statementFor,
} from '@tollgate/warehouse';
import { q, usGeo, v2, webSearch } from './usage-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-billing-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function fresh(): Promise<Warehouse> {
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: `b${randomBytes(3).toString('hex')}_` });
  await w.migrate();
  return w;
}

const version = priceVersion(loadCatalogFile(bundledCatalogPath('cny')));
const prices = { current: () => version };
const PV = version.id;
const NOV3 = Date.UTC(2026, 10, 3, 10);

function entry(account: string, kind: LedgerKind, reference: string, micros: string, ts: number): LedgerEvent {
  return { type: 'ledger', event_id: `credit:${account}:${reference}`, ts, account_id: account, kind, amount_micros: micros, reference };
}

/** haiku-4-5: 1 input (24 µc) + 3 cache reads (7.2 µc) = 31.2 → charged ⌈31.2⌉ = 32 µc. */
function haikuCache(id: string, ts: number, account: string) {
  return v2({
    event_id: id, ts, account_id: account, model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001',
    upstream_model: 'claude-haiku-4-5-20251001', served_model: 'claude-haiku-4-5-20251001',
    quantities: q({ input: 1, cache_read: 3 }), cost_micros: '32', price_version: PV,
    unit_prices: { input: '24000000', output: '120000000', cache_read: '2400000' },
  });
}

/** October: a 2-credit grant and 1,000 haiku output tokens (120,000 µc); November: the mixed month. */
async function seed(w: Warehouse): Promise<void> {
  await w.insertEvents([
    entry('acc_a', 'grant', 'oct', '2000000', Date.UTC(2026, 9, 15)),
    v2({
      event_id: 'u0', ts: Date.UTC(2026, 9, 20), account_id: 'acc_a', model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001',
      quantities: q({ output: 1000 }), cost_micros: '120000', price_version: PV, unit_prices: { input: '24000000', output: '120000000' },
    }),
    entry('acc_a', 'top_up', 'paid-1', '10000000', Date.UTC(2026, 10, 1)),
    entry('acc_a', 'grant', 'promo', '1000000', Date.UTC(2026, 10, 2)),
    webSearch('u1', NOV3, 'acc_a', PV), // 972,000 µc
    usGeo('u2', NOV3 + 1, 'acc_a', PV), // 396,000 µc
    haikuCache('u3', NOV3 + 2, 'acc_a'), // 32 µc
    haikuCache('u4', NOV3 + 3, 'acc_a'), // 32 µc
    entry('acc_a', 'refund', 'sorry', '500000', Date.UTC(2026, 10, 20)),
    entry('acc_a', 'adjustment', 'fix', '-250000', Date.UTC(2026, 10, 21)),
    // another account's usage never shows on acc_a's documents
    webSearch('b1', NOV3, 'acc_b', PV),
    // charged but refused by the ledger (quarantined): never moved a balance, so never billed
    usGeo('uq', NOV3 + 5, 'acc_a', PV),
  ]);
  await w.insertQuarantine([{ event_id: 'uq', group: 'ledger', topic: 'usage', partition: -1, offset: -1n, kind: 'apply_failed', reason: 'test', raw: '{}' }]);
}

const line = (section: string, model: string, dimension: string, quantity: string, unit_price: string, micros: bigint, source = '2026-11') => ({
  account_id: 'acc_a', month: '2026-11', section, source_month: source, model, dimension, quantity, unit_price,
  amount: `${micros < 0n ? '-' : ''}${(micros < 0n ? -micros : micros) / 1_000_000n}.${((micros < 0n ? -micros : micros) % 1_000_000n).toString().padStart(6, '0')}`,
  amount_micros: micros.toString(),
});

test('invoice of a mixed month: one line per model × dimension × unit price, exact amounts, rounding line, refunds and adjustments', async () => {
  const w = await fresh();
  try {
    await seed(w);
    await w.insertEvents([webSearch('u1', NOV3, 'acc_a', PV)]); // redelivered: counted once
    const invoice = await invoiceFor(w, 'acc_a', '2026-11', prices);
    assert.deepEqual(invoice.lines, [
      line('usage', 'claude-haiku-4-5-20251001', 'input', '2', '24', 48n), // 2 × 24
      line('usage', 'claude-haiku-4-5-20251001', 'cache_read', '6', '2.4', 14n), // 6 × 2.4 = 14.4 → 14
      line('usage', 'claude-sonnet-4-5-20250929', 'input', '2000', '72', 144_000n),
      line('usage', 'claude-sonnet-4-5-20250929', 'output', '300', '360', 108_000n),
      line('usage', 'claude-sonnet-4-5-20250929', 'web_search_requests', '3', '0.24', 720_000n),
      line('usage', 'claude-sonnet-4-6', 'input', '1000', '198', 198_000n),
      line('usage', 'claude-sonnet-4-6', 'output', '200', '990', 198_000n),
      line('rounding', '', '', '4', '', 2n), // 4 itemised requests; charged 32 + 32 = 64 for haiku, lines 48 + 14 = 62
      line('refund', '', '', '1', '', -500_000n),
      line('adjustment', '', '', '1', '', 250_000n), // −0.25 credit taken from the account: owed
    ]);
    // 972,000 + 396,000 + 64 − 500,000 + 250,000 = 1,118,064 µc; ¥ = credits ÷ 10
    assert.deepEqual(invoice.total, {
      credits: '1.118064', micro_credits: '1118064', currency: 'CNY', amount: '0.1118064',
      credit_values: [{ credit_value: '1 CNY = 10 credits', currency: 'CNY', micro_credits: '1118064', amount: '0.1118064' }],
    });
    assert.equal(invoice.status, 'open');
    assert.equal(invoice.closed_at, null);
  } finally {
    await w.close();
  }
});

test('statement: closing = opening + top-ups + grants − usage + refunds + adjustments, equal to the warehouse balance', async () => {
  const w = await fresh();
  try {
    await seed(w);
    const st = await statementFor(w, 'acc_a', '2026-11', prices);
    // opening 2,000,000 − 120,000 = 1,880,000; closing 1,880,000 + 10,000,000 + 1,000,000 − 1,368,064 + 500,000 − 250,000
    assert.deepEqual(st, {
      account_id: 'acc_a', account_name: '', seller: 'Tollgate', month: '2026-11', status: 'open', closed_at: null,
      opening_balance: '1.880000', top_ups: '10.000000', grants: '1.000000', usage: '1.368064', refunds: '0.500000',
      adjustments: '-0.250000', closing_balance: '11.761936', currency: 'CNY', credit_value: '1 CNY = 10 credits',
    });
    assert.equal((await w.balances()).get('acc_a'), 11_761_936n);
  } finally {
    await w.close();
  }
});

test('late facts after a close: closed documents byte-identical, the delta lands once in the next open month, absorbed when it closes', async () => {
  const w = await fresh();
  try {
    await seed(w);
    const closed = await closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 1, 10));
    // closed months are a prefix: October (the first with facts) closes with November
    assert.deepEqual(closed, { month: '2026-11', closed_now: true, closed_at: '2026-12-01T10:00:00.000Z', months: ['2026-10', '2026-11'] });
    const again = await closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 2));
    assert.deepEqual(again, { month: '2026-11', closed_now: false, closed_at: '2026-12-01T10:00:00.000Z', months: [] });
    assert.deepEqual((await listCloses(w)).map((c) => [c.month, c.closed_at]), [
      ['2026-10', '2026-12-01T10:00:00.000Z'], ['2026-11', '2026-12-01T10:00:00.000Z'],
    ]);
    const before = await accountDocuments(w, 'acc_a', '2026-11', prices);
    assert.equal(JSON.parse(before.invoice).status, 'closed');
    assert.equal(JSON.parse(before.statement).closing_balance, '11.761936');

    // late: usage dated 15 November (396,000 µc), delivered twice, and a refund dated 25 November (100,000 µc)
    await w.insertEvents([usGeo('late1', Date.UTC(2026, 10, 15), 'acc_a', PV), entry('acc_a', 'refund', 'late-r', '100000', Date.UTC(2026, 10, 25))]);
    await w.insertEvents([usGeo('late1', Date.UTC(2026, 10, 15), 'acc_a', PV)]);
    const after = await accountDocuments(w, 'acc_a', '2026-11', prices);
    assert.equal(after.invoice, before.invoice);
    assert.equal(after.statement, before.statement);

    const dec = await invoiceFor(w, 'acc_a', '2026-12', prices);
    assert.deepEqual(dec.lines.map((l) => [l.section, l.source_month, l.model, l.dimension, l.quantity, l.amount_micros]), [
      ['late_usage', '2026-11', 'claude-sonnet-4-6', 'input', '1000', '198000'],
      ['late_usage', '2026-11', 'claude-sonnet-4-6', 'output', '200', '198000'],
      ['rounding', '2026-11', '', '', '1', '0'], // one late request, charged exactly its lines
      ['refund', '2026-11', '', '', '1', '-100000'],
    ]);
    assert.equal(dec.total.micro_credits, '296000'); // 396,000 − 100,000
    const decSt = await statementFor(w, 'acc_a', '2026-12', prices);
    // opening = November's frozen closing; 11,761,936 − 396,000 + 100,000 = 11,465,936
    assert.deepEqual([decSt.opening_balance, decSt.usage, decSt.refunds, decSt.closing_balance], ['11.761936', '0.396000', '0.100000', '11.465936']);
    assert.equal((await w.balances()).get('acc_a'), 11_465_936n);
    // the export sees the same lines; acc_b has none in December
    assert.deepEqual(await invoiceLinesForMonth(w, '2026-12', prices), dec.lines);

    // a month after the first open one: its opening counts the deltas December books (L + 2 path)
    assert.equal((await statementFor(w, 'acc_a', '2027-01', prices)).opening_balance, '11.465936');
    // December closes: its snapshot absorbs the delta; January shows nothing late, even after another redelivery
    await closeMonth(w, '2026-12', prices, Date.UTC(2027, 0, 1, 1));
    await w.insertEvents([usGeo('late1', Date.UTC(2026, 10, 15), 'acc_a', PV)]);
    const jan = await invoiceFor(w, 'acc_a', '2027-01', prices);
    assert.deepEqual(jan.lines, []);
    assert.equal((await statementFor(w, 'acc_a', '2027-01', prices)).opening_balance, '11.465936');
    assert.equal((await statementFor(w, 'acc_a', '2026-12', prices)).status, 'closed');
  } finally {
    await w.close();
  }
});

test('a month whose line sums past 2^63 − 1 µc: closed, booked and carried into the next month exactly, never wrapped', async () => {
  // Kind: a booked amount beyond Int64 (each fact fits, their sum does not). Before migration 14
  // the booked row wrapped to −8,446,744,073,709,551,616 and December billed 2^64 µc of phantom
  // late usage. Two charges of 5·10^18 µc (unitemized: no unit prices), a 9·10^18 µc top-up.
  const w = await fresh();
  try {
    const big = (id: string, hour: number) => v2({ event_id: id, ts: Date.UTC(2026, 10, 6, hour), account_id: 'acc_big', cost_micros: '5000000000000000000', price_version: PV, unit_prices: {} });
    await w.insertEvents([big('big1', 0), big('big2', 1), entry('acc_big', 'top_up', 'r1', '9000000000000000000', Date.UTC(2026, 10, 1))]);
    await closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 1));
    const booked = await w.select(`SELECT section, toString(amount_micros) AS a FROM ${w.tables.billingBooked} WHERE account_id = 'acc_big' ORDER BY section`);
    assert.deepEqual(booked.map((r) => [r['section'], r['a']]), [['top_up', '9000000000000000000'], ['unitemized', '10000000000000000000']]);
    const nov = await invoiceFor(w, 'acc_big', '2026-11', prices);
    assert.equal(nov.total.micro_credits, '10000000000000000000');
    const dec = await invoiceFor(w, 'acc_big', '2026-12', prices);
    assert.deepEqual(dec.lines, []);
    const decSt = await statementFor(w, 'acc_big', '2026-12', prices);
    // 9,000,000,000,000 − 10,000,000,000,000 credits
    assert.deepEqual([decSt.opening_balance, decSt.closing_balance], ['-1000000000000.000000', '-1000000000000.000000']);
  } finally {
    await w.close();
  }
});

test('a request charged 170,141,183,460,470 µc (its exact cost × 10^6 just past 2^127 × 10^-18) and one of 9·10^18 µc, each exactly its lines: itemized (one usage line each, rounding 0), never misjudged by a wrapped decimal', async () => {
  // Kind: the itemization check's decimal overflowing. It compared Σ quantity × unit price with
  // the charge × 10^6 as Decimal128 with 18 places (≤ ~1.7·10^20): from ~1.7·10^14 µc per request
  // the product wrapped silently and an exact request could be judged either way (a tester's case).
  const w = await fresh();
  try {
    const model = { model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001', upstream_model: 'claude-haiku-4-5-20251001', served_model: 'claude-haiku-4-5-20251001' };
    // 1,000,000 input tokens at 170,141,183,460,470 µc per MTok = that many µc (× 10^6 it passes
    // Decimal128's 2^127 at 18 places, the charge − 1 does not); 4,500,000 output tokens at
    // 2·10^18 µc per MTok = 9·10^18 µc
    await w.insertEvents([
      v2({ event_id: 'e14', ts: Date.UTC(2026, 10, 6), account_id: 'acc_e', ...model, quantities: q({ input: 1_000_000 }), cost_micros: '170141183460470', price_version: PV, unit_prices: { input: '170141183460470' } }),
      v2({ event_id: 'e18', ts: Date.UTC(2026, 10, 7), account_id: 'acc_e', ...model, quantities: q({ output: 4_500_000 }), cost_micros: '9000000000000000000', price_version: PV, unit_prices: { output: '2000000000000000000' } }),
    ]);
    const nov = await invoiceFor(w, 'acc_e', '2026-11', prices);
    assert.deepEqual(nov.lines.map((l) => [l.section, l.model, l.dimension, l.quantity, l.amount_micros]), [
      ['usage', 'claude-haiku-4-5-20251001', 'input', '1000000', '170141183460470'],
      ['usage', 'claude-haiku-4-5-20251001', 'output', '4500000', '9000000000000000000'],
      ['rounding', '', '', '2', '0'],
    ]);
    assert.equal(nov.total.micro_credits, '9000170141183460470');
  } finally {
    await w.close();
  }
});

test('customer credit history: ledger entries and one usage entry per UTC day, running balance exact, only the account asked for', async () => {
  const w = await fresh();
  try {
    await seed(w);
    const h = await creditHistory(w, 'acc_a');
    assert.deepEqual(h.map((e) => [e.type, e.created_at, e.amount_micro_credits, e.balance_after_micro_credits]), [
      ['grant', '2026-10-15T00:00:00.000Z', '2000000', '2000000'],
      ['usage', '2026-10-20T23:59:59.999Z', '-120000', '1880000'],
      ['top_up', '2026-11-01T00:00:00.000Z', '10000000', '11880000'],
      ['grant', '2026-11-02T00:00:00.000Z', '1000000', '12880000'],
      ['usage', '2026-11-03T23:59:59.999Z', '-1368064', '11511936'], // 972,000 + 396,000 + 32 + 32
      ['refund', '2026-11-20T00:00:00.000Z', '500000', '12011936'],
      ['adjustment', '2026-11-21T00:00:00.000Z', '-250000', '11761936'],
    ]);
    assert.equal(h[4]!.requests, 4);
    assert.equal(h[2]!.reference, 'paid-1');
    assert.deepEqual((await creditHistory(w, 'acc_b')).map((e) => e.amount_micro_credits), ['-972000']);
  } finally {
    await w.close();
  }
});

test('bad months are refused naming the value: 2026-13, 2026-1, far future', () => {
  const now = Date.UTC(2026, 10, 30);
  assert.throws(() => parseBillingMonth('2026-13', now), (e: Error) => e instanceof BillingInputError && e.message.startsWith('month: "2026-13"'));
  assert.throws(() => parseBillingMonth('2026-1', now), /month: "2026-1" is not a month/);
  assert.throws(() => parseBillingMonth('2031-01', now), /month: 2031-01 is in the future \(the latest month with anything to bill is 2026-12\)/);
  assert.equal(parseBillingMonth('2026-12', now), '2026-12');
});

test('two closes racing without a lock: both snapshots written, every reader uses the earliest close only', async () => {
  const w = await fresh();
  try {
    await seed(w);
    const [x, y] = await Promise.all([
      closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 1, 10)),
      closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 1, 11)),
    ]);
    assert.equal(x.closed_now && y.closed_now, true); // neither saw the other: the route's lock is what prevents this
    const rows = await w.select(`SELECT count() AS n FROM ${w.tables.billingCloses} WHERE month = '2026-11'`);
    assert.deepEqual(rows, [{ n: '2' }]);
    assert.deepEqual((await listCloses(w)).map((c) => [c.month, c.closed_at]), [
      ['2026-10', '2026-12-01T10:00:00.000Z'], ['2026-11', '2026-12-01T10:00:00.000Z'],
    ]);
    const inv = await invoiceFor(w, 'acc_a', '2026-11', prices);
    assert.equal(inv.closed_at, '2026-12-01T10:00:00.000Z');
    // late deltas count the winner's booking once, not both snapshots
    await w.insertEvents([usGeo('late2', Date.UTC(2026, 10, 16), 'acc_a', PV)]);
    assert.equal((await invoiceFor(w, 'acc_a', '2026-12', prices)).total.micro_credits, '396000');
  } finally {
    await w.close();
  }
});

test('an event with iterations at another model (an advisor on haiku) and a version 1 event: not split into lines, their whole charge in the unitemized line', async () => {
  const w = await fresh();
  try {
    await w.insertEvents([
      webSearch('u1', NOV3, 'acc_a', PV), // 972,000 µc in lines
      v2({
        event_id: 'adv', ts: NOV3 + 1, account_id: 'acc_a', quantities: q({ input: 1500, output: 150 }), cost_micros: '126000', price_version: PV,
        unit_prices: { input: '72000000', output: '360000000' },
        // totals 1,500 / 150: sonnet-4-5 main 1,000 × 72 + 100 × 360 = 108,000 + advisor on haiku 500 × 24 + 50 × 120 = 18,000 = 126,000
        iterations: [{ type: 'advisor_message', model: 'claude-haiku-4-5-20251001', catalog_model: 'claude-haiku-4-5-20251001', quantities: q({ input: 500, output: 50 }), cost_micros: '18000' }],
      }),
      { type: 'usage', event_id: 'old', ts: NOV3 + 2, account_id: 'acc_a', key_id: 'k', model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001',
        upstream_model: 'claude-haiku-4-5-20251001', input_tokens: 100, output_tokens: 10, cache_read_tokens: 0, cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0, cost_micros: '3600', status: 'ok', http_status: 200, latency_ms: 1, ttft_ms: null, stream: false,
        upstream_request_id: null, gateway_id: 'g' },
    ]);
    const invoice = await invoiceFor(w, 'acc_a', '2026-11', prices);
    assert.deepEqual(invoice.lines.map((l) => [l.section, l.model, l.dimension, l.quantity, l.amount_micros]), [
      ['usage', 'claude-sonnet-4-5-20250929', 'input', '2000', '144000'],
      ['usage', 'claude-sonnet-4-5-20250929', 'output', '300', '108000'],
      ['usage', 'claude-sonnet-4-5-20250929', 'web_search_requests', '3', '720000'],
      ['unitemized', '', '', '2', '129600'], // 2 requests: 126,000 + the v1 event's 100 × 24 + 10 × 120 = 3,600
      ['rounding', '', '', '1', '0'], // the web search request: charged exactly its lines
    ]);
    assert.equal(invoice.total.micro_credits, '1101600'); // = Σ charges 972,000 + 126,000 + 3,600
  } finally {
    await w.close();
  }
});

test('a request charged its hold (cost_over_bound) is not itemised: whole in the unitemized line, never full-price lines offset by a negative rounding line', async () => {
  const w = await fresh();
  try {
    await w.insertEvents([
      // the upstream reported 150,000 input tokens (10,800,000 µc at 72) but the hold capped the charge at 500,000 µc
      v2({ event_id: 'cob', ts: NOV3, account_id: 'acc_a', quantities: q({ input: 150_000, output: 77 }), cost_micros: '500000', price_version: PV,
        unit_prices: { input: '72000000', output: '360000000' }, anomalies: ['cost_over_bound'] }),
      haikuCache('h1', NOV3 + 1, 'acc_a'), // 31.2 → 32
      haikuCache('h2', NOV3 + 2, 'acc_a'), // 31.2 → 32
    ]);
    const invoice = await invoiceFor(w, 'acc_a', '2026-11', prices);
    assert.deepEqual(invoice.lines.map((l) => [l.section, l.model, l.dimension, l.quantity, l.amount_micros]), [
      ['usage', 'claude-haiku-4-5-20251001', 'input', '2', '48'],
      ['usage', 'claude-haiku-4-5-20251001', 'cache_read', '6', '14'], // 14.4 truncated
      ['unitemized', '', '', '1', '500000'],
      ['rounding', '', '', '2', '2'], // 64 − 62: 0 ≤ rounding ≤ 2 requests
    ]);
    assert.equal(invoice.total.micro_credits, '500064');
  } finally {
    await w.close();
  }
});

test('a request is itemised under the model whose prices it was charged: a fallback\'s that served it; the requested one when a group\'s mapping sent it as another model\'s own name', async () => {
  const cases = [
    // asked for sonnet-4-5, served by haiku-4-5: 1,000 × 24 + 100 × 120 = 36,000 µc at haiku's prices
    [v2({
      event_id: 'fb', ts: NOV3, account_id: 'acc_a', served_model: 'claude-haiku-4-5-20251001', quantities: q({ input: 1000, output: 100 }),
      cost_micros: '36000', price_version: PV, unit_prices: { input: '24000000', output: '120000000' },
    }), [['usage', 'claude-haiku-4-5-20251001', 'input', '1000', '24', '24000'], ['usage', 'claude-haiku-4-5-20251001', 'output', '100', '120', '12000']]],
    // opus-4-6 sent upstream as opus-4's name, which the answer reports back: priced at opus-4-6
    // (10 × 300 + 100 × 1,500 = 153,000 µc), so itemised under opus-4-6, never labelled opus-4
    [v2({
      event_id: 'mapped', ts: NOV3, account_id: 'acc_a', model: 'claude-opus-4-6', catalog_model: 'claude-opus-4-6',
      upstream_model: 'claude-opus-4-20250514', served_model: 'claude-opus-4-20250514', quantities: q({ input: 10, output: 100 }),
      cost_micros: '153000', price_version: PV, unit_prices: { input: '300000000', output: '1500000000' },
    }), [['usage', 'claude-opus-4-6', 'input', '10', '300', '3000'], ['usage', 'claude-opus-4-6', 'output', '100', '1500', '150000']]],
  ] as const;
  for (const [event, lines] of cases) {
    const w = await fresh();
    try {
      await w.insertEvents([event]);
      const invoice = await invoiceFor(w, 'acc_a', '2026-11', prices);
      assert.deepEqual(invoice.lines.map((l) => [l.section, l.model, l.dimension, l.quantity, l.unit_price, l.amount_micros]), [...lines, ['rounding', '', '', '1', '', '0']]);
    } finally {
      await w.close();
    }
  }
});

test('a credit value change in the price file: each amount converts at the credit value of the version it was priced with, the document names both', async () => {
  const w = await fresh();
  try {
    const doc = version.catalog.document as { credit: Record<string, string> };
    const v2Catalog = parseCatalog({ ...doc, credit: { currency: 'CNY', credits_per_unit: '20' } }, 'test');
    const later = priceVersion(v2Catalog, Date.UTC(2026, 10, 10));
    await w.insertPriceVersions([
      { id: version.id, effectiveAt: 0, catalog: version.catalog.document },
      { id: later.id, effectiveAt: later.effectiveAt, catalog: later.catalog.document },
    ]);
    await w.insertEvents([
      webSearch('before', NOV3, 'acc_a', PV), // 972,000 µc at 10 credits per CNY: ¥0.0972
      { ...webSearch('after', Date.UTC(2026, 10, 12), 'acc_a', later.id) }, // 972,000 µc at 20: ¥0.0486
      entry('acc_a', 'adjustment', 'fix', '-100000', Date.UTC(2026, 10, 12)), // owed 100,000 µc at 20: ¥0.005
    ]);
    // the price file changes again, now: nothing already priced may move
    const now = priceVersion(parseCatalog({ ...doc, credit: { currency: 'CNY', credits_per_unit: '40' } }, 'now'));
    const invoice = await invoiceFor(w, 'acc_a', '2026-11', { current: () => now });
    assert.deepEqual(invoice.total, {
      credits: '2.044000', micro_credits: '2044000', currency: 'CNY', amount: '0.1508', // 0.0972 + 0.0486 + 0.005
      credit_values: [
        { credit_value: '1 CNY = 10 credits', currency: 'CNY', micro_credits: '972000', amount: '0.0972' },
        { credit_value: '1 CNY = 20 credits', currency: 'CNY', micro_credits: '1072000', amount: '0.0536' },
      ],
    });
    assert.equal((await statementFor(w, 'acc_a', '2026-11', { current: () => now })).credit_value, '1 CNY = 10 credits; 1 CNY = 20 credits');
  } finally {
    await w.close();
  }
});

test('an account renamed after its month closed: the closed documents keep the name they were frozen with; the open month shows the new one', async () => {
  const w = await fresh();
  try {
    const account = (name: string, version: number) => ({
      id: 'acc_a', name, status: 'active', created_at: '2026-10-01 00:00:00.000', version, event_id: `acc-${version}`, updated_at: '2026-10-01 00:00:00.000',
    });
    await w.insertRows(w.tables.accounts, [account('Acme Ltd', 1)]);
    await seed(w);
    await closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 1));
    const frozen = await accountDocuments(w, 'acc_a', '2026-11', prices);
    assert.equal(JSON.parse(frozen.invoice).account_name, 'Acme Ltd');
    assert.equal(JSON.parse(frozen.invoice).seller, 'Tollgate');
    await w.insertRows(w.tables.accounts, [account('=HYPERLINK("x")', 2)]);
    assert.deepEqual(await accountDocuments(w, 'acc_a', '2026-11', prices), frozen);
    assert.equal((await invoiceFor(w, 'acc_a', '2026-12', prices)).account_name, '=HYPERLINK("x")');
  } finally {
    await w.close();
  }
});

test('closing a month that has not started is refused naming month; the current month may be closed', async () => {
  const w = await fresh();
  try {
    await seed(w);
    await assert.rejects(closeMonth(w, '2026-12', prices, Date.UTC(2026, 10, 30, 23)),
      (e: unknown) => e instanceof BillingInputError && e.message === 'month: 2026-12 has not started yet; the latest month that can be closed is 2026-11 (UTC)');
    assert.deepEqual(await listCloses(w), []);
    assert.equal((await closeMonth(w, '2026-11', prices, Date.UTC(2026, 10, 30, 23))).closed_now, true);
    assert.equal(parseClosableMonth('2026-11', Date.UTC(2026, 10, 1)), '2026-11');
  } finally {
    await w.close();
  }
});

test('late facts after a close are found by their server stamp alone: a late event, a redelivered old event, a quarantine after the close and a restart stay exact', async () => {
  const prefix = `b${randomBytes(3).toString('hex')}_`;
  const open = async () => {
    const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: prefix });
    await w.migrate();
    return w;
  };
  let w = await open();
  try {
    await seed(w);
    // Everything known before the close was stamped a day earlier (older than the close's slack),
    // so only facts stamped after the close are candidates for late deltas.
    for (const t of [w.tables.usage, w.tables.ledger, w.tables.quarantine]) {
      const col = t === w.tables.quarantine ? 'ts' : 'inserted_at';
      await w.command(`ALTER TABLE ${t} UPDATE ${col} = ${col} - INTERVAL 1 DAY WHERE 1 SETTINGS mutations_sync = 2`);
    }
    await closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 1, 10));
    const frozen = await accountDocuments(w, 'acc_a', '2026-11', prices);
    // late: a sonnet-4-6 request dated 15 November (396,000 µc); acc_b's November event
    // redelivered (a duplicate: no change); the ledger quarantines haiku request u3 (32 µc)
    await w.insertEvents([usGeo('late1', Date.UTC(2026, 10, 15), 'acc_a', PV), webSearch('b1', NOV3, 'acc_b', PV)]);
    await w.insertQuarantine([{ event_id: 'u3', group: 'ledger', topic: 'usage', partition: -1, offset: -2n, kind: 'apply_failed', reason: 'test', raw: '{}' }]);
    await w.close();
    w = await open(); // a restart: nothing but the warehouse carries over
    assert.deepEqual(await accountDocuments(w, 'acc_a', '2026-11', prices), frozen);
    const dec = await invoiceFor(w, 'acc_a', '2026-12', prices);
    // Late, each line its own quantity × unit price rounded down: u3 gone, haiku input −1 → −24,
    // cache_read −3 × 2.4 = −7.2 → −8; late1 added, sonnet-4-6 input 1,000 → 198,000, output 200
    // → 198,000. Σ 395,968 = the charges moved (396,000 − 32): rounding 0 requests, 0 µc, no line.
    assert.deepEqual(dec.lines.map((l) => [l.section, l.source_month, l.model, l.dimension, l.quantity, l.amount_micros]), [
      ['late_usage', '2026-11', 'claude-haiku-4-5-20251001', 'input', '-1', '-24'],
      ['late_usage', '2026-11', 'claude-haiku-4-5-20251001', 'cache_read', '-3', '-8'],
      ['late_usage', '2026-11', 'claude-sonnet-4-6', 'input', '1000', '198000'],
      ['late_usage', '2026-11', 'claude-sonnet-4-6', 'output', '200', '198000'],
    ]);
    assert.equal(dec.total.micro_credits, '395968'); // 396,000 − 32
    assert.deepEqual(await invoiceLinesForMonth(w, '2026-12', prices), dec.lines); // acc_b: nothing late
    // closing = 11,761,936 (frozen November) − 395,968 = 11,365,968 = the warehouse balance
    assert.equal((await statementFor(w, 'acc_a', '2026-12', prices)).closing_balance, '11.365968');
    assert.equal((await w.balances()).get('acc_a'), 11_365_968n);
    // December absorbs the deltas when it closes; a later redelivery of the late event adds nothing
    await closeMonth(w, '2026-12', prices, Date.UTC(2027, 0, 1, 1));
    await w.insertEvents([usGeo('late1', Date.UTC(2026, 10, 15), 'acc_a', PV)]);
    assert.deepEqual((await invoiceFor(w, 'acc_a', '2027-01', prices)).lines, []);
    assert.equal((await statementFor(w, 'acc_a', '2027-01', prices)).opening_balance, '11.365968');
  } finally {
    await w.close();
  }
});

test('credit history paged in SQL: every page, window and cursor equals the whole history newest first, running balances exact; a foreign cursor is refused', async () => {
  const w = await fresh();
  try {
    await seed(w);
    // same-instant ties: a ledger entry at the day's last millisecond sorts before that day's usage
    await w.insertEvents([entry('acc_a', 'adjustment', 'tie', '1', Date.UTC(2026, 10, 3, 23, 59, 59, 999))]);
    const all = (await creditHistory(w, 'acc_a')).reverse();
    assert.equal(all.length, 8);
    for (const [from, to] of [[undefined, undefined], [Date.UTC(2026, 10, 1), undefined], [undefined, Date.UTC(2026, 10, 21)], [Date.UTC(2026, 9, 20), Date.UTC(2026, 10, 20)]] as const) {
      const want = all.filter((e) => (from === undefined || Date.parse(e.created_at) >= from) && (to === undefined || Date.parse(e.created_at) < to));
      for (const limit of [1, 2, 3, 100]) {
        const got: typeof all = [];
        let after: string | undefined;
        for (;;) {
          const page = await creditHistoryPage(w, 'acc_a', { limit, ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }), ...(after === undefined ? {} : { after }) });
          assert.ok(page !== null);
          got.push(...page.data);
          if (!page.hasMore) break;
          after = page.data.at(-1)!.id;
        }
        assert.deepEqual(got, want, `from ${from} to ${to} limit ${limit}`);
      }
    }
    // the newest entry's balance is the account's balance: 11,761,936 + 1
    assert.equal((await creditHistoryPage(w, 'acc_a', { limit: 1 }))!.data[0]!.balance_after_micro_credits, '11761937');
    // another account's ledger entry as a cursor, or an entry outside the window: null (the routes' 400)
    await w.insertEvents([entry('acc_b', 'grant', 'b-grant', '5', Date.UTC(2026, 10, 5))]);
    assert.equal((await creditHistoryPage(w, 'acc_b', { limit: 1 }))!.data[0]!.id, 'credit:acc_b:b-grant');
    assert.equal(await creditHistoryPage(w, 'acc_a', { limit: 10, after: 'credit:acc_b:b-grant' }), null);
    assert.equal(await creditHistoryPage(w, 'acc_a', { limit: 10, after: 'credit:acc_a:oct', from: Date.UTC(2026, 10, 1) }), null);
  } finally {
    await w.close();
  }
});

test('late usage lines state their own quantity × unit price, rounded down (a reversal too), never the difference of two truncated totals; the rounding line takes the rest, never negative', async () => {
  // a discounted list: haiku input 19.2 µc, cache read 1.92 µc a token
  const vip = (id: string, ts: number, input: number, cacheRead: number, cost: string) => v2({
    event_id: id, ts, account_id: 'acc_v', model: 'claude-haiku-4-5', catalog_model: 'claude-haiku-4-5-20251001',
    upstream_model: 'claude-haiku-4-5-20251001', served_model: 'claude-haiku-4-5-20251001',
    quantities: q({ input, cache_read: cacheRead }), cost_micros: cost, price_version: PV,
    unit_prices: { input: '19200000', output: '96000000', cache_read: '1920000' },
  });
  const w = await fresh();
  try {
    // 4 × 19.2 + 5 × 1.92 = 76.8 + 9.6 = 86.4 → 87 µc
    await w.insertEvents([vip('v1', NOV3, 4, 5, '87')]);
    await w.command(`ALTER TABLE ${w.tables.usage} UPDATE inserted_at = inserted_at - INTERVAL 1 DAY WHERE 1 SETTINGS mutations_sync = 2`);
    await closeMonth(w, '2026-11', prices, Date.UTC(2026, 11, 1, 10));
    assert.deepEqual((await invoiceFor(w, 'acc_v', '2026-11', prices)).lines.map((l) => [l.section, l.dimension, l.quantity, l.amount_micros]), [
      ['usage', 'input', '4', '76'], ['usage', 'cache_read', '5', '9'], ['rounding', '', '1', '2'],
    ]);
    // late, dated 20 November: 1 × 19.2 + 7 × 1.92 = 19.2 + 13.44 = 32.64 → 33 µc
    await w.insertEvents([vip('v2', Date.UTC(2026, 10, 20), 1, 7, '33')]);
    const dec = await invoiceFor(w, 'acc_v', '2026-12', prices);
    // input 1 × 19.2 → 19 (not 96 − 76 = 20); cache_read 7 × 1.92 = 13.44 → 13 (not 23 − 9 = 14);
    // rounding 33 − 32 = 1 (not −1)
    assert.deepEqual(dec.lines.map((l) => [l.section, l.source_month, l.dimension, l.quantity, l.amount_micros]), [
      ['late_usage', '2026-11', 'input', '1', '19'],
      ['late_usage', '2026-11', 'cache_read', '7', '13'],
      ['rounding', '2026-11', '', '1', '1'],
    ]);
    assert.equal(dec.total.micro_credits, '33');
  // A reversal: one of five one-token requests of a closed month, quarantined after the close.
  // The late line of −1 token is −19.2 rounded down, −20: it takes back what was booked, not less
  // (−19 would leave 0.2 µc more billed than the four requests' exact 76.8).
  } finally {
    await w.close();
  }
  const r = await fresh();
  try {
    await r.insertEvents([1, 2, 3, 4, 5].map((i) => ({ ...vip(`r${i}`, NOV3 + i, 1, 0, '20'), account_id: 'acc_r' })));
    await r.command(`ALTER TABLE ${r.tables.usage} UPDATE inserted_at = inserted_at - INTERVAL 1 DAY WHERE 1 SETTINGS mutations_sync = 2`);
    await closeMonth(r, '2026-11', prices, Date.UTC(2026, 11, 1, 10));
    // booked: input 5 × 19.2 = 96, rounding 100 − 96 = 4
    assert.deepEqual((await invoiceFor(r, 'acc_r', '2026-11', prices)).lines.map((l) => [l.section, l.quantity, l.amount_micros]), [['usage', '5', '96'], ['rounding', '5', '4']]);
    await r.insertQuarantine([{ event_id: 'r5', group: 'ledger', topic: 'usage', partition: -1, offset: -9n, kind: 'apply_failed', reason: 'test', raw: '{}' }]);
    const dec = await invoiceFor(r, 'acc_r', '2026-12', prices);
    // −1 × 19.2 = −19.2 → −20; the charge moved −20: rounding 0 (one request fewer: quantity −1)
    assert.deepEqual(dec.lines.map((l) => [l.section, l.source_month, l.dimension, l.quantity, l.amount_micros]), [
      ['late_usage', '2026-11', 'input', '-1', '-20'],
      ['rounding', '2026-11', '', '-1', '0'],
    ]);
    assert.equal(dec.total.micro_credits, '-20');
  } finally {
    await r.close();
  }
});
