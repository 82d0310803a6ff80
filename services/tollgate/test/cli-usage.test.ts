// The operator CLI's command-line conventions, for every command: --help on stdout with exit 0,
// bad usage on stderr with exit 2 (before any request), an unreachable server exit 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { runTollgate } from '../../../test/support/cli.ts';
import { CLI_COMMANDS } from '../src/cli/index.ts';

const TOKEN = { ADMIN_TOKEN: 'cli-usage-admin-token-0123' };
const groups = CLI_COMMANDS.filter((c) => 'commands' in c);
const runnable = CLI_COMMANDS.flatMap((c) => ('commands' in c ? c.commands : [c]));

/** A server that records every request and answers 500: proves a usage error asked nothing. */
async function recorder(): Promise<{ url: string; requests: string[]; server: Server }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(500, { 'content-type': 'application/json' }).end('{"type":"error","error":{"type":"api_error","message":"recorder"}}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server };
}

test('--help and -h on the top level, every command and every subcommand: usage on stdout, nothing on stderr, exit 0', async () => {
  const top = await runTollgate(['--help']);
  assert.equal(top.code, 0);
  assert.equal(top.stderr, '');
  for (const c of [...CLI_COMMANDS.map((x) => x.name), 'rebuild', 'reconcile', 'rerate']) {
    assert.match(top.stdout, new RegExp(`\\n  ${c}[ |]`), `tollgate --help lists ${c}`);
  }
  const lines = [...groups.map((g) => [g.name]), ...runnable.map((c) => c.name.split(' '))];
  const results = await Promise.all(lines.flatMap((words) => [
    runTollgate([...words, '--help']).then((r) => ({ words, flag: '--help', r })),
    runTollgate([...words, '-h']).then((r) => ({ words, flag: '-h', r })),
  ]));
  for (const { words, flag, r } of results) {
    const what = `tollgate ${words.join(' ')} ${flag}`;
    assert.equal(r.code, 0, what);
    assert.equal(r.stderr, '', what);
    assert.ok(r.stdout.startsWith(`Usage: tollgate ${words.join(' ')}`), `${what}: ${r.stdout.slice(0, 80)}`);
  }
  // --help wins over mistakes on the same line (no token, unknown options, missing arguments)
  const mixed = await runTollgate(['credits', 'grant', '--bogus', '-h'], { ADMIN_TOKEN: '', FINANCE_TOKEN: '', DATA_DIR: '/nonexistent' });
  assert.equal(mixed.code, 0);
  assert.match(mixed.stdout, /^Usage: tollgate credits grant ACCOUNT_ID CREDITS --reference R/);
});

test('bad usage: unknown command, subcommand or option, missing or extra arguments, bad values: one line on stderr, exit 2, no request made', async (t) => {
  const rec = await recorder();
  t.after(() => rec.server.close());
  const env = { ...TOKEN, TOLLGATE_URL: rec.url };
  const cases: Array<[string[], string | RegExp]> = [
    [['frobnicate'], 'tollgate: unknown command frobnicate\n'],
    [['accounts'], 'tollgate accounts: missing command\n'],
    [['accounts', 'delete', 'acct_1'], 'tollgate accounts: unknown command "delete"\n'],
    [['accounts', 'show'], 'tollgate accounts show: missing ACCOUNT_ID\n(see tollgate accounts show --help)\n'],
    [['accounts', 'show', 'a', 'b'], 'tollgate accounts show: unexpected argument "b"\n(see tollgate accounts show --help)\n'],
    [['accounts', 'create', ''], 'tollgate accounts create: NAME must not be empty\n(see tollgate accounts create --help)\n'],
    [['accounts', 'list', '--bogus'], 'tollgate accounts list: unknown option "--bogus"\n(see tollgate accounts list --help)\n'],
    // operator text, checked with the API's own rules (@tollgate/control) before anything is sent
    [['accounts', 'create', '   '], /^tollgate accounts create: NAME: must not be empty\n/],
    [['accounts', 'create', 'Acme\tLtd'], /^tollgate accounts create: NAME: must not contain/],
    [['accounts', 'create', 'a'.repeat(201)], /^tollgate accounts create: NAME: .*200/],
    [['accounts', 'update', 'acct_1', '--name', 'line\u2028break'], /^tollgate accounts update: --name: must not contain line or paragraph separators/],
    [['keys', 'create', 'acct_1', '--name', 'bidi\u202Eeman'], /^tollgate keys create: --name: must not contain bidi control characters/],
    [['keys', 'update', 'key_1', '--name', 'k\u0007'], /^tollgate keys update: --name: must not contain/],
    [['plans', 'create', '--name', '  '], /^tollgate plans create: --name: must not be empty\n/],
    [['plans', 'update', 'plan_1', '--name', 'p\u001b[31m'], /^tollgate plans update: --name: must not contain/],
    [['credits', 'grant', 'acct_1', '5', '--reference', 'INV-1\n'], /^tollgate credits grant: --reference: must not contain/],
    [['credits', 'grant', 'acct_1', '5', '--reference', 'r'.repeat(201)], /^tollgate credits grant: --reference: .*200/],
    // every rule of the API's own body schema (bodyProblem of @tollgate/control), e.g. lengths
    // after NFC: 150 × U+0958 is 300 characters once composed forms are normalised
    [['accounts', 'create', '\u0958'.repeat(150)], /^tollgate accounts create: the API would refuse this: name: .*200/],
    [['accounts', 'update', 'acct_1', '--name', '\u0958'.repeat(150)], /^tollgate accounts update: the API would refuse this: name: /],
    [['keys', 'create', 'acct_1', '--name', '\u0958'.repeat(150)], /^tollgate keys create: the API would refuse this: name: /],
    [['credits', 'grant', 'acct_1', '5', '--reference', '\u0958'.repeat(150)], /^tollgate credits grant: the API would refuse this: reference: /],
    [['credits', 'grant', 'acct_1', `${'0'.repeat(40)}1`, '--reference', 'r'], /^tollgate credits grant: the API would refuse this: credits/],
    [['accounts', 'update', 'acct_1', '--plan', 'p'.repeat(201)], /^tollgate accounts update: the API would refuse this: plan_id: /],
    [['keys', 'update', 'key_1', '--allowed-models', Array.from({ length: 65 }, (_, i) => `m${i}`).join(',')], /^tollgate keys update: the API would refuse this: allowed_models: /],
    [['keys', 'update', 'key_1', '--ip-allowlist', Array.from({ length: 65 }, (_, i) => `10.0.${i}.0/24`).join(',')], /^tollgate keys update: the API would refuse this: ip_allowlist: /],
    [['plans', 'create', '--name', 'big', '--requests-per-minute', '1000000001'], /^tollgate plans create: the API would refuse this: requests_per_minute: /],
    [['accounts', 'list', '--format', 'yaml'], 'tollgate accounts list: --format must be one of json, table (not "yaml")\n(see tollgate accounts list --help)\n'],
    [['accounts', 'update', 'acct_1'], 'tollgate accounts update: nothing to change: give at least one of --name, --status, --price-list, --plan, --group, --daily-credits, --monthly-credits, --overdraft-credits, --low-balance-credits, --admission-policy\n(see tollgate accounts update --help)\n'],
    [['accounts', 'update', 'acct_1', '--status', 'paused'], 'tollgate accounts update: --status must be one of active, suspended, disabled (not "paused")\n(see tollgate accounts update --help)\n'],
    [['keys', 'update', 'key_1', '--ip-allowlist', '10.0.0.0/8,none'], 'tollgate keys update: --ip-allowlist: empty entry, or "none" mixed with values (--ip-allowlist none goes alone)\n(see tollgate keys update --help)\n'],
    [['credits', 'grant', 'acct_1', '5'], 'tollgate credits grant: --reference is required (it makes the entry idempotent)\n(see tollgate credits grant --help)\n'],
    [['credits', 'grant', 'acct_1', '-5', '--reference', 'r'], 'tollgate credits grant: unknown option "-5" (a negative number goes after --, e.g. -- -5)\n(see tollgate credits grant --help)\n'],
    // an option given twice is refused: acting on the last one may not be what was meant
    [['credits', 'grant', 'acct_1', '5', '--reference', 'x', '--reference', 'y'], 'tollgate credits grant: --reference given more than once\n(see tollgate credits grant --help)\n'],
    [['accounts', 'update', 'acct_1', '--status', 'active', '--status=disabled'], 'tollgate accounts update: --status given more than once\n(see tollgate accounts update --help)\n'],
    // a negative number right after a string option is its value: the option's own check answers
    [['accounts', 'update', 'acct_1', '--daily-credits', '-1'], 'tollgate accounts update: --daily-credits: must not be negative (--daily-credits none removes it)\n(see tollgate accounts update --help)\n'],
    [['credits', 'history', 'acct_1', '--limit', '-5'], 'tollgate credits history: --limit must be a whole number from 1 to 1000, not "-5"\n(see tollgate credits history --help)\n'],
    [['credits', 'grant', 'acct_1', '5', '--reference', 'r', '--kind', 'gift'], 'tollgate credits grant: --kind must be one of grant, top_up, refund, adjustment (not "gift")\n(see tollgate credits grant --help)\n'],
    [['credits', 'grant', 'acct_1', '5', '--reference'], /^tollgate credits grant: Option '--reference <value>' argument missing\n/],
    [['plans', 'create', '--requests-per-minute', '1.5'], 'tollgate plans create: --requests-per-minute must be a whole number or "none" (unlimited), not "1.5"\n(see tollgate plans create --help)\n'],
    [['plans', 'update', 'plan_1'], 'tollgate plans update: nothing to change: give --name or a limit (--requests-per-minute, --requests-per-5h, --requests-per-week, --tokens-per-minute, --concurrent-requests)\n(see tollgate plans update --help)\n'],
    [['usage', '--granularity'], /^tollgate usage: Option '--granularity <value>' argument missing\n/],
    [['usage', '--format', 'xml'], 'tollgate usage: --format must be one of json, csv, table (not "xml")\n(see tollgate usage --help)\n'],
    [['invoices', 'acct_1', '2026-13'], 'tollgate invoices: month "2026-13" is not YYYY-MM (e.g. 2026-11)\n(see tollgate invoices --help)\n'],
    [['statements', 'acct_1', '2026-1'], 'tollgate statements: month "2026-1" is not YYYY-MM (e.g. 2026-11)\n(see tollgate statements --help)\n'],
    [['export', '2026-11'], 'tollgate export: --format is required: csv, json or parquet\n(see tollgate export --help)\n'],
    [['export', '2026-11', '--format', 'xlsx'], 'tollgate export: --format must be one of csv, json, parquet (not "xlsx")\n(see tollgate export --help)\n'],
    [['close-month', '2026-11'], 'tollgate close-month: not a terminal: closing a month cannot be undone, so give --yes to close it without asking\n(see tollgate close-month --help)\n'],
    [['close-month', '2026-11', '--yes=1'], /^tollgate close-month: Option '--yes' does not take an argument\n/],
    [['accounts', 'list', '--url', 'ftp://x'], 'tollgate accounts list: --url: not an http(s) URL (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n'],
    // a secret given where the address goes is never echoed (stderr ends up in CI logs): only
    // the part of the URL that is wrong is named, and nothing given is repeated
    [['accounts', 'list', '--url', 'sk-ant-api03-Zm9vYmFyYmF6cXV4'], 'tollgate accounts list: --url: not a URL (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n'],
    [['accounts', 'list', '--url', 'http://127.0.0.1:9/?api_key=sk-ant-api03-Zm9vYmFyYmF6cXV4'], 'tollgate accounts list: --url: the address may not have a query (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n'],
    [['accounts', 'list', '--url', 'http://127.0.0.1:9?'], 'tollgate accounts list: --url: the address may not have a query (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n'],
    [['accounts', 'list', '--url', 'http://admin:adm_Zm9vYmFyYmF6cXV4@127.0.0.1:9'], 'tollgate accounts list: --url: the address may not have user info (the token goes in ADMIN_TOKEN or FINANCE_TOKEN) (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n'],
    [['accounts', 'list', '--url', 'http://127.0.0.1:9/#sk-ant-api03-Zm9vYmFyYmF6cXV4'], 'tollgate accounts list: --url: the address may not have a fragment (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n'],
    [['accounts', 'list', '--url', 'javascript:sk-ant-api03-Zm9vYmFyYmF6cXV4'], 'tollgate accounts list: --url: not an http(s) URL (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n'],
    // a token followed by a colon parses as a scheme: not repeated either
    [['accounts', 'list', '--url', 'Zm9vYmFyYmF6cXV4token:x'], 'tollgate accounts list: --url: not an http(s) URL (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n'],
  ];
  const results = await Promise.all(cases.map(([args]) => runTollgate(args, env)));
  for (const [i, [args, expected]] of cases.entries()) {
    const r = results[i]!;
    const what = `tollgate ${args.join(' ')}`;
    assert.equal(r.code, 2, `${what}: ${r.stderr}`);
    assert.equal(r.stdout, '', what);
    if (typeof expected === 'string' && args[0] === 'frobnicate') assert.ok(r.stderr.startsWith(expected), what);
    else if (typeof expected === 'string' && r.stderr.startsWith('tollgate accounts: ')) assert.ok(r.stderr.startsWith(expected) && r.stderr.includes('Usage: tollgate accounts <list|create|show|update>'), what);
    else if (typeof expected === 'string') assert.equal(r.stderr, expected, what);
    else assert.match(r.stderr, expected, what);
  }
  for (const [i] of cases.entries()) assert.ok(!/Zm9vYmFyYmF6cXV4/.test(results[i]!.stderr), 'a secret is never echoed');
  const fromEnv = await runTollgate(['accounts', 'list'], { ...TOKEN, TOLLGATE_URL: 'http://127.0.0.1:9/?token=adm_Zm9vYmFyYmF6cXV4' });
  assert.equal(fromEnv.code, 2);
  assert.equal(fromEnv.stderr, 'tollgate accounts list: TOLLGATE_URL: the address may not have a query (give the address alone, e.g. http://127.0.0.1:8080)\n(see tollgate accounts list --help)\n');
  assert.deepEqual(rec.requests, [], 'a usage error asks the server nothing');
  // No token anywhere: exit 2 naming where one was looked for.
  const none = await runTollgate(['accounts', 'list'], { ADMIN_TOKEN: '', FINANCE_TOKEN: '', DATA_DIR: '/nonexistent', TOLLGATE_URL: rec.url });
  assert.equal(none.code, 2);
  assert.equal(none.stderr, 'tollgate accounts list: set ADMIN_TOKEN or FINANCE_TOKEN (no /nonexistent/admin-token either)\n(see tollgate accounts list --help)\n');
  assert.deepEqual(rec.requests, []);
});

test('the server cannot be reached: exit 1 naming the URL and the socket\'s reason (admin and ops commands alike), nothing on stdout', async () => {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  probe.close();
  await once(probe, 'close');
  const r = await runTollgate(['accounts', 'list', '--url', `http://127.0.0.1:${port}`], TOKEN);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `tollgate accounts list: cannot reach http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port} (the address: --url, else TOLLGATE_URL, else http://127.0.0.1:\$PORT, port 8080 without PORT)\n`);
  // The ops commands said only undici's "fetch failed" (a new user's LOW).
  const rec = await runTollgate(['reconcile', '--url', `http://127.0.0.1:${port}`], TOKEN);
  assert.equal(rec.code, 1);
  assert.equal(rec.stdout, '');
  assert.equal(rec.stderr, `tollgate reconcile: asking http://127.0.0.1:${port} …\ntollgate reconcile: cannot reach http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port} (the address: --url, else TOLLGATE_URL, else http://127.0.0.1:\$PORT, port 8080 without PORT)\n`);
});

test('the URL comes from --url, else TOLLGATE_URL, else 127.0.0.1:$PORT; the token from ADMIN_TOKEN, else FINANCE_TOKEN, else DATA_DIR/admin-token', async (t) => {
  const seen: Array<{ url: string; auth: string }> = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url!, auth: String(req.headers.authorization) });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[]}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = String((server.address() as AddressInfo).port);
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'cli-token-'));
  writeFileSync(join(dir, 'admin-token'), 'file-token-0123456789\n');
  const base = { ADMIN_TOKEN: '', FINANCE_TOKEN: '', TOLLGATE_URL: '', DATA_DIR: dir };
  const runs = [
    await runTollgate(['plans', 'list'], { ...base, PORT: port }),
    await runTollgate(['plans', 'list'], { ...base, TOLLGATE_URL: `http://127.0.0.1:${port}/`, FINANCE_TOKEN: 'finance-0123456789' }),
    await runTollgate(['plans', 'list', '--url', `http://127.0.0.1:${port}`], { ...base, TOLLGATE_URL: 'http://127.0.0.1:1', ADMIN_TOKEN: 'admin-0123456789', FINANCE_TOKEN: 'finance-0123456789' }),
  ];
  for (const r of runs) {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '{\n  "data": []\n}\n');
  }
  assert.deepEqual(seen, [
    { url: '/admin/v1/plans', auth: 'Bearer file-token-0123456789' },
    { url: '/admin/v1/plans', auth: 'Bearer finance-0123456789' },
    { url: '/admin/v1/plans', auth: 'Bearer admin-0123456789' },
  ]);
});
