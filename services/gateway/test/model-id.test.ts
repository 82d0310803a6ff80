// Issue 6 item 12 (round 2, N5): a model id the messages route refuses as malformed is refused
// the same way, with the same 400, by GET /v1/models/{id} (one function: validateModelId).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type GatewayStack } from './support.ts';

let stack: GatewayStack;
before(async () => { stack = await startGateway(); });
after(async () => stack.close());

test('a malformed model id (over 256 characters, control characters): the same 400 from /v1/models/{id}, /v1/messages and count_tokens', async () => {
  const c = await stack.customer();
  const headers = { 'content-type': 'application/json', 'x-api-key': c.secret, 'anthropic-version': '2023-06-01' };
  const CASES: Array<[string, string]> = [
    ['a'.repeat(300), 'model: String should have at most 256 characters'],
    ['claude\u0001x', 'model: String should not contain control characters'],
  ];
  for (const [id, message] of CASES) {
    const answers = [
      await fetch(`${stack.gatewayUrl}/v1/models/${encodeURIComponent(id)}`, { headers }),
      await fetch(`${stack.gatewayUrl}/v1/messages`, { method: 'POST', headers, body: JSON.stringify({ model: id, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }) }),
      await fetch(`${stack.gatewayUrl}/v1/messages/count_tokens`, { method: 'POST', headers, body: JSON.stringify({ model: id, messages: [{ role: 'user', content: 'hi' }] }) }),
    ];
    for (const [i, res] of answers.entries()) {
      const body = await res.json() as { type: string; error: { type: string; message: string } };
      assert.deepEqual([res.status, body.type, body.error.type, body.error.message], [400, 'error', 'invalid_request_error', message], `${id.slice(0, 12)} route ${i}`);
    }
  }
  // a well-formed id that names no model stays a 404 on both
  const unknown = await fetch(`${stack.gatewayUrl}/v1/models/${'a'.repeat(256)}`, { headers });
  assert.equal(unknown.status, 404);
});
