// Bounded rollup repair after a cut insert (issue 9, migration 7).
//
// An INSERT into `usage_events` and the pushes into its materialized views are not atomic: a
// process killed after the raw block is written but before (some of) the view blocks leaves the
// rollups without those events, and the redelivered batch is then marked `rollup_skip = 1`
// (its ids are stored), so no view ever adds them. The reverse (a view block without its raw
// block) would count an event twice once it is redelivered. Either way only the (account,
// bucket) rows touched by the cut batch are wrong, so this module compares exactly those rows
// with raw FINAL and rebuilds the ones that differ: never on the normal path, only when
// `insertUsage` meets ids already stored or when the warehouse sink starts.

import { DIMENSION_COLUMNS, MONTHS_SETTING, ROLLUP_GRAINS, ROLLUP_KEYS, ROLLUP_VALUE_COLUMNS, rollupSelect, rollupTable, type RollupGrain, type TableNames } from './schema.ts';
import { chunksWithin } from './sql-values.ts';

/** What the repair needs of a warehouse: its table names, reads and statements with server-side parameters. */
export interface RollupRepairStore {
  tables: TableNames;
  select(query: string, params?: Record<string, unknown>): Promise<Record<string, unknown>[]>;
  command(query: string, params?: Record<string, unknown>): Promise<void>;
  /**
   * A write that does not outlive its call (`Warehouse.commandSettled`: ended at the server when
   * the call fails); the repair's DELETE and INSERT go through it. Absent: `command`.
   */
  commandSettled?(query: string, params?: Record<string, unknown>): Promise<void>;
}

/** One (account, minute bucket) a cut insert may have left wrong; `minute` is the bucket start in epoch seconds (UTC). */
export interface RollupScopePair {
  accountId: string;
  minute: number;
}

/** (account, bucket) rows rebuilt per grain by one repair (0 everywhere when the rollups already matched). */
export type RollupRepairResult = Record<RollupGrain, number>;

const GRAIN_SECONDS: Record<RollupGrain, number> = { minute: 60, hour: 3600, day: 86400 };

// The rollup sums a check compares (percentile states are estimates; a rebuild rewrites them too).
const SUM_COLUMNS = ROLLUP_VALUE_COLUMNS.filter((c) => c !== 'latency_q' && c !== 'ttft_q');
const KEY_COLUMNS = ROLLUP_KEYS.join(', ');
/** The raw `usage_events` columns `rollupSelect` reads. */
export const RAW_COLUMNS = `ts, account_id, key_id, catalog_model, status, http_status, upstream_currency, ${DIMENSION_COLUMNS.map((d) => d.column).join(', ')},
  cost_micros, upstream_cost_micros, unpriced, latency_ms, ttft_ms, stream`;
// The scope as a server-side parameter pair (never interpolated): has() over zipped arrays.
const IN_SCOPE = 'has(arrayZip({scope_a:Array(String)}, {scope_b:Array(UInt32)}), (account_id, toUInt32(bucket)))';

/**
 * How long a mismatch must last before `repairRollups` rebuilds it (ms): an insert in flight
 * (its raw block written, its view blocks not yet) looks like a cut for that long, and
 * rebuilding its buckets from raw then would count it twice once its views land (a tester saw
 * rollups over raw by exactly the redelivered events after a Kafka outage, until a restart).
 */
export const ROLLUP_CONFIRM_MS = 2000;

/** Tries of a repair's rebuilding INSERT after its DELETE, and the pause before the n-th retry (n × this, ms). */
const REBUILD_ATTEMPTS = 4;
const REBUILD_RETRY_MS = 250;

/**
 * Makes the minute, hour and day rollup rows covering `pairs` equal to what raw events (FINAL)
 * give, rebuilding only the (account, bucket) rows whose sums differ: a lightweight
 * `DELETE FROM rollup WHERE …` and `INSERT INTO rollup SELECT … FROM raw FINAL WHERE …` per grain.
 * Each grain is checked independently, so a cut that reached some views and not others is
 * repaired too. A row found different is compared again `confirmAfterMs` later (default
 * ROLLUP_CONFIRM_MS; one wait per call) and rebuilt only if it still differs: an insert in
 * flight is not a cut. `grains`: only those rollups (default all three). Assumes no other
 * writer inserts usage of the same accounts into those buckets meanwhile: the log sends one
 * account's usage through one consumer, so the caller holds the accounts' partitions (the
 * warehouse sink repairs only the accounts of its assignment) and may pass its fence as
 * `beforeWrite`. Throws what ClickHouse throws, and what `beforeWrite` rejects with.
 */
export async function repairRollups(
  w: RollupRepairStore, pairs: readonly RollupScopePair[],
  opts: {
    confirmAfterMs?: number; grains?: readonly RollupGrain[]; /** tests: awaited instead of the wait */ beforeConfirm?: () => Promise<void>;
    /** awaited before each grain's rebuild (its DELETE); a rejection writes nothing more and is thrown (a consumer's fence) */
    beforeWrite?: () => Promise<void>;
  } = {},
): Promise<RollupRepairResult> {
  const result = { minute: 0, hour: 0, day: 0 } as RollupRepairResult;
  if (pairs.length === 0) return result;
  const suspects: Array<{ grain: RollupGrain; rows: { a: string; b: number }[] }> = [];
  for (const grain of opts.grains ?? ROLLUP_GRAINS) {
    const size = GRAIN_SECONDS[grain];
    const scope = new Map<string, { a: string; b: number }>();
    for (const p of pairs) {
      const b = p.minute - (p.minute % size);
      scope.set(`${p.accountId}\t${b}`, { a: p.accountId, b });
    }
    // The scope travels as query parameters (a server's URL, whose fields it caps): in chunks.
    for (const part of scopeChunks([...scope.values()])) {
      const bad = await mismatched(w, grain, part);
      if (bad.length > 0) suspects.push({ grain, rows: bad });
    }
  }
  if (suspects.length === 0) return result;
  await (opts.beforeConfirm?.() ?? new Promise((r) => setTimeout(r, opts.confirmAfterMs ?? ROLLUP_CONFIRM_MS)));
  for (const { grain, rows } of suspects) {
    const bad = await mismatched(w, grain, rows);
    if (bad.length === 0) continue;
    const table = rollupTable(w.tables, grain);
    const params = scopeParams(bad, GRAIN_SECONDS[grain]);
    const write = (query: string) => (w.commandSettled ? w.commandSettled(query, params) : w.command(query, params));
    // The fence before each statement: a writer frozen between them (its partitions given to
    // another member, which repairs the same rows) must not write its INSERT after it.
    await opts.beforeWrite?.();
    await write(`DELETE FROM ${table} WHERE ${IN_SCOPE} AND bucket BETWEEN toDateTime({lo:UInt32}, 'UTC') AND toDateTime({hi:UInt32}, 'UTC')`);
    // The rows are gone until this INSERT lands: a failed one is tried again (it was ended at the
    // server, so it cannot land twice), and one that still fails leaves them to the next repair,
    // which finds them short of raw (a breaker's HIGH: the rows stayed deleted until the next
    // rebalance when nothing tried again).
    // insert_deduplicate = 0: the rebuilt block may hash like one still in the dedup window.
    const rebuildRows = `INSERT INTO ${table} SETTINGS insert_deduplicate = 0, ${MONTHS_SETTING} SELECT * FROM (${rollupSelect(grain, rawSource(w.tables))}) WHERE ${IN_SCOPE}`;
    for (let attempt = 1; ; attempt++) {
      await opts.beforeWrite?.();
      try {
        await write(rebuildRows);
        break;
      } catch (err) {
        if (attempt >= REBUILD_ATTEMPTS) throw err;
        await new Promise((r) => setTimeout(r, REBUILD_RETRY_MS * attempt));
      }
    }
    result[grain] += bad.length;
  }
  return result;
}

/** What `repairMismatchedRollups` did, per grain: (account, bucket) rows rebuilt, and those left because their bucket had not ended `settleMs` before. */
export interface RollupRepairReport {
  repaired: Record<RollupGrain, number>;
  leftRecent: Record<RollupGrain, number>;
}

/** How long after its end a bucket counts as settled for `repairMismatchedRollups` (ms): no usage insert is still adding to it. */
export const ROLLUP_SETTLE_MS = 10 * 60_000;

/** Rollup rows that differ from raw events, per grain, by whether their bucket has settled. */
export interface RollupMismatches {
  /** in buckets that ended at least `settleMs` before `now`: nothing adds to them any more */
  settled: Record<RollupGrain, number>;
  /** in buckets still being written: an insert in flight (its raw part stored, its views' not yet) shows here */
  recent: Record<RollupGrain, number>;
}

/**
 * The rows `mismatchedRollupRows` finds, counted per grain as settled or recent (ROLLUP_SETTLE_MS
 * after the bucket's end by default, the repair's rule). Under traffic a usage insert is seen
 * between its raw part and its views' parts, so a recent mismatch may be one in flight; a
 * settled one is not. Every event is in a minute bucket, which settles 11 minutes after it,
 * so a lost view block shows as settled within that. Reads every usage row three times.
 */
export async function rollupMismatches(w: RollupRepairStore, opts: { settleMs?: number; now?: number } = {}): Promise<RollupMismatches> {
  const cutoff = Math.floor(((opts.now ?? Date.now()) - (opts.settleMs ?? ROLLUP_SETTLE_MS)) / 1000);
  const settled = { minute: 0, hour: 0, day: 0 } as Record<RollupGrain, number>;
  const recent = { minute: 0, hour: 0, day: 0 } as Record<RollupGrain, number>;
  for (const grain of ROLLUP_GRAINS) {
    const rows = await w.select(
      `SELECT countIf(toUInt32(bucket) + {size:UInt32} <= {cutoff:UInt32}) AS settled, countIf(toUInt32(bucket) + {size:UInt32} > {cutoff:UInt32}) AS recent
       FROM ${mismatchedRollupRows(w.tables, grain)}`,
      { size: GRAIN_SECONDS[grain], cutoff: Math.max(0, cutoff) },
    );
    settled[grain] = Number(rows[0]?.['settled'] ?? 0);
    recent[grain] = Number(rows[0]?.['recent'] ?? 0);
  }
  return { settled, recent };
}

/**
 * Finds every rollup row that differs from raw events (FINAL), as `rollupsMatchRaw` does, and
 * rebuilds the (account, bucket) rows it falls in with `repairRollups` (lightweight DELETE, then
 * INSERT … SELECT from raw FINAL: exact, and a no-op where they already agree, so it is safe to
 * repeat). For what the insert path cannot repair on its own: two writers racing one account
 * past the rollup_skip check (a rebalance while an insert stalled), a process killed between a
 * grain's backfill and its marker. Only buckets that ended at least `settleMs` (default
 * ROLLUP_SETTLE_MS) before `now` are rebuilt: a usage insert adding to a bucket while it is
 * rebuilt could be counted twice, and the sinks keep appending to the current minute, hour and
 * day; the others are counted in `leftRecent` (repair again later). `includeRecent`: every
 * bucket (migration 13's backfill, where the current buckets of a warehouse upgraded today hold
 * its past too). Reads every usage row three times. Throws what ClickHouse throws.
 */
export async function repairMismatchedRollups(w: RollupRepairStore, opts: { settleMs?: number; now?: number; includeRecent?: boolean } = {}): Promise<RollupRepairReport> {
  const settled = opts.includeRecent ? Infinity : (opts.now ?? Date.now()) - (opts.settleMs ?? ROLLUP_SETTLE_MS);
  const repaired = { minute: 0, hour: 0, day: 0 } as Record<RollupGrain, number>;
  const leftRecent = { minute: 0, hour: 0, day: 0 } as Record<RollupGrain, number>;
  for (const grain of ROLLUP_GRAINS) {
    const rows = await w.select(`SELECT DISTINCT account_id, toUInt32(bucket) AS b FROM ${mismatchedRollupRows(w.tables, grain)}`);
    const pairs: RollupScopePair[] = [];
    for (const r of rows) {
      const b = Number(r['b']);
      if ((b + GRAIN_SECONDS[grain]) * 1000 > settled) leftRecent[grain]++;
      else pairs.push({ accountId: String(r['account_id']), minute: b });
    }
    // This grain only: its pairs' buckets of the other grains may not have settled (a settled
    // minute of today lies in today's day bucket). repairRollups compares again before it rebuilds.
    const done = await repairRollups(w, pairs, { grains: [grain] });
    repaired[grain] += done[grain];
  }
  return { repaired, leftRecent };
}

/**
 * Bytes of account ids per chunk of a repair's scope: a ClickHouse server caps each URL field
 * (`http_max_field_value_size`, 128 KiB by default) and percent-encoding may triple a byte.
 */
const SCOPE_PARAM_BUDGET = 32 * 1024;

/** `scope` cut into chunks whose parameters stay under SCOPE_PARAM_BUDGET, accounts kept together (sorted). */
function scopeChunks(scope: { a: string; b: number }[]): { a: string; b: number }[][] {
  const sorted = [...scope].sort((x, y) => (x.a < y.a ? -1 : x.a > y.a ? 1 : x.b - y.b));
  return chunksWithin(sorted, SCOPE_PARAM_BUDGET, (s) => Buffer.byteLength(s.a) * 3 + 16);
}

/**
 * The (account, minute) pairs a cut insert of the recent past could have left wrong: those of
 * raw rows the server stamped (`inserted_at`) within the last `withinMs` (default one hour),
 * and those of minute rollup rows whose bucket lies in that span (a view block whose raw block
 * was lost has no raw row to find it by). For the warehouse sink's start.
 */
export async function recentRollupScope(w: RollupRepairStore, withinMs = 3_600_000): Promise<RollupScopePair[]> {
  // `inserted_at` is in no key, so the raw side reads only the parts written (or merged) within
  // the span (recentRawRows): a part is written after its rows are stamped, so its
  // modification_time (whole seconds, hence the second of margin) is never earlier than any of
  // their `inserted_at`.
  const rows = await w.select(
    `SELECT DISTINCT account_id, m FROM (${recentRawRows(w.tables, "account_id, toUInt32(toStartOfMinute(ts, 'UTC')) AS m")})
     UNION DISTINCT
     SELECT DISTINCT account_id, toUInt32(bucket) AS m FROM ${w.tables.rollupMinute}
       WHERE bucket >= toStartOfMinute(now() - toIntervalSecond(intDiv({within:UInt64}, 1000)), 'UTC')`,
    usageTableParams(w.tables, withinMs),
  );
  return rows.map((r) => ({ accountId: String(r['account_id']), minute: Number(r['m']) }));
}

/** Raw rows the server stamped (`inserted_at`) within the last {within:UInt64} ms, read from the parts written or merged since (see recentRollupScope). */
function recentRawRows(t: TableNames, columns: string): string {
  return `SELECT ${columns} FROM ${t.usage}
    WHERE _part IN (SELECT name FROM system.parts WHERE database = {usage_db:String} AND table = {usage_table:String}
                      AND active AND modification_time >= now() - toIntervalSecond(intDiv({within:UInt64}, 1000) + 1))
      AND inserted_at >= now64(3) - toIntervalMillisecond({within:UInt64})`;
}

function usageTableParams(t: TableNames, withinMs: number): Record<string, unknown> {
  const [usageDb, usageTable] = t.usage.split('.').map((s) => s.slice(1, -1));
  return { within: withinMs, usage_db: usageDb, usage_table: usageTable };
}

/**
 * Puts back into `usage_event_ids` the ids of raw rows stamped within the last `withinMs`
 * (default one hour) that it does not hold, and returns how many (ts, id) pairs that was.
 * The ids table is kept by a materialized view of the raw table, and an insert cut between its
 * raw block and that view's block (kill -9, a server error in a later view) leaves raw rows
 * whose ids the rollup_skip check cannot see: their redelivery would be marked new and counted
 * in every rollup a second time (and the rollup repair would not run for it, no id being
 * "already stored"). Run at the sink's start and, in the same process, before the insert that
 * follows a failed one. Throws what ClickHouse throws.
 */
export async function restoreRecentIds(w: RollupRepairStore, withinMs = 3_600_000): Promise<number> {
  const params = usageTableParams(w.tables, withinMs);
  const span = await w.select(`SELECT count() AS n, toUnixTimestamp64Milli(min(ts)) AS lo, toUnixTimestamp64Milli(max(ts)) AS hi FROM (${recentRawRows(w.tables, 'ts')})`, params);
  if (Number(span[0]?.['n'] ?? 0) === 0) return 0;
  // Within the recent rows' ts span only: a stored duplicate has the same ts (the dedup rule).
  const missing = `SELECT DISTINCT ts, event_id FROM (${recentRawRows(w.tables, 'ts, event_id')})
    WHERE (ts, event_id) NOT IN (SELECT ts, event_id FROM ${w.tables.usageIds}
      WHERE ts BETWEEN fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND fromUnixTimestamp64Milli({hi:Int64}, 'UTC'))`;
  const spanParams = { ...params, lo: Number(span[0]!['lo']), hi: Number(span[0]!['hi']) };
  const n = Number((await w.select(`SELECT count() AS n FROM (${missing})`, spanParams))[0]?.['n'] ?? 0);
  // insert_deduplicate = 0: a restored block may hash like one still in the dedup window.
  if (n > 0) await w.command(`INSERT INTO ${w.tables.usageIds} (ts, event_id) SETTINGS insert_deduplicate = 0, ${MONTHS_SETTING} ${missing}`, spanParams);
  return n;
}

function scopeParams(scope: readonly { a: string; b: number }[], size: number): Record<string, unknown> {
  const bs = scope.map((s) => s.b);
  return {
    scope_a: scope.map((s) => s.a), scope_b: bs,
    lo: Math.min(...bs), hi: Math.max(...bs) + size - 1,
    accounts: [...new Set(scope.map((s) => s.a))],
  };
}

// Raw FINAL of the scope's accounts and time span (partition and primary-key pruning); the
// exact (account, bucket) filter applies to the rollup-shaped rows.
function rawSource(t: TableNames): string {
  return `(SELECT ${RAW_COLUMNS} FROM ${t.usage} FINAL
    WHERE account_id IN {accounts:Array(String)}
      AND ts >= toDateTime64({lo:UInt32}, 3, 'UTC') AND ts < toDateTime64({hi:UInt32} + 1, 3, 'UTC'))`;
}

/** The (account, bucket) pairs of `scope` where any rollup row differs from raw, present on one side only included. */
async function mismatched(w: RollupRepairStore, grain: RollupGrain, scope: { a: string; b: number }[]): Promise<{ a: string; b: number }[]> {
  const rows = await w.select(`SELECT DISTINCT account_id, toUInt32(bucket) AS b FROM ${mismatchedRollupRows(w.tables, grain, true)}`, scopeParams(scope, GRAIN_SECONDS[grain]));
  return rows.map((r) => ({ a: String(r['account_id']), b: Number(r['b']) }));
}

/**
 * The rollup rows of `grain` present on one side only or with any sum different from raw
 * events (FINAL), as a subquery of their keys (ROLLUP_KEYS), each row once: one whose sums
 * differ is found on both sides of the comparison and was counted twice (a tester's LOW). Every
 * row, or (`scoped`) those of the (account, bucket) pairs in the parameters `scope_a`,
 * `scope_b`, `lo`, `hi`, `accounts` (scopeParams).
 */
export function mismatchedRollupRows(t: TableNames, grain: RollupGrain, scoped = false): string {
  const sums = SUM_COLUMNS.map((c) => `toString(sum(${c})) AS ${c}`).join(', ');
  const rolled = scoped
    ? `SELECT ${KEY_COLUMNS}, ${sums} FROM ${rollupTable(t, grain)}
       WHERE bucket BETWEEN toDateTime({lo:UInt32}, 'UTC') AND toDateTime({hi:UInt32}, 'UTC') AND ${IN_SCOPE} GROUP BY ${KEY_COLUMNS}`
    : `SELECT ${KEY_COLUMNS}, ${sums} FROM ${rollupTable(t, grain)} GROUP BY ${KEY_COLUMNS}`;
  const raw = scoped
    ? `SELECT ${KEY_COLUMNS}, ${sums} FROM (${rollupSelect(grain, rawSource(t))}) WHERE ${IN_SCOPE} GROUP BY ${KEY_COLUMNS}`
    : `SELECT ${KEY_COLUMNS}, ${sums} FROM (${rollupSelect(grain, `(SELECT ${RAW_COLUMNS} FROM ${t.usage} FINAL)`)}) GROUP BY ${KEY_COLUMNS}`;
  return `(SELECT DISTINCT ${KEY_COLUMNS} FROM ((${rolled} EXCEPT ${raw}) UNION ALL (${raw} EXCEPT ${rolled})))`;
}

/**
 * Runs `fn` while no other process runs a function under the same exclusion: a distributed
 * deployment passes a Redis lock (services/tollgate adapters.ts); the default runs `fn` as it is
 * (one process owns the warehouse).
 */
export type Exclusive = <T>(fn: () => Promise<T>) => Promise<T>;

/**
 * Migration 13's one-time backfill: makes every rollup count the usage events its view never saw
 * because they were stored before the views existed (a warehouse upgraded from migration 6 or
 * earlier read 0 for its whole past from every rollup). Idempotent, so a repeat, a crash half
 * way or a wrong date cannot count anything twice: if any raw row was stamped (`inserted_at`)
 * before the views' creation (the earliest `metadata_modification_time` of the three, whole
 * seconds; a restored or copied warehouse may show a later one), it runs
 * `repairMismatchedRollups` (the rows that differ from raw FINAL, in settled buckets, rebuilt:
 * reads all usage three times); a warehouse whose rows all came after (fresh, or created at
 * migration 7 or later) is done with one scan of `inserted_at`. Once per database (the marker
 * table `usage_rollups_backfilled`, one row per grain), under `exclusive` so that processes
 * migrating at once do not rebuild the same rows together. Returns the report of the repair, or
 * null when there was nothing to do. Throws what ClickHouse throws (the markers are then not
 * written: the next start does it again).
 */
export async function backfillRollups(w: RollupRepairStore, exclusive: Exclusive = (fn) => fn()): Promise<RollupRepairReport | null> {
  const done = async () => (await w.select(`SELECT count() AS n FROM ${w.tables.rollupsBackfilled}`))[0]?.['n'];
  if (Number(await done()) >= ROLLUP_GRAINS.length) return null;
  return exclusive(async () => {
    if (Number(await done()) >= ROLLUP_GRAINS.length) return null; // another process finished meanwhile
    const [db] = w.tables.usage.split('.').map((s) => s.slice(1, -1));
    const views = ROLLUP_GRAINS.map((g) => rollupTable(w.tables, g).split('.')[1]!.slice(1, -1) + '_mv');
    const created = await w.select(
      `SELECT toUInt32(min(metadata_modification_time)) AS s, count() AS n FROM system.tables WHERE database = {db:String} AND name IN {views:Array(String)}`,
      { db, views },
    );
    if (Number(created[0]?.['n'] ?? 0) !== ROLLUP_GRAINS.length) throw new Error(`backfillRollups: the ${ROLLUP_GRAINS.length} rollup views of ${w.tables.database} must exist first (migrate)`);
    const before = await w.select(
      `SELECT count() AS n FROM (SELECT 1 FROM ${w.tables.usage} WHERE inserted_at < toDateTime64({since:UInt32}, 3, 'UTC') LIMIT 1)`,
      { since: Number(created[0]!['s']) },
    );
    // Every bucket, the current ones too: the past of a warehouse upgraded today lies in them.
    const report = Number(before[0]?.['n'] ?? 0) > 0 ? await repairMismatchedRollups(w, { includeRecent: true }) : null;
    await w.command(`INSERT INTO ${w.tables.rollupsBackfilled} (grain) SETTINGS insert_deduplicate = 0 SELECT arrayJoin({grains:Array(String)})`, { grains: [...ROLLUP_GRAINS] });
    return report;
  });
}
