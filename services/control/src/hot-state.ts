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
 * `store` with every method's failure (a thrown error or a rejected promise) turned into
 * `stateUnavailable`, except a `GatewayError`, which is already an answer. One wrapper at the
 * store boundary covers every control route and every future one: a failure anywhere else
 * (a bug) stays a 500. Methods are called on the store itself, so private fields keep working.
 */
export function guardHotState<T extends object>(store: T): T {
  const wrap = (err: unknown): never => { throw isGatewayError(err) ? err : stateUnavailable(err); };
  return new Proxy(store, {
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
