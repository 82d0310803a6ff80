import type { EventLog } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import type { BalanceStore } from '@tollgate/ledger';
import type { Catalog } from '@tollgate/pricing';

export interface ControlDeps {
  keys: KeyDirectory;
  balances: BalanceStore;
  log: EventLog;
  catalog: Catalog;
  adminToken: string;
  keyHashSecret: string;
  /** how long a credit request waits for the ledger to apply it before answering 202 */
  applyTimeoutMs?: number;
}
