import type { FastifyInstance, FastifyRequest } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { checkTimeOrder, guardOperatorRoutes, parseTime, queryParam } from '@tollgate/http';
import { parseExactDecimal, resolveModel, type Catalog } from '@tollgate/pricing';
import {
  ADMIN_USAGE_PARAMS, ANALYTICS_GROUP_BY, USAGE_STATUSES, WarehouseInputError, filterValue, metricsJson, micros6, parseUsageParams, pointJson, ratio6, seriesCsv,
  usageEventPage, usageEventRecord, usageReport, type UsageMetrics, type UsageReport,
} from '@tollgate/warehouse';
import type { ReportDeps } from './reports.ts';

/** The query parameters of GET /admin/v1/usage/events. */
const USAGE_EVENT_PARAMS = ['from', 'to', 'account_id', 'key_id', 'model', 'status', 'upstream_id', 'limit', 'cursor'] as const;

/** Most events one page of GET /admin/v1/usage/events holds. */
export const MAX_EVENT_PAGE = 1000;

/**
 * GET /admin/v1/usage, GET /admin/v1/usage/events, GET /admin/v1/usage/events/:id (issue 9,
 * outcome 2): admin or finance token. Every bad or unknown query parameter is a 400
 * `invalid_request` whose message starts with the parameter's name. Shapes: README "Usage
 * analytics".
 */
export function registerAnalytics(app: FastifyInstance, deps: ReportDeps): void {
  app.register(async (s) => {
    guardOperatorRoutes(s, { adminToken: deps.adminToken, financeToken: deps.financeToken });
    s.get('/admin/v1/usage', { config: { finance: true, query: ADMIN_USAGE_PARAMS } }, async (request, reply) => {
      const catalog = deps.prices.current().catalog;
      const { query, format } = await input(() => parseUsageParams(readers(request, catalog), names(request), { account: true, groupBy: ANALYTICS_GROUP_BY }));
      const report = await input(() => usageReport(deps.warehouse, query));
      if (format === 'csv') {
        return reply
          .header('content-type', 'text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="tollgate-usage-${query.granularity}.csv"`)
          .send(seriesCsv(report, query.groupBy !== undefined, { upstream: true }));
      }
      return {
        from: new Date(query.from).toISOString(),
        to: new Date(query.to).toISOString(),
        granularity: query.granularity,
        group_by: query.groupBy ?? null,
        source: report.source,
        currency: catalog.credit.currency,
        credit_value: catalog.credit.description,
        data: report.series.map((p) => pointJson(p, { upstream: true })),
        totals: { ...metricsJson(report.totals, { upstream: true }), ...moneyView(report.totals, catalog) },
        top_accounts: report.topAccounts.map((a) => ({ account_id: a.id, requests: a.requests, cost_micros: a.costMicros.toString(), cost_credits: micros6(a.costMicros) })),
        top_keys: report.topKeys.map((k) => ({ key_id: k.id, account_id: k.accountId, requests: k.requests, cost_micros: k.costMicros.toString(), cost_credits: micros6(k.costMicros) })),
        errors: errorsJson(report),
        by_model: report.byModel.map((m) => ({ model: m.model, ...metricsJson(m, { upstream: true }) })),
      };
    });

    s.get('/admin/v1/usage/events', { config: { finance: true, query: USAGE_EVENT_PARAMS } }, async (request) => {
      const catalog = deps.prices.current().catalog;
      const q = request.query;
      const f = queryParam(q, 'from');
      const t = queryParam(q, 'to');
      const from = f === undefined ? 0 : parseTime(f, 'from');
      const to = t === undefined ? 253_402_300_800_000 : parseTime(t, 'to');
      checkTimeOrder(from, to);
      const l = queryParam(q, 'limit');
      if (l !== undefined && (!/^\d{1,4}$/.test(l) || Number(l) < 1 || Number(l) > MAX_EVENT_PAGE)) {
        throw gatewayError('invalid_request', `limit: ${JSON.stringify(l.slice(0, 40))} is not a whole number between 1 and ${MAX_EVENT_PAGE}`);
      }
      const limit = l === undefined ? 100 : Number(l);
      const c = queryParam(q, 'cursor');
      const after = c === undefined ? undefined : decodeCursor(c);
      const status = queryParam(q, 'status');
      if (status !== undefined && !(USAGE_STATUSES as readonly string[]).includes(status)) {
        throw gatewayError('invalid_request', `status: ${JSON.stringify(status.slice(0, 40))} is not one of ${USAGE_STATUSES.join(', ')}`);
      }
      // the same rule for a filter value as every other usage route (filterValue)
      const text = (name: string) => {
        const v = queryParam(q, name);
        return v === undefined ? undefined : input(() => filterValue(name, v));
      };
      const accountId = await text('account_id');
      const keyId = await text('key_id');
      const model = await text('model');
      const upstreamId = await text('upstream_id');
      const page = await input(() => usageEventPage(deps.warehouse, {
        from, to, limit,
        ...(after ? { after } : {}),
        ...(accountId !== undefined ? { accountId } : {}),
        ...(keyId !== undefined ? { keyId } : {}),
        ...(model !== undefined ? { model: catalogId(catalog, model) } : {}),
        ...(status !== undefined ? { status } : {}),
        ...(upstreamId !== undefined ? { upstreamId } : {}),
      }));
      const last = page.events[page.events.length - 1];
      return {
        data: page.events,
        has_more: page.hasMore,
        next_cursor: page.hasMore && last ? encodeCursor(last.ts, last.event_id) : null,
      };
    });

    s.get('/admin/v1/usage/events/:id', { config: { finance: true } }, async (request) => {
      const e = await usageEventRecord(deps.warehouse, (request.params as { id: string }).id);
      if (!e) throw gatewayError('not_found', 'no such usage event');
      return e;
    });
  });
}

/** The query's parameter names (Fastify parses the query string into an object). */
function names(request: FastifyRequest): string[] {
  const q = request.query;
  return typeof q === 'object' && q !== null ? Object.keys(q) : [];
}

function readers(request: FastifyRequest, catalog: Catalog) {
  return {
    param: (name: string) => queryParam(request.query, name),
    time: (value: string, name: string) => parseTime(value, name),
    model: (value: string) => catalogId(catalog, value),
  };
}

/** An alias or a `-thinking` name as the catalog id usage is stored under; unknown names as sent. */
function catalogId(catalog: Catalog, name: string): string {
  return resolveModel(catalog, name)?.model.id ?? name;
}

/** Runs `f`, turning a WarehouseInputError (its message names the parameter) into a 400. */
async function input<T>(f: () => T | Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof WarehouseInputError) throw gatewayError('invalid_request', err.message);
    throw err;
  }
}

/** The page cursor: base64url of `[ts, event_id]`, opaque to clients. */
export function encodeCursor(ts: number, eventId: string): string {
  return Buffer.from(JSON.stringify([ts, eventId])).toString('base64url');
}

function decodeCursor(c: string): { ts: number; eventId: string } {
  try {
    const v = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && typeof v[1] === 'string') return { ts: v[0] as number, eventId: v[1] };
  } catch { /* below */ }
  throw gatewayError('invalid_request', 'cursor: not a cursor this API gave (use next_cursor of the previous page)');
}

function errorsJson(r: UsageReport) {
  return {
    by_http_status: r.byHttpStatus.map((e) => ({ http_status: Number(e.code), requests: e.requests, rate: e.rate })),
    by_status: r.byStatus.map((e) => ({ status: e.code, requests: e.requests, rate: e.rate })),
  };
}

interface Fraction { num: bigint; den: bigint }

function decimalFraction(text: string): Fraction {
  const d = parseExactDecimal(text);
  return { num: d.units, den: 10n ** BigInt(d.scale) };
}

/**
 * Revenue, upstream cost and margin of a total in the catalog's currency (the price version in
 * force): revenue = µc ÷ 10^6 ÷ credits per currency unit; each upstream currency converted at
 * 1 when it is the credit currency, else at the catalog's `upstream_exchange_rate` (credit-
 * currency units per upstream unit) when it is the catalog's `upstream_currency`; margin =
 * revenue − converted upstream cost. Currency amounts are rounded half away from zero to 6
 * places (µc stay exact). Margin null with `margin_note` when a rate is missing.
 */
export function moneyView(t: UsageMetrics, catalog: Catalog): Record<string, unknown> {
  const currency = catalog.credit.currency;
  const rate = decimalFraction(catalog.credit.rate.value);
  // credits per currency unit as a fraction cpu = a / b
  const cpu = catalog.credit.rate.kind === 'credits_per_unit' ? rate : { num: rate.den, den: rate.num };
  const M = 1_000_000n;
  // revenue in currency = µc · b / (a · 10^6)
  let num = t.costMicros * cpu.den;
  let den = cpu.num * M;
  const revenue = { micro_credits: t.costMicros.toString(), credits: micros6(t.costMicros), currency, amount: ratio6(num, den) };
  const notes: string[] = [];
  let known = true;
  for (const [c, micros] of Object.entries(t.upstreamCost).sort(([a], [b]) => a.localeCompare(b))) {
    let r: Fraction | undefined;
    if (c === currency) r = { num: 1n, den: 1n };
    else if (c === catalog.upstreamCurrency && catalog.upstreamExchangeRate !== undefined) r = decimalFraction(catalog.upstreamExchangeRate);
    if (r === undefined) {
      known = false;
      notes.push(`upstream cost in ${c} cannot be compared with ${currency} revenue: set "upstream_exchange_rate" (${currency} per ${c}) in the catalog`);
      continue;
    }
    // num/den − micros · r.num / (r.den · 10^6)
    const sub = { num: micros * r.num, den: r.den * M };
    num = num * sub.den - sub.num * den;
    den = den * sub.den;
  }
  if (t.upstreamCostUnknown > 0) notes.push(`${t.upstreamCostUnknown} charged requests have no upstream cost (version 1 events, models without upstream prices): counted as costing nothing upstream`);
  return {
    revenue,
    margin: known ? { currency, amount: ratio6(num, den) } : null,
    margin_note: notes.length === 0 ? null : notes.join('; '),
  };
}
