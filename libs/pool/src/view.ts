// What a gateway reads of the pool on every request: the group of the caller (key → account →
// default) with its usable upstreams and their credentials in clear, from a snapshot of the
// store at most `ttlMs` old (default 500 ms): a change made through the control API is in force
// on every gateway within 1 s, and a request costs no Redis round trip for it.

import { unseal } from '@tollgate/keys';
import type { GroupRecord, PoolStore, UpstreamRecord } from './types.ts';

/** The id of the default group and of the configured upstream (UPSTREAM_URL / UPSTREAM_API_KEY). */
export const DEFAULT_ID = 'default';
/** `seal` purpose of an upstream credential (context: the upstream id). */
export const UPSTREAM_KEY_PURPOSE = 'upstream-api-key';
/** Longest a gateway's snapshot of the pool may be (ms): "effective on every gateway within 1 s". */
export const MAX_POOL_CACHE_MS = 1_000;

/** The zero-configuration upstream of UPSTREAM_URL / UPSTREAM_API_KEY. */
export interface ConfiguredUpstream {
  /** base URL without a trailing slash */
  url: string;
  apiKey: string | undefined;
}

/**
 * The upstream `default` as a record: platform anthropic, weight 1, priority 0, no concurrency
 * cap of its own, always active. It is not stored: every process builds it from its config.
 */
export function configuredUpstream(c: ConfiguredUpstream): UpstreamRecord {
  return {
    id: DEFAULT_ID, name: DEFAULT_ID, platform: 'anthropic', base_url: c.url, api_key_sealed: null, models: null,
    weight: 1, priority: 0, max_concurrency: null, status: 'active', created_at: 0, deleted: false, version: 0,
  };
}

/** The default group when none named `default` is stored: the configured upstream alone. */
export function configuredGroup(): GroupRecord {
  return { id: DEFAULT_ID, name: DEFAULT_ID, platform: 'anthropic', upstream_ids: [DEFAULT_ID], model_mapping: null, created_at: 0, deleted: false, version: 0 };
}

/** An upstream a request may be sent to, with its credential unsealed. */
export interface ResolvedUpstream {
  /** the record as stored (`api_key_sealed` still sealed) */
  record: UpstreamRecord;
  /** the credential in clear (`x-api-key` / `Authorization: Bearer` upstream); undefined: none. Never log it */
  apiKey: string | undefined;
}

/** The group a request is served by. */
export interface ResolvedGroup {
  group: GroupRecord;
  /** which level named it: the key's `group_id`, its account's, or neither (`default`) */
  source: 'key' | 'account' | 'default';
  /**
   * The group's upstreams that exist, are not deleted and are `active`, in the group's order
   * (possibly empty: the group has nothing to serve with). Health, cool-downs and concurrency
   * are the selection's business, not filtered here.
   */
  upstreams: ResolvedUpstream[];
  /**
   * The group's other existing, not deleted upstreams: disabled, or whose credential does not
   * unseal. Not served by, but members: they count toward the session pin (a group of more than
   * one member pins) and toward the 503 of a model only they serve. Once per snapshot.
   */
  inactive: UpstreamRecord[];
}

/** The pool as a gateway reads it. */
export interface PoolView {
  /**
   * The group of a caller: the key's `group_id`, else its account's, else the default group (a
   * stored group `default`, else the configured one). A group id that names no live group falls
   * through to the next level, as a plan id does.
   */
  groupFor(account: { group_id?: string | null }, key: { group_id?: string | null }): Promise<ResolvedGroup>;
  /** A live group by id (`default` always resolves), or undefined. */
  group(id: string): Promise<ResolvedGroup | undefined>;
  /** A live upstream by id with its credential (`default`: the configured one), or undefined. */
  upstream(id: string): Promise<ResolvedUpstream | undefined>;
}

interface Snapshot {
  at: number;
  groups: Map<string, ResolvedGroup>;
  upstreams: Map<string, ResolvedUpstream>;
}

export interface CachedPoolViewOptions {
  store: PoolStore;
  /** the configured upstream (UPSTREAM_URL / UPSTREAM_API_KEY) */
  configured: ConfiguredUpstream;
  /** KEY_HASH_SECRET: the credentials are sealed under it */
  keyHashSecret: string;
  /** snapshot age at most (ms), 0 … MAX_POOL_CACHE_MS; default 500 */
  ttlMs?: number;
  /** told when a refresh fails and the previous snapshot is kept; or when a credential cannot be unsealed */
  onError?: (err: unknown, what: string) => void;
  now?: () => number;
}

/**
 * `PoolView` over a `PoolStore`: one snapshot of every upstream and group, read again when it is
 * older than `ttlMs` (one reader at a time; callers wait for it, so no answer is ever older than
 * ttlMs while the store can be read). When the store cannot be read the previous snapshot is
 * kept (upstream records change rarely, and a gateway without Redis refuses money anyway);
 * without any snapshot the error is thrown. Credentials are unsealed once per record version.
 * An upstream whose credential does not unseal (a changed KEY_HASH_SECRET) is left out and
 * reported to `onError`, never sent without its key.
 */
export class CachedPoolView implements PoolView {
  readonly #o: Required<Omit<CachedPoolViewOptions, 'onError'>> & Pick<CachedPoolViewOptions, 'onError'>;
  #snapshot: Snapshot | undefined;
  #refreshing: Promise<Snapshot> | undefined;
  #unsealed = new Map<string, { version: number; apiKey: string | undefined }>();

  constructor(options: CachedPoolViewOptions) {
    const ttlMs = options.ttlMs ?? 500;
    if (!(ttlMs >= 0 && ttlMs <= MAX_POOL_CACHE_MS)) throw new RangeError(`ttlMs must be 0 … ${MAX_POOL_CACHE_MS}, got ${ttlMs}`);
    this.#o = { ...options, ttlMs, now: options.now ?? Date.now };
  }

  /** Forgets the snapshot (this process changed a record: read it again on next use). */
  invalidate(): void {
    this.#snapshot = undefined;
  }

  async #current(): Promise<Snapshot> {
    const s = this.#snapshot;
    if (s && this.#o.now() - s.at < this.#o.ttlMs) return s;
    this.#refreshing ??= this.#read().finally(() => { this.#refreshing = undefined; });
    try {
      return await this.#refreshing;
    } catch (err) {
      if (!s) throw err;
      this.#o.onError?.(err, 'pool records could not be read; using the previous snapshot');
      return s;
    }
  }

  async #read(): Promise<Snapshot> {
    const at = this.#o.now();
    const [records, groupRecords] = await Promise.all([this.#o.store.upstreams(), this.#o.store.groups()]);
    const upstreams = new Map<string, ResolvedUpstream>();
    const inactive = new Map<string, UpstreamRecord>();
    upstreams.set(DEFAULT_ID, { record: configuredUpstream(this.#o.configured), apiKey: this.#o.configured.apiKey });
    for (const r of records) {
      if (r.deleted || r.id === DEFAULT_ID) continue;
      const apiKey = r.status === 'active' ? this.#credential(r) : null;
      if (apiKey === null) inactive.set(r.id, r);
      else upstreams.set(r.id, { record: r, apiKey });
    }
    const groups = new Map<string, ResolvedGroup>();
    const live = groupRecords.filter((g) => !g.deleted);
    if (!live.some((g) => g.id === DEFAULT_ID)) live.push(configuredGroup());
    for (const g of live) {
      const ids = [...new Set(g.upstream_ids)];
      const members = ids.map((id) => upstreams.get(id)).filter((u): u is ResolvedUpstream => u !== undefined);
      const others = ids.map((id) => inactive.get(id)).filter((r): r is UpstreamRecord => r !== undefined);
      groups.set(g.id, { group: g, source: 'default', upstreams: members, inactive: others });
    }
    const snapshot = { at, groups, upstreams };
    this.#snapshot = snapshot;
    return snapshot;
  }

  /** The record's credential in clear; undefined: it has none; null: it cannot be unsealed. */
  #credential(r: UpstreamRecord): string | undefined | null {
    if (r.api_key_sealed === null) return undefined;
    const known = this.#unsealed.get(r.id);
    if (known && known.version === r.version) return known.apiKey;
    try {
      const apiKey = unseal(r.api_key_sealed, this.#o.keyHashSecret, UPSTREAM_KEY_PURPOSE, r.id);
      this.#unsealed.set(r.id, { version: r.version, apiKey });
      return apiKey;
    } catch (err) {
      this.#o.onError?.(err, `upstream ${r.id}: its credential cannot be unsealed (was KEY_HASH_SECRET changed?); left out of every group`);
      return null;
    }
  }

  async groupFor(account: { group_id?: string | null }, key: { group_id?: string | null }): Promise<ResolvedGroup> {
    const s = await this.#current();
    for (const [source, id] of [['key', key.group_id], ['account', account.group_id]] as const) {
      if (id === undefined || id === null) continue;
      const g = s.groups.get(id);
      if (g) return { ...g, source };
    }
    return s.groups.get(DEFAULT_ID)!;
  }

  async group(id: string): Promise<ResolvedGroup | undefined> {
    return (await this.#current()).groups.get(id);
  }

  async upstream(id: string): Promise<ResolvedUpstream | undefined> {
    return (await this.#current()).upstreams.get(id);
  }
}
