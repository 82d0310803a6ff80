// Fix I.2: a server tool's max_uses that is not a positive integer used to be taken as missing,
// replaced by the catalog bound (50) and forwarded: an invalid request ran and was charged.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway, type GatewayStack } from './support.ts';

let stack: GatewayStack;
before(async () => { stack = await startGateway(); });
after(async () => stack.close());

const MODEL = 'claude-sonnet-4-5';
const messages = [{ role: 'user' as const, content: 'search please' }];

test('invalid server-tool max_uses (0, -1, 1.5, "3", true, {}): 400 invalid_request naming tools[i].max_uses, nothing sent upstream, nothing charged; null and absent take the catalog bound', async () => {
  const c = await stack.customer(1_000_000_000n);
  await stack.clearSim();
  for (const [bad, shown] of [[0, '0'], [-1, '-1'], [1.5, '1.5'], ['3', '"3"'], [true, 'true'], [{}, '{}']] as const) {
    const tools = [
      { name: 'custom', description: 'x', input_schema: { type: 'object' } },
      { type: 'web_search_20250305', name: 'web_search', max_uses: bad },
    ];
    const err = await c.client.messages.create({ model: MODEL, max_tokens: 20, messages, tools } as never).then(
      () => assert.fail(`max_uses ${shown} accepted`), (e: unknown) => e);
    assert.ok(err instanceof Anthropic.APIError, String(err));
    assert.equal(err.status, 400);
    assert.deepEqual((err.error as { error: unknown }).error, {
      type: 'invalid_request_error', code: 'invalid_request',
      message: `tools[1].max_uses: must be a positive integer (got ${shown})`,
    });
  }
  assert.deepEqual(await stack.simRequests(), []);
  assert.deepEqual(await stack.balances.get(c.accountId), { balance: 1_000_000_000n, held: 0n, available: 1_000_000_000n });
  // null and absent: missing, the catalog bound (50) goes upstream; 3 stays 3
  for (const [given, sent] of [[null, 50], [undefined, 50], [3, 3]] as const) {
    await stack.clearSim();
    const tool: Record<string, unknown> = { type: 'web_search_20250305', name: 'web_search' };
    if (given !== undefined) tool['max_uses'] = given;
    await c.client.messages.create({ model: MODEL, max_tokens: 20, messages, tools: [tool] } as never);
    const [req] = await stack.simRequests();
    assert.deepEqual((req!.body as { tools: unknown[] }).tools, [{ type: 'web_search_20250305', name: 'web_search', max_uses: sent }]);
  }
});
