// Offset regress after a rebalance (issue 11: the subscription commits handled offsets in the
// background, OffsetCommitter): a member that lost a partition to another member must not later
// commit its own older offset there over the new owner's newer one. Real Kafka, two members of
// one group in this process (each its own KafkaLog, as two processes would have).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { KafkaLog } from '@tollgate/events';
import { findKafka, requireKafka } from '../../../test/support/services.ts';
import { Collector, publishAll, sampleEvents } from './event-log.contract.ts';
import { kafkaScratch, quiet } from './kafka-scratch.ts';

const brokers = await findKafka();

test('offset regress: a member\'s stop() never commits, on a partition it lost in a rebalance, an offset older than the new owner\'s', async (t) => {
  if (brokers === undefined) {
    await requireKafka(t);
    return;
  }
  const { kafka, prefix, spoolDirs, cleanup } = await kafkaScratch(brokers, 3);
  // the producer: fresh topics of 2 partitions
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[2]!, logger: quiet });
  await log.ensureTopics(2);
  // A commits only when it stops (one hour): what it handled stays recorded across the rebalance.
  const a = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[0]!, consumerMaxWaitMs: 250, consumerCommitIntervalMs: 3_600_000, logger: quiet });
  const b = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[1]!, consumerMaxWaitMs: 250, logger: quiet });
  const admin = kafka.admin();
  await admin.connect();
  const group = `rg-${randomUUID().slice(0, 8)}`;
  const committed = async () => {
    const [tp] = await admin.fetchOffsets({ groupId: a.groupName(group), topics: [`${prefix}usage`] });
    return Object.fromEntries(tp!.partitions.map((p) => [p.partition, p.offset]));
  };
  try {
    const first = sampleEvents('rg1', 40).filter((s) => s.topic === 'usage');
    await publishAll(log, first);
    const seenA = new Collector();
    const seenB = new Collector();
    const subA = await a.subscribe({ group, topics: ['usage'], concurrentPartitions: 2, handler: seenA.handler() });
    await seenA.waitForAll(first, 'A alone');
    // B joins: the group rebalances and one partition moves to B, which reads it from the start.
    const subB = await b.subscribe({ group, topics: ['usage'], concurrentPartitions: 2, handler: seenB.handler() });
    const deadline = Date.now() + 60_000;
    while (seenB.seen.size === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(seenB.seen.size > 0, 'B got a partition');
    const second = sampleEvents('rg2', 40).filter((s) => s.topic === 'usage');
    await publishAll(log, second);
    const all = [...first, ...second];
    while (all.some((s) => !seenA.seen.has(s.event.event_id) && !seenB.seen.has(s.event.event_id)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    // the next offset to read in each partition: its event count (fresh topics)
    const counts: Record<number, number> = { 0: 0, 1: 0 };
    for (const s of all) {
      const e = seenA.seen.get(s.event.event_id) ?? seenB.seen.get(s.event.event_id);
      assert.ok(e, `${s.event.event_id} delivered`);
      counts[e.partition]!++;
    }
    const end = { 0: String(counts[0]), 1: String(counts[1]) };
    // B stops first (its handled offsets committed), then A, which still remembers what it handled
    // on B's partition before the rebalance.
    await subB.stop();
    await subA.stop();
    assert.deepEqual(await committed(), end, 'every partition committed at its end, none moved back');
  } finally {
    await admin.disconnect();
    await a.close();
    await b.close();
    await log.close();
    await cleanup();
  }
});
