// Delivery of alerts by webhook, Standard Webhooks style (https://www.standardwebhooks.com/):
// headers `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
// id.timestamp.body>` made by the `standardwebhooks` library; one delivery id per occurrence
// and webhook, claimed in the shared store so two processes never both send it; retried with
// exponential backoff and jitter on network errors, 408, 429 and 5xx, the same id every time.

import { createHash, randomBytes } from 'node:crypto';
import pLimit, { type LimitFunction } from 'p-limit';
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
  /** jobs (fan-outs and attempts) running at once, this process (default 8) */
  concurrency?: number;
  /** occurrences waiting for a slot before `notify` drops new ones (default 10,000) */
  maxQueue?: number;
  /** told of every occurrence dropped because the queue was full (the runtime counts it in a metric) */
  onDrop?: (o: Occurrence) => void;
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
 * Sends occurrences to the webhooks subscribed to them. `notify` is O(1) and never throws: it
 * only puts the occurrence in a bounded queue (`maxQueue`; when full the occurrence is dropped,
 * logged and told to `onDrop`), since it is called from the request path. Every job (the
 * fan-out: store reads and claims; each attempt: one POST) runs off the request path, after a
 * `setImmediate`, at most `concurrency` at once (p-limit).
 * Every attempt reads its webhook again: a webhook deleted (or no longer subscribed) since the
 * delivery began gets nothing more, the delivery recorded `failed` ("webhook deleted"); a
 * changed URL is used from the next attempt on.
 * At `close()` attempts in flight finish (bounded by the timeout); retries still waiting and
 * jobs not started are abandoned: a delivery is recorded `failed` with `last_error: "abandoned
 * at shutdown"` and, being claimed, is not sent again by another process (an alert, not money:
 * see README).
 */
export class WebhookDispatcher {
  readonly #o: Required<Omit<DispatcherOptions, 'log' | 'onDrop'>> & Pick<DispatcherOptions, 'log' | 'onDrop'>;
  readonly #limit: LimitFunction;
  #queued = 0;
  #dropped = 0;
  #running = new Set<Promise<void>>();
  #timers = new Map<NodeJS.Timeout, () => Promise<void>>();
  #closed = false;

  constructor(options: DispatcherOptions) {
    this.#o = {
      maxAttempts: 8, retryBaseMs: 1_000, maxDelayMs: 3_600_000, timeoutMs: 10_000, claimTtlMs: 7 * 86_400_000,
      concurrency: 8, maxQueue: 10_000, ...options,
    };
    this.#limit = pLimit(this.#o.concurrency);
  }

  /** Occurrences dropped because the queue was full, since start. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Whether a live webhook subscribes to `type` (cheap: lets a trigger skip its own reads). */
  async wants(type: WebhookEventType): Promise<boolean> {
    return (await this.#o.store.list()).some((w) => !w.deleted && w.events.includes(type));
  }

  /**
   * Queues `o` for every live webhook subscribed to its type; returns at once (no store read,
   * no claim, no HTTP on the caller's clock). Dropped when `maxQueue` occurrences already wait.
   */
  notify(o: Occurrence): void {
    if (this.#closed) return;
    if (this.#queued >= this.#o.maxQueue) {
      this.#dropped++;
      this.#o.log?.warn({ occurrence: o.id, queued: this.#queued }, 'webhook: queue full; occurrence dropped');
      this.#o.onDrop?.(o);
      return;
    }
    this.#queued++;
    this.#run(async () => {
      this.#queued--;
      if (this.#closed) {
        this.#o.log?.warn({ occurrence: o.id }, 'webhook: occurrence not sent, stopping');
        return;
      }
      await this.#fanOut(o).catch((err: unknown) => this.#o.log?.error({ err, occurrence: o.id }, 'webhook: could not start deliveries'));
    });
  }

  /** Resolves once nothing is queued, in flight or waiting to retry (tests). */
  async idle(): Promise<void> {
    while (this.#running.size > 0 || this.#timers.size > 0) {
      if (this.#running.size > 0) await Promise.allSettled([...this.#running]);
      else await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops: no new occurrences, waiting retries and queued jobs abandoned (recorded), attempts in flight awaited. */
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

  /** Runs `job` in a concurrency slot, after the current I/O phase (never on the caller's clock). */
  #run(job: () => Promise<void>): void {
    const p = this.#limit(async () => {
      await new Promise<void>((r) => setImmediate(r));
      await job();
    }).catch((err: unknown) => this.#o.log?.error({ err }, 'webhook: job failed'));
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
      this.#run(() => this.#attempt(d, body(id)));
    }
  }

  async #record(d: DeliveryRecord): Promise<void> {
    await this.#o.store.recordDelivery(d).catch((err: unknown) => this.#o.log?.warn({ err, delivery: d.id }, 'webhook: delivery record not stored'));
  }

  /**
   * One attempt of delivery `d`. The webhook is read again first (the one source of truth for
   * "is it still there, where does it post, with which secret"): deleted or unsubscribed → the
   * delivery fails with no request sent.
   */
  async #attempt(d: DeliveryRecord, payload: string): Promise<void> {
    if (this.#closed) return this.#abandon(d);
    let hook: WebhookRecord | undefined;
    try {
      hook = await this.#o.store.get(d.webhook_id);
    } catch (err) {
      // The store is out: like a network error, worth trying again later.
      return this.#after(d, payload, null, `webhook store unavailable: ${(err as Error)?.message ?? String(err)}`);
    }
    if (!hook || hook.deleted || !hook.events.includes(d.event_type)) {
      const why = !hook || hook.deleted ? 'webhook deleted' : `webhook no longer subscribed to ${d.event_type}`;
      await this.#record({ ...d, state: 'failed', last_error: why });
      return;
    }
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
    return this.#after(d, payload, status, error);
  }

  /** Records an attempt's outcome and schedules the next one when it is worth it. */
  async #after(d: DeliveryRecord, payload: string, status: number | null, error: string | null): Promise<void> {
    const attempts = d.attempts + 1;
    const delivered = status !== null && status >= 200 && status < 300;
    const again = !delivered && attempts < this.#o.maxAttempts && (status === null || retriable(status));
    const next: DeliveryRecord = {
      ...d, attempts, last_status: status, last_error: error,
      state: delivered ? 'delivered' : again ? 'pending' : 'failed', delivered_at: delivered ? Date.now() : null,
    };
    await this.#record(next);
    if (!delivered && !again) this.#o.log?.warn({ delivery: d.id, webhook: d.webhook_id, attempts, status, error }, 'webhook delivery failed');
    if (!again) return;
    // close() came while this attempt was in flight: nothing will run the retry.
    if (this.#closed) return this.#abandon(next);
    const wait = backoffMs(attempts, this.#o.retryBaseMs, this.#o.maxDelayMs);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#run(() => this.#attempt(next, payload));
    }, wait);
    timer.unref();
    this.#timers.set(timer, () => this.#abandon(next));
  }

  async #abandon(d: DeliveryRecord): Promise<void> {
    this.#o.log?.warn({ delivery: d.id, webhook: d.webhook_id, attempts: d.attempts }, 'webhook retry abandoned at shutdown');
    await this.#o.store.recordDelivery({ ...d, state: 'failed', last_error: 'abandoned at shutdown' }).catch(() => {});
  }
}
