// "Kafka unreachable" for real: publishing keeps resolving by spooling to disk, and the spool is
// delivered, in order and completely, by the next KafkaLog that starts on the same directory.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Kafka, logLevel } from 'kafkajs';
import { EventTooLargeError, KafkaLog, MAX_EVENT_BYTES, MAX_RECORD_BYTES, NotPublishedError, partitionKey, TOPICS } from '@tollgate/events';
import type { AnyEvent, ConsumedEvent, KafkaLogLogger, KafkaLogOptions } from '@tollgate/events';
import { findKafka, requireKafka, stopKafka, startKafka } from '../../../test/support/services.ts';
import { Collector, publishAll, sampleEvents } from './event-log.contract.ts';
import { deadClient, deleteTopics, quiet, readAll, spoolLines } from './spool-helpers.ts';

const brokers = await findKafka();

test('no broker: publish resolves by spooling; the next start on the spool delivers each event exactly once', async () => {
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const samples = sampleEvents(randomUUID().slice(0, 8), 100);
  try {
    const downLog = quiet();
    const down = new KafkaLog({ kafka: deadClient(), topicPrefix: prefix, spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200, logger: downLog });
    await publishAll(down, samples, 10);
    const lines = await spoolLines(spoolDir);
    assert.equal(lines.length, 100);
    assert.deepEqual(lines.map((l) => JSON.parse(l).event.event_id).sort(), samples.map((s) => s.event.event_id).sort());
    await down.close(); // cannot flush: the events stay in the spool for the next start
    assert.equal((await spoolLines(spoolDir)).length, 100);
    assert.ok(downLog.lines.includes('kafka unreachable; spooling events to disk'));

    if (brokers === undefined) return; // the delivery half needs a broker (see the skip below)
    const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.ERROR });
    const upLog = quiet();
    const up = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, logger: upLog });
    try {
      // The drain starts at construction and retries until the topics exist.
      await up.ensureTopics(4);
      await up.flush();
      assert.deepEqual(await spoolLines(spoolDir), []);
      assert.deepEqual((await readdir(spoolDir)).filter((n) => n.endsWith('.jsonl')), []);
      const records = await readAll(up, 100);
      const copies = new Map<string, number>();
      for (const r of records) copies.set(r.event.event_id, (copies.get(r.event.event_id) ?? 0) + 1);
      assert.equal(records.length, 100);
      for (const s of samples) assert.equal(copies.get(s.event.event_id), 1, `${s.event.event_id} once`);
      // Spooled order is publish order, so per key the offsets follow publish order.
      const check = new Collector();
      await check.handler()(records.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0)));
      assert.deepEqual(check.violations, []);
      assert.ok(upLog.lines.includes('found spooled events from an earlier run; delivering them first'));
    } finally {
      await up.close();
      await deleteTopics(kafka, prefix);
    }
  } finally {
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('no broker at all: the delivery half of the spool test', async (t) => {
  if (brokers !== undefined) return;
  await requireKafka(t);
});

test('a spool append that wrote nothing (disk full) rejects with NotPublishedError, so a caller may free what it claimed; the log goes on with the next publish', async () => {
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const samples = sampleEvents(randomUUID().slice(0, 8), 5);
  const log = new KafkaLog({ kafka: deadClient(), topicPrefix: `t-${randomUUID().slice(0, 8)}.`, spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200, segmentMaxEvents: 1, logger: quiet() });
  try {
    await log.publish(samples[0]!.topic, [{ event: samples[0]!.event }]);
    // The next segment is /dev/full: every write to it fails with ENOSPC, nothing written.
    await symlink('/dev/full', join(spoolDir, 'spool-000000000001.jsonl'));
    const failed = await log.publish(samples[1]!.topic, [{ event: samples[1]!.event }]).then(() => undefined, (err: unknown) => err);
    assert.ok(failed instanceof NotPublishedError, String(failed));
    assert.match(failed.message, /^spool append failed, nothing written: ENOSPC/);
    await rm(join(spoolDir, 'spool-000000000001.jsonl'));
    await log.publish(samples[2]!.topic, [{ event: samples[2]!.event }]);
    // The next segment file cannot even be made (here a directory stands in its place, EISDIR;
    // no inode left or a read-only disk alike): nothing written either.
    await mkdir(join(spoolDir, 'spool-000000000003.jsonl'));
    const unopened = await log.publish(samples[3]!.topic, [{ event: samples[3]!.event }]).then(() => undefined, (err: unknown) => err);
    assert.ok(unopened instanceof NotPublishedError, String(unopened));
    assert.match(unopened.message, /^spool append failed, nothing written: EISDIR/);
    await rm(join(spoolDir, 'spool-000000000003.jsonl'), { recursive: true });
    await log.publish(samples[4]!.topic, [{ event: samples[4]!.event }]);
    assert.deepEqual((await spoolLines(spoolDir)).map((l) => JSON.parse(l).event.event_id), [0, 2, 4].map((i) => samples[i]!.event.event_id));
  } finally {
    await log.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('a torn last spool line (a write that never returned) is skipped, the rest delivered', async (t) => {
  const url = await requireKafka(t);
  if (!url) return;
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const kafka = new Kafka({ brokers: url.split(','), logLevel: logLevel.ERROR });
  const samples = sampleEvents(randomUUID().slice(0, 8), 10);
  const line = (s: (typeof samples)[number]) => JSON.stringify({ topic: s.topic, event: s.event, headers: s.headers }) + '\n';
  await appendFile(join(spoolDir, 'spool-000000000007.jsonl'), samples.map(line).join('') + line(samples[0]!).slice(0, 40));
  const logger = quiet();
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, logger });
  try {
    await log.ensureTopics(2);
    await log.flush();
    const records = await readAll(log, 10);
    assert.deepEqual(records.map((r) => r.event.event_id).sort(), samples.map((s) => s.event.event_id).sort());
    assert.ok(logger.lines.includes('skipping unreadable spool line'));
    assert.deepEqual(await readdir(spoolDir), []);
  } finally {
    await log.close();
    await deleteTopics(kafka, prefix);
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('steady publishing: an acknowledged spool file is emptied and reused, not reopened per publish; close leaves nothing', async (t) => {
  if (brokers === undefined) {
    await requireKafka(t);
    return;
  }
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.ERROR });
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, logger: quiet() });
  try {
    await log.ensureTopics(1);
    const samples = sampleEvents(randomUUID().slice(0, 8), 5);
    const files = new Set<string>();
    for (const s of samples) {
      await log.publish(s.topic, [{ event: s.event }]);
      await log.flush();
      const names = (await readdir(spoolDir)).filter((n) => n.endsWith('.jsonl'));
      assert.equal(names.length, 1, 'one spool file, kept open');
      names.forEach((n) => files.add(n));
      assert.equal(await readFile(join(spoolDir, names[0]!), 'utf8'), '', 'acknowledged: nothing left to re-send on a restart');
    }
    assert.equal(files.size, 1, 'the same file every time');
    assert.equal((await readAll(log, 5)).length, 5);
    await log.close();
    assert.deepEqual((await readdir(spoolDir)).filter((n) => n.endsWith('.jsonl')), []);
  } finally {
    await log.close();
    await deleteTopics(kafka, prefix);
    await rm(spoolDir, { recursive: true, force: true });
  }
});

/** `event` padded (a `pad` field) to exactly `bytes` bytes of JSON. */
function padded(event: AnyEvent, bytes: number): AnyEvent {
  const base = { ...event, pad: '' };
  return { ...base, pad: 'p'.repeat(bytes - Buffer.byteLength(JSON.stringify(base))) } as unknown as AnyEvent;
}

/**
 * Starts a KafkaLog on the real broker over a spool written while Kafka was away, on
 * one-partition topics (every produce one record batch): fails unless the spool is delivered
 * within 60 s and emptied; then reads back `expected` records (any order), deletes the topics.
 */
async function deliverSpooled(spoolDir: string, prefix: string, expected: number, options: Partial<KafkaLogOptions> = {}): Promise<ConsumedEvent[]> {
  const kafka = new Kafka({ brokers: brokers!.split(','), logLevel: logLevel.NOTHING });
  const up = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, logger: quiet(), ...options });
  try {
    await up.ensureTopics(1);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([up.flush(), new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('the spool was not delivered within 60 s')), 60_000); })]);
    clearTimeout(timer);
    assert.deepEqual(await spoolLines(spoolDir), []);
    return await readAll(up, expected);
  } finally {
    await up.close();
    await deleteTopics(kafka, prefix);
  }
}

test('a record Kafka would refuse on every send is refused at publish, nothing spooled: headers that push an event at MAX_EVENT_BYTES past MAX_RECORD_BYTES (EventTooLargeError), a header value that is not a string (NotPublishedError)', async () => {
  // Kind: what the broker or kafkajs refuses at every send holds the spool at it for good, so
  // it must never be spooled. No broker needed: refused before anything is written.
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const samples = sampleEvents(randomUUID().slice(0, 8), 3);
  const log = new KafkaLog({ kafka: deadClient(), topicPrefix: `t-${randomUUID().slice(0, 8)}.`, spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200, logger: quiet() });
  try {
    const atBound = padded(samples[0]!.event, MAX_EVENT_BYTES);
    const key = partitionKey(atBound);
    const id = atBound.event_id;
    // JSON + key + framing (32) + the header (name, value, 10); no event_id header since 2026-12-03
    const overhead = Buffer.byteLength(key) + 32 + 'baggage'.length + 10;
    const baggage = (n: number) => ({ baggage: 'h'.repeat(n) });
    const fits = MAX_RECORD_BYTES - MAX_EVENT_BYTES - overhead;
    const refused = await log.publish('usage', [{ event: samples[1]!.event }, { event: atBound, headers: baggage(fits + 1) }]).then(() => undefined, (err: unknown) => err);
    assert.ok(refused instanceof EventTooLargeError, String(refused));
    assert.equal(refused.message, `event ${id} is ${MAX_RECORD_BYTES + 1} bytes as a Kafka record (its JSON, key and headers); one record on the log is at most ${MAX_RECORD_BYTES} (nothing of this publish was written)`);
    const notString = await log.publish('usage', [{ event: samples[2]!.event, headers: { 'x-n': 5 } as unknown as Record<string, string> }]).then(() => undefined, (err: unknown) => err);
    assert.ok(notString instanceof NotPublishedError && !(notString instanceof EventTooLargeError), String(notString));
    assert.equal(notString.message, `event ${samples[2]!.event.event_id} has header "x-n" of type number; header values are strings (nothing of this publish was written)`);
    assert.deepEqual(await spoolLines(spoolDir), []);
    // At the bound exactly: accepted and spooled.
    await log.publish('usage', [{ event: atBound, headers: baggage(fits) }]);
    assert.deepEqual((await spoolLines(spoolDir)).map((l) => JSON.parse(l).event.event_id), [id]);
  } finally {
    await log.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('a produce counts its records\' keys, headers and framing, not only their values, against the broker\'s batch cap: 500 uncompressed events of 2,000 bytes with a trace context each, spooled while Kafka was away, reach a real broker', async (t) => {
  // Kind: a produce whose values fit MAX_EVENT_BYTES but whose record batch, with each
  // record's key, headers and framing, is over the broker's `message.max.bytes` (1,048,588):
  // refused on every try, the spool held there for good. Reachable with KAFKA_COMPRESSION=none
  // (or incompressible events): 500 × 2,000 bytes of values is exactly 1,000,000.
  if (brokers === undefined) {
    await requireKafka(t);
    return;
  }
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const samples = sampleEvents(randomUUID().slice(0, 8), 500);
  const events = samples.map((sm) => ({ event: padded(sm.event, 2000), headers: sm.headers }));
  assert.equal(events.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e.event)), 0), MAX_EVENT_BYTES);
  try {
    const down = new KafkaLog({ kafka: deadClient(), topicPrefix: prefix, spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200, logger: quiet() });
    await down.publish('usage', events);
    await down.close();
    const records = await deliverSpooled(spoolDir, prefix, events.length, { compression: 'none' });
    assert.deepEqual(records.map((r) => r.event.event_id), events.map((e) => e.event.event_id));
    assert.deepEqual(records.map((r) => r.headers.traceparent), samples.map((sm) => sm.headers.traceparent));
  } finally {
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('an event over MAX_EVENT_BYTES is refused at publish (EventTooLargeError, nothing spooled); events just under it, spooled while Kafka was away, reach a real broker one produce each, and the spool goes on', async (t) => {
  // Kind: an event or a produce a broker refuses on every try (its record batch over
  // `message.max.bytes`, ~1 MiB by default). The spool used to hold at it for good: a 2.7 MB
  // price catalog stopped every usage event behind it (a tester's case), and so would three
  // 600 KB events in one produce.
  if (brokers === undefined) {
    await requireKafka(t);
    return;
  }
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const samples = sampleEvents(randomUUID().slice(0, 8), 11);
  const sized = (i: number, bytes: number) => padded(samples[i]!.event, bytes);
  try {
    const down = new KafkaLog({ kafka: deadClient(), topicPrefix: prefix, spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200, logger: quiet() });
    await down.publish('usage', [{ event: samples[0]!.event }]);
    const big = sized(1, MAX_EVENT_BYTES + 1);
    assert.equal(Buffer.byteLength(JSON.stringify(big)), 1_000_001);
    const refused = await down.publish('usage', [{ event: samples[2]!.event }, { event: big }]).then(() => undefined, (err: unknown) => err);
    assert.ok(refused instanceof EventTooLargeError && refused instanceof NotPublishedError, String(refused));
    assert.equal(refused.message, `event ${samples[1]!.event.event_id} is 1000001 bytes of JSON; one event on the log is at most 1000000 (nothing of this publish was written)`);
    // Three events of 600,000 bytes (any two over a broker's batch cap together) and one of exactly the bound.
    await down.publish('usage', [3, 4, 5].map((i) => ({ event: sized(i, 600_000) })));
    // Three of 300,000 random CJK characters, 900,000 bytes each (little for gzip to take off):
    // counted in bytes, not characters.
    const cjk = () => {
      const r = randomBytes(600_000);
      return Array.from({ length: 300_000 }, (_, j) => String.fromCharCode(0x4e00 + (r.readUInt16LE(2 * j) % 20_000))).join('');
    };
    await down.publish('usage', [8, 9, 10].map((i) => ({ event: { ...samples[i]!.event, pad: cjk() } as unknown as AnyEvent })));
    await down.publish('usage', [{ event: sized(6, MAX_EVENT_BYTES) }, { event: samples[7]!.event }]);
    const spooled = [0, 3, 4, 5, 8, 9, 10, 6, 7];
    assert.deepEqual((await spoolLines(spoolDir)).map((l) => JSON.parse(l).event.event_id), spooled.map((i) => samples[i]!.event.event_id));
    await down.close();

    // One partition: the big events share its record batches.
    const records = await deliverSpooled(spoolDir, prefix, spooled.length);
    assert.deepEqual(records.map((r) => r.event.event_id).sort(), spooled.map((i) => samples[i]!.event.event_id).sort());
    const six = records.find((r) => r.event.event_id === samples[6]!.event.event_id)!;
    assert.equal(Buffer.byteLength(JSON.stringify(six.event)), MAX_EVENT_BYTES);
  } finally {
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('beforeSpool refusing: publish rejects with NotPublishedError naming why, and nothing is written to the spool; allowing: written as before', async () => {
  // Kind: a process that may have lost its claim on the spool directory must not append to it
  // (services/tollgate's DATA_DIR lock: another process may have read the segment and will delete it).
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  let refuse: Error | undefined = new Error('the DATA_DIR lock was taken over');
  const log = new KafkaLog({ kafka: deadClient(), topicPrefix: 't-guard.', spoolDir, sendTimeoutMs: 1000, closeTimeoutMs: 200, logger: quiet(), beforeSpool: () => refuse });
  try {
    const [one] = sampleEvents(randomUUID().slice(0, 8), 1);
    await assert.rejects(log.publish('usage', [one!]), (err: unknown) => {
      assert.ok(err instanceof NotPublishedError);
      assert.equal(err.message, 'event log refused to spool: the DATA_DIR lock was taken over');
      return true;
    });
    assert.equal((await spoolLines(spoolDir)).length, 0);
    refuse = undefined;
    void log.publish('usage', [one!]).catch(() => {}); // Kafka is absent: it stays spooled
    assert.equal((await spoolLines(spoolDir)).length, 1);
  } finally {
    await log.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('close with Kafka away does not wait for Kafka: once every event is fsync\'d in the spool it stops, cutting short a Kafka call under way (a broker that accepts and never answers), with closeTimeoutMs and sendTimeoutMs of 10 minutes; the spool keeps every event', { timeout: 60_000 }, async () => {
  // Kind: a stop (SIGTERM) while Kafka is away. It used to wait for Kafka to come back until
  // closeTimeoutMs, and then for the sender's call in progress (a connection's retries, a
  // produce up to sendTimeoutMs): a gateway stopped in an outage ran into its hard stop, exit 1.
  // The fake broker first resets every connection (so the log knows Kafka is away), then
  // accepts and never answers (so a call is under way when close is called).
  let mode: 'reset' | 'hang' = 'reset';
  let hanging = 0;
  const held = new Set<Socket>();
  const broker = createServer((socket) => {
    if (mode === 'reset') return void socket.resetAndDestroy();
    hanging++;
    held.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => broker.listen(0, '127.0.0.1', r));
  const port = (broker.address() as AddressInfo).port;
  const kafka = new Kafka({ brokers: [`127.0.0.1:${port}`], connectionTimeout: 600_000, requestTimeout: 600_000, retry: { retries: 0 }, logLevel: logLevel.NOTHING });
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const logger = quiet();
  const log = new KafkaLog({ kafka, topicPrefix: 't-close-away.', spoolDir, sendTimeoutMs: 600_000, closeTimeoutMs: 600_000, maxRetryDelayMs: 100, logger });
  try {
    const samples = sampleEvents(randomUUID().slice(0, 8), 5);
    await publishAll(log, samples, 1); // resolves once fsync'd: Kafka refused the first send
    assert.ok(logger.lines.includes('kafka unreachable; spooling events to disk'), logger.lines.join('\n'));
    mode = 'hang';
    while (hanging === 0) await new Promise((r) => setTimeout(r, 20)); // the sender's next try is under way
    await log.close();
    assert.deepEqual((await spoolLines(spoolDir)).map((l) => JSON.parse(l).event.event_id).sort(), samples.map((s) => s.event.event_id).sort());
    assert.ok(logger.lines.includes('closing with events still spooled; they are delivered on the next start'), logger.lines.join('\n'));
    // the call cut short had not connected: nothing was sent, so nothing is in doubt
    assert.ok(!logger.lines.some((l) => l.startsWith('closing with a produce in doubt')), logger.lines.join('\n'));
  } finally {
    for (const s of held) s.destroy();
    broker.close();
    await log.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
});

test('close bounds its wait by closeTimeoutMs even when Kafka was never known away: a broker that accepts and never answers from the start (the first connection still being tried), sendTimeoutMs of 10 minutes; the spool keeps every event', { timeout: 60_000 }, async () => {
  // Kind: the same stop, before the log has learnt that Kafka is away (its first connection
  // retries for seconds). close waited past closeTimeoutMs for the sender's call, up to
  // sendTimeoutMs.
  const held = new Set<Socket>();
  const broker = createServer((socket) => { held.add(socket); socket.on('error', () => {}); });
  await new Promise<void>((r) => broker.listen(0, '127.0.0.1', r));
  const port = (broker.address() as AddressInfo).port;
  const kafka = new Kafka({ brokers: [`127.0.0.1:${port}`], connectionTimeout: 600_000, requestTimeout: 600_000, retry: { retries: 0 }, logLevel: logLevel.NOTHING });
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const logger = quiet();
  const log = new KafkaLog({ kafka, topicPrefix: 't-close-never.', spoolDir, sendTimeoutMs: 600_000, closeTimeoutMs: 300, logger });
  try {
    const samples = sampleEvents(randomUUID().slice(0, 8), 3);
    const published = publishAll(log, samples, 1).catch((err: unknown) => err);
    while (held.size === 0) await new Promise((r) => setTimeout(r, 20)); // the first send is under way
    await log.close();
    assert.equal(await published, undefined, 'the publishes resolve: close fsync\'d their events in the spool');
    assert.ok(!logger.lines.some((l) => l.startsWith('closing with a produce in doubt')), `never connected, so nothing in doubt: ${logger.lines.join('\n')}`);
    assert.deepEqual((await spoolLines(spoolDir)).map((l) => JSON.parse(l).event.event_id).sort(), samples.map((s) => s.event.event_id).sort());
  } finally {
    for (const s of held) s.destroy();
    broker.close();
    await log.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
});
