import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { mkdirSync, statfsSync, watch, type FSWatcher } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ConfigError, type Config } from '@tollgate/config';
import { DiskReserveLowError, finishedWithin, KafkaLog, MemoryLog, SPOOL_RESEND_MS, TOPICS, type EventLog, type Subscription } from '@tollgate/events';
import { addReadinessCheck, closeUnhandledConnections, createHttpServer, loggerOptions, registerNotServedHere, registerServedElsewhere } from '@tollgate/http';
import type { KeyDirectory } from '@tollgate/keys';
import { RedisBalanceStore, type BalanceStore } from '@tollgate/ledger';
import { CatalogError, loadCatalogFile, missingPriceLists, PriceBook, type Catalog, type PriceVersion } from '@tollgate/pricing';
import type { LogPositions, Warehouse } from '@tollgate/warehouse';
import { findPlan, MemoryRateLimiter, RedisRateLimiter, type RateLimiter } from '@tollgate/limits';
import { registerGateway, type GatewayHandle } from '@tollgate/gateway';
import { guardLostState, KEY_DIRECTORY_READS, POOL_READS, registerAnalytics, registerBilling, registerControl, registerUpstreams, registerWebhooks, WEBHOOK_READS, type ReportDeps } from '@tollgate/control';
import { rebuild, RebuildOnLoss, registerOps, registerOpsElsewhere, startLedgerConsumer, startWarehouseSink } from '@tollgate/aggregator';
import { createMetrics, startTracing, type Metrics, type SpanExporter, type Tracing } from '@tollgate/telemetry';
import { alertHooks, MemoryWebhookStore, RedisWebhookStore, restoreWebhooks, WebhookDispatcher } from '@tollgate/webhooks';
import { CachedPoolView, MemoryPoolStore, RedisPoolStore, restorePool, type PoolStore } from '@tollgate/pool';
import { distributedAdapters, embeddedAdapters, type Adapters } from './adapters.ts';
import { secretFromEnvOrFile } from './secrets.ts';

export const DEFAULT_CATALOG = resolve(import.meta.dirname, '../../../libs/pricing/catalogs/cny.json');

/**
 * How often the process that owns the warehouse checks that hot state (Redis) is still there,
 * and rebuilds it when it is not (ms). Bounds how long gateways stay not-ready after Redis comes
 * back empty, with or without traffic.
 */
export const HOT_STATE_CHECK_MS = 1_500;

/**
 * How long a rebuild waits for the warehouse group to have stored every dead letter and control record (ms): its
 * commits follow within a second when it runs; beyond this it is down or far behind.
 */
const REFUSALS_WAIT_MS = 15_000;

/**
 * How long a stop waits for a hot-state rebuild under way (ms). Past it the process stops
 * without it: the rebuild loads balances and positions in one atomic step, so hot state is
 * then either rebuilt or still marked lost, and the next warehouse owner rebuilds it. Without a
 * bound, a ClickHouse that stopped answering mid-rebuild held the stop until the hard exit.
 */
export const REBUILD_STOP_WAIT_MS = 3_000;
/**
 * How long a rebuild's mark in Redis (RebuildOnLoss's `mark`) lives at most, ms: a day, far
 * longer than any rebuild (one outliving its mark would be taken for a loss and run again), and
 * a process killed mid-rebuild leaves one small key behind for that long.
 */
const REBUILD_MARK_TTL_MS = 24 * 3600_000;

/** How long a burst of file-change notifications is let settle before the catalog is read (ms). */
export const PRICING_RELOAD_DEBOUNCE_MS = 250;

export interface Tollgate {
  config: Config;
  /** the catalog at start (`prices.current().catalog` is the one in force) */
  catalog: Catalog;
  /**
   * The price book: the catalog at start, then a version per changed catalog file, each
   * effective from when it was loaded. A request is priced with the version in force when it
   * arrived, to its end.
   */
  prices: PriceBook;
  /**
   * Reads PRICING_FILE again (what SIGHUP and a change of the file do): a changed, valid catalog
   * becomes the version in force from now; an unchanged one changes nothing; an invalid one is
   * refused with every problem logged, and the version in force stays. Resolves to the version
   * in force afterwards, or null when the file was refused (also when it drops a price list
   * still assigned to an account: each such list is logged with its number of accounts).
   */
  reloadPrices(): Promise<PriceVersion | null>;
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
  /** upstream pools (issue 10): the shared store (Redis, else memory) and this process's ≤ 1 s view of it */
  pool: { store: PoolStore; view: CachedPoolView };
  /** embedded mode: waits until every event published so far is applied and warehoused */
  drain(): Promise<void>;
  /**
   * Stops without losing a usage event: stops accepting, lets requests in flight finish for
   * `graceMs` (default: unbounded), then cuts the remaining upstream reads, which settle with
   * the usage seen so far (`cut_by_shutdown`) and publish; then drains/flushes the log and
   * closes everything. Resolves when all of it is done.
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

export interface StartOptions {
  /** false: do not bind the HTTP server (tests use `server.inject`) */
  listen?: boolean;
  /**
   * Turns tracing on with this exporter, span by span, instead of the exporter the OTEL_*
   * environment names (tests pass an InMemorySpanExporter).
   */
  spanExporter?: SpanExporter;
}

/** Starts the roles in `config.roles` on one HTTP server; `listen: false` skips binding. */
export async function startTollgate(config: Config, options: StartOptions = {}): Promise<Tollgate> {
  // The catalog first: a start refused for a bad PRICING_FILE leaves nothing behind (no
  // DATA_DIR with new secrets in it), like one refused for a bad setting.
  const pricingPath = resolve(config.pricingFile ?? DEFAULT_CATALOG);
  const catalog = loadCatalogFile(pricingPath);
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  config = { ...config, dataDir };
  // A reserve the disk could never hold would refuse every paid request for good.
  const disk = statfsSync(dataDir);
  if (config.writeAheadReserveBytes > disk.blocks * disk.bsize) {
    throw new ConfigError([`WRITE_AHEAD_RESERVE_MB: ${config.writeAheadReserveBytes / 1_048_576} MiB is more than the whole disk of DATA_DIR (${dataDir}: ${Math.floor((disk.blocks * disk.bsize) / 1_048_576)} MiB), so every paid request would be refused; set it lower (0 turns the watch off)`]);
  }
  const admin = secretFromEnvOrFile(config.secrets.adminToken, dataDir, 'admin-token');
  const keyHashSecret = secretFromEnvOrFile(config.secrets.keyHashSecret, dataDir, 'key-hash-secret').value;
  // This process's own credentials: looked for by value in every logged URL and stripped from
  // any query string sent upstream (libs/http secrets.ts).
  const ownSecrets = [admin.value, config.secrets.financeToken, keyHashSecret, config.upstream.apiKey]
    .filter((s): s is string => typeof s === 'string' && s.length > 0);
  const logger = config.logLevel === 'silent' ? false : loggerOptions(config.logLevel, 'tollgate', ownSecrets);
  const prices = new PriceBook(catalog, Date.now());

  const gatewayId = config.gatewayId ?? `${hostname()}:${process.pid}`;
  // OpenTelemetry (@opentelemetry/sdk-node, from the standard OTEL_* environment): off (no
  // exporter, OTEL_SDK_DISABLED, no OTLP metrics) means nothing is registered and every
  // component runs on a no-op tracer. Prometheus metrics are always on: a counter increment
  // costs less than a log line.
  const metrics = createMetrics();
  let tracing: Tracing | undefined;
  const otel = config.telemetry;
  if (options.spanExporter || otel.traces || otel.metrics) {
    tracing = startTracing({
      serviceName: otel.serviceName,
      traces: otel.traces,
      exporter: options.spanExporter,
      resource: { 'service.instance.id': gatewayId, 'tollgate.roles': config.roles.join(',') },
      ...(otel.metrics ? { metrics: { registry: metrics.registry, intervalMs: otel.metricIntervalMs, timeoutMs: otel.metricTimeoutMs } } : {}),
    });
  }
  const tracer = tracing?.tracer;
  const server = createHttpServer({
    logger, bodyLimitBytes: config.bodyLimitBytes, trustProxy: config.trustProxy, telemetry: { tracer, metrics, secrets: ownSecrets }, secrets: ownSecrets,
    requestTimeoutMs: config.http.requestTimeoutMs, maxConnections: config.http.maxConnections,
    maxConnectionsPerIp: config.http.maxConnectionsPerIp, corsOrigins: config.http.corsOrigins,
  });
  // Requests a stop may cut once its grace is over: reads (GET, HEAD) and operator calls
  // (`/ops/…`: a rebuild's load is atomic, reconcile and rerate only read). Writes are left to
  // finish: each waits on Redis or the log, both bounded, and a create cut after it was done
  // would be done again by the client's retry.
  const cuttable = new Set<Socket>();
  server.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD' && !req.url?.startsWith('/ops/')) return;
    const socket = req.socket;
    cuttable.add(socket);
    res.once('close', () => cuttable.delete(socket));
  });
  const adapters = config.kafka ? await distributedAdapters(config, server.log) : await embeddedAdapters(config, server.log, { metrics });
  const { log, balances, keys, warehouse } = adapters;
  // Consumer lag (tollgate_consumer_lag): measured against the broker for Kafka; the in-process
  // log hands each event to its consumers as it is published, so its groups' lag is 0.
  metrics.watchWriteAhead(() => {
    const problem = log.writeAheadProblem?.();
    let freeBytes: number | undefined;
    try {
      const s = statfsSync(config.dataDir);
      freeBytes = s.bavail * s.bsize;
    } catch { /* the directory is gone: the series is left out until it is back */ }
    return { state: problem === undefined ? 0 : problem instanceof DiskReserveLowError ? 1 : 2, freeBytes, reserveBytes: config.writeAheadReserveBytes };
  });
  if (log instanceof KafkaLog) log.reportLag((g, t, p, n) => metrics.consumerLag(g, t, p, n), config.telemetry.consumerLagIntervalMs);
  else if (config.roles.includes('aggregator')) {
    for (const group of config.aggregator.groups) for (const topic of TOPICS) metrics.consumerLag(group, topic, 0, 0);
  }
  // Webhooks (issue 9): every process that can detect an alert delivers it; the store (Redis in
  // distributed mode) is shared, so a delivery id is claimed once across all of them.
  const webhookStore = adapters.redis ? new RedisWebhookStore({ redis: adapters.redis, prefix: config.redis!.prefix }) : new MemoryWebhookStore();
  const webhooks = new WebhookDispatcher({
    store: webhookStore, keyHashSecret, maxAttempts: config.webhooks.maxAttempts, retryBaseMs: config.webhooks.retryBaseMs,
    timeoutMs: config.webhooks.timeoutMs, log: server.log, onDrop: (o) => metrics.webhookDropped(o.type),
  });
  const alerts = alertHooks({ dispatcher: webhooks, keys, balances, lowBalanceMicros: config.webhooks.lowBalanceMicros, log: server.log });
  const restoreHooks = () => (warehouse ? restoreWebhooks(warehouse, webhookStore).catch((err: unknown) => { server.log.error({ err }, 'webhooks could not be loaded from the warehouse'); }) : undefined);
  await restoreHooks();
  // Upstream pools (issue 10): upstreams and groups in the same shared hot state (Redis in
  // distributed mode) with their warehouse copy; every gateway reads them through a snapshot at
  // most POOL_CACHE_TTL_MS (≤ 1 s) old. UPSTREAM_URL / UPSTREAM_API_KEY stay the default group.
  const poolStore: PoolStore = adapters.redis ? new RedisPoolStore({ redis: adapters.redis, prefix: config.redis!.prefix }) : new MemoryPoolStore();
  const poolView = new CachedPoolView({
    store: poolStore, configured: { url: config.upstream.url, apiKey: config.upstream.apiKey }, keyHashSecret,
    ttlMs: config.poolCacheTtlMs, onError: (err, what) => server.log.error({ err }, what),
  });
  const restorePoolRecords = () => (warehouse ? restorePool(warehouse, poolStore).catch((err: unknown) => { server.log.error({ err }, 'upstream pools could not be loaded from the warehouse'); }) : undefined);
  await restorePoolRecords();

  // Distributed: a rebuild first waits (at most REFUSALS_WAIT_MS) for the warehouse group to
  // have stored every dead letter, so a grant the ledger refused just before the loss is read
  // as refused, not as credited money, and every control record (accounts, keys, plans, limits),
  // so an account or key made just before the loss is not missing from the rebuilt directory
  // (401s until its record was read again). The warehouse group commits only what it stored.
  // (The in-process log hands both over at once.)
  const refusalsStored = async (): Promise<boolean> => {
    if (!(log instanceof KafkaLog)) return true;
    // The ends read again no sooner than SPOOL_RESEND_MS after the first: a control process's
    // spool (a key revoked while Kafka was away) is on the log by then.
    return log.committedThrough('warehouse', [log.deadLetterTopicName(), log.topicName('control')], REFUSALS_WAIT_MS, { settleMs: SPOOL_RESEND_MS });
  };
  // Distributed: what is on the usage and ledger topics now, which the rebuild waits for the
  // warehouse to hold before it reads (rebuild's `logEnd`); undefined when Kafka does not answer,
  // and then no rebuild is made until it does.
  // (The in-process log has none: its journal is applied before the first request.)
  const logEnd = log instanceof KafkaLog ? async (): Promise<LogPositions | undefined> => {
    const last = await log.lastOffsets(['usage', 'ledger'], REFUSALS_WAIT_MS);
    if (!last) return undefined; // the rebuild refuses (RebuildLogUnavailableError) and is retried
    return { usage: last.get('usage') ?? new Map(), ledger: last.get('ledger') ?? new Map() };
  } : undefined;
  // The process that owns the warehouse restores lost hot state by itself: at start, and
  // whenever a ledger consumer or its own watch finds it gone (Redis restarted empty), once the
  // ready mark reads missing (RebuildOnLoss). One rebuild at a time.
  // Pools first: the rebuild marks hot state ready, and from then on a gateway must not find
  // the stored groups missing and send every caller to the configured default.
  // A pool or webhook read that fails fails the rebuild (retried by the next check): marked
  // ready without them, a customer pinned to a group was served by the default upstream until
  // someone ran `tollgate rebuild` (a tester's HIGH, ClickHouse frozen while Redis was flushed).
  // A rebuild by hand does the same (`beforeRebuild`, below).
  const reloadRecords = async (store: Warehouse) => {
    await restorePool(store, poolStore);
    await restoreWebhooks(store, webhookStore);
  };
  // The mark each rebuild leaves in Redis and reads at its end: gone, Redis lost its data while
  // the rebuild ran (what it put back before its load with it), and another rebuild starts.
  const rebuildMark = balances instanceof RedisBalanceStore ? {
    set: (token: string) => balances.markRebuild(token, REBUILD_MARK_TTL_MS),
    present: (token: string) => balances.rebuildMarked(token),
    clear: (token: string) => balances.unmarkRebuild(token),
  } : undefined;
  // Only where the warehouse is owned (and embedded, for `tollgate rebuild`): a process that
  // reads a warehouse of its own (CLICKHOUSE_URL) for its ledger consumers does not rebuild
  // beside the owner, whose watch finds every loss.
  const ownsWarehouse = config.roles.includes('aggregator') && config.aggregator.groups.includes('warehouse');
  const rebuilds = warehouse && (ownsWarehouse || adapters.mode === 'embedded') ? new RebuildOnLoss({
    ready: () => balances.ready(),
    ...(rebuildMark ? { mark: rebuildMark } : {}),
    rebuild: async () => {
      // At start too: the load at the top logs a failure and goes on, and Redis may have lost
      // them since (small and idempotent, by version).
      await reloadRecords(warehouse);
      const report = await rebuild({ warehouse, balances, keys, refusalsStored, ...(logEnd ? { logEnd } : {}) });
      // A warning when it brought state back (hot state had been lost); info on a fresh
      // deployment, where both are empty.
      server.log[report.accounts + report.keys + report.balances + report.usage_ids > 0 ? 'warn' : 'info']({ report }, 'hot state rebuilt from the warehouse');
    },
    onLossConfirmed: () => server.log.warn('hot state lost (the ready mark is gone); rebuilding from the warehouse'),
    onLostDuringRebuild: () => server.log.warn('hot state was lost while a rebuild ran (its mark in Redis is gone); rebuilding again'),
    onCheckFailed: (err) => server.log.warn({ err }, 'hot state check failed; will retry'),
    onRebuildFailed: (err) => server.log.error({ err }, 'rebuild failed; will retry'),
  }) : undefined;
  const reportLoss = () => { void rebuilds?.reportLoss(); };
  // The warehouse owner also watches the ready mark itself: the ledger group may run in another
  // process (the Kubernetes layout), and with every gateway refusing paid requests (503, state
  // unavailable) no event may ever reach a ledger consumer to notice the loss. One EXISTS per
  // check; the rebuild brings every role's /ready back without any traffic.
  let hotStateWatch: NodeJS.Timeout | undefined;
  if (adapters.mode === 'distributed' && ownsWarehouse) {
    hotStateWatch = setInterval(reportLoss, HOT_STATE_CHECK_MS);
    hotStateWatch.unref();
  }

  const subscriptions: Subscription[] = [];
  if (config.roles.includes('aggregator')) {
    if (config.aggregator.groups.includes('ledger')) {
      for (let i = 0; i < config.aggregator.ledgerConsumers; i++) {
        subscriptions.push(await startLedgerConsumer({
          log, balances, keys, onNotReady: reportLoss, tracer, metrics, onUsageApplied: alerts.onUsageApplied,
          onQuarantined: (q) => {
            server.log.error({ quarantined: { ...q, offset: q.offset.toString() } }, 'ledger: poison event quarantined; the partition flows on');
            alerts.quarantined('ledger', q);
          },
        }));
      }
    }
    if (config.aggregator.groups.includes('warehouse') && warehouse) {
      subscriptions.push(await startWarehouseSink({
        log, warehouse, flushMs: config.warehouse.flushMs, batchSize: config.warehouse.batchSize, tracer, metrics,
        onError: (err) => server.log.error({ err }, 'warehouse insert failed; the batch will be retried'),
        onQuarantined: (records) => {
          for (const q of records) {
            server.log.error({ quarantined: { ...q, offset: q.offset.toString(), raw: undefined } }, 'warehouse: poison event quarantined; the batch flows on');
            alerts.quarantined(q.group, q);
          }
        },
      }));
    }
  }
  // Hot state lost while this process was down: rebuilt before it serves, and only now that its
  // own warehouse group consumes, since the rebuild first waits for that group to have stored
  // every dead letter (refusalsStored). A ledger consumer that met the loss first has started
  // the rebuild already; this then waits for that one.
  if (adapters.mode === 'distributed' && ownsWarehouse && !(await balances.ready())) {
    await rebuilds?.start();
  }
  // Embedded: a journal a killed process left goes back into the log now that both groups
  // listen, and is applied (every live check) before the first request is taken.
  if (adapters.recover) {
    // The dispatcher and its hooks are ready above (restored from the warehouse): a journal line
    // quarantined here is alerted like any other group's.
    await adapters.recover((q) => alerts.quarantined('journal', q));
    if (log instanceof MemoryLog) await log.drain();
  }
  let limiter: RateLimiter | undefined;
  // Aborted when a stop's grace runs out: the gateway cuts its upstream reads and settles them.
  const shutdown = new AbortController();
  let gateway: GatewayHandle | undefined;
  if (config.roles.includes('gateway')) {
    // Always: a plan can be assigned at any time; a key with no windows costs no limiter call.
    {
      limiter = adapters.redis
        ? new RedisRateLimiter({ redis: adapters.redis, prefix: `${config.redis!.prefix}rl` })
        : new MemoryRateLimiter();
    }
    if (config.defaultPlan) {
      const named = config.defaultPlan;
      // Plans can be created later, so this is a warning, not a refusal to start.
      findPlan(named, (id) => adapters.gatewayKeys.plan(id))
        .then((plan) => { if (!plan) server.log.warn({ defaultPlan: named }, 'DEFAULT_PLAN names no plan (a seed plan or one stored): keys without a plan get the RATE_LIMIT_* policy until it exists'); })
        .catch(() => {});
    }
    gateway = registerGateway(server, {
      limiter, limits: config.rateLimits, defaultPlan: config.defaultPlan, keyMaxConcurrentRequests: config.keyMaxConcurrentRequests,
      accountMaxConcurrentRequests: config.accountMaxConcurrentRequests,
      catalog, prices, keys: adapters.gatewayKeys, balances, log, keyHashSecret,
      upstream: { ...config.upstream, redact: ownSecrets },
      holdTtlMs: config.holdTtlMs,
      admission: config.admission,
      defaultMaxTokens: config.defaultMaxTokens,
      streamErrorBilling: config.streamErrorBilling,
      bodyLimitBytes: config.bodyLimitBytes,
      gatewayId,
      tracer, metrics, shutdown: shutdown.signal, alerts: alerts.gateway,
      pool: { view: poolView, store: poolStore }, selection: config.selection,
      ...(warehouse ? { warehouse } : {}),
    });
  }
  // The operator routes' stores answer 503 state_unavailable while hot state waits for its
  // rebuild (lost, or not built yet), never an empty list or "does not exist" (control's own
  // key directory and balances: registerControl).
  const lost = () => balances.stateLost();
  const operatorPool = guardLostState(poolStore, lost, POOL_READS);
  if (config.roles.includes('control')) {
    registerControl(server, { keys, balances, log, catalog, prices, adminToken: admin.value, financeToken: config.secrets.financeToken, keyHashSecret, pool: operatorPool });
  }
  // Usage analytics and billing: wherever the warehouse can be read by an operator-facing role.
  if (warehouse && (adapters.mode === 'embedded' || config.roles.includes('control') || ownsWarehouse)) {
    const reportDeps: ReportDeps = {
      warehouse, adminToken: admin.value, financeToken: config.secrets.financeToken, prices,
      balances: guardLostState(balances, lost), keys: guardLostState(keys, lost, KEY_DIRECTORY_READS), log,
      settle: async () => { if (log instanceof MemoryLog) await log.drain(); },
    };
    registerAnalytics(server, reportDeps);
    registerBilling(server, reportDeps);
    registerWebhooks(server, { adminToken: admin.value, financeToken: config.secrets.financeToken, store: guardLostState(webhookStore, lost, WEBHOOK_READS), keyHashSecret, warehouse, secrets: ownSecrets });
    registerUpstreams(server, {
      adminToken: admin.value, financeToken: config.secrets.financeToken, store: operatorPool, keyHashSecret, warehouse,
      catalog: () => prices.current().catalog, configured: { url: config.upstream.url, apiKey: config.upstream.apiKey },
      onChange: () => poolView.invalidate(),
    });
  }
  if (warehouse && (ownsWarehouse || adapters.mode === 'embedded')) {
    registerOps(server, {
      warehouse, balances, keys, adminToken: admin.value, financeToken: config.secrets.financeToken,
      settle: async () => { if (log instanceof MemoryLog) await log.drain(); },
      ...(log instanceof MemoryLog ? { quiesce: <T>(fn: () => Promise<T>) => log.quiesce(fn) } : {}),
      refusalsStored, ...(logEnd ? { logEnd } : {}),
      ...(log instanceof KafkaLog ? { usageStored: () => log.committedThrough('warehouse', [log.topicName('usage')], REFUSALS_WAIT_MS) } : {}),
      priceBook: () => prices,
      beforeRebuild: () => reloadRecords(warehouse),
      ...(rebuilds ? { exclusive: <T>(fn: () => Promise<T>) => rebuilds.exclusive(fn) } : {}),
    });
  } else {
    registerOpsElsewhere(server);
  }
  // A distributed process without a role's routes names the process that has them (a CLI or SDK
  // pointed at the wrong one read "does not exist", a new user's finding).
  // The admin routes that read the warehouse (usage, billing, invoices and statements, credit
  // history, webhooks, upstream pools) are on control only when it has a warehouse of its own
  // (CLICKHOUSE_URL); otherwise (one chDB, the warehouse owner's) they are the owner's.
  const warehouseAdmin = 'usage, billing, invoices, statements, credit history, webhooks and upstreams';
  if (!config.roles.includes('control')) {
    registerServedElsewhere(server, '/admin/*', `a process running the control role (the admin API; ${warehouseAdmin} by the process that owns the warehouse where control has no CLICKHOUSE_URL)`);
  } else if (!warehouse) {
    registerNotServedHere(server, '/admin/*', `this control process has no warehouse (CLICKHOUSE_URL is not set), so ${warehouseAdmin} are served by the process that owns the warehouse (an aggregator running the warehouse group); any other path does not exist`);
  }
  if (!config.roles.includes('gateway')) {
    // (`/api/v1/…`: the same routes for clients whose base URL ends in /api)
    for (const pattern of ['/v1/*', '/api/v1/*']) registerServedElsewhere(server, pattern, 'a process running the gateway role (the customer API)');
  }
  // Every version a gateway prices with goes to the log (control topic), so the warehouse keeps
  // it and `tollgate rerate` can recompute a stored bill under exactly these prices.
  const publishVersion = (v: PriceVersion) => log.publish('control', [{
    event: { type: 'price_version', event_id: `price_version:${v.id}:${v.effectiveAt}`, ts: Date.now(), id: v.id, effective_at: v.effectiveAt, catalog: v.catalog.document },
  }]);
  const pricesLog = server.log.child({ pricingFile: pricingPath });
  if (config.roles.includes('gateway')) {
    // Not awaited: publish appends to the log (the spool) before it returns, so the version
    // precedes every usage event priced with it; its acknowledgement (or, with Kafka away, the
    // first send's failure: seconds of connection retries) is no reason to start later.
    void publishVersion(prices.current()).catch((err: unknown) => pricesLog.error({ err }, 'price version could not be published'));
  }
  let reloading: Promise<PriceVersion | null> = Promise.resolve(null);
  const reloadPrices = (): Promise<PriceVersion | null> => (reloading = reloading.then(async () => {
    let next: Catalog;
    try {
      next = loadCatalogFile(pricingPath);
    } catch (err) {
      // A bad file never replaces good prices: the version in force stays, every problem is logged.
      const problems = err instanceof CatalogError ? err.problems : [String((err as Error)?.message ?? err)];
      for (const problem of problems) pricesLog.error({ problem }, 'price file refused; the prices in force stay');
      return null;
    }
    // A list still assigned to accounts must survive the reload, else they pay full price unseen.
    // While hot state is lost the account directory reads empty, and any list would pass: the
    // file is read again once the state is rebuilt (a breaker's MEDIUM).
    if (await balances.stateLost().catch(() => true)) {
      pricesLog.error('price file not applied yet: hot state is lost or unreachable (Redis restarted empty, not rebuilt yet), so the price lists accounts use cannot be read; the prices in force stay, and the file is read again once hot state is back');
      clearTimeout(debounce);
      debounce = setTimeout(() => void reloadPrices(), HOT_STATE_CHECK_MS);
      debounce.unref();
      return null;
    }
    let missing: ReturnType<typeof missingPriceLists>;
    try {
      missing = missingPriceLists(next, (await keys.accounts()).map((a) => a.price_list));
    } catch (err) {
      // Unable to tell which lists are in use: keep the prices in force (retry with SIGHUP).
      pricesLog.error({ err }, 'price file refused: the accounts\' price lists could not be read; the prices in force stay');
      return null;
    }
    if (missing.length > 0) {
      for (const m of missing) {
        pricesLog.error({ priceList: m.list, accounts: m.accounts }, `price file refused: price list "${m.list}" is assigned to ${m.accounts} account(s) and the new catalog drops it; reassign them first. The prices in force stay`);
      }
      return null;
    }
    const before = prices.current();
    const now = Math.max(Date.now(), before.effectiveAt);
    const v = prices.append(next, now);
    if (v !== before) {
      pricesLog.warn({ from: before.id, to: v.id, effectiveAt: new Date(v.effectiveAt).toISOString() }, 'prices changed; new requests are priced with the new version');
      if (config.roles.includes('gateway')) await publishVersion(v).catch((err: unknown) => pricesLog.error({ err }, 'price version could not be published'));
    } else {
      // Said, so that an operator who fixed a refused file sees it was read and is valid.
      pricesLog.info({ version: v.id }, 'price file read: valid and unchanged; the prices in force stay');
    }
    return v;
  }));
  const onHangup = () => void reloadPrices();
  process.on('SIGHUP', onHangup);
  // The directory is watched, not the file: editors and deploy tools replace a file by renaming
  // a new one over it, which ends a watch on the old file.
  let watcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  try {
    watcher = watch(dirname(pricingPath), { persistent: false }, (_event, name) => {
      if (name !== null && name !== basename(pricingPath)) return;
      clearTimeout(debounce);
      debounce = setTimeout(() => void reloadPrices(), PRICING_RELOAD_DEBOUNCE_MS);
      debounce.unref();
    });
    watcher.on('error', (err) => pricesLog.warn({ err }, 'price file watch failed; reload with SIGHUP'));
  } catch (err) {
    pricesLog.warn({ err }, 'price file cannot be watched; reload with SIGHUP');
  }

  await server.ready();
  let url: string | undefined;
  if (options.listen !== false) url = await server.listen({ host: config.host, port: config.port });

  let closing: Promise<void> | undefined;
  // GET /ready (README, Observability: "Health"): no traffic while stopping, while hot state is
  // rebuilt or lost, or while a role that reads the warehouse cannot reach it. Kafka is not
  // checked: a gateway keeps serving through a Kafka outage (events spool to disk).
  addReadinessCheck(server, 'tollgate', async () => {
    const reasons: string[] = [];
    if (closing) reasons.push('shutting down');
    if (rebuilds?.recovering) reasons.push('hot state is being rebuilt from the warehouse');
    const usesHotState = config.roles.includes('gateway') || config.roles.includes('control')
      || (config.roles.includes('aggregator') && config.aggregator.groups.includes('ledger'));
    if (usesHotState && !rebuilds?.recovering && !(await balances.ready())) reasons.push('hot state is not ready (lost or not yet rebuilt)');
    // Its error stays in the log (it names DATA_DIR's path): /ready is unauthenticated.
    const writeAhead = log.writeAheadProblem?.();
    // Below the reserve only paid requests are refused: a process without the gateway role
    // (control) still serves everything it serves, so it stays in its load balancer.
    if (writeAhead instanceof DiskReserveLowError) {
      if (config.roles.includes('gateway')) reasons.push('the disk of DATA_DIR is below the write-ahead reserve (WRITE_AHEAD_RESERVE_MB)');
    } else if (writeAhead) reasons.push('events cannot be written ahead (the spool or journal in DATA_DIR cannot be written)');
    const readsWarehouse = warehouse && (adapters.mode === 'embedded' || ownsWarehouse || config.roles.includes('control'));
    if (readsWarehouse) {
      // The error's text stays in the log: it may name the ClickHouse URL, and /ready is unauthenticated.
      await warehouse.select('SELECT 1 AS ok').catch((err: unknown) => {
        server.log.warn({ err }, 'readiness: the warehouse is unreachable');
        reasons.push('warehouse unreachable');
      });
    }
    return reasons;
  });
  return {
    config, catalog, prices, reloadPrices, server, url, adapters, log, balances, keys,
    get warehouse(): Warehouse {
      if (!warehouse) throw new Error('this process has no warehouse (not an aggregator with the warehouse group)');
      return warehouse;
    },
    adminToken: admin.value, adminTokenFile: admin.file, metrics, pool: { store: poolStore, view: poolView },
    drain: async () => {
      if (log instanceof MemoryLog) await log.drain();
    },
    close: (closeOptions = {}) => (closing ??= (async () => {
      // Stop taking requests and let in-flight ones settle; at the grace's end cut what is left
      // (it settles and publishes); then hand every event on (memory log: into the warehouse;
      // Kafka: acknowledged or spooled) before letting go.
      process.off('SIGHUP', onHangup);
      clearInterval(hotStateWatch);
      watcher?.close();
      clearTimeout(debounce);
      const closed = server.close();
      const graceMs = closeOptions.graceMs;
      // Once the grace is over, reads and operator calls still running are cut (`cuttable`): a
      // report or an `/ops` rebuild waiting on a frozen ClickHouse held the stop until the hard
      // exit (a tester's finding). So are connections holding nothing being handled
      // (`closeUnhandledConnections`): answers all given but still queued for a client that
      // stopped reading (no longer cut by the closing of idle connections, which would have cut
      // them short while they were read), and requests whose head or body is still arriving (a
      // slow upload: Node's request timeout stops with the server; such a connection held the
      // stop until the hard exit, a tester's finding). Writes received whole are let finish.
      let graceOver = false;
      const cut = () => {
        for (const socket of cuttable) socket.destroy();
        closeUnhandledConnections(server.server);
      };
      // At the grace's end the upstream reads still running are cut (settled with the usage seen
      // so far), also those of requests whose body arrived during the grace, after the gateway was
      // first idle (a tester's finding: such a stream ran on, uncharged, until the hard exit).
      const graceTimer = graceMs === undefined ? undefined : setTimeout(() => {
        graceOver = true;
        if (gateway && gateway.inFlight > 0) server.log.warn({ inFlight: gateway.inFlight, graceMs }, 'shutdown grace ran out; cutting the upstream reads still in flight (settled with the usage seen so far)');
        shutdown.abort();
        cut();
      }, graceMs);
      await gateway?.idle();
      // Every customer request so far is settled and published: connections with nothing in
      // progress (keep-alive after a response that began before the stop) carry nothing billable,
      // and a keep-alive one would hold the close for KEEP_ALIVE_TIMEOUT_MS. A request still in
      // flight (an admin call waiting for the log, a report) leaves its keep-alive connection
      // idle only when it ends: closed then by the sweep, or that one connection held the close
      // past the hard stop (a tester's finding).
      server.server.closeIdleConnections();
      const sweep = setInterval(() => {
        server.server.closeIdleConnections();
        if (graceOver) cut();
      }, 100);
      await closed.finally(() => { clearInterval(sweep); });
      // A request that arrived whole during the grace ran on its own; the timer above still cuts
      // it at the grace's end.
      await gateway?.idle();
      clearTimeout(graceTimer);
      await reloading;
      if (log instanceof MemoryLog) await log.drain();
      // Kafka's acknowledgements are waited for by the log's own close (adapters.close, below),
      // bounded: with Kafka away, what is unacknowledged stays in the fsync'd spool for the next
      // start. An unbounded flush() here held the stop until the hard exit (exit 1).
      // Each bounded (KafkaLog subscriptionStopTimeoutMs), and independent: stopped together.
      await Promise.all(subscriptions.map((s) => s.stop()));
      // Attempts in flight finish; retries still waiting are abandoned and recorded (README, Webhooks).
      await webhooks.close();
      await limiter?.close();
      // No rebuild starts from here on; the one under way (and one its end started) is waited for.
      const rebuildsStopped = rebuilds?.stop();
      if (rebuildsStopped && !(await finishedWithin(rebuildsStopped, REBUILD_STOP_WAIT_MS))) {
        server.log.warn({ waitedMs: REBUILD_STOP_WAIT_MS }, 'stopping with a hot-state rebuild unfinished; it loads in one atomic step, so hot state is either rebuilt or still marked lost, and the next warehouse owner rebuilds it');
      }
      await adapters.close();
      // Last: the spans of everything above are exported before the process lets go.
      await tracing?.shutdown().catch(() => {});
    })()),
  };
}
