// Issue 6 items 9 and 10: what of the upstream's errors and headers reaches the client, and
// what of the client's URL reaches the upstream.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
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

test('customer key in any other request header, in any encoding the redaction knows: never reaches the upstream; only allowlisted headers pass, exact values', async () => {
  const c = await stack.customer();
  const k = c.secret;
  const body = JSON.stringify({ model: MODEL, max_tokens: 20, messages });
  const send = (headers: Record<string, string>) => fetch(`${stack.gatewayUrl}/v1/messages`, {
    method: 'POST', headers: { 'x-api-key': k, 'content-type': 'application/json', ...headers }, body,
  });
  const leaks = (seen: unknown) => {
    const text = JSON.stringify(seen);
    return [k, k.toUpperCase(), k.slice(6), Buffer.from(k).toString('base64').slice(0, 40)].filter((v) => text.includes(v));
  };
  // 1. the key under any header name (the names breakerB2 tried): none of them reaches the upstream
  const NAMES = ['anthropic-api-key', 'x-goog-api-key', 'api-key', 'x-auth-token', 'anthropic-beta', 'x-forwarded-authorization',
    'x-amz-security-token', 'anthropic-custom', 'x-api-key-2', 'proxy-authorization', 'cookie'];
  await stack.clearSim();
  for (const name of NAMES) assert.equal((await send({ [name]: k })).status, 200, name);
  assert.equal((await send({ referer: `https://app.example/chat?token=${k}` })).status, 200);
  // 2. in an allowlisted header, encoded: as is, upper case, the key without its sk-tg- head,
  // percent-encoded byte by byte (once and twice), base64 at two alignments, Bearer, a pair
  const pct = [...Buffer.from(k)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  const ENCODED = [k, k.toUpperCase(), k.slice(6), pct, pct.replaceAll('%', '%25'), Buffer.from(k).toString('base64'),
    Buffer.from(`key=${k}`).toString('base64url'), `Bearer ${k}`, `session=${k}`];
  for (const v of ENCODED) {
    const res = await send({ 'anthropic-beta': v, 'x-stainless-custom': v, 'x-claude-code-session-id': v, 'user-agent': v, 'idempotency-key': v });
    assert.equal(res.status, 200, v);
  }
  const seen = await stack.simRequests();
  assert.equal(seen.length, NAMES.length + 1 + ENCODED.length);
  for (const r of seen) {
    assert.deepEqual(leaks(r), [], JSON.stringify(r.headers));
    for (const name of [...NAMES, 'referer', 'x-stainless-custom', 'x-claude-code-session-id', 'idempotency-key']) {
      assert.equal(r.headers[name], undefined, name);
    }
    assert.equal(r.headers['x-api-key'], UPSTREAM_KEY);
  }
  // 3. what the SDKs and Claude Code send passes with its exact value; anything else stays behind
  await stack.clearSim();
  const PASS = {
    accept: 'application/json',
    'anthropic-beta': 'claude-code-20250219,interleaved-thinking-2025-05-14',
    'anthropic-dangerous-direct-browser-access': 'true',
    'anthropic-version': '2023-06-01',
    'idempotency-key': 'stainless-node-retry-3c1d2b84-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    'user-agent': 'claude-cli/2.0.14 (external, cli)',
    'x-app': 'cli',
    'x-claude-code-session-id': '7f1c1f7e-1b2a-4c3d-8e9f-0a1b2c3d4e5f',
    'x-stainless-lang': 'js',
    'x-stainless-retry-count': '0',
    'x-stainless-timeout': '600',
  };
  assert.equal((await send({ ...PASS, 'accept-language': 'en', 'x-custom': 'hello', 'x-request-id': 'abc', traceparent: PASS.traceparent })).status, 200);
  const [one] = await stack.simRequests();
  const { host: _h, 'content-length': _l, connection: _c, ...forwarded } = one!.headers;
  assert.deepEqual(forwarded, { ...PASS, 'content-type': 'application/json', 'accept-encoding': 'identity', 'x-api-key': UPSTREAM_KEY });
  // a traceparent that is not one (a key in its place) is dropped
  await stack.clearSim();
  await send({ traceparent: `00-${k}-01` });
  assert.equal((await stack.simRequests())[0]!.headers.traceparent, undefined);
});

test('upstream 408 (its own timeout): 503 upstream_error, retriable, not the client\'s 408', async () => {
  const c = await stack.customer();
  for (const [route, call] of ROUTES) {
    await stack.clearSim();
    const err = await failure(call(c.client, { 'x-sim-status': '408' }));
    assert.equal(err.status, 503, route);
    assert.deepEqual(err.error, {
      type: 'error',
      error: { type: 'api_error', code: 'upstream_error', message: 'Upstream provider timed out (HTTP 408)' },
      request_id: err.headers.get('request-id'),
    }, route);
  }
});

// ---------------------------------------------------------------------------------------------
// Any upstream text that reaches the client outside the model's answer: an upstream that echoes
// the credential it was sent (breakerB's echo-upstream) in an SSE error event, a 2xx JSON error
// body, and the retry headers of a 429. The mode is named in the prompt as [[echo MODE]].

type Echo = (key: string, res: ServerResponse) => void;
const frame = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const START = frame('message_start', {
  message: { id: 'msg_echo', type: 'message', role: 'assistant', model: MODEL, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } },
});
const TEXT = frame('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
  + frame('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'hello' } });
const b64 = (s: string) => Buffer.from(s).toString('base64');
/** An upstream message with parts of `key` (see the F2 test for what each becomes). */
const FRAGMENTS = (key: string) =>
  `bad key ${key.slice(3)}; tail ${key.slice(-14).toUpperCase()}; short ${key.slice(-11)}; token AbCdEfGh0123456789AbCdEfGh01234567`;
const ECHOES: Record<string, Echo> = {
  sse_auth_error: (key, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(START + frame('error', { error: { type: 'authentication_error', message: `invalid x-api-key: ${key}` } }));
  },
  sse_overloaded_after_text: (key, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    // CRLF framing and an event split across writes: relayed byte for byte up to the error
    res.write(START.replaceAll('\n', '\r\n') + TEXT.slice(0, 40));
    setTimeout(() => res.end(TEXT.slice(40)
      + frame('error', { error: { type: 'overloaded_error', message: `Overloaded (${key} ${key.toUpperCase()} ${b64(key)} ${b64(`key=${key}`)})` } })), 20);
  },
  json200_error: (key, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: `overloaded for ${encodeURIComponent(key)}` } }));
  },
  json200_auth_error: (key, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: `invalid x-api-key: ${key}` } }));
  },
  retry_headers_echo: (key, res) => {
    res.writeHead(429, { 'content-type': 'application/json', 'retry-after': key, 'x-should-retry': key });
    res.end(JSON.stringify({ type: 'error', error: { type: 'rate_limit_error', message: 'slow down' } }));
  },
  // F2: fragments of the key (no sk- head, upper-cased tail), a run too short to hide, a random token
  error_fragment: (key, res) => {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: FRAGMENTS(key) } }));
  },
  sse_error_fragment: (key, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(START + frame('error', { error: { type: 'overloaded_error', message: FRAGMENTS(key) } }));
  },
  // F3: the key in every place of a successful stream that is not an error
  sse_secrets: (key, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(`: upstream ${key}\n\n`
      + `event: message_start\nid: ${key}\ndata: ${JSON.stringify({ type: 'message_start', message: {
        id: `msg_${key.slice(3)}`, type: 'message', role: 'assistant', model: MODEL, content: [], stop_reason: null, stop_sequence: null,
        usage: { input_tokens: 10, output_tokens: 1 } } })}\n\n`
      + `event: ping\ndata: {"type":"ping","echo":"${b64(key)}","short":"${key.slice(-11)}"}\n\n`
      + `event: secret_event\n: note ${key}\ndata: {"type":"secret_event","k":"${key.slice(0, 20)}"}\n\n`
      + frame('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
      + frame('content_block_delta', { index: 0, delta: { type: 'text_delta', text: `your key: ${key.toUpperCase()}` } })
      + frame('content_block_stop', { index: 0 })
      + frame('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 1 } })
      + frame('message_stop', {}));
  },
  json200_secrets: (key, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      id: `msg_${key.slice(3)}`, type: 'message', role: 'assistant', model: MODEL,
      content: [{ type: 'text', text: `key ${key} or ${b64(key)}` }], stop_reason: 'end_turn', stop_sequence: null,
      usage: { input_tokens: 10, output_tokens: 1 },
    }));
  },
  retry_headers_date: (_key, res) => {
    res.writeHead(429, { 'content-type': 'application/json', 'retry-after': 'Sunday, 06-Nov-94 08:49:37 GMT', 'x-should-retry': 'TRUE' });
    res.end(JSON.stringify({ type: 'error', error: { type: 'rate_limit_error', message: 'slow down' } }));
  },
};

describe('upstream text outside the answer never carries the credential (SSE error, 2xx JSON error, retry headers)', () => {
  let echo: { url: string; close(): Promise<void> };
  let gw: GatewayStack;
  before(async () => {
    const server = createServer(async (req: IncomingMessage, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      const mode = /\[\[echo (\w+)\]\]/.exec(body)?.[1] ?? '';
      ECHOES[mode]!(String(req.headers['x-api-key']), res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    echo = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
    };
    gw = await startGateway({ upstreamUrl: () => echo.url });
  });
  after(async () => {
    await gw?.close();
    await echo?.close();
  });

  const post = (secret: string, mode: string, stream: boolean) => fetch(`${gw.gatewayUrl}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': secret },
    body: JSON.stringify({ model: MODEL, max_tokens: 20, stream, messages: [{ role: 'user', content: `[[echo ${mode}]]` }] }),
  });

  test('SSE error event echoing the upstream key (before or after text, any case or base64): re-rendered by the gateway, redacted, exact bytes', async () => {
    const c = await gw.customer();
    const auth = await post(c.secret, 'sse_auth_error', true);
    const id = auth.headers.get('request-id')!;
    assert.equal(await auth.text(), START + 'event: error\ndata: ' + JSON.stringify({
      type: 'error',
      error: { type: 'api_error', code: 'upstream_error', message: "Upstream provider refused the gateway's account (authentication_error); the gateway operator must fix its upstream configuration" },
      request_id: id,
    }) + '\n\n');
    const over = await post(c.secret, 'sse_overloaded_after_text', true);
    const overId = over.headers.get('request-id')!;
    assert.equal(await over.text(), START.replaceAll('\n', '\r\n') + TEXT + 'event: error\ndata: ' + JSON.stringify({
      type: 'error',
      error: { type: 'overloaded_error', code: 'overloaded', // base64 of `key=<key>`: only the 3-byte groups that mix the key with its neighbours remain
      // ("key=sk" → a2V5PXNr, the last "9" → OQ==), a few bits of the key's known prefix and last digit
      message: 'Overloaded ([redacted] [redacted] [redacted] a2V5PXNr[redacted]OQ==)' },
      request_id: overId,
    }) + '\n\n');
    // refunded (STREAM_ERROR_BILLING=refund), status stream_error
    for (const rid of [id, overId]) {
      const e = await gw.usageOf(rid);
      assert.deepEqual([e.status, e.cost_micros], ['stream_error', '0']);
    }
  });

  test('a 2xx JSON body whose type is error: an upstream error (redacted, never verbatim), not charged', async () => {
    const c = await gw.customer();
    const over = await post(c.secret, 'json200_error', false);
    assert.equal(over.status, 503);
    const overBody = await over.json() as { error: Record<string, string> };
    assert.deepEqual(overBody.error, { type: 'overloaded_error', code: 'overloaded', message: 'overloaded for [redacted]' });
    const auth = await post(c.secret, 'json200_auth_error', false);
    assert.equal(auth.status, 503);
    assert.equal(auth.headers.get('x-should-retry'), 'false');
    const authBody = await auth.json() as { error: Record<string, string> };
    assert.deepEqual(authBody.error, {
      type: 'api_error', code: 'upstream_error',
      message: "Upstream provider refused the gateway's account (authentication_error); the gateway operator must fix its upstream configuration",
    });
    for (const res of [over, auth]) {
      const e = await gw.usageOf(res.headers.get('request-id')!);
      assert.deepEqual([e.status, e.cost_micros, e.http_status], ['upstream_error', '0', 503]);
    }
  });

  test('an upstream error echoing a fragment of the upstream key (≥ 12 characters, any case) or a random token: redacted, exact bytes', async () => {
    const c = await gw.customer();
    // UPSTREAM_KEY = sk-ant-upstream-gateway-test-0123456789: "ant-upstream-gateway-test-0123456789" (the key
    // without sk-) and "EST-0123456789" (14, upper case) are fragments; "-0123456789" (11) is too short to
    // say anything; "AbCdEfGh0123456789AbCdEfGh01234567" (34 mixed) is the shared high-entropy rule.
    const want = 'bad key [redacted]; tail [redacted]; short -0123456789; token [redacted]';
    const json = await post(c.secret, 'error_fragment', false);
    assert.equal(json.status, 400);
    assert.deepEqual((await json.json() as { error: unknown }).error, { type: 'invalid_request_error', code: 'invalid_request', message: want });
    const sse = await post(c.secret, 'sse_error_fragment', true);
    assert.equal(await sse.text(), START + 'event: error\ndata: ' + JSON.stringify({
      type: 'error', error: { type: 'overloaded_error', code: 'overloaded', message: want }, request_id: sse.headers.get('request-id'),
    }) + '\n\n');
  });

  test('the upstream key in any non-error SSE event (comment, id:, unknown event, ping, message_start) or a JSON answer: redacted, comments dropped, billed as usual, exact bytes', async () => {
    const c = await gw.customer();
    const sse = await post(c.secret, 'sse_secrets', true);
    // The comment-only event is gone, the comment line inside secret_event too; the whole key,
    // upper-cased, base64 and without sk- (36) are each one [redacted]; its first 20 keep the public
    // `sk-` (fragments come from the part after it); 11 characters stay.
    assert.equal(await sse.text(), ''
      + `event: message_start\nid: [redacted]\ndata: ${JSON.stringify({ type: 'message_start', message: {
        id: 'msg_[redacted]', type: 'message', role: 'assistant', model: MODEL, content: [], stop_reason: null, stop_sequence: null,
        usage: { input_tokens: 10, output_tokens: 1 } } })}\n\n`
      + 'event: ping\ndata: {"type":"ping","echo":"[redacted]","short":"-0123456789"}\n\n'
      + 'event: secret_event\ndata: {"type":"secret_event","k":"sk-[redacted]"}\n\n'
      + frame('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
      + frame('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'your key: [redacted]' } })
      + frame('content_block_stop', { index: 0 })
      + frame('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 1 } })
      + frame('message_stop', {}));
    const json = await post(c.secret, 'json200_secrets', false);
    assert.equal(json.status, 200);
    assert.equal(await json.text(), JSON.stringify({
      id: 'msg_[redacted]', type: 'message', role: 'assistant', model: MODEL,
      content: [{ type: 'text', text: 'key [redacted] or [redacted]' }], stop_reason: 'end_turn', stop_sequence: null,
      usage: { input_tokens: 10, output_tokens: 1 },
    }));
    // sonnet-4-6: 10 input × 180 + 1 output × 900 = 2,700 µc each; redaction changes no number
    for (const res of [sse, json]) {
      const e = await gw.usageOf(res.headers.get('request-id')!);
      assert.deepEqual([e.status, e.cost_micros], ['ok', '2700']);
    }
  });

  test('upstream 429 retry headers: retry-after only as delta-seconds or an HTTP-date, x-should-retry only true/false', async () => {
    const c = await gw.customer();
    const echoed = await post(c.secret, 'retry_headers_echo', false);
    assert.equal(echoed.status, 429);
    assert.equal(echoed.headers.get('retry-after'), null);
    assert.equal(echoed.headers.get('x-should-retry'), null);
    assert.ok(!(await echoed.text()).includes(UPSTREAM_KEY));
    const dated = await post(c.secret, 'retry_headers_date', false);
    assert.equal(dated.status, 429);
    // RFC 850 date re-rendered in the IMF-fixdate form; TRUE lower-cased
    assert.equal(dated.headers.get('retry-after'), 'Sun, 06 Nov 1994 08:49:37 GMT');
    assert.equal(dated.headers.get('x-should-retry'), 'true');
  });
});
