// The per-request logger is built on first use (LazyChildLogger): what a request logs must be
// exactly what pino's own child would have written, and a request that logs nothing writes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createHttpServer, loggerOptions, newRequestId } from '../src/index.ts';
import { KNOWN_FAILURE_LOG_INTERVAL_MS } from '../src/errors.ts';

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

test('known 5xx answers in an outage: one warn line per code, message and second, with the cause but no stack, the rest counted as repeated; an unknown error or a 500 is an error line with its stack every time', async () => {
  // Kind: a log flood (a Redis outage printed a stack trace per request: 19,565 lines in 90 s).
  const { app, lines } = server('info');
  const { gatewayError } = await import('@tollgate/anthropic');
  app.get('/down', async () => {
    throw gatewayError('state_unavailable', 'Billing state is temporarily unavailable; retry shortly', { cause: new Error('Connection is closed.') });
  });
  app.get('/busy', async () => { throw gatewayError('overloaded', 'busy'); });
  app.get('/bug', async () => { throw new TypeError('x is undefined'); });
  app.get('/internal', async () => { throw gatewayError('internal_error', 'the ledger refused the grant'); });
  const get = (url: string) => app.inject({ method: 'GET', url });
  for (let i = 0; i < 50; i++) assert.equal((await get('/down')).statusCode, 503);
  assert.equal((await get('/busy')).statusCode, 503);
  for (let i = 0; i < 2; i++) assert.equal((await get('/bug')).statusCode, 500);
  assert.equal((await get('/internal')).statusCode, 500);
  await new Promise((r) => setTimeout(r, KNOWN_FAILURE_LOG_INTERVAL_MS + 50));
  assert.equal((await get('/down')).statusCode, 503);
  const known = lines.filter((l) => l['msg'] !== 'request failed' && (l['code'] === 'state_unavailable' || l['code'] === 'overloaded'));
  assert.deepEqual(known.map((l) => [l['level'], l['msg'], l['status'], l['code'], l['message'], l['cause'], l['repeated'], 'err' in l]), [
    [40, 'answered 503 state_unavailable', 503, 'state_unavailable', 'Billing state is temporarily unavailable; retry shortly', 'Connection is closed.', undefined, false],
    [40, 'answered 503 overloaded', 503, 'overloaded', 'busy', undefined, undefined, false],
    [40, 'answered 503 state_unavailable', 503, 'state_unavailable', 'Billing state is temporarily unavailable; retry shortly', 'Connection is closed.', 49, false],
  ]);
  const bugs = lines.filter((l) => l['msg'] === 'request failed');
  assert.deepEqual(bugs.map((b) => b['level']), [50, 50, 50]);
  assert.deepEqual(bugs.map((b) => /^(\w+): ([^\n]*)/.exec(String((b['err'] as { stack?: string }).stack))?.slice(1)), [
    ['TypeError', 'x is undefined'], ['TypeError', 'x is undefined'], ['GatewayError', 'the ledger refused the grant'],
  ]);
});
