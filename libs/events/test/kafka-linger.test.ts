// KafkaLog's linger (KAFKA_LINGER_MS): a small batch of usage events waits for company before
// it is produced, since nobody waits for their acknowledgement (a request's answer waits only
// for the spool); an append to any other topic, an `acknowledged()` caller and close() end the
// wait at once, since their callers wait for Kafka. Against a real broker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { DEAD_LETTER_TOPIC, KafkaLog, TOPICS } from '@tollgate/events';
import { findKafka, requireKafka } from '../../../test/support/services.ts';
import { sampleEvents } from './event-log.contract.ts';

const brokers = await findKafka();
/** Far longer than any test here: a send before it is one something cut short. */
const LINGER_MS = 120_000;

/** 'pending' if `p` has not settled within `ms`, else how it settled. */
async function within(p: Promise<unknown>, ms: number): Promise<'resolved' | 'rejected' | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const out = await Promise.race([
    p.then(() => 'resolved' as const, () => 'rejected' as const),
    new Promise<'pending'>((r) => { timer = setTimeout(() => r('pending'), ms); }),
  ]);
  clearTimeout(timer);
  return out;
}

function samples(topic: 'usage' | 'ledger' | 'control', n: number) {
  return sampleEvents(randomUUID().slice(0, 8), n * 3 + 3).filter((s) => s.topic === topic).slice(0, n).map((s) => ({ event: s.event, headers: s.headers }));
}

test('linger, the kind: usage events wait lingerMs for company; an append to another topic (control, ledger), an acknowledged() caller and close() each send them at once', async (t) => {
  if (!(await requireKafka(t))) return;
  const kafka = new Kafka({ clientId: 'tollgate-linger-test', brokers: brokers!.split(','), logLevel: logLevel.ERROR });
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, lingerMs: LINGER_MS, logger: { warn: () => {}, error: (o: object, m?: string) => console.error(m, o) } });
  await log.ensureTopics(2);
  try {
    // The sender's first produce makes sure of the connection; one urgent append gets it past that.
    await log.publish('control', samples('control', 1));

    const usage1 = log.publish('usage', samples('usage', 2));
    assert.equal(await within(usage1, 600), 'pending', 'usage events linger');
    const control = log.publish('control', samples('control', 1));
    assert.deepEqual([await within(control, 15_000), await within(usage1, 1)], ['resolved', 'resolved'], 'a control record is sent at once, with the usage events waiting before it');

    const usage2 = log.publish('usage', samples('usage', 1));
    assert.equal(await within(usage2, 600), 'pending');
    const ledger = log.publish('ledger', samples('ledger', 1));
    assert.deepEqual([await within(ledger, 15_000), await within(usage2, 1)], ['resolved', 'resolved'], 'so is a grant');

    const usage3 = log.publish('usage', samples('usage', 1));
    assert.equal(await within(usage3, 600), 'pending');
    assert.equal(await within(log.acknowledged(), 15_000), 'resolved', 'an acknowledged() caller does not wait out the linger');
    assert.equal(await within(usage3, 1), 'resolved');

    const usage4 = log.publish('usage', samples('usage', 1));
    assert.equal(await within(usage4, 600), 'pending');
    // close() waits for Kafka's acknowledgement (closeTimeoutMs 5 s), not the linger: usage4 is
    // delivered, not left in the spool.
    assert.equal(await within(log.close(), 4_000), 'resolved');
    assert.equal(await within(usage4, 1), 'resolved');
  } finally {
    await log.close();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] }).finally(() => admin.disconnect());
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('lingerMs must be a finite number >= 0', () => {
  const kafka = new Kafka({ brokers: ['127.0.0.1:1'], logLevel: logLevel.NOTHING });
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => new KafkaLog({ kafka, topicPrefix: 'x.', spoolDir: '/nonexistent-linger-test', lingerMs: bad }), { name: 'RangeError', message: `lingerMs must be a finite number >= 0, got ${bad}` });
  }
});
