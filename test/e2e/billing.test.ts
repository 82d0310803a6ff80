// Billing routes end to end on the embedded stack (chDB), traffic through the official SDK to the
// simulator: invoice and statement documents (JSON, CSV, PDF downloads), who may read them, the
// 400s and 404s, the customer's credit history (two accounts: never the other's), and two
// concurrent month closes writing one snapshot. Prices (cny, µc per token): haiku-4-5 input 24,
// output 120; sonnet-4-5 input 72, output 360.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_TOKEN, admin, customer, settledBalance, startStack, type Stack } from '../support/tollgate.ts';

const FINANCE = 'finance-token-0123456789abcdef';
let stack: Stack;
before(async () => {
  stack = await startStack({ FINANCE_TOKEN: FINANCE });
});
after(async () => {
  await stack.close();
});

const month = () => new Date().toISOString().slice(0, 7);
const ask = (text: string) => ({ max_tokens: 1000, messages: [{ role: 'user' as const, content: text }] });

async function get(path: string, token = ADMIN_TOKEN, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}
const json = (b: Buffer) => JSON.parse(b.toString('utf8')) as Record<string, any>;

test('invoice and statement documents: JSON by default, CSV and PDF downloads; finance token reads them; bad month 400 naming it, unknown account 404', async () => {
  const c = await customer(stack.url, 10, 'docs');
  // haiku-4-5: 1,000 × 24 + 100 × 120 = 36,000 µc
  await c.client.messages.create({ model: 'claude-haiku-4-5', ...ask('a [[sim input=1000 output=100]]') });
  assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 36_000n);
  const m = month();

  const inv = await get(`/admin/v1/accounts/${c.accountId}/invoices/${m}`, FINANCE);
  assert.equal(inv.status, 200);
  assert.equal(inv.headers.get('content-type'), 'application/json; charset=utf-8');
  const invoice = json(inv.body);
  assert.deepEqual(invoice.lines.map((l: any) => [l.section, l.model, l.dimension, l.quantity, l.unit_price, l.amount, l.amount_micros]), [
    ['usage', 'claude-haiku-4-5-20251001', 'input', '1000', '24', '0.024000', '24000'],
    ['usage', 'claude-haiku-4-5-20251001', 'output', '100', '120', '0.012000', '12000'],
    ['rounding', '', '', '1', '', '0.000000', '0'], // one itemised request, charged exactly its lines
  ]);
  // ¥ = 0.036 credits ÷ 10 credits per yuan
  assert.deepEqual(invoice.total, {
    credits: '0.036000', micro_credits: '36000', currency: 'CNY', amount: '0.0036',
    credit_values: [{ credit_value: '1 CNY = 10 credits', currency: 'CNY', micro_credits: '36000', amount: '0.0036' }],
  });
  assert.equal(invoice.status, 'open');

  const st = json((await get(`/admin/v1/accounts/${c.accountId}/statements/${m}`)).body);
  assert.deepEqual([st.opening_balance, st.top_ups, st.grants, st.usage, st.refunds, st.adjustments, st.closing_balance],
    ['0.000000', '0.000000', '10.000000', '0.036000', '0.000000', '0.000000', '9.964000']);

  const csv = await get(`/admin/v1/accounts/${c.accountId}/invoices/${m}?format=csv`, FINANCE);
  assert.equal(csv.status, 200);
  assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/);
  assert.equal(csv.headers.get('content-disposition'), `attachment; filename="invoice-${c.accountId}-${m}.csv"`);
  assert.match(csv.body.toString('utf8'), /claude-haiku-4-5-20251001,input,1000,24,0\.024000,24000/);
  const pdf = await get(`/admin/v1/accounts/${c.accountId}/statements/${m}?format=pdf`);
  assert.equal(pdf.status, 200);
  assert.equal(pdf.headers.get('content-type'), 'application/pdf');
  assert.equal(pdf.headers.get('content-disposition'), `attachment; filename="statement-${c.accountId}-${m}.pdf"`);
  assert.equal(pdf.body.subarray(0, 5).toString('latin1'), '%PDF-');

  for (const bad of ['2026-13', '2026-1', '2099-01', 'nov']) {
    const r = await get(`/admin/v1/accounts/${c.accountId}/invoices/${bad}`);
    assert.equal(r.status, 400, bad);
    assert.match(json(r.body).error.message, new RegExp(`^month: "?${bad}`), bad);
  }
  const fmt = await get(`/admin/v1/accounts/${c.accountId}/invoices/${m}?format=xml`);
  assert.equal(fmt.status, 400);
  assert.match(json(fmt.body).error.message, /^format: /);
  // an empty value is a bad value, never the default (was served as JSON with 200)
  for (const kind of ['invoices', 'statements']) {
    const empty = await get(`/admin/v1/accounts/${c.accountId}/${kind}/${m}?format=`);
    assert.equal(empty.status, 400, kind);
    assert.equal(json(empty.body).error.message, 'format: is empty; give a value or leave the parameter out');
  }
  const extra = await get(`/admin/v1/accounts/${c.accountId}/statements/${m}?account_id=other`);
  assert.equal(extra.status, 400);
  assert.equal(json(extra.body).error.message, 'account_id: unknown query parameter; this route takes format');
  const missing = await get(`/admin/v1/accounts/acct_nope/invoices/${m}`);
  assert.equal(missing.status, 404);
  assert.equal(json(missing.body).error.code, 'not_found');
  // no token, a customer key, a wrong token: refused
  assert.equal((await get(`/admin/v1/accounts/${c.accountId}/invoices/${m}`, c.secret)).status, 401);
  // the finance token reads billing but does not administer
  assert.equal((await fetch(`${stack.url}/admin/v1/accounts`, { method: 'POST', headers: { authorization: `Bearer ${FINANCE}`, 'content-type': 'application/json' }, body: '{"name":"x"}' })).status, 403);
});

test('credit history: the caller\'s own ledger entries and daily usage, newest first, running balance exact, paged; another account\'s never', async () => {
  const a = await customer(stack.url, 10, 'hist-a');
  const b = await customer(stack.url, 20, 'hist-b');
  assert.equal((await admin(stack.url, 'POST', `/admin/v1/accounts/${a.accountId}/credits`, { credits: '5', reference: 'paid-1', kind: 'top_up' })).status, 201);
  // sonnet-4-5: 2,000 × 72 + 300 × 360 = 252,000 µc; b: haiku 10 × 24 + 1 × 120 = 360 µc
  await a.client.messages.create({ model: 'claude-sonnet-4-5', ...ask('x [[sim input=2000 output=300]]') });
  await b.client.messages.create({ model: 'claude-haiku-4-5', ...ask('y [[sim input=10 output=1]]') });
  const balance = await settledBalance(stack, a.accountId);
  assert.equal(balance, 15_000_000n - 252_000n);
  await settledBalance(stack, b.accountId);

  const hist = async (client: typeof a, query = '') => {
    const res = await fetch(`${stack.url}/v1/credits/history${query}`, { headers: { 'x-api-key': client.secret } });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const h = await hist(a);
  assert.equal(h.status, 200);
  const today = new Date().toISOString().slice(0, 10);
  assert.deepEqual(h.body.data.map((e: any) => [e.type, e.amount_micro_credits, e.balance_after_micro_credits]), [
    ['usage', '-252000', '14748000'],
    ['top_up', '5000000', '15000000'],
    ['grant', '10000000', '10000000'],
  ]);
  assert.equal(h.body.data[0].date, today);
  assert.equal(h.body.data[0].balance_after, '14.748000');
  assert.equal(h.body.data[1].reference, 'paid-1');
  assert.equal(BigInt(h.body.data[0].balance_after_micro_credits), balance);
  assert.equal(h.body.has_more, false);
  // b sees only b
  const hb = await hist(b);
  assert.deepEqual(hb.body.data.map((e: any) => [e.type, e.amount_micro_credits, e.balance_after_micro_credits]), [
    ['usage', '-360', '19999640'], ['grant', '20000000', '20000000'],
  ]);
  assert.ok(hb.body.data.every((e: any) => !JSON.stringify(e).includes(a.accountId)));
  // no parameter reaches another account: account_id is refused, not obeyed
  const other = await hist(b, `?account_id=${a.accountId}`);
  assert.equal(other.status, 400);
  assert.equal(other.body.error.message, 'account_id: unknown query parameter; this route takes from, to, limit, cursor');

  // paging: one at a time, newest first, the cursor continues
  const p1 = await hist(a, '?limit=2');
  assert.deepEqual(p1.body.data.map((e: any) => e.type), ['usage', 'top_up']);
  assert.equal(p1.body.has_more, true);
  const p2 = await hist(a, `?limit=2&cursor=${p1.body.next_cursor}`);
  assert.deepEqual(p2.body.data.map((e: any) => e.type), ['grant']);
  assert.equal(p2.body.has_more, false);
  assert.equal(p2.body.next_cursor, null);
  // a window that ends before today's usage is booked (its last millisecond)
  const w = await hist(a, `?to=${today}T23:59:59Z`);
  assert.deepEqual(w.body.data.map((e: any) => e.type), ['top_up', 'grant']);
  for (const [q, name] of [['?from=yesterday', 'from'], ['?limit=0', 'limit'], ['?cursor=zz!', 'cursor']] as const) {
    const r = await hist(a, q);
    assert.equal(r.status, 400, q);
    assert.match(r.body.error.message, new RegExp(`^${name}: `), q);
  }
});

test('two concurrent closes of one month: one snapshot, one 201 and one 200 saying when it was closed', async () => {
  const m = month();
  const close = () => fetch(`${stack.url}/admin/v1/billing/months/${m}/close`, { method: 'POST', headers: { authorization: `Bearer ${FINANCE}` } })
    .then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, any> }));
  const [x, y] = await Promise.all([close(), close()]);
  assert.deepEqual([x.status, y.status].sort(), [200, 201]);
  const first = x.status === 201 ? x : y;
  const second = x.status === 201 ? y : x;
  assert.equal(first.body.closed_now, true);
  assert.deepEqual(first.body.months_closed, [m]);
  assert.equal(second.body.closed_now, false);
  assert.equal(second.body.closed_at, first.body.closed_at);
  const list = json((await get('/admin/v1/billing/months', FINANCE)).body);
  assert.deepEqual(list.data, [{ month: m, closed_at: first.body.closed_at }]);
  const t = stack.tollgate.warehouse.tables;
  const rows = await stack.tollgate.warehouse.select(`SELECT count() AS n, uniqExact(close_id) AS ids FROM ${t.billingCloses}`);
  assert.deepEqual(rows, [{ n: '1', ids: '1' }]);
  const bad = await fetch(`${stack.url}/admin/v1/billing/months/2026-00/close`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as any).error.message, /^month: "2026-00"/);
});
