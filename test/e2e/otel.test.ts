// Standard OpenTelemetry end to end: an embedded Tollgate configured only through the OTEL_*
// environment exports to an OTLP/JSON receiver (node:http, here in the test) as a collector
// would see it: spans within a few OTEL_BSP_SCHEDULE_DELAYs, the configured headers, resource
// attributes, GenAI attributes with exact token counts, Prometheus metrics over OTLP; and
// nothing at all when sampled off or disabled. The SDK reads the process environment, so each
// Tollgate here is started with the variables set and closed (which flushes) before the next.
import { mkdtempSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '@tollgate/config';
import { startTollgate, type Tollgate } from '@tollgate/tollgate';
import { ADMIN_TOKEN, customer, startSimulator, UPSTREAM_KEY } from '../support/tollgate.ts';

interface Received { path: string; headers: IncomingHttpHeaders; body: OtlpJson }
interface OtlpJson { resourceSpans?: ResourceBlock[]; resourceMetrics?: ResourceBlock[] }
interface KeyValue { key: string; value: AnyValue }
interface AnyValue { stringValue?: string; intValue?: number | string; boolValue?: boolean; doubleValue?: number; arrayValue?: { values?: AnyValue[] } }
interface ResourceBlock {
  resource: { attributes: KeyValue[] };
  scopeSpans?: Array<{ spans: OtlpSpan[] }>;
  scopeMetrics?: Array<{ metrics: Array<{ name: string; sum?: { dataPoints: Array<{ attributes: KeyValue[]; asDouble?: number; asInt?: number | string }> } }> }>;
}
interface OtlpSpan { traceId: string; spanId: string; name: string; attributes: KeyValue[] }

/** An OTLP/HTTP receiver that keeps every JSON export it is sent and answers 200 `{}`. */
class Receiver {
  readonly received: Received[] = [];
  readonly server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: OtlpJson = {};
      try { body = JSON.parse(text) as OtlpJson; } catch { body = { resourceSpans: [] }; }
      this.received.push({ path: req.url ?? '', headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  url = '';
  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }
  traces(): Received[] { return this.received.filter((r) => r.path === '/v1/traces'); }
  metrics(): Received[] { return this.received.filter((r) => r.path === '/v1/metrics'); }
  spans(): Array<OtlpSpan & { resource: Record<string, unknown> }> {
    return this.traces().flatMap((r) => (r.body.resourceSpans ?? []).flatMap((rs) =>
      (rs.scopeSpans ?? []).flatMap((ss) => ss.spans.map((s) => ({ ...s, resource: attrs(rs.resource.attributes) })))));
  }
  clear(): void { this.received.length = 0; }
}

function value(v: AnyValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(value);
  return undefined;
}
const attrs = (kvs: KeyValue[] = []): Record<string, unknown> => Object.fromEntries(kvs.map((kv) => [kv.key, value(kv.value)]));

/** Polls `check` every 50 ms, at most `tries` times; no timing is asserted, only that it comes. */
async function eventually<T>(what: string, check: () => T | undefined, tries = 200): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} never arrived`);
}

const receiver = new Receiver();
let sim: Awaited<ReturnType<typeof startSimulator>>;

before(async () => {
  sim = await startSimulator();
  await receiver.listen();
});
after(async () => {
  // The exporters keep their connections alive; they are ours to end.
  receiver.server.closeAllConnections();
  await new Promise((r) => receiver.server.close(r));
  await sim?.sim.close();
});

/**
 * An embedded Tollgate whose OTEL_* variables are in the process environment while it runs (the
 * SDK reads them there), and in its config; they are removed again by `close`.
 */
async function tollgateWith(otel: Record<string, string>): Promise<{ tollgate: Tollgate; close(): Promise<void> }> {
  for (const [k, v] of Object.entries(otel)) process.env[k] = v;
  const env = {
    DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-otel-')), HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent',
    UPSTREAM_URL: sim.simUrl, UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN, WAREHOUSE_FLUSH_MS: '20', GATEWAY_ID: 'otel-gw-1',
    ...otel,
  };
  try {
    const tollgate = await startTollgate(loadConfig(env));
    return {
      tollgate,
      close: async () => {
        try { await tollgate.close(); } finally { for (const k of Object.keys(otel)) delete process.env[k]; }
      },
    };
  } catch (err) {
    for (const k of Object.keys(otel)) delete process.env[k];
    throw err;
  }
}

const user = (text: string) => [{ role: 'user' as const, content: text }];
const BASE = (url: string): Record<string, string> => ({
  OTEL_EXPORTER_OTLP_ENDPOINT: url,
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  OTEL_BSP_SCHEDULE_DELAY: '200',
});

describe('OpenTelemetry from the standard environment (embedded)', () => {
  test('OTLP/JSON export: the spans of a request arrive within the batch delay, with the headers, resource attributes and exact GenAI usage', async () => {
    receiver.clear();
    const t = await tollgateWith({
      ...BASE(receiver.url),
      // a percent-encoded value, as the spec writes them: "Bearer abc=1"
      OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-key=collector-secret-42,authorization=Bearer%20abc%3D1',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=otel-test,team=billing',
      OTEL_SERVICE_NAME: 'tollgate-otel',
    });
    try {
      const c = await customer(t.tollgate.url!, 10);
      const msg = await c.client.messages.create({
        model: 'claude-sonnet-4-5', max_tokens: 64,
        messages: user('count me [[sim input=100 output=5 cache_read=30 cache_write_5m=20]]'),
      });
      // The batch processor exports every 200 ms; the spans are only awaited, never timed.
      const server = await eventually('the server span', () => receiver.spans().find((s) =>
        s.name === 'POST /v1/messages' && attrs(s.attributes)['tollgate.request.id'] === msg._request_id));
      const chat = await eventually('the chat span', () => receiver.spans().find((s) =>
        s.traceId === server.traceId && s.name === 'chat claude-sonnet-4-5-20250929'));

      const exportOfChat = receiver.traces().find((r) => JSON.stringify(r.body).includes(chat.spanId))!;
      assert.equal(exportOfChat.headers['content-type'], 'application/json', 'http/json, as OTEL_EXPORTER_OTLP_PROTOCOL says');
      assert.equal(exportOfChat.headers['x-collector-key'], 'collector-secret-42');
      assert.equal(exportOfChat.headers.authorization, 'Bearer abc=1');

      assert.equal(chat.resource['service.name'], 'tollgate-otel');
      assert.equal(chat.resource['deployment.environment.name'], 'otel-test');
      assert.equal(chat.resource['team'], 'billing');
      assert.equal(chat.resource['service.instance.id'], 'otel-gw-1');
      assert.equal(chat.resource['tollgate.roles'], 'gateway,aggregator,control');

      const a = attrs(chat.attributes);
      assert.equal(a['gen_ai.operation.name'], 'chat');
      assert.equal(a['gen_ai.provider.name'], 'anthropic');
      assert.equal(a['gen_ai.system'], 'anthropic');
      assert.equal(a['gen_ai.request.model'], 'claude-sonnet-4-5-20250929');
      assert.equal(a['gen_ai.request.max_tokens'], 64);
      assert.equal(a['gen_ai.response.model'], msg.model);
      assert.equal(a['gen_ai.response.id'], msg.id);
      assert.deepEqual(a['gen_ai.response.finish_reasons'], [msg.stop_reason]);
      // 100 uncached + 30 read from the cache + 20 written to it: every input token
      assert.equal(a['gen_ai.usage.input_tokens'], 150);
      assert.equal(a['gen_ai.usage.output_tokens'], 5);
      assert.equal(a['gen_ai.usage.cache_read.input_tokens'], 30);
      assert.equal(a['gen_ai.usage.cache_creation.input_tokens'], 20);

      // Nothing secret left the process in an export: not the customer key, the upstream key or the admin token.
      const all = JSON.stringify(receiver.traces().map((r) => r.body));
      for (const secret of [c.secret, UPSTREAM_KEY, ADMIN_TOKEN]) assert.ok(!all.includes(secret));
      assert.ok(!all.includes('count me'), 'no prompt text in any span');
    } finally {
      await t.close();
    }
  });

  test('sampler always_off: a request is served and not one span is exported, even at shutdown', async () => {
    receiver.clear();
    const t = await tollgateWith({ ...BASE(receiver.url), OTEL_TRACES_SAMPLER: 'always_off' });
    const c = await customer(t.tollgate.url!, 10);
    const msg = await c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: user('[[sim input=10 output=2]]') });
    assert.equal(msg.usage.output_tokens, 2);
    // Shutdown flushes the batch processor: whatever was recorded is exported by the time it resolves.
    await t.close();
    // Names only in the message: a diff of whole exported spans is slow to render.
    assert.deepEqual(receiver.spans().map((s) => s.name), []);
  });

  test('OTEL_SDK_DISABLED=true: with an endpoint and OTLP metrics configured, nothing at all is sent', async () => {
    receiver.clear();
    const t = await tollgateWith({
      ...BASE(receiver.url), OTEL_SDK_DISABLED: 'true', OTEL_METRICS_EXPORTER: 'otlp', OTEL_METRIC_EXPORT_INTERVAL: '100',
    });
    assert.equal(t.tollgate.config.telemetry.traces, false);
    const c = await customer(t.tollgate.url!, 10);
    await c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: user('[[sim input=10 output=2]]') });
    await t.close();
    assert.deepEqual(receiver.received.map((r) => r.path), []);
  });

  test('OTEL_METRICS_EXPORTER=otlp: the Prometheus counters arrive over OTLP with their names, labels and values', async () => {
    receiver.clear();
    const t = await tollgateWith({ ...BASE(receiver.url), OTEL_METRICS_EXPORTER: 'otlp', OTEL_METRIC_EXPORT_INTERVAL: '200' });
    try {
      const c = await customer(t.tollgate.url!, 10);
      await c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: user('[[sim input=10 output=2]]') });
      const point = await eventually('tollgate_requests_total over OTLP', () => {
        for (const r of [...receiver.metrics()].reverse()) {
          for (const rm of r.body.resourceMetrics ?? []) {
            for (const sm of rm.scopeMetrics ?? []) {
              const m = sm.metrics.find((x) => x.name === 'tollgate_requests_total');
              const p = m?.sum?.dataPoints.find((d) => attrs(d.attributes)['route'] === '/v1/messages');
              if (p) return p;
            }
          }
        }
        return undefined;
      });
      assert.deepEqual(attrs(point.attributes), { route: '/v1/messages', status: '200', model: 'claude-sonnet-4-5-20250929', stream: 'false' });
      assert.equal(Number(point.asDouble ?? point.asInt), 1);
    } finally {
      await t.close();
    }
  });

  test('a bad OTEL_* value stops the start, naming the variable, and an OTLP header value is never echoed', () => {
    assert.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/xml' }),
      (err: Error) => err.message.includes('OTEL_EXPORTER_OTLP_PROTOCOL: expected one of http/protobuf, http/json, grpc'));
    assert.throws(() => loadConfig({ OTEL_TRACES_SAMPLER: 'sometimes' }), (err: Error) => err.message.includes('OTEL_TRACES_SAMPLER: expected one of always_on'));
    assert.throws(() => loadConfig({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1.5' }),
      (err: Error) => err.message.includes('OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1'));
    assert.throws(() => loadConfig({ OTEL_BSP_SCHEDULE_DELAY: '-5' }), (err: Error) => err.message.includes('OTEL_BSP_SCHEDULE_DELAY: expected a whole number'));
    assert.throws(() => loadConfig({ OTEL_SDK_DISABLED: 'yes' }), (err: Error) => err.message.includes('OTEL_SDK_DISABLED: expected true or false'));
    assert.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_HEADERS: 'x-key=secret-value-1,justsecret' }), (err: Error) =>
      err.message.includes('OTEL_EXPORTER_OTLP_HEADERS: OTLP headers: item 2 is not key=value') && !err.message.includes('secret'));
    assert.throws(() => loadConfig({ OTEL_BSP_MAX_QUEUE_SIZE: '100', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '200' }),
      (err: Error) => err.message.includes('OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must be at most OTEL_BSP_MAX_QUEUE_SIZE (100)'));
    assert.deepEqual(loadConfig({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs,a=b%2Cc' }).telemetry.resourceAttributes, { 'service.name': 'from-attrs', a: 'b,c' });
    assert.equal(loadConfig({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs' }).telemetry.serviceName, 'from-attrs');
    assert.equal(loadConfig({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs', OTEL_SERVICE_NAME: 'named' }).telemetry.serviceName, 'named');
    // OTel spec: OTEL_TRACES_EXPORTER is a comma-separated list; a name with no installed exporter
    // is refused by name; `none` anywhere turns tracing off; a sampler argument a sampler does not take is ignored.
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' };
    assert.equal(loadConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'otlp, console' }).telemetry.traces, true);
    assert.equal(loadConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'zipkin' }).telemetry.traces, true);
    assert.equal(loadConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'otlp,none' }).telemetry.traces, false);
    assert.throws(() => loadConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'otlp,jaeger' }),
      (err: Error) => err.message.includes('OTEL_TRACES_EXPORTER: jaeger is not an exporter Tollgate has installed; expected a comma-separated list of otlp, zipkin, console, none'));
    assert.equal(loadConfig({ ...endpoint, OTEL_TRACES_SAMPLER_ARG: '0.5' }).telemetry.traces, true, 'parentbased_always_on ignores the argument');
    assert.equal(loadConfig({ ...endpoint, OTEL_TRACES_SAMPLER: 'always_on', OTEL_TRACES_SAMPLER_ARG: 'abc' }).telemetry.traces, true);
    assert.equal(loadConfig({}).telemetry.traces, false, 'no endpoint: tracing off');
    assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }).telemetry.traces, true);
  });
});
