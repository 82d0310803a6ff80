// `tollgate usage|invoices|statements|export|close-month|credits history` against a real embedded
// Tollgate (chDB warehouse), traffic through the official SDK to the simulator: each command's
// output is exactly what the operator API serves (same JSON, same bytes), files are written whole
// or not at all, progress goes to stderr, and the terminal rules hold (a real pseudo-terminal via
// util-linux `script`). Prices (cny, µc per token): haiku-4-5 input 24, output 120.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTollgate, TOLLGATE_MAIN, type CliResult } from '../../../test/support/cli.ts';
import { ADMIN_TOKEN, customer, settledBalance, startStack, type Stack } from '../../../test/support/tollgate.ts';
import { childEnv } from '../../../test/support/services.ts';

const FINANCE_TOKEN = 'test-finance-token-0123456789';
let stack: Stack;
let accountId: string;
let keyId: string;
const dir = mkdtempSync(join(tmpdir(), 'cli-reports-'));
const month = new Date().toISOString().slice(0, 7);
const nextMonth = (() => {
  const d = new Date(`${month}-01T00:00:00Z`);
  d.setUTCMonth(d.getUTCMonth() + 1);
  return d.toISOString().slice(0, 7);
})();

before(async () => {
  stack = await startStack({ FINANCE_TOKEN });
  const c = await customer(stack.url, 10, 'reports');
  accountId = c.accountId;
  keyId = c.keyId;
  // haiku-4-5: 1,000 × 24 + 100 × 120 = 36,000 µc; 2,000 × 24 + 50 × 120 = 54,000 µc → 90,000 µc
  await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1000, messages: [{ role: 'user', content: 'a [[sim input=1000 output=100]]' }] });
  await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1000, messages: [{ role: 'user', content: 'b [[sim input=2000 output=50]]' }] });
  assert.equal(await settledBalance(stack, accountId), 10_000_000n - 90_000n);
});
after(async () => { await stack?.close(); });

/** as the finance team runs it: only FINANCE_TOKEN */
const fin = (...args: string[]): Promise<CliResult> => runTollgate(args, { ADMIN_TOKEN: '', FINANCE_TOKEN, TOLLGATE_URL: stack.url });
const adm = (...args: string[]): Promise<CliResult> => runTollgate(args, { ADMIN_TOKEN, TOLLGATE_URL: stack.url });

async function api(path: string): Promise<Buffer> {
  const res = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(res.status, 200, path);
  return Buffer.from(await res.arrayBuffer());
}

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
/**
 * `tollgate args…` on a pseudo-terminal (stdin, stdout and stderr all TTYs), typing `input`;
 * resolves to the exit code and everything the terminal showed (stdout and stderr together).
 */
function onTerminal(args: string[], input = ''): Promise<{ code: number | null; screen: string }> {
  return new Promise((done, fail) => {
    const child = spawn('script', ['-qec', [process.execPath, TOLLGATE_MAIN, ...args].map(quote).join(' '), '/dev/null'], {
      env: childEnv({ ADMIN_TOKEN, TOLLGATE_URL: stack.url }), stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    child.stdout.on('data', (b: Buffer) => { screen += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { screen += b.toString(); });
    child.stdin.end(input);
    child.once('error', fail);
    child.once('close', (code) => done({ code, screen }));
  });
}

test('usage: JSON exactly as GET /admin/v1/usage answers it, CSV byte for byte, a table for people; the finance token may read it', async () => {
  const window = ['--from', `${month}-01`, '--to', `${nextMonth}-01`, '--granularity', 'month', '--group-by', 'model'];
  const query = `from=${month}-01&to=${nextMonth}-01&granularity=month&group_by=model`;
  const json = await fin('usage', ...window, '--format', 'json');
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as { totals: { requests: number; cost_micros: string } };
  assert.deepEqual([report.totals.requests, report.totals.cost_micros], [2, '90000']);
  assert.deepEqual(JSON.parse(json.stdout), JSON.parse((await api(`/admin/v1/usage?${query}`)).toString()));

  const csv = await adm('usage', ...window, '--format', 'csv');
  assert.equal(csv.code, 0, csv.stderr);
  assert.equal(csv.stdout, (await api(`/admin/v1/usage?${query}&format=csv`)).toString());
  assert.equal(csv.stderr, '');

  const table = await adm('usage', ...window, '--format', 'table');
  assert.equal(table.code, 0, table.stderr);
  assert.ok(table.stdout.startsWith(`Usage ${month}-01T00:00:00.000Z .. ${nextMonth}-01T00:00:00.000Z by month, per model (from `), table.stdout);
  // one row: the month, the model, 2 requests, 3,000 input and 150 output tokens, 0.09 credits
  assert.match(table.stdout, new RegExp(`│ ${month}-01T00:00:00\\.000Z │ claude-haiku-4-5-20251001 │ 2 +│ 0 +│ 3000 +│ 150 +│ 0\\.090000 │`));
  assert.match(table.stdout, /│ charged +│ 0\.090000 credits \(90000 µc\) +│/);
  // on a terminal the table is the default
  const tty = await onTerminal(['usage', ...window]);
  assert.equal(tty.code, 0, tty.screen);
  assert.match(tty.screen, /Usage .* by month, per model/);
  assert.match(tty.screen, /│ charged +│ 0\.090000 credits \(90000 µc\) +│/);

  // each filter reaches the route under its API name
  const filtered = async (...f: string[]) => (JSON.parse((await adm('usage', ...window, '--format', 'json', ...f)).stdout) as { totals: { requests: number } }).totals.requests;
  assert.deepEqual(await Promise.all([
    filtered('--account', accountId), filtered('--account', 'acct_other'), filtered('--model', 'claude-haiku-4-5'),
    filtered('--model', 'claude-opus-4-6'), filtered('--status', 'ok'), filtered('--status', 'upstream_error'),
    filtered('--upstream', 'default'), filtered('--upstream', 'up_other'),
  ]), [2, 0, 2, 0, 2, 0, 2, 0]);
  // per upstream (the one of UPSTREAM_URL, `default`), read from raw events
  const byUpstream = JSON.parse((await adm('usage', '--from', `${month}-01`, '--to', `${nextMonth}-01`, '--granularity', 'month', '--group-by', 'upstream', '--format', 'json')).stdout) as { source: string; data: Array<{ group: string; cost_micros: string }> };
  assert.deepEqual([byUpstream.source, byUpstream.data.map((p) => [p.group, p.cost_micros])], ['raw', [['default', '90000']]]);

  // A malformed value never reaches the API (exit 2); what only the API can judge is its 400 (exit 1).
  const bad = await adm('usage', '--granularity', 'week');
  assert.deepEqual(bad, { code: 2, stdout: '', stderr: 'tollgate usage: --granularity must be one of minute, hour, day, month (not "week")\n(see tollgate usage --help)\n' });
  const backwards = await adm('usage', '--from', '2026-12-01', '--to', '2026-11-01');
  assert.deepEqual(backwards, { code: 2, stdout: '', stderr: 'tollgate usage: --to: 2026-11-01T00:00:00.000Z is before --from (2026-12-01T00:00:00.000Z)\n(see tollgate usage --help)\n' });
  // a month of minute buckets is more than one answer holds: only the API counts buckets
  const refused = await adm('usage', '--from', '2026-01-01', '--to', '2026-02-01', '--granularity', 'minute');
  assert.equal(refused.code, 1);
  assert.equal(refused.stdout, '');
  assert.match(refused.stderr, /^tollgate usage: 400 invalid_request: granularity: /);
});

test('invoices and statements: JSON, CSV and PDF exactly as served; --output writes the whole file (no .part left) or nothing', async () => {
  const inv = await fin('invoices', accountId, month);
  assert.equal(inv.code, 0, inv.stderr);
  assert.equal(inv.stdout, (await api(`/admin/v1/accounts/${accountId}/invoices/${month}?format=json`)).toString());
  assert.deepEqual((JSON.parse(inv.stdout) as { total: unknown }).total, {
    credits: '0.090000', micro_credits: '90000', currency: 'CNY', amount: '0.009',
    credit_values: [{ credit_value: '1 CNY = 10 credits', currency: 'CNY', micro_credits: '90000', amount: '0.009' }],
  });

  const csvFile = join(dir, 'invoice.csv');
  const csv = await fin('invoices', accountId, month, '--format', 'csv', '--output', csvFile);
  assert.equal(csv.code, 0, csv.stderr);
  const csvBytes = await api(`/admin/v1/accounts/${accountId}/invoices/${month}?format=csv`);
  assert.deepEqual(readFileSync(csvFile), csvBytes);
  assert.equal(csv.stdout, '');
  assert.equal(csv.stderr, `tollgate invoices: wrote ${csvBytes.length} bytes to ${csvFile}\n`);
  assert.equal(existsSync(`${csvFile}.part`), false);
  // A relative FILE under `npm run -s tollgate -- …`, typed in a subdirectory: npm runs the script
  // from the package root and says where it was typed in INIT_CWD; the file goes there.
  const typedIn = mkdtempSync(join(dir, 'typed-in-'));
  const relative = await runTollgate(['invoices', accountId, month, '--format', 'csv', '--output', 'rel.csv'],
    { ADMIN_TOKEN: '', FINANCE_TOKEN, TOLLGATE_URL: stack.url, INIT_CWD: typedIn });
  assert.equal(relative.code, 0, relative.stderr);
  assert.deepEqual(readFileSync(join(typedIn, 'rel.csv')), csvBytes);
  assert.equal(relative.stderr, `tollgate invoices: wrote ${csvBytes.length} bytes to ${join(typedIn, 'rel.csv')}\n`);

  const pdfFile = join(dir, 'statement.pdf');
  const pdf = await fin('statements', accountId, month, '--format', 'pdf', '--output', pdfFile);
  assert.equal(pdf.code, 0, pdf.stderr);
  assert.deepEqual(readFileSync(pdfFile), await api(`/admin/v1/accounts/${accountId}/statements/${month}?format=pdf`));
  assert.equal(readFileSync(pdfFile).subarray(0, 5).toString('latin1'), '%PDF-');
  // into a pipe (not a terminal) a PDF goes to stdout as it is
  const piped = await fin('statements', accountId, month, '--format', 'pdf');
  assert.equal(piped.code, 0);
  assert.ok(piped.stdout.startsWith('%PDF-'));

  const st = JSON.parse((await fin('statements', accountId, month)).stdout) as Record<string, string>;
  assert.deepEqual([st.opening_balance, st.grants, st.usage, st.closing_balance], ['0.000000', '10.000000', '0.090000', '9.910000']);

  // An API refusal: no file at all, the message on stderr, exit 1.
  const missing = join(dir, 'missing.csv');
  const unknown = await fin('invoices', 'acct_nope', month, '--format', 'csv', '--output', missing);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stderr, 'tollgate invoices: 404 not_found: account acct_nope does not exist\n');
  assert.equal(existsSync(missing) || existsSync(`${missing}.part`), false);
});

test('export: CSV, JSON and Parquet exactly as served; --progress reports the exact bytes received on stderr; Parquet is refused on a terminal', async () => {
  for (const format of ['csv', 'json']) {
    const r = await fin('export', month, '--format', format);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, (await api(`/admin/v1/billing/export?month=${month}&format=${format}`)).toString(), format);
    assert.equal(r.stderr, '', 'no progress into a pipe unless asked');
  }
  const file = join(dir, 'export.parquet');
  const r = await fin('export', month, '--format', 'parquet', '--output', file, '--progress');
  assert.equal(r.code, 0, r.stderr);
  const served = await api(`/admin/v1/billing/export?month=${month}&format=parquet`);
  assert.deepEqual(readFileSync(file), served);
  assert.equal(served.subarray(0, 4).toString('latin1'), 'PAR1');
  const lines = r.stderr.split('\n');
  assert.match(lines.at(-3)!, new RegExp(`^tollgate export: ${served.length} bytes received( of ${served.length})? \\(.+\\), done$`));
  assert.equal(lines.at(-2), `tollgate export: wrote ${served.length} bytes to ${file}`);

  const tty = await onTerminal(['export', month, '--format', 'parquet']);
  assert.equal(tty.code, 2);
  assert.match(tty.screen, /tollgate export: parquet is binary: give --output FILE or redirect stdout \(> FILE\)/);
  // stderr on a terminal: progress redrawn in place, ending with the exact count
  const ttyFile = join(dir, 'tty.csv');
  const withProgress = await onTerminal(['export', month, '--format', 'csv', '--output', ttyFile]);
  assert.equal(withProgress.code, 0, withProgress.screen);
  const size = readFileSync(ttyFile).length;
  assert.match(withProgress.screen, new RegExp(`\\rtollgate export: ${size} bytes received( of ${size})? \\(.+\\), done\\r?\\n`));
});

test('progress line and data on one terminal: the progress line is ended before the CSV header, which starts its own line', async () => {
  const served = (await api(`/admin/v1/billing/export?month=${month}&format=csv`)).toString();
  const header = served.slice(0, served.indexOf('\r\n'));
  const r = await onTerminal(['export', month, '--format', 'csv']);
  assert.equal(r.code, 0, r.screen);
  // the terminal shows newlines as CRLF; the header must follow a line end, never "bytes received (…)"
  const at = r.screen.indexOf(header);
  assert.ok(at >= 0, r.screen);
  assert.match(r.screen.slice(0, at), /(^|\n)$/, JSON.stringify(r.screen.slice(0, at)));
  assert.match(r.screen, /bytes received( of \d+)? \(.+\), done\r?\n$/);
});

test('credits history: the account\'s entries newest first with the exact running balance, as the API pages them', async () => {
  const r = await fin('credits', 'history', accountId);
  assert.equal(r.code, 0, r.stderr);
  const page = JSON.parse(r.stdout) as { data: Array<Record<string, unknown>>; has_more: boolean };
  // newest first: the day's usage (90,000 µc), then the 10-credit grant
  assert.deepEqual(page.data.map((e) => [e.type, e.amount_micro_credits, e.balance_after_micro_credits]), [
    ['usage', '-90000', '9910000'],
    ['grant', '10000000', '10000000'],
  ]);
  assert.equal(page.has_more, false);
  const first = JSON.parse((await adm('credits', 'history', accountId, '--limit', '1')).stdout) as { data: Array<{ type: string }>; next_cursor: string };
  assert.equal(first.data[0]!.type, 'usage');
  const second = JSON.parse((await adm('credits', 'history', accountId, '--limit', '1', '--cursor', first.next_cursor)).stdout) as { data: Array<{ type: string }>; has_more: boolean };
  assert.deepEqual([second.data[0]!.type, second.has_more], ['grant', false]);
  const unknown = await adm('credits', 'history', 'acct_nope');
  assert.deepEqual(unknown, { code: 1, stdout: '', stderr: 'tollgate credits history: 404 not_found: account acct_nope does not exist\n' });
});

test('close-month: on a terminal it asks and "no" closes nothing, "yes" closes (then the invoice never changes); --yes again says when it was closed; a month that has not started is refused naming month', async () => {
  const before = await api(`/admin/v1/accounts/${accountId}/invoices/${month}`);
  const months = () => api('/admin/v1/billing/months').then((b) => (JSON.parse(b.toString()) as { data: Array<{ month: string }> }).data.map((m) => m.month));

  const future = await fin('close-month', nextMonth, '--yes');
  assert.equal(future.code, 1, future.stderr);
  assert.match(future.stderr, new RegExp(`400 invalid_request: month: ${nextMonth} has not started yet; the latest month that can be closed is ${month} \\(UTC\\)`));

  const declined = await onTerminal(['close-month', month], 'no\n');
  assert.equal(declined.code, 1, declined.screen);
  assert.match(declined.screen, new RegExp(`Close ${month} on ${stack.url.replaceAll('.', '\\.')}\\? .*Type "yes" to close: `));
  assert.match(declined.screen, /tollgate close-month: not closed/);
  assert.ok(!(await months()).includes(month));

  const accepted = await onTerminal(['close-month', month], 'yes\n');
  assert.equal(accepted.code, 0, accepted.screen);
  assert.match(accepted.screen, /"closed_now": true/);
  assert.ok((await months()).includes(month));

  const listed = await fin('months');
  assert.equal(listed.code, 0, listed.stderr);
  const closes = JSON.parse(listed.stdout) as { data: Array<{ month: string; closed_at: string }>; last_closed: string; first_open: string };
  assert.deepEqual([closes.data.at(-1)?.month, closes.last_closed, closes.first_open], [month, month, nextMonth]);

  const again = await fin('close-month', month, '--yes');
  assert.equal(again.code, 0, again.stderr);
  const answer = JSON.parse(again.stdout) as { month: string; status: string; closed_now: boolean; closed_at: string };
  assert.deepEqual([answer.month, answer.status, answer.closed_now], [month, 'closed', false]);
  const frozen = await fin('invoices', accountId, month);
  assert.equal(JSON.parse(frozen.stdout).status, 'closed');
  assert.deepEqual(JSON.parse(frozen.stdout).lines, JSON.parse(before.toString()).lines);
  // the first open month (next month) is readable
  assert.equal((await fin('invoices', accountId, nextMonth)).code, 0);
});
