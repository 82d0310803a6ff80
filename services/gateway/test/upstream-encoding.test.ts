// Issue 6 item 7: an upstream (or a CDN in front of it) compresses replies whatever Tollgate
// asked for. Every route must hand the client readable bytes with honest headers, and the meter
// must read the decoded usage.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { directClient, startCdn, startGateway, type GatewayStack } from './support.ts';

const ENCODINGS = ['gzip', 'deflate', 'br', 'zstd'] as const;
const MODEL = 'claude-sonnet-4-6';
const UPSTREAM_MODEL = 'claude-sonnet-4-6';
const USAGE_HEADERS = { 'x-sim-input': '10', 'x-sim-output': '5' };
// sonnet-4-6: 10 input × 180 µc + 5 output × 900 µc = 1800 + 4500 = 6300 µc
const COST = '6300';
const messages = [{ role: 'user' as const, content: 'tell me about compression' }];

let stack: GatewayStack;
let direct: Anthropic;

before(async () => {
  stack = await startGateway();
  direct = directClient(stack.simUrl);
});
after(async () => stack.close());

/** A message object without the per-request id, for comparing two replies to the same prompt. */
function sansId<T extends { id?: string }>(m: T): Omit<T, 'id'> {
  const { id: _id, ...rest } = m;
  return rest;
}

test('upstream compresses a JSON message (gzip, deflate, br, zstd): client gets the decoded message, billed exactly', async () => {
  const c = await stack.customer();
  const reference = await direct.messages.create({ model: UPSTREAM_MODEL, max_tokens: 50, messages }, { headers: USAGE_HEADERS });
  for (const encoding of ENCODINGS) {
    await stack.clearSim();
    const { data, response } = await c.client.messages
      .create({ model: MODEL, max_tokens: 50, messages }, { headers: { ...USAGE_HEADERS, 'x-sim-encoding': encoding } })
      .withResponse();
    assert.deepEqual(sansId(data), sansId(reference), encoding);
    assert.equal(response.headers.get('content-encoding'), null, encoding);
    const [seen] = await stack.simRequests();
    assert.equal(seen!.headers['accept-encoding'], 'identity', encoding);
    const event = await stack.usageOf(response.headers.get('request-id')!);
    assert.deepEqual([event.status, event.input_tokens, event.output_tokens, event.cost_micros], ['ok', 10, 5, COST], encoding);
  }
});

test('upstream compresses an SSE stream (gzip, deflate, br, zstd): client gets every event decoded, billed exactly', async () => {
  const c = await stack.customer();
  const referenceEvents: unknown[] = [];
  for await (const e of await direct.messages.create({ model: UPSTREAM_MODEL, max_tokens: 50, messages, stream: true }, { headers: USAGE_HEADERS })) {
    referenceEvents.push(e.type === 'message_start' ? { ...e, message: sansId(e.message) } : e);
  }
  for (const encoding of ENCODINGS) {
    const { data: stream, response } = await c.client.messages
      .create({ model: MODEL, max_tokens: 50, messages, stream: true }, { headers: { ...USAGE_HEADERS, 'x-sim-encoding': encoding } })
      .withResponse();
    const events: unknown[] = [];
    for await (const e of stream) events.push(e.type === 'message_start' ? { ...e, message: sansId(e.message) } : e);
    assert.deepEqual(events, referenceEvents, encoding);
    assert.equal(response.headers.get('content-encoding'), null, encoding);
    const event = await stack.usageOf(response.headers.get('request-id')!);
    assert.deepEqual([event.status, event.input_tokens, event.output_tokens, event.cost_micros], ['ok', 10, 5, COST], encoding);
  }
});

test('upstream compresses count_tokens (gzip, deflate, br, zstd): client gets the decoded count', async () => {
  const c = await stack.customer();
  for (const encoding of ENCODINGS) {
    const { data, response } = await c.client.messages
      .countTokens({ model: MODEL, messages }, { headers: { 'x-sim-input': '1234', 'x-sim-encoding': encoding } })
      .withResponse();
    assert.deepEqual(data, { input_tokens: 1234 }, encoding);
    assert.equal(response.headers.get('content-encoding'), null, encoding);
  }
});

test('upstream compresses a 4xx error body (gzip, deflate, br, zstd): client gets the decoded error, charged nothing', async () => {
  const c = await stack.customer();
  let referenceMessage = '';
  await direct.messages.create({ model: UPSTREAM_MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-status': '400' } })
    .catch((err: InstanceType<typeof Anthropic.APIError>) => { referenceMessage = (err.error as { error: { message: string } }).error.message; });
  assert.notEqual(referenceMessage, '');
  for (const encoding of ENCODINGS) {
    for (const route of ['messages', 'count_tokens'] as const) {
      const headers = { 'x-sim-status': '400', 'x-sim-encoding': encoding };
      const call = route === 'messages'
        ? c.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers })
        : c.client.messages.countTokens({ model: MODEL, messages }, { headers });
      const err = await call.then(() => assert.fail('expected an error'), (e: unknown) => e);
      assert.ok(err instanceof Anthropic.BadRequestError, `${encoding} ${route}: ${String(err)}`);
      assert.deepEqual((err.error as { error: unknown }).error,
        { type: 'invalid_request_error', code: 'invalid_request', message: referenceMessage }, `${encoding} ${route}`);
      assert.equal(err.headers.get('content-encoding'), null);
      if (route === 'messages') {
        const event = await stack.usageOf(err.requestID!);
        assert.deepEqual([event.status, event.http_status, event.cost_micros], ['upstream_error', 400, '0'], encoding);
      }
    }
  }
});

test('a CDN sends x-gzip, raw deflate and stacked gzip+br: all decoded on every route', async () => {
  const cdn = await startCdn(stack.simUrl);
  const viaCdn = await startGateway({ upstreamUrl: () => cdn.url });
  try {
    const c = await viaCdn.customer();
    const reference = await directClient(viaCdn.simUrl).messages.create({ model: UPSTREAM_MODEL, max_tokens: 50, messages }, { headers: USAGE_HEADERS });
    for (const cdnMode of ['x-gzip', 'raw-deflate', 'gzip,br']) {
      const headers = { ...USAGE_HEADERS, 'x-sim-cdn': cdnMode };
      const { data, response } = await c.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers }).withResponse();
      assert.deepEqual(sansId(data), sansId(reference), cdnMode);
      const event = await viaCdn.usageOf(response.headers.get('request-id')!);
      assert.equal(event.cost_micros, COST, cdnMode);

      const stream = await c.client.messages.create({ model: MODEL, max_tokens: 50, messages, stream: true }, { headers });
      const text: string[] = [];
      for await (const e of stream) if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') text.push(e.delta.text);
      assert.equal(text.join(''), (reference.content[0] as { text: string }).text, cdnMode);

      const count = await c.client.messages.countTokens({ model: MODEL, messages }, { headers: { 'x-sim-input': '77', 'x-sim-cdn': cdnMode } });
      assert.deepEqual(count, { input_tokens: 77 }, cdnMode);
    }
  } finally {
    await viaCdn.close();
    await cdn.close();
  }
});

test('upstream reply in an encoding zlib cannot read: 503 upstream_error naming it, never garbage, charged nothing', async () => {
  const cdn = await startCdn(stack.simUrl);
  const viaCdn = await startGateway({ upstreamUrl: () => cdn.url });
  try {
    const c = await viaCdn.customer();
    for (const call of [
      () => c.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-cdn': 'compress' } }),
      () => c.client.messages.create({ model: MODEL, max_tokens: 50, messages, stream: true }, { headers: { 'x-sim-cdn': 'compress' } }),
      () => c.client.messages.countTokens({ model: MODEL, messages }, { headers: { 'x-sim-cdn': 'compress' } }),
    ]) {
      const err = await call().then(() => assert.fail('expected an error'), (e: unknown) => e);
      assert.ok(err instanceof Anthropic.InternalServerError, String(err));
      assert.equal(err.status, 503);
      assert.deepEqual((err.error as { error: unknown }).error, {
        type: 'api_error', code: 'upstream_error',
        message: 'Upstream response uses content-encoding "compress", which the gateway cannot decode',
      });
    }
    const events = [...viaCdn.usage.values()];
    assert.equal(events.length, 2);
    for (const e of events) assert.deepEqual([e.status, e.cost_micros], ['upstream_error', '0']);
  } finally {
    await viaCdn.close();
    await cdn.close();
  }
});

test('a compressed request body is forwarded as identity bytes: no content-encoding reaches the upstream', async () => {
  const c = await stack.customer();
  await stack.clearSim();
  const body = JSON.stringify({ model: MODEL, max_tokens: 20, messages });
  // The client claims `content-encoding: identity`: the header must still not be passed on
  // (the parser decodes whatever arrives; the bytes forwarded are always identity).
  const res = await fetch(`${stack.gatewayUrl}/v1/messages`, {
    method: 'POST', headers: { 'x-api-key': c.secret, 'content-type': 'application/json', 'content-encoding': 'identity' }, body,
  });
  assert.equal(res.status, 200);
  const [seen] = await stack.simRequests();
  assert.equal(seen!.headers['content-encoding'], undefined);
  assert.equal(seen!.headers['accept-encoding'], 'identity');
});
