// Issue 9, usage analytics end to end: traffic of two accounts through the official SDK against
// the simulator, then GET /admin/v1/usage (admin and finance token, JSON and CSV, rollup and
// raw windows), the event pages, and each customer's GET /v1/usage, which never shows another
// account's data whatever the parameters. Costs hand-computed under the cny catalog (µc per
// token: sonnet-4-5 input 72, output 360; haiku-4-5 input 24, output 120, cache read 2.4;
// sonnet-4-6 input 180, output 900).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type Anthropic from '@anthropic-ai/sdk';
import { ADMIN_TOKEN, admin, customer, settledBalance, startStack, type Stack } from '../support/tollgate.ts';

const FINANCE_TOKEN = 'test-finance-token-0123456789';
// Padded so the hold's input bound (estimated from the prompt) covers the usage the directive reports.
const user = (text: string) => [{ role: 'user' as const, content: `${text} ${'lorem '.repeat(5000)}` }];
const DAY = 86_400_000;

async function get(url: string, path: string, headers: Record<string, string>) {
  const res = await fetch(`${url}${path}`, { headers });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), text, json: () => JSON.parse(text) as Record<string, any> };
}

describe('usage analytics over real traffic of two accounts', () => {
  let stack: Stack;
  let a: Awaited<ReturnType<typeof customer>>;
  let a2: { keyId: string; client: Anthropic };
  let b: Awaited<ReturnType<typeof customer>>;
  let window: string;
  const asAdmin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const asFinance = { authorization: `Bearer ${FINANCE_TOKEN}` };

  before(async () => {
    stack = await startStack({ FINANCE_TOKEN });
    a = await customer(stack.url, 100, 'alpha');
    b = await customer(stack.url, 100, 'beta');
    const key2 = await admin<{ id: string; key: string }>(stack.url, 'POST', `/admin/v1/accounts/${a.accountId}/keys`, { name: 'second' });
    const { default: Sdk } = await import('@anthropic-ai/sdk');
    a2 = { keyId: key2.json.id, client: new Sdk({ apiKey: key2.json.key, baseURL: stack.url, maxRetries: 0, logLevel: 'off' }) };
    // A, key 1, JSON on sonnet-4-5: 1,000 × 72 + 100 × 360 = 108,000 µc.
    await a.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 200, messages: user('[[sim input=1000 output=100]]') });
    // A, key 1, streamed haiku-4-5: 2,000 × 24 + 50 × 120 + 1,000 × 2.4 = 56,400 µc.
    const stream = await a.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, stream: true, messages: user('[[sim input=2000 output=50 cache_read=1000 ttft_ms=20]]') });
    for await (const _ of stream) { /* drain */ }
    // A, key 2: the upstream answers 529: charged 0 µc.
    await assert.rejects(a2.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 10, messages: user('[[sim status=529]]') }));
    // B, JSON on sonnet-4-6: 500 × 180 + 20 × 900 = 108,000 µc.
    await b.client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 100, messages: user('[[sim input=500 output=20]]') });
    await settledBalance(stack, a.accountId);
    await settledBalance(stack, b.accountId);
    // Whole UTC days around now: the day rollup serves it.
    const today = Math.floor(Date.now() / DAY) * DAY;
    window = `from=${new Date(today - DAY).toISOString()}&to=${new Date(today + 2 * DAY).toISOString()}`;
  });
  after(async () => stack?.close());

  test('operator report: exact totals, top spenders, errors by code, revenue; the same sums from a rollup and from raw events', async () => {
    const r = await get(stack.url, `/admin/v1/usage?${window}&granularity=day&limit=5`, asAdmin);
    assert.equal(r.status, 200, r.text);
    const j = r.json();
    assert.equal(j['source'], 'rollup_day');
    const t = j['totals'];
    // 108,000 + 56,400 + 0 + 108,000 = 272,400 µc.
    assert.deepEqual([t.requests, t.errors, t.cost_micros, t.cost_credits], [4, 1, '272400', '0.272400']);
    assert.deepEqual([t.quantities.input, t.quantities.output, t.quantities.cache_read], [3500, 170, 1000]);
    // 1,000 cache reads of 4,500 input-side tokens.
    assert.equal(t.cache_hit_ratio, Math.round((1000 / 4500) * 1e6) / 1e6);
    assert.equal(t.ttft_ms.count >= 1, true);
    // Revenue in CNY: 0.2724 credits ÷ 10 credits per ¥ = ¥0.02724. Upstream in USD, no rate: margin unknown.
    assert.deepEqual(t.revenue, { micro_credits: '272400', credits: '0.272400', currency: 'CNY', amount: '0.027240' });
    assert.equal(t.margin, null);
    assert.match(t.margin_note, /upstream_exchange_rate/);
    // Upstream list cost (µ$): sonnet-4-5 1,000 × 3 + 100 × 15 = 4,500; haiku 2,000 × 1 + 50 × 5 + 1,000 × 0.1 = 2,350; sonnet-4-6 500 × 3 + 20 × 15 = 1,800.
    assert.deepEqual(t.upstream_cost, { USD: { micros: '8650', amount: '0.008650' } });
    assert.deepEqual(j['top_accounts'].map((x: any) => [x.account_id, x.requests, x.cost_micros]), [[a.accountId, 3, '164400'], [b.accountId, 1, '108000']]);
    assert.deepEqual(j['top_keys'].map((x: any) => [x.key_id, x.account_id, x.cost_micros]),
      [[a.keyId, a.accountId, '164400'], [b.keyId, b.accountId, '108000'], [a2.keyId, a.accountId, '0']]);
    assert.deepEqual(j['errors'].by_http_status.map((x: any) => [x.http_status, x.requests, x.rate]), [[200, 3, 0.75], [529, 1, 0.25]]);
    assert.deepEqual(j['errors'].by_status.map((x: any) => [x.status, x.requests]), [['ok', 3], ['upstream_error', 1]]);
    assert.deepEqual(j['by_model'].map((m: any) => [m.model, m.cost_micros]), [
      ['claude-sonnet-4-5-20250929', '108000'], ['claude-sonnet-4-6', '108000'], ['claude-haiku-4-5-20251001', '56400'],
    ]);
    // The same window shifted by a millisecond is off every bucket: whole days, hours and minutes from the rollups, the first ms-rim from raw events, the same sums.
    const today = Math.floor(Date.now() / DAY) * DAY;
    const raw = (await get(stack.url, `/admin/v1/usage?from=${today - DAY + 1}&to=${today + 2 * DAY}&granularity=day&limit=5`, asAdmin)).json();
    assert.equal(raw['source'], 'rollup_day+rollup_hour+rollup_minute+raw');
    assert.deepEqual(raw['totals'], t);
    assert.deepEqual(raw['top_keys'], j['top_keys']);
    // The finance token reads it too; it may not write.
    assert.equal((await get(stack.url, `/admin/v1/usage?${window}&granularity=day`, asFinance)).status, 200);
    const write = await fetch(`${stack.url}/admin/v1/accounts`, { method: 'POST', headers: { ...asFinance, 'content-type': 'application/json' }, body: '{"name":"x"}' });
    assert.equal(write.status, 403);
  });

  test('operator report by upstream: group_by=upstream and upstream_id read raw events (the rollups are not kept per upstream); the customer route refuses both by name', async () => {
    // Every request here went to the one upstream of UPSTREAM_URL, `default` (the 529 too: it
    // was that upstream's error). 108,000 + 56,400 + 0 + 108,000 = 272,400 µc.
    const by = await get(stack.url, `/admin/v1/usage?${window}&granularity=month&group_by=upstream`, asAdmin);
    assert.equal(by.status, 200, by.text);
    const j = by.json();
    assert.equal(j['source'], 'raw');
    assert.equal(j['group_by'], 'upstream');
    assert.deepEqual(j['data'].map((p: any) => [p.group, p.requests, p.errors, p.cost_micros]), [['default', 4, 1, '272400']]);
    const only = async (id: string) => (await get(stack.url, `/admin/v1/usage?${window}&granularity=day&upstream_id=${id}`, asAdmin)).json();
    const served = await only('default');
    assert.equal(served['source'], 'raw');
    assert.deepEqual([served['totals'].requests, served['totals'].cost_micros], [4, '272400']);
    assert.deepEqual([(await only('up_none'))['totals'].requests, (await only('up_none'))['data']], [0, []]);
    // with another filter, and as CSV (its group column holds the upstream)
    const alpha = (await get(stack.url, `/admin/v1/usage?${window}&granularity=month&group_by=upstream&account_id=${a.accountId}`, asAdmin)).json();
    assert.deepEqual(alpha['data'].map((p: any) => [p.group, p.requests, p.cost_micros]), [['default', 3, '164400']]);
    const csv = await get(stack.url, `/admin/v1/usage?${window}&granularity=month&group_by=upstream&format=csv`, asAdmin);
    assert.equal(csv.text.split('\r\n')[1]!.split(',')[1], 'default');
    // the events behind the figures
    const events = async (id: string) => (await get(stack.url, `/admin/v1/usage/events?upstream_id=${id}`, asAdmin)).json()['data'] as Array<{ upstream_id: string }>;
    assert.deepEqual((await events('default')).map((e) => e.upstream_id), ['default', 'default', 'default', 'default']);
    assert.deepEqual(await events('up_none'), []);
    // a control character in the filter is the operator's 400, as every text filter
    const badId = await get(stack.url, `/admin/v1/usage?upstream_id=%01x`, asAdmin);
    assert.equal(badId.status, 400);
    assert.ok(badId.json()['error'].message.startsWith('upstream_id: '), badId.text);
    // a customer sees neither: upstreams are the operator's business
    const asA = { 'x-api-key': a.secret };
    for (const [q, name] of [['group_by=upstream', 'group_by'], ['upstream_id=default', 'upstream_id']] as const) {
      const r = await get(stack.url, `/v1/usage?${window}&${q}`, asA);
      assert.equal(r.status, 400, q);
      assert.ok(r.json()['error'].message.startsWith(`${name}: `), `${q}: ${r.text}`);
    }
  });

  test('reconcile with rollups=true: the rollups agree with raw events; a bad value is a 400 naming rollups', async () => {
    const r = await get(stack.url, '/ops/v1/reconcile?rollups=true', asAdmin);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual([r.json()['ok'], r.json()['rollups']], [true, {
      ok: true, mismatched_rows: { minute: 0, hour: 0, day: 0 }, recent_rows: { minute: 0, hour: 0, day: 0 }, settle_ms: 600_000,
    }]);
    assert.equal('rollups' in (await get(stack.url, '/ops/v1/reconcile', asAdmin)).json(), false);
    const bad = await get(stack.url, '/ops/v1/reconcile?rollups=yes', asAdmin);
    assert.equal(bad.status, 400);
    assert.ok(bad.json()['error'].message.startsWith('rollups: '));
  });

  test('CSV: header and one row per bucket × group in a fixed column order, RFC 4180 line ends', async () => {
    const r = await get(stack.url, `/admin/v1/usage?${window}&granularity=month&group_by=account&format=csv`, asAdmin);
    assert.equal(r.status, 200);
    assert.equal(r.type, 'text/csv; charset=utf-8');
    const lines = r.text.split('\r\n');
    assert.equal(lines.pop(), '');
    assert.equal(lines[0], 'bucket,group,requests,errors,input,output,cache_read,cache_write_5m,cache_write_1h,web_search_requests,'
      + 'web_fetch_requests,code_execution_seconds,cost_micros,cost_credits,upstream_cost_micros_USD,upstream_cost_unknown_requests,'
      + 'unpriced_requests,latency_avg_ms,latency_p50_ms,latency_p90_ms,latency_p99_ms,ttft_count,ttft_avg_ms,ttft_p50_ms,ttft_p90_ms,'
      + 'ttft_p99_ms,cache_hit_ratio,output_tokens_per_second');
    const month = `${new Date().toISOString().slice(0, 7)}-01T00:00:00.000Z`;
    const rows = lines.slice(1).map((l) => l.split(',').slice(0, 16));
    const expected = [
      [month, a.accountId, '3', '1', '3000', '150', '1000', '0', '0', '0', '0', '0', '164400', '0.164400', '6850', '0'],
      [month, b.accountId, '1', '0', '500', '20', '0', '0', '0', '0', '0', '0', '108000', '0.108000', '1800', '0'],
    ].sort((x, y) => x[1]!.localeCompare(y[1]!));
    assert.deepEqual(rows, expected);
  });

  test('event pages: every event once in (ts, id) order through next_cursor, full records; one by id; 404 unknown', async () => {
    const ids: string[] = [];
    let cursor = '';
    for (let i = 0; i < 10; i++) {
      const r = (await get(stack.url, `/admin/v1/usage/events?account_id=${a.accountId}&limit=1${cursor}`, asFinance)).json();
      ids.push(...r['data'].map((e: any) => e.event_id));
      if (!r['has_more']) { assert.equal(r['next_cursor'], null); break; }
      cursor = `&cursor=${r['next_cursor']}`;
    }
    assert.equal(ids.length, 3);
    const one = (await get(stack.url, `/admin/v1/usage/events/${ids[0]}`, asAdmin)).json();
    assert.deepEqual([one['v'], one['account_id'], one['key_id'], one['cost_micros'], one['quantities'].input, one['status']],
      [2, a.accountId, a.keyId, '108000', 1000, 'ok']);
    const b1 = (await get(stack.url, `/admin/v1/usage/events?account_id=${b.accountId}&model=claude-sonnet-4-6`, asAdmin)).json();
    assert.deepEqual(b1['data'].map((e: any) => [e.account_id, e.catalog_model, e.cost_micros]), [[b.accountId, 'claude-sonnet-4-6', '108000']]);
    assert.equal((await get(stack.url, '/admin/v1/usage/events/req_nope', asAdmin)).status, 404);
  });

  test('customer usage: only the caller\'s account, whatever parameter names another account, its key or its model', async () => {
    const asA = { 'x-api-key': a.secret };
    const asB = { 'x-api-key': b.secret };
    const mine = (await get(stack.url, `/v1/usage?${window}&granularity=day`, asA)).json();
    assert.equal(mine['account_id'], a.accountId);
    assert.deepEqual([mine['totals'].requests, mine['totals'].cost_micros], [3, '164400']);
    assert.equal('upstream_cost' in mine['totals'], false);
    assert.deepEqual(mine['by_model'].map((m: any) => [m.model, m.cost_micros]), [['claude-sonnet-4-5-20250929', '108000'], ['claude-haiku-4-5-20251001', '56400']]);
    // The operator's view of A says the same.
    const op = (await get(stack.url, `/admin/v1/usage?${window}&granularity=day&account_id=${a.accountId}`, asAdmin)).json();
    assert.deepEqual(op['totals'].cost_micros, mine['totals'].cost_micros);
    const theirs = (await get(stack.url, `/v1/usage?${window}&granularity=day`, asB)).json();
    assert.deepEqual([theirs['account_id'], theirs['totals'].requests, theirs['totals'].cost_micros], [b.accountId, 1, '108000']);
    // Every parameter, with B's data present, from A's key: nothing of B's.
    const cases: Array<[string, number, string]> = [
      [`key_id=${b.keyId}`, 0, '0'],
      ['model=claude-sonnet-4-6', 0, '0'],
      ['model=claude-sonnet-4-5', 2, '108000'], // the 200 and the 529
      ['status=ok', 2, '164400'],
      ['status=upstream_error', 1, '0'],
      [`key_id=${a2.keyId}`, 1, '0'],
      ['group_by=key', 3, '164400'],
      ['group_by=model', 3, '164400'],
      ['group_by=status', 3, '164400'],
      ['granularity=hour', 3, '164400'],
      ['granularity=month', 3, '164400'],
    ];
    for (const [q, n, cost] of cases) {
      const r = await get(stack.url, `/v1/usage?${window}&granularity=day&${q}`.replace(/granularity=day&(granularity=)/, '$1'), asA);
      assert.equal(r.status, 200, `${q}: ${r.text}`);
      const j = r.json();
      assert.deepEqual([j['account_id'], j['totals'].requests, j['totals'].cost_micros], [a.accountId, n, cost], q);
      for (const p of j['data']) assert.notEqual(p.group, b.keyId, q);
    }
    const byKey = (await get(stack.url, `/v1/usage?${window}&granularity=month&group_by=key`, asA)).json();
    assert.deepEqual(byKey['data'].map((p: any) => [p.group, p.cost_micros]).sort(), [[a.keyId, '164400'], [a2.keyId, '0']].sort());
    const csv = await get(stack.url, `/v1/usage?${window}&granularity=month&group_by=key&format=csv`, asA);
    assert.equal(csv.type, 'text/csv; charset=utf-8');
    assert.equal(csv.text.includes(b.keyId), false);
    assert.equal(csv.text.split('\r\n')[0]!.includes('upstream'), false);
    // Naming the account, or grouping by it, is refused by name.
    for (const [q, name] of [[`account_id=${b.accountId}`, 'account_id'], ['group_by=account', 'group_by'], ['granularity=week', 'granularity'],
      ['from=2026-02-30', 'from'], ['format=pdf', 'format'], ['status=fine', 'status'], ['limit=0', 'limit']] as const) {
      const r = await get(stack.url, `/v1/usage?${q}`, asA);
      assert.equal(r.status, 400, q);
      assert.ok(r.json()['error'].message.startsWith(`${name}: `), `${q}: ${r.text}`);
    }
  });
});
