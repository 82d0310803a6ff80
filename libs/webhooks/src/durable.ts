// The durable copy of webhooks: the warehouse table of migration 9 (`tables.webhooks`), written
// on every change by the control routes and loaded back into the hot store at start (embedded:
// the memory store starts empty) and after a rebuild (Redis restarted empty).

import type { Warehouse } from '@tollgate/warehouse';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType, type WebhookRecord, type WebhookStore } from './store.ts';

const dt = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '');

/** Appends one version of a webhook (the row holds the sealed secret only). */
export async function saveWebhook(warehouse: Warehouse, w: WebhookRecord): Promise<void> {
  await warehouse.insertRows(warehouse.tables.webhooks, [{
    id: w.id, url: w.url, events: w.events, description: w.description, secret_sealed: w.secret_sealed,
    created_at: dt(w.created_at), deleted: w.deleted ? 1 : 0, version: w.version,
  }]);
}

/** The latest version of every webhook (tombstones included), deduplicated with FINAL. */
export async function loadWebhooks(warehouse: Warehouse): Promise<WebhookRecord[]> {
  const rows = await warehouse.select(
    `SELECT id, url, events, description, secret_sealed, toUnixTimestamp64Milli(created_at) AS created_ms, deleted, toString(version) AS version_t
     FROM ${warehouse.tables.webhooks} FINAL ORDER BY id`,
  );
  const known = new Set<string>(WEBHOOK_EVENT_TYPES);
  return rows.map((r) => ({
    id: String(r['id']), url: String(r['url']),
    events: (r['events'] as string[]).filter((e): e is WebhookEventType => known.has(e)),
    description: r['description'] === null ? null : String(r['description']),
    secret_sealed: String(r['secret_sealed']),
    created_at: Number(r['created_ms']), deleted: Number(r['deleted']) === 1, version: Number(r['version_t']),
  }));
}

/**
 * Puts every stored webhook into `store` (highest version wins, so newer records already there
 * stay). Returns how many were loaded. Safe to run any time and twice.
 */
export async function restoreWebhooks(warehouse: Warehouse, store: WebhookStore): Promise<number> {
  const all = await loadWebhooks(warehouse);
  for (const w of all) await store.put(w);
  return all.length;
}
