// `tollgate usage`, `invoices`, `statements`, `export`, `close-month`: clients of the warehouse
// report routes (/admin/v1/usage, /admin/v1/accounts/:id/invoices|statements/:month,
// /admin/v1/billing/export, /admin/v1/billing/months/:month/close). The finance token may call
// every one of them.

import { EXIT_FAILED, UsageError, choiceOption, expectPositionals, pathId, monthArgument, stringOption, type Command, type Context } from './core.ts';
import { confirm, download, outputOption, printJson, printTable, refuseBinaryOnTerminal, byIdCommand } from './output.ts';


const isRows = (v: unknown): v is Array<Record<string, unknown>> =>
  Array.isArray(v) && v.every((r) => typeof r === 'object' && r !== null && !Array.isArray(r));

/**
 * A JSON report for people: its scalar fields as one two-column table, then each list of
 * objects (series, top accounts, error rates, …) as its own table under its name, nested
 * objects likewise. Keeps no knowledge of the report's shape, so new fields show up as they come.
 */
export function printReport(ctx: Context, body: Record<string, unknown>, title = ''): void {
  const scalars = Object.entries(body).filter(([, v]) => v === null || typeof v !== 'object');
  if (scalars.length > 0) {
    if (title !== '') ctx.io.stdout.write(`${title}\n`);
    printTable(ctx.io, scalars.map(([k, v]) => ({ field: k, value: v })), [['field', 'field'], ['value', 'value']]);
  }
  for (const [k, v] of Object.entries(body)) {
    const name = title === '' ? k : `${title}.${k}`;
    if (isRows(v)) {
      ctx.io.stdout.write(`${name} (${v.length})\n`);
      if (v.length > 0) printTable(ctx.io, v);
    } else if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      printReport(ctx, v as Record<string, unknown>, name);
    } else if (Array.isArray(v)) {
      ctx.io.stdout.write(`${name}: ${JSON.stringify(v)}\n`);
    }
  }
}

type Row = Record<string, unknown>;
const obj = (v: unknown): Row => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Row : {});
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

/**
 * GET /admin/v1/usage's answer (README "Usage analytics") for people: the window, one row per
 * bucket (× group) with the billable dimensions that occur, spend and latency; the totals; top
 * accounts and keys; errors by code; per model. Anything of another shape is shown field by
 * field (printReport).
 */
export function printUsage(ctx: Context, body: Row): void {
  if (!Array.isArray(body.data) || typeof body.totals !== 'object' || body.totals === null) return printReport(ctx, body);
  const points = body.data as Row[];
  const totals = obj(body.totals);
  const byModel = Array.isArray(body.by_model) ? body.by_model as Row[] : [];
  // only the dimensions with a quantity somewhere: most windows have tokens and nothing else
  const dims = Object.keys(obj(totals.quantities)).filter((d) => num(obj(totals.quantities)[d]) !== 0);
  const metricColumns = (first: readonly (readonly [string, string])[]) => [
    ...first, ['requests', 'requests'], ['errors', 'errors'], ...dims.map((d) => [`q.${d}`, d] as const),
    ['cost_credits', 'credits'], ['latency_p50', 'p50 ms'], ['latency_p99', 'p99 ms'], ['ttft_p50', 'ttft p50 ms'],
  ] as const;
  const flat = (r: Row) => ({
    ...r,
    ...Object.fromEntries(dims.map((d) => [`q.${d}`, obj(r.quantities)[d]])),
    latency_p50: obj(r.latency_ms).p50, latency_p99: obj(r.latency_ms).p99, ttft_p50: obj(r.ttft_ms).p50,
  });
  const out = ctx.io.stdout;
  out.write(`Usage ${String(body.from)} .. ${String(body.to)} by ${String(body.granularity)}` +
    `${body.group_by ? `, per ${String(body.group_by)}` : ''} (from ${String(body.source)}; ${String(body.credit_value)})\n`);
  const series = metricColumns(body.group_by ? [['bucket', 'bucket'], ['group', String(body.group_by)]] : [['bucket', 'bucket']]);
  if (points.length > 0) printTable(ctx.io, points.map(flat), series);
  else out.write('no usage in this window\n');

  const revenue = obj(totals.revenue);
  const margin = obj(totals.margin);
  const upstream = Object.entries(obj(totals.upstream_cost)).map(([cur, v]) => `${String(obj(v).amount)} ${cur}`).join(', ');
  const pct = (p: Row) => `${String(p.p50 ?? '-')} / ${String(p.p90 ?? '-')} / ${String(p.p99 ?? '-')}`;
  const lines: Array<[string, unknown]> = [
    ['requests', totals.requests], ['errors', `${String(totals.errors)} (rate ${String(totals.error_rate)})`],
    ['charged', `${String(totals.cost_credits)} credits (${String(totals.cost_micros)} µc)`],
    ['revenue', revenue.amount === undefined ? undefined : `${String(revenue.amount)} ${String(revenue.currency)}`],
    ['upstream cost', upstream === '' ? undefined : upstream],
    ['margin', totals.margin === null ? totals.margin_note : totals.margin === undefined ? undefined : `${String(margin.amount)} ${String(margin.currency)}`],
    ['cache hit ratio', totals.cache_hit_ratio], ['output tokens/s', totals.output_tokens_per_second],
    ['latency ms p50/p90/p99', pct(obj(totals.latency_ms))], ['ttft ms p50/p90/p99', pct(obj(totals.ttft_ms))],
  ];
  out.write('totals\n');
  printTable(ctx.io, lines.filter(([, v]) => v !== undefined).map(([k, v]) => ({ k, v })), [['k', 'total'], ['v', 'value']]);
  for (const [name, rows] of [['top accounts', body.top_accounts], ['top keys', body.top_keys],
    ['by HTTP status', obj(body.errors).by_http_status], ['by status', obj(body.errors).by_status]] as const) {
    if (!Array.isArray(rows) || rows.length === 0) continue;
    out.write(`${name}\n`);
    printTable(ctx.io, rows as Row[]);
  }
  if (byModel.length > 0) {
    out.write('by model\n');
    printTable(ctx.io, byModel.map(flat), metricColumns([['model', 'model']]));
  }
}

/** `tollgate event REQUEST_ID`: one request's usage record (GET /admin/v1/usage/events/:id). */
export const event: Command = byIdCommand({
  name: 'event',
  summary: "one request's usage record: cost, tokens, the upstream that served it",
  help: `Usage: tollgate event REQUEST_ID

Prints one request's usage record (GET /admin/v1/usage/events/:id) as JSON. REQUEST_ID is the
request-id header of the gateway's response (req_…). It holds the cost, the tokens of every
dimension, the status, and which upstream served it after how many attempts (upstream_id,
attempts). A request becomes queryable once the warehouse has stored it (WAREHOUSE_FLUSH_MS
after its response): a 404 just after the response may need a second try.`,
  id: 'REQUEST_ID', method: 'GET', path: (id) => `/admin/v1/usage/events/${id}`,
});

export const usage: Command = {
  name: 'usage',
  summary: 'usage analytics: requests, tokens, spend, latency, errors, margin',
  help: `Usage: tollgate usage [--from TIME] [--to TIME] [--granularity G] [--group-by G]
         [--account ID] [--key ID] [--model M] [--status S] [--upstream ID] [--limit N]
         [--format json|csv|table]

Usage analytics from the warehouse (GET /admin/v1/usage): a time series and totals of requests,
tokens, spend, latency and time-to-first-token percentiles, error rates, cache-hit ratio, output
tokens per second, revenue, upstream cost and margin; top accounts and keys by spend.

  --from TIME        start, inclusive: RFC 3339 (2026-11-01T00:00:00Z), a date (00:00 UTC) or
                     epoch milliseconds (default: the server's, the last 24 hours)
  --to TIME          end, exclusive
  --granularity G    minute, hour, day or month
  --group-by G       account, key, model, status or upstream (the pool upstream that served
                     each request; read from raw events, so slower on long windows)
  --account ID       only this account    --key ID      only this key
  --model M          only this model      --status S    only this status (ok, upstream_error, …)
  --upstream ID      only requests this upstream served (tollgate upstreams list; raw events too)
  --limit N          length of the top accounts / keys lists, 1-1000
  --format F         table (default on a terminal), json (default otherwise) or csv (one row per
                     bucket and group, as the server writes it)`,
  options: {
    from: { type: 'string' }, to: { type: 'string' }, granularity: { type: 'string' }, 'group-by': { type: 'string' },
    account: { type: 'string' }, key: { type: 'string' }, model: { type: 'string' }, status: { type: 'string' },
    upstream: { type: 'string' }, limit: { type: 'string' }, format: { type: 'string' },
  },
  values: {
    from: { kind: 'time' }, to: { kind: 'time' }, limit: { kind: 'page' },
    account: { kind: 'filter' }, key: { kind: 'filter' }, model: { kind: 'filter' }, upstream: { kind: 'filter' },
  },
  async run(ctx) {
    expectPositionals(ctx.positionals, []);
    const format = choiceOption(ctx.values, 'format', ['json', 'csv', 'table'] as const) ?? (ctx.io.stdout.isTTY ? 'table' : 'json');
    // The API's lists (GRANULARITIES, ANALYTICS_GROUP_BY, USAGE_STATUSES of @tollgate/warehouse), checked before any request.
    choiceOption(ctx.values, 'granularity', ['minute', 'hour', 'day', 'month'] as const);
    choiceOption(ctx.values, 'group-by', ['account', 'key', 'model', 'status', 'upstream'] as const);
    choiceOption(ctx.values, 'status', ['ok', 'upstream_error', 'client_disconnect', 'stream_error', 'usage_anomaly', 'unmetered'] as const);
    const v = (name: string) => stringOption(ctx.values, name);
    const query = {
      from: v('from'), to: v('to'), granularity: v('granularity'), group_by: v('group-by'),
      account_id: v('account'), key_id: v('key'), model: v('model'), status: v('status'), upstream_id: v('upstream'), limit: v('limit'),
      ...(format === 'csv' ? { format: 'csv' } : {}),
    };
    if (format === 'csv') {
      await download(ctx, await ctx.api().send('GET', '/admin/v1/usage', { query }), {});
      return;
    }
    const { body } = await ctx.api().json('GET', '/admin/v1/usage', { query });
    if (format === 'json') printJson(ctx.io, body);
    else printUsage(ctx, body);
  },
};

const BINARY = new Set(['pdf', 'parquet']);

/** `invoices` and `statements`: one account's document of one month, as JSON, CSV or PDF. */
function monthlyDocument(kind: 'invoices' | 'statements', what: string): Command {
  return {
    name: kind,
    summary: `an account's ${what} of a month (JSON, CSV or PDF)`,
    help: `Usage: tollgate ${kind} ACCOUNT_ID YYYY-MM [--format json|csv|pdf] [--output FILE]

The account's ${what} of a UTC month (GET /admin/v1/accounts/:id/${kind}/:month). A closed month's
is frozen: the same bytes every time.

  --format F       json (default), csv or pdf
  --output FILE    write to FILE (through FILE.part, renamed when complete) instead of stdout
                   (a relative FILE from where the command was typed, also under npm run);
                   a PDF is never written to a terminal`,
    options: { format: { type: 'string' }, output: { type: 'string' } },
    async run(ctx) {
      const [account, monthText] = expectPositionals(ctx.positionals, ['ACCOUNT_ID', 'YYYY-MM']);
      const month = monthArgument(monthText!);
      const format = choiceOption(ctx.values, 'format', ['json', 'csv', 'pdf'] as const) ?? 'json';
      const output = outputOption(ctx.values, ctx.io.env);
      const opts = { output, binary: BINARY.has(format) };
      refuseBinaryOnTerminal(ctx, opts, format);
      const res = await ctx.api().send('GET', `/admin/v1/accounts/${pathId(account!, 'ACCOUNT_ID')}/${kind}/${month}`, { query: { format } });
      const bytes = await download(ctx, res, opts);
      if (output !== undefined) ctx.io.stderr.write(`${ctx.name}: wrote ${bytes} bytes to ${output}\n`);
    },
  };
}

export const invoices = monthlyDocument('invoices', 'invoice');
export const statements = monthlyDocument('statements', 'statement');

export const exportCommand: Command = {
  name: 'export',
  summary: 'every account\'s invoice lines of a month (CSV, JSON or Parquet)',
  help: `Usage: tollgate export YYYY-MM --format csv|json|parquet [--output FILE] [--progress]

Every account's invoice lines of a UTC month (GET /admin/v1/billing/export), one flat record per
line (account_id, month, model, dimension, quantity, unit_price, amount, …). The same month gives
the same bytes every time once it is closed. Bytes received are reported on stderr while it
downloads when stderr is a terminal, or with --progress.

  --format F       csv, json or parquet (required)
  --output FILE    write to FILE (through FILE.part, renamed when complete) instead of stdout
                   (a relative FILE from where the command was typed, also under npm run);
                   Parquet is never written to a terminal
  --progress       report bytes received on stderr even when it is not a terminal`,
  options: { format: { type: 'string' }, output: { type: 'string' }, progress: { type: 'boolean' } },
  async run(ctx) {
    const [monthText] = expectPositionals(ctx.positionals, ['YYYY-MM']);
    const month = monthArgument(monthText!);
    const format = choiceOption(ctx.values, 'format', ['csv', 'json', 'parquet'] as const);
    if (format === undefined) throw new UsageError('--format is required: csv, json or parquet');
    const output = outputOption(ctx.values, ctx.io.env);
    const opts = { output, binary: BINARY.has(format), progress: ctx.values.progress === true };
    refuseBinaryOnTerminal(ctx, opts, format);
    const res = await ctx.api().send('GET', '/admin/v1/billing/export', { query: { month, format } });
    const bytes = await download(ctx, res, opts);
    if (output !== undefined) ctx.io.stderr.write(`${ctx.name}: wrote ${bytes} bytes to ${output}\n`);
  },
};

/** `tollgate months`: the closed months (GET /admin/v1/billing/months). */
export const months: Command = {
  name: 'months',
  summary: 'the closed months, the last closed and the first open one',
  help: `Usage: tollgate months

Prints the month closes (GET /admin/v1/billing/months) as JSON: {data: [{month, closed_at}],
last_closed, first_open}. Admin or finance token.`,
  options: {},
  async run(ctx) {
    expectPositionals(ctx.positionals, []);
    printJson(ctx.io, (await ctx.api().json('GET', '/admin/v1/billing/months')).body);
  },
};

export const closeMonth: Command = {
  name: 'close-month',
  summary: 'freeze a month\'s invoices and statements (asks first on a terminal)',
  help: `Usage: tollgate close-month YYYY-MM [--yes]

Closes the UTC month (POST /admin/v1/billing/months/:month/close): its invoices and statements
never change again, and usage or a ledger entry dated in it that reaches the warehouse later is
billed in the first open month, as late_usage (refund, adjustment, rounding) lines whose
source_month is the closed month. Any month may be closed, the current one included: closing is finance's decision.
Prints the server's answer as JSON.

On a terminal it asks for confirmation first; elsewhere (scripts, CI) it needs --yes.

  --yes            close without asking`,
  options: { yes: { type: 'boolean' } },
  async run(ctx) {
    const [monthText] = expectPositionals(ctx.positionals, ['YYYY-MM']);
    const month = monthArgument(monthText!);
    const api = ctx.api();
    if (ctx.values.yes !== true) {
      if (!ctx.io.stdin.isTTY) throw new UsageError('not a terminal: closing a month cannot be undone, so give --yes to close it without asking');
      const ok = await confirm(ctx.io, `Close ${month} on ${api.url}? Its invoices and statements will never change again. Type "yes" to close: `);
      if (!ok) {
        ctx.io.stderr.write(`${ctx.name}: not closed\n`);
        return EXIT_FAILED;
      }
    }
    printJson(ctx.io, (await api.json('POST', `/admin/v1/billing/months/${month}/close`)).body);
  },
};
