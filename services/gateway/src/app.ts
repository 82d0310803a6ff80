import type { FastifyInstance } from 'fastify';
import { createHttpServer } from '@tollgate/http';
import type { KeyEntry } from '@tollgate/keys';
import { PriceBook } from '@tollgate/pricing';
import { authenticate, type StateReadiness } from './auth.ts';
import type { GatewayDeps } from './deps.ts';
import { Upstream } from './upstream.ts';
import { CachedPoolView, MemoryPoolStore } from '@tollgate/pool';
import { UpstreamClients } from './pool/clients.ts';
import { UpstreamPool } from './pool/selector.ts';
import { admitTenant, ConcurrencyGates, DEFAULT_KEY_MAX_CONCURRENT, defaultAccountMaxConcurrent } from './limits.ts';
import { HoldRegistry } from './hold-registry.ts';
import { messagesRoutes } from './routes/messages.ts';
import { chatCompletionsRoutes } from './routes/chat-completions.ts';
import { countTokensRoutes } from './routes/count-tokens.ts';
import { accountRoutes } from './routes/account.ts';
import { usageRoutes } from './routes/usage.ts';
import { creditsHistoryRoutes } from './routes/credits-history.ts';

/** How long after the hot state is seen rebuilt a missed key is read again (ms): lookups in flight across the rebuild. */
const RECOVERED_RECHECK_MS = 1000;

declare module 'fastify' {
  interface FastifyRequest {
    /** the authenticated key and its account */
    caller?: KeyEntry;
    /** performance.now() when its key lookup began (HoldRegistry.recordsRestoredAt: a key read before spool-only records were put back) */
    keyReadAt?: number;
  }
}

/** What a process needs to stop a gateway without losing a usage event. */
export interface GatewayHandle {
  /** customer requests whose handler has not returned (their usage event is published by then) */
  readonly inFlight: number;
  /** resolves once no customer request is in flight */
  idle(): Promise<void>;
}

/**
 * Mounts the customer API (`/v1/*`, `/api/v1/*`) on a server from `createHttpServer`. When
 * `shutdown` aborts, every upstream connection is cut at once (streams settle with the usage
 * seen so far, `cut_by_shutdown`).
 */
export function registerGateway(app: FastifyInstance, given: GatewayDeps): GatewayHandle {
  const upstream = new Upstream(given.upstream, given.dispatcher);
  // Upstream pools (issue 10): without a shared pool, the default group of UPSTREAM_URL alone,
  // session pins in this process's memory.
  const poolStore = given.pool?.store ?? new MemoryPoolStore();
  const poolView = given.pool?.view ?? new CachedPoolView({
    store: poolStore, configured: { url: given.upstream.url, apiKey: given.upstream.apiKey }, keyHashSecret: given.keyHashSecret,
  });
  const clients = new UpstreamClients(upstream, given.upstream);
  const pool = new UpstreamPool({
    view: poolView, store: poolStore, clients, gatewayId: given.gatewayId, ...(given.selection ? { selection: given.selection } : {}),
    onError: (err, what) => app.log.warn({ err }, what),
  });
  pool.startReporting();
  given.shutdown?.addEventListener('abort', () => { void upstream.destroy(); void clients.destroy(); }, { once: true });
  // A handler returns after its usage event is published (every path of messages.ts), so a
  // count of running handlers is what a shutdown waits for before it flushes the log.
  let inFlight = 0;
  let waiters: Array<() => void> = [];
  const track = async <T>(run: () => Promise<T>): Promise<T> => {
    inFlight++;
    try {
      return await run();
    } finally {
      if (--inFlight === 0) {
        for (const w of waiters) w();
        waiters = [];
      }
    }
  };
  // One set of gates per gateway process: the pool gate is as large as the upstream pool, so
  // a request is refused at once rather than queued inside undici behind other tenants.
  const deps: GatewayDeps = {
    ...given,
    prices: given.prices ?? new PriceBook(given.catalog),
    concurrency: given.concurrency ?? new ConcurrencyGates({
      perKey: given.keyMaxConcurrentRequests ?? DEFAULT_KEY_MAX_CONCURRENT,
      perAccount: given.accountMaxConcurrentRequests ?? defaultAccountMaxConcurrent(upstream.maxConnections),
      pool: upstream.maxConnections,
    }),
    holds: given.holds ?? new HoldRegistry(given.balances, {
      onError: (err) => app.log.warn({ err }, 'hold registry: could not read or restore hot state; trying again'),
      onRestored: (r) => app.log.warn(r, 'hot state was rebuilt: re-reserved the holds of this gateway\'s requests in flight'),
      onRecordsRestored: () => given.keys.forgetAll?.(),
    }),
  };
  app.addHook('onClose', async () => {
    deps.holds?.stop();
    pool.close();
    await Promise.all([upstream.close(), clients.close()]);
  });
  // Asked only when a key is not found (lost state vs. a bad key). A miss is answered by a
  // check begun once it was read (an earlier "ready" may predate a loss: valid keys got 401 for
  // up to 500 ms after one). Misses share checks: one that began after them, else the single
  // check that follows the one running, so a flood of bad keys costs at most one check per
  // check's round trip, whatever its rate. The check is `stateLost` (one MGET; on a Cluster
  // also one EXISTS on the directory's Redis), not `ready()`, which on a Cluster reads every
  // slot's marker: the key directory is not on the Cluster. Seen lost, then ready: the key
  // cache forgets its misses (read while the state was lost, they would refuse valid keys) and
  // misses for RECOVERED_RECHECK_MS after are read again (lookups in flight across the rebuild).
  let running: { startedAt: number; ready: Promise<boolean> } | undefined;
  let following: Promise<boolean> | undefined;
  let lastCheck: { startedAt: number; ready: boolean } | undefined;
  let seenLost = false;
  let recoveredUntil = 0;
  const check = (): Promise<boolean> => {
    const startedAt = performance.now();
    const ready = deps.balances.stateLost().then((lost) => !lost);
    running = { startedAt, ready };
    ready.then((r) => { if (!lastCheck || lastCheck.startedAt < startedAt) lastCheck = { startedAt, ready: r }; }, () => {})
      .finally(() => { if (running?.ready === ready) running = undefined; });
    return ready;
  };
  /** The answer of a check begun at or after `since`. */
  const checkSince = (since: number): Promise<boolean> => {
    if (lastCheck && lastCheck.startedAt >= since) return Promise.resolve(lastCheck.ready);
    if (!running) return check();
    if (running.startedAt >= since) return running.ready;
    // The running check began before this miss: share the one that follows it.
    following ??= running.ready.then(() => {}, () => {}).then(() => {
      following = undefined;
      return check();
    });
    return following;
  };
  const stateReady = async (since: number): Promise<StateReadiness> => {
    const ready = await checkSince(since);
    if (!ready) {
      seenLost = true;
      return false;
    }
    if (seenLost) {
      seenLost = false;
      deps.keys.forgetMisses?.();
      recoveredUntil = Date.now() + RECOVERED_RECHECK_MS;
    }
    return Date.now() < recoveredUntil ? 'recovered' : true;
  };
  app.register(async (api) => {
    api.addHook('onRoute', (route) => {
      const handler = route.handler;
      route.handler = function (this: FastifyInstance, request, reply) {
        return track(async () => handler.call(this, request, reply));
      };
    });
    api.addHook('onRequest', async (request, reply) => {
      // Watched from the start: a client may leave while its key is being looked up.
      let gone = false;
      reply.raw.once('close', () => { gone = true; });
      request.keyReadAt = performance.now();
      request.caller = await authenticate(deps.keys, deps.keyHashSecret, request.headers, stateReady, request.ip);
      // A request with a body counts against its key and account from here, while it uploads,
      // not only once its body is in: ten slow uploads of one key cannot pass a limit of four.
      if (request.method === 'POST' && deps.concurrency) {
        request.slot = admitTenant(deps.concurrency, request.caller.key.id, request.caller.account.id, reply.raw, () => gone);
      }
    });
    const pipeline = messagesRoutes(api, deps, upstream, pool);
    chatCompletionsRoutes(api, pipeline);
    countTokensRoutes(api, deps, pool);
    accountRoutes(api, deps);
    usageRoutes(api, deps);
    creditsHistoryRoutes(api, deps);
  });
  return {
    get inFlight() { return inFlight; },
    idle: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => { waiters.push(r); })),
  };
}

/** A server with only the gateway role, for tests and for `--roles gateway`. */
export function buildGateway(deps: GatewayDeps): FastifyInstance {
  const app = createHttpServer({
    logger: deps.logger ?? false, bodyLimitBytes: deps.bodyLimitBytes, trustProxy: deps.trustProxy ?? false,
    telemetry: {
      tracer: deps.tracer, metrics: deps.metrics,
      secrets: [deps.upstream.apiKey, ...(deps.upstream.redact ?? [])].filter((s): s is string => typeof s === 'string' && s.length > 0),
    },
  });
  registerGateway(app, deps);
  return app;
}
