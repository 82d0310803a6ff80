import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { parseIntParam, parseTimeRange, queryParam } from '@tollgate/http';
import { creditHistoryPage } from '@tollgate/warehouse';
import type { GatewayDeps } from '../deps.ts';

const PARAMS = ['from', 'to', 'limit', 'cursor'] as const;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

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
    const query = request.query as Record<string, unknown>;
    const unknown = Object.keys(query ?? {}).filter((k) => !(PARAMS as readonly string[]).includes(k));
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
      if (cursor.length > 1100 || Buffer.from(after, 'utf8').toString('base64url') !== cursor) {
        throw gatewayError('invalid_request', 'cursor: not a cursor this route gave (use next_cursor of the previous page)');
      }
    }
    if (deps.warehouse === undefined) {
      throw gatewayError('not_found', 'credit history is not served by this gateway (it cannot read the warehouse); ask the operator for the gateway that serves /v1/credits/history');
    }
    // Always the caller's own account: the key decides, never a parameter.
    // Paged in SQL: only the page leaves the warehouse.
    const page = await creditHistoryPage(deps.warehouse, request.caller!.account.id, {
      limit, ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }), ...(after === undefined ? {} : { after }),
    });
    if (page === null) throw gatewayError('invalid_request', 'cursor: no longer in this window (use next_cursor of the previous page with the same from and to)');
    const { data, hasMore } = page;
    return {
      data,
      has_more: hasMore,
      next_cursor: hasMore ? Buffer.from(data.at(-1)!.id, 'utf8').toString('base64url') : null,
    };
  });
}
