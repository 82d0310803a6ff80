import type { EventLog } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import type { BalanceStore } from '@tollgate/ledger';
import type { PriceVersion } from '@tollgate/pricing';
import type { Warehouse } from '@tollgate/warehouse';

/**
 * What the warehouse-backed operator routes need (usage analytics, billing, webhooks admin):
 * mounted by the control role when the warehouse is a ClickHouse server, by the process that
 * owns a chDB warehouse, and by the one process in embedded mode.
 */
export interface ReportDeps {
  warehouse: Warehouse;
  adminToken: string;
  /** FINANCE_TOKEN: the routes marked `config: { finance: true }` accept it (see guardOperatorRoutes in @tollgate/http) */
  financeToken?: string;
  /** the price version in force: the catalog's currency and credit value */
  prices: { current(): PriceVersion };
  balances: BalanceStore;
  keys: KeyDirectory;
  log: EventLog;
  /** embedded mode: waits until every event published so far has reached the warehouse */
  settle?: () => Promise<void>;
}
