import type { AccountRecord, KeyRecord, PlanRecord } from '@tollgate/events';

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
  /**
   * Forgets every remembered miss of `byHash` (and lookups in flight are not remembered): for
   * when the hot state has just been rebuilt, since a miss read while it was lost would refuse
   * a valid key. A directory that remembers nothing leaves it out.
   */
  forgetMisses?(): void;
  /**
   * Forgets everything remembered of `byHash` (lookups in flight are not remembered either): for
   * when records only a control process's spool held were put back after a rebuild (a key
   * revoked through it was active in the rebuilt state, and may have been read so meanwhile). A
   * directory that remembers nothing leaves it out.
   */
  forgetAll?(): void;
  account(id: string): Promise<AccountRecord | undefined>;
  key(id: string): Promise<KeyRecord | undefined>;
  keysOf(accountId: string): Promise<KeyRecord[]>;
  accounts(): Promise<AccountRecord[]>;
  /** Applies a record if its version is newer than the stored one; returns whether it did. */
  putAccount(account: AccountRecord): Promise<boolean>;
  putKey(key: KeyRecord): Promise<boolean>;
  /**
   * A stored plan by id, tombstones (`deleted: true`) included; the seed plans of
   * `@tollgate/limits` are not stored until first changed, so undefined may still be a seed.
   */
  plan(id: string): Promise<PlanRecord | undefined>;
  /** Every stored plan, tombstones included. */
  plans(): Promise<PlanRecord[]>;
  /** Applies a plan record if its version is newer than the stored one; returns whether it did. */
  putPlan(plan: PlanRecord): Promise<boolean>;
  close(): Promise<void>;
}
