import type { EventLog } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import type { BalanceStore } from '@tollgate/ledger';
import type { Catalog, PriceVersion } from '@tollgate/pricing';
import type { PoolStore } from '@tollgate/pool';
import type { ControlRecordRegistry } from './record-registry.ts';

export interface ControlDeps {
  keys: KeyDirectory;
  balances: BalanceStore;
  log: EventLog;
  catalog: Catalog;
  /** the price version in force (a `PriceBook`); absent: `catalog`. Account price lists are checked against it */
  prices?: { current(): PriceVersion };
  adminToken: string;
  /** FINANCE_TOKEN: may call the routes marked `config: { finance: true }` only (see guardOperatorRoutes in @tollgate/http) */
  financeToken?: string;
  keyHashSecret: string;
  /** upstream groups (issue 10): a `group_id` given to an account or key must name one of them or `default` */
  pool?: PoolStore;
  /** how long a credit request waits for the ledger to apply it before answering 202 */
  applyTimeoutMs?: number;
  /**
   * How long a credit reference stays claimed by the request that publishes it (default
   * applyTimeoutMs + 20 s): long enough to see it applied, short enough that a claimant that
   * died before publishing does not block the reference for good.
   */
  claimTtlMs?: number;
  /**
   * The records this process wrote, put back after a rebuild of hot state (default: one made by
   * registerControl on `balances`, `keys` and `log`, stopped when the server closes; tests pass
   * their own to step its polls).
   */
  records?: ControlRecordRegistry;
}
