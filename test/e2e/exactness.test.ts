// Outcome 5 (issue 9): billing is exact to the micro-credit. Mixed traffic through the official
// SDK against the simulator (several models, a stream, a cache read that leaves a fraction, a
// refund, an adjustment, top-ups), a restart of the embedded process on the same data dir, a
// month close, then a late usage event dated in the closed month published through the log.
// For every month: Σ invoice usage = Σ usage event costs = the ledger's debits; statements close
// (closing = opening + top-ups + grants − usage + refunds + adjustments = the balance); the
// closed invoice is byte-identical after the late event, whose cost shows in the next open month.
// Prices (cny, µc per token): sonnet-4-5 72 / 360, sonnet-4-6 180 / 900, opus-4-6 300 / 1,500,
// haiku-4-5 24 / 120, cache read 2.4.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import type { UsageEventV2 } from '@tollgate/events';
import { ADMIN_TOKEN, admin, customer, settledBalance, startStack, type Stack } from '../support/tollgate.ts';

let stack: Stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack.close();
});

const ask = (text: string) => ({ max_tokens: 1000, messages: [{ role: 'user' as const, content: text }] });
const monthOf = (ms: number) => new Date(ms).toISOString().slice(0, 7);
const next = (m: string) => monthOf(Date.UTC(Number(m.slice(0, 4)), Number(m.slice(5, 7)), 1));

async function doc(kind: 'invoices' | 'statements', account: string, month: string, format = 'json'): Promise<string> {
  const res = await fetch(`${stack.url}/admin/v1/accounts/${account}/${kind}/${month}?format=${format}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer()).toString('latin1');
}
const usageOf = (invoice: any): bigint => invoice.lines
  .filter((l: any) => ['usage', 'late_usage', 'unitemized', 'rounding'].includes(l.section))
  .reduce((t: bigint, l: any) => t + BigInt(l.amount_micros), 0n);
const micros = (credits: string): bigint => {
  const [w, f = ''] = credits.replace('-', '').split('.');
  return (credits.startsWith('-') ? -1n : 1n) * (BigInt(w!) * 1_000_000n + BigInt(f.padEnd(6, '0')));
};

test('late event after a month close, across a restart: invoices, statements and ledger agree to the micro-credit; the closed invoice never changes', async () => {
  const month = monthOf(Date.now());
  const a = await customer(stack.url, 10, 'exact-a');
  const b = await customer(stack.url, 10, 'exact-b');
  const credit = async (account: string, credits: string, reference: string, kind: string) =>
    assert.equal((await admin(stack.url, 'POST', `/admin/v1/accounts/${account}/credits`, { credits, reference, kind })).status, 201);
  await credit(a.accountId, '5', 'paid-a', 'top_up');
  await credit(b.accountId, '2', 'paid-b', 'top_up');

  await a.client.messages.create({ model: 'claude-sonnet-4-5', ...ask('1 [[sim input=2000 output=300]]') }); // 144,000 + 108,000 = 252,000
  await a.client.messages.create({ model: 'claude-haiku-4-5', ...ask('2 [[sim input=1000 output=100 cache_read=3]]') }); // 24,000 + 12,000 + 7.2 → ⌈36,007.2⌉ = 36,008
  await a.client.messages.create({ model: 'claude-sonnet-4-6', ...ask('3 [[sim input=100 output=10]]') }); // 18,000 + 9,000 = 27,000
  const stream = a.client.messages.stream({ model: 'claude-haiku-4-5', ...ask('4 [[sim input=10 output=1]]') }); // 240 + 120 = 360
  await stream.finalMessage();
  await b.client.messages.create({ model: 'claude-opus-4-6', ...ask('5 [[sim input=100 output=20]]') }); // 30,000 + 30,000 = 60,000
  await credit(a.accountId, '0.1', 'refund-1', 'refund'); // +100,000
  await credit(a.accountId, '-0.05', 'adjust-1', 'adjustment'); // −50,000
  await settledBalance(stack, a.accountId);

  await stack.restart(); // the same data dir: everything above is read back from it
  // the restarted process listens on a new port: a new SDK client with the same key
  const a2 = new Anthropic({ apiKey: a.secret, baseURL: stack.url, maxRetries: 0, logLevel: 'error' });
  const r6 = await a2.messages.create({ model: 'claude-haiku-4-5', ...ask('6 [[sim input=1000 output=100]]') }).withResponse(); // 36,000
  const balanceA = await settledBalance(stack, a.accountId);
  const balanceB = await settledBalance(stack, b.accountId);
  // a: usage 252,000 + 36,008 + 27,000 + 360 + 36,000 = 351,368; 10 + 5 credits − 351,368 + 100,000 − 50,000
  assert.equal(balanceA, 15_000_000n - 351_368n + 100_000n - 50_000n);
  assert.equal(balanceB, 12_000_000n - 60_000n);
  if (monthOf(Date.now()) !== month) return; // the month turned during the test: nothing to compare

  const w = stack.tollgate.warehouse;
  const costs = async (account: string) => (await w.usageTotals({ accountId: account })).costMicros;
  // the ledger's debits: what went in minus what is left
  const debits = async (account: string, credited: bigint) => credited - (await settledBalance(stack, account));
  assert.equal(await costs(a.accountId), 351_368n);
  assert.equal(await debits(a.accountId, 15_050_000n), 351_368n);

  const invA = JSON.parse(await doc('invoices', a.accountId, month));
  assert.equal(usageOf(invA), 351_368n);
  // the haiku cache read: 3 × 2.4 = 7.2 → line 7 µc; the request was charged ⌈36,007.2⌉: rounding 1 µc
  assert.deepEqual(invA.lines.filter((l: any) => l.section !== 'usage').map((l: any) => [l.section, l.amount_micros]),
    [['rounding', '1'], ['refund', '-100000'], ['adjustment', '50000']]);
  assert.equal(invA.total.micro_credits, (351_368n - 100_000n + 50_000n).toString());
  const stA = JSON.parse(await doc('statements', a.accountId, month));
  assert.deepEqual([stA.opening_balance, stA.top_ups, stA.grants, stA.usage, stA.refunds, stA.adjustments, stA.closing_balance],
    ['0.000000', '5.000000', '10.000000', '0.351368', '0.100000', '-0.050000', '14.698632']);
  const invB = JSON.parse(await doc('invoices', b.accountId, month));
  assert.equal(usageOf(invB), 60_000n);
  assert.equal(usageOf(invB), await costs(b.accountId));

  // close the month
  const closed = await admin<{ closed_now: boolean; months_closed: string[] }>(stack.url, 'POST', `/admin/v1/billing/months/${month}/close`);
  assert.equal(closed.status, 201);
  assert.deepEqual(closed.json.months_closed, [month]);
  const frozenJson = await doc('invoices', a.accountId, month);
  const frozenCsv = await doc('invoices', a.accountId, month, 'csv');
  const frozenStatement = await doc('statements', a.accountId, month);

  // a late event dated in the closed month, through the log (debits the ledger like any usage): request 6 again under a new id
  const stored = (await w.getUsageEvent(r6.response.headers.get('request-id')!)) as UsageEventV2;
  const late: UsageEventV2 = { ...stored, event_id: `${stored.event_id}-late`, ts: Date.now() };
  await stack.tollgate.log.publish('usage', [{ event: late }]);
  await stack.tollgate.log.publish('usage', [{ event: late }]); // redelivered
  assert.equal(await settledBalance(stack, a.accountId), balanceA - 36_000n);

  assert.equal(await doc('invoices', a.accountId, month), frozenJson);
  assert.equal(await doc('invoices', a.accountId, month, 'csv'), frozenCsv);
  assert.equal(await doc('statements', a.accountId, month), frozenStatement);
  const open = next(month);
  const invNext = JSON.parse(await doc('invoices', a.accountId, open));
  assert.deepEqual(invNext.lines.map((l: any) => [l.section, l.source_month, l.model, l.dimension, l.quantity, l.amount_micros]), [
    ['late_usage', month, 'claude-haiku-4-5-20251001', 'input', '1000', '24000'],
    ['late_usage', month, 'claude-haiku-4-5-20251001', 'output', '100', '12000'],
    ['rounding', month, '', '', '1', '0'], // the one late request, charged exactly its lines
  ]);
  const stNext = JSON.parse(await doc('statements', a.accountId, open));
  // opening = the closed month's closing; 14,698,632 − 36,000 = 14,662,632 = the balance
  assert.deepEqual([stNext.opening_balance, stNext.usage, stNext.closing_balance], ['14.698632', '0.036000', '14.662632']);
  assert.equal(micros(stNext.closing_balance), await settledBalance(stack, a.accountId));

  // for every month together: Σ invoice usage = Σ usage event costs = the ledger's debits
  const allUsage = usageOf(JSON.parse(frozenJson)) + usageOf(invNext);
  assert.equal(allUsage, 387_368n); // 351,368 + 36,000
  assert.equal(allUsage, await costs(a.accountId));
  assert.equal(allUsage, await debits(a.accountId, 15_050_000n));
  // b: untouched by a's late event, its closed statement closes on its balance
  const stB = JSON.parse(await doc('statements', b.accountId, month));
  assert.equal(micros(stB.closing_balance), balanceB);
  assert.equal(micros(stB.opening_balance) + micros(stB.top_ups) + micros(stB.grants) - micros(stB.usage) + micros(stB.refunds) + micros(stB.adjustments), balanceB);
});
