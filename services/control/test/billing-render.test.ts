// Billing files as a finance team receives them: invoices and statements (CSV, PDF) and the month's
// export (CSV, JSON Lines, Parquet). Parquet is read back with hyparquet, PDF text is read out of its
// deflated content streams, the export route runs on a real Fastify server with the operator hook.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { inflateSync } from 'node:zlib';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { createHttpServer } from '@tollgate/http';
import { monthOf, nextMonth } from '@tollgate/warehouse';
import type { Invoice, InvoiceLine, Statement } from '../src/billing-types.ts';
import {
  EXPORT_BATCH, csvSafe, exportChunks, parquetOutOfRange, renderExport, renderInvoice, renderStatement,
} from '../src/billing-render.ts';
import { registerBillingExportFrom } from '../src/billing-export.ts';
import type { ReportDeps } from '../src/reports.ts';

function line(over: Partial<InvoiceLine> = {}): InvoiceLine {
  return {
    account_id: 'acc_a', month: '2026-10', section: 'usage', source_month: '2026-10',
    model: 'claude-sonnet-4-5-20250929', dimension: 'input', quantity: '2000', unit_price: '72',
    amount: '0.144000', amount_micros: '144000', ...over,
  };
}

// sonnet-4-5 (cny): input 2,000 × 72 µc = 144,000 µc; output 300 × 360 = 108,000 µc; one rounding
// µc; a 1-credit refund back = −1,000,000 µc → total 144,000 + 108,000 + 1 − 1,000,000 = −747,999 µc
// = −0.747999 credits; at 10 credits per CNY: −0.0747999 CNY.
const LINES: InvoiceLine[] = [
  line(),
  line({ dimension: 'output', quantity: '300', unit_price: '360', amount: '0.108000', amount_micros: '108000' }),
  line({ section: 'rounding', model: '', dimension: '', quantity: '1', unit_price: '', amount: '0.000001', amount_micros: '1' }),
  line({ section: 'refund', model: '', dimension: '', quantity: '1', unit_price: '', amount: '-1.000000', amount_micros: '-1000000' }),
];
const INVOICE: Invoice = {
  account_id: 'acc_a', account_name: 'Acme 株式会社', seller: 'Example Resale Ltd',
  month: '2026-10', status: 'closed', closed_at: '2026-11-01T00:05:00Z', lines: LINES,
  total: {
    credits: '-0.747999', micro_credits: '-747999', currency: 'CNY', amount: '-0.0747999',
    credit_values: [{ credit_value: '1 CNY = 10 credits', currency: 'CNY', micro_credits: '-747999', amount: '-0.0747999' }],
  },
};
const STATEMENT: Statement = {
  account_id: 'acc_a', account_name: 'Acme', seller: 'Tollgate', month: '2026-10', status: 'closed', closed_at: '2026-11-01T00:05:00Z',
  opening_balance: '10.000000', top_ups: '5.000000', grants: '0.000000', usage: '0.252001', refunds: '1.000000',
  adjustments: '0.000000', closing_balance: '15.747999', currency: 'CNY', credit_value: '1 CNY = 10 credits',
};
const EXPORT_LINES: InvoiceLine[] = [
  ...LINES,
  line({ account_id: 'acc_b', model: 'claude-haiku-4-5-20251001', quantity: '10', unit_price: '24', amount: '0.000240', amount_micros: '240' }),
  line({ account_id: 'acc_b', section: 'late_usage', source_month: '2026-09', model: 'claude-haiku-4-5-20251001', dimension: 'web_search_requests', quantity: '3', unit_price: '0.24', amount: '0.720000', amount_micros: '720000' }),
];

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const arrayBuffer = (b: Buffer) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/** Every file the renderers make from the fixtures, by name → sha256. */
function hashes(): Record<string, string> {
  return {
    invoice_csv: sha(renderInvoice(INVOICE, 'csv').body),
    invoice_pdf: sha(renderInvoice(INVOICE, 'pdf').body),
    open_invoice_pdf: sha(renderInvoice({ ...INVOICE, status: 'open', closed_at: null }, 'pdf').body),
    statement_csv: sha(renderStatement(STATEMENT, 'csv').body),
    statement_pdf: sha(renderStatement(STATEMENT, 'pdf').body),
    export_csv: sha(renderExport(EXPORT_LINES, 'csv').body),
    export_json: sha(renderExport(EXPORT_LINES, 'json').body),
    export_parquet: sha(renderExport(EXPORT_LINES, 'parquet').body),
  };
}

/** The text a PDF shows, one item per text-showing operator, in drawing order. */
function pdfTexts(pdf: Buffer): string[] {
  const texts: string[] = [];
  const head = /\/Length (\d+)\n\/Filter \/FlateDecode\n>>\nstream\n/g;
  const latin = pdf.toString('latin1');
  for (let m = head.exec(latin); m !== null; m = head.exec(latin)) {
    const start = m.index + m[0].length;
    const content = inflateSync(pdf.subarray(start, start + Number(m[1]))).toString('latin1');
    for (const tj of content.matchAll(/\[([^\]]*)\] TJ/g)) {
      texts.push([...tj[1]!.matchAll(/<([0-9a-f]*)>/g)].map((h) => Buffer.from(h[1]!, 'hex').toString('latin1')).join(''));
    }
  }
  return texts;
}
const pageCount = (pdf: Buffer) => pdf.toString('latin1').match(/\/Type \/Page\n/g)?.length ?? 0;

test('the same inputs give byte-identical exports: twice in one process, in another process, and whatever key order the lines were built in', () => {
  const first = hashes();
  assert.deepEqual(hashes(), first);
  // the lines' own key order must not leak into any format
  const shuffled = EXPORT_LINES.map((l) => Object.fromEntries(Object.entries(l).reverse()) as unknown as InvoiceLine);
  for (const format of ['csv', 'json', 'parquet'] as const) {
    assert.equal(sha(renderExport(shuffled, format).body), first[`export_${format}`], format);
  }
  const script = `
    import { createHash } from 'node:crypto';
    const { renderInvoice, renderStatement, renderExport } = await import(${JSON.stringify(new URL('../src/billing-render.ts', import.meta.url).href)});
    const [INVOICE, STATEMENT, EXPORT_LINES] = JSON.parse(process.argv[1]);
    const sha = (b) => createHash('sha256').update(b).digest('hex');
    console.log(JSON.stringify({
      invoice_csv: sha(renderInvoice(INVOICE, 'csv').body), invoice_pdf: sha(renderInvoice(INVOICE, 'pdf').body),
      open_invoice_pdf: sha(renderInvoice({ ...INVOICE, status: 'open', closed_at: null }, 'pdf').body),
      statement_csv: sha(renderStatement(STATEMENT, 'csv').body), statement_pdf: sha(renderStatement(STATEMENT, 'pdf').body),
      export_csv: sha(renderExport(EXPORT_LINES, 'csv').body), export_json: sha(renderExport(EXPORT_LINES, 'json').body),
      export_parquet: sha(renderExport(EXPORT_LINES, 'parquet').body),
    }));`;
  const other = execFileSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify([INVOICE, STATEMENT, EXPORT_LINES])], {
    cwd: import.meta.dirname, encoding: 'utf8', env: { ...process.env, TZ: 'Pacific/Kiritimati', LANG: 'de_DE.UTF-8' },
  });
  assert.deepEqual(JSON.parse(other), first);
});

test('a customer-chosen name that starts with = is not a formula in CSV: = + - @ tab CR get a leading quote, negative amounts stay numbers, a lone CR or LF is quoted', () => {
  const hostile = [
    line({ account_id: '=HYPERLINK("http://evil","x")', model: '+cmd|calc', dimension: '@SUM(A1)' }),
    line({ model: '-2+3', dimension: '\tinput', amount: '-1.000000', amount_micros: '-1000000' }),
    line({ model: '\r=1' }),
    line({ model: 'two\nlines' }),
  ];
  const csv = renderExport(hostile, 'csv', '2026-10').body.toString('utf8');
  assert.equal(csv,
    'account_id,month,section,source_month,model,dimension,quantity,unit_price,amount,amount_micros\r\n'
    + `"'=HYPERLINK(""http://evil"",""x"")",2026-10,usage,2026-10,'+cmd|calc,'@SUM(A1),2000,72,0.144000,144000\r\n`
    + "acc_a,2026-10,usage,2026-10,'-2+3,'\tinput,2000,72,-1.000000,-1000000\r\n"
    + `acc_a,2026-10,usage,2026-10,"'\r=1",input,2000,72,0.144000,144000\r\n`
    + `acc_a,2026-10,usage,2026-10,"two\nlines",input,2000,72,0.144000,144000\r\n`);
  assert.equal(csv.charCodeAt(0), 0x61, 'no byte-order mark');
  // the unit rule itself: plain numbers are not formulas
  assert.deepEqual(['-0.5', '-12', '=1', '-1-1', '+5', 'ok'].map(csvSafe), ['-0.5', '-12', "'=1", "'-1-1", "'+5", 'ok']);
  // the same rule in an invoice CSV (its total row last) and a statement CSV
  assert.equal(renderInvoice({ ...INVOICE, lines: [hostile[0]!] }, 'csv').body.toString('utf8'),
    'account_id,month,section,source_month,model,dimension,quantity,unit_price,amount,amount_micros\r\n'
    + `"'=HYPERLINK(""http://evil"",""x"")",2026-10,usage,2026-10,'+cmd|calc,'@SUM(A1),2000,72,0.144000,144000\r\n`
    + 'acc_a,2026-10,total,2026-10,,,,,-0.747999,-747999\r\n');
  assert.equal(renderStatement({ ...STATEMENT, account_id: '@acc' }, 'csv').body.toString('utf8'),
    'account_id,account_name,month,status,closed_at,opening_balance,top_ups,grants,usage,refunds,adjustments,closing_balance,currency,credit_value\r\n'
    + "'@acc,Acme,2026-10,closed,2026-11-01T00:05:00Z,10.000000,5.000000,0.000000,0.252001,1.000000,0.000000,15.747999,CNY,1 CNY = 10 credits\r\n");
});

test('parquet read back with hyparquet gives exactly the lines: money as strings, counts as INT64, no float column, fixed created_by', async () => {
  const file = renderExport(EXPORT_LINES, 'parquet');
  assert.equal(file.filename, 'tollgate-billing-2026-10.parquet');
  assert.equal(file.contentType, 'application/vnd.apache.parquet');
  const rows = await parquetReadObjects({ file: arrayBuffer(file.body) });
  assert.deepEqual(rows, EXPORT_LINES.map((l) => ({ ...l, quantity: BigInt(l.quantity), amount_micros: BigInt(l.amount_micros) })));
  const meta = parquetMetadata(arrayBuffer(file.body));
  assert.equal(meta.created_by, 'tollgate');
  assert.equal(meta.key_value_metadata, undefined);
  assert.deepEqual(meta.schema.slice(1).map((s) => [s.name, s.type, s.converted_type ?? null]), [
    ['account_id', 'BYTE_ARRAY', 'UTF8'], ['month', 'BYTE_ARRAY', 'UTF8'], ['section', 'BYTE_ARRAY', 'UTF8'],
    ['source_month', 'BYTE_ARRAY', 'UTF8'], ['model', 'BYTE_ARRAY', 'UTF8'], ['dimension', 'BYTE_ARRAY', 'UTF8'],
    ['quantity', 'INT64', null], ['unit_price', 'BYTE_ARRAY', 'UTF8'], ['amount', 'BYTE_ARRAY', 'UTF8'], ['amount_micros', 'INT64', null],
  ]);
  // an empty month is still a valid file with the same columns
  const empty = parquetMetadata(arrayBuffer(renderExport([], 'parquet', '2026-10').body));
  assert.equal(empty.num_rows, 0n);
  assert.equal(empty.schema.length, 11);
});

test('a big month streams in bounded chunks: every batch at most EXPORT_BATCH lines, one row group per batch, the same bytes as one piece', async () => {
  const n = 2 * EXPORT_BATCH + 7; // 20,007 lines: 3 batches
  const many = Array.from({ length: n }, (_, i) => line({ account_id: `acc_${String(i).padStart(6, '0')}`, quantity: String(i), amount_micros: String(72 * i) }));
  const csvChunks = [...exportChunks(many, 'csv')];
  assert.deepEqual(csvChunks.map((c) => c.toString('utf8').split('\r\n').length - 1), [EXPORT_BATCH + 1, EXPORT_BATCH, 7]);
  const jsonChunks = [...exportChunks(many, 'json')];
  assert.deepEqual(jsonChunks.map((c) => c.toString('utf8').split('\n').length - 1), [EXPORT_BATCH, EXPORT_BATCH, 7]);
  const parquet = Buffer.concat([...exportChunks(many, 'parquet')]);
  assert.ok(parquet.equals(renderExport(many, 'parquet').body));
  const meta = parquetMetadata(arrayBuffer(parquet));
  assert.deepEqual(meta.row_groups.map((g) => g.num_rows), [BigInt(EXPORT_BATCH), BigInt(EXPORT_BATCH), 7n]);
  const back = await parquetReadObjects({ file: arrayBuffer(parquet), columns: ['account_id', 'quantity', 'amount_micros'], rowStart: n - 2 });
  assert.deepEqual(back, [
    { account_id: 'acc_020005', quantity: 20005n, amount_micros: 1440360n },
    { account_id: 'acc_020006', quantity: 20006n, amount_micros: 1440432n },
  ]);
});

test('JSON export is JSON Lines with a fixed key order and every value as text', () => {
  const body = renderExport(EXPORT_LINES.slice(3, 5), 'json').body.toString('utf8');
  assert.equal(body,
    '{"account_id":"acc_a","month":"2026-10","section":"refund","source_month":"2026-10","model":"","dimension":"","quantity":"1","unit_price":"","amount":"-1.000000","amount_micros":"-1000000"}\n'
    + '{"account_id":"acc_b","month":"2026-10","section":"usage","source_month":"2026-10","model":"claude-haiku-4-5-20251001","dimension":"input","quantity":"10","unit_price":"24","amount":"0.000240","amount_micros":"240"}\n');
  assert.equal(renderExport([], 'json', '2026-10').body.length, 0);
  assert.equal(renderExport([], 'csv', '2026-10').body.toString('utf8'), 'account_id,month,section,source_month,model,dimension,quantity,unit_price,amount,amount_micros\r\n');
});

test('invoice PDF: starts with %PDF, one page, shows seller, account, status and the totals in credits and CNY; dated closed_at, or the month start while open', () => {
  const pdf = renderInvoice(INVOICE, 'pdf');
  assert.equal(pdf.body.subarray(0, 5).toString('latin1'), '%PDF-');
  assert.equal(pdf.body.subarray(-6).toString('latin1'), '%%EOF\n');
  assert.equal(pdf.filename, 'invoice-acc_a-2026-10.pdf');
  assert.equal(pageCount(pdf.body), 1);
  const texts = pdfTexts(pdf.body);
  assert.deepEqual(texts.slice(0, 8), ['Example Resale Ltd', 'Invoice', 'Account', 'Acme ???? (acc_a)', 'Month', '2026-10 (UTC)', 'Status', 'closed 2026-11-01T00:05:00Z (final)']);
  assert.deepEqual(texts.slice(8, 13), ['Item', 'Model', 'Quantity', 'Unit price', 'Amount (credits)']);
  assert.deepEqual(texts.slice(13, 22), [
    'Input tokens', 'claude-sonnet-4-5-20250929', '2000', '72 / 1M', '0.144000',
    'Output tokens', 'claude-sonnet-4-5-20250929', '300', '360 / 1M',
  ]);
  const total = texts.indexOf('Total');
  assert.deepEqual(texts.slice(total, total + 5), ['Total', 'credits', '-0.747999', 'CNY', '-0.0747999']);
  assert.match(pdf.body.toString('latin1'), /\/CreationDate \d+ 0 R/);
  assert.ok(pdf.body.includes('(D:20261101000500Z)'), 'CreationDate is closed_at');

  const open = renderInvoice({ ...INVOICE, status: 'open', closed_at: null }, 'pdf');
  assert.ok(open.body.includes('(D:20261001000000Z)'), 'an open month is dated at its start');
  assert.ok(pdfTexts(open.body).includes('open (may still change until the month is closed)'));
});

test('an invoice longer than a page breaks onto more pages and keeps every line', () => {
  const long = Array.from({ length: 120 }, (_, i) => line({ quantity: String(i + 1) }));
  const pdf = renderInvoice({ ...INVOICE, lines: long }, 'pdf').body;
  assert.equal(pageCount(pdf), 3);
  const quantities = pdfTexts(pdf).filter((t) => /^\d+$/.test(t));
  assert.deepEqual(quantities, long.map((l) => l.quantity));
});

test('statement PDF: balances in order with usage as a debit and the credit value in CNY', () => {
  const pdf = renderStatement(STATEMENT, 'pdf');
  assert.equal(pdf.contentType, 'application/pdf');
  assert.equal(pdf.filename, 'statement-acc_a-2026-10.pdf');
  assert.equal(pageCount(pdf.body), 1);
  const texts = pdfTexts(pdf.body);
  const at = texts.indexOf('Opening balance');
  assert.deepEqual(texts.slice(at, at + 14), [
    'Opening balance', '10.000000 credits', 'Top-ups', '5.000000 credits', 'Grants', '0.000000 credits',
    'Usage', '-0.252001 credits', 'Refunds', '1.000000 credits', 'Adjustments', '0.000000 credits',
    'Closing balance', '15.747999 credits',
  ]);
  assert.ok(texts.some((t) => t.startsWith('Credit value: 1 CNY = 10 credits.')), texts.join('|'));
});

test('a frozen document renders from itself alone: a later account name or seller passed in changes no byte (closed PDFs and CSVs are a pure function of the snapshot)', () => {
  for (const format of ['pdf', 'csv'] as const) {
    assert.deepEqual(renderInvoice(INVOICE, format, { accountName: 'Renamed Co', seller: 'Other' }).body, renderInvoice(INVOICE, format).body, format);
    assert.deepEqual(renderStatement(STATEMENT, format, { accountName: 'Renamed Co', seller: 'Other' }).body, renderStatement(STATEMENT, format).body, format);
  }
  assert.ok(pdfTexts(renderStatement(STATEMENT, 'pdf').body).includes('Acme (acc_a)'));
});

test('billing export of a line beyond INT64 (a month summing past 2^63 − 1 µc): csv and json carry it exactly; parquet is a 400 naming the line before anything is sent', async (t) => {
  const ADMIN = 'admin-token-export-wide';
  const wide = line({ account_id: 'acc_big', section: 'usage', quantity: '2', unit_price: '', amount: '10000000000000.000000', amount_micros: '10000000000000000000' });
  const app = createHttpServer({ logger: false, bodyLimitBytes: 1024 });
  registerBillingExportFrom(app, { adminToken: ADMIN } as ReportDeps, async () => [...LINES, wide]);
  t.after(() => app.close());
  const get = (format: string) => app.inject({ method: 'GET', url: `/admin/v1/billing/export?month=2026-10&format=${format}`, headers: { authorization: `Bearer ${ADMIN}` } });
  const csv = await get('csv');
  assert.equal(csv.statusCode, 200);
  assert.ok(csv.body.endsWith('acc_big,2026-10,usage,2026-10,claude-sonnet-4-5-20250929,input,2,,10000000000000.000000,10000000000000000000\r\n'), csv.body.slice(-160));
  const json = await get('json');
  assert.equal(JSON.parse(json.body.trim().split('\n').at(-1)!).amount_micros, '10000000000000000000');
  const parquet = await get('parquet');
  const { request_id: _id, ...body } = parquet.json() as Record<string, unknown>;
  assert.deepEqual([parquet.statusCode, parquet.headers['content-disposition'], body], [400, undefined, { type: 'error', error: {
    type: 'invalid_request_error', code: 'invalid_request',
    message: 'format: parquet stores amount_micros as INT64, and account acc_big has a usage line of 10000000000000000000 (beyond 2^63 − 1); export 2026-10 as csv or json, which carry it exactly',
  } }]);
  // the renderer itself refuses too, never writing a wrapped number
  assert.throws(() => renderExport([wide], 'parquet'), /amount_micros 10000000000000000000 of account acc_big is beyond INT64/);
  assert.deepEqual(parquetOutOfRange([...LINES, line({ amount_micros: '9223372036854775807' }), line({ amount_micros: '-9223372036854775808' })]), undefined);
});

test('billing export route: finance token gets the file with its name; a bad month, format or parameter is a 400 naming it', async (t) => {
  const ADMIN = 'admin-token-export-test';
  const FINANCE = 'finance-token-export-test';
  const asked: string[] = [];
  const app = createHttpServer({ logger: false, bodyLimitBytes: 1024 });
  registerBillingExportFrom(app, { adminToken: ADMIN, financeToken: FINANCE } as ReportDeps, async (month) => {
    asked.push(month);
    return month === '2026-10' ? EXPORT_LINES : [];
  });
  t.after(() => app.close());
  const get = (url: string, token = FINANCE) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });

  for (const format of ['csv', 'json', 'parquet'] as const) {
    const res = await get(`/admin/v1/billing/export?month=2026-10&format=${format}`);
    const want = renderExport(EXPORT_LINES, format);
    assert.deepEqual([res.statusCode, res.headers['content-type'], res.headers['content-disposition']],
      [200, want.contentType, `attachment; filename="${want.filename}"`]);
    assert.ok(res.rawPayload.equals(want.body), format);
  }
  const byAdmin = await get('/admin/v1/billing/export?month=2026-10', ADMIN);
  assert.equal(byAdmin.headers['content-disposition'], 'attachment; filename="tollgate-billing-2026-10.jsonl"');
  assert.ok(byAdmin.rawPayload.equals(renderExport(EXPORT_LINES, 'json').body), 'json is the default');
  assert.deepEqual(asked, ['2026-10', '2026-10', '2026-10', '2026-10']);

  const bad: Array<[string, string]> = [
    ['/admin/v1/billing/export', 'month: required, a month such as 2026-11 (YYYY-MM, UTC)'],
    ['/admin/v1/billing/export?month=2026-13', 'month: "2026-13" is not a month; expected YYYY-MM such as 2026-11'],
    ['/admin/v1/billing/export?month=2026-1', 'month: "2026-1" is not a month; expected YYYY-MM such as 2026-11'],
    ['/admin/v1/billing/export?month=1969-12', 'month: 1969-12 is before 1970-01'],
    ['/admin/v1/billing/export?month=9999-12', `month: 9999-12 is in the future (the latest month with anything to bill is ${nextMonth(monthOf(Date.now()))})`],
    ['/admin/v1/billing/export?month=2026-10&month=2026-11', 'month: given more than once'],
    ['/admin/v1/billing/export?month=2026-10&format=xlsx', 'format: "xlsx" is not one of csv, json, parquet'],
    // an empty value is a bad value, never read as absent (the default)
    ['/admin/v1/billing/export?month=2026-10&format=', 'format: is empty; give a value or leave the parameter out'],
    ['/admin/v1/billing/export?month=', 'month: is empty; give a value or leave the parameter out'],
    ['/admin/v1/billing/export?month=2026-10&account_id=acc_a', 'account_id: unknown query parameter; this route takes month, format'],
  ];
  for (const [url, message] of bad) {
    const res = await get(url);
    const { request_id: _id, ...body } = res.json() as Record<string, unknown>;
    assert.deepEqual({ url, status: res.statusCode, body }, {
      url, status: 400, body: { type: 'error', error: { type: 'invalid_request_error', code: 'invalid_request', message } },
    });
  }
  assert.equal(asked.length, 4, 'nothing is read for a refused request');
  assert.equal((await get('/admin/v1/billing/export?month=2026-10', 'wrong')).statusCode, 401);
  assert.equal((await app.inject({ method: 'GET', url: '/admin/v1/billing/export?month=2026-10' })).statusCode, 401);
});
