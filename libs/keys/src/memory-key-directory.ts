import type { AccountRecord, KeyRecord, PlanRecord } from '@tollgate/events';
import type { KeyDirectory, KeyEntry } from './key-directory.ts';

export class MemoryKeyDirectory implements KeyDirectory {
  #accounts = new Map<string, AccountRecord>();
  #keys = new Map<string, KeyRecord>();
  #byHash = new Map<string, string>();
  #plans = new Map<string, PlanRecord>();

  async byHash(hash: string): Promise<KeyEntry | undefined> {
    const id = this.#byHash.get(hash);
    const key = id === undefined ? undefined : this.#keys.get(id);
    const account = key && this.#accounts.get(key.account_id);
    return key && account ? { key, account } : undefined;
  }

  async account(id: string): Promise<AccountRecord | undefined> {
    return this.#accounts.get(id);
  }

  async key(id: string): Promise<KeyRecord | undefined> {
    return this.#keys.get(id);
  }

  async keysOf(accountId: string): Promise<KeyRecord[]> {
    return [...this.#keys.values()].filter((k) => k.account_id === accountId);
  }

  async accounts(): Promise<AccountRecord[]> {
    return [...this.#accounts.values()];
  }

  async putAccount(account: AccountRecord): Promise<boolean> {
    const current = this.#accounts.get(account.id);
    if (current && current.version >= account.version) return false;
    this.#accounts.set(account.id, account);
    return true;
  }

  async putKey(key: KeyRecord): Promise<boolean> {
    const current = this.#keys.get(key.id);
    if (current && current.version >= key.version) return false;
    this.#keys.set(key.id, key);
    this.#byHash.set(key.hash, key.id);
    return true;
  }

  async plan(id: string): Promise<PlanRecord | undefined> {
    return this.#plans.get(id);
  }

  async plans(): Promise<PlanRecord[]> {
    return [...this.#plans.values()];
  }

  async putPlan(plan: PlanRecord): Promise<boolean> {
    const current = this.#plans.get(plan.id);
    if (current && current.version >= plan.version) return false;
    this.#plans.set(plan.id, plan);
    return true;
  }

  async close(): Promise<void> {}
}
