import { z } from 'zod';
import { DEAD_LETTER_TOPIC, DEFAULT_LINGER_MS, MAX_TEXT_CHARS, TOPICS, textProblem } from '@tollgate/events';

export const ROLES = ['gateway', 'aggregator', 'control'] as const;
export type Role = (typeof ROLES)[number];

/**
 * A whole number within [min, max], written in plain digits. One message for every way to miss
 * (`99999`, `-1`, `1kb`, `1.5`, `1e3`), naming the range, so the fix is in the message.
 */
const int = (min: number, max: number) => z.string().trim().transform((v, ctx) => {
  const n = /^\d{1,16}$/.test(v) ? Number(v) : Number.NaN;
  if (!(n >= min && n <= max)) {
    ctx.addIssue({ code: 'custom', message: `expected a whole number from ${min} to ${max}, got ${JSON.stringify(v.slice(0, 40))}` });
    return z.NEVER;
  }
  return n;
});
/**
 * A URL with one of `schemes` (e.g. `['http', 'https']`). The value is never echoed (a Redis or
 * ClickHouse URL may carry a password), only its scheme.
 */
const urlOf = (schemes: readonly string[], example: string) => z.string().trim().superRefine((v, ctx) => {
  let scheme: string | undefined;
  try { scheme = new URL(v).protocol.slice(0, -1); } catch { /* not a URL */ }
  const expected = `expected a URL such as ${example} (scheme ${schemes.join(' or ')})`;
  if (scheme === undefined) ctx.addIssue({ code: 'custom', message: expected });
  else if (!schemes.includes(scheme)) ctx.addIssue({ code: 'custom', message: `${expected}, got scheme ${JSON.stringify(scheme)}` });
});
const url = urlOf(['http', 'https'], 'http://host:port');
/**
 * CLICKHOUSE_URL: the server's address alone, `http(s)://[user:password@]host:port[/]`. A path
 * is refused (@clickhouse/client would make it the connection's default database, which a
 * fresh server does not have yet; the Warehouse takes CLICKHOUSE_DATABASE), and so are a query
 * string and a fragment (the client refuses parameters it does not know at the first query,
 * with a stack). The value is never echoed.
 */
const clickHouseUrl = url.superRefine((v, ctx) => {
  let u: URL;
  try { u = new URL(v); } catch { return; }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return; // the scheme's own message
  if (u.pathname !== '' && u.pathname !== '/') {
    ctx.addIssue({ code: 'custom', message: 'has a path; give the server\'s address alone (http://host:port) and the database in CLICKHOUSE_DATABASE' });
  }
  if (v.includes('?') || v.includes('#')) { // an empty `?` or `#` too, which URL drops
    ctx.addIssue({ code: 'custom', message: 'has a query string or fragment; give the server\'s address alone (http://host:port; a user and password in it, or in CLICKHOUSE_USER and CLICKHOUSE_PASSWORD)' });
  }
  if (urlCredentials(u) === undefined) {
    ctx.addIssue({ code: 'custom', message: 'its user or password is not valid percent-encoding (write % as %25, and @ : / ? # as %40 %3A %2F %3F %23)' });
  }
});

/**
 * The user and password a URL carries, percent-decoded (`''` when absent), or undefined when one
 * does not decode (a bare `%`): @clickhouse/client decodes them itself and threw URIError.
 */
function urlCredentials(u: URL): { username: string; password: string } | undefined {
  try {
    return { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
  } catch {
    return undefined;
  }
}
/**
 * Configuration text that is stored in every event (GATEWAY_ID): held to the event decoder's
 * own bound (`textProblem`, `MAX_TEXT_CHARS`, libs/events), or every event would be quarantined.
 */
const eventText = z.string().trim().min(1).superRefine((v, ctx) => {
  const problem = textProblem(v, MAX_TEXT_CHARS);
  if (problem) ctx.addIssue({ code: 'custom', message: `${problem} (it is stored in every usage event)` });
});
/** Kafka refuses topic names longer than 249 characters; the prefix goes in front of each topic. */
const KAFKA_TOPIC_NAME_MAX = 249;
const LONGEST_TOPIC = [...TOPICS, DEAD_LETTER_TOPIC].reduce((a, b) => (b.length > a.length ? b : a));
const MAX_TOPIC_PREFIX = KAFKA_TOPIC_NAME_MAX - LONGEST_TOPIC.length;
const optionalString = z.string().trim().min(1).optional();
/**
 * One of `values` (lower case; surrounding spaces and case are forgiven, as for numbers); any
 * other value is refused as `expected one of a, b, c, got "x"`
 * (the value cut at 40 characters).
 */
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) => z.string().trim().toLowerCase().pipe(
  z.enum(values, { error: (iss) => `expected one of ${values.join(', ')}, got ${JSON.stringify(String(iss.input).slice(0, 40))}` }));
const bool = oneOf(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
/** The OTel spec's booleans: `true` / `false`, any case. */
const otelBool = z.string().trim().toLowerCase().pipe(z.enum(['true', 'false'], { error: 'expected true or false' })).transform((v) => v === 'true');
/** The OTLP transports @opentelemetry/sdk-node has exporters for. */
export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'] as const;
const otlpProtocol = z.enum(OTLP_PROTOCOLS, { error: `expected one of ${OTLP_PROTOCOLS.join(', ')}` });
/** `OTEL_TRACES_SAMPLER` values (OTel SDK environment variables spec). */
export /** Trace exporters sdk-node can build from OTEL_TRACES_EXPORTER (it ships otlp and zipkin). */
const TRACE_EXPORTERS = ['otlp', 'zipkin', 'console', 'none'] as const;
const SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;
/**
 * A W3C-baggage-like `key=value,key2=value2` list (OTEL_EXPORTER_OTLP_HEADERS,
 * OTEL_RESOURCE_ATTRIBUTES), values percent-encoded. Parsed to a record. Values are echoed in
 * errors only when `echo` (headers usually carry a collector's API key).
 */
const keyValueList = (what: string, echo: boolean) => z.string().trim().transform((v, ctx) => {
  const out: Record<string, string> = {};
  for (const [i, raw] of v.split(',').entries()) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    const key = eq > 0 ? item.slice(0, eq).trim() : '';
    let value: string | undefined;
    try { value = eq > 0 ? decodeURIComponent(item.slice(eq + 1).trim()) : undefined; } catch { /* bad percent-encoding */ }
    if (key === '' || value === undefined || !/^[\x21-\x7e]+$/.test(key)) {
      ctx.addIssue({ code: 'custom', message: `${what}: item ${i + 1}${echo ? ` ${JSON.stringify(item.slice(0, 40))}` : ''} is not key=value (value percent-encoded); expected key=value,key2=value2` });
      return z.NEVER;
    }
    out[key] = value;
  }
  return out;
});

/**
 * Every setting, by its environment variable name, so an error names exactly what to fix.
 * Defaults are for `npm start` on one machine with nothing else installed.
 */
/** Which proxies' `x-forwarded-for` entries are believed (see TRUST_PROXY). */
export type TrustProxy = boolean | string;

const EnvSchema = z.object({
  TOLLGATE_ROLES: z.string().default(ROLES.join(',')).transform((s, ctx) => {
    const roles = s.split(',').map((r) => r.trim()).filter(Boolean);
    const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
    if (bad.length || roles.length === 0) {
      ctx.addIssue({ code: 'custom', message: `unknown role(s) ${bad.join(', ') || '(none)'}; expected any of ${ROLES.join(', ')}` });
      return z.NEVER;
    }
    return [...new Set(roles)] as Role[];
  }),
  HOST: z.string().default('0.0.0.0'),
  PORT: int(0, 65535).default(8080),
  DATA_DIR: z.string().default('./data'),
  /**
   * MiB that must stay free on the disk of DATA_DIR's write ahead (spool or journal): below it,
   * paid requests are refused (503 usage_unrecorded) and /ready is 503, while requests in flight
   * record their usage in the reserve; 0 turns the watch off
   */
  WRITE_AHEAD_RESERVE_MB: int(0, 1_048_576).default(64),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  GATEWAY_ID: eventText.optional(),

  PRICING_FILE: optionalString,
  UPSTREAM_URL: urlOf(['http', 'https'], 'https://api.anthropic.com').default('https://api.anthropic.com'),
  UPSTREAM_API_KEY: optionalString,
  UPSTREAM_TIMEOUT_MS: int(1000, 3_600_000).default(600_000),
  /** connections one gateway process opens to the upstream; beyond them a fast 503 `overloaded` */
  UPSTREAM_MAX_CONNECTIONS: int(1, 100_000).default(512),
  /** how long a hold outlives a gateway that never settled it */
  HOLD_TTL_MS: int(10_000, 86_400_000).default(900_000),
  /**
   * when a request's worst case exceeds what the account has available: `clamp` lowers
   * max_tokens to what it affords (down to ADMISSION_FLOOR_TOKENS), `strict` answers 402;
   * an account's `admission_policy` overrides it
   */
  ADMISSION_POLICY: oneOf(['strict', 'clamp']).default('clamp'),
  /** the least max_tokens a clamp sends upstream (tokens); below it the request is refused */
  ADMISSION_FLOOR_TOKENS: int(1, 1_000_000).default(1_024),
  /** the max_tokens the gateway sends upstream (and holds for) when a /v1/messages request omits it */
  DEFAULT_MAX_TOKENS: int(1, 1_000_000).default(1_024),
  /** what an SSE error after HTTP 200, or an upstream that drops the stream, costs */
  STREAM_ERROR_BILLING: oneOf(['refund', 'usage']).default('refund'),
  BODY_LIMIT_BYTES: int(1024, 256 * 1024 * 1024).default(32 * 1024 * 1024),
  /** ms to receive a whole request (headers within min(20 s, this)); never limits a response */
  REQUEST_TIMEOUT_MS: int(1000, 3_600_000).default(120_000),
  /** simultaneous client connections of the HTTP server; unset = from the open-file limit */
  MAX_CONNECTIONS: int(16, 1_000_000).optional(),
  /** simultaneous client connections from one address; unset = max(16, MAX_CONNECTIONS / 4), off behind TRUST_PROXY */
  MAX_CONNECTIONS_PER_IP: int(1, 1_000_000).optional(),
  /** browser origins allowed by CORS: `*` or a comma list of origins; unset = CORS off */
  CORS_ORIGINS: z.string().trim().optional().transform((s, ctx) => {
    if (s === undefined) return undefined;
    const list = s.split(',').map((o) => o.trim()).filter(Boolean);
    if (list.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'must name at least one origin such as https://app.example.com, or * alone; unset it to turn CORS off' });
      return z.NEVER;
    }
    if (list.length === 1 && list[0] === '*') return '*' as const;
    for (const o of list) {
      let origin: string | undefined;
      try { origin = new URL(o).origin; } catch { /* reported below */ }
      if (origin !== o) {
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(o)} is not an origin such as https://app.example.com (scheme, host, optional port; no path), or use * alone` });
        return z.NEVER;
      }
    }
    return list;
  }),

  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  FINANCE_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  KEY_HASH_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),

  KAFKA_BROKERS: optionalString,
  KAFKA_CLIENT_ID: z.string().default('tollgate'),
  KAFKA_PARTITIONS: int(1, 1024).default(4),
  /** codec of the record batches this process produces (consumers read all): KafkaCompression */
  KAFKA_COMPRESSION: oneOf(['gzip', 'zstd', 'none']).default('gzip'),
  /** ms a small batch of usage events waits for company before it is produced (KafkaLog's lingerMs; events' DEFAULT_LINGER_MS) */
  KAFKA_LINGER_MS: int(0, 1000).default(DEFAULT_LINGER_MS),
  KAFKA_TOPIC_PREFIX: z.string()
    .regex(/^[A-Za-z0-9._-]*$/, 'letters, digits, . _ - only (Kafka topic names)')
    .max(MAX_TOPIC_PREFIX, `must be at most ${MAX_TOPIC_PREFIX} characters (Kafka topic names are at most ${KAFKA_TOPIC_NAME_MAX}, and "${LONGEST_TOPIC}" follows the prefix)`)
    .default(''),
  REDIS_URL: urlOf(['redis', 'rediss'], 'redis://127.0.0.1:6379').optional(),
  /**
   * Seed nodes of a Redis Cluster for the ledger's hot state (balances, holds, positions):
   * `host:port,host:port`. With it, RedisBalanceStore uses its Cluster layout there; REDIS_URL
   * still serves the key directory, plan limiters and the rest (standalone only).
   */
  REDIS_CLUSTER_NODES: z.string().trim().min(1).transform((v, ctx) => {
    const nodes = v.split(',').map((n) => n.trim()).filter(Boolean).map((n) => {
      const m = /^([^\s:]+):(\d{1,5})$/.exec(n);
      const port = m ? Number(m[2]) : 0;
      return m && port > 0 && port < 65536 ? { host: m[1]!, port } : undefined;
    });
    if (nodes.length === 0 || nodes.some((n) => n === undefined)) {
      ctx.addIssue({ code: 'custom', message: `expected host:port[,host:port…] such as 127.0.0.1:7001,127.0.0.1:7002, got "${v}"` });
      return z.NEVER;
    }
    return nodes as Array<{ host: string; port: number }>;
  }).optional(),
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:._-]*$/, 'letters, digits, : . _ - only').max(64, 'must be at most 64 characters').default('tg:'),
  /**
   * ioredis' `enableAutoPipelining` on the REDIS_URL connection: commands issued while one
   * pipeline is in flight go out together in the next (fewer writes for the gateway and fewer
   * reads for Redis under concurrency; at concurrency 1 ~0.1 ms dearer per request). Never on
   * REDIS_CLUSTER_NODES (docs/decisions.md, "Auto-pipelining on the standalone Redis").
   */
  REDIS_AUTO_PIPELINING: bool.default(true),
  CLICKHOUSE_URL: clickHouseUrl.optional(),
  CLICKHOUSE_USER: optionalString,
  CLICKHOUSE_PASSWORD: optionalString,
  CLICKHOUSE_DATABASE: z.string().regex(/^[A-Za-z0-9_]+$/, 'letters, digits and _ only').max(64, 'must be at most 64 characters').default('tollgate'),

  /** consumer groups an aggregator process runs; chDB allows only one warehouse process */
  AGGREGATOR_GROUPS: z.string().default('ledger,warehouse').transform((s, ctx) => {
    const groups = s.split(',').map((g) => g.trim()).filter(Boolean);
    const bad = groups.filter((g) => g !== 'ledger' && g !== 'warehouse');
    if (bad.length || groups.length === 0) {
      ctx.addIssue({ code: 'custom', message: `unknown group(s) ${bad.join(', ') || '(none)'}; expected ledger, warehouse` });
      return z.NEVER;
    }
    return [...new Set(groups)] as Array<'ledger' | 'warehouse'>;
  }),
  /** per-key limits (unset = unlimited); Anthropic-style 429 with retry-after when exceeded */
  RATE_LIMIT_RPM: int(1, 10_000_000).optional(),
  RATE_LIMIT_RP5H: int(1, 100_000_000).optional(),
  RATE_LIMIT_RPW: int(1, 1_000_000_000).optional(),
  RATE_LIMIT_TPM: int(1, 1_000_000_000).optional(),
  RATE_LIMIT_CONCURRENT: int(1, 100_000).optional(),
  /**
   * the plan (id: a seed `free` / `pro` / `max-5x` / `max-20x` or one created through the control
   * API) of a key whose key and account name none; unset: the RATE_LIMIT_* policy above, if any
   */
  DEFAULT_PLAN: z.string().trim().min(1).max(200).optional(),
  /** requests one key may have in flight in one gateway process (no Redis call); beyond it a fast 429 */
  KEY_MAX_CONCURRENT_REQUESTS: int(1, 100_000).default(64),
  /** requests one account (all its keys) may have in flight in one gateway process; default half the upstream pool */
  ACCOUNT_MAX_CONCURRENT_REQUESTS: int(1, 100_000).optional(),
  /** members of the ledger group in this process */
  LEDGER_CONSUMERS: int(1, 64).default(1),
  /** how long a gateway trusts a cached key lookup; bounds how late a revocation takes effect */
  KEY_CACHE_TTL_MS: int(0, 60_000).default(500),
  /** how old a gateway's snapshot of upstreams and groups may be (issue 10: changes in force within 1 s) */
  POOL_CACHE_TTL_MS: int(0, 1_000).default(500),
  /** upstream attempts per request, the first included (failover before the first byte) */
  UPSTREAM_MAX_ATTEMPTS: int(1, 10).default(3),
  /** no failover attempt starts later than this after the request arrived (ms) */
  UPSTREAM_FAILOVER_BUDGET_MS: int(0, 600_000).default(30_000),
  /** consecutive failed attempts that open an upstream's circuit in one gateway process */
  CIRCUIT_FAILURE_THRESHOLD: int(1, 1_000).default(5),
  /** how long an open circuit refuses before one half-open probe (ms) */
  CIRCUIT_OPEN_MS: int(100, 3_600_000).default(30_000),
  WAREHOUSE_BATCH_SIZE: int(1, 100_000).default(20_000),
  WAREHOUSE_FLUSH_MS: int(10, 60_000).default(500),
  /**
   * The nice value (0–19) of this process's background threads where the warehouse engine runs
   * in-process (chDB): its query, insert and merge threads and libuv's pool yield a core to the
   * request thread. 0 leaves every thread at the process's priority. Linux only.
   */
  BACKGROUND_THREAD_NICE: int(0, 19).default(10),
  SHUTDOWN_GRACE_MS: int(0, 600_000).default(15_000),
  /**
   * Whose `x-forwarded-for` to believe for the client address (Fastify's `trustProxy`): `false`;
   * a comma list of the reverse proxies' addresses/CIDRs (the client is the right-most address
   * not in the list: a client cannot forge its way past the proxy); or `true` (every hop: the
   * left-most address — only behind a proxy that replaces the header, never appends to it).
   * No hop counts: a count cannot tell a proxy from a client that connects directly.
   */
  TRUST_PROXY: z.string().trim().default('false').transform((v, ctx): TrustProxy => {
    if (v === 'false' || v === '0') return false;
    if (v === 'true' || v === '1') return true;
    const list = v.split(',').map((x) => x.trim()).filter(Boolean);
    if (list.length > 0 && list.every((x) => /^[0-9A-Fa-f:.]+(\/\d{1,3})?$/.test(x) && /[.:]/.test(x))) return list.join(',');
    ctx.addIssue({ code: 'custom', message: `expected false, true, or a comma list of the proxies' addresses/CIDRs such as 10.0.0.0/8, got "${v}"` });
    return z.NEVER;
  }),
  /**
   * `balance.low` webhooks: the threshold in decimal credits (≤ 6 places) for accounts without
   * their own `low_balance_credits`; unset = no alert for them
   */
  LOW_BALANCE_CREDITS: z.string().trim().regex(/^\d{1,10}(\.\d{1,6})?$/, 'expected decimal credits ≥ 0 with at most 6 places, such as 10 or 2.5').optional(),
  /** attempts per webhook delivery, the first included (retries on network errors, 408, 429, 5xx) */
  WEBHOOK_MAX_ATTEMPTS: int(1, 50).default(8),
  /** the first retry's delay (ms, before jitter); doubles per attempt, at most 1 h */
  WEBHOOK_RETRY_BASE_MS: int(1, 3_600_000).default(1_000),
  /** one delivery attempt's bound, from connecting to the response headers (ms) */
  WEBHOOK_TIMEOUT_MS: int(100, 120_000).default(10_000),
  // OpenTelemetry (the spec's SDK environment variables, read by @opentelemetry/sdk-node from the
  // process environment; checked here so a bad value stops the start instead of being ignored).
  /** `true` turns every OTel signal off whatever else is set */
  OTEL_SDK_DISABLED: otelBool.optional(),
  /** OTLP collector base URL (`/v1/traces`, `/v1/metrics` appended for HTTP); unset with no traces endpoint = tracing off */
  OTEL_EXPORTER_OTLP_ENDPOINT: url.optional(),
  /** OTLP traces URL, used as is */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: url.optional(),
  /** OTLP metrics URL, used as is */
  OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: url.optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol.optional(),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol.optional(),
  OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: otlpProtocol.optional(),
  /** `key=value,…` (values percent-encoded) sent with every export; never echoed (they are usually credentials) */
  OTEL_EXPORTER_OTLP_HEADERS: keyValueList('OTLP headers', false).optional(),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: keyValueList('OTLP headers', false).optional(),
  OTEL_EXPORTER_OTLP_METRICS_HEADERS: keyValueList('OTLP headers', false).optional(),
  /**
   * Comma-separated list (OTel spec) of `otlp` (default when an endpoint is set), `zipkin`,
   * `console`, `none` (sdk-node's exporters; `none` anywhere turns tracing off). A name sdk-node
   * has no exporter for (e.g. `jaeger`, removed from it) is refused.
   */
  OTEL_TRACES_EXPORTER: z.string().transform((v, ctx) => {
    const names = v.split(',').map((x) => x.trim().toLowerCase()).filter(Boolean);
    const expected = `expected a comma-separated list of ${TRACE_EXPORTERS.join(', ')}`;
    if (names.length === 0) ctx.addIssue({ code: 'custom', message: expected });
    for (const n of names) {
      if (!(TRACE_EXPORTERS as readonly string[]).includes(n)) ctx.addIssue({ code: 'custom', message: `${n} is not an exporter Tollgate has installed; ${expected}` });
    }
    return names as Array<(typeof TRACE_EXPORTERS)[number]>;
  }).optional(),
  /** `otlp`: the Prometheus instruments are also pushed over OTLP; `none` (default) */
  OTEL_METRICS_EXPORTER: z.enum(['otlp', 'none'], { error: 'expected otlp or none (Prometheus GET /metrics is always served)' }).optional(),
  /** ms between OTLP metric exports */
  OTEL_METRIC_EXPORT_INTERVAL: int(100, 86_400_000).optional(),
  /** ms one OTLP metric export may take */
  OTEL_METRIC_EXPORT_TIMEOUT: int(100, 3_600_000).optional(),
  /** batch span processor: ms between exports, export bound (ms), queue and batch sizes (spans) */
  OTEL_BSP_SCHEDULE_DELAY: int(1, 3_600_000).optional(),
  OTEL_BSP_EXPORT_TIMEOUT: int(1, 3_600_000).optional(),
  OTEL_BSP_MAX_QUEUE_SIZE: int(1, 10_000_000).optional(),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: int(1, 10_000_000).optional(),
  OTEL_TRACES_SAMPLER: z.enum(SAMPLERS, { error: `expected one of ${SAMPLERS.join(', ')}` }).optional(),
  /** the ratio of the `traceidratio` samplers, 0 to 1; ignored with any other sampler (OTel spec) */
  OTEL_TRACES_SAMPLER_ARG: z.string().trim().optional(),
  /** `key=value,…` resource attributes of every span and metric */
  OTEL_RESOURCE_ATTRIBUTES: keyValueList('resource attributes', true).optional(),
  OTEL_SERVICE_NAME: z.string().trim().min(1).optional(),
  /** ms between consumer-lag measurements of each Kafka consumer (tollgate_consumer_lag) */
  CONSUMER_LAG_INTERVAL_MS: int(100, 3_600_000).default(15_000),
});

export type Env = z.infer<typeof EnvSchema>;

/** Every environment variable `loadConfig` reads (the README's Configuration table lists each). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(EnvSchema.shape);

export interface Config {
  roles: Role[];
  host: string;
  port: number;
  dataDir: string;
  /** `WRITE_AHEAD_RESERVE_MB` in bytes (0: not watched) */
  writeAheadReserveBytes: number;
  logLevel: Env['LOG_LEVEL'];
  gatewayId: string | undefined;
  pricingFile: string | undefined;
  upstream: { url: string; apiKey: string | undefined; timeoutMs: number; maxConnections: number };
  holdTtlMs: number;
  /** `ADMISSION_POLICY` and `ADMISSION_FLOOR_TOKENS` (see the env schema) */
  admission: { policy: Env['ADMISSION_POLICY']; floorTokens: number };
  /** `DEFAULT_MAX_TOKENS`: max_tokens for a request that omits it (tokens) */
  defaultMaxTokens: number;
  streamErrorBilling: Env['STREAM_ERROR_BILLING'];
  bodyLimitBytes: number;
  http: { requestTimeoutMs: number; maxConnections: number | undefined; maxConnectionsPerIp: number | undefined; corsOrigins: string[] | '*' | undefined };
  secrets: { adminToken: string | undefined; financeToken: string | undefined; keyHashSecret: string | undefined };
  /**
   * `compression`: KAFKA_COMPRESSION, the codec of produced record batches (events' KafkaCompression);
   * `lingerMs`: KAFKA_LINGER_MS, how long a small batch of usage events waits before it is produced, ms
   */
  kafka: { brokers: string[]; clientId: string; topicPrefix: string; partitions: number; compression: Env['KAFKA_COMPRESSION']; lingerMs: number } | undefined;
  /** `clusterNodes`: REDIS_CLUSTER_NODES, the ledger's Redis Cluster (absent: the ledger uses `url`) */
  redis: { url: string; prefix: string; autoPipelining: boolean; clusterNodes?: Array<{ host: string; port: number }> } | undefined;
  /**
   * CLICKHOUSE_URL's server: `url` its origin (`http(s)://host:port`), `username` / `password`
   * the URL's (percent-decoded) or else CLICKHOUSE_USER / CLICKHOUSE_PASSWORD (undefined: the
   * client's `default` user, no password); `database` CLICKHOUSE_DATABASE
   */
  clickhouse: { url: string; username: string | undefined; password: string | undefined; database: string } | undefined;
  database: string;
  /** `backgroundNice`: BACKGROUND_THREAD_NICE, 0–19 (0: off) */
  warehouse: { batchSize: number; flushMs: number; backgroundNice: number };
  aggregator: { groups: Array<'ledger' | 'warehouse'>; ledgerConsumers: number };
  keyCacheTtlMs: number;
  /** ms, ≤ 1,000 */
  poolCacheTtlMs: number;
  /** failover and circuit breakers (`UPSTREAM_MAX_ATTEMPTS`, `UPSTREAM_FAILOVER_BUDGET_MS` ms, `CIRCUIT_FAILURE_THRESHOLD`, `CIRCUIT_OPEN_MS` ms) */
  selection: { maxAttempts: number; failoverBudgetMs: number; circuitFailureThreshold: number; circuitOpenMs: number };
  keyMaxConcurrentRequests: number;
  /** undefined: half the upstream pool */
  accountMaxConcurrentRequests: number | undefined;
  rateLimits: {
    requestsPerMinute?: number; requestsPer5h?: number; requestsPerWeek?: number;
    tokensPerMinute?: number; concurrentRequests?: number;
  };
  /** `DEFAULT_PLAN`: plan id of keys without one (undefined: `rateLimits` applies) */
  defaultPlan: string | undefined;
  shutdownGraceMs: number;
  /** Fastify's `trustProxy`: false, true (every hop), or a comma list of proxy addresses/CIDRs */
  trustProxy: TrustProxy;
  /**
   * OpenTelemetry, from the standard `OTEL_*` variables (README, Observability). The SDK itself
   * (@opentelemetry/sdk-node) reads them from the process environment; these are the decisions
   * Tollgate takes from them. `traces`: the SDK is started with an exporter (an endpoint is set,
   * or `OTEL_TRACES_EXPORTER=console`; not `none`, not `OTEL_SDK_DISABLED`). `metrics`: the
   * Prometheus instruments are also pushed over OTLP every `metricIntervalMs` (bounded by
   * `metricTimeoutMs`).
   */
  telemetry: {
    otlpEndpoint: string | undefined; serviceName: string; sdkDisabled: boolean;
    traces: boolean; metrics: boolean; metricIntervalMs: number; metricTimeoutMs: number;
    resourceAttributes: Record<string, string>;
    /** ms between consumer-lag measurements (`CONSUMER_LAG_INTERVAL_MS`) */
    consumerLagIntervalMs: number;
  };
  /** alerts by webhook: `LOW_BALANCE_CREDITS` in µc (undefined: off), delivery attempts, first retry delay and timeout (ms) */
  webhooks: { lowBalanceMicros: bigint | undefined; maxAttempts: number; retryBaseMs: number; timeoutMs: number };
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** `12.5` (decimal credits, already checked by the schema) as micro-credits: 12500000n. */
function creditsToMicros(text: string): bigint {
  const [whole, frac = ''] = text.split('.');
  return BigInt(whole!) * 1_000_000n + BigInt(frac.padEnd(6, '0'));
}

/** `--roles a,b` on the command line wins over TOLLGATE_ROLES. */
export function rolesFromArgv(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--roles') return argv[i + 1] ?? '';
    if (a.startsWith('--roles=')) return a.slice('--roles='.length);
  }
  return undefined;
}

/** Parses the environment once; throws ConfigError listing every problem by variable name. */
export function loadConfig(env: Record<string, string | undefined>, argv: readonly string[] = []): Config {
  const input: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '' && k in EnvSchema.shape) input[k] = v;
  const roles = rolesFromArgv(argv);
  if (roles !== undefined) input.TOLLGATE_ROLES = roles;
  // A problem with the roles names where they were given: the command line wins over the variable.
  const rolesName = roles !== undefined ? '--roles' : 'TOLLGATE_ROLES';

  const parsed = EnvSchema.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => {
      const name = i.path.join('.');
      return `${name === 'TOLLGATE_ROLES' ? rolesName : name || '(env)'}: ${i.message}`;
    }));
  }
  const e = parsed.data;
  const problems: string[] = [];
  const distributed = Boolean(e.KAFKA_BROKERS || e.REDIS_URL);
  if (distributed && !e.KEY_HASH_SECRET) {
    problems.push('KEY_HASH_SECRET: required when KAFKA_BROKERS or REDIS_URL is set (every process must hash keys alike)');
  }
  if (Boolean(e.KAFKA_BROKERS) !== Boolean(e.REDIS_URL)) {
    problems.push(`${e.KAFKA_BROKERS ? 'REDIS_URL' : 'KAFKA_BROKERS'}: distributed mode needs both KAFKA_BROKERS and REDIS_URL`);
  }
  if (e.REDIS_CLUSTER_NODES && !e.REDIS_URL) {
    problems.push('REDIS_CLUSTER_NODES: needs REDIS_URL too (the key directory and limiters stay on a standalone Redis)');
  }
  if (!distributed && e.TOLLGATE_ROLES.length < ROLES.length) {
    problems.push(`${rolesName}: roles can run in separate processes only with KAFKA_BROKERS and REDIS_URL; the embedded mode runs all three`);
  }
  if (distributed && (e.TOLLGATE_ROLES.includes('control') || e.TOLLGATE_ROLES.includes('aggregator')) && !e.ADMIN_TOKEN) {
    problems.push('ADMIN_TOKEN: required for the control and aggregator roles when KAFKA_BROKERS or REDIS_URL is set');
  }
  // ClickHouse credentials come from one place: the client lets the URL's win over the
  // variables, silently, and a refusal would then name the wrong user.
  const chUrl = e.CLICKHOUSE_URL === undefined ? undefined : new URL(e.CLICKHOUSE_URL);
  const chCredentials = chUrl && urlCredentials(chUrl);
  const chUrlCredentials = chCredentials !== undefined && (chCredentials.username !== '' || chCredentials.password !== '') ? chCredentials : undefined;
  if (chUrlCredentials && (e.CLICKHOUSE_USER !== undefined || e.CLICKHOUSE_PASSWORD !== undefined)) {
    problems.push('CLICKHOUSE_URL: carries a user or password, and so does CLICKHOUSE_USER or CLICKHOUSE_PASSWORD; give them in one place');
  }
  if (e.OTEL_BSP_MAX_EXPORT_BATCH_SIZE !== undefined && e.OTEL_BSP_MAX_EXPORT_BATCH_SIZE > (e.OTEL_BSP_MAX_QUEUE_SIZE ?? 2048)) {
    problems.push(`OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must be at most OTEL_BSP_MAX_QUEUE_SIZE (${e.OTEL_BSP_MAX_QUEUE_SIZE ?? '2048, the default'})`);
  }
  // The spec: a sampler that takes no argument ignores OTEL_TRACES_SAMPLER_ARG; a ratio must be one.
  if (e.OTEL_TRACES_SAMPLER_ARG !== undefined && e.OTEL_TRACES_SAMPLER?.endsWith('traceidratio')
    && !/^(0(\.\d+)?|1(\.0+)?|\.\d+)$/.test(e.OTEL_TRACES_SAMPLER_ARG)) {
    problems.push('OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1, such as 0.25');
  }
  if (e.OTEL_METRICS_EXPORTER === 'otlp' && !e.OTEL_EXPORTER_OTLP_ENDPOINT && !e.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) {
    problems.push('OTEL_METRICS_EXPORTER: otlp needs OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT');
  }
  if (problems.length) throw new ConfigError(problems);
  const sdkDisabled = e.OTEL_SDK_DISABLED ?? false;
  const tracesExporters = e.OTEL_TRACES_EXPORTER ?? [e.OTEL_EXPORTER_OTLP_ENDPOINT || e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? 'otlp' : 'none'];

  return {
    roles: e.TOLLGATE_ROLES,
    host: e.HOST,
    port: e.PORT,
    dataDir: e.DATA_DIR,
    writeAheadReserveBytes: e.WRITE_AHEAD_RESERVE_MB * 1_048_576,
    logLevel: e.LOG_LEVEL,
    gatewayId: e.GATEWAY_ID,
    pricingFile: e.PRICING_FILE,
    upstream: { url: e.UPSTREAM_URL.replace(/\/+$/, ''), apiKey: e.UPSTREAM_API_KEY, timeoutMs: e.UPSTREAM_TIMEOUT_MS, maxConnections: e.UPSTREAM_MAX_CONNECTIONS },
    holdTtlMs: e.HOLD_TTL_MS,
    admission: { policy: e.ADMISSION_POLICY, floorTokens: e.ADMISSION_FLOOR_TOKENS },
    defaultMaxTokens: e.DEFAULT_MAX_TOKENS,
    streamErrorBilling: e.STREAM_ERROR_BILLING,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    http: { requestTimeoutMs: e.REQUEST_TIMEOUT_MS, maxConnections: e.MAX_CONNECTIONS, maxConnectionsPerIp: e.MAX_CONNECTIONS_PER_IP, corsOrigins: e.CORS_ORIGINS },
    secrets: { adminToken: e.ADMIN_TOKEN, financeToken: e.FINANCE_TOKEN, keyHashSecret: e.KEY_HASH_SECRET },
    kafka: e.KAFKA_BROKERS
      ? { brokers: e.KAFKA_BROKERS.split(',').map((b) => b.trim()).filter(Boolean), clientId: e.KAFKA_CLIENT_ID, topicPrefix: e.KAFKA_TOPIC_PREFIX, partitions: e.KAFKA_PARTITIONS, compression: e.KAFKA_COMPRESSION, lingerMs: e.KAFKA_LINGER_MS }
      : undefined,
    redis: e.REDIS_URL
      ? { url: e.REDIS_URL, prefix: e.REDIS_PREFIX, autoPipelining: e.REDIS_AUTO_PIPELINING, ...(e.REDIS_CLUSTER_NODES ? { clusterNodes: e.REDIS_CLUSTER_NODES } : {}) }
      : undefined,
    clickhouse: chUrl
      ? {
        url: chUrl.origin,
        ...(chUrlCredentials
          ? { username: chUrlCredentials.username || undefined, password: chUrlCredentials.password }
          : { username: e.CLICKHOUSE_USER, password: e.CLICKHOUSE_PASSWORD }),
        database: e.CLICKHOUSE_DATABASE,
      }
      : undefined,
    database: e.CLICKHOUSE_DATABASE,
    warehouse: { batchSize: e.WAREHOUSE_BATCH_SIZE, flushMs: e.WAREHOUSE_FLUSH_MS, backgroundNice: e.BACKGROUND_THREAD_NICE },
    aggregator: { groups: e.AGGREGATOR_GROUPS, ledgerConsumers: e.LEDGER_CONSUMERS },
    keyCacheTtlMs: e.KEY_CACHE_TTL_MS,
    poolCacheTtlMs: e.POOL_CACHE_TTL_MS,
    selection: {
      maxAttempts: e.UPSTREAM_MAX_ATTEMPTS, failoverBudgetMs: e.UPSTREAM_FAILOVER_BUDGET_MS,
      circuitFailureThreshold: e.CIRCUIT_FAILURE_THRESHOLD, circuitOpenMs: e.CIRCUIT_OPEN_MS,
    },
    keyMaxConcurrentRequests: e.KEY_MAX_CONCURRENT_REQUESTS,
    accountMaxConcurrentRequests: e.ACCOUNT_MAX_CONCURRENT_REQUESTS,
    rateLimits: Object.fromEntries(Object.entries({
      requestsPerMinute: e.RATE_LIMIT_RPM, requestsPer5h: e.RATE_LIMIT_RP5H, requestsPerWeek: e.RATE_LIMIT_RPW,
      tokensPerMinute: e.RATE_LIMIT_TPM, concurrentRequests: e.RATE_LIMIT_CONCURRENT,
    }).filter(([, v]) => v !== undefined)),
    defaultPlan: e.DEFAULT_PLAN,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    trustProxy: e.TRUST_PROXY,
    telemetry: {
      otlpEndpoint: e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? e.OTEL_EXPORTER_OTLP_ENDPOINT,
      // The spec: OTEL_SERVICE_NAME wins over a service.name in OTEL_RESOURCE_ATTRIBUTES.
      serviceName: e.OTEL_SERVICE_NAME ?? e.OTEL_RESOURCE_ATTRIBUTES?.['service.name'] ?? 'tollgate',
      sdkDisabled,
      traces: !sdkDisabled && !tracesExporters.includes('none'),
      metrics: !sdkDisabled && e.OTEL_METRICS_EXPORTER === 'otlp',
      metricIntervalMs: e.OTEL_METRIC_EXPORT_INTERVAL ?? 60_000,
      metricTimeoutMs: e.OTEL_METRIC_EXPORT_TIMEOUT ?? 30_000,
      resourceAttributes: e.OTEL_RESOURCE_ATTRIBUTES ?? {},
      consumerLagIntervalMs: e.CONSUMER_LAG_INTERVAL_MS,
    },
    webhooks: {
      lowBalanceMicros: e.LOW_BALANCE_CREDITS === undefined ? undefined : creditsToMicros(e.LOW_BALANCE_CREDITS),
      maxAttempts: e.WEBHOOK_MAX_ATTEMPTS, retryBaseMs: e.WEBHOOK_RETRY_BASE_MS, timeoutMs: e.WEBHOOK_TIMEOUT_MS,
    },
  };
}
