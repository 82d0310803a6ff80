import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';
import type { Config } from '@tollgate/config';
import { Journal, KafkaLog, MemoryLog, type EventLog } from '@tollgate/events';
import { CachedKeyDirectory, MemoryKeyDirectory, RedisKeyDirectory, type KeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore, RedisBalanceStore, type BalanceStore } from '@tollgate/ledger';
import { createChdbClickHouse, createHttpClickHouse, Warehouse } from '@tollgate/warehouse';
import { rebuild } from '@tollgate/aggregator';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface Adapters {
  mode: 'embedded' | 'distributed';
  log: EventLog;
  balances: BalanceStore;
  /** what the gateway reads (cached in process in distributed mode) */
  gatewayKeys: KeyDirectory;
  /** what control writes and the ledger consumer applies (never cached) */
  keys: KeyDirectory;
  /** only where a role needs it (aggregator; embedded mode always) */
  warehouse: Warehouse | undefined;
  redis: Redis | undefined;
  close(): Promise<void>;
}

function openWarehouse(config: Config): Warehouse {
  const client = config.clickhouse
    ? createHttpClickHouse({ url: config.clickhouse.url, username: config.clickhouse.username, password: config.clickhouse.password, database: config.database })
    : createChdbClickHouse({ path: join(config.dataDir, 'chdb') });
  return new Warehouse({ client, database: config.database });
}

/**
 * Puts what a killed process left in the journal into the warehouse (idempotent by event id,
 * so events that had already arrived count once), then forgets the journal. A poison event
 * in it is quarantined (group `journal`) like the sink would, so one bad value can never keep
 * the process from starting.
 */
async function recoverJournal(dir: string, warehouse: Warehouse, logger?: Logger): Promise<number> {
  const { records, unreadable, torn } = Journal.scan(dir);
  if (torn !== undefined) logger?.warn({ bytes: torn.length }, 'journal: dropped the torn last line (a write the stop cut short)');
  for (const u of unreadable) {
    logger?.error({ segment: u.segment, line: u.line, error: u.error }, 'journal: unreadable line (not the torn end); quarantined as unreadable_journal_line');
  }
  // An unreadable line is quarantined, not dropped: finance can see that something was there.
  const unreadableItems = unreadable.map((u) => ({
    topic: 'journal',
    event: { type: 'undecodable', event_id: `undecodable:journal:${u.segment}:${u.line}`, reason: 'unreadable_journal_line', raw: u.raw },
  }));
  if (records.length > 0 || unreadableItems.length > 0) {
    const poison = await warehouse.storeEvents([...records.map((r) => ({ event: r.event, topic: r.topic })), ...unreadableItems], 'journal');
    for (const q of poison) {
      logger?.error({ event_id: q.event_id, topic: q.topic, kind: q.kind, reason: q.reason }, 'journal event quarantined: it cannot be stored');
    }
    logger?.warn({ events: records.length, quarantined: poison.length }, 'recovered events from the journal of a process that did not stop cleanly');
  }
  Journal.clear(dir);
  return records.length;
}

/** Single process: the warehouse is the durable store; hot state is rebuilt from it. */
export async function embeddedAdapters(config: Config, logger?: Logger): Promise<Adapters> {
  const warehouse = openWarehouse(config);
  await warehouse.migrate();
  const journalDir = join(config.dataDir, 'journal');
  await recoverJournal(journalDir, warehouse, logger);
  const keys = new MemoryKeyDirectory();
  const balances = new MemoryBalanceStore();
  // Hot state is a cache of the warehouse: rebuilt from it at every start.
  await rebuild({ warehouse, balances, keys });
  const log = new MemoryLog({ journal: new Journal(journalDir) });
  return {
    mode: 'embedded', log, balances, keys, gatewayKeys: keys, warehouse, redis: undefined,
    async close() {
      await log.close();
      await warehouse.close();
    },
  };
}

/** Many processes: Kafka is the log, Redis the hot state, ClickHouse (or chDB) the warehouse. */
export async function distributedAdapters(config: Config, logger: Logger): Promise<Adapters> {
  const kafkaConfig = config.kafka!;
  const redisConfig = config.redis!;
  // Fail fast while Redis is away (no offline queue): money fails closed with a 503 rather
  // than requests piling up behind a dead connection.
  const redis = new Redis(redisConfig.url, {
    lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000,
    connectTimeout: 2000, retryStrategy: (times) => Math.min(times * 100, 1000),
  });
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  await redis.connect();

  const kafka = new Kafka({
    clientId: kafkaConfig.clientId,
    brokers: kafkaConfig.brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 },
  });
  const log = new KafkaLog({
    kafka, topicPrefix: kafkaConfig.topicPrefix, spoolDir: join(config.dataDir, 'spool'), logger,
  });
  await log.ensureTopics(kafkaConfig.partitions);

  const prefix = redisConfig.prefix;
  // A Redis that restarted empty answers "not ready" (503) until it is rebuilt, never "no credit".
  const balances = new RedisBalanceStore({ redis, prefix, requireReady: true });
  const keys = new RedisKeyDirectory({ redis, prefix });
  const gatewayKeys = config.keyCacheTtlMs > 0 ? new CachedKeyDirectory(keys, { ttlMs: config.keyCacheTtlMs }) : keys;
  const needsWarehouse = config.roles.includes('aggregator') && config.aggregator.groups.includes('warehouse');
  const warehouse = needsWarehouse ? openWarehouse(config) : undefined;
  await warehouse?.migrate();
  return {
    mode: 'distributed', log, balances, keys, gatewayKeys, warehouse, redis,
    async close() {
      await log.close();
      await warehouse?.close();
      redis.disconnect();
    },
  };
}
