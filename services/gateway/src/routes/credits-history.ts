import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { creditHistoryBody, parseCreditHistoryQuery } from '@tollgate/http';
import { creditHistoryPage } from '@tollgate/warehouse';
import type { GatewayDeps } from '../deps.ts';

/**
 * GET /v1/credits/history: the caller's own account's credit movements, newest first (issue 9,
 * outcome 3): ledger entries (`grant`, `top_up`, `refund`, `adjustment`, with their reference)
 * and one `usage` entry per UTC day (the day's Σ charges, booked at the day's last millisecond),
 * each with `balance_after`, the exact running balance (credits with 6 decimals and µc).
 * `from` / `to` (RFC 3339, a date, or epoch ms; `[from, to)` over `created_at`), `limit`
 * (1–1000, default 100) and `cursor` (the `next_cursor` of the previous page). The account is
 * always the caller's (`request.caller`): no parameter names another. 404 on a gateway that
 * cannot read the warehouse; a bad or unknown parameter is a 400 naming it.
 */
export function creditsHistoryRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/credits/history', async (request) => {
    const params = parseCreditHistoryQuery(request.query);
    if (deps.warehouse === undefined) {
      throw gatewayError('not_found', 'credit history is not served by this gateway (it cannot read the warehouse); ask the operator for the gateway that serves /v1/credits/history');
    }
    // Always the caller's own account: the key decides, never a parameter.
    // Paged in SQL: only the page leaves the warehouse.
    return creditHistoryBody(await creditHistoryPage(deps.warehouse, request.caller!.account.id, params));
  });
}
