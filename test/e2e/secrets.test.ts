// Secrets never appear in clear: not in any log line (at `trace` level, through successes,
// customer errors, upstream errors and an unreachable upstream), not in any response, and not
// in the warehouse's files. The program runs as its own process, exactly as `npm start` runs it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { freePort } from '../support/cluster.ts';
import { simRequests, startSimulator, UPSTREAM_KEY } from '../support/tollgate.ts';

const MAIN = join(import.meta.dirname, '../../services/tollgate/src/main.ts');
const ADMIN = 'admin-secret-token-do-not-log-0001';
const HASH_SECRET = 'key-hash-secret-do-not-log-0002';
const FINANCE = 'finance-token-do-not-log-0003';
let simAt = '';
let child: ChildProcess;
let logs = '';
let url = '';
let dataDir = '';
let closeSim: () => Promise<unknown>;
const seen: string[] = [];

before(async () => {
  const { sim, simUrl } = await startSimulator();
  closeSim = () => sim.close();
  simAt = simUrl;
  dataDir = mkdtempSync(join(tmpdir(), 'tollgate-secrets-'));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'trace',
      UPSTREAM_URL: simUrl, UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN: ADMIN, KEY_HASH_SECRET: HASH_SECRET, FINANCE_TOKEN: FINANCE,
      WAREHOUSE_FLUSH_MS: '20',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (b: Buffer) => { logs += b.toString(); });
  child.stderr!.on('data', (b: Buffer) => { logs += b.toString(); });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/health`)).ok) return;
    } catch { /* starting */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`did not start:\n${logs}`);
});

after(async () => {
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await closeSim();
});

async function call(path: string, init: RequestInit & { headers?: Record<string, string> }) {
  const res = await fetch(`${url}${path}`, init);
  const text = await res.text();
  seen.push(text, JSON.stringify([...res.headers]));
  return { status: res.status, text };
}

test('no secret in logs, responses or warehouse files, whatever happens', async () => {
  const adminHeaders = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  const acct = JSON.parse((await call('/admin/v1/accounts', { method: 'POST', headers: adminHeaders, body: '{"name":"s"}' })).text) as { id: string };
  const keyRes = JSON.parse((await call(`/admin/v1/accounts/${acct.id}/keys`, { method: 'POST', headers: adminHeaders, body: '{}' })).text) as { key: string };
  const secret = keyRes.key;
  seen.length = 0; // the one response allowed to show the secret is its creation
  await call(`/admin/v1/accounts/${acct.id}/credits`, { method: 'POST', headers: adminHeaders, body: '{"credits":5,"reference":"r"}' });

  const client = new Anthropic({ apiKey: secret, baseURL: url, maxRetries: 0, logLevel: 'error' });
  const m = { model: 'claude-haiku-4-5', max_tokens: 8 };
  await client.messages.create({ ...m, messages: [{ role: 'user', content: '[[sim input=3 output=2]]' }] });
  await client.messages.stream({ ...m, messages: [{ role: 'user', content: '[[sim input=3 output=2]]' }] }).finalMessage();
  for (const fault of ['status=401', 'status=500', 'fault=overloaded']) {
    await client.messages.create({ ...m, messages: [{ role: 'user', content: `[[sim ${fault}]]` }] }).catch(() => {});
  }
  await client.messages.stream({ ...m, messages: [{ role: 'user', content: '[[sim output=20 fault=drop_after:2]]' }] }).finalMessage().catch(() => {});
  const json = { 'content-type': 'application/json' };
  await call('/v1/messages', { method: 'POST', headers: { ...json, 'x-api-key': `${secret}x` }, body: '{}' });
  await call('/v1/messages', { method: 'POST', headers: { ...json, authorization: `Bearer ${secret}`, cookie: 'sid=abc' }, body: '{"model":' });
  await call('/admin/v1/accounts', { method: 'GET', headers: { authorization: `Bearer ${secret}` } });
  await call('/v1/credits', { method: 'GET', headers: { 'x-api-key': secret } });
  // A client that puts its key in the URL: the logged url has it redacted (request log at trace).
  await call(`/v1/credits?api_key=${secret}`, { method: 'GET', headers: { 'x-api-key': secret } });
  await call(`/v1/messages?beta=true&key=${secret}&access_token=${secret}`, { method: 'POST', headers: { ...json, 'x-api-key': secret }, body: '{}' });
  await call(`/v1/models?token=${secret}`, { method: 'GET', headers: {} });
  // A secret anywhere in the URL, under any name or none: dropped before the upstream (which
  // records every URL it was sent) and redacted in the log.
  const hostile = [
    `authorization=Bearer%20${secret}`, `anthropic_api_key=${secret}`, `auth=${secret}`, `secret=${secret}`,
    `password=${secret}`, `api+key=${secret}`, `api_key%3D${secret}`, `api_key[]=${secret}`, `api_key.x=${secret}`,
    `api_key%00=${secret}`, `;api_key=${secret}`, `x=${secret}`, `admin_token=${ADMIN}`, `x=${ADMIN}`, `x=${FINANCE}`,
    `x=${HASH_SECRET}`, `x=${UPSTREAM_KEY}`,
  ];
  for (const q of hostile) {
    const body = JSON.stringify({ ...m, messages: [{ role: 'user', content: '[[sim input=3 output=2]]' }] });
    assert.equal((await call(`/v1/messages?beta=true&${q}`, { method: 'POST', headers: { ...json, 'x-api-key': secret }, body })).status, 200, q);
  }
  const upstreamUrls = (await simRequests(simAt, hostile.length)).map((r) => r.url);
  assert.deepEqual(upstreamUrls, hostile.map(() => '/v1/messages?beta=true'));
  // The key under any other request header, or encoded in one the upstream may see: none of it
  // reaches the upstream (which records every header it was sent).
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const headerAttempts: Array<Record<string, string>> = [
    ...['anthropic-api-key', 'x-goog-api-key', 'api-key', 'x-auth-token', 'anthropic-beta', 'x-forwarded-authorization',
      'x-amz-security-token', 'anthropic-custom', 'x-api-key-2'].map((h) => ({ [h]: secret })),
    { referer: `https://app.example/?token=${secret}` },
    { 'anthropic-beta': secret.toUpperCase(), 'x-stainless-os': b64(secret), 'user-agent': secret.slice(6) },
    { 'anthropic-beta': encodeURIComponent(`Bearer ${secret}`), 'x-claude-code-session-id': b64(`k=${secret}`) },
  ];
  for (const extra of headerAttempts) {
    const body = JSON.stringify({ ...m, messages: [{ role: 'user', content: '[[sim input=3 output=2]]' }] });
    assert.equal((await call('/v1/messages', { method: 'POST', headers: { ...json, 'x-api-key': secret, ...extra }, body })).status, 200);
  }
  for (const r of await simRequests(simAt, headerAttempts.length)) {
    const sent = JSON.stringify(r);
    for (const v of [secret, secret.toUpperCase(), secret.slice(6), b64(secret).slice(0, 40)]) assert.ok(!sent.includes(v), sent.slice(0, 300));
  }

  // stop gracefully, so every log line and every warehouse write is out
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;

  assert.ok(logs.includes('"level":10') || logs.includes('"level":20') || logs.includes('incoming request'), 'logs were written at a verbose level');
  assert.ok(logs.includes('"url":"/v1/credits?api_key=[redacted]"'), 'the request with a key in its URL was logged, redacted');
  assert.ok(logs.includes('"url":"/v1/messages?beta=true&x=[redacted]"'), 'a key under a neutral name was logged, redacted');
  for (const [name, value] of [['customer key', secret], ['admin token', ADMIN], ['upstream key', UPSTREAM_KEY], ['key-hash secret', HASH_SECRET], ['finance token', FINANCE]] as const) {
    assert.ok(!logs.includes(value), `${name} appears in the logs`);
    for (const body of seen) assert.ok(!body.includes(value), `${name} appears in a response: ${body.slice(0, 200)}`);
  }
  // Every file under DATA_DIR/chdb, byte for byte (compressed parts would hide it anyway;
  // the point is that nothing writes it).
  const files: string[] = [];
  const walk = (d: string) => { for (const n of readdirSync(d)) { const p = join(d, n); if (statSync(p).isDirectory()) walk(p); else files.push(p); } };
  walk(join(dataDir, 'chdb'));
  assert.ok(files.length > 0);
  for (const f of files) assert.ok(!readFileSync(f).includes(Buffer.from(secret)), `customer key in ${f}`);
});
