// Fix I.5: forwarded headers were dropped whole on false matches: `sk-` inside a word, one
// member of a comma list, a random opaque id. Each is judged for what it is.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type GatewayStack } from './support.ts';

let stack: GatewayStack;
before(async () => { stack = await startGateway(); });
after(async () => stack.close());

const RANDOM_ID = 'Xq7LmN2pR9sT4vW8yZ1aB3cD5eF6gH0j'; // 32 characters mixing cases and digits

async function forwarded(secret: string, headers: Record<string, string>): Promise<Record<string, string>> {
  await stack.clearSim();
  const res = await fetch(`${stack.gatewayUrl}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': secret, ...headers },
    body: JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  await res.arrayBuffer();
  const [req] = await stack.simRequests();
  return req!.headers;
}

test('forwarded headers on false matches: sk- inside a word, comma lists per member, opaque ids checked only against real secrets; exact forwarded values', async () => {
  const c = await stack.customer();
  const ok = await forwarded(c.secret, {
    'user-agent': 'MyDesk-Assistant/1.0 (task-runner)',
    'anthropic-beta': 'files-api-2025-04-14,mask-images-2025-01-01',
    'idempotency-key': RANDOM_ID,
    'x-claude-code-session-id': RANDOM_ID.toLowerCase(),
  });
  assert.deepEqual(
    [ok['user-agent'], ok['anthropic-beta'], ok['idempotency-key'], ok['x-claude-code-session-id']],
    ['MyDesk-Assistant/1.0 (task-runner)', 'files-api-2025-04-14,mask-images-2025-01-01', RANDOM_ID, RANDOM_ID.toLowerCase()],
  );
  // Real secrets still stay behind: the caller's key as one list member drops that member only;
  // in an opaque id (whole, or a 12+ fragment of its random part) or after a word boundary, the header.
  const bad = await forwarded(c.secret, {
    'user-agent': `MyDesk/1.0 (${c.secret})`,
    'anthropic-beta': `files-api-2025-04-14, ${c.secret} ,mask-images-2025-01-01`,
    'idempotency-key': `retry-${c.secret}`,
    'x-claude-code-session-id': c.secret.slice(-16),
  });
  assert.deepEqual(
    [bad['user-agent'], bad['anthropic-beta'], bad['idempotency-key'], bad['x-claude-code-session-id']],
    [undefined, 'files-api-2025-04-14,mask-images-2025-01-01', undefined, undefined],
  );
  assert.ok(c.secret.startsWith('sk-') && c.secret.length >= 32, c.secret);
});
