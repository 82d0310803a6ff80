// Fixtures for cross-service tests: the simulator as the upstream, Tollgate in embedded mode
// (in process, chDB under a temp DATA_DIR), and small admin helpers over the real HTTP API.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { loadConfig } from '@tollgate/config';
import { buildSimulator } from '@tollgate/simulator';
import { startTollgate, type Tollgate } from '@tollgate/tollgate';

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
  const stack: Stack = {
    simUrl, dataDir, env,
    tollgate: await startTollgate(loadConfig(env)),
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
