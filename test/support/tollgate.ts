// Fixtures for cross-service tests: the simulator as the upstream, Tollgate in embedded mode
// (in process, chDB under a temp DATA_DIR), and small admin helpers over the real HTTP API.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { loadConfig } from '@tollgate/config';
import { buildSimulator } from '@tollgate/simulator';
import { startTollgate, type Tollgate } from '@tollgate/tollgate';
import { freePort } from './cluster.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';
export const UPSTREAM_KEY = 'sk-ant-upstream-test-key';

export interface Stack {
  simUrl: string;
  tollgate: Tollgate;
  url: string;
  dataDir: string;
  env: Record<string, string>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startSimulator() {
  const sim = buildSimulator({ apiKey: UPSTREAM_KEY });
  const simUrl = await sim.listen({ port: 0, host: '127.0.0.1' });
  return { sim, simUrl };
}

/** Simulator + embedded Tollgate on a fresh DATA_DIR; `restart()` keeps the DATA_DIR. */
export async function startStack(extraEnv: Record<string, string> = {}): Promise<Stack> {
  const { sim, simUrl } = await startSimulator();
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-e2e-'));
  const env = {
    DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent',
    UPSTREAM_URL: simUrl, UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN,
    WAREHOUSE_FLUSH_MS: '50',
    ...extraEnv,
  };
  // A start that is refused leaves no simulator behind (it would keep the test process alive).
  const tollgate = await startTollgate(loadConfig(env)).catch(async (err: unknown) => {
    await sim.close();
    throw err;
  });
  const stack: Stack = {
    simUrl, dataDir, env,
    tollgate,
    url: '',
    async restart() {
      await stack.tollgate.close();
      stack.tollgate = await startTollgate(loadConfig(env));
      stack.url = stack.tollgate.url!;
    },
    async close() {
      await stack.tollgate.close();
      await sim.close();
    },
  };
  stack.url = stack.tollgate.url!;
  return stack;
}

/**
 * One Tollgate process of all roles (`node main.ts`, as deployed) on a free port with a fresh
 * DATA_DIR (`tollgate-<name>-…`), at LOG_LEVEL=trace, for tests that read what a process writes;
 * `env` adds to (or overrides) PORT, HOST, DATA_DIR, LOG_LEVEL, UPSTREAM_API_KEY, ADMIN_TOKEN and
 * WAREHOUSE_FLUSH_MS=20 (UPSTREAM_URL is the caller's). `logs()` is all its stdout and stderr so
 * far. Resolves once /health answers (else stops it and fails with the log); `stop()` sends
 * SIGTERM and waits for the exit.
 */
export async function startLoggedProcess(name: string, env: Record<string, string>): Promise<{ url: string; dataDir: string; logs(): string; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), `tollgate-${name}-`));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [join(import.meta.dirname, '../../services/tollgate/src/main.ts')], {
    env: {
      PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'trace',
      UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN, WAREHOUSE_FLUSH_MS: '20', ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout!.on('data', (b: Buffer) => { logs += b.toString(); });
  child.stderr!.on('data', (b: Buffer) => { logs += b.toString(); });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  let up = false;
  for (let i = 0; i < 200 && !up; i++) {
    up = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (!up) await new Promise((r) => setTimeout(r, 50));
  }
  if (!up) await stop();
  assert.ok(up, `did not start:\n${logs}`);
  return { url, dataDir, logs: () => logs, stop };
}

/** Every file under `dir`, at any depth. */
export function filesUnder(dir: string): string[] {
  const files: string[] = [];
  const walk = (d: string) => { for (const n of readdirSync(d)) { const p = join(d, n); if (statSync(p).isDirectory()) walk(p); else files.push(p); } };
  walk(dir);
  return files;
}

export async function admin<T = Record<string, unknown>>(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as T };
}

/** A new account with `credits` granted and one key; returns the SDK client for that key. */
export async function customer(url: string, credits: number | string, name = 'acme') {
  const account = await admin<{ id: string }>(url, 'POST', '/admin/v1/accounts', { name });
  const key = await admin<{ id: string; key: string }>(url, 'POST', `/admin/v1/accounts/${account.json.id}/keys`, { name: 'k' });
  if (Number(credits) !== 0) {
    await admin(url, 'POST', `/admin/v1/accounts/${account.json.id}/credits`, { credits, reference: `initial-${account.json.id}` });
  }
  const client = new Anthropic({ apiKey: key.json.key, baseURL: url, maxRetries: 0, logLevel: 'error' });
  return { accountId: account.json.id, keyId: key.json.id, secret: key.json.key, client };
}

export interface AccountView {
  balance_micro_credits: string;
  held_credits: number;
}

/** Waits until the log is applied and no hold is outstanding; returns the exact balance. */
export async function settledBalance(stack: Stack, accountId: string): Promise<bigint> {
  for (let i = 0; i < 200; i++) {
    await stack.tollgate.drain();
    const view = await admin<AccountView>(stack.url, 'GET', `/admin/v1/accounts/${accountId}`);
    if (view.json.held_credits === 0) return BigInt(view.json.balance_micro_credits);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`holds of ${accountId} never settled`);
}

export async function simRequests(simUrl: string, limit = 1): Promise<Array<{ url: string; headers: Record<string, string>; body: Record<string, unknown> }>> {
  const res = await fetch(`${simUrl}/_sim/requests?limit=${limit}`);
  return (await res.json()) as Array<{ url: string; headers: Record<string, string>; body: Record<string, unknown> }>;
}
