// The warehouse (a ClickHouse server) unreachable, or not answering within the client's request
// timeout: every report route is 503 `warehouse_unavailable` with `retry-after: 5` and a message
// that names the failure (never the server's address or credentials), not a 500. Real sockets: a
// port nobody listens on, and a server that accepts connections and never answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { createServer as createHttpServerOf } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryLog } from '@tollgate/events';
import { createHttpServer } from '@tollgate/http';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore } from '@tollgate/ledger';
import { bundledCatalogPath, loadCatalogFile, priceVersion } from '@tollgate/pricing';
import { createHttpClickHouse, Warehouse } from '@tollgate/warehouse';
import { registerAnalytics, registerBilling } from '../src/index.ts';

const TOKEN = 'admin-token-for-warehouse-unavailable';
const version = priceVersion(loadCatalogFile(bundledCatalogPath('cny')));

/** A port that was just free (listened on, then closed): a connection to it is refused. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const ROUTES = [
  '/admin/v1/usage',
  '/admin/v1/usage?group_by=upstream',
  '/admin/v1/usage/events',
  '/admin/v1/usage/events/req_0123456789abcdefghijklmn',
  '/admin/v1/accounts/acct_x/invoices/2026-11',
  '/admin/v1/accounts/acct_x/statements/2026-11',
  '/admin/v1/accounts/acct_x/credits/history',
  '/admin/v1/billing/months',
  '/admin/v1/billing/export?month=2026-11&format=csv',
];

async function reportServer(clickhouseUrl: string, requestTimeoutMs?: number) {
  const warehouse = new Warehouse({
    client: createHttpClickHouse({
      url: clickhouseUrl, username: 'reader', password: 'pw-not-to-be-shown', logger: { warn: () => {} },
      ...(requestTimeoutMs ? { requestTimeoutMs } : {}),
    }),
    database: 'tollgate',
  });
  const app = createHttpServer({ bodyLimitBytes: 1024 });
  const keys = new MemoryKeyDirectory();
  await keys.putAccount({ id: 'acct_x', name: 'x', status: 'active', created_at: Date.UTC(2026, 0, 1), version: 1 });
  const deps = {
    warehouse, adminToken: TOKEN, prices: { current: () => version },
    balances: new MemoryBalanceStore(), keys, log: new MemoryLog(),
  };
  registerAnalytics(app, deps);
  registerBilling(app, deps);
  await app.ready();
  return { app, close: async () => { await app.close(); await warehouse.close(); } };
}

async function expectUnavailable(app: Awaited<ReturnType<typeof reportServer>>['app'], what: RegExp, hidden: string[]) {
  for (const url of [...ROUTES, 'POST /admin/v1/billing/months/2026-11/close']) {
    const [method, path] = url.startsWith('POST ') ? ['POST' as const, url.slice(5)] : ['GET' as const, url];
    const res = await app.inject({ method, url: path, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.statusCode, 503, `${url}: ${res.body}`);
    assert.equal(res.headers['retry-after'], '5', url);
    const body = res.json() as { error: { type: string; code: string; message: string } };
    assert.equal(body.error.type, 'api_error', url);
    assert.equal(body.error.code, 'warehouse_unavailable', url);
    assert.match(body.error.message, what, url);
    for (const secret of hidden) assert.ok(!res.body.includes(secret), `${url} shows ${secret}`);
  }
}

test('warehouse unreachable (connection refused): every report route is 503 warehouse_unavailable with retry-after, naming the failure and nothing of the server', async () => {
  const port = await closedPort();
  const { app, close } = await reportServer(`http://127.0.0.1:${port}`);
  try {
    await expectUnavailable(app, /^The usage warehouse is temporarily unavailable \(ECONNREFUSED\); retry shortly$/, [String(port), 'pw-not-to-be-shown', 'reader']);
  } finally {
    await close();
  }
});

test('warehouse not answering within the request timeout: 503 warehouse_unavailable, not a 500 and not a hang', async () => {
  // accepts connections, reads the request, never answers
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => { sockets.add(socket); socket.on('error', () => {}); socket.resume(); });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const { port } = silent.address() as AddressInfo;
  const { app, close } = await reportServer(`http://127.0.0.1:${port}`, 300);
  try {
    await expectUnavailable(app, /^The usage warehouse is temporarily unavailable \(no answer within the request timeout\); retry shortly$/, [String(port), 'pw-not-to-be-shown']);
  } finally {
    await close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  }
});

test('the warehouse\'s address answering, but not as ClickHouse (a proxy or load balancer in front of a server that is down or restarting: 502, 503, 504 pages, an auth proxy\'s 401, a 404): every report route is 503 warehouse_unavailable with retry-after, the foreign body never shown', async () => {
  // Kind: an answer that is not the ClickHouse server's. @clickhouse/client makes of such a body a
  // plain Error with no code and no status, which the routes answered as a 500.
  for (const [status, body] of [
    [502, '<html><head><title>502 Bad Gateway</title></head><body><center>nginx/1.27.0 upstream ch-internal-7:8123</center></body></html>'],
    [503, 'no healthy upstream ch-internal-7'],
    [504, '<html><body><h1>504 Gateway Time-out</h1> ch-internal-7</body></html>'],
    [401, 'Unauthorized: proxy ch-internal-7 wants a token'],
    [404, 'Not Found ch-internal-7'],
  ] as const) {
    const proxy = createHttpServerOf((req, res) => { req.resume(); res.writeHead(status, { 'content-type': 'text/html' }).end(body); });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const { port } = proxy.address() as AddressInfo;
    const { app, close } = await reportServer(`http://127.0.0.1:${port}`);
    try {
      await expectUnavailable(app, /^The usage warehouse is temporarily unavailable \(its address answered, but not as ClickHouse\); retry shortly$/, [String(port), 'pw-not-to-be-shown', 'ch-internal-7', 'nginx']);
    } finally {
      await close();
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  }
});
