// Kind: a loss of hot state (Redis restarted empty) just after the gateway last found it ready.
// A valid key's lookup then misses; the gateway used to reuse its last "ready" for 500 ms and
// answer 401 invalid_api_key for a key that exists (a breaker: 10 of 10, every time a bad key
// had been tried just before). A miss is now judged by a check begun once the miss was read:
// 503 state_unavailable. A bad key after the rebuild is still 401. Real Redis, the gateway app.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSecret, displayPrefix, hashSecret, RedisKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore } from '@tollgate/ledger';
import { deleteKeysUnder, testRedis } from '../../../test/support/redis.ts';
import { startGateway } from './support.ts';

const { redis, prefix } = await testRedis('auth-state-loss');
const KEY_HASH_SECRET = 'auth-state-loss-hash-secret-0123456789';

test('a loss just after a ready check: a valid key\'s miss is 503 state_unavailable, never 401; a bad key after the rebuild is 401', { skip: redis === undefined }, async (t) => {
  const balances = new RedisBalanceStore({ redis: redis!, prefix, requireReady: true });
  const keys = new RedisKeyDirectory({ redis: redis!, prefix });
  const stack = await startGateway({ balances, keys, keyHashSecret: KEY_HASH_SECRET });
  t.after(() => stack.close());
  const secret = generateSecret();
  const putCustomer = async () => {
    await keys.putAccount({ id: 'acct_loss', name: 'loss', status: 'active', created_at: 0, version: 1 });
    await keys.putKey({ id: 'key_loss', account_id: 'acct_loss', name: '', prefix: displayPrefix(secret), hash: hashSecret(secret, KEY_HASH_SECRET), status: 'active', created_at: 0, revoked_at: null, version: 1 });
  };
  await balances.load({ balances: new Map([['acct_loss', 10_000_000n]]), ledgerEntries: new Map() });
  await putCustomer();
  const status = async (key: string) => {
    const res = await fetch(`${stack.gatewayUrl}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi [[sim input=10 output=2]]' }] }),
    });
    const body = (await res.json()) as { error?: { code: string } };
    return `${res.status}${body.error ? ` ${body.error.code}` : ''}`;
  };
  assert.equal(await status(secret), '200');
  for (let round = 0; round < 5; round++) {
    // A bad key: the gateway checks the state and finds it ready.
    assert.equal(await status(generateSecret()), '401 invalid_api_key');
    // Redis loses everything at once, right after.
    await deleteKeysUnder(redis!, prefix);
    assert.equal(await status(secret), '503 state_unavailable', `round ${round}`);
    // Rebuilt: served again (the miss read while lost is read again), and a bad key is 401.
    await balances.load({ balances: new Map([['acct_loss', 10_000_000n]]), ledgerEntries: new Map() });
    await putCustomer();
    assert.equal(await status(secret), '200', `round ${round}`);
  }
});
