// Issue 10, outcome 3 across processes: session affinity lives in Redis, so a session that
// alternates between two gateway processes stays on the upstream whose prompt cache it warmed
// (the simulator's cache is per instance: cache reads prove where a request went), and it moves
// only when that upstream fails.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { buildSimulator } from '@tollgate/simulator';
import { newAccount, startCluster, TWO_GATEWAYS, type Cluster } from '../support/cluster.ts';
import { UPSTREAM_KEY } from '../support/tollgate.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

let run: Awaited<ReturnType<typeof startCluster>>;
let cluster: Cluster;
const sims: Array<{ url: string; close(): Promise<void> }> = [];

before(async () => {
  run = await startCluster(TWO_GATEWAYS);
  if (!run) return;
  cluster = run.cluster;
  for (let i = 0; i < 2; i++) {
    const sim = buildSimulator({ apiKey: UPSTREAM_KEY });
    const url = await sim.listen({ port: 0, host: '127.0.0.1' });
    sims.push({ url, close: () => sim.close() });
  }
});
after(async () => {
  await run?.close();
  for (const s of sims) await s.close();
});

test('one session on two gateways stays on one upstream: its cache reads survive across gateways, and are lost only on failover', async (t) => {
  if (!run) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const ids: string[] = [];
  for (const [i, s] of sims.entries()) {
    const r = await cluster.admin<{ id: string }>('POST', '/admin/v1/upstreams', {
      name: `sim ${i}`, platform: 'anthropic', base_url: s.url, api_key: UPSTREAM_KEY, weight: 1, priority: 0, max_concurrency: null,
    }, cluster.url('agg'));
    assert.equal(r.status, 201, JSON.stringify(r.json));
    ids.push(r.json.id);
  }
  // pool records are served where the warehouse is (their durable copy): the aggregator of this cluster
  const g = await cluster.admin<{ id: string }>('POST', '/admin/v1/groups', { name: 'pair', platform: 'anthropic', upstream_ids: ids }, cluster.url('agg'));
  assert.equal(g.status, 201);
  const acct = await newAccount(cluster, 100);
  assert.equal((await cluster.admin('PATCH', `/admin/v1/accounts/${acct.accountId}`, { group_id: g.json.id })).status, 200);
  // every gateway's pool view is at most 1 s old; the account's group reaches the key caches too
  await new Promise((r) => setTimeout(r, 1500));

  const clients = ['gw1', 'gw2'].map((gw) => new Anthropic({ apiKey: acct.secret, baseURL: cluster.url(gw), maxRetries: 0, logLevel: 'error' }));
  const system = [{ type: 'text' as const, text: 'You review pull requests with care. '.repeat(150), cache_control: { type: 'ephemeral' as const } }];
  const ask = async (i: number) => {
    const { response } = await clients[i % 2]!.messages.create({
      model: 'claude-sonnet-4-6', max_tokens: 16, system, messages: [{ role: 'user', content: `question ${i}` }],
    }, { headers: { 'x-claude-code-session-id': 'b9b8a1c2-0000-4000-8000-00000000abcd' } }).withResponse();
    const id = response.headers.get('request-id')!;
    return cluster.eventually(`usage event ${id}`, async () => {
      const r = await cluster.admin<Record<string, unknown> & { quantities: Record<string, number> }>('GET', `/admin/v1/usage/events/${id}`, undefined, cluster.url('agg'));
      return r.status === 200 ? r.json : undefined;
    });
  };

  const first = await ask(0);
  const pinned = first['upstream_id'] as string;
  const written = first.quantities['cache_write_5m']!;
  assert.ok(ids.includes(pinned));
  assert.ok(written > 0);
  assert.equal(first.quantities['cache_read'], 0);
  // alternating gateways: the same upstream, the cache written once and read every time after
  for (let i = 1; i <= 6; i++) {
    const e = await ask(i);
    assert.deepEqual([e['upstream_id'], e['gateway_id'], e.quantities['cache_read'], e.quantities['cache_write_5m']], [pinned, i % 2 ? 'gw2' : 'gw1', written, 0], `request ${i}`);
  }
  // the pinned upstream fails before the first byte: the other serves and writes its own cache
  const pinnedSim = sims[ids.indexOf(pinned)]!;
  const res = await fetch(`${pinnedSim.url}/_sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 529 }) });
  assert.equal(res.status, 200);
  const moved = await ask(7);
  assert.notEqual(moved['upstream_id'], pinned);
  assert.deepEqual([moved.quantities['cache_read'], moved.quantities['cache_write_5m'], moved['attempts']], [0, written, 2]);
  // re-pinned there, for both gateways
  for (let i = 8; i <= 9; i++) {
    const e = await ask(i);
    assert.deepEqual([e['upstream_id'], e.quantities['cache_read'], e['attempts']], [moved['upstream_id'], written, 1], `request ${i}`);
  }
});
