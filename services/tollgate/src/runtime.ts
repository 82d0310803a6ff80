import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from '@tollgate/config';
import { MemoryLog, type EventLog, type Subscription } from '@tollgate/events';
import { createHttpServer, loggerOptions } from '@tollgate/http';
import type { KeyDirectory } from '@tollgate/keys';
import type { BalanceStore } from '@tollgate/ledger';
import { loadCatalogFile, type Catalog } from '@tollgate/pricing';
import type { Warehouse } from '@tollgate/warehouse';
import { MemoryRateLimiter, RedisRateLimiter, type RateLimiter } from '@tollgate/limits';
import { registerGateway } from '@tollgate/gateway';
import { registerControl } from '@tollgate/control';
import { rebuild, registerOps, startLedgerConsumer, startWarehouseSink } from '@tollgate/aggregator';
import { createMetrics, startTracing, type Metrics, type SpanExporter, type Tracing } from '@tollgate/telemetry';
import { distributedAdapters, embeddedAdapters, type Adapters } from './adapters.ts';
import { secretFromEnvOrFile } from './secrets.ts';

export const DEFAULT_CATALOG = resolve(import.meta.dirname, '../../../libs/pricing/catalogs/cny.json');

export interface Tollgate {
  config: Config;
  catalog: Catalog;
  server: FastifyInstance;
  /** the address the HTTP server listens on, e.g. http://127.0.0.1:8080 */
  url: string | undefined;
  adapters: Adapters;
  log: EventLog;
  balances: BalanceStore;
  keys: KeyDirectory;
  /** present where this process owns the warehouse (embedded, or an aggregator's warehouse group) */
  warehouse: Warehouse;
  adminToken: string;
  adminTokenFile: string | undefined;
  /** this process's Prometheus registry (served at GET /metrics) */
  metrics: Metrics;
  /** embedded mode: waits until every event published so far is applied and warehoused */
  drain(): Promise<void>;
  close(): Promise<void>;
}

export interface StartOptions {
  /** false: do not bind the HTTP server (tests use `server.inject`) */
  listen?: boolean;
  /**
   * Turns tracing on with this exporter, span by span, whatever OTEL_EXPORTER_OTLP_ENDPOINT
   * says (tests pass an InMemorySpanExporter).
   */
  spanExporter?: SpanExporter;
}

/** Starts the roles in `config.roles` on one HTTP server; `listen: false` skips binding. */
export async function startTollgate(config: Config, options: StartOptions = {}): Promise<Tollgate> {
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  config = { ...config, dataDir };
  const admin = secretFromEnvOrFile(config.secrets.adminToken, dataDir, 'admin-token');
  const keyHashSecret = secretFromEnvOrFile(config.secrets.keyHashSecret, dataDir, 'key-hash-secret').value;
  // This process's own credentials: looked for by value in every logged URL and stripped from
  // any query string sent upstream (libs/http secrets.ts).
  const ownSecrets = [admin.value, config.secrets.financeToken, keyHashSecret, config.upstream.apiKey]
    .filter((s): s is string => typeof s === 'string' && s.length > 0);
  const logger = config.logLevel === 'silent' ? false : loggerOptions(config.logLevel, 'tollgate', ownSecrets);
  const catalog = loadCatalogFile(config.pricingFile ?? DEFAULT_CATALOG);

  const gatewayId = config.gatewayId ?? `${hostname()}:${process.pid}`;
  // Tracing off (no endpoint, no exporter): nothing is registered and every component runs on
  // a no-op tracer. Metrics are always on: a counter increment costs less than a log line.
  let tracing: Tracing | undefined;
  if (options.spanExporter || config.telemetry.otlpEndpoint) {
    tracing = startTracing({
      serviceName: config.telemetry.serviceName,
      otlpUrl: config.telemetry.otlpEndpoint,
      exporter: options.spanExporter,
      resource: { 'service.instance.id': gatewayId, 'tollgate.roles': config.roles.join(',') },
    });
  }
  const tracer = tracing?.tracer;
  const metrics = createMetrics();
  const server = createHttpServer({
    logger, bodyLimitBytes: config.bodyLimitBytes, trustProxy: config.trustProxy, telemetry: { tracer, metrics },
    requestTimeoutMs: config.http.requestTimeoutMs, maxConnections: config.http.maxConnections, corsOrigins: config.http.corsOrigins,
  });
  const adapters = config.kafka ? await distributedAdapters(config, server.log) : await embeddedAdapters(config, server.log);
  const { log, balances, keys, warehouse } = adapters;

  // The process that owns the warehouse restores lost hot state by itself: at start, and
  // whenever a ledger consumer finds it gone (Redis restarted empty). One rebuild at a time.
  let rebuilding: Promise<unknown> | null = null;
  const restoreState = () => {
    if (!warehouse || rebuilding) return;
    rebuilding = rebuild({ warehouse, balances, keys })
      .then((report) => server.log.warn({ report }, 'hot state rebuilt from the warehouse'))
      .catch((err: unknown) => server.log.error({ err }, 'rebuild failed; will retry'))
      .finally(() => { rebuilding = null; });
  };
  const ownsWarehouse = config.roles.includes('aggregator') && config.aggregator.groups.includes('warehouse');
  if (adapters.mode === 'distributed' && ownsWarehouse && !(await balances.ready())) {
    restoreState();
    await rebuilding;
  }

  const subscriptions: Subscription[] = [];
  if (config.roles.includes('aggregator')) {
    if (config.aggregator.groups.includes('ledger')) {
      for (let i = 0; i < config.aggregator.ledgerConsumers; i++) {
        subscriptions.push(await startLedgerConsumer({
          log, balances, keys, onNotReady: restoreState, tracer, metrics,
          onQuarantined: (q) => server.log.error({ quarantined: { ...q, offset: q.offset.toString() } }, 'ledger: poison event quarantined; the partition flows on'),
        }));
      }
    }
    if (config.aggregator.groups.includes('warehouse') && warehouse) {
      subscriptions.push(await startWarehouseSink({
        log, warehouse, flushMs: config.warehouse.flushMs, batchSize: config.warehouse.batchSize, tracer, metrics,
        onError: (err) => server.log.error({ err }, 'warehouse insert failed; the batch will be retried'),
        onQuarantined: (records) => {
          for (const q of records) server.log.error({ quarantined: { ...q, offset: q.offset.toString(), raw: undefined } }, 'warehouse: poison event quarantined; the batch flows on');
        },
      }));
    }
  }
  let limiter: RateLimiter | undefined;
  if (config.roles.includes('gateway')) {
    if (Object.keys(config.rateLimits).length > 0) {
      limiter = adapters.redis
        ? new RedisRateLimiter({ redis: adapters.redis, prefix: `${config.redis!.prefix}rl` })
        : new MemoryRateLimiter();
    }
    registerGateway(server, {
      limiter, limits: config.rateLimits, keyMaxConcurrentRequests: config.keyMaxConcurrentRequests,
      accountMaxConcurrentRequests: config.accountMaxConcurrentRequests,
      catalog, keys: adapters.gatewayKeys, balances, log, keyHashSecret,
      upstream: { ...config.upstream, redact: ownSecrets },
      holdTtlMs: config.holdTtlMs,
      streamErrorBilling: config.streamErrorBilling,
      bodyLimitBytes: config.bodyLimitBytes,
      gatewayId,
      tracer, metrics,
    });
  }
  if (config.roles.includes('control')) {
    registerControl(server, { keys, balances, log, catalog, adminToken: admin.value, keyHashSecret });
  }
  if (warehouse && (ownsWarehouse || adapters.mode === 'embedded')) {
    registerOps(server, {
      warehouse, balances, keys, adminToken: admin.value,
      settle: async () => { if (log instanceof MemoryLog) await log.drain(); },
    });
  }
  await server.ready();
  let url: string | undefined;
  if (options.listen !== false) url = await server.listen({ host: config.host, port: config.port });

  let closing: Promise<void> | undefined;
  return {
    config, catalog, server, url, adapters, log, balances, keys,
    get warehouse(): Warehouse {
      if (!warehouse) throw new Error('this process has no warehouse (not an aggregator with the warehouse group)');
      return warehouse;
    },
    adminToken: admin.value, adminTokenFile: admin.file, metrics,
    drain: async () => {
      if (log instanceof MemoryLog) await log.drain();
    },
    close: () => (closing ??= (async () => {
      // Stop taking requests and let in-flight ones settle; then hand every event on
      // (memory log: into the warehouse; Kafka: acknowledged or spooled) before letting go.
      await server.close();
      if (log instanceof MemoryLog) await log.drain();
      await log.flush().catch(() => {});
      for (const s of subscriptions) await s.stop();
      await limiter?.close();
      await adapters.close();
      // Last: the spans of everything above are exported before the process lets go.
      await tracing?.shutdown().catch(() => {});
    })()),
  };
}
