import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { parseEnumParam, parseIntParam, parseTimeRange, queryParam, requireToken } from '@tollgate/http';
import type { KeyDirectory } from '@tollgate/keys';
import type { BalanceStore } from '@tollgate/ledger';
import type { Warehouse } from '@tollgate/warehouse';
import { rebuild, reconcile } from './rebuild.ts';

export interface OpsDeps {
  warehouse: Warehouse;
  balances: BalanceStore;
  keys: KeyDirectory;
  adminToken: string;
  /** waits until everything published so far has reached the warehouse (embedded mode) */
  settle?: () => Promise<void>;
}

/**
 * Operations on the process that owns the warehouse (chDB lives in one process, so this is
 * where `tollgate rebuild` and `tollgate reconcile` are carried out).
 */
export function registerOps(app: FastifyInstance, deps: OpsDeps): void {
  app.register(async (ops) => {
    ops.addHook('onRequest', requireToken(deps.adminToken));
    ops.post('/ops/v1/rebuild', async () => {
      await deps.settle?.();
      return rebuild(deps);
    });
    // Analytics straight from the warehouse (deduplicated reads; money as exact strings).
    // Bad query values are 400s naming the parameter (libs/http params): times are RFC 3339,
    // a full date (00:00 UTC) or epoch ms; `from` inclusive, `to` exclusive.
    const filter = (q: unknown) => {
      const accountId = queryParam(q, 'account_id');
      const keyId = queryParam(q, 'key_id');
      return {
        ...(accountId !== undefined ? { accountId } : {}),
        ...(keyId !== undefined ? { keyId } : {}),
        ...parseTimeRange(q),
      };
    };
    ops.get('/ops/v1/usage/totals', async (request) => {
      const t = await deps.warehouse.usageTotals(filter(request.query));
      return { ...t, costMicros: t.costMicros.toString() };
    });
    ops.get('/ops/v1/usage/breakdown', async (request) => {
      const q = request.query;
      const g = queryParam(q, 'group_by');
      const groupBy = g === undefined ? 'model' : parseEnumParam(g, 'group_by', ['model', 'key', 'day', 'status'] as const);
      const rows = await deps.warehouse.usageBreakdown({ ...filter(q), groupBy });
      return { data: rows.map((r) => ({ ...r, costMicros: r.costMicros.toString() })) };
    });
    ops.get('/ops/v1/usage/events', async (request) => ({
      data: await deps.warehouse.usageEventIds(filter(request.query)),
    }));
    ops.get('/ops/v1/usage/events/:id', async (request, reply) => {
      const e = await deps.warehouse.getUsageEvent((request.params as { id: string }).id);
      if (!e) throw gatewayError('not_found', 'no such usage event');
      return e;
    });
    // Poison events every consumer group set aside (the ledger's arrive by the dead-letter topic).
    ops.get('/ops/v1/quarantine', async () => ({
      data: (await deps.warehouse.quarantined()).map((q) => ({ ...q, offset: q.offset.toString() })),
    }));
    ops.get('/ops/v1/reconcile', async (request, reply) => {
      const t = queryParam(request.query, 'timeout_ms');
      const timeoutMs = t === undefined ? 30_000 : parseIntParam(t, 'timeout_ms', 0, 600_000);
      await deps.settle?.();
      const report = await reconcile(deps, { timeoutMs });
      return reply.code(report.ok ? 200 : 409).send(report);
    });
  });
}
