// Gateway-only fixture: the real simulator as the upstream, `buildGateway` on memory adapters
// (balances, keys, event log), customers made directly in those adapters, and the usage events
// the gateway publishes collected from the log.
import { createServer } from 'node:http';
import { flatUsage, type FlatUsage } from '../../../test/support/events.ts';
import { resolve } from 'node:path';
import zlib from 'node:zlib';
import { request } from 'undici';
import Anthropic from '@anthropic-ai/sdk';
import type { UsageEvent } from '@tollgate/events';
import { MemoryLog } from '@tollgate/events';
import { displayPrefix, generateSecret, hashSecret, MemoryKeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore } from '@tollgate/ledger';
import { loadCatalogFile } from '@tollgate/pricing';
import { buildSimulator } from '@tollgate/simulator';
import type { FastifyInstance } from 'fastify';
import { buildGateway, type GatewayDeps } from '../src/index.ts';

export const UPSTREAM_KEY = 'sk-ant-upstream-gateway-test-0123456789';
const KEY_HASH_SECRET = 'gateway-test-hash-secret-0123456789';
const CATALOG = resolve(import.meta.dirname, '../../../libs/pricing/catalogs/cny.json');

export interface Customer {
  accountId: string;
  keyId: string;
  secret: string;
  /** the official SDK on this key, default retries off unless asked */
  client: Anthropic;
}

export interface GatewayStack {
  gatewayUrl: string;
  simUrl: string;
  gateway: FastifyInstance;
  deps: GatewayDeps;
  balances: MemoryBalanceStore;
  /** usage events published so far, by event id (= the gateway's request id) */
  usage: Map<string, UsageEvent>;
  customer(credits?: bigint, options?: { maxRetries?: number }): Promise<Customer>;
  /** waits until the usage event of `requestId` is published */
  usageOf(requestId: string): Promise<FlatUsage>;
  /** requests the simulator received, oldest first */
  simRequests(): Promise<Array<{ url: string; headers: Record<string, string>; body: unknown }>>;
  clearSim(): Promise<void>;
  close(): Promise<void>;
}

let accounts = 0;

/**
 * Starts the simulator (credential `UPSTREAM_KEY`) and a gateway in front of it. `upstreamUrl`
 * replaces the simulator as the gateway's upstream (a proxy in front of the simulator);
 * `upstreamMaxConnections` sizes the upstream pool; the rest of `extra` overrides deps.
 */
export async function startGateway(
  extra: Partial<GatewayDeps> & { upstreamUrl?: (simUrl: string) => Promise<string> | string; upstreamMaxConnections?: number } = {},
): Promise<GatewayStack> {
  const sim = buildSimulator({ apiKey: UPSTREAM_KEY });
  const simUrl = await sim.listen({ port: 0, host: '127.0.0.1' });
  const keys = new MemoryKeyDirectory();
  const balances = new MemoryBalanceStore();
  const log = new MemoryLog();
  const usage = new Map<string, UsageEvent>();
  await log.subscribe({
    group: 'test', topics: ['usage'], fromBeginning: true,
    handler: async (batch) => {
      for (const { event } of batch) if (event.type === 'usage') usage.set(event.event_id, event);
    },
  });
  const { upstreamUrl, upstreamMaxConnections, ...overrides } = extra;
  const deps: GatewayDeps = {
    catalog: loadCatalogFile(CATALOG),
    keys, balances, log,
    keyHashSecret: KEY_HASH_SECRET,
    upstream: { url: upstreamUrl ? await upstreamUrl(simUrl) : simUrl, apiKey: UPSTREAM_KEY, timeoutMs: 30_000, maxConnections: upstreamMaxConnections },
    holdTtlMs: 60_000,
    streamErrorBilling: 'refund',
    bodyLimitBytes: 32 * 1024 * 1024,
    gatewayId: 'gateway-test',
    ...overrides,
  };
  const gateway = buildGateway(deps);
  const gatewayUrl = await gateway.listen({ port: 0, host: '127.0.0.1' });

  return {
    gatewayUrl, simUrl, gateway, deps, balances, usage,
    async customer(credits = 10_000_000n, options = {}) {
      const n = ++accounts;
      const accountId = `acc_gw_${n}`;
      const keyId = `key_gw_${n}`;
      const secret = generateSecret();
      const now = Date.now();
      await keys.putAccount({ id: accountId, name: `customer ${n}`, status: 'active', created_at: now, version: 1 });
      await keys.putKey({
        id: keyId, account_id: accountId, name: 'k', prefix: displayPrefix(secret), hash: hashSecret(secret, KEY_HASH_SECRET),
        status: 'active', created_at: now, revoked_at: null, version: 1,
      });
      await balances.applyLedger({
        type: 'ledger', event_id: `credit:${accountId}:initial`, ts: now, account_id: accountId,
        kind: 'grant', amount_micros: credits.toString(), reference: 'initial',
      });
      const client = new Anthropic({ apiKey: secret, baseURL: gatewayUrl, maxRetries: options.maxRetries ?? 0, logLevel: 'error' });
      return { accountId, keyId, secret, client };
    },
    async usageOf(requestId) {
      for (let i = 0; i < 400; i++) {
        await log.drain();
        const event = usage.get(requestId);
        if (event) return flatUsage(event);
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`no usage event for ${requestId}`);
    },
    async simRequests() {
      return (await (await fetch(`${simUrl}/_sim/requests`)).json()) as Array<{ url: string; headers: Record<string, string>; body: unknown }>;
    },
    async clearSim() {
      await fetch(`${simUrl}/_sim/requests`, { method: 'DELETE' });
    },
    async close() {
      await gateway.close();
      await sim.close();
      await log.close();
    },
  };
}

/** The SDK against the simulator itself (no gateway): the reference of what the upstream says. */
export function directClient(simUrl: string): Anthropic {
  return new Anthropic({ apiKey: UPSTREAM_KEY, baseURL: simUrl, maxRetries: 0, logLevel: 'error' });
}

/**
 * A real HTTP hop in front of the simulator that behaves like a CDN the operator does not
 * control: it re-encodes each response body as the client's `x-sim-cdn` header asks (whatever
 * `accept-encoding` said) and stamps the upstream account's `anthropic-ratelimit-*` headers on
 * every response, success or not. `x-sim-cdn` values: `x-gzip`, `raw-deflate` (deflate without the
 * zlib wrapper), `gzip,br` (gzip first, then brotli), `compress` (an encoding zlib cannot
 * read), `none`.
 */
export async function startCdn(simUrl: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers: Record<string, string> = {};
    // x-sim-cdn is the CDN's own directive (x-sim- so the gateway forwards it), not the simulator's.
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection' && k !== 'x-sim-cdn') headers[k] = v;
    const up = await request(`${simUrl}${req.url}`, { method: req.method as 'POST', headers, body: Buffer.concat(chunks) });
    let body = Buffer.from(await up.body.arrayBuffer());
    const out: Record<string, string> = {
      'anthropic-ratelimit-unified-status': 'rejected',
      'anthropic-ratelimit-requests-remaining': '0',
      'anthropic-ratelimit-tokens-limit': '1',
    };
    for (const [k, v] of Object.entries(up.headers)) {
      if (typeof v === 'string' && !['content-length', 'transfer-encoding', 'connection', 'keep-alive'].includes(k)) out[k] = v;
    }
    switch (req.headers['x-sim-cdn']) {
      case 'x-gzip': body = zlib.gzipSync(body); out['content-encoding'] = 'x-gzip'; break;
      case 'raw-deflate': body = zlib.deflateRawSync(body); out['content-encoding'] = 'deflate'; break;
      case 'gzip,br': body = zlib.brotliCompressSync(zlib.gzipSync(body)); out['content-encoding'] = 'gzip, br'; break;
      case 'compress': out['content-encoding'] = 'compress'; break;
    }
    out['content-length'] = String(body.length);
    res.writeHead(up.statusCode, out);
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
