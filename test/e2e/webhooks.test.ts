// Issue 9, outcome 6: alerts by webhook, end to end on the embedded stack against a local
// receiver (node:http). SDK traffic against the simulator drives balance.low, spend limits and
// plan windows; a poison event drives event.quarantined. Every delivery is verified with the
// standardwebhooks library's own verify; amounts are exact micro-credits.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import type { AnyEvent } from '@tollgate/events';
import { Webhook } from 'standardwebhooks';
import { ADMIN_TOKEN, admin, customer, filesUnder, settledBalance, startLoggedProcess, startSimulator, startStack, type Stack } from '../support/tollgate.ts';
import { usageEvent } from '../support/events.ts';
import { startReceiver, type Received, type Receiver } from '../../libs/webhooks/test/receiver.ts';

const FINANCE_TOKEN = 'test-finance-token-0123456789';
// haiku-4-5: input 24, output 120 µc/token; [[sim input=10 output=5]] → 10×24 + 5×120 = 840 µc
const HAIKU_10_5 = 840n;
const SIM = { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user' as const, content: '[[sim input=10 output=5]]' }] };

let stack: Stack;
let rx: Receiver;
before(async () => {
  rx = await startReceiver();
  // LOW_BALANCE_CREDITS 0.9995 = 999,500 µc for accounts without their own threshold.
  stack = await startStack({ FINANCE_TOKEN, LOW_BALANCE_CREDITS: '0.9995', WEBHOOK_RETRY_BASE_MS: '20', WEBHOOK_MAX_ATTEMPTS: '4' });
});
after(async () => {
  await stack.close();
  await rx.close();
});

interface Created { id: string; url: string; events: string[]; description: string | null; secret: string; created_at: string }
interface Delivery { id: string; event_type: string; occurrence_id: string; state: string; attempts: number; last_status: number | null; last_error: string | null; delivered_at: string | null }

async function createHook(path: string, events: string[]): Promise<Created> {
  const r = await admin<Created>(stack.url, 'POST', '/admin/v1/webhooks', { url: `${rx.url}/${path}`, events, description: path });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json;
}

/** The webhook's deliveries once none is pending any more (all delivered or failed). */
async function settledDeliveries(id: string, atLeast = 1): Promise<Delivery[]> {
  for (let i = 0; i < 400; i++) {
    await stack.tollgate.drain();
    const r = await admin<{ data: Delivery[] }>(stack.url, 'GET', `/admin/v1/webhooks/${id}/deliveries`);
    if (r.json.data.length >= atLeast && r.json.data.every((d) => d.state !== 'pending')) return r.json.data;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`deliveries of ${id} did not settle`);
}

const at = (path: string): Received[] => rx.received.filter((r) => r.path === `/hook/${path}`);

/** Every request at `path` verified with the library (throws on a bad signature); the parsed bodies. */
function verified(path: string, secret: string): Array<{ id: string; type: string; created_at: string; data: Record<string, unknown> }> {
  return at(path).map((r) => new Webhook(secret).verify(r.body, r.headers as Record<string, string>) as { id: string; type: string; created_at: string; data: Record<string, unknown> });
}

describe('webhook admin API', () => {
  test('bad create bodies: 400 invalid_request naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{ events: ['balance.low'] }, 'url: '],
      [{ url: 'ftp://hooks.example.com/x', events: ['balance.low'] }, 'url: scheme must be http or https'],
      [{ url: 'hooks.example.com/x', events: ['balance.low'] }, 'url: must be an absolute URL'],
      [{ url: 'https://user:pw@hooks.example.com/x', events: ['balance.low'] }, 'url: must not carry a user name or password'],
      [{ url: 'https://hooks.example.com/x?token=abc', events: ['balance.low'] }, 'url: must not carry a credential'],
      [{ url: `https://hooks.example.com/${ADMIN_TOKEN}`, events: ['balance.low'] }, 'url: must not carry a credential'],
      [{ url: `https://hooks.example.com/${'a'.repeat(2040)}`, events: ['balance.low'] }, 'url: must be at most 2048 characters'],
      // credentials in every part of the URL, one rule (credentialInUrl of @tollgate/http)
      [{ url: 'https://hooks.example.com/cb#access_token=abc', events: ['balance.low'] }, 'url: must not carry a credential (a token, key or secret in its fragment (#…))'],
      [{ url: 'https://hooks.example.com/cb#token=', events: ['balance.low'] }, 'url: must not carry a credential (a token, key or secret in its fragment (#…))'],
      [{ url: 'https://hooks.example.com/cb#/cb?token=abc', events: ['balance.low'] }, 'url: must not carry a credential (a token, key or secret in its fragment (#…))'],
      [{ url: 'https://hooks.example.com/cb;token=abc', events: ['balance.low'] }, 'url: must not carry a credential (a token, key or secret in its path parameters (;name=value))'],
      [{ url: 'https://hooks.example.com/x?a=1;api_key=abc', events: ['balance.low'] }, 'url: must not carry a credential (a token, key or secret in its query)'],
      // what the URL parser would change silently, and what no receiver listens on
      [{ url: 'https://hooks.example.com/a\tb', events: ['balance.low'] }, 'url: must not contain tabs, line breaks or other control characters'],
      [{ url: 'https://hooks.example.com/a\nb', events: ['balance.low'] }, 'url: must not contain tabs, line breaks or other control characters'],
      [{ url: ' https://hooks.example.com/x', events: ['balance.low'] }, 'url: must not start or end with spaces'],
      [{ url: 'https://hooks.example.com:0/x', events: ['balance.low'] }, 'url: port 0 is not a port a receiver can listen on'],
      // 26 + 700 characters typed, 26 + 4,200 once each é is percent-encoded (%C3%A9)
      [{ url: `https://hooks.example.com/${'é'.repeat(700)}`, events: ['balance.low'] }, 'url: must be at most 2048 characters once normalised (4226: the parser percent-encodes what needs it)'],
      [{ url: 'https://hooks.example.com/x', events: [] }, 'events: must name at least one of balance.low, spend_limit.reached, plan_window.exhausted, event.quarantined'],
      [{ url: 'https://hooks.example.com/x', events: ['balance.low', 'balance.high'] }, 'events[1]: "balance.high" is not one of'],
      [{ url: 'https://hooks.example.com/x', events: 'balance.low' }, 'events: '],
      [{ url: 'https://hooks.example.com/x', events: ['balance.low'], secret: 'mine' }, 'secret: unknown field'],
      [{ url: 'https://hooks.example.com/x', events: ['balance.low'], description: 'a\u0007b' }, 'description: '],
      [[], 'body: must be a JSON object'],
    ];
    for (const [body, start] of cases) {
      const r = await admin<{ error: { type: string; code: string; message: string } }>(stack.url, 'POST', '/admin/v1/webhooks', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.ok(r.json.error.message.startsWith(start), `${JSON.stringify(body).slice(0, 80)} → ${r.json.error.message}`);
    }
    assert.equal((await admin(stack.url, 'GET', '/admin/v1/webhooks?verbose=1')).status, 400);
    assert.equal((await admin(stack.url, 'GET', '/admin/v1/webhooks/wh_nope')).status, 404);
  });

  test('the secret is shown once at create: never by GET, list or deliveries; stored only sealed; the finance token is refused', async () => {
    const h = await createHook('secret', ['event.quarantined']);
    assert.match(h.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    assert.deepEqual(Object.keys(h).sort(), ['created_at', 'description', 'events', 'id', 'secret', 'url']);
    const one = await admin(stack.url, 'GET', `/admin/v1/webhooks/${h.id}`);
    assert.deepEqual(one.json, { id: h.id, url: `${rx.url}/secret`, events: ['event.quarantined'], description: 'secret', created_at: h.created_at });
    const list = await admin<{ data: unknown[] }>(stack.url, 'GET', '/admin/v1/webhooks');
    const random = h.secret.slice('whsec_'.length);
    for (const text of [JSON.stringify(one.json), JSON.stringify(list.json), JSON.stringify((await admin(stack.url, 'GET', `/admin/v1/webhooks/${h.id}/deliveries`)).json)]) {
      assert.ok(!text.includes(random.slice(0, 16)), text);
    }
    const stored = await stack.tollgate.warehouse.select(`SELECT secret_sealed FROM ${stack.tollgate.warehouse.tables.webhooks} FINAL WHERE id = {id:String}`, { id: h.id });
    assert.equal(stored.length, 1);
    assert.match(String(stored[0]!['secret_sealed']), /^sealed1\./);
    assert.ok(!String(stored[0]!['secret_sealed']).includes(random.slice(0, 16)));
    const finance = await fetch(`${stack.url}/admin/v1/webhooks`, { headers: { authorization: `Bearer ${FINANCE_TOKEN}` } });
    assert.equal(finance.status, 403);
    assert.equal((await admin(stack.url, 'DELETE', `/admin/v1/webhooks/${h.id}`)).json.deleted, true);
    assert.equal((await admin(stack.url, 'GET', `/admin/v1/webhooks/${h.id}`)).status, 404);
  });
});

describe('alerts end to end', () => {
  test('balance.low: a debit crossing the account threshold alerts once; not again below it; again after a top-up lifts it and it falls', async () => {
    const h = await createHook('low', ['balance.low']);
    const c = await customer(stack.url, 1, 'low-own'); // 1,000,000 µc
    // own threshold 0.999 credits = 999,000 µc
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { low_balance_credits: '0.999' })).status, 200);
    await c.client.messages.create(SIM); // 1,000,000 − 840 = 999,160 ≥ 999,000: nothing
    await c.client.messages.create(SIM); // 999,160 − 840 = 998,320 < 999,000: alert
    await c.client.messages.create(SIM); // 997,480: already below, nothing
    assert.equal(await settledBalance(stack, c.accountId), 1_000_000n - 3n * HAIKU_10_5);
    // +0.00184 credits = 1,840 µc → 999,320 ≥ 999,000 (a rise alerts nothing)
    await admin(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: '0.00184', reference: 'lift' });
    await c.client.messages.create(SIM); // 999,320 − 840 = 998,480 < 999,000: alert again
    const ds = await settledDeliveries(h.id, 2);
    const bodies = verified('low', h.secret).filter((b) => b.data.account_id === c.accountId);
    assert.equal(bodies.length, 2);
    assert.deepEqual(bodies.map((b) => [b.type, b.data.balance_micro_credits, b.data.balance_credits, b.data.threshold_micro_credits, b.data.threshold_credits, b.data.debit_micro_credits]), [
      ['balance.low', '998320', '0.99832', '999000', '0.999', '840'],
      ['balance.low', '998480', '0.99848', '999000', '0.999', '840'],
    ]);
    const mine = ds.filter((d) => bodies.some((b) => b.id === d.id));
    assert.deepEqual(mine.map((d) => [d.event_type, d.state, d.attempts, d.last_status]), [['balance.low', 'delivered', 1, 200], ['balance.low', 'delivered', 1, 200]]);
    for (const b of bodies) assert.equal(at('low').find((r) => r.headers['webhook-id'] === b.id)!.headers['webhook-id'], b.id);
  });

  test('balance.low from LOW_BALANCE_CREDITS for an account without its own threshold; the same usage event redelivered alerts once', async () => {
    const h = await createHook('low-default', ['balance.low']);
    const c = await customer(stack.url, 1, 'low-default'); // 1,000,000 µc; default threshold 999,500
    await c.client.messages.create(SIM); // 999,160 < 999,500: alert
    // A usage event delivered twice (a producer-side duplicate): applied once, one alert.
    const ev = usageEvent('usage-redelivered-1', c.accountId, { cost_micros: '1000' });
    await stack.tollgate.log.publish('usage', [{ event: ev as AnyEvent }]);
    await stack.tollgate.log.publish('usage', [{ event: ev as AnyEvent }]);
    assert.equal(await settledBalance(stack, c.accountId), 1_000_000n - HAIKU_10_5 - 1000n); // 998,160: no new crossing
    const top = await admin(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: '0.002', reference: 'lift' }); // 1,000,160
    assert.equal(top.status, 201);
    const ev2 = usageEvent('usage-redelivered-2', c.accountId, { cost_micros: '1000' }); // 999,160: crosses
    for (let i = 0; i < 3; i++) await stack.tollgate.log.publish('usage', [{ event: ev2 as AnyEvent }]);
    assert.equal(await settledBalance(stack, c.accountId), 999_160n);
    await settledDeliveries(h.id, 2);
    const bodies = verified('low-default', h.secret).filter((b) => b.data.account_id === c.accountId);
    assert.deepEqual(bodies.map((b) => [b.data.balance_micro_credits, b.data.threshold_micro_credits, b.data.usage_event_id]), [
      ['999160', '999500', bodies[0]!.data.usage_event_id],
      ['999160', '999500', 'usage-redelivered-2'],
    ]);
    assert.match(String(bodies[0]!.data.usage_event_id), /^req_/);
  });

  test('spend_limit.reached: a key hourly limit refusing twice alerts once per limit and window', async () => {
    const h = await createHook('spend', ['spend_limit.reached']);
    const c = await customer(stack.url, 10, 'spend');
    // 0.001 credits = 1,000 µc: below any hold of a haiku request, so the first request is refused
    await admin(stack.url, 'PATCH', `/admin/v1/keys/${c.keyId}`, { hourly_credits: '0.001' });
    for (let i = 0; i < 2; i++) {
      await assert.rejects(c.client.messages.create(SIM), (err: { status?: number; error?: { error?: { code?: string } } }) => err.status === 429 && err.error?.error?.code === 'spend_limit_exceeded');
    }
    const [d] = await settledDeliveries(h.id);
    const bodies = verified('spend', h.secret);
    assert.equal(bodies.length, 1);
    const data = bodies[0]!.data;
    const resets = Date.parse(String(data.resets_at));
    assert.equal(resets % 3_600_000, 0);
    const start = resets - 3_600_000;
    assert.deepEqual(data, {
      account_id: c.accountId, key_id: c.keyId, limit: 'key_hourly', limit_credits: '0.001', limit_micro_credits: '1000',
      used_credits: '0', used_micro_credits: '0', window_start: new Date(start).toISOString(), resets_at: new Date(resets).toISOString(),
    });
    assert.equal(d!.occurrence_id, `spend_limit.reached:${c.keyId}:key_hourly:${start}:1000`);
  });

  test('plan_window.exhausted: a requests_per_minute window refusing twice alerts once per key and window', async () => {
    const h = await createHook('plan', ['plan_window.exhausted']);
    const plan = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/plans', { name: 'one-a-minute', requests_per_minute: 1 });
    const c = await customer(stack.url, 10, 'plan');
    await admin(stack.url, 'PATCH', `/admin/v1/keys/${c.keyId}`, { plan_id: plan.json.id });
    await c.client.messages.create(SIM);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(c.client.messages.create(SIM), (err: { status?: number; error?: { error?: { code?: string } } }) => err.status === 429 && err.error?.error?.code === 'rate_limit_exceeded');
    }
    await settledDeliveries(h.id);
    const bodies = verified('plan', h.secret);
    assert.equal(bodies.length, 1);
    assert.equal(bodies[0]!.type, 'plan_window.exhausted');
    assert.deepEqual({ ...bodies[0]!.data, resets_at: undefined }, { account_id: c.accountId, key_id: c.keyId, window: 'requests_per_minute', resets_at: undefined });
    assert.match(String(bodies[0]!.data.resets_at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
  });

  test('event.quarantined: a poison event quarantined by the ledger and the warehouse groups is one delivery per group', async () => {
    const h = await createHook('poison', ['event.quarantined']);
    const c = await customer(stack.url, 1, 'poison');
    await stack.tollgate.log.publish('usage', [{ event: usageEvent('poison-negative-tokens', c.accountId, { input_tokens: -1, cost_micros: '7' }) as AnyEvent }]);
    await stack.tollgate.drain();
    await settledDeliveries(h.id, 2);
    const bodies = verified('poison', h.secret);
    assert.deepEqual(bodies.map((b) => [b.type, b.data.group, b.data.event_id, b.data.topic]).sort(), [
      ['event.quarantined', 'ledger', 'poison-negative-tokens', 'usage'],
      ['event.quarantined', 'warehouse', 'poison-negative-tokens', 'usage'],
    ]);
    assert.equal(await settledBalance(stack, c.accountId), 1_000_000n);
  });
});

describe('delivery', () => {
  test('receiver answers 500 then 200: retried with the same webhook-id and body, both signed; a 400 is not retried', async () => {
    const h = await createHook('retry', ['event.quarantined']);
    rx.answersAt['/hook/retry'] = [500];
    await stack.tollgate.log.publish('usage', [{ event: { type: 'usage', event_id: 'poison-missing-fields' } as unknown as AnyEvent }]);
    const ds = await settledDeliveries(h.id, 2);
    const got = at('retry');
    // two groups (ledger, warehouse) quarantine it: one delivery each; the first attempt overall got the 500
    assert.equal(got.length, 3);
    const byId = new Map<string, Received[]>();
    for (const g of got) byId.set(String(g.headers['webhook-id']), [...(byId.get(String(g.headers['webhook-id'])) ?? []), g]);
    const retried = [...byId.values()].find((v) => v.length === 2)!;
    assert.equal(retried[0]!.body, retried[1]!.body);
    for (const g of got) new Webhook(h.secret).verify(g.body, g.headers as Record<string, string>);
    assert.deepEqual(ds.map((d) => [d.state, d.attempts, d.last_status]).sort(), [['delivered', 1, 200], ['delivered', 2, 200]]);

    const h2 = await createHook('reject', ['event.quarantined']);
    rx.answersAt['/hook/reject'] = [400, 400];
    await stack.tollgate.log.publish('usage', [{ event: { type: 'usage', event_id: 'poison-missing-fields-2' } as unknown as AnyEvent }]);
    const ds2 = await settledDeliveries(h2.id, 2);
    assert.deepEqual(ds2.map((d) => [d.state, d.attempts, d.last_status, d.last_error]), [['failed', 1, 400, 'HTTP 400'], ['failed', 1, 400, 'HTTP 400']]);
    assert.deepEqual(ds2.map((d) => d.occurrence_id).sort(), ['event.quarantined:ledger:poison-missing-fields-2', 'event.quarantined:warehouse:poison-missing-fields-2']);
    assert.equal(at('reject').length, 2); // one attempt each: a 400 is not retried
  });
});

describe('restart', () => {
  test('webhooks survive a restart (loaded from the warehouse) and still sign with the secret shown at create; deleted ones stay deleted', async () => {
    const h = await createHook('survivor', ['event.quarantined']);
    const gone = await createHook('gone', ['event.quarantined']);
    await admin(stack.url, 'DELETE', `/admin/v1/webhooks/${gone.id}`);
    await stack.restart();
    const list = await admin<{ data: Array<{ id: string }> }>(stack.url, 'GET', '/admin/v1/webhooks');
    assert.ok(list.json.data.some((w) => w.id === h.id));
    assert.ok(!list.json.data.some((w) => w.id === gone.id));
    await stack.tollgate.log.publish('usage', [{ event: { type: 'usage', event_id: 'poison-after-restart' } as unknown as AnyEvent }]);
    await settledDeliveries(h.id, 2);
    const bodies = verified('survivor', h.secret);
    assert.deepEqual(bodies.map((b) => b.data.group).sort(), ['ledger', 'warehouse']);
    assert.equal(at('gone').length, 0);
  });
});

describe('the signing secret in a running program', () => {
  test('never in a log line (trace level, through a retried and a refused delivery) nor in the warehouse files', async () => {
    const { sim, simUrl } = await startSimulator();
    let proc: Awaited<ReturnType<typeof startLoggedProcess>> | undefined;
    try {
      proc = await startLoggedProcess('webhook-secret', { UPSTREAM_URL: simUrl, LOW_BALANCE_CREDITS: '0.9995', WEBHOOK_RETRY_BASE_MS: '20' });
      const { url } = proc;
      const h = await admin<Created>(url, 'POST', '/admin/v1/webhooks', { url: `${rx.url}/logged`, events: ['balance.low'] });
      assert.equal(h.status, 201);
      rx.answersAt['/hook/logged'] = [500, 400];
      const account = await admin<{ id: string }>(url, 'POST', '/admin/v1/accounts', { name: 'logged' });
      const key = await admin<{ key: string }>(url, 'POST', `/admin/v1/accounts/${account.json.id}/keys`, {});
      await admin(url, 'POST', `/admin/v1/accounts/${account.json.id}/credits`, { credits: 1, reference: 'start' });
      const client = new Anthropic({ apiKey: key.json.key, baseURL: url, maxRetries: 0, logLevel: 'error' });
      await client.messages.create(SIM); // 1,000,000 − 840 = 999,160 < 999,500: balance.low
      let ds: Delivery[] = [];
      for (let i = 0; i < 400; i++) {
        ds = (await admin<{ data: Delivery[] }>(url, 'GET', `/admin/v1/webhooks/${h.json.id}/deliveries`)).json.data;
        if (ds.length === 1 && ds[0]!.state !== 'pending') break;
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.deepEqual(ds.map((d) => [d.state, d.attempts, d.last_status]), [['failed', 2, 400]]);
      assert.equal(at('logged').length, 2);
    } finally {
      await proc?.stop();
      await sim.close();
    }
    const logs = proc.logs();
    assert.ok(logs.includes('webhook delivery failed'), 'the failed delivery was logged');
    assert.ok(logs.includes('"level":10') || logs.includes('"level":20') || logs.includes('incoming request'), `logs were written at a verbose level: ${logs.slice(0, 600)}`);
    const created = logs.match(/whsec_[A-Za-z0-9+/=]+/);
    assert.equal(created, null, `a signing secret was logged: ${created?.[0]}`);
    const files = filesUnder(join(proc.dataDir, 'chdb'));
    assert.ok(files.length > 0);
    for (const f of files) assert.ok(!readFileSync(f).includes(Buffer.from('whsec_')), `a signing secret in ${f}`);
  });
});
