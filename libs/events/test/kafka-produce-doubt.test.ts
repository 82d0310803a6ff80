// A produce the spool's sender gave up on (slower than `sendTimeoutMs`) may still complete: the
// broker wrote it and its answer is only late (a broker paused, slow, or restarting within
// kafkajs' own retries). These cases make that happen on the shared broker without stopping
// it: a kafkajs socket factory holds back the broker's Produce responses for longer than
// `sendTimeoutMs`, then releases them (or never does).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { Kafka, logLevel, type ISocketFactory } from 'kafkajs';
import { KafkaLog } from '@tollgate/events';
import type { ConsumedEvent, DeadLetter } from '@tollgate/events';
import { findKafka, requireKafka } from '../../../test/support/services.ts';
import { sampleEvents } from './event-log.contract.ts';
import { deadClient, deleteTopics, interceptFrames, quiet, readAll, spoolLines } from './spool-helpers.ts';

const brokers = await findKafka();
const PRODUCE = 0; // api key

/**
 * A kafkajs socket factory that holds back the responses to the next `armed` Produce requests
 * (api key 0) for `holdMs`, together with every response behind them on that connection (so
 * the order on the wire is kept), then hands them to kafkajs (`then: 'release'`) or cuts the
 * connection without them (`then: 'drop'`, a broker that closed it before it answered);
 * `holdMs` Infinity waits for `releaseAll()`. The broker itself gets every request at once: it
 * writes the records, only its answer is late or lost. While `refuse` is set, new connections go
 * to a port where nothing listens (the broker is away). Request headers are read from kafkajs'
 * writes (one request per `write`, connection.js); responses are cut into frames by their int32 size.
 */
function produceResponseHolds(holdMs: number, then: 'release' | 'drop' = 'release'): {
  armed: number; held: number; released: number; refuse: boolean; socketFactory: ISocketFactory; releaseAll(): void;
} {
  const releases = new Set<() => void>();
  const state = {
    armed: 0, held: 0, released: 0, refuse: false, socketFactory: undefined as unknown as ISocketFactory,
    releaseAll: () => { for (const r of [...releases]) r(); },
  };
  state.socketFactory = ({ host, port, onConnect }) => {
    const socket = state.refuse ? connect({ host: '127.0.0.1', port: 1 }, onConnect) : connect({ host, port }, onConnect);
    const holdIds = new Set<number>(); // correlation ids of Produce requests whose answer is held
    let queue: Buffer[] | null = null; // frames held back, in arrival order
    interceptFrames(socket, (header) => {
      if (header.readInt16BE(4) === PRODUCE && state.armed > 0) {
        state.armed--;
        holdIds.add(header.readInt32BE(8));
      }
    }, (frame, deliver) => {
      if (holdIds.delete(frame.readInt32BE(4)) && queue === null) {
        state.held++;
        queue = [];
        const release = (): void => {
          const frames = queue ?? [];
          queue = null;
          releases.delete(release);
          state.released++;
          if (then === 'drop') {
            // as if the broker closed the connection (kafkajs rejects what is in flight on 'end')
            deliver('end');
            socket.destroy();
          } else for (const f of frames) deliver(f);
        };
        releases.add(release);
        if (Number.isFinite(holdMs)) setTimeout(release, holdMs);
      }
      if (queue !== null) queue.push(frame);
      else deliver(frame);
    });
    return socket;
  };
  return state;
}

/** Event id → how many records of the topics carry it. */
function copiesById(records: ConsumedEvent[]): Map<string, number> {
  const copies = new Map<string, number>();
  for (const r of records) copies.set(r.event.event_id, (copies.get(r.event.event_id) ?? 0) + 1);
  return copies;
}

async function until(what: string, done: () => boolean, guardMs = 30_000): Promise<void> {
  const deadline = Date.now() + guardMs; // a guard against hanging, not a timing assertion
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

if (brokers === undefined) {
  test('a produce the spool gave up on', async (t) => {
    await requireKafka(t);
  });
} else {
  const plain = new Kafka({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING });

  /**
   * The log under test (on `kafka`, with `options`) on fresh topics with its own spool, and a
   * reader on the plain client; `cleanup` lets every held answer go, closes both and deletes the
   * topics and the spool directories.
   */
  const withReader = async (kafka: Kafka, faults: { releaseAll(): void; refuse: boolean }, options: Partial<ConstructorParameters<typeof KafkaLog>[0]>) => {
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    const readerSpool = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    const prefix = `t-${randomUUID().slice(0, 8)}.`;
    const logger = quiet();
    const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, logger, ...options });
    const reader = new KafkaLog({ kafka: plain, topicPrefix: prefix, spoolDir: readerSpool, consumerMaxWaitMs: 250, logger: quiet() });
    return {
      log, reader, logger, spoolDir,
      async cleanup() {
        faults.refuse = false;
        faults.releaseAll();
        await log.close();
        await reader.close();
        await deleteTopics(plain, prefix).catch(() => {});
        await rm(spoolDir, { recursive: true, force: true });
        await rm(readerSpool, { recursive: true, force: true });
      },
    };
  };

  test('a produce the spool gave up on is not sent twice: its late acknowledgement counts, each event reaches the topic once', async () => {
    // The answer comes 2.5 s after the 500 ms the sender waits: well inside kafkajs' 30 s request timeout.
    const faults = produceResponseHolds(2500);
    const kafka = new Kafka({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING, socketFactory: faults.socketFactory });
    const { log, reader, logger, spoolDir, cleanup } = await withReader(kafka, faults, { sendTimeoutMs: 500 });
    try {
      await log.ensureTopics(2);
      const [warm, ...samples] = sampleEvents(randomUUID().slice(0, 8), 21);
      // Connected first, so the held request is the produce of the 20 events, not a connect.
      await log.publish(warm!.topic, [{ event: warm!.event, headers: warm!.headers }]);
      await log.flush();
      faults.armed = 1;
      const publishes = samples.map((s) => log.publish(s.topic, [{ event: s.event, headers: s.headers }]));
      const outcomes = await Promise.allSettled(publishes);
      await log.flush();
      // Whatever the sender did, the held answer is out and the broker has had time to write a copy.
      await until('the held Produce response to be released', () => faults.held === 1 && faults.released === 1);
      const copies = copiesById(await readAll(reader, 1 + samples.length));
      const twice = samples.filter((s) => copies.get(s.event.event_id) !== 1);
      assert.equal(twice.length, 0, `${twice.length} of ${samples.length} events not exactly once: ${twice.map((s) => `${s.event.event_id}×${copies.get(s.event.event_id) ?? 0}`).join(' ')}`);
      assert.equal(copies.get(warm!.event.event_id), 1);
      assert.deepEqual(outcomes.filter((o) => o.status !== 'fulfilled'), [], 'every publisher resolved');
      assert.ok(logger.lines.includes('kafka unreachable; spooling events to disk'), 'the sender gave the produce up');
      assert.ok(logger.lines.includes('a produce given up on was acknowledged after all; its events are not sent again'));
      assert.deepEqual(await spoolLines(spoolDir), []);
    } finally {
      await cleanup();
    }
  });

  test('acknowledged: a publish that resolved from the spool (Kafka\'s answer held back) is not acknowledged until Kafka answers', async () => {
    const faults = produceResponseHolds(Infinity);
    const kafka = new Kafka({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING, socketFactory: faults.socketFactory });
    const { log, cleanup } = await withReader(kafka, faults, { sendTimeoutMs: 300 });
    try {
      await log.ensureTopics(2);
      const [warm, held, after] = sampleEvents(randomUUID().slice(0, 8), 3);
      await log.publish(warm!.topic, [{ event: warm!.event }]);
      await log.acknowledged(); // Kafka answered: at once
      faults.armed = 1;
      await log.publish(held!.topic, [{ event: held!.event }]); // resolves from the fsync'd spool
      assert.equal(log.reachable(), false, 'the sender gave the produce up');
      let acked = false;
      const acknowledged = log.acknowledged().then(() => { acked = true; });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(acked, false, 'only spooled, not acknowledged');
      faults.releaseAll();
      await acknowledged;
      assert.equal(log.reachable(), true);
      // Kafka up: a publish is acknowledged when it resolves.
      await log.publish(after!.topic, [{ event: after!.event }]);
      await log.acknowledged();
    } finally {
      await cleanup();
    }
  });

  test('acknowledged: calls made while Kafka is away wait together (resolved in order, not each woken by every change) and are refused when the log closes first', async () => {
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    const log = new KafkaLog({ kafka: deadClient(), spoolDir, closeTimeoutMs: 300, logger: quiet() });
    try {
      const waits: Array<Promise<string>> = [];
      for (const s of sampleEvents(randomUUID().slice(0, 8), 200)) {
        await log.publish(s.topic, [{ event: s.event }]); // resolves from the fsync'd spool
        waits.push(log.acknowledged().then(() => 'acknowledged', (err: Error) => err.message));
      }
      assert.equal(log.reachable(), false);
      await log.close();
      const outcomes = await Promise.all(waits);
      assert.deepEqual(new Set(outcomes), new Set(['event log is closed with events not acknowledged by kafka']));
      assert.equal(await log.acknowledged().then(() => 'acknowledged', (err: Error) => err.message), 'event log is closed with events not acknowledged by kafka');
    } finally {
      await log.close();
      await rm(spoolDir, { recursive: true, force: true });
    }
  });

  test('a stop while a given-up produce is unanswered: close() does not wait for it, the spool keeps its events, the next start delivers them', async () => {
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    const prefix = `t-${randomUUID().slice(0, 8)}.`;
    // Never answered while the first log runs (kafkajs would wait 30 s for it).
    const faults = produceResponseHolds(Infinity);
    const kafka = new Kafka({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING, socketFactory: faults.socketFactory });
    const logger = quiet();
    const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, sendTimeoutMs: 300, closeTimeoutMs: 300, logger });
    const samples = sampleEvents(randomUUID().slice(0, 8), 11);
    try {
      await log.ensureTopics(2);
      await log.publish(samples[0]!.topic, [{ event: samples[0]!.event }]);
      await log.flush();
      faults.armed = 1;
      const rest = samples.slice(1);
      const outcomes = await Promise.allSettled(rest.map((s) => log.publish(s.topic, [{ event: s.event }])));
      await until('the sender to give the produce up', () => logger.lines.includes('kafka unreachable; spooling events to disk'));
      // Returns after closeTimeoutMs and the fsync; the test runner's timeout is the hang guard.
      await log.close();
      assert.equal(faults.held, 1);
      assert.deepEqual(outcomes.filter((o) => o.status !== 'fulfilled'), [], 'every publisher resolved (fsync\'d)');
      assert.ok(logger.lines.includes('closing with a produce in doubt; its events stay in the spool and may reach kafka twice'));
      const left = (await spoolLines(spoolDir)).map((l) => JSON.parse(l).event.event_id as string);
      assert.deepEqual(left.sort(), rest.map((s) => s.event.event_id).sort(), 'the unsettled chunk is still spooled');

      const next = new KafkaLog({ kafka: plain, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, logger: quiet() });
      try {
        await next.flush();
        const copies = copiesById(await readAll(next, samples.length));
        // At least once; the held produce was written by the broker, so these are usually twice
        // (the documented restart case: consumers drop the copy by event_id).
        for (const s of samples) assert.ok((copies.get(s.event.event_id) ?? 0) >= 1, `${s.event.event_id} delivered`);
        assert.deepEqual(await spoolLines(spoolDir), []);
      } finally {
        await next.close();
      }
    } finally {
      faults.releaseAll();
      await log.close();
      await deleteTopics(plain, prefix).catch(() => {});
      await rm(spoolDir, { recursive: true, force: true });
    }
  });

  test('a given-up produce whose connection drops before the answer: kafkajs retries it under the same producer id, the broker dedupes, the spool counts it once', async () => {
    // A broker that restarts mid-request, seen from the client: the answer never comes, the
    // connection is reset, the next one works.
    const faults = produceResponseHolds(1500, 'drop');
    const kafka = new Kafka({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING, socketFactory: faults.socketFactory });
    const { log, reader, logger, spoolDir, cleanup } = await withReader(kafka, faults, { sendTimeoutMs: 500 });
    try {
      await log.ensureTopics(2);
      const [warm, ...samples] = sampleEvents(randomUUID().slice(0, 8), 21);
      await log.publish(warm!.topic, [{ event: warm!.event }]);
      await log.flush();
      faults.armed = 1;
      const outcomes = await Promise.allSettled(samples.map((s) => log.publish(s.topic, [{ event: s.event }])));
      await log.flush();
      assert.equal(faults.held, 1);
      const copies = copiesById(await readAll(reader, 1 + samples.length));
      const twice = samples.filter((s) => copies.get(s.event.event_id) !== 1);
      assert.equal(twice.length, 0, `${twice.length} of ${samples.length} events not exactly once`);
      assert.deepEqual(outcomes.filter((o) => o.status !== 'fulfilled'), [], 'every publisher resolved');
      assert.ok(logger.lines.includes('a produce given up on was acknowledged after all; its events are not sent again'));
    } finally {
      await cleanup();
    }
  });

  test('a given-up produce that then fails (the broker stays away past kafkajs\' retries) is sent again by a fresh producer: every event arrives, every publisher resolves', async () => {
    const faults = produceResponseHolds(1000, 'drop');
    let producers = 0;
    // Whether the sender had given the produce up when it made its second producer (read when
    // that producer is made: polling the log line afterwards raced a fast re-send on a loaded CI).
    let lines: readonly string[] = [];
    let secondAfterGiveUp: boolean | undefined;
    class Counted extends Kafka {
      override producer(config?: Parameters<Kafka['producer']>[0]): ReturnType<Kafka['producer']> {
        producers++;
        if (producers === 2) secondAfterGiveUp = lines.includes('kafka unreachable; spooling events to disk');
        return super.producer(config);
      }
    }
    // Few, short client retries, so kafkajs gives the produce up while the broker is "away".
    const kafka = new Counted({
      clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING, socketFactory: faults.socketFactory,
      connectionTimeout: 300, retry: { retries: 1, initialRetryTime: 50, maxRetryTime: 100 },
    });
    const { log, reader, logger, spoolDir, cleanup } = await withReader(kafka, faults, { sendTimeoutMs: 500, maxRetryDelayMs: 200 });
    lines = logger.lines;
    try {
      await log.ensureTopics(2);
      const [warm, ...samples] = sampleEvents(randomUUID().slice(0, 8), 21);
      await log.publish(warm!.topic, [{ event: warm!.event }]);
      await log.flush();
      faults.armed = 1;
      faults.refuse = true; // from now on, every new connection is refused
      const outcomes = await Promise.allSettled(samples.map((s) => log.publish(s.topic, [{ event: s.event }])));
      assert.deepEqual(outcomes.filter((o) => o.status !== 'fulfilled'), [], 'every publisher resolved (fsync\'d)');
      await until('the sender to give the produce up', () => logger.lines.includes('kafka unreachable; spooling events to disk'));
      // kafkajs' retries of the produce fail on refused connections; only then does the sender
      // start a fresh producer for the re-send. Then the broker is back.
      await until('the produce to fail and a fresh producer to send again', () => producers >= 2);
      assert.equal(secondAfterGiveUp, true, 'the fresh producer came after the produce was given up');
      assert.equal(faults.released, 1, 'the first connection was cut');
      faults.refuse = false;
      await log.flush();
      const copies = copiesById(await readAll(reader, 1 + samples.length));
      // The broker wrote the first produce before its connection was cut, and kafkajs reported
      // a failure: that copy is the documented ambiguous case. Nothing is missing.
      for (const s of samples) assert.ok((copies.get(s.event.event_id) ?? 0) >= 1, `${s.event.event_id} delivered`);
      assert.ok(!logger.lines.includes('a produce given up on was acknowledged after all; its events are not sent again'));
      assert.ok(logger.lines.includes('kafka reachable again; sending the spool'));
      assert.deepEqual(await spoolLines(spoolDir), []);
    } finally {
      await cleanup();
    }
  });

  test('dead letters while a spool produce is in doubt: not stuck behind it (every try timed out and each abandoned one wrote later), sent at once, in the topic once', async () => {
    const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
    const prefix = `t-${randomUUID().slice(0, 8)}.`;
    // The spool's produce is never answered until the end of the test: in doubt throughout.
    const faults = produceResponseHolds(Infinity);
    const kafka = new Kafka({ clientId: 'tollgate-events-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING, socketFactory: faults.socketFactory });
    const logger = quiet();
    const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, sendTimeoutMs: 500, closeTimeoutMs: 300, logger });
    const admin = plain.admin();
    try {
      await log.ensureTopics(2);
      const [warm, ...samples] = sampleEvents(randomUUID().slice(0, 8), 11);
      await log.publish(warm!.topic, [{ event: warm!.event }]);
      await log.flush();
      faults.armed = 1;
      await Promise.all(samples.map((s) => log.publish(s.topic, [{ event: s.event }])));
      await until('the sender to give the produce up', () => logger.lines.includes('kafka unreachable; spooling events to disk'));
      // A ledger consumer setting a poison event aside, as services/aggregator does: it retries
      // a dead letter that failed (the batch is handled again), up to three times here.
      const letter: DeadLetter = {
        event_id: `poison-${randomUUID()}`, group: 'ledger', topic: 'ledger', partition: 0, offset: '7',
        kind: 'invalid_event', reason: 'test', raw: '{}', ts: Date.now(),
      };
      const failures: string[] = [];
      for (let i = 0; i < 3; i++) {
        try {
          await log.deadLetter([letter]);
          break;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
      // The spool's produce settles (acknowledged), and whatever dead-letter produce is left runs.
      faults.releaseAll();
      await log.flush();
      await log.close();
      await admin.connect();
      const [mark] = await admin.fetchTopicOffsets(log.deadLetterTopicName());
      assert.deepEqual(failures, [], 'deadLetter() succeeded at once');
      assert.equal(Number(mark!.high) - Number(mark!.low), 1, 'the dead letter is in its topic once');
    } finally {
      faults.releaseAll();
      await log.close();
      await admin.disconnect().catch(() => {});
      await deleteTopics(plain, prefix).catch(() => {});
      await admin.connect().then(() => admin.deleteTopics({ topics: [`${prefix}dead-letter`] })).catch(() => {});
      await admin.disconnect().catch(() => {});
      await rm(spoolDir, { recursive: true, force: true });
    }
  });
}
