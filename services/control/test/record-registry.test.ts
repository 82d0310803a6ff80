// The control role's registry of the records it wrote (ControlRecordRegistry) on a real Redis:
// a record the log has not acknowledged (Kafka away: only spooled) is put back into the key
// directory when a rebuild replaced the state without it, with no hold admitted before that; one
// the log acknowledged leaves the list once an epoch read found no rebuild since.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaLog, MemoryLog, NotPublishedError, type EventLog, type KeyRecord } from '@tollgate/events';
import { MemoryKeyDirectory, RedisKeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore, RedisBalanceStore } from '@tollgate/ledger';
import { ControlRecordRegistry, type DirectoryRecordEvent } from '@tollgate/control';
import { requireKafka, requireRedis } from '../../../test/support/services.ts';
import { deadClient, quiet } from '../../../libs/events/test/spool-helpers.ts';
import { deleteKeysUnder } from '../../../test/support/redis.ts';

const snapshot = () => ({ balances: new Map([['acct_1', 1_000_000n]]), ledgerEntries: new Map() });

const keyRecord = (version: number, revoked: boolean): KeyRecord => ({
  id: 'key_1', account_id: 'acct_1', name: 'k', prefix: 'sk-tg-abc', hash: 'h'.repeat(64),
  status: revoked ? 'revoked' : 'active', created_at: 1_000, revoked_at: revoked ? 2_000 : null, version,
});
const keyEvent = (k: KeyRecord): DirectoryRecordEvent => ({ type: 'key', event_id: `key:${k.id}:${k.version}`, ts: Date.now(), key: k });

/** A KafkaLog whose Kafka is away (nothing listens at its broker): every publish only spooled. */
async function kafkaAwayLog(t: import('node:test').TestContext): Promise<KafkaLog> {
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-ctlreg-'));
  t.after(() => rm(spoolDir, { recursive: true, force: true }));
  return new KafkaLog({ kafka: deadClient(), spoolDir, logger: quiet() });
}

async function fixture(t: import('node:test').TestContext, log: EventLog) {
  const url = await requireRedis(t);
  if (!url) return undefined;
  const redis = new Redis(url);
  const prefix = `test:ctlreg:${randomUUID()}:`;
  const store = new RedisBalanceStore({ redis, prefix, requireReady: true, restoreWindowMs: 60_000 });
  const keys = new RedisKeyDirectory({ redis, prefix: `${prefix}dir:` });
  const restored: Array<{ written: number; listed: number }> = [];
  // Polled by hand (a poll interval far beyond the test).
  const registry = new ControlRecordRegistry(store, keys, log, { pollMs: 3_600_000, onRestored: ({ written, listed }) => restored.push({ written, listed }) });
  t.after(async () => { registry.stop(); await log.close(); await deleteKeysUnder(redis, prefix); redis.disconnect(); });
  await registry.poll(); // its first read (the state not built yet): the tests' polls are the next ones
  const save = (k: KeyRecord) => registry.save(keyEvent(k), () => keys.putKey(k));
  return { redis, prefix, store, keys, registry, restored, save, empty: () => deleteKeysUnder(redis, prefix) };
}

test('control record registry: a key revoked while Kafka is away (its record only spooled) is revoked again right after a rebuild that read the old record, and no hold is admitted before that', async (t) => {
  const log = await kafkaAwayLog(t);
  const f = await fixture(t, log);
  if (!f) return;
  const { store, keys, registry, restored, save, empty, redis, prefix } = f;
  await store.load(snapshot());
  await registry.poll();
  await save(keyRecord(2, true)); // the revocation: in Redis at once, its record in the spool
  assert.equal((await keys.key('key_1'))?.status, 'revoked');
  assert.equal(log.reachable(), false);
  assert.equal(registry.size, 1);
  await registry.poll(); // the same epoch, but not acknowledged: stays
  assert.equal(registry.size, 1);
  await empty(); // Redis lost its data
  await registry.poll();
  assert.equal(await redis.exists(`${prefix}ledger-ready:restorers`), 1, 'announced while lost');
  // The rebuild: the warehouse had only the key's record before the revocation.
  await keys.putKey(keyRecord(1, false));
  await store.load(snapshot());
  assert.equal((await keys.key('key_1'))?.status, 'active');
  assert.deepEqual(await store.hold({ holdId: 'r1', accountId: 'acct_1', keyId: 'key_1', amount: 1n, ttlMs: 60_000 }), { ok: false, reason: 'not_ready', available: 0n }, 'no hold in the restore window');
  await registry.poll();
  assert.deepEqual(restored, [{ written: 1, listed: 1 }]);
  assert.deepEqual(await keys.key('key_1'), keyRecord(2, true));
  // Still only spooled: listed, but nothing more to write at the same epoch.
  await registry.poll();
  assert.equal(registry.size, 1);
  assert.equal(restored.length, 1);
});

test('control record registry: a later save whose directory write fails is on the log all the same: it succeeds, that version stays listed (the one the ledger group will apply), and the rebuild gets it back', async (t) => {
  const log = await kafkaAwayLog(t);
  const f = await fixture(t, log);
  if (!f) return;
  const { store, keys, registry, restored, save, empty } = f;
  await store.load(snapshot());
  await registry.poll();
  await save(keyRecord(2, true)); // revoked: in Redis, its record only in the spool
  const limited = { ...keyRecord(3, true), daily_credits: '1000' };
  // Written ahead first, so the put's failure leaves it on the log (only spooled): listed, and
  // the save does not fail (the change is made: a "retry" answer duplicated creates).
  await registry.save(keyEvent(limited), async () => { throw new Error('Redis away'); });
  assert.equal(registry.size, 1, 'one entry per record: its latest version, the limited one');
  await empty();
  await registry.poll();
  await keys.putKey(keyRecord(1, false)); // the warehouse had only the first version
  await store.load(snapshot());
  await registry.poll();
  assert.deepEqual(restored, [{ written: 1, listed: 1 }]);
  assert.deepEqual(await keys.key('key_1'), limited);
});

test('control record registry: a record the log acknowledged leaves the list at the next epoch read with no rebuild between; one the log refused is not listed and never reached the directory', async (t) => {
  const f = await fixture(t, new MemoryLog());
  if (!f) return;
  const { store, registry, save, keys, empty, restored } = f;
  await store.load(snapshot());
  await registry.poll();
  await save(keyRecord(1, false));
  await save(keyRecord(2, true));
  assert.equal(registry.size, 1, 'one entry per record: its latest version');
  // Lost before the read: kept (the loss may have come before the record reached the warehouse).
  await empty();
  await registry.poll();
  assert.equal(registry.size, 1);
  await keys.putKey(keyRecord(2, true)); // this rebuild read it
  await store.load(snapshot());
  await registry.poll();
  assert.deepEqual(restored, [{ written: 0, listed: 1 }], 'the rebuilt state had it: nothing newer written');
  await registry.poll();
  assert.equal(registry.size, 0);
  registry.stop();
  const closed = new MemoryLog();
  await closed.close();
  const other = new ControlRecordRegistry(store, keys, closed, { pollMs: 3_600_000 });
  t.after(() => other.stop());
  await other.poll();
  // Refused by the log before anything changes (a breaker's HIGH: written to the directory
  // first, a revocation refused by the log stayed in Redis alone and a rebuild undid it).
  let putRan = false;
  await assert.rejects(other.save(keyEvent(keyRecord(3, true)), async () => { putRan = true; return keys.putKey(keyRecord(3, true)); }), NotPublishedError);
  assert.equal(putRan, false, 'the directory is not written');
  assert.equal(other.size, 0);
});

test('control record registry: on Kafka, a record Kafka acknowledged leaves the list at the next epoch read', async (t) => {
  const brokers = await requireKafka(t);
  if (!brokers) return;
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-ctlreg-'));
  t.after(() => rm(spoolDir, { recursive: true, force: true }));
  const log = new KafkaLog({ kafka: new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }), topicPrefix: `t-${randomUUID().slice(0, 8)}.`, spoolDir, logger: quiet() });
  log.createTopicsBeforeSend(1);
  const f = await fixture(t, log);
  if (!f) return;
  const { store, registry, save } = f;
  await store.load(snapshot());
  await registry.poll();
  await save(keyRecord(1, false));
  await log.acknowledged();
  await new Promise((r) => setImmediate(r)); // the registry's own wait settles in the same turn
  await registry.poll();
  assert.equal(registry.size, 0);
});

test('control record registry: a store that never loses its state (memory) turns it off at the first poll', async () => {
  const keys = new MemoryKeyDirectory();
  const registry = new ControlRecordRegistry(new MemoryBalanceStore(), keys, new MemoryLog(), { pollMs: 3_600_000 });
  await registry.poll();
  await registry.save(keyEvent(keyRecord(1, false)), () => keys.putKey(keyRecord(1, false)));
  assert.equal(registry.size, 0);
  assert.equal((await keys.key('key_1'))?.version, 1);
  registry.stop();
});
