// The warehouse sink's start repair in a Kafka group shared with another member: it rebuilds the
// recent rollups of the accounts of its own usage partitions only. The other member may be
// inserting its accounts' usage into the same hour and day buckets meanwhile, and a rebuild that
// falls between such an insert's raw block and its view blocks counts those events twice (or
// drops them) in every rollup. Before, the sink repaired every account of the last hour before
// it even joined its group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { logLevel } from 'kafkajs';
import { KafkaLog, producerPartition, type ConsumedEvent, type Subscription } from '@tollgate/events';
import { createChdbClickHouse, createHttpClickHouse, Warehouse, WarehouseUnavailableError, type WarehouseOptions } from '@tollgate/warehouse';
import { startWarehouseSink } from '@tollgate/aggregator';
import { requireClickHouse, requireKafka } from '../../../test/support/services.ts';
import { usageEvent } from '../../../test/support/events.ts';
import { kafkaScratch, quiet } from '../../../libs/events/test/kafka-scratch.ts';

type Repair = Parameters<NonNullable<WarehouseOptions['onRepair']>>[0];

/** Σ cost (µc) and requests per account in each rollup, as "requests:cost". */
async function rollups(w: Warehouse, accounts: string[]): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const a of accounts) {
    out[a] = [];
    for (const table of [w.tables.rollupMinute, w.tables.rollupHour, w.tables.rollupDay]) {
      const r = await w.select(`SELECT toString(sum(requests)) AS n, toString(sum(cost)) AS c FROM ${table} WHERE account_id = {a:String}`, { a });
      out[a]!.push(`${r[0]?.['n'] ?? 0}:${r[0]?.['c'] ?? 0}`);
    }
  }
  return out;
}

async function run(t: Parameters<typeof requireKafka>[0], make: (onRepair: WarehouseOptions['onRepair']) => Warehouse, cleanup: (w: Warehouse) => Promise<void>): Promise<void> {
  const kafkaUrl = await requireKafka(t);
  if (!kafkaUrl) return;
  const { kafka, prefix, spoolDirs: dirs, cleanup: dropScratch } = await kafkaScratch(kafkaUrl, 3, logLevel.NOTHING);
  const id = randomUUID().slice(0, 8);
  const producer = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: dirs[0]!, logger: quiet });
  const otherLog = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: dirs[1]!, logger: quiet, consumerMaxWaitMs: 250 });
  const sinkLog = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: dirs[2]!, logger: quiet, consumerMaxWaitMs: 250 });
  const repairs: Repair[] = [];
  const w = make((r) => repairs.push(r));
  const group = `wsa-${id}`;
  const admin = kafka.admin();
  await admin.connect();
  const subs: Subscription[] = [];
  try {
    await producer.ensureTopics(2);
    await w.migrate();
    // One account on each usage partition.
    const topic = producer.topicName('usage');
    const candidates = Array.from({ length: 20 }, (_, i) => `acc_wsa_${i}`);
    const byPartition = [0, 1].map((p) => candidates.find((a) => producerPartition(topic, a, 2) === p)!);
    // A cut insert of each account, a minute ago: the view blocks of two events written, the raw
    // row of the second lost. Raw 1 request / 1,000 µc; every rollup 2 / 3,000.
    const ts = Date.now() - 60_000;
    for (const a of byPartition) {
      await w.insertUsage([
        usageEvent(`${a}_1`, a, { ts, cost_micros: '1000' }),
        usageEvent(`${a}_2`, a, { ts: ts + 1, cost_micros: '2000' }),
      ]);
      await w.command(`DELETE FROM ${w.tables.usage} WHERE event_id = {id:String}`, { id: `${a}_2` });
    }
    assert.deepEqual(await rollups(w, byPartition), Object.fromEntries(byPartition.map((a) => [a, ['2:3000', '2:3000', '2:3000']])));

    // The other member first (it handles batches without storing them), then the sink joins.
    const otherSaw: ConsumedEvent[] = [];
    subs.push(await otherLog.subscribe({
      group, topics: ['usage', 'ledger', 'control'],
      handler: async (batch) => { otherSaw.push(...batch); },
    }));
    const stored: ConsumedEvent[] = [];
    subs.push(await startWarehouseSink({ log: sinkLog, warehouse: w, flushMs: 50, group, onFlushed: (b) => { stored.push(...b); } }));
    for (let i = 0; ; i++) {
      const { groups } = await admin.describeGroups([sinkLog.groupName(group)]);
      if (groups[0]?.state === 'Stable' && groups[0].members.length === 2) break;
      assert.ok(i < 300, 'the group never settled with two members');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(repairs, [], 'nothing repaired before the sink holds a partition');
    // One new event per account: each member gets the one on its partition.
    await producer.publish('usage', byPartition.map((a) => ({ event: usageEvent(`${a}_3`, a, { ts: ts + 2, cost_micros: '400' }) })));
    await producer.flush();
    for (let i = 0; stored.length < 1 || otherSaw.filter((e) => e.topic === 'usage').length < 1; i++) {
      assert.ok(i < 600, `not delivered: stored ${stored.length}, other ${otherSaw.length}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const mine = (stored[0]!.event as { account_id: string }).account_id;
    const theirs = byPartition.find((a) => a !== mine)!;
    assert.equal((otherSaw.find((e) => e.topic === 'usage')!.event as { account_id: string }).account_id, theirs);
    // The sink's account: rebuilt from raw (1,000 µc), then its new event (400): 2 / 1,400. The
    // other member's account untouched: its rollups still say 2 / 3,000.
    assert.deepEqual(await rollups(w, [mine, theirs]), { [mine]: ['2:1400', '2:1400', '2:1400'], [theirs]: ['2:3000', '2:3000', '2:3000'] });
    assert.deepEqual(repairs, [{ rollupRows: { minute: 1, hour: 1, day: 1 }, idsRestored: 0, where: 'start' }]);
  } finally {
    for (const s of subs) await s.stop().catch(() => {});
    await admin.disconnect();
    await Promise.all([sinkLog.close(), otherLog.close(), producer.close()]);
    await dropScratch();
    await cleanup(w);
  }
}

test('warehouse sink in a shared group, chDB: its start repair rebuilds the recent rollups of its own partitions\' accounts only, not those another member inserts (exact µc per account and grain)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-wsa-chdb-'));
  await run(t, (onRepair) => new Warehouse({ client: createChdbClickHouse({ path: dir }), ...(onRepair ? { onRepair } : {}) }), async (w) => {
    await w.close();
    rmSync(dir, { recursive: true, force: true });
  });
});

test('warehouse sink in a shared group, ClickHouse server: its start repair rebuilds the recent rollups of its own partitions\' accounts only (exact µc per account and grain)', async (t) => {
  const url = await requireClickHouse(t);
  if (!url) return;
  const database = `test_wsa_${randomUUID().slice(0, 8)}`;
  await run(t, (onRepair) => new Warehouse({ client: createHttpClickHouse({ url }), database, ...(onRepair ? { onRepair } : {}) }), async (w) => {
    await w.command(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => {});
    await w.close();
  });
});

test('warehouse sink in a shared group: an assignment\'s repair that finds ClickHouse unavailable is tried again before the batch is stored (one cut between its DELETE and INSERT stayed until the next rebalance)', async (t) => {
  const kafkaUrl = await requireKafka(t);
  if (!kafkaUrl) return;
  const { kafka, prefix, spoolDirs, cleanup } = await kafkaScratch(kafkaUrl, 2, logLevel.NOTHING);
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-wsa-retry-'));
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }) });
  const producer = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[0]!, logger: quiet });
  const sinkLog = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: spoolDirs[1]!, logger: quiet, consumerMaxWaitMs: 250 });
  // ClickHouse away for the first two tries of the repair, then back.
  const tries: string[] = [];
  const flaky = new Proxy(w, {
    get(target, prop, receiver) {
      if (prop === 'repairRecentRollups') {
        return async (...a: Parameters<Warehouse['repairRecentRollups']>) => {
          tries.push(stored.length === 0 ? 'before the batch' : 'after');
          if (tries.length <= 2) throw new WarehouseUnavailableError('The usage warehouse is temporarily unavailable (ECONNREFUSED); retry shortly');
          return target.repairRecentRollups(...a);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const stored: ConsumedEvent[] = [];
  const errors: unknown[] = [];
  let sub: Subscription | undefined;
  try {
    await producer.ensureTopics(1);
    await w.migrate();
    sub = await startWarehouseSink({ log: sinkLog, warehouse: flaky, flushMs: 50, group: `wsa-retry-${randomUUID().slice(0, 8)}`, onFlushed: (b) => { stored.push(...b); }, onError: (e) => errors.push(e) });
    await producer.publish('usage', [{ event: usageEvent('retry_1', 'acc_retry', { cost_micros: '250' }) }]);
    await producer.flush();
    for (let i = 0; stored.length < 1; i++) {
      assert.ok(i < 300, 'the batch was never stored');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(tries, ['before the batch', 'before the batch', 'before the batch']);
    assert.equal(errors.filter((e) => e instanceof WarehouseUnavailableError).length, 2, 'each failed try reported');
    assert.equal((await w.usageTotals({})).costMicros, 250n);
  } finally {
    await sub?.stop();
    await Promise.all([sinkLog.close(), producer.close()]);
    await cleanup();
    await w.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
