// The order of the access checks in `authenticate` (issue 8), on a real MemoryKeyDirectory:
// when several rules refuse a request, the first in README order answers, so the least
// informative refusal wins and a key tried from outside its networks learns nothing more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '@tollgate/anthropic';
import type { AccountRecord, KeyRecord } from '@tollgate/events';
import { CachedKeyDirectory, generateSecret, hashSecret, MemoryKeyDirectory } from '@tollgate/keys';
import { authenticate, checkModelAllowed } from '../src/auth.ts';

const SERVER_KEY = 'server-key-0123456789abcdef';
const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);

async function setup(key: Partial<KeyRecord>, account: Partial<AccountRecord>) {
  const dir = new MemoryKeyDirectory();
  const secret = generateSecret();
  await dir.putAccount({ id: 'acct_1', name: 'a', status: 'active', created_at: 0, version: 1, ...account });
  await dir.putKey({
    id: 'key_1', account_id: 'acct_1', name: '', prefix: 'sk-tg-xx', hash: hashSecret(secret, SERVER_KEY),
    status: 'active', created_at: 0, revoked_at: null, version: 1, ...key,
  });
  return (ip: string) => authenticate(dir, SERVER_KEY, { 'x-api-key': secret }, async () => true, ip, NOW);
}

async function refusal(run: Promise<unknown>): Promise<string> {
  try {
    await run;
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof GatewayError);
    return `${err.status} ${err.code}`;
  }
}

test('every rule alone: its own status and code', async () => {
  const past = NOW - 1;
  assert.equal(await refusal((await setup({ status: 'disabled' }, {}))('192.0.2.1')), '401 invalid_api_key');
  assert.equal(await refusal((await setup({ status: 'revoked', revoked_at: 1 }, {}))('192.0.2.1')), '401 invalid_api_key');
  assert.equal(await refusal((await setup({}, { status: 'disabled' }))('192.0.2.1')), '401 invalid_api_key');
  assert.equal(await refusal((await setup({ ip_allowlist: ['10.0.0.0/8'] }, {}))('192.0.2.1')), '403 ip_not_allowed');
  assert.equal(await refusal((await setup({ expires_at: past }, {}))('192.0.2.1')), '401 key_expired');
  assert.equal(await refusal((await setup({ expires_at: NOW + 1 }, {}))('192.0.2.1')), 'ok');
  assert.equal(await refusal((await setup({}, { status: 'suspended' }))('192.0.2.1')), '403 account_suspended');
  assert.equal(await refusal((await setup({ ip_allowlist: ['192.0.2.0/24'] }, {}))('192.0.2.1')), 'ok');
});

test('several rules at once: disabled before ip, ip before expiry, expiry before suspension', async () => {
  const all = { ip_allowlist: ['10.0.0.0/8'], expires_at: NOW - 1 };
  assert.equal(await refusal((await setup({ ...all, status: 'disabled' }, { status: 'suspended' }))('192.0.2.1')), '401 invalid_api_key');
  assert.equal(await refusal((await setup(all, { status: 'suspended' }))('192.0.2.1')), '403 ip_not_allowed');
  assert.equal(await refusal((await setup(all, { status: 'suspended' }))('10.0.0.1')), '401 key_expired');
  assert.equal(await refusal((await setup({ ip_allowlist: ['10.0.0.0/8'] }, { status: 'suspended' }))('10.0.0.1')), '403 account_suspended');
});

test('allowed_models: the resolved catalog id decides; empty allows all', async () => {
  const entry = (allowed?: string[]) => ({
    key: { allowed_models: allowed } as KeyRecord, account: {} as AccountRecord,
  });
  assert.doesNotThrow(() => checkModelAllowed(entry(), 'claude-opus-4-6', 'opus'));
  assert.doesNotThrow(() => checkModelAllowed(entry([]), 'claude-opus-4-6', 'opus'));
  assert.doesNotThrow(() => checkModelAllowed(entry(['claude-opus-4-6']), 'claude-opus-4-6', 'claude-opus-4-6-thinking'));
  assert.throws(() => checkModelAllowed(entry(['claude-haiku-4-5-20251001']), 'claude-opus-4-6', 'opus'),
    (err: unknown) => err instanceof GatewayError && err.status === 403 && err.code === 'model_not_allowed' &&
      err.message === 'model: this key may not use opus (allowed: claude-haiku-4-5-20251001)');
});

test('a miss remembered while the hot state was lost: once it is seen rebuilt the valid key is served, not refused 401 for the cache TTL; an unknown key is still 401, a flood of it one store read', async () => {
  // Kind: a key lookup answered (and cached) while Redis was empty. The rebuild writes the
  // store directly, not through this gateway's cache, as the warehouse aggregator does. The
  // readiness function is what the gateway app's does: seen lost then ready, the cache forgets
  // its misses and the miss is read again ('recovered').
  let reads = 0;
  const store = new MemoryKeyDirectory();
  const counted = new Proxy(store, { get: (t, p) => (p === 'byHash' ? (h: string) => { reads++; return t.byHash(h); } : Reflect.get(t, p, t)) });
  const cached = new CachedKeyDirectory(counted, { ttlMs: 60_000 });
  const secret = generateSecret();
  let state: 'lost' | 'rebuilt' | 'steady' = 'lost';
  const stateReady = async () => {
    if (state === 'lost') return false;
    if (state === 'rebuilt') {
      state = 'steady';
      cached.forgetMisses();
      return 'recovered' as const;
    }
    return true;
  };
  const auth = (key: string) => authenticate(cached, SERVER_KEY, { 'x-api-key': key }, stateReady, '192.0.2.1', NOW);
  assert.equal(await refusal(auth(secret)), '503 state_unavailable');
  assert.equal(await refusal(auth(secret)), '503 state_unavailable');
  await store.putAccount({ id: 'acct_1', name: 'a', status: 'active', created_at: 0, version: 1 });
  await store.putKey({ id: 'key_1', account_id: 'acct_1', name: '', prefix: 'sk-tg-xx', hash: hashSecret(secret, SERVER_KEY), status: 'active', created_at: 0, revoked_at: null, version: 1 });
  state = 'rebuilt';
  assert.equal((await auth(secret)).key.id, 'key_1');
  assert.equal((await auth(secret)).key.id, 'key_1'); // and from the cache now
  // steady state: an unknown key is 401, and a flood of it reads the store once (the miss is cached)
  const bad = generateSecret();
  reads = 0;
  for (let i = 0; i < 100; i++) assert.equal(await refusal(auth(bad)), '401 invalid_api_key');
  assert.equal(reads, 1);
});

test('the 401 for a missing or bad key names the header it came from and nothing about the key', async () => {
  const dir = new MemoryKeyDirectory();
  const message = async (headers: Record<string, string>): Promise<string> => {
    try {
      await authenticate(dir, SERVER_KEY, headers, async () => true, '192.0.2.1', NOW);
      return 'ok';
    } catch (err) {
      assert.ok(err instanceof GatewayError);
      return `${err.status} ${err.code} ${err.message}`;
    }
  };
  const unknown = generateSecret();
  const cases: Array<[Record<string, string>, string]> = [
    [{ 'x-api-key': unknown }, 'invalid x-api-key'],
    [{ 'x-api-key': 'not-a-key' }, 'invalid x-api-key'],
    // x-api-key is read first when both are sent, and named
    [{ 'x-api-key': unknown, authorization: `Bearer ${generateSecret()}` }, 'invalid x-api-key'],
    [{ authorization: `Bearer ${unknown}` }, 'invalid API key in Authorization: Bearer'],
    [{ authorization: 'bearer   not-a-key' }, 'invalid API key in Authorization: Bearer'],
    [{}, 'x-api-key header is required (or Authorization: Bearer <key>)'],
    [{ 'x-api-key': '' }, 'x-api-key header is required (or Authorization: Bearer <key>)'],
    [{ authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` }, 'x-api-key header is required (or Authorization: Bearer <key>)'],
    [{ authorization: 'Bearer ' }, 'x-api-key header is required (or Authorization: Bearer <key>)'],
  ];
  for (const [headers, expected] of cases) assert.equal(await message(headers), `401 invalid_api_key ${expected}`, JSON.stringify(headers));
});
