// The analytics and billing section of `npm run bench` (issue 9, outcome 8): an embedded (chDB)
// warehouse filled with N synthetic usage events (default 10,000,000) over three months, then
// p50/p99 of the analytics queries, invoices and statements, month close, credit history and
// the billing export's throughput. Runs on its own too: `node bench/analytics.ts --help`.
// See bench/README.md "Analytics and billing".

import { mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir, availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { commandLine, numberValue, runMain, UsageError } from './cli.ts';
import { bundledCatalogPath, loadCatalogFile, priceVersion, type PriceVersion } from '@tollgate/pricing';
import {
  Warehouse, closeMonth, createChdbClickHouse, creditHistoryPage, invoiceFor, invoiceLinesForMonth, rollupsMatchRaw, statementFor,
  usageEventPage, usageReport, type AnalyticsQuery, type InvoiceLine,
} from '@tollgate/warehouse';
import { exportChunks, type ExportFormat } from '../services/control/src/billing-render.ts';
import { summarize, type Summary } from './load.ts';

/** Events when neither `--analytics-events` nor BENCH_ANALYTICS_EVENTS says otherwise. */
export const DEFAULT_ANALYTICS_EVENTS = 10_000_000;
/** Rows per INSERT … SELECT: one progress line each, and a bound on what one insert's views hold in memory. */
const CHUNK = 1_000_000;
const ACCOUNTS = 1000;
const KEYS_PER_ACCOUNT = 5;
/** the three months the events span (UTC): August and September are closed by the run's month close, October stays open */
const START = Date.UTC(2026, 7, 1);
const END = Date.UTC(2026, 10, 1);
const CLOSED_MONTH = '2026-08';
const OPEN_MONTH = '2026-10';

export interface AnalyticsBenchOptions {
  /** usage events to generate */
  events: number;
  /** measured runs per cheap query (fewer for expensive ones, see `measure`) */
  runs: number;
  /** stop measuring one query after this many ms of measured runs (at least `minRuns`) */
  budgetMs: number;
  /** also run rollupsMatchRaw over every row (slow at 10M) */
  fullRollupCheck: boolean;
  log: (line: string) => void;
}

/** One timed operation: `n` runs after warm-up, milliseconds. */
export interface Timing {
  name: string;
  /** what it reads (a rollup grain, raw FINAL, frozen documents, …) */
  note: string;
  ms: Summary;
  /** rows or lines the answer holds (series points, events, lines) */
  rows?: number;
}

export interface ExportFigure {
  month: string;
  status: 'open' | 'closed';
  format: ExportFormat;
  lines: number;
  bytes: number;
  /** rendering only (exportChunks over lines already read), ms */
  renderMs: Summary;
  /** reading the lines (invoiceLinesForMonth) + rendering, p50 ms */
  endToEndP50Ms: number;
}

export interface AnalyticsBenchResult {
  events: number;
  accounts: number;
  keys: number;
  ledgerEntries: number;
  /** generation: seconds and events/s (INSERT … SELECT through the rollup views) */
  insertS: number;
  insertRate: number;
  /** seconds waited after the load until background merges were done (at most 180) */
  mergeWaitS: number;
  /** Σ requests and Σ cost of every rollup grain = raw FINAL (always); rollupsMatchRaw over every row (when asked) */
  rollupTotalsOk: boolean;
  rollupFullCheck?: { ok: boolean; seconds: number };
  dataBytes: number;
  parts: { usage: number; minute: number; hour: number; day: number };
  /** bytes on disk of the active parts, per table */
  tableBytes: { usage: number; minute: number; hour: number; day: number };
  rollupRows: { minute: number; hour: number; day: number };
  closeMonthMs: number;
  closedMonths: string[];
  timings: Timing[];
  exports: ExportFigure[];
  totalS: number;
  loadAvgStart: number;
}

// ---- synthetic data ----------------------------------------------------------------------------

// Four models of the shipped cny catalog: unit prices in µc per MTok (the warehouse's
// `unit_prices`, as the gateway stores them) and the upstream USD list in µ$ per MTok.
// Index 1..4: haiku-4-5 (40 %), sonnet-4-5 (30 %), sonnet-4-6 (20 %), opus-4-6 (10 %).
const MODELS = ['claude-haiku-4-5-20251001', 'claude-sonnet-4-5-20250929', 'claude-sonnet-4-6', 'claude-opus-4-6'];
const ALIASES = ['claude-haiku-4-5', 'claude-sonnet-4-5', 'claude-sonnet-4-6', 'claude-opus-4-6'];
const PRICE = {
  input: [24_000_000, 72_000_000, 180_000_000, 300_000_000],
  output: [120_000_000, 360_000_000, 900_000_000, 1_500_000_000],
  cache_read: [2_400_000, 7_200_000, 18_000_000, 30_000_000],
  cache_write_5m: [30_000_000, 90_000_000, 225_000_000, 375_000_000],
  cache_write_1h: [48_000_000, 144_000_000, 360_000_000, 600_000_000],
};
/** web search: µc per search (0.024 CNY × 10 credits/CNY), µ$ per search upstream */
const WEB_SEARCH_MICROS = 240_000;
const WEB_SEARCH_UPSTREAM = 10_000;
const UPSTREAM = {
  input: [1_000_000, 3_000_000, 3_000_000, 5_000_000],
  output: [5_000_000, 15_000_000, 15_000_000, 25_000_000],
  cache_read: [100_000, 300_000, 300_000, 500_000],
  cache_write_5m: [1_250_000, 3_750_000, 3_750_000, 6_250_000],
};

const arr = (xs: readonly (number | string)[]) => `[${xs.map((x) => (typeof x === 'number' ? String(x) : `'${x}'`)).join(', ')}]`;

/**
 * INSERT … SELECT of events [start, start + count) out of `total`: everything a function of the
 * event number (sipHash64 of it), so a run is reproducible. Through the materialized views of
 * migration 7 like any insert (rollup_skip 0: every id is new).
 * - time: evenly over [START, END) in number order (so a chunk falls in one or two month
 *   partitions, as a real day's inserts do), plus up to 1 s of jitter;
 * - account: ⌊1000 · x²⌋ for uniform x (skewed: account 0000 has ~3 % of the traffic, the median
 *   account ~0.07 %), key: one of its 5;
 * - status: ok 96 %, upstream_error 1.5 % (HTTP 529 or 500, no tokens, cost 0),
 *   client_disconnect 1 %, stream_error 0.5 %, usage_anomaly 1 %;
 * - tokens: input 50..4,049 (5 % long prompts up to ~120k), output 10..809, cache reads on a
 *   third, 5-minute cache writes on a tenth, 1-hour writes on 1 %, a web search on 1 %;
 * - cost ⌈Σ q × unit price / 10⁶⌉ µc (the gateway's rule), upstream cost the same in µ$;
 * - two thirds streamed: ttft 150..1,949 ms, then 40..119 output tokens/s; JSON answers: ttft
 *   = latency;
 * - upstream (the pool upstream that served it): ups_primary 50 %, ups_backup 30 %, ups_eu 15 %,
 *   ups_spare 5 %; 2 attempts on 2 %, else 1.
 */
function insertSql(w: Warehouse, versionId: string): string {
  const price = (dim: keyof typeof PRICE) => `${arr(PRICE[dim])}[m]`;
  const up = (dim: keyof typeof UPSTREAM) => `${arr(UPSTREAM[dim])}[m]`;
  return `INSERT INTO ${w.tables.usage} (event_id, ts, account_id, key_id, model, catalog_model, upstream_model,
      input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
      web_search_requests, web_fetch_requests, code_execution_seconds, cost_micros, status, http_status, latency_ms, ttft_ms, stream,
      upstream_request_id, gateway_id, event_version, served_model, iterations, service_tier, inference_geo, stop_reason,
      upstream_cost_micros, upstream_currency, price_version, price_list, unit_prices, multipliers, unpriced, upstream_id, attempts)
    SELECT
      concat('req_bench_', leftPad(toString(number), 9, '0')) AS event_id,
      fromUnixTimestamp64Milli(toInt64({start_ms:Int64} + intDiv(number * ({span_ms:UInt64} - 1000), {total:UInt64}) + h3 % 1000), 'UTC') AS ts,
      concat('acct_', leftPad(toString(a), 4, '0')) AS account_id,
      concat('key_', leftPad(toString(a * ${KEYS_PER_ACCOUNT} + intDiv(h1, 1000003) % ${KEYS_PER_ACCOUNT}), 5, '0')) AS key_id,
      ${arr(ALIASES)}[m] AS model, ${arr(MODELS)}[m] AS catalog_model, ${arr(MODELS)}[m] AS upstream_model,
      q_in, q_out, q_cr, q_cw5, q_cw1, q_ws, 0, 0,
      toInt64(intDiv(q_in * ${price('input')} + q_out * ${price('output')} + q_cr * ${price('cache_read')}
        + q_cw5 * ${price('cache_write_5m')} + q_cw1 * ${price('cache_write_1h')} + q_ws * ${WEB_SEARCH_MICROS} * 1000000 + 999999, 1000000)) AS cost,
      st, http, lat, ttft, strm,
      concat('req_up_', hex(h3)), if(h1 % 2 = 0, 'gw-1', 'gw-2'), 2, ${arr(MODELS)}[m], '[]', 'standard', 'global',
      if(st = 'upstream_error', NULL, if(h3 % 10 = 0, 'max_tokens', 'end_turn')),
      toInt64(intDiv(q_in * ${up('input')} + q_out * ${up('output')} + q_cr * ${up('cache_read')}
        + q_cw5 * ${up('cache_write_5m')} + q_cw1 * 2 * ${up('input')} + q_ws * ${WEB_SEARCH_UPSTREAM} * 1000000 + 999999, 1000000)),
      'USD', {price_version:String}, 'default',
      map('input', toString(${price('input')}), 'output', toString(${price('output')}), 'cache_read', toString(${price('cache_read')}),
          'cache_write_5m', toString(${price('cache_write_5m')}), 'cache_write_1h', toString(${price('cache_write_1h')}),
          'web_search_requests', '${WEB_SEARCH_MICROS}', 'web_fetch_requests', '0'),
      [], [],
      multiIf(intDiv(h2, 100000) % 100 < 50, 'ups_primary', intDiv(h2, 100000) % 100 < 80, 'ups_backup',
              intDiv(h2, 100000) % 100 < 95, 'ups_eu', 'ups_spare') AS upstream_id,
      if(intDiv(h2, 100000) % 50 = 7, 2, 1) AS attempts
    FROM (
      SELECT number, h1, h2, h3, a, m, st, strm,
        if(st = 'upstream_error', 0, if(h2 % 20 = 0, 20000 + h3 % 100000, 50 + h3 % 4000)) AS q_in,
        multiIf(st = 'upstream_error', 0, st = 'client_disconnect', intDiv(h3, 7) % 100, 10 + intDiv(h3, 11) % 800) AS q_out,
        if(st != 'upstream_error' AND h2 % 3 = 0, intDiv(h3, 13) % 30000, 0) AS q_cr,
        if(st != 'upstream_error' AND h2 % 10 = 1, intDiv(h3, 17) % 5000, 0) AS q_cw5,
        if(st != 'upstream_error' AND h2 % 100 = 2, intDiv(h3, 19) % 8000, 0) AS q_cw1,
        if(st != 'upstream_error' AND h2 % 100 = 3, 1, 0) AS q_ws,
        if(st = 'upstream_error', if(h3 % 2 = 0, 529, 500), 200) AS http,
        toUInt32(if(st = 'upstream_error', NULL, if(strm, 150 + intDiv(h3, 23) % 1800, NULL))) AS ttft0,
        toUInt32(multiIf(st = 'upstream_error', 20 + intDiv(h3, 29) % 3000,
          strm, assumeNotNull(ttft0) + intDiv(q_out * 1000, 40 + intDiv(h3, 31) % 80),
          300 + intDiv(h3, 37) % 1500 + intDiv(q_out * 1000, 40 + intDiv(h3, 31) % 80))) AS lat,
        if(st = 'upstream_error', NULL, if(strm, ttft0, lat)) AS ttft
      FROM (
        SELECT number, h1, h2, h3,
          toUInt32(floor(pow((h1 % 1000000) / 1000000, 2) * ${ACCOUNTS})) AS a,
          multiIf(h2 % 100 < 40, 1, h2 % 100 < 70, 2, h2 % 100 < 90, 3, 4) AS m,
          multiIf(intDiv(h2, 100) % 1000 < 960, 'ok', intDiv(h2, 100) % 1000 < 975, 'upstream_error',
                  intDiv(h2, 100) % 1000 < 985, 'client_disconnect', intDiv(h2, 100) % 1000 < 990, 'stream_error', 'usage_anomaly') AS st,
          intDiv(h1, 7919) % 3 != 0 AS strm
        FROM (SELECT number, sipHash64(number, 1) AS h1, sipHash64(number, 2) AS h2, sipHash64(number, 3) AS h3
              FROM numbers({first:UInt64}, {count:UInt64}))
      )
    )`;
}

/**
 * Ledger entries for every account, inside the three months: a grant on its first day, a
 * monthly top-up for half of the accounts, refunds for one in twenty each month, and an
 * adjustment (positive or negative) for one in fifty. Amounts in µc.
 */
function ledgerSql(w: Warehouse): string {
  return `INSERT INTO ${w.tables.ledger} (event_id, ts, account_id, kind, amount_micros, reference)
    SELECT concat('credit:', acct, ':', ref), ts, acct, kind, amount, ref FROM (
      SELECT concat('acct_', leftPad(toString(a), 4, '0')) AS acct, kind, amount, ref, ts FROM (
        SELECT number AS a, arrayJoin(arrayFilter(e -> e.1 != '', [
          ('grant', toInt64(50000000000), 'welcome', fromUnixTimestamp64Milli(toInt64({start_ms:Int64} + 3600000), 'UTC')),
          (if(a % 2 = 0, 'top_up', ''), toInt64(200000000000 + a * 1000003), 'topup-2026-08', toDateTime64('2026-08-05 09:00:00', 3, 'UTC')),
          (if(a % 2 = 0, 'top_up', ''), toInt64(200000000000 + a * 1000033), 'topup-2026-09', toDateTime64('2026-09-05 09:00:00', 3, 'UTC')),
          (if(a % 2 = 0, 'top_up', ''), toInt64(200000000000 + a * 1000037), 'topup-2026-10', toDateTime64('2026-10-05 09:00:00', 3, 'UTC')),
          (if(a % 20 = 3, 'refund', ''), toInt64(1000000 + a * 7919), 'refund-2026-08', toDateTime64('2026-08-20 12:00:00', 3, 'UTC')),
          (if(a % 20 = 7, 'refund', ''), toInt64(2000000 + a * 7919), 'refund-2026-09', toDateTime64('2026-09-20 12:00:00', 3, 'UTC')),
          (if(a % 20 = 11, 'refund', ''), toInt64(3000000 + a * 7919), 'refund-2026-10', toDateTime64('2026-10-20 12:00:00', 3, 'UTC')),
          (if(a % 50 = 5, 'adjustment', ''), toInt64(if(a % 100 = 5, -1, 1) * (500000 + a * 101)), 'adjust-2026-09', toDateTime64('2026-09-28 08:00:00', 3, 'UTC'))
        ])) AS e, e.1 AS kind, e.2 AS amount, e.3 AS ref, e.4 AS ts
        FROM numbers(${ACCOUNTS})
      )
    )`;
}

/**
 * Inserts `events` synthetic usage events (CHUNK per INSERT … SELECT, a progress line each) and
 * the ledger entries into a migrated warehouse. The events depend only on `events` and their
 * number, so two warehouses filled alike hold the same rows.
 */
export async function generate(w: Warehouse, priceVersionId: string, events: number, log: (line: string) => void): Promise<void> {
  const sql = insertSql(w, priceVersionId);
  const g0 = now();
  for (let first = 0; first < events; first += CHUNK) {
    const n = Math.min(CHUNK, events - first);
    await w.command(sql, { start_ms: START, span_ms: END - START, total: events, first, count: n, price_version: priceVersionId });
    const s = (now() - g0) / 1000;
    log(`  inserted ${(first + n).toLocaleString('en').padStart(12)} / ${events.toLocaleString('en')}  ${((first + n) / s).toFixed(0).padStart(7)} events/s  ${s.toFixed(1)} s`);
  }
  await w.command(ledgerSql(w), { start_ms: START });
}

// ---- measuring ----------------------------------------------------------------------------------

const now = () => performance.now();

/**
 * Runs `fn` once unmeasured (twice when the first took under 500 ms: cheap queries get a real
 * warm-up), then up to `runs` times measured, stopping early once the measured runs took
 * `budgetMs` but never before `minRuns` (default 3). Returns the summary (nearest-rank
 * percentiles, load.ts) and the last result.
 */
async function measure<T>(fn: () => Promise<T>, o: { runs: number; budgetMs: number; minRuns?: number }): Promise<{ ms: Summary; last: T }> {
  const w0 = now();
  let last = await fn();
  if (now() - w0 < 500) last = await fn();
  const samples: number[] = [];
  const started = now();
  while (samples.length < o.runs && (samples.length < (o.minRuns ?? 3) || now() - started < o.budgetMs)) {
    const t = now();
    last = await fn();
    samples.push(now() - t);
  }
  return { ms: summarize(samples), last };
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += statSync(join(e.parentPath, e.name)).size;
  }
  return total;
}

async function count(w: Warehouse, sql: string): Promise<number> {
  const r = await w.select(sql);
  return Number(r[0]?.['n'] ?? 0);
}

/**
 * Fills a fresh chDB warehouse in a temporary directory (removed at the end) and measures.
 * Progress goes to `o.log`. Throws when the rollups disagree with the raw events.
 */
export async function runAnalyticsBench(o: AnalyticsBenchOptions): Promise<AnalyticsBenchResult> {
  const t0 = now();
  const loadAvgStart = loadavg()[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-analytics-'));
  // Gigabytes at 10M: removed on the way out, on Ctrl-C too (both CLIs exit on SIGINT).
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  process.on('exit', removeDir);
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), database: 'bench' });
  try {
    await w.migrate();
    const version: PriceVersion = priceVersion(loadCatalogFile(bundledCatalogPath('cny')));
    const prices = { current: () => version };

    // -- generate
    o.log(`bench: analytics: generating ${o.events.toLocaleString('en')} usage events over 2026-08..2026-10 for ${ACCOUNTS} accounts, ` +
      `${ACCOUNTS * KEYS_PER_ACCOUNT} keys in chDB (${dir})`);
    const g0 = now();
    await generate(w, version.id, o.events, o.log);
    const insertS = (now() - g0) / 1000;
    const ledgerEntries = await count(w, `SELECT count() AS n FROM ${w.tables.ledger} FINAL`);
    o.log(`  ${ledgerEntries} ledger entries (grants, top-ups, refunds, adjustments)`);

    // -- rollups agree with raw
    const raw = await w.select(`SELECT count() AS n, toString(sum(toInt128(cost_micros))) AS c FROM ${w.tables.usage} FINAL`);
    if (Number(raw[0]!['n']) !== o.events) throw new Error(`analytics bench: ${String(raw[0]!['n'])} events stored, expected ${o.events}`);
    let rollupTotalsOk = true;
    const rollupRows = { minute: 0, hour: 0, day: 0 };
    for (const [grain, table] of [['minute', w.tables.rollupMinute], ['hour', w.tables.rollupHour], ['day', w.tables.rollupDay]] as const) {
      const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c, count() AS rows FROM ${table}`);
      rollupRows[grain] = Number(r[0]!['rows']);
      if (r[0]!['n'] !== String(o.events) || r[0]!['c'] !== raw[0]!['c']) {
        rollupTotalsOk = false;
        o.log(`  rollup ${grain}: ${String(r[0]!['n'])} requests, ${String(r[0]!['c'])} µc; raw ${o.events}, ${String(raw[0]!['c'])} µc: MISMATCH`);
      }
    }
    o.log(`  rollup totals = raw FINAL (Σ requests, Σ cost ${String(raw[0]!['c'])} µc) for minute, hour, day: ${rollupTotalsOk ? 'ok' : 'MISMATCH'}`);
    let rollupFullCheck: AnalyticsBenchResult['rollupFullCheck'];
    if (o.fullRollupCheck) {
      const c0 = now();
      const check = await rollupsMatchRaw(w);
      rollupFullCheck = { ok: check.ok, seconds: (now() - c0) / 1000 };
      o.log(`  rollupsMatchRaw over every row: ${check.ok ? 'ok' : `MISMATCH ${JSON.stringify(check.mismatchedRows)}`} (${rollupFullCheck.seconds.toFixed(1)} s)`);
    }
    if (!rollupTotalsOk || rollupFullCheck?.ok === false) throw new Error('analytics bench: the rollups disagree with the raw events');

    // Measure the steady state, not the minutes after a bulk load: wait (at most 3 minutes) until
    // chDB's background merges of the new parts are done.
    const m0 = now();
    while (now() - m0 < 180_000 && (await count(w, "SELECT count() AS n FROM system.merges WHERE database = 'bench'")) > 0) {
      await new Promise((r) => setTimeout(r, 1000));
    }
    const mergeWaitS = (now() - m0) / 1000;
    o.log(`  background merges done after ${mergeWaitS.toFixed(1)} s`);

    const partRows = await w.select("SELECT table, count() AS n, sum(bytes_on_disk) AS b FROM system.parts WHERE active AND database = 'bench' GROUP BY table");
    const part = (table: string) => partRows.find((r) => `\`bench\`.\`${String(r['table'])}\`` === table);
    const partCounts = { usage: 0, minute: 0, hour: 0, day: 0 };
    const tableBytes = { usage: 0, minute: 0, hour: 0, day: 0 };
    for (const [k, table] of [['usage', w.tables.usage], ['minute', w.tables.rollupMinute], ['hour', w.tables.rollupHour], ['day', w.tables.rollupDay]] as const) {
      partCounts[k] = Number(part(table)?.['n'] ?? 0);
      tableBytes[k] = Number(part(table)?.['b'] ?? 0);
    }

    const top = await w.select(`SELECT account_id AS id FROM ${w.tables.rollupDay} GROUP BY id ORDER BY sum(cost) DESC LIMIT 1`);
    const topAccount = String(top[0]!['id']);
    const median = await w.select(`SELECT account_id AS id FROM ${w.tables.rollupDay} GROUP BY id ORDER BY sum(cost), id LIMIT 1 OFFSET ${ACCOUNTS / 2}`);
    const medianAccount = String(median[0]?.['id'] ?? topAccount);

    // -- analytics
    const timings: Timing[] = [];
    const cheap = { runs: o.runs, budgetMs: o.budgetMs };
    const add = async (name: string, note: string, fn: () => Promise<number>, opts: { runs: number; budgetMs: number; minRuns?: number } = cheap) => {
      const m = await measure(fn, opts);
      timings.push({ name, note, ms: m.ms, rows: m.last });
      o.log(`  ${name.padEnd(44)} p50 ${m.ms.p50.toFixed(1).padStart(8)} ms  p99 ${m.ms.p99.toFixed(1).padStart(8)} ms  (${m.ms.count} runs)`);
    };
    const sep = { from: Date.UTC(2026, 8, 1), to: Date.UTC(2026, 9, 1) };
    const report = (q: AnalyticsQuery) => async () => {
      const r = await usageReport(w, q);
      if (r.totals.requests === 0) throw new Error(`analytics bench: empty report for ${JSON.stringify(q)}`);
      return r.series.length;
    };
    o.log(`bench: analytics: measuring (warm-up 1-2, then up to ${o.runs} runs, or fewer (at least 3) once ${o.budgetMs / 1000} s of runs are spent); top account ${topAccount}, median ${medianAccount}`);
    await add('usage: month by day', 'rollup_day', report({ ...sep, granularity: 'day' }));
    await add('usage: month by hour', 'rollup_hour', report({ ...sep, granularity: 'hour' }));
    await add('usage: day by minute', 'rollup_minute', report({ from: Date.UTC(2026, 8, 15), to: Date.UTC(2026, 8, 16), granularity: 'minute' }));
    await add('usage: month by day, group_by model', 'rollup_day', report({ ...sep, granularity: 'day', groupBy: 'model' }));
    await add('usage: month by day, group_by account', 'rollup_day', report({ ...sep, granularity: 'day', groupBy: 'account' }));
    await add('usage: month by day, account filter (top)', 'rollup_day', report({ ...sep, granularity: 'day', accountId: topAccount }));
    await add('usage: 3 months by month, top 100 acc/keys', 'rollup_day', report({ from: START, to: END, granularity: 'month', limit: 100 }));
    // Usage per upstream reads the whole window from raw events FINAL (docs/decisions.md): the
    // monthly check of each upstream account's bill.
    await add('usage: month by day, group_by upstream', 'raw FINAL', report({ ...sep, granularity: 'day', groupBy: 'upstream' }), { runs: o.runs, budgetMs: o.budgetMs, minRuns: 2 });
    await add('usage: month by day, upstream filter', 'raw FINAL', report({ ...sep, granularity: 'day', upstreamId: 'ups_eu' }), { runs: o.runs, budgetMs: o.budgetMs, minRuns: 2 });
    const odd = { from: Date.UTC(2026, 8, 10, 12, 34, 56, 789), to: Date.UTC(2026, 8, 17, 8, 0, 0, 123) };
    await add('usage: 7 days non-aligned, by hour', 'rollups + raw rims', report({ ...odd, granularity: 'hour' }));
    await add('usage: 7 days non-aligned, account (top)', 'rollups + raw rims', report({ ...odd, granularity: 'hour', accountId: topAccount }));
    await add('usage: month non-aligned, by day', 'rollups + raw rims', report({ from: sep.from + 1, to: sep.to, granularity: 'day' }), { runs: o.runs, budgetMs: o.budgetMs, minRuns: 2 });

    await add('events: first page (100), month', 'raw FINAL', async () => (await usageEventPage(w, { ...sep, limit: 100 })).events.length);
    const mid = await usageEventPage(w, { from: Date.UTC(2026, 8, 20), to: sep.to, limit: 1 });
    const cursor = { ts: mid.events[0]!.ts, eventId: mid.events[0]!.event_id };
    await add('events: deep cursor page (100), month', 'raw FINAL', async () => (await usageEventPage(w, { ...sep, after: cursor, limit: 100 })).events.length);
    await add('events: first page (100), account (top)', 'raw FINAL', async () => (await usageEventPage(w, { ...sep, accountId: topAccount, limit: 100 })).events.length);

    // -- billing: open months before any close, then close August (and nothing before it: the first fact is in August)
    const docs = (kind: 'invoice' | 'statement', account: string, month: string) => async () => {
      if (kind === 'invoice') return (await invoiceFor(w, account, month, prices)).lines.length;
      await statementFor(w, account, month, prices);
      return 1;
    };
    await add(`invoice: open ${CLOSED_MONTH}, no close yet (top)`, 'raw FINAL', docs('invoice', topAccount, CLOSED_MONTH));
    o.log(`bench: analytics: closing ${CLOSED_MONTH} (every account)`);
    const c0 = now();
    const closed = await closeMonth(w, CLOSED_MONTH, prices, Date.UTC(2026, 8, 1, 6));
    const closeMonthMs = now() - c0;
    o.log(`  closeMonth(${CLOSED_MONTH}) ${closeMonthMs.toFixed(0)} ms; closed ${closed.months.join(', ')}`);
    await add(`invoice: closed ${CLOSED_MONTH} (top)`, 'frozen document', docs('invoice', topAccount, CLOSED_MONTH));
    await add(`statement: closed ${CLOSED_MONTH} (top)`, 'frozen document', docs('statement', topAccount, CLOSED_MONTH));
    await add('invoice: open 2026-09 (top)', 'raw FINAL + late deltas', docs('invoice', topAccount, '2026-09'));
    await add(`invoice: open ${OPEN_MONTH} (top)`, 'raw FINAL + late deltas', docs('invoice', topAccount, OPEN_MONTH));
    await add(`statement: open ${OPEN_MONTH} (top)`, 'raw FINAL + late deltas', docs('statement', topAccount, OPEN_MONTH));
    await add(`invoice: open ${OPEN_MONTH} (median)`, 'raw FINAL + late deltas', docs('invoice', medianAccount, OPEN_MONTH));

    await add('credit history: page of 100 (top)', 'paged in SQL', async () => (await creditHistoryPage(w, topAccount, { limit: 100 }))!.data.length);
    await add('credit history: page of 100 (median)', 'paged in SQL', async () => (await creditHistoryPage(w, medianAccount, { limit: 100 }))!.data.length);

    // -- export: every account's invoice lines of a month, each format
    const exports: ExportFigure[] = [];
    const slow = { runs: Math.min(o.runs, 10), budgetMs: o.budgetMs, minRuns: 3 };
    for (const [month, status] of [[CLOSED_MONTH, 'closed'], [OPEN_MONTH, 'open']] as const) {
      let lines: InvoiceLine[] = [];
      await add(`export lines: ${status} ${month}, all accounts`, status === 'closed' ? 'frozen documents' : 'raw FINAL + late deltas', async () => {
        lines = await invoiceLinesForMonth(w, month, prices);
        return lines.length;
      }, slow);
      const linesP50 = timings.at(-1)!.ms.p50;
      for (const format of ['csv', 'json', 'parquet'] as const) {
        let bytes = 0;
        const m = await measure(async () => {
          bytes = 0;
          for (const chunk of exportChunks(lines, format)) bytes += chunk.length;
          return bytes;
        }, { runs: 10, budgetMs: o.budgetMs, minRuns: 3 });
        exports.push({ month, status, format, lines: lines.length, bytes, renderMs: m.ms, endToEndP50Ms: linesP50 + m.ms.p50 });
        o.log(`  export ${format.padEnd(7)} ${month}: ${lines.length} lines, ${(bytes / 1e6).toFixed(2)} MB, render p50 ${m.ms.p50.toFixed(1)} ms ` +
          `(${(lines.length / (m.ms.p50 / 1000)).toFixed(0)} lines/s), with the read ${(linesP50 + m.ms.p50).toFixed(0)} ms`);
      }
    }

    const dataBytes = dirBytes(dir);
    return {
      events: o.events, accounts: ACCOUNTS, keys: ACCOUNTS * KEYS_PER_ACCOUNT, ledgerEntries, insertS, insertRate: o.events / insertS, mergeWaitS,
      rollupTotalsOk, ...(rollupFullCheck ? { rollupFullCheck } : {}), dataBytes, parts: partCounts, tableBytes, rollupRows,
      closeMonthMs, closedMonths: closed.months, timings, exports, totalS: (now() - t0) / 1000, loadAvgStart,
    };
  } finally {
    await w.close();
    removeDir();
    process.off('exit', removeDir);
  }
}

// ---- report -------------------------------------------------------------------------------------

const f1 = (v: number) => v.toFixed(1);
const mb = (b: number) => (b / 1e6).toFixed(2);
const gb = (b: number) => (b / 1e9).toFixed(2);

/** The section's table, plain text. */
export function analyticsReport(r: AnalyticsBenchResult): string {
  const cores = availableParallelism();
  const out: string[] = [];
  out.push(
    `analytics and billing: ${r.events.toLocaleString('en')} usage events (2026-08..2026-10), ${r.accounts} accounts, ${r.keys} keys, ` +
      `${r.ledgerEntries} ledger entries; embedded chDB; ${cores} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), load average ${r.loadAvgStart.toFixed(2)} at start`,
    `generated in ${f1(r.insertS)} s (${r.insertRate.toFixed(0)} events/s through the rollup views), merges done ${f1(r.mergeWaitS)} s later; chDB data ${(r.dataBytes / 1e9).toFixed(2)} GB; ` +
      `rollup rows minute ${r.rollupRows.minute.toLocaleString('en')}, hour ${r.rollupRows.hour.toLocaleString('en')}, day ${r.rollupRows.day.toLocaleString('en')}; ` +
      `active parts usage ${r.parts.usage}, minute ${r.parts.minute}, hour ${r.parts.hour}, day ${r.parts.day}; ` +
      `on disk usage_events ${gb(r.tableBytes.usage)} GB, rollup minute ${gb(r.tableBytes.minute)}, hour ${gb(r.tableBytes.hour)}, day ${gb(r.tableBytes.day)}`,
    `rollup totals = raw FINAL: ${r.rollupTotalsOk ? 'ok' : 'MISMATCH'}` +
      (r.rollupFullCheck ? `; rollupsMatchRaw (every row): ${r.rollupFullCheck.ok ? 'ok' : 'MISMATCH'} in ${f1(r.rollupFullCheck.seconds)} s` : ''),
    '',
  );
  const w = Math.max(...r.timings.map((t) => t.name.length), 10);
  out.push(`${'operation'.padEnd(w)}  ${'source'.padEnd(24)}  runs     p50 ms     p99 ms   rows`);
  for (const t of r.timings) {
    out.push(`${t.name.padEnd(w)}  ${t.note.padEnd(24)}  ${String(t.ms.count).padStart(4)}  ${f1(t.ms.p50).padStart(9)}  ${f1(t.ms.p99).padStart(9)}  ${String(t.rows ?? '').padStart(5)}`);
  }
  out.push(`${`closeMonth ${r.closedMonths.join(', ')} (all accounts)`.padEnd(w)}  ${'raw FINAL → snapshot'.padEnd(24)}     1  ${f1(r.closeMonthMs).padStart(9)}          -`);
  out.push('', 'billing export (every account\'s invoice lines of the month; render = exportChunks over lines already read)');
  out.push('month    status  format    lines      MB  render p50 ms  lines/s (render)  MB/s (render)  with the read p50 ms  lines/s (with read)');
  for (const e of r.exports) {
    out.push(`${e.month}  ${e.status.padEnd(6)}  ${e.format.padEnd(7)}  ${String(e.lines).padStart(7)}  ${mb(e.bytes).padStart(6)}  ${f1(e.renderMs.p50).padStart(13)}  ` +
      `${(e.lines / (e.renderMs.p50 / 1000)).toFixed(0).padStart(16)}  ${(e.bytes / 1e6 / (e.renderMs.p50 / 1000)).toFixed(1).padStart(13)}  ` +
      `${f1(e.endToEndP50Ms).padStart(20)}  ${(e.lines / (e.endToEndP50Ms / 1000)).toFixed(0).padStart(19)}`);
  }
  out.push('', `section took ${f1(r.totalS)} s; percentiles nearest-rank over the measured runs (warm-up excluded); usage percentiles inside the reports are bfloat16 order statistics`);
  return out.join('\n');
}

// ---- CLI ----------------------------------------------------------------------------------------

const HELP = `Usage: node bench/analytics.ts [options]   (also a section of npm run bench)

Fills an embedded chDB warehouse (temporary directory, removed after) with synthetic usage
events over 2026-08..2026-10 and measures the analytics queries, invoices and statements, month
close, credit history and the billing export. See bench/README.md.

Options:
  --events <n>     usage events (default BENCH_ANALYTICS_EVENTS, else ${DEFAULT_ANALYTICS_EVENTS})
  --runs <n>       measured runs per query (default 20; expensive ones stop after --budget)
  --budget <s>     measured seconds per query, after which it stops once 3 runs are done (default 6)
  --full-check     also compare every rollup row with raw events (rollupsMatchRaw; minutes at 10M)
  --json           print the result as JSON on stdout (progress stays on stderr)
  -h, --help       show this help

Environment:
  BENCH_ANALYTICS_EVENTS  usage events when --events is not given

Example:
  node bench/analytics.ts --events 1000000 --runs 5 > analytics.txt

Exit status: 0 done, 1 the run failed (stored counts or rollups disagree), 2 bad usage, 130 interrupted.`;

/**
 * `--events` / BENCH_ANALYTICS_EVENTS as a count, 10,000 to 10⁹ (default DEFAULT_ANALYTICS_EVENTS;
 * an empty variable counts as unset, an empty option value is refused).
 * @throws UsageError naming the bad one and the range
 */
export function analyticsEvents(flag: string | undefined, flagName = '--analytics-events', env = process.env['BENCH_ANALYTICS_EVENTS']): number {
  const [name, raw] = flag !== undefined ? [flagName, flag] : ['BENCH_ANALYTICS_EVENTS', env || undefined];
  return numberValue(name, raw, DEFAULT_ANALYTICS_EVENTS, { min: 10_000, max: 1_000_000_000, integer: true });
}

async function main(argv: string[]): Promise<number> {
  const v = commandLine({
    name: 'bench/analytics', usage: HELP,
    options: { events: { type: 'string' }, runs: { type: 'string' }, budget: { type: 'string' }, 'full-check': { type: 'boolean' }, json: { type: 'boolean' } },
  }, argv).values;
  const events = analyticsEvents(v.events, '--events');
  const runs = numberValue('--runs', v.runs, 20, { min: 1, max: 1_000_000, integer: true });
  const budget = numberValue('--budget', v.budget, 6, { min: 0.001, max: 86_400 });
  const r = await runAnalyticsBench({ events, runs, budgetMs: budget * 1000, fullRollupCheck: v['full-check'] ?? false, log: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(v.json ? `${JSON.stringify(r, null, 2)}\n` : `${analyticsReport(r)}\n`);
  return 0;
}

if (import.meta.main) {
  process.once('SIGINT', () => process.exit(130));
  runMain('bench/analytics', () => main(process.argv.slice(2)));
}
