import type { Dispatcher } from 'undici';
import type { EventLog } from '@tollgate/events';
import type { BalanceStore } from '@tollgate/ledger';
import type { KeyDirectory } from '@tollgate/keys';
import type { LimitPolicy, RateLimiter } from '@tollgate/limits';
import type { Catalog } from '@tollgate/pricing';
import type { Metrics, Tracer } from '@tollgate/telemetry';

export interface UpstreamOptions {
  /** base URL, from operator configuration only (never from a request) */
  url: string;
  apiKey: string | undefined;
  timeoutMs: number;
}

export interface GatewayDeps {
  catalog: Catalog;
  keys: KeyDirectory;
  balances: BalanceStore;
  log: EventLog;
  /** server key for the HMAC under which customer keys are stored */
  keyHashSecret: string;
  upstream: UpstreamOptions;
  holdTtlMs: number;
  /** what a stream that fails after HTTP 200 costs: nothing, or the usage the upstream reported */
  streamErrorBilling: 'refund' | 'usage';
  bodyLimitBytes: number;
  gatewayId: string;
  /** per-key rate limits; none configured = no limiter call on the hot path */
  limiter?: RateLimiter;
  limits?: LimitPolicy;
  /** pino logger options, or false */
  logger?: object | boolean;
  /** undici dispatcher for upstream calls (tests and benchmarks may pass their own) */
  dispatcher?: Dispatcher;
  trustProxy?: boolean;
  /** spans for limits, hold, upstream, settle and publish (none when absent) */
  tracer?: Tracer;
  /** tokens, cost, holds refused, upstream errors, time to first byte (none when absent) */
  metrics?: Metrics;
}
