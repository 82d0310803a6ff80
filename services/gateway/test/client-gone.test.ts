// Fix I.4: the client leaves, then the upstream fails: the status keeps the upstream's outcome
// (`upstream_error`, 0 µc) but the event says no reply reached the client (anomaly client_gone).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type GatewayStack } from './support.ts';

const MODEL = 'claude-sonnet-4-5';
let gw: GatewayStack;
let closeUpstream: () => Promise<void>;
/** Upstream replies held until the test lets them go. */
const waiting: ServerResponse[] = [];
let arrived: () => void = () => {};

before(async () => {
  const server = createServer(async (req, res) => {
    for await (const _ of req) { /* read the body */ }
    waiting.push(res);
    arrived();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closeUpstream = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
  gw = await startGateway({ upstreamUrl: () => url });
});
after(async () => { await gw?.close(); await closeUpstream?.(); });

/** Sends a request to `stack`, aborts it once the upstream holds it, lets the gateway see the close; returns the held upstream reply. */
async function leave(stack: GatewayStack, secret: string, stream: boolean): Promise<ServerResponse> {
  const held = new Promise<void>((r) => { arrived = r; });
  const ac = new AbortController();
  const p = fetch(`${stack.gatewayUrl}/v1/messages`, {
    method: 'POST', signal: ac.signal,
    headers: { 'content-type': 'application/json', 'x-api-key': secret },
    body: JSON.stringify({ model: MODEL, max_tokens: 100, stream, messages: [{ role: 'user', content: 'hi' }] }),
  }).catch(() => null);
  await held;
  ac.abort();
  await p;
  await new Promise((r) => setTimeout(r, 200)); // the gateway's socket sees the close
  return waiting.shift()!;
}

/** The usage events of `stack` not in `known`, once there are `n`. */
async function newEvents(stack: GatewayStack, known: Set<string>, n: number) {
  let ids: string[] = [];
  for (let i = 0; i < 400 && ids.length < n; i++) {
    ids = [...stack.usage.keys()].filter((k) => !known.has(k));
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(ids.length, n);
  return Promise.all(ids.map((id) => stack.usageOf(id)));
}

test('client already gone, then the upstream fails (JSON 500, SSE cut before any usage): status upstream_error, 0 µc, anomaly client_gone', async () => {
  const c = await gw.customer();
  const known = new Set(gw.usage.keys());
  // JSON: the upstream answers 500 after the client left; the 503 it maps to is never sent.
  const json = await leave(gw, c.secret, false);
  json.writeHead(500, { 'content-type': 'application/json' });
  json.end(JSON.stringify({ type: 'error', error: { type: 'api_error', message: 'boom' } }));
  // SSE: headers, then the upstream closes before any event.
  const sse = await leave(gw, c.secret, true);
  sse.writeHead(200, { 'content-type': 'text/event-stream' });
  sse.end();
  const flat = await newEvents(gw, known, 2);
  assert.deepEqual(
    flat.map((e) => [e.stream, e.status, e.http_status, e.cost_micros, e.anomalies]).sort((a, b) => Number(a[0]) - Number(b[0])),
    [[false, 'upstream_error', 500, '0', ['client_gone']], [true, 'upstream_error', 200, '0', ['client_gone']]],
  );
});

test('client already gone, then the process stops (shutdown cuts the upstream read of a JSON request): status upstream_error 503, 0 µc, anomaly client_gone', async () => {
  const stop = new AbortController();
  const url = `http://127.0.0.1:${new URL(gw.deps.upstream.url).port}`;
  const own = await startGateway({ upstreamUrl: () => url, shutdown: stop.signal });
  try {
    const c = await own.customer();
    const known = new Set(own.usage.keys());
    const held = await leave(own, c.secret, false);
    stop.abort();
    const [e] = await newEvents(own, known, 1);
    assert.deepEqual([e!.status, e!.http_status, e!.cost_micros, e!.anomalies], ['upstream_error', 503, '0', ['client_gone']]);
    held.destroy();
  } finally {
    await own.close();
  }
});
