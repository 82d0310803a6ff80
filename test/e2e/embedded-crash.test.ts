// The embedded mode loses nothing when its process is killed (kill -9): every request that
// got an answer is billed after the restart, exactly. The warehouse consumer is made slow on
// purpose (WAREHOUSE_FLUSH_MS=60000), so at the moment of the kill most usage exists only in
// the in-process log and its journal.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { freePort } from '../support/cluster.ts';
import { startSimulator, UPSTREAM_KEY } from '../support/tollgate.ts';

const MAIN = join(import.meta.dirname, '../../services/tollgate/src/main.ts');
const ADMIN = 'crash-test-admin-token-000000';
let closeSim: () => Promise<unknown>;
let simUrl = '';
const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-crash-'));
let port = 0;
let child: ChildProcess | undefined;

async function start(env: Record<string, string>): Promise<string> {
  child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'error',
      UPSTREAM_URL: simUrl, UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN: ADMIN, ...env },
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/health`)).ok) return url;
    } catch { /* starting */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('did not start');
}

const admin = async <T>(url: string, method: string, path: string, body?: unknown) => {
  const res = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return (await res.json()) as T;
};

before(async () => {
  const s = await startSimulator();
  closeSim = () => s.sim.close();
  simUrl = s.simUrl;
  port = await freePort();
});

after(async () => {
  child?.kill('SIGKILL');
  await closeSim();
});

test('kill -9 with usage not yet in the warehouse: after restart every answered request is billed once', async () => {
  let url = await start({ WAREHOUSE_FLUSH_MS: '60000', WAREHOUSE_BATCH_SIZE: '100000' });
  const acct = await admin<{ id: string }>(url, 'POST', '/admin/v1/accounts', { name: 'crash' });
  const key = await admin<{ key: string }>(url, 'POST', `/admin/v1/accounts/${acct.id}/keys`, {});
  await admin(url, 'POST', `/admin/v1/accounts/${acct.id}/credits`, { credits: 10, reference: 'start' });
  const client = new Anthropic({ apiKey: key.key, baseURL: url, maxRetries: 0, logLevel: 'error' });
  const n = 25;
  for (let i = 0; i < n; i++) {
    const params = { model: 'claude-sonnet-4-0', max_tokens: 16, messages: [{ role: 'user' as const, content: `${i} [[sim input=${100 + i} output=3]]` }] };
    if (i % 2) await client.messages.create(params);
    else await client.messages.stream(params).finalMessage();
  }
  const expected = Array.from({ length: n }, (_, i) => BigInt((100 + i) * 72 + 3 * 360)).reduce((a, b) => a + b, 0n);
  const before = (await admin<{ totals: { requests: number } }>(url, 'GET', `/admin/v1/usage?granularity=month&from=2020-01-01&to=2100-01-01&account_id=${acct.id}`)).totals;
  assert.ok(before.requests < n, `most usage is not in the warehouse yet (${before.requests} of ${n})`);

  const exited = new Promise((r) => child!.once('exit', r));
  child!.kill('SIGKILL');
  await exited;

  url = await start({ WAREHOUSE_FLUSH_MS: '20' });
  const view = await admin<{ balance_micro_credits: string; held_credits: number }>(url, 'GET', `/admin/v1/accounts/${acct.id}`);
  assert.equal(BigInt(view.balance_micro_credits), 10_000_000n - expected);
  assert.equal(view.held_credits, 0);
  const totals = (await admin<{ totals: { requests: number; cost_micros: string } }>(url, 'GET', `/admin/v1/usage?granularity=month&from=2020-01-01&to=2100-01-01&account_id=${acct.id}`)).totals;
  assert.equal(totals.requests, n);
  assert.equal(BigInt(totals.cost_micros), expected);
  const rec = await admin<{ ok: boolean }>(url, 'GET', '/ops/v1/reconcile');
  assert.equal(rec.ok, true);
});
