import type { FastifyInstance, FastifyReply } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { tryWithLock } from '@tollgate/ledger';
import { guardOperatorRoutes, parseEnumParam, queryParam } from '@tollgate/http';
import {
  accountDocuments, closeMonth, invoiceLinesForMonth, listCloses, nextMonth, parseClosableMonth,
} from '@tollgate/warehouse';
import type { Invoice, Statement } from './billing-types.ts';
import { DOCUMENT_FORMATS, renderInvoice, renderStatement } from './billing-render.ts';
import { monthOr400, registerBillingExportFrom } from './billing-export.ts';
import { registerCreditHistory } from './credit-history.ts';
import type { ReportDeps } from './reports.ts';

/** The one lock every month close claims (closes cascade over earlier months, so one lock for all). */
const CLOSE_LOCK = 'billing:month-close';
/** How long a close may hold the lock before another process may take over (a close that died). */
const CLOSE_LOCK_TTL_MS = 120_000;
/** How long a close waits for another one in progress before answering 409. */
const CLOSE_WAIT_MS = 60_000;

/**
 * Invoices, statements, month close and the billing export (issue 9, outcome 4); every route
 * takes the admin or the finance token:
 * - `GET /admin/v1/accounts/:id/invoices/:month?format=json|csv|pdf` and
 *   `GET /admin/v1/accounts/:id/statements/:month?format=…`: JSON by default (a closed month's
 *   exactly as frozen, byte for byte), CSV or PDF as a download (billing-render.ts). A bad month
 *   (`2026-13`, `2026-1`, later than next month) → 400 naming it; unknown account → 404.
 * - `POST /admin/v1/billing/months/:month/close`: closes the month and every open month before
 *   it (not a month that has not started: 400 naming `month`); 201 when this call closed it, 200 with `closed_now: false` and the original `closed_at`
 *   when it was closed already (idempotent). Concurrent closes, from any number of control
 *   processes, take one lock (`tryWithLock` over the balance store: renewed while a close runs,
 *   given back by its owner only), so one snapshot is written.
 * - `GET /admin/v1/billing/months`: every closed month with when it closed.
 * - `GET /admin/v1/billing/export` (billing-export.ts) over `invoiceLinesForMonth`.
 * - `GET /admin/v1/accounts/:id/credits/history` (credit-history.ts): any account's credit history.
 */
export function registerBilling(app: FastifyInstance, deps: ReportDeps): void {
  const w = deps.warehouse;
  registerBillingExportFrom(app, deps, (month) => invoiceLinesForMonth(w, month, deps.prices));
  registerCreditHistory(app, deps);

  const document = async (kind: 'invoice' | 'statement', params: unknown, query: unknown, reply: FastifyReply) => {
    const { id, month: raw } = params as { id: string; month: string };
    const month = monthOr400(raw);
    const f = queryParam(query, 'format');
    const format = f === undefined ? 'json' : parseEnumParam(f, 'format', ['json', ...DOCUMENT_FORMATS] as const);
    const account = await deps.keys.account(id);
    if (account === undefined) throw gatewayError('not_found', `account ${id} does not exist`);
    await deps.settle?.();
    const docs = await accountDocuments(w, id, month, deps.prices);
    const text = kind === 'invoice' ? docs.invoice : docs.statement;
    reply.header('cache-control', 'no-store');
    if (format === 'json') return reply.header('content-type', 'application/json; charset=utf-8').send(text);
    // rendered from the document alone (it carries its account name, seller and credit values):
    // a closed month's file never changes when the account is renamed or prices change
    const file = kind === 'invoice'
      ? renderInvoice(JSON.parse(text) as Invoice, format)
      : renderStatement(JSON.parse(text) as Statement, format);
    return reply
      .header('content-type', file.contentType)
      .header('content-disposition', `attachment; filename="${file.filename}"`)
      .send(file.body);
  };

  app.register(async (s) => {
    guardOperatorRoutes(s, { adminToken: deps.adminToken, financeToken: deps.financeToken });

    const documentRoute = { config: { finance: true, query: ['format'] } };
    s.get('/admin/v1/accounts/:id/invoices/:month', documentRoute, async (request, reply) =>
      document('invoice', request.params, request.query, reply));
    s.get('/admin/v1/accounts/:id/statements/:month', documentRoute, async (request, reply) =>
      document('statement', request.params, request.query, reply));

    s.get('/admin/v1/billing/months', { config: { finance: true } }, async () => {
      const closes = await listCloses(w);
      const last = closes.at(-1);
      return {
        data: closes.map((c) => ({ month: c.month, closed_at: c.closed_at })),
        last_closed: last?.month ?? null,
        // where facts dated in a closed month that arrive now are invoiced
        first_open: last === undefined ? null : nextMonth(last.month),
      };
    });

    s.post('/admin/v1/billing/months/:month/close', { config: { finance: true, body: false } }, async (request, reply) => {
      // a month that has not started cannot be closed (400 naming month)
      const month = monthOr400((request.params as { month: string }).month, (m) => parseClosableMonth(m));
      const deadline = Date.now() + CLOSE_WAIT_MS;
      for (;;) {
        const done = (await listCloses(w)).find((c) => c.month >= month);
        if (done !== undefined) {
          return reply.code(200).send({ month, status: 'closed', closed_now: false, closed_at: done.closed_at, months_closed: [] });
        }
        const closed = await tryWithLock(deps.balances, CLOSE_LOCK, CLOSE_LOCK_TTL_MS, async () => {
          // embedded: everything published so far is in the warehouse before it is frozen
          await deps.settle?.();
          return closeMonth(w, month, deps.prices);
        });
        if (closed.held) {
          const r = closed.value;
          return reply.code(r.closed_now ? 201 : 200).send({
            month, status: 'closed', closed_now: r.closed_now, closed_at: r.closed_at, months_closed: r.months,
          });
        }
        if (Date.now() > deadline) throw gatewayError('conflict', `month: another month close is in progress; ${month} is not closed yet, try again`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
  });
}
