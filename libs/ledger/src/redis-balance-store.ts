import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import { LEDGER_KINDS, MAX_MONEY_MICROS, type LedgerEvent, type LedgerKind, type UsageEvent } from '@tollgate/events';
import { admissionHoldAt, checkTtlMs, isRefusal, positionKey, RebuildSupersededError, SPEND_WINDOW_NAMES, StoreNotReadyError, windowBounds } from './balance-store.ts';
import type {
  AccountBalance, ApplyResult, BalanceSnapshot, BalanceStore, BatchItem, BatchOutcome, HoldAdmission, HoldRequest, HoldResult, LedgerEntry, LedgerQuarantine, LogPosition,
  ReferenceClaim, RestoredHold, SpendWindowCount, SpendWindowName, StateSnapshot,
} from './balance-store.ts';

export interface RedisBalanceStoreOptions {
  /**
   * Caller-owned client, a standalone `Redis` or a `Cluster`; `close()` leaves it open. Must
   * not use ioredis' own `keyPrefix`.
   */
  redis: Redis | Cluster;
  /**
   * The key layout: `true` keeps every script call in one hash slot (the Redis Cluster layout,
   * see the class comment), `false` the standalone layout (one script call per partition batch).
   * Default: `true` for a `Cluster` client. The two layouts name different keys: a store never
   * reads the other's (see docs/scaling.md, "Redis Cluster", for the migration).
   */
  cluster?: boolean;
  /** Prepended to every key, e.g. `tollgate:`; lets several stores share one Redis. */
  prefix: string;
  /** How long an applied usage event id is remembered to catch redeliveries (default 24 h). */
  usageMemoryMs?: number;
  /**
   * Refuse holds and applies until the state is marked ready (by `load`, i.e. a rebuild).
   * On in production (distributed mode): a Redis that restarted empty then answers "not
   * ready" instead of "no credit". Off by default, for standalone use and tests. Always on
   * in the Cluster layout, which needs a `load` (rebuild) before anything else.
   */
  requireReady?: boolean;
  /**
   * After a rebuild's `load` turns the state ready, no hold is admitted for this long (ms;
   * default RESTORE_WINDOW_MS, 1,000; 0 for none) while every gateway re-reserves the requests
   * it still has in flight (`restoreHolds`, which it does within one `epoch` poll,
   * HoldRegistry in @tollgate/gateway). Only with `requireReady` (or the Cluster layout).
   */
  restoreWindowMs?: number;
  /**
   * After a rebuild, how long readers wait at most for the processes that announced something
   * to put back (`epoch(announceMs, restorer)` while the state was lost) to say they are done
   * (`restored`): `stateLost()` stays true until each has, or this long (ms; default
   * RESTORE_WAIT_MAX_MS, 10,000; 0: readers wait only the restore window). Only with
   * `requireReady` (or the Cluster layout).
   */
  restoreWaitMaxMs?: number;
  /**
   * The Cluster layout's other Redis: the standalone one that holds the key directory (REDIS_URL,
   * while the ledger is on REDIS_CLUSTER_NODES). It gets a ready mark of its own
   * (`<prefix>directory-ready`), set by `load`, and the state counts as lost without it
   * (`ready`, `stateLost`, `epoch`): an empty standalone Redis was never noticed (the Cluster's
   * marks were all there), so every key answered 401 and every account 404 until an operator
   * rebuilt by hand. A deployment upgraded to this rebuilds once at its first start.
   */
  directory?: Redis;
  /**
   * Tests only: the clock holds use for spend windows and expiry, instead of the Redis server's
   * `TIME` (lets a test cross a window boundary). Leave unset in production.
   */
  now?: () => number;
}

type Amount = string;

/** The Lua scripts as ioredis exposes them after `defineCommand` (names are ours, so no clash). */
interface LedgerScripts {
  /** variable key count: called with the number of keys first */
  tollgateLedgerHold(numKeys: number, ...keysAndArgs: string[]): Promise<Array<number | string>>;
  tollgateLedgerGet(bal: string, held: string, holds: string, expiry: string, clock: string): Promise<[Amount, Amount]>;
  tollgateLedgerSettle(held: string, holds: string, expiry: string, hwin: string, holdId: string, actual: Amount, ttlMs: string, clock: string): Promise<number>;
  tollgateLedgerExtend(holds: string, expiry: string, holdId: string, ttlMs: string, clock: string): Promise<number>;
  tollgateLedgerRelease(held: string, holds: string, expiry: string, hwin: string, holdId: string): Promise<number>;
  tollgateLedgerApplyUsage(seen: string, bal: string, held: string, holds: string, expiry: string,
    pos: string, accounts: string, hwin: string, eventId: string, cost: Amount, memoryMs: string, account: string,
    field: string, offset: string, readyKey: string, keyId: string, ts: string, windowBase: string, clock: string): Promise<number>;
  tollgateLedgerApplyLedger(ledger: string, bal: string, pos: string, accounts: string, rejected: string, eventId: string,
    amount: Amount, account: string, field: string, offset: string, readyKey: string, bound: Amount, kind: LedgerKind): Promise<number>;
  /** variable key count: called with the number of keys first */
  tollgateLedgerApplyBatch(numKeys: number, ...keysAndArgs: string[]): Promise<Array<number | string>>;
  tollgateLedgerCheckPosition(pos: string, field: string, offset: string, readyKey: string): Promise<number>;
  tollgateLedgerAdvancePosition(pos: string, field: string, offset: string): Promise<number>;
  tollgateLedgerLoad(accounts: string, ledger: string, pos: string, ready: string, rejected: string, mark: string, ...args: string[]): Promise<number>;
  tollgateLedgerSnapshot(accounts: string, pos: string, ready: string, balPrefix: string): Promise<Array<string | number>>;
  tollgateLedgerQuarantine(quarantine: string, pos: string, rejected: string, ledger: string, recordField: string,
    record: string, field: string, offset: string, readyKey: string, eventId: string, reason: string): Promise<number>;
  tollgateLedgerClaimReference(ledger: string, claim: string, rejected: string, eventId: string, entry: string,
    ttlMs: string): Promise<[number, string]>;
  tollgateLedgerClusterBegin(ready: string, pos: string, ...fields: string[]): Promise<Array<string | null>>;
  tollgateLedgerClusterAdvance(ready: string, pos: string, generation: string, ...pairs: string[]): Promise<number>;
  tollgateLedgerClusterLoad(gen: string, ready: string, pos: string, layout: string, ...args: string[]): Promise<number>;
  tollgateLedgerReject(ledger: string, rejected: string, eventId: string, reason: string): Promise<number>;
  tollgateLedgerClusterLoadPut(marker: string, key: string, loading: string, op: string, ...values: string[]): Promise<number>;
  tollgateLedgerRaiseWindows(numberOfKeys: number, ...keysAndArgs: string[]): Promise<number>;
  tollgateLedgerRestartWindows(numberOfKeys: number, ...keysAndArgs: string[]): Promise<number>;
  tollgateLedgerRestoreHolds(held: string, holds: string, expiry: string, hwin: string, ...args: string[]): Promise<number>;
  /** variable key count: called with the number of keys first */
  tollgateLedgerEpoch(numKeys: number, ...keysAndArgs: string[]): Promise<string | null>;
  tollgateLedgerTakeRestorers(restorers: string, recordRestorers: string, pending: string, waitMs: string, ...holders: string[]): Promise<number>;
  /** [1 or 0: the ready key exists, ...ids of the control processes holding records] (holders.lua) */
  tollgateLedgerHolders(ready: string): Promise<Array<number | string>>;
}

/** How often a gateway reads the hot state's epoch, ms (one GET on Redis; HoldRegistry). */
export const RESTORE_POLL_MS = 250;

/**
 * How long after a rebuild no hold is admitted while gateways restore their in-flight holds,
 * ms: four of a gateway's `epoch` polls (RESTORE_POLL_MS, 250 ms) and their restore calls.
 */
/** RebuildSupersededError's message when a rebuild's mark was gone at its load. */
export const LOST_DURING_REBUILD = 'Redis lost its data while this rebuild ran (its mark is gone): nothing loaded; another rebuild decides the state';
export const RESTORE_WINDOW_MS = 1000;

/**
 * How long after a rebuild readers that find a record absent, and gateways' new holds, wait at
 * most for the control processes that announced records to put back (only their spools held
 * them), ms. One stalled past the restore window (a GC pause, a frozen VM) had its records read
 * as absent meanwhile (404 for an account, 401 for a key) and a key it had revoked served
 * (docs/decisions.md, "Readers wait for every announced restorer"). Each leaves the wait as soon
 * as it is done, so it is this long only when one never comes back.
 */
export const RESTORE_WAIT_MAX_MS = 10_000;

/**
 * How long an announcement lasts while the state is lost, ms (each lost-state poll renews it).
 * Long: a process stalled after announcing must still be found by a rebuild that takes a while
 * (a slow warehouse read); RESTORE_WAIT_MAX_MS is counted from the load, not from this.
 */
export const RESTORE_ANNOUNCE_MS = 300_000;

/**
 * How long a control process's mark "I hold records the log has not acknowledged" lasts while
 * the state is alive, ms (each of its polls renews it; it removes the mark once it holds none).
 * Long, as RESTORE_ANNOUNCE_MS: the warehouse owner remembers the marks it last saw before a loss
 * and waits for them after the load, so a process stalled from before the loss is found too
 * (docs/decisions.md, "A control process stalled since before a loss is waited for").
 */
export const RECORD_HOLDER_MS = 300_000;

/**
 * How long a rebuild of a lost state lets pass, from when it found the state lost, before it
 * loads, ms: two of a gateway's `epoch` polls (RESTORE_POLL_MS). Every gateway with requests in
 * flight then read the state as lost and announced its restore, so the load sets the restore
 * window (RESTORE_WINDOW_MS). A loss rebuilt sooner than a gateway's next poll (the ledger
 * notices a loss at its next batch) went unseen by it: it restored without a window, and the
 * other gateways could admit past its holds for up to a poll (a breaker's LOW, session 40).
 */
export const LOST_SETTLE_MS = 2 * RESTORE_POLL_MS;

/** The Cluster layout's version, stored in `P {ledger}layout` by `load`; `ready()` wants it. */
export const CLUSTER_LAYOUT = 'cluster-2';
const SLOTS = 16384;

let slotTagTable: string[] | undefined;
/**
 * A short hash tag for every Cluster slot (tag `t` puts key `…{t}…` in slot s): the ready
 * marker of slot s is `P ready:{t}`, so a script of any account in s can read it. Found once by
 * counting in base 36 until every slot has one (about 170,000 CRC16s, a few ms).
 */
function slotTag(slot: number): string {
  if (slotTagTable === undefined) {
    const table = new Array<string>(SLOTS);
    let left = SLOTS;
    for (let i = 0; left > 0; i++) {
      const tag = i.toString(36);
      const s = calculateSlot(tag);
      if (table[s] === undefined) { table[s] = tag; left--; }
    }
    slotTagTable = table;
  }
  return slotTagTable[slot]!;
}

/** The escape that starts the Cluster hash tag of an account id that cannot be its own tag. */
const TAG_ESCAPE = '\u0001';

/**
 * The text between the braces of an account's Cluster hash tag (`P bal:{<tag>}` etc.), for ANY
 * string, even one a producer never should have sent (quarantine gets the raw `account_id` of
 * invalid events). Redis hashes the text between the first `{` and the first `}` after it; an
 * empty one (id `''` or starting with `}`) makes Redis hash each whole key, so an account's
 * keys land in different slots (CROSSSLOT). Those ids, and ids starting with the escape U+0001
 * itself, get U+0001 in front: the tag (up to the first `}`) is then never empty, and the map is
 * one-to-one (every escaped tag starts with U+0001, no kept one does). Schema-valid ids may
 * contain `{` and `}` (any text without control characters, at least 1 character) and keep
 * their tag unchanged: Redis stops at their first `}`, the same for every key of the account,
 * so they stay in one slot, and no key moves for them. Only for the Cluster layout: standalone
 * has no slots, and its load.lua / snapshot.lua name balance keys from the raw id.
 */
export function accountHashTag(accountId: string): string {
  return accountId === '' || accountId[0] === '}' || accountId[0] === TAG_ESCAPE ? TAG_ESCAPE + accountId : accountId;
}

/** Where the ids of one scope live: an account's slot (Cluster), or the store-wide keys. */
interface IdScope {
  ledger: string;
  rejected: string;
  usage(eventId: string): string;
  claim(eventId: string): string;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const POLL_MS = 20;
const SCAN_COUNT = 500;
const LOAD_CHUNK = 500;
/** At most this many withheld `applied` answers are kept (oldest dropped first); a batch's worth. */
const UNREPORTED_MAX = 10_000;

function lua(name: string): string {
  return readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');
}

/**
 * lua/cluster-markers.lua (the ready markers of all of one node's slots in one call) with the
 * script flags it needs (Redis ≥ 7.0); sent by its SHA1, and whole once to a node without it.
 * Two texts: 'check' is also `no-writes` and goes by EVALSHA_RO, so a master that holds its
 * writes (CLIENT PAUSE WRITE during a failover, maxmemory, min-replicas-to-write) still
 * answers it at once, as it answers GETs; 'mark' and 'ready' write.
 */
const MARKERS = {
  read: markersScript('allow-cross-slot-keys,no-writes'),
  write: markersScript('allow-cross-slot-keys'),
};

function markersScript(flags: string): { lua: string; sha: string } {
  const text = `#!lua flags=${flags}\n${lua('marker-fn')}\n${lua('cluster-markers')}`;
  return { lua: text, sha: createHash('sha1').update(text).digest('hex') };
}

/** Redis integers are signed 64-bit; refuse anything else before a script half-runs. */
function int64(value: bigint, what: string): Amount {
  if (value < INT64_MIN || value > INT64_MAX) throw new RangeError(`${what} ${value} does not fit in a signed 64-bit integer`);
  return value.toString();
}

/**
 * The clamp's output segments as hold.lua reads them (ARGV[8]): `perOutputToken:tokens` per
 * segment, in order, ' '-joined, the tokens empty for "all that are left".
 */
function segmentArg(a: HoldAdmission): string {
  return a.segments.map((x) => `${int64(x.perOutputToken, 'per output token')}:${x.tokens ?? ''}`).join(' ');
}

/** Escapes SCAN MATCH glob characters so a prefix is matched literally. */
function globLiteral(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** extendLock: while KEYS[1] holds ARGV[1], PEXPIRE it ARGV[2] ms and answer 1; else 0. */
const EXTEND_OWNED_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
/** releaseLock with an owner: delete KEYS[1] only while it holds ARGV[1] (a compare-and-delete). */
const RELEASE_OWNED_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Balances and holds in Redis, shared by every gateway and the ledger consumer. Each
 * operation is one Lua script (one round trip) so its check and its change are atomic; the
 * scripts live in `./lua/` with their invariants. Amounts stay integer strings end to end
 * (Redis' signed 64-bit INCRBY/DECRBY do the arithmetic), so nothing passes through a float.
 *
 * Key layout (P = prefix, A = account id; `{A}` is a Cluster hash tag co-locating an account):
 *   P bal:{A}    balance              P held:{A}   Σ outstanding holds
 *   P holds:{A}  hash holdId → amount P hexp:{A}   zset holdId → expiry (server clock, ms)
 *   P u:<event_id>  applied usage ids, PX usageMemoryMs
 *   P ledger        hash ledger event_id → amount, kept forever
 *   P ledger-pos, P ledger-accounts, P ledger-ready, P ledger-quarantine, P ledger-rejected
 *
 * The Cluster layout (`cluster: true`) keeps every script call in one hash slot: the keys above
 * that are per account stay, and what a consumer script writes beside a balance moves into the
 * account's slot; what is store-wide shares the tag `{ledger}`:
 *   P pos:{A}         hash topic:partition → last offset applied to A (the partition-wide
 *                     position lags it; see account_ctx in lua/position.lua)
 *   P u:{A}:<id>      applied usage ids      P ledger:{A}  A's ledger entries
 *   P rejected:{A}    refused ids of A       P claim:{A}:<id>  reference claims
 *   P ready:{t}       ready marker of slot s (t = slotTag(s)), holds the rebuild's generation
 *   P {ledger}pos, P {ledger}ready (generation), P {ledger}gen, P {ledger}layout,
 *   P {ledger}quarantine, P {ledger}rejected, P {ledger}ledger, P {ledger}claim:<id>
 *                     (ids without an account: the billing lock, undecodable events)
 * `applyBatch` there is one call to the store-wide slot (generation and partition positions),
 * one call per account of the batch (all sent at once), and one to advance the positions.
 */
export class RedisBalanceStore implements BalanceStore {
  #redis: Redis | Cluster;
  #cluster: boolean;
  #scripts: LedgerScripts;
  #prefix: string;
  #usageMemoryMs: string;
  /** RedisBalanceStoreOptions.restoreWindowMs, as the scripts take it */
  #restoreWindowMs: string;
  /** RedisBalanceStoreOptions.restoreWaitMaxMs, as the scripts take it */
  #restoreWaitMaxMs: string;
  /**
   * The control processes the last `ready()` that found the state ready saw holding records the
   * log had not acknowledged (holders.lua): the next `load` after a loss (`afterLoss`) waits for
   * them as for announced restorers (take-restorers.lua); any load forgets them.
   */
  #holdersSeen: string[] = [];
  #requireReady: boolean;
  /** RedisBalanceStoreOptions.directory */
  #directory: Redis | undefined;
  /** the token of the rebuild under way (markRebuild), whose mark `load` requires */
  #activeMark: string | undefined;
  #now: (() => number) | undefined;
  /** Cluster layout: `applied` answers withheld past a batch's stop (see #applyBatchCluster). */
  #unreported = new Map<string, BatchOutcome>();

  constructor(options: RedisBalanceStoreOptions) {
    const clientPrefix = options.redis.isCluster
      ? ((options.redis as Cluster).options.keyPrefix ?? (options.redis as Cluster).options.redisOptions?.keyPrefix)
      : (options.redis as Redis).options.keyPrefix;
    if (clientPrefix) {
      throw new Error('RedisBalanceStore: pass the prefix as `prefix`, not as the client\'s keyPrefix (SCAN ignores keyPrefix)');
    }
    const memory = options.usageMemoryMs ?? 24 * 3600_000;
    if (!Number.isSafeInteger(memory) || memory <= 0) throw new RangeError(`usageMemoryMs must be a positive integer, got ${memory}`);
    this.#redis = options.redis;
    this.#cluster = options.cluster ?? options.redis.isCluster;
    this.#prefix = options.prefix;
    this.#usageMemoryMs = String(memory);
    // On a Cluster the ready markers also carry the rebuild's generation, which keeps exactly
    // once across a rebuild (see account_ctx in lua/position.lua): never without them.
    this.#requireReady = this.#cluster || (options.requireReady ?? false);
    // The slot tag table, built here rather than on the first hold a gateway serves.
    if (this.#cluster) slotTag(0);
    this.#now = options.now;
    this.#directory = options.directory;
    const window = options.restoreWindowMs ?? RESTORE_WINDOW_MS;
    if (!Number.isSafeInteger(window) || window < 0) throw new RangeError(`restoreWindowMs must be an integer >= 0, got ${window}`);
    this.#restoreWindowMs = String(window);
    const wait = options.restoreWaitMaxMs ?? RESTORE_WAIT_MAX_MS;
    if (!Number.isSafeInteger(wait) || wait < 0) throw new RangeError(`restoreWaitMaxMs must be an integer >= 0, got ${wait}`);
    this.#restoreWaitMaxMs = String(wait);

    const expireHolds = lua('expire-holds');
    const windowsFn = lua('windows-fn');
    const define = (name: keyof LedgerScripts, source: string, numberOfKeys: number) =>
      this.#redis.defineCommand(name, numberOfKeys < 0 ? { lua: source } : { lua: source, numberOfKeys });
    define('tollgateLedgerHold', `${expireHolds}\n${windowsFn}\n${lua('hold')}`, -1);
    define('tollgateLedgerGet', `${expireHolds}\n${lua('get')}`, 4);
    define('tollgateLedgerSettle', `${expireHolds}\n${lua('settle')}`, 4);
    define('tollgateLedgerExtend', `${expireHolds}\n${lua('extend')}`, 2);
    define('tollgateLedgerRelease', lua('release'), 4);
    const position = lua('position');
    const usageFn = lua('usage-fn');
    const ledgerFn = lua('ledger-fn');
    // The usage apply counts the windows of an event whose hold it never saw (usage-fn.lua).
    const usage = `${expireHolds}\n${windowsFn}\n${position}\n${usageFn}`;
    define('tollgateLedgerApplyUsage', `${usage}\n${lua('apply-usage')}`, 8);
    define('tollgateLedgerApplyLedger', `${position}\n${ledgerFn}\n${lua('apply-ledger')}`, 5);
    define('tollgateLedgerApplyBatch', `${usage}\n${ledgerFn}\n${lua('apply-batch')}`, -1);
    define('tollgateLedgerCheckPosition', `${position}\n${lua('check-position')}`, 1);
    define('tollgateLedgerAdvancePosition', `${position}\n${lua('advance-position')}`, 1);
    define('tollgateLedgerLoad', `${lua('take-restorers')}\n${lua('load')}`, 6);
    define('tollgateLedgerSnapshot', lua('snapshot'), 3);
    define('tollgateLedgerQuarantine', `${position}\n${lua('quarantine')}`, 4);
    define('tollgateLedgerClaimReference', lua('claim-reference'), 3);
    define('tollgateLedgerClusterBegin', lua('cluster-begin'), 2);
    define('tollgateLedgerClusterAdvance', lua('cluster-advance'), 2);
    define('tollgateLedgerClusterLoad', lua('cluster-load'), 4);
    define('tollgateLedgerReject', lua('reject'), 2);
    define('tollgateLedgerClusterLoadPut', `${lua('marker-fn')}\n${lua('cluster-load-put')}`, 2);
    define('tollgateLedgerRaiseWindows', lua('raise-windows'), -1);
    define('tollgateLedgerRestartWindows', `${expireHolds}\n${windowsFn}\n${lua('restart-windows')}`, -1);
    define('tollgateLedgerEpoch', lua('epoch'), -1);
    define('tollgateLedgerTakeRestorers', `${lua('take-restorers')}\n${lua('take-restorers-call')}`, 3);
    define('tollgateLedgerHolders', lua('holders'), 1);
    define('tollgateLedgerRestoreHolds', `${expireHolds}\n${windowsFn}\n${lua('restore-holds')}`, 4);
    this.#scripts = this.#redis as unknown as LedgerScripts;
  }

  /**
   * Why the Redis this store runs on cannot hold it, or undefined when it can: a server (every
   * master of a Cluster) older than MIN_REDIS_VERSION (`redisVersionProblem`). One `INFO server`
   * per server; call it once at start, after connecting (the runtime refuses to start on an
   * answer: on an older Redis every usage apply would fail, the consumer stuck on its batch).
   * Throws what the client throws when a server does not answer.
   */
  async serverProblem(): Promise<string | undefined> {
    const servers: Array<Redis | Cluster> = this.#redis.isCluster ? (this.#redis as Cluster).nodes('master') : [this.#redis];
    for (const server of servers) {
      const problem = redisVersionProblem(await server.info('server'));
      if (problem) return problem;
    }
    return undefined;
  }

  /** The Cluster layout keeps every event id in its account's slot: `load` needs their accounts. */
  get needsEventAccounts(): boolean {
    return this.#cluster;
  }

  async hold(req: HoldRequest): Promise<HoldResult> {
    if (req.amount < 0n) throw new RangeError(`hold amount must not be negative, got ${req.amount}`);
    checkTtlMs(req.ttlMs);
    // Not connected and no offline queue: ioredis would refuse the command unsent; said so
    // here, so the caller knows there is no reservation to undo. (With an offline queue the
    // command waits for the connection, as before.)
    if (this.#redis.status !== 'ready' && this.#redis.options.enableOfflineQueue === false) throw new StoreNotReadyError(this.#redis.status);
    const overdraft = req.overdraft ?? 0n;
    if (overdraft < 0n) throw new RangeError(`overdraft must not be negative, got ${overdraft}`);
    const k = this.#accountKeys(req.accountId);
    const a = req.admission;
    // The clamp step does its arithmetic on Lua doubles, exact only below 2^53: beyond that
    // (no real request) the policy is strict. Every value it computes is at most the terms'
    // hold at max_tokens.
    const clamp = a?.policy === 'clamp' && a.segments.some((x) => x.perOutputToken > 0n) &&
      req.amount <= BigInt(Number.MAX_SAFE_INTEGER) && admissionHoldAt(a, a.maxTokens) <= BigInt(Number.MAX_SAFE_INTEGER);
    const floorAmount = a ? admissionHoldAt(a, a.floorTokens) : 0n;
    const windows = SPEND_WINDOW_NAMES.flatMap((name) => req.windows?.filter((w) => w.name === name).slice(0, 1) ?? []);
    const keys = [k.bal, k.held, k.holds, k.expiry, k.tmp, k.hwin,
      ...windows.map((w) => this.#windowBase(w.name, req.accountId, req.keyId))];
    const args = [req.holdId, int64(req.amount, 'hold amount'), String(Math.ceil(req.ttlMs)),
      this.#cluster ? this.#marker(req.accountId) : this.#readyArg(),
      int64(overdraft, 'overdraft'), clamp ? 'clamp' : '', a ? int64(a.base, 'base') : '0', clamp ? segmentArg(a!) : '',
      a ? String(a.maxTokens) : '', a ? String(a.floorTokens) : '0',
      int64(floorAmount, 'floor amount'), this.#clockArg(),
      ...windows.flatMap((w) => [w.name, int64(w.limit, `${w.name} limit`)])];
    const r = (await this.#scripts.tollgateLedgerHold(keys.length, ...keys, ...args)).map(String);
    if (r[0] === '-2') return { ok: false, reason: 'not_ready', available: 0n };
    if (r[0] === '1') {
      const amount = BigInt(r[1]!);
      const available = BigInt(r[3]!) - BigInt(r[4]!);
      const tokens = Number(r[2]);
      return a ? { ok: true, available, amount, maxTokens: tokens } : { ok: true, available, amount };
    }
    const [, kind, balance, held, required, used, reset] = r as [string, string, string, string, string, string, string];
    const available = BigInt(balance) - BigInt(held) + overdraft;
    if (kind === 'credit') return { ok: false, reason: 'insufficient_credits', available, required: BigInt(required) };
    return {
      ok: false, reason: 'spend_limit_exceeded', available, window: kind as SpendWindowName,
      limit: windows.find((w) => w.name === kind)!.limit, used: BigInt(used), resetAt: reset === '' ? null : Number(reset),
      required: BigInt(required),
    };
  }

  /** Spent + held in one spend window now, µc (tests and reconcile); 0 when nothing is counted. */
  async windowUsed(name: SpendWindowName, accountId: string, keyId: string): Promise<bigint> {
    const start = windowBounds(name, this.#now ? this.#now() : Date.now()).start;
    const v = await this.#redis.get(`${this.#windowBase(name, accountId, keyId)}:${start}`);
    return v === null ? 0n : BigInt(v);
  }

  /** lua/restart-windows.lua: one call, the account's slot (BalanceStore.restartWindows). */
  async restartWindows(accountId: string, keyId: string, names: readonly SpendWindowName[]): Promise<void> {
    const unique = SPEND_WINDOW_NAMES.filter((n) => names.includes(n));
    if (unique.length === 0) return;
    const k = this.#accountKeys(accountId);
    const bases = unique.map((n) => this.#windowBase(n, accountId, keyId));
    await this.#scripts.tollgateLedgerRestartWindows(1 + bases.length, k.hwin, ...bases, this.#clockArg(), ...unique);
  }

  async settle(holdId: string, accountId: string, actual: bigint, ttlMs: number): Promise<void> {
    checkTtlMs(ttlMs);
    const k = this.#accountKeys(accountId);
    await this.#scripts.tollgateLedgerSettle(k.held, k.holds, k.expiry, k.hwin, holdId, int64(actual, 'settled amount'), String(Math.ceil(ttlMs)), this.#clockArg());
  }

  async extend(holdId: string, accountId: string, ttlMs: number): Promise<void> {
    checkTtlMs(ttlMs);
    const k = this.#accountKeys(accountId);
    await this.#scripts.tollgateLedgerExtend(k.holds, k.expiry, holdId, String(Math.ceil(ttlMs)), this.#clockArg());
  }

  async release(holdId: string, accountId: string): Promise<void> {
    const k = this.#accountKeys(accountId);
    await this.#scripts.tollgateLedgerRelease(k.held, k.holds, k.expiry, k.hwin, holdId);
  }

  /**
   * The ready key's value, which every `load` replaces: the standalone layout's random epoch (a
   * store loaded before 2026-12-04 holds '1' until its next rebuild), the Cluster's generation.
   * Null while the state is lost or loading; undefined without `requireReady` (never lost). With
   * `announceMs`, a lost state also gets the flag `<ready key>:restorers` (the next load opens
   * the hold window) and, with `restorer` (a control process's id: it has records to put back),
   * that id in `<ready key>:record-restorers`, for that long, in the same step (lua/epoch.lua);
   * the next load makes those the set readers and new holds wait on until each calls `restored`
   * (RESTORE_WAIT_MAX_MS at most).
   */
  async epoch(announceMs?: number, restorer = '', holding?: boolean): Promise<string | null | undefined> {
    if (!this.#requireReady) return undefined;
    if (announceMs !== undefined) checkTtlMs(announceMs);
    const announce = String(Math.ceil(announceMs ?? 0));
    const hold = holding === undefined || restorer === '' ? '0' : holding ? String(RECORD_HOLDER_MS) : '-1';
    if (!this.#cluster) {
      const value = await this.#scripts.tollgateLedgerEpoch(1, this.#key('ready'), announce, '', restorer, '', hold);
      return typeof value === 'string' ? value : null;
    }
    // An empty directory is a lost state too, announced as a lost ledger is (epoch.lua): the
    // rebuild's load then opens the restore window and starts a new generation to restore into.
    if (!(await this.#directoryReady())) {
      if (announceMs !== undefined && announceMs > 0) await this.#scripts.tollgateLedgerEpoch(1, this.#g('ready'), announce, '', restorer, 'lost');
      return null;
    }
    const value = await this.#scripts.tollgateLedgerEpoch(2, this.#g('ready'), this.#g('layout'), announce, CLUSTER_LAYOUT, restorer, '', hold);
    return typeof value === 'string' ? value : null;
  }

  /**
   * BalanceStore.restored: `restorer` put back what it announced; readers stop waiting for it
   * (one SREM of `<ready>:pending`, which disappears with its last member).
   */
  async restored(restorer: string): Promise<void> {
    if (!this.#requireReady) return;
    await this.#redis.srem(`${this.#cluster ? this.#g('ready') : this.#key('ready')}:pending`, restorer);
  }

  /** The directory's ready mark (RedisBalanceStoreOptions.directory). */
  #directoryMark(): string {
    return `${this.#prefix}directory-ready`;
  }

  /** True without a separate directory Redis, else whether its ready mark is there. */
  async #directoryReady(): Promise<boolean> {
    return this.#directory === undefined || (await this.#directory.exists(this.#directoryMark())) === 1;
  }

  /** lua/restore-holds.lua, one call per account (its keys share a slot), all sent at once. */
  async restoreHolds(holds: RestoredHold[]): Promise<number | 'not_ready'> {
    const byAccount = new Map<string, RestoredHold[]>();
    for (const h of holds) {
      if (h.amount < 0n) throw new RangeError(`restored hold amount must not be negative, got ${h.amount}`);
      if (!Number.isFinite(h.ttlMs) || h.ttlMs <= 0) throw new RangeError(`restored hold ttlMs must be > 0, got ${h.ttlMs}`);
      const list = byAccount.get(h.accountId);
      if (list) list.push(h);
      else byAccount.set(h.accountId, [h]);
    }
    const answers = await Promise.all([...byAccount].map(([accountId, list]) => {
      const k = this.#accountKeys(accountId);
      const usage = this.#idScope(accountId).usage;
      const args = [this.#cluster ? this.#marker(accountId) : this.#readyArg(), k.sw, this.#clockArg()];
      for (const h of list) args.push(h.holdId, int64(h.amount, 'restored hold amount'), String(Math.ceil(h.ttlMs)), String(Math.floor(h.ts)), h.keyId, usage(h.holdId));
      return this.#scripts.tollgateLedgerRestoreHolds(k.held, k.holds, k.expiry, k.hwin, ...args);
    }));
    if (answers.some((n) => Number(n) === -2)) return 'not_ready';
    return answers.reduce((sum: number, n) => sum + Number(n), 0);
  }

  async get(accountId: string): Promise<AccountBalance> {
    const k = this.#accountKeys(accountId);
    const [b, h] = await this.#scripts.tollgateLedgerGet(k.bal, k.held, k.holds, k.expiry, this.#clockArg());
    const balance = BigInt(b);
    const held = BigInt(h);
    return { balance, held, available: balance - held };
  }

  async applyUsage(event: UsageEvent, position?: LogPosition): Promise<ApplyResult> {
    if (this.#cluster) return this.#applyOne(event, position);
    const k = this.#accountKeys(event.account_id);
    const cost = int64(BigInt(event.cost_micros), 'usage cost');
    const [field, offset] = positionArgs(position);
    return verdict(await this.#scripts.tollgateLedgerApplyUsage(
      this.#usageKey(event.event_id), k.bal, k.held, k.holds, k.expiry, this.#key('pos'), this.#key('accounts'), k.hwin,
      event.event_id, cost, this.#usageMemoryMs, event.account_id, field, offset, this.#readyArg(),
      event.key_id, usageTs(event), k.sw, this.#clockArg()));
  }

  async applyLedger(event: LedgerEvent, position?: LogPosition): Promise<ApplyResult> {
    if (this.#cluster) return this.#applyOne(event, position);
    const amount = int64(BigInt(event.amount_micros), 'ledger amount');
    const [field, offset] = positionArgs(position);
    return verdict(await this.#scripts.tollgateLedgerApplyLedger(
      this.#ledgerKey(), this.#accountKeys(event.account_id).bal, this.#key('pos'), this.#key('accounts'), this.#key('rejected'),
      event.event_id, amount, event.account_id, field, offset, this.#readyArg(), MAX_MONEY_MICROS.toString(), event.kind));
  }

  /**
   * One script call for the whole batch (see lua/apply-batch.lua); an event whose amount does
   * not fit in 64 bits is answered `failed` without being sent, and the call stops before it.
   * Standalone layout: three declared keys and one packed argument per event (`packEvent`); the
   * script derives each event's keys from the prefix (see docs/decisions.md).
   */
  async applyBatch(items: BatchItem[], options: { balanceAfter?: boolean } = {}): Promise<BatchOutcome[]> {
    if (this.#cluster) return this.#applyBatchCluster(items, options);
    const keys = [this.#key('pos'), this.#key('accounts'), this.#ledgerKey(), this.#key('rejected')];
    const args = [this.#readyArg(), this.#usageMemoryMs, MAX_MONEY_MICROS.toString(), options.balanceAfter ? '1' : '', '', this.#prefix, this.#clockArg()];
    let refused: BatchOutcome | undefined;
    let sent = 0;
    for (const { event, position } of items) {
      let packed: string;
      try {
        packed = packBatchEvent(event, position);
      } catch (err) {
        refused = { verdict: 'failed', error: err instanceof Error ? err : new Error(String(err)) };
        break;
      }
      args.push(packed);
      sent++;
    }
    const out: BatchOutcome[] = [];
    if (sent > 0) {
      out.push(...batchOutcomes(await this.#scripts.tollgateLedgerApplyBatch(keys.length, ...keys, ...args)));
      if (out.length < sent) return out;
    }
    if (refused) out.push(refused);
    return out;
  }

  /** Cluster layout: one event as a batch of one (one script path for both). */
  async #applyOne(event: UsageEvent | LedgerEvent, position: LogPosition | undefined): Promise<ApplyResult> {
    const [outcome] = await this.#applyBatchCluster([{ event, ...(position ? { position } : {}) }], {});
    if (outcome!.verdict === 'failed') throw outcome!.error;
    return outcome!.verdict;
  }

  /**
   * Cluster layout of `applyBatch` (same answers): (1) the generation and the partition-wide
   * positions in one call to the `{ledger}` slot; here an event at or before its partition's
   * position is a duplicate and one past it + 1 a gap; (2) the rest grouped by account, one
   * apply-batch.lua call per account (its slot), all sent at once; each account's own
   * positions make a replay of what a crashed attempt applied all duplicates; (3) the partition
   * positions advanced to the last event answered (only forward, only in the same generation).
   * An account's call stops at its first event neither applied nor a duplicate; other accounts'
   * later events may be applied already (their own positions then make the caller's retry of
   * them duplicates), but the answer and the partition position stop at that event, as on a
   * standalone Redis. An account's call that fails (its node away, a reply error) rejects the
   * batch once every call settled; the other calls' `applied` answers are kept for the retry.
   */
  async #applyBatchCluster(items: BatchItem[], options: { balanceAfter?: boolean }): Promise<BatchOutcome[]> {
    if (items.length === 0) return [];
    const fields = [...new Set(items.flatMap(({ position: p }) => (p ? [positionKey(p.topic, p.partition)] : [])))];
    const begin = await this.#scripts.tollgateLedgerClusterBegin(this.#g('ready'), this.#g('pos'), ...fields);
    if (!begin[0]) return [{ verdict: 'not_ready' }];
    const gen = String(begin[0]);
    const expected = new Map(fields.map((f, i) => [f, begin[i + 1] == null ? -1n : BigInt(begin[i + 1]!)]));
    const outcomes: Array<BatchOutcome | undefined> = new Array(items.length);
    let stop = items.length;
    let stopOutcome: BatchOutcome | undefined;
    const groups = new Map<string, { keys: string[]; args: string[]; at: number[] }>();
    for (let i = 0; i < items.length; i++) {
      const { event, position } = items[i]!;
      let packed: string;
      try {
        packed = packBatchEvent(event, position);
      } catch (err) {
        stop = i;
        stopOutcome = { verdict: 'failed', error: err instanceof Error ? err : new Error(String(err)) };
        break;
      }
      if (position) {
        const field = positionKey(position.topic, position.partition);
        const stored = expected.get(field)!;
        if (position.offset <= stored) { outcomes[i] = { verdict: 'duplicate' }; continue; }
        if (position.offset > stored + 1n) { stop = i; stopOutcome = { verdict: 'gap' }; break; }
        expected.set(field, position.offset);
      }
      const account = event.account_id;
      let group = groups.get(account);
      if (!group) {
        const tag = this.#tag(account);
        group = {
          keys: [`${this.#prefix}pos:${tag}`, this.#marker(account), `${this.#prefix}ledger:${tag}`, `${this.#prefix}rejected:${tag}`],
          args: [gen, this.#usageMemoryMs, MAX_MONEY_MICROS.toString(), options.balanceAfter ? '1' : '', 'a', this.#prefix, this.#clockArg()],
          at: [],
        };
        groups.set(account, group);
      }
      const k = this.#accountKeys(account);
      if (event.type === 'usage') group.keys.push(this.#idScope(account).usage(event.event_id), k.bal, k.held, k.holds, k.expiry, k.hwin);
      else group.keys.push(k.bal);
      group.args.push(packed);
      group.at.push(i);
    }
    const calls = await Promise.allSettled([...groups.values()].map(async (g) => {
      const answered = batchOutcomes(await this.#scripts.tollgateLedgerApplyBatch(g.keys.length, ...g.keys, ...g.args));
      answered.forEach((o, j) => { outcomes[g.at[j]!] = o; });
    }));
    const failed = calls.find((c) => c.status === 'rejected');
    if (failed) {
      // One account's call failed (its node away, a reply error): the whole batch is retried,
      // and the other accounts' events applied now are `duplicate` then. Keep their answers
      // for that retry, as for those past a stop below (no answer is given now).
      for (let i = 0; i < items.length; i++) this.#keepUnreported(gen, items[i]!, outcomes[i]);
      throw failed.reason;
    }
    const out: BatchOutcome[] = [];
    const reached = new Map<string, bigint>();
    let stopped = false;
    let i = 0;
    for (; i < stop && !stopped; i++) {
      let o = outcomes[i];
      // An account's call answers every event of it up to its first stop, which comes first.
      if (o === undefined) throw new Error(`ledger: no outcome for batch event ${i}`);
      if (o.verdict === 'duplicate') {
        // Applied by an earlier call of this store past its stop and never answered: answer it now.
        const key = unreportedKey(gen, items[i]!);
        const kept = this.#unreported.get(key);
        if (kept) {
          this.#unreported.delete(key);
          o = kept;
        }
      }
      out.push(o);
      stopped = o.verdict !== 'applied' && o.verdict !== 'duplicate';
      const p = items[i]!.position;
      if (!stopped && p) reached.set(positionKey(p.topic, p.partition), p.offset);
    }
    if (!stopped && stopOutcome) out.push(stopOutcome);
    // Past the stop, other accounts' calls may have applied events whose answer is not given
    // now: the caller's retry of them will be answered `duplicate` by their accounts' positions.
    // Standalone answers `applied` then (its script stopped before them), and the consumer acts
    // on `applied` only (onUsageApplied, the balance.low alert): keep those answers, bounded,
    // in this generation, for the retry. A crash loses them, as it loses a standalone answer.
    for (; i < stop; i++) this.#keepUnreported(gen, items[i]!, outcomes[i]);
    const pairs = [...reached].flatMap(([field, offset]) => [field, offset.toString()]);
    if (pairs.length > 0) await this.#scripts.tollgateLedgerClusterAdvance(this.#g('ready'), this.#g('pos'), gen, ...pairs);
    return out;
  }

  /**
   * Keeps `outcome` of `item` for the caller's retry when it is an `applied` the caller is not
   * given now (bounded: UNREPORTED_MAX, oldest dropped), in generation `gen`.
   */
  #keepUnreported(gen: string, item: BatchItem, outcome: BatchOutcome | undefined): void {
    if (outcome?.verdict !== 'applied') return;
    this.#unreported.set(unreportedKey(gen, item), outcome);
    if (this.#unreported.size > UNREPORTED_MAX) this.#unreported.delete(this.#unreported.keys().next().value!);
  }

  async checkPosition(position: LogPosition): Promise<ApplyResult> {
    const [field, offset] = positionArgs(position);
    return verdict(await this.#scripts.tollgateLedgerCheckPosition(this.#posKey(), field, offset, this.#readyArg()));
  }

  async advancePosition(position: LogPosition): Promise<void> {
    const [field, offset] = positionArgs(position);
    await this.#scripts.tollgateLedgerAdvancePosition(this.#posKey(), field, offset);
  }

  async position(topic: string, partition: number): Promise<bigint> {
    const v = await this.#redis.hget(this.#posKey(), positionKey(topic, partition));
    return v === null ? -1n : BigInt(v);
  }

  /**
   * On a Cluster: the store-wide marker holds a generation and the layout is this version's,
   * and every slot's marker holds that generation (a node that restarted empty lost its
   * slots' markers with their balances). One script call per node reads its slots' markers
   * (`#markers`); a marker it finds wrong is read again through the Cluster client before
   * the answer is false (a slot migrating between nodes is where the client is sent), and a
   * generation that changed meanwhile (another process's rebuild finished) is checked once more.
   */
  async ready(): Promise<boolean> {
    if (!this.#cluster) {
      const [exists, ...holders] = await this.#scripts.tollgateLedgerHolders(this.#key('ready'));
      if (Number(exists) !== 1) return false;
      this.#holdersSeen = holders.map(String);
      return true;
    }
    if (!(await this.#directoryReady())) return false;
    const read = (slot: number) => this.#redis.get(this.#slotMarker(slot));
    // The generation is read before the markers: a rebuild of another process that finishes
    // in between leaves every marker on a newer one. Then the check is made again against that
    // one (once), not answered false: false makes the warehouse owner's watch rebuild.
    for (let attempt = 0; ; attempt++) {
      const [[, ...holders], gen, layout] = await Promise.all([
        this.#scripts.tollgateLedgerHolders(this.#g('ready')), this.#redis.get(this.#g('ready')), this.#redis.get(this.#g('layout')),
      ]);
      if (gen === null || layout !== CLUSTER_LAYOUT) return false;
      const suspect = await this.#markers('check', gen, '', read, (m) => m === gen);
      if ((await this.#eachSlot(suspect, read)).every((m) => m === gen)) {
        this.#holdersSeen = holders.map(String);
        return true;
      }
      if (attempt > 0 || (await this.#redis.get(this.#g('ready'))) === gen) return false;
    }
  }

  /**
   * Marks a rebuild under way (`token`, for `ttlMs` at most) in the Redis that holds the key
   * directory, pools and webhooks: the directory's on a Cluster with one, else this store's
   * own. A rebuild that finds its mark gone at its end (`rebuildMarked` false) knows that Redis
   * lost its data while it ran, so what it put back before its load (accounts, keys, pools,
   * webhooks, spend windows) may be gone though the load marked the state ready: it must run
   * again (RebuildOnLoss of @tollgate/aggregator). Until `unmarkRebuild(token)`, this store's
   * `load` writes nothing when the mark is gone (RebuildSupersededError): it would mark a
   * flushed Redis ready without the directory the rebuild had put back (every key 401 until the
   * next rebuild put it back). One rebuild at a time per store.
   */
  async markRebuild(token: string, ttlMs: number): Promise<void> {
    await (this.#directory ?? this.#redis).set(this.#rebuildMark(token), '1', 'PX', ttlMs);
    this.#activeMark = token;
  }

  /** Whether the mark `markRebuild` made with `token` is still there. */
  async rebuildMarked(token: string): Promise<boolean> {
    return (await (this.#directory ?? this.#redis).exists(this.#rebuildMark(token))) === 1;
  }

  /** Removes the mark `markRebuild` made with `token` (the rebuild has ended). */
  async unmarkRebuild(token: string): Promise<void> {
    if (this.#activeMark === token) this.#activeMark = undefined;
    await (this.#directory ?? this.#redis).del(this.#rebuildMark(token));
  }

  /** Throws RebuildSupersededError when the mark of the rebuild under way is gone (Redis lost its data). */
  async #requireMark(): Promise<void> {
    const token = this.#activeMark;
    if (token !== undefined && !(await this.rebuildMarked(token))) throw new RebuildSupersededError(LOST_DURING_REBUILD);
  }

  #rebuildMark(token: string): string {
    return `${this.#prefix}${this.#directory === undefined && this.#cluster ? '{ledger}' : ''}rebuild-mark:${token}`;
  }

  async stateLost(): Promise<boolean> {
    if (!this.#requireReady) return false;
    // One round trip: the ready mark, the restore window a load opened (`<ready>:restoring`) and
    // the restorers still putting back what only they hold (`<ready>:pending`, a set: EXISTS).
    if (!this.#cluster) {
      const ready = this.#key('ready');
      const [[mark, restoring], pending] = await Promise.all([this.#redis.mget(ready, `${ready}:restoring`), this.#redis.exists(`${ready}:pending`)]);
      return mark === null || restoring !== null || pending > 0;
    }
    // The store-wide keys share the `{ledger}` slot: the same on a Cluster (and one EXISTS on the
    // directory's Redis, at once).
    const [[ready, layout, restoring], pending, directory] = await Promise.all([
      this.#redis.mget(this.#g('ready'), this.#g('layout'), `${this.#g('ready')}:restoring`), this.#redis.exists(`${this.#g('ready')}:pending`), this.#directoryReady(),
    ]);
    return ready === null || layout !== CLUSTER_LAYOUT || restoring !== null || pending > 0 || !directory;
  }

  /** One MULTI: the ready mark (and the layout, on a Cluster: all in the `{ledger}` slot) and the positions. */
  async storedPositions(): Promise<Map<string, bigint> | undefined> {
    const tx = this.#cluster
      ? this.#redis.multi().hgetall(this.#g('pos')).get(this.#g('ready')).get(this.#g('layout'))
      : this.#redis.multi().hgetall(this.#key('pos')).exists(this.#key('ready'));
    const replies = await tx.exec();
    if (replies === null) throw new Error('storedPositions: transaction was discarded');
    for (const [err] of replies) if (err) throw err;
    const [raw, ready, layout] = replies.map(([, v]) => v) as [Record<string, string>, unknown, unknown];
    const isReady = this.#cluster ? ready !== null && layout === CLUSTER_LAYOUT : ready === 1 || !this.#requireReady;
    if (!isReady) return undefined;
    // '#epoch' and the like are the hash's own bookkeeping, not positions.
    return new Map(Object.entries(raw).filter(([f]) => !f.startsWith('#')).map(([f, o]) => [f, BigInt(o)]));
  }

  /**
   * On a Cluster the read is not one atomic step (the keys are on several nodes): positions
   * first, then the balances, which may already hold later events.
   */
  async snapshot(): Promise<StateSnapshot> {
    if (this.#cluster) {
      const raw = await this.#redis.hgetall(this.#g('pos'));
      const positions = new Map(Object.entries(raw).map(([f, o]) => [f, BigInt(o)]));
      const ready = await this.ready();
      return { ready, balances: await this.balances(), positions };
    }
    const raw = await this.#scripts.tollgateLedgerSnapshot(
      this.#key('accounts'), this.#key('pos'), this.#key('ready'), `${this.#prefix}bal:`);
    let i = 0;
    const ready = Number(raw[i++]) === 1;
    const balances = new Map<string, bigint>();
    for (let n = Number(raw[i++]); n > 0; n--) balances.set(String(raw[i++]), BigInt(String(raw[i++])));
    const positions = new Map<string, bigint>();
    for (let n = Number(raw[i++]); n > 0; n--) positions.set(String(raw[i++]), BigInt(String(raw[i++])));
    return { ready, balances, positions };
  }

  async ledgerEntry(eventId: string, accountId?: string): Promise<LedgerEntry | undefined> {
    const entry = await this.#redis.hget(this.#idScope(accountId).ledger, eventId);
    return entry === null ? undefined : decodeLedgerEntry(entry);
  }

  /**
   * On a Cluster, with `accountId` the refusal is first recorded in the account's slot (what
   * `claimReference` and `waitApplied` read there); then the record and the position move in
   * the `{ledger}` slot. A crash between the two steps leaves the position before the event, so
   * the redelivery does both again (the first is idempotent).
   */
  async quarantine(record: LedgerQuarantine, position?: LogPosition, accountId?: string): Promise<ApplyResult> {
    const [field, offset] = positionArgs(position);
    const recordField = record.offset >= 0n ? `${record.topic}:${record.partition}:${record.offset}` : record.event_id;
    const json = JSON.stringify({ ...record, offset: record.offset.toString() });
    // Only a refusal to apply decides the id (see isRefusal); a record of an event nothing could
    // decode leaves it open for a valid event under it.
    const refusal = isRefusal(record);
    if (this.#cluster && accountId !== undefined && refusal) {
      const scope = this.#idScope(accountId);
      await this.#scripts.tollgateLedgerReject(scope.ledger, scope.rejected, record.event_id, record.reason);
    }
    const wide = this.#idScope(undefined);
    return verdict(await this.#scripts.tollgateLedgerQuarantine(
      this.#cluster ? this.#g('quarantine') : this.#key('quarantine'), this.#posKey(), wide.rejected, wide.ledger, recordField, json,
      field, offset, this.#readyArg(), record.event_id, refusal ? record.reason : ''));
  }

  async quarantineReason(eventId: string, accountId?: string): Promise<string | undefined> {
    return (await this.#redis.hget(this.#idScope(accountId).rejected, eventId)) ?? undefined;
  }

  async quarantined(): Promise<LedgerQuarantine[]> {
    const all = await this.#redis.hvals(this.#cluster ? this.#g('quarantine') : this.#key('quarantine'));
    return all.map((j) => {
      const r = JSON.parse(j) as Omit<LedgerQuarantine, 'offset'> & { offset: string };
      return { ...r, offset: BigInt(r.offset) };
    }).sort((a, b) => (a.topic + a.partition).localeCompare(b.topic + b.partition) || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  }

  async claimReference(eventId: string, entry: Required<LedgerEntry>, ttlMs: number, accountId?: string): Promise<ReferenceClaim> {
    positiveTtl(ttlMs);
    int64(entry.amount, 'claimed amount');
    const scope = this.#idScope(accountId);
    const [ok, held] = await this.#scripts.tollgateLedgerClaimReference(
      scope.ledger, scope.claim(eventId), scope.rejected, eventId, encodeLedgerEntry(entry), String(ttlMs));
    if (ok === 2) return { claimed: false, refused: held };
    return ok === 1 ? { claimed: true } : { claimed: false, entry: decodeLedgerEntry(held) };
  }

  async releaseReference(eventId: string, accountId?: string): Promise<void> {
    await this.#redis.del(this.#idScope(accountId).claim(eventId));
  }

  async keepReference(eventId: string, accountId?: string): Promise<void> {
    await this.#redis.persist(this.#idScope(accountId).claim(eventId));
  }

  /**
   * `SET NX PX` on the store-wide claim key of `name`, where locks were reference claims of 0 µc
   * before 2026-12: the value stays `0`, so a process of before reads a held lock as held.
   */
  async acquireLock(name: string, ttlMs: number, owner = '0'): Promise<boolean> {
    positiveTtl(ttlMs);
    return (await this.#redis.set(this.#idScope(undefined).claim(name), owner, 'PX', ttlMs, 'NX')) === 'OK';
  }

  async extendLock(name: string, owner: string, ttlMs: number): Promise<boolean> {
    positiveTtl(ttlMs);
    return Number(await this.#redis.eval(EXTEND_OWNED_LOCK, 1, this.#idScope(undefined).claim(name), owner, String(Math.ceil(ttlMs)))) === 1;
  }

  async lockOwner(name: string): Promise<string | null> {
    return this.#redis.get(this.#idScope(undefined).claim(name));
  }

  async releaseLock(name: string, owner?: string): Promise<void> {
    const key = this.#idScope(undefined).claim(name);
    if (owner === undefined) await this.#redis.del(key);
    else await this.#redis.eval(RELEASE_OWNED_LOCK, 1, key, owner);
  }

  async waitApplied(eventId: string, timeoutMs: number, accountId?: string): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const scope = this.#idScope(accountId);
    for (;;) {
      // One round trip per poll: the id is a ledger entry, a usage id, or quarantined instead
      // (one slot on a Cluster: the account's, or the store-wide one).
      const replies = await this.#redis.pipeline()
        .hexists(scope.ledger, eventId)
        .exists(scope.usage(eventId))
        .hexists(scope.rejected, eventId)
        .exec();
      if (replies === null) throw new Error('waitApplied: pipeline was discarded');
      for (const [err] of replies) if (err) throw err;
      if (replies[0]![1] === 1 || replies[1]![1] === 1) return true;
      if (replies[2]![1] === 1) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await sleep(Math.min(POLL_MS, left));
    }
  }

  /**
   * Not on the hot path: one Lua step replaces the state (see lua/load.lua). On a Cluster it
   * cannot be one step: a new generation starts and every slot is marked loading it (nothing
   * is ready), the old balances, account positions and ledger entries go, the snapshot is
   * written, then the slots' markers and the store-wide one take the new generation. Each of
   * those writes checks its slot's mark, so of two overlapping rebuilds the later one wins
   * whole and the earlier throws. Throws on a Cluster when a ledger entry or usage id
   * has no account in `snapshot.eventAccounts` (each is kept in its account's slot).
   */
  async load(snapshot: BalanceSnapshot): Promise<void> {
    // The spend windows before anything turns ready (raised only: see BalanceSnapshot.spendWindows).
    await this.#raiseWindows(snapshot.spendWindows ?? []);
    if (this.#cluster) {
      // The directory is written by the rebuild before this load (its records first): marked
      // ready before the ledger is, so the state turns ready with the ledger's last step; not
      // when the directory's Redis lost them meanwhile (the rebuild's mark is gone).
      await this.#requireMark();
      await this.#directory?.set(this.#directoryMark(), '1');
      return this.#loadCluster(snapshot);
    }
    // A fresh epoch: usage id markers count only while the pos hash holds theirs (position.lua),
    // so the load script's one atomic step also voids every marker of the effects it discards.
    const epoch = randomBytes(16).toString('hex');
    // Usage ids first (plain SETs, pipelined): by the time the state turns ready they are there.
    const ids = snapshot.usageIds ?? [];
    for (let i = 0; i < ids.length; i += LOAD_CHUNK) {
      const p = this.#redis.pipeline();
      for (const id of ids.slice(i, i + LOAD_CHUNK)) p.set(this.#usageKey(id), epoch, 'PX', this.#usageMemoryMs);
      const replies = await p.exec();
      for (const [err] of replies ?? []) if (err) throw err;
    }
    const args: string[] = [`${this.#prefix}bal:`, String(snapshot.balances.size)];
    for (const [accountId, balance] of snapshot.balances) args.push(accountId, int64(balance, `balance of ${accountId}`));
    args.push(String(snapshot.ledgerEntries.size));
    for (const [eventId, entry] of snapshot.ledgerEntries) args.push(eventId, encodeLedgerEntry(entry));
    const positions = snapshot.positions ?? new Map<string, bigint>();
    args.push(String(positions.size));
    for (const [field, offset] of positions) args.push(field, offset.toString());
    const refusals = snapshot.refusals;
    args.push(refusals === undefined ? '-1' : String(refusals.size));
    for (const [eventId, reason] of refusals ?? []) args.push(eventId, reason);
    const holders = this.#holdersSeen;
    args.push(epoch, this.#restoreWindowMs, this.#restoreWaitMaxMs, ...(snapshot.afterLoss ? holders : []));
    const mark = this.#activeMark === undefined ? '' : this.#rebuildMark(this.#activeMark);
    const loaded = await this.#scripts.tollgateLedgerLoad(this.#key('accounts'), this.#ledgerKey(), this.#key('pos'), this.#key('ready'), this.#key('rejected'), mark, ...args);
    if (Number(loaded) === -1) throw new RebuildSupersededError(LOST_DURING_REBUILD);
    if (this.#holdersSeen === holders) this.#holdersSeen = [];
  }

  /**
   * Raises each window counter to at least its count (lua/raise-windows.lua): one script call
   * per account, its counters sharing the account's slot, LOAD_CHUNK accounts at a time. A
   * window that has ended is left out; a counter gets hold.lua's expiry, a day after its end.
   */
  async #raiseWindows(counts: readonly SpendWindowCount[]): Promise<void> {
    const now = this.#now ? this.#now() : Date.now();
    const byAccount = new Map<string, string[][]>();
    for (const c of counts) {
      const end = windowBounds(c.name, c.start).end;
      if (end !== null && end <= now) continue;
      const key = `${this.#windowBase(c.name, c.accountId, c.keyId ?? '')}:${c.start}`;
      let list = byAccount.get(c.accountId);
      if (!list) byAccount.set(c.accountId, (list = []));
      list.push([key, int64(c.used, `${c.name} count`), end === null ? '' : String(end + 86_400_000)]);
    }
    const calls = [...byAccount.values()];
    for (let i = 0; i < calls.length; i += LOAD_CHUNK) {
      await Promise.all(calls.slice(i, i + LOAD_CHUNK).map((list) =>
        this.#scripts.tollgateLedgerRaiseWindows(list.length, ...list.map((w) => w[0]!), ...list.flatMap((w) => [w[1]!, w[2]!]))));
    }
  }

  async #loadCluster(snapshot: BalanceSnapshot): Promise<void> {
    const accountOf = (id: string, what: string): string => {
      const a = snapshot.eventAccounts?.get(id);
      if (a === undefined) throw new Error(`load on Redis Cluster: ${what} ${id} has no account in snapshot.eventAccounts`);
      return a;
    };
    const entries = [...snapshot.ledgerEntries].map(([id, entry]) => ({ id, entry: encodeLedgerEntry(entry), account: accountOf(id, 'ledger entry') }));
    const ids = (snapshot.usageIds ?? []).map((id) => ({ id, account: accountOf(id, 'usage id') }));
    const balances = [...snapshot.balances].map(([account, b]) => ({ account, balance: int64(b, `balance of ${account}`) }));
    const store = [this.#g('gen'), this.#g('ready'), this.#g('pos'), this.#g('layout')] as const;
    // The generation is `<µs>-<128 random bits>` (lua/cluster-load.lua): never reused, even if
    // the {ledger} master restarts empty, and it is also the epoch of the usage id markers.
    const gen = String(await this.#scripts.tollgateLedgerClusterLoad(...store, 'start', randomBytes(16).toString('hex'), String(Date.now() * 1000)));
    // Every slot is marked loading this generation (holds and applies answer not_ready); each
    // later step writes only where the mark is still ours (cluster-load-put.lua).
    const loading = `L${gen}`;
    const done = (r: unknown) => Number(r) === 1;
    let refused = (await this.#markers('mark', loading, '', (slot) => {
      const marker = this.#slotMarker(slot);
      return this.#scripts.tollgateLedgerClusterLoadPut(marker, marker, loading, 'mark');
    }, done)).length;
    if (refused > 0) throw new RebuildSupersededError();
    const put = async (key: string, op: string, ...values: string[]) => {
      if (await this.#scripts.tollgateLedgerClusterLoadPut(this.#slotMarker(calculateSlot(key)), key, loading, op, ...values) !== 1) refused++;
    };
    const refusals = snapshot.refusals === undefined ? undefined : [...snapshot.refusals];
    for (const pattern of ['bal', 'pos', 'ledger', ...(refusals ? ['rejected'] : [])]) {
      const keys = await this.#scanKeys(`${globLiteral(this.#prefix)}${pattern}:{*}`);
      await each(keys, (key) => put(key, 'del'));
    }
    if (refusals) {
      // Each where quarantine() put it: the store-wide hash, and its account's when known.
      await put(this.#g('rejected'), 'del');
      await each(refusals, ([id, reason]) => put(this.#g('rejected'), 'hset', id, reason));
      await each(refusals.filter(([id]) => snapshot.eventAccounts?.has(id)),
        ([id, reason]) => put(this.#idScope(snapshot.eventAccounts!.get(id)!).rejected, 'hset', id, reason));
    }
    // Usage ids hold the generation they count in (account_ctx in lua/position.lua): markers of
    // effects applied before this rebuild (or slipping in before its marks) stop counting.
    await each(ids, ({ id, account }) => put(this.#idScope(account).usage(id), 'setpx', gen, this.#usageMemoryMs));
    await each(balances, ({ account, balance }) => put(this.#accountKeys(account).bal, 'set', balance));
    await each(entries, ({ id, entry, account }) => put(this.#idScope(account).ledger, 'hset', id, entry));
    // A gateway announced requests in flight to restore while the state was lost (`epoch` null):
    // holds wait the restore window once the slots turn ready (lua/restore-holds.lua).
    // Readers also wait for each of them to say it is done (`<ready>:pending`, stateLost).
    const holders = this.#holdersSeen;
    const announced = await this.#scripts.tollgateLedgerTakeRestorers(`${this.#g('ready')}:restorers`, `${this.#g('ready')}:record-restorers`, `${this.#g('ready')}:pending`, this.#restoreWaitMaxMs, ...(snapshot.afterLoss ? holders : []));
    if (this.#holdersSeen === holders) this.#holdersSeen = [];
    const window = announced === 1 ? this.#restoreWindowMs : '0';
    refused += (await this.#markers('ready', loading, gen, (slot) => {
      const marker = this.#slotMarker(slot);
      return this.#scripts.tollgateLedgerClusterLoadPut(marker, marker, loading, 'ready', gen, window);
    }, done, window)).length;
    if (refused > 0) throw new RebuildSupersededError();
    // The store-wide restore window (stateLost), set before the store-wide mark turns ready.
    if (window !== '0') await this.#redis.set(`${this.#g('ready')}:restoring`, '1', 'PX', Number(window));
    const positions = [...(snapshot.positions ?? new Map<string, bigint>())].flatMap(([f, o]) => [f, o.toString()]);
    await this.#requireMark();
    const finished = await this.#scripts.tollgateLedgerClusterLoad(...store, 'finish', gen, CLUSTER_LAYOUT, ...positions);
    if (finished !== 1) throw new RebuildSupersededError();
  }

  async balances(): Promise<Map<string, bigint>> {
    const keys = await this.#scanKeys(`${globLiteral(this.#prefix)}bal:{*}`);
    const out = new Map<string, bigint>();
    if (this.#cluster) {
      // One GET per key (a multi-key MGET must stay in one slot).
      await each(keys, async (key) => {
        const value = await this.#redis.get(key);
        if (value !== null) out.set(this.#accountOf(key), BigInt(value));
      });
      return out;
    }
    for (let i = 0; i < keys.length; i += LOAD_CHUNK) {
      const chunk = keys.slice(i, i + LOAD_CHUNK);
      const values = await this.#redis.mget(...chunk);
      chunk.forEach((key, j) => {
        const value = values[j];
        // A key deleted between SCAN and MGET is simply not a balance any more.
        if (value !== null && value !== undefined) out.set(this.#accountOf(key), BigInt(value));
      });
    }
    return out;
  }

  /** The client belongs to the caller; nothing to release here. */
  async close(): Promise<void> {}

  /** The test clock for the scripts ('' = the Redis server's TIME). */
  #clockArg(): string {
    return this.#now ? String(Math.floor(this.#now())) : '';
  }

  /**
   * `{<tag>}` of an account: every key builder goes through here. Cluster: `accountHashTag`
   * (never an empty tag); standalone: the raw id (no slots; the Lua scripts name keys so).
   */
  #tag(accountId: string): string {
    return `{${this.#cluster ? accountHashTag(accountId) : accountId}}`;
  }

  #accountKeys(accountId: string) {
    const tag = this.#tag(accountId);
    return {
      bal: `${this.#prefix}bal:${tag}`,
      held: `${this.#prefix}held:${tag}`,
      holds: `${this.#prefix}holds:${tag}`,
      expiry: `${this.#prefix}hexp:${tag}`,
      tmp: `${this.#prefix}tmp:${tag}`,
      hwin: `${this.#prefix}hwin:${tag}`,
      /** the spend-window counters' base (`#windowBase`; lua/windows-fn.lua) */
      sw: `${this.#prefix}sw:${tag}`,
    };
  }

  /** Cluster layout: the store-wide keys, all under the hash tag `{ledger}`. */
  #g(name: 'pos' | 'ready' | 'gen' | 'layout' | 'quarantine' | 'rejected' | 'ledger'): string {
    return `${this.#prefix}{ledger}${name}`;
  }

  #posKey(): string {
    return this.#cluster ? this.#g('pos') : this.#key('pos');
  }

  /** Cluster layout: the ready marker of a slot, and of an account's slot. */
  #slotMarker(slot: number): string {
    return `${this.#prefix}ready:{${slotTag(slot)}}`;
  }

  #marker(accountId: string): string {
    return this.#slotMarker(calculateSlot(this.#accountKeys(accountId).bal));
  }

  /** Every slot, by the node the client's slot map says serves it (`host:port`; '' for a plain Redis). */
  #slotsByNode(): Map<string, number[]> {
    const byNode = new Map<string, number[]>();
    const owners = this.#redis.isCluster ? (this.#redis as Cluster).slots : [];
    for (let slot = 0; slot < SLOTS; slot++) {
      const node = owners[slot]?.[0] ?? '';
      let list = byNode.get(node);
      if (!list) byNode.set(node, (list = []));
      list.push(slot);
    }
    return byNode;
  }

  /**
   * `read` of each slot of `slots` (one command each, LOAD_CHUNK at a time) through the client,
   * which follows a slot to where it moved (MOVED, ASK) and refreshes its map: what ready() and
   * the rebuild's marks fall back to. Answers the replies in the order of `slots`.
   */
  async #eachSlot(slots: readonly number[], read: (slot: number) => Promise<unknown>): Promise<unknown[]> {
    const out = new Array<unknown>(slots.length);
    await each([...slots.keys()], async (i) => { out[i] = await read(slots[i]!); });
    return out;
  }

  /**
   * `op` of lua/cluster-markers.lua on every slot's ready marker: one script call per node
   * with the markers of the slots the client's map says it serves (3 calls on 3 masters where
   * one command per slot made 16,384, docs/scaling.md). A node whose call fails (its slots
   * moved or migrating since the client read its map, a Redis before 7.0 without script
   * flags) goes one slot at a time instead (`#eachSlot`): `oneSlot` sends that slot's command,
   * `ok` judges its reply. Answers the slots that did not hold `v` (check) or refused (mark,
   * ready); throws when the per-slot path fails too.
   */
  async #markers(op: 'check' | 'mark' | 'ready', v: string, gen: string,
    oneSlot: (slot: number) => Promise<unknown>, ok: (reply: unknown) => boolean, window = '0'): Promise<number[]> {
    const nodes = new Map<string, Redis>();
    if (this.#redis.isCluster) for (const n of (this.#redis as Cluster).nodes('master')) nodes.set(`${n.options.host}:${n.options.port}`, n);
    else nodes.set('', this.#redis as Redis);
    const failed: number[] = [];
    const perSlot: number[] = [];
    await Promise.all([...this.#slotsByNode()].map(async ([key, slots]) => {
      const node = nodes.get(key);
      if (node === undefined) return void perSlot.push(...slots);
      const args = [op, v, gen, window, ...slots.map((slot) => this.#slotMarker(slot))];
      let positions: number[];
      try {
        // By SHA1; the whole text once to a node that has not cached it (NOSCRIPT).
        const script = op === 'check' ? MARKERS.read : MARKERS.write;
        const send = (whole: boolean) => op === 'check'
          ? (whole ? node.eval_ro(script.lua, 0, ...args) : node.evalsha_ro(script.sha, 0, ...args))
          : (whole ? node.eval(script.lua, 0, ...args) : node.evalsha(script.sha, 0, ...args));
        positions = (await send(false).catch((err: unknown) => {
          if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err;
          return send(true);
        })) as number[];
      } catch {
        return void perSlot.push(...slots);
      }
      for (const p of positions) failed.push(slots[p - 1]!);
    }));
    (await this.#eachSlot(perSlot, oneSlot)).forEach((r, i) => { if (!ok(r)) failed.push(perSlot[i]!); });
    return failed;
  }

  /**
   * Where event ids live: on a Cluster an account's in its slot, the others (no account
   * given: the billing lock, undecodable events) under `{ledger}`; standalone, store-wide.
   */
  #idScope(accountId: string | undefined): IdScope {
    const p = this.#prefix;
    if (!this.#cluster) {
      return { ledger: this.#ledgerKey(), rejected: this.#key('rejected'), usage: (id) => this.#usageKey(id), claim: (id) => `${p}claim:${id}` };
    }
    if (accountId === undefined) {
      return { ledger: this.#g('ledger'), rejected: this.#g('rejected'), usage: (id) => `${p}{ledger}u:${id}`, claim: (id) => `${p}{ledger}claim:${id}` };
    }
    const tag = this.#tag(accountId);
    return { ledger: `${p}ledger:${tag}`, rejected: `${p}rejected:${tag}`, usage: (id) => `${p}u:${tag}:${id}`, claim: (id) => `${p}claim:${tag}:${id}` };
  }

  #usageKey(eventId: string): string {
    return `${this.#prefix}u:${eventId}`;
  }

  #ledgerKey(): string {
    return `${this.#prefix}ledger`;
  }

  /** Store-wide keys; named so they cannot collide with the key directory's under one prefix. */
  /**
   * A spend window's counter key without its window start (hold.lua appends `:<start>`), in its
   * account's slot: `P sw:{A}:<window>:k:<key id>` for the key windows, `…:a` for the account's.
   */
  #windowBase(name: SpendWindowName, accountId: string, keyId: string): string {
    return `${this.#prefix}sw:${this.#tag(accountId)}:${name}:${name.startsWith('key_') ? `k:${keyId}` : 'a'}`;
  }

  #key(name: 'pos' | 'accounts' | 'ready' | 'quarantine' | 'rejected'): string {
    return `${this.#prefix}ledger-${name}`;
  }

  #readyArg(): string {
    if (this.#cluster) return this.#g('ready');
    return this.#requireReady ? this.#key('ready') : '';
  }

  /** `P bal:{A}` → A */
  #accountOf(balanceKey: string): string {
    const tag = balanceKey.slice(this.#prefix.length + 'bal:{'.length, -1);
    // Undo accountHashTag: an escaped tag is U+0001 + the id.
    return this.#cluster && tag[0] === TAG_ESCAPE ? tag.slice(1) : tag;
  }

  /** Keys matching a glob, on every master of a Cluster (SCAN is per node). */
  async #scanKeys(match: string): Promise<string[]> {
    const nodes = this.#redis.isCluster ? (this.#redis as Cluster).nodes('master') : [this.#redis as Redis];
    const seen = new Set<string>();
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT);
        for (const key of keys) seen.add(key); // SCAN may return a key more than once
        cursor = next;
      } while (cursor !== '0');
    }
    return [...seen];
  }
}

/** Key of a withheld `applied` answer: the generation, the event's position and its id. */
function unreportedKey(gen: string, { event, position }: BatchItem): string {
  return JSON.stringify([gen, position ? positionKey(position.topic, position.partition) : '', position?.offset.toString() ?? '', event.event_id]);
}

/** `fn` over `list`, LOAD_CHUNK calls in flight at a time (single-key commands, any slot). */
async function each<T>(list: readonly T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < list.length; i += LOAD_CHUNK) await Promise.all(list.slice(i, i + LOAD_CHUNK).map(fn));
}

/**
 * The oldest Redis the ledger's scripts run on (major, minor): usage-fn.lua writes the usage id
 * marker and reads the one it replaces in one `SET … GET`, an option of Redis 6.2 on (docs/
 * decisions.md, "The usage apply reads nothing another call already answers").
 */
export const MIN_REDIS_VERSION: readonly [number, number] = [6, 2];

/**
 * Why a Redis whose `INFO server` answer is `info` cannot hold the ledger, or undefined when it
 * can: its `redis_version` (e.g. `7.0.15`) is below MIN_REDIS_VERSION. An answer without a
 * readable version (a proxy that hides it) passes: the scripts then fail loudly if it is old.
 */
export function redisVersionProblem(info: string): string | undefined {
  const m = /^redis_version:((\d+)\.(\d+)(?:\.\d+)?)\s*$/m.exec(info);
  if (!m) return undefined;
  const [version, major, minor] = [m[1], Number(m[2]), Number(m[3])];
  const [needMajor, needMinor] = MIN_REDIS_VERSION;
  if (major > needMajor || (major === needMajor && minor >= needMinor)) return undefined;
  return `is Redis ${version}; Tollgate needs Redis ${needMajor}.${needMinor} or later (the ledger writes a usage id marker and reads the one it replaces with SET … GET)`;
}

/** apply-batch.lua's flat reply → one outcome per event answered. */
function batchOutcomes(raw: Array<number | string>): BatchOutcome[] {
  const out: BatchOutcome[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const code = Number(raw[i]);
    const extra = String(raw[i + 1] ?? '');
    if (code === -9) {
      // Shaped like the client's own reply errors, so isPoisonError judges it the same way.
      const error = new Error(extra);
      error.name = 'ReplyError';
      out.push({ verdict: 'failed', error });
    } else if (code === 1 && extra !== '') {
      out.push({ verdict: 'applied', balanceAfter: BigInt(extra) });
    } else {
      out.push({ verdict: verdict(code) });
    }
  }
  return out;
}

/**
 * One batch event as apply-batch.lua's single packed argument:
 * `<type><amount><ledger kind> <offset> <id bytes> <account bytes> <ts> <key bytes> <event id><account id><key id><position field>`,
 * type `u` (usage, no kind) or `l` (ledger, its kind: `l5000000grant …`); ts (epoch ms) and
 * the key id are the usage event's (its spend windows, lua/usage-fn.lua); a ledger event has ''
 * and 0 there. The lengths are UTF-8 byte counts (what the client sends and Lua's string.sub
 * counts), so an id, account or key may hold any characters, the space included, with no escaping; the position
 * field (`topic:partition`, or '' without a position) is the rest. `amount` is an integer
 * string already checked to fit in 64 bits (µc); the offset is '' without a position.
 */
export function packEvent(event: Pick<UsageEvent, 'type' | 'event_id' | 'key_id' | 'ts'> | Pick<LedgerEvent, 'type' | 'event_id' | 'kind'>, amount: Amount, accountId: string, position: LogPosition | undefined): string {
  const offset = position ? position.offset.toString() : '';
  const field = position ? positionKey(position.topic, position.partition) : '';
  const ids = `${Buffer.byteLength(event.event_id)} ${Buffer.byteLength(accountId)}`;
  if (event.type === 'usage') {
    return `u${amount} ${offset} ${ids} ${usageTs(event)} ${Buffer.byteLength(event.key_id)} ${event.event_id}${accountId}${event.key_id}${field}`;
  }
  return `l${amount}${event.kind} ${offset} ${ids}  0 ${event.event_id}${accountId}${field}`;
}

/** `packEvent` of a batch item, its amount checked to fit in 64 bits; throws a RangeError when it does not. */
function packBatchEvent(event: UsageEvent | LedgerEvent, position: LogPosition | undefined): string {
  const amount = event.type === 'usage'
    ? int64(BigInt(event.cost_micros), 'usage cost') : int64(BigInt(event.amount_micros), 'ledger amount');
  return packEvent(event, amount, event.account_id, position);
}

/**
 * A usage event's `ts` (epoch ms) as the apply scripts take it: the time its spend windows are
 * counted at when its hold was never seen (lua/windows-fn.lua), the time a rebuild counts it at.
 * Throws a RangeError unless it is a non-negative safe integer (the event decoder's rule).
 */
function usageTs(event: Pick<UsageEvent, 'ts'>): string {
  if (!Number.isSafeInteger(event.ts) || event.ts < 0) throw new RangeError(`usage ts must be a non-negative integer (epoch ms), got ${event.ts}`);
  return String(event.ts);
}

/**
 * A ledger entry as the ledger hash keeps it: `<amount> <kind>` (µc, signed), as the apply
 * scripts write it (lua/ledger-fn.lua). `decodeLedgerEntry` also reads a bare `<amount>`, what
 * the hash held before kinds were kept (2026-12); its kind is then unknown.
 * Throws a RangeError when the amount does not fit in 64 bits.
 */
export function encodeLedgerEntry(entry: LedgerEntry): string {
  const amount = int64(entry.amount, 'ledger entry amount');
  return entry.kind === undefined ? amount : `${amount} ${entry.kind}`;
}

/** The inverse of `encodeLedgerEntry`; throws on text it did not write. */
export function decodeLedgerEntry(text: string): LedgerEntry {
  const m = /^(-?\d+)(?: ([a-z_]+))?$/.exec(text);
  if (!m || (m[2] !== undefined && !LEDGER_KINDS.includes(m[2] as LedgerKind))) {
    throw new Error(`ledger entry not understood: ${JSON.stringify(text.slice(0, 100))}`);
  }
  return m[2] === undefined ? { amount: BigInt(m[1]!) } : { amount: BigInt(m[1]!), kind: m[2] as LedgerKind };
}

/** Throws a RangeError unless `ttlMs` (a claim's or a lock's lifetime, ms) is a positive integer: what `PX` takes. */
function positiveTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new RangeError(`ttlMs must be a positive integer, got ${ttlMs}`);
}

function positionArgs(p: LogPosition | undefined): [string, string] {
  return p ? [positionKey(p.topic, p.partition), p.offset.toString()] : ['', ''];
}

function verdict(code: number): ApplyResult {
  switch (code) {
    case 1: return 'applied';
    case 0: return 'duplicate';
    case -1: return 'gap';
    case -2: return 'not_ready';
    case -3: return 'out_of_range';
    default: throw new Error(`unexpected ledger script result ${code}`);
  }
}
