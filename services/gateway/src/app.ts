import type { FastifyInstance } from 'fastify';
import { createHttpServer } from '@tollgate/http';
import type { KeyEntry } from '@tollgate/keys';
import { authenticate } from './auth.ts';
import type { GatewayDeps } from './deps.ts';
import { Upstream } from './upstream.ts';
import { ConcurrencyGates, DEFAULT_KEY_MAX_CONCURRENT } from './limits.ts';
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
    concurrency: given.concurrency ?? new ConcurrencyGates({
      perKey: given.keyMaxConcurrentRequests ?? DEFAULT_KEY_MAX_CONCURRENT, pool: upstream.maxConnections,
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
    api.addHook('onRequest', async (request) => {
      request.caller = await authenticate(deps.keys, deps.keyHashSecret, request.headers, stateReady);
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
