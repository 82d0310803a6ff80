// `tollgate accounts …` and `tollgate keys …`: clients of /admin/v1/accounts and /admin/v1/keys.

import { UsageError, choiceOption, expectPositionals, pathId, stringOption, type Command, type Group, type Parsed } from './core.ts';
import { byIdCommand, listFormat, printJson, printList } from './output.ts';
import { checkBody, checkText, type ValueKind } from './values.ts';

const FORMAT = { format: { type: 'string' } } as const;
const FORMAT_HELP = '  --format F       json or table (default: table on a terminal, else JSON)';
/** The word that sends `null` for a nullable field (removes a limit, a plan, a rule). */
export const NONE = 'none';

/** A credit amount option that also takes "none" (checked by checkValues before any request). */
const CREDITS_OR_NONE: ValueKind = { kind: 'credits', nullable: true };

/** A nullable text field of a PATCH body: absent → undefined, "none" → null, else the text. */
function nullable(values: Parsed['values'], name: string): string | null | undefined {
  const v = stringOption(values, name);
  return v === NONE ? null : v;
}

/**
 * A repeatable list option (each value may also be comma-separated); "none" alone → null (empty
 * the list, or clear the setting: the caller says which, and refuses it where neither applies).
 * @throws UsageError for an empty entry or "none" among values
 */
export function list(values: Parsed['values'], name: string): string[] | null | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const items = (Array.isArray(v) ? v : [v]).flatMap((s) => String(s).split(',')).map((s) => s.trim());
  if (items.length === 1 && items[0] === NONE) return null;
  if (items.some((s) => s === '' || s === NONE)) throw new UsageError(`--${name}: empty entry, or "${NONE}" mixed with values (--${name} ${NONE} goes alone)`);
  return items;
}

/** Builds a PATCH body from `fields` ([option, body field, reader]); refuses an empty one. */
function patchBody(values: Parsed['values'], fields: ReadonlyArray<readonly [string, string, (v: Parsed['values'], n: string) => unknown]>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [option, field, read] of fields) {
    const v = read(values, option);
    if (v !== undefined) body[field] = v;
  }
  requireChange(body, fields.map(([o]) => o));
  return body;
}

/** Refuses an empty PATCH body, naming the options that would fill it. @throws UsageError */
export function requireChange(body: Record<string, unknown>, options: readonly string[]): void {
  if (Object.keys(body).length === 0) throw new UsageError(`nothing to change: give at least one of ${options.map((o) => `--${o}`).join(', ')}`);
}

const ACCOUNT_COLUMNS = [
  ['id', 'id'], ['name', 'name'], ['status', 'status'], ['plan_id', 'plan'], ['price_list', 'price list'],
  ['balance', 'balance'], ['held', 'held'], ['available', 'available'],
] as const;

const ACCOUNT_UPDATE_FIELDS = [
  ['name', 'name', stringOption],
  ['status', 'status', (v: Parsed['values'], n: string) => choiceOption(v, n, ['active', 'suspended', 'disabled'] as const)],
  ['price-list', 'price_list', nullable],
  ['plan', 'plan_id', nullable],
  ['group', 'group_id', nullable],
  ['daily-credits', 'daily_credits', nullable],
  ['monthly-credits', 'monthly_credits', nullable],
  ['overdraft-credits', 'overdraft_credits', nullable],
  ['low-balance-credits', 'low_balance_credits', nullable],
  ['admission-policy', 'admission_policy', (v: Parsed['values'], n: string) => {
    const p = choiceOption(v, n, ['strict', 'clamp', NONE] as const);
    return p === NONE ? null : p;
  }],
] as const;


export const accounts: Group = {
  name: 'accounts',
  summary: 'customer accounts: status, price list, plan, limits, balance',
  commands: [
    {
      name: 'accounts list',
      summary: 'every account with its balance',
      help: `Usage: tollgate accounts list [--format json|table]

Lists every account (GET /admin/v1/accounts), oldest first, with balance, held and available
credits.

${FORMAT_HELP}`,
      options: FORMAT,
      async run(ctx) {
        expectPositionals(ctx.positionals, []);
        const format = listFormat(ctx.values, ctx.io);
        printList(ctx.io, format, (await ctx.api().json('GET', '/admin/v1/accounts')).body, ACCOUNT_COLUMNS);
      },
    },
    {
      name: 'accounts create',
      summary: 'a new account (prints it, with its id)',
      help: `Usage: tollgate accounts create NAME

Creates an account (POST /admin/v1/accounts) and prints it as JSON; its "id" is what every other
command takes. NAME: 1-200 characters, no control characters.`,
      options: {},
      async run(ctx) {
        const [name] = expectPositionals(ctx.positionals, ['NAME']);
        await checkText('name', name!, 'NAME');
        await checkBody('account-create', { name });
        printJson(ctx.io, (await ctx.api().json('POST', '/admin/v1/accounts', { body: { name } })).body);
      },
    },
    byIdCommand({
      name: 'accounts show',
      summary: 'one account with its limits and balance',
      help: `Usage: tollgate accounts show ACCOUNT_ID

Prints the account (GET /admin/v1/accounts/:id) as JSON: status, price list, plan, limits,
balance in credits and micro-credits.`,
      id: 'ACCOUNT_ID', method: 'GET', path: (id) => `/admin/v1/accounts/${id}`,
    }),
    {
      name: 'accounts update',
      summary: 'change status, price list, plan or limits',
      help: `Usage: tollgate accounts update ACCOUNT_ID [--name N] [--status S] [--price-list L] [--plan P]
         [--group G] [--daily-credits C] [--monthly-credits C] [--overdraft-credits C]
         [--low-balance-credits C] [--admission-policy strict|clamp]

Changes only the fields given (PATCH /admin/v1/accounts/:id) and prints the account.
"${NONE}" removes a setting (a limit, the plan, the group, the admission policy; --price-list ${NONE} returns to
the catalog's own prices).

  --name N                  the account's name
  --status S                active, suspended or disabled
  --price-list L            a price list of the catalog in force ("default" or ${NONE}: the catalog's own prices)
  --plan P                  a plan id (tollgate plans list)
  --group G                 the upstream group serving the account (GET /admin/v1/groups; ${NONE}: the default group)
  --daily-credits C         spend limit per UTC day, decimal credits (e.g. 50 or 12.5)
  --monthly-credits C       spend limit per UTC month
  --overdraft-credits C     how far below zero the balance may go
  --low-balance-credits C   balance.low webhook threshold
  --admission-policy P      strict or clamp

Credit amounts are decimal credits ≥ 0, at most 6 places; values are checked before anything is
sent (a malformed one exits 2).`,
      options: Object.fromEntries(ACCOUNT_UPDATE_FIELDS.map(([o]) => [o, { type: 'string' }])),
      values: {
        name: { kind: 'name' },
        'daily-credits': CREDITS_OR_NONE, 'monthly-credits': CREDITS_OR_NONE, 'overdraft-credits': CREDITS_OR_NONE, 'low-balance-credits': CREDITS_OR_NONE,
      },
      async run(ctx) {
        const [id] = expectPositionals(ctx.positionals, ['ACCOUNT_ID']);
        const body = patchBody(ctx.values, ACCOUNT_UPDATE_FIELDS);
        await checkBody('account-patch', body);
        printJson(ctx.io, (await ctx.api().json('PATCH', `/admin/v1/accounts/${pathId(id!, 'ACCOUNT_ID')}`, { body })).body);
      },
    },
  ] satisfies Command[],
};

const KEY_COLUMNS = [
  ['id', 'id'], ['name', 'name'], ['prefix', 'prefix'], ['status', 'status'], ['plan_id', 'plan'],
  ['created_at', 'created'], ['expires_at', 'expires'], ['revoked_at', 'revoked'],
] as const;

const KEY_UPDATE_FIELDS = [
  ['name', 'name', (v: Parsed['values'], n: string) => {
    const s = v[n];
    if (s !== undefined && typeof s !== 'string') throw new UsageError(`--${n} takes one value`);
    return s; // '' is a valid key name: clears it
  }],
  ['status', 'status', (v: Parsed['values'], n: string) => choiceOption(v, n, ['active', 'disabled'] as const)],
  ['plan', 'plan_id', nullable],
  ['group', 'group_id', nullable],
  ['hourly-credits', 'hourly_credits', nullable],
  ['daily-credits', 'daily_credits', nullable],
  ['total-credits', 'total_credits', nullable],
  ['ip-allowlist', 'ip_allowlist', list],
  ['allowed-models', 'allowed_models', list],
  ['expires-at', 'expires_at', nullable],
] as const;

export const keys: Group = {
  name: 'keys',
  summary: 'API keys of an account: create (secret shown once), rules, revoke',
  commands: [
    {
      name: 'keys list',
      summary: 'the keys of an account (never their secrets)',
      help: `Usage: tollgate keys list ACCOUNT_ID [--format json|table]

Lists the account's keys (GET /admin/v1/accounts/:id/keys) with prefix, status and rules.

${FORMAT_HELP}`,
      options: FORMAT,
      async run(ctx) {
        const [account] = expectPositionals(ctx.positionals, ['ACCOUNT_ID']);
        const format = listFormat(ctx.values, ctx.io);
        printList(ctx.io, format, (await ctx.api().json('GET', `/admin/v1/accounts/${pathId(account!, 'ACCOUNT_ID')}/keys`)).body, KEY_COLUMNS);
      },
    },
    {
      name: 'keys create',
      summary: 'a new key; prints its secret, the only time it is shown',
      help: `Usage: tollgate keys create ACCOUNT_ID [--name N]

Creates a key (POST /admin/v1/accounts/:id/keys) and prints it as JSON with "key", the secret
(sk-tg-…). Tollgate stores only a hash: this is the only time the secret can be read.

  --name N         a label for the key`,
      options: { name: { type: 'string' } },
      values: { name: { kind: 'key-name' } },
      async run(ctx) {
        const [account] = expectPositionals(ctx.positionals, ['ACCOUNT_ID']);
        const name = ctx.values.name;
        const request = name === undefined ? {} : { name };
        await checkBody('key-create', request);
        const { body } = await ctx.api().json('POST', `/admin/v1/accounts/${pathId(account!, 'ACCOUNT_ID')}/keys`, { body: request });
        printJson(ctx.io, body);
        ctx.io.stderr.write(`${ctx.name}: the "key" above is the secret; it is not stored and cannot be shown again\n`);
      },
    },
    byIdCommand({
      name: 'keys show',
      summary: 'one key with its access rules and limits',
      help: `Usage: tollgate keys show KEY_ID

Prints the key (GET /admin/v1/keys/:id) as JSON, without its secret.`,
      id: 'KEY_ID', method: 'GET', path: (id) => `/admin/v1/keys/${id}`,
    }),
    byIdCommand({
      name: 'keys revoke',
      summary: 'revoke a key at once (final)',
      help: `Usage: tollgate keys revoke KEY_ID

Revokes the key (DELETE /admin/v1/keys/:id) and prints it. Final: a revoked key cannot be
changed or re-enabled. Revoking a revoked key changes nothing.`,
      id: 'KEY_ID', method: 'DELETE', path: (id) => `/admin/v1/keys/${id}`,
    }),
    {
      name: 'keys update',
      summary: 'change status, plan, limits or access rules',
      help: `Usage: tollgate keys update KEY_ID [--name N] [--status active|disabled] [--plan P]
         [--group G] [--hourly-credits C] [--daily-credits C] [--total-credits C]
         [--ip-allowlist CIDR]… [--allowed-models MODEL]… [--expires-at TIME]

Changes only the fields given (PATCH /admin/v1/keys/:id) and prints the key. "${NONE}" removes a
setting (a limit, the plan, the group, the expiry) or empties a list.

  --name N               the key's label ('' clears it)
  --status S             active or disabled (tollgate keys revoke to revoke)
  --plan P               a plan id (tollgate plans list)
  --group G              the upstream group serving the key, over its account's (${NONE}: the account's)
  --hourly-credits C     spend limits, decimal credits
  --daily-credits C
  --total-credits C
  --ip-allowlist CIDR    addresses the key may be used from; repeat or comma-separate
                         (replaces the list)
  --allowed-models M     models the key may use; repeat or comma-separate (replaces the list)
  --expires-at TIME      the first refused instant: RFC 3339 (2027-01-31T00:00:00Z), a date
                         (00:00 UTC) or epoch milliseconds

Credit amounts are decimal credits ≥ 0, at most 6 places; values are checked before anything is
sent (a malformed one exits 2).`,
      options: Object.fromEntries(KEY_UPDATE_FIELDS.map(([o]) => [o, o === 'ip-allowlist' || o === 'allowed-models' ? { type: 'string', multiple: true } : { type: 'string' }])),
      values: {
        name: { kind: 'key-name' },
        'hourly-credits': CREDITS_OR_NONE, 'daily-credits': CREDITS_OR_NONE, 'total-credits': CREDITS_OR_NONE,
        'ip-allowlist': { kind: 'cidrs', nullable: true }, 'expires-at': { kind: 'instant', nullable: true },
      },
      async run(ctx) {
        const [id] = expectPositionals(ctx.positionals, ['KEY_ID']);
        const body = patchBody(ctx.values, KEY_UPDATE_FIELDS);
        await checkBody('key-patch', body);
        printJson(ctx.io, (await ctx.api().json('PATCH', `/admin/v1/keys/${pathId(id!, 'KEY_ID')}`, { body })).body);
      },
    },
  ] satisfies Command[],
};
