// Upstream pools as data (issue 10): the upstream accounts a reseller buys from, the groups that
// pool them, and the health every gateway reports about them. Records are versioned like the
// other control records (the highest `version` wins; a delete is a tombstone), kept in shared
// hot state (memory in embedded mode, Redis in distributed mode) with a durable copy in the
// warehouse, and read by every gateway through a cache of at most 1 s.

/** The wire protocol an upstream speaks. */
export type Platform = 'anthropic' | 'openai';

/** One upstream account: where to send requests and with which credential. */
export interface UpstreamRecord {
  /** `up_…`; `default` is the zero-configuration upstream of UPSTREAM_URL / UPSTREAM_API_KEY */
  id: string;
  name: string;
  platform: Platform;
  /** base URL, e.g. `https://api.anthropic.com` (no credentials, no query) */
  base_url: string;
  /** the credential sealed with `seal` of @tollgate/keys (purpose `upstream-api-key`, context the id); null: none */
  api_key_sealed: string | null;
  /** catalog model ids this upstream serves; null: every model */
  models: string[] | null;
  /** share among healthy upstreams of the same priority, ≥ 1 */
  weight: number;
  /** higher first; lower priorities are used only when every higher one is unavailable */
  priority: number;
  /** requests in flight per gateway process at most; null: only the process-wide connection cap */
  max_concurrency: number | null;
  status: 'active' | 'disabled';
  /** epoch ms */
  created_at: number;
  deleted: boolean;
  version: number;
}

/** A pool of upstreams of one platform that accounts and keys are assigned to. */
export interface GroupRecord {
  /** `grp_…`; `default`: the group of accounts and keys without one */
  id: string;
  name: string;
  platform: Platform;
  /** in the operator's order (ties of priority and weight keep it) */
  upstream_ids: string[];
  /** catalog model id → the model name sent to this group's upstreams; null: the catalog's upstream_model */
  model_mapping: Record<string, string> | null;
  /** epoch ms */
  created_at: number;
  deleted: boolean;
  version: number;
}

/** What one gateway process saw of one upstream recently (reported about once a second). */
export interface HealthSnapshot {
  upstream_id: string;
  gateway_id: string;
  /** `closed` (healthy), `open` (failing: not used until its probe time), `half_open` (probing) */
  circuit: 'closed' | 'open' | 'half_open';
  /** epoch ms until which the upstream is cooled down (a 429 retry-after, a rejected unified rate limit); null: none */
  cooldown_until: number | null;
  in_flight: number;
  /** attempts and failures in the last 60 s */
  recent_requests: number;
  recent_failures: number;
  /** epoch ms of the report */
  at: number;
}

/** Shared hot state of the pool (memory or Redis), the same on every process. */
export interface PoolStore {
  putUpstream(record: UpstreamRecord): Promise<boolean>;
  upstream(id: string): Promise<UpstreamRecord | undefined>;
  /** tombstones included */
  upstreams(): Promise<UpstreamRecord[]>;
  putGroup(record: GroupRecord): Promise<boolean>;
  group(id: string): Promise<GroupRecord | undefined>;
  /** tombstones included */
  groups(): Promise<GroupRecord[]>;
  /** Session affinity: the upstream a session is pinned to, if its pin has not expired. */
  affinity(groupId: string, sessionKey: string): Promise<string | undefined>;
  /**
   * Pins (or refreshes) a session to an upstream for `ttlMs` (ms). Refreshing a pin to the same
   * upstream never moves its expiry earlier (the later of the current expiry and now + ttlMs): a
   * 1-hour prompt cache written by an earlier request lives on after a request without `ttl: "1h"`.
   * A pin moved to another upstream (failover) takes now + ttlMs: the old expiry was that upstream's cache.
   */
  setAffinity(groupId: string, sessionKey: string, upstreamId: string, ttlMs: number): Promise<void>;
  /**
   * Runs `fn` while no other `exclusive` of this store runs, in any process (memory: one queue;
   * Redis: a lock key every control process takes). Every write of upstream and group records
   * whose validity depends on other records (an upstream deleted only while no group lists it, a
   * group listing only live upstreams) does its check and write inside, so the two never both
   * pass (brk10a #3). Throws `PoolBusyError` when the lock cannot be had within POOL_LOCK_WAIT_MS.
   * `fn` calls `fence` right before it writes: it rejects with `PoolBusyError` once the lock
   * lapsed (`fn` stalled past POOL_LOCK_TTL_MS: another change may have checked and written
   * since), and otherwise gives the lock POOL_LOCK_TTL_MS more for the write (memory: never lapses).
   */
  exclusive<T>(fn: (fence: () => Promise<void>) => Promise<T>): Promise<T>;
  /** A gateway's latest health report of upstreams (kept ~10 s). */
  reportHealth(snapshots: readonly HealthSnapshot[]): Promise<void>;
  /** Every live report about the upstream, one per gateway. */
  health(upstreamId: string): Promise<HealthSnapshot[]>;
  close(): Promise<void>;
}

/** How long `exclusive` waits for the pool lock before giving up (ms). */
export const POOL_LOCK_WAIT_MS = 10_000;
/**
 * How long a held Redis pool lock lives without release (ms): a process that died holding it
 * blocks pool writes this long at most. A holder's work (one warehouse insert, one Redis write)
 * takes milliseconds, far below it.
 */
export const POOL_LOCK_TTL_MS = 30_000;

/** The pool lock was not free within POOL_LOCK_WAIT_MS (another pool write is stuck): retry later. */
export class PoolBusyError extends Error {
  constructor(message = 'upstream pool records are being changed by another request; retry shortly') {
    super(message);
    this.name = 'PoolBusyError';
  }
}
