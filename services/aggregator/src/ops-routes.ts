import type { FastifyInstance } from 'fastify';
import { requireToken } from '@tollgate/http';
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
    ops.get('/ops/v1/reconcile', async (request, reply) => {
      await deps.settle?.();
      const q = request.query as { timeout_ms?: string };
      const report = await reconcile(deps, { timeoutMs: Number(q.timeout_ms ?? 30_000) || 30_000 });
      return reply.code(report.ok ? 200 : 409).send(report);
    });
  });
}
