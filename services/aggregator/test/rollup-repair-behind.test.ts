// POST /ops/v1/rollups/repair in a distributed deployment refuses (409) while the warehouse group
// has not stored every usage event on the log: a backlog's events (after an outage) fall into
// buckets the clock calls settled, and the group inserting them while the repair rebuilds those
// buckets (DELETE, then INSERT … SELECT from raw) would count them twice or not at all. Real
// Kafka (the group's committed offsets) and a real chDB warehouse. Its own file: chDB allows one
// data directory per process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { logLevel } from 'kafkajs';
import { KafkaLog } from '@tollgate/events';
import { kafkaScratch, quiet } from '../../../libs/events/test/kafka-scratch.ts';
import { v2 } from '../../../libs/warehouse/test/usage-fixtures.ts';
import { requireKafka } from '../../../test/support/services.ts';
import { usageEvent } from '../../../test/support/events.ts';
import { startOpsApp } from './ops-app.ts';

const TOKEN = 'test-admin-token-rollup-repair-behind';

test('rollup repair while the warehouse group has not stored the usage log: 409 and nothing rebuilt (its inserts of late events would race the rebuild); once it has, the settled rows are rebuilt', async (t) => {
  const brokers = await requireKafka(t);
  if (!brokers) return;
  const { kafka, prefix, spoolDirs, cleanup } = await kafkaScratch(brokers, 1, logLevel.NOTHING);
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[0]!, logger: quiet, consumerMaxWaitMs: 250 });
  const group = `rrr-${randomUUID().slice(0, 8)}`;
  const app = await startOpsApp({ token: TOKEN, name: 'rollup-repair-behind', usageStored: () => log.committedThrough(group, [log.topicName('usage')], 1500) });
  try {
    await log.ensureTopics(1);
    // A settled cut: an event of two days ago whose raw row is gone; its minute, hour and day rows differ.
    const old = Date.now() - 2 * 86_400_000;
    await app.warehouse.insertUsage([v2({ event_id: 'old-1', ts: old, account_id: 'acc_rrr', key_id: 'k', cost_micros: '700' })]);
    await app.warehouse.command(`DELETE FROM ${app.warehouse.tables.usage} WHERE event_id = 'old-1'`);
    // A late usage event of that day on the log, which the group has not stored yet.
    await log.publish('usage', [{ event: usageEvent('late-1', 'acc_rrr', { ts: old + 1, cost_micros: '300' }) }]);
    await log.flush();
    const post = () => fetch(`${app.url}/ops/v1/rollups/repair`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    const refused = await post();
    assert.equal(refused.status, 409);
    const body = await refused.json() as { error: { type: string; code: string; message: string } };
    assert.deepEqual([body.error.type, body.error.code], ['invalid_request_error', 'conflict']);
    assert.match(body.error.message, /^the warehouse group has not stored every usage event on the log yet/);
    const cost = async () => (await app.warehouse.select(`SELECT toString(sum(cost)) AS c FROM ${app.warehouse.tables.rollupDay} WHERE account_id = 'acc_rrr'`))[0]!['c'];
    assert.equal(await cost(), '700', 'nothing rebuilt');
    // The group stores it (here: a handler that inserts it) and commits.
    let stored!: () => void;
    const done = new Promise<void>((r) => { stored = r; });
    const sub = await log.subscribe({ group, topics: ['usage'], handler: async (batch) => { await app.warehouse.insertUsage(batch.map((e) => e.event as never)); stored(); } });
    await done;
    let res = await post();
    for (let i = 0; res.status === 409 && i < 50; i++) { await new Promise((r) => setTimeout(r, 200)); res = await post(); } // the commit follows the handler
    await sub.stop();
    assert.equal(res.status, 200);
    const one = { minute: 1, hour: 1, day: 1 };
    const none = { minute: 0, hour: 0, day: 0 };
    assert.deepEqual(await res.json(), { repaired: one, left_recent: none, settle_ms: 600_000, rollups: { ok: true, mismatched_rows: none, recent_rows: none } });
    assert.equal(await cost(), '300', 'the day rebuilt from raw: the late event only');
  } finally {
    await app.close();
    await log.close();
    await cleanup();
  }
});
