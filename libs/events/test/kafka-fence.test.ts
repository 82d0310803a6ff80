// BatchContext.fence on real Kafka: a consumer frozen past its group's session timeout (10 s) is
// told, before it writes, that it may no longer hold its partition. The warehouse sink asks it
// right before its usage insert: a frozen member's insert landing after its partition's new
// owner had inserted the same events counted them twice in the rollups (a breaker's finding).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { logLevel } from 'kafkajs';
import { KafkaLog, PartitionLostError, type BatchContext } from '@tollgate/events';
import { findKafka, requireKafka } from '../../../test/support/services.ts';
import { publishAll, sampleEvents } from './event-log.contract.ts';
import { kafkaScratch, quiet } from './kafka-scratch.ts';

const brokers = await findKafka();

test('a consumer frozen past the session timeout: its batch\'s fence rejects (PartitionLostError) before it writes; the batch comes again and its fence then resolves', async (t) => {
  if (brokers === undefined) {
    await requireKafka(t);
    return;
  }
  const { kafka, prefix, spoolDirs, cleanup } = await kafkaScratch(brokers, 2, logLevel.NOTHING);
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[0]!, logger: quiet });
  await log.ensureTopics(1);
  const consumer = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[1]!, consumerMaxWaitMs: 250, logger: quiet });
  try {
    await publishAll(log, sampleEvents('fence', 6).filter((s) => s.topic === 'usage'));
    const fences: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => { done = r; });
    const sub = await consumer.subscribe({
      group: `fg-${randomUUID().slice(0, 8)}`, topics: ['usage'],
      handler: async (_batch, context?: BatchContext) => {
        assert.ok(context, 'the Kafka log gives each batch a context');
        if (fences.length === 0) {
          // The process frozen for 13 s (a SIGSTOP, a paused VM): no timer runs, no heartbeat goes.
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 13_000);
        }
        try {
          await context.fence();
          fences.push('resolved');
          done();
        } catch (err) {
          fences.push(err instanceof PartitionLostError ? 'lost' : `other: ${String(err)}`);
          throw err; // nothing written: the batch is redelivered
        }
      },
    });
    const timeout = setTimeout(done, 60_000);
    await finished;
    clearTimeout(timeout);
    await sub.stop();
    assert.deepEqual(fences, ['lost', 'resolved']);
  } finally {
    await consumer.close();
    await log.close();
    await cleanup();
  }
});
