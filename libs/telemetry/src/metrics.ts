import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DIMENSIONS, dimensionSpec } from '@tollgate/pricing';
import type { Dimension } from '@tollgate/pricing';

/** Token counts by class, as the gateway meters them. */
export interface TokenCounts {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite5m: number;
  cacheWrite1h: number;
}

const TOKEN_CLASSES = [
  ['input', 'input'], ['output', 'output'], ['cacheRead', 'cache_read'],
  ['cacheWrite5m', 'cache_write_5m'], ['cacheWrite1h', 'cache_write_1h'],
] as const;

// LLM requests run from milliseconds (errors, cached answers) to many minutes (long streams).
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const INSERT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000];

/** Distinct unknown usage-field labels `tollgate_unpriced_usage_total` keeps before it says `other`. */
export const MAX_UNPRICED_LABELS = 32;
const FIELD_LABEL_RE = /^[a-z][a-z0-9_.]{0,63}$/;

interface Inc { inc(value?: number): void }
interface Observe { observe(value: number): void }

/**
 * Caches one child per label combination, so the hot path does a string join and a map lookup
 * instead of prom-client's label validation and hashing on every call.
 */
class Children<T> {
  #map = new Map<string, T>();
  #make: (values: string[]) => T;
  constructor(make: (values: string[]) => T) { this.#make = make; }
  get(...values: string[]): T {
    const key = values.join('\u0000');
    let child = this.#map.get(key);
    if (!child) {
      child = this.#make(values);
      this.#map.set(key, child);
    }
    return child;
  }
}

/**
 * Every Prometheus metric of a Tollgate process, in one registry per process (per
 * `createMetrics` call, so several Tollgates in one test process do not share counters).
 *
 * Labels never carry account or key ids: /metrics is commonly scraped without auth, and ids
 * per customer would also make cardinality unbounded. Model labels are catalog ids (a bounded
 * set), never the string a client sent.
 */
export class Metrics {
  readonly registry: Registry;
  readonly #requests: Children<Inc>;
  readonly #duration: Children<Observe>;
  readonly #ttfb: Children<Observe>;
  readonly #tokens: Children<Inc>;
  readonly #cost: Children<Inc>;
  readonly #holdsRefused: Children<Inc>;
  readonly #upstreamErrors: Children<Inc>;
  readonly #applied: Children<Inc>;
  readonly #usageAnomalies: Children<Inc>;
  readonly #usageUnrecorded: Inc;
  readonly #quarantined: Children<Inc>;
  readonly #webhookDropped: Children<Inc>;
  readonly #units: Children<Inc>;
  readonly #unpriced: Children<Inc>;
  readonly #fieldLabels: Set<string> = new Set();
  readonly #consumerLag: Children<{ set(value: number): void }>;
  readonly #consumerLagGauge: Gauge;
  readonly #insertSeconds: Histogram;
  readonly #batchEvents: Histogram;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    const registers = [this.registry];
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });

    const requests = new Counter({
      name: 'tollgate_requests_total', help: 'HTTP requests answered, by route template, status, catalog model and stream flag',
      labelNames: ['route', 'status', 'model', 'stream'], registers,
    });
    const duration = new Histogram({
      name: 'tollgate_request_duration_seconds', help: 'Time from request to the last response byte (or client disconnect)',
      labelNames: ['route', 'model', 'stream'], buckets: LATENCY_BUCKETS, registers,
    });
    const ttfb = new Histogram({
      name: 'tollgate_time_to_first_byte_seconds', help: 'Time from request to the first upstream body byte (whole body for JSON)',
      labelNames: ['model', 'stream'], buckets: LATENCY_BUCKETS, registers,
    });
    const tokens = new Counter({
      name: 'tollgate_tokens_total', help: 'Tokens the upstream reported, by catalog model and token class',
      labelNames: ['model', 'class'], registers,
    });
    const cost = new Counter({
      name: 'tollgate_cost_micro_credits_total', help: 'Micro-credits charged, by catalog model (exact below 2^53)',
      labelNames: ['model'], registers,
    });
    const holdsRefused = new Counter({
      name: 'tollgate_holds_refused_total', help: 'Credit holds refused before forwarding, by reason',
      labelNames: ['reason'], registers,
    });
    const upstreamErrors = new Counter({
      name: 'tollgate_upstream_errors_total', help: 'Upstream failures, by upstream HTTP status or unreachable / stream_error / stream_dropped',
      labelNames: ['status'], registers,
    });
    const applied = new Counter({
      name: 'tollgate_events_applied_total', help: 'Events a consumer group handled (batch committed), by group and topic',
      labelNames: ['group', 'topic'], registers,
    });
    this.#insertSeconds = new Histogram({
      name: 'tollgate_warehouse_insert_seconds', help: 'Time to insert one batch into the warehouse (successful batches)',
      buckets: INSERT_BUCKETS, registers,
    });
    this.#batchEvents = new Histogram({
      name: 'tollgate_warehouse_batch_events', help: 'Events per warehouse batch (successful batches)',
      buckets: BATCH_BUCKETS, registers,
    });

    this.#requests = new Children((v) => requests.labels(...v));
    this.#duration = new Children((v) => duration.labels(...v));
    this.#ttfb = new Children((v) => ttfb.labels(...v));
    this.#tokens = new Children((v) => tokens.labels(...v));
    this.#cost = new Children((v) => cost.labels(...v));
    this.#holdsRefused = new Children((v) => holdsRefused.labels(...v));
    this.#upstreamErrors = new Children((v) => upstreamErrors.labels(...v));
    this.#applied = new Children((v) => applied.labels(...v));
    const usageAnomalies = new Counter({
      name: 'tollgate_usage_anomalies_total', help: 'Metered requests whose upstream usage broke a protocol rule, by anomaly kind (README, billing rules)',
      labelNames: ['kind'], registers,
    });
    this.#usageAnomalies = new Children((v) => usageAnomalies.labels(...v));
    this.#usageUnrecorded = new Counter({
      name: 'tollgate_usage_unrecorded_total',
      help: 'Answers withheld (503 usage_unrecorded) because their usage event could not be written ahead (DATA_DIR taken over, spool unwritable)',
      registers,
    });
    const quarantined = new Counter({
      name: 'tollgate_events_quarantined_total', help: 'Poison events a consumer group quarantined instead of stopping, by group and reason',
      labelNames: ['group', 'reason'], registers,
    });
    this.#quarantined = new Children((v) => quarantined.labels(...v));
    const webhookDropped = new Counter({
      name: 'tollgate_webhook_occurrences_dropped_total', help: 'Alert occurrences not delivered because the webhook queue was full, by event type',
      labelNames: ['type'], registers,
    });
    this.#webhookDropped = new Children((v) => webhookDropped.labels(...v));
    const units = new Counter({
      name: 'tollgate_usage_units_total',
      help: 'Billable units the upstream reported, by catalog model and dimension (tokens, requests or seconds; the DIMENSIONS list)',
      labelNames: ['model', 'dimension'], registers,
    });
    this.#units = new Children((v) => units.labels(...v));
    const unpriced = new Counter({
      name: 'tollgate_unpriced_usage_total',
      help: 'Requests that reported usage the catalog does not price (charged nothing for it), by dimension, speed:fast, model (a serving model not in the catalog) or the unknown usage field',
      labelNames: ['dimension'], registers,
    });
    this.#unpriced = new Children((v) => unpriced.labels(...v));
    const consumerLag = new Gauge({
      name: 'tollgate_consumer_lag',
      help: 'Records of a partition its consumer group has not yet committed (high watermark - committed offset); 0 for the in-process log',
      labelNames: ['group', 'topic', 'partition'], registers,
    });
    this.#consumerLag = new Children((v) => consumerLag.labels(...v));
    this.#consumerLagGauge = consumerLag;
    for (const d of DIMENSIONS) this.#unpriced.get(d.label).inc(0);
    // The reasons are known up front; series at zero make rate() and alerts work from the start.
    for (const reason of ['insufficient_credits', 'state_unavailable']) this.#holdsRefused.get(reason).inc(0);
  }

  /** One answered HTTP request; `model` is '' where none applies (not a model route, or unknown). */
  request(route: string, status: number, model: string, stream: boolean, seconds: number): void {
    const s = stream ? 'true' : 'false';
    this.#requests.get(route, String(status), model, s).inc();
    this.#duration.get(route, model, s).observe(seconds);
  }

  firstByte(model: string, stream: boolean, seconds: number): void {
    this.#ttfb.get(model, stream ? 'true' : 'false').observe(seconds);
  }

  /** What the upstream reported and what was charged for one request. */
  usage(model: string, tokens: TokenCounts | null, costMicros: bigint): void {
    if (tokens) {
      for (const [field, label] of TOKEN_CLASSES) {
        const n = tokens[field];
        if (n > 0) this.#tokens.get(model, label).inc(n);
      }
    }
    if (costMicros > 0n) this.#cost.get(model).inc(Number(costMicros));
  }

  /**
   * What one request used per billable dimension (`quantities` of the usage event, totals over
   * its iterations), into `tollgate_usage_units_total{model, dimension}`; `model` is a catalog id.
   */
  usageUnits(model: string, quantities: Readonly<Partial<Record<Dimension, number>>>): void {
    for (const d of DIMENSIONS) {
      const n = quantities[d.key] ?? 0;
      if (n > 0) this.#units.get(model, d.label).inc(n);
    }
  }

  /**
   * One request's `unpriced` names (@tollgate/pricing `PricedRequest.unpriced`), one increment
   * each of `tollgate_unpriced_usage_total{dimension}`. Labels stay bounded: a dimension's label,
   * `speed:fast`, `model` for any `model:<name>`, an unknown usage field's own name for the first
   * MAX_UNPRICED_LABELS such names (lowercase field syntax), else `other`.
   */
  unpricedUsage(names: readonly string[]): void {
    for (const name of names) this.#unpriced.get(this.#unpricedLabel(name)).inc();
  }

  #unpricedLabel(name: string): string {
    const spec = dimensionSpec(name);
    if (spec !== undefined) return spec.label;
    if (name === 'speed:fast') return name;
    if (name.startsWith('model:')) return 'model';
    if (!FIELD_LABEL_RE.test(name)) return 'other';
    if (this.#fieldLabels.has(name)) return name;
    if (this.#fieldLabels.size >= MAX_UNPRICED_LABELS) return 'other';
    this.#fieldLabels.add(name);
    return name;
  }

  holdRefused(reason: 'insufficient_credits' | 'state_unavailable'): void {
    this.#holdsRefused.get(reason).inc();
  }

  /** `status`: the upstream's HTTP status, or `unreachable`, `stream_error`, `stream_dropped`. */
  upstreamError(status: number | 'unreachable' | 'stream_error' | 'stream_dropped'): void {
    this.#upstreamErrors.get(String(status)).inc();
  }

  /**
   * One request's usage carried anomaly `kind` (a `UsageAnomaly` of @tollgate/anthropic, never
   * free text). `count` 0 creates the series at zero so alerts on it work from the start.
   */
  usageAnomaly(kind: string, count = 1): void {
    this.#usageAnomalies.get(kind).inc(count);
  }

  /** One answer withheld because its usage event could not be written ahead (503 `usage_unrecorded`). */
  usageUnrecorded(): void {
    this.#usageUnrecorded.inc();
  }

  eventsApplied(group: string, topic: string, count: number): void {
    this.#applied.get(group, topic).inc(count);
  }

  /**
   * A consumer group's lag on one partition, in records (high watermark − committed offset;
   * KafkaLog.reportLag measures it), into `tollgate_consumer_lag{group, topic, partition}`.
   * Only the process a partition is assigned to exports it; `null` removes the series (the
   * partition went to another member), so `sum by (group)` is the group's lag.
   */
  consumerLag(group: string, topic: string, partition: number, lag: number | null): void {
    // null: this process no longer consumes the partition (rebalanced away); its new owner exports it.
    if (lag === null) this.#consumerLagGauge.remove(group, topic, String(partition));
    else this.#consumerLag.get(group, topic, String(partition)).set(lag);
  }

  /** A poison event a consumer group set aside (`reason` is a QuarantineKind, never free text). */
  eventsQuarantined(group: string, reason: string): void {
    this.#quarantined.get(group, reason).inc();
  }

  /** An alert occurrence dropped because the webhook dispatcher's queue was full (`type`: its event type). */
  webhookDropped(type: string): void {
    this.#webhookDropped.get(type).inc();
  }

  warehouseInsert(seconds: number, events: number): void {
    this.#insertSeconds.observe(seconds);
    this.#batchEvents.observe(events);
  }

  /**
   * The write ahead's gauges, read at each scrape from `read()`:
   * `tollgate_write_ahead_state` (0 writing; 1 its disk below the reserve: paid requests refused,
   * operator writes and requests in flight still record; it stays 1 until the free space is a
   * margin above the reserve, 1/16 of it, so it may read 1 with free bytes just above the
   * reserve; 2 it cannot write: the disk as good as full or the last append failed), `tollgate_write_ahead_free_bytes` (free bytes on the disk
   * of DATA_DIR, statfs `bavail` × `bsize`; absent when it cannot be read) and
   * `tollgate_write_ahead_reserve_bytes` (WRITE_AHEAD_RESERVE_MB in bytes; 0: not watched).
   * Call once per process.
   */
  watchWriteAhead(read: () => { state: 0 | 1 | 2; freeBytes: number | undefined; reserveBytes: number }): void {
    const registers = [this.registry];
    // One read per scrape for the three (a scrape collects them one after another): the state
    // and the free bytes of one moment.
    let last: { at: number; value: ReturnType<typeof read> } | undefined;
    const once = () => {
      const now = performance.now();
      if (!last || now - last.at > 100) last = { at: now, value: read() };
      return last.value;
    };
    new Gauge({
      name: 'tollgate_write_ahead_state',
      help: 'The write ahead (spool or journal in DATA_DIR): 0 writing, 1 its disk below WRITE_AHEAD_RESERVE_MB (paid requests refused), 2 cannot write (disk full or appends failing)',
      registers, collect() { this.set(once().state); },
    });
    new Gauge({
      name: 'tollgate_write_ahead_free_bytes', help: 'Free bytes on the disk of DATA_DIR (statfs bavail x bsize)',
      registers, collect() {
        const free = once().freeBytes;
        if (free === undefined) this.reset();
        else this.set(free);
      },
    });
    new Gauge({
      name: 'tollgate_write_ahead_reserve_bytes', help: 'WRITE_AHEAD_RESERVE_MB in bytes: below it on the disk of DATA_DIR, paid requests are refused (0: not watched)',
      registers, collect() { this.set(once().reserveBytes); },
    });
  }

  /** The exposition text for GET /metrics. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  return new Metrics(options);
}
