import type { FastifyRequest } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import type { KeyEntry } from '@tollgate/keys';
import { findPlan, policyOfPlan, type LimitPolicy } from '@tollgate/limits';
import type { GatewayDeps } from './deps.ts';
import { guardState } from './state.ts';

/** `KEY_MAX_CONCURRENT_REQUESTS` when not configured. */
export const DEFAULT_KEY_MAX_CONCURRENT = 64;

/** `ACCOUNT_MAX_CONCURRENT_REQUESTS` when not configured: half the upstream pool (at least 1). */
export function defaultAccountMaxConcurrent(pool: number): number {
  return Math.max(1, Math.floor(pool / 2));
}

declare module 'fastify' {
  interface FastifyRequest {
    /** the request's key and account share of the concurrency gates, from authentication on */
    slot?: SharedRelease;
  }
}

function tooMany(what: string, limit: number): never {
  throw gatewayError('rate_limit_exceeded',
    `Too many concurrent requests for this ${what} (${limit} in flight on this gateway); retry when one finishes`,
    { headers: { 'retry-after': '1' } });
}

/**
 * In-process concurrency of one gateway, two kinds of slot:
 * - a tenant slot: at most `perKey` requests of one key and `perAccount` of one account (all its
 *   keys together), counted from authentication — so a body still uploading counts — until the
 *   response has ended and the request's upstream work is over;
 * - a pool slot: at most `pool` requests in all hold an upstream connection (with HTTP/1.1 each
 *   request in flight holds one), from just before the upstream call until its work ends.
 * Every check is synchronous and local, so a refusal costs no Redis call and no waiting —
 * unlike the cluster-wide `RATE_LIMIT_CONCURRENT`, which needs a Redis round trip.
 */
export class ConcurrencyGates {
  readonly perKey: number;
  readonly perAccount: number;
  readonly pool: number;
  #inFlight = 0;
  #byKey = new Map<string, number>();
  #byAccount = new Map<string, number>();

  constructor(options: { perKey: number; pool: number; perAccount?: number }) {
    this.perKey = options.perKey;
    this.pool = options.pool;
    this.perAccount = options.perAccount ?? defaultAccountMaxConcurrent(options.pool);
  }

  /**
   * Takes a tenant slot, or throws 429 `rate_limit_exceeded` (`retry-after: 1`: a slot frees
   * when any request ends, which cannot be predicted) when the key already has `perKey` or the
   * account `perAccount` in flight. Returns the release, which counts on its first call only.
   */
  acquireTenant(keyId: string, accountId: string): () => void {
    const mine = this.#byKey.get(keyId) ?? 0;
    if (mine >= this.perKey) tooMany('key', this.perKey);
    const ours = this.#byAccount.get(accountId) ?? 0;
    if (ours >= this.perAccount) tooMany('account', this.perAccount);
    this.#byKey.set(keyId, mine + 1);
    this.#byAccount.set(accountId, ours + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      decrement(this.#byKey, keyId);
      decrement(this.#byAccount, accountId);
    };
  }

  /**
   * Takes a slot of the upstream pool, or throws 503 `overloaded` (`retry-after: 1`) when
   * `pool` requests already hold one. Returns the release (counts once).
   */
  acquirePool(): () => void {
    if (this.#inFlight >= this.pool) {
      throw gatewayError('overloaded', 'The gateway\'s upstream connections are all in use; retry shortly',
        { headers: { 'retry-after': '1' } });
    }
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
    };
  }

  /**
   * A pool slot for a request that already holds its tenant slot (`tenant`, its release):
   * returns one release for both; on a refusal (503) the tenant slot is given back, so nothing
   * stays taken.
   */
  withPool(tenant: () => void): () => void {
    try {
      const pool = this.acquirePool();
      return () => { pool(); tenant(); };
    } catch (err) {
      tenant();
      throw err;
    }
  }

  /** requests holding an upstream pool slot in this process */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** requests of `keyId` in flight in this process (uploads included) */
  inFlightOf(keyId: string): number {
    return this.#byKey.get(keyId) ?? 0;
  }

  /** requests of `accountId` in flight in this process, all its keys (uploads included) */
  inFlightOfAccount(accountId: string): number {
    return this.#byAccount.get(accountId) ?? 0;
  }
}

function decrement(counts: Map<string, number>, id: string): void {
  const left = (counts.get(id) ?? 1) - 1;
  if (left <= 0) counts.delete(id);
  else counts.set(id, left);
}

/**
 * One release shared by several holders: it runs once, when the last holder lets go. A
 * request's tenant slot has two: the response (until it has closed, finished or not) and the
 * route's upstream work (which goes on after a client leaves, to bill what the upstream bills).
 * Each `hold()` returns that holder's own idempotent release; after the last, later holds are
 * no-ops (nothing is taken again).
 */
export class SharedRelease {
  #holders = 0;
  #done = false;
  #release: () => void;

  constructor(release: () => void) {
    this.#release = release;
  }

  hold(): () => void {
    if (this.#done) return () => {};
    this.#holders++;
    let letGo = false;
    return () => {
      if (letGo) return;
      letGo = true;
      if (--this.#holders === 0 && !this.#done) {
        this.#done = true;
        this.#release();
      }
    };
  }
}

/**
 * The onRequest step after authentication, for requests with a body to upload (POST): takes the
 * tenant slot (throws 429, answered before the body is read, and the socket is then closed) and
 * holds it for the response until `response` closes. `gone()` says whether the response had
 * already closed before this ran (a client that left during authentication): then the slot is
 * freed at once.
 */
export function admitTenant(
  gates: ConcurrencyGates, keyId: string, accountId: string, response: { once(event: 'close', f: () => void): unknown }, gone: () => boolean,
): SharedRelease {
  const slot = new SharedRelease(gates.acquireTenant(keyId, accountId));
  const letGo = slot.hold();
  if (gone()) letGo();
  else response.once('close', letGo);
  return slot;
}

/**
 * The slots of a request that goes upstream: its tenant share (the one taken at authentication,
 * or a new one when there is none) and a pool slot. Throws as `ConcurrencyGates`; the returned
 * function releases both (idempotent).
 */
export function acquireSlot(deps: GatewayDeps, request: FastifyRequest): () => void {
  const gates = deps.concurrency;
  if (!gates) return () => {};
  const caller = request.caller!;
  return gates.withPool(request.slot ? request.slot.hold() : gates.acquireTenant(caller.key.id, caller.account.id));
}

/** The plan a request is limited by, and the limiter policy it becomes. */
export interface EffectivePlan {
  /** the plan's id; null when no plan applies (the operator-wide `RATE_LIMIT_*` policy, or none) */
  planId: string | null;
  /** where it came from: the key's `plan_id`, its account's, the `DEFAULT_PLAN` config, or none */
  source: 'key' | 'account' | 'default' | 'none';
  policy: LimitPolicy;
}

/**
 * The plan in force for a caller (issue 8): the key's `plan_id`, else its account's, else
 * `deps.defaultPlan` (`DEFAULT_PLAN`), each only when it names a plan that exists (stored and not
 * deleted, or a seed plan: `free`, `pro`, `max-5x`, `max-20x`) — a deleted plan falls through to
 * the next in line rather than leaving the key unlimited by accident. With none of them, the
 * operator-wide `RATE_LIMIT_*` policy (`deps.limits`; empty = unlimited). Plans are read through
 * the key directory (cached like keys: a change is in force everywhere within its TTL).
 */
export async function effectivePlan(deps: Pick<GatewayDeps, 'keys' | 'defaultPlan' | 'limits'>, caller: KeyEntry): Promise<EffectivePlan> {
  const candidates: Array<[EffectivePlan['source'], string | null | undefined]> = [
    ['key', caller.key.plan_id], ['account', caller.account.plan_id], ['default', deps.defaultPlan],
  ];
  for (const [source, id] of candidates) {
    if (!id) continue;
    const plan = await findPlan(id, (i) => deps.keys.plan(i));
    if (plan) return { planId: plan.id, source, policy: policyOfPlan(plan) };
  }
  return { planId: null, source: 'none', policy: deps.limits ?? {} };
}

export interface LimitTicket {
  /**
   * The `anthropic-ratelimit-*`, `x-ratelimit-*` and unified headers of this request's windows
   * (empty when its plan has none). Set them on the reply as soon as the ticket exists, so that
   * every later answer — 200, the 402 of the hold, a 5xx — carries them.
   */
  headers: Record<string, string>;
  /**
   * Ends the request for the limiter: frees its concurrency slots (in-process and, with a
   * limiter, cluster-wide) and, given the tokens it really used, corrects the token window.
   * Safe to call more than once; only the first counts.
   */
  done(usedTokens: number | null): Promise<void>;
  /**
   * Ends a request refused after admission, before anything was served (402 insufficient
   * credits, 429 spend limit, 503 hot state): frees its slots like `done`, and gives its plan
   * windows back the request and its estimated tokens, so a client retrying such a refusal
   * (Claude Code retries 429s) does not burn its 5 h and weekly quota. Resolves to the windows'
   * headers after the give-back (empty without a limiter), to replace those already on the reply.
   * Never throws; after it, `done` is a no-op.
   */
  refund(): Promise<Record<string, string>>;
}

/**
 * Limits before any credit is held, cheapest first: the in-process gates (429 per key or per
 * account, 503 when the upstream pool is full; `acquireSlot`), then the cluster-wide limiter when one is configured (refused →
 * 429 `rate_limit_exceeded` with retry-after and its `anthropic-ratelimit-*` headers).
 */
export async function acquireLimits(deps: GatewayDeps, request: FastifyRequest, estimatedTokens: number): Promise<LimitTicket> {
  const keyId = request.caller!.key.id;
  const releaseSlot = acquireSlot(deps, request);
  let policy: LimitPolicy;
  try {
    policy = (await guardState(() => effectivePlan(deps, request.caller!))).policy;
  } catch (err) {
    releaseSlot();
    throw err;
  }
  if (!deps.limiter || Object.keys(policy).length === 0) {
    return { headers: {}, done: async () => releaseSlot(), refund: async () => { releaseSlot(); return {}; } };
  }
  const limiter = deps.limiter;
  // A request estimated above a whole minute's token allowance could never pass; count it as
  // exactly the allowance so it waits its turn instead of failing forever.
  const estimate = policy.tokensPerMinute ? Math.min(estimatedTokens, policy.tokensPerMinute) : estimatedTokens;
  let decision;
  try {
    decision = await guardState(() => limiter.acquire(keyId, policy, estimate));
  } catch (err) {
    releaseSlot();
    throw err;
  }
  if (!decision.ok) {
    releaseSlot();
    deps.alerts?.planWindowExhausted({ accountId: request.caller!.account.id, keyId, limit: decision.limit, retryAfterMs: decision.retryAfterMs });
    const wait = decision.headers['retry-after'];
    throw gatewayError('rate_limit_exceeded',
      `Rate limit exceeded (${decision.limit}): this key's plan allows no more now; retry after ${wait} s`,
      { headers: decision.headers });
  }
  let done = false;
  return {
    headers: decision.headers,
    async done(usedTokens) {
      if (done) return;
      done = true;
      releaseSlot();
      await Promise.all([
        decision.release?.().catch(() => {}),
        usedTokens !== null && policy.tokensPerMinute
          ? limiter.correctTokens(keyId, policy, estimate, usedTokens).catch(() => {})
          : undefined,
      ]);
    },
    async refund() {
      if (done) return decision.headers;
      done = true;
      releaseSlot();
      return decision.refund().catch(() => decision.headers);
    },
  };
}

/** The limiter subject of a key's token-counting window, apart from its Messages windows (key ids are `key_…`: no overlap). */
export function countTokensSubject(keyId: string): string {
  return `count_tokens:${keyId}`;
}

/**
 * The plan's `requests_per_minute` applied to token counting (`POST /v1/messages/count_tokens`)
 * in a window of its own, as Anthropic limits token counting apart from Messages (its "Rate
 * limits" page: token counting has a requests-per-minute limit of its own). So counting never
 * takes a message's place in the plan's windows, and a customer cannot run through the
 * operator's token-counting quota upstream. Only that window: the 5 h and weekly windows and
 * `tokens_per_minute` count messages, and the in-process gates already bound concurrency.
 * Resolves to the window's headers (`anthropic-ratelimit-requests-*`, `x-ratelimit-*`; empty
 * without a limiter or a per-minute limit), `done`, to call once a request the upstream was
 * asked has ended, and `refund`, for one no upstream was asked: it gives the window its request
 * back and resolves to the headers after that (only a request the upstream was asked counts,
 * as for messages).
 * Throws 429 `rate_limit_exceeded` (with `retry-after` and those headers) when the window is
 * spent, and 503 `state_unavailable` when the plan cannot be read (hot state lost).
 */
export async function acquireCountTokensLimit(deps: GatewayDeps, request: FastifyRequest): Promise<CountTokensTicket> {
  const limiter = deps.limiter;
  if (!limiter) return NO_COUNT_TOKENS_LIMIT;
  const { policy } = await guardState(() => effectivePlan(deps, request.caller!));
  if (policy.requestsPerMinute === undefined) return NO_COUNT_TOKENS_LIMIT;
  const decision = await guardState(() => limiter.acquire(countTokensSubject(request.caller!.key.id), { requestsPerMinute: policy.requestsPerMinute }, 0));
  if (!decision.ok) {
    throw gatewayError('rate_limit_exceeded',
      `Rate limit exceeded (requests_per_minute, token counting): this key's plan allows no more token counts now; retry after ${decision.headers['retry-after']} s`,
      { headers: decision.headers });
  }
  return {
    headers: decision.headers,
    done: async () => { await decision.release().catch(() => {}); },
    refund: () => decision.refund().catch(() => decision.headers),
  };
}

/** A token count's place in its window (acquireCountTokensLimit); `done` or `refund`, once. */
export interface CountTokensTicket {
  headers: Record<string, string>;
  done(): Promise<void>;
  refund(): Promise<Record<string, string>>;
}

/** No window: no limiter, no per-minute limit, or a platform without token counting. */
export const NO_COUNT_TOKENS_LIMIT: CountTokensTicket = { headers: {}, done: async () => {}, refund: async () => ({}) };
