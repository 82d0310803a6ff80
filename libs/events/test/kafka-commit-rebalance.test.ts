// Offset regress after a rebalance (issue 11: the subscription commits handled offsets in the
// background, OffsetCommitter): a member that lost a partition to another member must not later
// commit its own older offset there over the new owner's newer one. Real Kafka, two members of
// one group in this process (each its own KafkaLog, as two processes would have).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { KafkaLog } from '@tollgate/events';
import { Kafka, logLevel } from 'kafkajs';
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

test('offset regress: a seek of the stored-position check that was never applied (the fetch loop held up by a long batch), then the partition away and back: the member does not read from that old position nor commit below the other owner\'s commit', async (t) => {
  // A breaker's finding: kafkajs keeps a seek for a partition taken away in a rebalance and
  // applies it when the partition comes back. Now a join pauses the partitions until the check
  // has moved each to its stored position, so every seek is applied in the next fetch.
  if (brokers === undefined) {
    await requireKafka(t);
    return;
  }
  const { kafka, prefix, spoolDirs, cleanup } = await kafkaScratch(brokers, 3);
  const setup = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[2]!, logger: quiet });
  await setup.ensureTopics(2);
  const topic = `${prefix}usage`;
  const group = `ss-${randomUUID().slice(0, 8)}`;
  const producer = kafka.producer();
  await producer.connect();
  const admin = kafka.admin();
  await admin.connect();
  const send = (partition: number, n: number, extra: object = {}) => producer.send({ topic, messages: Array.from({ length: n }, (_, i) => ({ partition, value: JSON.stringify({ type: 'x', i, ...extra }) })) });
  const committed0 = async () => Number((await admin.fetchOffsets({ groupId: setup.groupName(group), topics: [topic] }))[0]!.partitions.find((p) => p.partition === 0)!.offset);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // The sink already holds 0–9 of both partitions, and the group committed 10.
  await send(0, 10);
  await send(1, 10);
  await send(1, 1, { slow: true });
  await admin.setOffsets({ groupId: setup.groupName(group), topic, partitions: [{ partition: 0, offset: '10' }, { partition: 1, offset: '10' }] });
  const sink = new Map<string, bigint>([['usage:0', 9n], ['usage:1', 9n]]);
  const members: Array<{ log: KafkaLog; stop(): Promise<void> }> = [];
  const member = async (clientId: string, spool: string) => {
    const log = new KafkaLog({ kafka: new Kafka({ clientId, brokers: brokers.split(','), logLevel: logLevel.NOTHING }), topicPrefix: prefix, spoolDir: spool, consumerMaxWaitMs: 250, positionCheckMs: 200, logger: quiet });
    const sub = await log.subscribe({
      group, topics: ['usage'], concurrentPartitions: 2, maxBatch: 2,
      storedPositions: async () => new Map(sink),
      handler: async (events) => {
        for (const e of events) {
          const key = `usage:${e.partition}`;
          if (e.offset <= (sink.get(key) ?? -1n)) continue; // a duplicate
          if ((e.event as { slow?: boolean }).slow) await sleep(6000);
          sink.set(key, e.offset);
        }
        await sleep(100);
      },
    });
    let stopped = false;
    const m = { log, stop: async () => { if (stopped) return; stopped = true; await sub.stop(); await log.close(); } };
    members.push(m);
    return m;
  };
  try {
    // With these client ids (kafkajs orders members by id) B gets p0 at the rebalance, A keeps p1.
    await member('a-member-a', spoolDirs[0]!);
    await sleep(1500); // A holds both; its p1 batch takes 6 s
    const b = await member('z-member-b', spoolDirs[1]!);
    await sleep(9000); // the rebalance waits for A's batch; then p0 is B's
    await send(0, 20);
    for (let i = 0; i < 100 && (await committed0()) !== 30; i++) await sleep(100);
    assert.equal(await committed0(), 30, 'B handled p0 to its end');
    await b.stop(); // p0 back to A
    let lowest = 30;
    for (let i = 0; i < 60; i++) {
      await sleep(100);
      lowest = Math.min(lowest, await committed0());
    }
    assert.equal(lowest, 30, 'p0 committed never below B\'s 30 once A has it back');
  } finally {
    for (const m of members.reverse()) await m.stop().catch(() => {});
    await producer.disconnect();
    await admin.disconnect();
    await setup.close();
    await cleanup();
  }
});
