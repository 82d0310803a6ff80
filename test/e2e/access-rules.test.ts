// Issue 8 access rules end to end (embedded mode, the simulator upstream): each rule set with
// `PATCH /admin/v1/keys/:id` or `/admin/v1/accounts/:id` answers with its exact status,
// Anthropic error type and message, and lifting it serves again. The record fields survive a
// restart (rebuilt from the warehouse, migration 5). Balances: haiku-4-5 input 24, output 120 µc.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { admin, ADMIN_TOKEN, customer, simRequests, startStack, type Stack } from '../support/tollgate.ts';

// One stack (chDB allows one data directory per process); the trusted-proxy test runs last,
// after a restart with TRUST_PROXY on.
let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

const HAIKU = { model: 'claude-haiku-4-5', max_tokens: 4, messages: [{ role: 'user', content: 'hi [[sim input=1 output=1]]' }] };

/** One raw /v1/messages call: status, error type and message (null on success). */
async function call(url: string, secret: string, body: object = HAIKU, headers: Record<string, string> = {}, path = '/v1/messages') {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'x-api-key': secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const json = await res.json() as { type: string; error?: { type: string; code: string; message: string } };
  return { status: res.status, type: json.error?.type ?? null, code: json.error?.code ?? null, message: json.error?.message ?? null };
}

const ok = { status: 200, type: null, code: null, message: null };

async function patchKey(url: string, keyId: string, body: object) {
  return admin<Record<string, unknown>>(url, 'PATCH', `/admin/v1/keys/${keyId}`, body);
}

describe('access rules per key and account', () => {
  test('disabled key: 401 invalid_api_key with the unknown-key message; active again serves', async () => {
    const c = await customer(stack.url, 1);
    const r = await patchKey(stack.url, c.keyId, { status: 'disabled' });
    assert.equal(r.status, 200);
    assert.equal(r.json['status'], 'disabled');
    assert.deepEqual(await call(stack.url, c.secret), { status: 401, type: 'authentication_error', code: 'invalid_api_key', message: 'invalid x-api-key' });
    await patchKey(stack.url, c.keyId, { status: 'active' });
    assert.deepEqual(await call(stack.url, c.secret), ok);
  });

  test('expired key: 401 key_expired naming the instant; a future or null expiry serves', async () => {
    const c = await customer(stack.url, 1);
    const r = await patchKey(stack.url, c.keyId, { expires_at: '2020-01-01T00:00:00+02:00' });
    assert.equal(r.json['expires_at'], '2019-12-31T22:00:00.000Z');
    assert.deepEqual(await call(stack.url, c.secret),
      { status: 401, type: 'authentication_error', code: 'key_expired', message: 'This API key expired at 2019-12-31T22:00:00.000Z' });
    await patchKey(stack.url, c.keyId, { expires_at: '2299-01-01T00:00:00Z' });
    assert.deepEqual(await call(stack.url, c.secret), ok);
    await patchKey(stack.url, c.keyId, { expires_at: '2020-01-01T00:00:00Z' });
    assert.equal((await call(stack.url, c.secret)).status, 401);
    assert.equal((await patchKey(stack.url, c.keyId, { expires_at: null })).json['expires_at'], null);
    assert.deepEqual(await call(stack.url, c.secret), ok);
  });

  test('suspended account: 403 account_suspended on every key; a disabled account is an unknown key (401)', async () => {
    const c = await customer(stack.url, 1);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { status: 'suspended' })).json['status'], 'suspended');
    assert.deepEqual(await call(stack.url, c.secret),
      { status: 403, type: 'permission_error', code: 'account_suspended', message: 'This account is suspended; contact the operator' });
    await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { status: 'disabled' });
    assert.deepEqual(await call(stack.url, c.secret), { status: 401, type: 'authentication_error', code: 'invalid_api_key', message: 'invalid x-api-key' });
    await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { status: 'active' });
    assert.deepEqual(await call(stack.url, c.secret), ok);
  });

  test('ip allowlist outside the socket address: 403 ip_not_allowed; x-forwarded-for is not believed without TRUST_PROXY', async () => {
    const c = await customer(stack.url, 1);
    const r = await patchKey(stack.url, c.keyId, { ip_allowlist: ['10.1.2.3/8', '2001:DB8:0:0::1/32'] });
    assert.deepEqual(r.json['ip_allowlist'], ['10.0.0.0/8', '2001:db8::/32']);
    const refused = { status: 403, type: 'permission_error', code: 'ip_not_allowed', message: 'Requests from 127.0.0.1 are not allowed for this key' };
    assert.deepEqual(await call(stack.url, c.secret), refused);
    assert.deepEqual(await call(stack.url, c.secret, HAIKU, { 'x-forwarded-for': '10.9.9.9' }), refused);
    // The socket's own address, as a host: served.
    await patchKey(stack.url, c.keyId, { ip_allowlist: ['127.0.0.1'] });
    assert.deepEqual(await call(stack.url, c.secret), ok);
    await patchKey(stack.url, c.keyId, { ip_allowlist: [] });
    assert.deepEqual(await call(stack.url, c.secret), ok);
  });

  test('a bad CIDR is refused at the edge with its index; nothing is stored', async () => {
    const c = await customer(stack.url, 0);
    for (const [entry, i] of [['10/8', 1], ['300.1.1.1/8', 1], ['10.0.0.0/33', 1], ['fe80::1%eth0/64', 1]] as const) {
      const r = await admin<{ error: { type: string; message: string } }>(stack.url, 'PATCH', `/admin/v1/keys/${c.keyId}`, { ip_allowlist: ['192.0.2.0/24', entry] });
      assert.equal(r.status, 400, entry);
      assert.equal(r.json.error.message, `ip_allowlist[${i}]: ${JSON.stringify(entry)} is not an IPv4 or IPv6 CIDR (e.g. 203.0.113.0/24, 2001:db8::/32)`);
    }
    const view = await admin<Record<string, unknown>>(stack.url, 'GET', `/admin/v1/keys/${c.keyId}`);
    assert.deepEqual(view.json['ip_allowlist'], []);
  });

  test('allowed_models: another model is 403 model_not_allowed on messages and count_tokens; an alias is its model', async () => {
    const c = await customer(stack.url, 1);
    const r = await patchKey(stack.url, c.keyId, { allowed_models: ['claude-haiku-4-5'] });
    // Stored as the catalog id the alias names.
    assert.deepEqual(r.json['allowed_models'], ['claude-haiku-4-5-20251001']);
    assert.deepEqual(await call(stack.url, c.secret), ok);
    const sonnet = { ...HAIKU, model: 'claude-sonnet-4-5' };
    const refused = { status: 403, type: 'permission_error', code: 'model_not_allowed', message: 'model: this key may not use claude-sonnet-4-5 (allowed: claude-haiku-4-5-20251001)' };
    assert.deepEqual(await call(stack.url, c.secret, sonnet), refused);
    const { max_tokens: _m, ...countBody } = sonnet;
    assert.deepEqual(await call(stack.url, c.secret, countBody, {}, '/v1/messages/count_tokens'), refused);
    const unknown = await patchKey(stack.url, c.keyId, { allowed_models: ['claude-haiku-4-5', 'gpt-5'] });
    assert.equal(unknown.status, 400);
    assert.equal((unknown.json as { error: { message: string } }).error.message, 'allowed_models[1]: "gpt-5" is not a model of the catalog in force');
    await patchKey(stack.url, c.keyId, { allowed_models: null });
    assert.deepEqual(await call(stack.url, c.secret, sonnet), ok);
  });

  test('allowed_models covers every model the request can be served by: fallbacks[].model and advisor tools[].model are 403 naming the place', async () => {
    const c = await customer(stack.url, 1_000); // an advisor's hold is far above 1 credit
    await patchKey(stack.url, c.keyId, { allowed_models: ['claude-haiku-4-5'] });
    const lastSent = async () => JSON.stringify(await simRequests(stack.simUrl, 1));
    const before = await lastSent();
    const refused = (where: string, model: string) => ({ status: 403, type: 'permission_error', code: 'model_not_allowed',
      message: `${where}: this key may not use ${model} (allowed: claude-haiku-4-5-20251001)` });
    assert.deepEqual(await call(stack.url, c.secret, { ...HAIKU, fallbacks: [{ model: 'claude-haiku-4-5' }, { model: 'claude-opus-4-6' }] }),
      refused('fallbacks[1].model', 'claude-opus-4-6'));
    assert.deepEqual(await call(stack.url, c.secret, { ...HAIKU, fallbacks: ['claude-sonnet-4-5'] }), refused('fallbacks[0]', 'claude-sonnet-4-5'));
    // A name the catalog does not know cannot be in an allow-list.
    assert.deepEqual(await call(stack.url, c.secret, { ...HAIKU, fallbacks: [{ model: 'gpt-5' }] }), refused('fallbacks[0].model', 'gpt-5'));
    const advisor = { type: 'advisor_20260301', name: 'advisor', model: 'claude-opus-4-6', max_uses: 1 };
    assert.deepEqual(await call(stack.url, c.secret, { ...HAIKU, tools: [{ name: 'x', input_schema: { type: 'object' } }, advisor] }),
      refused('tools[1].model', 'claude-opus-4-6'));
    // None of the refused requests reached the upstream.
    assert.equal(await lastSent(), before);
    // The allowed model named as fallback and advisor (by alias) is served.
    assert.deepEqual(await call(stack.url, c.secret, { ...HAIKU, fallbacks: [{ model: 'claude-haiku-4-5' }], tools: [{ ...advisor, model: 'claude-haiku-4-5' }] }), ok);
    await patchKey(stack.url, c.keyId, { allowed_models: null });
    assert.deepEqual(await call(stack.url, c.secret, { ...HAIKU, fallbacks: [{ model: 'claude-opus-4-6' }] }), ok);
  });

  test('a key given twice in one object is refused at the edge on every route, so the model checked is the model served: 400 naming it, nothing forwarded, held or billed', async () => {
    const c = await customer(stack.url, 1);
    await patchKey(stack.url, c.keyId, { allowed_models: ['claude-haiku-4-5'] });
    const lastSent = async () => JSON.stringify(await simRequests(stack.simUrl, 1));
    const before = await lastSent();
    const raw = async (path: string, body: string, headers: Record<string, string>) => {
      const res = await fetch(`${stack.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      const json = await res.json() as { error?: { type: string; code: string; message: string } };
      return [res.status, json.error?.type, json.error?.code, json.error?.message];
    };
    const refused = (path: string) => [400, 'invalid_request_error', 'invalid_request',
      `${path}: given more than once in one object; which one was meant is a guess, so send each key once`];
    const anthropic = { 'x-api-key': c.secret, 'anthropic-version': '2023-06-01' };
    const user = '"messages":[{"role":"user","content":"hi [[sim input=1 output=1]]"}]';
    // JSON.parse keeps the last copy and many readers the first: each body reads as an allowed
    // or cheap request one way and as another request the other way.
    const cases: Array<[string, string, string]> = [
      ['/v1/messages', `{"model":"claude-opus-4-6","model":"claude-haiku-4-5","max_tokens":4,${user}}`, 'model'],
      ['/v1/messages', `{"model":"claude-haiku-4-5","max_tokens":64000,"max_tokens":1,${user}}`, 'max_tokens'],
      ['/v1/messages', `{"model":"claude-haiku-4-5","max_tokens":4,"stream":true,"stream":false,${user}}`, 'stream'],
      ['/v1/messages', `{"model":"claude-haiku-4-5","max_tokens":4,"messages":[{"role":"user","content":[{"type":"text","text":"${'x'.repeat(4000)}","text":"hi"}]}]}`, 'messages[0].content[0].text'],
      ['/v1/messages', `{"model":"claude-haiku-4-5","max_tokens":4,${user},"tools":[{"type":"advisor_20260301","name":"advisor","model":"claude-opus-4-6","model":"claude-haiku-4-5","max_uses":1}]}`, 'tools[0].model'],
      ['/v1/messages', `{"model":"claude-haiku-4-5","max_tokens":4,${user},"fallbacks":[{"model":"claude-opus-4-6","mod\\u0065l":"claude-haiku-4-5"}]}`, 'fallbacks[0].model'],
      ['/v1/messages/count_tokens', `{"model":"claude-opus-4-6","model":"claude-haiku-4-5",${user}}`, 'model'],
    ];
    for (const [path, body, named] of cases) {
      assert.deepEqual(await raw(path, body, anthropic), refused(named), `${path} ${named}`);
    }
    assert.deepEqual(await raw('/v1/chat/completions', '{"model":"claude-opus-4-6","model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}',
      { authorization: `Bearer ${c.secret}` }), refused('model'));
    // The same kind, spelled for a reader that ignores case (Go's encoding/json, K = U+212A),
    // and a \u escape of half a surrogate pair (Anthropic's API refuses the body).
    const caseOf = (path: string, field: string) => [400, 'invalid_request_error', 'invalid_request',
      `${path}: not a field of the Messages API: a reader that ignores case takes it for "${field}" (field names are lowercase)`];
    assert.deepEqual(await raw('/v1/messages', `{"model":"claude-haiku-4-5","MODEL":"claude-opus-4-6","max_tokens":4,${user}}`, anthropic), caseOf('MODEL', 'model'));
    assert.deepEqual(await raw('/v1/messages', `{"model":"claude-haiku-4-5","max_tokens":1,"max_to\u212aens":64000,${user}}`, anthropic),
      caseOf('["max_to\\u212aens"]', 'max_tokens'));
    assert.deepEqual(await raw('/v1/messages', `{"model":"claude-haiku-4-5","max_tokens":4,"messages":[{"role":"user","content":"hi \\ud83d"}]}`, anthropic),
      [400, 'invalid_request_error', 'invalid_json',
        'Request body is not valid JSON: messages[0].content has a \\u escape of half a surrogate pair (U+D800–U+DFFF without its other half), which is not text']);
    // An error quoting client input quotes it bounded, its bidi controls escaped (here an
    // unsupported OpenAI parameter whose 200,000-character name starts with U+202E).
    const [status, , , message] = await raw('/v1/chat/completions',
      JSON.stringify({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }], [`\u202e${'p'.repeat(200_000)}`]: 1 }),
      { authorization: `Bearer ${c.secret}` });
    assert.deepEqual([status, String(message).length, String(message).slice(0, 12), /[\u202e]/.test(String(message))], [400, 1024, '\\u202epppppp', false]);
    assert.equal(await lastSent(), before);
    // The admin API reads its bodies the same way: a grant naming credits twice grants nothing.
    const grant = await raw(`/admin/v1/accounts/${c.accountId}/credits`, '{"credits":1,"credits":1000000,"reference":"dup"}',
      { authorization: `Bearer ${ADMIN_TOKEN}` });
    assert.deepEqual(grant, refused('credits'));
    const view = await admin<{ balance_micro_credits: string; held_credits: number }>(stack.url, 'GET', `/admin/v1/accounts/${c.accountId}`);
    assert.deepEqual([view.json.balance_micro_credits, view.json.held_credits], ['1000000', 0]);
  });

  test('admin bodies are refused in one wording that names the field and what it must be, never zod\'s defaults; a message a schema sets itself stays', async () => {
    const c = await customer(stack.url, 0);
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { reference: 'r' }, 'credits: is required'],
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: true, reference: 'r' }, 'credits: must be a number or a string (got boolean)'],
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1 }, 'reference: is required'],
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference: 5 }, 'reference: must be a string (got number)'],
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference: 'r', kind: 'gift' },
        'kind: must be one of "grant", "top_up", "adjustment", "refund" (got "gift")'],
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference: 'r', note: 'x', extra: 1 }, 'note: unknown field; extra: unknown field'],
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, [], 'body: must be an object (got array)'],
      // an odd key is shown cut, its controls and bidi controls escaped
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference: 'r', [`\u202e${'k'.repeat(5000)}`]: 1 },
        `["\\u202e${'k'.repeat(39)}…"]: unknown field`],
      ['POST', '/admin/v1/accounts', {}, 'name: is required'],
      ['PATCH', `/admin/v1/keys/${c.keyId}`, { ip_allowlist: ['10.0.0.0/8', 7] }, 'ip_allowlist[1]: must be a string (got number)'],
      ['PATCH', `/admin/v1/keys/${c.keyId}`, { allowed_models: [''] }, 'allowed_models[0]: must not be empty'],
      ['PATCH', `/admin/v1/keys/${c.keyId}`, { hourly_credits: {} }, 'hourly_credits: must be a number or a string (got object)'],
      ['PATCH', `/admin/v1/keys/${c.keyId}`, { expires_at: 'x'.repeat(65) }, 'expires_at: must be at most 64 characters'],
      ['PATCH', `/admin/v1/accounts/${c.accountId}`, { status: 'gone', admission_policy: 'loose' },
        'status: must be one of "active", "suspended", "disabled" (got "gone"); admission_policy: must be one of "strict", "clamp" (got "loose")'],
      ['POST', '/admin/v1/plans', { name: 'p', requests_per_minute: 1.5 },
        'requests_per_minute: must be a whole number (got 1.5) (plan limits are whole numbers 0 … 1000000000, or null for unlimited)'],
      ['POST', '/admin/v1/groups', { name: 'g', platform: 'anthropic', upstream_ids: ['default'], model_mapping: [] }, 'model_mapping: must be an object (got array)'],
      ['POST', '/admin/v1/plans', { name: 'p', rpm: 5 }, 'rpm: unknown field'],
      ['POST', '/admin/v1/plans', { name: 'p', requests_per_minute: 'a' },
        'requests_per_minute: must be a number (got string) (plan limits are whole numbers 0 … 1000000000, or null for unlimited)'],
      // the upstream schema's own message
      ['POST', '/admin/v1/upstreams', { name: 'u', platform: 'anthropic', base_url: 'https://api.example.com', api_key: 'sk-x', weight: 0 },
        'weight: must be a whole number from 1 to 1000'],
    ];
    for (const [method, path, body, message] of cases) {
      const r = await admin<{ error: { type: string; message: string } }>(stack.url, method, path, body);
      assert.deepEqual([r.status, r.json.error.type, r.json.error.message], [400, 'invalid_request_error', message], `${method} ${path} ${JSON.stringify(body)}`);
    }
  });

  test('operator text: a bidi control is refused in every stored name, reference and description; a reference is one reference in NFC and NFD (one credit), and refuses invisible characters', async () => {
    const c = await customer(stack.url, 0);
    const bidi = 'must not contain bidi control characters (U+061C, U+200E/F, U+202A–E, U+2066–9)';
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/admin/v1/accounts', { name: 'evil\u202egnp.exe' }, `name: ${bidi}`],
      ['PATCH', `/admin/v1/keys/${c.keyId}`, { name: 'k\u2066x' }, `name: ${bidi}`],
      ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference: 'r\u200f' }, `reference: ${bidi}`],
      ['POST', '/admin/v1/plans', { name: 'p\u061c' }, `name: ${bidi}`],
      ['POST', '/admin/v1/upstreams', { name: 'u\u202a', platform: 'anthropic', base_url: 'https://api.example.com', api_key: 'sk-x' }, `name: ${bidi}`],
      ['POST', '/admin/v1/webhooks', { url: 'https://hooks.example.com/x', events: ['balance.low'], description: 'd\u202d' }, `description: ${bidi}`],
    ];
    for (const [method, path, body, message] of cases) {
      const r = await admin<{ error: { message: string } }>(stack.url, method, path, body);
      assert.deepEqual([r.status, r.json.error.message], [400, message], `${method} ${path}`);
    }
    const grant = (reference: string) => admin<{ duplicate?: boolean }>(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference });
    assert.equal((await grant('caf\u00e9')).status, 201);
    const again = await grant('cafe\u0301');
    assert.deepEqual([again.status, again.json.duplicate], [200, true]);
    // An invisible character would make a reference that reads as another one a second credit:
    // every default-ignorable code point is refused (judged after the trim, which takes a BOM or
    // a no-break space off the ends), nothing credited.
    const hidden: Array<[string, string]> = [['inv\u200b-9', 'U+200B at index 3'], ['inv\u00ad-9', 'U+00AD at index 3'],
      ['inv\u034f-9', 'U+034F at index 3'], ['inv\u2060-9', 'U+2060 at index 3'], ['i\u200dnv-9', 'U+200D at index 1'],
      ['inv-9\ufe0f', 'U+FE0F at index 5'], ['inv-9\u{e0041}', 'U+E0041 at index 5'], ['\ufeffinv-\u180e9', 'U+180E at index 4']];
    for (const [reference, where] of hidden) {
      const r = await admin<{ error: { message: string } }>(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference });
      assert.deepEqual([r.status, r.json.error.message], [400, `reference: must not contain invisible characters (Unicode default-ignorable, such as U+200B zero width space): ${where}`], JSON.stringify(reference));
    }
    assert.equal((await grant('\ufeffinv-9\u00a0')).status, 201);
    assert.deepEqual([(await grant('inv-9')).json.duplicate], [true]);
    const view = await admin<{ balance_micro_credits: string }>(stack.url, 'GET', `/admin/v1/accounts/${c.accountId}`);
    assert.equal(view.json.balance_micro_credits, '2000000');
  });

  test('limits and states are flat PATCH fields: credits in, exact decimal-string credits out (never a float), µc in the record; revoked keys cannot change', async () => {
    const c = await customer(stack.url, 0);
    const k = await patchKey(stack.url, c.keyId, { hourly_credits: '0.000001', daily_credits: 2.5, total_credits: 100 });
    assert.equal(k.status, 200);
    assert.deepEqual([k.json['hourly_credits'], k.json['daily_credits'], k.json['total_credits']], ['0.000001', '2.5', '100']);
    const stored = await stack.tollgate.keys.key(c.keyId);
    assert.deepEqual([stored?.hourly_credits, stored?.daily_credits, stored?.total_credits], ['1', '2500000', '100000000']);
    const a = await admin<Record<string, unknown>>(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`,
      { daily_credits: 10, monthly_credits: '200', overdraft_credits: 0.5, admission_policy: 'strict' });
    assert.equal(a.status, 200);
    assert.deepEqual([a.json['daily_credits'], a.json['monthly_credits'], a.json['overdraft_credits'], a.json['admission_policy']], ['10', '200', '0.5', 'strict']);
    // The largest amount every stage holds exactly (2^53 − 1 µc) echoes back to the µc, key and account.
    const max = '9007199254.740991';
    assert.equal((await patchKey(stack.url, c.keyId, { hourly_credits: max })).json['hourly_credits'], max);
    assert.equal((await admin<Record<string, unknown>>(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { overdraft_credits: max })).json['overdraft_credits'], max);
    assert.equal((await stack.tollgate.keys.key(c.keyId))?.hourly_credits, '9007199254740991');
    const neg = await patchKey(stack.url, c.keyId, { daily_credits: -1 });
    assert.equal(neg.status, 400);
    assert.equal((neg.json as { error: { message: string } }).error.message, 'daily_credits: must not be negative (null removes the limit)');
    const cleared = await patchKey(stack.url, c.keyId, { daily_credits: null });
    assert.equal(cleared.json['daily_credits'], null);
    assert.equal((await patchKey(stack.url, c.keyId, { status: 'revoked' })).status, 400);
    const badPlan = await patchKey(stack.url, c.keyId, { plan_id: 'no-such-plan' });
    assert.equal(badPlan.status, 400);
    assert.equal((badPlan.json as { error: { message: string } }).error.message, 'plan_id: "no-such-plan" is not a plan (GET /admin/v1/plans lists them)');
    // a seed plan is a plan without a stored record; null returns to the account's
    assert.equal((await patchKey(stack.url, c.keyId, { plan_id: 'pro' })).json['plan_id'], 'pro');
    assert.equal((await admin<Record<string, unknown>>(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { plan_id: 'max-5x' })).json['plan_id'], 'max-5x');
    assert.equal((await patchKey(stack.url, c.keyId, { plan_id: null })).json['plan_id'], null);
    assert.equal((await admin(stack.url, 'DELETE', `/admin/v1/keys/${c.keyId}`)).status, 200);
    const revoked = await patchKey(stack.url, c.keyId, { status: 'active' });
    assert.equal(revoked.status, 409);
    assert.equal((await patchKey(stack.url, 'key_nope', { status: 'active' })).status, 404);
  });
});

describe('max_tokens optional', () => {
  test('omitted max_tokens: DEFAULT_MAX_TOKENS (1,024) is sent upstream and held for, exactly as if the client sent it', async () => {
    const c = await customer(stack.url, 1);
    const { max_tokens: _m, ...body } = HAIKU;
    assert.deepEqual(await call(stack.url, c.secret, body), ok);
    const [sent] = await simRequests(stack.simUrl);
    assert.equal(sent!.body['max_tokens'], 1024);
    // The hold is the one of max_tokens 1,024: under strict admission on a 0.01-credit account
    // (10,000 µc < 1,024 × 120 µc of output alone) the refusal names it. (The input bound, from
    // the body's bytes, differs with the body, so only the output side is compared.)
    const poor = await customer(stack.url, '0.01');
    await admin(stack.url, 'PATCH', `/admin/v1/accounts/${poor.accountId}`, { admission_policy: 'strict' });
    const omitted = await call(stack.url, poor.secret, body);
    assert.equal(omitted.status, 402);
    assert.match(omitted.message!, /\(its worst case at max_tokens 1024\) and 0\.01 credits are available$/);
    const worst = (m: string | null) => Number(/needs up to ([0-9.]+) credits/.exec(m!)![1]) * 1e6;
    const explicit = await call(stack.url, poor.secret, { ...body, max_tokens: 1024 });
    const less = await call(stack.url, poor.secret, { ...body, max_tokens: 1023 });
    // one output token of haiku: 120 µc
    assert.equal(Math.round(worst(explicit.message) - worst(less.message)), 120);
    // null is not "absent": the field is there and is no integer.
    assert.deepEqual(await call(stack.url, c.secret, { ...body, max_tokens: null }),
      { status: 400, type: 'invalid_request_error', code: 'invalid_request', message: 'max_tokens: Input should be a valid integer' });
  });
});

describe('after a restart', () => {
  test('key and account fields come back from the warehouse (migration 5) and still apply', async () => {
    const c = await customer(stack.url, 1);
    await patchKey(stack.url, c.keyId, {
      ip_allowlist: ['10.0.0.0/8', '::1'], allowed_models: ['claude-haiku-4-5'], expires_at: '2299-06-01T00:00:00Z',
      hourly_credits: 1, daily_credits: 2, total_credits: 3,
    });
    await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { status: 'suspended', daily_credits: 4, monthly_credits: 5, overdraft_credits: 6, low_balance_credits: 7, admission_policy: 'clamp' });
    const key = await stack.tollgate.keys.key(c.keyId);
    const account = await stack.tollgate.keys.account(c.accountId);
    await stack.tollgate.drain();
    await stack.restart();
    assert.deepEqual(await stack.tollgate.keys.key(c.keyId), key);
    assert.deepEqual(await stack.tollgate.keys.account(c.accountId), account);
    assert.deepEqual(await call(stack.url, c.secret),
      { status: 403, type: 'permission_error', code: 'ip_not_allowed', message: 'Requests from 127.0.0.1 are not allowed for this key' });
  });

  test('ip allowlist behind a trusted proxy: the x-forwarded-for client decides, IPv4 and IPv6', async () => {
    stack.env['TRUST_PROXY'] = 'true';
    await stack.restart();
    const c = await customer(stack.url, 1);
    await patchKey(stack.url, c.keyId, { ip_allowlist: ['203.0.113.0/24', '2001:db8::/32'] });
    assert.deepEqual(await call(stack.url, c.secret, HAIKU, { 'x-forwarded-for': '203.0.113.77' }), ok);
    assert.deepEqual(await call(stack.url, c.secret, HAIKU, { 'x-forwarded-for': '2001:db8:1::9' }), ok);
    assert.deepEqual(await call(stack.url, c.secret, HAIKU, { 'x-forwarded-for': '203.0.114.1' }),
      { status: 403, type: 'permission_error', code: 'ip_not_allowed', message: 'Requests from 203.0.114.1 are not allowed for this key' });
    assert.deepEqual(await call(stack.url, c.secret, HAIKU, { 'x-forwarded-for': '2001:db9::1' }),
      { status: 403, type: 'permission_error', code: 'ip_not_allowed', message: 'Requests from 2001:db9::1 are not allowed for this key' });
  });

  test('TRUST_PROXY as the proxy\'s addresses: a client cannot forge its address past the proxy (the right-most untrusted hop decides)', async () => {
    // The test's own connection (127.0.0.1) plays the reverse proxy; it appends the address it saw.
    stack.env['TRUST_PROXY'] = '127.0.0.1/32,::1';
    await stack.restart();
    const c = await customer(stack.url, 1);
    await patchKey(stack.url, c.keyId, { ip_allowlist: ['203.0.113.0/24'] });
    // the proxy saw 203.0.113.77: allowed
    assert.deepEqual(await call(stack.url, c.secret, HAIKU, { 'x-forwarded-for': '203.0.113.77' }), ok);
    // a client at 198.51.100.9 put an allowed address in front of it: the proxy appended the real one
    assert.deepEqual(await call(stack.url, c.secret, HAIKU, { 'x-forwarded-for': '203.0.113.77, 198.51.100.9' }),
      { status: 403, type: 'permission_error', code: 'ip_not_allowed', message: 'Requests from 198.51.100.9 are not allowed for this key' });
    // with TRUST_PROXY=true the same forged header would have been believed (left-most): not here
    stack.env['TRUST_PROXY'] = 'false';
    await stack.restart();
  });

});
