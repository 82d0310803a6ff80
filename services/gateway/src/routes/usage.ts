import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { parseTime, queryParam } from '@tollgate/http';
import { resolveModel } from '@tollgate/pricing';
import {
  WarehouseInputError, metricsJson, parseUsageParams, pointJson, seriesCsv, usageReport,
} from '@tollgate/warehouse';
import type { GatewayDeps } from '../deps.ts';

/**
 * GET /v1/usage: the caller's own account's usage (issue 9, outcome 3): a time series at
 * `granularity` and totals per model, with the parameters of GET /admin/v1/usage except
 * `account_id` and `upstream_id` (refused as unknown): `from`, `to`, `granularity`, `key_id`,
 * `model`, `status`, `group_by` (`key`, `model`, `status`; not `account` or `upstream`), `format`
 * (`json`, `csv`). The account is always the
 * caller's (`request.caller`), so a `key_id` of another account matches nothing. The operator's
 * upstream cost is never shown here. 404 on a gateway that cannot read the warehouse; a bad or
 * unknown parameter is a 400 naming it.
 */
export function usageRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/v1/usage', async (request, reply) => {
    const catalog = deps.prices!.current().catalog;
    const q = request.query;
    let parsed;
    try {
      parsed = parseUsageParams({
        param: (name) => queryParam(q, name),
        time: (value, name) => parseTime(value, name),
        model: (value) => resolveModel(catalog, value)?.model.id ?? value,
      }, typeof q === 'object' && q !== null ? Object.keys(q) : [], { account: false, groupBy: ['key', 'model', 'status'] });
    } catch (err) {
      if (err instanceof WarehouseInputError) throw gatewayError('invalid_request', err.message);
      throw err;
    }
    if (deps.warehouse === undefined) {
      throw gatewayError('not_found', 'usage is not served by this gateway (it cannot read the warehouse); ask the operator for the gateway that serves /v1/usage');
    }
    const { format } = parsed;
    // Always the caller's own account: the key decides, never a parameter.
    const query = { ...parsed.query, accountId: request.caller!.account.id };
    let report;
    try {
      report = await usageReport(deps.warehouse, query);
    } catch (err) {
      if (err instanceof WarehouseInputError) throw gatewayError('invalid_request', err.message);
      throw err;
    }
    const view = { upstream: false };
    if (format === 'csv') {
      return reply
        .header('content-type', 'text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="usage-${query.granularity}.csv"`)
        .send(seriesCsv(report, query.groupBy !== undefined, view));
    }
    return {
      account_id: query.accountId,
      from: new Date(query.from).toISOString(),
      to: new Date(query.to).toISOString(),
      granularity: query.granularity,
      group_by: query.groupBy ?? null,
      currency: catalog.credit.currency,
      credit_value: catalog.credit.description,
      data: report.series.map((p) => pointJson(p, view)),
      totals: metricsJson(report.totals, view),
      by_model: report.byModel.map((m) => ({ model: m.model, ...metricsJson(m, view) })),
    };
  });
}
