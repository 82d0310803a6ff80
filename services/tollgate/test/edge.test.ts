// The gateway's HTTP edge under hostile sockets and malformed input, on the real program
// (embedded stack, simulator upstream, official SDK as the client, raw node:net sockets).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { admin, customer, settledBalance, simRequests, startStack, type Stack } from '../../../test/support/tollgate.ts';

// chDB allows one data directory per process: one stack, restarted with a short
// REQUEST_TIMEOUT_MS for the timeout tests (which therefore run last).
let stackP: Promise<Stack> | undefined;
const stack = () => (stackP ??= startStack({}));
after(async () => { if (stackP) await (await stackP).close(); });

async function withRequestTimeout(ms: string): Promise<Stack> {
  const s = await stack();
  if (s.env.REQUEST_TIMEOUT_MS !== ms) {
    s.env.REQUEST_TIMEOUT_MS = ms;
    await s.restart();
  }
  return s;
}

interface Slow { socket: Socket; received: () => string; closed: Promise<void>; stop: () => void }

/**
 * A client that sends the request head and then trickles its body, one byte per 100 ms, for
 * as long as the socket is open (a slowloris body). Collects what the server sends back.
 */
function slowBody(url: string, headers: Record<string, string>): Promise<Slow> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    let timer: NodeJS.Timeout | undefined;
    const closed = new Promise<void>((r) => socket.once('close', () => { clearInterval(timer); r(); }));
    socket.on('data', (b: Buffer) => { data += b.toString('latin1'); });
    socket.on('error', () => {});
    socket.once('connect', () => {
      const head = Object.entries({ host: hostname, 'content-type': 'application/json', 'content-length': '100000', ...headers })
        .map(([k, v]) => `${k}: ${v}\r\n`).join('');
      socket.write(`POST /v1/messages HTTP/1.1\r\n${head}\r\n{"model":`);
      timer = setInterval(() => { if (socket.writable) socket.write(' '); }, 100);
      resolve({ socket, received: () => data, closed, stop: () => { clearInterval(timer); socket.destroy(); } });
    });
    socket.once('error', reject);
  });
}

test('slow-body sockets without a key: each gets one 401 with connection: close and is closed; a normal request is served meanwhile', async () => {
  // The default REQUEST_TIMEOUT_MS (120 s): only the early close can end these sockets in time.
  const s = await stack();
  const { client } = await customer(s.url, 5);
  const slow = await Promise.all(Array.from({ length: 100 }, () => slowBody(s.url, {})));
  const served = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: '[[sim input=3 output=2]]' }] });
  assert.deepEqual([served.usage.input_tokens, served.usage.output_tokens], [3, 2]);
  await Promise.all(slow.map((x) => x.closed));
  for (const x of slow) {
    const text = x.received();
    assert.match(text, /^HTTP\/1\.1 401 Unauthorized\r\n/);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, 'exactly one answer (no 408 after the 401)');
    assert.match(text, /"type":"authentication_error","code":"invalid_api_key"/);
  }
});

test('deep JSON (100k levels) on /v1/messages: 400 invalid_request, never a 500, nothing forwarded or billed', async () => {
  const s = await stack();
  const { secret, accountId } = await customer(s.url, 5, 'deep');
  const before = await simRequests(s.simUrl, 200);
  const res = await fetch(`${s.url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': secret, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: `{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}],"metadata":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
  });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { error: { type: string; code: string; message: string } };
  assert.deepEqual(body.error, { type: 'invalid_request_error', code: 'invalid_request', message: 'Request body nests objects and arrays more than 512 levels deep' });
  assert.equal((await simRequests(s.simUrl, 200)).length, before.length);
  assert.equal(await settledBalance(s, accountId), 5_000_000n);
});

test('usage routes: malformed from/to/granularity/group_by/status/format/limit/cursor/timeout_ms and unknown parameters are 400s naming the parameter; RFC 3339, full dates and epoch ms work', async () => {
  const s = await stack();
  const bad: Array<[string, string]> = [
    ['/admin/v1/usage?from=abc', 'from'],
    ['/admin/v1/usage?to=1e30', 'to'],
    ['/admin/v1/usage/events?from=2026-11-31', 'from'],
    ['/admin/v1/usage/events?from=2026-12-01&to=2026-11-30', 'to'],
    ['/admin/v1/usage?group_by=day', 'group_by'],
    ['/admin/v1/usage?from=1&from=2', 'from'],
    ['/admin/v1/usage?granularity=week', 'granularity'],
    ['/admin/v1/usage?granularity=minute&from=2026-01-01&to=2026-02-01', 'granularity'],
    ['/admin/v1/usage?status=fine', 'status'],
    ['/admin/v1/usage?format=xml', 'format'],
    ['/admin/v1/usage?limit=0', 'limit'],
    ['/admin/v1/usage?acount_id=x', 'acount_id'],
    ['/admin/v1/usage/events?limit=1001', 'limit'],
    ['/admin/v1/usage/events?cursor=bm9wZQ', 'cursor'],
    ['/admin/v1/usage/events?granularity=day', 'granularity'],
    ['/ops/v1/reconcile?timeout_ms=soon', 'timeout_ms'],
    ['/ops/v1/reconcile?timeout_ms=1e30', 'timeout_ms'],
  ];
  for (const [path, name] of bad) {
    const r = await admin<{ error: { type: string; code: string; message: string } }>(s.url, 'GET', path);
    assert.equal(r.status, 400, path);
    assert.equal(r.json.error.code, 'invalid_request', path);
    assert.ok(r.json.error.message.startsWith(`${name}: `), `${path}: ${r.json.error.message}`);
  }
  // The slow-socket test's request (and any earlier ones) fall inside this window.
  const now = Date.now();
  const day = new Date(now).toISOString().slice(0, 10);
  for (const q of [`from=${day}`, `from=${new Date(now - 3_600_000).toISOString()}&to=${new Date(now + 3_600_000).toISOString()}`, `from=${now - 3_600_000}`]) {
    const r = await admin<{ totals: { requests: number } }>(s.url, 'GET', `/admin/v1/usage?granularity=day&${q.includes('to=') ? '' : `to=${now + 3_600_000}&`}${q}`);
    assert.equal(r.status, 200, q);
    assert.ok(r.json.totals.requests >= 1, q);
  }
  const future = await admin<{ totals: { requests: number } }>(s.url, 'GET', '/admin/v1/usage?granularity=month&from=9999-12-01&to=9999-12-31');
  assert.equal(future.json.totals.requests, 0);
  const byDay = await admin<{ data: Array<{ group: string }> }>(s.url, 'GET', `/admin/v1/usage?granularity=day&group_by=model&from=2026-01-01T00:00:00%2B08:00&to=${now}`);
  assert.equal(byDay.status, 200);
});

test('operator route given a query parameter it does not take: every admin and ops route of the program answers 400 naming it, and does nothing', async () => {
  // Kind: a misspelled filter or option on an operator route (GET /admin/v1/accounts?statu=x used
  // to be read as no filter at all). Every method and route the README documents, any id: the
  // refusal comes before the route looks anything up, so ids need not exist.
  const s = await stack();
  const routes: Array<[string, string, string]> = [
    ['GET', '/admin/v1/accounts', 'none'], ['POST', '/admin/v1/accounts', 'none'],
    ['GET', '/admin/v1/accounts/acct_x', 'none'], ['PATCH', '/admin/v1/accounts/acct_x', 'none'],
    ['POST', '/admin/v1/accounts/acct_x/keys', 'none'], ['GET', '/admin/v1/accounts/acct_x/keys', 'none'],
    ['GET', '/admin/v1/keys/key_x', 'none'], ['PATCH', '/admin/v1/keys/key_x', 'none'], ['DELETE', '/admin/v1/keys/key_x', 'none'],
    ['POST', '/admin/v1/accounts/acct_x/credits', 'none'],
    ['GET', '/admin/v1/accounts/acct_x/credits/history', 'from, to, limit, cursor'],
    ['GET', '/admin/v1/plans', 'none'], ['POST', '/admin/v1/plans', 'none'],
    ['GET', '/admin/v1/plans/pro', 'none'], ['PATCH', '/admin/v1/plans/pro', 'none'], ['DELETE', '/admin/v1/plans/pro', 'none'],
    ['GET', '/admin/v1/upstreams', 'none'], ['POST', '/admin/v1/upstreams', 'none'],
    ['GET', '/admin/v1/upstreams/up_x', 'none'], ['PATCH', '/admin/v1/upstreams/up_x', 'none'], ['DELETE', '/admin/v1/upstreams/up_x', 'none'],
    ['GET', '/admin/v1/groups', 'none'], ['POST', '/admin/v1/groups', 'none'],
    ['GET', '/admin/v1/groups/grp_x', 'none'], ['PATCH', '/admin/v1/groups/grp_x', 'none'], ['DELETE', '/admin/v1/groups/grp_x', 'none'],
    ['GET', '/admin/v1/webhooks', 'none'], ['POST', '/admin/v1/webhooks', 'none'],
    ['GET', '/admin/v1/webhooks/wh_x', 'none'], ['DELETE', '/admin/v1/webhooks/wh_x', 'none'],
    ['GET', '/admin/v1/webhooks/wh_x/deliveries', 'limit'],
    ['GET', '/admin/v1/usage', 'from, to, granularity, key_id, model, status, group_by, format, limit, account_id, upstream_id'],
    ['GET', '/admin/v1/usage/events', 'from, to, account_id, key_id, model, status, upstream_id, limit, cursor'],
    ['GET', '/admin/v1/usage/events/req_x', 'none'],
    ['GET', '/admin/v1/accounts/acct_x/invoices/2026-10', 'format'], ['GET', '/admin/v1/accounts/acct_x/statements/2026-10', 'format'],
    ['GET', '/admin/v1/billing/months', 'none'], ['POST', '/admin/v1/billing/months/2026-10/close', 'none'],
    ['GET', '/admin/v1/billing/export', 'month, format'],
    ['POST', '/ops/v1/rebuild', 'none'], ['POST', '/ops/v1/rerate', 'none'], ['GET', '/ops/v1/quarantine', 'none'], ['POST', '/ops/v1/rollups/repair', 'none'],
    ['GET', '/ops/v1/reconcile', 'timeout_ms, rollups'],
  ];
  const before = await admin<{ data: unknown[] }>(s.url, 'GET', '/admin/v1/accounts');
  const months = await admin(s.url, 'GET', '/admin/v1/billing/months');
  for (const [method, path, takes] of routes) {
    const body = method === 'POST' || method === 'PATCH' ? { name: 'should-not-exist' } : undefined;
    const r = await admin<{ error: { type: string; code: string; message: string } }>(s.url, method, `${path}?stauts=x`, body);
    assert.deepEqual({ route: `${method} ${path}`, status: r.status, error: r.json.error }, {
      route: `${method} ${path}`, status: 400,
      error: { type: 'invalid_request_error', code: 'invalid_request', message: `stauts: unknown query parameter; this route takes ${takes}` },
    });
  }
  assert.equal((await admin<{ data: unknown[] }>(s.url, 'GET', '/admin/v1/accounts')).json.data.length, before.json.data.length, 'no account was created');
  assert.deepEqual((await admin(s.url, 'GET', '/admin/v1/billing/months')).json, months.json, 'no month was closed');
});

test('operator route that takes no body given one: every such route answers 400 naming its first field, and does nothing; an empty object is no body', async () => {
  // Kind: a body ignored while the irreversible thing is done (a breaker: `{"dry_run": true}` on
  // a rebuild, a month close or a delete was read as nothing). The POSTs that take none, and
  // every DELETE. The refusal comes before the route looks anything up, so ids need not exist.
  const s = await stack();
  const routes: Array<[string, string]> = [
    ['POST', '/ops/v1/rebuild'], ['POST', '/ops/v1/rollups/repair'], ['POST', '/admin/v1/billing/months/2026-10/close'],
    ['DELETE', '/admin/v1/keys/key_x'], ['DELETE', '/admin/v1/plans/pro'], ['DELETE', '/admin/v1/upstreams/up_x'],
    ['DELETE', '/admin/v1/groups/grp_x'], ['DELETE', '/admin/v1/webhooks/wh_x'],
  ];
  const months = await admin(s.url, 'GET', '/admin/v1/billing/months');
  for (const [method, path] of routes) {
    const r = await admin<{ error: { type: string; code: string; message: string } }>(s.url, method, path, { dry_run: true, force: false });
    assert.deepEqual({ route: `${method} ${path}`, status: r.status, error: r.json.error }, {
      route: `${method} ${path}`, status: 400,
      error: { type: 'invalid_request_error', code: 'invalid_request', message: 'dry_run: unknown field; this route takes no body' },
    });
  }
  for (const body of [[1], 'x', 7]) {
    const r = await admin<{ error: { message: string } }>(s.url, 'POST', '/ops/v1/rebuild', body);
    assert.deepEqual([r.status, r.json.error.message], [400, 'this route takes no body'], JSON.stringify(body));
  }
  assert.deepEqual((await admin(s.url, 'GET', '/admin/v1/billing/months')).json, months.json, 'no month was closed');
  // a plan changed, then DELETE with a body: still changed (not reset to its seed)
  assert.equal((await admin(s.url, 'PATCH', '/admin/v1/plans/free', { concurrent_requests: 3 })).status, 200);
  assert.equal((await admin(s.url, 'DELETE', '/admin/v1/plans/free', { keep: true })).status, 400);
  assert.equal((await admin<{ concurrent_requests: number | null }>(s.url, 'GET', '/admin/v1/plans/free')).json.concurrent_requests, 3);
  // `{}` is no body: the delete is done
  assert.equal((await admin(s.url, 'DELETE', '/admin/v1/plans/free', {})).status, 200);
  assert.equal((await admin<{ concurrent_requests: number | null }>(s.url, 'GET', '/admin/v1/plans/free')).json.concurrent_requests, null);
});

test('control API: the admin token in x-api-key is a 401 (only Authorization: Bearer is documented)', async () => {
  const s = await stack();
  const res = await fetch(`${s.url}/admin/v1/accounts`, { headers: { 'x-api-key': s.env.ADMIN_TOKEN! } });
  assert.equal(res.status, 401);
  const body = (await res.json()) as { error: { code: string } };
  assert.equal(body.error.code, 'invalid_api_key');
  const ops = await fetch(`${s.url}/ops/v1/quarantine`, { headers: { 'x-api-key': s.env.ADMIN_TOKEN! } });
  assert.equal(ops.status, 401);
  const usage = await fetch(`${s.url}/admin/v1/usage`, { headers: { 'x-api-key': s.env.ADMIN_TOKEN! } });
  assert.equal(usage.status, 401);
});

test('authenticated slow body: 408 request_timeout after REQUEST_TIMEOUT_MS, socket closed, nothing forwarded or billed', async () => {
  const s = await withRequestTimeout('1000');
  const { secret, accountId } = await customer(s.url, 5);
  const before = await simRequests(s.simUrl, 200);
  const slow = await slowBody(s.url, { 'x-api-key': secret, 'anthropic-version': '2023-06-01' });
  await slow.closed;
  const text = slow.received();
  assert.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.match(text, /\r\nconnection: close\r\n/i);
  const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { type: string; error: { type: string; code: string; message: string }; request_id: string };
  assert.deepEqual(body.error, { type: 'timeout_error', code: 'request_timeout', message: 'The request was not received within 1000 ms' });
  assert.match(body.request_id, /^req_[0-9A-Za-z]{24}$/);
  assert.equal((await simRequests(s.simUrl, 200)).length, before.length, 'the upstream saw nothing');
  // 5 credits granted, nothing charged: 5,000,000 µc
  assert.equal(await settledBalance(s, accountId), 5_000_000n);
});

test('responses longer than REQUEST_TIMEOUT_MS are not cut: a stream pausing 2.5 s and a JSON answer after 2.5 s both complete and bill', async () => {
  const s = await withRequestTimeout('1000');
  const { client, accountId } = await customer(s.url, 5, 'long');
  const stream = await client.messages.stream({
    model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: '[[sim input=3 output=5 ttft_ms=2500]]' }],
  }).finalMessage();
  assert.deepEqual([stream.usage.input_tokens, stream.usage.output_tokens, stream.stop_reason], [3, 5, 'end_turn']);
  const json = await client.messages.create({
    model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: '[[sim input=3 output=5 latency_ms=2500]]' }],
  });
  assert.deepEqual([json.usage.input_tokens, json.usage.output_tokens], [3, 5]);
  // each: 3 × 24 + 5 × 120 = 672 µc (haiku-4-5); two requests: 5,000,000 − 1,344
  assert.equal(await settledBalance(s, accountId), 4_998_656n);
});
