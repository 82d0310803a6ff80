// Plans end to end (embedded mode): the control API's /admin/v1/plans, the plan in force per key
// (key → account → DEFAULT_PLAN), its windows' headers on 200, 402 and 429 of /v1/messages, and
// the official SDK waiting out our retry-after.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { admin, customer, settledBalance, startLoggedProcess, startSimulator, startStack, UPSTREAM_KEY, type Stack } from '../support/tollgate.ts';

let stack: Stack;
// strict admission: a request whose worst case exceeds the balance is a 402 (not clamped), which
// the headers test needs
before(async () => { stack = await startStack({ DEFAULT_PLAN: 'pro', ADMISSION_POLICY: 'strict' }); });
after(async () => { await stack?.close(); });

const msg = (text: string, maxTokens = 8) => ({ model: 'claude-haiku-4-5', max_tokens: maxTokens, messages: [{ role: 'user' as const, content: text }] });
const ONE_EACH = '[[sim input=1 output=1]]';

interface PlanView {
  id: string; name: string; seed: boolean; created_at: string | null;
  requests_per_minute: number | null; requests_per_5h: number | null; requests_per_week: number | null;
  tokens_per_minute: number | null; concurrent_requests: number | null;
}

async function newPlan(body: Record<string, unknown>): Promise<string> {
  const r = await admin<PlanView>(stack.url, 'POST', '/admin/v1/plans', body);
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json.id;
}

async function assignKeyPlan(keyId: string, planId: string | null): Promise<void> {
  const r = await admin(stack.url, 'PATCH', `/admin/v1/keys/${keyId}`, { plan_id: planId });
  assert.equal(r.status, 200, JSON.stringify(r.json));
}

test('control API: plans are created, listed after the four seeds, read, patched and deleted; bad limits are 400', async () => {
  const list0 = await admin<{ data: PlanView[] }>(stack.url, 'GET', '/admin/v1/plans');
  assert.deepEqual(list0.json.data.slice(0, 4).map((p) => [p.id, p.requests_per_minute, p.requests_per_5h, p.requests_per_week, p.seed]), [
    ['free', 10, 40, 200, true], ['pro', 20, 400, 2_000, true], ['max-5x', 60, 1_200, 6_000, true], ['max-20x', 120, 3_000, 15_000, true],
  ]);

  const created = await admin<PlanView>(stack.url, 'POST', '/admin/v1/plans', { name: 'Team', requests_per_minute: 30, tokens_per_minute: 100_000 });
  assert.equal(created.status, 201);
  assert.match(created.json.id, /^plan_[0-9a-z]{20}$/);
  assert.deepEqual({ ...created.json, id: undefined, created_at: undefined }, {
    id: undefined, name: 'Team', requests_per_minute: 30, requests_per_5h: null, requests_per_week: null,
    tokens_per_minute: 100_000, concurrent_requests: null, seed: false, created_at: undefined,
  });
  const id = created.json.id;
  const patched = await admin<PlanView>(stack.url, 'PATCH', `/admin/v1/plans/${id}`, { requests_per_5h: 500, tokens_per_minute: null });
  assert.equal(patched.status, 200);
  assert.deepEqual([patched.json.name, patched.json.requests_per_minute, patched.json.requests_per_5h, patched.json.tokens_per_minute], ['Team', 30, 500, null]);
  assert.equal((await admin<PlanView>(stack.url, 'GET', `/admin/v1/plans/${id}`)).json.requests_per_5h, 500);

  // a seed plan can be changed like any other; it stays a seed
  const pro = await admin<PlanView>(stack.url, 'PATCH', '/admin/v1/plans/max-20x', { concurrent_requests: 8 });
  assert.deepEqual([pro.json.requests_per_minute, pro.json.concurrent_requests, pro.json.seed], [120, 8, true]);

  for (const bad of [{ requests_per_minute: -1 }, { requests_per_5h: 1.5 }, { tokens_per_minute: '10' }, { requests_per_week: 1_000_000_001 }, { colour: 'red' }]) {
    const r = await admin<{ type: string; error: { type: string; message: string } }>(stack.url, 'POST', '/admin/v1/plans', bad);
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.equal(r.json.error.type, 'invalid_request_error');
  }

  assert.deepEqual((await admin(stack.url, 'DELETE', `/admin/v1/plans/${id}`)).json, { id, deleted: true });
  assert.equal((await admin(stack.url, 'GET', `/admin/v1/plans/${id}`)).status, 404);
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/plans/${id}`, { name: 'x' })).status, 404);
  const list1 = await admin<{ data: PlanView[] }>(stack.url, 'GET', '/admin/v1/plans');
  assert.equal(list1.json.data.some((p) => p.id === id), false);
  // a key cannot be given a plan that does not exist
  const c = await customer(stack.url, 1);
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/keys/${c.keyId}`, { plan_id: id })).status, 400);
});

test('plan in force: the key\'s plan, else its account\'s, else DEFAULT_PLAN; a deleted plan falls through to the next', async () => {
  const c = await customer(stack.url, 1);
  const limitNow = async () => (await c.client.messages.create(msg(ONE_EACH)).withResponse()).response.headers.get('x-ratelimit-limit');
  assert.equal(await limitNow(), '20'); // DEFAULT_PLAN=pro
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { plan_id: 'max-5x' })).status, 200);
  assert.equal(await limitNow(), '60');
  const own = await newPlan({ name: 'own', requests_per_minute: 7 });
  await assignKeyPlan(c.keyId, own);
  assert.equal(await limitNow(), '7');
  await admin(stack.url, 'DELETE', `/admin/v1/plans/${own}`);
  assert.equal(await limitNow(), '60');
});

test('a seed plan cannot be deleted away: DELETE drops the operator\'s changes and it is the seed again, listed, readable, in force for keys naming it', async () => {
  // read before any change: created_at null is an unchanged seed
  const seed = await admin<PlanView>(stack.url, 'GET', '/admin/v1/plans/free');
  assert.equal(seed.json.created_at, null);
  const c = await customer(stack.url, 1);
  await assignKeyPlan(c.keyId, 'free');
  const limitNow = async () => (await c.client.messages.create(msg(ONE_EACH)).withResponse()).response.headers.get('x-ratelimit-limit');
  assert.equal((await admin(stack.url, 'PATCH', '/admin/v1/plans/free', { requests_per_minute: 9 })).status, 200);
  assert.equal(await limitNow(), '9');
  assert.deepEqual((await admin(stack.url, 'DELETE', '/admin/v1/plans/free')).json, { id: 'free', deleted: false, reset_to_seed: true });
  assert.deepEqual((await admin<PlanView>(stack.url, 'GET', '/admin/v1/plans/free')).json, seed.json);
  const list = await admin<{ data: PlanView[] }>(stack.url, 'GET', '/admin/v1/plans');
  assert.deepEqual(list.json.data.slice(0, 4).map((p) => p.id), ['free', 'pro', 'max-5x', 'max-20x']);
  assert.equal(await limitNow(), String(seed.json.requests_per_minute));
  // and it can be changed again
  assert.equal((await admin(stack.url, 'PATCH', '/admin/v1/plans/free', { requests_per_minute: 11 })).status, 200);
  assert.equal(await limitNow(), '11');
  await admin(stack.url, 'DELETE', '/admin/v1/plans/free');
});

test('plan windows on /v1/messages: headers on 200 and 402 (a 402 gives its request back); the 5 h window refuses with 429 rate_limit_error / rate_limit_exceeded and retry-after', async () => {
  const c = await customer(stack.url, 1);
  await assignKeyPlan(c.keyId, await newPlan({ name: 'tiny', requests_per_5h: 3, requests_per_week: 10 }));

  const first = (await c.client.messages.create(msg(ONE_EACH)).withResponse()).response.headers;
  const reset5h = first.get('anthropic-ratelimit-unified-5h-reset')!;
  const reset7d = first.get('anthropic-ratelimit-unified-7d-reset')!;
  // the 5 h window (2 of 3 left) is more restrictive than the week (9 of 10 left)
  assert.equal(first.get('anthropic-ratelimit-requests-limit'), '3');
  assert.equal(first.get('anthropic-ratelimit-requests-remaining'), '2');
  assert.equal(first.get('anthropic-ratelimit-requests-reset'), new Date(Number(reset5h) * 1000).toISOString().replace('.000Z', 'Z'));
  assert.equal(Number(reset7d) - Number(reset5h), 7 * 86_400 - 5 * 3_600); // both windows began with this request
  assert.equal(first.get('anthropic-ratelimit-unified-5h-utilization'), '0.3333');
  assert.equal(first.get('anthropic-ratelimit-unified-7d-utilization'), '0.1');
  assert.equal(first.get('anthropic-ratelimit-unified-status'), 'allowed');
  assert.equal(first.get('anthropic-ratelimit-unified-representative-claim'), 'five_hour');
  assert.equal(first.get('anthropic-ratelimit-unified-reset'), reset5h);
  assert.equal(first.get('x-ratelimit-limit'), null); // the plan has no per-minute window
  assert.equal(first.get('anthropic-ratelimit-tokens-limit'), null);

  // 20,000 output tokens × 120 µc = 2.4 credits > the 1 credit held: 402, with the windows as
  // they stand after the request was given back (never served: it does not count)
  await assert.rejects(c.client.messages.create(msg(ONE_EACH, 20_000)), (err: unknown) => {
    assert.ok(err instanceof Anthropic.APIError);
    assert.equal(err.status, 402);
    assert.equal(err.headers?.get('anthropic-ratelimit-requests-remaining'), '2');
    assert.equal(err.headers?.get('anthropic-ratelimit-unified-5h-utilization'), '0.3333');
    assert.equal(err.headers?.get('anthropic-ratelimit-unified-status'), 'allowed');
    assert.equal(err.headers?.get('anthropic-ratelimit-unified-5h-reset'), reset5h);
    return true;
  });

  const second = (await c.client.messages.create(msg(ONE_EACH)).withResponse()).response.headers;
  assert.equal(second.get('anthropic-ratelimit-requests-remaining'), '1');
  assert.equal(second.get('anthropic-ratelimit-unified-5h-utilization'), '0.6667');
  const third = (await c.client.messages.create(msg(ONE_EACH)).withResponse()).response.headers;
  assert.equal(third.get('anthropic-ratelimit-requests-remaining'), '0');
  assert.equal(third.get('anthropic-ratelimit-unified-5h-utilization'), '1');
  assert.equal(third.get('anthropic-ratelimit-unified-status'), 'allowed_warning');

  await assert.rejects(c.client.messages.create(msg(ONE_EACH)), (err: unknown) => {
    assert.ok(err instanceof Anthropic.RateLimitError);
    assert.deepEqual([err.status, err.error], [429, {
      type: 'error',
      error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: err.error && (err.error as { error: { message: string } }).error.message },
      request_id: (err.error as { request_id?: string }).request_id,
    }]);
    assert.match((err.error as { error: { message: string } }).error.message, /requests_per_5h/);
    const h = err.headers!;
    assert.equal(h.get('anthropic-ratelimit-unified-status'), 'rejected');
    assert.equal(h.get('anthropic-ratelimit-unified-representative-claim'), 'five_hour');
    assert.equal(h.get('anthropic-ratelimit-unified-reset'), reset5h);
    assert.equal(h.get('anthropic-ratelimit-unified-5h-utilization'), '1');
    assert.equal(h.get('anthropic-ratelimit-unified-7d-utilization'), '0.3'); // 3 of 10: the three served; the 402 and this refusal took nothing
    assert.equal(h.get('anthropic-ratelimit-requests-remaining'), '0');
    // retry-after counts down to the same reset: reset − retry-after is a moment of this test
    const retry = Number(h.get('retry-after'));
    assert.ok(Number.isInteger(retry) && retry > 5 * 3_600 - 600 && retry <= 5 * 3_600, `retry-after ${retry}`);
    return true;
  });
  // billed: the three answered requests only, 24 + 120 µc each
  assert.equal(await settledBalance(stack, c.accountId), 1_000_000n - 3n * 144n);
});

test('token counting is limited by the plan\'s requests_per_minute in a window of its own: the 4th count of 3 a minute is 429 with retry-after, and counts take no message\'s place in the plan\'s windows', async () => {
  // Kind: a free endpoint without a limit (a customer could run through the operator's
  // token-counting quota upstream). Anthropic limits token counting apart from Messages.
  const c = await customer(stack.url, 1);
  await assignKeyPlan(c.keyId, await newPlan({ name: 'counted', requests_per_minute: 3, requests_per_5h: 2 }));
  const count = () => c.client.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hello' }] }).withResponse();
  const remaining: Array<string | null> = [];
  for (let i = 0; i < 3; i++) {
    const { data, response } = await count();
    assert.equal(typeof data.input_tokens, 'number');
    assert.equal(response.headers.get('x-ratelimit-limit'), '3');
    remaining.push(response.headers.get('x-ratelimit-remaining'));
    // only the per-minute window: the 5 h and weekly windows count messages
    assert.equal(response.headers.get('anthropic-ratelimit-unified-5h-utilization'), null);
  }
  assert.deepEqual(remaining, ['2', '1', '0']);
  await assert.rejects(count(), (err: unknown) => {
    assert.ok(err instanceof Anthropic.RateLimitError);
    assert.equal(err.status, 429);
    const e = (err.error as { error: { type: string; code: string; message: string } }).error;
    assert.deepEqual([e.type, e.code], ['rate_limit_error', 'rate_limit_exceeded']);
    assert.match(e.message, /requests_per_minute, token counting/);
    const retry = Number(err.headers?.get('retry-after'));
    assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 60, `retry-after ${retry}`);
    assert.equal(err.headers?.get('x-ratelimit-remaining'), '0');
    return true;
  });
  // Messages' own windows are untouched by the four counts: 2 of 3 a minute and 1 of 2 in 5 h left.
  const served = (await c.client.messages.create(msg(ONE_EACH)).withResponse()).response.headers;
  assert.deepEqual([served.get('x-ratelimit-remaining'), served.get('anthropic-ratelimit-unified-5h-utilization')], ['2', '0.5']);
  // A plan without a per-minute window leaves token counting unlimited, whatever its 5 h window.
  const d = await customer(stack.url, 1);
  await assignKeyPlan(d.keyId, await newPlan({ name: 'five-hours', requests_per_5h: 1 }));
  assert.equal((await d.client.messages.create(msg(ONE_EACH)).withResponse()).response.status, 200);
  for (let i = 0; i < 5; i++) {
    const { response } = await d.client.messages.countTokens({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    assert.deepEqual([response.status, response.headers.get('x-ratelimit-limit')], [200, null]);
  }
  // counting is free: the two messages only (24 + 120 µc each)
  assert.equal(await settledBalance(stack, c.accountId), 1_000_000n - 144n);
  assert.equal(await settledBalance(stack, d.accountId), 1_000_000n - 144n);
});

test('a token count no upstream is asked takes nothing from its window: a model the key\'s group does not serve (404) and a platform without token counting (404), four times each on a 3-a-minute plan, then a count is served', async () => {
  // Kind: a refusal of the gateway's own spending the customer's window (4 × 404 turned into a
  // 429 "retry after 60 s" for counts that would be served).
  const c = await customer(stack.url, 1);
  await assignKeyPlan(c.keyId, await newPlan({ name: 'counted-404', requests_per_minute: 3 }));
  const haikuOnly = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', { name: 'haiku only', platform: 'anthropic', base_url: stack.simUrl, api_key: UPSTREAM_KEY, models: ['claude-haiku-4-5'] });
  assert.equal(haikuOnly.status, 201, JSON.stringify(haikuOnly.json));
  const g = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'haiku only', platform: 'anthropic', upstream_ids: [haikuOnly.json.id] });
  assert.equal(g.status, 201, JSON.stringify(g.json));
  const openai = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', { name: 'oai', platform: 'openai', base_url: `${stack.simUrl}/v1`, api_key: UPSTREAM_KEY });
  assert.equal(openai.status, 201, JSON.stringify(openai.json));
  const og = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'oai', platform: 'openai', upstream_ids: [openai.json.id] });
  assert.equal(og.status, 201, JSON.stringify(og.json));
  const count = (model: string) => fetch(`${stack.url}/v1/messages/count_tokens`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': c.secret },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] }),
  }).then(async (r) => [r.status, r.headers.get('x-ratelimit-remaining'), ((await r.json()) as { error?: { type: string } }).error?.type ?? null]);
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: g.json.id })).status, 200);
  for (let i = 0; i < 4; i++) assert.deepEqual((await count('claude-sonnet-4-6'))[0], 404, `sonnet ${i}`);
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: og.json.id })).status, 200);
  for (let i = 0; i < 4; i++) assert.deepEqual(await count('claude-haiku-4-5'), [404, null, 'not_found_error'], `openai group ${i}`);
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: g.json.id })).status, 200);
  // eight refusals took nothing: the first count served is the window's first
  assert.deepEqual(await count('claude-haiku-4-5'), [200, '2', null]);
});

test('the official SDK reads retry-after: a 429 of a plan\'s concurrency window (retry-after 1) is retried after 1 s and succeeds', async () => {
  const c = await customer(stack.url, 1);
  await assignKeyPlan(c.keyId, await newPlan({ name: 'one at a time', concurrent_requests: 1 }));
  const attempts: Array<{ status: number; retryAfter: string | null; at: number }> = [];
  const client = new Anthropic({
    apiKey: c.secret, baseURL: stack.url, maxRetries: 2, logLevel: 'error',
    fetch: async (url: string | URL | Request, init?: RequestInit) => {
      const res = await fetch(url, init);
      attempts.push({ status: res.status, retryAfter: res.headers.get('retry-after'), at: performance.now() });
      return res;
    },
  });
  // holds the key's only slot for about 0.4 s (40 tokens at 100 per second; max_tokens above 40,
  // or the simulator stops at max_tokens)
  const slow = c.client.messages.stream(msg('[[sim input=1 output=40 tps=100]]', 64));
  await slow.emitted('streamEvent');
  const answer = await client.messages.create(msg(ONE_EACH));
  await slow.finalMessage();
  assert.equal(answer.usage.output_tokens, 1);
  assert.deepEqual(attempts.map((a) => [a.status, a.retryAfter]), [[429, '1'], [200, null]]);
  // The SDK's own first backoff is at most 0.5 s; a gap of a whole second is the header's.
  assert.ok(attempts[1]!.at - attempts[0]!.at >= 1_000, `retried after ${attempts[1]!.at - attempts[0]!.at} ms`);
});

test('tokens_per_minute charges each request its worst case (input bound + max_tokens) at admission: of 5 concurrent max_tokens 1,000 on 3,000 only 2 pass; one above the whole allowance counts as the allowance', async () => {
  const planId = await newPlan({ name: 'tpm-3000', tokens_per_minute: 3_000 });
  const body = msg('hi [[sim input=1 output=1000]]', 1_000);
  const send = (secret: string, b: object = body) => fetch(`${stack.url}/v1/messages`, {
    method: 'POST', headers: { 'x-api-key': secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }, body: JSON.stringify(b),
  });
  // One probe on its own key gives W, the worst case admission charged: 3,000 − remaining.
  const probe = await customer(stack.url, 10);
  await assignKeyPlan(probe.keyId, planId);
  const probed = await send(probe.secret);
  assert.equal(probed.status, 200);
  const worst = 3_000 - Number(probed.headers.get('anthropic-ratelimit-tokens-remaining'));
  assert.ok(worst > 1_000 && worst <= 1_500, `worst case ${worst} = input bound + max_tokens 1,000`); // the input alone was counted before

  const c = await customer(stack.url, 10);
  await assignKeyPlan(c.keyId, planId);
  // Whatever the order, a third worst case (> 1,000 each) never fits in 3,000, and a finished
  // request corrects only to its real total (1 input + 1,000 output), so exactly two pass.
  const answers = await Promise.all([0, 1, 2, 3, 4].map(async () => {
    const r = await send(c.secret);
    const json = await r.json() as { error?: { code: string; message: string } };
    return { status: r.status, code: json.error?.code ?? null, limit: /\(([a-z_]+)\)/.exec(json.error?.message ?? '')?.[1] ?? null };
  }));
  assert.deepEqual(answers.map((a) => `${a.status} ${a.code} ${a.limit}`).sort(), [
    '200 null null', '200 null null',
    '429 rate_limit_exceeded tokens_per_minute', '429 rate_limit_exceeded tokens_per_minute', '429 rate_limit_exceeded tokens_per_minute',
  ]);

  // max_tokens 5,000 on a 3,000 allowance: counted as exactly 3,000 (it waits for an empty window, never fails forever).
  const big = await customer(stack.url, 10);
  await assignKeyPlan(big.keyId, planId);
  const alone = await send(big.secret, msg('hi [[sim input=1 output=5000]]', 5_000));
  assert.equal(alone.status, 200);
  assert.equal(alone.headers.get('anthropic-ratelimit-tokens-remaining'), '0');
  // Corrected to its real 5,001 tokens: the window is over, the next request waits.
  assert.equal((await send(big.secret, msg(ONE_EACH))).status, 429);
});

test('a request refused after admission (402 insufficient credits, 429 spend limit) is given back to every plan window: retries burn no 5 h or weekly quota', async () => {
  const c = await customer(stack.url, 1);
  await assignKeyPlan(c.keyId, await newPlan({ name: 'refund', requests_per_5h: 5, requests_per_week: 20, tokens_per_minute: 100_000 }));
  const raw = (b: object) => fetch(`${stack.url}/v1/messages`, {
    method: 'POST', headers: { 'x-api-key': c.secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }, body: JSON.stringify(b),
  });
  const windows = (h: Headers) => [h.get('anthropic-ratelimit-requests-remaining'), h.get('anthropic-ratelimit-unified-7d-utilization'), h.get('anthropic-ratelimit-tokens-remaining')];
  // 200 µc an hour: any request's worst case (≥ 8 output × 120 µc) is above it → 429 spend_limit_exceeded
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/keys/${c.keyId}`, { hourly_credits: '0.0002' })).status, 200);
  for (let i = 0; i < 3; i++) {
    const r = await raw(msg(ONE_EACH));
    assert.equal(r.status, 429);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'spend_limit_exceeded');
    assert.deepEqual(windows(r.headers), ['5', '0', '100000']);
  }
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/keys/${c.keyId}`, { hourly_credits: null })).status, 200);
  // 20,000 output tokens × 120 µc = 2.4 credits > 1 credit: 402, three times
  for (let i = 0; i < 3; i++) {
    const r = await raw(msg(ONE_EACH, 20_000));
    assert.equal(r.status, 402);
    assert.deepEqual(windows(r.headers), ['5', '0', '100000']);
  }
  // The first served request is the first to count: 4 of 5 left, 1 of 20 used.
  const ok = await raw(msg(ONE_EACH));
  assert.equal(ok.status, 200);
  assert.deepEqual(windows(ok.headers).slice(0, 2), ['4', '0.05']);
});

test('DEFAULT_PLAN naming no plan (a typo) is said at start: one warning naming it; a seed plan gets none', async () => {
  const { sim, simUrl } = await startSimulator();
  try {
    for (const [plan, warned] of [['pr0', true], ['pro', false]] as const) {
      const proc = await startLoggedProcess(`default-plan-${plan}`, { UPSTREAM_URL: simUrl, DEFAULT_PLAN: plan });
      try {
        let lines: Array<{ level?: number; msg?: string; defaultPlan?: string }> = [];
        // The check runs beside the start: a warning comes within moments of /health answering,
        // later on a loaded machine (a CI run once waited more than 1 s); its absence is
        // judged after 1 s.
        for (let i = 0; i < (warned ? 200 : 20); i++) {
          lines = proc.logs().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level?: number; msg?: string; defaultPlan?: string })
            .filter((l) => l.msg?.startsWith('DEFAULT_PLAN names no plan') === true);
          if (lines.length > 0) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.deepEqual(lines.map((l) => [l.level, l.defaultPlan]), warned ? [[40, 'pr0']] : [], plan);
      } finally {
        await proc.stop();
      }
    }
  } finally {
    await sim.close();
  }
});
