// Hot state (Redis: key directory, balances) unreachable on an operator route: a clear 503
// `state_unavailable` with `retry-after`, the answer the gateway gives its customers, instead of
// a 500 `internal_error` that reads like a bug and tells the operator nothing about retrying.

import { gatewayError, isGatewayError } from '@tollgate/anthropic';

/** Seconds an operator (or script) should wait before retrying; the gateway uses the same. */
export const STATE_RETRY_AFTER_SECONDS = 2;

/**
 * 503 `state_unavailable` (api_error, retriable) with `retry-after: 2`, carrying `cause` for
 * the log. A retry converges: key/account/plan writes are whole-record puts and a credit grant
 * is idempotent by its reference.
 */
export function stateUnavailable(cause: unknown) {
  return gatewayError('state_unavailable', 'Hot state (Redis) is temporarily unreachable; retry shortly', {
    headers: { 'retry-after': String(STATE_RETRY_AFTER_SECONDS) }, cause,
  });
}

/**
 * 503 `state_unavailable` while the hot state waits for its rebuild (Redis lost its data): the
 * directory reads as empty then, and "account … does not exist" or an empty list would tell an
 * operator the accounts are gone.
 */
export function stateLost() {
  return gatewayError('state_unavailable', 'Hot state (Redis) is not ready (lost, or not built yet): the process that owns the warehouse rebuilds it; retry shortly', {
    headers: { 'retry-after': String(STATE_RETRY_AFTER_SECONDS) },
  });
}

/** ms a "not lost" answer of the `lost` check is reused: one read for the few store calls of one request. */
export const LOST_CHECK_REUSE_MS = 250;

/**
 * `store` with every method's failure (a thrown error or a rejected promise) turned into
 * `stateUnavailable`, except a `GatewayError`, which is already an answer. One wrapper at the
 * store boundary covers every control route and every future one: a failure anywhere else
 * (a bug) stays a 500. Methods are called on the store itself, so private fields keep working.
 * With `lost` (the balance store's `stateLost`), the store is first `guardLostState`'s: every
 * method rejects with `stateLost()` while the state waits for its rebuild, and a failing check
 * (Redis unreachable) is `stateUnavailable` like any other failure.
 */
export function guardHotState<T extends object>(store: T, lost?: () => Promise<boolean>): T {
  const wrap = (err: unknown): never => { throw isGatewayError(err) ? err : stateUnavailable(err); };
  const inner = lost ? guardLostState(store, lost) : store;
  return new Proxy(inner, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        let out: unknown;
        try {
          out = (value as (...a: unknown[]) => unknown).apply(target, args);
        } catch (err) {
          wrap(err);
        }
        return out instanceof Promise ? out.catch(wrap) : out;
      };
    },
  });
}

/**
 * `store` whose every method first asks `lost` (a "no" is reused for LOST_CHECK_REUSE_MS) and
 * rejects with `stateLost()` while the hot state waits for its rebuild; its own errors pass as
 * they are (`guardHotState` adds the conversion of failures). For the stores of the
 * operator routes beside the key directory and balances (upstream pools, webhooks), which read
 * as empty then too. Every method becomes asynchronous. Stores guarded with the same `lost`
 * function share one check.
 */
export function guardLostState<T extends object>(store: T, lost: () => Promise<boolean>): T {
  const present = presenceCheck(lost);
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => present().then(() => (value as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
}

/** One presence check per `lost` function: the stores guarded with the same one share its reuse window (one read per request, not one per store). */
const presenceChecks = new WeakMap<() => Promise<boolean>, () => Promise<void>>();

/** Resolves while the state is present (a "yes" reused for LOST_CHECK_REUSE_MS); rejects with `stateLost()` while `lost` says so. */
function presenceCheck(lost: () => Promise<boolean>): () => Promise<void> {
  let check = presenceChecks.get(lost);
  if (!check) {
    let presentUntil = 0;
    check = async () => {
      if (performance.now() < presentUntil) return;
      if (await lost()) throw stateLost();
      presentUntil = performance.now() + LOST_CHECK_REUSE_MS;
    };
    presenceChecks.set(lost, check);
  }
  return check;
}
