// Faults queued on one simulator instance (`POST /_sim/faults`): what its next N model calls
// answer, whatever the requests say. Per-request directives (`[[sim …]]`, `x-sim-*`) reach every
// upstream a gateway tries alike; a queued fault makes one upstream of a pool fail while the
// others serve, which is what failover and circuit-breaker tests need.

import { invalidRequest } from './errors.ts';

/** One queued fault, applied before any response header. */
export interface QueuedFault {
  /** wait this long (ms) before answering (a timeout to headers) */
  readonly delay_ms?: number;
  /** cut the connection instead of answering (a connection reset before headers) */
  readonly reset?: boolean;
  /** answer this error status (400–599) in Anthropic's error shape */
  readonly status?: number;
  /** `retry-after` seconds on the error */
  readonly retry_after?: number;
  /** `anthropic-ratelimit-unified-status: rejected` with `anthropic-ratelimit-unified-reset` at this epoch second */
  readonly unified_reset?: number;
}

const KEYS = ['count', 'delay_ms', 'reset', 'status', 'retry_after', 'unified_reset'];

function whole(body: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalidRequest(`${key}: expected an integer from ${min} to ${max}`);
  return v;
}

/**
 * Parses `POST /_sim/faults` `{count?, delay_ms?, reset?, status?, retry_after?, unified_reset?}`
 * (count default 1: how many of the next model calls get it). Throws 400 naming a bad field.
 */
export function parseFault(body: unknown): { count: number; fault: QueuedFault } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidRequest('body: expected a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!KEYS.includes(k)) throw invalidRequest(`${k}: unknown fault field (expected ${KEYS.join(', ')})`);
  if (b.reset !== undefined && typeof b.reset !== 'boolean') throw invalidRequest('reset: expected true or false');
  const fault: QueuedFault = {
    ...(whole(b, 'delay_ms', 0, 600_000) === undefined ? {} : { delay_ms: b.delay_ms as number }),
    ...(b.reset === true ? { reset: true } : {}),
    ...(whole(b, 'status', 400, 599) === undefined ? {} : { status: b.status as number }),
    ...(whole(b, 'retry_after', 0, 1_000_000) === undefined ? {} : { retry_after: b.retry_after as number }),
    ...(whole(b, 'unified_reset', 0, 10_000_000_000) === undefined ? {} : { unified_reset: b.unified_reset as number }),
  };
  if ((fault.retry_after !== undefined || fault.unified_reset !== undefined) && fault.status === undefined) {
    throw invalidRequest('status: required with retry_after or unified_reset');
  }
  return { count: whole(b, 'count', 1, 100_000) ?? 1, fault };
}

/** The queue of one simulator: each model call takes the oldest fault, if any. */
export class FaultQueue {
  #queue: QueuedFault[] = [];

  add(count: number, fault: QueuedFault): void {
    for (let i = 0; i < count; i++) this.#queue.push(fault);
  }

  take(): QueuedFault | undefined {
    return this.#queue.shift();
  }

  get pending(): number {
    return this.#queue.length;
  }

  clear(): void {
    this.#queue = [];
  }
}

/** The error headers of a queued fault. */
export function faultHeaders(f: QueuedFault): Record<string, string> {
  const out: Record<string, string> = {};
  if (f.retry_after !== undefined) out['retry-after'] = String(f.retry_after);
  if (f.unified_reset !== undefined) {
    out['anthropic-ratelimit-unified-status'] = 'rejected';
    out['anthropic-ratelimit-unified-reset'] = String(f.unified_reset);
  }
  return out;
}
