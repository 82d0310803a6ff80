// GET /admin/v1/accounts/:id/credits/history: the operator's read of any account's credit history
// (what `tollgate credits history` prints), the same entries as the customer's own
// GET /v1/credits/history (services/gateway/src/routes/credits-history.ts).

import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { CREDIT_HISTORY_PARAMS, creditHistoryBody, guardOperatorRoutes, parseCreditHistoryQuery } from '@tollgate/http';
import { creditHistoryPage } from '@tollgate/warehouse';
import type { ReportDeps } from './reports.ts';

/**
 * `GET /admin/v1/accounts/:id/credits/history` (admin or finance token: a read of the ledger):
 * `{data, has_more, next_cursor}` with the account's credit movements newest first, each a
 * `CreditHistoryEntry` of @tollgate/warehouse (ledger entries `grant`, `top_up`, `refund`,
 * `adjustment` with their reference; one `usage` entry per UTC day), each with `balance_after`
 * (credits, 6 decimals, and µc). Parameters as the customer route: `from`, `to` (RFC 3339, a
 * date or epoch ms; `[from, to)` over `created_at`), `limit` (1–1000, default 100), `cursor`
 * (`next_cursor` of the previous page). 404 `not_found` for an unknown account; a bad or unknown
 * parameter is a 400 naming it. Reads the warehouse as it is (like the analytics routes): a
 * credit applied a moment ago shows once the warehouse has it.
 */
export function registerCreditHistory(app: FastifyInstance, deps: ReportDeps): void {
  app.register(async (s) => {
    guardOperatorRoutes(s, { adminToken: deps.adminToken, financeToken: deps.financeToken });
    s.get('/admin/v1/accounts/:id/credits/history', { config: { finance: true, query: CREDIT_HISTORY_PARAMS } }, async (request) => {
      const { id } = request.params as { id: string };
      const params = parseCreditHistoryQuery(request.query ?? {});
      if (!(await deps.keys.account(id))) throw gatewayError('not_found', `account ${id} does not exist`);
      // Paged in SQL: only the page leaves the warehouse.
      return creditHistoryBody(await creditHistoryPage(deps.warehouse, id, params));
    });
  });
}
