// `tollgate upstreams|groups|webhooks` against a real embedded Tollgate (chDB warehouse, the
// simulator upstream, which takes only its own API key): each command as an operator runs it (a
// child process), checked against what the operator API then holds and what a customer's request
// then does.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_WEBHOOK_DESCRIPTION_CHARS, UPSTREAM_LIMITS } from '@tollgate/control';
import { MAX_PATH_PARAM_CHARS } from '@tollgate/http';
import { MAX_PATH_ID_CHARS } from '../src/cli/core.ts';
import { DELIVERIES_KEPT, WEBHOOK_EVENT_TYPES } from '@tollgate/webhooks';
import { runTollgate, type CliResult } from '../../../test/support/cli.ts';
import { ADMIN_TOKEN, UPSTREAM_KEY, admin, customer, startStack, type Stack } from '../../../test/support/tollgate.ts';

const FINANCE_TOKEN = 'test-finance-token-0123456789';
/** An address nothing listens on: a command that sent a request there would exit 1 ("cannot reach"), not 2. */
const NOWHERE = 'http://127.0.0.1:9';
let stack: Stack;

before(async () => { stack = await startStack({ FINANCE_TOKEN }); });
after(async () => { await stack?.close(); });

const tg = (args: string[], input?: string): Promise<CliResult> => runTollgate(args, { ADMIN_TOKEN, TOLLGATE_URL: stack.url }, input);
/** stdout as JSON, after asserting exit 0 */
function ok<T = Record<string, unknown>>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

/** One customer request through the gateway: its HTTP status. */
async function ask(secret: string): Promise<number> {
  const res = await fetch(`${stack.url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': secret, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
  });
  await res.arrayBuffer();
  return res.status;
}

test('the upstream credential comes from stdin, is the one the gateway sends, and never appears in any output', async () => {
  const wrong = 'sk-ant-not-the-simulators-key';
  const created = await tg(['upstreams', 'create', 'team b', '--platform', 'anthropic', '--base-url', `${stack.simUrl}/`, '--api-key-stdin', '--weight', '3', '--priority', '-5'], `${wrong}\n`);
  const up = ok<{ id: string; api_key_set: boolean; base_url: string; weight: number; priority: number; status: string; max_concurrency: number | null }>(created);
  assert.match(up.id, /^up_/);
  assert.deepEqual([up.api_key_set, up.base_url, up.weight, up.priority, up.status, up.max_concurrency], [true, stack.simUrl, 3, -5, 'active', null]);
  const group = ok<{ id: string; upstream_ids: string[]; platform: string }>(await tg(['groups', 'create', 'b only', '--platform', 'anthropic', '--upstream', up.id]));
  assert.deepEqual(group.upstream_ids, [up.id]);
  const c = await customer(stack.url, 10, 'pool-cli');
  ok(await tg(['accounts', 'update', c.accountId, '--group', group.id]));
  // The simulator takes only UPSTREAM_KEY: with the piped wrong key every request fails upstream ...
  await waitFor(async () => (await ask(c.secret)) !== 200, 'a request through the wrong key fails');
  // ... and after a rotation through stdin (no trailing newline this time) it is served.
  const rotation = await tg(['upstreams', 'update', up.id, '--api-key-stdin'], UPSTREAM_KEY);
  assert.equal(ok<{ api_key_set: boolean }>(rotation).api_key_set, true);
  assert.match(rotation.stderr, /^tollgate upstreams update: credential replaced; every gateway uses it within a second/);
  await waitFor(async () => (await ask(c.secret)) === 200, 'a request through the rotated key is served');
  // Never shown again: not by show, list (JSON or table), nor any diagnostic.
  const outputs = [created, await tg(['upstreams', 'show', up.id]), await tg(['upstreams', 'list']), await tg(['upstreams', 'list', '--format', 'table'])];
  for (const r of outputs) {
    assert.equal(r.code, 0, r.stderr);
    for (const secret of [wrong, UPSTREAM_KEY]) assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), 'the credential is never printed');
  }
  // --clear-api-key removes it: the upstream now sends none, which the simulator refuses.
  const cleared = ok<{ api_key_set: boolean }>(await tg(['upstreams', 'update', up.id, '--clear-api-key']));
  assert.equal(cleared.api_key_set, false);
  await waitFor(async () => (await ask(c.secret)) !== 200, 'a request without a key fails');
  ok(await tg(['accounts', 'update', c.accountId, '--group', 'none']));
});

test('a refused key rotated through the CLI: its upstream serves again at once, not after CIRCUIT_OPEN_MS (30 s)', async () => {
  // first: priority 10 with a key the simulator refuses; the configured default (priority 0) takes over.
  const first = ok<{ id: string }>(await tg(['upstreams', 'create', 'first', '--platform', 'anthropic', '--base-url', stack.simUrl, '--api-key-stdin', '--priority', '10'], 'sk-ant-refused\n'));
  const group = ok<{ id: string }>(await tg(['groups', 'create', 'first then default', '--platform', 'anthropic', '--upstream', `${first.id},default`]));
  const c = await customer(stack.url, 10, 'rotation');
  ok(await tg(['keys', 'update', c.keyId, '--group', group.id]));
  await waitFor(async () => (await servedBy(c.secret)) === 'default', 'the refused upstream fails over to default');
  // Its circuit is open now (a 401 opens it at once): the next request goes straight to default.
  assert.equal(await servedBy(c.secret), 'default');
  // A client that sends no session id: its key is its session, now pinned to default.
  assert.equal(await servedBy(c.secret, null), 'default');
  ok(await tg(['upstreams', 'update', first.id, '--api-key-stdin'], UPSTREAM_KEY));
  // Within the pool snapshot's age (≤ 1 s), far inside the 30 s the circuit would stay open.
  await waitFor(async () => (await servedBy(c.secret)) === first.id, 'the rotated upstream serves again');
  // The key's pin yields to the preferred upstream (its sliding pin would otherwise keep the
  // key's steady traffic on the backup for good).
  assert.equal(await servedBy(c.secret, null), first.id);
  // `tollgate event` prints the usage record the API holds for a request id
  const shown = ok<{ event_id: string; upstream_id: string }>(await tg(['event', lastRequestId]));
  assert.deepEqual(shown, (await admin(stack.url, 'GET', `/admin/v1/usage/events/${lastRequestId}`)).json);
  assert.deepEqual([shown.event_id, shown.upstream_id], [lastRequestId, first.id]);
  ok(await tg(['keys', 'update', c.keyId, '--group', 'none']));
});

test("the CLI's bound on a path id is the server's (MAX_PATH_PARAM_CHARS of @tollgate/http)", () => {
  assert.equal(MAX_PATH_ID_CHARS, MAX_PATH_PARAM_CHARS);
});

test('a credential on the command line, or a malformed one on stdin, is refused before anything is sent (exit 2, the key not echoed)', async () => {
  const create = ['upstreams', 'create', 'x', '--platform', 'anthropic', '--base-url', 'https://api.anthropic.com', '--url', NOWHERE];
  const argv = await tg([...create, '--api-key', 'sk-ant-on-argv']);
  assert.equal(argv.code, 2);
  assert.match(argv.stderr, /^tollgate upstreams create: --api-key is not taken on the command line \(shell history and process lists keep it\): pipe it to --api-key-stdin\n/);
  assert.ok(!argv.stderr.includes('sk-ant-on-argv'));
  const cases: Array<[string, RegExp]> = [
    ['', /--api-key-stdin: standard input was empty/],
    ['\n', /--api-key-stdin: standard input was empty/],
    ['sk-ant with-space', /--api-key-stdin: the key must be visible ASCII characters without spaces \(it is sent as a header value\)/],
    ['sk-ant-two\nlines\n', /--api-key-stdin: the key must be visible ASCII/],
    ['sk-ant-ключ', /--api-key-stdin: the key must be visible ASCII/],
    ['k'.repeat(UPSTREAM_LIMITS.apiKeyChars + 1), new RegExp(`--api-key-stdin: the key must be 1 to ${UPSTREAM_LIMITS.apiKeyChars} characters`)],
    // more than any key can be: refused without reading it to its end (a file or `yes` piped by mistake)
    ['k'.repeat(8 << 20), new RegExp(`--api-key-stdin: the key must be 1 to ${UPSTREAM_LIMITS.apiKeyChars} characters; standard input holds more`)],
  ];
  for (const [input, message] of cases) {
    const r = await tg([...create, '--api-key-stdin'], input);
    assert.equal(r.code, 2, `${JSON.stringify(input.slice(0, 20))}: ${r.stderr}`);
    assert.match(r.stderr, message);
    if (input.length > 1) assert.ok(!r.stderr.includes(input.trim().slice(0, 12)), 'no part of the key is echoed');
  }
  // The longest key the API takes goes through (to an address nothing listens on: exit 1, sent).
  const longest = await tg([...create, '--api-key-stdin'], 'k'.repeat(UPSTREAM_LIMITS.apiKeyChars));
  assert.equal(longest.code, 1);
  assert.match(longest.stderr, /cannot reach http:\/\/127\.0\.0\.1:9/);
});

test('every value the API checks by itself is checked with its rule first: exit 2 naming the option, nothing sent', async () => {
  const [wMin, wMax] = UPSTREAM_LIMITS.weight;
  const [pMin, pMax] = UPSTREAM_LIMITS.priority;
  const [cMin, cMax] = UPSTREAM_LIMITS.maxConcurrency;
  const create = (...extra: string[]) => ['upstreams', 'create', 'x', '--platform', 'anthropic', '--base-url', 'https://api.anthropic.com', '--url', NOWHERE, ...extra];
  const cases: Array<[string[], RegExp]> = [
    [['upstreams', 'create', '   ', '--platform', 'anthropic', '--base-url', 'https://a.example', '--url', NOWHERE], /NAME: must not be empty/],
    [['upstreams', 'create', 'tab\there', '--platform', 'anthropic', '--base-url', 'https://a.example', '--url', NOWHERE], /NAME: /],
    [['upstreams', 'update', 'up_x', '--name', 'n'.repeat(UPSTREAM_LIMITS.nameChars + 1), '--url', NOWHERE], new RegExp(`--name: .*${UPSTREAM_LIMITS.nameChars}`)],
    [['groups', 'create', 'x'.repeat(UPSTREAM_LIMITS.nameChars + 1), '--platform', 'anthropic', '--upstream', 'up_a', '--url', NOWHERE], /NAME: /],
    [create('--models', Array.from({ length: UPSTREAM_LIMITS.models + 1 }, (_, i) => `m${i}`).join(',')), new RegExp(`--models: at most ${UPSTREAM_LIMITS.models} models`)],
    [['groups', 'create', 'g', '--platform', 'anthropic', '--upstream', Array.from({ length: UPSTREAM_LIMITS.groupUpstreams + 1 }, (_, i) => `up_${i}`).join(','), '--url', NOWHERE], new RegExp(`--upstream: at most ${UPSTREAM_LIMITS.groupUpstreams} upstreams`)],
    [['groups', 'update', 'grp_x', '--upstream', 'default,up_a,default', '--url', NOWHERE], /--upstream: default is listed twice/],
    [['groups', 'update', 'grp_x', ...Array.from({ length: UPSTREAM_LIMITS.mappingEntries + 1 }, (_, i) => ['--map', `m${i}=x`]).flat(), '--url', NOWHERE], new RegExp(`--map: at most ${UPSTREAM_LIMITS.mappingEntries} entries`)],
    [['groups', 'update', 'grp_x', '--map', 'claude-sonnet-4-5=my model', '--url', NOWHERE], /--map claude-sonnet-4-5: "my model" must be printable ASCII without spaces/],
    [['groups', 'update', 'grp_x', '--map', 'claude-sonnet-4-5=modèle', '--url', NOWHERE], /must be printable ASCII/],
    [['groups', 'update', 'grp_x', '--map', `claude-sonnet-4-5=${'m'.repeat(UPSTREAM_LIMITS.mappedNameChars + 1)}`, '--url', NOWHERE], /--map claude-sonnet-4-5: /],
    [['webhooks', 'create', 'https://hooks.example.com/x', '--events', 'balance.low', '--description', 'd'.repeat(MAX_WEBHOOK_DESCRIPTION_CHARS + 1), '--url', NOWHERE], /--description: /],
    [['webhooks', 'create', 'https://hooks.example.com/x', '--events', 'balance.low', '--description', 'a\tb', '--url', NOWHERE], /--description: /],
    [['webhooks', 'create', `https://hooks.example.com/${ADMIN_TOKEN}`, '--events', 'balance.low', '--url', NOWHERE], /^tollgate webhooks create: URL: must not carry a credential/],
    // `.` and `..` as ids: a URL parser resolves them (also as %2E), so the request would go to another route
    [['upstreams', 'show', '..', '--url', NOWHERE], /UPSTREAM_ID "\.\." is not an id/],
    [['upstreams', 'delete', '.', '--url', NOWHERE], /UPSTREAM_ID "\." is not an id/],
    [['groups', 'update', '..', '--name', 'x', '--url', NOWHERE], /GROUP_ID "\.\." is not an id/],
    [['webhooks', 'deliveries', '..', '--url', NOWHERE], /WEBHOOK_ID "\.\." is not an id/],
    [['accounts', 'show', '..', '--url', NOWHERE], /ACCOUNT_ID "\.\." is not an id/],
    [['keys', 'revoke', '.', '--url', NOWHERE], /KEY_ID "\." is not an id/],
    [['credits', 'grant', '..', '1', '--reference', 'r', '--url', NOWHERE], /ACCOUNT_ID "\.\." is not an id/],
    [['plans', 'delete', '..', '--url', NOWHERE], /PLAN_ID "\.\." is not an id/],
    [['event', '..', '--url', NOWHERE], /REQUEST_ID "\.\." is not an id/],
    // ids the server's checkRequestTarget refuses (the CLI's bound is the server's: asserted below): a control character, more than 100 characters
    [['event', 'req_\x01x', '--url', NOWHERE], /REQUEST_ID contains a control character; no id has one/],
    [['accounts', 'show', 'acct\n', '--url', NOWHERE], /ACCOUNT_ID contains a control character/],
    [['keys', 'revoke', 'key_\x7f', '--url', NOWHERE], /KEY_ID contains a control character/],
    [['upstreams', 'show', 'up_\u0085', '--url', NOWHERE], /UPSTREAM_ID contains a control character/],
    [['plans', 'delete', 'p'.repeat(101), '--url', NOWHERE], /PLAN_ID is 101 characters long; an id is at most 100/],
    [create('--weight', String(wMin - 1)), new RegExp(`--weight must be a whole number from ${wMin} to ${wMax}, not "${wMin - 1}"`)],
    [create('--weight', String(wMax + 1)), /--weight must be a whole number/],
    [create('--weight', '1.5'), /--weight must be a whole number/],
    [create('--weight', '1e3'), /--weight must be a whole number/],
    [create('--priority', String(pMax + 1)), new RegExp(`--priority must be a whole number from ${pMin} to ${pMax}`)],
    [create('--priority', String(pMin - 1)), /--priority must be a whole number/],
    [create('--max-concurrency', String(cMax + 1)), new RegExp(`--max-concurrency must be a whole number from ${cMin} to ${cMax}`)],
    [create('--status', 'paused'), /--status must be one of active, disabled/],
    [['upstreams', 'create', 'x', '--platform', 'bedrock', '--base-url', 'https://a.example', '--url', NOWHERE], /--platform must be one of anthropic, openai/],
    [['upstreams', 'create', 'x', '--base-url', 'https://a.example', '--url', NOWHERE], /--platform is required/],
    [['upstreams', 'create', 'x', '--platform', 'openai', '--url', NOWHERE], /--base-url is required/],
    [create('--base-url', 'https://api.example.com/v1?x=1'), /^tollgate upstreams create: --base-url given more than once/],
    [['upstreams', 'create', 'x', '--platform', 'anthropic', '--base-url', 'https://api.example.com/v1?x=1', '--url', NOWHERE], /--base-url: must not have a query string/],
    [['upstreams', 'create', 'x', '--platform', 'anthropic', '--base-url', 'ftp://api.example.com', '--url', NOWHERE], /--base-url: scheme must be http or https, not "ftp"/],
    [['upstreams', 'create', 'x', '--platform', 'anthropic', '--base-url', 'https://u:p@api.example.com', '--url', NOWHERE], /--base-url: must not carry a user name or password/],
    [['upstreams', 'create', 'x', '--platform', 'anthropic', '--base-url', 'api.example.com', '--url', NOWHERE], /--base-url: must be an absolute URL/],
    [['upstreams', 'update', 'up_x', '--url', NOWHERE], /nothing to change: give at least one of --name, --base-url/],
    [['upstreams', 'update', 'up_x', '--api-key-stdin', '--clear-api-key', '--url', NOWHERE], /contradict each other/],
    [['upstreams', 'update', 'up_x', '--weight', '0', '--url', NOWHERE], /--weight must be a whole number/],
    [['groups', 'create', 'g', '--upstream', 'up_x', '--url', NOWHERE], /--platform is required/],
    [['groups', 'create', 'g', '--platform', 'anthropic', '--url', NOWHERE], /--upstream is required/],
    [['groups', 'create', 'g', '--platform', 'anthropic', '--upstream', 'none', '--url', NOWHERE], /a group needs at least one upstream/],
    [['groups', 'create', 'g', '--platform', 'anthropic', '--upstream', 'up_a,,up_b', '--url', NOWHERE], /--upstream: empty entry/],
    [['groups', 'create', 'g', '--platform', 'anthropic', '--upstream', 'up_a', '--map', 'claude-sonnet-4-5', '--url', NOWHERE], /--map "claude-sonnet-4-5": expected MODEL=UPSTREAM_MODEL/],
    [['groups', 'create', 'g', '--platform', 'anthropic', '--upstream', 'up_a', '--map', '=x', '--url', NOWHERE], /expected MODEL=UPSTREAM_MODEL/],
    [['groups', 'create', 'g', '--platform', 'anthropic', '--upstream', 'up_a', '--map', 'a=x', '--map', 'a=y', '--url', NOWHERE], /--map: a is mapped twice/],
    [['groups', 'update', 'grp_x', '--url', NOWHERE], /nothing to change/],
    [['webhooks', 'create', 'https://hooks.example.com/x?token=abc', '--events', 'balance.low', '--url', NOWHERE], /^tollgate webhooks create: URL: must not carry a credential/],
    [['webhooks', 'create', 'hooks.example.com', '--events', 'balance.low', '--url', NOWHERE], /URL: must be an absolute URL/],
    [['webhooks', 'create', 'https://hooks.example.com/x', '--url', NOWHERE], /--events is required/],
    [['webhooks', 'create', 'https://hooks.example.com/x', '--events', 'balance.low,balance.high', '--url', NOWHERE], /--events: "balance.high" is not one of balance.low, /],
    [['webhooks', 'deliveries', 'wh_x', '--limit', String(DELIVERIES_KEPT + 1), '--url', NOWHERE], new RegExp(`--limit must be a whole number from 1 to ${DELIVERIES_KEPT}`)],
    [['webhooks', 'deliveries', 'wh_x', '--limit', '0', '--url', NOWHERE], /--limit must be a whole number/],
  ];
  for (const [args, message] of cases) {
    const r = await tg(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, message, args.join(' '));
  }
});

test('upstreams and groups: update, show, list, delete reach the API; a refusal is exit 1 with its message', async () => {
  const up = ok<{ id: string }>(await tg(['upstreams', 'create', 'spare', '--platform', 'anthropic', '--base-url', stack.simUrl, '--models', 'claude-sonnet-4-5,claude-haiku-4-5', '--max-concurrency', '7', '--status', 'disabled']));
  const updated = ok<Record<string, unknown>>(await tg(['upstreams', 'update', up.id, '--name', 'spare 2', '--models', 'none', '--max-concurrency', 'none', '--weight', '1000', '--priority', '1000', '--status', 'active']));
  assert.deepEqual([updated.name, updated.models, updated.max_concurrency, updated.weight, updated.priority, updated.status], ['spare 2', null, null, 1000, 1000, 'active']);
  const shown = ok(await tg(['upstreams', 'show', up.id]));
  const viaApi = (await admin(stack.url, 'GET', `/admin/v1/upstreams/${up.id}`)).json;
  assert.deepEqual({ ...shown, health: null }, { ...viaApi, health: null }, 'show prints what the API holds');
  // An unknown model is the server's to refuse (its catalog): exit 1 with its message.
  const model = await tg(['upstreams', 'update', up.id, '--models', 'gpt-9']);
  assert.equal(model.code, 1);
  assert.match(model.stderr, /^tollgate upstreams update: 400 invalid_request: models\[0\]: "gpt-9" is not a model of the catalog in force\n$/);

  const group = ok<{ id: string }>(await tg(['groups', 'create', 'spares', '--platform', 'anthropic', '--upstream', `${up.id},default`, '--map', 'claude-sonnet-4-5=anthropic.claude-sonnet-4-5-v1:0']));
  const g = ok<Record<string, unknown>>(await tg(['groups', 'show', group.id]));
  // the alias stored as the catalog id it resolves to, as the API does
  assert.deepEqual([g.upstream_ids, g.model_mapping, g.source], [[up.id, 'default'], { 'claude-sonnet-4-5-20250929': 'anthropic.claude-sonnet-4-5-v1:0' }, 'stored']);
  const listed = ok<{ data: Array<{ id: string }> }>(await tg(['groups', 'list']));
  assert.deepEqual(listed.data.map((x) => x.id).slice(0, 1), ['default'], 'the default group first');
  assert.ok(listed.data.some((x) => x.id === group.id));
  // A model named __proto__ is sent as a key like any other and refused by the server (not a
  // catalog model), never dropped on the way (which sent {} and cleared the mapping); a comma
  // belongs to the name.
  const proto = await tg(['groups', 'update', group.id, '--map', '__proto__=evil']);
  assert.equal(proto.code, 1);
  assert.match(proto.stderr, /400 invalid_request: model_mapping\.__proto__: "__proto__" is not a model of the catalog in force/);
  assert.deepEqual(ok<Record<string, unknown>>(await tg(['groups', 'show', group.id])).model_mapping, { 'claude-sonnet-4-5-20250929': 'anthropic.claude-sonnet-4-5-v1:0' }, 'the mapping is as it was');
  const comma = ok<Record<string, unknown>>(await tg(['groups', 'update', group.id, '--map', 'claude-sonnet-4-5=my,model', '--map', 'claude-haiku-4-5=h']));
  assert.deepEqual(Object.values(comma.model_mapping as Record<string, string>).sort(), ['h', 'my,model']);
  const table = await tg(['upstreams', 'list', '--format', 'table']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout.split('\n').find((l) => l.includes(up.id))!, new RegExp(`│ spare 2 +│ anthropic +│ ${stack.simUrl.replace(/[.]/g, '\\.')} +│ active +│ 1000 +│ 1000 +│ +│ \\["${group.id}"\\] +│`));

  // Deleting an upstream a group lists: the API's 409, exit 1, nothing deleted.
  const refused = await tg(['upstreams', 'delete', up.id]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, new RegExp(`^tollgate upstreams delete: 409 [a-z_]+: .*${group.id}`));
  ok(await tg(['groups', 'update', group.id, '--upstream', 'default', '--map', 'none', '--name', 'only default']));
  assert.deepEqual(ok<Record<string, unknown>>(await tg(['groups', 'show', group.id])).model_mapping, null);
  assert.deepEqual(ok(await tg(['upstreams', 'delete', up.id])), { id: up.id, deleted: true });
  assert.deepEqual(ok(await tg(['groups', 'delete', group.id])), { id: group.id, deleted: true });
  const gone = await tg(['groups', 'show', group.id]);
  assert.deepEqual(gone, { code: 1, stdout: '', stderr: `tollgate groups show: 404 not_found: group ${group.id} does not exist\n` });
});

test('webhooks: create prints the secret once; list, show and deliveries never carry it; delete stops it; the finance token is refused', async () => {
  const created = await tg(['webhooks', 'create', 'https://hooks.example.com/tollgate', '--events', 'balance.low', '--events', 'event.quarantined', '--description', 'ops pager']);
  const w = ok<{ id: string; secret: string; events: string[]; description: string }>(created);
  assert.match(w.secret, /^whsec_/);
  assert.deepEqual([w.events, w.description], [['balance.low', 'event.quarantined'], 'ops pager']);
  assert.equal(created.stderr, 'tollgate webhooks create: the "secret" above signs the deliveries; it is stored sealed and cannot be shown again\n');
  for (const args of [['webhooks', 'show', w.id], ['webhooks', 'list'], ['webhooks', 'list', '--format', 'table'], ['webhooks', 'deliveries', w.id, '--limit', '5']]) {
    const r = await tg(args);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(w.secret), `${args.join(' ')} never shows the secret`);
  }
  assert.deepEqual(ok(await tg(['webhooks', 'deliveries', w.id])), { data: [] });
  // '' is a description the API takes: sent, not refused as an empty option
  const blank = ok<{ id: string; description: string | null }>(await tg(['webhooks', 'create', 'https://hooks.example.com/blank', '--events', 'balance.low', '--description', '']));
  ok(await tg(['webhooks', 'delete', blank.id]));
  // The command's own token is a secret a URL must not carry, also when it comes from DATA_DIR/admin-token
  const dataDir = mkdtempSync(join(tmpdir(), 'cli-pools-'));
  writeFileSync(join(dataDir, 'admin-token'), `${ADMIN_TOKEN}\n`);
  const fileToken = await runTollgate(['webhooks', 'create', `https://hooks.example.com/in/${ADMIN_TOKEN}`, '--events', 'balance.low', '--url', NOWHERE], { ADMIN_TOKEN: '', FINANCE_TOKEN: '', DATA_DIR: dataDir });
  assert.equal(fileToken.code, 2, fileToken.stderr);
  assert.match(fileToken.stderr, /^tollgate webhooks create: URL: must not carry a credential/);
  assert.deepEqual(ok(await tg(['webhooks', 'delete', w.id])), { id: w.id, deleted: true });
  const finance = await runTollgate(['upstreams', 'list'], { FINANCE_TOKEN, TOLLGATE_URL: stack.url });
  assert.equal(finance.code, 1);
  assert.match(finance.stderr, /^tollgate upstreams list: 403 permission_denied: /);
});

test('the help texts give the API\'s own bounds and names', async () => {
  const help = async (...args: string[]) => {
    const r = await tg([...args, '--help']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const create = await help('upstreams', 'create');
  for (const [min, max] of [UPSTREAM_LIMITS.weight, UPSTREAM_LIMITS.priority, UPSTREAM_LIMITS.maxConcurrency]) assert.ok(create.includes(`${min}-${max}`), `${min}-${max}`);
  const groupCreate = await help('groups', 'create');
  assert.ok(groupCreate.includes(`1-${UPSTREAM_LIMITS.groupUpstreams}`) && groupCreate.includes(`at most ${UPSTREAM_LIMITS.mappingEntries}`));
  assert.ok((await help('webhooks', 'create')).includes(WEBHOOK_EVENT_TYPES.join(', ')));
  assert.ok((await help('webhooks', 'deliveries')).includes(`1-${DELIVERIES_KEPT} (default ${DELIVERIES_KEPT}`));
  const top = await runTollgate(['--help']);
  for (const g of ['upstreams', 'groups', 'webhooks']) assert.match(top.stdout, new RegExp(`^  ${g} `, 'm'));
});

/** The request id of `servedBy`'s last request. */
let lastRequestId = '';

/**
 * One customer request (200 expected), in a session of its own (a session stays pinned to the
 * upstream that served it: README "Selection, failover and affinity"), or with no session id
 * (`null`: the key is the session): the upstream its usage record says served it (`upstream_id`).
 */
async function servedBy(secret: string, session: string | null = randomUUID()): Promise<string> {
  const res = await fetch(`${stack.url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': secret, 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...(session === null ? {} : { 'x-claude-code-session-id': session }) },
    body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
  });
  await res.arrayBuffer();
  assert.equal(res.status, 200);
  const id = res.headers.get('request-id')!;
  lastRequestId = id;
  for (let i = 0; ; i++) {
    const r = await admin<{ upstream_id?: string }>(stack.url, 'GET', `/admin/v1/usage/events/${id}`);
    if (r.status === 200) return r.json.upstream_id!;
    if (i > 100) assert.fail(`usage event ${id} not queryable within 5 s`);
    await new Promise((done) => setTimeout(done, 50));
  }
}

/** Polls `check` (the pool snapshot is up to POOL_CACHE_TTL_MS old) until it holds, for up to 5 s. */
async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within 5 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
