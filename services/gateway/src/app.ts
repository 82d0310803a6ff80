import type { FastifyInstance } from 'fastify';
import { createHttpServer } from '@tollgate/http';
import type { KeyEntry } from '@tollgate/keys';
import { PriceBook } from '@tollgate/pricing';
import { authenticate } from './auth.ts';
import type { GatewayDeps } from './deps.ts';
import { Upstream } from './upstream.ts';
import { admitTenant, ConcurrencyGates, DEFAULT_KEY_MAX_CONCURRENT, defaultAccountMaxConcurrent } from './limits.ts';
import { messagesRoutes } from './routes/messages.ts';
import { countTokensRoutes } from './routes/count-tokens.ts';
import { accountRoutes } from './routes/account.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** the authenticated key and its account */
    caller?: KeyEntry;
  }
}

/** Mounts the customer API (`/v1/*`, `/api/v1/*`) on a server from `createHttpServer`. */
export function registerGateway(app: FastifyInstance, given: GatewayDeps): void {
  const upstream = new Upstream(given.upstream, given.dispatcher);
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
  };
  app.addHook('onClose', async () => upstream.close());
  // Asked only when a key is not found (lost state vs. a bad key), and remembered as briefly as
  // the key cache, so a flood of bad keys does not become a flood of Redis calls.
  let readyUntil = 0;
  const stateReady = async () => {
    if (Date.now() < readyUntil) return true;
    const ready = await deps.balances.ready();
    if (ready) readyUntil = Date.now() + 500;
    return ready;
  };
  app.register(async (api) => {
    api.addHook('onRequest', async (request, reply) => {
      // Watched from the start: a client may leave while its key is being looked up.
      let gone = false;
      reply.raw.once('close', () => { gone = true; });
      request.caller = await authenticate(deps.keys, deps.keyHashSecret, request.headers, stateReady, request.ip);
      // A request with a body counts against its key and account from here, while it uploads,
      // not only once its body is in: ten slow uploads of one key cannot pass a limit of four.
      if (request.method === 'POST' && deps.concurrency) {
        request.slot = admitTenant(deps.concurrency, request.caller.key.id, request.caller.account.id, reply.raw, () => gone);
      }
    });
    messagesRoutes(api, deps, upstream);
    countTokensRoutes(api, deps, upstream);
    accountRoutes(api, deps);
  });
}

/** A server with only the gateway role, for tests and for `--roles gateway`. */
export function buildGateway(deps: GatewayDeps): FastifyInstance {
  const app = createHttpServer({
    logger: deps.logger ?? false, bodyLimitBytes: deps.bodyLimitBytes, trustProxy: deps.trustProxy ?? false,
    telemetry: { tracer: deps.tracer, metrics: deps.metrics },
  });
  registerGateway(app, deps);
  return app;
}
