// BatchContext.assignment on real Kafka: two members of one group, each told which accounts'
// events go to the partitions it holds. The warehouse sink repairs recent rollups of exactly
// those accounts (a repair of another member's accounts races its inserts), so `owned` must
// place every key where the producer put its events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { logLevel } from 'kafkajs';
import { KafkaLog, producerPartition, type Assignment, type ConsumedEvent } from '@tollgate/events';
import { findKafka, requireKafka } from '../../../test/support/services.ts';
import { usageEvent } from '../../../test/support/events.ts';
import { kafkaScratch, quiet } from './kafka-scratch.ts';

const brokers = await findKafka();
const PARTITIONS = 4;
const ACCOUNTS = Array.from({ length: 40 }, (_, i) => `acct_asg_${i}`);

test('assignment: each member of a group owns exactly the accounts whose events it is handed (the producer\'s partitioner), the two owned sets split every account, and one assignment id holds from one rebalance to the next', async (t) => {
  if (brokers === undefined) {
    await requireKafka(t);
    return;
  }
  const { kafka, prefix, spoolDirs, cleanup } = await kafkaScratch(brokers, 3, logLevel.NOTHING);
  const producer = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[0]!, logger: quiet });
  await producer.ensureTopics(PARTITIONS);
  const members = [1, 2].map((i) => new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[i]!, consumerMaxWaitMs: 250, logger: quiet }));
  const group = `asg-${randomUUID().slice(0, 8)}`;
  const seen: Array<{ accounts: Set<string>; assignments: Set<Assignment>; events: ConsumedEvent[] }> = members.map(() => ({ accounts: new Set(), assignments: new Set(), events: [] }));
  let total = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => { done = r; });
  const admin = kafka.admin();
  await admin.connect();
  try {
    // Every partition gets some of the 40 accounts (else "exactly" would be vacuous there).
    const topic = producer.topicName('usage');
    assert.deepEqual(new Set(ACCOUNTS.map((a) => producerPartition(topic, a, PARTITIONS))), new Set([0, 1, 2, 3]));
    const subs = await Promise.all(members.map((m, i) => m.subscribe({
      group, topics: ['usage'],
      handler: async (batch, context) => {
        assert.ok(context?.assignment, 'the Kafka log tells each batch its assignment');
        for (const e of batch) {
          seen[i]!.accounts.add((e.event as { account_id: string }).account_id);
          seen[i]!.events.push(e);
        }
        seen[i]!.assignments.add(context.assignment);
        total += batch.length;
        if (total >= ACCOUNTS.length) done();
      },
    })));
    // Both members in the group, their partitions given, before anything is published.
    for (let i = 0; ; i++) {
      const { groups } = await admin.describeGroups([members[0]!.groupName(group)]);
      if (groups[0]?.state === 'Stable' && groups[0].members.length === 2) break;
      assert.ok(i < 300, `the group never settled with two members: ${JSON.stringify(groups[0]?.state)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await producer.publish('usage', ACCOUNTS.map((a, i) => ({ event: usageEvent(`asg_${i}`, a) })));
    await producer.flush();
    const timeout = setTimeout(done, 60_000);
    await finished;
    clearTimeout(timeout);
    await Promise.all(subs.map((s) => s.stop()));

    assert.equal(total, ACCOUNTS.length, 'every event handed over once');
    // The producer put each event where producerPartition says.
    for (const e of seen.flatMap((s) => s.events)) {
      assert.equal(e.partition, producerPartition(topic, (e.event as { account_id: string }).account_id, PARTITIONS));
    }
    const owned: string[][] = [];
    for (const s of seen) {
      assert.equal(s.assignments.size, 1, 'one assignment between two rebalances');
      const [a] = [...s.assignments];
      const mine = await a!.owned('usage', ACCOUNTS);
      assert.deepEqual(mine, ACCOUNTS.filter((x) => s.accounts.has(x)), 'owned: exactly the accounts handed to this member, in the order given');
      assert.deepEqual(await a!.owned('ledger', ACCOUNTS), [], 'no partition of a topic it does not consume');
      owned.push(mine);
    }
    assert.ok(owned[0]!.length > 0 && owned[1]!.length > 0, 'both members hold partitions');
    assert.deepEqual([...owned[0]!, ...owned[1]!].sort(), [...ACCOUNTS].sort(), 'together every account, none twice');
  } finally {
    await admin.disconnect();
    await Promise.all(members.map((m) => m.close()));
    await producer.close();
    await cleanup();
  }
});
