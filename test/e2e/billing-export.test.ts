// The month's billing export end to end: real traffic through the official SDK to the simulator,
// settled and warehoused by the embedded stack (chDB), then `GET /admin/v1/billing/export` in all
// three formats. The lines sum to exactly what the ledger debited; the bytes are the same on a
// second read and after a restart; CSV, JSON Lines and Parquet carry the same lines.
import { after, before, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { parquetReadObjects } from 'hyparquet';
import { renderExport } from '../../services/control/src/billing-render.ts';
import type { InvoiceLine } from '../../services/control/src/billing-types.ts';
import { nextMonth } from '@tollgate/warehouse';
import { ADMIN_TOKEN, admin, customer, settledBalance, startStack, type Stack } from '../support/tollgate.ts';

let stack: Stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack.close();
});

type Line = InvoiceLine;

async function exportOf(month: string, format: string, token = ADMIN_TOKEN): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`${stack.url}/admin/v1/billing/export?month=${month}&format=${format}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const ask = (text: string) => ({ max_tokens: 1000, messages: [{ role: 'user' as const, content: text }] });

test('a month of real traffic exports to the micro-credit: lines sum to the ledger debits, byte-identical on re-read, after a restart and after late usage once closed (that goes to next month as late_usage), the same lines in CSV, JSON Lines and Parquet', async () => {
  const month = new Date().toISOString().slice(0, 7);
  const a = await customer(stack.url, 10, 'export-a');
  const b = await customer(stack.url, 10, 'export-b');
  // sonnet-4-6 (cny): 2,000 × 180 + 300 × 900 = 630,000 µc, twice; haiku-4-5: 1,000 × 24 + 100 × 120 = 36,000 µc
  await a.client.messages.create({ model: 'claude-sonnet-4-6', ...ask('one [[sim input=2000 output=300]]') });
  await a.client.messages.create({ model: 'claude-sonnet-4-6', ...ask('two [[sim input=2000 output=300]]') });
  await a.client.messages.create({ model: 'claude-haiku-4-5', ...ask('three [[sim input=1000 output=100]]') });
  // haiku-4-5: 10 × 24 + 1 × 120 = 360 µc
  await b.client.messages.create({ model: 'claude-haiku-4-5', ...ask('four [[sim input=10 output=1]]') });
  const balanceA = await settledBalance(stack, a.accountId);
  const balanceB = await settledBalance(stack, b.accountId);
  assert.equal(balanceA, 10_000_000n - 1_296_000n);
  assert.equal(balanceB, 10_000_000n - 360n);
  if (new Date().toISOString().slice(0, 7) !== month) return; // the month turned during the test: nothing to compare

  const json = await exportOf(month, 'json');
  assert.equal(json.status, 200);
  assert.equal(json.headers.get('content-type'), 'application/x-ndjson; charset=utf-8');
  assert.equal(json.headers.get('content-disposition'), `attachment; filename="tollgate-billing-${month}.jsonl"`);
  const lines = json.body.toString('utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);
  const ofAccount = (id: string) => lines.filter((l) => l.account_id === id);
  const usage = (id: string) => ofAccount(id).filter((l) => l.section === 'usage' && l.amount_micros !== '0')
    .map((l) => [l.model, l.dimension, l.quantity, l.amount_micros]).sort();
  assert.deepEqual(usage(a.accountId), [
    ['claude-haiku-4-5-20251001', 'input', '1000', '24000'],
    ['claude-haiku-4-5-20251001', 'output', '100', '12000'],
    ['claude-sonnet-4-6', 'input', '4000', '720000'],
    ['claude-sonnet-4-6', 'output', '600', '540000'],
  ]);
  assert.deepEqual(usage(b.accountId), [
    ['claude-haiku-4-5-20251001', 'input', '10', '240'],
    ['claude-haiku-4-5-20251001', 'output', '1', '120'],
  ]);
  // every line of an account, rounding included, sums to what its ledger was debited
  const sum = (id: string) => ofAccount(id).reduce((s, l) => s + BigInt(l.amount_micros), 0n);
  assert.equal(sum(a.accountId), 1_296_000n);
  assert.equal(sum(b.accountId), 360n);
  for (const l of lines) assert.equal(l.month, month);

  const csv = await exportOf(month, 'csv');
  const parquet = await exportOf(month, 'parquet');
  assert.equal(csv.headers.get('content-disposition'), `attachment; filename="tollgate-billing-${month}.csv"`);
  // the CSV carries the same lines: exactly the bytes the renderer makes of the JSON Lines' records
  assert.ok(csv.body.equals(renderExport(lines, 'csv', month).body));
  const rows = await parquetReadObjects({ file: parquet.body.buffer.slice(parquet.body.byteOffset, parquet.body.byteOffset + parquet.body.byteLength) as ArrayBuffer });
  assert.deepEqual(rows.map((r) => ({ ...r, quantity: String(r.quantity), amount_micros: String(r.amount_micros) })), lines);

  const first = { json: sha(json.body), csv: sha(csv.body), parquet: sha(parquet.body) };
  const again = async () => ({ json: sha((await exportOf(month, 'json')).body), csv: sha((await exportOf(month, 'csv')).body), parquet: sha((await exportOf(month, 'parquet')).body) });
  assert.deepEqual(await again(), first);
  await stack.restart();
  assert.deepEqual(await again(), first);

  // closed: the month's export never changes again; usage dated in it that arrives later is
  // exported with the next month as late_usage (haiku 10 × 24 + 1 × 120 = 360 µc again)
  assert.equal((await admin(stack.url, 'POST', `/admin/v1/billing/months/${month}/close`)).status, 201);
  const closed = await again();
  const bAgain = new Anthropic({ apiKey: b.secret, baseURL: stack.url, maxRetries: 0, logLevel: 'error' }); // the restart moved the port
  await bAgain.messages.create({ model: 'claude-haiku-4-5', ...ask('five [[sim input=10 output=1]]') });
  assert.equal(await settledBalance(stack, b.accountId), 10_000_000n - 720n);
  if (new Date().toISOString().slice(0, 7) !== month) return;
  assert.deepEqual(await again(), closed);
  const next = nextMonth(month);
  const late = (await exportOf(next, 'json')).body.toString('utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line)
    .filter((l) => l.account_id === b.accountId);
  assert.deepEqual(late.filter((l) => l.amount_micros !== '0').map((l) => [l.month, l.section, l.source_month, l.model, l.dimension, l.quantity, l.amount_micros]).sort(), [
    [next, 'late_usage', month, 'claude-haiku-4-5-20251001', 'input', '10', '240'],
    [next, 'late_usage', month, 'claude-haiku-4-5-20251001', 'output', '1', '120'],
  ]);

  // a refused month is named; the finance token is not set here, so only the admin token reads
  const bad = await exportOf('2026-13', 'csv');
  assert.equal(bad.status, 400);
  assert.match((JSON.parse(bad.body.toString()) as { error: { message: string } }).error.message, /^month: /);
  assert.equal((await admin(stack.url, 'GET', `/admin/v1/billing/export?month=${month}&format=xml`)).status, 400);
});
