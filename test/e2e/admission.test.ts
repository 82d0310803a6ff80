// Issue 8, the admission policy end to end: the official SDK / exact bytes over fetch → Tollgate
// → the simulator. Embedded (memory store) and distributed (two gateway processes on one Redis,
// Kafka ledger). Prices (cny, µc per token): haiku-4-5 output 120, cache write 1 h 48 (the
// dearest input-side class a hold prices every input token at); opus-4-6 (what claude-opus-*
// maps to) input 300, output 1,500, cache write 1 h 600, ×1.1 us_geo while the geo is unknown.
// A body's input bound here is its byte length (plain UTF-8 text, one token per byte at most).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { admin, customer, settledBalance, simRequests, startStack, type Stack } from '../support/tollgate.ts';
import { newAccount, startCluster, TWO_GATEWAYS, type Cluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

/**
 * A haiku request whose upstream usage equals its hold: 134 bytes → input bound 134 tokens,
 * hold 134 × 48 + 1,000 × 120 = 6,432 + 120,000 = 126,432 µc; the simulator reports 134 cache
 * 1 h write tokens and 1,000 output tokens, which cost exactly the same 126,432 µc.
 */
const WORST = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 1000, messages: [{ role: 'user', content: '[[sim input=0 cache_write_1h=134 output=1000]]' }] });
const WORST_MICROS = 126_432n;

/** Claude Code's shape: an Opus id the catalog maps, a 63 KB system prompt, a large max_tokens. */
function claudeCode(maxTokens: number): string {
  return JSON.stringify({ model: 'claude-opus-4-7', max_tokens: maxTokens, system: 'You are Claude Code. '.repeat(3000),
    messages: [{ role: 'user', content: 'fix the bug [[sim input=20000 output=300]]' }] });
}

const post = (url: string, secret: string, body: string) =>
  fetch(`${url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': secret }, body });

async function errorOf(res: Response): Promise<{ type: string; code: string; message: string }> {
  const json = (await res.json()) as { error: { type: string; code: string; message: string } };
  return json.error;
}

describe('embedded', () => {
  let stack: Stack;
  before(async () => { stack = await startStack({ KEY_MAX_CONCURRENT_REQUESTS: '5000', ACCOUNT_MAX_CONCURRENT_REQUESTS: '5000' }); });
  after(async () => { await stack?.close(); });

  test('200 concurrent worst-case requests on credit for exactly 20 (strict): 20 served, 180 refused 402 stating the worst case, balance exactly 0', async () => {
    const c = await customer(stack.url, '2.52864'); // 20 × 126,432 µc
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { admission_policy: 'strict' })).status, 200);
    const responses = await Promise.all(Array.from({ length: 200 }, () => post(stack.url, c.secret, WORST)));
    const statuses = responses.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 20);
    assert.equal(statuses.filter((s) => s === 402).length, 180);
    for (const r of responses.filter((x) => x.status === 402)) {
      const e = await errorOf(r);
      assert.equal(e.type, 'billing_error');
      assert.equal(e.code, 'insufficient_credits');
      assert.match(e.message, /^Your credit balance is too low for this request: it needs up to 0\.126432 credits \(its worst case at max_tokens 1000\) and \d+(\.\d+)? credits are available$/);
    }
    await Promise.all(responses.filter((x) => x.status === 200).map((r) => r.arrayBuffer()));
    assert.equal(await settledBalance(stack, c.accountId), 0n);
    const last = await post(stack.url, c.secret, WORST);
    assert.equal(last.status, 402);
    assert.equal((await errorOf(last)).message,
      'Your credit balance is too low for this request: it needs up to 0.126432 credits (its worst case at max_tokens 1000) and 0 credits are available');
  });

  for (const maxTokens of [64_000, 128_000]) {
    test(`Claude Code's default request (opus via mapping, max_tokens ${maxTokens}, 63 KB) on 100 credits: clamped, served, never below zero`, async () => {
      const c = await customer(stack.url, 100);
      const body = claudeCode(maxTokens);
      // input bound = body bytes: 63,142 (64,000) / 63,143 (128,000) tokens × 660 µc = 41,673,720 / 41,674,380 µc;
      // worst case + 64,000 × 1,650 = 147,273,720 µc (147.27 credits) / + 128,000 × 1,650 = 252,874,380 µc:
      // both above 100 credits. Clamp: (100,000,000 − base) / 1,650 = 35,349.26… → 35,349 / 35,348.86… → 35,348.
      const clamped = maxTokens === 64_000 ? 35_349 : 35_348;
      assert.equal(Buffer.byteLength(body), maxTokens === 64_000 ? 63_142 : 63_143);
      const res = await post(stack.url, c.secret, body);
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(res.headers.get('tollgate-max-tokens-clamped'), `${maxTokens}->${clamped}`);
      const msg = (await res.json()) as { model: string; usage: { input_tokens: number; output_tokens: number } };
      assert.deepEqual([msg.usage.input_tokens, msg.usage.output_tokens], [20_000, 300]);
      const [sent] = await simRequests(stack.simUrl, 1);
      assert.equal(sent!.body.max_tokens, clamped);
      assert.equal(sent!.body.model, 'claude-opus-4-6');
      // 20,000 × 300 + 300 × 1,500 = 6,450,000 µc (the response names no geo: no us_geo factor)
      assert.equal(await settledBalance(stack, c.accountId), 100_000_000n - 6_450_000n);
    });
  }

  test('strict refuses Claude Code\'s request on 100 credits with 402 stating its worst case and what is available', async () => {
    const c = await customer(stack.url, 100);
    await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { admission_policy: 'strict' });
    const res = await post(stack.url, c.secret, claudeCode(64_000));
    assert.equal(res.status, 402);
    assert.deepEqual(await errorOf(res), { type: 'billing_error', code: 'insufficient_credits',
      message: 'Your credit balance is too low for this request: it needs up to 147.27372 credits (its worst case at max_tokens 64000) and 100 credits are available' });
  });

  test('clamp below the floor is refused: 402 names the hold at the floor', async () => {
    // base 41,673,720 + 1,024 × 1,650 = 43,363,320 µc at the floor; 43 credits are not enough
    const c = await customer(stack.url, 43);
    const res = await post(stack.url, c.secret, claudeCode(64_000));
    assert.equal(res.status, 402);
    assert.equal((await errorOf(res)).message,
      'Your credit balance is too low for this request: it needs up to 43.36332 credits (its worst case even at max_tokens 1024, the least this gateway sends) and 43 credits are available');
  });

  test('overdraft is the only way below zero, and only as far as it allows', async () => {
    // 0.1 credits + 0.05 overdraft = 150,000 µc ≥ one 126,432 µc worst case; billed 126,432 → −26,432 µc
    const c = await customer(stack.url, '0.1');
    await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { admission_policy: 'strict', overdraft_credits: '0.05' });
    const first = await post(stack.url, c.secret, WORST);
    assert.equal(first.status, 200);
    await first.arrayBuffer();
    assert.equal(await settledBalance(stack, c.accountId), -26_432n);
    const second = await post(stack.url, c.secret, WORST);
    assert.equal(second.status, 402);
    assert.equal(await settledBalance(stack, c.accountId), -26_432n);
  });

  test('1,000 concurrent requests against a key\'s hourly spend limit: exactly what fits is served, the rest 429 billing_error naming the window', async () => {
    const c = await customer(stack.url, 100);
    await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { admission_policy: 'strict' });
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/keys/${c.keyId}`, { hourly_credits: '1' })).status, 200);
    // ⌊1,000,000 / 126,432⌋ = 7 requests (885,024 µc); the 8th would make 1,011,456 > 1,000,000
    const sentAt = Date.now();
    const responses = await Promise.all(Array.from({ length: 1_000 }, () => post(stack.url, c.secret, WORST)));
    assert.equal(responses.filter((r) => r.status === 200).length, 7);
    const refused = responses.filter((r) => r.status === 429);
    assert.equal(refused.length, 993);
    const hourEnd = Math.ceil((sentAt + 1) / 3_600_000) * 3_600_000;
    const e = await errorOf(refused[0]!);
    assert.equal(e.type, 'billing_error');
    assert.equal(e.code, 'spend_limit_exceeded');
    assert.match(e.message, /^This request would exceed this key's hourly spend limit \(key_hourly\) of 1 credits: 0\.\d+ credits are spent or held and the request needs up to 0\.126432 \(its worst case at max_tokens 1000\); it resets at \d{4}-\d\d-\d\dT\d\d:00:00\.000Z$/);
    assert.ok(Number(refused[0]!.headers.get('retry-after')) > 0);
    assert.ok(Number(refused[0]!.headers.get('retry-after')) <= Math.ceil((hourEnd - sentAt) / 1000), `retry-after ${refused[0]!.headers.get('retry-after')} vs ${hourEnd - sentAt} ms`);
    await Promise.all(responses.map((r) => r.bodyUsed ? undefined : r.arrayBuffer()));
    assert.equal(await settledBalance(stack, c.accountId), 100_000_000n - 7n * WORST_MICROS);
  });

  test('a spend limit removed and set again counts from the moment it is set again: what its first setting counted is not counted (key total, account daily)', async () => {
    for (const [path, field, window, owner] of [['keys', 'total_credits', 'key_total', 'key'], ['accounts', 'daily_credits', 'account_daily', 'account']] as const) {
      const c = await customer(stack.url, 100);
      await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { admission_policy: 'strict' });
      const target = `/admin/v1/${path}/${path === 'keys' ? c.keyId : c.accountId}`;
      const served = async () => {
        const r = await post(stack.url, c.secret, WORST);
        await r.arrayBuffer();
        return r.status;
      };
      assert.equal((await admin(stack.url, 'PATCH', target, { [field]: '0.2' })).status, 200);
      assert.equal(await served(), 200, `${window}: under the first setting`);
      assert.equal((await admin(stack.url, 'PATCH', target, { [field]: null })).status, 200);
      assert.equal(await served(), 200, `${window}: no limit`);
      // set again: 0.2 credits of headroom, the whole of it (0.126432 fits, a second does not)
      assert.equal((await admin(stack.url, 'PATCH', target, { [field]: '0.2' })).status, 200);
      assert.equal(await served(), 200, `${window}: set again, the first request fits`);
      const refused = await post(stack.url, c.secret, WORST);
      assert.equal(refused.status, 429, window);
      assert.match((await errorOf(refused)).message, new RegExp(`^This request would exceed this ${owner}'s .*\\(${window}\\) of 0\\.2 credits: 0\\.126432 credits are spent or held and the request needs up to 0\\.126432 `));
      // a changed limit keeps its count: 0.3 leaves 0.173568, one more fits
      assert.equal((await admin(stack.url, 'PATCH', target, { [field]: '0.3' })).status, 200);
      assert.equal(await served(), 200, `${window}: raised`);
      assert.equal(await served(), 429, `${window}: raised, then full`);
      assert.equal(await settledBalance(stack, c.accountId), 100_000_000n - 4n * WORST_MICROS);
    }
  });
});

describe('distributed: two gateways on one Redis', () => {
  let cluster: Cluster | undefined;
  let stop: (() => Promise<void>) | undefined;
  before(async () => {
    const started = await startCluster(TWO_GATEWAYS, { KEY_MAX_CONCURRENT_REQUESTS: '5000', ACCOUNT_MAX_CONCURRENT_REQUESTS: '5000' });
    cluster = started?.cluster;
    stop = started?.close;
  });
  after(async () => { await stop?.(); });

  async function account(c: Cluster, micros: bigint, patch: Record<string, unknown>) {
    const acct = await newAccount(c, `${micros / 1_000_000n}.${(micros % 1_000_000n).toString().padStart(6, '0')}`, 'admission');
    assert.equal((await c.admin('PATCH', `/admin/v1/accounts/${acct.accountId}`, patch)).status, 200);
    return acct;
  }

  async function settled(c: Cluster, accountId: string, expected: bigint) {
    await c.eventually('settled', async () => {
      const v = await c.admin<{ held_credits: number; balance_micro_credits: string }>('GET', `/admin/v1/accounts/${accountId}`);
      return v.json.held_credits === 0 && BigInt(v.json.balance_micro_credits) === expected ? true : undefined;
    });
  }

  test('200 concurrent worst-case requests through two gateways on credit for exactly 20: 20 served, balance exactly 0', async (t) => {
    if (!cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = cluster;
    const a = await account(c, 20n * WORST_MICROS, { admission_policy: 'strict' });
    await new Promise((r) => setTimeout(r, 1_100)); // the policy reaches both gateways within 1 s
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => post(c.url(i % 2 ? 'gw2' : 'gw1'), a.secret, WORST)));
    assert.equal(responses.filter((r) => r.status === 200).length, 20);
    assert.equal(responses.filter((r) => r.status === 402).length, 180);
    await Promise.all(responses.map((r) => r.arrayBuffer()));
    await settled(c, a.accountId, 0n);
  });

  test('a key\'s hourly spend limit holds exactly across two gateways: 7 of 300 served', async (t) => {
    if (!cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = cluster;
    const a = await account(c, 100_000_000n, { admission_policy: 'strict' });
    assert.equal((await c.admin('PATCH', `/admin/v1/keys/${a.keyId}`, { hourly_credits: '1' })).status, 200);
    await new Promise((r) => setTimeout(r, 1_100));
    const responses = await Promise.all(Array.from({ length: 300 }, (_, i) => post(c.url(i % 2 ? 'gw2' : 'gw1'), a.secret, WORST)));
    assert.equal(responses.filter((r) => r.status === 200).length, 7);
    assert.equal(responses.filter((r) => r.status === 429).length, 293);
    await Promise.all(responses.map((r) => r.arrayBuffer()));
    await settled(c, a.accountId, 100_000_000n - 7n * WORST_MICROS);
  });

  test('clamp through a gateway on Redis: Claude Code\'s request on 100 credits is clamped to 35,349 tokens', async (t) => {
    if (!cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = cluster;
    const a = await account(c, 100_000_000n, {});
    const res = await post(c.url('gw2'), a.secret, claudeCode(64_000));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('tollgate-max-tokens-clamped'), '64000->35349');
    await res.arrayBuffer();
    await settled(c, a.accountId, 100_000_000n - 6_450_000n);
  });
});
