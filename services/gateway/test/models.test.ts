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
