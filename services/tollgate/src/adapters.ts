import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '@tollgate/config';
import { Journal, KafkaLog, MemoryLog, type EventLog, type JournalRecord, type UnreadableJournalLine } from '@tollgate/events';
import type { Metrics } from '@tollgate/telemetry';
import { CachedKeyDirectory, MemoryKeyDirectory, RedisKeyDirectory, type KeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore, RedisBalanceStore, tryWithLock, type BalanceStore } from '@tollgate/ledger';
import { createChdbClickHouse, createHttpClickHouse, isForeignAnswer, unavailableError, Warehouse, type Exclusive, type QuarantineRecord } from '@tollgate/warehouse';
import { lowerBackgroundThreads } from './background-priority.ts';
import { LOCK_STALE_MS, lockDataDir, type DataDirLock } from './data-dir-lock.ts';
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
  /**
   * Embedded mode: publishes what a previous process left in its journal into the log again
   * (once; later calls return the first call's count of records). Call it after the consumer
   * groups have subscribed, so each of them sees every record. `onQuarantined` is told of each
   * journal line quarantined (group `journal`), so `event.quarantined` alerts cover it too.
   */
  recover?(onQuarantined?: (q: QuarantineRecord) => void): Promise<number>;
  close(): Promise<void>;
}

/**
 * The warehouse of this process's config: a ClickHouse server's, or chDB's in this process.
 * With chDB, `BACKGROUND_THREAD_NICE` (> 0) lowers the priority of the process's background
 * threads (the engine's among them) while it is open; `close` ends that and closes the warehouse.
 */
function openWarehouse(config: Config, logger?: Logger): { warehouse: Warehouse; close(): Promise<void> } {
  // No connection default database: the Warehouse qualifies every table, and a server refuses
  // every query (even `CREATE DATABASE`) whose connection names a database that does not exist yet.
  const client = config.clickhouse
    ? createHttpClickHouse({ url: config.clickhouse.url, username: config.clickhouse.username, password: config.clickhouse.password, ...(logger ? { logger } : {}) })
    : createChdbClickHouse({ path: join(config.dataDir, 'chdb') });
  const priority = !config.clickhouse && config.warehouse.backgroundNice > 0 ? lowerBackgroundThreads(config.warehouse.backgroundNice) : undefined;
  const warehouse = new Warehouse({
    client, database: config.database,
    // rare, and each one means an insert was cut or two consumers raced: worth a line
    ...(logger ? { onRepair: (what) => logger.warn(what, 'warehouse repaired usage rollups or event ids (a cut insert or a race)') } : {}),
  });
  return {
    warehouse,
    async close() {
      priority?.stop();
      await warehouse.close();
    },
  };
}

/**
 * ClickHouse's refusals of the connection's user (its error `type`): a wrong password or an
 * unknown user (AUTHENTICATION_FAILED, 516), a user that needs a password and was sent none
 * (REQUIRED_PASSWORD, 194), an unknown user on older servers (UNKNOWN_USER, 192).
 */
const CREDENTIAL_REFUSALS = new Set(['AUTHENTICATION_FAILED', 'REQUIRED_PASSWORD', 'UNKNOWN_USER']);

/** The codes Node gives a TLS failure: a plain-HTTP port spoken to in TLS (EPROTO), a certificate refused. */
const TLS_FAILURE = /^(EPROTO$|ERR_SSL_|ERR_TLS_)|CERT|SIGNATURE/;

/** The first line of `text`, at most `max` characters: a foreign server's page in a one-line message. */
function firstLine(text: string, max: number): string {
  const line = text.trim().split(/\r?\n/, 1)[0] ?? '';
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/**
 * Migrates the process's warehouse at start (`Warehouse.migrate`). When CLICKHOUSE_URL's server
 * cannot be used, the error is ServiceUnavailableAtStart: one line naming the server's origin
 * (config keeps only the origin: never a user's password) and what to check, printed by
 * `tollgate` without a stack, exit 1 (as for Redis and Kafka; an orchestrator restarts the
 * process until the server is up). The cases:
 * - it refuses the user (CREDENTIAL_REFUSALS), named as the client sent it;
 * - it cannot be reached: connection refused or reset, a host that does not resolve, no answer
 *   within the client's request timeout (30 s): `unavailableError` of @tollgate/warehouse;
 * - TLS fails (TLS_FAILURE): https to a plain-HTTP port, a certificate not trusted;
 * - something else answers: a reply that is not ClickHouse's (the client's plain Error holding
 *   the foreign body, or a body that does not parse), its first line quoted.
 * The warehouse and `cleanup` (what the adapters opened before it) are closed first. Any other
 * error (a migration's SQL refused by a real ClickHouse) is thrown as it is.
 */
async function migrateAtStart(
  opened: { warehouse: Warehouse; close(): Promise<void> }, config: Config, options: { exclusive?: Exclusive } = {}, cleanup?: () => Promise<void>,
): Promise<void> {
  try {
    await opened.warehouse.migrate(options);
  } catch (err) {
    if (!config.clickhouse) throw err;
    const problem = startProblem(err, config.clickhouse.username);
    if (problem === undefined) throw err;
    await opened.close().catch(() => {});
    await cleanup?.();
    throw new ServiceUnavailableAtStart(`ClickHouse at ${config.clickhouse.url} (CLICKHOUSE_URL) ${problem}`);
  }
}

/** What `migrateAtStart` says of `err` after "ClickHouse at <origin> (CLICKHOUSE_URL) ", or undefined when it is not about the server's address, TLS or user. */
function startProblem(err: unknown, username: string | undefined): string | undefined {
  const type = (err as { type?: unknown } | null)?.type;
  if (typeof type === 'string' && CREDENTIAL_REFUSALS.has(type)) {
    return `refused the user ${JSON.stringify(username ?? 'default')} (${type}); check the user and password (CLICKHOUSE_USER and CLICKHOUSE_PASSWORD, or those in CLICKHOUSE_URL)`;
  }
  // (the Warehouse reports a foreign answer as unavailable, its cause the ForeignAnswerError)
  const foreign = isForeignAnswer(err) ? err : isForeignAnswer((err as { cause?: unknown } | null)?.cause) ? (err as { cause: Error }).cause : undefined;
  if (foreign) return `did not answer as a ClickHouse server (${foreign.message}); check CLICKHOUSE_URL`;
  const unreachable = unavailableError(err);
  if (unreachable) return `is not answering: ${describeUnreachable(unreachable)}; start it, or set CLICKHOUSE_URL`;
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && TLS_FAILURE.test(code)) {
    return `failed in TLS: ${firstLine(err.message, 160)}; check the scheme (https only for a TLS port) and that this process trusts the server's certificate (NODE_EXTRA_CA_CERTS)`;
  }
  return undefined;
}

/** What a transport failure was, in a few words: the socket's error, or the client's timeout. */
function describeUnreachable(err: Error): string {
  const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
  if (typeof cause?.code === 'string') return typeof cause.message === 'string' ? cause.message.replace(/\.$/, '') : cause.code;
  return 'no answer within the request timeout';
}

/** Where a journal left by a previous process is kept until its records are in the log again. */
const RECOVERING = '.recovering';

/**
 * Moves what previous processes left in the journal directory aside (`<dir>.recovering/<n>/`,
 * one generation per start that found a journal, so a crash during recovery loses nothing)
 * and reads every generation, oldest first.
 */
function takeJournal(dir: string): { records: JournalRecord[]; unreadable: Array<UnreadableJournalLine & { generation: string }>; torn: string[]; aside: string } {
  const aside = `${dir}${RECOVERING}`;
  if (existsSync(dir) && readdirSync(dir).some((n) => n.endsWith('.jsonl'))) {
    mkdirSync(aside, { recursive: true });
    renameSync(dir, join(aside, String(Date.now()).padStart(16, '0')));
  }
  const out = { records: [] as JournalRecord[], unreadable: [] as Array<UnreadableJournalLine & { generation: string }>, torn: [] as string[], aside };
  const generations = existsSync(aside) ? readdirSync(aside).sort() : [];
  for (const g of generations) {
    const scan = Journal.scan(join(aside, g));
    out.records.push(...scan.records);
    out.unreadable.push(...scan.unreadable.map((u) => ({ ...u, generation: g })));
    if (scan.torn !== undefined) out.torn.push(scan.torn);
  }
  return out;
}

/**
 * Puts what a killed process left in the journal back through the live pipeline: its records
 * are published into the log again, so the ledger and warehouse groups apply them with every
 * check they make on live events (decoder, balance bound, quarantine and its metric), idempotent
 * by event id against what had already arrived. A line that is not a record of a known topic is
 * quarantined (group `journal`, reason `unreadable_journal_line`) and counted in
 * `tollgate_events_quarantined_total{group="journal"}`: never dropped silently. The journal
 * generations set aside are deleted once their records are journaled again by the new log.
 */
async function recoverJournal(leftover: ReturnType<typeof takeJournal>, log: MemoryLog, warehouse: Warehouse, logger?: Logger, metrics?: Metrics, onQuarantined?: (q: QuarantineRecord) => void): Promise<number> {
  const { records, unreadable, torn, aside } = leftover;
  for (const t of torn) logger?.warn({ bytes: t.length }, 'journal: dropped the torn last line (a write the stop cut short)');
  for (const u of unreadable) {
    logger?.error({ segment: u.segment, line: u.line, error: u.error }, 'journal: unreadable line (not the torn end); quarantined as unreadable_journal_line');
  }
  // An unreadable line is quarantined, not dropped: finance can see that something was there.
  if (unreadable.length > 0) {
    const poison = await warehouse.storeEvents(unreadable.map((u) => ({
      topic: 'journal',
      // The generation (when the journal was set aside) keeps ids of different crashes apart.
      event: { type: 'undecodable', event_id: `undecodable:journal:${u.generation}/${u.segment}:${u.line}`, reason: 'unreadable_journal_line', error: u.error, raw: u.raw },
    })), 'journal');
    for (const q of poison) {
      metrics?.eventsQuarantined('journal', q.kind);
      onQuarantined?.(q);
    }
  }
  // In journal order; a run of one topic is one publish (one journal write).
  for (let i = 0; i < records.length;) {
    const topic = records[i]!.topic;
    let j = i;
    while (j < records.length && records[j]!.topic === topic) j++;
    await log.publish(topic, records.slice(i, j).map((r) => ({ event: r.event, headers: r.headers })));
    i = j;
  }
  if (records.length > 0 || unreadable.length > 0) {
    logger?.warn({ events: records.length, quarantined: unreadable.length }, 'recovered events from the journal of a process that did not stop cleanly; the consumers apply them');
  }
  Journal.clear(aside);
  return records.length;
}

/** The lock of the warehouse's one-time migration work (the rollup backfill of migration 13), in Redis. */
const MIGRATE_LOCK = 'warehouse:migrate';
/**
 * How long a holder keeps it at most (ms): a process killed while holding it delays the others'
 * start by up to this. The backfill is idempotent; the lock only keeps two processes from
 * rebuilding the same rollup rows at once.
 */
const MIGRATE_LOCK_TTL_MS = 60 * 60_000;

/**
 * An `Exclusive` (@tollgate/warehouse) over the ledger's reference claims in Redis (the month
 * close's lock too): `fn` runs once this process holds `name`; another process waits, polling
 * every 250 ms (logged once at info), and runs `fn` after it (which then finds its work done).
 * Released when `fn` settles; expires after `ttlMs` should its holder die.
 */
function redisExclusive(balances: RedisBalanceStore, name: string, ttlMs: number, logger?: Logger): Exclusive {
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    let waited = false;
    for (;;) {
      const run = await tryWithLock(balances, name, ttlMs, fn);
      if (run.held) return run.value;
      if (!waited) logger?.info({ lock: name }, 'waiting for another process to finish the warehouse migration');
      waited = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  };
}

/**
 * Single process: the warehouse is the durable store; hot state is rebuilt from it. A journal a
 * killed process left is put back into the log by `recover()`, which the runtime calls once the
 * consumer groups have subscribed.
 */
export async function embeddedAdapters(config: Config, logger?: Logger, options: { metrics?: Metrics } = {}): Promise<Adapters> {
  const opened = openWarehouse(config, logger);
  const warehouse = opened.warehouse;
  await migrateAtStart(opened, config);
  const journalDir = join(config.dataDir, 'journal');
  const keys = new MemoryKeyDirectory();
  const balances = new MemoryBalanceStore();
  // Hot state is a cache of the warehouse: rebuilt from it at every start.
  await rebuild({ warehouse, balances, keys });
  // The old journal is read (and set aside) before the new one opens in the same directory.
  const leftover = takeJournal(journalDir);
  const log = new MemoryLog({ journal: new Journal(journalDir), reserveBytes: config.writeAheadReserveBytes, logger });
  let recovered: Promise<number> | undefined;
  return {
    mode: 'embedded', log, balances, keys, gatewayKeys: keys, warehouse, redis: undefined,
    recover: (onQuarantined) => (recovered ??= recoverJournal(leftover, log, warehouse, logger, options.metrics, onQuarantined)),
    async close() {
      await log.close();
      await opened.close();
    },
  };
}

/**
 * The options of the REDIS_URL connection. Fail fast while Redis is away (no offline queue, one
 * retry, 2 s per command): money fails closed with a 503 rather than requests piling up behind
 * a dead connection. `autoPipelining` (REDIS_AUTO_PIPELINING): commands issued while a pipeline
 * is in flight go out together in the next one, one write for many requests' holds and
 * settlements (docs/decisions.md, "Auto-pipelining on the standalone Redis"); a command's 2 s
 * starts when its pipeline is sent, so one queued behind a pipeline that hangs fails within
 * 4 s. A command unanswered when the connection drops fails rather than being re-sent after
 * the reconnect (`autoResendUnfulfilledCommands: false`): a hold may never run late, after the
 * release the gateway sends for it (`releaseUnanswered`), and a pipeline partly answered is
 * aborted by ioredis anyway. Never on the Cluster connection (ioredis groups a Cluster's
 * auto-pipelines by the slot of a command's first argument, which has failed scripted commands
 * there: ioredis #2109).
 */
export function standaloneRedisOptions(autoPipelining: boolean): RedisOptions {
  return {
    lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 2000,
    connectTimeout: 2000, retryStrategy: (times) => Math.min(times * 100, 1000),
    enableAutoPipelining: autoPipelining, autoResendUnfulfilledCommands: false,
  };
}

/**
 * A backing service a process needs at start did not answer, or cannot serve it (a Redis older
 * than the ledger needs): its message is one line naming the service, where it was looked for
 * (host:port, never a password) and the variable that sets it; `tollgate` prints it without a
 * stack and exits 1.
 */
export class ServiceUnavailableAtStart extends Error {
  override name = 'ServiceUnavailableAtStart';
}

/** `host:port` of a redis:// URL (the password and path left out), for messages and log lines. */
export function redisEndpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '6379'}`;
  } catch {
    return 'REDIS_URL';
  }
}

/**
 * Connects `client` (a Redis or a Redis Cluster connection), logging its connection errors as
 * `errorMessage` from then on; when it does not answer, closes it, runs `cleanup` (what was opened
 * before it) and throws ServiceUnavailableAtStart naming `what` and `variable`, with the
 * socket's own error (ioredis rejects with "Connection is closed.", which says nothing).
 */
async function connectAtStart(
  client: Redis | Cluster, logger: Logger, errorMessage: string, what: string, variable: string, cleanup?: () => Promise<void>,
): Promise<void> {
  let last: string | undefined;
  client.on('error', (err: Error) => {
    last = err.message;
    logger.warn({ err: err.message }, errorMessage);
  });
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    await cleanup?.();
    const why = (last ?? (err as Error).message).replace(/\.$/, '');
    throw new ServiceUnavailableAtStart(`${what} (${variable}) is not answering: ${why}; start it, or set ${variable}`);
  }
}

/** Many processes: Kafka is the log, Redis the hot state, ClickHouse (or chDB) the warehouse. */
export async function distributedAdapters(config: Config, logger: Logger): Promise<Adapters> {
  // DATA_DIR is this process's alone (its spool of events): taken before anything reads it.
  const dataLock = await lockDataDir(config.dataDir, {
    onWait: () => logger.warn({ dataDir: config.dataDir, waitMs: LOCK_STALE_MS }, 'DATA_DIR is locked: waiting for the lock of a process that stopped to go stale (a live process keeps it, and this one then exits)'),
    onLost: (err) => {
      logger.error({ err: err.message, dataDir: config.dataDir }, 'lost the DATA_DIR lock (another process may be using this directory); stopping');
      process.kill(process.pid, 'SIGTERM');
    },
  });
  try {
    const adapters = await openDistributed(config, logger, dataLock);
    return { ...adapters, async close() { try { await adapters.close(); } finally { await dataLock.release(); } } };
  } catch (err) {
    await dataLock.release();
    throw err;
  }
}

/** distributedAdapters once DATA_DIR is held (`dataLock`: the log checks it before each spool write). */
async function openDistributed(config: Config, logger: Logger, dataLock: DataDirLock): Promise<Adapters> {
  const kafkaConfig = config.kafka!;
  const redisConfig = config.redis!;
  const redis = new Redis(redisConfig.url, standaloneRedisOptions(redisConfig.autoPipelining));
  await connectAtStart(redis, logger, 'redis connection error', `Redis at ${redisEndpoint(redisConfig.url)}`, 'REDIS_URL');

  const kafka = new Kafka({
    clientId: kafkaConfig.clientId,
    brokers: kafkaConfig.brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3000,
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 },
  });
  const log = new KafkaLog({
    kafka, topicPrefix: kafkaConfig.topicPrefix, spoolDir: join(config.dataDir, 'spool'), logger, compression: kafkaConfig.compression,
    lingerMs: kafkaConfig.lingerMs,
    reserveBytes: config.writeAheadReserveBytes,
    beforeSpool: () => dataLock.check(),
  });
  // A process that consumes needs the topics before it subscribes; one that only publishes (a
  // gateway, control) must start and serve while Kafka is away (events spool to disk), so its
  // sender makes sure of them before its first send instead.
  if (config.roles.includes('aggregator')) {
    try {
      await log.ensureTopics(kafkaConfig.partitions);
    } catch (err) {
      redis.disconnect();
      await log.close().catch(() => {});
      throw new ServiceUnavailableAtStart(`Kafka at ${kafkaConfig.brokers.join(',')} (KAFKA_BROKERS) is not answering: ${(err as Error).message}; an aggregator needs it to start (start it, or set KAFKA_BROKERS)`);
    }
  } else log.createTopicsBeforeSend(kafkaConfig.partitions);

  const prefix = redisConfig.prefix;
  // REDIS_CLUSTER_NODES: the ledger's hot state on a Redis Cluster (its Cluster key layout),
  // with the same fail-fast options per node; everything else stays on REDIS_URL.
  const ledgerRedis = redisConfig.clusterNodes
    ? new Cluster(redisConfig.clusterNodes, {
      enableOfflineQueue: false, lazyConnect: true, clusterRetryStrategy: (times) => Math.min(times * 100, 1000),
      redisOptions: { maxRetriesPerRequest: 1, commandTimeout: 2000, connectTimeout: 2000 },
    })
    : undefined;
  // Where the ledger's Redis is, for the start's one-line errors.
  const ledgerWhere = ledgerRedis
    ? { what: `the Redis Cluster at ${redisConfig.clusterNodes!.map((n) => `${n.host}:${n.port}`).join(',')}`, variable: 'REDIS_CLUSTER_NODES' }
    : { what: `Redis at ${redisEndpoint(redisConfig.url)}`, variable: 'REDIS_URL' };
  if (ledgerRedis) {
    await connectAtStart(ledgerRedis, logger, 'redis cluster connection error', ledgerWhere.what, ledgerWhere.variable,
      async () => { redis.disconnect(); await log.close().catch(() => {}); });
  }
  // A Redis that restarted empty answers "not ready" (503) until it is rebuilt, never "no credit".
  const balances = new RedisBalanceStore({ redis: ledgerRedis ?? redis, prefix, requireReady: true, ...(ledgerRedis ? { directory: redis } : {}) });
  // Too old a Redis would fail every usage apply (and stall its consumer): refused at start.
  const tooOld = await balances.serverProblem().catch(() => undefined);
  if (tooOld) {
    redis.disconnect();
    ledgerRedis?.disconnect();
    await log.close().catch(() => {});
    throw new ServiceUnavailableAtStart(`${ledgerWhere.what} (${ledgerWhere.variable}) ${tooOld}`);
  }
  const keys = new RedisKeyDirectory({ redis, prefix });
  const gatewayKeys = config.keyCacheTtlMs > 0 ? new CachedKeyDirectory(keys, { ttlMs: config.keyCacheTtlMs }) : keys;
  // The aggregator of the warehouse group writes it; with a ClickHouse server, control (usage
  // analytics, billing) and gateways (customer usage) read it too. chDB lives in one process:
  // there only the warehouse aggregator opens it.
  const ownsWarehouse = config.roles.includes('aggregator') && config.aggregator.groups.includes('warehouse');
  const readsWarehouse = config.clickhouse !== undefined && (config.roles.includes('control') || config.roles.includes('gateway'));
  const needsWarehouse = ownsWarehouse || readsWarehouse;
  const opened = needsWarehouse ? openWarehouse(config, logger) : undefined;
  const warehouse = opened?.warehouse;
  if (opened) {
    await migrateAtStart(opened, config, { exclusive: redisExclusive(balances, MIGRATE_LOCK, MIGRATE_LOCK_TTL_MS, logger) }, async () => {
      await log.close().catch(() => {});
      redis.disconnect();
      ledgerRedis?.disconnect();
    });
  }
  return {
    mode: 'distributed', log, balances, keys, gatewayKeys, warehouse, redis,
    async close() {
      await log.close();
      await opened?.close();
      redis.disconnect();
      ledgerRedis?.disconnect();
    },
  };
}
