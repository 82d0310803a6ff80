// Delivery of alerts by webhook, Standard Webhooks style (https://www.standardwebhooks.com/):
// headers `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
// id.timestamp.body>` made by the `standardwebhooks` library; one delivery id per occurrence
// and webhook, claimed in the shared store so two processes never both send it; retried with
// exponential backoff and jitter on network errors, 408, 429 and 5xx, the same id every time.

import { createHash, randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { unseal } from '@tollgate/keys';
import type { DeliveryRecord, WebhookEventType, WebhookRecord, WebhookStore } from './store.ts';

/** The purpose a webhook secret is sealed under (`seal` of @tollgate/keys; context: the webhook id). */
export const WEBHOOK_SECRET_PURPOSE = 'webhook-secret';

/** A new signing secret: `whsec_` + base64 of 32 random bytes (the Standard Webhooks format). */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/**
 * Something that happened, to be told to every webhook subscribed to its `type`.
 * `id` is deterministic from the occurrence itself (e.g. `balance.low:<usage event id>`), so
 * whichever process sees it, it yields the same delivery ids and is claimed once.
 */
export interface Occurrence {
  id: string;
  type: WebhookEventType;
  /** epoch ms: when it happened (the body's `created_at`) */
  created_at: number;
  /** the body's `data` object (snake_case, money as decimal strings) */
  data: Record<string, unknown>;
  /**
   * An extra claim taken before any delivery, for occurrences whose `id` two processes could
   * compute differently (a plan window's reset, known to the second): one per key and TTL.
   */
  once?: { key: string; ttlMs: number };
}

export interface DispatcherLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface DispatcherOptions {
  store: WebhookStore;
  /** KEY_HASH_SECRET: opens the sealed signing secrets */
  keyHashSecret: string;
  /** attempts per delivery, the first included (WEBHOOK_MAX_ATTEMPTS, default 8) */
  maxAttempts?: number;
  /** the first retry's delay before jitter, ms; doubles per attempt (WEBHOOK_RETRY_BASE_MS, default 1,000) */
  retryBaseMs?: number;
  /** the longest wait between two attempts, ms (default 1 h) */
  maxDelayMs?: number;
  /** one attempt's bound, connection to response headers, ms (WEBHOOK_TIMEOUT_MS, default 10,000) */
  timeoutMs?: number;
  /** how long a delivery id stays claimed, ms (default 7 days): a redelivered event within it sends nothing */
  claimTtlMs?: number;
  log?: DispatcherLogger;
}

/** The delivery id of an occurrence at one webhook: `msg_` + 32 base64url characters of SHA-256. */
export function deliveryId(webhookId: string, occurrenceId: string): string {
  return `msg_${createHash('sha256').update(`${webhookId}\n${occurrenceId}`).digest('base64url').slice(0, 32)}`;
}

/** True for an answer worth trying again: 408, 429 and every 5xx (Standard Webhooks' retry advice). */
export function retriable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * The wait before attempt `attempt + 1` (attempt ≥ 1), ms: base × 2^(attempt−1), capped, with
 * "equal jitter" (half fixed, half random) so receivers recovering from an outage are not hit by
 * every sender at once, yet a retry never comes sooner than half its step.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(step / 2 + random() * (step / 2));
}

/**
 * Sends occurrences to the webhooks subscribed to them. `notify` never waits on the network and
 * never throws: it is called from the request path and from consumers (fire and forget).
 * At `close()` attempts in flight finish (bounded by the timeout); retries still waiting are
 * abandoned: their delivery is recorded `failed` with `last_error: "abandoned at shutdown"` and,
 * being claimed, is not sent again by another process (an alert, not money: see README).
 */
export class WebhookDispatcher {
  readonly #o: Required<Omit<DispatcherOptions, 'log'>> & { log?: DispatcherLogger };
  #running = new Set<Promise<void>>();
  #timers = new Map<NodeJS.Timeout, () => Promise<void>>();
  #closed = false;

  constructor(options: DispatcherOptions) {
    this.#o = {
      maxAttempts: 8, retryBaseMs: 1_000, maxDelayMs: 3_600_000, timeoutMs: 10_000, claimTtlMs: 7 * 86_400_000, ...options,
    };
  }

  /** Whether a live webhook subscribes to `type` (cheap: lets a trigger skip its own reads). */
  async wants(type: WebhookEventType): Promise<boolean> {
    return (await this.#o.store.list()).some((w) => !w.deleted && w.events.includes(type));
  }

  /** Delivers `o` to every live webhook subscribed to its type, in the background. */
  notify(o: Occurrence): void {
    if (this.#closed) return;
    this.#track(this.#fanOut(o).catch((err: unknown) => this.#o.log?.error({ err, occurrence: o.id }, 'webhook: could not start deliveries')));
  }

  /** Resolves once nothing is in flight or waiting to retry (tests). */
  async idle(): Promise<void> {
    while (this.#running.size > 0 || this.#timers.size > 0) {
      if (this.#running.size > 0) await Promise.allSettled([...this.#running]);
      else await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops: no new occurrences, waiting retries abandoned (recorded), attempts in flight awaited. */
  async close(): Promise<void> {
    this.#closed = true;
    const abandoned: Array<Promise<void>> = [];
    for (const [t, abandon] of this.#timers) {
      clearTimeout(t);
      abandoned.push(abandon());
    }
    this.#timers.clear();
    await Promise.allSettled([...abandoned, ...this.#running]);
  }

  #track(p: Promise<void>): void {
    this.#running.add(p);
    void p.finally(() => this.#running.delete(p));
  }

  async #fanOut(o: Occurrence): Promise<void> {
    const hooks = (await this.#o.store.list()).filter((w) => !w.deleted && w.events.includes(o.type));
    if (hooks.length === 0) return;
    if (o.once && !(await this.#o.store.claim(`once:${o.once.key}`, o.once.ttlMs))) return;
    const body = (id: string) => JSON.stringify({ id, type: o.type, created_at: new Date(o.created_at).toISOString(), data: o.data });
    for (const hook of hooks) {
      const id = deliveryId(hook.id, o.id);
      if (!(await this.#o.store.claim(id, this.#o.claimTtlMs))) continue;
      const d: DeliveryRecord = {
        id, webhook_id: hook.id, event_type: o.type, occurrence_id: o.id, attempts: 0, state: 'pending',
        last_status: null, last_error: null, created_at: Date.now(), delivered_at: null,
      };
      await this.#o.store.recordDelivery(d);
      this.#track(this.#attempt(hook, d, body(id)));
    }
  }

  async #attempt(hook: WebhookRecord, d: DeliveryRecord, payload: string): Promise<void> {
    let status: number | null = null;
    let error: string | null = null;
    try {
      const secret = unseal(hook.secret_sealed, this.#o.keyHashSecret, WEBHOOK_SECRET_PURPOSE, hook.id);
      const now = new Date();
      const signature = new Webhook(secret).sign(d.id, now, payload);
      const res = await fetch(hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json', 'user-agent': 'Tollgate-Webhooks/1',
          'webhook-id': d.id, 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)), 'webhook-signature': signature,
        },
        body: payload,
        // A redirect is an answer, never followed: it could lead the signed body anywhere.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      status = res.status;
      await res.body?.cancel().catch(() => {});
      if (status < 200 || status >= 300) error = `HTTP ${status}`;
    } catch (err) {
      const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
      error = e?.name === 'TimeoutError' ? 'timeout' : e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
    }
    const attempts = d.attempts + 1;
    const delivered = status !== null && status >= 200 && status < 300;
    const again = !delivered && attempts < this.#o.maxAttempts && (status === null || retriable(status));
    const next: DeliveryRecord = {
      ...d, attempts, last_status: status, last_error: error,
      state: delivered ? 'delivered' : again ? 'pending' : 'failed', delivered_at: delivered ? Date.now() : null,
    };
    await this.#o.store.recordDelivery(next).catch((err: unknown) => this.#o.log?.warn({ err, delivery: d.id }, 'webhook: delivery record not stored'));
    if (!delivered && !again) this.#o.log?.warn({ delivery: d.id, webhook: hook.id, attempts, status, error }, 'webhook delivery failed');
    if (!again) return;
    const abandon = async () => {
      this.#o.log?.warn({ delivery: d.id, webhook: hook.id, attempts }, 'webhook retry abandoned at shutdown');
      await this.#o.store.recordDelivery({ ...next, state: 'failed', last_error: 'abandoned at shutdown' }).catch(() => {});
    };
    // close() came while this attempt was in flight: nothing will run the retry.
    if (this.#closed) return abandon();
    const wait = backoffMs(attempts, this.#o.retryBaseMs, this.#o.maxDelayMs);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#track(this.#attempt(hook, next, payload));
    }, wait);
    timer.unref();
    this.#timers.set(timer, abandon);
  }
}
