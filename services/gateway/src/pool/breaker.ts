// Per-upstream health in one gateway process (issue 10): a consecutive-failure circuit breaker,
// cooldowns the upstream asked for (429 retry-after, a rejected unified rate limit), requests in
// flight against the upstream's `max_concurrency`, and a 60 s window of attempts and failures for
// the health reports. Pure state and a clock: no timers, no I/O.

import type { HealthSnapshot } from '@tollgate/pool';

/** Breaker settings (`CIRCUIT_FAILURE_THRESHOLD`, `CIRCUIT_OPEN_MS`). */
export interface BreakerOptions {
  /** consecutive failed attempts that open the circuit (default 5) */
  failureThreshold: number;
  /** ms an open circuit stays open before one half-open probe is let through (default 30 000) */
  openMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = { failureThreshold: 5, openMs: 30_000 };

/** Why an upstream cannot take a request now (null: it can). */
export type Unavailable = 'open' | 'probing' | 'cooldown' | 'full' | null;

const WINDOW_S = 60;

/** `begin`'s generation for an attempt routed with an older record: never the current one. */
const STALE = -1;

/**
 * One upstream's state. Circuit: `closed` counts consecutive failures and opens at the
 * threshold; `open` refuses until `openMs` has passed, then the next request becomes the single
 * half-open probe (`half_open`, every other request skips it); the probe's success closes the
 * circuit, its failure re-opens it for another `openMs`. A failure with `open` (a credential the
 * upstream refused) opens it at once. Cooldowns are independent of the circuit.
 *
 * What the circuit and the cooldown judge is the upstream's URL and credential (`rebase`): when
 * a newer version of its record changes either (a refused key rotated, a dead host replaced),
 * the upstream is judged afresh at once, not after `openMs`, and the outcome of an attempt begun
 * before the change, or routed with an older record (`begin`'s generation), no longer moves it.
 */
export class UpstreamHealth {
  readonly id: string;
  #opts: BreakerOptions;
  #now: () => number;
  #state: 'closed' | 'open' | 'half_open' = 'closed';
  #failures = 0;
  #openUntil = 0;
  #cooldownUntil = 0;
  #inFlight = 0;
  /** what the state below judges: the newest record version seen, its URL and its credential (`rebase`) */
  #basis: { version: number; url: string; key: string | undefined } | undefined;
  /** bumped by every change of the basis: attempts begun under an older one do not move the circuit */
  #generation = 0;
  // per-second buckets of the last WINDOW_S seconds: [second, attempts, failures]
  #window: Array<[number, number, number]> = [];

  constructor(id: string, opts: BreakerOptions = DEFAULT_BREAKER, now: () => number = Date.now) {
    this.id = id;
    this.#opts = opts;
    this.#now = now;
  }

  get inFlight(): number { return this.#inFlight; }

  /** The circuit as a health report shows it (`open` past its time reads `half_open`: the next request probes). */
  get circuit(): HealthSnapshot['circuit'] {
    if (this.#state === 'open' && this.#now() >= this.#openUntil) return 'half_open';
    return this.#state;
  }

  /** epoch ms until which the upstream is cooled down, or null */
  get cooldownUntil(): number | null {
    return this.#cooldownUntil > this.#now() ? this.#cooldownUntil : null;
  }

  /**
   * Why the upstream cannot take a request now, or null. `maxConcurrency`: the record's
   * `max_concurrency` (null: no cap of its own).
   */
  unavailable(maxConcurrency: number | null): Unavailable {
    const now = this.#now();
    if (this.#state === 'open' && now < this.#openUntil) return 'open';
    // one probe at a time: while it runs the circuit is still judged failing
    if (this.#state === 'half_open') return 'probing';
    if (this.#cooldownUntil > now) return 'cooldown';
    if (maxConcurrency !== null && this.#inFlight >= maxConcurrency) return 'full';
    return null;
  }

  /** When the upstream is expected back (epoch ms): the end of its open circuit or cooldown; 0 when not blocked. */
  availableAt(): number {
    return Math.max(this.#state === 'open' ? this.#openUntil : 0, this.#cooldownUntil);
  }

  /**
   * The upstream's record as a request sees it: `version` the record's version, `url` its base
   * URL, `apiKey` its credential in clear (undefined: none; compared, never kept apart from the
   * pool view's own copy). Only a newer version counts (a request routed from an older snapshot
   * does not take the judgement back). When a newer version changes the URL or the credential,
   * the circuit closes and the failures and cooldown are forgotten; in-flight counts and the
   * window's figures stay (they are about requests, not the judgement). The same key sent again
   * (sealed anew, a new version) changes nothing. The first call only records the basis.
   */
  rebase(version: number, url: string, apiKey: string | undefined): void {
    const b = this.#basis;
    if (b !== undefined && version <= b.version) return;
    this.#basis = { version, url, key: apiKey };
    if (b === undefined || (b.url === url && b.key === apiKey)) return;
    this.#generation++;
    this.#state = 'closed';
    this.#failures = 0;
    this.#openUntil = 0;
    this.#cooldownUntil = 0;
  }

  /**
   * An attempt starts: counts it in flight; an open circuit whose time has passed becomes
   * half-open (this is its probe). Returns the attempt's generation, for `failed`, `succeeded`
   * and `coolDown`: STALE when `version` (the record the attempt was routed with) is older than
   * the newest one seen, so its outcome, about another URL or key, moves nothing.
   */
  begin(version?: number): number {
    this.#inFlight++;
    this.#count(false);
    if (version !== undefined && this.#basis !== undefined && version < this.#basis.version) return STALE;
    if (this.#state === 'open' && this.#now() >= this.#openUntil) this.#state = 'half_open';
    return this.#generation;
  }

  /** The attempt is over (its response read or abandoned); idempotence is the caller's (`Lease`). */
  end(): void {
    this.#inFlight = Math.max(0, this.#inFlight - 1);
  }

  /**
   * The upstream answered usefully (a 2xx, or a 4xx that is the request's own fault): closes the
   * circuit. `generation`: `begin`'s (default: the current one); an older one changes nothing.
   */
  succeeded(generation = this.#generation): void {
    if (generation !== this.#generation) return;
    this.#failures = 0;
    this.#state = 'closed';
  }

  /**
   * The attempt's answer says nothing of the upstream's health for this circuit (a 429 of an
   * endpoint rate-limited apart, token counting): no failure, no success. A half-open circuit
   * whose probe this was goes back to open with its time already passed, so the next request
   * probes instead. `generation`: `begin`'s; an older one changes nothing.
   */
  inconclusive(generation = this.#generation): void {
    if (generation !== this.#generation || this.#state !== 'half_open') return;
    this.#state = 'open';
    this.#openUntil = this.#now();
  }

  /**
   * The attempt failed (connection error, timeout to headers, 5xx, 529, 429, a refused
   * credential). `open`: open the circuit now whatever the count (401/403: the credential is bad).
   * Counted in the window always; an attempt of an older `generation` (begun before `rebase`
   * changed the basis: the old key's refusal) does not move the circuit.
   */
  failed(open = false, generation = this.#generation): void {
    this.#count(true);
    if (generation !== this.#generation) return;
    this.#failures++;
    if (open || this.#state === 'half_open' || this.#failures >= this.#opts.failureThreshold) {
      this.#state = 'open';
      this.#openUntil = this.#now() + this.#opts.openMs;
    }
  }

  /**
   * Cools the upstream down until `until` (epoch ms); a later cooldown already set is kept. An
   * attempt of an older `generation` (another credential's rate limit) is ignored.
   */
  coolDown(until: number, generation = this.#generation): void {
    if (generation !== this.#generation) return;
    if (until > this.#cooldownUntil) this.#cooldownUntil = until;
  }

  /** What this process saw, for `PoolStore.reportHealth`. */
  snapshot(gatewayId: string): HealthSnapshot {
    const now = this.#now();
    const since = Math.floor(now / 1000) - WINDOW_S;
    let requests = 0;
    let failures = 0;
    for (const [s, a, f] of this.#window) if (s > since) { requests += a; failures += f; }
    return {
      upstream_id: this.id, gateway_id: gatewayId, circuit: this.circuit, cooldown_until: this.cooldownUntil,
      in_flight: this.#inFlight, recent_requests: requests, recent_failures: failures, at: now,
    };
  }

  #count(failure: boolean): void {
    const s = Math.floor(this.#now() / 1000);
    let last = this.#window.at(-1);
    if (last === undefined || last[0] !== s) {
      last = [s, 0, 0];
      this.#window.push(last);
      while (this.#window.length > 0 && this.#window[0]![0] <= s - WINDOW_S) this.#window.shift();
    }
    // an attempt is counted when it begins, a failure when it is judged
    if (failure) last[2]++;
    else last[1]++;
  }
}
