// Stale verdicts from the key-hash memo of `authenticate` (issue 11: the HMAC of the last 4,096
// keys is remembered): only the hash is remembered, never what the directory says about the key,
// so a key revoked, an account suspended, a neighbour key one byte away or a rotated
// KEY_HASH_SECRET are answered as without the memo. Real MemoryKeyDirectory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '@tollgate/anthropic';
import type { KeyRecord } from '@tollgate/events';
import { generateSecret, hashSecret, MemoryKeyDirectory } from '@tollgate/keys';
import { authenticate } from '../src/auth.ts';

const SERVER_KEY = 'server-key-memo-0123456789abcdef';
const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);

async function verdict(dir: MemoryKeyDirectory, secret: string, serverKey = SERVER_KEY): Promise<string> {
  try {
    const e = await authenticate(dir, serverKey, { 'x-api-key': secret }, async () => true, '192.0.2.1', NOW);
    return `ok ${e.key.id}`;
  } catch (err) {
    assert.ok(err instanceof GatewayError);
    return `${err.status} ${err.code}`;
  }
}

async function directory(): Promise<{ dir: MemoryKeyDirectory; secret: string; key: KeyRecord }> {
  const dir = new MemoryKeyDirectory();
  const secret = generateSecret();
  await dir.putAccount({ id: 'acct_m', name: 'a', status: 'active', created_at: 0, version: 1 });
  const key: KeyRecord = {
    id: 'key_m', account_id: 'acct_m', name: '', prefix: 'sk-tg-xx', hash: hashSecret(secret, SERVER_KEY),
    status: 'active', created_at: 0, revoked_at: null, version: 1,
  };
  await dir.putKey(key);
  return { dir, secret, key };
}

test('stale verdict: a key revoked after it was remembered is refused on its next request (401)', async () => {
  const { dir, secret, key } = await directory();
  assert.equal(await verdict(dir, secret), 'ok key_m');
  await dir.putKey({ ...key, status: 'revoked', revoked_at: 1, version: 2 });
  assert.equal(await verdict(dir, secret), '401 invalid_api_key');
});

test('stale verdict: an account suspended after its key was remembered is refused at once (403)', async () => {
  const { dir, secret } = await directory();
  assert.equal(await verdict(dir, secret), 'ok key_m');
  await dir.putAccount({ id: 'acct_m', name: 'a', status: 'suspended', created_at: 0, version: 2 });
  assert.equal(await verdict(dir, secret), '403 account_suspended');
});

test('stale verdict: a key one byte away from a remembered one is its own key (401), in either order', async () => {
  const { dir, secret } = await directory();
  const last = secret.at(-1)!;
  const neighbour = secret.slice(0, -1) + (last === 'a' ? 'b' : 'a');
  assert.equal(await verdict(dir, neighbour), '401 invalid_api_key');
  assert.equal(await verdict(dir, secret), 'ok key_m');
  assert.equal(await verdict(dir, neighbour), '401 invalid_api_key');
});

test('stale verdict: the same secret under a rotated KEY_HASH_SECRET is not the remembered hash (401)', async () => {
  const { dir, secret } = await directory();
  assert.equal(await verdict(dir, secret), 'ok key_m');
  assert.equal(await verdict(dir, secret, 'server-key-rotated-fedcba9876543210'), '401 invalid_api_key');
  assert.equal(await verdict(dir, secret), 'ok key_m');
});

test('stale verdict: past the memo bound (4,097 other keys seen since) the key is still answered exactly', async () => {
  const { dir, secret } = await directory();
  assert.equal(await verdict(dir, secret), 'ok key_m');
  for (let i = 0; i < 4097; i++) assert.equal(await verdict(dir, generateSecret()), '401 invalid_api_key');
  assert.equal(await verdict(dir, secret), 'ok key_m');
});
