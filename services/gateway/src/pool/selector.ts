// Upstream selection and failover (issue 10): which upstream of the caller's group a request goes
// to, and where it goes next when that one fails before the first byte reached the client.

import type { IncomingHttpHeaders } from 'node:http';
import { gatewayError } from '@tollgate/anthropic';
import type { GroupRecord, PoolStore, PoolView, ResolvedUpstream } from '@tollgate/pool';
import type { SelectionOptions } from '../deps.ts';
import { header, type UpstreamClient, type UpstreamResponse } from '../upstream.ts';
import { UpstreamHealth } from './breaker.ts';
import type { UpstreamClients } from './clients.ts';
import { affinityTtlMs, pinKey, sessionKey } from './session.ts';

export const DEFAULT_SELECTION: SelectionOptions = {
  maxAttempts: 3, failoverBudgetMs: 30_000, circuitFailureThreshold: 5, circuitOpenMs: 30_000,
};

/** How often this process reports its upstreams' health to the store (ms). */
export const HEALTH_REPORT_MS = 1_000;

/** The longest cooldown an upstream's own headers can impose (ms): a week, Anthropic's longest unified window. */
export const MAX_COOLDOWN_MS = 7 * 24 * 3_600_000;

/** Where a request may go: its group, the group's upstreams that serve its model, and the model name to send. */
export interface Route {
  group: GroupRecord;
  /** active upstreams of the group serving the model, in the group's order */
  candidates: ResolvedUpstream[];
  /**
   * the session pin is read and written: the group has more than one member (active or not).
   * Not the active candidates' count: a session served by the only active one while another is
   * disabled must be pinned where its cache now is, or it would go back to the other (its old
   * pin) when that one returns, whatever the priorities. A group of one (the configured default)
   * makes no pin round trip.
   */
  pinned: boolean;
  /** the name sent upstream: the group's `model_mapping[catalog id]`, else undefined (the catalog's upstream_model) */
  mappedModel: string | undefined;
  /**
   * the catalog model id the request resolved to: session pins are per (group, session, model),
   * as prompt caches are per model, so a side request for another model (Claude Code's haiku
   * titles) neither moves nor refreshes the main model's pin
   */
  modelId: string;
}

/** What came of sending a request through the pool. */
export interface Sent {
  /** the upstream that answered last: the one that served, or whose failure the client gets; null when none was tried */
  upstreamId: string | null;
  /** upstream attempts made (1 + failovers) */
  attempts: number;
  /** the last attempt's response (possibly an error status: the client gets that one), or what it threw */
  outcome: { res: UpstreamResponse } | { error: unknown };
  /** frees the serving upstream's in-flight slot once its body is read; idempotent */
  release(): void;
}

/** What `send` needs of the request for affinity and the failover budget. */
export interface SendContext {
  headers: IncomingHttpHeaders;
  /** the parsed request body (metadata.user_id, cache_control ttl) */
  body: unknown;
  accountId: string;
  keyId: string;
  /** Date.now() when the request arrived */
  arrivedAt: number;
  /**
   * The endpoint's answers say nothing of the upstream's Messages health (token counting:
   * Anthropic limits and serves it apart): a 2xx does not close a circuit Messages opened, and a
   * 429 or 5xx fails over without counting against it or cooling it down
   * (`UpstreamHealth.inconclusive`), so a customer can neither take an upstream out of Messages
   * traffic nor keep a failing one in it. What is the upstream account's or host's still counts:
   * a refused credential (401/402/403), a subscription's unified window
   * (`anthropic-ratelimit-unified-status: rejected`), a connection that fails.
   */
  separateHealth?: boolean;
}

/** How an attempt's response is judged. */
type Verdict = { kind: 'served' } | { kind: 'failover'; open: boolean; coolUntil: number | null };

/**
 * Judges an upstream answer at its headers. 2xx and the request's own 4xx (400, 404, 413, …):
 * served (the upstream works). Fail over: 5xx and 529 (overloaded), 408 (the upstream timed the
 * request out: transient, and the gateway answers it as a retryable 503), 429 (rate limited), and
 * 401/402/403 — the upstream refused the gateway's account (bad credential, no credit, no
 * permission), which no other request will fix, so the circuit opens at once. A cooldown comes
 * from `anthropic-ratelimit-unified-status: rejected` with `anthropic-ratelimit-unified-reset`
 * (epoch seconds; subscription accounts, exhausted until then), else from a 429's `retry-after`
 * (delta-seconds or HTTP-date). A 2xx is never cooled down, whatever its headers say.
 */
export function judge(res: UpstreamResponse, now: number): Verdict {
  const s = res.status;
  if (s < 400) return { kind: 'served' };
  const refused = s === 401 || s === 402 || s === 403;
  if (!(refused || s === 408 || s === 429 || s >= 500)) return { kind: 'served' };
  let coolUntil: number | null = null;
  if (header(res, 'anthropic-ratelimit-unified-status')?.trim().toLowerCase() === 'rejected') {
    const reset = Number(header(res, 'anthropic-ratelimit-unified-reset')?.trim());
    if (Number.isFinite(reset) && reset * 1000 > now) coolUntil = reset * 1000;
  }
  if (coolUntil === null && s === 429) coolUntil = retryAfterUntil(header(res, 'retry-after'), now);
  if (coolUntil !== null) coolUntil = Math.min(coolUntil, now + MAX_COOLDOWN_MS);
  return { kind: 'failover', open: refused, coolUntil };
}

/** `retry-after` (delta-seconds or an HTTP-date) as epoch ms, or null when absent, unreadable or past. */
export function retryAfterUntil(value: string | null, now: number): number | null {
  if (value === null) return null;
  const v = value.trim();
  const until = /^\d{1,10}$/.test(v) ? now + Number(v) * 1000 : Date.parse(v);
  return Number.isFinite(until) && until > now ? until : null;
}

/**
 * Weighted random choice among `items` by `weight` (≥ 1 each): item i with probability
 * weight_i / Σ weight. `random` returns [0, 1) (Math.random, or a seeded generator in tests).
 */
export function weightedPick<T extends { record: { weight: number } }>(items: readonly T[], random: () => number): T {
  const total = items.reduce((a, u) => a + Math.max(1, u.record.weight), 0);
  let r = random() * total;
  for (const u of items) {
    r -= Math.max(1, u.record.weight);
    if (r < 0) return u;
  }
  return items[items.length - 1]!;
}

export interface UpstreamPoolOptions {
  view: PoolView;
  /** session pins and health reports (memory or Redis: shared by every gateway) */
  store: PoolStore;
  clients: UpstreamClients;
  gatewayId: string;
  selection?: Partial<SelectionOptions>;
  random?: () => number;
  now?: () => number;
  /** a pin or health report the store refused: the request goes on without it */
  onError?: (err: unknown, what: string) => void;
}

/**
 * The upstreams of one gateway process: their health (circuit, cooldown, in-flight), selection
 * and failover, session affinity and health reports. README "Upstream pools".
 */
export class UpstreamPool {
  readonly settings: SelectionOptions;
  readonly #o: UpstreamPoolOptions;
  readonly #random: () => number;
  readonly #now: () => number;
  #health = new Map<string, UpstreamHealth>();
  #timer: NodeJS.Timeout | undefined;

  constructor(o: UpstreamPoolOptions) {
    this.#o = o;
    this.settings = { ...DEFAULT_SELECTION, ...o.selection };
    this.#random = o.random ?? Math.random;
    this.#now = o.now ?? Date.now;
  }

  /** This process's state of `u`, judged on the newest version of its URL and credential seen (`UpstreamHealth.rebase`). */
  #judged(u: ResolvedUpstream): UpstreamHealth {
    const h = this.health(u.record.id);
    h.rebase(u.record.version, u.record.base_url, u.apiKey);
    return h;
  }

  /** This process's state of an upstream (created on first use). */
  health(id: string): UpstreamHealth {
    let h = this.#health.get(id);
    if (!h) {
      h = new UpstreamHealth(id, { failureThreshold: this.settings.circuitFailureThreshold, openMs: this.settings.circuitOpenMs }, this.#now);
      this.#health.set(id, h);
    }
    return h;
  }

  /**
   * The route of a caller's request for catalog model `modelId`: its group (key's, else
   * account's, else default), the group's active upstreams whose `models` include the model
   * (null: every model), and the group's mapped model name. Throws 404 `model_not_found` when
   * no upstream of the group serves the model, or 503 `upstream_error` when only disabled ones
   * (or ones without a usable credential) do: refused before anything is held.
   */
  async route(account: { group_id?: string | null }, key: { group_id?: string | null }, modelId: string, requested: string): Promise<Route> {
    const resolved = await this.#o.view.groupFor(account, key);
    const candidates = resolved.upstreams.filter((u) => u.record.status === 'active' && !u.record.deleted
      && (u.record.models === null || u.record.models.includes(modelId)));
    if (candidates.length === 0) {
      // Disabled members (or ones whose credential does not unseal) that serve the model: it is
      // not "not found", its upstreams are unavailable.
      const inactive = resolved.inactive.filter((r) => r.models === null || r.models.includes(modelId)).length;
      if (inactive > 0) {
        throw gatewayError('upstream_error', `model: ${requested} is served by no active upstream of this key's group (${inactive} of its upstreams ${inactive === 1 ? 'is' : 'are'} disabled or without a usable credential)`);
      }
      throw gatewayError('model_not_found', `model: ${requested} is not served by any upstream of this key's group`);
    }
    const mapped = resolved.group.model_mapping?.[modelId];
    return { group: resolved.group, candidates, pinned: resolved.upstreams.length + resolved.inactive.length > 1, mappedModel: typeof mapped === 'string' && mapped !== '' ? mapped : undefined, modelId };
  }

  /**
   * The next upstream to try, or undefined: the session's pinned upstream when it is untried and
   * available (with `failback`, only when it is also of the highest priority available); else
   * among the untried available ones, the highest priority, then weighted random. A real session
   * stays where its prompt cache is even when a preferred upstream comes back (it ends; its cache
   * would be written again); the key standing in for a session (`failback`, a client that sends
   * no session id) never ends under steady traffic, so its sliding pin would keep all of the
   * key's traffic on a backup for good.
   * An upstream is unavailable while its circuit is open (or its half-open probe is running),
   * it is cooled down, or it has `max_concurrency` requests in flight here. With `panic` (the
   * first attempt) and none available but some only for health reasons, the one expected back
   * soonest is taken rather than refusing: the gateway does not invent an outage (Envoy's panic
   * routing; a group of one upstream behaves as it did before pools).
   */
  pick(candidates: readonly ResolvedUpstream[], tried: ReadonlySet<string>, pinned: string | undefined, panic: boolean, failback = false): ResolvedUpstream | undefined {
    const untried = candidates.filter((u) => !tried.has(u.record.id));
    const available = untried.filter((u) => this.#judged(u).unavailable(u.record.max_concurrency) === null);
    if (available.length > 0) {
      const top = Math.max(...available.map((u) => u.record.priority));
      if (pinned !== undefined) {
        const p = available.find((u) => u.record.id === pinned);
        if (p && (!failback || p.record.priority === top)) return p;
      }
      return weightedPick(available.filter((u) => u.record.priority === top), this.#random);
    }
    if (!panic) return undefined;
    const notFull = untried.filter((u) => this.health(u.record.id).unavailable(u.record.max_concurrency) !== 'full');
    if (notFull.length === 0) return undefined;
    const soonest = Math.min(...notFull.map((u) => this.health(u.record.id).availableAt()));
    const first = notFull.filter((u) => this.health(u.record.id).availableAt() === soonest);
    const top = Math.max(...first.map((u) => u.record.priority));
    return weightedPick(first.filter((u) => u.record.priority === top), this.#random);
  }

  /**
   * Sends one request through the route with failover before the first byte: `post` makes one
   * attempt (it must not have written anything to the client). A failed attempt (it threw: a
   * connection error or a timeout to headers; or `judge` says fail over) counts against its
   * upstream's circuit and, when another upstream is available, at most `maxAttempts` attempts
   * are made and none starts later than `failoverBudgetMs` after `arrivedAt`, its body is
   * discarded and the next upstream is tried. Otherwise the last attempt's response (or error)
   * is the outcome: the client gets the last upstream's own answer. A served response pins the
   * session for the route's model (sliding, never shortened: see `PoolStore.setAffinity`; only in
   * groups listing more than one upstream, `Route.pinned`). Throws 503 `overloaded` when
   * every candidate is at its `max_concurrency`.
   */
  async send(route: Route, ctx: SendContext, post: (client: UpstreamClient, upstream: ResolvedUpstream) => Promise<UpstreamResponse>): Promise<Sent> {
    const store = this.#o.store;
    const shared = route.pinned;
    // Per model: a prompt cache is per model, and a pin shared across models would let a side
    // request for a model the pinned upstream does not serve move the main model's pin (brk10a #1).
    const identified = shared ? sessionKey(ctx.headers, ctx.body, ctx.accountId, ctx.keyId) : undefined;
    const session = identified ? pinKey(identified.key, route.modelId) : '';
    const failback = identified?.source === 'key';
    let pinned: string | undefined;
    if (shared) {
      pinned = await store.affinity(route.group.id, session).catch((err: unknown) => {
        this.#o.onError?.(err, 'session affinity could not be read');
        return undefined;
      });
    }
    const tried = new Set<string>();
    let attempts = 0;
    for (;;) {
      const u = this.pick(route.candidates, tried, pinned, attempts === 0, failback);
      if (!u) throw gatewayError('overloaded', 'Every upstream of this gateway is fully in use; retry shortly', { headers: { 'retry-after': '1' } });
      const id = u.record.id;
      tried.add(id);
      attempts++;
      const health = this.#judged(u);
      const generation = health.begin(u.record.version);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        health.end();
      };
      const more = () => attempts < this.settings.maxAttempts
        && this.#now() - ctx.arrivedAt < this.settings.failoverBudgetMs
        && this.pick(route.candidates, tried, undefined, false) !== undefined;
      let res: UpstreamResponse;
      try {
        res = await post(this.#o.clients.get(u), u);
      } catch (error) {
        health.failed(false, generation);
        release();
        if (more()) continue;
        return { upstreamId: id, attempts, outcome: { error }, release };
      }
      const verdict = judge(res, this.#now());
      if (verdict.kind === 'served') {
        if (ctx.separateHealth === true) health.inconclusive(generation);
        else health.succeeded(generation);
        if (shared && res.status < 300) {
          store.setAffinity(route.group.id, session, id, affinityTtlMs(ctx.body)).catch((err: unknown) => {
            this.#o.onError?.(err, 'session affinity could not be written');
          });
        }
        return { upstreamId: id, attempts, outcome: { res }, release };
      }
      const apart = ctx.separateHealth === true && !verdict.open
        && header(res, 'anthropic-ratelimit-unified-status')?.trim().toLowerCase() !== 'rejected';
      if (apart) health.inconclusive(generation);
      else {
        health.failed(verdict.open, generation);
        if (verdict.coolUntil !== null) health.coolDown(verdict.coolUntil, generation);
      }
      if (more()) {
        res.body.cancel();
        release();
        continue;
      }
      return { upstreamId: id, attempts, outcome: { res }, release };
    }
  }

  /** Starts reporting every known upstream's health to the store about once a second (stopped by `close`). */
  startReporting(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      const snapshots = [...this.#health.values()].map((h) => h.snapshot(this.#o.gatewayId));
      if (snapshots.length === 0) return;
      this.#o.store.reportHealth(snapshots).catch((err: unknown) => this.#o.onError?.(err, 'upstream health could not be reported'));
    }, HEALTH_REPORT_MS);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
