// Issue 8 item 8: with Redis unreachable, money and spend limits fail closed. The gateway's
// balance store is a RedisBalanceStore on a port nothing listens on (the customer's credit sits
// in the fixture's memory store, so only the unreachable store decides): every request is 503
// `state_unavailable` with `retry-after`, and nothing reaches the upstream.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { RedisBalanceStore } from '@tollgate/ledger';
import { startGateway, type GatewayStack } from './support.ts';

let stack: GatewayStack;
let down: Redis;
before(async () => {
  down = new Redis({ port: 1, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  down.on('error', () => {}); // the refused connection is the point; ioredis would log it
  stack = await startGateway({ balances: new RedisBalanceStore({ redis: down, prefix: 'fail-closed:' }) });
});
after(async () => { await stack?.close(); down?.disconnect(); });

test('Redis unreachable: a request (clamp policy, 64,000 max_tokens) is refused 503 state_unavailable with retry-after, and the upstream is never called', async () => {
  const c = await stack.customer(100_000_000n);
  await stack.clearSim();
  const res = await fetch(`${stack.gatewayUrl}/v1/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': c.secret },
    body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 64_000, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '2');
  const body = (await res.json()) as { error: { type: string; code: string } };
  assert.equal(body.error.type, 'api_error');
  assert.equal(body.error.code, 'state_unavailable');
  assert.deepEqual(await stack.simRequests(), []);
});
