// Breaker brk10a on the control API and an openai group (embedded stack): an upstream DELETE
// racing a group POST/PATCH that lists it never leaves a group with a deleted upstream (#3);
// prototype keys in control input are refused by name, never dropped (#4); a fault queued on
// one OpenAI-compatible simulator fails over to the group's other upstream, billed once (#6).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSimulator } from '@tollgate/simulator';
import { admin, customer, settledBalance, startStack, UPSTREAM_KEY, type Stack } from '../support/tollgate.ts';

let stack: Stack;
let sim2: { close(): Promise<void> };
let sim2Url = '';

before(async () => {
  stack = await startStack({ POOL_CACHE_TTL_MS: '0' });
  const s = buildSimulator({ apiKey: UPSTREAM_KEY });
  sim2Url = await s.listen({ port: 0, host: '127.0.0.1' });
  sim2 = s;
});
after(async () => {
  await stack?.close();
  await sim2?.close();
});

const newUpstream = async (name: string, o: Record<string, unknown> = {}) => {
  const r = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
    name, platform: 'anthropic', base_url: stack.simUrl, api_key: UPSTREAM_KEY, weight: 1, priority: 0, ...o,
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json.id;
};

/** No live group lists an upstream that GET says does not exist. */
async function noDanglingMembers(): Promise<void> {
  const groups = await admin<{ data: Array<{ id: string; upstream_ids: string[] }> }>(stack.url, 'GET', '/admin/v1/groups');
  for (const g of groups.json.data) {
    for (const id of g.upstream_ids) {
      assert.equal((await admin(stack.url, 'GET', `/admin/v1/upstreams/${id}`)).status, 200, `group ${g.id} lists ${id}, which does not exist`);
    }
  }
}

test('upstream DELETE racing a group POST listing it (30 rounds): exactly one succeeds, no group keeps a deleted upstream', async () => {
  for (let round = 0; round < 30; round++) {
    const id = await newUpstream(`race-post-${round}`);
    const [del, post] = await Promise.all([
      admin(stack.url, 'DELETE', `/admin/v1/upstreams/${id}`),
      admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: `race-post-${round}`, platform: 'anthropic', upstream_ids: [id] }),
    ]);
    // either the delete came first (the group names a missing upstream: 400) or the group did (the delete is 409)
    const outcome = `${del.status}/${post.status}`;
    assert.ok(outcome === '200/400' || outcome === '409/201', `round ${round}: DELETE ${del.status}, POST ${post.status}`);
  }
  await noDanglingMembers();
});

test('upstream DELETE racing a group PATCH adding it (30 rounds): exactly one succeeds, no group keeps a deleted upstream', async () => {
  const base = await newUpstream('race-patch-base');
  const g = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'race-patch', platform: 'anthropic', upstream_ids: [base] });
  assert.equal(g.status, 201);
  for (let round = 0; round < 30; round++) {
    const id = await newUpstream(`race-patch-${round}`);
    const [del, patch] = await Promise.all([
      admin(stack.url, 'DELETE', `/admin/v1/upstreams/${id}`),
      admin(stack.url, 'PATCH', `/admin/v1/groups/${g.json.id}`, { upstream_ids: [base, id] }),
    ]);
    const outcome = `${del.status}/${patch.status}`;
    assert.ok(outcome === '200/400' || outcome === '409/200', `round ${round}: DELETE ${del.status}, PATCH ${patch.status}`);
    // back to the base member for the next round (the upstream, if still live, is then deletable)
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/groups/${g.json.id}`, { upstream_ids: [base] })).status, 200);
  }
  await noDanglingMembers();
});

test('prototype key in a map-shaped control input: model_mapping {"__proto__"} is a 400 naming model_mapping.__proto__, never a silent drop', async () => {
  const up = await newUpstream('proto');
  const mapping = JSON.parse('{"__proto__":"x"}') as Record<string, string>;
  const post = await admin<{ error: { type: string; message: string } }>(stack.url, 'POST', '/admin/v1/groups', { name: 'proto', platform: 'anthropic', upstream_ids: [up], model_mapping: mapping });
  assert.deepEqual([post.status, post.json.error.type, post.json.error.message], [400, 'invalid_request_error', 'model_mapping.__proto__: "__proto__" is not a model of the catalog in force']);
  const g = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'proto', platform: 'anthropic', upstream_ids: [up] });
  const patch = await admin<{ error: { message: string } }>(stack.url, 'PATCH', `/admin/v1/groups/${g.json.id}`, { model_mapping: mapping });
  assert.deepEqual([patch.status, patch.json.error.message], [400, 'model_mapping.__proto__: "__proto__" is not a model of the catalog in force']);
  // other keys that name an Object.prototype member are not catalog models either
  const ctor = await admin<{ error: { message: string } }>(stack.url, 'PATCH', `/admin/v1/groups/${g.json.id}`, { model_mapping: { constructor: 'x' } });
  assert.deepEqual([ctor.status, ctor.json.error.message], [400, 'model_mapping.constructor: "constructor" is not a model of the catalog in force']);
  assert.equal((await admin<{ model_mapping: unknown }>(stack.url, 'GET', `/admin/v1/groups/${g.json.id}`)).json.model_mapping, null);
});

test('a mapped upstream model name metering cannot read back (not printable ASCII) is a 400 naming the field; an ASCII name is stored', async () => {
  // Kind: a value the admin API accepted and metering refused: "sonnet 模型" was stored, and every
  // answer of that group became a usage anomaly with no served model (a tester's case).
  const up = await newUpstream('mapped-names');
  for (const name of ['sonnet 模型', 'sonnet-模型', 'my sonnet', 'naïve', 'tab\there']) {
    const r = await admin<{ error: { type: string; message: string } }>(stack.url, 'POST', '/admin/v1/groups', { name: 'mapped', platform: 'anthropic', upstream_ids: [up], model_mapping: { 'claude-sonnet-4-6': name } });
    assert.equal(r.status, 400, name);
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.ok(r.json.error.message.startsWith('model_mapping["claude-sonnet-4-6"]: '), r.json.error.message);
  }
  const spaced = await admin<{ error: { message: string } }>(stack.url, 'POST', '/admin/v1/groups', { name: 'mapped', platform: 'anthropic', upstream_ids: [up], model_mapping: { 'claude-sonnet-4-6': 'sonnet 模型' } });
  assert.equal(spaced.json.error.message, 'model_mapping["claude-sonnet-4-6"]: "sonnet 模型" must be printable ASCII without spaces (an upstream model name, read back from the upstream\'s answers)');
  const ok = await admin<{ model_mapping: unknown }>(stack.url, 'POST', '/admin/v1/groups', { name: 'mapped', platform: 'anthropic', upstream_ids: [up], model_mapping: { 'claude-sonnet-4-6': 'my-sonnet_v2.1' } });
  assert.equal(ok.status, 201);
  assert.deepEqual(ok.json.model_mapping, { 'claude-sonnet-4-6': 'my-sonnet_v2.1' });
});

test('prototype key at the top of every control body (accounts, keys, plans, webhooks, upstreams, groups): 400 naming __proto__ as an unknown field', async () => {
  const c = await customer(stack.url, 0, 'proto-bodies');
  const up = await newUpstream('proto-bodies');
  const g = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'proto-bodies', platform: 'anthropic', upstream_ids: [up] });
  const proto = (o: Record<string, unknown>) => ({ ...o, ...(JSON.parse('{"__proto__":{"status":"disabled"}}') as object) });
  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['POST', '/admin/v1/accounts', proto({ name: 'x' })],
    ['PATCH', `/admin/v1/accounts/${c.accountId}`, proto({})],
    ['PATCH', `/admin/v1/keys/${c.keyId}`, proto({})],
    ['POST', '/admin/v1/plans', proto({ name: 'p', requests_per_minute: 10 })],
    ['POST', '/admin/v1/webhooks', proto({ url: 'https://example.com/hook', events: ['low_balance'] })],
    ['POST', '/admin/v1/upstreams', proto({ name: 'u', platform: 'anthropic', base_url: stack.simUrl })],
    ['PATCH', `/admin/v1/upstreams/${up}`, proto({})],
    ['PATCH', `/admin/v1/groups/${g.json.id}`, proto({})],
  ];
  for (const [method, path, body] of cases) {
    const r = await admin<{ error?: { type: string; message: string } }>(stack.url, method, path, body);
    assert.equal(r.status, 400, `${method} ${path}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error?.type, 'invalid_request_error');
    assert.match(r.json.error!.message, /__proto__/, `${method} ${path}`);
  }
});

test('openai group: a 503 queued on one OpenAI upstream (/_sim/faults) fails over to the other, billed once (exact µc), attempts 2', async () => {
  const a = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
    name: 'oai-a', platform: 'openai', base_url: `${stack.simUrl}/v1`, api_key: UPSTREAM_KEY, weight: 1, priority: 10,
  });
  const b = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
    name: 'oai-b', platform: 'openai', base_url: `${sim2Url}/v1`, api_key: UPSTREAM_KEY, weight: 1, priority: 0,
  });
  const g = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'oai-failover', platform: 'openai', upstream_ids: [a.json.id, b.json.id] });
  assert.equal(g.status, 201, JSON.stringify(g.json));
  const c = await customer(stack.url, 10, 'oai-failover');
  assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: g.json.id })).status, 200);
  const clear = async (url: string) => { await fetch(`${url}/_sim/requests`, { method: 'DELETE' }); };
  const chatCalls = async (url: string) => ((await (await fetch(`${url}/_sim/requests`)).json()) as Array<{ url: string }>)
    .filter((r) => r.url === '/v1/chat/completions').length;
  await clear(stack.simUrl); await clear(sim2Url);
  const queued = await fetch(`${stack.simUrl}/_sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 503 }) });
  assert.equal(queued.status, 200);
  const { data: msg, response } = await c.client.messages.create({
    model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hello from an openai group' }],
  }, { headers: { 'x-sim-output': '20' } }).withResponse();
  assert.deepEqual(msg.usage, { input_tokens: 7, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 20 });
  const id = response.headers.get('request-id')!;
  let e: Record<string, unknown> | undefined;
  for (let i = 0; i < 200 && e === undefined; i++) {
    await stack.tollgate.drain();
    const r = await admin(stack.url, 'GET', `/admin/v1/usage/events/${id}`);
    if (r.status === 200) e = r.json;
    else await new Promise((res) => setTimeout(res, 25));
  }
  assert.ok(e, 'usage event stored');
  // sonnet-4-5: 7 × 72 + 20 × 360 = 504 + 7,200 = 7,704 µc; 10 credits = 10,000,000 µc
  assert.deepEqual([e['cost_micros'], e['status'], e['upstream_id'], e['attempts']], ['7704', 'ok', b.json.id, 2]);
  assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 7_704n);
  assert.deepEqual([await chatCalls(stack.simUrl), await chatCalls(sim2Url)], [1, 1]);
});
