// `tollgate accounts|keys|credits|plans` against a real embedded Tollgate (chDB warehouse, the
// simulator upstream): each command as an operator runs it (a child process), checked against
// what the operator API then holds.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTollgate, type CliResult } from '../../../test/support/cli.ts';
import { ADMIN_TOKEN, admin, startStack, type Stack } from '../../../test/support/tollgate.ts';

const FINANCE_TOKEN = 'test-finance-token-0123456789';
let stack: Stack;

before(async () => { stack = await startStack({ FINANCE_TOKEN }); });
after(async () => { await stack?.close(); });

const tg = (...args: string[]): Promise<CliResult> => runTollgate(args, { ADMIN_TOKEN, TOLLGATE_URL: stack.url });
/** stdout as JSON, after asserting exit 0 */
function ok<T = Record<string, unknown>>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

test('accounts create, update, show, list: every field given reaches the account, "none" clears, the rest stays', async () => {
  const created = ok<{ id: string; name: string; status: string }>(await tg('accounts', 'create', 'Acme 株式会社'));
  assert.equal(created.name, 'Acme 株式会社');
  assert.equal(created.status, 'active');
  const updated = ok(await tg('accounts', 'update', created.id, '--status', 'suspended', '--plan', 'pro', '--low-balance-credits', '12.5',
    '--daily-credits', '0.000001', '--admission-policy', 'clamp'));
  assert.deepEqual(
    [updated.status, updated.plan_id, updated.low_balance_credits, updated.daily_credits, updated.admission_policy, updated.name],
    ['suspended', 'pro', '12.5', '0.000001', 'clamp', 'Acme 株式会社'],
  );
  ok(await tg('accounts', 'update', created.id, '--plan', 'none', '--daily-credits', 'none', '--admission-policy', 'none'));
  const shown = ok(await tg('accounts', 'show', created.id));
  assert.deepEqual(
    [shown.status, shown.plan_id, shown.low_balance_credits, shown.daily_credits, shown.admission_policy],
    ['suspended', null, '12.5', null, null],
  );
  assert.deepEqual(shown, (await admin(stack.url, 'GET', `/admin/v1/accounts/${created.id}`)).json);
  const listed = ok<{ data: Array<{ id: string }> }>(await tg('accounts', 'list'));
  assert.ok(listed.data.some((a) => a.id === created.id));
  // The table for people: a row with the id and the wide-character name, columns aligned.
  const table = await tg('accounts', 'list', '--format', 'table');
  assert.equal(table.code, 0, table.stderr);
  const row = table.stdout.split('\n').find((l) => l.includes(created.id))!;
  assert.match(row, /│ Acme 株式会社 +│ suspended +│/);
  const widths = table.stdout.split('\n').filter((l) => l !== '').map((l) => [...l].reduce((w, ch) => w + (/[\u3000-\u9fff]/.test(ch) ? 2 : 1), 0));
  assert.equal(new Set(widths).size, 1, 'every line of the table has the same display width');
});

test('an API refusal: its status, code and message on stderr, exit 1, nothing on stdout', async () => {
  const missing = await tg('accounts', 'show', 'acct_nope');
  assert.deepEqual(missing, { code: 1, stdout: '', stderr: 'tollgate accounts show: 404 not_found: account acct_nope does not exist\n' });
  const { id } = ok<{ id: string }>(await tg('accounts', 'create', 'refusals'));
  const badList = await tg('accounts', 'update', id, '--price-list', 'platinum');
  assert.equal(badList.code, 1);
  assert.equal(badList.stdout, '');
  assert.match(badList.stderr, /^tollgate accounts update: 400 invalid_request: price_list: "platinum" is not a price list of the catalog in force/);
  const badPlan = await tg('accounts', 'update', id, '--plan', 'plan_nope');
  assert.equal(badPlan.stderr, 'tollgate accounts update: 400 invalid_request: plan_id: "plan_nope" is not a plan (GET /admin/v1/plans lists them)\n');
});

test('keys create prints the secret once; list and show never carry it; update sets access rules and limits; revoke is final', async () => {
  const { id: account } = ok<{ id: string }>(await tg('accounts', 'create', 'keys'));
  const created = await tg('keys', 'create', account, '--name', 'ci');
  const key = ok<{ id: string; key: string; prefix: string; name: string; status: string }>(created);
  assert.match(key.key, /^sk-tg-[A-Za-z0-9]{40}$/);
  assert.equal(key.name, 'ci');
  assert.equal(created.stderr, 'tollgate keys create: the "key" above is the secret; it is not stored and cannot be shown again\n');
  // The secret works as a customer credential.
  const credits = await fetch(`${stack.url}/v1/credits`, { headers: { 'x-api-key': key.key } });
  assert.equal(credits.status, 200);

  const listed = await tg('keys', 'list', account);
  assert.equal(ok<{ data: Array<{ id: string }> }>(listed).data.map((k) => k.id).join(), key.id);
  assert.ok(!listed.stdout.includes(key.key) && !(await tg('keys', 'show', key.id)).stdout.includes(key.key), 'the secret is never shown again');

  const updated = ok(await tg('keys', 'update', key.id, '--ip-allowlist', '10.0.0.0/8,192.168.1.7', '--ip-allowlist', '2001:db8::/32',
    '--allowed-models', 'claude-sonnet-4-5', '--hourly-credits', '1.5', '--expires-at', '2027-01-31T00:00:00Z', '--status', 'disabled'));
  // the alias is stored as the catalog id it resolves to; a bare address as its /32
  assert.deepEqual(
    [updated.ip_allowlist, updated.allowed_models, updated.hourly_credits, updated.expires_at, updated.status],
    [['10.0.0.0/8', '192.168.1.7/32', '2001:db8::/32'], ['claude-sonnet-4-5-20250929'], '1.5', '2027-01-31T00:00:00.000Z', 'disabled'],
  );
  const cleared = ok(await tg('keys', 'update', key.id, '--ip-allowlist', 'none', '--hourly-credits', 'none', '--expires-at', 'none', '--name', ''));
  assert.deepEqual([cleared.ip_allowlist, cleared.hourly_credits, cleared.expires_at, cleared.name, cleared.allowed_models],
    [[], null, null, '', ['claude-sonnet-4-5-20250929']]);

  const revoked = ok(await tg('keys', 'revoke', key.id));
  assert.equal(revoked.status, 'revoked');
  assert.equal((await fetch(`${stack.url}/v1/credits`, { headers: { 'x-api-key': key.key } })).status, 401);
  const again = await tg('keys', 'update', key.id, '--status', 'active');
  assert.deepEqual(again, { code: 1, stdout: '', stderr: `tollgate keys update: 409 conflict: key ${key.id} is revoked; a revoked key cannot be changed\n` });
});

test('credits grant: idempotent by reference, a negative adjustment after --, API refusals exit 1 and malformed or unsigned amounts exit 2, the balance as it was', async () => {
  const { id } = ok<{ id: string }>(await tg('accounts', 'create', 'credits'));
  const balance = async () => (await admin<{ balance_micro_credits: string }>(stack.url, 'GET', `/admin/v1/accounts/${id}`)).json.balance_micro_credits;
  const granted = ok(await tg('credits', 'grant', id, '25', '--reference', 'inv-1'));
  assert.deepEqual([granted.balance_micro_credits, granted.duplicate, granted.reference], ['25000000', false, 'inv-1']);
  const again = await tg('credits', 'grant', id, '25', '--reference', 'inv-1');
  assert.equal(ok(again).duplicate, true);
  assert.equal(again.stderr, 'tollgate credits grant: reference "inv-1" was already applied; nothing credited again\n');
  assert.equal(await balance(), '25000000');
  // 25 − 5.5 = 19.5 credits = 19,500,000 µc
  const adjusted = ok(await tg('credits', 'grant', id, '--kind', 'adjustment', '--reference', 'fix-1', '--', '-5.5'));
  assert.equal(adjusted.balance_micro_credits, '19500000');
  const refund = ok(await tg('credits', 'grant', id, '0.000001', '--reference', 'refund-1', '--kind', 'refund'));
  assert.equal(refund.balance_micro_credits, '19500001');
  // a paid purchase: 19,500,001 + 2,500,000 = 22,000,001 µc
  const topUp = ok(await tg('credits', 'grant', id, '2.5', '--reference', 'order-1', '--kind', 'top_up'));
  assert.equal(topUp.balance_micro_credits, '22000001');

  const unsigned = await tg('credits', 'grant', id, '--reference', 'fix-2', '--', '-1');
  assert.deepEqual(unsigned, { code: 2, stdout: '', stderr: 'tollgate credits grant: CREDITS: a negative amount takes credit away and needs --kind adjustment\n(see tollgate credits grant --help)\n' });
  const conflict = await tg('credits', 'grant', id, '30', '--reference', 'inv-1');
  assert.deepEqual(conflict, { code: 1, stdout: '', stderr: 'tollgate credits grant: 409 conflict: reference inv-1 was already used for 25 credits (kind grant)\n' });
  const notNumber = await tg('credits', 'grant', id, 'ten', '--reference', 'inv-3');
  assert.deepEqual(notNumber, { code: 2, stdout: '', stderr: 'tollgate credits grant: CREDITS: "ten" is not a decimal number (expected e.g. "12.5" or "3")\n(see tollgate credits grant --help)\n' });
  assert.equal(await balance(), '22000001');
});

test('plans create, update, show, list, delete: limits as given, "none" unlimited; a deleted plan is gone', async () => {
  const plan = ok<{ id: string } & Record<string, unknown>>(await tg('plans', 'create', '--name', 'gold', '--requests-per-minute', '60', '--tokens-per-minute', '100000'));
  assert.deepEqual([plan.name, plan.requests_per_minute, plan.tokens_per_minute, plan.concurrent_requests, plan.seed], ['gold', 60, 100000, null, false]);
  const updated = ok(await tg('plans', 'update', plan.id, '--requests-per-minute', 'none', '--concurrent-requests', '4'));
  assert.deepEqual([updated.name, updated.requests_per_minute, updated.tokens_per_minute, updated.concurrent_requests], ['gold', null, 100000, 4]);
  assert.deepEqual(ok(await tg('plans', 'show', plan.id)), updated);
  const listed = ok<{ data: Array<{ id: string }> }>(await tg('plans', 'list'));
  assert.deepEqual(listed.data.map((p) => p.id).slice(0, 4), ['free', 'pro', 'max-5x', 'max-20x']);
  assert.ok(listed.data.some((p) => p.id === plan.id));
  assert.deepEqual(ok(await tg('plans', 'delete', plan.id)), { id: plan.id, deleted: true });
  const gone = await tg('plans', 'show', plan.id);
  assert.deepEqual(gone, { code: 1, stdout: '', stderr: `tollgate plans show: 404 not_found: plan ${plan.id} does not exist\n` });
});

test('the finance token on an admin command: 403 permission_denied on stderr, exit 1, nothing created', async () => {
  const before = (await admin<{ data: unknown[] }>(stack.url, 'GET', '/admin/v1/accounts')).json.data.length;
  const r = await runTollgate(['accounts', 'create', 'by-finance'], { ADMIN_TOKEN: '', FINANCE_TOKEN, TOLLGATE_URL: stack.url });
  assert.deepEqual(r, {
    code: 1, stdout: '',
    stderr: 'tollgate accounts create: 403 permission_denied: the finance token reads usage and billing and closes months; this route needs the admin token\n',
  });
  assert.equal((await admin<{ data: unknown[] }>(stack.url, 'GET', '/admin/v1/accounts')).json.data.length, before);
});

test('reconcile through the CLI: exit 0 when hot state and warehouse agree; --rollups adds the rollup check; the finance token may not run it', async () => {
  const plain = await tg('reconcile', '--timeout-ms', '10000');
  const report = ok<{ ok: boolean; differences: unknown[]; rollups?: unknown; accounts: number }>(plain);
  assert.deepEqual([report.ok, report.differences, report.rollups], [true, [], undefined]);
  // The stack's one account: the count in the singular, as an operator reads it.
  assert.equal(report.accounts, 1);
  assert.match(plain.stderr, /tollgate reconcile: hot state and warehouse agree on the balances of 1 account \(every account with a credit or usage\)\n$/);
  const rolled = await tg('reconcile', '--rollups');
  const withRollups = ok<{ ok: boolean; rollups: unknown }>(rolled);
  assert.deepEqual([withRollups.ok, withRollups.rollups], [true, {
    ok: true, mismatched_rows: { minute: 0, hour: 0, day: 0 }, recent_rows: { minute: 0, hour: 0, day: 0 }, settle_ms: 600_000,
  }]);
  assert.match(rolled.stderr, /\ntollgate reconcile: rollups equal the raw events in every settled bucket\n$/);
  const misplaced = await tg('rebuild', '--rollups');
  assert.deepEqual(misplaced, { code: 2, stdout: '', stderr: 'tollgate rebuild: --rollups is an option of reconcile\n(see tollgate rebuild --help)\n' });
  // --repair: nothing differs, so nothing is repaired (one report, exit 0); without --rollups it is bad usage
  const repaired = await tg('reconcile', '--rollups', '--repair');
  assert.deepEqual([repaired.code, ok<{ rollups: { ok: boolean } }>(repaired).rollups.ok], [0, true]);
  assert.doesNotMatch(repaired.stderr, /repairing/);
  assert.match(repaired.stderr, /tollgate reconcile: rollups equal the raw events in every settled bucket\ntollgate reconcile: nothing to repair\n/);
  // an error answer is named as one, never read as a report ("0 difference(s)")
  const wrong = await runTollgate(['reconcile', '--rollups', '--repair'], { ADMIN_TOKEN: 'wrong-admin-token-0123456789', TOLLGATE_URL: stack.url });
  assert.equal(wrong.code, 1);
  assert.ok(wrong.stderr.endsWith(`\ntollgate reconcile: failed (401 authentication_error): invalid admin or finance token (the token sent is ADMIN_TOKEN's; set ADMIN_TOKEN to the admin token of the process at ${stack.url})\n`), wrong.stderr);
  assert.doesNotMatch(wrong.stderr, /difference/);
  // A refused token is named by where it came from: here another process's admin-token file (the
  // trap of a tour's ./data/admin-token sent to a distributed control process), on every command.
  const otherDir = mkdtempSync(join(tmpdir(), 'tollgate-other-'));
  writeFileSync(join(otherDir, 'admin-token'), 'another-process-token-0123456789\n');
  const fromFile = { DATA_DIR: otherDir, TOLLGATE_URL: stack.url };
  const refusedOps = await runTollgate(['reconcile'], fromFile);
  assert.ok(refusedOps.stderr.endsWith(`invalid admin or finance token (the token sent is ${join(otherDir, 'admin-token')}'s; set ADMIN_TOKEN to the admin token of the process at ${stack.url})\n`), refusedOps.stderr);
  const wrongFinance = await runTollgate(['accounts', 'list'], { FINANCE_TOKEN: 'wrong-finance-token-0123456789', DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-none-')), TOLLGATE_URL: stack.url });
  assert.ok(wrongFinance.stderr.includes(`(the token sent is FINANCE_TOKEN's; set FINANCE_TOKEN to the finance token of the process at ${stack.url})`), wrongFinance.stderr);
  assert.ok(!wrongFinance.stderr.includes('wrong-finance-token'), 'never the token itself');
  const refusedApi = await runTollgate(['accounts', 'list'], fromFile);
  assert.equal(refusedApi.code, 1);
  assert.ok(refusedApi.stderr.includes(`401 invalid_api_key: invalid admin or finance token (the token sent is ${join(otherDir, 'admin-token')}'s; set ADMIN_TOKEN to the admin token of the process at ${stack.url})`), refusedApi.stderr);
  assert.deepEqual(await tg('reconcile', '--repair'), { code: 2, stdout: '', stderr: 'tollgate reconcile: --repair goes with reconcile --rollups\n(see tollgate reconcile --help)\n' });
  const direct = await admin<Record<string, unknown>>(stack.url, 'POST', '/ops/v1/rollups/repair');
  assert.deepEqual([direct.status, direct.json], [200, {
    repaired: { minute: 0, hour: 0, day: 0 }, left_recent: { minute: 0, hour: 0, day: 0 }, settle_ms: 600_000,
    rollups: { ok: true, mismatched_rows: { minute: 0, hour: 0, day: 0 }, recent_rows: { minute: 0, hour: 0, day: 0 } },
  }]);
  // ops commands take the admin token only: with FINANCE_TOKEN alone there is no token to send
  const finance = await runTollgate(['reconcile'], { ADMIN_TOKEN: '', FINANCE_TOKEN, TOLLGATE_URL: stack.url, DATA_DIR: '/nonexistent' });
  assert.deepEqual([finance.code, finance.stderr], [2, 'tollgate reconcile: set ADMIN_TOKEN (no /nonexistent/admin-token either)\n(see tollgate reconcile --help)\n']);
});

test('accounts and keys update --group: the upstream group reaches the record, none clears it, an unknown group is the API\'s 400 (exit 1)', async () => {
  const { id: account } = ok<{ id: string }>(await tg('accounts', 'create', 'grouped'));
  const { id: key } = ok<{ id: string }>(await tg('keys', 'create', account));
  assert.equal(ok<{ group_id: string | null }>(await tg('accounts', 'update', account, '--group', 'default')).group_id, 'default');
  assert.equal(ok<{ group_id: string | null }>(await tg('keys', 'update', key, '--group', 'default')).group_id, 'default');
  assert.equal(ok<{ group_id: string | null }>(await tg('keys', 'update', key, '--group', 'none')).group_id, null);
  const unknown = await tg('accounts', 'update', account, '--group', 'grp_nope');
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stdout, '');
  assert.match(unknown.stderr, /^tollgate accounts update: 400 invalid_request: group_id: /);
});

// Last: the account it makes would count in the reconcile test above.
test('balances past 2^53 µc of credits in doubles: the account view and the table give them exactly (decimal text), never a rounded number', async () => {
  const created = ok<{ id: string }>(await tg('accounts', 'create', 'deep-red'));
  // −(2^53 − 1) µc: as a double of credits it reads −9007199254.740992
  const moved = await admin<{ balance_micro_credits: string }>(stack.url, 'POST', `/admin/v1/accounts/${created.id}/credits`, { credits: '-9007199254.740991', kind: 'adjustment', reference: 'deep' });
  assert.equal(moved.status, 201, JSON.stringify(moved.json));
  const view = (await admin<Record<string, unknown>>(stack.url, 'GET', `/admin/v1/accounts/${created.id}`)).json;
  assert.deepEqual([view['balance'], view['held'], view['available'], view['balance_micro_credits'], view['held_micro_credits'], view['available_micro_credits']],
    ['-9007199254.740991', '0', '-9007199254.740991', '-9007199254740991', '0', '-9007199254740991']);
  const table = await tg('accounts', 'list', '--format', 'table');
  const row = table.stdout.split('\n').find((l) => l.includes(created.id))!;
  assert.match(row, /│ -9007199254\.740991 +│ 0 +│ -9007199254\.740991 +│$/);
});
