// Issue 6, items 2 and 4 through the distributed deployment: gateway, aggregator (ledger and
// warehouse) and control as separate processes on real Kafka and Redis, the simulator upstream.
// Clients leave while waiting for upstream headers (stream and JSON) and mid-stream; one upstream
// reports a lower final count. Each is billed as the upstream bills, once, and the Redis
// limiter (RATE_LIMIT_CONCURRENT=2) and the holds are free afterwards. Amounts by hand from the
// CNY catalog: sonnet-4-5 input 72, output 360, cache read 7.2 µc per token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Cluster, newAccount } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS, requireKafka, requireRedis } from '../support/services.ts';
import { startSimulator, UPSTREAM_KEY } from '../support/tollgate.ts';
import { requestUntil, upstreamSaw } from '../support/leaving-client.ts';
import { flatUsage } from '../support/events.ts';
import type { UsageEvent } from '@tollgate/events';

let cluster: Cluster | undefined;
let closeSim: (() => Promise<void>) | undefined;
let simUrl = '';

before(async () => {
  const t = { skip: (msg?: string) => { process.stderr.write(`${msg ?? 'skipped'}\n`); } };
  const [kafka, redis] = [await requireKafka(t), await requireRedis(t)];
  if (!kafka || !redis) return;
  const sim = await startSimulator();
  simUrl = sim.simUrl;
  closeSim = () => sim.sim.close();
  cluster = new Cluster({ kafka, redis, upstreamUrl: simUrl, upstreamKey: UPSTREAM_KEY, extra: { RATE_LIMIT_CONCURRENT: '2' } });
  await cluster.add('agg1', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } });
  await cluster.add('control', { roles: 'control' });
  await cluster.add('gw1', { roles: 'gateway' });
});

after(async () => {
  await cluster?.stopAndRemove();
  await closeSim?.();
});

// input 800 / output 120: 800×72 + 120×360 = 57,600 + 43,200
const BILLED = 100_800n;
const body = (text: string, stream: boolean) =>
  JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 1024, stream, messages: [{ role: 'user', content: text }] });

interface StoredEvent { cost_micros: string; status: string; anomalies?: string[] }

test('distributed: clients leave waiting for headers (stream, JSON) and mid-stream; a lower final count; each billed once, exactly, slots freed', async (t) => {
  if (!cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const c = cluster;
  const acct = await newAccount(c, 10);
  const gw = c.url('gw1');

  const settled = async (want: bigint) => c.eventually(`balance settled at ${want}`, async () => {
    const v = await c.admin<{ held_credits: number; balance_micro_credits: string }>('GET', `/admin/v1/accounts/${acct.accountId}`);
    const bal = BigInt(v.json.balance_micro_credits);
    return v.json.held_credits === 0 && bal === want ? bal : undefined;
  }, 30_000);
  const leaveWhenSeen = async (marker: string, text: string, stream: boolean) => {
    const r = requestUntil(gw, acct.secret, body(`${marker} ${text}`, stream), 'read', () => false);
    await upstreamSaw(simUrl, marker);
    r.abort();
    await r.done;
  };
  await leaveWhenSeen('cl-headers', '[[sim input=800 output=120 latency_ms=1500]]', true);
  await leaveWhenSeen('cl-json', '[[sim input=800 output=120 latency_ms=1500]]', false);
  // Both run on to their upstream's end after their clients left, holding the key's two slots
  // until then; once nothing is held, both are billed and their slots are free.
  assert.equal(await settled(10_000_000n - 2n * BILLED), 10_000_000n - 2n * BILLED);
  const mid = requestUntil(gw, acct.secret, body('cl-mid [[sim input=800 output=120 tps=150]]', true), 'read',
    (text) => text.includes('event: content_block_delta'));
  const midId = await mid.done;
  assert.ok(midId, 'the mid-stream client got headers');

  // item 6 through the cluster: 1200×72 + 3000×7.2 + 50×360 = 86,400 + 21,600 + 18,000
  const lower = await fetch(`${gw}/v1/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': acct.secret },
    body: body('cl-lower [[sim input=1200 cache_read=3000 output=50 sse=delta_lower]]', true),
  });
  assert.equal(lower.status, 200);
  const lowerId = lower.headers.get('request-id')!;
  await lower.text();

  assert.equal(await settled(10_000_000n - 3n * BILLED - 126_000n), 10_000_000n - 3n * BILLED - 126_000n);
  // RATE_LIMIT_CONCURRENT=2 in Redis: a slot leaked by any request above would refuse one of these.
  const client = new Anthropic({ apiKey: acct.secret, baseURL: gw, maxRetries: 0, logLevel: 'error' });
  await Promise.all([1, 2].map((i) => client.messages.create({
    model: 'claude-sonnet-4-5', max_tokens: 1024, messages: [{ role: 'user', content: `cl-after-${i} [[sim input=800 output=120]]` }],
  })));

  const expected = 10_000_000n - 5n * BILLED - 126_000n;
  assert.equal(await settled(expected), expected);

  const agg = c.url('agg1');
  // exactly one event per request: six requests, six ids
  const ids = await c.eventually('all six events warehoused', async () => {
    const r = await c.admin<{ data: Array<{ event_id: string }> }>('GET', `/admin/v1/usage/events?account_id=${acct.accountId}&limit=1000`, undefined, agg);
    return r.json.data.length >= 6 ? r.json.data.map((e) => e.event_id) : undefined;
  }, 30_000);
  assert.equal(ids.length, 6);
  const events = await Promise.all(ids.map(async (id) => (await c.admin<StoredEvent>('GET', `/admin/v1/usage/events/${id}`, undefined, agg)).json));
  const byStatus = events.map((e) => `${e.status}:${e.cost_micros}:${(e.anomalies ?? []).join(',')}`).sort();
  assert.deepEqual(byStatus, [
    'client_disconnect:100800:', 'client_disconnect:100800:', 'client_disconnect:100800:',
    'ok:100800:', 'ok:100800:', 'usage_anomaly:126000:count_decreased',
  ]);
  const mine = await c.admin<StoredEvent>('GET', `/admin/v1/usage/events/${midId}`, undefined, agg);
  const mineUsage = flatUsage(mine.json as unknown as UsageEvent);
  assert.deepEqual([mineUsage.status, mineUsage.input_tokens, mineUsage.output_tokens], ['client_disconnect', 800, 120]);
  const low = await c.admin<StoredEvent>('GET', `/admin/v1/usage/events/${lowerId}`, undefined, agg);
  assert.equal(low.json.cost_micros, '126000');
  const totals = await c.admin<{ totals: { requests: number; cost_micros: string } }>('GET', `/admin/v1/usage?granularity=month&from=2020-01-01&to=2100-01-01&account_id=${acct.accountId}`, undefined, agg);
  assert.deepEqual([totals.json.totals.requests, BigInt(totals.json.totals.cost_micros)], [6, 10_000_000n - expected]);
});
