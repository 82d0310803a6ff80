// The EventLog contract against a real Kafka broker, plus what only Kafka can show: topic
// settings, poison messages, and the record layout (key, headers, compression).
// Every case uses its own topic prefix and group ids, so the suite can share one broker.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import kafkajsModule, { CompressionTypes, Kafka, logLevel, type ISocketFactory } from 'kafkajs';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { interceptFrames } from './spool-helpers.ts';
import { DEAD_LETTER_TOPIC, gunzipOptions, KafkaLog, NotYetError, SYNC_MAX_OUTPUT_BYTES, TOPICS, zstdOptions, type ConsumedDeadLetter, type DeadLetter, type KafkaLogOptions } from '@tollgate/events';
import { unzipSync } from 'node:zlib';
import { findKafka, requireKafka, servicesRequired } from '../../../test/support/services.ts';
import { Collector, eventLogContract, publishAll, sampleEvents } from './event-log.contract.ts';

const brokers = await findKafka();

export function testClient(brokerList: string): Kafka {
  return new Kafka({ clientId: 'tollgate-events-test', brokers: brokerList.split(','), logLevel: logLevel.ERROR });
}

/**
 * A kafkajs socket factory that answers the next `armed` JoinGroup requests (api key 11) with
 * error code `code` instead of the broker's answer: a wire-level fault on a real broker, for the
 * crashes kafkajs does not restart from (it restarts only after errors it deems retriable).
 * Each request is one `write` in kafkajs (connection.js), so its header is read from the write;
 * responses are cut into frames by their int32 size before kafkajs sees them.
 */
export function joinGroupFaults(code: number): { armed: number; injected: number; socketFactory: ISocketFactory } {
  const state = { armed: 0, injected: 0, socketFactory: undefined as unknown as ISocketFactory };
  state.socketFactory = ({ host, port, onConnect }) => {
    const socket = connect({ host, port }, onConnect);
    const joins = new Map<number, number>(); // correlation id → JoinGroup version
    interceptFrames(socket, (header) => {
      if (header.readInt16BE(4) === 11) joins.set(header.readInt32BE(8), header.readInt16BE(6));
    }, (frame, deliver) => {
      const version = joins.get(frame.readInt32BE(4));
      if (version !== undefined) {
        joins.delete(frame.readInt32BE(4));
        // size, correlation id, then (v2 and later) throttle_time_ms before error_code
        if (state.armed > 0) {
          state.armed--;
          state.injected++;
          frame.writeInt16BE(code, version >= 2 ? 12 : 8);
        }
      }
      deliver(frame);
    });
    socket.setKeepAlive(true, 60_000);
    return socket;
  };
  return state;
}

/** A KafkaLog on fresh topics and a fresh spool directory; cleanup deletes both. */
export async function freshLog(kafka: Kafka, partitions = 4, options: Partial<KafkaLogOptions> = {}): Promise<{ log: KafkaLog; prefix: string; spoolDir: string; cleanup(): Promise<void> }> {
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  // Expected warnings (a handler failing on purpose) stay out of the test output.
  const logger = { warn: () => {}, error: (o: object, m?: string) => console.error(m, o) };
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, logger, ...options });
  await log.ensureTopics(partitions);
  return {
    log, prefix, spoolDir,
    cleanup: async () => {
      await log.close();
      const admin = kafka.admin();
      await admin.connect();
      try {
        await admin.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] });
      } finally {
        await admin.disconnect();
      }
      await rm(spoolDir, { recursive: true, force: true });
    },
  };
}

if (brokers === undefined) {
  test('KafkaLog', async (t) => {
    await requireKafka(t);
  });
} else {
  const kafka = testClient(brokers);

  eventLogContract('KafkaLog', async () => {
    const { log, cleanup } = await freshLog(kafka);
    return { log, cleanup };
  });

  test('ensureTopics creates prefixed topics with the delete policy, and is idempotent', async () => {
    const { log, prefix, cleanup } = await freshLog(kafka, 3);
    try {
      await log.ensureTopics(3);
      const admin = kafka.admin();
      await admin.connect();
      try {
        const meta = await admin.fetchTopicMetadata({ topics: TOPICS.map((t) => prefix + t) });
        assert.deepEqual(meta.topics.map((t) => [t.name, t.partitions.length]).sort(), TOPICS.map((t) => [prefix + t, 3]).sort());
        const { resources } = await admin.describeConfigs({
          includeSynonyms: false,
          resources: [{ type: 2 /* TOPIC */, name: `${prefix}control`, configNames: ['cleanup.policy', 'retention.ms'] }],
        });
        const entries = Object.fromEntries(resources[0]!.configEntries.map((e) => [e.configName, e.configValue]));
        assert.deepEqual(entries, { 'cleanup.policy': 'delete', 'retention.ms': '-1' });
      } finally {
        await admin.disconnect();
      }
    } finally {
      await cleanup();
    }
  });

  test('ensureTopics on topics made with another partition count (KAFKA_PARTITIONS raised later): they are left as they are and one warning names each with its count and says how to add partitions; the same count warns nothing', async () => {
    const { prefix, spoolDir, cleanup } = await freshLog(kafka, 4);
    const warnings: Array<{ obj: object; msg: string | undefined }> = [];
    const other = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: join(spoolDir, 'other'), logger: { warn: (obj, msg) => warnings.push({ obj, msg }), error: () => {} } });
    try {
      await other.ensureTopics(4);
      assert.equal(warnings.length, 0, 'the count they have: nothing to say');
      await other.ensureTopics(8);
      assert.equal(warnings.length, 1);
      assert.deepEqual(warnings[0]!.obj, { asked: 8, topics: TOPICS.map((t) => `${prefix}${t}: 4`).sort() });
      assert.match(warnings[0]!.msg!, /another partition count than the 8 asked \(KAFKA_PARTITIONS\), which is used only when a topic is made; to add partitions, alter the topics \(kafka-topics\.sh --alter --partitions N\)/);
      const admin = kafka.admin();
      await admin.connect();
      try {
        const meta = await admin.fetchTopicMetadata({ topics: TOPICS.map((t) => prefix + t) });
        assert.deepEqual(meta.topics.map((t) => t.partitions.length), TOPICS.map(() => 4), 'not altered');
      } finally {
        await admin.disconnect();
      }
    } finally {
      await other.close();
      await cleanup();
    }
  });

  test('two processes making the topics at once with different counts (KAFKA_PARTITIONS 2 and 8): both start, the topics keep the first maker\'s count, and the one that asked another logs the warning', async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}.`;
    const dirs = await Promise.all([0, 1].map(() => mkdtemp(join(tmpdir(), 'tollgate-spool-'))));
    const warned = [0, 0];
    const logs = dirs.map((spoolDir, i) => new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, logger: { warn: () => { warned[i]!++; }, error: () => {} } }));
    try {
      await Promise.all([logs[0]!.ensureTopics(2), logs[1]!.ensureTopics(8)]);
      const admin = kafka.admin();
      await admin.connect();
      let counts: number[];
      try {
        counts = (await admin.fetchTopicMetadata({ topics: TOPICS.map((t) => prefix + t) })).topics.map((t) => t.partitions.length);
      } finally {
        await admin.disconnect();
      }
      const made = counts[0]!;
      assert.ok(made === 2 || made === 8, `made with ${made}`);
      assert.deepEqual(counts, TOPICS.map(() => made), 'every topic the same maker\'s count');
      assert.deepEqual(warned, made === 2 ? [0, 1] : [1, 0], 'the one that asked another count warns, once');
    } finally {
      await Promise.all(logs.map((l) => l.close()));
      const cleaner = kafka.admin();
      await cleaner.connect();
      await cleaner.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] }).catch(() => {});
      await cleaner.disconnect();
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
    }
  });

  test('createTopicsBeforeSend: a publisher that did not wait for the topics at start makes them (with the partitions asked) before its first send, and its events arrive', async () => {
    // What a gateway started while Kafka was down does once Kafka answers.
    const prefix = `t-${randomUUID().slice(0, 8)}.`;
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, logger: { warn: () => {}, error: () => {} } });
    const admin = kafka.admin();
    await admin.connect();
    try {
      log.createTopicsBeforeSend(3);
      const samples = sampleEvents(randomUUID().slice(0, 6), 12);
      await publishAll(log, samples); // resolves on Kafka's acknowledgement: the topics exist by then
      const meta = await admin.fetchTopicMetadata({ topics: TOPICS.map((t) => prefix + t) });
      assert.deepEqual(meta.topics.map((t) => [t.name, t.partitions.length]).sort(), TOPICS.map((t) => [prefix + t, 3]).sort());
      const seen = new Collector();
      const sub = await log.subscribe({ group: `cb-${randomUUID()}`, topics: ['usage', 'ledger', 'control'], handler: seen.handler(), fromBeginning: true });
      try {
        await seen.waitForAll(samples, 'one group');
      } finally {
        await sub.stop();
      }
      assert.deepEqual([...seen.seen.keys()].sort(), samples.map((x) => x.event.event_id).sort());
    } finally {
      await log.close();
      await admin.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] }).catch(() => {});
      await admin.disconnect();
      await rm(spoolDir, { recursive: true, force: true });
    }
  });

  test('dead letters: published to <prefix>dead-letter and delivered to a group that asks for them, beside its events', async () => {
    const { log, cleanup } = await freshLog(kafka, 1);
    try {
      const record: DeadLetter = {
        event_id: 'credit:a:huge', group: 'ledger', topic: 'ledger', partition: 0, offset: '7', kind: 'invalid_event',
        reason: 'amount_micros: must be within ±9007199254740991 micro-credits (2^53 − 1)', raw: '{"x":1}', ts: 1_790_000_000_000,
      };
      await log.deadLetter([record]);
      const got: ConsumedDeadLetter[] = [];
      const sub = await log.subscribe({
        group: `dl-${randomUUID()}`, topics: ['usage'], fromBeginning: true,
        handler: async () => {}, onDeadLetters: async (records) => { got.push(...records); },
      });
      for (let i = 0; i < 200 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      await sub.stop();
      assert.deepEqual(got, [{ partition: 0, offset: 0n, value: record }]);
    } finally {
      await cleanup();
    }
  });

  test('committed through: false while a group has not handled every record on the named topics (control records, dead letters), true once it has; a topic not made yet holds nothing', async () => {
    const { log, cleanup } = await freshLog(kafka, 2);
    try {
      const group = `ct-${randomUUID()}`;
      const topics = [log.topicName('control'), log.deadLetterTopicName()];
      assert.equal(await log.committedThrough(group, topics, 300), true); // nothing on them yet
      const control = (i: number) => ({ event: { type: 'price_version' as const, event_id: `price_version:v${i}:0`, ts: 0, id: `v${i}`, effective_at: 0, catalog: {} } });
      await log.publish('control', [control(0), control(1), control(2)]);
      assert.equal(await log.committedThrough(group, topics, 300), false); // the group has handled none
      let handled = 0;
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      const sub = await log.subscribe({
        group, topics: ['control'], fromBeginning: true,
        handler: async (batch) => { await gate; handled += batch.length; },
      });
      try {
        // Not committed while the handler has not finished (the warehouse: not stored yet).
        assert.equal(await log.committedThrough(group, topics, 1_000), false);
        release();
        assert.equal(await log.committedThrough(group, topics, 20_000), true);
        assert.equal(handled, 3);
      } finally {
        await sub.stop();
      }
    } finally {
      await cleanup();
    }
  });

  test('committed through with settleMs: a record that reaches the log after the first read of the ends but within settleMs (another process\'s spool, sent once Kafka is back) is waited for too; without it the wait ends before it', async () => {
    const control = (i: number) => ({ event: { type: 'price_version' as const, event_id: `price_version:s${i}:0`, ts: 0, id: `s${i}`, effective_at: 0, catalog: {} } });
    for (const settleMs of [0, 1_500]) {
      const { log, cleanup } = await freshLog(kafka, 1);
      try {
        // The topic is empty when asked; a record arrives 700 ms later that the group never handles.
        const late = new Promise((r) => setTimeout(r, 700)).then(() => log.publish('control', [control(settleMs)]));
        const through = await log.committedThrough(`cs-${randomUUID()}`, [log.topicName('control')], 4_000, { settleMs });
        await late;
        // Without a settle the wait ended at once, before the record; with one it saw the record
        // and, the group never handling it, ran out (false).
        assert.equal(through, settleMs === 0, `settleMs ${settleMs}`);
      } finally {
        await cleanup();
      }
    }
  });

  test('dead letters committed: false while a group has not stored every dead letter on the log, true once it has (what a rebuild waits for)', async () => {
    const { log, cleanup } = await freshLog(kafka, 1);
    try {
      const group = `dl-${randomUUID()}`;
      assert.equal(await log.deadLettersCommitted(group, 300), true); // none on the log yet
      const record = (i: number): DeadLetter => ({
        event_id: `credit:a:r${i}`, group: 'ledger', topic: 'ledger', partition: 0, offset: String(i), kind: 'apply_failed',
        reason: 'balance_out_of_range: test', raw: '{}', ts: 1_790_000_000_000,
      });
      await log.deadLetter([record(0), record(1), record(2)]);
      assert.equal(await log.deadLettersCommitted(group, 300), false); // the group has stored none
      const got: ConsumedDeadLetter[] = [];
      const sub = await log.subscribe({
        group, topics: ['usage'], fromBeginning: true,
        handler: async () => {}, onDeadLetters: async (records) => { got.push(...records); },
      });
      try {
        assert.equal(await log.deadLettersCommitted(group, 20_000), true);
        assert.deepEqual(got.map((g) => g.offset), [0n, 1n, 2n]);
        await log.deadLetter([record(3)]);
        assert.equal(await log.deadLettersCommitted(group, 20_000), true);
        assert.deepEqual(got.map((g) => g.offset), [0n, 1n, 2n, 3n]);
      } finally {
        await sub.stop();
      }
    } finally {
      await cleanup();
    }
  });

  test('last offsets: the offset of the last record of each partition holding any, per logical topic (what a rebuild waits for the warehouse to hold)', async () => {
    const { log, cleanup } = await freshLog(kafka, 1);
    try {
      assert.deepEqual(await log.lastOffsets(['usage', 'ledger'], 10_000), new Map([['usage', new Map()], ['ledger', new Map()]]));
      const samples = sampleEvents(randomUUID().slice(0, 8), 5).map((x) => ({ ...x, topic: 'usage' as const }));
      await publishAll(log, samples, 5);
      await log.flush();
      assert.deepEqual(await log.lastOffsets(['usage', 'ledger'], 10_000), new Map([['usage', new Map([[0, 4n]])], ['ledger', new Map()]]));
    } finally {
      await cleanup();
    }
  });

  test('stored position behind what was handled (the sink state rebuilt from an earlier point), no new event: the partition is read again from stored + 1', async () => {
    const { log, cleanup } = await freshLog(kafka, 1, { positionCheckMs: 100 });
    try {
      const samples = sampleEvents(randomUUID().slice(0, 8), 5).map((x) => ({ ...x, topic: 'usage' as const }));
      await publishAll(log, samples, 5);
      let stored: bigint | undefined; // unknown: the sink's state is lost
      const seen: bigint[] = [];
      const sub = await log.subscribe({
        group: `pos-${randomUUID()}`, topics: ['usage'], fromBeginning: true,
        storedPositions: async () => (stored === undefined ? undefined : new Map([[`usage:0`, stored]])),
        handler: async (events) => {
          for (const e of events) seen.push(e.offset);
          stored = events[events.length - 1]!.offset; // effects and position stored together
        },
      });
      try {
        for (let i = 0; i < 200 && seen.length < 5; i++) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(seen, [0n, 1n, 2n, 3n, 4n]);
        stored = 1n; // rebuilt as of offset 1
        for (let i = 0; i < 200 && seen.length < 8; i++) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(seen, [0n, 1n, 2n, 3n, 4n, 2n, 3n, 4n]);
        await new Promise((r) => setTimeout(r, 500)); // and only once: stored caught up again
        assert.equal(seen.length, 8);
      } finally {
        await sub.stop();
      }
    } finally {
      await cleanup();
    }
  });

  test('stored position read while a batch of its partition begins and ends (a slow store, steady traffic): the read is not taken for a rebuilt state, nothing is read again', async () => {
    // A breaker's LOW: positions read before a batch that ended during the read looked "behind
    // what was handled", so the partition was moved back and its events read again.
    const { log, prefix, cleanup } = await freshLog(kafka, 1);
    const warnings: string[] = [];
    const group = `slow-${randomUUID()}`;
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    try {
      const watched = new KafkaLog({
        kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 50, positionCheckMs: 50,
        logger: { warn: (_o: object, m?: string) => { warnings.push(m ?? ''); }, error: () => {} },
      });
      let stored = -1n;
      const seen: bigint[] = [];
      const sub = await watched.subscribe({
        group, topics: ['usage'], fromBeginning: true,
        storedPositions: async () => {
          const at = stored; // read now, answered 150 ms later (a slow store)
          await new Promise((r) => setTimeout(r, 150));
          return new Map([['usage:0', at]]);
        },
        handler: async (events) => {
          for (const e of events) seen.push(e.offset);
          stored = events[events.length - 1]!.offset;
        },
      });
      try {
        const samples = sampleEvents(randomUUID().slice(0, 8), 150).filter((x) => x.topic === 'usage').slice(0, 40);
        for (const sample of samples) {
          await log.publish('usage', [{ event: sample.event, headers: sample.headers }]);
          await log.flush();
          await new Promise((r) => setTimeout(r, 30));
        }
        for (let i = 0; i < 100 && seen.length < samples.length; i++) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 500));
        assert.deepEqual(seen, samples.map((_, i) => BigInt(i)), 'each offset once, in order');
        assert.deepEqual(warnings.filter((w) => w.includes('behind what was handled')), []);
      } finally {
        await sub.stop();
        await watched.close();
      }
    } finally {
      await cleanup();
      await rm(spoolDir, { recursive: true, force: true });
    }
  });

  test('stored position ahead of the group\'s commit (the sink state rebuilt from a warehouse that held more), no new event: the member resumes at stored + 1 and the group commits it, so its lag reads 0', async () => {
    const { log, prefix, cleanup } = await freshLog(kafka, 1, { positionCheckMs: 100 });
    const admin = kafka.admin();
    await admin.connect();
    const group = `ahead-${randomUUID()}`;
    const committed = async () => (await admin.fetchOffsets({ groupId: log.groupName(group), topics: [`${prefix}usage`] }))[0]!.partitions[0]!.offset;
    const lags: number[] = [];
    log.reportLag((g, topic, partition, lag) => { if (g === group && topic === 'usage' && partition === 0 && lag !== null) lags.push(lag); }, 100);
    try {
      const usage = (n: number) => sampleEvents(randomUUID().slice(0, 8), n).map((x) => ({ ...x, topic: 'usage' as const }));
      await publishAll(log, usage(5), 5);
      const first = new Collector();
      const sub = await log.subscribe({ group, topics: ['usage'], fromBeginning: true, handler: first.handler() });
      try {
        for (let i = 0; i < 200 && (await committed()) !== '5'; i++) await new Promise((r) => setTimeout(r, 50));
        assert.equal(await committed(), '5', 'offsets 0–4 handled and committed');
      } finally {
        await sub.stop();
      }
      await publishAll(log, usage(3), 3); // offsets 5–7, which the group never reads below
      // A new member whose sink state is lost, then rebuilt from a warehouse that already held
      // 5–7 (stored position 7). Its handler takes nothing at or before the stored position (here
      // it refuses, as a lost state does), so only the stored position can move the commit.
      let stored: bigint | undefined;
      const taken: bigint[] = [];
      const sub2 = await log.subscribe({
        group, topics: ['usage'], fromBeginning: true,
        storedPositions: async () => (stored === undefined ? undefined : new Map([['usage:0', stored]])),
        handler: async (events) => {
          if (stored === undefined || events.some((e) => e.offset <= stored!)) throw new NotYetError('hot state lost; waiting for the rebuild');
          for (const e of events) taken.push(e.offset);
        },
      });
      try {
        await new Promise((r) => setTimeout(r, 300));
        stored = 7n;
        for (let i = 0; i < 100 && (await committed()) !== '8'; i++) await new Promise((r) => setTimeout(r, 50));
        assert.equal(await committed(), '8', 'the commit follows the stored position (it stayed at 5 before)');
        lags.length = 0;
        for (let i = 0; i < 100 && lags.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(lags.slice(-2), [0, 0]);
        assert.deepEqual(taken, []);
      } finally {
        await sub2.stop();
      }
    } finally {
      await admin.disconnect();
      await cleanup();
    }
  });

  test('records are keyed by account, carry exactly the publisher\'s headers (no event_id header), and are JSON; a record of an earlier version with an event_id header reads back with the publisher\'s headers alone', async () => {
    const { log, prefix, cleanup } = await freshLog(kafka);
    const consumer = kafka.consumer({ groupId: `raw-${randomUUID()}`, maxWaitTimeInMs: 250 });
    const producer = kafka.producer();
    try {
      const [sample, old] = sampleEvents(randomUUID().slice(0, 8), 2);
      await log.publish(sample!.topic, [{ event: sample!.event, headers: sample!.headers }]);
      await consumer.connect();
      await consumer.subscribe({ topics: [`${prefix}usage`], fromBeginning: true });
      const raw = new Promise<{ key: string; value: unknown; headers: Record<string, string> }>((resolve) => {
        void consumer.run({
          eachMessage: async ({ message }) => resolve({
            key: message.key!.toString(),
            value: JSON.parse(message.value!.toString()),
            headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
          }),
        });
      });
      const got = await raw;
      assert.equal(sample!.event.type, 'usage');
      assert.equal(got.key, sample!.event.type === 'usage' ? sample!.event.account_id : '');
      assert.deepEqual(got.value, sample!.event);
      assert.deepEqual(got.headers, sample!.headers, 'the publisher\'s headers, nothing added');
      // A record as versions before 2026-12-03 wrote it: the event's id also in an event_id header.
      await producer.connect();
      await producer.send({ topic: `${prefix}${old!.topic}`, messages: [{
        key: old!.event.type === 'usage' ? old!.event.account_id : 'k', value: JSON.stringify(old!.event),
        headers: { ...old!.headers, event_id: old!.event.event_id },
      }] });
      const seen = new Collector();
      const sub = await log.subscribe({ group: `old-${randomUUID()}`, topics: [old!.topic], handler: seen.handler(), fromBeginning: true });
      try {
        await seen.waitForAll([old!], 'the old record');
      } finally {
        await sub.stop();
      }
      assert.deepEqual({ ...seen.seen.get(old!.event.event_id)!.headers }, old!.headers);
    } finally {
      await producer.disconnect();
      await consumer.disconnect();
      await cleanup();
    }
  });

  test('compression by size and codec: under compressMinBytes of event JSON a produce goes uncompressed, at or over it in the log\'s codec (gzip by default, zstd, none); one consumer reads a partition mixing all three, in order', async () => {
    // Each produce request of the logs' (real) producers, as asked for: codec and message count.
    // The broker checks every compressed batch it is sent, and kafkajs alone has no zstd codec
    // (it throws "not implemented"), so a batch that arrives proves the codec on both ends.
    const sent: Array<{ compression: CompressionTypes | undefined; messages: number }> = [];
    class Watched extends Kafka {
      override producer(config?: Parameters<Kafka['producer']>[0]): ReturnType<Kafka['producer']> {
        const producer = super.producer(config);
        const sendBatch = producer.sendBatch.bind(producer);
        producer.sendBatch = (batch) => {
          sent.push({ compression: batch.compression, messages: batch.topicMessages!.reduce((n, t) => n + t.messages.length, 0) });
          return sendBatch(batch);
        };
        return producer;
      }
    }
    const watched = new Watched({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.ERROR });
    // One partition: the batches of the three logs interleave in one offset order.
    const { log, prefix, cleanup } = await freshLog(watched, 1);
    const others: Array<{ log: KafkaLog; dir: string }> = [];
    try {
      for (const compression of ['zstd', 'none'] as const) {
        const dir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
        others.push({ dir, log: new KafkaLog({ kafka: watched, topicPrefix: prefix, spoolDir: dir, logger: { warn: () => {}, error: () => {} }, compression }) });
      }
      const usage = sampleEvents(randomUUID().slice(0, 8), 1000).filter((s) => s.topic === 'usage');
      const chars = (batch: typeof usage) => batch.reduce((n, s) => n + JSON.stringify(s.event).length, 0);
      const small = usage.slice(0, 3);
      const large = [usage.slice(3, 100), usage.slice(100, 200), usage.slice(200, 300)];
      assert.ok(chars(small) < 16_384 && large.every((b) => chars(b) >= 16_384), 'the batches straddle the default threshold');
      const publish = (l: KafkaLog, batch: typeof usage) => l.publish('usage', batch.map((s) => ({ event: s.event, headers: s.headers })));
      await publish(log, small);
      await publish(log, large[0]!);
      await publish(others[0]!.log, large[1]!);
      await publish(others[1]!.log, large[2]!);
      assert.deepEqual(sent, [
        { compression: CompressionTypes.None, messages: 3 },
        { compression: CompressionTypes.GZIP, messages: 97 },
        { compression: CompressionTypes.ZSTD, messages: 100 },
        { compression: CompressionTypes.None, messages: 100 },
      ]);
      // All arrive whole, in order, whatever their codec.
      const got: unknown[] = [];
      const sub = await log.subscribe({ group: `c-${randomUUID()}`, topics: ['usage'], fromBeginning: true, handler: async (batch) => { got.push(...batch.map((e) => e.event)); } });
      for (let i = 0; i < 200 && got.length < 300; i++) await new Promise((r) => setTimeout(r, 50));
      await sub.stop();
      assert.deepEqual(got, [...small, ...large.flat()].map((s) => s.event));
    } finally {
      for (const o of others) {
        await o.log.close();
        await rm(o.dir, { recursive: true, force: true });
      }
      await cleanup();
    }
  });

  test('record batches written by Kafka\'s own Java producer (gzip, zstd; kafka.tools.ConsoleProducer on the broker\'s jars) are read exactly, each through the log\'s codec', async (t) => {
    // Kind: a batch from another Kafka client, framed as that client frames it (Java's
    // GZIPOutputStream; zstd-jni's streaming frames, without a content size): the codecs size
    // their output from what the batch declares, so what another writer declares must read the same.
    // (Kafka 3.9's class name, as deploy/kafka.sh pins; Kafka 4 moves it to org.apache.kafka.tools.)
    const root = join(import.meta.dirname, '..', '..', '..');
    // `cli` runs a class on the jars bash deploy/kafka.sh installed (a broker found elsewhere has none here)
    const probe = spawnSync('bash', [join(root, 'deploy/kafka.sh'), 'cli', 'kafka.tools.ConsoleProducer', '--version'], { encoding: 'utf8', timeout: 60_000 });
    if (probe.status !== 0) {
      const message = `SKIPPED: needs Kafka's jars from bash deploy/kafka.sh install (the Java producer): ${probe.stderr.trim().split('\n').pop() ?? ''}`;
      if (servicesRequired()) throw new Error(message.replace('SKIPPED: needs', 'required:'));
      process.stderr.write(`\n*** ${message} ***\n`);
      t.skip(message);
      return;
    }
    const codecTable = (kafkajsModule as unknown as { CompressionCodecs: Record<number, () => { decompress(b: Buffer): Promise<Buffer> }> }).CompressionCodecs;
    const { log, prefix, cleanup } = await freshLog(kafka, 1);
    const original = { gzip: codecTable[CompressionTypes.GZIP]!, zstd: codecTable[CompressionTypes.ZSTD]! };
    const batches: Record<'gzip' | 'zstd', Buffer[]> = { gzip: [], zstd: [] };
    for (const name of ['gzip', 'zstd'] as const) {
      const type = name === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.ZSTD;
      codecTable[type] = () => ({ ...original[name](), decompress: (b: Buffer) => { batches[name].push(Buffer.from(b)); return original[name]().decompress(b); } });
    }
    try {
      const usage = sampleEvents(randomUUID().slice(0, 8), 600).filter((s) => s.topic === 'usage').map((s) => s.event);
      for (const codec of ['gzip', 'zstd'] as const) {
        const java: SpawnSyncReturns<string> = spawnSync('bash', [join(root, 'deploy/kafka.sh'), 'cli', 'kafka.tools.ConsoleProducer',
          '--bootstrap-server', brokers.split(',')[0]!, '--topic', `${prefix}usage`, '--compression-codec', codec,
          '--producer-property', 'linger.ms=500', '--producer-property', 'batch.size=1048576'],
        { input: usage.map((e) => JSON.stringify(e)).join('\n') + '\n', encoding: 'utf8', timeout: 60_000 });
        assert.equal(java.status, 0, `the Java producer (${codec}) failed: ${java.stderr}`);
      }
      const got: unknown[] = [];
      const sub = await log.subscribe({ group: `j-${randomUUID()}`, topics: ['usage'], fromBeginning: true, handler: async (batch) => { got.push(...batch.map((e) => e.event)); } });
      for (let i = 0; i < 300 && got.length < 2 * usage.length; i++) await new Promise((r) => setTimeout(r, 50));
      await sub.stop();
      assert.deepEqual(got, [...usage, ...usage], 'every value, exactly, in order');
      assert.ok(batches.gzip.length >= 1 && batches.zstd.length >= 1, `the batches came compressed as written: ${batches.gzip.length} gzip, ${batches.zstd.length} zstd`);
      // Java's gzip batches declare their size (read: one buffer); zstd-jni's frames do not (the defaults)
      for (const b of batches.gzip) assert.equal(gunzipOptions(b).chunkSize, unzipSync(b).length + 1, 'a Java gzip batch is sized from its trailer');
      for (const b of batches.zstd) assert.deepEqual(zstdOptions(b), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES }, 'a Java zstd batch has no content size');
    } finally {
      codecTable[CompressionTypes.GZIP] = original.gzip;
      codecTable[CompressionTypes.ZSTD] = original.zstd;
      await cleanup();
    }
  });

  test('a malformed record is handed over at its offset for the consumer to quarantine; it does not block its partition', async () => {
    const { log, prefix, cleanup } = await freshLog(kafka, 1);
    const producer = kafka.producer();
    const warnings: object[] = [];
    try {
      await producer.connect();
      await producer.send({ topic: `${prefix}usage`, messages: [{ key: 'x', value: 'not json' }, { key: 'x', value: '{"no":"id"}' }] });
      const samples = sampleEvents(randomUUID().slice(0, 8), 30).filter((s) => s.topic === 'usage');
      await publishAll(log, samples);
      const group = `p-${randomUUID()}`;
      const seen = new Collector();
      const quietSpool = join(tmpdir(), `unused-${randomUUID()}`);
      const quiet = new KafkaLog({
        kafka, topicPrefix: prefix, spoolDir: quietSpool, consumerMaxWaitMs: 250,
        logger: { warn: (o) => warnings.push(o), error: (o) => warnings.push(o) },
      });
      try {
        const sub = await quiet.subscribe({ group, topics: ['usage'], handler: seen.handler(), fromBeginning: true });
        await seen.waitForAll(samples, 'after poison');
        await sub.stop();
        // Not JSON: an `undecodable` marker at offset 0; JSON without an id: as it is, at offset 1
        // (the consumers' decodeEvent refuses it). Neither is dropped silently.
        const marker = seen.seen.get('undecodable:usage:0:0');
        assert.deepEqual(marker?.event, { type: 'undecodable', event_id: 'undecodable:usage:0:0', reason: 'message value is not JSON', raw: 'not json' });
        assert.equal(marker?.offset, 0n);
        assert.deepEqual(seen.seen.get(undefined as unknown as string)?.event, { no: 'id' });
        assert.equal(warnings.length, 0);
        // Committed past the poison: a second run of the group sees nothing at all.
        const again = new Collector();
        const sub2 = await quiet.subscribe({ group, topics: ['usage'], handler: again.handler(), fromBeginning: true });
        await log.publish('usage', [{ event: { ...samples[0]!.event, event_id: `marker-${group}` } }]);
        await again.waitForAll([{ ...samples[0]!, event: { ...samples[0]!.event, event_id: `marker-${group}` } }], 'marker');
        await sub2.stop();
        assert.deepEqual([...again.seen.keys()], [`marker-${group}`]);
      } finally {
        await quiet.close();
        await rm(quietSpool, { recursive: true, force: true });
      }
    } finally {
      await producer.disconnect();
      await cleanup();
    }
  });

  test('background commit: handled offsets are committed in one request while the group runs, and stop() commits what was handled since, however far the next commit is', async () => {
    const { log, prefix, cleanup } = await freshLog(kafka, 2);
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    // Never commits by itself in this test (one hour): only stop() does.
    const lazy = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, consumerCommitIntervalMs: 3_600_000, logger: { warn: () => {}, error: () => {} } });
    const admin = kafka.admin();
    await admin.connect();
    const committed = async (groupId: string) => {
      const [t] = await admin.fetchOffsets({ groupId, topics: [`${prefix}usage`] });
      return Object.fromEntries(t!.partitions.map((p) => [p.partition, p.offset]));
    };
    try {
      const samples = sampleEvents('bc', 40).filter((s) => s.topic === 'usage');
      await publishAll(log, samples);
      const byPartition = [0, 0];
      const group = `bc-${randomUUID().slice(0, 8)}`;
      const seen = new Collector();
      const handler = seen.handler();
      const sub = await lazy.subscribe({ group, topics: ['usage'], concurrentPartitions: 2, handler: async (b) => { await handler(b); for (const e of b) byPartition[e.partition]!++; } });
      await seen.waitForAll(samples, 'lazy group');
      assert.deepEqual(await committed(lazy.groupName(group)), { 0: '-1', 1: '-1' }, 'nothing committed before stop');
      await sub.stop();
      // the next offset to read: the partition's event count (the topics are fresh); -1 where none was
      const want = { 0: byPartition[0] ? String(byPartition[0]) : '-1', 1: byPartition[1] ? String(byPartition[1]) : '-1' };
      assert.deepEqual(await committed(lazy.groupName(group)), want);
      assert.equal(byPartition[0]! + byPartition[1]!, samples.length);

      // The default interval commits on its own, while the group runs.
      const eager = `bc-${randomUUID().slice(0, 8)}`;
      const seen2 = new Collector();
      const sub2 = await log.subscribe({ group: eager, topics: ['usage'], concurrentPartitions: 2, handler: seen2.handler() });
      try {
        await seen2.waitForAll(samples, 'default group');
        const deadline = Date.now() + 10_000;
        while (JSON.stringify(await committed(log.groupName(eager))) !== JSON.stringify(want) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(await committed(log.groupName(eager)), want);
      } finally {
        await sub2.stop();
      }
    } finally {
      await admin.disconnect();
      await lazy.close();
      await rm(spoolDir, { recursive: true, force: true });
      await cleanup();
    }
  });

  test('consumer crash kafkajs does not restart (BROKER_NOT_AVAILABLE on JoinGroup): the subscription starts a new consumer and every event arrives once', async () => {
    const { log, prefix, cleanup } = await freshLog(kafka, 2);
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    // error code 8, BROKER_NOT_AVAILABLE: kafkajs marks it not retriable, so its consumer stays
    // stopped (CRASH with restart: false) unless the subscription starts another one.
    const faults = joinGroupFaults(8);
    const faulty = new Kafka({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING, socketFactory: faults.socketFactory });
    const crashes: Array<{ restart: unknown; msg: string | undefined }> = [];
    const logger = { warn: () => {}, error: (o: object, msg?: string) => { if ('restart' in o) crashes.push({ restart: o.restart, msg }); } };
    const flaky = new KafkaLog({ kafka: faulty, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, maxRetryDelayMs: 500, logger });
    try {
      const samples = sampleEvents('nr', 30).filter((s) => s.topic === 'usage');
      await publishAll(log, samples);
      faults.armed = 1;
      const seen = new Collector();
      const sub = await flaky.subscribe({ group: `nr-${randomUUID().slice(0, 8)}`, topics: ['usage'], concurrentPartitions: 2, handler: seen.handler() });
      try {
        await seen.waitForAll(samples, 'group after a crash kafkajs does not restart');
      } finally {
        await sub.stop();
      }
      assert.equal(faults.injected, 1, 'the fault hit one JoinGroup');
      assert.deepEqual(crashes.map((c) => c.restart), [false], 'one crash, which kafkajs did not restart');
      assert.deepEqual(seen.violations, []);
      assert.deepEqual([...seen.deliveries.values()].filter((n) => n !== 1), [], 'every event handled exactly once');
      assert.equal(seen.seen.size, samples.length);
    } finally {
      await flaky.close();
      await rm(spoolDir, { recursive: true, force: true });
      await cleanup();
    }
  });

  test('a handler that cannot apply its batch yet (NotYetError: state being rebuilt) gets it again after a pause, logged as one wait line per partition with the reason, no failure or stack; the events arrive once it can', async () => {
    // Kind: an expected wait logged as a failure. A fresh deployment's ledger consumer, started
    // before the warehouse owner built hot state, logged a warn with a stack per redelivery.
    const lines: Array<{ msg: string | undefined; o: Record<string, unknown> }> = [];
    const logger = { warn: (o: object, msg?: string) => { lines.push({ msg, o: o as Record<string, unknown> }); }, error: (o: object, msg?: string) => { lines.push({ msg, o: o as Record<string, unknown> }); } };
    const { log, cleanup } = await freshLog(kafka, 1, { logger, maxRetryDelayMs: 100 });
    try {
      const samples = sampleEvents(randomUUID().slice(0, 8), 10).filter((x) => x.topic === 'usage');
      await publishAll(log, samples);
      let refusals = 3;
      const seen = new Collector();
      const handle = seen.handler();
      const sub = await log.subscribe({
        group: `ny-${randomUUID().slice(0, 8)}`, topics: ['usage'], fromBeginning: true,
        handler: async (batch) => {
          if (refusals > 0) {
            refusals--;
            throw new NotYetError('hot state is not ready (test)');
          }
          await handle(batch);
        },
      });
      try {
        await seen.waitForAll(samples, 'after the waits');
      } finally {
        await sub.stop();
      }
      assert.equal(refusals, 0);
      const waits = lines.filter((l) => l.msg === 'events wait until their handler can apply them; redelivering');
      assert.equal(waits.length, 1, JSON.stringify(lines));
      assert.equal(waits[0]!.o['reason'], 'hot state is not ready (test)');
      assert.equal('err' in waits[0]!.o, false, 'no error object (no stack)');
      assert.deepEqual(lines.filter((l) => l.msg === 'event handler failed; redelivering'), []);
      assert.deepEqual([...seen.deliveries.values()].filter((n) => n !== 1), [], 'every event handled once');
    } finally {
      await cleanup();
    }
  });

  test('a consumer whose connections to Kafka fail (an outage) logs one warning naming the connection error, not an error with a stack per crash, and one line when it is back in its group; it then consumes what was published', async () => {
    // Kind: an expected outage logged as failures. An aggregator logged "kafka consumer crashed"
    // at error level with a full stack every few seconds while Kafka was stopped.
    const { log, prefix, cleanup } = await freshLog(kafka, 1);
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    // Every connection goes through a local relay to the broker; the outage closes the relay's
    // connections on the broker's side (the client sees them end) and stops its listener (new
    // connections are refused), as a stopped broker would.
    const [brokerHost, brokerPort] = brokers.split(',')[0]!.split(':') as [string, string];
    const relayed = new Set<import('node:net').Socket>();
    const relay = createServer((client) => {
      const upstream = connect({ host: brokerHost, port: Number(brokerPort) });
      for (const sock of [client, upstream]) {
        relayed.add(sock);
        sock.on('error', () => {});
        sock.on('close', () => { relayed.delete(sock); client.destroy(); upstream.destroy(); });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const relayPort = (relay.address() as import('node:net').AddressInfo).port;
    const socketFactory: ISocketFactory = ({ onConnect }) => connect({ host: '127.0.0.1', port: relayPort }, onConnect);
    const outage = async (on: boolean) => {
      if (on) {
        await new Promise<void>((r) => { relay.close(() => r()); for (const sock of relayed) sock.destroy(); });
      } else {
        await new Promise<void>((r) => relay.listen(relayPort, '127.0.0.1', r));
      }
    };
    const flaky = new Kafka({ clientId: 'tollgate-events-outage', brokers: brokers.split(','), logLevel: logLevel.NOTHING, socketFactory, retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 200 } });
    const lines: Array<{ level: string; msg: string | undefined; o: Record<string, unknown> }> = [];
    const logger = {
      warn: (o: object, msg?: string) => { lines.push({ level: 'warn', msg, o: o as Record<string, unknown> }); },
      error: (o: object, msg?: string) => { lines.push({ level: 'error', msg, o: o as Record<string, unknown> }); },
    };
    const consumer = new KafkaLog({ kafka: flaky, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, maxRetryDelayMs: 200, logger });
    try {
      const seen = new Collector();
      const sub = await consumer.subscribe({ group: `out-${randomUUID().slice(0, 8)}`, topics: ['usage'], fromBeginning: true, handler: seen.handler() });
      try {
        const first = sampleEvents(randomUUID().slice(0, 8), 6).filter((x) => x.topic === 'usage');
        await publishAll(log, first);
        await seen.waitForAll(first, 'before the outage');
        await outage(true);
        const crashed = Date.now();
        while (!lines.some((l) => l.msg === 'kafka unreachable; the consumer retries until it answers') && Date.now() - crashed < 30_000) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 2000)); // more crashes and restarts meanwhile
        const later = sampleEvents(randomUUID().slice(0, 8), 6).filter((x) => x.topic === 'usage');
        await publishAll(log, later); // through the healthy client
        await outage(false);
        await seen.waitForAll([...first, ...later], 'after the outage').catch((err: unknown) => { console.error(JSON.stringify(lines.map((l) => [l.level, l.msg, String(l.o['reason'] ?? (l.o['err'] as Error | undefined)?.message ?? ''), l.o['restart']]))); throw err; });
      } finally {
        await sub.stop();
      }
      const away = lines.filter((l) => l.msg === 'kafka unreachable; the consumer retries until it answers');
      assert.equal(away.length, 1, JSON.stringify(lines.map((l) => l.msg)));
      assert.match(String(away[0]!.o['reason']), /ECONNREFUSED 127\.0\.0\.1:1|Connection error|Closed connection/);
      assert.deepEqual(lines.filter((l) => /kafka consumer crashed/.test(l.msg ?? '')).map((l) => l.msg), [], 'no crash errors for an outage');
      assert.equal(lines.filter((l) => l.msg === 'kafka reachable again; the consumer is back in its group').length, 1);
    } finally {
      await consumer.close();
      relay.close();
      for (const sock of relayed) sock.destroy();
      await rm(spoolDir, { recursive: true, force: true });
      await cleanup();
    }
  });

  test('a subscription\'s stop is bounded (subscriptionStopTimeoutMs): a handler that never ends (a sink that stopped answering) does not hold it; the warning says so, and the next member of the group gets the events again from the last commit', { timeout: 120_000 }, async () => {
    // Kind: a clean stop while the sink (ClickHouse frozen: the client waits 30 s) or Kafka
    // (the commit and the group leave wait kafkajs' 30 s) does not answer. stop() waited for
    // them, and an aggregator's SIGTERM ran into the hard stop (exit 1).
    const lines: Array<{ msg: string | undefined; o: Record<string, unknown> }> = [];
    const logger = { warn: (o: object, msg?: string) => { lines.push({ msg, o: o as Record<string, unknown> }); }, error: () => {} };
    const { log, cleanup } = await freshLog(kafka, 1, { logger, subscriptionStopTimeoutMs: 500 });
    let stopStuck = () => {};
    try {
      const samples = sampleEvents(randomUUID().slice(0, 8), 6).filter((x) => x.topic === 'usage');
      await publishAll(log, samples);
      const group = `hang-${randomUUID().slice(0, 8)}`;
      let entered!: () => void;
      const inHandler = new Promise<void>((r) => { entered = r; });
      // never ends while the test runs; released at its end, so the stuck consumer can disconnect
      let release!: () => void;
      const never = new Promise<void>((r) => { release = r; });
      stopStuck = release;
      const stuck = await log.subscribe({ group, topics: ['usage'], fromBeginning: true, handler: () => { entered(); return never; } });
      await inHandler;
      await stuck.stop();
      assert.deepEqual(lines.filter((l) => l.msg?.startsWith('subscription stopped without finishing')).map((l) => [l.o['group'], l.o['inFlight']]), [[group, 1]]);
      const seen = new Collector();
      const next = await log.subscribe({ group, topics: ['usage'], fromBeginning: true, handler: seen.handler() });
      try {
        await seen.waitForAll(samples, 'the next member, after the stuck one left');
      } finally {
        await next.stop();
      }
    } finally {
      stopStuck();
      await cleanup();
    }
  });

  test('maxBatch: a subscription takes at most that many events per handler call; anything but a positive integer is refused', async () => {
    const { log, cleanup } = await freshLog(kafka, 1);
    try {
      const samples = sampleEvents(randomUUID().slice(0, 8), 120);
      await publishAll(log, samples);
      for (const bad of [0, -1, 1.5, Number.NaN]) {
        await assert.rejects(log.subscribe({ group: `bad-${randomUUID()}`, topics: [...TOPICS], handler: async () => {}, maxBatch: bad }), TypeError);
      }
      const sizes: number[] = [];
      const ids: string[] = [];
      let done!: () => void;
      const all = new Promise<void>((r) => { done = r; });
      const sub = await log.subscribe({
        group: `small-${randomUUID()}`, topics: [...TOPICS], maxBatch: 7,
        handler: async (batch) => {
          sizes.push(batch.length);
          for (const e of batch) ids.push(e.event.event_id);
          if (ids.length >= samples.length) done();
        },
      });
      await all;
      await sub.stop();
      assert.ok(Math.max(...sizes) <= 7, `handler calls of ${sizes.join(',')}`);
      assert.ok(sizes.length >= Math.ceil(samples.length / 7));
      assert.deepEqual([...ids].sort(), samples.map((x) => x.event.event_id).sort());
    } finally {
      await cleanup();
    }
  });
}
