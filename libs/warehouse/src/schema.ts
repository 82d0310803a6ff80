// The one schema both transports share. Table names come only from the database name and a
// validated prefix, never from request data.
//
// Dedup rule (see README): usage and ledger rows are immutable facts keyed by `event_id`; a
// redelivered event carries the same bytes, so duplicates agree on the whole sorting key and
// ReplacingMergeTree collapses them. Accounts and keys are versioned records:
// ReplacingMergeTree(version) keeps the highest version of each id.

import { DIMENSIONS } from '@tollgate/pricing';

const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PREFIX_RE = /^[a-z0-9_]*$/;

export interface TableNames {
  database: string;
  usage: string;
  ledger: string;
  accounts: string;
  keys: string;
  quarantine: string;
  priceVersions: string;
  plans: string;
  /** billing (migration 8): month closes, their booked items and frozen documents */
  billingCloses: string;
  billingBooked: string;
  billingDocuments: string;
  rollupMinute: string;
  rollupHour: string;
  rollupDay: string;
  /** migration 12: every stored usage event id by time, for the rollup_skip existence check, and its backfill marker */
  usageIds: string;
  usageIdsBackfilled: string;
  /** migration 13: set once the events stored before the rollup views existed are in the rollups */
  rollupsBackfilled: string;
  /** webhooks (migration 9) */
  webhooks: string;
  /** upstream pools (migration 10): upstream accounts and the groups pooling them */
  upstreams: string;
  upstreamGroups: string;
}

export function tableNames(database: string, tablePrefix: string): TableNames {
  if (!IDENT_RE.test(database)) {
    throw new TypeError(`warehouse database ${JSON.stringify(database)} must match ${IDENT_RE}`);
  }
  if (!PREFIX_RE.test(tablePrefix)) {
    throw new TypeError(`warehouse tablePrefix ${JSON.stringify(tablePrefix)} must match ${PREFIX_RE}`);
  }
  const q = (table: string): string => `\`${database}\`.\`${tablePrefix}${table}\``;
  return {
    database: `\`${database}\``,
    usage: q('usage_events'),
    ledger: q('ledger_entries'),
    accounts: q('accounts'),
    keys: q('api_keys'),
    quarantine: q('quarantine'),
    priceVersions: q('price_versions'),
    plans: q('plans'),
    webhooks: q('webhooks'),
    upstreams: q('upstreams'), upstreamGroups: q('upstream_groups'),
    billingCloses: q('billing_closes'), billingBooked: q('billing_booked'), billingDocuments: q('billing_documents'),
    rollupMinute: q('usage_rollup_minute'), rollupHour: q('usage_rollup_hour'), rollupDay: q('usage_rollup_day'),
    usageIds: q('usage_event_ids'), usageIdsBackfilled: q('usage_event_ids_backfilled'), rollupsBackfilled: q('usage_rollups_backfilled'),
  };
}

/**
 * The usage column of each billable dimension, from DIMENSIONS (@tollgate/pricing): the five
 * token columns of version 1 keep their names. Every one is UInt32 (the decoder's bound).
 * Throws at load when a dimension names a column that is not a plain identifier, since column
 * names go into SQL text.
 */
export const DIMENSION_COLUMNS: ReadonlyArray<{ key: (typeof DIMENSIONS)[number]['key']; column: string }> = Object.freeze(
  DIMENSIONS.map((d) => {
    if (!IDENT_RE.test(d.column)) throw new TypeError(`dimension ${d.key}: column ${JSON.stringify(d.column)} must match ${IDENT_RE}`);
    return Object.freeze({ key: d.key, column: d.column });
  }),
);

/** The number of the newest migration (see `migrations`). */
/**
 * SETTINGS of every INSERT into a table partitioned by month (usage_events, usage_event_ids, the
 * rollups): no cap on the partitions one insert block may write. ClickHouse's default (100)
 * refused a block whose events span more months (TOO_MANY_PARTS, 252), a failure of the batch
 * as a whole, not of any of its rows, which the warehouse group retried for ever: 101 events a
 * month apart stalled their partition (a breaker's HIGH). A usage event's `ts` is bounded by the
 * decoder, and every such block is one of the warehouse's own batches or repairs.
 */
export const MONTHS_SETTING = 'max_partitions_per_insert_block = 0';

export const LATEST_MIGRATION = 14;

/**
 * Every statement that brings a database to migration `upTo` (default the latest), oldest
 * first. Each is idempotent (`IF NOT EXISTS`), so running all of them at every start is how a
 * database of any earlier migration is upgraded; a row written before a column existed reads
 * as that column's DEFAULT.
 */
export function migrations(t: TableNames, upTo: number = LATEST_MIGRATION): string[] {
  const out: string[] = [];
  for (const [n, statements] of numberedMigrations(t)) if (n <= upTo) out.push(...statements);
  return out;
}

function numberedMigrations(t: TableNames): Array<[number, string[]]> {
  return [[1, [
    `CREATE DATABASE IF NOT EXISTS ${t.database}`,

    // One row per metered request. PARTITION BY month keeps FINAL cheap (it merges within a
    // partition) and is safe because a duplicate has the same ts, hence the same partition.
    `CREATE TABLE IF NOT EXISTS ${t.usage} (
      event_id              String,
      ts                    DateTime64(3, 'UTC'),
      account_id            String,
      key_id                String,
      model                 LowCardinality(String),
      catalog_model         LowCardinality(String),
      upstream_model        LowCardinality(String),
      input_tokens          UInt32,
      output_tokens         UInt32,
      cache_read_tokens     UInt32,
      cache_write_5m_tokens UInt32,
      cache_write_1h_tokens UInt32,
      cost_micros           Int64,
      status                LowCardinality(String),
      http_status           UInt16,
      latency_ms            UInt32,
      ttft_ms               Nullable(UInt32),
      stream                Bool,
      upstream_request_id   Nullable(String),
      gateway_id            LowCardinality(String),
      log_partition         Int32 DEFAULT -1,
      log_offset            Int64 DEFAULT -1,
      inserted_at           DateTime64(3, 'UTC') DEFAULT now64(3),
      INDEX event_id_bf event_id TYPE bloom_filter GRANULARITY 4
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(ts)
    ORDER BY (account_id, ts, event_id)`,

    // Grants, refunds, adjustments. event_id is `credit:<account>:<reference>`.
    `CREATE TABLE IF NOT EXISTS ${t.ledger} (
      event_id      String,
      ts            DateTime64(3, 'UTC'),
      account_id    String,
      kind          LowCardinality(String),
      amount_micros Int64,
      reference     String,
      log_partition Int32 DEFAULT -1,
      log_offset    Int64 DEFAULT -1,
      inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree
    ORDER BY (account_id, event_id)`,

    `CREATE TABLE IF NOT EXISTS ${t.accounts} (
      id          String,
      name        String,
      status      LowCardinality(String),
      created_at  DateTime64(3, 'UTC'),
      version     UInt64,
      event_id    String,
      updated_at  DateTime64(3, 'UTC'),
      inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY id`,

    // Only the HMAC of the secret and a display prefix; the secret itself is never stored.
    `CREATE TABLE IF NOT EXISTS ${t.keys} (
      id          String,
      account_id  String,
      name        String,
      prefix      String,
      hash        String,
      status      LowCardinality(String),
      created_at  DateTime64(3, 'UTC'),
      revoked_at  Nullable(DateTime64(3, 'UTC')),
      version     UInt64,
      event_id    String,
      updated_at  DateTime64(3, 'UTC'),
      inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY id`,
    // Log positions (Kafka partition and offset) of each fact: a rebuild of hot state takes
    // the warehouse as of these positions and replays the log after them. -1 = no durable log
    // (embedded mode).
  ]], [1, [
    `ALTER TABLE ${t.usage} ADD COLUMN IF NOT EXISTS log_partition Int32 DEFAULT -1`,
    `ALTER TABLE ${t.usage} ADD COLUMN IF NOT EXISTS log_offset Int64 DEFAULT -1`,
    `ALTER TABLE ${t.ledger} ADD COLUMN IF NOT EXISTS log_partition Int32 DEFAULT -1`,
    `ALTER TABLE ${t.ledger} ADD COLUMN IF NOT EXISTS log_offset Int64 DEFAULT -1`,
  ]], [2, [
    // Migration 2 (issue 6): why a usage event is unusual (the gateway's own findings).
    `ALTER TABLE ${t.usage} ADD COLUMN IF NOT EXISTS anomalies Array(LowCardinality(String)) DEFAULT []`,
  ]], [3, [
    // Migration 3 (issue 6): events a consumer group could not store or apply (poison), kept
    // with the reason and a bounded copy of the payload instead of stopping the pipeline.
    // Keyed by where the event sat, so a redelivered batch quarantines it once.
    `CREATE TABLE IF NOT EXISTS ${t.quarantine} (
      event_id       String,
      consumer_group LowCardinality(String),
      topic          LowCardinality(String),
      log_partition  Int32,
      log_offset     Int64,
      reason_kind    LowCardinality(String),
      reason         String,
      raw            String,
      ts             DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree
    ORDER BY (consumer_group, topic, log_partition, log_offset, event_id)`,
  ]], [4, [
    // Migration 4 (issue 7): usage event version 2. A column per billable dimension (derived
    // from DIMENSIONS; the v1 token columns already exist and keep their names), the serving
    // model and iterations, the response's pricing conditions, and what was applied: the
    // price version, list, unit prices, tier, multipliers, unpriced names and the operator's
    // upstream cost. Version 1 rows read these as their defaults (`toV2`'s defaults).
    `ALTER TABLE ${t.usage}
      ${DIMENSION_COLUMNS.map((d) => `ADD COLUMN IF NOT EXISTS ${d.column} UInt32 DEFAULT 0`).join(',\n      ')},
      ADD COLUMN IF NOT EXISTS event_version        UInt8 DEFAULT 1,
      ADD COLUMN IF NOT EXISTS served_model         Nullable(String),
      ADD COLUMN IF NOT EXISTS iterations           String DEFAULT '[]',
      ADD COLUMN IF NOT EXISTS service_tier         LowCardinality(Nullable(String)),
      ADD COLUMN IF NOT EXISTS inference_geo        LowCardinality(Nullable(String)),
      ADD COLUMN IF NOT EXISTS speed                LowCardinality(Nullable(String)),
      ADD COLUMN IF NOT EXISTS stop_reason          LowCardinality(Nullable(String)),
      ADD COLUMN IF NOT EXISTS thinking_tokens      Nullable(UInt32),
      ADD COLUMN IF NOT EXISTS upstream_cost_micros Nullable(Int64),
      ADD COLUMN IF NOT EXISTS upstream_currency    LowCardinality(Nullable(String)),
      ADD COLUMN IF NOT EXISTS price_version        LowCardinality(String) DEFAULT 'v1',
      ADD COLUMN IF NOT EXISTS price_list           LowCardinality(String) DEFAULT 'default',
      ADD COLUMN IF NOT EXISTS unit_prices          Map(String, String),
      ADD COLUMN IF NOT EXISTS tier                 LowCardinality(Nullable(String)),
      ADD COLUMN IF NOT EXISTS multipliers          Array(LowCardinality(String)),
      ADD COLUMN IF NOT EXISTS unpriced             Array(String)`,
    // The price list an account is charged at (issue 7); null: the catalog's own prices.
    `ALTER TABLE ${t.accounts} ADD COLUMN IF NOT EXISTS price_list Nullable(String)`,
    // Every catalog version events were priced with (the catalog document as JSON text), so
    // `tollgate rerate` can recompute a stored event under exactly its own prices. Keyed by
    // (id, effective_at): one catalog may come back into force later.
    `CREATE TABLE IF NOT EXISTS ${t.priceVersions} (
      id           String,
      effective_at DateTime64(3, 'UTC'),
      catalog      String,
      inserted_at  DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree
    ORDER BY (id, effective_at)`,
  ]], [5, [
    // Issue 8: plans, spend limits (integer µc; null: none), admission policy and access rules
    // of accounts and keys. Rows from before read as NULL / empty: no limit, no rule.
    `ALTER TABLE ${t.accounts}
      ADD COLUMN IF NOT EXISTS plan_id             Nullable(String),
      ADD COLUMN IF NOT EXISTS daily_credits       Nullable(Int64),
      ADD COLUMN IF NOT EXISTS monthly_credits     Nullable(Int64),
      ADD COLUMN IF NOT EXISTS overdraft_credits   Nullable(Int64),
      ADD COLUMN IF NOT EXISTS low_balance_credits Nullable(Int64),
      ADD COLUMN IF NOT EXISTS admission_policy    LowCardinality(Nullable(String))`,
    `ALTER TABLE ${t.keys}
      ADD COLUMN IF NOT EXISTS plan_id        Nullable(String),
      ADD COLUMN IF NOT EXISTS hourly_credits Nullable(Int64),
      ADD COLUMN IF NOT EXISTS daily_credits  Nullable(Int64),
      ADD COLUMN IF NOT EXISTS total_credits  Nullable(Int64),
      ADD COLUMN IF NOT EXISTS ip_allowlist   Array(String),
      ADD COLUMN IF NOT EXISTS allowed_models Array(String),
      ADD COLUMN IF NOT EXISTS expires_at     Nullable(DateTime64(3, 'UTC'))`,
  ]], [6, [
    // Issue 8: plans (rate-limit windows sold to accounts and keys), one row per version;
    // null limit: unlimited; deleted = 1: a tombstone (a deleted seed plan stays hidden).
    `CREATE TABLE IF NOT EXISTS ${t.plans} (
      id                  String,
      name                String,
      requests_per_minute Nullable(UInt32),
      requests_per_5h     Nullable(UInt32),
      requests_per_week   Nullable(UInt32),
      tokens_per_minute   Nullable(UInt32),
      concurrent_requests Nullable(UInt32),
      created_at          DateTime64(3, 'UTC'),
      deleted             UInt8 DEFAULT 0,
      version             UInt64,
      event_id            String,
      updated_at          DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY id`,
  ]], [7, [
    // Migration 7 (issue 9): usage rollups per minute, hour and day, kept by materialized views.
    ...rollupMigration(t),
  ]], [8, [
    // Migration 8 (issue 9): billing: month closes and their frozen invoices and statements.
    // A close is one row per month and close id; should two closes of a month ever both be
    // written, readers take the earliest (closed_at, close_id), so the winner is a fact of the
    // data, not of merge order. Its snapshot rows carry its close_id. facts_as_of: the server's
    // now64() before the close read its facts; facts stamped later are late (billing.ts lateCandidates).
    `CREATE TABLE IF NOT EXISTS ${t.billingCloses} (
      month        String,
      close_id     String,
      closed_at    DateTime64(3, 'UTC'),
      inserted_at  DateTime64(3, 'UTC') DEFAULT now64(3),
      facts_as_of  DateTime64(3, 'UTC') DEFAULT toDateTime64(0, 3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    ORDER BY (month, close_id)`,
    // What each closed month booked per account: its own facts and the late deltas of earlier
    // closed months it absorbed (source_month), one row per line key (usage line, rounding,
    // ledger entry). Late deltas are computed against these rows. Money and quantities exact.
    `CREATE TABLE IF NOT EXISTS ${t.billingBooked} (
      month         String,
      close_id      String,
      account_id    String,
      source_month  String,
      line_key      String,
      section       LowCardinality(String),
      model         String,
      dimension     LowCardinality(String),
      unit_price    String,
      quantity      Int64,
      amount_micros Int64
    ) ENGINE = ReplacingMergeTree
    ORDER BY (month, close_id, account_id, source_month, line_key)`,
    // The frozen invoice and statement of each account of a closed month, as the JSON text
    // served: a closed month's documents are read from here, byte for byte.
    `CREATE TABLE IF NOT EXISTS ${t.billingDocuments} (
      month      String,
      close_id   String,
      account_id String,
      invoice    String,
      statement  String
    ) ENGINE = ReplacingMergeTree
    ORDER BY (month, close_id, account_id)`,
  ]], [9, [
    // Migration 9 (issue 9): webhooks, one row per version (ReplacingMergeTree keeps the
    // highest); deleted = 1: a tombstone. The signing secret only sealed (AES-256-GCM, libs/keys
    // sealed.ts). Deliveries are hot state (Redis / memory), not facts: not kept here.
    `CREATE TABLE IF NOT EXISTS ${t.webhooks} (
      id            String,
      url           String,
      events        Array(LowCardinality(String)),
      description   Nullable(String),
      secret_sealed String,
      created_at    DateTime64(3, 'UTC'),
      deleted       UInt8 DEFAULT 0,
      version       UInt64
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY id`,
  ]], [10, [
    // Migration 10 (issue 10): upstream pools, one row per version (ReplacingMergeTree keeps
    // the highest); deleted = 1: a tombstone. The upstream credential only sealed (AES-256-GCM,
    // libs/keys sealed.ts). Health and session affinity are hot state, not kept here.
    `CREATE TABLE IF NOT EXISTS ${t.upstreams} (
      id              String,
      name            String,
      platform        LowCardinality(String),
      base_url        String,
      api_key_sealed  Nullable(String),
      models          Nullable(String),
      weight          UInt32,
      priority        Int32,
      max_concurrency Nullable(UInt32),
      status          LowCardinality(String),
      created_at      DateTime64(3, 'UTC'),
      deleted         UInt8 DEFAULT 0,
      version         UInt64
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY id`,
    `CREATE TABLE IF NOT EXISTS ${t.upstreamGroups} (
      id            String,
      name          String,
      platform      LowCardinality(String),
      upstream_ids  Array(String),
      model_mapping Nullable(String),
      created_at    DateTime64(3, 'UTC'),
      deleted       UInt8 DEFAULT 0,
      version       UInt64
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY id`,
    // The group of an account or key (null: the key inherits its account's, the account the
    // default group). Rows from before read as NULL.
    `ALTER TABLE ${t.accounts} ADD COLUMN IF NOT EXISTS group_id Nullable(String)`,
    `ALTER TABLE ${t.keys} ADD COLUMN IF NOT EXISTS group_id Nullable(String)`,
  ]], [11, [
    // Migration 11 (issue 10): which upstream served a request and after how many attempts
    // (failover before the first byte). '' and 0: not recorded (events of older gateways).
    `ALTER TABLE ${t.usage}
      ADD COLUMN IF NOT EXISTS upstream_id LowCardinality(String) DEFAULT '',
      ADD COLUMN IF NOT EXISTS attempts    UInt8 DEFAULT 0`,
  ]], [12, [
    // Migration 12 (issue 11): every stored usage event id, sorted by time, kept by a view from
    // every insert into usage_events. The rollup_skip check ("which of this batch's ids are
    // stored?") reads it within the batch's time span (a duplicate has the same ts): the
    // granules of that span only, where the raw table, sorted by account first, made each
    // check read about the whole table (its cost grew with the table).
    `CREATE TABLE IF NOT EXISTS ${t.usageIds} (
      ts       DateTime64(3, 'UTC'),
      event_id String
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(ts)
    ORDER BY (ts, event_id)
    SETTINGS non_replicated_deduplication_window = 1000`,
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${t.usageIds.slice(0, -1)}_mv\` TO ${t.usageIds} AS SELECT ts, event_id FROM ${t.usage}`,
    // The ids stored before the view existed, copied once (the marker says it is done). Runs
    // after the view exists, so no insert falls between the two; a copy repeated (a crash
    // before the marker, two processes migrating at once) only adds duplicate ids, which the
    // check reads DISTINCT.
    `CREATE TABLE IF NOT EXISTS ${t.usageIdsBackfilled} (done UInt8) ENGINE = MergeTree ORDER BY tuple()`,
    `INSERT INTO ${t.usageIds} SETTINGS insert_deduplicate = 0, ${MONTHS_SETTING} SELECT ts, event_id FROM ${t.usage} WHERE (SELECT count() FROM ${t.usageIdsBackfilled}) = 0`,
    `INSERT INTO ${t.usageIdsBackfilled} SETTINGS insert_deduplicate = 0 SELECT 1 WHERE (SELECT count() FROM ${t.usageIdsBackfilled}) = 0`,
  ]], [13, [
    // Migration 13: the marker of the rollups' one-time backfill. Migration 7 created the views
    // but never counted the events stored before them, so a warehouse upgraded from migration 6
    // or earlier read 0 for its whole past from every rollup. The backfill itself is
    // `backfillRollups` (rollup-repair.ts), which `Warehouse.migrate` runs after these statements.
    `CREATE TABLE IF NOT EXISTS ${t.rollupsBackfilled} (grain String) ENGINE = MergeTree ORDER BY tuple()`,
  ]], [14, [
    // Migration 14: a booked line's amount is a sum over a month's facts, summed as Int128; an
    // Int64 column wrapped one beyond 2^63 − 1 µc silently (a tester's two events of 5·10^18 µc
    // booked −8,446,744,073,709,551,616, and the next month billed 2^64 µc of phantom late usage).
    `ALTER TABLE ${t.billingBooked} MODIFY COLUMN IF EXISTS amount_micros Int128`,
  ]]];
}

/** The rollup grains (migration 7): each one table kept by its own materialized view from `usage_events`. */
export const ROLLUP_GRAINS = ['minute', 'hour', 'day'] as const;
export type RollupGrain = (typeof ROLLUP_GRAINS)[number];

/** The bucket of a grain: a UTC `DateTime` of the start of the minute, hour or day of `ts`. */
const BUCKET_EXPR: Record<RollupGrain, string> = {
  minute: "toStartOfMinute(ts, 'UTC')",
  hour: "toStartOfHour(ts, 'UTC')",
  day: "toDateTime(toStartOfDay(ts, 'UTC'), 'UTC')",
};

/** The levels every percentile state (`quantilesBFloat16`) answers (p50, p90, p99). */
export const PERCENTILE_LEVELS = '0.5, 0.9, 0.99';

/** The rollup table of a grain. */
export function rollupTable(t: TableNames, grain: RollupGrain): string {
  return grain === 'minute' ? t.rollupMinute : grain === 'hour' ? t.rollupHour : t.rollupDay;
}

/**
 * The key columns of a rollup row, in the rollup tables' order: the grain's bucket, then what a
 * report can filter or split by. `currency` is the upstream cost's (`''` when unknown).
 */
export const ROLLUP_KEYS = ['bucket', 'account_id', 'key_id', 'catalog_model', 'status', 'http_status', 'currency'] as const;

/**
 * A key `rollupSelect` can group raw events by: a rollup key, or `upstream_id` (the pool
 * upstream that served the request), which only raw events carry.
 */
export type RollupKey = (typeof ROLLUP_KEYS)[number] | 'upstream_id';

/** How each key is computed from a raw row. */
const KEY_EXPR: Record<Exclude<RollupKey, 'bucket'>, string> = {
  account_id: 'account_id', key_id: 'key_id', catalog_model: 'catalog_model', status: 'status', http_status: 'http_status',
  currency: "toLowCardinality(ifNull(upstream_currency, '')) AS currency", upstream_id: 'upstream_id',
};

/**
 * The value columns of a rollup row, after its keys, in the rollup tables' order: sums (money
 * Int128 µ of its unit), then the two percentile states.
 */
export const ROLLUP_VALUE_COLUMNS = ['requests', ...DIMENSION_COLUMNS.map((d) => `q_${d.key}`), 'cost', 'upstream_cost', 'upstream_unknown',
  'unpriced', 'errors', 'latency_sum', 'ttft_sum', 'ttft_count', 'gen_ms', 'gen_output', 'latency_q', 'ttft_q'] as const;

/**
 * What one rollup row sums, from a set of `usage_events` rows (the materialized view's SELECT
 * and `rebuildRollups`' use the same text, so a rebuild equals what the views keep). Output
 * names differ from every raw column on purpose: an alias shadows a column of the same name.
 * - `errors`: HTTP status ≥ 400, or `upstream_error` / `stream_error` (a stream that failed
 *   after its 200);
 * - `gen_ms` / `gen_output`: generation time (latency − time to first token) and output tokens
 *   of streamed requests with a first token and latency > ttft: output tokens per second is
 *   Σ gen_output ÷ (Σ gen_ms / 1000). A JSON answer's ttft is its whole body, so it has none.
 * `keys`: the columns grouped by, in this order, then ROLLUP_VALUE_COLUMNS (default ROLLUP_KEYS,
 * a rollup table's row). A report reading raw events groups by only the keys its query uses
 * (`upstream_id` among them for a report by upstream): sums and percentile states merge by
 * addition, so any grouping its own groups are unions of gives the same answer, and fewer
 * groups build fewer percentile states (bench/README.md, "Analytics and billing").
 */
export function rollupSelect(grain: RollupGrain, source: string, where = '', keys: readonly RollupKey[] = ROLLUP_KEYS): string {
  const gen = 'stream AND ttft_ms IS NOT NULL AND latency_ms > assumeNotNull(ttft_ms)';
  const keyList = keys.map((k) => (k === 'bucket' ? `${BUCKET_EXPR[grain]} AS bucket` : KEY_EXPR[k])).join(', ');
  return `SELECT
      ${keyList},
      count() AS requests,
      ${DIMENSION_COLUMNS.map((d) => `sum(toUInt64(${d.column})) AS q_${d.key}`).join(',\n      ')},
      sum(toInt128(cost_micros)) AS cost,
      sum(toInt128(ifNull(upstream_cost_micros, 0))) AS upstream_cost,
      countIf((upstream_cost_micros IS NULL OR upstream_currency IS NULL) AND cost_micros > 0) AS upstream_unknown,
      countIf(notEmpty(unpriced)) AS unpriced,
      countIf(http_status >= 400 OR status IN ('upstream_error', 'stream_error')) AS errors,
      sum(toUInt64(latency_ms)) AS latency_sum,
      sum(toUInt64(ifNull(ttft_ms, 0))) AS ttft_sum,
      countIf(ttft_ms IS NOT NULL) AS ttft_count,
      sumIf(toUInt64(latency_ms - assumeNotNull(ttft_ms)), ${gen}) AS gen_ms,
      sumIf(toUInt64(output_tokens), ${gen}) AS gen_output,
      quantilesBFloat16State(${PERCENTILE_LEVELS})(latency_ms) AS latency_q,
      quantilesBFloat16IfState(${PERCENTILE_LEVELS})(assumeNotNull(ttft_ms), ttft_ms IS NOT NULL) AS ttft_q
    FROM ${source} ${where}
    GROUP BY ${keys.join(', ')}`;
}

/**
 * Migration 7 (issue 9): one AggregatingMergeTree per grain and the materialized view that
 * feeds it from every insert into `usage_events`. Sums are SimpleAggregateFunction(sum) (money
 * as Int128); percentiles are `quantilesBFloat16` states (a histogram of bfloat16 values:
 * deterministic, merged by addition, see the README). Exactly once:
 * a view sees every insert, so `insertUsage` marks rows whose event id is already stored
 * `rollup_skip = 1` (the views read only 0) and passes an `insert_deduplication_token`; the
 * dedup window on the raw table and on each rollup table (`non_replicated_deduplication_window`)
 * drops a repeated block in both (docs/decisions.md). Sorted by bucket first: most reads are a
 * time window over every account, which then reads only the window's granules; an account
 * filter still skips granules by the second key column within each bucket.
 */
function rollupMigration(t: TableNames): string[] {
  const out = [
    `ALTER TABLE ${t.usage} MODIFY SETTING non_replicated_deduplication_window = 1000`,
    // 1: a copy of an event already stored (a redelivery): kept in raw, left out of the rollups.
    `ALTER TABLE ${t.usage} ADD COLUMN IF NOT EXISTS rollup_skip UInt8 DEFAULT 0`,
  ];
  for (const grain of ROLLUP_GRAINS) {
    const table = rollupTable(t, grain);
    const sum = (type: string) => `SimpleAggregateFunction(sum, ${type})`;
    out.push(`CREATE TABLE IF NOT EXISTS ${table} (
      bucket          DateTime('UTC'),
      account_id      String,
      key_id          String,
      catalog_model   LowCardinality(String),
      status          LowCardinality(String),
      http_status     UInt16,
      currency        LowCardinality(String),
      requests        ${sum('UInt64')},
      ${DIMENSION_COLUMNS.map((d) => `q_${d.key} ${sum('UInt64')}`).join(',\n      ')},
      cost            ${sum('Int128')},
      upstream_cost   ${sum('Int128')},
      upstream_unknown ${sum('UInt64')},
      unpriced        ${sum('UInt64')},
      errors          ${sum('UInt64')},
      latency_sum     ${sum('UInt64')},
      ttft_sum        ${sum('UInt64')},
      ttft_count      ${sum('UInt64')},
      gen_ms          ${sum('UInt64')},
      gen_output      ${sum('UInt64')},
      latency_q       AggregateFunction(quantilesBFloat16(${PERCENTILE_LEVELS}), UInt32),
      ttft_q          AggregateFunction(quantilesBFloat16If(${PERCENTILE_LEVELS}), UInt32, UInt8)
    ) ENGINE = AggregatingMergeTree
    PARTITION BY toYYYYMM(bucket)
    ORDER BY (bucket, account_id, key_id, catalog_model, status, http_status, currency)
    SETTINGS non_replicated_deduplication_window = 1000`);
    out.push(`CREATE MATERIALIZED VIEW IF NOT EXISTS ${table.slice(0, -1)}_mv\` TO ${table} AS ${rollupSelect(grain, t.usage, 'WHERE rollup_skip = 0')}`);
  }
  return out;
}
