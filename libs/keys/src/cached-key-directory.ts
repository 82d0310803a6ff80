import type { AccountRecord, KeyRecord, PlanRecord } from '@tollgate/events';
import type { KeyDirectory, KeyEntry } from './key-directory.ts';

export interface CachedKeyDirectoryOptions {
  /**
   * How long a `byHash` answer (found or not) is reused. Bounds how stale a gateway can be:
   * a revocation made elsewhere takes effect here within ttlMs of the write. Default 500 ms.
   */
  ttlMs?: number;
  /** Entries kept at most; the least recently used go first. Default 100 000. */
  maxEntries?: number;
  /** Clock, for tests. */
  now?: () => number;
}

interface CacheEntry {
  value: KeyEntry | undefined;
  expiresAt: number;
}

/**
 * Puts an in-process cache in front of any directory for `byHash`, the one lookup on every
 * request, so the hot path usually costs no round trip. Misses are cached too (a flood of bad
 * keys must not become a flood of Redis calls); `forgetMisses()` drops them when the hot state
 * was just rebuilt (the gateway does it). Everything else goes straight to the inner
 * directory; writes through this instance also drop the local entries they affect.
 *
 * Cached entries are shared objects: callers must not mutate them.
 * `close()` closes the inner directory as well.
 */
export class CachedKeyDirectory implements KeyDirectory {
  #inner: KeyDirectory;
  #ttlMs: number;
  #maxEntries: number;
  #now: () => number;
  // A Map iterates in insertion order; re-inserting on every hit keeps the least recently
  // used entry first, which is the one evicted.
  #cache = new Map<string, CacheEntry>();
  #plans = new Map<string, { value: PlanRecord | undefined; expiresAt: number }>();
  #planGeneration = 0;
  // Concurrent misses for one hash share one lookup.
  #pending = new Map<string, Promise<KeyEntry | undefined>>();
  // Bumped by every write through this instance: a lookup that started before a write must
  // not cache what it read.
  #generation = 0;

  /** `inner` is the directory behind the cache (usually a RedisKeyDirectory). */
  constructor(inner: KeyDirectory, options: CachedKeyDirectoryOptions = {}) {
    this.#inner = inner;
    this.#ttlMs = options.ttlMs ?? 500;
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#now = options.now ?? Date.now;
    if (!(this.#ttlMs >= 0)) throw new RangeError(`ttlMs must be >= 0, got ${this.#ttlMs}`);
    if (!Number.isInteger(this.#maxEntries) || this.#maxEntries < 1) {
      throw new RangeError(`maxEntries must be a positive integer, got ${this.#maxEntries}`);
    }
  }

  /** Entries currently cached (fresh or not yet evicted). */
  get size(): number {
    return this.#cache.size;
  }

  byHash(hash: string): Promise<KeyEntry | undefined> {
    const hit = this.#cache.get(hash);
    if (hit) {
      this.#cache.delete(hash);
      if (hit.expiresAt > this.#now()) {
        this.#cache.set(hash, hit);
        return Promise.resolve(hit.value);
      }
    }
    let pending = this.#pending.get(hash);
    if (!pending) {
      pending = this.#load(hash);
      this.#pending.set(hash, pending);
    }
    return pending;
  }

  /**
   * Drops every cached miss, and makes lookups in flight neither cached nor shared (they may have
   * read the store before it was rebuilt): the next `byHash` of any unknown hash reads the store.
   */
  forgetMisses(): void {
    this.#invalidate((entry) => entry.value === undefined);
  }

  /** KeyDirectory.forgetAll: every cached entry goes, and lookups in flight are neither cached nor shared. */
  forgetAll(): void {
    this.#invalidate(() => true);
  }

  account(id: string): Promise<AccountRecord | undefined> {
    return this.#inner.account(id);
  }

  key(id: string): Promise<KeyRecord | undefined> {
    return this.#inner.key(id);
  }

  keysOf(accountId: string): Promise<KeyRecord[]> {
    return this.#inner.keysOf(accountId);
  }

  accounts(): Promise<AccountRecord[]> {
    return this.#inner.accounts();
  }

  async putAccount(account: AccountRecord): Promise<boolean> {
    try {
      return await this.#inner.putAccount(account);
    } finally {
      // Every cached key of the account carries the old account record, and a cached miss
      // may be a key whose account did not exist yet. Account writes are rare, so a scan of
      // the cache is fine.
      this.#invalidate((entry) => entry.value === undefined || entry.value.account.id === account.id);
    }
  }

  async putKey(key: KeyRecord): Promise<boolean> {
    try {
      return await this.#inner.putKey(key);
    } finally {
      // Keys do not change hash; if one did, its old entry would live out its TTL.
      this.#invalidate();
      this.#cache.delete(key.hash);
    }
  }

  /**
   * Plans are read on every request (the effective plan), so they are cached like keys: a plan
   * changed elsewhere takes effect here within ttlMs; one changed through this directory at once.
   */
  async plan(id: string): Promise<PlanRecord | undefined> {
    const now = this.#now();
    const hit = this.#plans.get(id);
    if (hit && hit.expiresAt > now) return hit.value;
    const expiresAt = now + this.#ttlMs;
    const generation = this.#planGeneration;
    const value = await this.#inner.plan(id);
    // A put meanwhile may have made this answer stale; use it once, do not keep it.
    if (generation === this.#planGeneration) {
      if (this.#plans.size >= this.#maxEntries) this.#plans.clear();
      this.#plans.set(id, { value, expiresAt });
    }
    return value;
  }

  plans(): Promise<PlanRecord[]> {
    return this.#inner.plans();
  }

  async putPlan(plan: PlanRecord): Promise<boolean> {
    try {
      return await this.#inner.putPlan(plan);
    } finally {
      this.#planGeneration++;
      this.#plans.delete(plan.id);
    }
  }

  async close(): Promise<void> {
    this.#plans.clear();
    this.#cache.clear();
    this.#pending.clear();
    await this.#inner.close();
  }

  async #load(hash: string): Promise<KeyEntry | undefined> {
    const generation = this.#generation;
    // The TTL counts from before the read, so no answer is used longer than ttlMs after it
    // was true.
    const expiresAt = this.#now() + this.#ttlMs;
    try {
      const value = await this.#inner.byHash(hash);
      if (generation === this.#generation) this.#remember(hash, { value, expiresAt });
      return value;
    } finally {
      // After a write the pending map was cleared and may hold a newer lookup: leave it.
      if (generation === this.#generation) this.#pending.delete(hash);
    }
  }

  #remember(hash: string, entry: CacheEntry): void {
    this.#cache.delete(hash);
    this.#cache.set(hash, entry);
    while (this.#cache.size > this.#maxEntries) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cache.delete(oldest.value);
    }
  }

  /** Drops matching entries and makes in-flight lookups neither cached nor shared. */
  #invalidate(matches?: (entry: CacheEntry) => boolean): void {
    this.#generation += 1;
    this.#pending.clear();
    if (matches) for (const [hash, entry] of this.#cache) if (matches(entry)) this.#cache.delete(hash);
  }
}
