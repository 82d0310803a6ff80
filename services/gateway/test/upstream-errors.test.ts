// Issue 6 items 9 and 10: what of the upstream's errors and headers reaches the client, and
// what of the client's URL reaches the upstream.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startCdn, startGateway, UPSTREAM_KEY, type GatewayStack } from './support.ts';

const MODEL = 'claude-sonnet-4-6';
const messages = [{ role: 'user' as const, content: 'hello' }];

let stack: GatewayStack;
before(async () => { stack = await startGateway(); });
after(async () => stack.close());

type Call = (client: Anthropic, headers: Record<string, string>) => Promise<unknown>;
/** Every route that reaches the upstream: messages JSON, messages SSE, count_tokens. */
const ROUTES: Array<[string, Call]> = [
  ['messages', (c, headers) => c.messages.create({ model: MODEL, max_tokens: 20, messages }, { headers })],
  ['messages stream', async (c, headers) => {
    const stream = await c.messages.create({ model: MODEL, max_tokens: 20, messages, stream: true }, { headers });
    for await (const _ of stream) { /* read to the end */ }
  }],
  ['count_tokens', (c, headers) => c.messages.countTokens({ model: MODEL, messages }, { headers })],
];

/** The API error `p` rejects with (an HTTP answer, so it has headers). */
async function failure(p: Promise<unknown>): Promise<InstanceType<typeof Anthropic.APIError> & { headers: Headers }> {
  const err = await p.then(() => assert.fail('expected an error'), (e: unknown) => e);
  assert.ok(err instanceof Anthropic.APIError && err.headers !== undefined, String(err));
  return err as InstanceType<typeof Anthropic.APIError> & { headers: Headers };
}

function ratelimitHeaders(headers: Headers): string[] {
  return [...headers.keys()].filter((h) => h.startsWith('anthropic-ratelimit-'));
}

test('upstream 429 and 529 with its own rate-limit headers: retry-after and x-should-retry passed on, anthropic-ratelimit-* never', async () => {
  const c = await stack.customer();
  for (const [route, call] of ROUTES) {
    for (const status of ['429', '529']) {
      const err = await failure(call(c.client, { 'x-sim-status': status, 'x-sim-retry-after': '7' }));
      assert.equal(err.status, Number(status), `${route} ${status}`);
      assert.equal(err.headers.get('retry-after'), '7', `${route} ${status}`);
      assert.equal(err.headers.get('x-should-retry'), 'true', `${route} ${status}`);
      assert.deepEqual(ratelimitHeaders(err.headers), [], `${route} ${status}`);
    }
  }
});

test("successful replies never carry the upstream account's anthropic-ratelimit-* headers, on any route", async () => {
  // The CDN stamps `anthropic-ratelimit-unified-status: rejected` and friends on every reply.
  const cdn = await startCdn(stack.simUrl);
  const viaCdn = await startGateway({ upstreamUrl: () => cdn.url });
  try {
    const c = await viaCdn.customer();
    const json = await c.client.messages.create({ model: MODEL, max_tokens: 20, messages }).withResponse();
    const sse = await c.client.messages.create({ model: MODEL, max_tokens: 20, messages, stream: true }).withResponse();
    for await (const _ of sse.data) { /* read to the end */ }
    const count = await c.client.messages.countTokens({ model: MODEL, messages }).withResponse();
    for (const [route, res] of [['messages', json.response], ['messages stream', sse.response], ['count_tokens', count.response]] as const) {
      assert.equal(res.status, 200, route);
      assert.deepEqual(ratelimitHeaders(res.headers), [], route);
    }
    // and the upstream's 4xx on the same hop: still none
    const err = await failure(c.client.messages.create({ model: MODEL, max_tokens: 20, messages }, { headers: { 'x-sim-status': '400' } }));
    assert.deepEqual(ratelimitHeaders(err.headers), []);
  } finally {
    await viaCdn.close();
    await cdn.close();
  }
});

test("upstream rejects the gateway's own credential or account (401, 402, 403): x-should-retry false, the SDK with default retries calls exactly once", async () => {
  const c = await stack.customer(10_000_000n, { maxRetries: 2 });
  const expected: Record<string, { status: number; type: string; code: string }> = {
    '401': { status: 503, type: 'api_error', code: 'upstream_error' },
    '402': { status: 503, type: 'api_error', code: 'upstream_error' },
    '403': { status: 403, type: 'permission_error', code: 'permission_denied' },
  };
  for (const [route, call] of ROUTES) {
    for (const [status, want] of Object.entries(expected)) {
      await stack.clearSim();
      const err = await failure(call(c.client, { 'x-sim-status': status, 'x-sim-echo-key': '1' }));
      const body = (err.error as { error: { type: string; code: string; message: string } }).error;
      assert.deepEqual([err.status, body.type, body.code], [want.status, want.type, want.code], `${route} ${status}`);
      assert.equal(err.headers.get('x-should-retry'), 'false', `${route} ${status}`);
      assert.equal((await stack.simRequests()).length, 1, `${route} ${status}: upstream calls`);
      assert.ok(!body.message.includes(UPSTREAM_KEY) && !body.message.includes('sk-'), `${route} ${status}: ${body.message}`);
      if (status === '403') assert.equal(body.message, 'invalid x-api-key: [redacted]');
    }
  }
  assert.equal(
    ((await failure(c.client.messages.create({ model: MODEL, max_tokens: 20, messages }, { headers: { 'x-sim-status': '401' } })))
      .error as { error: { message: string } }).error.message,
    "Upstream provider rejected the gateway's credential (HTTP 401 authentication_error); the gateway operator must fix its upstream configuration",
  );
  // The counter works: an upstream 529 that says "retry" is retried by the same client (3 calls).
  await stack.clearSim();
  await failure(c.client.messages.create({ model: MODEL, max_tokens: 20, messages }, { headers: { 'x-sim-status': '529', 'x-sim-retry-after': '0' } }));
  assert.equal((await stack.simRequests()).length, 3);
});

test('upstream error message echoing the credential: redacted before the client sees it', async () => {
  const c = await stack.customer();
  for (const [route, call] of ROUTES) {
    for (const status of ['400', '429', '500']) {
      const err = await failure(call(c.client, { 'x-sim-status': status, 'x-sim-echo-key': '1' }));
      assert.equal(err.status, Number(status), `${route} ${status}`);
      assert.equal((err.error as { error: { message: string } }).error.message, 'invalid x-api-key: [redacted]', `${route} ${status}`);
    }
  }
});

test('customer key in the query string (?api_key= and other credential names, any case): stripped before the upstream', async () => {
  const c = await stack.customer();
  const query = `?beta=true&api_key=${c.secret}&KEY=${c.secret}&ApiKey=a&x-api-key=b&Access_Token=c&token=d&api%5Fkey=e&keep=%20x+y&flag`;
  for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
    await stack.clearSim();
    const res = await fetch(`${stack.gatewayUrl}${path}${query}`, {
      method: 'POST',
      headers: { 'x-api-key': c.secret, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: MODEL, max_tokens: 20, messages }),
    });
    assert.equal(res.status, 200, path);
    const [seen] = await stack.simRequests();
    assert.equal(seen!.url, `${path}?beta=true&keep=%20x+y&flag`);
    assert.ok(!JSON.stringify(seen).includes(c.secret), path);
  }
  // nothing but credentials: no query string at all
  await stack.clearSim();
  await fetch(`${stack.gatewayUrl}/v1/messages?api_key=${c.secret}`, {
    method: 'POST', headers: { 'x-api-key': c.secret, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, max_tokens: 20, messages }),
  });
  assert.equal((await stack.simRequests())[0]!.url, '/v1/messages');
});
