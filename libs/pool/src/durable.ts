// The durable copy of the pool: the warehouse tables of migration 10 (`tables.upstreams`,
// `tables.upstreamGroups`), written on every change by the control routes and loaded back into
// the hot store at start (embedded: the memory store starts empty) and after a rebuild (Redis
// restarted empty). The credential is stored only sealed, as in hot state.

import type { Warehouse } from '@tollgate/warehouse';
import type { GroupRecord, Platform, PoolStore, UpstreamRecord } from './types.ts';

const dt = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
const platform = (v: unknown): Platform => (v === 'openai' ? 'openai' : 'anthropic');

/** Appends one version of an upstream (the row holds the sealed credential only). */
export async function saveUpstream(warehouse: Warehouse, u: UpstreamRecord): Promise<void> {
  await warehouse.insertRows(warehouse.tables.upstreams, [{
    id: u.id, name: u.name, platform: u.platform, base_url: u.base_url, api_key_sealed: u.api_key_sealed,
    models: u.models === null ? null : JSON.stringify(u.models), weight: u.weight, priority: u.priority,
    max_concurrency: u.max_concurrency, status: u.status, created_at: dt(u.created_at), deleted: u.deleted ? 1 : 0, version: u.version,
  }]);
}

/** Appends one version of a group. */
export async function saveGroup(warehouse: Warehouse, g: GroupRecord): Promise<void> {
  await warehouse.insertRows(warehouse.tables.upstreamGroups, [{
    id: g.id, name: g.name, platform: g.platform, upstream_ids: g.upstream_ids,
    model_mapping: g.model_mapping === null ? null : JSON.stringify(g.model_mapping),
    created_at: dt(g.created_at), deleted: g.deleted ? 1 : 0, version: g.version,
  }]);
}

/** The latest version of every upstream (tombstones included), deduplicated with FINAL. */
export async function loadUpstreams(warehouse: Warehouse): Promise<UpstreamRecord[]> {
  const rows = await warehouse.select(
    `SELECT id, name, platform, base_url, api_key_sealed, models, weight, priority, max_concurrency, status,
            toUnixTimestamp64Milli(created_at) AS created_ms, deleted, toString(version) AS version_t
     FROM ${warehouse.tables.upstreams} FINAL ORDER BY id`,
  );
  return rows.map((r) => ({
    id: String(r['id']), name: String(r['name']), platform: platform(r['platform']), base_url: String(r['base_url']),
    api_key_sealed: r['api_key_sealed'] === null ? null : String(r['api_key_sealed']),
    models: r['models'] === null ? null : (JSON.parse(String(r['models'])) as string[]),
    weight: Number(r['weight']), priority: Number(r['priority']),
    max_concurrency: r['max_concurrency'] === null ? null : Number(r['max_concurrency']),
    status: r['status'] === 'disabled' ? 'disabled' : 'active',
    created_at: Number(r['created_ms']), deleted: Number(r['deleted']) === 1, version: Number(r['version_t']),
  }));
}

/** The latest version of every group (tombstones included), deduplicated with FINAL. */
export async function loadGroups(warehouse: Warehouse): Promise<GroupRecord[]> {
  const rows = await warehouse.select(
    `SELECT id, name, platform, upstream_ids, model_mapping, toUnixTimestamp64Milli(created_at) AS created_ms,
            deleted, toString(version) AS version_t
     FROM ${warehouse.tables.upstreamGroups} FINAL ORDER BY id`,
  );
  return rows.map((r) => ({
    id: String(r['id']), name: String(r['name']), platform: platform(r['platform']),
    upstream_ids: (r['upstream_ids'] as unknown[]).map(String),
    model_mapping: r['model_mapping'] === null ? null : (JSON.parse(String(r['model_mapping'])) as Record<string, string>),
    created_at: Number(r['created_ms']), deleted: Number(r['deleted']) === 1, version: Number(r['version_t']),
  }));
}

/**
 * Puts every stored upstream and group into `store` (highest version wins, so newer records
 * already there stay). Returns how many of each were loaded. Safe to run any time and twice.
 */
export async function restorePool(warehouse: Warehouse, store: PoolStore): Promise<{ upstreams: number; groups: number }> {
  const upstreams = await loadUpstreams(warehouse);
  for (const u of upstreams) await store.putUpstream(u);
  const groups = await loadGroups(warehouse);
  for (const g of groups) await store.putGroup(g);
  return { upstreams: upstreams.length, groups: groups.length };
}
