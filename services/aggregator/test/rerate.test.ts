// `tollgate rerate` end to end: the command (a child process, as an operator runs it) asks the
// ops route of a process that owns a real chDB warehouse. A stored month with a price change in
// its middle re-priced under its own versions gives no difference (exit 0); previewed under
// another catalog it gives the exact per-account difference (exit 1); bad usage exits 2.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { runTollgate, type CliResult } from '../../../test/support/cli.ts';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHttpServer } from '@tollgate/http';
import { PriceBook, bundledCatalogPath, loadCatalogFile, parseCatalog, priceVersion } from '@tollgate/pricing';
import { createChdbClickHouse, Warehouse } from '@tollgate/warehouse';
import { reprice, rerate } from '@tollgate/aggregator';
import { startOpsApp, type OpsApp } from './ops-app.ts';
import { haikuV1, q, usGeo, v2, vipBatch, webSearch } from '../../../libs/warehouse/test/usage-fixtures.ts';

const TOKEN = 'rerate-test-admin-token';

// Version A: the shipped cny catalog, from October. Version B, from 15 November: sonnet-4-5
// output ¥36 → ¥40 per MTok (360 → 400 µc per token).
const A = loadCatalogFile(bundledCatalogPath('cny'));
const docB = structuredClone(A.document) as { models: Array<{ id: string; prices: Record<string, string> }> };
docB.models.find((m) => m.id === 'claude-sonnet-4-5-20250929')!.prices.output = '40.00';
const B = parseCatalog(docB, 'version B');
const book = new PriceBook(A, Date.UTC(2026, 9, 1));
book.append(B, Date.UTC(2026, 10, 15));

const day = (d: number, h = 12) => Date.UTC(2026, 10, d, h);
const EVENTS = [
  webSearch('oct', Date.UTC(2026, 9, 31, 23), 'acc_a', A.contentId), // outside the month
  webSearch('a1', day(2), 'acc_a', A.contentId), // 972,000
  // under B: 2,000 × 72 + 300 × 400 + 3 × 240,000 = 984,000
  { ...webSearch('a2', day(20), 'acc_a', B.contentId), cost_micros: '984000', unit_prices: { input: '72000000', output: '400000000' } },
  usGeo('b1', day(3), 'acc_b', A.contentId), // 396,000
  // under B, batch on vip (× 0.4): 1,000 × 28.8 + 100 × 160 = 44,800
  { ...vipBatch('b2', day(21), 'acc_b', B.contentId), cost_micros: '44800' },
  haikuV1('c1', day(10), 'acc_c'), // version 1: 3,882, re-priced under the version in force (A)
  haikuV1('c2', day(16), 'acc_c'), // version 1: 3,882 under B (haiku unchanged)
  // an upstream error: nothing billed, nothing to re-price
  v2({ event_id: 'c3', ts: day(17), account_id: 'acc_c', status: 'upstream_error', http_status: 529, price_version: B.contentId, upstream_cost_micros: null }),
  webSearch('dec', Date.UTC(2026, 11, 1), 'acc_a', B.contentId), // `to` is exclusive
];

let ops: OpsApp;
let warehouse: Warehouse;
let url: string;
let dir: string;

before(async () => {
  ops = await startOpsApp({ token: TOKEN, name: 'rerate', events: EVENTS, priceBook: book });
  ({ warehouse, url, dir } = ops);
});

after(async () => { await ops?.close(); });

function cli(args: string[]): Promise<CliResult> {
  return runTollgate(['rerate', ...args], { ADMIN_TOKEN: TOKEN, DATA_DIR: dir });
}

test('a stored month re-priced under its own price versions: no difference, exit 0, progress per day on stderr', async () => {
  const r = await cli(['--from', '2026-11-01T00:00:00Z', '--to', '2026-12-01', '--url', url]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(report.events, 7);
  assert.equal(report.accounts, 3);
  assert.deepEqual(report.differences, []);
  assert.deepEqual(report.skipped, {});
  // a1, b1, c1 under A; a2, b2, c2, c3 under B
  assert.deepEqual(report.versions, { [A.contentId]: 3, [B.contentId]: 4 });
  assert.equal(r.stderr.split('\n').filter((l) => / \.\. .*: \d+ events, 0 priced differently$/.test(l)).length, 30);
  assert.match(r.stderr, /no differences over 7 events of 3 accounts/);
  // the route stored the process's price book, so the versions outlive it
  assert.deepEqual((await warehouse.priceVersions()).map((v) => v.id), [A.contentId, B.contentId]);
});

test('the same month previewed under another catalog: the exact difference per account, exit 1', async () => {
  // Back to version A's prices for the whole month: a2 972,000 (−12,000), b2 43,200 (−1,600).
  const r = await cli(['--from', '2026-11-01', '--to', '2026-12-01', '--catalog', bundledCatalogPath('cny'), `--url=${url}`]);
  assert.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(report.price_book, A.contentId);
  assert.deepEqual(report.differences, [
    { account_id: 'acc_a', events: 2, events_different: 1, stored_micros: '1956000', rerated_micros: '1944000', difference_micros: '-12000' },
    { account_id: 'acc_b', events: 2, events_different: 1, stored_micros: '440800', rerated_micros: '439200', difference_micros: '-1600' },
  ]);
  assert.deepEqual((report.events_different as Array<{ event_id: string }>).map((e) => e.event_id), ['a2', 'b2']);
  assert.match(r.stderr, /acc_a: charged 1956000 µc, re-priced 1944000 µc \(difference -12000 µc over 1 of 2 events\)/);
  assert.match(r.stderr, /2 account\(s\) with differences/);
});

test('one account and one day: only its events', async () => {
  const r = await cli(['--from', '2026-11-20', '--to', '2026-11-21', '--account', 'acc_a', '--catalog', bundledCatalogPath('cny'), '--url', url]);
  assert.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(report.events, 1);
  assert.deepEqual(report.differences, [
    { account_id: 'acc_a', events: 1, events_different: 1, stored_micros: '984000', rerated_micros: '972000', difference_micros: '-12000' },
  ]);
});

test('events whose price version is not stored cannot be proved: counted as no_price_version, in no account sum', async () => {
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: 'lost_' });
  await w.migrate();
  try {
    await w.insertUsage([webSearch('x1', day(5), 'acc_x', 'deadbeef0000')]);
    const report = await rerate(w, { from: day(1), to: day(30) });
    assert.deepEqual([report.events, report.skipped, report.accounts], [1, { no_price_version: 1 }, []]);
  } finally {
    await w.close();
  }
});

test('usage errors exit 2 with one line naming the problem; --help exits 0', async () => {
  const bad = join(dir, 'bad-catalog.json');
  writeFileSync(bad, JSON.stringify({ ...JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8')), models: 'none' }));
  const cases: Array<[string[], RegExp]> = [
    [['--to', '2026-12-01'], /--from and --to are required/],
    [['--from', '2026-11-31', '--to', '2026-12-01'], /--from: .*2026-11-31/],
    [['--from', '2026-12-01', '--to', '2026-11-01'], /--to must be after --from/],
    [['--from', '2026-11-01', '--to', '2026-12-01', '--catalog', bad], /models/],
    [['--from', '2026-11-01', '--to', '2026-12-01', '--catalog', join(dir, 'missing.json')], /missing\.json/],
    [['--from', '2026-11-01', '--to', '2026-12-01', '--frm', 'x'], /unknown option "--frm"/],
  ];
  for (const [args, message] of cases) {
    const r = await cli([...args, '--url', url]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stdout, '');
  }
  const help = await cli(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: tollgate rerate --from TIME --to TIME/);
});

test('the route refuses a bad window or catalog with a 400 naming it', async () => {
  const post = (body: unknown) => fetch(`${url}/ops/v1/rerate`, {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  }).then(async (r) => [r.status, ((await r.json()) as { error: { message: string } }).error.message] as const);
  assert.deepEqual(await post({ to: '2026-12-01' }), [400, 'from: required, an RFC 3339 time, a date or epoch milliseconds']);
  assert.deepEqual(await post({ from: '2026-11-01', to: '2026-11-01' }), [400, 'to: must be after from']);
  assert.deepEqual(await post({ from: '2026-01-01', to: '2026-12-01' }), [400, 'to: the window may span at most 31 days; ask for it in parts']);
  const [status, message] = await post({ from: '2026-11-01', to: '2026-11-02', catalog: { version: 1 } });
  assert.equal(status, 400);
  assert.match(message, /catalog/);
});

test('reprice follows the settlement rules the event cannot repeat: unbilled errors, refusals before output, charges capped at the hold', () => {
  const vA = book.byId(A.contentId)!;
  const search = webSearch('r', day(2), 'acc_r', A.contentId); // 972,000 under A
  assert.deepEqual(reprice(search, vA), { micros: 972_000n });
  // a stream error the gateway did not bill (stored 0) stays 0 though it has tokens
  assert.deepEqual(reprice({ ...search, status: 'stream_error', cost_micros: '0' }, vA), { micros: 0n });
  // billed stream errors are re-priced
  assert.deepEqual(reprice({ ...search, status: 'stream_error' }, vA), { micros: 972_000n });
  // a refusal charged 0 had no output: 0 under any prices; one charged had output
  assert.deepEqual(reprice({ ...search, stop_reason: 'refusal', cost_micros: '0' }, vA), { micros: 0n });
  assert.deepEqual(reprice({ ...search, stop_reason: 'refusal' }, vA), { micros: 972_000n });
  // a stream withheld because its usage could not be written ahead was charged nothing on
  // purpose (status client_disconnect): it stays 0; the same status charged 0 without the mark
  // is re-priced
  assert.deepEqual(reprice({ ...search, status: 'client_disconnect', cost_micros: '0', anomalies: ['answer_withheld'] }, vA), { micros: 0n });
  assert.deepEqual(reprice({ ...search, status: 'client_disconnect', cost_micros: '0' }, vA), { micros: 972_000n });
  // charged its hold (cost_over_bound): never re-priced above it
  assert.deepEqual(reprice({ ...search, cost_micros: '500000', anomalies: ['cost_over_bound'] }, vA), { micros: 500_000n });
  assert.deepEqual(reprice({ ...search, model: 'gpt-9', catalog_model: 'gpt-9' }, vA), { skip: 'model_not_in_catalog:gpt-9' });
});

test('an event of a group\'s model_mapping is re-priced as it was priced: its steps and served model named as the requested model was sent resolve to that model', () => {
  const vA = book.byId(A.contentId)!;
  // opus-4-6 sent upstream as opus-4's own name: 10 × 300 + 100 × 1,500 at opus-4-6, as the
  // gateway charged it (the catalog's opus-4-6 alone reads the name as opus-4's: 183,600)
  const mapped = v2({
    event_id: 'm1', ts: day(2), account_id: 'acc_m', price_version: A.contentId,
    model: 'claude-opus-4-6', catalog_model: 'claude-opus-4-6', upstream_model: 'claude-opus-4-20250514', served_model: 'claude-opus-4-20250514',
    quantities: q({ input: 10, output: 100 }), cost_micros: '153000',
  });
  assert.deepEqual(reprice(mapped, vA), { micros: 153_000n });
  assert.deepEqual(reprice({ ...mapped, quantities: q(), iterations: [{ type: 'message', model: 'claude-opus-4-20250514', catalog_model: 'claude-opus-4-6', quantities: q({ input: 10, output: 100 }), cost_micros: '153000' }] }, vA), { micros: 153_000n });
});

test('a catalog without the price list an event was charged under: the event is skipped with the reason, never re-priced at full price', () => {
  const noVip = structuredClone(A.document) as { price_lists: Record<string, unknown> };
  delete noVip.price_lists.vip;
  const e = vipBatch('nv', day(2), 'acc_v', A.contentId); // 43,200 under vip
  assert.deepEqual(reprice(e, priceVersion(parseCatalog(noVip, 'no vip'))), { skip: 'price_list_not_in_catalog:vip' });
  assert.deepEqual(reprice(e, book.byId(A.contentId)!), { micros: 43_200n });
});

test('a failed run exits 3, not 1 (a bill that differs): unreachable URL, server error, a reply that is not a report', async () => {
  const unreachable = await cli(['--from', '2026-11-01', '--to', '2026-11-02', '--url', 'http://127.0.0.1:1']);
  assert.equal(unreachable.code, 3, unreachable.stderr);
  assert.match(unreachable.stderr, /cannot reach http:\/\/127\.0\.0\.1:1/);
  const fake = createHttpServer({ bodyLimitBytes: 1024 * 1024 });
  let reply: [number, unknown] = [500, { type: 'error', error: { type: 'api_error', message: 'warehouse down' } }];
  fake.post('/ops/v1/rerate', async (_req, res) => res.code(reply[0]).send(reply[1]));
  const fakeUrl = await fake.listen({ host: '127.0.0.1', port: 0 });
  try {
    const failed = await cli(['--from', '2026-11-01', '--to', '2026-11-02', '--url', fakeUrl]);
    assert.deepEqual([failed.code, failed.stdout], [3, '']);
    assert.match(failed.stderr, /answered 500: warehouse down/);
    reply = [200, { ok: true }];
    const notReport = await cli(['--from', '2026-11-01', '--to', '2026-11-02', '--url', fakeUrl]);
    assert.deepEqual([notReport.code, notReport.stdout], [3, '']);
    assert.match(notReport.stderr, /answered 200 without a rerate report/);
  } finally {
    await fake.close();
  }
});
