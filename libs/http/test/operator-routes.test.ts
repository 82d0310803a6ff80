// The operator routes' shared guard (guardOperatorRoutes): a token first, then only the query
// parameters a route declares. Kind: "an operator route given a query parameter it does not
// take" — every such request is a 400 naming the parameter, before the handler runs, whatever
// the method; no operator route silently ignores a misspelled filter or option.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { installErrorHandling } from '../src/errors.ts';
import { guardOperatorRoutes } from '../src/auth.ts';

const ADMIN = 'admin-token-0123456789';
const FINANCE = 'finance-token-0123456789';

async function app() {
  const a = Fastify();
  installErrorHandling(a);
  const ran: string[] = [];
  a.register(async (s) => {
    guardOperatorRoutes(s, { adminToken: ADMIN, financeToken: FINANCE });
    s.get('/admin/v1/things', async () => { ran.push('list'); return { data: [] }; });
    s.post('/admin/v1/things', async () => { ran.push('create'); return { id: 't1' }; });
    s.delete('/admin/v1/things/:id', async () => { ran.push('delete'); return { deleted: true }; });
    s.get('/admin/v1/report', { config: { finance: true, query: ['from', 'to'] } }, async (r) => { ran.push('report'); return r.query; });
  });
  await a.ready();
  return { a, ran };
}

const call = async (a: Awaited<ReturnType<typeof app>>['a'], method: 'GET' | 'POST' | 'DELETE', url: string, token?: string) => {
  const res = await a.inject({ method, url, headers: token ? { authorization: `Bearer ${token}` } : {}, ...(method === 'POST' ? { payload: {} } : {}) });
  return { status: res.statusCode, body: res.json() as { error?: { type: string; code: string; message: string } } };
};

test('operator route given a query parameter it does not take: 400 invalid_request naming it, before the handler, for every method', async () => {
  const { a, ran } = await app();
  for (const [method, url] of [['GET', '/admin/v1/things?limt=5'], ['POST', '/admin/v1/things?limt=5'], ['DELETE', '/admin/v1/things/t1?limt=5']] as const) {
    const r = await call(a, method, url, ADMIN);
    assert.equal(r.status, 400, `${method} ${url}`);
    assert.deepEqual(r.body.error, { type: 'invalid_request_error', code: 'invalid_request', message: 'limt: unknown query parameter; this route takes none' });
  }
  const report = await call(a, 'GET', '/admin/v1/report?from=1&acount_id=x&zz=1', FINANCE);
  assert.equal(report.status, 400);
  assert.equal(report.body.error!.message, 'acount_id, zz: unknown query parameters; this route takes from, to');
  // a name that is not a plain identifier is quoted, cut to 40 characters, printable ASCII only
  const odd = await call(a, 'GET', `/admin/v1/things?${encodeURIComponent('a b\u00e9:' + 'x'.repeat(60))}=1`, ADMIN);
  assert.equal(odd.body.error!.message, `"a b?:${'x'.repeat(35)}": unknown query parameter; this route takes none`);
  assert.deepEqual(ran, [], 'no handler ran');
});

test('operator route guard: declared parameters pass; without a valid token the answer is 401 (403 for the finance token on an admin route) whatever the query', async () => {
  const { a, ran } = await app();
  const ok = await call(a, 'GET', '/admin/v1/report?from=1&to=2', FINANCE);
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, { from: '1', to: '2' });
  assert.equal((await call(a, 'GET', '/admin/v1/things', ADMIN)).status, 200);
  const anon = await call(a, 'GET', '/admin/v1/things?limt=5');
  assert.equal(anon.status, 401);
  assert.equal(anon.body.error!.code, 'invalid_api_key');
  assert.equal((await call(a, 'GET', '/admin/v1/things?limt=5', 'wrong')).status, 401);
  const finance = await call(a, 'GET', '/admin/v1/things?limt=5', FINANCE);
  assert.equal(finance.status, 403);
  assert.deepEqual(ran, ['report', 'list']);
});
