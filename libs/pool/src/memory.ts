// The pool's hot state in one process (embedded mode): records, session pins and health reports
// in maps. The Redis store (redis.ts) is the same contract shared by every process.

import type { GroupRecord, HealthSnapshot, PoolStore, UpstreamRecord } from './types.ts';

/** How long a gateway's health report stays visible (ms): a gateway that stops reporting drops out. */
export const HEALTH_TTL_MS = 10_000;

/**
 * Pool records in memory. `putUpstream`/`putGroup` apply a record only if its `version` is higher
 * than the stored one (true when applied), so an older copy reloaded from the warehouse never
 * overwrites a newer one. Affinity pins expire after their ttl; health reports after HEALTH_TTL_MS.
 */
export class MemoryPoolStore implements PoolStore {
  #upstreams = new Map<string, UpstreamRecord>();
  #groups = new Map<string, GroupRecord>();
  #pins = new Map<string, { upstreamId: string; until: number }>();
  #health = new Map<string, Map<string, HealthSnapshot>>();
  readonly #now: () => number;
  #tail: Promise<unknown> = Promise.resolve();

  /** `now`: the clock (epoch ms), for tests of expiry. */
  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  async putUpstream(record: UpstreamRecord): Promise<boolean> {
    const current = this.#upstreams.get(record.id);
    if (current && current.version >= record.version) return false;
    this.#upstreams.set(record.id, structuredClone(record));
    return true;
  }

  async upstream(id: string): Promise<UpstreamRecord | undefined> {
    const r = this.#upstreams.get(id);
    return r && structuredClone(r);
  }

  async upstreams(): Promise<UpstreamRecord[]> {
    return [...this.#upstreams.values()].map((r) => structuredClone(r));
  }

  async putGroup(record: GroupRecord): Promise<boolean> {
    const current = this.#groups.get(record.id);
    if (current && current.version >= record.version) return false;
    this.#groups.set(record.id, structuredClone(record));
    return true;
  }

  async group(id: string): Promise<GroupRecord | undefined> {
    const r = this.#groups.get(id);
    return r && structuredClone(r);
  }

  async groups(): Promise<GroupRecord[]> {
    return [...this.#groups.values()].map((r) => structuredClone(r));
  }

  async affinity(groupId: string, sessionKey: string): Promise<string | undefined> {
    const k = `${groupId}\n${sessionKey}`;
    const pin = this.#pins.get(k);
    if (!pin) return undefined;
    if (pin.until <= this.#now()) {
      this.#pins.delete(k);
      return undefined;
    }
    return pin.upstreamId;
  }

  async setAffinity(groupId: string, sessionKey: string, upstreamId: string, ttlMs: number): Promise<void> {
    const now = this.#now();
    const k = `${groupId}\n${sessionKey}`;
    const current = this.#pins.get(k);
    // Never earlier on the same upstream: its longer-lived (1 h) cache is still there.
    const keep = current !== undefined && current.upstreamId === upstreamId && current.until > now ? current.until : 0;
    this.#pins.set(k, { upstreamId, until: Math.max(keep, now + ttlMs) });
    // Bounded memory: sweep expired pins once the map grows.
    if (this.#pins.size > 100_000) for (const [k, p] of this.#pins) if (p.until <= now) this.#pins.delete(k);
  }

  /** One queue: each `fn` starts after the previous one settled (embedded mode has one control process). */
  exclusive<T>(fn: (fence: () => Promise<void>) => Promise<T>): Promise<T> {
    const run = this.#tail.then(() => fn(async () => {}));
    this.#tail = run.catch(() => {});
    return run;
  }

  async reportHealth(snapshots: readonly HealthSnapshot[]): Promise<void> {
    for (const s of snapshots) {
      let byGateway = this.#health.get(s.upstream_id);
      if (!byGateway) this.#health.set(s.upstream_id, (byGateway = new Map()));
      byGateway.set(s.gateway_id, { ...s });
    }
  }

  async health(upstreamId: string): Promise<HealthSnapshot[]> {
    const byGateway = this.#health.get(upstreamId);
    if (!byGateway) return [];
    const cutoff = this.#now() - HEALTH_TTL_MS;
    const live: HealthSnapshot[] = [];
    for (const [g, s] of byGateway) {
      if (s.at <= cutoff) byGateway.delete(g);
      else live.push({ ...s });
    }
    return live;
  }

  async close(): Promise<void> {}
}
