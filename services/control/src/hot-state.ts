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
 * With `lost` (the balance store's `stateLost`), every method first asks it (a "no" is reused
 * for LOST_CHECK_REUSE_MS) and rejects with `stateLost()` while the state waits for its
 * rebuild; every method is then asynchronous, as every method of the key directory and the
 * balance store the control routes call already is.
 */
export function guardHotState<T extends object>(store: T, lost?: () => Promise<boolean>): T {
  const wrap = (err: unknown): never => { throw isGatewayError(err) ? err : stateUnavailable(err); };
  let presentUntil = 0;
  const present = async (): Promise<void> => {
    if (!lost || performance.now() < presentUntil) return;
    if (await lost()) throw stateLost();
    presentUntil = performance.now() + LOST_CHECK_REUSE_MS;
  };
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const call = (args: unknown[]): unknown => {
        let out: unknown;
        try {
          out = (value as (...a: unknown[]) => unknown).apply(target, args);
        } catch (err) {
          wrap(err);
        }
        return out instanceof Promise ? out.catch(wrap) : out;
      };
      if (!lost) return (...args: unknown[]) => call(args);
      return (...args: unknown[]) => present().then(() => call(args), wrap);
    },
  });
}

/**
 * `store` with only the lost-state check of `guardHotState` (see there): every method first
 * asks `lost` (a "no" reused for LOST_CHECK_REUSE_MS) and rejects with `stateLost()` while the
 * hot state waits for its rebuild; its own errors pass as they are. For the stores of the
 * operator routes beside the key directory and balances (upstream pools, webhooks), which read
 * as empty then too. Every method becomes asynchronous.
 */
export function guardLostState<T extends object>(store: T, lost: () => Promise<boolean>): T {
  let presentUntil = 0;
  const present = async (): Promise<void> => {
    if (performance.now() < presentUntil) return;
    if (await lost()) throw stateLost();
    presentUntil = performance.now() + LOST_CHECK_REUSE_MS;
  };
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => present().then(() => (value as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
}
