// The ops routes of a process that owns a real chDB warehouse, on a port of their own, for the
// tests that drive them over HTTP or through the CLI (an operator's view).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHttpServer } from '@tollgate/http';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore } from '@tollgate/ledger';
import type { PriceBook } from '@tollgate/pricing';
import { createChdbClickHouse, Warehouse } from '@tollgate/warehouse';
import type { UsageEvent } from '@tollgate/events';
import { registerOps } from '@tollgate/aggregator';

export interface OpsApp {
  /** the listening address, `http://127.0.0.1:<port>` */
  url: string;
  warehouse: Warehouse;
  /** the chDB directory (also a DATA_DIR for the CLI) */
  dir: string;
  close(): Promise<void>;
}

/**
 * A migrated chDB warehouse in a new temporary directory holding `events`, and `registerOps`
 * with memory balances and keys and the admin token `token`, listening on 127.0.0.1.
 * `usageStored`: the rollup repair's check that the warehouse group has stored the usage log (OpsDeps).
 */
export async function startOpsApp(o: { token: string; name: string; events?: UsageEvent[]; priceBook?: PriceBook; usageStored?: () => Promise<boolean> }): Promise<OpsApp> {
  const dir = mkdtempSync(join(tmpdir(), `tollgate-${o.name}-`));
  const warehouse = new Warehouse({ client: createChdbClickHouse({ path: dir }) });
  await warehouse.migrate();
  if (o.events) await warehouse.insertUsage(o.events);
  const app = createHttpServer({ bodyLimitBytes: 4 * 1024 * 1024 });
  const book = o.priceBook;
  registerOps(app, {
    warehouse, balances: new MemoryBalanceStore(), keys: new MemoryKeyDirectory(), adminToken: o.token,
    ...(book ? { priceBook: () => book } : {}),
    ...(o.usageStored ? { usageStored: o.usageStored } : {}),
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url, warehouse, dir,
    close: async () => {
      await app.close();
      await warehouse.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
