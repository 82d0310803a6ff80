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

/**
 * 503 `state_unavailable` (`retry-after: 2`) for a write whose event cannot be written ahead
 * (EventLog.writeAheadProblem: this process's DATA_DIR spool or journal is full or unwritable,
 * or was taken over), asked before anything is changed; or `cause`, a publish refused after the
 * directory write (NotPublishedError). A retry converges (versioned puts, grants by reference).
 */
export function eventsUnwritable(cause?: unknown) {
  return gatewayError('state_unavailable', 'This process cannot record the change now (its events cannot be written ahead to its DATA_DIR); retry shortly', {
    headers: { 'retry-after': String(STATE_RETRY_AFTER_SECONDS) }, ...(cause === undefined ? {} : { cause }),
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
 * method rejects with `stateLost()` while the state waits for its rebuild (and an absent answer
 * of one of `reads` is confirmed by a fresh check), and a failing check (Redis unreachable) is
 * `stateUnavailable` like any other failure.
 */
export function guardHotState<T extends object>(store: T, lost?: () => Promise<boolean>, reads?: ReadonlySet<string>): T {
  const wrap = (err: unknown): never => { throw isGatewayError(err) ? err : stateUnavailable(err); };
  const inner = lost ? guardLostState(store, lost, reads) : store;
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
 * as empty then too. A method named in `reads` whose answer is absent (undefined, null, an empty
 * list) asks `lost` again, fresh, before it is believed: the reused "no" may predate a loss.
 * Every method becomes asynchronous. Stores guarded with the same `lost` function share one check.
 */
export function guardLostState<T extends object>(store: T, lost: () => Promise<boolean>, reads: ReadonlySet<string> = NO_READS): T {
  const present = presenceCheck(lost);
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => present().then(async () => {
        const out = await (value as (...a: unknown[]) => unknown).apply(target, args);
        // "Present" may be LOST_CHECK_REUSE_MS old: an absent answer of a read (no such record,
        // an empty list) after a loss within it would be a 404 or an empty list for what exists
        // (a breaker's MEDIUM, every time a check came just before the loss). Absence is rare,
        // so it is confirmed by a fresh check begun after the read.
        if (typeof prop === 'string' && reads.has(prop) && absent(out) && await lost()) throw stateLost();
        return out;
      });
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

/** An answer that says "nothing there": undefined, null or an empty list. */
function absent(out: unknown): boolean {
  return out === undefined || out === null || (Array.isArray(out) && out.length === 0);
}

const NO_READS: ReadonlySet<string> = new Set();
/** The key directory's reads (KeyDirectory of @tollgate/keys) whose absent answer guardLostState confirms. */
export const KEY_DIRECTORY_READS: ReadonlySet<string> = new Set(['byHash', 'account', 'key', 'keysOf', 'accounts', 'plan', 'plans']);
/** The upstream pool store's reads (PoolStore of @tollgate/pool), likewise. */
export const POOL_READS: ReadonlySet<string> = new Set(['upstream', 'upstreams', 'group', 'groups']);
/** The webhook store's reads (WebhookStore of @tollgate/webhooks), likewise. */
export const WEBHOOK_READS: ReadonlySet<string> = new Set(['get', 'list', 'deliveries']);
