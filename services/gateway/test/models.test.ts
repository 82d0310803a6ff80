// Issue 6 item 12: GET /v1/models/:id answers for exactly the ids /v1/messages accepts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway, type GatewayStack } from './support.ts';

let stack: GatewayStack;
before(async () => { stack = await startGateway(); });
after(async () => stack.close());

test('model ids by alias, -thinking variant, name/provider and mapping rule: retrieved as the model /v1/messages bills', async () => {
  const c = await stack.customer();
  // requested id → the catalog entry it resolves to (cny.json)
  const cases: Array<[string, string]> = [
    ['claude-sonnet-4-5-20250929', 'claude-sonnet-4-5-20250929'],
    ['claude-sonnet-4-5', 'claude-sonnet-4-5-20250929'],
    ['claude-sonnet-4-5-thinking', 'claude-sonnet-4-5-20250929-thinking'],
    ['claude-opus-4-6/anthropic', 'claude-opus-4-6'],
    ['claude-opus-5-5', 'claude-opus-4-6'],
    ['claude-haiku-9', 'claude-haiku-4-5-20251001'],
  ];
  for (const [requested, canonical] of cases) {
    const model = await c.client.models.retrieve(requested);
    assert.equal(model.id, canonical, requested);
    assert.equal(model.type, 'model');
    // the same id is accepted, and billed as that model, by /v1/messages
    const { response } = await c.client.messages
      .create({ model: requested, max_tokens: 2048, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-sim-input': '1', 'x-sim-output': '1' } })
      .withResponse();
    const event = await stack.usageOf(response.headers.get('request-id')!);
    assert.equal(event.catalog_model, canonical.replace(/-thinking$/, ''), requested);
  }
  // a raw `/` in the path (not percent-encoded) resolves too
  const raw = await fetch(`${stack.gatewayUrl}/v1/models/claude-opus-4-6/anthropic`, { headers: { 'x-api-key': c.secret } });
  assert.equal(((await raw.json()) as { id: string }).id, 'claude-opus-4-6');
});

test('unknown model id: 404 not_found_error from both /v1/models/:id and /v1/messages', async () => {
  const c = await stack.customer();
  for (const id of ['gpt-4o', 'claude-foo-1', 'mistral-large/anthropic']) {
    const err = await c.client.models.retrieve(id).then(() => assert.fail(`${id} resolved`), (e: unknown) => e);
    assert.ok(err instanceof Anthropic.NotFoundError, `${id}: ${String(err)}`);
    assert.equal((err.error as { error: { type: string } }).error.type, 'not_found_error');
    const viaMessages = await c.client.messages.create({ model: id, max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] })
      .then(() => assert.fail(`${id} accepted`), (e: unknown) => e);
    assert.ok(viaMessages instanceof Anthropic.NotFoundError, `${id}: ${String(viaMessages)}`);
  }
});

test('model list paging: limit, after_id and before_id as Anthropic pages it; a malformed, repeated or unknown value is a 400 naming the parameter (it was ignored: every model, from the start)', async () => {
  // Kind: a query parameter of /v1/models read loosely. `limit=abc`, `0`, `99999` and a repeated
  // `limit` answered 200 with the whole list; an unknown `after_id` restarted the list;
  // `before_id` was never read.
  const c = await stack.customer();
  const get = async (query: string) => {
    const r = await fetch(`${stack.gatewayUrl}/v1/models${query}`, { headers: { 'x-api-key': c.secret } });
    return { status: r.status, body: await r.json() as { data?: Array<{ id: string }>; has_more?: boolean; first_id?: string | null; last_id?: string | null; error?: { type: string; message: string } } };
  };
  const all = (await get('?limit=1000')).body.data!.map((m) => m.id);
  assert.ok(all.length > 4);
  const page = await get('?limit=2');
  assert.deepEqual(page.body.data!.map((m) => m.id), all.slice(0, 2));
  assert.equal(page.body.has_more, true);
  const next = await get(`?limit=2&after_id=${encodeURIComponent(all[1]!)}`);
  assert.deepEqual(next.body.data!.map((m) => m.id), all.slice(2, 4));
  const back = await get(`?limit=2&before_id=${encodeURIComponent(all[3]!)}`);
  assert.deepEqual([back.body.data!.map((m) => m.id), back.body.has_more, back.body.first_id, back.body.last_id], [all.slice(1, 3), true, all[1], all[2]]);
  const first = await get(`?limit=5&before_id=${encodeURIComponent(all[2]!)}`);
  assert.deepEqual([first.body.data!.map((m) => m.id), first.body.has_more], [all.slice(0, 2), false]);
  const last = await get(`?after_id=${encodeURIComponent(all.at(-1)!)}`);
  assert.deepEqual([last.body.data, last.body.has_more, last.body.first_id], [[], false, null]);
  // the SDK pages through the same list
  const viaSdk: string[] = [];
  for await (const m of c.client.models.list({ limit: 3 })) viaSdk.push(m.id);
  assert.deepEqual(viaSdk, all);
  assert.equal((await get('?beta=true')).status, 200); // a parameter the list does not read is left alone, as Anthropic does
  for (const [query, message] of [
    ['?limit=abc', 'limit: "abc" is not a whole number between 1 and 1000'],
    ['?limit=0', 'limit: "0" is not between 1 and 1000'],
    ['?limit=99999', 'limit: "99999" is not between 1 and 1000'],
    ['?limit=2&limit=3', 'limit: given more than once'],
    ['?after_id=nope', 'after_id: "nope" is not a model id of this list'],
    ['?before_id=nope', 'before_id: "nope" is not a model id of this list'],
    [`?after_id=${encodeURIComponent(all[0]!)}&before_id=${encodeURIComponent(all[2]!)}`, 'after_id, before_id: give one or the other'],
  ] as const) {
    const r = await get(query);
    assert.deepEqual([r.status, r.body.error?.type, r.body.error?.message], [400, 'invalid_request_error', message], query);
  }
});
