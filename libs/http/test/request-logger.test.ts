// The per-request logger is built on first use (LazyChildLogger): what a request logs must be
// exactly what pino's own child would have written, and a request that logs nothing writes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createHttpServer, loggerOptions, newRequestId } from '../src/index.ts';

function server(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  const app = createHttpServer({ bodyLimitBytes: 1024, logger: { ...loggerOptions(level, 'lazy-log-test'), stream: sink } });
  app.post('/quiet', async () => ({ ok: true }));
  app.post('/loud', async (request) => {
    request.log.info('below the level');
    request.log.warn({ n: 1 }, 'first');
    request.log.child({ part: 'sub' }).error('second');
    return { ok: true, level: request.log.level, enabled: (request.log as unknown as { isLevelEnabled(l: string): boolean }).isLevelEnabled('warn') };
  });
  return { app, lines };
}

test('request logger (lazy child): at level warn a request that logs nothing writes no line; one that logs writes exactly pino\'s child lines, request id bound', async () => {
  const { app, lines } = server('warn');
  const quiet = await app.inject({ method: 'POST', url: '/quiet', payload: {} });
  assert.equal(quiet.statusCode, 200);
  assert.equal(lines.length, 0);
  const loud = await app.inject({ method: 'POST', url: '/loud', payload: {} });
  assert.deepEqual(loud.json(), { ok: true, level: 'warn', enabled: true });
  const id = loud.headers['request-id'];
  assert.equal(lines.length, 2);
  assert.deepEqual(lines.map(({ level, name, reqId, n, part, msg }) => ({ level, name, reqId, n, part, msg })), [
    { level: 40, name: 'lazy-log-test', reqId: id, n: 1, part: undefined, msg: 'first' },
    { level: 50, name: 'lazy-log-test', reqId: id, n: undefined, part: 'sub', msg: 'second' },
  ]);
  await app.close();
});

test('request logger (lazy child): at level info Fastify\'s own request lines carry the request id as before', async () => {
  const { app, lines } = server('info');
  const res = await app.inject({ method: 'POST', url: '/quiet', payload: {} });
  const id = res.headers['request-id'];
  assert.deepEqual(lines.map((l) => [l.reqId, l.msg]), [[id, 'incoming request'], [id, 'request completed']]);
  await app.close();
});

test('request ids: req_ + 24 base62 characters, all distinct across pool refills', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 2_000; i++) {
    const id = newRequestId();
    assert.match(id, /^req_[0-9A-Za-z]{24}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 2_000);
});
