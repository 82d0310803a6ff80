// Prometheus metrics of an embedded Tollgate: one request with forced usage, then exact
// counter values from GET /metrics; no account or key id in any label.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { customer, startStack, type Stack } from '../support/tollgate.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

const user = (text: string) => [{ role: 'user' as const, content: text }];

async function scrape(): Promise<string> {
  const res = await fetch(`${stack.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return res.text();
}

/** The value of the one sample of `name` whose labels include every pair in `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const hits = text.split('\n').filter((line) => {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) return false;
    return wanted.every((w) => line.includes(w));
  });
  assert.ok(hits.length <= 1, `one sample of ${name} ${wanted.join(',')}, got ${hits.length}`);
  return hits[0] === undefined ? undefined : Number(hits[0].slice(hits[0].lastIndexOf(' ') + 1));
}

const MODEL = 'claude-sonnet-4-5-20250929';

test('one request: exact tokens, cost, request count; holds refused and upstream errors counted', async () => {
  const c = await customer(stack.url, 10);
  // max_tokens 512: the hold must cover the simulated usage, far above what this short body could
  // cost; a cost above the hold is capped (cost_over_bound, README "Usage anomalies")
  const msg = await c.client.messages.create({
    model: 'claude-sonnet-4-5', max_tokens: 512,
    messages: user('hello [[sim input=1000 output=10 cache_read=2000 cache_write_5m=300 cache_write_1h=100]]'),
  });
  assert.equal(msg.usage.input_tokens, 1000);
  await stack.tollgate.drain();

  let text = await scrape();
  assert.equal(sample(text, 'tollgate_tokens_total', { model: MODEL, class: 'input' }), 1000);
  assert.equal(sample(text, 'tollgate_tokens_total', { model: MODEL, class: 'output' }), 10);
  assert.equal(sample(text, 'tollgate_tokens_total', { model: MODEL, class: 'cache_read' }), 2000);
  assert.equal(sample(text, 'tollgate_tokens_total', { model: MODEL, class: 'cache_write_5m' }), 300);
  assert.equal(sample(text, 'tollgate_tokens_total', { model: MODEL, class: 'cache_write_1h' }), 100);
  // 1000×72 + 10×360 + 2000×7.2 + 300×90 + 100×144 (CNY catalog, see embedded.test.ts)
  assert.equal(sample(text, 'tollgate_cost_micro_credits_total', { model: MODEL }), 131_400);
  assert.equal(sample(text, 'tollgate_requests_total', { route: '/v1/messages', status: '200', model: MODEL, stream: 'false' }), 1);
  assert.equal(sample(text, 'tollgate_request_duration_seconds_count', { route: '/v1/messages', model: MODEL, stream: 'false' }), 1);
  assert.equal(sample(text, 'tollgate_time_to_first_byte_seconds_count', { model: MODEL, stream: 'false' }), 1);
  assert.equal(sample(text, 'tollgate_holds_refused_total', { reason: 'insufficient_credits' }), 0);
  // The ledger applied the usage event and the credit grant; the warehouse inserted them.
  assert.equal(sample(text, 'tollgate_events_applied_total', { group: 'ledger', topic: 'usage' }), 1);
  assert.equal(sample(text, 'tollgate_events_applied_total', { group: 'ledger', topic: 'ledger' }), 1);
  assert.equal(sample(text, 'tollgate_events_applied_total', { group: 'warehouse', topic: 'usage' }), 1);
  assert.ok((sample(text, 'tollgate_warehouse_insert_seconds_count') ?? 0) >= 1);
  assert.ok((sample(text, 'tollgate_warehouse_batch_events_sum') ?? 0) >= 3, 'account, key, credit and usage events were inserted');
  assert.ok(sample(text, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics are there');

  // A refused hold (no credit) and an upstream error (the simulator answers 529).
  const broke = await customer(stack.url, 0, 'broke');
  await assert.rejects(broke.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: user('x') }),
    (err: { status?: number }) => err.status === 402);
  await assert.rejects(c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: user('[[sim status=529]]') }),
    (err: { status?: number }) => err.status === 529);
  await stack.tollgate.drain();
  text = await scrape();
  assert.equal(sample(text, 'tollgate_holds_refused_total', { reason: 'insufficient_credits' }), 1);
  assert.equal(sample(text, 'tollgate_upstream_errors_total', { status: '529' }), 1);
  assert.equal(sample(text, 'tollgate_requests_total', { route: '/v1/messages', status: '402', model: MODEL, stream: 'false' }), 1);
  assert.equal(sample(text, 'tollgate_requests_total', { route: '/v1/messages', status: '529', model: MODEL, stream: 'false' }), 1);
  // Unchanged by the two failures: nothing was charged.
  assert.equal(sample(text, 'tollgate_cost_micro_credits_total', { model: MODEL }), 131_400);

  for (const id of [c.accountId, c.keyId, broke.accountId, broke.keyId]) assert.ok(!text.includes(id), `${id} is not in /metrics`);
});

test('a streamed request is labelled stream="true"', async () => {
  const c = await customer(stack.url, 10);
  const s = c.client.messages.stream({ model: 'claude-sonnet-4-5', max_tokens: 32, messages: user('[[sim input=7 output=3]]') });
  await s.finalMessage();
  await stack.tollgate.drain();
  const text = await scrape();
  assert.equal(sample(text, 'tollgate_requests_total', { route: '/v1/messages', status: '200', model: MODEL, stream: 'true' }), 1);
  assert.equal(sample(text, 'tollgate_time_to_first_byte_seconds_count', { model: MODEL, stream: 'true' }), 1);
});
