// Fix I.3: headers set on the reply before the stream's hijack (the max_tokens clamp, rate-limit,
// request-id) reach the client on the SSE head too, not only on JSON answers.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type GatewayStack } from './support.ts';

let stack: GatewayStack;
before(async () => { stack = await startGateway(); });
after(async () => stack.close());

/** The same request as JSON and as a stream, padded so both bodies have the same byte length (the input bound). */
const body = (stream: boolean) => JSON.stringify({
  model: 'claude-haiku-4-5', max_tokens: 4096, stream, messages: [{ role: 'user', content: '[[sim output=5]]' }],
}) + (stream ? ' ' : '');

test('any header set before the hijack (clamp, request-id) is on the SSE head as on the JSON answer, exact values', async () => {
  // haiku-4-5, 120 µc per output token, input side at its dearest (cache write 1h, 48 µc/token):
  // JSON: input bound 119 tokens → base 5,712 µc, (200,000 − 5,712) / 120 = 1,619.07… → 1,619;
  // stream: input bound 132 tokens → base 6,336 µc, (200,000 − 6,336) / 120 = 1,613.8… → 1,613.
  const c = await stack.customer(200_000n);
  const heads: Record<string, Headers> = {};
  for (const stream of [false, true]) {
    const res = await fetch(`${stack.gatewayUrl}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': c.secret }, body: body(stream),
    });
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    heads[String(stream)] = res.headers;
  }
  assert.deepEqual([Buffer.byteLength(body(true)), Buffer.byteLength(body(false))], [119, 119]);
  assert.equal(heads['true']!.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.match(heads['true']!.get('request-id')!, /^req_/);
  assert.equal(heads['false']!.get('tollgate-max-tokens-clamped'), '4096->1619');
  assert.equal(heads['true']!.get('tollgate-max-tokens-clamped'), '4096->1613');
});
