import type { AccountRecord, KeyRecord } from '@tollgate/events';

export interface KeyEntry {
  key: KeyRecord;
  account: AccountRecord;
}

/**
 * Accounts and keys as the gateway and control API see them. Writes come from the control
 * log (highest `version` wins, so replays and reordering are harmless); the gateway reads by
 * key hash on every request.
 */
export interface KeyDirectory {
  byHash(hash: string): Promise<KeyEntry | undefined>;
  account(id: string): Promise<AccountRecord | undefined>;
  key(id: string): Promise<KeyRecord | undefined>;
  keysOf(accountId: string): Promise<KeyRecord[]>;
  accounts(): Promise<AccountRecord[]>;
  /** Applies a record if its version is newer than the stored one; returns whether it did. */
  putAccount(account: AccountRecord): Promise<boolean>;
  putKey(key: KeyRecord): Promise<boolean>;
  close(): Promise<void>;
}
