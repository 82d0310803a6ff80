// Kafka stopped for real under publishing. It stops the shared local broker, so it is a
// `.fault.test.ts`: `npm test` runs these one at a time after every other suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaLog } from '@tollgate/events';
import { requireFaultControl, requireKafka, stopKafka, startKafka } from '../../../test/support/services.ts';
import { publishAll, sampleEvents } from './event-log.contract.ts';
import { deleteTopics, quiet, readAll, spoolLines } from './spool-helpers.ts';

test('broker stopped under load: publishing never fails and every event arrives after restart', async (t) => {
  const url = await requireKafka(t);
  if (!url || !(await requireFaultControl(t, 'kafka'))) return;
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const kafka = new Kafka({
    brokers: url.split(','), connectionTimeout: 500, requestTimeout: 2000,
    retry: { retries: 1, maxRetryTime: 500 }, logLevel: logLevel.NOTHING,
  });
  const logger = quiet();
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, sendTimeoutMs: 2000, maxRetryDelayMs: 500, consumerMaxWaitMs: 250, logger });
  const samples = sampleEvents(randomUUID().slice(0, 8), 600);
  let restarted = false;
  try {
    await log.ensureTopics(4);
    let i = 0;
    const publishSome = async (count: number) => {
      const slice = samples.slice(i, i + count);
      i += slice.length;
      await publishAll(log, slice, 5);
    };
    await publishSome(100);
    await log.flush();
    await stopKafka();
    // Every publish resolves while the broker is down: the spool takes them.
    for (let k = 0; k < 8; k++) {
      await publishSome(50);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok((await spoolLines(spoolDir)).length > 0, 'events were spooled during the outage');
    await startKafka();
    restarted = true;
    await publishSome(100);
    await log.flush();
    assert.equal(i, samples.length);
    assert.deepEqual(await spoolLines(spoolDir), []);
    const records = await readAll(log, samples.length);
    const ids = new Set(records.map((r) => r.event.event_id));
    for (const s of samples) assert.ok(ids.has(s.event.event_id), `${s.event.event_id} delivered`);
    // Copies are possible after an ambiguous failure (consumers drop them by event_id); show them.
    t.diagnostic(`records ${records.length} for ${samples.length} events`);
  } finally {
    if (!restarted) await startKafka();
    await log.close();
    await deleteTopics(kafka, prefix).catch(() => {});
    await rm(spoolDir, { recursive: true, force: true });
  }
});
