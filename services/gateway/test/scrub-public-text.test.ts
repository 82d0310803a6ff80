// Fix I.1: the secret scrubber redacts only what is secret. Upstream output is scrubbed for the
// upstream key alone (the admin/finance tokens never go upstream), and fragments come from the
// key's random part only: the public head every Anthropic key shares stays in answers.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type GatewayStack } from './support.ts';

const MODEL = 'claude-sonnet-4-6';
// A key of the real shape: public head `sk-ant-api03-`, then the random part.
const KEY = 'sk-ant-api03-Qw7xZ9rTb2LmN4vK8pHc1YdS6fJ3uGa5eWi0oXn-Ez_MqRtBvCy2Dh4AAA';
const FRAGMENT = 'Qw7xZ9rTb2LmN4vK'; // 16 characters of the random part: a real leak
const ADMIN = 'readable-operator-token';
const TEXT = 'Run `export ANTHROPIC_API_KEY=sk-ant-api03-...`; every key starts with sk-ant-api03- '
  + `and a readable-operator-token is just words; leaked: ${FRAGMENT}!`;
const TOOL_INPUT = { command: 'export ANTHROPIC_API_KEY=sk-ant-api03-YOUR_KEY_HERE' };

const frame = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const SSE = frame('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model: MODEL, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } } })
  + frame('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
  + frame('content_block_delta', { index: 0, delta: { type: 'text_delta', text: TEXT } })
  + frame('content_block_stop', { index: 0 })
  + frame('content_block_start', { index: 1, content_block: { type: 'tool_use', id: 'toolu_1', name: 'bash', input: {} } })
  + frame('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: JSON.stringify(TOOL_INPUT) } })
  + frame('content_block_stop', { index: 1 })
  + frame('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 1 } })
  + frame('message_stop', {});
const JSON_ANSWER = JSON.stringify({
  id: 'msg_2', type: 'message', role: 'assistant', model: MODEL,
  content: [{ type: 'text', text: TEXT }, { type: 'tool_use', id: 'toolu_2', name: 'bash', input: TOOL_INPUT }],
  stop_reason: 'tool_use', stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 },
});

let gw: GatewayStack;
let close: () => Promise<void>;
before(async () => {
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    if ((JSON.parse(body) as { stream?: boolean }).stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(SSE);
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON_ANSWER);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
  gw = await startGateway({ upstream: { url, apiKey: KEY, redact: [ADMIN], timeoutMs: 30_000 } });
});
after(async () => { await gw?.close(); await close?.(); });

const post = (secret: string, stream: boolean) => fetch(`${gw.gatewayUrl}/v1/messages`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-api-key': secret },
  body: JSON.stringify({ model: MODEL, max_tokens: 20, stream, messages: [{ role: 'user', content: 'how do I set my key?' }] }),
});

test('redaction of text that is not secret: the public key head and operator-token words pass unchanged, a fragment of the random part is still redacted (JSON and SSE, text and tool_use input), exact bytes', async () => {
  const c = await gw.customer();
  const json = await post(c.secret, false);
  assert.equal(json.status, 200);
  // Only the 16-character fragment changes; `sk-ant-api03-` (13, the public head) and the admin token's words stay.
  assert.equal(await json.text(), JSON_ANSWER.replace(FRAGMENT, '[redacted]'));
  const sse = await post(c.secret, true);
  assert.equal(sse.status, 200);
  assert.equal(await sse.text(), SSE.replace(FRAGMENT, '[redacted]'));
  assert.ok(SSE.includes(FRAGMENT) && SSE.split('sk-ant-api03-').length === 4);
  // sonnet-4-6: 10 input × 180 + 1 output × 900 = 2,700 µc each
  for (const res of [json, sse]) {
    const e = await gw.usageOf(res.headers.get('request-id')!);
    assert.deepEqual([e.status, e.cost_micros], ['ok', '2700']);
  }
});
