// Issue #3 end to end: two gateway processes, two aggregator processes (two `ledger`
// consumers; one also runs the `warehouse` group over chDB), one control process, real Kafka
// and Redis. Traffic from the official SDK over both gateways, streaming and not, concurrent on
// one account. Then, to the micro-credit: Σ per-request costs (computed here from the CNY
// catalog) = drop in balance = warehouse total, and every request id is stored exactly once.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { newAccount, startStandardCluster, useCluster } from '../support/cluster.ts';
import { traffic, type AccountHandle } from '../support/traffic.ts';
import { Kafka, logLevel } from 'kafkajs';
import { fixKafkajsRequestQueue } from '@tollgate/events';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

// kafkajs' request queue without its 1 ms poll (libs/events/src/kafkajs-request-queue.ts) for this file's own kafkajs clients
fixKafkajsRequestQueue();

const run = useCluster(() => startStandardCluster());

describe('distributed mode', () => {
  test('control changes reach every gateway within 1 s: a new key works at once, a revoked key stops', async (t) => {
    if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = run.cluster;
    const acct = await newAccount(c, 1);
    for (const gw of ['gw1', 'gw2']) {
      const client = new Anthropic({ apiKey: acct.secret, baseURL: c.url(gw), maxRetries: 0, logLevel: 'error' });
      await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 4, messages: [{ role: 'user', content: '[[sim input=1 output=1]]' }] });
    }
    assert.equal((await c.admin('DELETE', `/admin/v1/keys/${acct.keyId}`)).status, 200);
    await new Promise((r) => setTimeout(r, 1000));
    for (const gw of ['gw1', 'gw2']) {
      const client = new Anthropic({ apiKey: acct.secret, baseURL: c.url(gw), maxRetries: 0, logLevel: 'error' });
      await assert.rejects(client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 4, messages: [{ role: 'user', content: 'x' }] }), Anthropic.AuthenticationError);
    }
  });

  test('mixed traffic over two gateways: warehouse total = Σ request costs = balance drop, each id once', async (t) => {
    if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = run.cluster;
    const a = await newAccount(c, 100);
    const b = await newAccount(c, 100);
    const sent = await traffic({ gateways: [c.url('gw1'), c.url('gw2')], accounts: [a, a, a, b], requests: 80, concurrency: 16 });
    assert.equal(sent.failed.length, 0, `failed: ${sent.failed.join('; ')}`);
    for (const acct of [a, b]) {
      const mine = sent.ok.filter((r) => r.accountId === acct.accountId);
      const expected = mine.reduce((s, r) => s + r.cost, 0n);
      const balance = await c.eventually(`${acct.accountId} settled`, async () => {
        const v = await c.admin<{ held_credits: number; balance_micro_credits: string }>('GET', `/admin/v1/accounts/${acct.accountId}`);
        const bal = BigInt(v.json.balance_micro_credits);
        return v.json.held_credits === 0 && bal === 100_000_000n - expected ? bal : undefined;
      });
      assert.equal(balance, 100_000_000n - expected);
      const totals = await c.eventually(`${acct.accountId} warehoused`, async () => {
        const r = await c.admin<{ totals: { requests: number; cost_micros: string } }>('GET', `/admin/v1/usage?granularity=month&from=2020-01-01&to=2100-01-01&account_id=${acct.accountId}`, undefined, c.url('agg1'));
        return r.json.totals.requests === mine.length ? r.json.totals : undefined;
      });
      assert.equal(BigInt(totals.cost_micros), expected);
      const ids = await c.admin<{ data: Array<{ event_id: string }> }>('GET', `/admin/v1/usage/events?account_id=${acct.accountId}&limit=1000`, undefined, c.url('agg1'));
      assert.deepEqual(ids.json.data.map((e) => e.event_id).sort(), mine.map((r) => r.id).sort());
    }
    const rec = await c.admin<{ ok: boolean; differences: unknown[] }>('GET', '/ops/v1/reconcile', undefined, c.url('agg1'));
    assert.deepEqual(rec.json.differences, []);
    assert.equal(rec.json.ok, true);
    // The operator's rollup repair first waits for the warehouse group to have stored the usage
    // log (409 else); caught up, it runs and finds nothing to rebuild.
    const repair = await c.admin<{ repaired: Record<string, number>; rollups: { ok: boolean } }>('POST', '/ops/v1/rollups/repair', undefined, c.url('agg1'));
    assert.equal(repair.status, 200, JSON.stringify(repair.json));
    assert.deepEqual([repair.json.repaired, repair.json.rollups.ok], [{ minute: 0, hour: 0, day: 0 }, true]);
  });

  test('replaying every topic from offset 0 changes no total', async (t) => {
    if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = run.cluster;
    const a = await newAccount(c, 10);
    const sent = await traffic({ gateways: [c.url('gw1'), c.url('gw2')], accounts: [a], requests: 20, concurrency: 4 });
    assert.deepEqual(sent.failed, []);
    const expected = 10_000_000n - sent.ok.reduce((s, r) => s + r.cost, 0n);
    const settled = async () => c.eventually('settled', async () => {
      const v = await c.admin<{ held_credits: number; balance_micro_credits: string }>('GET', `/admin/v1/accounts/${a.accountId}`);
      return v.json.held_credits === 0 && BigInt(v.json.balance_micro_credits) === expected ? true : undefined;
    });
    await settled();
    const prefix = c.env.KAFKA_TOPIC_PREFIX!;
    const kafka = new Kafka({ brokers: c.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const topics = ['usage', 'ledger', 'control'].map((x) => prefix + x);
    /** Both groups have committed everything every topic holds. */
    const caughtUp = (what: string) => c.eventually(what, async () => {
      for (const group of ['ledger', 'warehouse']) {
        for (const topic of topics) {
          const ends = await admin.fetchTopicOffsets(topic);
          const [committed] = await admin.fetchOffsets({ groupId: prefix + group, topics: [topic] });
          for (const end of ends) {
            const p = committed!.partitions.find((x) => x.partition === end.partition);
            if (BigInt(end.offset) > 0n && (!p || BigInt(p.offset) < BigInt(end.offset))) return undefined;
          }
        }
      }
      return true;
    }, 90_000);
    try {
      await caughtUp('groups caught up before the replay');
      // The whole report (every rollup-served sum and percentile): a replay must not move it.
      const report = async () => {
        const r = (await c.admin<{ data: unknown[]; totals: unknown; by_model: unknown[] }>('GET', '/admin/v1/usage?granularity=month&from=2020-01-01&to=2100-01-01', undefined, c.url('agg1'))).json;
        return { data: r.data, totals: r.totals, by_model: r.by_model };
      };
      const before = await report();

      // Stop both consumer processes, move both groups back to the start of every topic, restart.
      // Deleting the (now empty) groups drops every committed offset at once, and a group without
      // one starts from the beginning (KafkaLog subscribes fromBeginning): the same replay as
      // kafkajs' resetOffsets, which joins the group with a paused consumer and so waits out a
      // whole fetch (~5 s) per group and topic, 30 s here.
      await c.kill('agg1', 'SIGTERM');
      await c.kill('agg2', 'SIGTERM');
      await admin.deleteGroups(['ledger', 'warehouse'].map((group) => prefix + group));
      for (const group of ['ledger', 'warehouse']) {
        for (const topic of topics) {
          const [committed] = await admin.fetchOffsets({ groupId: prefix + group, topics: [topic] });
          for (const p of committed!.partitions) assert.ok(BigInt(p.offset) < 0n, `${group} ${topic}/${p.partition}: no committed offset left`);
        }
      }
      await c.start('agg1');
      await c.start('agg2');
      await caughtUp('groups caught up after the replay');
      await settled();
      const after = await report();
      assert.deepEqual(after, before);
    } finally {
      await admin.disconnect();
    }
    const rec = await c.admin<{ ok: boolean; differences: unknown[] }>('GET', '/ops/v1/reconcile', undefined, c.url('agg1'));
    assert.deepEqual(rec.json.differences, []);
  });
});
