import type { KeyDirectory } from '@tollgate/keys';
import { LOST_SETTLE_MS, positionKey, windowBounds, type BalanceStore, type SpendWindowCount } from '@tollgate/ledger';
import { rollupMismatches, ROLLUP_SETTLE_MS, type KeySpend, type LogPositions, type Warehouse } from '@tollgate/warehouse';

export interface RebuildReport {
  accounts: number;
  keys: number;
  balances: number;
  /** recent usage ids remembered again */
  usage_ids: number;
  /** spend-window counters given back (each key's hourly, daily and lifetime spend, each account's daily and monthly) */
  spend_windows: number;
  /**
   * Whether the warehouse held every usage and ledger event on the log when the rebuild began
   * (`logEnd`) before it was read: true; false when it did not within the wait (the rebuild
   * went on: events past its positions are then applied by the ledger only after gateways admit
   * again, see `logEnd`); null without a durable log (embedded: its journal is applied before
   * the first request).
   */
  warehouse_caught_up: boolean | null;
  /**
   * True when the state was not lost and its ledger group had applied less than the warehouse
   * held on some partition: the state was rebuilt as of the ledger's positions there (the ledger
   * applies the rest itself, closing their holds); false otherwise.
   */
  ledger_behind: boolean;
  /** the log positions the rebuilt state is exact as of (`topic:partition` → offset) */
  positions: Record<string, string>;
  ms: number;
}

/**
 * Rebuilds hot state from the warehouse: accounts and keys (highest version wins, so newer
 * records already in the directory stay), then balances, the applied ledger entries and the
 * ledger's refusals (a refused credit reference stays refused: 409, never "applied") as of the
 * warehouse's own log positions, loaded with those positions in one atomic step. The spend
 * windows open now get back what each key and account spent in them (`spendWindowCounts`), so
 * a lost hot state never lets a daily, hourly, monthly or lifetime limit be spent twice; a
 * counter already higher (requests in flight) is kept. Ledger
 * consumers past those positions then see a gap and re-read the log from there, so every
 * event after the snapshot is applied exactly once. Control positions are not kept: the
 * control topic is replayed from its start (records are idempotent by version).
 * Safe while traffic flows and while consumers run; safe to run twice.
 */
export async function rebuild(
  deps: {
    warehouse: Warehouse; balances: BalanceStore; keys: KeyDirectory;
    /**
     * Resolves true once every refusal the ledger recorded is in the warehouse's quarantine, and
     * every control record (accounts, keys, plans) on the log is in the warehouse (the
     * distributed log: the warehouse group's commits, see KafkaLog.committedThrough); false when
     * they are not within its wait, and the rebuild then refuses (RebuildLogUnavailableError,
     * retried). Awaited before the snapshot is read. Without it a grant refused just before hot
     * state was lost, whose row was stored before its dead letter, would be rebuilt as credited
     * money, a key made just before would be missing (401), and a key revoked or a limit set
     * just before (with Kafka away: in the control process's spool) would be served as before
     * until the record was read again (a tester: a revoked key served for 10 s, a 0.2-credit
     * daily limit spent 60 times over).
     */
    refusalsStored?: () => Promise<boolean>;
    /**
     * The last offset on each partition of the usage and ledger topics now (the durable log:
     * KafkaLog.lastOffsets), or undefined when the log cannot tell. The rebuild waits (at most
     * `catchUpMs`) for the warehouse to hold them before it reads: hot state turns ready at the
     * warehouse's positions, and every event past them was debited and counted by the ledger's
     * replay only after gateways were admitting again, against a balance and spend windows that
     * left it out (a tester's HIGH: 4,554,000 µc spent against a 3,000,000 limit, a balance
     * −762,000 µc with no overdraft, with the warehouse group stopped while Redis was flushed).
     * Resolving undefined makes the rebuild throw RebuildLogUnavailableError.
     */
    logEnd?: () => Promise<LogPositions | undefined>;
  },
  options: {
    usageMemoryMs?: number;
    /** the instant whose spend windows are given back, epoch ms (default now; tests) */
    now?: number;
    /** how long to wait for the warehouse to reach `logEnd` before reading anyway, ms (default CATCH_UP_MS) */
    catchUpMs?: number;
    /**
     * A state found lost (on a store whose gateways restore their holds in flight: `epoch`
     * null, not undefined) is loaded no sooner than this long after it was found so, ms (default
     * LOST_SETTLE_MS): every gateway has read it as lost and announced its restore by then.
     */
    lostSettleMs?: number;
  } = {},
): Promise<RebuildReport> {
  const started = performance.now();
  // Found lost now: gateways with requests in flight announce their restores at their next epoch
  // read, and the load gives them a window only if it finds the announcements (LOST_SETTLE_MS).
  // (`epoch` null: lost, on a store whose callers restore; undefined: a store that never loses them.)
  const lostAt = (await deps.balances.epoch().catch(() => undefined)) === null ? performance.now() : undefined;
  let caughtUp: boolean | null = null;
  // Where the log ends first: with Kafka away the rebuild refuses after this one wait, not after
  // the refusals' wait as well (each up to 15 s).
  const end = deps.logEnd ? await deps.logEnd() : null;
  // Not knowing where the log ends, the warehouse may be any way behind it: a state rebuilt
  // from it would admit against balances and windows without those events (a tester's HIGH:
  // limits and a prepaid balance overspent by ~1.2 credits with Kafka away). Money fails
  // closed: no rebuild until the log answers (the caller's next check retries).
  if (end === undefined) throw new RebuildLogUnavailableError();
  if (end !== null) {
    caughtUp = await until(Date.now() + (options.catchUpMs ?? CATCH_UP_MS), async () => covers(await deps.warehouse.logPositions(), end));
  }
  // The refusals and control records last, right before the snapshot is read: another process's
  // spool sent once Kafka is back (a key revoked meanwhile) reaches the log while the groups
  // rejoin and catch up; asked before that wait, a revoked key was rebuilt as active (one run
  // in three on a slow machine: test/e2e/rebuild-kafka-away.fault.test.ts).
  if ((await deps.refusalsStored?.()) === false) {
    throw new RebuildLogUnavailableError('the warehouse group has not stored every dead letter and control record on the log (Kafka just back, or the group behind or down): hot state is not rebuilt until it has, or a revoked key, a new limit or a refused grant could be read as before (fails closed; retried)');
  }
  const stored = await deps.warehouse.logPositions();
  // A state that is not lost (a manual rebuild) whose ledger group is behind the warehouse: the
  // rebuild is taken as of the ledger's own positions on those partitions, not the warehouse's.
  // Taken at the warehouse's, the events in between were in the loaded balances but never
  // applied by the ledger (it resumes from the loaded positions), so their holds were never
  // closed: available read that much lower until they expired (HOLD_TTL_MS), false 402s
  // meanwhile. From the ledger's positions it applies them itself, closing each hold.
  // (A lost state has no positions: the warehouse's, as before.)
  const applied = await deps.balances.storedPositions();
  const at = applied ? atOrBefore(stored, applied) : stored;
  const ledgerBehind = at !== stored;
  const memoryMs = options.usageMemoryMs ?? 24 * 3600_000;
  const since = Date.now() - memoryMs;
  const now = options.now ?? Date.now();
  const [{ balances, ledgerEntries, usageIds, eventAccounts, spend }, refusals, accounts, keys, plans] = await Promise.all([
    boundedSnapshot(deps.warehouse, at, since, deps.balances.needsEventAccounts === true, now), deps.warehouse.ledgerRefusals(),
    deps.warehouse.loadAccounts(), deps.warehouse.loadKeys(), deps.warehouse.loadPlans(),
  ]);
  // Keys first, so customers authenticate the moment money is ready again.
  for (const a of accounts) await deps.keys.putAccount(a);
  for (const k of keys) await deps.keys.putKey(k);
  for (const p of plans) await deps.keys.putPlan(p);
  const positions = new Map<string, bigint>();
  for (const [p, o] of at.usage) positions.set(positionKey('usage', p), o);
  for (const [p, o] of at.ledger) positions.set(positionKey('ledger', p), o);
  const spendWindows = spendWindowCounts(spend, now);
  if (lostAt !== undefined) {
    const rest = lostAt + (options.lostSettleMs ?? LOST_SETTLE_MS) - performance.now();
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
  }
  // A lost state (found so now, or with no positions of its own) may miss records only a
  // stalled control process's spool holds: the load waits for the holders it saw before.
  const afterLoss = lostAt !== undefined || applied === undefined;
  await deps.balances.load({ balances, ledgerEntries, refusals, positions, usageIds, spendWindows, afterLoss, ...(eventAccounts ? { eventAccounts } : {}) });
  return {
    accounts: accounts.length, keys: keys.length, balances: balances.size, usage_ids: usageIds.length, spend_windows: spendWindows.length,
    warehouse_caught_up: caughtUp,
    ledger_behind: ledgerBehind,
    positions: Object.fromEntries([...positions].map(([k, v]) => [k, v.toString()])),
    ms: Math.round(performance.now() - started),
  };
}

/**
 * The warehouse's positions `stored`, lowered on each usage and ledger partition to what the
 * ledger has `applied` there (`BalanceStore.storedPositions`: `topic:partition` → offset, absent
 * = none). Answers `stored` itself when nothing is lowered.
 */
function atOrBefore(stored: LogPositions, applied: Map<string, bigint>): LogPositions {
  let lowered = false;
  const lower = (topic: 'usage' | 'ledger', from: Map<number, bigint>) => {
    const out = new Map<number, bigint>();
    for (const [partition, offset] of from) {
      const mine = applied.get(positionKey(topic, partition)) ?? -1n;
      if (mine < offset) lowered = true;
      if (mine >= offset) out.set(partition, offset);
      else if (mine >= 0n) out.set(partition, mine);
    }
    return out;
  };
  const usage = lower('usage', stored.usage);
  const ledger = lower('ledger', stored.ledger);
  return lowered ? { usage, ledger } : stored;
}

export interface ReconcileReport {
  ok: boolean;
  /** accounts compared */
  accounts: number;
  differences: Array<{ account_id: string; hot_state_micros: string; warehouse_micros: string; difference_micros: string }>;
  positions: Record<string, string>;
  /**
   * Events set aside as poison, by the warehouse sink (group `warehouse`, `journal`) and by the
   * ledger consumer (group `ledger`): they are in neither side's balances, which is why the two
   * still agree; each one is here so an operator can explain and repair it.
   */
  quarantined: Array<{ event_id: string; group: string; topic: string; partition: number; offset: string; kind: string; reason: string }>;
  /**
   * With `rollups: true` only: the usage rollups' agreement with raw events (`rollupMismatches`
   * of @tollgate/warehouse: rows whose sums differ, per grain). `mismatched_rows`: in buckets
   * that ended `settle_ms` or more ago, which nothing adds to any more; one there makes `ok`
   * false (repair: `POST /ops/v1/rollups/repair`). `recent_rows`: in buckets still being written,
   * where under traffic an insert is seen between its raw part and its views' parts: reported,
   * not counted (a lost view block shows in a settled minute bucket within 11 minutes). Reads
   * every usage row three times, hence opt-in.
   */
  rollups?: { ok: boolean; mismatched_rows: Record<string, number>; recent_rows: Record<string, number>; settle_ms: number };
  problem?: string;
}

/**
 * The spend windows open at `now` with what each key and account spent in them (`spend`:
 * `Warehouse.spendAt` since those windows' starts): key_hourly, key_daily and key_total per
 * key, account_daily and account_monthly per account (the sum of its keys). Zero counts are
 * left out.
 */
export function spendWindowCounts(spend: readonly KeySpend[], now: number): SpendWindowCount[] {
  const out: SpendWindowCount[] = [];
  const day = new Map<string, bigint>();
  const month = new Map<string, bigint>();
  for (const s of spend) {
    const key = { accountId: s.accountId, keyId: s.keyId };
    if (s.hour > 0n) out.push({ name: 'key_hourly', ...key, start: windowBounds('key_hourly', now).start, used: s.hour });
    if (s.day > 0n) out.push({ name: 'key_daily', ...key, start: windowBounds('key_daily', now).start, used: s.day });
    if (s.total > 0n) out.push({ name: 'key_total', ...key, start: 0, used: s.total });
    day.set(s.accountId, (day.get(s.accountId) ?? 0n) + s.day);
    month.set(s.accountId, (month.get(s.accountId) ?? 0n) + s.month);
  }
  for (const [accountId, used] of day) if (used > 0n) out.push({ name: 'account_daily', accountId, start: windowBounds('account_daily', now).start, used });
  for (const [accountId, used] of month) if (used > 0n) out.push({ name: 'account_monthly', accountId, start: windowBounds('account_monthly', now).start, used });
  return out;
}

/** What a rebuild reads as of the warehouse's log positions; see boundedSnapshot. */
interface BoundedSnapshot {
  balances: Map<string, bigint>;
  ledgerEntries: Awaited<ReturnType<Warehouse['ledgerEntriesAt']>>;
  /** The ids the lost state remembered (same window), so a late producer-side duplicate of one of them is still recognised after the rebuild. */
  usageIds: string[];
  /** A ledger on Redis Cluster keeps each id in its account's slot: it needs their accounts. */
  eventAccounts: Map<string, string> | undefined;
  /** each key's spend in the spend windows open at the rebuild (see spendWindowCounts) */
  spend: KeySpend[];
}

/**
 * Thrown by `rebuild` when its `logEnd` cannot say where the log ends (Kafka away), or when its
 * `refusalsStored` answers false (dead letters or control records not stored yet): hot state is
 * left lost (gateways keep answering 503) rather than rebuilt from a warehouse that may be behind.
 * `message` says which.
 */
export class RebuildLogUnavailableError extends Error {
  constructor(message = 'the event log (Kafka) did not say where it ends, so the warehouse may be behind it: hot state is not rebuilt until the log answers (money fails closed; retried)') {
    super(message);
    this.name = 'RebuildLogUnavailableError';
  }
}

/** How long a rebuild waits for the warehouse to hold what is on the log (its `logEnd`), ms. */
export const CATCH_UP_MS = 15_000;

/** Reads of one snapshot that agree with each other before the first of them is trusted. */
const SNAPSHOT_READS_MAX = 6;

/**
 * The balances, applied ledger entries, recent usage ids (and, for a ledger on Redis Cluster,
 * their accounts) and each key's spend in the spend windows open at `now` as of `at`, read together and again until two reads in a row are equal. They
 * are separate queries, and ClickHouse may merge parts between them: once a fact's copies are
 * merged only the newest remains, so a merge landing between two of the reads, with that copy
 * past `at`, would make one read count the fact and another not, and the rebuilt state would
 * charge it twice or never (docs/decisions.md, "Balances as of log positions bound the rows
 * before the copies are folded"). Two equal reads in a row straddle no such merge. Throws when
 * SNAPSHOT_READS_MAX reads never settle.
 */
async function boundedSnapshot(w: Warehouse, at: LogPositions, since: number, withAccounts: boolean, now: number): Promise<BoundedSnapshot> {
  const windows = {
    hour: windowBounds('key_hourly', now).start, day: windowBounds('key_daily', now).start, month: windowBounds('account_monthly', now).start,
  };
  const read = async (): Promise<BoundedSnapshot> => {
    const [balances, ledgerEntries, usageIds, eventAccounts, spend] = await Promise.all([
      w.balancesAt(at), w.ledgerEntriesAt(at), w.usageIdsAt(at, since), withAccounts ? w.eventAccountsAt(at, since) : undefined, w.spendAt(at, windows),
    ]);
    return { balances, ledgerEntries, usageIds: [...usageIds].sort(), eventAccounts, spend };
  };
  const text = (s: BoundedSnapshot) => JSON.stringify(s, (_k, v: unknown) =>
    (typeof v === 'bigint' ? v.toString() : v instanceof Map ? [...v].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : v));
  let last = await read();
  for (let i = 1; i < SNAPSHOT_READS_MAX; i++) {
    const next = await read();
    if (text(next) === text(last)) return next;
    last = next;
  }
  throw new Error(`rebuild: ${SNAPSHOT_READS_MAX} reads of the warehouse as of its positions never agreed (parts merging all along); run it again`);
}

/** Polls `check` every 200 ms until it holds (true) or `deadline` (epoch ms) has passed (false). */
async function until(deadline: number, check: () => Promise<boolean>): Promise<boolean> {
  while (!await check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
  return true;
}

function bounds(positions: Map<string, bigint>): LogPositions {
  const at: LogPositions = { usage: new Map(), ledger: new Map() };
  for (const [field, offset] of positions) {
    const [topic, partition] = field.split(':');
    if (topic === 'usage' || topic === 'ledger') at[topic].set(Number(partition), offset);
  }
  return at;
}

function covers(have: LogPositions, need: LogPositions): boolean {
  for (const t of ['usage', 'ledger'] as const) {
    for (const [p, o] of need[t]) if ((have[t].get(p) ?? -1n) < o) return false;
  }
  return true;
}

/**
 * Proves hot state and the warehouse agree: reads every balance and the positions they are
 * exact as of in one atomic step, waits until the warehouse holds at least those positions,
 * and compares each account's balance with the warehouse's as of the same positions.
 * Exact under live traffic; any difference is listed.
 */
export async function reconcile(
  deps: { warehouse: Warehouse; balances: BalanceStore },
  options: { timeoutMs?: number; rollups?: boolean } = {},
): Promise<ReconcileReport> {
  const snap = await deps.balances.snapshot();
  const positions = Object.fromEntries([...snap.positions].map(([k, v]) => [k, v.toString()]));
  const quarantined = async (): Promise<ReconcileReport['quarantined']> => {
    const all = [...await deps.warehouse.quarantined(), ...(await deps.balances.quarantined()).map((q) => ({ ...q, group: 'ledger' }))];
    // The ledger's records reach the warehouse too (dead-letter topic): each once.
    const seen = new Set<string>();
    const unique = all.filter((q) => {
      const key = `${q.group}|${q.topic}|${q.partition}|${q.offset}|${q.event_id}`;
      return !seen.has(key) && seen.add(key) !== undefined;
    });
    return unique.map((q) => ({
      event_id: q.event_id, group: q.group, topic: q.topic, partition: q.partition,
      offset: q.offset.toString(), kind: q.kind, reason: q.reason,
    }));
  };
  if (!snap.ready) return { ok: false, accounts: 0, differences: [], positions, quarantined: await quarantined(), problem: 'hot state is not ready: run rebuild' };
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  /** Hot state against the warehouse as of `s`'s positions, once the warehouse holds them; undefined past the deadline. */
  const compare = async (s: typeof snap) => {
    const need = bounds(s.positions);
    if (!await until(deadline, async () => covers(await deps.warehouse.logPositions(), need))) return undefined;
    const warehouse = await deps.warehouse.balancesAt(need);
    const ids = new Set([...s.balances.keys(), ...warehouse.keys()]);
    const out: ReconcileReport['differences'] = [];
    for (const id of [...ids].sort()) {
      const hot = s.balances.get(id) ?? 0n;
      const wh = warehouse.get(id) ?? 0n;
      if (hot !== wh) {
        out.push({ account_id: id, hot_state_micros: hot.toString(), warehouse_micros: wh.toString(), difference_micros: (hot - wh).toString() });
      }
    }
    return { out, accounts: ids.size };
  };
  const first = await compare(snap);
  if (first === undefined) {
    return { ok: false, accounts: 0, differences: [], positions, quarantined: await quarantined(), problem: 'the warehouse did not reach the hot state\'s log positions in time' };
  }
  let { out: differences } = first;
  if (differences.length > 0) {
    // A difference can be passing: once ClickHouse has merged a fact's copies, only the newest
    // remains, and when it lies past the hot state's positions (a producer's retry the ledger
    // group has not reached) the warehouse leaves out a fact hot state applied (docs/decisions.md,
    // "Balances as of log positions bound the rows before the copies are folded"). So look
    // again once hot state holds everything the warehouse holds now, and keep only the
    // accounts that differ both times; a real difference does not go away.
    const target = await deps.warehouse.logPositions();
    let again = snap;
    const caughtUp = await until(deadline, async () => covers(bounds((again = await deps.balances.snapshot()).positions), target));
    const second = caughtUp ? await compare(again) : undefined;
    if (second !== undefined) {
      const before = new Set(differences.map((d) => d.account_id));
      differences = second.out.filter((d) => before.has(d.account_id));
    }
  }
  let rollups: ReconcileReport['rollups'];
  if (options.rollups) {
    // A usage insert lands in raw and in its views as separate parts: one in flight shows as a
    // difference in the buckets it writes, which are recent. Settled buckets are looked at twice
    // (a late event of a lagging partition may still be in flight there) before a row counts.
    const settled = (m: Awaited<ReturnType<typeof rollupMismatches>>) => Object.values(m.settled).every((n) => n === 0);
    let check = await rollupMismatches(deps.warehouse);
    if (!settled(check)) {
      await new Promise((r) => setTimeout(r, 1000));
      check = await rollupMismatches(deps.warehouse);
    }
    rollups = { ok: settled(check), mismatched_rows: check.settled, recent_rows: check.recent, settle_ms: ROLLUP_SETTLE_MS };
  }
  return {
    ok: differences.length === 0 && (rollups?.ok ?? true), accounts: first.accounts, differences, positions, quarantined: await quarantined(),
    ...(rollups ? { rollups } : {}),
  };
}
