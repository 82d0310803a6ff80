import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../deps.ts';

/** GET /v1/credits/history: the caller's own account's ledger with running balance (issue 9, outcome 3). */
export function creditsHistoryRoutes(_app: FastifyInstance, _deps: GatewayDeps): void {
  // filled in by the billing work
}
