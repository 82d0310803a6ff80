// The wire shapes of usage analytics (GET /admin/v1/usage and GET /v1/usage): snake_case JSON
// with money as exact decimal text, and CSV (RFC 4180 through csv-stringify). One place, so the
// operator and the customer routes say the same thing the same way.

import { stringify } from 'csv-stringify/sync';
import { DIMENSION_COLUMNS } from './schema.ts';
import type { SeriesPoint, UsageMetrics, UsageReport } from './analytics.ts';
import { USAGE_STATUSES, filterValue } from './analytics.ts';
import { WarehouseInputError } from './warehouse.ts';

/** µ-units (µc, or µ of a currency) as a decimal with exactly 6 places: 1234567n → "1.234567". */
export function micros6(v: bigint): string {
  const neg = v < 0n;
  const a = neg ? -v : v;
  return `${neg ? '-' : ''}${a / 1_000_000n}.${(a % 1_000_000n).toString().padStart(6, '0')}`;
}

/** num ÷ den (den > 0) rounded half away from zero to 6 decimal places, as text with 6 places. */
export function ratio6(num: bigint, den: bigint): string {
  if (den <= 0n) throw new RangeError('ratio6: denominator must be positive');
  const neg = num < 0n;
  const a = neg ? -num : num;
  const scaled = (a * 1_000_000n * 2n + den) / (2n * den);
  return micros6(neg ? -scaled : scaled);
}

/** What the JSON may show: `upstream` false hides the operator's own cost (customer views). */
export interface ViewOptions {
  upstream: boolean;
}

/** One set of metrics as JSON: counts as numbers, money as `*_micros` integer text and `*_credits` 6-decimal text. */
export function metricsJson(m: UsageMetrics, o: ViewOptions): Record<string, unknown> {
  return {
    requests: m.requests,
    errors: m.errors,
    error_rate: m.requests === 0 ? null : Math.round((m.errors / m.requests) * 1e6) / 1e6,
    quantities: { ...m.quantities },
    cost_micros: m.costMicros.toString(),
    cost_credits: micros6(m.costMicros),
    ...(o.upstream ? {
      upstream_cost: Object.fromEntries(Object.entries(m.upstreamCost).sort(([a], [b]) => a.localeCompare(b))
        .map(([c, v]) => [c, { micros: v.toString(), amount: micros6(v) }])),
      upstream_cost_unknown_requests: m.upstreamCostUnknown,
    } : {}),
    unpriced_requests: m.unpricedRequests,
    latency_ms: { ...m.latencyMs },
    ttft_ms: { ...m.ttftMs },
    cache_hit_ratio: m.cacheHitRatio,
    output_tokens_per_second: m.outputTokensPerSecond,
  };
}

/** A series point as JSON: `bucket` RFC 3339 UTC, `group` when grouped, then the metrics. */
export function pointJson(p: SeriesPoint, o: ViewOptions): Record<string, unknown> {
  return {
    bucket: new Date(p.bucket).toISOString(),
    ...(p.group !== undefined ? { group: p.group } : {}),
    ...metricsJson(p, o),
  };
}

/**
 * The series as CSV: a header row, then one row per bucket × group, columns in a fixed order:
 * `bucket`, `group` (when grouped), `requests`, `errors`, one per billable dimension (DIMENSIONS
 * order), `cost_micros`, `cost_credits`, with `upstream`: `upstream_cost_micros_<CUR>` per
 * currency in the report (sorted) and `upstream_cost_unknown_requests`; then `unpriced_requests`,
 * `latency_avg_ms`, `latency_p50_ms`, `latency_p90_ms`, `latency_p99_ms`, `ttft_count`,
 * `ttft_avg_ms`, `ttft_p50_ms`, `ttft_p90_ms`, `ttft_p99_ms`, `cache_hit_ratio`,
 * `output_tokens_per_second`. RFC 4180: CRLF line ends, fields quoted when needed, UTF-8, no
 * BOM; an empty cell is null. A cell starting with = + - @ (an id or a model name) is prefixed
 * with `'` so a spreadsheet does not run it as a formula.
 */
export function seriesCsv(r: UsageReport, grouped: boolean, o: ViewOptions): string {
  const currencies = [...new Set([...r.series.flatMap((p) => Object.keys(p.upstreamCost)), ...Object.keys(r.totals.upstreamCost)])].sort();
  const header = [
    'bucket', ...(grouped ? ['group'] : []), 'requests', 'errors', ...DIMENSION_COLUMNS.map((d) => d.key), 'cost_micros', 'cost_credits',
    ...(o.upstream ? [...currencies.map((c) => `upstream_cost_micros_${c}`), 'upstream_cost_unknown_requests'] : []),
    'unpriced_requests', 'latency_avg_ms', 'latency_p50_ms', 'latency_p90_ms', 'latency_p99_ms',
    'ttft_count', 'ttft_avg_ms', 'ttft_p50_ms', 'ttft_p90_ms', 'ttft_p99_ms', 'cache_hit_ratio', 'output_tokens_per_second',
  ];
  const text = (v: string) => (/^[=+\-@\t\r]/.test(v) ? `'${v}` : v);
  const rows = r.series.map((p) => [
    new Date(p.bucket).toISOString(), ...(grouped ? [text(p.group ?? '')] : []), p.requests, p.errors,
    ...DIMENSION_COLUMNS.map((d) => p.quantities[d.key]), p.costMicros.toString(), micros6(p.costMicros),
    ...(o.upstream ? [...currencies.map((c) => (p.upstreamCost[c] ?? 0n).toString()), p.upstreamCostUnknown] : []),
    p.unpricedRequests, p.latencyMs.avg, p.latencyMs.p50, p.latencyMs.p90, p.latencyMs.p99,
    p.ttftMs.count, p.ttftMs.avg, p.ttftMs.p50, p.ttftMs.p90, p.ttftMs.p99, p.cacheHitRatio, p.outputTokensPerSecond,
  ]);
  return stringify([header, ...rows], { record_delimiter: 'windows', cast: { number: (n) => String(n) } });
}

export { USAGE_STATUSES };

/** How the routes read their query (libs/http: `queryParam` and `parseTime` throw 400s naming the parameter). */
export interface ParamReaders {
  /** the one value of a parameter, undefined when absent or empty; throws when repeated */
  param(name: string): string | undefined;
  /** a time in any form `parseTime` of @tollgate/http accepts, as epoch ms; throws naming `name` */
  time(value: string, name: string): number;
  /** a model name as its catalog id (an alias resolves); unknown names are kept as sent (they match nothing) */
  model(value: string): string;
}

/** Parsed parameters of GET /admin/v1/usage and GET /v1/usage. */
export interface UsageParams {
  query: import('./analytics.ts').AnalyticsQuery;
  format: 'json' | 'csv';
}

const GRANULARITY_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
/** The window when `from` is omitted: from = to − 24 h. */
const DEFAULT_WINDOW_MS = 86_400_000;

/** The query parameters of GET /v1/usage (`parseUsageParams` without `account`). */
export const USAGE_PARAMS = ['from', 'to', 'granularity', 'key_id', 'model', 'status', 'group_by', 'format', 'limit'] as const;
/** The query parameters of GET /admin/v1/usage: those of GET /v1/usage, `account_id` and `upstream_id`. */
export const ADMIN_USAGE_PARAMS = [...USAGE_PARAMS, 'account_id', 'upstream_id'] as const;

/**
 * Reads `from`, `to`, `granularity`, `account_id` and `upstream_id` (when `account` is allowed: the operator's route), `key_id`,
 * `model`, `status`, `group_by`, `format`, `limit`; any other parameter is refused. Defaults:
 * granularity `hour`; `to` = now rounded up to the next whole minute, `from` = `to` − 24 h (so
 * the default window falls on minute buckets and reads a rollup). Throws WarehouseInputError
 * whose message starts with the parameter's name (the routes answer 400 with it).
 */
export function parseUsageParams(
  r: ParamReaders,
  given: readonly string[],
  opts: { account: boolean; groupBy: readonly string[]; now?: number },
): UsageParams {
  const allowed: readonly string[] = opts.account ? ADMIN_USAGE_PARAMS : USAGE_PARAMS;
  for (const name of given) if (!allowed.includes(name)) bad(name, `unknown query parameter; this route takes ${allowed.join(', ')}`);
  const oneOf = <T extends string>(name: string, v: string, values: readonly T[]): T => {
    if (!values.includes(v as T)) bad(name, `${JSON.stringify(v.slice(0, 40))} is not one of ${values.join(', ')}`);
    return v as T;
  };
  const g = r.param('granularity');
  const granularity = g === undefined ? 'hour' : oneOf('granularity', g, ['minute', 'hour', 'day', 'month'] as const);
  const f = r.param('from');
  const t = r.param('to');
  const now = opts.now ?? Date.now();
  const to = t === undefined ? Math.ceil(now / GRANULARITY_MS.minute) * GRANULARITY_MS.minute : r.time(t, 'to');
  // A default never appears in an error as if the caller had sent it: the message names the
  // parameter that was sent and says what the other one defaulted to.
  if (f === undefined && to < DEFAULT_WINDOW_MS) {
    bad('to', `${new Date(to).toISOString()} is too early: when from is omitted it defaults to to − 24 h, so to must be at or after 1970-01-02T00:00:00Z`);
  }
  const from = f === undefined ? to - DEFAULT_WINDOW_MS : r.time(f, 'from');
  if (to < from) {
    if (t === undefined) bad('from', `${new Date(from).toISOString()} is after to, which defaults to now (${new Date(to).toISOString()}); give a later to as well`);
    bad('to', `${new Date(to).toISOString()} is before from (${new Date(from).toISOString()})`);
  }
  const gb = r.param('group_by');
  const fmt = r.param('format');
  const lim = r.param('limit');
  let limit = 10;
  if (lim !== undefined) {
    if (!/^\d{1,4}$/.test(lim) || Number(lim) < 1 || Number(lim) > 1000) bad('limit', `${JSON.stringify(lim.slice(0, 40))} is not a whole number between 1 and 1000`);
    limit = Number(lim);
  }
  const text = (name: string): string | undefined => {
    const v = r.param(name);
    return v === undefined ? undefined : filterValue(name, v);
  };
  const accountId = opts.account ? text('account_id') : undefined;
  const upstreamId = opts.account ? text('upstream_id') : undefined;
  const keyId = text('key_id');
  const model = text('model');
  const s = r.param('status');
  const status = s === undefined ? undefined : oneOf('status', s, USAGE_STATUSES);
  const query = {
    from, to, granularity, limit,
    ...(accountId !== undefined ? { accountId } : {}),
    ...(keyId !== undefined ? { keyId } : {}),
    ...(model !== undefined ? { model: r.model(model) } : {}),
    ...(status !== undefined ? { status } : {}),
    ...(upstreamId !== undefined ? { upstreamId } : {}),
    ...(gb !== undefined ? { groupBy: oneOf('group_by', gb, opts.groupBy as readonly import('./analytics.ts').AnalyticsGroupBy[]) } : {}),
  };
  return { query, format: fmt === undefined ? 'json' : oneOf('format', fmt, ['json', 'csv'] as const) };
}

function bad(name: string, problem: string): never {
  throw new WarehouseInputError(`${name}: ${problem}`);
}
