// Issue 8: every access-rule change made through control reaches every gateway within 1 s. Two
// gateway processes on one Redis (plus control and a ledger aggregator on Kafka); each rule is
// set, both gateways refuse with its exact status and code one second later, then it is lifted
// and both serve again one second later (the key cache TTL is 500 ms).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newAccount, startCluster, TWO_GATEWAYS, useCluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

const run = useCluster(() => startCluster(TWO_GATEWAYS));

const BODY = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 4, messages: [{ role: 'user', content: 'hi [[sim input=1 output=1]]' }] });
const SECOND = () => new Promise((r) => setTimeout(r, 1000));

test('each access rule set through control applies on both gateways within 1 s, and lifting it serves again', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const c = run.cluster;
  const acct = await newAccount(c, 1, 'access');
  /** status and error code of one request through each gateway */
  const both = async () => Promise.all(['gw1', 'gw2'].map(async (gw) => {
    const res = await fetch(`${c.url(gw)}/v1/messages`, {
      method: 'POST', body: BODY,
      headers: { 'x-api-key': acct.secret, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    });
    const json = await res.json() as { error?: { code: string } };
    return `${res.status} ${json.error?.code ?? 'ok'}`;
  }));
  assert.deepEqual(await both(), ['200 ok', '200 ok']);

  const rules: Array<[string, string, object, object, string]> = [
    ['key', acct.keyId, { status: 'disabled' }, { status: 'active' }, '401 invalid_api_key'],
    ['key', acct.keyId, { expires_at: '2020-01-01T00:00:00Z' }, { expires_at: null }, '401 key_expired'],
    ['key', acct.keyId, { ip_allowlist: ['192.0.2.0/24'] }, { ip_allowlist: [] }, '403 ip_not_allowed'],
    ['key', acct.keyId, { allowed_models: ['claude-sonnet-4-5'] }, { allowed_models: null }, '403 model_not_allowed'],
    ['account', acct.accountId, { status: 'suspended' }, { status: 'active' }, '403 account_suspended'],
    ['account', acct.accountId, { status: 'disabled' }, { status: 'active' }, '401 invalid_api_key'],
  ];
  for (const [kind, id, set, lift, refused] of rules) {
    const path = `/admin/v1/${kind === 'key' ? 'keys' : 'accounts'}/${id}`;
    assert.equal((await c.admin('PATCH', path, set)).status, 200, JSON.stringify(set));
    await SECOND();
    assert.deepEqual(await both(), [refused, refused], JSON.stringify(set));
    assert.equal((await c.admin('PATCH', path, lift)).status, 200, JSON.stringify(lift));
    await SECOND();
    assert.deepEqual(await both(), ['200 ok', '200 ok'], JSON.stringify(lift));
  }
});
