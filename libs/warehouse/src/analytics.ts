// Usage analytics over the warehouse (issue 9): time series, totals, top spenders, latency and
// time-to-first-token percentiles, error rates, cache-hit ratio and output speed, from the
// rollups of migration 7 when the window allows it and from raw events (FINAL) otherwise, so
// every answer is exact (sums) whichever source served it. Server-side parameters only.

import { toV2, type UsageEventV2 } from '@tollgate/events';
import type { Dimension } from '@tollgate/pricing';
import { mismatchedRollupRows, RAW_COLUMNS } from './rollup-repair.ts';
import { DIMENSION_COLUMNS, MONTHS_SETTING, PERCENTILE_LEVELS, ROLLUP_GRAINS, ROLLUP_VALUE_COLUMNS, rollupSelect, rollupTable, type RollupGrain, type RollupKey } from './schema.ts';
import { USAGE_SELECT, usageFromRow, WarehouseInputError, type Warehouse, type Row } from './warehouse.ts';

/** Series bucket sizes; `month` is read from the day rollup (UTC calendar months). */
export const GRANULARITIES = ['minute', 'hour', 'day', 'month'] as const;
export type Granularity = (typeof GRANULARITIES)[number];

/**
 * What a series or a total can be split by. `upstream` (the pool upstream that served each
 * request, `UpstreamRecord.id` of @tollgate/pool; `''` for requests no upstream was tried for and
 * for events of gateways from before upstream pools, which did not record one) is read from raw
 * events whatever the window: the rollups are not kept per upstream.
 */
export const ANALYTICS_GROUP_BY = ['account', 'key', 'model', 'status', 'upstream'] as const;
export type AnalyticsGroupBy = (typeof ANALYTICS_GROUP_BY)[number];

/**
 * Where an answer was read from: the sources joined by `+`, coarsest first, e.g. `rollup_day`
 * (the window falls on days), `rollup_day+rollup_hour+rollup_minute+raw` (whole days from the day
 * rollup, the hours and minutes at its edges from the finer rollups, the sub-minute rims from raw
 * events FINAL) or `raw` (a window shorter than any bucket it could use).
 */
export type AnalyticsSource = string;

/** The most buckets one series may have (`bucketCount`); more is refused, naming `granularity`. */
export const MAX_BUCKETS = 10_000;

export interface AnalyticsFilter {
  /** epoch ms, inclusive */
  from: number;
  /** epoch ms, exclusive */
  to: number;
  accountId?: string;
  keyId?: string;
  /** catalog model id (`catalog_model`) */
  model?: string;
  /** usage status (`ok`, `upstream_error`, …) */
  status?: string;
  /**
   * the upstream that served the request (`upstream_id` of the usage event; operators only).
   * Like `groupBy: 'upstream'`, it makes the whole window read from raw events.
   */
  upstreamId?: string;
}

export interface AnalyticsQuery extends AnalyticsFilter {
  granularity: Granularity;
  groupBy?: AnalyticsGroupBy;
  /** length of the top-accounts and top-keys lists (default 10, 1..1000) */
  limit?: number;
}

/**
 * Percentiles in ms (`quantilesBFloat16`: an order statistic of the sample, no interpolation,
 * over values truncated to bfloat16, so exact up to 256 ms and less than 2⁻⁷ ≈ 0.8 % low above),
 * null when there is no sample. The state is a histogram that merges by addition, so every source (raw events,
 * any rollup, before or after background merges) gives the same numbers for the same events.
 */
export interface Percentiles {
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

/** Sums and rates over a set of usage events. */
export interface UsageMetrics {
  requests: number;
  /** HTTP status ≥ 400, or status `upstream_error` / `stream_error` */
  errors: number;
  /** per billable dimension: tokens, requests or seconds */
  quantities: Record<Dimension, number>;
  /** charged, µc (exact) */
  costMicros: bigint;
  /** the operator's upstream list cost per ISO 4217 currency, in µ of it (exact) */
  upstreamCost: Record<string, bigint>;
  /** charged requests without an upstream cost (v1 events, models without upstream prices) */
  upstreamCostUnknown: number;
  unpricedRequests: number;
  /** Σ latency_ms ÷ requests, and percentiles */
  latencyMs: Percentiles & { avg: number | null };
  /** over requests with a first token only (`count` of them) */
  ttftMs: Percentiles & { avg: number | null; count: number };
  /**
   * cache_read ÷ every input-side token (input + cache_read + cache writes); null without
   * input-side tokens
   */
  cacheHitRatio: number | null;
  /**
   * Output tokens per second of generation: Σ output tokens ÷ Σ (latency − ttft) seconds over
   * streamed requests that had a first token and latency > ttft (a JSON answer's ttft is its
   * whole body, so it says nothing about generation speed); null when there is none.
   */
  outputTokensPerSecond: number | null;
}

export interface SeriesPoint extends UsageMetrics {
  /** bucket start, epoch ms (UTC minute, hour, day or calendar month) */
  bucket: number;
  /** the group's value (account id, key id, catalog model, status, upstream id) when `groupBy` is set */
  group?: string;
}

export interface Spender {
  id: string;
  /** the key's account (top keys only) */
  accountId?: string;
  requests: number;
  costMicros: bigint;
}

export interface ErrorCount {
  /** an HTTP status as text (`"503"`) or a usage status */
  code: string;
  requests: number;
  /** share of all requests in the window, 0..1 */
  rate: number;
}

export interface UsageReport {
  source: AnalyticsSource;
  series: SeriesPoint[];
  totals: UsageMetrics;
  topAccounts: Spender[];
  topKeys: Spender[];
  /** every HTTP status seen, with its count and share (200 included) */
  byHttpStatus: ErrorCount[];
  /** every usage status seen */
  byStatus: ErrorCount[];
  /** per catalog model, most spent first */
  byModel: Array<UsageMetrics & { model: string }>;
}

const GRAIN_MS: Record<RollupGrain, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** The rollups that can serve a granularity, coarsest first (a month is whole days). */
const CANDIDATES: Record<Granularity, readonly RollupGrain[]> = {
  minute: ['minute'],
  hour: ['hour', 'minute'],
  day: ['day', 'hour', 'minute'],
  month: ['day', 'hour', 'minute'],
};

/** One piece of a window: `[from, to)` (epoch ms) read from a rollup grain or from raw events. */
export interface WindowSegment {
  from: number;
  to: number;
  source: RollupGrain | 'raw';
}

/**
 * How `[from, to)` is read at `granularity`: the whole buckets of the coarsest rollup fine enough
 * for it, then, on each ragged side (less than one bucket), the whole buckets of the next finer
 * rollup, and so on; what is left (under a minute each side) from raw events. Every segment's
 * bounds fall on its source's buckets, so each rollup row lies wholly inside the window and sums
 * stay exact. Segments are disjoint, ordered by time, and cover the window exactly.
 */
export function planWindow(from: number, to: number, granularity: Granularity, rawOnly = false): WindowSegment[] {
  const out: WindowSegment[] = [];
  if (rawOnly) return to > from ? [{ from, to, source: 'raw' }] : [];
  const cover = (a: number, b: number, grains: readonly RollupGrain[]): void => {
    if (b <= a) return;
    const [grain, ...rest] = grains;
    if (grain === undefined) { out.push({ from: a, to: b, source: 'raw' }); return; }
    const size = GRAIN_MS[grain];
    const lo = Math.ceil(a / size) * size;
    const hi = Math.floor(b / size) * size;
    if (lo >= hi) { cover(a, b, rest); return; }
    cover(a, lo, rest);
    out.push({ from: lo, to: hi, source: grain });
    cover(hi, b, rest);
  };
  cover(from, to, CANDIDATES[granularity]);
  return out;
}

/** The sources `planWindow` uses for a window, as `UsageReport.source` names them. */
export function pickSource(from: number, to: number, granularity: Granularity, rawOnly = false): AnalyticsSource {
  if (rawOnly) return 'raw';
  const used = new Set(planWindow(from, to, granularity).map((s) => s.source));
  const order = [...CANDIDATES[granularity], 'raw' as const].filter((g) => used.has(g));
  return order.length === 0 ? `rollup_${CANDIDATES[granularity][0]}` : order.map((g) => (g === 'raw' ? 'raw' : `rollup_${g}`)).join('+');
}

/** How many buckets `[from, to)` spans at `granularity` (calendar months for `month`). */
export function bucketCount(from: number, to: number, granularity: Granularity): number {
  if (to <= from) return 0;
  if (granularity === 'month') {
    const a = new Date(from);
    const b = new Date(to - 1);
    return (b.getUTCFullYear() - a.getUTCFullYear()) * 12 + b.getUTCMonth() - a.getUTCMonth() + 1;
  }
  const size = GRAIN_MS[granularity];
  return Math.floor((to - 1) / size) - Math.floor(from / size) + 1;
}

const OUTER_BUCKET: Record<Granularity, string> = {
  minute: 'bucket',
  hour: "toStartOfHour(bucket, 'UTC')",
  day: "toDateTime(toStartOfDay(bucket, 'UTC'), 'UTC')",
  month: "toDateTime(toStartOfMonth(bucket, 'UTC'), 'UTC')",
};

const GROUP_COLUMN: Record<AnalyticsGroupBy, Exclude<RollupKey, 'bucket' | 'currency' | 'http_status'>> = {
  account: 'account_id', key: 'key_id', model: 'catalog_model', status: 'status', upstream: 'upstream_id',
};

// The metrics of a set of rollup-shaped rows (a rollup table, or raw events turned into the
// minute rollup's shape). Output names differ from the source columns on purpose.
const METRICS_SELECT = `
  sum(requests) AS m_requests,
  sum(errors) AS m_errors,
  ${DIMENSION_COLUMNS.map((d) => `sum(q_${d.key}) AS m_q_${d.key}`).join(',\n  ')},
  toString(sum(cost)) AS m_cost,
  mapApply((k, v) -> (k, toString(v)), sumMapIf(map(currency, toInt128(upstream_cost)), currency != '')) AS m_upstream,
  sum(upstream_unknown) AS m_upstream_unknown,
  sum(unpriced) AS m_unpriced,
  sum(latency_sum) AS m_latency_sum,
  sum(ttft_sum) AS m_ttft_sum,
  sum(ttft_count) AS m_ttft_count,
  sum(gen_ms) AS m_gen_ms,
  sum(gen_output) AS m_gen_output,
  quantilesBFloat16Merge(${PERCENTILE_LEVELS})(latency_q) AS m_latency_q,
  quantilesBFloat16IfMerge(${PERCENTILE_LEVELS})(ttft_q) AS m_ttft_q`;

/**
 * The rollup grain raw events are bucketed at before a report's series reads them: the coarsest
 * one no coarser than the report's buckets (`month` buckets are whole days). Sums, and
 * percentiles (bfloat16 histograms merge by addition), are the same at any grain no coarser
 * than the buckets, and a coarser one makes fewer groups.
 */
const RAW_GRAIN: Record<Granularity, RollupGrain> = { minute: 'minute', hour: 'hour', day: 'day', month: 'day' };

interface Source {
  sql: string;
  params: Record<string, unknown>;
}

/**
 * Rows of `keys` (then ROLLUP_VALUE_COLUMNS) for the window and filters: a UNION ALL of the
 * window's segments (`planWindow`), each rollup segment bounded by its own buckets, the raw
 * parts (the rims under a minute each side, or the whole window when `rawOnly`) summed from raw
 * events FINAL by `keys` alone (`bucket` at RAW_GRAIN). A query passes the keys it groups by,
 * with `currency` (the upstream cost's sum is per currency), and nothing else: grouped by every
 * rollup key, a month of raw events by upstream made ~0.5 M groups per million events, each
 * with two percentile states, and took 1.2–1.9 s per query of a report instead of 0.2–0.4 s
 * (bench/README.md, "Analytics and billing"). The raw parts are read in one sub-select (both
 * rims in one WHERE), so a query reads raw events once.
 */
function source(w: Warehouse, f: AnalyticsFilter, granularity: Granularity, rawOnly: boolean, keys: readonly RollupKey[]): Source {
  const params: Record<string, unknown> = {};
  const conds = filterConditions(f, params);
  const parts: string[] = [];
  const rawRanges: string[] = [];
  const columns = [...keys, ...ROLLUP_VALUE_COLUMNS].join(', ');
  planWindow(f.from, f.to, granularity, rawOnly).forEach((seg, i) => {
    params[`f${i}`] = seg.from;
    params[`t${i}`] = seg.to;
    if (seg.source === 'raw') {
      rawRanges.push(`(ts >= fromUnixTimestamp64Milli({f${i}:Int64}, 'UTC') AND ts < fromUnixTimestamp64Milli({t${i}:Int64}, 'UTC'))`);
      return;
    }
    // The segment falls on the grain's buckets (planWindow), so bucket bounds are the segment's.
    const where = [...conds, `bucket >= toDateTime(intDiv({f${i}:Int64}, 1000), 'UTC')`, `bucket < toDateTime(intDiv({t${i}:Int64}, 1000), 'UTC')`];
    parts.push(`SELECT ${columns} FROM ${rollupTable(w.tables, seg.source)} WHERE ${where.join(' AND ')}`);
  });
  const raw = (where: string) => `(SELECT ${RAW_COLUMNS}${keys.includes('upstream_id') ? ', upstream_id' : ''} FROM ${w.tables.usage} FINAL WHERE ${where})`;
  if (rawRanges.length > 0) parts.push(rollupSelect(RAW_GRAIN[granularity], raw([...conds, `(${rawRanges.join(' OR ')})`].join(' AND ')), '', keys));
  // An empty window: no rows, in the same shape.
  if (parts.length === 0) parts.push(rollupSelect(RAW_GRAIN[granularity], raw('0'), '', keys));
  return { sql: `(${parts.join(' UNION ALL ')})`, params };
}

/**
 * The SQL conditions of a usage read's text filters (account, key, catalog model, status,
 * upstream) over raw or rollup columns of those names; each value goes into `params` as a
 * server-side parameter, never into the text.
 */
function filterConditions(f: AnalyticsFilter, params: Record<string, unknown>): string[] {
  const conds: string[] = [];
  for (const [value, column, name] of [
    [f.accountId, 'account_id', 'account_id'], [f.keyId, 'key_id', 'key_id'], [f.model, 'catalog_model', 'model'],
    [f.status, 'status', 'status'], [f.upstreamId, 'upstream_id', 'upstream_id'],
  ] as const) {
    if (value === undefined) continue;
    conds.push(`${column} = {${name}:String}`);
    params[name] = value;
  }
  return conds;
}

/** Usage statuses a `status` filter may name (UsageStatus of @tollgate/events). */
export const USAGE_STATUSES = ['ok', 'upstream_error', 'client_disconnect', 'stream_error', 'usage_anomaly', 'unmetered'] as const;

/** Longest value, in characters, an `account_id`, `key_id` or `model` filter may have. */
export const MAX_FILTER_CHARS = 256;

/**
 * A text filter value (`account_id`, `key_id`, `model`) as every usage read accepts it: 1 to
 * MAX_FILTER_CHARS characters, no control characters (U+0000–U+001F, U+007F–U+009F: no id or
 * model name has one, so such a value is a client's mistake, not a search). One rule for
 * every route that takes the filter (analytics, event pages, customer usage, billing), so no
 * route accepts what another refuses. Returns the value; throws WarehouseInputError whose
 * message starts with `name` (the routes answer 400 `invalid_request` with it).
 */
export function filterValue(name: string, value: string): string {
  if (value.length === 0) throw new WarehouseInputError(`${name}: is empty; give a value or leave the parameter out`);
  if (value.length > MAX_FILTER_CHARS) throw new WarehouseInputError(`${name}: is ${value.length} characters long; at most ${MAX_FILTER_CHARS}`);
  if (/[\u0000-\u001f\u007f-\u009f]/.test(value)) throw new WarehouseInputError(`${name}: contains a control character; ids and model names have none`);
  return value;
}

/**
 * The window and every filter of a usage read, by the rules the routes apply (times as epoch
 * ms ≥ 0, `filterValue`, a known status), so a caller that skips the route's parsing still
 * cannot read with a value a route would refuse. Messages name the query parameter.
 */
function checkFilter(f: AnalyticsFilter): void {
  for (const [name, v] of [['from', f.from], ['to', f.to]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new WarehouseInputError(`${name}: must be epoch milliseconds at or after 1970-01-01, got ${v}`);
  }
  if (f.to < f.from) throw new WarehouseInputError('to: is before from');
  if (f.accountId !== undefined) filterValue('account_id', f.accountId);
  if (f.keyId !== undefined) filterValue('key_id', f.keyId);
  if (f.model !== undefined) filterValue('model', f.model);
  if (f.status !== undefined && !(USAGE_STATUSES as readonly string[]).includes(f.status)) {
    throw new WarehouseInputError(`status: is not one of ${USAGE_STATUSES.join(', ')}`);
  }
  if (f.upstreamId !== undefined) filterValue('upstream_id', f.upstreamId);
}

/**
 * The analytics of `[from, to)` under the filters: a series at `granularity` (one point per
 * bucket × group that has usage), totals, top accounts and keys by spend (`limit` each),
 * counts by HTTP status and by usage status, and totals per model. Sums are exact (money
 * Int128 → bigint); percentiles are bfloat16 order statistics (see Percentiles). Read from the rollups as far
 * as the window's buckets allow and from raw events (FINAL) only for the rims under a minute
 * (`planWindow`); every split of a window gives the same sums and the same percentiles.
 * `opts.rawOnly` reads the whole window from raw events (FINAL): the reference the rollups are
 * tested against, slow on large windows.
 * Throws WarehouseInputError for a bad window, more than MAX_BUCKETS buckets or a bad limit.
 */
export async function usageReport(w: Warehouse, q: AnalyticsQuery, opts: { rawOnly?: boolean } = {}): Promise<UsageReport> {
  checkFilter(q);
  if (bucketCount(q.from, q.to, q.granularity) > MAX_BUCKETS) {
    throw new WarehouseInputError(`granularity: ${q.granularity} gives more than ${MAX_BUCKETS} buckets over this window`);
  }
  const limit = q.limit ?? 10;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) throw new WarehouseInputError(`limit must be 1..1000, got ${limit}`);
  // The rollups are not kept per upstream: by or for an upstream, the window is read from raw events.
  const rawOnly = opts.rawOnly === true || q.groupBy === 'upstream' || q.upstreamId !== undefined;
  const from = pickSource(q.from, q.to, q.granularity, rawOnly);
  const group = q.groupBy === undefined ? undefined : GROUP_COLUMN[q.groupBy];
  /** The rows of `keys` (and the upstream cost's currency) under the query's window and filters. */
  const src = (...keys: RollupKey[]) => source(w, q, q.granularity, rawOnly, [...keys, 'currency']);
  const series = src('bucket', ...(group ? [group] : []));
  const totalsSrc = src();
  const accountsSrc = src('account_id');
  const keysSrc = src('key_id', 'account_id');
  const httpSrc = src('http_status');
  const statusSrc = src('status');
  const modelSrc = src('catalog_model');
  const [seriesRows, totalRows, accountRows, keyRows, httpRows, statusRows, modelRows] = await Promise.all([
    w.select(
      `SELECT toUnixTimestamp(${OUTER_BUCKET[q.granularity]}) * 1000 AS b_ms${group ? `, ${group} AS g_key` : ''}, ${METRICS_SELECT}
       FROM ${series.sql} GROUP BY b_ms${group ? ', g_key' : ''} ORDER BY b_ms${group ? ', g_key' : ''}`,
      series.params,
    ),
    w.select(`SELECT ${METRICS_SELECT} FROM ${totalsSrc.sql}`, totalsSrc.params),
    w.select(
      `SELECT account_id AS id, sum(requests) AS n, toString(sum(cost)) AS c FROM ${accountsSrc.sql}
       GROUP BY id ORDER BY sum(cost) DESC, id LIMIT {limit:UInt32}`,
      { ...accountsSrc.params, limit },
    ),
    w.select(
      `SELECT key_id AS id, any(account_id) AS acct, sum(requests) AS n, toString(sum(cost)) AS c FROM ${keysSrc.sql}
       GROUP BY id ORDER BY sum(cost) DESC, id LIMIT {limit:UInt32}`,
      { ...keysSrc.params, limit },
    ),
    w.select(`SELECT toString(http_status) AS code, sum(requests) AS n FROM ${httpSrc.sql} GROUP BY code ORDER BY code`, httpSrc.params),
    w.select(`SELECT toString(status) AS code, sum(requests) AS n FROM ${statusSrc.sql} GROUP BY code ORDER BY code`, statusSrc.params),
    w.select(
      `SELECT toString(catalog_model) AS model_key, ${METRICS_SELECT} FROM ${modelSrc.sql}
       GROUP BY model_key ORDER BY sum(cost) DESC, model_key`,
      modelSrc.params,
    ),
  ]);
  const totals = metrics(totalRows[0] ?? {});
  const counts = (rows: Row[]): ErrorCount[] => rows.map((r) => {
    const n = int(r['n']);
    return { code: String(r['code']), requests: n, rate: ratio(n, totals.requests) ?? 0 };
  });
  return {
    source: from,
    series: seriesRows.map((r) => ({
      bucket: int(r['b_ms']),
      ...(group ? { group: String(r['g_key']) } : {}),
      ...metrics(r),
    })),
    totals,
    topAccounts: accountRows.map((r) => ({ id: String(r['id']), requests: int(r['n']), costMicros: BigInt(String(r['c'])) })),
    topKeys: keyRows.map((r) => ({ id: String(r['id']), accountId: String(r['acct']), requests: int(r['n']), costMicros: BigInt(String(r['c'])) })),
    byHttpStatus: counts(httpRows),
    byStatus: counts(statusRows),
    byModel: modelRows.map((r) => ({ model: String(r['model_key']), ...metrics(r) })),
  };
}

function int(v: unknown): number {
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new Error(`analytics: expected a safe integer, got ${JSON.stringify(v)}`);
  return n;
}

/** a ÷ b to 6 decimal places, null when b is 0 (a rate for display, never money). */
function ratio(a: number, b: number): number | null {
  return b === 0 ? null : Math.round((a / b) * 1e6) / 1e6;
}

function percentiles(v: unknown, have: boolean): Percentiles {
  const a = Array.isArray(v) ? v.map(Number) : [];
  const at = (i: number) => (have && Number.isFinite(a[i]) ? Math.round(a[i]! * 1000) / 1000 : null);
  return { p50: at(0), p90: at(1), p99: at(2) };
}

/** A metrics row of METRICS_SELECT as UsageMetrics (an empty aggregate reads as zeros). */
function metrics(r: Row): UsageMetrics {
  const requests = int(r['m_requests'] ?? 0);
  const quantities = {} as Record<Dimension, number>;
  for (const d of DIMENSION_COLUMNS) quantities[d.key] = int(r[`m_q_${d.key}`] ?? 0);
  const upstreamCost: Record<string, bigint> = {};
  for (const [c, v] of Object.entries((r['m_upstream'] ?? {}) as Record<string, unknown>)) upstreamCost[c] = BigInt(String(v));
  const ttftCount = int(r['m_ttft_count'] ?? 0);
  const inputSide = DIMENSION_COLUMNS.filter((d) => ['input', 'cache_read', 'cache_write_5m', 'cache_write_1h'].includes(d.key))
    .reduce((s, d) => s + quantities[d.key], 0);
  const genMs = int(r['m_gen_ms'] ?? 0);
  return {
    requests,
    errors: int(r['m_errors'] ?? 0),
    quantities,
    costMicros: BigInt(String(r['m_cost'] ?? '0')),
    upstreamCost,
    upstreamCostUnknown: int(r['m_upstream_unknown'] ?? 0),
    unpricedRequests: int(r['m_unpriced'] ?? 0),
    latencyMs: { avg: ratio(int(r['m_latency_sum'] ?? 0), requests), ...percentiles(r['m_latency_q'], requests > 0) },
    ttftMs: { count: ttftCount, avg: ratio(int(r['m_ttft_sum'] ?? 0), ttftCount), ...percentiles(r['m_ttft_q'], ttftCount > 0) },
    cacheHitRatio: ratio(quantities.cache_read ?? 0, inputSide),
    outputTokensPerSecond: genMs === 0 ? null : Math.round((int(r['m_gen_output'] ?? 0) * 1000 / genMs) * 1000) / 1000,
  };
}

// ---- event listing ----

export interface EventPage {
  events: UsageEventV2[];
  /** more events match after the last one: ask again with `after` = the last one */
  hasMore: boolean;
}

/**
 * Usage events of `[from, to)` under the filters, in (ts, event_id) order, after the cursor
 * `after`, at most `limit` (1..1000), each as the v2 record (`toV2`; anomalies when any).
 * Throws WarehouseInputError for a bad window or limit.
 */
export async function usageEventPage(
  w: Warehouse,
  f: AnalyticsFilter & { after?: { ts: number; eventId: string }; limit: number },
): Promise<EventPage> {
  checkFilter(f);
  if (!Number.isSafeInteger(f.limit) || f.limit < 1 || f.limit > 1000) throw new WarehouseInputError(`limit must be 1..1000, got ${f.limit}`);
  const params: Record<string, unknown> = { from_ms: f.from, to_ms: f.to, n: f.limit + 1 };
  const conds = ["ts >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')", "ts < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')", ...filterConditions(f, params)];
  if (f.after !== undefined) {
    conds.push("(ts, event_id) > (fromUnixTimestamp64Milli({after_ts:Int64}, 'UTC'), {after_id:String})");
    params['after_ts'] = f.after.ts;
    params['after_id'] = f.after.eventId;
  }
  const rows = await w.select(
    `SELECT ${USAGE_SELECT} FROM ${w.tables.usage} FINAL WHERE ${conds.join(' AND ')} ORDER BY ts, event_id LIMIT {n:UInt32}`,
    params,
  );
  const events = rows.slice(0, f.limit).map((r) => toV2(usageFromRow(r)));
  return { events, hasMore: rows.length > f.limit };
}

/** One usage event as its v2 record, or undefined. */
export async function usageEventRecord(w: Warehouse, eventId: string): Promise<UsageEventV2 | undefined> {
  const e = await w.getUsageEvent(eventId);
  return e === undefined ? undefined : toV2(e);
}

// ---- rollup maintenance ----


/** The rollups' agreement with raw events: rows (bucket × dimensions) whose sums differ, per grain. */
export interface RollupCheck {
  ok: boolean;
  mismatchedRows: Record<RollupGrain, number>;
}

/**
 * Compares every rollup with the same sums computed from raw events (FINAL): per grain, the
 * number of (bucket, account, key, model, status, http status, currency) rows present on one
 * side only or with any sum different. `ok` when all are 0. Reads every row: for tests and
 * reconcile, not a hot path.
 */
export async function rollupsMatchRaw(w: Warehouse): Promise<RollupCheck> {
  const mismatchedRows = {} as Record<RollupGrain, number>;
  for (const grain of ROLLUP_GRAINS) {
    const rows = await w.select(`SELECT count() AS n FROM ${mismatchedRollupRows(w.tables, grain)}`);
    mismatchedRows[grain] = int(rows[0]?.['n'] ?? 0);
  }
  return { ok: Object.values(mismatchedRows).every((n) => n === 0), mismatchedRows };
}


/**
 * Recomputes every rollup from raw events (FINAL): truncate, then INSERT … SELECT with the
 * views' own SELECT. For repair (`rollupsMatchRaw` not ok) or after changing the rollup
 * definition; run it while nothing writes usage (an insert between the truncate and the
 * select would be counted by its view and by the select).
 */
export async function rebuildRollups(w: Warehouse): Promise<void> {
  for (const grain of ROLLUP_GRAINS) {
    const table = rollupTable(w.tables, grain);
    await w.command(`TRUNCATE TABLE ${table}`);
    // insert_deduplicate = 0 in the statement: a rebuilt block may hash like one in the window.
    await w.command(
      `INSERT INTO ${table} SETTINGS insert_deduplicate = 0, ${MONTHS_SETTING} ${rollupSelect(grain, `(SELECT ${RAW_COLUMNS} FROM ${w.tables.usage} FINAL)`)}`,
    );
  }
}
