import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../deps.ts';

/** GET /v1/usage: the caller's own account's usage (issue 9, outcome 3). */
export function usageRoutes(_app: FastifyInstance, _deps: GatewayDeps): void {
  // filled in by the analytics work
}
