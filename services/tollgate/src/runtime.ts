import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from '@tollgate/config';
import { MemoryLog, type EventLog, type Subscription } from '@tollgate/events';
import { createHttpServer, loggerOptions } from '@tollgate/http';
import { MemoryKeyDirectory, type KeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore, type BalanceStore } from '@tollgate/ledger';
import { loadCatalogFile, type Catalog } from '@tollgate/pricing';
import { createChdbClickHouse, createHttpClickHouse, Warehouse } from '@tollgate/warehouse';
import { registerGateway } from '@tollgate/gateway';
import { registerControl } from '@tollgate/control';
import { startLedgerConsumer, startWarehouseSink } from '@tollgate/aggregator';
import { secretFromEnvOrFile } from './secrets.ts';

export const DEFAULT_CATALOG = resolve(import.meta.dirname, '../../../libs/pricing/catalogs/cny.json');

export interface Tollgate {
  config: Config;
  catalog: Catalog;
  server: FastifyInstance | undefined;
  /** the address the HTTP server listens on, e.g. http://127.0.0.1:8080 */
  url: string | undefined;
  log: EventLog;
  balances: BalanceStore;
  keys: KeyDirectory;
  warehouse: Warehouse;
  adminToken: string;
  adminTokenFile: string | undefined;
  /** waits until every event published so far is applied and in the warehouse (embedded mode) */
  drain(): Promise<void>;
  close(): Promise<void>;
}

/** Adapters of the single-machine mode: in-process log and state, chDB under DATA_DIR. */
async function embeddedState(config: Config, warehouse: Warehouse) {
  const keys = new MemoryKeyDirectory();
  const balances = new MemoryBalanceStore();
  // Hot state is a cache of the warehouse: rebuilt from it at every start.
  for (const a of await warehouse.loadAccounts()) await keys.putAccount(a);
  for (const k of await warehouse.loadKeys()) await keys.putKey(k);
  await balances.load({ balances: await warehouse.balances(), ledgerEntries: await warehouse.ledgerEntries() });
  return { keys, balances, log: new MemoryLog() };
}

/** Starts the roles in `config.roles`; `listen: false` builds the server without binding. */
export async function startTollgate(config: Config, options: { listen?: boolean } = {}): Promise<Tollgate> {
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const logger = config.logLevel === 'silent' ? false : loggerOptions(config.logLevel, 'tollgate');
  const catalog = loadCatalogFile(config.pricingFile ?? DEFAULT_CATALOG);
  const admin = secretFromEnvOrFile(config.secrets.adminToken, dataDir, 'admin-token');
  const keyHashSecret = secretFromEnvOrFile(config.secrets.keyHashSecret, dataDir, 'key-hash-secret').value;

  if (config.kafka || config.redis) {
    throw new Error('distributed adapters (KAFKA_BROKERS, REDIS_URL) are not wired yet');
  }
  if (config.roles.length < 3) {
    throw new Error('--roles can split roles across processes only with KAFKA_BROKERS and REDIS_URL set; the embedded mode runs all three');
  }

  const client = config.clickhouse
    ? createHttpClickHouse({ url: config.clickhouse.url, username: config.clickhouse.username, password: config.clickhouse.password, database: config.database })
    : createChdbClickHouse({ path: join(dataDir, 'chdb') });
  const warehouse = new Warehouse({ client, database: config.database });
  await warehouse.migrate();
  const { keys, balances, log } = await embeddedState(config, warehouse);

  const server = createHttpServer({ logger, bodyLimitBytes: config.bodyLimitBytes, trustProxy: config.trustProxy });
  const subscriptions: Subscription[] = [];
  if (config.roles.includes('aggregator')) {
    subscriptions.push(await startLedgerConsumer({ log, balances, keys }));
    subscriptions.push(await startWarehouseSink({
      log, warehouse, flushMs: config.warehouse.flushMs,
      onError: (err) => server.log.error({ err }, 'warehouse insert failed; will retry'),
    }));
  }
  if (config.roles.includes('gateway')) {
    registerGateway(server, {
      catalog, keys, balances, log, keyHashSecret,
      upstream: config.upstream,
      holdTtlMs: config.holdTtlMs,
      streamErrorBilling: config.streamErrorBilling,
      bodyLimitBytes: config.bodyLimitBytes,
      gatewayId: config.gatewayId ?? `${hostname()}:${process.pid}`,
    });
  }
  if (config.roles.includes('control')) {
    registerControl(server, { keys, balances, log, catalog, adminToken: admin.value, keyHashSecret });
  }
  await server.ready();
  let url: string | undefined;
  if (options.listen !== false) url = await server.listen({ host: config.host, port: config.port });

  const drain = async () => {
    if (log instanceof MemoryLog) await log.drain();
  };
  let closing: Promise<void> | undefined;
  return {
    config, catalog, server, url, log, balances, keys, warehouse,
    adminToken: admin.value, adminTokenFile: admin.file,
    drain,
    close: () => (closing ??= (async () => {
      // Stop taking requests and let in-flight ones settle, then empty the log into the
      // warehouse before letting go of it.
      await server.close();
      await log.close();
      for (const s of subscriptions) await s.stop();
      await balances.close();
      await keys.close();
      await warehouse.close();
    })()),
  };
}
