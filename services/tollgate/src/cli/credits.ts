// `tollgate credits …` and `tollgate plans …`: clients of the credit and plan routes of the
// operator API.

import { UsageError, choiceOption, expectPositionals, pathId, stringOption, type Command, type Group, type Parsed } from './core.ts';
import { listFormat, printJson, printList } from './output.ts';
import { NONE } from './accounts.ts';
import { creditsValue, checkBody } from './values.ts';


/** Ledger kinds an operator may post (`POST /admin/v1/accounts/:id/credits` `kind`). */
export const CREDIT_KINDS = ['grant', 'top_up', 'refund', 'adjustment'] as const;

const HISTORY_COLUMNS = [
  ['created_at', 'time'], ['type', 'type'], ['amount', 'credits'], ['balance_after', 'balance after'], ['reference', 'reference'], ['requests', 'requests'],
] as const;

export const credits: Group = {
  name: 'credits',
  summary: 'grants, top-ups, refunds, adjustments; credit history',
  commands: [
    {
      name: 'credits grant',
      summary: 'credit (or, as an adjustment, debit) an account, once per reference',
      help: `Usage: tollgate credits grant ACCOUNT_ID CREDITS --reference R [--kind grant|top_up|refund|adjustment]

Posts a ledger entry (POST /admin/v1/accounts/:id/credits) and prints the account with its new
balance. CREDITS is decimal credits, up to 6 places (25, 12.5, 0.000001). The reference makes it
idempotent: the same reference again credits nothing (printed with "duplicate": true); the same
reference with another amount or another --kind is refused (409). Taking credit away is an adjustment with a negative
amount, written after -- so it is not read as an option:

  tollgate credits grant acct_123 --kind adjustment --reference fix-42 -- -5

  --reference R    your reference for this entry (an invoice number, a ticket), 1-200 characters
  --kind K         grant (default), top_up (a paid purchase), refund, or adjustment`,
      options: { reference: { type: 'string' }, kind: { type: 'string' } },
      values: { reference: { kind: 'reference' } },
      async run(ctx) {
        const [account, amount] = expectPositionals(ctx.positionals, ['ACCOUNT_ID', 'CREDITS']);
        const reference = stringOption(ctx.values, 'reference');
        if (reference === undefined) throw new UsageError('--reference is required (it makes the entry idempotent)');
        const kind = choiceOption(ctx.values, 'kind', CREDIT_KINDS);
        // The API's rules, before any request: a decimal of at most 6 places, not zero, and
        // negative only as an adjustment.
        const micros = await creditsValue(amount!, 'CREDITS', 'non-zero');
        if (micros < 0n && kind !== 'adjustment') throw new UsageError('CREDITS: a negative amount takes credit away and needs --kind adjustment');
        const grant = { credits: amount, reference, ...(kind === undefined ? {} : { kind }) };
        await checkBody('credit-grant', grant);
        const { status, body } = await ctx.api().json<Record<string, unknown>>('POST', `/admin/v1/accounts/${pathId(account!, 'ACCOUNT_ID')}/credits`, { body: grant });
        printJson(ctx.io, body);
        if (body.duplicate === true) ctx.io.stderr.write(`${ctx.name}: reference ${JSON.stringify(reference)} was already applied; nothing credited again\n`);
        if (status === 202) ctx.io.stderr.write(`${ctx.name}: accepted, not yet applied to the balance shown (the ledger is behind); it will be applied once\n`);
      },
    },
    {
      name: 'credits history',
      summary: 'ledger entries and daily usage of an account, with running balance',
      help: `Usage: tollgate credits history ACCOUNT_ID [--from TIME] [--to TIME] [--limit N] [--cursor C] [--format json|table]

The account's credit history (GET /admin/v1/accounts/:id/credits/history): grants, top-ups,
refunds, adjustments (with their reference) and one usage entry per UTC day (the day's charges),
newest first, each with the exact balance after it. A page at a time: "next_cursor" of one page
is --cursor of the next (on a terminal the table is followed by the --cursor to pass).

  --from TIME      start, inclusive: RFC 3339, a date (00:00 UTC) or epoch milliseconds
  --to TIME        end, exclusive
  --limit N        entries per page, 1-1000
  --cursor C       the next page (next_cursor of the previous one)
  --format F       json or table (default: table on a terminal, else JSON)`,
      options: { from: { type: 'string' }, to: { type: 'string' }, limit: { type: 'string' }, cursor: { type: 'string' }, format: { type: 'string' } },
      values: { from: { kind: 'time' }, to: { kind: 'time' }, limit: { kind: 'page' } },
      async run(ctx) {
        const [account] = expectPositionals(ctx.positionals, ['ACCOUNT_ID']);
        const format = listFormat(ctx.values, ctx.io);
        const query = Object.fromEntries(['from', 'to', 'limit', 'cursor'].map((k) => [k, stringOption(ctx.values, k)]));
        const { body } = await ctx.api().json<{ data?: unknown; has_more?: unknown; next_cursor?: unknown }>('GET', `/admin/v1/accounts/${pathId(account!, 'ACCOUNT_ID')}/credits/history`, { query });
        printList(ctx.io, format, body, HISTORY_COLUMNS);
        if (format === 'table' && body.has_more === true) ctx.io.stderr.write(`${ctx.name}: more entries: --cursor ${String(body.next_cursor)}\n`);
      },
    },
  ] satisfies Command[],
};

const PLAN_LIMITS = ['requests-per-minute', 'requests-per-5h', 'requests-per-week', 'tokens-per-minute', 'concurrent-requests'] as const;

/** A plan limit: a whole number, or "none" (unlimited, sent as null). */
function planLimit(values: Parsed['values'], name: string): number | null | undefined {
  const v = stringOption(values, name);
  if (v === undefined) return undefined;
  if (v === NONE) return null;
  if (!/^\d{1,16}$/.test(v)) throw new UsageError(`--${name} must be a whole number or "${NONE}" (unlimited), not ${JSON.stringify(v)}`);
  return Number(v);
}

function planBody(values: Parsed['values']): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const name = stringOption(values, 'name');
  if (name !== undefined) body.name = name;
  for (const option of PLAN_LIMITS) {
    const v = planLimit(values, option);
    if (v !== undefined) body[option.replaceAll('-', '_')] = v;
  }
  return body;
}

const PLAN_OPTIONS = { name: { type: 'string' }, ...Object.fromEntries(PLAN_LIMITS.map((o) => [o, { type: 'string' }])) } as const;
const PLAN_OPTIONS_HELP = `  --name N                   the plan's name
  --requests-per-minute N    request windows; N a whole number, ${NONE} for unlimited
  --requests-per-5h N
  --requests-per-week N
  --tokens-per-minute N      input + output tokens per minute
  --concurrent-requests N    requests in flight at once`;

const PLAN_COLUMNS = [
  ['id', 'id'], ['name', 'name'], ['requests_per_minute', 'req/min'], ['requests_per_5h', 'req/5h'],
  ['requests_per_week', 'req/week'], ['tokens_per_minute', 'tokens/min'], ['concurrent_requests', 'concurrent'], ['seed', 'seed'],
] as const;

export const plans: Group = {
  name: 'plans',
  summary: 'rate-limit plans',
  commands: [
    {
      name: 'plans list',
      summary: 'the seed plans, then the operator\'s',
      help: `Usage: tollgate plans list [--format json|table]

Lists the plans (GET /admin/v1/plans): the four seed plans first, then the operator's by creation.

  --format F       json or table (default: table on a terminal, else JSON)`,
      options: { format: { type: 'string' } },
      async run(ctx) {
        expectPositionals(ctx.positionals, []);
        const format = listFormat(ctx.values, ctx.io);
        printList(ctx.io, format, (await ctx.api().json('GET', '/admin/v1/plans')).body, PLAN_COLUMNS);
      },
    },
    {
      name: 'plans create',
      summary: 'a new plan (limits unset are unlimited)',
      help: `Usage: tollgate plans create [--name N] [--requests-per-minute N] … [--concurrent-requests N]

Creates a plan (POST /admin/v1/plans) and prints it; assign it with
tollgate accounts update ID --plan PLAN_ID or tollgate keys update ID --plan PLAN_ID.

${PLAN_OPTIONS_HELP}`,
      options: PLAN_OPTIONS,
      values: { name: { kind: 'plan-name' } },
      async run(ctx) {
        expectPositionals(ctx.positionals, []);
        const body = planBody(ctx.values);
        await checkBody('plan', body);
        printJson(ctx.io, (await ctx.api().json('POST', '/admin/v1/plans', { body })).body);
      },
    },
    {
      name: 'plans show',
      summary: 'one plan',
      help: `Usage: tollgate plans show PLAN_ID

Prints the plan (GET /admin/v1/plans/:id).`,
      options: {},
      async run(ctx) {
        const [id] = expectPositionals(ctx.positionals, ['PLAN_ID']);
        printJson(ctx.io, (await ctx.api().json('GET', `/admin/v1/plans/${pathId(id!, 'PLAN_ID')}`)).body);
      },
    },
    {
      name: 'plans update',
      summary: 'change a plan\'s name or limits (seed plans too)',
      help: `Usage: tollgate plans update PLAN_ID [--name N] [--requests-per-minute N] … [--concurrent-requests N]

Changes only the fields given (PATCH /admin/v1/plans/:id) and prints the plan.

${PLAN_OPTIONS_HELP}`,
      options: PLAN_OPTIONS,
      values: { name: { kind: 'plan-name' } },
      async run(ctx) {
        const [id] = expectPositionals(ctx.positionals, ['PLAN_ID']);
        const body = planBody(ctx.values);
        if (Object.keys(body).length === 0) throw new UsageError(`nothing to change: give --name or a limit (${PLAN_LIMITS.map((o) => `--${o}`).join(', ')})`);
        await checkBody('plan', body);
        printJson(ctx.io, (await ctx.api().json('PATCH', `/admin/v1/plans/${pathId(id!, 'PLAN_ID')}`, { body })).body);
      },
    },
    {
      name: 'plans delete',
      summary: 'delete a plan (its keys and accounts fall back to the next plan in line)',
      help: `Usage: tollgate plans delete PLAN_ID

Deletes the plan (DELETE /admin/v1/plans/:id); keys and accounts naming it fall back to the next
plan in line (key → account → DEFAULT_PLAN).`,
      options: {},
      async run(ctx) {
        const [id] = expectPositionals(ctx.positionals, ['PLAN_ID']);
        printJson(ctx.io, (await ctx.api().json('DELETE', `/admin/v1/plans/${pathId(id!, 'PLAN_ID')}`)).body);
      },
    },
  ] satisfies Command[],
};
