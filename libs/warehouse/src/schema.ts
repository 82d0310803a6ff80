// The one schema both transports share. Table names come only from the database name and a
// validated prefix, never from request data.
//
// Dedup rule (see README): usage and ledger rows are immutable facts keyed by `event_id`; a
// redelivered event carries the same bytes, so duplicates agree on the whole sorting key and
// ReplacingMergeTree collapses them. Accounts and keys are versioned records:
// ReplacingMergeTree(version) keeps the highest version of each id.

const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PREFIX_RE = /^[a-z0-9_]*$/;

export interface TableNames {
  database: string;
  usage: string;
  ledger: string;
  accounts: string;
  keys: string;
  quarantine: string;
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
  };
}

export function migrations(t: TableNames): string[] {
  return [
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
    `ALTER TABLE ${t.usage} ADD COLUMN IF NOT EXISTS log_partition Int32 DEFAULT -1`,
    `ALTER TABLE ${t.usage} ADD COLUMN IF NOT EXISTS log_offset Int64 DEFAULT -1`,
    `ALTER TABLE ${t.ledger} ADD COLUMN IF NOT EXISTS log_partition Int32 DEFAULT -1`,
    `ALTER TABLE ${t.ledger} ADD COLUMN IF NOT EXISTS log_offset Int64 DEFAULT -1`,
    // Migration 2 (issue 6): why a usage event is unusual (the gateway's own findings).
    `ALTER TABLE ${t.usage} ADD COLUMN IF NOT EXISTS anomalies Array(LowCardinality(String)) DEFAULT []`,
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
  ];
}
