// GET /admin/v1/accounts/:id/credits/history: the operator's read of any account's credit history
// (what `tollgate credits history` prints), the same entries as the customer's own
// GET /v1/credits/history (services/gateway/src/routes/credits-history.ts).

import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { parseIntParam, parseTimeRange, queryParam, requireOperator } from '@tollgate/http';
import { creditHistoryPage } from '@tollgate/warehouse';
import type { ReportDeps } from './reports.ts';

const PARAMS = ['from', 'to', 'limit', 'cursor'] as const;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

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
    s.addHook('onRequest', requireOperator({ adminToken: deps.adminToken, financeToken: deps.financeToken }));
    s.get('/admin/v1/accounts/:id/credits/history', { config: { finance: true } }, async (request) => {
      const { id } = request.params as { id: string };
      const query = (request.query ?? {}) as Record<string, unknown>;
      const unknown = Object.keys(query).filter((k) => !(PARAMS as readonly string[]).includes(k));
      if (unknown.length > 0) {
        const names = unknown.map((k) => JSON.stringify(k.slice(0, 40)).replace(/[^\x20-\x7e]/g, '?')).join(', ');
        throw gatewayError('invalid_request', `unknown query parameter${unknown.length > 1 ? 's' : ''} ${names}; this route takes ${PARAMS.join(', ')}`);
      }
      const { from, to } = parseTimeRange(query);
      const l = queryParam(query, 'limit');
      const limit = l === undefined ? DEFAULT_LIMIT : parseIntParam(l, 'limit', 1, MAX_LIMIT);
      const cursor = queryParam(query, 'cursor');
      let after: string | undefined;
      if (cursor !== undefined) {
        after = Buffer.from(cursor, 'base64url').toString('utf8');
        // the cursor is the last entry's id, base64url: anything that does not round-trip was not given here
        if (cursor.length > 1100 || Buffer.from(after, 'utf8').toString('base64url') !== cursor) {
          throw gatewayError('invalid_request', 'cursor: not a cursor this route gave (use next_cursor of the previous page)');
        }
      }
      if (!(await deps.keys.account(id))) throw gatewayError('not_found', `account ${id} does not exist`);
      // Paged in SQL: only the page leaves the warehouse.
      const page = await creditHistoryPage(deps.warehouse, id, {
        limit, ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }), ...(after === undefined ? {} : { after }),
      });
      if (page === null) throw gatewayError('invalid_request', 'cursor: no longer in this window (use next_cursor of the previous page with the same from and to)');
      const { data, hasMore } = page;
      return { data, has_more: hasMore, next_cursor: hasMore ? Buffer.from(data.at(-1)!.id, 'utf8').toString('base64url') : null };
    });
  });
}
