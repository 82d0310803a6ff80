// The pool's hot state shared by every process (distributed mode): records in two Redis hashes,
// session pins as expiring keys, health reports in one hash per upstream.

import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { putVersioned } from '@tollgate/keys';
import { HEALTH_TTL_MS } from './memory.ts';
import { PoolBusyError, POOL_LOCK_TTL_MS, POOL_LOCK_WAIT_MS, type GroupRecord, type HealthSnapshot, type PoolStore, type UpstreamRecord } from './types.ts';

// A pin refreshed on the same upstream keeps the later expiry; a pin moved to another upstream
// takes the new one. One script: a refresh racing another gateway's never shortens the pin.
const PIN_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
local ttl = tonumber(ARGV[2])
if cur == ARGV[1] then
  local left = redis.call('PTTL', KEYS[1])
  if left > ttl then ttl = left end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return ttl`;

// The fence of a pool change: while this holder still owns the lock, give it ARGV[2] ms more (1); else 0.
const FENCE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

// Releases the pool lock only if this holder still owns it (its lease may have run out).
const UNLOCK_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * Pool records in Redis, under `<prefix>pool:`: hashes `upstreams` and `groups` (id → JSON
 * record; highest `version` wins atomically), session pins `pin:<sha256(group, session)>`
 * (SET PX: a session key of any length is one bounded Redis key), and per upstream a hash
 * `health:<upstream id>` (gateway id → JSON snapshot; the hash expires HEALTH_TTL_MS after its
 * last report, a stale field is dropped on read). Reads are not cached here: gateways read
 * through `CachedPoolView` (≤ 1 s), control reads its own writes.
 */
export class RedisPoolStore implements PoolStore {
  readonly #redis: Redis;
  readonly #p: string;

  /** `prefix`: REDIS_PREFIX (e.g. `tg:`); the store adds `pool:`. */
  constructor(options: { redis: Redis; prefix: string }) {
    this.#redis = options.redis;
    this.#p = `${options.prefix}pool:`;
  }

  async #put(hash: string, record: { id: string; version: number }): Promise<boolean> {
    // highest version wins in one atomic step, as webhooks' records do
    return putVersioned(this.#redis, `${this.#p}${hash}`, record);
  }

  async #get<T>(hash: string, id: string): Promise<T | undefined> {
    const raw = await this.#redis.hget(`${this.#p}${hash}`, id);
    return raw === null ? undefined : (JSON.parse(raw) as T);
  }

  async #all<T>(hash: string): Promise<T[]> {
    return (await this.#redis.hvals(`${this.#p}${hash}`)).map((raw) => JSON.parse(raw) as T);
  }

  putUpstream(record: UpstreamRecord): Promise<boolean> {
    return this.#put('upstreams', record);
  }

  upstream(id: string): Promise<UpstreamRecord | undefined> {
    return this.#get('upstreams', id);
  }

  upstreams(): Promise<UpstreamRecord[]> {
    return this.#all('upstreams');
  }

  putGroup(record: GroupRecord): Promise<boolean> {
    return this.#put('groups', record);
  }

  group(id: string): Promise<GroupRecord | undefined> {
    return this.#get('groups', id);
  }

  groups(): Promise<GroupRecord[]> {
    return this.#all('groups');
  }

  #pin(groupId: string, sessionKey: string): string {
    return `${this.#p}pin:${createHash('sha256').update(`${groupId}\n${sessionKey}`).digest('base64url')}`;
  }

  async affinity(groupId: string, sessionKey: string): Promise<string | undefined> {
    return (await this.#redis.get(this.#pin(groupId, sessionKey))) ?? undefined;
  }

  async setAffinity(groupId: string, sessionKey: string, upstreamId: string, ttlMs: number): Promise<void> {
    await this.#redis.eval(PIN_SCRIPT, 1, this.#pin(groupId, sessionKey), upstreamId, String(Math.max(1, Math.ceil(ttlMs))));
  }

  /**
   * The pool lock `<prefix>pool:lock` (SET NX PX POOL_LOCK_TTL_MS with a random token, released
   * by compare-and-delete; the fence is a compare-and-PEXPIRE), polled every 5–25 ms for at most
   * POOL_LOCK_WAIT_MS. A single Redis
   * is the source of truth for the pool, so one key suffices (no Redlock quorum).
   */
  async exclusive<T>(fn: (fence: () => Promise<void>) => Promise<T>): Promise<T> {
    const key = `${this.#p}lock`;
    const token = randomUUID();
    const deadline = Date.now() + POOL_LOCK_WAIT_MS;
    for (;;) {
      let taken: string | null;
      try {
        taken = await this.#redis.set(key, token, 'PX', POOL_LOCK_TTL_MS, 'NX');
      } catch (err) {
        // Failed here (a timeout) but possibly made there: give it back.
        void this.#redis.eval(UNLOCK_SCRIPT, 1, key, token).catch(() => {});
        throw err;
      }
      if (taken === 'OK') break;
      if (Date.now() >= deadline) throw new PoolBusyError();
      await sleep(5 + Math.floor(Math.random() * 20));
    }
    const fence = async () => {
      if (Number(await this.#redis.eval(FENCE_SCRIPT, 1, key, token, String(POOL_LOCK_TTL_MS))) !== 1) {
        throw new PoolBusyError(`this change of the upstream pool took over ${POOL_LOCK_TTL_MS} ms, and another may have been made meanwhile; nothing was changed; retry`);
      }
    };
    try {
      return await fn(fence);
    } finally {
      await this.#redis.eval(UNLOCK_SCRIPT, 1, key, token).catch(() => {});
    }
  }

  async reportHealth(snapshots: readonly HealthSnapshot[]): Promise<void> {
    if (snapshots.length === 0) return;
    const m = this.#redis.multi();
    for (const s of snapshots) {
      const hash = `${this.#p}health:${s.upstream_id}`;
      m.hset(hash, s.gateway_id, JSON.stringify(s)).pexpire(hash, HEALTH_TTL_MS);
    }
    await m.exec();
  }

  async health(upstreamId: string): Promise<HealthSnapshot[]> {
    const hash = `${this.#p}health:${upstreamId}`;
    const all = await this.#redis.hgetall(hash);
    const cutoff = Date.now() - HEALTH_TTL_MS;
    const live: HealthSnapshot[] = [];
    const stale: string[] = [];
    for (const [gateway, raw] of Object.entries(all)) {
      const s = JSON.parse(raw) as HealthSnapshot;
      if (s.at <= cutoff) stale.push(gateway);
      else live.push(s);
    }
    // A gateway that stopped reporting (stopped, crashed) drops out of the sums.
    if (stale.length > 0) await this.#redis.hdel(hash, ...stale).catch(() => {});
    return live;
  }

  /** The Redis connection belongs to the caller (the runtime's adapters): nothing to close here. */
  async close(): Promise<void> {}
}
