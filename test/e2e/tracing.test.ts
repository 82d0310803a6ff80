// One trace per request across everything (embedded mode, in process): the SDK's request →
// the gateway's server span and its children (limits, hold, upstream, settle, publish usage) →
// through the event's headers → the ledger apply and warehouse insert spans. Spans are
// collected by an InMemorySpanExporter handed to startTollgate.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InMemorySpanExporter, SpanKind, type ReadableSpan } from '@tollgate/telemetry';
import { loadConfig } from '@tollgate/config';
import { startTollgate, type Tollgate } from '@tollgate/tollgate';
import { ADMIN_TOKEN, customer, simRequests, startSimulator, UPSTREAM_KEY } from '../support/tollgate.ts';

const exporter = new InMemorySpanExporter();
let tollgate: Tollgate;
let sim: Awaited<ReturnType<typeof startSimulator>>;
let c: Awaited<ReturnType<typeof customer>>;

before(async () => {
  sim = await startSimulator();
  const env = {
    DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-tracing-')), HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent',
    UPSTREAM_URL: sim.simUrl, UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN, WAREHOUSE_FLUSH_MS: '20',
  };
  tollgate = await startTollgate(loadConfig(env), { spanExporter: exporter });
  c = await customer(tollgate.url!, 10);
});
after(async () => {
  await tollgate?.close();
  await sim?.sim.close();
});

const user = (text: string) => [{ role: 'user' as const, content: text }];
const attr = (s: ReadableSpan, name: string) => s.attributes[name];

/**
 * The spans of one request, once all of them have ended: the server span ends on the socket's
 * close, which may come a moment after the client has its answer, so this polls a bounded
 * number of times (no timing is asserted).
 */
async function spansOf(requestId: string): Promise<{ server: ReadableSpan; trace: ReadableSpan[] }> {
  for (let i = 0; i < 200; i++) {
    await tollgate.drain();
    const spans = exporter.getFinishedSpans();
    const server = spans.find((s) => s.kind === SpanKind.SERVER && attr(s, 'tollgate.request.id') === requestId);
    const eventSpans = spans.filter((s) => attr(s, 'tollgate.event.id') === requestId);
    const names = new Set(eventSpans.map((s) => s.name));
    if (server && names.has('ledger apply') && names.has('warehouse insert')) {
      const traceId = server.spanContext().traceId;
      return { server, trace: spans.filter((s) => s.spanContext().traceId === traceId) };
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the spans of ${requestId} never all ended`);
}

function one(spans: ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name);
  assert.equal(found.length, 1, `exactly one ${name} span in the trace (got ${found.map((s) => s.name).join(', ')})`);
  return found[0]!;
}

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

function assertOneTrace(requestId: string, server: ReadableSpan, trace: ReadableSpan[], stream: boolean) {
  const traceId = server.spanContext().traceId;
  assert.equal(server.name, 'POST /v1/messages');
  // The Anthropic SDK instruments itself through the global provider startTracing registers, so
  // in this one process its client span (same trace) is the server span's parent; else: root.
  const parent = trace.find((s) => s.spanContext().spanId === parentOf(server));
  if (parentOf(server) !== undefined) assert.equal(parent?.kind, SpanKind.CLIENT, 'the server span\'s parent is the caller\'s client span');
  assert.equal(attr(server, 'http.response.status_code'), 200);
  assert.equal(attr(server, 'tollgate.account.id'), c.accountId);
  assert.equal(attr(server, 'tollgate.key.id'), c.keyId);
  assert.equal(attr(server, 'gen_ai.request.model'), 'claude-sonnet-4-5-20250929');
  assert.equal(attr(server, 'tollgate.stream'), stream);

  const serverId = server.spanContext().spanId;
  // The upstream call is a GenAI client span named `chat <model sent upstream>`.
  const chat = 'chat claude-sonnet-4-5-20250929';
  for (const name of ['limits', 'hold', chat, 'settle', 'publish usage']) {
    assert.equal(parentOf(one(trace, name)), serverId, `${name} is a child of the server span`);
  }
  const upstream = one(trace, chat);
  assert.equal(upstream.kind, SpanKind.CLIENT);
  assert.equal(attr(upstream, 'http.response.status_code'), 200);
  assert.equal(typeof attr(upstream, 'tollgate.upstream.request_id'), 'string', 'the upstream request id is on the span');
  assert.equal(one(trace, 'hold').attributes['tollgate.hold.result'], 'held');

  const publish = one(trace, 'publish usage');
  assert.equal(publish.kind, SpanKind.PRODUCER);
  const ledger = one(trace, 'ledger apply');
  const warehouse = one(trace, 'warehouse insert');
  for (const consumer of [ledger, warehouse]) {
    assert.equal(consumer.spanContext().traceId, traceId);
    assert.equal(consumer.kind, SpanKind.CONSUMER);
    assert.equal(parentOf(consumer), publish.spanContext().spanId, `${consumer.name} is a child of the producer span`);
    assert.equal(attr(consumer, 'tollgate.event.id'), requestId);
  }
  assert.equal(attr(ledger, 'tollgate.ledger.verdict'), 'applied');
  return upstream;
}

describe('tracing, embedded', () => {
  test('one JSON request: server, upstream, ledger apply and warehouse insert share one trace id', async () => {
    const msg = await c.client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 32, messages: user('trace me [[sim input=100 output=5]]'),
    });
    const requestId = msg._request_id!;
    const { server, trace } = await spansOf(requestId);
    const upstream = assertOneTrace(requestId, server, trace, false);

    // The upstream saw the upstream span's context (not the client's, and no other trace).
    const [seen] = await simRequests(sim.simUrl, 1);
    const traceparent = seen!.headers.traceparent;
    assert.equal(traceparent, `00-${upstream.spanContext().traceId}-${upstream.spanContext().spanId}-01`);
  });

  test('one streamed request: the same shape, the upstream span lasts to the end of the stream', async () => {
    const stream = c.client.messages.stream({
      model: 'claude-sonnet-4-5', max_tokens: 32, messages: user('stream me [[sim input=50 output=20]]'),
    });
    await stream.finalMessage();
    const requestId = stream.request_id!;
    const { server, trace } = await spansOf(requestId);
    const upstream = assertOneTrace(requestId, server, trace, true);
    assert.ok(upstream.events.some((e) => e.name === 'first byte'), 'the upstream span marks the first byte');
  });

  test('an incoming traceparent is joined: the request becomes part of the caller\'s trace', async () => {
    const callerTrace = '0af7651916cd43dd8448eb211c80319c';
    const res = await fetch(`${tollgate.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': c.secret, 'content-type': 'application/json',
        traceparent: `00-${callerTrace}-b7ad6b7169203331-01`,
      },
      body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: user('[[sim input=1 output=1]]') }),
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const { server, trace } = await spansOf(res.headers.get('request-id')!);
    assert.equal(server.spanContext().traceId, callerTrace);
    assert.equal(parentOf(server), 'b7ad6b7169203331');
    assert.ok(trace.some((s) => s.name === 'warehouse insert'));
  });

  test('no secret in any span: not the customer key, the admin token or the upstream key', async () => {
    // A refused request too (402 path) and an admin call, whose bearer token must not leak either.
    const broke = await customer(tollgate.url!, 0, 'broke');
    await assert.rejects(broke.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: user('x') }),
      (err: { status?: number }) => err.status === 402);
    await tollgate.drain();
    const spans = exporter.getFinishedSpans();
    assert.ok(spans.length > 10, 'spans were recorded');
    const texts: string[] = [];
    for (const s of spans) {
      texts.push(s.name, JSON.stringify(s.attributes), JSON.stringify(s.events), JSON.stringify(s.resource.attributes),
        JSON.stringify(s.links), s.status.message ?? '');
    }
    const all = texts.join('\n');
    for (const [what, secret] of [['customer key', c.secret], ['refused customer key', broke.secret], ['admin token', ADMIN_TOKEN], ['upstream key', UPSTREAM_KEY]] as const) {
      assert.ok(secret.length > 10);
      assert.ok(!all.includes(secret), `${what} appears in a span`);
    }
    // The refused hold is visible as such.
    assert.ok(spans.some((s) => s.name === 'hold' && s.attributes['tollgate.hold.result'] === 'insufficient_credits'));
  });
});
