// The warehouse port: every usage and ledger fact plus the latest control records, in
// ClickHouse. The same SQL runs over HTTP (a server) and in process (chDB); the caller picks the
// transport by the client it passes in.
//
// Invariants:
// - Reads never count an event twice: every read goes through FINAL (see schema.ts), so
//   inserting a batch again changes no result.
// - Money never passes through a JS number: amounts are validated as int64 decimal strings on
//   the way in and summed as Int128 and returned as text on the way out, then parsed to bigint.

import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import type {
  AccountRecord, AccountStatus, AnyEvent, ControlEvent, KeyRecord, KeyStatus, LedgerEvent, LedgerKind, PlanRecord,
  PriceVersionEvent, UsageEvent, UsageEventV2, UsageIteration, UsageQuantities, UsageStatus,
} from '@tollgate/events';
import { boundedRaw, decodeEvent, LEDGER_KINDS, MAX_USAGE_EPOCH_MS, plainObject, standInId, toV2, zeroQuantities } from '@tollgate/events';
import { DIMENSION_COLUMNS, migrations, MONTHS_SETTING, tableNames } from './schema.ts';
import type { TableNames } from './schema.ts';
import { chunksWithin, sizeSettings, sqlString, stringTable } from './sql-values.ts';
import { LowCardinalityValues, lowCardinalityVersions, nativeBlock, NativeWriter, type NativeColumn } from './native-block.ts';
import { ForeignAnswerError } from './http-client.ts';
import { isTextOnlyClient } from './chdb-client.ts';
import { backfillRollups, recentRollupScope, repairRollups, restoreRecentIds, type Exclusive, type RollupRepairResult, type RollupScopePair } from './rollup-repair.ts';

export interface WarehouseOptions {
  /** taken over by the Warehouse: `close()` closes it */
  client: ClickHouseClient;
  /** default 'tollgate' */
  database?: string;
  /** prepended to every table name, for test isolation; `^[a-z0-9_]*$`, default '' */
  tablePrefix?: string;
  /**
   * Told of every repair that changed something: rollup rows rebuilt (a cut insert met again, a
   * start repair) and ids restored. They are rare and each one means an insert was cut or two
   * writers raced, so the process logs them (warn). Unset: silent.
   */
  onRepair?: (what: { rollupRows?: RollupRepairResult; idsRestored?: number; where: 'insert' | 'start' }) => void;
  /**
   * The body format of usage inserts: `native` (ClickHouse's Native format: the server parses it
   * at ~60 % of the CPU of the text) or `json` (JSONCompactEachRow). Default: `json` for a chDB
   * client (`createChdbClickHouse`; its connection passes only text), `native` for any other.
   * The rows stored are the same either way.
   */
  insertFormat?: 'native' | 'json';
}

/** Where an event sits in the durable log, when there is one. */
export interface LogPosition {
  partition: number;
  offset: bigint;
}

/** Highest log offset per partition, per fact table. */
export interface LogPositions {
  usage: Map<number, bigint>;
  ledger: Map<number, bigint>;
}

/** `log_offset` within the bound of its partition (-1 when the partition has none). */
const BOUND = (p: 'u' | 'l') =>
  `log_offset <= if(has({${p}p:Array(Int32)}, log_partition), {${p}o:Array(Int64)}[indexOf({${p}p:Array(Int32)}, log_partition)], -1)`;

/**
 * The ids the `ledger` consumer group refused to apply: its `apply_failed` quarantine records
 * (a grant past the ±(2^53 − 1) µc bound, a debit Redis refused), as SQL selecting `event_id`.
 * Only those: its other records are events no stage could decode (the warehouse did not store
 * them either), and one of them may be a malformed copy of an id that was applied (hot state
 * keeps that id's applied outcome, and so must every money read). `ledger` is the aggregator's
 * group name.
 */
const LEDGER_REFUSAL = `consumer_group = 'ledger' AND reason_kind = 'apply_failed'`;
export const LEDGER_REFUSED_IDS = (quarantine: string) => `SELECT event_id FROM ${quarantine} WHERE ${LEDGER_REFUSAL}`;

/**
 * Money reads leave out facts the ledger refused (`LEDGER_REFUSED_IDS`): an event the warehouse
 * could store but hot state would not apply never moved a balance, so it must not move a rebuilt
 * or reconciled one either. The quarantine table says why.
 */
const NOT_REFUSED = (quarantine: string) => `event_id NOT IN (${LEDGER_REFUSED_IDS(quarantine)})`;

/**
 * The stored facts of `table` (usage or ledger) as of the log positions `{<p>p}`/`{<p>o}`
 * (BOUND), copies folded, less what the ledger group refused: `<table> FINAL PREWHERE <bound>
 * WHERE <not refused>`, to select from. PREWHERE runs before FINAL folds the copies of one fact
 * (ClickHouse, "PREWHERE Clause": a PREWHERE on columns outside the sorting key changes what
 * FINAL sees; the positions are outside it), so a fact counts when any copy of it is within the
 * bound; a WHERE would run after FINAL kept the newest copy, and drop the fact whole when that
 * copy lies past the bound. FINAL still streams in key order. Copies of one fact are the same
 * event (a conflicting ledger copy is quarantined, never stored).
 */
function boundedFacts(table: string, p: 'u' | 'l', quarantine: string): string {
  return `${table} FINAL PREWHERE ${BOUND(p)} WHERE ${NOT_REFUSED(quarantine)}`;
}

// Offsets travel as JS numbers: exact below 2^53, far beyond any partition's length.
function boundParams(at: LogPositions): Record<string, unknown> {
  return {
    up: [...at.usage.keys()], uo: [...at.usage.values()].map(Number),
    lp: [...at.ledger.keys()], lo: [...at.ledger.values()].map(Number),
  };
}

/** One key's spend (`Warehouse.spendAt`), µc: in total and since the hour, day and month asked. */
export interface KeySpend {
  accountId: string;
  keyId: string;
  total: bigint;
  hour: bigint;
  day: bigint;
  month: bigint;
}

export interface UsageFilter {
  accountId?: string;
  keyId?: string;
  /** epoch ms, inclusive */
  from?: number;
  /** epoch ms, exclusive */
  to?: number;
}

/** `model` the catalog model the request resolved to; `served_model` what served it (fallbacks; '' when unknown). */
export type UsageGroupBy = 'model' | 'served_model' | 'key' | 'day' | 'status' | 'price_version' | 'price_list';

/** Sums over usage events; one field per billable dimension (DIMENSIONS of @tollgate/pricing). */
export interface UsageTotals {
  requests: number;
  /** per dimension: tokens, requests or seconds */
  quantities: UsageQuantities;
  /** charged to accounts, µc */
  costMicros: bigint;
  /** the operator's own cost at the upstream's list prices, per ISO 4217 currency, in µ of it */
  upstreamCost: Record<string, bigint>;
  /** charged requests whose upstream cost is unknown (version 1 events, models without upstream prices) */
  upstreamCostUnknown: number;
  /** requests that reported something not priced (their `unpriced` list is not empty) */
  unpricedRequests: number;
}

export interface UsageGroup extends UsageTotals {
  /** catalog model id, serving model, key id, UTC day `YYYY-MM-DD`, status, price version or price list */
  group: string;
}

/** A stored price book version (`StoredPriceVersion` of @tollgate/pricing). */
export interface StoredPriceVersionRow {
  id: string;
  /** epoch ms */
  effectiveAt: number;
  /** the catalog document */
  catalog: unknown;
}

/** Where a page of `usageEvents` ends: the next page starts after it. */
export interface UsageCursor {
  ts: number;
  eventId: string;
}

export interface LedgerTotals {
  entries: number;
  amountMicros: bigint;
  byKind: Record<LedgerKind, bigint>;
}

/** Invalid input to a write: nothing of the batch was written. */
export class WarehouseInputError extends Error {
  override readonly name = 'WarehouseInputError';
}

/** Node's codes of a connection that could not be made or was lost (net, dns, http). */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE',
]);

/**
 * A read the warehouse server did not answer: it could not be reached, the connection broke, or
 * no answer came within the client's request timeout (@clickhouse/client's `request_timeout`,
 * 30 s by default; its error is "Timeout error."). Not a refusal: an answer the server gives
 * (a SQL or data error) is thrown as the client threw it. `gatewayCode` is the answer an HTTP
 * route gives for it (503 `warehouse_unavailable` of @tollgate/anthropic's catalogue, with
 * `retry-after: retryAfterS`): libs/http's error handler reads it, so the warehouse needs no
 * HTTP types. The message names the failure, never the server's URL or credentials.
 */
export class WarehouseUnavailableError extends Error {
  override readonly name = 'WarehouseUnavailableError';
  readonly gatewayCode = 'warehouse_unavailable';
  /** seconds a client should wait before trying again */
  readonly retryAfterS = 5;
}

/**
 * Whether `err` is an answer at the server's address that is not the ClickHouse server's
 * (`ForeignAnswerError` of the HTTP client: a proxy's page, a 200 without ClickHouse's headers,
 * a body that does not parse). Only the HTTP client (createHttpClickHouse) makes these, from
 * what its calls got; an Error of our own is never one.
 */
export function isForeignAnswer(err: unknown): err is ForeignAnswerError {
  return err instanceof ForeignAnswerError;
}

/**
 * `err` as a WarehouseUnavailableError when the server did not answer (a transport failure or the
 * client's timeout) or something else answered for it (`isForeignAnswer`: a proxy in front of a
 * ClickHouse that is down or restarting), else undefined. The message names the kind of failure,
 * never the server's address, nor the foreign body (kept as `cause`, for the log).
 */
export function unavailableError(err: unknown): WarehouseUnavailableError | undefined {
  if (err instanceof WarehouseUnavailableError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const what = typeof code === 'string' && UNREACHABLE_CODES.has(code) ? code
    : (err as { message?: unknown } | null)?.message === 'Timeout error.' ? 'no answer within the request timeout'
    : isForeignAnswer(err) ? 'its address answered, but not as ClickHouse' : undefined;
  if (what === undefined) return undefined;
  return new WarehouseUnavailableError(`The usage warehouse is temporarily unavailable (${what}); retry shortly`, { cause: err });
}

/**
 * Why an event went to quarantine, as a metric label (few values; the full text is `reason`):
 * - `undecodable`: the log could not parse the message (not JSON, empty);
 * - `invalid_event`: it parsed but fails the event shape or a bound (`decodeEvent`);
 * - `rejected_by_warehouse`: ClickHouse refused it with a data error (parse, type, range);
 * - `apply_failed`: hot state could not apply it (a Redis script error on that event);
 * - `conflicting_duplicate`: a ledger event whose id the warehouse already holds with another
 *   amount or kind (one event id, one fact: the first stays, as in hot state, where the later
 *   one is a duplicate id and changes nothing).
 */
export type QuarantineKind = 'undecodable' | 'invalid_event' | 'rejected_by_warehouse' | 'apply_failed' | 'conflicting_duplicate';

/** One poison event, kept with its reason instead of stopping its consumer group. */
export interface QuarantineRecord {
  /** the event's id when it has a usable one, else `raw:<sha256 of the payload>` / `undecodable:<topic>:<partition>:<offset>` */
  event_id: string;
  /** consumer group that quarantined it (`warehouse`, `ledger`, `journal`) */
  group: string;
  topic: string;
  /** -1 without a durable log (embedded mode) */
  partition: number;
  offset: bigint;
  kind: QuarantineKind;
  reason: string;
  /** the payload as JSON text, at most MAX_RAW_BYTES (4 KiB) */
  raw: string;
  /** epoch ms when it was quarantined (reads only) */
  ts?: number;
}

/** One event to store, as consumed: not yet trusted (see `storeEvents`). */
export interface StoreItem {
  event: unknown;
  topic: string;
  /** its durable log position; absent for the embedded in-memory log and the journal */
  position?: LogPosition;
}

/**
 * ClickHouse error codes that mean "this data cannot be stored" (parse, type, range), not
 * "the server is unreachable": a batch failing with one of these is bisected to find the
 * event(s) to quarantine; any other failure is an outage and is retried as it is.
 * 6 CANNOT_PARSE_TEXT, 25 CANNOT_PARSE_ESCAPE_SEQUENCE, 26 CANNOT_PARSE_QUOTED_STRING,
 * 27 CANNOT_PARSE_INPUT_ASSERTION_FAILED, 32/33 read past end, 36 BAD_ARGUMENTS,
 * 38 CANNOT_PARSE_DATE, 41 CANNOT_PARSE_DATETIME, 53 TYPE_MISMATCH, 69 ARGUMENT_OUT_OF_BOUND,
 * 70 CANNOT_CONVERT_TYPE, 72 CANNOT_PARSE_NUMBER, 117 INCORRECT_DATA, 131 TOO_LARGE_STRING_SIZE,
 * 349 CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, 469 VIOLATED_CONSTRAINT.
 */
const DATA_ERROR_CODES = new Set(['6', '25', '26', '27', '32', '33', '36', '38', '41', '53', '69', '70', '72', '117', '131', '349', '469']);

/** True for an error caused by the data of a write (ours or ClickHouse's), never by an outage. */
export function isDataError(err: unknown): boolean {
  if (err instanceof WarehouseInputError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return (err as { constructor?: { name?: string } } | null)?.constructor?.name === 'ClickHouseError'
    && DATA_ERROR_CODES.has(String(code));
}

// UTF-16 units of event ids per existence query (see #markStored): bounds one query's text (a
// 20,000-event batch of uuids is ~0.9 MB) and the server's memory for it.
const ID_TEXT_BUDGET = 4 * 1024 * 1024;
/** A row's id in the existence query's text, in ID_TEXT_BUDGET's units: its JSON row (brackets, quotes, newline; escapes aside). */
const idTextCost = (r: { id: string }): number => r.id.length + 8;
/** A gap between two events' ts (ms) past which the existence check reads two spans, not one. */
const SPAN_GAP_MS = 60_000;
/** At most this many ts spans per existence query: the widest gaps are cut first. */
const MAX_SPANS = 16;

/**
 * `[lo, hi]` spans (epoch ms, inclusive) covering every value of `sorted` (ascending, non-empty):
 * one span, cut at each gap wider than SPAN_GAP_MS, at most MAX_SPANS (the widest gaps cut).
 */
function timeSpans(sorted: ArrayLike<number>): [number, number][] {
  const gaps: number[] = [];
  for (let i = 1; i < sorted.length; i++) if (sorted[i]! - sorted[i - 1]! > SPAN_GAP_MS) gaps.push(i);
  const cuts = gaps.length < MAX_SPANS ? gaps
    : gaps.sort((a, b) => (sorted[b]! - sorted[b - 1]!) - (sorted[a]! - sorted[a - 1]!) || a - b).slice(0, MAX_SPANS - 1).sort((a, b) => a - b);
  const spans: [number, number][] = [];
  let from = 0;
  for (const c of [...cuts, sorted.length]) {
    spans.push([sorted[from]!, sorted[c - 1]!]);
    from = c;
  }
  return spans;
}

/**
 * Most ms of synchronous work the write path (decoding a batch, building its rows and the
 * values it sends) does before it lets the event loop run (issue 11: the latency tail). The
 * embedded mode stores events on the thread that serves requests: decoding a batch and building
 * its rows took ~1.6 µs an event in one piece (2.2 ms for 1,000 events, 6.5 ms for 4,000 on the
 * 2-core VM; bench/flush-block.ts), and a request arriving meanwhile waited for all of it;
 * in slices, it waits for one. A slice ends at the first clock reading past the budget (the
 * clock is read every SLICE_CHECK_EVERY events: a few µs each).
 */
export const WRITE_SLICE_MS = 0.5;

/** Events between two clock readings of a slice. */
const SLICE_CHECK_EVERY = 16;

/**
 * A clock for cooperative slicing: `due()` is true once `WRITE_SLICE_MS` has passed since the
 * slice began, read at every `checkEvery`-th call (one call per event; per run of rows, 1);
 * `pause()` then lets the event loop run (I/O, timers: a `setImmediate` turn)
 * and starts the next slice. Results are identical with or without the pauses: only when the
 * work runs changes.
 */
function slicer(checkEvery = SLICE_CHECK_EVERY): { due(): boolean; pause(): Promise<void> } {
  let from = performance.now();
  let calls = 0;
  return {
    // The clock is read every `checkEvery` calls: once per event, it was ~1 % of the warehouse consumer's CPU.
    due: () => ++calls % checkEvery === 0 && performance.now() - from >= WRITE_SLICE_MS,
    pause: () => new Promise<void>((resolve) => setImmediate(() => { from = performance.now(); resolve(); })),
  };
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT32_MAX = 2 ** 32 - 1;
const INT32_MAX = 2 ** 31 - 1;
const INT_RE = /^-?\d+$/;

// Requested for every read. Money is already cast to text in SQL (so it is exact whatever a
// server's defaults are); this keeps counts and versions one shape on both transports.
const READ_SETTINGS = { output_format_json_quote_64bit_integers: 1 } as const;

// Column expressions for `groupBy`; fixed strings, never built from input.
const GROUP_EXPR: Record<UsageGroupBy, string> = {
  model: 'catalog_model',
  served_model: "ifNull(served_model, '')",
  key: 'key_id',
  day: 'toString(toDate(ts))',
  status: 'status',
  price_version: 'toString(price_version)',
  price_list: 'toString(price_list)',
};

// Aliases differ from column names on purpose: in ClickHouse an alias shadows the column of
// the same name everywhere in the query, WHERE included.
// One sum per billable dimension, derived from DIMENSIONS; the upstream cost summed per
// currency (a Map, its Int128 sums as text so no step rounds).
const TOTALS_SELECT = `
  count() AS n_requests,
  ${DIMENSION_COLUMNS.map((d) => `sum(${d.column}) AS q_${d.key}`).join(',\n  ')},
  toString(sum(toInt128(cost_micros))) AS cost_text,
  mapApply((k, v) -> (k, toString(v)),
    sumMapIf(map(assumeNotNull(upstream_currency), toInt128(assumeNotNull(upstream_cost_micros))),
             upstream_cost_micros IS NOT NULL AND upstream_currency IS NOT NULL)) AS upstream_cost_map,
  countIf((upstream_cost_micros IS NULL OR upstream_currency IS NULL) AND cost_micros > 0) AS n_upstream_unknown,
  countIf(notEmpty(unpriced)) AS n_unpriced`;

// Every usage column, for reading events back (money and 64-bit values as text).
export const USAGE_SELECT = `event_id, toUnixTimestamp64Milli(ts) AS ts_ms, account_id, key_id, model,
  catalog_model, upstream_model, ${DIMENSION_COLUMNS.map((d) => d.column).join(', ')},
  toString(cost_micros) AS cost_text, status, http_status, latency_ms, ttft_ms, stream, upstream_request_id,
  gateway_id, anomalies, event_version, served_model, iterations, service_tier, inference_geo, speed,
  stop_reason, thinking_tokens, toString(upstream_cost_micros) AS upstream_cost_text, upstream_currency,
  price_version, price_list, unit_prices, tier, multipliers, unpriced, upstream_id, attempts`;

/** One row of a read, as ClickHouse JSONEachRow gives it (64-bit integers as decimal text). */
export type Row = Record<string, unknown>;

export class Warehouse {
  readonly #client: ClickHouseClient;
  readonly #t: TableNames;
  /**
   * Set when a usage insert failed: it may have been cut between its raw block and the id view's
   * block, so the next insert first puts back lost ids (`restoreRecentIds`) before its
   * rollup_skip check trusts `usage_event_ids`. Cleared once that succeeded. Set at
   * construction too: a process that died after such a cut left no flag, and if its successor's
   * start repair (`repairRecentRollups`) failed (ClickHouse away), the redelivered batch met no
   * stored ids and its events were counted again in the rollups the cut had reached (a
   * tester's case); a successful start repair clears it.
   */
  #idsSuspect = true;
  /**
   * When (this client's clock, ms) the earliest usage insert failed since the ids were last
   * restored, less RESTORE_CLOCK_MARGIN_MS; undefined when none failed in this process. The
   * restore then looks back at least to it, however long ClickHouse stayed away: a cut followed
   * by a longer outage than the default look-back (one hour) left its ids out of reach and its
   * redelivery was counted twice in the rollups the cut had reached.
   */
  #suspectSinceMs: number | undefined;
  /** Bumped at every failed usage insert: a restore clears the flags only if none failed meanwhile. */
  #failures = 0;
  /**
   * Query ids of usage inserts that failed at this client (a timeout, a dropped connection):
   * a server goes on with an insert whose client gave up, so one may still be running and land
   * its view blocks after the retry's repair rebuilt those rollup rows from raw (a tester's
   * case: 462 events counted twice). The next insert first ends each (`KILL QUERY … SYNC`:
   * killed, or already over) and only then restores ids and checks.
   */
  readonly #unsettled = new Set<string>();
  readonly #onRepair: WarehouseOptions['onRepair'];
  /** the usage insert's body format (WarehouseOptions.insertFormat) */
  readonly #insertFormat: 'native' | 'json';
  /**
   * The SETTINGS clause the position-bounded reads end with (`boundedFacts`): `SETTINGS
   * apply_prewhere_after_final = 0` where the server has that setting (ClickHouse 25.11.10 and
   * 25.12 on; a user profile setting it to 1 would run the bound after FINAL again, the bug
   * those reads fixed), '' where it does not (an older server refuses an unknown setting).
   * Asked once, on first use.
   */
  #prewhereFirst: Promise<string> | undefined;

  constructor(opts: WarehouseOptions) {
    this.#client = opts.client;
    this.#onRepair = opts.onRepair;
    this.#insertFormat = opts.insertFormat ?? (isTextOnlyClient(opts.client) ? 'json' : 'native');
    this.#t = tableNames(opts.database ?? 'tollgate', opts.tablePrefix ?? '');
  }

  /**
   * Creates the database and tables if missing and brings them to the latest migration (every
   * statement idempotent), then runs migration 13's one-time rollup backfill (`backfillRollups`)
   * under `options.exclusive` (a cross-process lock where several processes migrate one
   * database; default: none). Safe to run at every start. Throws what ClickHouse throws.
   */
  async migrate(options: { exclusive?: Exclusive } = {}): Promise<void> {
    for (const query of migrations(this.#t)) {
      await this.#client.command({ query });
    }
    await backfillRollups(this, options.exclusive);
  }

  /**
   * Any mix of events, each into its table (control records first), with their positions.
   * Each usage event is checked against its columns (`usageRow`): WarehouseInputError names the
   * first field a column cannot store.
   */
  async insertEvents(events: readonly AnyEvent[], positions?: readonly (LogPosition | undefined)[]): Promise<void> {
    await this.#insertEvents(events, positions, false);
  }

  /** `insertEvents`; `decoded`: every event is `decodeEvent`'s output, already held to every column's bounds. */
  async #insertEvents(events: readonly AnyEvent[], positions: readonly (LogPosition | undefined)[] | undefined, decoded: boolean, beforeWrite?: () => Promise<void>): Promise<void> {
    const usage: UsageEvent[] = [];
    const usageAt: (LogPosition | undefined)[] = [];
    const ledger: LedgerEvent[] = [];
    const ledgerAt: (LogPosition | undefined)[] = [];
    const control: ControlEvent[] = [];
    events.forEach((event, i) => {
      if (event.type === 'usage') {
        usage.push(event);
        usageAt.push(positions?.[i]);
      } else if (event.type === 'ledger') {
        ledger.push(event);
        ledgerAt.push(positions?.[i]);
      } else control.push(event);
    });
    await this.insertControl(control);
    await this.insertLedger(ledger, ledgerAt);
    await this.#insertUsage(usage, usageAt, decoded, beforeWrite);
  }

  /**
   * Stores what a consumer took from the log without ever getting stuck on one bad event:
   * each item is decoded and bounds-checked first (`decodeEvent`); the good ones are inserted;
   * if ClickHouse refuses the insert with a DATA error the batch is bisected (re-inserting is
   * idempotent by event id) down to the event(s) it refuses. Every bad item is written to the
   * quarantine table and returned. Rejects only on an outage (then nothing counts as stored
   * and the caller retries the whole batch). Good events keep their log order.
   * `options.beforeWrite`: awaited after the usage insert's existence check and right before the
   * insert is sent; a rejection writes no usage and rejects this call (a consumer that may have
   * lost its partition to another member: `BatchContext.fence`, see `#insertUsage`).
   */
  async storeEvents(items: readonly StoreItem[], group: string, options: { beforeWrite?: () => Promise<void> } = {}): Promise<QuarantineRecord[]> {
    const poison: QuarantineRecord[] = [];
    // The decoded events and their items side by side: no pair object per event.
    let events: AnyEvent[] = [];
    let kept: StoreItem[] = [];
    const slice = slicer();
    for (const item of items) {
      if (slice.due()) await slice.pause();
      const d = decodeEvent(item.event);
      if (d.ok) {
        events.push(d.event);
        kept.push(item);
      } else {
        const undecodable = (item.event as { type?: unknown } | null)?.type === 'undecodable';
        poison.push(quarantineRecord(item, group, undecodable ? 'undecodable' : 'invalid_event', d.reason, d.eventId));
      }
    }
    // One ledger event id, one fact, the first: a later event under a stored id (or one earlier
    // in this batch) with another amount or kind is set aside, not stored over it (the table
    // keeps the last row of an id; hot state applied the first).
    const ledgerIds: string[] = [];
    for (const e of events) if (e.type === 'ledger') ledgerIds.push(e.event_id);
    if (ledgerIds.length > 0) {
      const first = await this.#ledgerFacts(ledgerIds);
      const keptEvents: AnyEvent[] = [];
      const keptItems: StoreItem[] = [];
      for (let i = 0; i < events.length; i++) {
        const e = events[i]!;
        if (e.type === 'ledger') {
          const fact = `${BigInt(e.amount_micros)} ${e.kind}`;
          const held = first.get(e.event_id);
          if (held === undefined) first.set(e.event_id, fact);
          else if (held !== fact) {
            poison.push(quarantineRecord(kept[i]!, group, 'conflicting_duplicate',
              `ledger event ${e.event_id} is already stored as ${held.replace(' ', ' µc ')}; this one says ${fact.replace(' ', ' µc ')} (one event id, one fact: the first stays)`, e.event_id));
            continue;
          }
        }
        keptEvents.push(e);
        keptItems.push(kept[i]!);
      }
      events = keptEvents;
      kept = keptItems;
    }
    // Events [from, to) in one insert; a DATA error bisects the range down to the event(s) refused.
    const insert = async (from: number, to: number): Promise<void> => {
      if (from >= to) return;
      const positions = new Array<LogPosition | undefined>(to - from);
      for (let i = from; i < to; i++) positions[i - from] = kept[i]!.position;
      try {
        // Decoded above: usageRow need not check them again (decodeEvent holds every column's bounds).
        await this.#insertEvents(from === 0 && to === events.length ? events : events.slice(from, to), positions, true, options.beforeWrite);
      } catch (err) {
        if (!isDataError(err)) throw err;
        if (to - from === 1) {
          const message = err instanceof Error ? err.message : String(err);
          poison.push(quarantineRecord(kept[from]!, group, 'rejected_by_warehouse', message, events[from]!.event_id));
          return;
        }
        const half = from + Math.ceil((to - from) / 2);
        await insert(from, half);
        await insert(half, to);
      }
    };
    await insert(0, events.length);
    await this.insertQuarantine(poison);
    return poison;
  }

  /** Writes quarantine records (idempotent: keyed by group and log position). */
  async insertQuarantine(records: readonly QuarantineRecord[]): Promise<void> {
    if (records.length === 0) return;
    const rows = records.map((r) => ({
      event_id: boundedRaw(r.event_id).slice(0, 512),
      consumer_group: r.group,
      topic: r.topic,
      log_partition: r.partition,
      log_offset: r.offset.toString(),
      reason_kind: r.kind,
      reason: boundedRaw(r.reason),
      raw: boundedRaw(r.raw),
    }));
    await this.#client.insert({ table: this.#t.quarantine, values: rows, format: 'JSONEachRow' });
  }

  /** Every quarantine record, oldest first (at most `limit`, default 1000). */
  async quarantined(limit = 1000): Promise<QuarantineRecord[]> {
    const rows = await this.#select(
      `SELECT event_id, consumer_group, topic, log_partition, toString(log_offset) AS offset_text, reason_kind,
              reason, raw, toUnixTimestamp64Milli(ts) AS ts_ms
       FROM ${this.#t.quarantine} FINAL ORDER BY ts, event_id LIMIT {limit:UInt32}`,
      { limit },
    );
    return rows.map((r) => ({
      event_id: str(r['event_id']), group: str(r['consumer_group']), topic: str(r['topic']),
      partition: int(r['log_partition']), offset: BigInt(str(r['offset_text'])),
      kind: str(r['reason_kind']) as QuarantineKind, reason: str(r['reason']), raw: str(r['raw']), ts: int(r['ts_ms']),
    }));
  }

  /**
   * `positions[i]`, when given, is the log position of `events[i]`. Events of either version;
   * a version 1 event is stored through `toV2` (its charge as it was) and remembered as
   * version 1 (`event_version`), so `getUsageEvent` gives it back in its own shape.
   */
  async insertUsage(events: readonly UsageEvent[], positions?: readonly (LogPosition | undefined)[]): Promise<void> {
    await this.#insertUsage(events, positions, false);
  }

  /** `insertUsage`; `decoded`: see `usageRow`. */
  async #insertUsage(events: readonly UsageEvent[], positions: readonly (LogPosition | undefined)[] | undefined, decoded: boolean, beforeWrite?: () => Promise<void>): Promise<void> {
    if (events.length === 0) return;
    // Each event is checked against its columns once (`usageRow`); the body is written from the
    // rows after the rollup_skip check: Native for a server, JSONCompactEachRow text for chDB
    // (its connection passes text only). No row objects for the client's encoder to walk.
    // In slices of WRITE_SLICE_MS: an embedded flush lets requests in between (issue 11, the tail).
    let slice = slicer();
    const rows: UsageRow[] = new Array(events.length);
    for (let i = 0; i < events.length; i++) {
      if (slice.due()) await slice.pause();
      rows[i] = usageRow(events[i]!, positions?.[i], decoded);
    }
    // Exactly once into the rollups (migration 7): a materialized view counts every inserted
    // row, FINAL or not. A row whose event id is already stored (or repeats within the batch)
    // is still written, so raw rows and log positions stay as they were, but marked
    // `rollup_skip = 1`, which the views leave out. The block carries a token of its rows, so
    // the same block sent again (two writers racing past the check) is dropped by the raw
    // table's and every rollup's dedup window.
    for (const queryId of this.#unsettled) {
      await this.command('KILL QUERY WHERE query_id = {id:String} SYNC', { id: queryId });
      this.#unsettled.delete(queryId);
    }
    if (this.#idsSuspect) {
      const restored = await this.restoreRecentIds();
      if (restored > 0) this.#onRepair?.({ idsRestored: restored, where: 'insert' });
    }
    const insertStartedMs = Date.now();
    const { skip, stored } = await this.#markStored(rows);
    // Still this batch's writer? The check above is only right if no other writer inserts these
    // events between it and this insert. A consumer frozen past its group's session timeout (a
    // stopped process, a paused VM) was dropped, and its partition's new owner inserted the same
    // events meanwhile, its own check not seeing these: both marked them new, and the rollups
    // counted them twice (a breaker: +28 requests, +100,656 µc in every rollup after a 17 s
    // SIGSTOP). Asked here, after the check, so a freeze during the check is seen too.
    await beforeWrite?.();
    // The token's text is hashed once at the end: one native call, not one per row.
    let tokenText = '';
    slice = slicer();
    for (let i = 0; i < rows.length; i++) {
      if (slice.due()) await slice.pause();
      const r = rows[i]!;
      tokenText += `${i === 0 ? '' : '\n'}${r.id}\t${skip[i]}\t${r.partition}\t${r.offset}`;
    }
    const token = createHash('sha256').update(tokenText).digest('hex');
    const native = this.#insertFormat === 'native';
    const body = native ? await usageNativeBody(rows, skip) : await usageJsonBody(rows, skip);
    // `exec` with the rows as the body: `insert` would encode values itself (JSON.stringify per
    // row), and its raw-stream path is only for text formats such as TSV. The settings are a
    // SETTINGS clause of the statement, not `clickhouse_settings`: chDB's connection turns
    // those into `SET` on its one session, so this block's token stayed set for every later
    // insert of the process (see #select). `optimize_on_insert = 0`: the server does not merge
    // the block with itself before writing it (ReplacingMergeTree collapsing a repeat inside the
    // batch in raw and in usage_event_ids, AggregatingMergeTree folding each rollup block, which
    // its view's GROUP BY already did). Every read is FINAL, DISTINCT or a sum, so nothing reads
    // differently; it cost 10-25 % of the server's CPU per event (docs/decisions.md).
    const queryId = `tollgate-usage-insert-${randomUUID()}`;
    try {
      const res = await this.#client.exec({
        query_id: queryId,
        query: `INSERT INTO ${this.#t.usage} (${USAGE_INSERT_COLUMNS})
          SETTINGS insert_deduplication_token = ${sqlString(`usage:${token}`)}, deduplicate_blocks_in_dependent_materialized_views = 1, optimize_on_insert = 0, ${MONTHS_SETTING}
          FORMAT ${native ? 'Native' : 'JSONCompactEachRow'}`,
        values: Readable.from([body]),
      });
      res.stream.resume();
      await finished(res.stream).catch(() => {});
    } catch (err) {
      this.#idsSuspect = true;
      this.#suspectSinceMs ??= insertStartedMs - RESTORE_CLOCK_MARGIN_MS;
      this.#failures++;
      this.#unsettled.add(queryId);
      throw err;
    }
    // Ids already stored mean an earlier insert of them may have been cut between the raw
    // block and the view blocks (not atomic): repair the rollup rows they fall in, exactly and
    // only those. Before the batch counts as consumed, so a crash here is redelivered too.
    if (stored.size > 0) {
      const pairs = new Map<string, RollupScopePair>();
      for (const r of rows) {
        if (!stored.has(r.id)) continue;
        const minute = Math.floor(r.tsMs / 60_000) * 60;
        pairs.set(`${r.account}\t${minute}`, { accountId: r.account, minute });
      }
      const rebuilt = await repairRollups(this, [...pairs.values()]);
      if (rebuilt.minute + rebuilt.hour + rebuilt.day > 0) this.#onRepair?.({ rollupRows: rebuilt, where: 'insert' });
    }
  }

  /**
   * `skip[i]` is 1 where `usage_events` already holds `rows[i]`'s event id or it came earlier in
   * `rows`, else 0; `stored` the ids found stored.
   */
  async #markStored(rows: UsageRow[]): Promise<{ skip: Uint8Array; stored: Set<string> }> {
    // A repeat within the batch is marked here; the distinct ids are asked of the table in chunks
    // of at most ID_TEXT_BUDGET characters (one query each, run together; a batch of the sink's
    // default 20,000 uuids is one, in any order: its ts spans come from its own sorted copy).
    const skip = new Uint8Array(rows.length);
    const seen = new Set<string>();
    const distinct: UsageRow[] = [];
    let size = 0;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (seen.has(r.id)) {
        skip[i] = 1;
        continue;
      }
      seen.add(r.id);
      distinct.push(r);
      size += idTextCost(r);
    }
    let chunks: UsageRow[][] = [distinct];
    if (size > ID_TEXT_BUDGET) {
      // In ts order, so each chunk's spans stay short.
      distinct.sort((a, b) => a.tsMs - b.tsMs);
      chunks = chunksWithin(distinct, ID_TEXT_BUDGET, idTextCost);
    }
    const found = await Promise.all(chunks.map((c) => this.#storedIds(c)));
    const stored = new Set<string>();
    for (const ids of found) for (const id of ids) stored.add(id);
    // An id stored already is skipped at its first row in the batch too.
    if (stored.size > 0) for (let i = 0; i < rows.length; i++) if (stored.has(rows[i]!.id)) skip[i] = 1;
    return { skip, stored };
  }

  /** Stored ledger rows of these event ids: id → `<amount> <kind>` of the first stored (by insert time). */
  async #ledgerFacts(ids: string[]): Promise<Map<string, string>> {
    const rows = await this.#select(
      `SELECT event_id, argMin(concat(toString(amount_micros), ' ', kind), inserted_at) AS fact
       FROM ${this.#t.ledger} WHERE event_id IN ${stringTable([...new Set(ids)])} GROUP BY event_id`,
      {},
    );
    return new Map(rows.map((r) => [str(r['event_id']), str(r['fact'])]));
  }

  /**
   * The event ids of `rows` (distinct ids, in any order) that `usage_events` already holds, by
   * `usage_event_ids` (sorted by ts, then id). A duplicate has the same ts (the dedup rule), so
   * only the rows' time spans are read: `timeSpans` of their ts, so a batch mixing a lagging
   * partition's old events with fresh ones reads two short spans, not the hours between. The
   * ids go in the query body (`stringTable`), and the key index is not asked to match them
   * (`use_index_for_in_with_subqueries = 0`): the spans already bound the granules, and that
   * match cost the server ~4 of the ~5 ms per 1,000 ids the check took (bench/README.md).
   */
  async #storedIds(rows: UsageRow[]): Promise<string[]> {
    const ts = new Float64Array(rows.length);
    for (let i = 0; i < rows.length; i++) ts[i] = rows[i]!.tsMs;
    const spans = timeSpans(ts.sort());
    const params: Record<string, unknown> = {};
    const conds = spans.map(([lo, hi], i) => {
      params[`lo${i}`] = lo;
      params[`hi${i}`] = hi;
      return `ts BETWEEN fromUnixTimestamp64Milli({lo${i}:Int64}, 'UTC') AND fromUnixTimestamp64Milli({hi${i}:Int64}, 'UTC')`;
    });
    const stored = await this.#select(
      `SELECT DISTINCT event_id FROM ${this.#t.usageIds}
       WHERE (${conds.join(' OR ')}) AND event_id IN ${stringTable(rows.map((r) => r.id))}
       SETTINGS use_index_for_in_with_subqueries = 0`,
      params,
    );
    return stored.map((r) => str(r['event_id']));
  }

  /**
   * Stores price book versions (idempotent by id and effective time). The catalog is kept as
   * its JSON text; `priceVersions` gives it back parsed.
   */
  async insertPriceVersions(versions: readonly StoredPriceVersionRow[]): Promise<void> {
    if (versions.length === 0) return;
    const rows = versions.map((v) => ({
      id: nonEmpty(v.id, 'price version id'),
      effective_at: dateTime(v.effectiveAt, 'effective_at'),
      catalog: JSON.stringify(v.catalog),
    }));
    await this.#client.insert({ table: this.#t.priceVersions, values: rows, format: 'JSONEachRow' });
  }

  /** Every stored price version, oldest first (`PriceBook.fromStored` takes these). */
  async priceVersions(): Promise<StoredPriceVersionRow[]> {
    const rows = await this.#select(
      `SELECT id, toUnixTimestamp64Milli(effective_at) AS effective_ms, catalog
       FROM ${this.#t.priceVersions} FINAL ORDER BY effective_at, id`,
      {},
    );
    return rows.map((r) => ({ id: str(r['id']), effectiveAt: int(r['effective_ms']), catalog: JSON.parse(str(r['catalog'])) as unknown }));
  }

  async insertLedger(events: readonly LedgerEvent[], positions?: readonly (LogPosition | undefined)[]): Promise<void> {
    if (events.length === 0) return;
    const rows = events.map((e, i) => ({
      ...positionColumns(positions?.[i]),
      event_id: nonEmpty(e.event_id, 'event_id'),
      ts: dateTime(e.ts, 'ts'),
      account_id: nonEmpty(e.account_id, 'account_id'),
      kind: e.kind,
      amount_micros: int64Text(e.amount_micros, 'amount_micros'),
      reference: e.reference,
    }));
    await this.#client.insert({ table: this.#t.ledger, values: rows, format: 'JSONEachRow' });
  }

  async insertControl(events: readonly ControlEvent[]): Promise<void> {
    const accounts: Row[] = [];
    const keys: Row[] = [];
    const plans: Row[] = [];
    const versions: PriceVersionEvent[] = [];
    for (const e of events) {
      if (e.type === 'price_version') {
        versions.push(e);
      } else if (e.type === 'plan') {
        const p = e.plan;
        plans.push({
          id: nonEmpty(p.id, 'plan.id'), name: p.name,
          requests_per_minute: p.requests_per_minute, requests_per_5h: p.requests_per_5h,
          requests_per_week: p.requests_per_week, tokens_per_minute: p.tokens_per_minute,
          concurrent_requests: p.concurrent_requests,
          created_at: dateTime(p.created_at, 'plan.created_at'),
          deleted: p.deleted ? 1 : 0,
          version: version(p.version, 'plan.version'),
          event_id: e.event_id,
          updated_at: dateTime(e.ts, 'ts'),
        });
      } else if (e.type === 'account') {
        const a = e.account;
        accounts.push({
          id: nonEmpty(a.id, 'account.id'),
          name: a.name,
          status: a.status,
          created_at: dateTime(a.created_at, 'account.created_at'),
          price_list: a.price_list ?? null,
          plan_id: a.plan_id ?? null,
          group_id: a.group_id ?? null,
          daily_credits: optMicros(a.daily_credits, 'account.daily_credits'),
          monthly_credits: optMicros(a.monthly_credits, 'account.monthly_credits'),
          overdraft_credits: optMicros(a.overdraft_credits, 'account.overdraft_credits'),
          low_balance_credits: optMicros(a.low_balance_credits, 'account.low_balance_credits'),
          admission_policy: a.admission_policy ?? null,
          version: version(a.version, 'account.version'),
          event_id: e.event_id,
          updated_at: dateTime(e.ts, 'ts'),
        });
      } else {
        // Fields picked one by one so that nothing else on the object (a secret) is written.
        const k = e.key;
        keys.push({
          id: nonEmpty(k.id, 'key.id'),
          account_id: nonEmpty(k.account_id, 'key.account_id'),
          name: k.name,
          prefix: k.prefix,
          hash: nonEmpty(k.hash, 'key.hash'),
          status: k.status,
          created_at: dateTime(k.created_at, 'key.created_at'),
          revoked_at: k.revoked_at === null ? null : dateTime(k.revoked_at, 'key.revoked_at'),
          plan_id: k.plan_id ?? null,
          group_id: k.group_id ?? null,
          hourly_credits: optMicros(k.hourly_credits, 'key.hourly_credits'),
          daily_credits: optMicros(k.daily_credits, 'key.daily_credits'),
          total_credits: optMicros(k.total_credits, 'key.total_credits'),
          ip_allowlist: k.ip_allowlist ?? [],
          allowed_models: k.allowed_models ?? [],
          expires_at: k.expires_at === null || k.expires_at === undefined ? null : dateTime(k.expires_at, 'key.expires_at'),
          version: version(k.version, 'key.version'),
          event_id: e.event_id,
          updated_at: dateTime(e.ts, 'ts'),
        });
      }
    }
    if (accounts.length > 0) {
      await this.#client.insert({ table: this.#t.accounts, values: accounts, format: 'JSONEachRow' });
    }
    if (keys.length > 0) {
      await this.#client.insert({ table: this.#t.keys, values: keys, format: 'JSONEachRow' });
    }
    if (plans.length > 0) {
      await this.#client.insert({ table: this.#t.plans, values: plans, format: 'JSONEachRow' });
    }
    await this.insertPriceVersions(versions.map((v) => ({ id: v.id, effectiveAt: v.effective_at, catalog: v.catalog })));
  }

  /** The latest version of every account (with its price list when one is assigned), ordered by id. */
  async loadAccounts(): Promise<AccountRecord[]> {
    const rows = await this.#select(
      `SELECT id, name, status, toUnixTimestamp64Milli(created_at) AS created_ms, version, price_list,
              plan_id, group_id, toString(daily_credits) AS daily_t, toString(monthly_credits) AS monthly_t,
              toString(overdraft_credits) AS overdraft_t, toString(low_balance_credits) AS low_balance_t, admission_policy
       FROM ${this.#t.accounts} FINAL ORDER BY id`,
      {},
    );
    // `price_list` only when one is assigned, as the control record carries it.
    return rows.map((r) => ({
      id: str(r['id']),
      name: str(r['name']),
      status: str(r['status']) as AccountStatus,
      created_at: int(r['created_ms']),
      ...(r['price_list'] === null || r['price_list'] === undefined ? {} : { price_list: str(r['price_list']) }),
      // Issue 8 fields only when set, as the control record carries them (absent = null).
      ...present('plan_id', r['plan_id']),
      ...present('group_id', r['group_id']),
      ...present('daily_credits', r['daily_t']),
      ...present('monthly_credits', r['monthly_t']),
      ...present('overdraft_credits', r['overdraft_t']),
      ...present('low_balance_credits', r['low_balance_t']),
      ...(r['admission_policy'] === 'strict' || r['admission_policy'] === 'clamp' ? { admission_policy: r['admission_policy'] } : {}),
      version: int(r['version']),
    }));
  }

  /** The latest version of every key (revoked ones included), ordered by id. */
  async loadKeys(): Promise<KeyRecord[]> {
    const rows = await this.#select(
      `SELECT id, account_id, name, prefix, hash, status,
              toUnixTimestamp64Milli(created_at) AS created_ms,
              toUnixTimestamp64Milli(revoked_at) AS revoked_ms,
              version, plan_id, group_id, toString(hourly_credits) AS hourly_t, toString(daily_credits) AS daily_t,
              toString(total_credits) AS total_t, ip_allowlist, allowed_models,
              toUnixTimestamp64Milli(expires_at) AS expires_ms
       FROM ${this.#t.keys} FINAL ORDER BY id`,
      {},
    );
    return rows.map((r) => ({
      id: str(r['id']),
      account_id: str(r['account_id']),
      name: str(r['name']),
      prefix: str(r['prefix']),
      hash: str(r['hash']),
      status: str(r['status']) as KeyStatus,
      created_at: int(r['created_ms']),
      revoked_at: r['revoked_ms'] === null ? null : int(r['revoked_ms']),
      ...present('plan_id', r['plan_id']),
      ...present('group_id', r['group_id']),
      ...present('hourly_credits', r['hourly_t']),
      ...present('daily_credits', r['daily_t']),
      ...present('total_credits', r['total_t']),
      ...(Array.isArray(r['ip_allowlist']) && r['ip_allowlist'].length > 0 ? { ip_allowlist: (r['ip_allowlist'] as unknown[]).map(str) } : {}),
      ...(Array.isArray(r['allowed_models']) && r['allowed_models'].length > 0 ? { allowed_models: (r['allowed_models'] as unknown[]).map(str) } : {}),
      ...(r['expires_ms'] === null || r['expires_ms'] === undefined ? {} : { expires_at: int(r['expires_ms']) }),
      version: int(r['version']),
    }));
  }

  /** The latest version of every plan (tombstones included), ordered by id. */
  async loadPlans(): Promise<PlanRecord[]> {
    const rows = await this.#select(
      `SELECT id, name, requests_per_minute, requests_per_5h, requests_per_week, tokens_per_minute,
              concurrent_requests, toUnixTimestamp64Milli(created_at) AS created_ms, deleted, version
       FROM ${this.#t.plans} FINAL ORDER BY id`,
      {},
    );
    const limit = (v: unknown) => (v === null || v === undefined ? null : int(v));
    return rows.map((r) => ({
      id: str(r['id']), name: str(r['name']),
      requests_per_minute: limit(r['requests_per_minute']), requests_per_5h: limit(r['requests_per_5h']),
      requests_per_week: limit(r['requests_per_week']), tokens_per_minute: limit(r['tokens_per_minute']),
      concurrent_requests: limit(r['concurrent_requests']),
      created_at: int(r['created_ms']),
      ...(int(r['deleted']) === 1 ? { deleted: true } : {}),
      version: int(r['version']),
    }));
  }

  /**
   * Per account: Σ ledger amount − Σ usage cost, in micro-credits, leaving out facts the ledger
   * group refused (`NOT_REFUSED`). Accounts with neither ledger entries nor usage are absent
   * (their balance is 0n).
   */
  async balances(): Promise<Map<string, bigint>> {
    const rows = await this.#select(
      `SELECT account_id, toString(sum(amount)) AS balance_text FROM (
         SELECT account_id, sum(toInt128(amount_micros)) AS amount
         FROM ${this.#t.ledger} FINAL WHERE ${NOT_REFUSED(this.#t.quarantine)} GROUP BY account_id
         UNION ALL
         SELECT account_id, -sum(toInt128(cost_micros)) AS amount
         FROM ${this.#t.usage} FINAL WHERE ${NOT_REFUSED(this.#t.quarantine)} GROUP BY account_id
       ) GROUP BY account_id ORDER BY account_id`,
      {},
    );
    return new Map(rows.map((r) => [str(r['account_id']), money(r['balance_text'])]));
  }

  /**
   * Balances as of log positions: a fact counts when any stored copy of it is at or before
   * `at[table][partition]` (facts without a position, from the embedded mode, always count).
   * With `at` = `logPositions()` this is exact even while the sink keeps inserting, because it
   * inserts in log order.
   *
   * The bound picks rows BEFORE the copies of one event are folded into one (`boundedFacts`):
   * with the bound after `FINAL`, which keeps the newest copy, an event whose later copy (a
   * producer's retry, stored at a higher offset) lay past the bound was left out whole, and a
   * rebuild from such a snapshot forgot its charge for good (its id still read as applied).
   */
  async balancesAt(at: LogPositions): Promise<Map<string, bigint>> {
    const rows = await this.#select(
      `SELECT account_id, toString(sum(amount)) AS balance_text FROM (
         SELECT account_id, sum(toInt128(amount_micros)) AS amount
         FROM ${boundedFacts(this.#t.ledger, 'l', this.#t.quarantine)} GROUP BY account_id
         UNION ALL
         SELECT account_id, -sum(toInt128(cost_micros)) AS amount
         FROM ${boundedFacts(this.#t.usage, 'u', this.#t.quarantine)} GROUP BY account_id
       ) GROUP BY account_id ORDER BY account_id
       ${await this.#boundedSettings()}`,
      boundParams(at),
    );
    return new Map(rows.map((r) => [str(r['account_id']), money(r['balance_text'])]));
  }

  /**
   * What each key spent, as of log positions like `balancesAt`, per (account, key): in total
   * and since each of `since`'s instants (epoch ms: the starts of the spend windows open now),
   * by the usage events' `ts`, µc. Only pairs that spent something; rows in account, key order.
   * What a rebuild gives back to the spend windows (`BalanceSnapshot.spendWindows` of
   * @tollgate/ledger).
   */
  async spendAt(at: LogPositions, since: { hour: number; day: number; month: number }): Promise<KeySpend[]> {
    const rows = await this.#select(
      `SELECT account_id, key_id, toString(sum(c)) AS total_text,
              toString(sumIf(c, ts >= fromUnixTimestamp64Milli({hour:Int64}, 'UTC'))) AS hour_text,
              toString(sumIf(c, ts >= fromUnixTimestamp64Milli({day:Int64}, 'UTC'))) AS day_text,
              toString(sumIf(c, ts >= fromUnixTimestamp64Milli({month:Int64}, 'UTC'))) AS month_text
       FROM (SELECT account_id, key_id, ts, toInt128(cost_micros) AS c FROM ${boundedFacts(this.#t.usage, 'u', this.#t.quarantine)})
       GROUP BY account_id, key_id HAVING sum(c) != 0 ORDER BY account_id, key_id
       ${await this.#boundedSettings()}`,
      { ...boundParams(at), hour: since.hour, day: since.day, month: since.month },
    );
    return rows.map((r) => ({
      accountId: str(r['account_id']), keyId: str(r['key_id']), total: money(r['total_text']),
      hour: money(r['hour_text']), day: money(r['day_text']), month: money(r['month_text']),
    }));
  }

  /** Ids of usage events at or after `sinceMs` and within the log positions (rebuild). */
  async usageIdsAt(at: LogPositions, sinceMs: number): Promise<string[]> {
    const rows = await this.#select(
      `SELECT DISTINCT event_id FROM ${this.#t.usage}
       WHERE ts >= fromUnixTimestamp64Milli({since:Int64}, 'UTC') AND ${BOUND('u')}`,
      { ...boundParams(at), since: sinceMs },
    );
    return rows.map((r) => str(r['event_id']));
  }

  /**
   * Ledger entries (event id → amount and kind) as of log positions, like `balancesAt`: the
   * applied ones only (a refused grant is in `ledgerRefusals`, and in no balance).
   */
  async ledgerEntriesAt(at: LogPositions): Promise<Map<string, StoredLedgerEntry>> {
    const rows = await this.#select(
      `SELECT event_id, toString(amount_micros) AS amount_text, kind
       FROM ${boundedFacts(this.#t.ledger, 'l', this.#t.quarantine)}
       ${await this.#boundedSettings()}`,
      boundParams(at),
    );
    return ledgerEntryMap(rows);
  }

  /**
   * Every event id the `ledger` consumer group refused to apply (`LEDGER_REFUSED_IDS`), with its
   * reason (the first recorded): what a rebuilt hot ledger answers for a reference that was refused, so it stays
   * refused (409) instead of reading as applied or free. Few rows (refusals are rare).
   */
  async ledgerRefusals(): Promise<Map<string, string>> {
    const rows = await this.#select(
      `SELECT event_id, argMin(reason, ts) AS first_reason FROM ${this.#t.quarantine} FINAL
       WHERE ${LEDGER_REFUSAL} GROUP BY event_id`,
      {},
    );
    return new Map(rows.map((r) => [str(r['event_id']), str(r['first_reason'])]));
  }

  /**
   * The account of every ledger entry and of every usage id that `ledgerEntriesAt` and
   * `usageIdsAt(at, sinceMs)` answer (event id → account id): a ledger on Redis Cluster keeps
   * each id in its account's hash slot, so its rebuild needs them.
   */
  async eventAccountsAt(at: LogPositions, sinceMs: number): Promise<Map<string, string>> {
    const params = { ...boundParams(at), since: sinceMs };
    const [ledger, usage] = await Promise.all([
      this.#select(`SELECT DISTINCT event_id, account_id FROM ${this.#t.ledger} WHERE ${BOUND('l')}`, params),
      this.#select(
        `SELECT DISTINCT event_id, account_id FROM ${this.#t.usage}
         WHERE ts >= fromUnixTimestamp64Milli({since:Int64}, 'UTC') AND ${BOUND('u')}`,
        params,
      ),
    ]);
    return new Map([...ledger, ...usage].map((r) => [str(r['event_id']), str(r['account_id'])]));
  }

  async usageTotals(filter: UsageFilter = {}): Promise<UsageTotals> {
    const w = usageWhere(filter);
    const rows = await this.#select(
      `SELECT ${TOTALS_SELECT} FROM ${this.#t.usage} FINAL ${w.sql}`,
      w.params,
    );
    const r = rows[0];
    if (r === undefined) throw new Error('usageTotals: aggregate returned no row');
    return totals(r);
  }

  async usageBreakdown(filter: UsageFilter & { groupBy: UsageGroupBy }): Promise<UsageGroup[]> {
    const expr = GROUP_EXPR[filter.groupBy];
    if (expr === undefined) {
      throw new WarehouseInputError(`groupBy must be one of ${Object.keys(GROUP_EXPR).join(', ')}`);
    }
    const w = usageWhere(filter);
    const rows = await this.#select(
      `SELECT ${expr} AS group_key, ${TOTALS_SELECT}
       FROM ${this.#t.usage} FINAL ${w.sql}
       GROUP BY group_key ORDER BY group_key`,
      w.params,
    );
    return rows.map((r) => ({ group: str(r['group_key']), ...totals(r) }));
  }

  /** Distinct usage event ids matching the filter, in time order. */
  async usageEventIds(filter: UsageFilter = {}): Promise<string[]> {
    const w = usageWhere(filter);
    const rows = await this.#select(
      `SELECT event_id FROM ${this.#t.usage} FINAL ${w.sql} ORDER BY ts, event_id`,
      w.params,
    );
    return rows.map((r) => str(r['event_id']));
  }

  /**
   * Usage events matching the filter in time order (then by id), at most `limit` (default
   * 1000, at most 100,000), starting after `after`: page with the last event's `ts` and id.
   * Each in the version it was written in (version 1 events as version 1: use `toV2`).
   */
  async usageEvents(filter: UsageFilter & { after?: UsageCursor; limit?: number } = {}): Promise<UsageEvent[]> {
    const w = usageWhere(filter);
    const limit = filter.limit ?? 1000;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 100_000) throw new WarehouseInputError(`limit must be 1..100000, got ${limit}`);
    const conds = w.sql === '' ? [] : [w.sql.slice('WHERE '.length)];
    const params: Record<string, unknown> = { ...w.params, limit };
    if (filter.after !== undefined) {
      conds.push("(ts, event_id) > (fromUnixTimestamp64Milli({after_ts:Int64}, 'UTC'), {after_id:String})");
      params['after_ts'] = epochMs(filter.after.ts, 'after.ts');
      params['after_id'] = filter.after.eventId;
    }
    const rows = await this.#select(
      `SELECT ${USAGE_SELECT} FROM ${this.#t.usage} FINAL ${conds.length === 0 ? '' : `WHERE ${conds.join(' AND ')}`}
       ORDER BY ts, event_id LIMIT {limit:UInt32}`,
      params,
    );
    return rows.map(usageFromRow);
  }

  /**
   * Usage event ids stored more than once in raw (unmerged) rows: evidence that an event
   * reached the warehouse twice (inserted again, or twice in one batch: the insert does not
   * collapse a repeat, `optimize_on_insert = 0`). Only a lower bound: duplicates already merged
   * away by ClickHouse do not show here, so an empty list proves nothing by itself.
   */
  async duplicateUsageIds(): Promise<string[]> {
    return this.#duplicates(this.#t.usage);
  }

  /** Like duplicateUsageIds, for ledger entries. */
  async duplicateLedgerIds(): Promise<string[]> {
    return this.#duplicates(this.#t.ledger);
  }

  async ledgerTotals(accountId?: string): Promise<LedgerTotals> {
    const where = `WHERE ${NOT_REFUSED(this.#t.quarantine)}${accountId === undefined ? '' : ' AND account_id = {account_id:String}'}`;
    const rows = await this.#select(
      `SELECT kind, count() AS n_entries, toString(sum(toInt128(amount_micros))) AS amount_text
       FROM ${this.#t.ledger} FINAL ${where} GROUP BY kind ORDER BY kind`,
      accountId === undefined ? {} : { account_id: accountId },
    );
    const out: LedgerTotals = {
      entries: 0,
      amountMicros: 0n,
      byKind: { grant: 0n, top_up: 0n, adjustment: 0n, refund: 0n },
    };
    for (const r of rows) {
      const amount = money(r['amount_text']);
      out.entries += int(r['n_entries']);
      out.amountMicros += amount;
      out.byKind[str(r['kind']) as LedgerKind] = amount;
    }
    return out;
  }

  /**
   * Every applied ledger event id with its amount and kind (credit grants are few; this stays
   * small). Refused grants are not here but in `ledgerRefusals`, as in `ledgerEntriesAt`.
   */
  async ledgerEntries(): Promise<Map<string, StoredLedgerEntry>> {
    const rows = await this.#select(
      `SELECT event_id, toString(amount_micros) AS amount_text, kind FROM ${this.#t.ledger} FINAL
       WHERE ${NOT_REFUSED(this.#t.quarantine)}`,
      {},
    );
    return ledgerEntryMap(rows);
  }

  /**
   * The highest log offset stored per partition, for `usage` and `ledger`: the warehouse holds
   * a prefix of each partition (the sink inserts in log order), so hot state rebuilt from it
   * is exact as of these positions. Raw rows, not FINAL: a collapsed duplicate still counts.
   */
  async logPositions(): Promise<LogPositions> {
    const read = async (table: string) => {
      const rows = await this.#select(
        `SELECT log_partition, toString(max(log_offset)) AS offset_text FROM ${table}
         WHERE log_offset >= 0 GROUP BY log_partition ORDER BY log_partition`,
        {},
      );
      return new Map(rows.map((r) => [int(r['log_partition']), BigInt(str(r['offset_text']))]));
    };
    const usage = await read(this.#t.usage);
    const ledger = await read(this.#t.ledger);
    // A quarantined event is consumed too: without it the positions would stop short of it
    // forever, and reconcile would wait for an offset that never arrives.
    const rows = await this.#select(
      `SELECT topic, log_partition, toString(max(log_offset)) AS offset_text FROM ${this.#t.quarantine}
       WHERE log_offset >= 0 AND consumer_group = 'warehouse' AND topic IN ('usage', 'ledger')
       GROUP BY topic, log_partition`,
      {},
    );
    for (const r of rows) {
      const into = str(r['topic']) === 'usage' ? usage : ledger;
      const p = int(r['log_partition']);
      const o = BigInt(str(r['offset_text']));
      if ((into.get(p) ?? -1n) < o) into.set(p, o);
    }
    return { usage, ledger };
  }

  /** One usage event in the version it was written in (version 1 rows as version 1), or undefined. */
  async getUsageEvent(eventId: string): Promise<UsageEvent | undefined> {
    const rows = await this.#select(
      `SELECT ${USAGE_SELECT} FROM ${this.#t.usage} FINAL WHERE event_id = {event_id:String} LIMIT 1`,
      { event_id: eventId },
    );
    const r = rows[0];
    return r === undefined ? undefined : usageFromRow(r);
  }

  /**
   * Repairs what a cut insert of the last `withinMs` (default one hour) may have left wrong, for
   * the warehouse sink's start (a previous process may have been killed mid-insert):
   * `restoreRecentIds`, then `repairRollups` over `recentRollupScope` (rollup-repair.ts). Ids
   * first: the repair makes the rollups count every raw row, so each of those rows' ids must be in
   * `usage_event_ids` before any of them is redelivered, or the redelivery counts it again.
   * `owned`: only the rollups of the accounts it returns (of those it is given) are rebuilt,
   * the ones whose usage no other writer inserts meanwhile (a consumer's assignment,
   * `Assignment.owned`; the ids restore stays whole: an id put back twice is harmless).
   * `beforeWrite`: awaited before each rebuild (a consumer's fence). Returns, per grain, the
   * (account, bucket) rows rebuilt; tells `onRepair` when anything changed. Throws what
   * ClickHouse throws, and what `owned` and `beforeWrite` reject with.
   */
  async repairRecentRollups(
    withinMs?: number,
    opts: { owned?: (accounts: string[]) => Promise<string[]>; beforeWrite?: () => Promise<void> } = {},
  ): Promise<RollupRepairResult> {
    const restored = await this.restoreRecentIds(withinMs);
    let scope = await recentRollupScope(this, withinMs);
    if (opts.owned && scope.length > 0) {
      const mine = new Set(await opts.owned([...new Set(scope.map((p) => p.accountId))]));
      scope = scope.filter((p) => mine.has(p.accountId));
    }
    const rebuilt = await repairRollups(this, scope, opts.beforeWrite ? { beforeWrite: opts.beforeWrite } : {});
    if (restored > 0 || rebuilt.minute + rebuilt.hour + rebuilt.day > 0) this.#onRepair?.({ rollupRows: rebuilt, idsRestored: restored, where: 'start' });
    return rebuilt;
  }

  /**
   * Puts back the `usage_event_ids` rows a cut insert of the last `withinMs` lost
   * (`restoreRecentIds` in rollup-repair.ts); returns how many (ts, id) pairs. Without
   * `withinMs`: the last hour, or further back to the first usage insert of this process that
   * failed since the last such restore (an outage longer than the hour), and the insert path's
   * "ids suspect" flag is cleared unless another insert failed meanwhile. Throws what
   * ClickHouse throws.
   */
  async restoreRecentIds(withinMs?: number): Promise<number> {
    if (withinMs !== undefined) return restoreRecentIds(this, withinMs);
    const failures = this.#failures;
    const since = this.#suspectSinceMs;
    const window = since === undefined ? RECENT_RESTORE_MS : Math.max(RECENT_RESTORE_MS, Date.now() - since);
    const restored = await restoreRecentIds(this, window);
    if (this.#failures === failures) {
      this.#idsSuspect = false;
      this.#suspectSinceMs = undefined;
    }
    return restored;
  }

  /** Closes the client given at construction. */
  async close(): Promise<void> {
    await this.#client.close();
  }

  async #duplicates(table: string): Promise<string[]> {
    const rows = await this.#select(
      `SELECT event_id FROM ${table} GROUP BY event_id HAVING count() > 1 ORDER BY event_id`,
      {},
    );
    return rows.map((r) => str(r['event_id']));
  }

  /** The table names of this warehouse (database and prefix applied), for modules that query it. */
  get tables(): TableNames {
    return this.#t;
  }

  /**
   * Runs one read with server-side parameters (`{name:Type}` placeholders bound from `params`)
   * and returns its rows as JSON objects (64-bit integers as decimal text). Request data goes
   * in as a parameter, or as a list through `stringTable` (sql-values.ts: lists that grow with
   * the data); never interpolate it into `query` otherwise. For the report modules
   * (analytics.ts, billing.ts).
   */
  async select(query: string, params: Record<string, unknown> = {}): Promise<Row[]> {
    return this.#select(query, params);
  }

  /** See #prewhereFirst. */
  #boundedSettings(): Promise<string> {
    this.#prewhereFirst ??= this.#select(`SELECT count() AS n FROM system.settings WHERE name = 'apply_prewhere_after_final'`, {})
      .then((rows) => (int(rows[0]?.['n'] ?? 0) > 0 ? 'SETTINGS apply_prewhere_after_final = 0' : ''))
      .catch((err: unknown) => { this.#prewhereFirst = undefined; throw err; });
    return this.#prewhereFirst;
  }

  /**
   * Runs one statement (DDL or INSERT … SELECT) with server-side parameters (and `stringTable` lists, as `select`).
   * @throws WarehouseUnavailableError when the server cannot be reached or does not answer in time
   */
  async command(query: string, params: Record<string, unknown> = {}): Promise<void> {
    await this.#reaching(() => this.#client.command({ query, query_params: params, clickhouse_settings: sizeSettings(query) }));
  }

  /**
   * Runs one write that must not outlive its call (a rollup repair's DELETE or INSERT … SELECT):
   * with a query id of its own, and when the call fails (a timeout, a dropped connection: the
   * server may go on with it, or receive it late) the statement is ended at the server
   * (`KILL QUERY … SYNC`) before the failure is thrown, so it cannot land after another member
   * rebuilt the same rows (a breaker's MEDIUM: a rebuild landing 80 s late doubled a minute
   * rollup). A kill that fails too (the server away) is retried before this process's next
   * usage insert, like a failed insert's. Throws what `command` throws.
   */
  async commandSettled(query: string, params: Record<string, unknown> = {}): Promise<void> {
    const queryId = `tollgate-rollup-repair-${randomUUID()}`;
    try {
      await this.#reaching(() => this.#client.command({ query, query_params: params, query_id: queryId, clickhouse_settings: sizeSettings(query) }));
    } catch (err) {
      try {
        await this.command('KILL QUERY WHERE query_id = {id:String} SYNC', { id: queryId });
      } catch {
        this.#unsettled.add(queryId);
      }
      throw err;
    }
  }

  /**
   * Inserts rows (JSONEachRow) into one of this warehouse's tables (`tables.*`).
   * @throws WarehouseUnavailableError when the server cannot be reached or does not answer in time
   */
  async insertRows(table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#reaching(() => this.#client.insert({ table, values: rows as Record<string, unknown>[], format: 'JSONEachRow' }));
  }

  // Settings that must hold for one query only go in its SETTINGS clause, never in
  // `clickhouse_settings`: chDB's connection applies those as `SET` on its session, where they
  // stay for every later query of the process (a dedup token, an index switch). Only settings
  // every query wants alike (READ_SETTINGS) or that only widen a limit (max_query_size) are
  // passed that way.
  /** @throws WarehouseUnavailableError when the server cannot be reached or does not answer in time */
  async #select(query: string, params: Record<string, unknown>): Promise<Row[]> {
    return this.#reaching(async () => {
      const rs = await this.#client.query({
        query,
        format: 'JSONEachRow',
        query_params: params,
        clickhouse_settings: { ...READ_SETTINGS, ...sizeSettings(query) },
      });
      return rs.json<Row>();
    });
  }

  /** `call` to the server, a transport failure of it rethrown as WarehouseUnavailableError (`unavailableError`). */
  async #reaching<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw unavailableError(err) ?? err;
    }
  }
}

function usageWhere(f: UsageFilter): { sql: string; params: Record<string, unknown> } {
  const conds: string[] = [];
  const params: Record<string, unknown> = {};
  if (f.accountId !== undefined) {
    conds.push('account_id = {account_id:String}');
    params['account_id'] = f.accountId;
  }
  if (f.keyId !== undefined) {
    conds.push('key_id = {key_id:String}');
    params['key_id'] = f.keyId;
  }
  if (f.from !== undefined) {
    conds.push("ts >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')");
    params['from_ms'] = epochMs(f.from, 'from');
  }
  if (f.to !== undefined) {
    conds.push("ts < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')");
    params['to_ms'] = epochMs(f.to, 'to');
  }
  return { sql: conds.length === 0 ? '' : `WHERE ${conds.join(' AND ')}`, params };
}

function totals(r: Row): UsageTotals {
  const quantities = zeroQuantities();
  for (const d of DIMENSION_COLUMNS) quantities[d.key] = int(r[`q_${d.key}`]);
  const upstreamCost: Record<string, bigint> = {};
  const m = r['upstream_cost_map'];
  if (m !== null && typeof m === 'object') {
    for (const [currency, amount] of Object.entries(m as Record<string, unknown>)) upstreamCost[currency] = money(amount);
  }
  return {
    requests: int(r['n_requests']),
    quantities,
    costMicros: money(r['cost_text']),
    upstreamCost,
    upstreamCostUnknown: int(r['n_upstream_unknown']),
    unpricedRequests: int(r['n_unpriced']),
  };
}

function nullableStr(v: unknown): string | null {
  return v === null || v === undefined ? null : str(v);
}

/** A usage row as the event it was written as: version 1 rows in the version 1 shape. */
export function usageFromRow(r: Row): UsageEvent {
  const anomalies = Array.isArray(r['anomalies']) ? r['anomalies'].map(str) : [];
  const quantities = zeroQuantities();
  for (const d of DIMENSION_COLUMNS) quantities[d.key] = int(r[d.column]);
  const common = {
    type: 'usage' as const,
    event_id: str(r['event_id']),
    ts: int(r['ts_ms']),
    account_id: str(r['account_id']),
    key_id: str(r['key_id']),
    model: str(r['model']),
    catalog_model: str(r['catalog_model']),
    upstream_model: str(r['upstream_model']),
  };
  const tail = {
    cost_micros: money(r['cost_text']).toString(),
    status: str(r['status']) as UsageStatus,
    http_status: int(r['http_status']),
    latency_ms: int(r['latency_ms']),
    ttft_ms: r['ttft_ms'] === null ? null : int(r['ttft_ms']),
    stream: r['stream'] === true,
    upstream_request_id: nullableStr(r['upstream_request_id']),
    gateway_id: str(r['gateway_id']),
    // '' / 0: not recorded (an event of a gateway before issue 10)
    ...(typeof r['upstream_id'] === 'string' && r['upstream_id'] !== '' ? { upstream_id: r['upstream_id'] } : {}),
    ...(r['attempts'] !== undefined && int(r['attempts']) > 0 ? { attempts: int(r['attempts']) } : {}),
    ...(anomalies.length > 0 ? { anomalies } : {}),
  };
  if (int(r['event_version']) !== 2) {
    return {
      ...common,
      input_tokens: quantities.input,
      output_tokens: quantities.output,
      cache_read_tokens: quantities.cache_read,
      cache_write_5m_tokens: quantities.cache_write_5m,
      cache_write_1h_tokens: quantities.cache_write_1h,
      ...tail,
    };
  }
  const iterations = (JSON.parse(str(r['iterations'])) as UsageIteration[]).map((it) => ({
    ...it, quantities: { ...zeroQuantities(), ...it.quantities },
  }));
  const v2: UsageEventV2 = {
    ...common,
    v: 2,
    served_model: nullableStr(r['served_model']),
    quantities,
    iterations,
    service_tier: nullableStr(r['service_tier']),
    inference_geo: nullableStr(r['inference_geo']),
    speed: nullableStr(r['speed']),
    stop_reason: nullableStr(r['stop_reason']),
    thinking_tokens: r['thinking_tokens'] === null ? null : int(r['thinking_tokens']),
    ...tail,
    upstream_cost_micros: r['upstream_cost_text'] === null ? null : money(r['upstream_cost_text']).toString(),
    upstream_currency: nullableStr(r['upstream_currency']),
    price_version: str(r['price_version']),
    price_list: str(r['price_list']),
    unit_prices: Object.fromEntries(Object.entries((r['unit_prices'] ?? {}) as Record<string, unknown>).map(([k, v]) => [k, str(v)])),
    tier: nullableStr(r['tier']),
    multipliers: Array.isArray(r['multipliers']) ? r['multipliers'].map(str) : [],
    unpriced: Array.isArray(r['unpriced']) ? r['unpriced'].map(str) : [],
  };
  return v2;
}

// ---- input validation: ClickHouse would silently wrap an out-of-range Int64 or UInt32 ----

function nonEmpty(v: string, field: string): string {
  if (typeof v !== 'string' || v === '') {
    throw new WarehouseInputError(`${field} must be a non-empty string`);
  }
  return v;
}

/**
 * Text a String column stores exactly: a string of well-formed UTF-16 (null too where
 * `nullable`). Half a surrogate pair would be stored as U+FFFD by one insert body and refused or
 * kept as invalid UTF-8 by the other, and an event id read back unequal is counted again at its
 * redelivery. WarehouseInputError otherwise.
 */
function storedText(v: unknown, field: string, nullable = false): void {
  if (typeof v === 'string' ? v.isWellFormed() : v === null && nullable) return;
  if (typeof v !== 'string') throw new WarehouseInputError(`${field} must be a string${nullable ? ' or null' : ''}, got ${v === null ? 'null' : typeof v}`);
  throw new WarehouseInputError(`${field} has half of a UTF-16 surrogate pair`);
}

/** A list of texts (`anomalies`, `multipliers`, `unpriced`): an array of `storedText`. */
function storedTexts(v: unknown, field: string): void {
  if (!Array.isArray(v)) throw new WarehouseInputError(`${field} must be an array of strings`);
  for (let i = 0; i < v.length; i++) {
    const t: unknown = v[i];
    if (typeof t !== 'string' || !t.isWellFormed()) storedText(t, `${field}[${i}]`); // throws, naming the element
  }
}

/** `v` when it is a plain object (`plainObject` of @tollgate/events, decodeEvent's rule); WarehouseInputError otherwise. */
function plainRecord(v: unknown, field: string): Record<string, unknown> {
  if (!plainObject(v)) throw new WarehouseInputError(`${field} must be a plain object`);
  return v;
}

/** Non-negative decimal text of at most 15 digits, no leading zero: already its own canonical form, below 2^53. */
const SHORT_UNSIGNED_RE = /^(0|[1-9]\d{0,14})$/;

function int64Text(v: string, field: string, min: bigint = INT64_MIN): string {
  // Most values (every usage cost) are short: no BigInt round trip for those (min is ≤ 0 everywhere).
  if (typeof v === 'string' && v.length <= 15 && min <= 0n && SHORT_UNSIGNED_RE.test(v)) return v;
  if (typeof v !== 'string' || !INT_RE.test(v)) {
    throw new WarehouseInputError(`${field} must be an integer decimal string, got ${JSON.stringify(v)}`);
  }
  const n = BigInt(v);
  if (n < min || n > INT64_MAX) {
    throw new WarehouseInputError(`${field} ${v} is out of range [${min}, ${INT64_MAX}]`);
  }
  return n.toString();
}

/** A spend limit (µc decimal text, ≥ 0) or null when none is set. */
function optMicros(v: string | null | undefined, field: string): string | null {
  return v === null || v === undefined ? null : int64Text(v, field, 0n);
}

function uint32(v: number, field: string): number {
  return uintUpTo(v, UINT32_MAX, field);
}

/** `v` when it is an integer in [0, max] (UInt32, UInt16: 65535, UInt8: 255); WarehouseInputError otherwise. */
function uintUpTo(v: number, max: number, field: string): number {
  if (!Number.isSafeInteger(v) || v < 0 || v > max) {
    throw new WarehouseInputError(`${field} must be an integer in [0, ${max}], got ${v}`);
  }
  return v;
}

function version(v: number, field: string): number {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new WarehouseInputError(`${field} must be a non-negative safe integer, got ${v}`);
  }
  return v;
}

function epochMs(v: number, field: string): number {
  if (!Number.isSafeInteger(v)) {
    throw new WarehouseInputError(`${field} must be epoch milliseconds (an integer), got ${v}`);
  }
  return v;
}

/** How far back a restore of lost ids looks by default (ms): a cut found at a process's start. */
const RECENT_RESTORE_MS = 3_600_000;
/** Subtracted from a failed insert's start (ms) for the restore's look-back: the server stamps `inserted_at` by its own clock. */
const RESTORE_CLOCK_MARGIN_MS = 300_000;

/** 2300-01-01T00:00:00Z: the first millisecond `dateTime` refuses. */
const DATETIME_END_MS = Date.UTC(2300, 0, 1);
/** The minute `dateTime` formatted last, and its `YYYY-MM-DD hh:mm:` text. */
let minuteCached = Number.NaN;
let minuteText = '';

/** Epoch ms a DateTime64(3) column takes here: an integer in 1970 … 2299; WarehouseInputError otherwise. */
function checkDateTime(ms: number, field: string): void {
  epochMs(ms, field);
  if (ms < 0 || ms >= DATETIME_END_MS) throw new WarehouseInputError(`${field} ${ms} is outside 1970..2299`);
}

// DateTime64(3, 'UTC') text, `YYYY-MM-DD hh:mm:ss.mmm`. A bare integer would also parse, but its
// reading (seconds or milliseconds) depends on its digit count; this text form has one meaning.
// The minute's text is kept from the call before (a batch's events are minutes apart at most):
// the Date and its ISO string were a tenth of the usage row's cost (bench/README.md).
function dateTime(ms: number, field: string): string {
  checkDateTime(ms, field);
  const minute = Math.floor(ms / 60_000);
  if (minute !== minuteCached) {
    minuteText = new Date(minute * 60_000).toISOString().slice(0, 17).replace('T', ' ');
    minuteCached = minute;
  }
  const inMinute = ms - minute * 60_000;
  const sec = Math.floor(inMinute / 1000);
  const milli = inMinute - sec * 1000;
  return `${minuteText}${sec < 10 ? '0' : ''}${sec}.${milli < 100 ? (milli < 10 ? '00' : '0') : ''}${milli}`;
}

/**
 * One usage event validated for its insert row (WarehouseInputError otherwise), and what the
 * rollup_skip check and the repair need of it. Both insert bodies (`usageJsonBody`,
 * `usageNativeBody`) write their values from it through USAGE_COLUMNS.
 */
interface UsageRow {
  /** the event as version 2 (a version 1 event through `toV2`) */
  e: UsageEventV2;
  /** `event_version`: the event's own version, 1 or 2 */
  version: number;
  id: string;
  /** epoch ms, within 1970 … MAX_USAGE_EPOCH_MS */
  tsMs: number;
  account: string;
  /** log partition (Int32), -1 without a durable log */
  partition: number;
  /** log offset as Int64 decimal text, '-1' without a durable log */
  offset: string;
  /** `cost_micros` as canonical Int64 decimal text (µc, ≥ 0) */
  cost: string;
  /** `upstream_cost_micros` likewise, or null */
  upstreamCost: string | null;
  /** `iterations` as its stored JSON text (`[]` for none) */
  iterations: string;
}

/**
 * How a usage column is sent: the type a Native block declares for it and the JS value `get`
 * gives. A column of repeating values goes as LowCardinality even where the table's type is plain
 * (`account_id`, `key_id`, `served_model`, `iterations`, `unit_prices`): the server converts it
 * (`input_format_native_allow_types_conversion`, on by default) at no measurable cost, and a
 * value met before costs the consumer a Map lookup instead of its bytes. `DateTime64`'s value
 * is epoch ms (the JSON body writes it as `dateTime` text); Int64 columns give decimal text.
 */
type UsageColumnKind = 'Int32' | 'Int64' | 'Nullable(Int64)' | 'UInt8' | 'UInt16' | 'UInt32' | 'Nullable(UInt32)' | 'Bool'
  | 'String' | 'Nullable(String)' | 'LowCardinality(String)' | 'LowCardinality(Nullable(String))' | 'DateTime64'
  | 'Array(String)' | 'Array(LowCardinality(String))' | 'Map(LowCardinality(String), LowCardinality(String))';

interface UsageColumn {
  name: string;
  kind: UsageColumnKind;
  get(r: UsageRow): unknown;
}

/**
 * The columns of a usage insert in the order both bodies write them, rollup_skip (known only
 * after the check) not among them: it comes last. The dimension columns come from
 * DIMENSION_COLUMNS. The values are the ones the JSONCompactEachRow body had before the Native
 * body existed, so chDB's inserts are byte for byte what they were.
 */
const USAGE_COLUMNS: readonly UsageColumn[] = [
  { name: 'log_partition', kind: 'Int32', get: (r) => r.partition },
  { name: 'log_offset', kind: 'Int64', get: (r) => r.offset },
  { name: 'event_id', kind: 'String', get: (r) => r.id },
  { name: 'ts', kind: 'DateTime64', get: (r) => r.tsMs },
  { name: 'account_id', kind: 'LowCardinality(String)', get: (r) => r.account },
  { name: 'key_id', kind: 'LowCardinality(String)', get: (r) => r.e.key_id },
  { name: 'model', kind: 'LowCardinality(String)', get: (r) => r.e.model },
  { name: 'catalog_model', kind: 'LowCardinality(String)', get: (r) => r.e.catalog_model },
  { name: 'upstream_model', kind: 'LowCardinality(String)', get: (r) => r.e.upstream_model },
  ...DIMENSION_COLUMNS.map((d): UsageColumn => ({ name: d.column, kind: 'UInt32', get: (r) => r.e.quantities[d.key] ?? 0 })),
  { name: 'cost_micros', kind: 'Int64', get: (r) => r.cost },
  { name: 'status', kind: 'LowCardinality(String)', get: (r) => r.e.status },
  { name: 'http_status', kind: 'UInt16', get: (r) => r.e.http_status },
  { name: 'latency_ms', kind: 'UInt32', get: (r) => r.e.latency_ms },
  { name: 'ttft_ms', kind: 'Nullable(UInt32)', get: (r) => r.e.ttft_ms },
  { name: 'stream', kind: 'Bool', get: (r) => r.e.stream },
  { name: 'upstream_request_id', kind: 'Nullable(String)', get: (r) => r.e.upstream_request_id },
  { name: 'gateway_id', kind: 'LowCardinality(String)', get: (r) => r.e.gateway_id },
  { name: 'upstream_id', kind: 'LowCardinality(String)', get: (r) => r.e.upstream_id ?? '' },
  { name: 'attempts', kind: 'UInt8', get: (r) => r.e.attempts ?? 0 },
  { name: 'anomalies', kind: 'Array(LowCardinality(String))', get: (r) => r.e.anomalies ?? [] },
  { name: 'event_version', kind: 'UInt8', get: (r) => r.version },
  { name: 'served_model', kind: 'LowCardinality(Nullable(String))', get: (r) => r.e.served_model },
  { name: 'iterations', kind: 'LowCardinality(String)', get: (r) => r.iterations },
  { name: 'service_tier', kind: 'LowCardinality(Nullable(String))', get: (r) => r.e.service_tier },
  { name: 'inference_geo', kind: 'LowCardinality(Nullable(String))', get: (r) => r.e.inference_geo },
  { name: 'speed', kind: 'LowCardinality(Nullable(String))', get: (r) => r.e.speed },
  { name: 'stop_reason', kind: 'LowCardinality(Nullable(String))', get: (r) => r.e.stop_reason },
  { name: 'thinking_tokens', kind: 'Nullable(UInt32)', get: (r) => r.e.thinking_tokens },
  { name: 'upstream_cost_micros', kind: 'Nullable(Int64)', get: (r) => r.upstreamCost },
  { name: 'upstream_currency', kind: 'LowCardinality(Nullable(String))', get: (r) => r.e.upstream_currency },
  { name: 'price_version', kind: 'LowCardinality(String)', get: (r) => r.e.price_version },
  { name: 'price_list', kind: 'LowCardinality(String)', get: (r) => r.e.price_list },
  { name: 'unit_prices', kind: 'Map(LowCardinality(String), LowCardinality(String))', get: (r) => r.e.unit_prices },
  { name: 'tier', kind: 'LowCardinality(Nullable(String))', get: (r) => r.e.tier },
  { name: 'multipliers', kind: 'Array(LowCardinality(String))', get: (r) => r.e.multipliers },
  { name: 'unpriced', kind: 'Array(String)', get: (r) => r.e.unpriced },
];

/** Each dimension's key with the names its checks give (built once: not a string per event). */
const QUANTITY_FIELDS = DIMENSION_COLUMNS.map((d) => ({ key: d.key, field: `quantities.${d.key}`, iterationField: `iterations.quantities.${d.key}` }));

/** The column list of a usage insert: USAGE_COLUMNS, then rollup_skip. */
const USAGE_INSERT_COLUMNS = [...USAGE_COLUMNS.map((c) => c.name), 'rollup_skip'].join(', ');

/**
 * A usage event (either version; a v1 event through `toV2`, remembered as version 1) as its
 * insert row. Unless `decoded`, it is first checked against its columns' types
 * (`checkUsageColumns`): a number out of its column's range, text that is not a string of
 * well-formed UTF-16, a list that is not an array of strings, a map that is not a plain object of
 * strings throws WarehouseInputError, so `storeEvents` quarantines that event alone. Otherwise
 * the two insert bodies would store it differently (or ClickHouse would wrap a number silently).
 * `decoded`: the event is `decodeEvent`'s output, which holds every bound checked there (and
 * more: text lengths, statuses, decimal prices), so `storeEvents`, which decodes every item
 * first, skips the second look (~1 µs of the consumer's ~20 per event, bench/README.md). A
 * position out of Int32/Int64 throws WarehouseInputError either way.
 */
function usageRow(raw: UsageEvent, p: LogPosition | undefined, decoded: boolean): UsageRow {
  const e = decoded ? toV2(raw) : checkUsageColumns(raw);
  const { log_partition: partition, log_offset: offset } = positionColumns(p);
  return {
    e, version: raw.v === 2 ? 2 : 1, id: e.event_id, tsMs: e.ts, account: e.account_id, partition, offset,
    cost: int64Text(e.cost_micros, 'cost_micros', 0n),
    upstreamCost: e.upstream_cost_micros === null ? null : int64Text(e.upstream_cost_micros, 'upstream_cost_micros', 0n),
    iterations: e.iterations.length === 0 ? '[]' : JSON.stringify(e.iterations.map((it) => {
      const q: Record<string, number> = {};
      for (const d of QUANTITY_FIELDS) q[d.key] = uint32(it.quantities[d.key] ?? 0, d.iterationField);
      return { type: it.type, model: it.model, catalog_model: it.catalog_model, quantities: q, cost_micros: int64Text(it.cost_micros, 'iterations.cost_micros', 0n) };
    })),
  };
}

/**
 * The usage event (either version) as version 2 (`toV2`) once every field is one its column
 * stores exactly (see `usageRow`); WarehouseInputError naming the first that is not. The bounds
 * are those `decodeEvent` holds a consumed event to. For callers that insert without it;
 * exported for the test that holds decodeEvent to these checks
 * (libs/warehouse/test/decoded-rows.test.ts).
 */
export function checkUsageColumns(raw: UsageEvent): UsageEventV2 {
  plainRecord(raw, 'usage event');
  // Version 1 has flat token fields instead (toV2 reads them; uint32 checks them below).
  if (raw.v === 2) {
    plainRecord(raw.quantities, 'quantities');
    if (!Array.isArray(raw.iterations)) throw new WarehouseInputError('iterations must be an array');
  }
  const e = toV2(raw);
  nonEmpty(e.event_id, 'event_id');
  // Field by field, not a loop over names: a keyed read per name made this check cost more
  // than writing the row (bench/usage-rows.ts).
  storedText(e.event_id, 'event_id');
  storedText(e.account_id, 'account_id');
  storedText(e.key_id, 'key_id');
  storedText(e.model, 'model');
  storedText(e.catalog_model, 'catalog_model');
  storedText(e.upstream_model, 'upstream_model');
  storedText(e.status, 'status');
  storedText(e.gateway_id, 'gateway_id');
  storedText(e.price_version, 'price_version');
  storedText(e.price_list, 'price_list');
  storedText(e.upstream_request_id, 'upstream_request_id', true);
  storedText(e.served_model, 'served_model', true);
  storedText(e.service_tier, 'service_tier', true);
  storedText(e.inference_geo, 'inference_geo', true);
  storedText(e.speed, 'speed', true);
  storedText(e.stop_reason, 'stop_reason', true);
  storedText(e.upstream_currency, 'upstream_currency', true);
  storedText(e.tier, 'tier', true);
  if (e.upstream_id !== undefined) storedText(e.upstream_id, 'upstream_id');
  if (e.anomalies !== undefined) storedTexts(e.anomalies, 'anomalies');
  storedTexts(e.multipliers, 'multipliers');
  storedTexts(e.unpriced, 'unpriced');
  const prices = plainRecord(e.unit_prices, 'unit_prices');
  for (const k of Object.keys(prices)) {
    storedText(k, 'unit_prices key');
    storedText(prices[k], `unit_prices.${k}`);
  }
  for (let i = 0; i < e.iterations.length; i++) {
    const it = e.iterations[i];
    plainRecord(it, 'iterations[]');
    plainRecord(it!.quantities, 'iterations[].quantities');
  }
  checkDateTime(e.ts, 'ts');
  if (e.ts > MAX_USAGE_EPOCH_MS) throw new WarehouseInputError(`ts ${e.ts} is past 2106-02-07T06:28:15.999Z, the last second a usage rollup's DateTime bucket holds`);
  nonEmpty(e.account_id, 'account_id');
  for (const d of QUANTITY_FIELDS) uint32(e.quantities[d.key] ?? 0, d.field);
  uint32(e.latency_ms, 'latency_ms');
  if (e.ttft_ms !== null) uint32(e.ttft_ms, 'ttft_ms');
  if (e.thinking_tokens !== null) uint32(e.thinking_tokens, 'thinking_tokens');
  uintUpTo(e.http_status, 0xffff, 'http_status');
  uintUpTo(e.attempts ?? 0, 0xff, 'attempts');
  if (typeof e.stream !== 'boolean') throw new WarehouseInputError(`stream must be a boolean, got ${JSON.stringify(e.stream)}`);
  return e;
}

/**
 * The JSONCompactEachRow body of a usage insert (chDB's connection passes only text): per row
 * ONE JSON.stringify of its values in USAGE_COLUMNS order and `skip[i]` (one native call
 * allocates far less than building the text field by field). In slices of WRITE_SLICE_MS.
 */
async function usageJsonBody(rows: readonly UsageRow[], skip: Uint8Array): Promise<string> {
  const slice = slicer();
  const values: unknown[] = new Array(USAGE_COLUMNS.length + 1);
  let body = '';
  for (let i = 0; i < rows.length; i++) {
    if (slice.due()) await slice.pause();
    const r = rows[i]!;
    for (let c = 0; c < USAGE_COLUMNS.length; c++) {
      const col = USAGE_COLUMNS[c]!;
      values[c] = col.kind === 'DateTime64' ? dateTime(r.tsMs, col.name) : col.get(r);
    }
    values[USAGE_COLUMNS.length] = skip[i];
    body += `${JSON.stringify(values)}\n`;
  }
  return body;
}

/** Rows written per column in one go by `usageNativeBody`: their objects stay in the CPU's cache across the columns. */
const NATIVE_ROW_RUN = 256;

/**
 * The Native body of a usage insert (a ClickHouse server): one block, rollup_skip last. The
 * server parses it at ~60 % of the CPU the same rows cost it as JSONCompactEachRow
 * (bench/README.md, "The usage insert in Native format"). Each column has parts of its own
 * (`usageColumnParts`), filled a run of NATIVE_ROW_RUN rows at a time: column by column over the
 * whole batch, every column re-read every row's objects from memory, which cost the consumer
 * more than the JSON text did. A value of the wrong JS type for its column (a caller past
 * `decodeEvent`) throws WarehouseInputError naming the column. In slices of WRITE_SLICE_MS.
 */
async function usageNativeBody(rows: readonly UsageRow[], skip: Uint8Array): Promise<Buffer> {
  const slice = slicer(1); // once per run of rows
  const n = rows.length;
  const columns = USAGE_COLUMNS.map((col) => usageColumnParts(col, n));
  for (let from = 0; from < n; from += NATIVE_ROW_RUN) {
    if (slice.due()) await slice.pause();
    const to = Math.min(n, from + NATIVE_ROW_RUN);
    for (const c of columns) {
      try {
        c.write(rows, from, to);
      } catch (err) {
        throw new WarehouseInputError(`${c.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
  const rollupSkip = new NativeWriter(n);
  rollupSkip.bytes(skip);
  return nativeBlock(n, [...columns, { name: 'rollup_skip', type: 'UInt8', parts: () => [rollupSkip] }]);
}

/** Bytes per row of a fixed-width kind, for the parts' first size. */
const FIXED_WIDTH: Partial<Record<UsageColumnKind, number>> = {
  Int32: 4, Int64: 8, UInt8: 1, UInt16: 2, UInt32: 4, Bool: 1, DateTime64: 8,
};

/**
 * A usage column's Native parts for `n` rows and `write(rows, from, to)`, which appends rows
 * [from, to) to them in the layout of its kind: a Nullable's null map and values, an Array's
 * running totals and elements, a Map's totals, keys and values. The writers store a number
 * modulo its width: every fixed-width value was checked by `usageRow`. A value of the wrong JS
 * type (a string column given a number) throws TypeError.
 */
function usageColumnParts(col: UsageColumn, n: number): NativeColumn & { write(rows: readonly UsageRow[], from: number, to: number): void } {
  const { get } = col;
  const type = col.kind === 'DateTime64' ? "DateTime64(3, 'UTC')" : col.kind;
  const fixed = (width: number) => new NativeWriter(n * width);
  const texts = () => new NativeWriter(n * 24);
  switch (col.kind) {
    case 'Int32': case 'Int64': case 'UInt8': case 'UInt16': case 'UInt32': case 'Bool': case 'DateTime64': {
      const kind = col.kind;
      const width = FIXED_WIDTH[kind]!;
      const values = fixed(width);
      return {
        name: col.name, type, parts: () => [values],
        write: (rows, from, to) => {
          values.reserve((to - from) * width);
          switch (kind) {
            case 'Int32': for (let i = from; i < to; i++) values.int32(get(rows[i]!) as number); break;
            case 'Int64': for (let i = from; i < to; i++) values.int64Text(get(rows[i]!) as string); break;
            case 'UInt8': for (let i = from; i < to; i++) values.uint8(get(rows[i]!) as number); break;
            case 'UInt16': for (let i = from; i < to; i++) values.uint16(get(rows[i]!) as number); break;
            case 'UInt32': for (let i = from; i < to; i++) values.uint32(get(rows[i]!) as number); break;
            case 'Bool': for (let i = from; i < to; i++) values.uint8(get(rows[i]!) === true ? 1 : 0); break;
            case 'DateTime64': for (let i = from; i < to; i++) values.int64(get(rows[i]!) as number); break;
          }
        },
      };
    }
    case 'String': {
      const values = texts();
      return { name: col.name, type, parts: () => [values], write: (rows, from, to) => { for (let i = from; i < to; i++) values.string(get(rows[i]!) as string); } };
    }
    case 'Nullable(UInt32)': case 'Nullable(Int64)': case 'Nullable(String)': {
      const kind = col.kind;
      const nulls = fixed(1);
      const values = kind === 'Nullable(String)' ? texts() : fixed(8);
      return {
        name: col.name, type, parts: () => [nulls, values],
        write: (rows, from, to) => {
          nulls.reserve(to - from);
          values.reserve((to - from) * 8);
          for (let i = from; i < to; i++) {
            const v = get(rows[i]!);
            nulls.uint8(v === null ? 1 : 0);
            if (kind === 'Nullable(String)') values.string((v as string | null) ?? '');
            else if (kind === 'Nullable(Int64)') values.int64Text((v as string | null) ?? '0');
            else values.uint32((v as number | null) ?? 0);
          }
        },
      };
    }
    case 'LowCardinality(String)': case 'LowCardinality(Nullable(String))': {
      const values = new LowCardinalityValues(col.kind === 'LowCardinality(Nullable(String))');
      return {
        name: col.name, type,
        parts: () => [lowCardinalityVersions(1), values.dataPart()],
        write: (rows, from, to) => { for (let i = from; i < to; i++) values.add(get(rows[i]!) as string | null); },
      };
    }
    case 'Array(String)': case 'Array(LowCardinality(String))': {
      const totals = fixed(8);
      // The elements of every row: as a dictionary (after its version, which comes before the
      // totals) or string by string.
      const dictionary = col.kind === 'Array(LowCardinality(String))' ? new LowCardinalityValues(false) : undefined;
      const strings = dictionary ? undefined : texts();
      let total = 0;
      return {
        name: col.name, type,
        parts: () => (dictionary ? [lowCardinalityVersions(1), totals, dictionary.dataPart()] : [totals, strings!]),
        write: (rows, from, to) => {
          totals.reserve((to - from) * 8);
          for (let i = from; i < to; i++) {
            const v = get(rows[i]!) as readonly string[];
            totals.uint64(total += v.length);
            for (let k = 0; k < v.length; k++) {
              if (dictionary) dictionary.add(v[k]!);
              else strings!.string(v[k]!);
            }
          }
        },
      };
    }
    case 'Map(LowCardinality(String), LowCardinality(String))': {
      const totals = fixed(8);
      const keys = new LowCardinalityValues(false);
      const values = new LowCardinalityValues(false);
      let total = 0;
      return {
        name: col.name, type,
        // Both LowCardinality versions first (the key's, the value's), then the totals.
        parts: () => [lowCardinalityVersions(2), totals, keys.dataPart(), values.dataPart()],
        write: (rows, from, to) => {
          totals.reserve((to - from) * 8);
          for (let i = from; i < to; i++) {
            const m = get(rows[i]!) as Record<string, string>;
            // Own keys in JSON.stringify's order (the JSON body's), as `usageRow` checked them.
            for (const key of Object.keys(m)) {
              total++;
              keys.add(key);
              values.add(m[key]!);
            }
            totals.uint64(total);
          }
        },
      };
    }
  }
}

// ---- output parsing: 64-bit values arrive as strings, narrower ones as numbers ----

/** `{ [name]: value }` when the column is set (not NULL), else nothing: records omit unset fields. */
function present<K extends string>(name: K, v: unknown): { [P in K]?: string } {
  return v === null || v === undefined ? {} : { [name]: str(v) } as { [P in K]?: string };
}

function str(v: unknown): string {
  if (typeof v !== 'string') throw new Error(`warehouse: expected a string, got ${typeof v}`);
  return v;
}

function int(v: unknown): number {
  const n = typeof v === 'string' && INT_RE.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
    throw new Error(`warehouse: expected a safe integer, got ${JSON.stringify(v)}`);
  }
  return n;
}

/** A ledger row as the hot ledger remembers it (the ledger's `LedgerEntry`): signed µc and kind. */
export interface StoredLedgerEntry {
  amount: bigint;
  kind: LedgerKind;
}

const LEDGER_KIND_SET: ReadonlySet<string> = new Set(LEDGER_KINDS);

/** Rows of `event_id`, `amount_text`, `kind` as an event id → entry map; throws on a kind no event has. */
function ledgerEntryMap(rows: Row[]): Map<string, StoredLedgerEntry> {
  return new Map(rows.map((r) => {
    const kind = str(r['kind']);
    if (!LEDGER_KIND_SET.has(kind)) throw new Error(`warehouse: ledger row ${str(r['event_id'])} has kind ${JSON.stringify(kind)}`);
    return [str(r['event_id']), { amount: money(r['amount_text']), kind: kind as LedgerKind }];
  }));
}

function money(v: unknown): bigint {
  if (typeof v !== 'string' || !INT_RE.test(v)) {
    throw new Error(`warehouse: expected integer micro-credits as text, got ${JSON.stringify(v)}`);
  }
  return BigInt(v);
}

/**
 * A log position as its columns (`log_partition` Int32, `log_offset` Int64 text), or -1 / '-1'
 * without one. A partition that is no integer in [0, 2^31 − 1] or an offset that is no bigint in
 * [0, 2^63 − 1] throws WarehouseInputError: either would be stored wrapped or cut, and a wrong
 * position makes a rebuild's bound skip or repeat facts.
 */
function positionColumns(p: LogPosition | undefined): { log_partition: number; log_offset: string } {
  if (!p) return { log_partition: -1, log_offset: '-1' };
  if (!Number.isInteger(p.partition) || p.partition < 0 || p.partition > INT32_MAX) {
    throw new WarehouseInputError(`log partition must be an integer in [0, ${INT32_MAX}], got ${String(p.partition)}`);
  }
  if (typeof p.offset !== 'bigint' || p.offset < 0n || p.offset > INT64_MAX) {
    throw new WarehouseInputError(`log offset must be a bigint in [0, ${INT64_MAX}], got ${String(p.offset)}`);
  }
  return { log_partition: p.partition, log_offset: p.offset.toString() };
}

function quarantineRecord(item: StoreItem, group: string, kind: QuarantineKind, reason: string, eventId: string | undefined): QuarantineRecord {
  const raw = boundedRaw(item.event);
  return {
    event_id: eventId ?? standInId(item.event),
    group, topic: item.topic, partition: item.position?.partition ?? -1, offset: item.position?.offset ?? -1n,
    kind, reason, raw,
  };
}
