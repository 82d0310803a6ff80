// Secret leak in spans: the server span of every request carries `url.path`, and a client that
// puts a key in the path (`GET /v1/models/sk-…`, a mistyped SDK base URL) must not have it
// exported, just as the log line redacts it (`redactUrl`). Real OpenTelemetry SDK, in-memory exporter.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { InMemorySpanExporter, startTracing, type Tracing } from '@tollgate/telemetry';
import { createHttpServer } from '../src/index.ts';

const KEY = 'sk-ant-api03-Zq7xW2pL9mN4vB8cR1tY6uH3jK5sD0fG';
const ADMIN = 'admin-token-for-span-tests-0001';
const exporter = new InMemorySpanExporter();
let tracing: Tracing;
let app: FastifyInstance;
let url: string;

before(async () => {
  tracing = startTracing({ serviceName: 'span-secrets-test', exporter });
  app = createHttpServer({ bodyLimitBytes: 1024, logger: false, telemetry: { tracer: tracing.tracer, secrets: [ADMIN] } });
  app.get('/v1/models/:id', async () => ({ ok: true }));
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});

after(async () => {
  await app.close();
  await tracing.shutdown();
});

/** The `url.path` of the server span of one GET of `path`. */
async function spanPath(path: string): Promise<unknown> {
  exporter.reset();
  const res = await fetch(`${url}${path}`);
  await res.arrayBuffer();
  // the span ends on the socket's close, just after the response
  for (let i = 0; i < 100 && exporter.getFinishedSpans().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  const spans = exporter.getFinishedSpans();
  assert.equal(spans.length, 1);
  return spans[0]!.attributes['url.path'];
}

test('secret leak: a key in a routed path segment is redacted in the server span, as in the log', async () => {
  assert.equal(await spanPath(`/v1/models/${KEY}`), '/v1/models/[redacted]');
});

test('secret leak: a key as an unmatched path is redacted in the server span', async () => {
  assert.equal(await spanPath(`/${KEY}/v1/messages`), '/[redacted]/v1/messages');
});

test('secret leak: the process\'s own credential (by value) in a path is redacted in the server span', async () => {
  assert.equal(await spanPath(`/v1/models/${ADMIN}`), '/v1/models/[redacted]');
});

test('secret leak: a plain path is kept byte for byte in the server span', async () => {
  assert.equal(await spanPath('/v1/models/claude-sonnet-4-5'), '/v1/models/claude-sonnet-4-5');
});
