// Webhooks across processes (Kafka + Redis): the same refusal seen by two gateway processes is
// one delivery (claimed in Redis), and a Redis that lost this cluster's state gets its webhooks
// back from the warehouse with the rebuild. The webhook routes are served where the warehouse
// is readable: here the aggregator that owns chDB.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { Webhook } from 'standardwebhooks';
import { newAccount, startCluster, TWO_GATEWAYS, useCluster, type Cluster } from '../support/cluster.ts';
import { startReceiver, type Receiver } from '../../libs/webhooks/test/receiver.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

let rx: Receiver;
const SIM = { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user' as const, content: '[[sim input=10 output=5]]' }] };

// The receiver first (up before the cluster, closed after it).
before(async () => { rx = await startReceiver(); });
const run = useCluster(() => startCluster(TWO_GATEWAYS));
after(async () => { await rx.close(); });

interface Delivery { id: string; occurrence_id: string; state: string; attempts: number; last_status: number | null }

async function hook(c: Cluster, path: string, events: string[]) {
  const r = await c.admin<{ id: string; secret: string }>('POST', '/admin/v1/webhooks', { url: `${rx.url}/${path}`, events }, c.url('agg'));
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json;
}

async function settled(c: Cluster, id: string): Promise<Delivery[]> {
  return c.eventually(`deliveries of ${id}`, async () => {
    const r = await c.admin<{ data: Delivery[] }>('GET', `/admin/v1/webhooks/${id}/deliveries`, undefined, c.url('agg'));
    return r.json.data.length > 0 && r.json.data.every((d) => d.state !== 'pending') ? r.json.data : undefined;
  });
}

const refusedWith = (code: string) => (err: { status?: number; error?: { error?: { code?: string } } }) => err.status === 429 && err.error?.error?.code === code;

test('a spend limit and a plan window refusing on two gateway processes: one delivery each, signed', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const c = run.cluster;
  const spendHook = await hook(c, 'c-spend', ['spend_limit.reached']);
  const planHook = await hook(c, 'c-plan', ['plan_window.exhausted']);
  const a = await newAccount(c, 10);
  // 0.001 credits = 1,000 µc: every request's hold is larger, so every request is refused
  assert.equal((await c.admin('PATCH', `/admin/v1/keys/${a.keyId}`, { hourly_credits: '0.001' })).status, 200);
  const clients = ['gw1', 'gw2'].map((gw) => new Anthropic({ apiKey: a.secret, baseURL: c.url(gw), maxRetries: 0, logLevel: 'error' }));
  // the key change reaches both gateways within their key cache (500 ms)
  await c.eventually('the limit on both gateways', async () => {
    const r = await Promise.allSettled(clients.map((cl) => cl.messages.create(SIM)));
    return r.every((x) => x.status === 'rejected' && refusedWith('spend_limit_exceeded')(x.reason)) ? true : undefined;
  });
  await Promise.allSettled(Array.from({ length: 8 }, (_, i) => clients[i % 2]!.messages.create(SIM)));
  const ds = await settled(c, spendHook.id);
  assert.equal(ds.length, 1);
  assert.match(ds[0]!.occurrence_id, new RegExp(`^spend_limit\\.reached:${a.keyId}:key_hourly:\\d+:1000$`));
  const spendAt = rx.received.filter((r) => r.path === '/hook/c-spend');
  assert.equal(spendAt.length, 1);
  new Webhook(spendHook.secret).verify(spendAt[0]!.body, spendAt[0]!.headers as Record<string, string>);

  const plan = await c.admin<{ id: string }>('POST', '/admin/v1/plans', { name: 'one a minute', requests_per_minute: 1 });
  const b = await newAccount(c, 10);
  assert.equal((await c.admin('PATCH', `/admin/v1/keys/${b.keyId}`, { plan_id: plan.json.id })).status, 200);
  const bClients = ['gw1', 'gw2'].map((gw) => new Anthropic({ apiKey: b.secret, baseURL: c.url(gw), maxRetries: 0, logLevel: 'error' }));
  await c.eventually('the plan on both gateways', async () => {
    const r = await Promise.allSettled(bClients.map((cl) => cl.messages.create(SIM)));
    return r.every((x) => x.status === 'rejected' && refusedWith('rate_limit_exceeded')(x.reason)) ? true : undefined;
  });
  await Promise.allSettled(Array.from({ length: 8 }, (_, i) => bClients[i % 2]!.messages.create(SIM)));
  const pds = await settled(c, planHook.id);
  assert.equal(pds.length, 1);
  assert.match(pds[0]!.occurrence_id, new RegExp(`^plan_window\\.exhausted:${b.keyId}:requests_per_minute:\\d+$`));
  const planAt = rx.received.filter((r) => r.path === '/hook/c-plan');
  assert.equal(planAt.length, 1);
  new Webhook(planHook.secret).verify(planAt[0]!.body, planAt[0]!.headers as Record<string, string>);
});

test('this cluster\'s Redis state lost: the rebuild brings every webhook back from the warehouse', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const c = run.cluster;
  const h = await hook(c, 'c-rebuilt', ['event.quarantined']);
  // Only this cluster's own keys (its REDIS_PREFIX), as if its Redis had restarted empty.
  const redis = new Redis(c.env.REDIS_URL!, { maxRetriesPerRequest: 1 });
  try {
    const keys = await redis.keys(`${c.env.REDIS_PREFIX}*`);
    assert.ok(keys.includes(`${c.env.REDIS_PREFIX}webhooks`));
    await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
  // Gone from hot state (read by id: no cache): "does not exist" while the last presence check
  // is reused (250 ms), 503 once the loss is seen…
  assert.ok([404, 503].includes((await c.admin('GET', `/admin/v1/webhooks/${h.id}`, undefined, c.url('agg'))).status));
  // …until the warehouse owner's watch of the ready mark (every 1.5 s) finds the loss and
  // rebuilds (no event is needed; writes are refused with 503 while the state is lost).
  await c.eventually('the webhook back in Redis', async () => {
    const r = await c.admin<{ id: string; url: string }>('GET', `/admin/v1/webhooks/${h.id}`, undefined, c.url('agg'));
    return r.status === 200 && r.json.url === `${rx.url}/c-rebuilt` ? true : undefined;
  });
});
