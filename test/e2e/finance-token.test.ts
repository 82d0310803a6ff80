// The read-only finance token (FINANCE_TOKEN) against every operator route an embedded Tollgate
// registers: the routes are read from the running server (printRoutes), so a route added later is
// checked without touching this file. Finance may read usage and billing and close months; every
// other operator route answers it 403 permission_error and does nothing; no token is 401 everywhere;
// the admin token passes authentication everywhere; customer routes never take the finance token.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_TOKEN, admin, startStack, type Stack } from '../support/tollgate.ts';

const FINANCE_TOKEN = 'test-finance-token-0123456789';

/**
 * The routes the finance token may call (issue 9: usage analytics, invoices, statements, the
 * export, month close and the list of closes, any account's credit history). Every other /admin and /ops route is admin only.
 */
const FINANCE_ROUTES = new Set([
  'GET /admin/v1/usage',
  'GET /admin/v1/usage/events',
  'GET /admin/v1/usage/events/:id',
  'GET /admin/v1/accounts/:id/invoices/:month',
  'GET /admin/v1/accounts/:id/statements/:month',
  'GET /admin/v1/accounts/:id/credits/history',
  'GET /admin/v1/billing/export',
  'GET /admin/v1/billing/months',
  'POST /admin/v1/billing/months/:month/close',
]);

interface Route { method: string; path: string }

/**
 * Every (method, path) of Fastify's `printRoutes({ commonPrefix: false })` tree: each line is a
 * node, indented four columns per level, its path the parent's plus its own segment, its methods
 * in parentheses (HEAD, which Fastify adds to each GET, left out).
 */
function routesOf(tree: string): Route[] {
  const out: Route[] = [];
  const prefix: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^((?:│ {3}| {4})*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    prefix.length = depth;
    prefix.push(m[2]!);
    for (const method of (m[3] ?? '').split(', ').filter((x) => x !== '' && x !== 'HEAD')) out.push({ method, path: prefix.join('') });
  }
  return out;
}

let stack: Stack;
let routes: Route[];
/** real ids, so a write that slipped through would change something the test then sees */
const ids = { account: '', key: '', plan: '', webhook: '' };

before(async () => {
  stack = await startStack({ FINANCE_TOKEN });
  routes = routesOf(stack.tollgate.server.printRoutes({ commonPrefix: false }))
    .filter((r) => r.path.startsWith('/admin/v1/') || r.path.startsWith('/ops/v1/'));
  ids.account = (await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/accounts', { name: 'held' })).json.id;
  ids.key = (await admin<{ id: string }>(stack.url, 'POST', `/admin/v1/accounts/${ids.account}/keys`, { name: 'k' })).json.id;
  ids.plan = (await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/plans', { name: 'gold', requests_per_minute: 60 })).json.id;
  await admin(stack.url, 'POST', `/admin/v1/accounts/${ids.account}/credits`, { credits: 10, reference: 'initial' });
  if (routes.some((r) => r.method === 'POST' && r.path === '/admin/v1/webhooks')) {
    ids.webhook = (await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['balance.low'] })).json.id;
  }
});
after(async () => { await stack?.close(); });

/** The route's path with its parameters filled with the real ids above (or a plausible value). */
function concrete(r: Route): string {
  return r.path
    .replace(/^\/admin\/v1\/accounts\/:id/, `/admin/v1/accounts/${ids.account}`)
    .replace(/^\/admin\/v1\/keys\/:id/, `/admin/v1/keys/${ids.key}`)
    .replace(/^\/admin\/v1\/plans\/:id/, `/admin/v1/plans/${ids.plan}`)
    .replace(/^\/admin\/v1\/webhooks\/:id/, `/admin/v1/webhooks/${ids.webhook || 'wh_none'}`)
    .replace(':month', '2026-11')
    .replace(/:[a-z_]+/g, 'x1')
    // a wildcard prints as its own node under the parent's path without the slash
    .replace(/\/?\*$/, '/x1');
}

/** A body that would succeed on the write routes if authentication let it through. */
function bodyFor(r: Route): unknown {
  const bodies: Record<string, unknown> = {
    'POST /admin/v1/accounts': { name: 'by-finance' },
    'PATCH /admin/v1/accounts/:id': { status: 'disabled' },
    'POST /admin/v1/accounts/:id/keys': { name: 'by-finance' },
    'POST /admin/v1/accounts/:id/credits': { credits: 5, reference: 'by-finance' },
    'PATCH /admin/v1/keys/:id': { status: 'disabled' },
    'POST /admin/v1/plans': { name: 'by-finance' },
    'PATCH /admin/v1/plans/:id': { requests_per_minute: 1 },
    'POST /admin/v1/webhooks': { url: 'http://127.0.0.1:9/by-finance', events: ['balance.low'] },
    'POST /ops/v1/rerate': { from: '2026-11-01', to: '2026-11-02' },
  };
  const key = `${r.method} ${r.path}`;
  return Object.hasOwn(bodies, key) ? bodies[key] : r.method === 'POST' || r.method === 'PATCH' || r.method === 'PUT' ? {} : undefined;
}

async function call(r: Route, headers: Record<string, string>): Promise<{ status: number; type: string | undefined }> {
  const body = bodyFor(r);
  const query = r.path === '/ops/v1/reconcile' ? '?timeout_ms=2000' : '';
  const res = await fetch(`${stack.url}${concrete(r)}${query}`, {
    method: r.method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let type: string | undefined;
  try {
    type = (JSON.parse(text) as { error?: { type?: string } }).error?.type;
  } catch { /* CSV, PDF, Parquet: no error type */ }
  return { status: res.status, type };
}

/** What the operator API holds that a write could change (read with the admin token). */
async function state() {
  const get = async (path: string) => (await admin(stack.url, 'GET', path)).json;
  return {
    accounts: await get('/admin/v1/accounts'),
    keys: await get(`/admin/v1/accounts/${ids.account}/keys`),
    plans: await get('/admin/v1/plans'),
    webhooks: ids.webhook ? await get('/admin/v1/webhooks') : null,
  };
}

test('the route list is read from the running server (the parser finds the routes every stack has)', () => {
  const names = new Set(routes.map((r) => `${r.method} ${r.path}`));
  for (const r of ['POST /admin/v1/accounts', 'GET /admin/v1/accounts/:id', 'PATCH /admin/v1/keys/:id', 'DELETE /admin/v1/plans/:id',
    'POST /admin/v1/accounts/:id/credits', 'POST /ops/v1/rebuild', 'GET /ops/v1/reconcile']) {
    assert.ok(names.has(r), `${r} among ${[...names].join(', ')}`);
  }
});

test('no token on any operator route: 401 authentication_error, never reaching the handler', async () => {
  for (const r of routes) {
    assert.deepEqual(await call(r, {}), { status: 401, type: 'authentication_error' }, `${r.method} ${r.path}`);
  }
});

test('finance token on every operator route: usage and billing routes pass, every other route is 403 permission_error (never 401) and changes nothing', async () => {
  const before = await state();
  const finance = { authorization: `Bearer ${FINANCE_TOKEN}` };
  const passed: string[] = [];
  for (const r of routes) {
    const name = `${r.method} ${r.path}`;
    const res = await call(r, finance);
    if (FINANCE_ROUTES.has(name)) {
      assert.ok(res.status !== 401 && res.status !== 403, `${name}: the finance token passes (got ${res.status} ${String(res.type)})`);
      passed.push(name);
    } else {
      assert.deepEqual(res, { status: 403, type: 'permission_error' }, name);
    }
  }
  assert.deepEqual(await state(), before, 'nothing the finance token was refused changed anything');
  // The finance token is an operator credential only: never a customer key, never in x-api-key.
  const asKey = await fetch(`${stack.url}/admin/v1/usage`, { headers: { 'x-api-key': FINANCE_TOKEN } });
  assert.equal(asKey.status, 401);
  // every route the finance token is meant for exists and was tried
  assert.deepEqual(passed.sort(), [...FINANCE_ROUTES].sort());
});

test('admin token on every operator route: past authentication and authorization everywhere', async () => {
  const adminAuth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  for (const r of routes) {
    const res = await call(r, adminAuth);
    assert.ok(res.status !== 401 && res.status !== 403, `${r.method} ${r.path}: ${res.status} ${String(res.type)}`);
  }
});

test('finance token on customer routes (x-api-key or Bearer): 401 authentication_error, nothing forwarded or billed', async () => {
  const customer = routesOf(stack.tollgate.server.printRoutes({ commonPrefix: false }))
    .filter((r) => r.path.startsWith('/v1/') || r.path.startsWith('/api/v1/'));
  assert.ok(customer.some((r) => r.method === 'POST' && r.path === '/v1/messages'));
  const message = { model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] };
  for (const r of customer) {
    for (const headers of [{ 'x-api-key': FINANCE_TOKEN }, { authorization: `Bearer ${FINANCE_TOKEN}` }]) {
      const res = await fetch(`${stack.url}${concrete(r)}`, {
        method: r.method,
        headers: { ...headers, 'anthropic-version': '2023-06-01', ...(r.method === 'POST' ? { 'content-type': 'application/json' } : {}) },
        body: r.method === 'POST' ? JSON.stringify(message) : undefined,
      });
      const body = (await res.json()) as { error?: { type?: string } };
      assert.deepEqual([res.status, body.error?.type], [401, 'authentication_error'], `${r.method} ${r.path} with ${Object.keys(headers)[0]}`);
    }
  }
  const sim = (await (await fetch(`${stack.simUrl}/_sim/requests?limit=100`)).json()) as unknown[];
  assert.equal(sim.length, 0, 'nothing reached the upstream');
});
