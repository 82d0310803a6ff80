import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { guardOperatorRoutes, parseEnumParam, queryParam } from '@tollgate/http';
import { BillingInputError, parseBillingMonth } from '@tollgate/warehouse';
import type { InvoiceLine } from './billing-types.ts';
import { EXPORT_FORMATS, exportContentType, exportFilename, exportStream, parquetOutOfRange, type ExportFormat } from './billing-render.ts';
import type { ReportDeps } from './reports.ts';

/** Every account's invoice lines of one month (`YYYY-MM`, UTC), in a deterministic order. */
export type MonthLines = (month: string) => Promise<InvoiceLine[]>;

const EXPORT_PARAMS = ['month', 'format'] as const;

/**
 * The `month` of a billing route: required; then the billing lib's rule (parseBillingMonth:
 * `YYYY-MM`, UTC, from 1970-01 to the month after the current one), so the export refuses
 * exactly the months the invoice and statement routes refuse. Throws 400 `invalid_request`
 * naming `month`.
 */
export function parseMonthParam(value: string | undefined, now: number = Date.now()): string {
  if (value === undefined) throw gatewayError('invalid_request', 'month: required, a month such as 2026-11 (YYYY-MM, UTC)');
  return monthOr400(value, (m) => parseBillingMonth(m, now));
}

/** `value` through `parse` (a billing-lib month rule); its `BillingInputError` becomes a 400 `invalid_request`. */
export function monthOr400(value: string, parse: (m: string) => string = parseBillingMonth): string {
  try {
    return parse(value);
  } catch (err) {
    if (err instanceof BillingInputError) throw gatewayError('invalid_request', err.message);
    throw err;
  }
}

/**
 * `GET /admin/v1/billing/export?month=YYYY-MM&format=csv|json|parquet` (admin or finance token):
 * every account's invoice lines of the month as one file, streamed a batch at a time
 * (billing-render.ts exportChunks: CSV RFC 4180 with CRLF; JSON Lines; Parquet), with
 * `content-disposition: attachment; filename="tollgate-billing-YYYY-MM.<csv|jsonl|parquet>"`.
 * `format` defaults to `json`. A missing, malformed or future month (parseMonthParam), another
 * format or an unknown parameter is a 400 naming it. The same warehouse contents give byte-identical files.
 * `linesOf` is where the lines come from: registerBilling passes the billing lib's
 * `invoiceLinesForMonth` (every account, deterministic order); tests pass fixtures.
 */
export function registerBillingExportFrom(app: FastifyInstance, deps: ReportDeps, linesOf: MonthLines): void {
  app.register(async (s) => {
    guardOperatorRoutes(s, { adminToken: deps.adminToken, financeToken: deps.financeToken });
    s.get('/admin/v1/billing/export', { config: { finance: true, query: EXPORT_PARAMS } }, async (request, reply) => {
      const month = parseMonthParam(queryParam(request.query, 'month'));
      const f = queryParam(request.query, 'format');
      const format: ExportFormat = f === undefined ? 'json' : parseEnumParam(f, 'format', EXPORT_FORMATS);
      await deps.settle?.();
      const lines = await linesOf(month);
      const wide = format === 'parquet' ? parquetOutOfRange(lines) : undefined;
      if (wide !== undefined) {
        throw gatewayError('invalid_request', `format: parquet stores ${wide.column} as INT64, and account ${wide.line.account_id} has a ${wide.line.section} line of ${wide.line[wide.column]} (beyond 2^63 − 1); export ${month} as csv or json, which carry it exactly`);
      }
      return reply
        .header('content-type', exportContentType(format))
        .header('content-disposition', `attachment; filename="${exportFilename(month, format)}"`)
        .header('cache-control', 'no-store')
        .send(exportStream(lines, format));
    });
  });
}
