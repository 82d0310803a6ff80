// Where webhooks, their delivery claims and their recent deliveries live for every process:
// in memory (embedded mode, one process) or in Redis (distributed: every gateway and consumer
// reads the same records). The durable copy is the warehouse table of migration 9, written by
// the control routes and loaded back after a restart or a Redis loss (see restoreWebhooks).

import type { Redis } from 'ioredis';
import { putVersioned } from '@tollgate/keys';

/** The alert types a webhook may subscribe to (issue 9, outcome 6). */
export const WEBHOOK_EVENT_TYPES = ['balance.low', 'spend_limit.reached', 'plan_window.exhausted', 'event.quarantined'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/**
 * One webhook as stored. `secret_sealed`: the signing secret sealed with `seal` of
 * @tollgate/keys (purpose `webhook-secret`, context the id), never the secret itself.
 * Versioned like the other control records: the highest `version` wins; a delete is a
 * tombstone (`deleted: true`) so it wins over an older copy reloaded from the warehouse.
 */
export interface WebhookRecord {
  id: string;
  url: string;
  events: WebhookEventType[];
  description: string | null;
  secret_sealed: string;
  /** epoch ms */
  created_at: number;
  deleted: boolean;
  version: number;
}

/** One delivery (one occurrence to one webhook) as `GET …/deliveries` shows it. */
export interface DeliveryRecord {
  /** the `webhook-id` header and body `id`, the same on every attempt */
  id: string;
  webhook_id: string;
  event_type: WebhookEventType;
  /** the occurrence it reports (e.g. `balance.low:<usage event id>`) */
  occurrence_id: string;
  attempts: number;
  /** `pending` (an attempt is due), `delivered` (2xx), `failed` (a 4xx other than 408/429, attempts used up, the webhook deleted or unsubscribed meanwhile — `last_error` "webhook deleted" —, or abandoned at shutdown) */
  state: 'pending' | 'delivered' | 'failed';
  /** the last attempt's HTTP status, or null (network error, timeout, not tried yet) */
  last_status: number | null;
  /** why the last attempt did not deliver (e.g. `timeout`, `ECONNREFUSED`, `HTTP 503`), or null */
  last_error: string | null;
  /** epoch ms */
  created_at: number;
  /** epoch ms of the 2xx, or null */
  delivered_at: number | null;
}

/** How many deliveries each webhook keeps (newest first); older ones are dropped. */
export const DELIVERIES_KEPT = 100;

export interface WebhookStore {
  /** Applies `record` if its version is newer than the stored one; returns whether it did. */
  put(record: WebhookRecord): Promise<boolean>;
  get(id: string): Promise<WebhookRecord | undefined>;
  /** Every stored record, tombstones included. */
  list(): Promise<WebhookRecord[]>;
  /**
   * Claims a delivery id for `ttlMs`: true for exactly one caller across every process sharing
   * the store (Redis SET NX), so one occurrence is sent once whichever process saw it.
   */
  claim(deliveryId: string, ttlMs: number): Promise<boolean>;
  /** Stores (replaces) a delivery record, keeping the newest DELIVERIES_KEPT per webhook. */
  recordDelivery(d: DeliveryRecord): Promise<void>;
  /** The webhook's recent deliveries, newest first. */
  deliveries(webhookId: string, limit?: number): Promise<DeliveryRecord[]>;
}

export class MemoryWebhookStore implements WebhookStore {
  #hooks = new Map<string, WebhookRecord>();
  #claims = new Map<string, number>();
  #deliveries = new Map<string, Map<string, DeliveryRecord>>();

  async put(record: WebhookRecord): Promise<boolean> {
    const current = this.#hooks.get(record.id);
    if (current && current.version >= record.version) return false;
    this.#hooks.set(record.id, record);
    return true;
  }

  async get(id: string): Promise<WebhookRecord | undefined> {
    return this.#hooks.get(id);
  }

  async list(): Promise<WebhookRecord[]> {
    return [...this.#hooks.values()];
  }

  async claim(deliveryId: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    const until = this.#claims.get(deliveryId);
    if (until !== undefined && until > now) return false;
    this.#claims.set(deliveryId, now + ttlMs);
    if (this.#claims.size > 100_000) for (const [k, u] of this.#claims) if (u <= now) this.#claims.delete(k);
    return true;
  }

  async recordDelivery(d: DeliveryRecord): Promise<void> {
    let mine = this.#deliveries.get(d.webhook_id);
    if (!mine) this.#deliveries.set(d.webhook_id, (mine = new Map()));
    mine.set(d.id, d);
    if (mine.size > DELIVERIES_KEPT) {
      const oldest = [...mine.values()].sort(byNewest).slice(DELIVERIES_KEPT);
      for (const o of oldest) mine.delete(o.id);
    }
  }

  async deliveries(webhookId: string, limit = DELIVERIES_KEPT): Promise<DeliveryRecord[]> {
    return [...(this.#deliveries.get(webhookId)?.values() ?? [])].sort(byNewest).slice(0, limit);
  }
}

const byNewest = (a: DeliveryRecord, b: DeliveryRecord) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1);

/**
 * Webhooks in Redis: one hash `<prefix>webhooks` (id → JSON record), claims as
 * `<prefix>webhook-claim:<delivery id>` (SET NX PX), deliveries per webhook in a hash and a
 * sorted set by creation time. `list()` is cached for `cacheMs` (default 1,000 ms) so the
 * ledger consumer's per-event check costs no round trip; this process's own writes clear it.
 */
export class RedisWebhookStore implements WebhookStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #cacheMs: number;
  #cache: { at: number; records: WebhookRecord[] } | undefined;

  constructor(options: { redis: Redis; prefix: string; cacheMs?: number }) {
    this.#redis = options.redis;
    this.#prefix = options.prefix;
    this.#cacheMs = options.cacheMs ?? 1_000;
  }

  async put(record: WebhookRecord): Promise<boolean> {
    this.#cache = undefined;
    // highest version wins in one atomic step, as the pool's records do
    return putVersioned(this.#redis, `${this.#prefix}webhooks`, record);
  }

  async get(id: string): Promise<WebhookRecord | undefined> {
    const raw = await this.#redis.hget(`${this.#prefix}webhooks`, id);
    return raw === null ? undefined : (JSON.parse(raw) as WebhookRecord);
  }

  async list(): Promise<WebhookRecord[]> {
    const now = Date.now();
    if (this.#cache && now - this.#cache.at < this.#cacheMs) return this.#cache.records;
    const all = await this.#redis.hvals(`${this.#prefix}webhooks`);
    const records = all.map((raw) => JSON.parse(raw) as WebhookRecord);
    this.#cache = { at: now, records };
    return records;
  }

  async claim(deliveryId: string, ttlMs: number): Promise<boolean> {
    return (await this.#redis.set(`${this.#prefix}webhook-claim:${deliveryId}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
  }

  async recordDelivery(d: DeliveryRecord): Promise<void> {
    const hash = `${this.#prefix}webhook-deliveries:${d.webhook_id}`;
    const order = `${this.#prefix}webhook-delivery-order:${d.webhook_id}`;
    await this.#redis.multi().hset(hash, d.id, JSON.stringify(d)).zadd(order, 'NX', String(d.created_at), d.id).exec();
    const stale = await this.#redis.zrange(order, '0', String(-(DELIVERIES_KEPT + 1)));
    if (stale.length > 0) await this.#redis.multi().hdel(hash, ...stale).zrem(order, ...stale).exec();
  }

  async deliveries(webhookId: string, limit = DELIVERIES_KEPT): Promise<DeliveryRecord[]> {
    const ids = await this.#redis.zrevrange(`${this.#prefix}webhook-delivery-order:${webhookId}`, 0, limit - 1);
    if (ids.length === 0) return [];
    const raws = await this.#redis.hmget(`${this.#prefix}webhook-deliveries:${webhookId}`, ...ids);
    return raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as DeliveryRecord);
  }
}
