// Issue 10 end to end (embedded stack): upstreams and a group made through the control API, a
// fault queued on one simulator, and the failover seen where finance sees it — the settled
// balance and the usage event in the warehouse with `upstream_id` and `attempts`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSimulator } from '@tollgate/simulator';
import { admin, customer, settledBalance, startStack, UPSTREAM_KEY, type Stack } from '../support/tollgate.ts';

const MODEL = 'claude-sonnet-4-6';

let stack: Stack;
const sims: Array<{ close(): Promise<void> }> = [];
let urlA = '';
let urlB = '';

before(async () => {
  // a 1 s timeout to the headers, so a slow upstream is failed over within the test
  stack = await startStack({ UPSTREAM_TIMEOUT_MS: '1000' });
  for (const set of [(u: string) => { urlA = u; }, (u: string) => { urlB = u; }]) {
    const sim = buildSimulator({ apiKey: UPSTREAM_KEY });
    set(await sim.listen({ port: 0, host: '127.0.0.1' }));
    sims.push(sim);
  }
});
after(async () => {
  await stack.close();
  for (const s of sims) await s.close();
});

async function fault(url: string, f: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${url}/_sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(f) });
  assert.equal(res.status, 200);
}

async function calls(url: string): Promise<number> {
  const list = (await (await fetch(`${url}/_sim/requests`)).json()) as unknown[];
  await fetch(`${url}/_sim/requests`, { method: 'DELETE' });
  return list.length;
}

/** A group of two fresh upstreams (A preferred by priority) and a customer assigned to it. */
async function pooled(name: string) {
  const a = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
    name: `${name} A`, platform: 'anthropic', base_url: urlA, api_key: UPSTREAM_KEY, weight: 1, priority: 10, max_concurrency: null,
  });
  const b = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
    name: `${name} B`, platform: 'anthropic', base_url: urlB, api_key: UPSTREAM_KEY, weight: 1, priority: 0, max_concurrency: null,
  });
  assert.deepEqual([a.status, b.status], [201, 201]);
  const g = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name, platform: 'anthropic', upstream_ids: [a.json.id, b.json.id] });
  assert.equal(g.status, 201);
  const c = await customer(stack.url, 10, name);
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: g.json.id })).status, 200);
  // the gateway's view of the pool is at most 1 s old
  await new Promise((r) => setTimeout(r, 1100));
  return { a: a.json.id, b: b.json.id, c };
}

async function stored(requestId: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 200; i++) {
    await stack.tollgate.drain();
    const r = await admin(stack.url, 'GET', `/admin/v1/usage/events/${requestId}`);
    if (r.status === 200) return r.json;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`usage event ${requestId} never reached the warehouse`);
}

test('upstream 529 before the first byte: the group\'s next upstream serves, the account is charged once (exact µc), the warehouse event names the serving upstream with attempts 2', async () => {
  const { a, b, c } = await pooled('failover-529');
  await calls(urlA); await calls(urlB);
  await fault(urlA, { status: 529 });
  const { response } = await c.client.messages.create({
    model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hello' }],
  }, { headers: { 'x-sim-input': '100', 'x-sim-output': '20' } }).withResponse();
  const id = response.headers.get('request-id')!;
  const e = await stored(id);
  // sonnet-4-6: 100 × 180 + 20 × 900 = 18,000 + 18,000 = 36,000 µc; 10 credits = 10,000,000 µc
  assert.deepEqual([e['cost_micros'], e['status'], e['upstream_id'], e['attempts']], ['36000', 'ok', b, 2]);
  assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 36_000n);
  const page = await admin<{ data: Array<{ event_id: string }> }>(stack.url, 'GET', `/admin/v1/usage/events?account_id=${c.accountId}`);
  assert.deepEqual(page.json.data.map((x) => x.event_id), [id], 'one usage event for the client request');
  assert.deepEqual([await calls(urlA), await calls(urlB)], [1, 1]);
  // the gateway reports what it saw (about once a second): A's failed attempt, B's served one
  type Health = { recent_requests: number; recent_failures: number; circuit: string | null };
  const health = async (upstream: string) => (await admin<{ health: Health }>(stack.url, 'GET', `/admin/v1/upstreams/${upstream}`)).json.health;
  for (let i = 0; ; i++) {
    const [ha, hb] = [await health(a), await health(b)];
    if (ha.recent_requests === 1 && hb.recent_requests === 1) {
      assert.deepEqual([ha.recent_failures, ha.circuit, hb.recent_failures, hb.circuit], [1, 'closed', 0, 'closed']);
      break;
    }
    assert.ok(i < 100, `no health report: ${JSON.stringify([ha, hb])}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test('timeout to the headers (UPSTREAM_TIMEOUT_MS): failover to the next upstream, billed once', async () => {
  const { b, c } = await pooled('failover-timeout');
  await calls(urlA); await calls(urlB);
  await fault(urlA, { delay_ms: 3000 });
  const { data: stream, response } = await c.client.messages.create({
    model: MODEL, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hello' }],
  }, { headers: { 'x-sim-input': '100', 'x-sim-output': '20' } }).withResponse();
  for await (const _ of stream) { /* to the end */ }
  const e = await stored(response.headers.get('request-id')!);
  assert.deepEqual([e['cost_micros'], e['status'], e['upstream_id'], e['attempts']], ['36000', 'ok', b, 2]);
  assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 36_000n);
});

test('an upstream 408 (it timed the request out) is failed over like a 5xx: the next upstream serves, billed once', async () => {
  const { b, c } = await pooled('failover-408');
  await calls(urlA); await calls(urlB);
  await fault(urlA, { status: 408 });
  const { response } = await c.client.messages.create({
    model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hello' }],
  }, { headers: { 'x-sim-input': '100', 'x-sim-output': '20' } }).withResponse();
  const e = await stored(response.headers.get('request-id')!);
  // 100 × 180 + 20 × 900 = 36,000 µc, served by B on the second attempt
  assert.deepEqual([e['cost_micros'], e['status'], e['upstream_id'], e['attempts']], ['36000', 'ok', b, 2]);
  assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 36_000n);
  assert.deepEqual([await calls(urlA), await calls(urlB)], [1, 1]);
});

test('a 429 to count_tokens (rate-limited apart from Messages upstream) fails over but does not cool the upstream down for Messages', async () => {
  const { a, c } = await pooled('count-tokens-429');
  await calls(urlA); await calls(urlB);
  await fault(urlA, { status: 429, retry_after: 120 });
  const counted = await c.client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'hello' }] }, { headers: { 'x-sim-input': '7' } });
  assert.equal(counted.input_tokens, 7);
  assert.deepEqual([await calls(urlA), await calls(urlB)], [1, 1], 'A answered 429, B counted');
  // the next message goes to A, the preferred upstream: not cooled down, circuit closed
  const { response } = await c.client.messages.create({
    model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hello' }],
  }, { headers: { 'x-sim-input': '100', 'x-sim-output': '20' } }).withResponse();
  const e = await stored(response.headers.get('request-id')!);
  assert.deepEqual([e['upstream_id'], e['attempts'], e['cost_micros']], [a, 1, '36000']);
  const up = await admin<{ health: { cooldown_until: string | null } }>(stack.url, 'GET', `/admin/v1/upstreams/${a}`);
  assert.equal(up.json.health.cooldown_until, null);
});

test('count_tokens answers move no Messages circuit: a 200 between failed messages does not reset their count, so the circuit opens at the threshold (5) and the next message goes straight to B', async () => {
  const { a, b, c } = await pooled('count-tokens-circuit');
  await calls(urlA); await calls(urlB);
  const message = async () => {
    const { response } = await c.client.messages.create({
      model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hello' }],
    }, { headers: { 'x-sim-input': '100', 'x-sim-output': '20' } }).withResponse();
    return stored(response.headers.get('request-id')!);
  };
  for (let i = 0; i < 5; i++) {
    await fault(urlA, { status: 500 });
    const e = await message();
    assert.deepEqual([e['upstream_id'], e['attempts']], [b, 2], `message ${i + 1}: A failed, B served`);
    // A answers the count (no fault queued): it says nothing of Messages
    if (i === 2) assert.equal((await c.client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-sim-input': '4' } })).input_tokens, 4);
  }
  await calls(urlA);
  // five consecutive Messages failures: A's circuit is open; this message is not tried there
  const e = await message();
  assert.deepEqual([e['upstream_id'], e['attempts']], [b, 1]);
  assert.equal(await calls(urlA), 0);
  const up = await admin<{ health: { circuit: string | null } }>(stack.url, 'GET', `/admin/v1/upstreams/${a}`);
  for (let i = 0; i < 50 && up.json.health.circuit !== 'open'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    up.json = (await admin<{ health: { circuit: string | null } }>(stack.url, 'GET', `/admin/v1/upstreams/${a}`)).json;
  }
  assert.equal(up.json.health.circuit, 'open');
});

test('count_tokens is open to an account that could pay for a message: a balance of 0 with an overdraft is counted, holds do not count; none of either: 402', async () => {
  const { c } = await pooled('count-tokens-overdraft');
  const ask = () => c.client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'hello' }] }, { headers: { 'x-sim-input': '3' } });
  // spend the whole balance: 10 credits
  assert.equal((await admin(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: '-10', kind: 'adjustment', reference: 'zero' })).status, 201);
  await assert.rejects(ask(), (err: unknown) => (err as { status?: number }).status === 402);
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { overdraft_credits: '5' })).status, 200);
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await ask()).input_tokens, 3);
});

test('a group\'s model_mapping names the model upstream; the request is priced as the catalog model', async () => {
  const up = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
    name: 'mapped', platform: 'anthropic', base_url: urlB, api_key: UPSTREAM_KEY, weight: 1, priority: 0, max_concurrency: null,
  });
  const g = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', {
    name: 'mapped', platform: 'anthropic', upstream_ids: [up.json.id], model_mapping: { [MODEL]: 'sonnet-deployment-7' },
  });
  assert.equal(g.status, 201, JSON.stringify(g.json));
  const c = await customer(stack.url, 10, 'mapped');
  await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: g.json.id });
  await new Promise((r) => setTimeout(r, 1100));
  await calls(urlB);
  const { response } = await c.client.messages.create({
    model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'hello' }],
  }, { headers: { 'x-sim-input': '100', 'x-sim-output': '20' } }).withResponse();
  const sent = (await (await fetch(`${urlB}/_sim/requests`)).json()) as Array<{ body: { model: string } }>;
  assert.equal(sent.at(-1)!.body.model, 'sonnet-deployment-7');
  const e = await stored(response.headers.get('request-id')!);
  assert.deepEqual([e['catalog_model'], e['upstream_model'], e['served_model'], e['cost_micros'], e['unpriced']],
    [MODEL, 'sonnet-deployment-7', 'sonnet-deployment-7', '36000', []]);
});
