import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { guardOperatorRoutes, parseEnumParam, parseIntParam, parseTime, queryParam, registerServedElsewhere } from '@tollgate/http';
import { CatalogError, parseCatalog } from '@tollgate/pricing';
import type { Catalog, PriceBook } from '@tollgate/pricing';
import type { KeyDirectory } from '@tollgate/keys';
import { RebuildSupersededError, tryWithLock, type BalanceStore } from '@tollgate/ledger';
import { repairMismatchedRollups, rollupMismatches, ROLLUP_SETTLE_MS, type LogPositions, type Warehouse } from '@tollgate/warehouse';
import { rebuild, RebuildLogUnavailableError, reconcile } from './rebuild.ts';
import { rerate } from './rerate.ts';

export interface OpsDeps {
  warehouse: Warehouse;
  balances: BalanceStore;
  keys: KeyDirectory;
  adminToken: string;
  /** FINANCE_TOKEN: answered 403 here (no ops route is a finance route) rather than 401 */
  financeToken?: string | undefined;
  /** waits until everything published so far has reached the warehouse (embedded mode) */
  settle?: () => Promise<void>;
  /**
   * Embedded mode: runs `fn` with the ledger and warehouse groups held at one point of the
   * in-process log (`MemoryLog.quiesce`), which has no positions to compare them at; so
   * `reconcile` and `rebuild` are exact under live traffic there too. Absent: they use log
   * positions.
   */
  quiesce?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** see `rebuild`'s `refusalsStored`: awaited before a rebuild reads the warehouse */
  refusalsStored?: () => Promise<boolean>;
  /**
   * Distributed: resolves true once the warehouse group has stored everything on the usage topic
   * (`KafkaLog.committedThrough`, bounded), false when it has not in time (behind, down, or
   * Kafka away). The rollup repair refuses then: the group's inserts of late events (a backlog
   * after an outage, whose events fall in buckets that have "settled" by the clock) would race
   * the rebuild of those buckets and count their events twice or not at all.
   */
  usageStored?: () => Promise<boolean>;
  /** see `rebuild`'s `logEnd`: what the warehouse must hold before a rebuild reads it */
  logEnd?: () => Promise<LogPositions | undefined>;
  /**
   * This process's price book, when it has one: its versions are stored in the warehouse's
   * `price_versions` before a rerate (idempotent), so events priced with them can be re-priced.
   */
  priceBook?: () => PriceBook | undefined;
  /**
   * Hot state kept beside balances and keys that must be back before the rebuild marks Redis
   * ready (issue 10: upstream pools, so no gateway routes to the configured default meanwhile).
   */
  beforeRebuild?: () => Promise<unknown>;
  /**
   * Runs a rebuild asked for by hand as this process's one rebuild (RebuildOnLoss.exclusive):
   * undefined when another is under way (its own after a loss), and the route answers 409.
   * Absent: the rebuild runs at once.
   */
  exclusive?: <T>(fn: () => Promise<T>) => Promise<{ value: T } | undefined>;
}

/** The lock of `POST /ops/v1/rollups/repair` (`acquireLock` of the balance store, as the month close's), and how long it holds at most (ms). */
const ROLLUP_REPAIR_LOCK = 'warehouse:rollup-repair';
const ROLLUP_REPAIR_LOCK_TTL_MS = 30 * 60_000;

/** Longest rerate window one call covers: `tollgate rerate` asks day by day and sums. */
export const MAX_RERATE_WINDOW_MS = 31 * 24 * 3600_000;

/**
 * In a process that does not own the warehouse: every `/ops/…` path answers 404 naming the
 * process that serves it, so an operator (or `tollgate reconcile --url`) pointed at a gateway or
 * control process learns where to go instead of reading "does not exist" as a typo.
 */
export function registerOpsElsewhere(app: FastifyInstance): void {
  registerServedElsewhere(app, '/ops/*', 'the process that owns the warehouse (an aggregator running the warehouse group)');
}

/**
 * Operations on the process that owns the warehouse (chDB lives in one process, so this is
 * where `tollgate rebuild` and `tollgate reconcile` are carried out).
 */
/**
 * Runs `fn` where the ledger's and the warehouse's view of the log meet: inside `quiesce`
 * (embedded), else after `settle` (log positions line the two up themselves).
 */
async function atOnePoint<T>(deps: OpsDeps, fn: () => Promise<T>): Promise<T> {
  if (deps.quiesce) return deps.quiesce(fn);
  await deps.settle?.();
  return fn();
}

export function registerOps(app: FastifyInstance, deps: OpsDeps): void {
  app.register(async (ops) => {
    guardOperatorRoutes(ops, { adminToken: deps.adminToken, financeToken: deps.financeToken });
    ops.post('/ops/v1/rebuild', { config: { body: false } }, async () => {
      const run = async () => {
        await deps.beforeRebuild?.();
        // Embedded: with both consumer groups held at one point of the log, the warehouse does
        // not change under the rebuild's reads (they agree: under traffic they failed with 500
        // "never agreed") and the loaded state is exactly what the ledger group resumes from.
        return atOnePoint(deps, () => rebuild(deps));
      };
      try {
        if (!deps.exclusive) return await run();
        const done = await deps.exclusive(run);
        if (!done) throw gatewayError('conflict', 'a rebuild is under way in this process (after a loss, or asked for by hand); ask again once it has finished');
        return done.value;
      } catch (err) {
        // Another process's rebuild (the warehouse owner's own, after a loss) started meanwhile.
        if (err instanceof RebuildSupersededError) throw gatewayError('conflict', 'another rebuild started meanwhile and decides the state; ask again once it has finished');
        if (err instanceof RebuildLogUnavailableError) throw gatewayError('state_unavailable', err.message);
        throw err;
      }
    });
    // Re-prices stored usage (read only): under each event's own price version, or under the
    // catalog in the body (a preview). Body: {from, to, catalog?, account_id?}; times RFC 3339,
    // a full date (00:00 UTC) or epoch ms; the window at most MAX_RERATE_WINDOW_MS.
    // (Usage analytics moved to GET /admin/v1/usage*, services/control/src/analytics.ts.)
    ops.post('/ops/v1/rerate', async (request) => {
      const body = (request.body ?? {}) as Record<string, unknown>;
      if (typeof body !== 'object' || Array.isArray(body)) throw gatewayError('invalid_request', 'body: expected a JSON object {from, to, catalog?, account_id?}');
      const time = (name: 'from' | 'to'): number => {
        const v = body[name];
        if (typeof v !== 'string' && typeof v !== 'number') throw gatewayError('invalid_request', `${name}: required, an RFC 3339 time, a date or epoch milliseconds`);
        return parseTime(String(v), name);
      };
      const from = time('from');
      const to = time('to');
      if (to <= from) throw gatewayError('invalid_request', 'to: must be after from');
      if (to - from > MAX_RERATE_WINDOW_MS) throw gatewayError('invalid_request', `to: the window may span at most ${MAX_RERATE_WINDOW_MS / 86_400_000} days; ask for it in parts`);
      const accountId = body['account_id'];
      if (accountId !== undefined && (typeof accountId !== 'string' || accountId === '')) throw gatewayError('invalid_request', 'account_id: expected a non-empty string');
      let catalog: Catalog | undefined;
      if (body['catalog'] !== undefined) {
        try {
          catalog = parseCatalog(body['catalog'], 'catalog');
        } catch (err) {
          if (err instanceof CatalogError) throw gatewayError('invalid_request', err.message.slice(0, 4000));
          throw err;
        }
      }
      await deps.settle?.();
      const book = deps.priceBook?.();
      if (book !== undefined) await deps.warehouse.insertPriceVersions(book.toStored());
      return rerate(deps.warehouse, { from, to, ...(catalog !== undefined ? { catalog } : {}), ...(accountId !== undefined ? { accountId } : {}) });
    });
    // Rebuilds the rollup rows that differ from raw events, in buckets that have settled
    // (repairMismatchedRollups), then checks all of them again. Admin only; no body. One at a
    // time across processes (two rebuilding the same rows at once would double them): 409 else.
    // Distributed, only once the warehouse group has stored the usage topic (`usageStored`): 409
    // while it is behind, whose inserts may still add to buckets settled by the clock.
    ops.post('/ops/v1/rollups/repair', { config: { body: false } }, async () => {
      const repair = await tryWithLock(deps.balances, ROLLUP_REPAIR_LOCK, ROLLUP_REPAIR_LOCK_TTL_MS, async () => {
        await deps.settle?.();
        if (deps.usageStored && !(await deps.usageStored())) {
          throw gatewayError('conflict', 'the warehouse group has not stored every usage event on the log yet (behind, down, or Kafka unreachable): its inserts may still add to the buckets a repair would rebuild; try again once it has caught up');
        }
        const { repaired, leftRecent } = await repairMismatchedRollups(deps.warehouse);
        // Checked again by reconcile's rule: only settled buckets count (a bucket still being
        // written under traffic differs while an insert is in flight, and is not repaired here).
        const after = await rollupMismatches(deps.warehouse);
        return {
          repaired, left_recent: leftRecent, settle_ms: ROLLUP_SETTLE_MS,
          rollups: { ok: Object.values(after.settled).every((n) => n === 0), mismatched_rows: after.settled, recent_rows: after.recent },
        };
      });
      if (!repair.held) throw gatewayError('conflict', 'a rollup repair is already running; try again when it has finished');
      return repair.value;
    });
    // Poison events every consumer group set aside (the ledger's arrive by the dead-letter topic).
    ops.get('/ops/v1/quarantine', async () => ({
      data: (await deps.warehouse.quarantined()).map((q) => ({ ...q, offset: q.offset.toString() })),
    }));
    ops.get('/ops/v1/reconcile', { config: { query: ['timeout_ms', 'rollups'] } }, async (request, reply) => {
      const t = queryParam(request.query, 'timeout_ms');
      const timeoutMs = t === undefined ? 30_000 : parseIntParam(t, 'timeout_ms', 0, 600_000);
      const r = queryParam(request.query, 'rollups');
      const rollups = r === undefined ? false : parseEnumParam(r, 'rollups', ['true', 'false'] as const) === 'true';
      const run = () => reconcile(deps, { timeoutMs, rollups });
      const report = await atOnePoint(deps, run);
      return reply.code(report.ok ? 200 : 409).send(report);
    });
  });
}
