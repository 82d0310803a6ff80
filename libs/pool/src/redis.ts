// The pool's hot state shared by every process (distributed mode): records in two Redis hashes,
// session pins as expiring keys, health reports in one hash per upstream.

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { HEALTH_TTL_MS } from './memory.ts';
import type { GroupRecord, HealthSnapshot, PoolStore, UpstreamRecord } from './types.ts';

// Highest version wins in one atomic step, as the key directory's and webhooks' records do.
const PUT_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local v = tonumber(string.match(cur, '"version":(%d+)'))
  if v and v >= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`;

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
    const r = await this.#redis.eval(PUT_SCRIPT, 1, `${this.#p}${hash}`, record.id, JSON.stringify(record), String(record.version));
    return r === 1;
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
    await this.#redis.set(this.#pin(groupId, sessionKey), upstreamId, 'PX', Math.max(1, Math.ceil(ttlMs)));
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
