// The ledger consumer's batch path (issue 11) on real Kafka and Redis: one `applyBatch` script
// call per run of usage/ledger events of a partition, each event with its own position stored
// with its effect. Pinned: a poison event inside a batch, a duplicate event id inside one batch,
// a batch redelivered after the consumer died halfway through applying it, and a member killed
// before its background offset commit (every event comes again, and all are duplicates).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';
import { KafkaLog, producerPartition, type ConsumedEvent, type UsageEvent } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore, type BalanceStore, type BatchItem, type BatchOutcome } from '@tollgate/ledger';
import { startLedgerConsumer } from '@tollgate/aggregator';
import { requireKafka, requireRedis } from '../../../test/support/services.ts';
import { usageEvent } from '../../../test/support/events.ts';

/** A usage event of `accountId` costing `cost` µc. */
function usage(eventId: string, accountId: string, cost: string): UsageEvent {
  return usageEvent(eventId, accountId, { cost_micros: cost });
}

/** A store that records every completed applyBatch call (offsets and outcomes); `beforeCall` (given the attempt number) may answer or fail a call instead. */
function recording(store: BalanceStore, beforeCall?: (items: BatchItem[], call: number) => Promise<BatchOutcome[] | undefined>) {
  const calls: Array<{ offsets: bigint[]; verdicts: string[]; partitions?: number[] }> = [];
  let attempts = 0;
  const wrapped = new Proxy(store, {
    get(target, prop) {
      if (prop === 'applyBatch') {
        return async (items: BatchItem[]) => {
          const cut = await beforeCall?.(items, attempts++);
          const outcomes = cut ?? await target.applyBatch(items);
          const partitions = [...new Set(items.map((i) => i.position!.partition))];
          calls.push({ offsets: items.map((i) => i.position!.offset), verdicts: outcomes.map((o) => o.verdict), ...(partitions.length > 1 ? { partitions } : {}) });
          return outcomes;
        };
      }
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { wrapped, calls };
}

/** One partition by default (so every event is in one batch), own topics, keys and spool; torn down after. */
async function setup(t: Parameters<typeof requireKafka>[0], partitions = 1) {
  const [kafkaUrl, redisUrl] = [await requireKafka(t), await requireRedis(t)];
  if (!kafkaUrl || !redisUrl) return undefined;
  const id = randomUUID().slice(0, 8);
  const kafka = new Kafka({ clientId: `test-ledger-batch-${id}`, brokers: kafkaUrl.split(','), logLevel: logLevel.NOTHING });
  const spoolDir = mkdtempSync(join(tmpdir(), 'tollgate-ledger-batch-'));
  const log = new KafkaLog({ kafka, topicPrefix: `test-lb-${id}.`, spoolDir, logger: { warn: () => {}, error: () => {} }, maxRetryDelayMs: 200 });
  await log.ensureTopics(partitions);
  const redis = new Redis(redisUrl);
  const prefix = `test:lb:${id}:`;
  const store = new RedisBalanceStore({ redis, prefix, requireReady: true });
  const teardown = async () => {
    await log.close();
    const admin = kafka.admin();
    await admin.connect();
    const topics = (await admin.listTopics()).filter((n) => n.startsWith(`test-lb-${id}.`));
    if (topics.length) await admin.deleteTopics({ topics });
    await admin.disconnect();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    rmSync(spoolDir, { recursive: true, force: true });
  };
  return { log, store, teardown, kafka, kafkaUrl, redisUrl, topicPrefix: `test-lb-${id}.`, prefix };
}

/** Resolves once `n` events went through the consumer's batches. */
function counter(n: number) {
  let seen = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => { done = r; });
  return { all, onApplied: (b: ConsumedEvent[]) => { seen += b.length; if (seen >= n) done(); } };
}

test('poison inside a batch: the debit Redis refuses is quarantined at its offset, the events around it applied once', async (t) => {
  const s = await setup(t);
  if (!s) return;
  try {
    // `deep` sits 10 µc above Int64's minimum: its debit of 100 overflows (poison).
    await s.store.load({ balances: new Map([['a', 1000n], ['deep', -(2n ** 63n) + 10n], ['b', 0n]]), ledgerEntries: new Map() });
    const { wrapped, calls } = recording(s.store);
    const c = counter(4);
    await s.log.publish('usage', [
      { event: usage('u1', 'a', '100') }, { event: usage('u2', 'deep', '100') },
      { event: usage('u3', 'a', '200') }, { event: usage('u4', 'b', '50') },
    ]);
    const sub = await startLedgerConsumer({ log: s.log, balances: wrapped, keys: new MemoryKeyDirectory(), group: 'g', onApplied: c.onApplied });
    await c.all;
    await sub.stop();
    // One call for the run; it stops at the poison, which is set aside; one call for the rest.
    assert.deepEqual(calls, [
      { offsets: [0n, 1n, 2n, 3n], verdicts: ['applied', 'failed'] },
      { offsets: [2n, 3n], verdicts: ['applied', 'applied'] },
    ]);
    assert.equal((await s.store.get('a')).balance, 700n); // 1000 − 100 − 200
    assert.equal((await s.store.get('b')).balance, -50n);
    assert.equal((await s.store.get('deep')).balance, -(2n ** 63n) + 10n);
    const q = await s.store.quarantined();
    assert.deepEqual(q.map((r) => [r.event_id, r.kind, r.offset]), [['u2', 'apply_failed', 1n]]);
    assert.match(q[0]!.reason, /would overflow/);
    assert.equal(await s.store.position('usage', 0), 3n);
  } finally {
    await s.teardown();
  }
});

test('coalesced partitions: the batches of one fetch go in one store call; a poison in each partition stops it, and every other event of both is applied exactly once', async (t) => {
  const s = await setup(t, 2);
  if (!s) return;
  try {
    // Two accounts on each usage partition; `deep0` / `deep1` sit 10 µc above Int64's minimum:
    // a debit of 100 overflows (poison). Which partition an account is on: the producer's own partitioner.
    const on = (p: number, n: number) => Array.from({ length: 400 }, (_, i) => `acct-${p}-${i}`).filter((a) => producerPartition('usage', a, 2) === p).slice(0, n);
    const [a, deep0] = on(0, 2) as [string, string];
    const [b, deep1] = on(1, 2) as [string, string];
    const low = -(2n ** 63n) + 10n;
    await s.store.load({ balances: new Map([[a, 1000n], [b, 1000n], [deep0, low], [deep1, low]]), ledgerEntries: new Map() });
    const { wrapped, calls } = recording(s.store);
    const c = counter(8);
    // Published before the consumer starts: its first fetch brings both partitions' batches.
    await s.log.publish('usage', [
      { event: usage('a1', a, '100') }, { event: usage('p0', deep0, '100') }, { event: usage('a2', a, '200') }, { event: usage('a3', a, '1') },
      { event: usage('b1', b, '10') }, { event: usage('p1', deep1, '100') }, { event: usage('b2', b, '20') }, { event: usage('b3', b, '2') },
    ]);
    const sub = await startLedgerConsumer({ log: s.log, balances: wrapped, keys: new MemoryKeyDirectory(), group: 'g', onApplied: c.onApplied });
    await c.all;
    await sub.stop();
    // The first call held both partitions' batches (8 events) and stopped at the first poison.
    assert.deepEqual(calls[0]!.partitions?.sort(), [0, 1]);
    assert.equal(calls[0]!.offsets.length, 8);
    assert.equal(calls[0]!.verdicts.at(-1), 'failed');
    assert.equal((await s.store.get(a)).balance, 699n); // 1000 − 100 − 200 − 1
    assert.equal((await s.store.get(b)).balance, 968n); // 1000 − 10 − 20 − 2
    assert.equal((await s.store.get(deep0)).balance, low);
    assert.equal((await s.store.get(deep1)).balance, low);
    const q = await s.store.quarantined();
    assert.deepEqual(q.map((r) => [r.event_id, r.kind, r.partition, r.offset]).sort(), [['p0', 'apply_failed', 0, 1n], ['p1', 'apply_failed', 1, 1n]]);
    // Every event answered applied once, or failed (the poison) once: nothing applied twice.
    const applied = calls.flatMap((call) => call.verdicts).filter((v) => v === 'applied').length;
    assert.equal(applied, 6);
    assert.equal(await s.store.position('usage', 0), 3n);
    assert.equal(await s.store.position('usage', 1), 3n);
  } finally {
    await s.teardown();
  }
});

test('duplicate event id inside one batch (a producer re-send at a new offset): debited once, both offsets passed', async (t) => {
  const s = await setup(t);
  if (!s) return;
  try {
    await s.store.load({ balances: new Map([['a', 1000n]]), ledgerEntries: new Map() });
    const { wrapped, calls } = recording(s.store);
    const c = counter(3);
    await s.log.publish('usage', [{ event: usage('d1', 'a', '120') }, { event: usage('d1', 'a', '120') }, { event: usage('d2', 'a', '30') }]);
    const sub = await startLedgerConsumer({ log: s.log, balances: wrapped, keys: new MemoryKeyDirectory(), group: 'g', onApplied: c.onApplied });
    await c.all;
    await sub.stop();
    assert.deepEqual(calls, [{ offsets: [0n, 1n, 2n], verdicts: ['applied', 'duplicate', 'applied'] }]);
    assert.equal((await s.store.get('a')).balance, 850n); // 1000 − 120 − 30
    assert.equal(await s.store.position('usage', 0), 2n);
  } finally {
    await s.teardown();
  }
});

test('batch redelivered after a crash mid-batch: what was applied is a duplicate by position, the rest applied once', async (t) => {
  const s = await setup(t);
  if (!s) return;
  try {
    await s.store.load({ balances: new Map([['a', 10_000n], ['b', 10_000n]]), ledgerEntries: new Map() });
    // The first call applies the first three events for real, then the connection "dies"
    // before the reply: the consumer must not commit, and the log redelivers the whole batch.
    const { wrapped, calls } = recording(s.store, async (items, call) => {
      if (call !== 0) return undefined;
      await s.store.applyBatch(items.slice(0, 3));
      throw new Error('Connection is closed.');
    });
    const c = counter(6);
    await s.log.publish('usage', [
      { event: usage('r1', 'a', '1') }, { event: usage('r2', 'b', '20') }, { event: usage('r3', 'a', '300') },
      { event: usage('r4', 'b', '4000') }, { event: usage('r5', 'a', '50') }, { event: usage('r6', 'b', '600') },
    ]);
    const sub = await startLedgerConsumer({ log: s.log, balances: wrapped, keys: new MemoryKeyDirectory(), group: 'g', onApplied: c.onApplied });
    await c.all;
    await sub.stop();
    assert.deepEqual(calls, [{ offsets: [0n, 1n, 2n, 3n, 4n, 5n], verdicts: ['duplicate', 'duplicate', 'duplicate', 'applied', 'applied', 'applied'] }]);
    assert.equal((await s.store.get('a')).balance, 9_649n); // 10000 − 1 − 300 − 50
    assert.equal((await s.store.get('b')).balance, 5_380n); // 10000 − 20 − 4000 − 600
    assert.equal(await s.store.position('usage', 0), 5n);
  } finally {
    await s.teardown();
  }
});

test('a member killed before its background offset commit: the next one resumes at the position stored with the effects (nothing applied twice, nothing read again), and the group commits it (exact balances)', async (t) => {
  const s = await setup(t);
  if (!s) return;
  const admin = s.kafka.admin();
  await admin.connect();
  try {
    await s.store.load({ balances: new Map([['a', 10_000n], ['b', 10_000n]]), ledgerEntries: new Map() });
    await s.log.publish('usage', [
      { event: usage('k1', 'a', '1') }, { event: usage('k2', 'b', '20') }, { event: usage('k3', 'a', '300') },
      { event: usage('k4', 'b', '4000') }, { event: usage('k5', 'a', '50') }, { event: usage('k6', 'b', '600') },
    ]);
    await s.log.flush();
    // The first member applies all six, then dies (SIGKILL) with its commit still pending.
    const child = spawn(process.execPath, [
      join(import.meta.dirname, 'support', 'ledger-member.ts'), '--kafka', s.kafkaUrl, '--redis', s.redisUrl,
      '--topic-prefix', s.topicPrefix, '--redis-prefix', s.prefix, '--group', 'g', '--until', '5',
    ], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const [, signal] = await new Promise<[number | null, string | null]>((r) => child.on('exit', (code, sig) => r([code, sig])));
    assert.equal(out, 'applied\n');
    assert.equal(signal, 'SIGKILL');
    assert.equal((await s.store.get('a')).balance, 9_649n); // 10000 − 1 − 300 − 50
    assert.equal((await s.store.get('b')).balance, 5_380n); // 10000 − 20 − 4000 − 600
    const [committed] = await admin.fetchOffsets({ groupId: s.log.groupName('g'), topics: [`${s.topicPrefix}usage`] });
    assert.deepEqual(committed!.partitions.map((p) => p.offset), ['-1']);
    // The next member's partitions wait, at its join, for the look at the stored positions: it
    // resumes at stored + 1 (6) and commits that, so nothing is read again. (Before the join
    // paused them, its first fetch raced the look and usually read all six again, each a
    // duplicate by position; either way nothing is applied twice.)
    const { wrapped, calls } = recording(s.store);
    const sub = await startLedgerConsumer({ log: s.log, balances: wrapped, keys: new MemoryKeyDirectory(), group: 'g' });
    const committedNow = async () => (await admin.fetchOffsets({ groupId: s.log.groupName('g'), topics: [`${s.topicPrefix}usage`] }))[0]!.partitions.map((p) => p.offset);
    for (let i = 0; i < 200 && (await committedNow())[0] !== '6'; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 500));
    await sub.stop();
    assert.deepEqual(await committedNow(), ['6']);
    assert.deepEqual(calls, []);
    assert.equal((await s.store.get('a')).balance, 9_649n);
    assert.equal((await s.store.get('b')).balance, 5_380n);
    assert.equal(await s.store.position('usage', 0), 5n);
  } finally {
    await admin.disconnect();
    await s.teardown();
  }
});
