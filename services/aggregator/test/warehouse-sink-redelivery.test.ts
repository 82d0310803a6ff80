// The warehouse sink on real Kafka, against chDB and a ClickHouse server: a batch whose insert
// succeeded but whose commit never happened (the process died in between) is delivered again,
// and events a producer sent twice (a spool re-send: same ids at new offsets) arrive too. Every
// event is stored once: exact row count and Σ cost in µc, and every rollup equal to the raw sums
// (the rollup_skip check, by `usage_event_ids`, marks the second copies).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaLog, type ConsumedEvent, type UsageEvent } from '@tollgate/events';
import { createChdbClickHouse, createHttpClickHouse, Warehouse, type StoreItem } from '@tollgate/warehouse';
import { startWarehouseSink } from '@tollgate/aggregator';
import { requireClickHouse, requireKafka } from '../../../test/support/services.ts';
import { usageEvent } from '../../../test/support/events.ts';

const EVENTS = 3000;
const RESENT = 500;
// Σ 1..3000 µc
const TOTAL_COST = 4_501_500n;

function events(): UsageEvent[] {
  const t0 = Date.UTC(2026, 10, 30, 12, 0, 0);
  return Array.from({ length: EVENTS }, (_, i) => usageEvent(`sink_${i}`, `acc_${i % 50}`, { ts: t0 + i * 10, cost_micros: String(i + 1) }));
}

async function run(t: Parameters<typeof requireKafka>[0], warehouse: Warehouse, cleanup: () => Promise<void>): Promise<void> {
  const kafkaUrl = await requireKafka(t);
  if (!kafkaUrl) return;
  const id = randomUUID().slice(0, 8);
  const kafka = new Kafka({ clientId: `test-wh-sink-${id}`, brokers: kafkaUrl.split(','), logLevel: logLevel.NOTHING });
  const spoolDir = mkdtempSync(join(tmpdir(), 'tollgate-wh-sink-'));
  const log = new KafkaLog({ kafka, topicPrefix: `test-whs-${id}.`, spoolDir, logger: { warn: () => {}, error: () => {} }, maxRetryDelayMs: 200 });
  try {
    await log.ensureTopics(2);
    await warehouse.migrate();
    // The first insert is stored, then the "process dies" before its batch is committed.
    let crashes = 0;
    const dying = new Proxy(warehouse, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (prop === 'storeEvents') {
          return async (items: StoreItem[], group: string) => {
            const out = await target.storeEvents(items, group);
            if (crashes === 0) {
              crashes++;
              throw new Error('killed between the insert and the commit');
            }
            return out;
          };
        }
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const all = events();
    let flushed = 0;
    let done!: () => void;
    const finished = new Promise<void>((r) => { done = r; });
    const sub = await startWarehouseSink({
      log, warehouse: dying, flushMs: 50, group: `test-whs-${id}`,
      onFlushed: (b: ConsumedEvent[]) => { flushed += b.length; if (flushed >= EVENTS + RESENT) done(); },
    });
    await log.publish('usage', all.map((event) => ({ event })));
    // A producer re-send: the first RESENT events again, at new offsets.
    await log.publish('usage', all.slice(0, RESENT).map((event) => ({ event })));
    await log.flush();
    await finished;
    await sub.stop();

    assert.equal(crashes, 1);
    const totals = await warehouse.usageTotals({});
    assert.equal(totals.requests, EVENTS);
    assert.equal(totals.costMicros, TOTAL_COST);
    for (const table of [warehouse.tables.rollupMinute, warehouse.tables.rollupHour, warehouse.tables.rollupDay]) {
      const r = await warehouse.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table}`);
      assert.deepEqual([r[0]!['n'], r[0]!['c']], [String(EVENTS), String(TOTAL_COST)], table);
    }
    // Every offset of both partitions stored: 3,000 + 500 events over 2 partitions.
    const positions = (await warehouse.logPositions()).usage;
    assert.equal([...positions.values()].reduce((s, o) => s + o + 1n, 0n), BigInt(EVENTS + RESENT));
  } finally {
    await log.close();
    const admin = kafka.admin();
    await admin.connect();
    const topics = (await admin.listTopics()).filter((n) => n.startsWith(`test-whs-${id}.`));
    if (topics.length) await admin.deleteTopics({ topics });
    await admin.disconnect();
    rmSync(spoolDir, { recursive: true, force: true });
    await cleanup();
  }
}

test('warehouse sink, chDB: a batch redelivered after a crash between insert and commit, and producer re-sends, are stored once (rows, Σ cost µc, every rollup)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-wh-sink-chdb-'));
  const warehouse = new Warehouse({ client: createChdbClickHouse({ path: dir }) });
  await run(t, warehouse, async () => {
    await warehouse.close();
    rmSync(dir, { recursive: true, force: true });
  });
});

test('warehouse sink, ClickHouse server: a batch redelivered after a crash between insert and commit, and producer re-sends, are stored once (rows, Σ cost µc, every rollup)', async (t) => {
  const url = await requireClickHouse(t);
  if (!url) return;
  const database = `test_whs_${randomUUID().slice(0, 8)}`;
  const warehouse = new Warehouse({ client: createHttpClickHouse({ url }), database });
  await run(t, warehouse, async () => {
    await warehouse.command(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => {});
    await warehouse.close();
  });
});
