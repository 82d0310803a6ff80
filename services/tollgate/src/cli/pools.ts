// `tollgate upstreams …`, `tollgate groups …` and `tollgate webhooks …`: clients of
// /admin/v1/upstreams, /admin/v1/groups and /admin/v1/webhooks (admin token only: the finance
// token gets 403 from the API, which the CLI reports as any refusal, exit 1).
//
// An upstream's credential is never taken on the command line (shell history, `ps`, CI logs keep
// argv): `--api-key-stdin` reads it from standard input, as `docker login --password-stdin`
// does. Values the API checks on their own (URLs, weights, priorities, limits, choices, the
// credential's characters) are checked here first with the API's rules, exit 2; what needs the
// server's state (a model of its catalog, an existing upstream id, the platform of a group's
// upstreams) is the server's to refuse, exit 1 with its message.

import { UsageError, choiceOption, expectPositionals, pathId, resolveToken, stringOption, type Command, type Context, type Group, type Io, type Parsed } from './core.ts';
import { NONE, list, requireChange } from './accounts.ts';
import { byIdCommand, listFormat, printJson, printList } from './output.ts';
import { checkText, type ValueKind } from './values.ts';

const FORMAT = { format: { type: 'string' } } as const;
const FORMAT_HELP = '  --format F            json or table (default: table on a terminal, else JSON)';
const PLATFORMS = ['anthropic', 'openai'] as const;

const WEIGHT: ValueKind = { kind: 'upstream-limit', limit: 'weight' };
const PRIORITY: ValueKind = { kind: 'upstream-limit', limit: 'priority' };
const CONCURRENCY: ValueKind = { kind: 'upstream-limit', limit: 'maxConcurrency', nullable: true };

/**
 * The credential read from stdin to its end, one trailing line break dropped (`echo "$KEY" |`),
 * checked with the API's rule (1 … 4,096 visible ASCII characters). On a terminal it says what
 * it waits for (the text is echoed by the terminal: pipe it instead where that matters).
 * @throws UsageError when it is empty or not such text
 */
export async function readApiKey(io: Io, label: string): Promise<string> {
  const { UPSTREAM_LIMITS, apiKeyProblem } = await import('@tollgate/control');
  if (io.stdin.isTTY) io.stderr.write(`${label}: reading the API key from standard input (end with Ctrl-D); pipe it to keep it off the screen\n`);
  // Read no more than the longest key and its line break can be: `yes | …` or a file piped by
  // mistake is refused at once, not held in memory to its end.
  const most = UPSTREAM_LIMITS.apiKeyChars + 2;
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of io.stdin) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer;
    chunks.push(b);
    bytes += b.length;
    if (bytes > most) {
      (io.stdin as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
      throw new UsageError(`${label}: the key must be 1 to ${UPSTREAM_LIMITS.apiKeyChars} characters; standard input holds more`);
    }
  }
  const key = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  if (key.length === 0) throw new UsageError(`${label}: standard input was empty; pipe the key, e.g. printenv UPSTREAM_KEY | tollgate …`);
  // The API's own rule; its message never quotes the key, and neither does this one.
  const problem = apiKeyProblem(key);
  if (problem) throw new UsageError(`${label}: the key ${problem}`);
  return key;
}

/** Options that look like a credential on the command line: refused with the way to give it. */
const API_KEY_ON_ARGV = { 'api-key': { type: 'string' } } as const;

function refuseKeyOnArgv(values: Parsed['values']): void {
  if (values['api-key'] !== undefined) {
    throw new UsageError('--api-key is not taken on the command line (shell history and process lists keep it): pipe it to --api-key-stdin');
  }
}

/** `--name VALUE` as a number (already range-checked by its ValueKind), "none" → null. */
function integerOption(values: Parsed['values'], name: string): number | null | undefined {
  const v = stringOption(values, name);
  return v === undefined ? undefined : v === NONE ? null : Number(v);
}

/** `--map MODEL=NAME`, repeatable: the group's model_mapping; "none" alone → null (the catalog's own names). */
async function mappingOption(values: Parsed['values']): Promise<Record<string, string> | null | undefined> {
  const raw = values['map'];
  if (raw === undefined) return undefined;
  // Not split on commas: a comma is a character an upstream model name may have.
  const items = (Array.isArray(raw) ? raw : [raw]).map(String);
  if (items.length === 1 && items[0]!.trim() === NONE) return null;
  const { UPSTREAM_LIMITS, mappedNameProblem } = await import('@tollgate/control');
  if (items.length > UPSTREAM_LIMITS.mappingEntries) throw new UsageError(`--map: at most ${UPSTREAM_LIMITS.mappingEntries} entries, not ${items.length}`);
  // No prototype: a model named __proto__ is a key like any other (sent, and the server says it
  // is no model of its catalog), never silently dropped by the assignment.
  const out = Object.create(null) as Record<string, string>;
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) throw new UsageError(`--map ${JSON.stringify(item)}: expected MODEL=UPSTREAM_MODEL (e.g. claude-sonnet-4-5=claude-sonnet-4-5-20250929)`);
    const model = item.slice(0, eq).trim();
    if (model === '' || model === NONE) throw new UsageError(`--map ${JSON.stringify(item)}: expected MODEL=UPSTREAM_MODEL`);
    if (Object.hasOwn(out, model)) throw new UsageError(`--map: ${model} is mapped twice`);
    const problem = mappedNameProblem(item.slice(eq + 1));
    if (problem) throw new UsageError(`--map ${model}: ${problem}`);
    out[model] = item.slice(eq + 1).trim();
  }
  return out;
}

/** Adds each defined entry of `fields` to `body`. */
function assign(body: Record<string, unknown>, fields: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) body[k] = v;
  return body;
}

const UPSTREAM_COLUMNS = [
  ['id', 'id'], ['name', 'name'], ['platform', 'platform'], ['base_url', 'base url'], ['status', 'status'],
  ['weight', 'weight'], ['priority', 'priority'], ['max_concurrency', 'max concurrency'], ['groups', 'groups'],
] as const;

const UPSTREAM_OPTIONS_HELP = `  --base-url URL        absolute http(s) URL, no user name, query, fragment or credential in it:
                        anthropic: the gateway posts to <URL>/v1/messages (https://api.anthropic.com);
                        openai: the URL includes the version (https://api.openai.com/v1), the
                        gateway posts to <URL>/chat/completions
  --api-key-stdin       read the upstream's API key from standard input (never from argv)
  --models M            catalog models this upstream serves; repeat or comma-separate (default:
                        every model; the server checks the names against its catalog)
  --weight N            1-1000: share among the available upstreams of the same priority (default 1)
  --priority N          -1000-1000: higher first; a lower one serves only when every higher one is
                        unavailable (default 0)
  --max-concurrency N   1-100000 requests in flight per gateway process (default: no limit)
  --status S            active or disabled (kept and listed, not used)`;

const UPSTREAM_VALUES = { name: { kind: 'name' }, 'base-url': { kind: 'upstream-url' }, weight: WEIGHT, priority: PRIORITY, 'max-concurrency': CONCURRENCY } as const satisfies Record<string, ValueKind>;

/** The fields shared by create and update, read from the options (undefined when not given). */
async function upstreamFields(values: Parsed['values']): Promise<Record<string, unknown>> {
  const models = list(values, 'models');
  const { UPSTREAM_LIMITS } = await import('@tollgate/control');
  if (models && models.length > UPSTREAM_LIMITS.models) throw new UsageError(`--models: at most ${UPSTREAM_LIMITS.models} models, not ${models.length}`);
  return {
    name: stringOption(values, 'name'),
    base_url: stringOption(values, 'base-url'),
    models,
    weight: integerOption(values, 'weight'),
    priority: integerOption(values, 'priority'),
    max_concurrency: integerOption(values, 'max-concurrency'),
    status: choiceOption(values, 'status', ['active', 'disabled'] as const),
  };
}

export const upstreams: Group = {
  name: 'upstreams',
  summary: 'upstream accounts requests are sent to (URL, credential, weight, priority)',
  commands: [
    {
      name: 'upstreams list',
      summary: 'every upstream with its health',
      help: `Usage: tollgate upstreams list [--format json|table]

Lists every upstream (GET /admin/v1/upstreams), the configured "default" first, with the groups
listing it; the JSON also has each one's health as the gateways report it. Never a credential:
"api_key_set" says whether one is stored.

${FORMAT_HELP}`,
      options: FORMAT,
      async run(ctx) {
        expectPositionals(ctx.positionals, []);
        const format = listFormat(ctx.values, ctx.io);
        printList(ctx.io, format, (await ctx.api().json('GET', '/admin/v1/upstreams')).body, UPSTREAM_COLUMNS);
      },
    },
    {
      name: 'upstreams create',
      summary: 'a new upstream (prints it, with its id)',
      help: `Usage: tollgate upstreams create NAME --platform anthropic|openai --base-url URL [--api-key-stdin]
         [--models M]… [--weight N] [--priority N] [--max-concurrency N] [--status S]

Creates an upstream (POST /admin/v1/upstreams) and prints it as JSON; its "id" (up_…) is what
tollgate groups create --upstream takes. The key is stored sealed and never shown again.

  --platform P          anthropic (the Messages API) or openai (Chat Completions, translated)
${UPSTREAM_OPTIONS_HELP}

Example: printenv ANTHROPIC_KEY_2 | tollgate upstreams create "team b" --platform anthropic \\
           --base-url https://api.anthropic.com --api-key-stdin --weight 2`,
      options: {
        platform: { type: 'string' }, 'base-url': { type: 'string' }, 'api-key-stdin': { type: 'boolean' }, models: { type: 'string', multiple: true },
        weight: { type: 'string' }, priority: { type: 'string' }, 'max-concurrency': { type: 'string' }, status: { type: 'string' }, ...API_KEY_ON_ARGV,
      },
      values: UPSTREAM_VALUES,
      async run(ctx) {
        refuseKeyOnArgv(ctx.values);
        const [name] = expectPositionals(ctx.positionals, ['NAME']);
        await checkText('name', name!, 'NAME');
        const platform = choiceOption(ctx.values, 'platform', PLATFORMS);
        if (platform === undefined) throw new UsageError('--platform is required (anthropic or openai)');
        const fields = await upstreamFields(ctx.values);
        if (fields.base_url === undefined) throw new UsageError('--base-url is required');
        const body = assign({ name, platform }, fields);
        if (ctx.values['api-key-stdin'] === true) body.api_key = await readApiKey(ctx.io, '--api-key-stdin');
        printJson(ctx.io, (await ctx.api().json('POST', '/admin/v1/upstreams', { body })).body);
      },
    },
    byIdCommand({
      name: 'upstreams show',
      summary: 'one upstream with its health and groups',
      help: `Usage: tollgate upstreams show UPSTREAM_ID

Prints the upstream (GET /admin/v1/upstreams/:id) as JSON: its settings, the groups listing it,
and its health as the gateways reported it over the last 10 s. Never its credential.`,
      id: 'UPSTREAM_ID', method: 'GET', path: (id) => `/admin/v1/upstreams/${id}`,
    }),
    {
      name: 'upstreams update',
      summary: 'change its URL, credential, models, weight, priority or status',
      help: `Usage: tollgate upstreams update UPSTREAM_ID [--name N] [--base-url URL] [--api-key-stdin | --clear-api-key]
         [--models M]… [--weight N] [--priority N] [--max-concurrency N] [--status S]

Changes only the fields given (PATCH /admin/v1/upstreams/:id) and prints the upstream. Gateways
use the change within a second. "${NONE}" removes a setting (--models ${NONE}: every model;
--max-concurrency ${NONE}: no limit). An upstream's platform cannot change.

  --name N              the upstream's name
  --clear-api-key       remove the stored credential (an upstream that needs none)
${UPSTREAM_OPTIONS_HELP.replace('read the upstream\'s API key', 'rotate: read the new API key')}`,
      options: {
        name: { type: 'string' }, 'base-url': { type: 'string' }, 'api-key-stdin': { type: 'boolean' }, 'clear-api-key': { type: 'boolean' },
        models: { type: 'string', multiple: true }, weight: { type: 'string' }, priority: { type: 'string' }, 'max-concurrency': { type: 'string' },
        status: { type: 'string' }, ...API_KEY_ON_ARGV,
      },
      values: UPSTREAM_VALUES,
      async run(ctx) {
        refuseKeyOnArgv(ctx.values);
        const [id] = expectPositionals(ctx.positionals, ['UPSTREAM_ID']);
        if (ctx.values['api-key-stdin'] === true && ctx.values['clear-api-key'] === true) throw new UsageError('--api-key-stdin and --clear-api-key contradict each other');
        const body = assign({}, await upstreamFields(ctx.values));
        if (ctx.values['clear-api-key'] === true) body.api_key = null;
        // A rotation alone is a change: the key is read only once the command line is known good.
        if (ctx.values['api-key-stdin'] === true) body.api_key = await readApiKey(ctx.io, '--api-key-stdin');
        requireChange(body, ['name', 'base-url', 'api-key-stdin', 'clear-api-key', 'models', 'weight', 'priority', 'max-concurrency', 'status']);
        printJson(ctx.io, (await ctx.api().json('PATCH', `/admin/v1/upstreams/${pathId(id!, 'UPSTREAM_ID')}`, { body })).body);
        // The answer looks the same before and after a rotation (api_key_set: true), and its health
        // is the gateways' last report: say what changed and when it applies.
        if (body.api_key !== undefined || body.base_url !== undefined) {
          ctx.io.stderr.write(`${ctx.name}: ${body.api_key === null ? 'credential removed' : body.api_key !== undefined ? 'credential replaced' : 'base URL changed'}; every gateway uses it within a second, and judges the upstream afresh (its circuit closed); "health" above is the gateways' last report\n`);
        }
      },
    },
    byIdCommand({
      name: 'upstreams delete',
      summary: 'delete an upstream no group lists',
      help: `Usage: tollgate upstreams delete UPSTREAM_ID

Deletes the upstream (DELETE /admin/v1/upstreams/:id) and prints {id, deleted}. Refused (409,
exit 1, naming them) while any group lists it: take it out of those groups first.`,
      id: 'UPSTREAM_ID', method: 'DELETE', path: (id) => `/admin/v1/upstreams/${id}`,
    }),
  ] satisfies Command[],
};

const GROUP_COLUMNS = [
  ['id', 'id'], ['name', 'name'], ['platform', 'platform'], ['upstream_ids', 'upstreams'], ['model_mapping', 'model mapping'], ['source', 'source'],
] as const;

const GROUP_OPTIONS_HELP = `  --upstream ID         an upstream of the group (tollgate upstreams list); repeat or
                        comma-separate, 1-100, each of the group's platform (replaces the list)
  --map MODEL=NAME      send catalog MODEL to this group's upstreams as NAME (printable ASCII, no
                        spaces); repeat, one entry each (a comma is part of NAME); replaces the
                        mapping; at most 64`;

async function groupFields(values: Parsed['values']): Promise<Record<string, unknown>> {
  const upstreamIds = list(values, 'upstream');
  if (upstreamIds === null) throw new UsageError(`--upstream ${NONE}: a group needs at least one upstream`);
  if (upstreamIds) {
    const { UPSTREAM_LIMITS } = await import('@tollgate/control');
    if (upstreamIds.length > UPSTREAM_LIMITS.groupUpstreams) throw new UsageError(`--upstream: at most ${UPSTREAM_LIMITS.groupUpstreams} upstreams, not ${upstreamIds.length}`);
    const twice = upstreamIds.find((id, i) => upstreamIds.indexOf(id) !== i);
    if (twice !== undefined) throw new UsageError(`--upstream: ${twice} is listed twice`);
  }
  return {
    name: stringOption(values, 'name'),
    platform: choiceOption(values, 'platform', PLATFORMS),
    upstream_ids: upstreamIds,
    model_mapping: await mappingOption(values),
  };
}

export const groups: Group = {
  name: 'groups',
  summary: 'upstream groups: which upstreams serve an account or key',
  commands: [
    {
      name: 'groups list',
      summary: 'every group, the default first',
      help: `Usage: tollgate groups list [--format json|table]

Lists every upstream group (GET /admin/v1/groups), the default group first ("source": config
while it is the one built from UPSTREAM_URL).

${FORMAT_HELP}`,
      options: FORMAT,
      async run(ctx) {
        expectPositionals(ctx.positionals, []);
        const format = listFormat(ctx.values, ctx.io);
        printList(ctx.io, format, (await ctx.api().json('GET', '/admin/v1/groups')).body, GROUP_COLUMNS);
      },
    },
    {
      name: 'groups create',
      summary: 'a new group (prints it, with its id)',
      help: `Usage: tollgate groups create NAME --platform anthropic|openai --upstream ID… [--map MODEL=NAME]…

Creates a group (POST /admin/v1/groups) and prints it as JSON; its "id" (grp_…) is what
tollgate accounts update --group and tollgate keys update --group take.

  --platform P          anthropic or openai: every upstream of the group speaks it
${GROUP_OPTIONS_HELP}`,
      options: { platform: { type: 'string' }, upstream: { type: 'string', multiple: true }, map: { type: 'string', multiple: true } },
      async run(ctx) {
        const [name] = expectPositionals(ctx.positionals, ['NAME']);
        await checkText('name', name!, 'NAME');
        const fields = await groupFields(ctx.values);
        if (fields.platform === undefined) throw new UsageError('--platform is required (anthropic or openai)');
        if (fields.upstream_ids === undefined) throw new UsageError('--upstream is required (at least one upstream id)');
        printJson(ctx.io, (await ctx.api().json('POST', '/admin/v1/groups', { body: assign({ name }, fields) })).body);
      },
    },
    byIdCommand({
      name: 'groups show',
      summary: 'one group',
      help: `Usage: tollgate groups show GROUP_ID

Prints the group (GET /admin/v1/groups/:id) as JSON; "default" is the default group.`,
      id: 'GROUP_ID', method: 'GET', path: (id) => `/admin/v1/groups/${id}`,
    }),
    {
      name: 'groups update',
      summary: 'change its name, upstreams or model mapping',
      help: `Usage: tollgate groups update GROUP_ID [--name N] [--platform P] [--upstream ID]… [--map MODEL=NAME]…

Changes only the fields given (PATCH /admin/v1/groups/:id) and prints the group; gateways use it
within a second. --map ${NONE} clears the mapping. GROUP_ID "default" replaces the configured
default group (tollgate groups delete default goes back to it).

  --name N              the group's name
  --platform P          anthropic or openai (every listed upstream must speak it)
${GROUP_OPTIONS_HELP}`,
      options: { name: { type: 'string' }, platform: { type: 'string' }, upstream: { type: 'string', multiple: true }, map: { type: 'string', multiple: true } },
      values: { name: { kind: 'name' } },
      async run(ctx) {
        const [id] = expectPositionals(ctx.positionals, ['GROUP_ID']);
        const body = assign({}, await groupFields(ctx.values));
        requireChange(body, ['name', 'platform', 'upstream', 'map']);
        printJson(ctx.io, (await ctx.api().json('PATCH', `/admin/v1/groups/${pathId(id!, 'GROUP_ID')}`, { body })).body);
      },
    },
    byIdCommand({
      name: 'groups delete',
      summary: 'delete a group (its accounts and keys fall through to the next level)',
      help: `Usage: tollgate groups delete GROUP_ID

Deletes the group (DELETE /admin/v1/groups/:id) and prints {id, deleted}. Accounts and keys
naming it are then served by the next level (a key's account's group, else the default group).
"default" goes back to the configured default group.`,
      id: 'GROUP_ID', method: 'DELETE', path: (id) => `/admin/v1/groups/${id}`,
    }),
  ] satisfies Command[],
};

const WEBHOOK_COLUMNS = [['id', 'id'], ['url', 'url'], ['events', 'events'], ['description', 'description'], ['created_at', 'created']] as const;
const DELIVERY_COLUMNS = [
  ['id', 'id'], ['event_type', 'event'], ['state', 'state'], ['attempts', 'attempts'], ['last_status', 'last status'],
  ['last_error', 'last error'], ['created_at', 'created'], ['delivered_at', 'delivered'],
] as const;
/** The webhook events (WEBHOOK_EVENT_TYPES of @tollgate/webhooks), for the help text. */
const EVENT_NAMES = 'balance.low, spend_limit.reached, plan_window.exhausted, event.quarantined';

export const webhooks: Group = {
  name: 'webhooks',
  summary: 'operator alerts by HTTP POST: create (secret shown once), deliveries',
  commands: [
    {
      name: 'webhooks list',
      summary: 'every webhook (never its secret)',
      help: `Usage: tollgate webhooks list [--format json|table]

Lists every webhook (GET /admin/v1/webhooks) without its signing secret.

${FORMAT_HELP}`,
      options: FORMAT,
      async run(ctx) {
        expectPositionals(ctx.positionals, []);
        const format = listFormat(ctx.values, ctx.io);
        printList(ctx.io, format, (await ctx.api().json('GET', '/admin/v1/webhooks')).body, WEBHOOK_COLUMNS);
      },
    },
    {
      name: 'webhooks create',
      summary: 'a new webhook; prints its signing secret, the only time it is shown',
      help: `Usage: tollgate webhooks create URL --events E… [--description D]

Creates a webhook (POST /admin/v1/webhooks) and prints it as JSON with "secret" (whsec_…), which
signs every delivery (Standard Webhooks) and is shown only this once.

  --events E            ${EVENT_NAMES}; repeat or comma-separate
  --description D       up to 500 characters

URL: http(s), no user name, password or credential in it (the signature authenticates).`,
      options: { events: { type: 'string', multiple: true }, description: { type: 'string' } },
      async run(ctx) {
        const [url] = expectPositionals(ctx.positionals, ['URL']);
        // A positional: checked with the API's rule here, as the typed options are before `run`,
        // with the tokens this command holds among the secrets a URL must not carry (as the API
        // checks against its own).
        const { MAX_WEBHOOK_DESCRIPTION_CHARS, operatorTextProblem, webhookUrl } = await import('@tollgate/control');
        const secrets = [ctx.io.env.ADMIN_TOKEN, ctx.io.env.FINANCE_TOKEN, resolveToken(ctx.io.env)].filter((t): t is string => typeof t === 'string' && t !== '');
        try {
          webhookUrl(url!, secrets);
        } catch (err) {
          throw new UsageError(`URL: ${(err instanceof Error ? err.message : String(err)).replace(/^url: /, '')}`);
        }
        const { WEBHOOK_EVENT_TYPES } = await import('@tollgate/webhooks');
        const events = list(ctx.values, 'events');
        if (events === undefined || events === null) throw new UsageError(`--events is required: one or more of ${WEBHOOK_EVENT_TYPES.join(', ')}`);
        for (const e of events) {
          if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(e)) throw new UsageError(`--events: ${JSON.stringify(e)} is not one of ${WEBHOOK_EVENT_TYPES.join(', ')}`);
        }
        // '' is a description the API takes (none), so it is not refused as an empty option would be
        const raw = ctx.values.description;
        const description = typeof raw === 'string' ? raw : undefined;
        const problem = description === undefined ? undefined : operatorTextProblem(description, MAX_WEBHOOK_DESCRIPTION_CHARS);
        if (problem) throw new UsageError(`--description: ${problem}`);
        const body = assign({ url, events }, { description });
        printJson(ctx.io, (await ctx.api().json('POST', '/admin/v1/webhooks', { body })).body);
        ctx.io.stderr.write(`${ctx.name}: the "secret" above signs the deliveries; it is stored sealed and cannot be shown again\n`);
      },
    },
    byIdCommand({
      name: 'webhooks show',
      summary: 'one webhook (never its secret)',
      help: `Usage: tollgate webhooks show WEBHOOK_ID

Prints the webhook (GET /admin/v1/webhooks/:id) as JSON, without its secret.`,
      id: 'WEBHOOK_ID', method: 'GET', path: (id) => `/admin/v1/webhooks/${id}`,
    }),
    byIdCommand({
      name: 'webhooks delete',
      summary: 'stop sending to a webhook',
      help: `Usage: tollgate webhooks delete WEBHOOK_ID

Deletes the webhook (DELETE /admin/v1/webhooks/:id) and prints {id, deleted}: nothing more is
sent to it, and a delivery already retrying stops at its next attempt.`,
      id: 'WEBHOOK_ID', method: 'DELETE', path: (id) => `/admin/v1/webhooks/${id}`,
    }),
    {
      name: 'webhooks deliveries',
      summary: 'its recent deliveries: state, attempts, last error',
      help: `Usage: tollgate webhooks deliveries WEBHOOK_ID [--limit N] [--format json|table]

Lists the webhook's most recent deliveries, newest first (GET /admin/v1/webhooks/:id/deliveries):
state (pending, delivered, failed), attempts, the last answer's status or error.

  --limit N             1-100 (default 100, all that are kept)
${FORMAT_HELP}`,
      options: { limit: { type: 'string' }, ...FORMAT },
      values: { limit: { kind: 'deliveries' } },
      async run(ctx: Context) {
        const [id] = expectPositionals(ctx.positionals, ['WEBHOOK_ID']);
        const format = listFormat(ctx.values, ctx.io);
        const limit = stringOption(ctx.values, 'limit');
        const { body } = await ctx.api().json('GET', `/admin/v1/webhooks/${pathId(id!, 'WEBHOOK_ID')}/deliveries`, { query: { limit: limit === undefined ? undefined : String(Number(limit)) } });
        printList(ctx.io, format, body, DELIVERY_COLUMNS);
      },
    },
  ] satisfies Command[],
};
