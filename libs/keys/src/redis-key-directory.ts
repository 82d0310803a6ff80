import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { AccountRecord, KeyRecord, PlanRecord } from '@tollgate/events';
import type { KeyDirectory, KeyEntry } from './key-directory.ts';

export interface RedisKeyDirectoryOptions {
  /** Caller-owned client; `close()` leaves it open. Must not use ioredis' own `keyPrefix`. */
  redis: Redis;
  /**
   * Prepended to every key, e.g. `tollgate:`. The scripts touch several of these keys at once,
   * so on a Redis Cluster give a prefix with a hash tag (`tollgate:{dir}:`) to keep them in
   * one slot.
   */
  prefix: string;
}

/** The Lua scripts as ioredis exposes them after `defineCommand`. */
interface DirectoryScripts {
  tollgateKeysPutAccount(accounts: string, id: string, version: string, json: string): Promise<number>;
  tollgateKeysPutKey(keys: string, keyhash: string, keysof: string,
    id: string, version: string, hash: string, json: string): Promise<number>;
  tollgateKeysByHash(keyhash: string, keys: string, accounts: string, hash: string): Promise<[string, string] | null>;
  tollgateKeysKeysOf(keysof: string, keys: string): Promise<string[]>;
}

function lua(name: string): string {
  return readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');
}

function checkVersion(version: number): string {
  if (!Number.isSafeInteger(version)) throw new RangeError(`version must be a safe integer, got ${version}`);
  return String(version);
}

/**
 * Accounts and keys in Redis, shared by every gateway and the control API. Records are stored
 * as JSON; version checks and index updates happen in Lua so that "only newer wins" holds
 * with many writers, and `byHash` is one round trip.
 *
 * Key layout (P = prefix):
 *   P accounts        hash account id → AccountRecord json
 *   P keys            hash key id → KeyRecord json
 *   P keyhash         hash secret hash → key id
 *   P keysof:<acct>   set of key ids of an account (index for keysOf)
 *   P plans           hash plan id → PlanRecord json (put with the put-account script: same rule)
 */
export class RedisKeyDirectory implements KeyDirectory {
  #redis: Redis;
  #scripts: DirectoryScripts;
  #prefix: string;

  constructor(options: RedisKeyDirectoryOptions) {
    if (options.redis.options.keyPrefix) {
      throw new Error('RedisKeyDirectory: pass the prefix as `prefix`, not as the client\'s keyPrefix');
    }
    this.#redis = options.redis;
    this.#prefix = options.prefix;
    const define = (name: keyof DirectoryScripts, file: string, numberOfKeys: number, readOnly = false) =>
      this.#redis.defineCommand(name, { lua: lua(file), numberOfKeys, readOnly });
    define('tollgateKeysPutAccount', 'put-account', 1);
    define('tollgateKeysPutKey', 'put-key', 3);
    define('tollgateKeysByHash', 'by-hash', 3, true);
    define('tollgateKeysKeysOf', 'keys-of', 2, true);
    this.#scripts = this.#redis as unknown as DirectoryScripts;
  }

  async byHash(hash: string): Promise<KeyEntry | undefined> {
    const found = await this.#scripts.tollgateKeysByHash(this.#k('keyhash'), this.#k('keys'), this.#k('accounts'), hash);
    if (!found) return undefined;
    return { key: JSON.parse(found[0]) as KeyRecord, account: JSON.parse(found[1]) as AccountRecord };
  }

  async account(id: string): Promise<AccountRecord | undefined> {
    const json = await this.#redis.hget(this.#k('accounts'), id);
    return json === null ? undefined : JSON.parse(json) as AccountRecord;
  }

  async key(id: string): Promise<KeyRecord | undefined> {
    const json = await this.#redis.hget(this.#k('keys'), id);
    return json === null ? undefined : JSON.parse(json) as KeyRecord;
  }

  async keysOf(accountId: string): Promise<KeyRecord[]> {
    const jsons = await this.#scripts.tollgateKeysKeysOf(this.#keysOf(accountId), this.#k('keys'));
    return jsons
      .map((json) => JSON.parse(json) as KeyRecord)
      .filter((key) => key.account_id === accountId)
      .sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async accounts(): Promise<AccountRecord[]> {
    const jsons = await this.#redis.hvals(this.#k('accounts'));
    return jsons.map((json) => JSON.parse(json) as AccountRecord);
  }

  async putAccount(account: AccountRecord): Promise<boolean> {
    const applied = await this.#scripts.tollgateKeysPutAccount(
      this.#k('accounts'), account.id, checkVersion(account.version), JSON.stringify(account));
    return applied === 1;
  }

  async putKey(key: KeyRecord): Promise<boolean> {
    const applied = await this.#scripts.tollgateKeysPutKey(
      this.#k('keys'), this.#k('keyhash'), this.#keysOf(key.account_id),
      key.id, checkVersion(key.version), key.hash, JSON.stringify(key));
    return applied === 1;
  }

  async plan(id: string): Promise<PlanRecord | undefined> {
    const json = await this.#redis.hget(this.#k('plans'), id);
    return json === null ? undefined : JSON.parse(json) as PlanRecord;
  }

  async plans(): Promise<PlanRecord[]> {
    const jsons = await this.#redis.hvals(this.#k('plans'));
    return jsons.map((json) => JSON.parse(json) as PlanRecord);
  }

  async putPlan(plan: PlanRecord): Promise<boolean> {
    // A versioned record in a hash by id, exactly what the account script does.
    const applied = await this.#scripts.tollgateKeysPutAccount(
      this.#k('plans'), plan.id, checkVersion(plan.version), JSON.stringify(plan));
    return applied === 1;
  }

  /** The client belongs to the caller; nothing to release here. */
  async close(): Promise<void> {}

  #k(name: 'accounts' | 'keys' | 'keyhash' | 'plans'): string {
    return `${this.#prefix}${name}`;
  }

  #keysOf(accountId: string): string {
    return `${this.#prefix}keysof:${accountId}`;
  }
}
