import type { Dispatcher } from 'undici';
import type { EventLog } from '@tollgate/events';
import type { BalanceStore, SpendWindowName } from '@tollgate/ledger';
import type { KeyDirectory } from '@tollgate/keys';
import type { LimitPolicy, RateLimiter } from '@tollgate/limits';
import type { Catalog, PriceVersion } from '@tollgate/pricing';
import type { Metrics, Tracer } from '@tollgate/telemetry';
import type { PoolStore, PoolView } from '@tollgate/pool';
import type { Warehouse } from '@tollgate/warehouse';
import type { ConcurrencyGates } from './limits.ts';
import type { HoldRegistry } from './hold-registry.ts';

export interface UpstreamOptions {
  /** base URL, from operator configuration only (never from a request) */
  url: string;
  apiKey: string | undefined;
  timeoutMs: number;
  /**
   * connections the gateway process opens to the upstream at most (`UPSTREAM_MAX_CONNECTIONS`,
   * default 512); a request that would need one more gets a fast 503 `overloaded` instead of
   * queueing behind the pool
   */
  maxConnections?: number;
  /**
   * the process's other credentials (admin and finance tokens): never sent upstream in a
   * query string or header; not scrubbed from upstream output (the upstream never sees them),
   * only `apiKey` is
   */
  redact?: readonly string[];
}

/** Where the gateway reads the price version in force (a `PriceBook` of @tollgate/pricing). */
export interface PriceSource {
  /** the version in force now; a request captures it once, when it arrives */
  current(): PriceVersion;
}

export interface GatewayDeps {
  /** the catalog at start; requests read the version in force from `prices` */
  catalog: Catalog;
  /**
   * The price book (reloaded catalogs append versions to it). Absent: a book holding `catalog`
   * only (`registerGateway` fills it in).
   */
  prices?: PriceSource;
  keys: KeyDirectory;
  balances: BalanceStore;
  log: EventLog;
  /** server key for the HMAC under which customer keys are stored */
  keyHashSecret: string;
  upstream: UpstreamOptions;
  holdTtlMs: number;
  /**
   * `ADMISSION_POLICY` (default `clamp`; an account's `admission_policy` overrides it) and
   * `ADMISSION_FLOOR_TOKENS` (default 1,024): see `admitHold` in routes/messages.ts
   */
  admission?: { policy: 'strict' | 'clamp'; floorTokens: number };
  /** `DEFAULT_MAX_TOKENS`: sent upstream and held for when a request omits max_tokens (default 1,024) */
  defaultMaxTokens?: number;
  /** what a stream that fails after HTTP 200 costs: nothing, or the usage the upstream reported */
  streamErrorBilling: 'refund' | 'usage';
  bodyLimitBytes: number;
  gatewayId: string;
  /** per-key rate limits; none configured = no limiter call on the hot path */
  limiter?: RateLimiter;
  /** the operator-wide `RATE_LIMIT_*` policy, for keys with no plan in force (see `effectivePlan`) */
  limits?: LimitPolicy;
  /** `DEFAULT_PLAN`: the plan of a key whose key and account name none (unset: `limits`) */
  defaultPlan?: string;
  /**
   * requests one key may have in flight in this gateway process (`KEY_MAX_CONCURRENT_REQUESTS`,
   * default 64), so one tenant cannot take the whole upstream pool; beyond it a fast 429
   */
  keyMaxConcurrentRequests?: number;
  /**
   * requests one account (all its keys) may have in flight in this gateway process
   * (`ACCOUNT_MAX_CONCURRENT_REQUESTS`, default half the upstream pool), so one account with
   * many keys cannot take the whole pool either; beyond it a fast 429
   */
  accountMaxConcurrentRequests?: number;
  /** this process's concurrency gates; `registerGateway` creates them from the settings above */
  concurrency?: ConcurrencyGates;
  /**
   * this process's holds in flight, re-reserved after hot state was lost and rebuilt;
   * `registerGateway` creates it on `balances` (and stops it when the server closes)
   */
  holds?: HoldRegistry;
  /**
   * Where customer usage reports (`GET /v1/usage`, `GET /v1/credits/history`) are read; absent
   * on a gateway that cannot read the warehouse (distributed with chDB): those routes answer 404.
   */
  warehouse?: Warehouse;
  /** pino logger options, or false */
  logger?: object | boolean;
  /** undici dispatcher for upstream calls (tests and benchmarks may pass their own) */
  dispatcher?: Dispatcher;
  /** Fastify's `trustProxy` (TRUST_PROXY): false, true or proxy addresses/CIDRs */
  trustProxy?: boolean | string;
  /** spans for limits, hold, upstream, settle and publish (none when absent) */
  tracer?: Tracer;
  /** tokens, cost, holds refused, upstream errors, time to first byte (none when absent) */
  metrics?: Metrics;
  /**
   * Aborted when this process's shutdown grace runs out: every upstream connection is cut, and a
   * stream cut so is settled with the usage the upstream reported until then (`cut_by_shutdown`).
   */
  shutdown?: AbortSignal;
  /**
   * Webhook triggers (issue 9): told when a spend limit or a plan window refuses a request.
   * Called on the request path, so each must return at once and never throw (fire and forget).
   */
  alerts?: GatewayAlerts;
  /**
   * Upstream pools (issue 10): the groups and upstreams as this process reads them (`view`, a
   * `CachedPoolView` of @tollgate/pool) and the shared store for session affinity and health
   * reports. Absent: the default group of `upstream` alone, affinity in memory.
   */
  pool?: { view: PoolView; store: PoolStore };
  /** Failover and circuit settings (`UPSTREAM_MAX_ATTEMPTS`, …); absent: the defaults of pool/selector.ts. */
  selection?: Partial<SelectionOptions>;
}

/** How the gateway picks and fails over between the upstreams of a group (services/gateway/src/pool). */
export interface SelectionOptions {
  /** `UPSTREAM_MAX_ATTEMPTS`: upstream attempts per request, the first included (default 3) */
  maxAttempts: number;
  /** `UPSTREAM_FAILOVER_BUDGET_MS`: no new attempt starts later than this after the request arrived (default 30 000) */
  failoverBudgetMs: number;
  /** `CIRCUIT_FAILURE_THRESHOLD`: consecutive failures that open an upstream's circuit (default 5) */
  circuitFailureThreshold: number;
  /** `CIRCUIT_OPEN_MS`: how long an open circuit refuses before one half-open probe (default 30 000) */
  circuitOpenMs: number;
}

/** What the gateway reports for alerts; amounts in µc, times epoch ms of the store's clock. */
export interface GatewayAlerts {
  spendLimitReached(r: { accountId: string; keyId: string; window: SpendWindowName; limit: bigint; used: bigint; resetAt: number | null }): void;
  /** `limit`: the refusing window (`requests_per_minute`, …); `retryAfterMs`: until it resets */
  planWindowExhausted(r: { accountId: string; keyId: string; limit: string; retryAfterMs: number }): void;
}
