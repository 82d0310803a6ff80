// The HTTP edge's settings: request time, connection cap and CORS origins, with bad values
// named by variable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from './config.ts';

test('edge defaults: 120 s to receive a request, connection cap from the fd limit, CORS off', () => {
  assert.deepEqual(loadConfig({}).http, { requestTimeoutMs: 120_000, maxConnections: undefined, maxConnectionsPerIp: undefined, corsOrigins: undefined });
});

test('CORS_ORIGINS: a comma list of origins or * alone; a path, a bare host or * in a list is refused by name', () => {
  assert.deepEqual(loadConfig({ CORS_ORIGINS: 'https://app.example.com, http://localhost:5173' }).http.corsOrigins,
    ['https://app.example.com', 'http://localhost:5173']);
  assert.equal(loadConfig({ CORS_ORIGINS: '*' }).http.corsOrigins, '*');
  for (const bad of ['https://app.example.com/', 'app.example.com', 'https://a.example.com,*', 'https://a.example.com/path']) {
    assert.throws(() => loadConfig({ CORS_ORIGINS: bad }), /CORS_ORIGINS: .* is not an origin such as https:\/\/app\.example\.com/, bad);
  }
});

test('REQUEST_TIMEOUT_MS and MAX_CONNECTIONS: whole numbers in range, else refused by name', () => {
  assert.deepEqual(loadConfig({ REQUEST_TIMEOUT_MS: '5000', MAX_CONNECTIONS: '900' }).http,
    { requestTimeoutMs: 5000, maxConnections: 900, maxConnectionsPerIp: undefined, corsOrigins: undefined });
  assert.throws(() => loadConfig({ REQUEST_TIMEOUT_MS: '0' }), /^[\s\S]*REQUEST_TIMEOUT_MS: /);
  assert.throws(() => loadConfig({ MAX_CONNECTIONS: 'lots' }), /MAX_CONNECTIONS: expected a whole number from 16 to 1000000, got "lots"/);
  assert.equal(loadConfig({ MAX_CONNECTIONS_PER_IP: '32' }).http.maxConnectionsPerIp, 32);
});

test('TRUST_PROXY: false, true, or the proxies\' addresses/CIDRs; hop counts and junk are refused by name', () => {
  assert.equal(loadConfig({}).trustProxy, false);
  assert.equal(loadConfig({ TRUST_PROXY: '0' }).trustProxy, false);
  assert.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, true);
  assert.equal(loadConfig({ TRUST_PROXY: '1' }).trustProxy, true);
  assert.equal(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 2001:db8::/32 ,192.0.2.7' }).trustProxy, '10.0.0.0/8,2001:db8::/32,192.0.2.7');
  for (const bad of ['2', 'yes', 'proxy.example.com', '10.0.0.0/8,evil']) {
    assert.throws(() => loadConfig({ TRUST_PROXY: bad }), new RegExp(`TRUST_PROXY: expected false, true, or a comma list of the proxies' addresses/CIDRs such as 10\\.0\\.0\\.0/8, got "${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`), bad);
  }
});
