/**
 * kafkajs 2.2.4's request queue polls every millisecond, forever, on every broker connection.
 *
 * After each response (`fulfillRequest`) the queue runs `checkPendingRequests`, which ends by
 * arming a timer (`scheduleCheckPendingRequests`) to look at the queue again. With nothing
 * pending that timer's delay is `throttledUntil - Date.now()`, and `throttledUntil` is -1 until
 * a broker throttles the client: a delay of about minus the epoch, which Node runs after 1 ms
 * (and, from Node 24, warns of once per process: `TimeoutNegativeWarning`). The timer's callback
 * is `checkPendingRequests` again, so from the first response on each connection wakes the
 * process about a thousand times a second for nothing (kafkajs issues #1556, #1604, #1704 and
 * #1751; the fixes proposed, e.g. pull request #1768, are in no release, and kafkajs has had
 * none since 2.2.4).
 *
 * Measured here (2-core VM, 10 s idle): a process with one kafkajs producer and one consumer
 * connected, 351–372 ms of CPU and 18,114–24,391 checks with kafkajs as it is, 40–46 ms and 4
 * checks with this fix; an idle distributed aggregator 37–39 → 14 ms of CPU per second, an idle
 * gateway 27–34 → 8–9. docs/decisions.md, "kafkajs' request queue no longer polls".
 */
import { createRequire } from 'node:module';

/**
 * How long a queue with requests pending but not throttled waits before it looks again (ms):
 * kafkajs' own CHECK_PENDING_REQUESTS_INTERVAL. Requests wait there only for a free in-flight
 * slot, and a response frees one and looks at once; the timer is a fallback.
 */
const CHECK_PENDING_REQUESTS_INTERVAL_MS = 10;

/** When the check this fix armed on a queue is due (Date.now() ms): kept on the queue under this key. */
const CHECK_DUE = Symbol('tollgate.kafkajsCheckDue');

/** The fields of kafkajs' RequestQueue that its pending-request timer reads and writes. */
interface RequestQueueState {
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  pending: unknown[];
  checkPendingRequests(): void;
  [CHECK_DUE]?: number;
}

type RequestQueueClass = {
  new (options: Record<string, unknown>): RequestQueueState;
  prototype: RequestQueueState & { scheduleCheckPendingRequests: (this: RequestQueueState) => void };
};

/**
 * kafkajs' `scheduleCheckPendingRequests`, fixed: arms the queue's check only when there is
 * something to look at, requests pending (at the end of the broker's throttle, or after
 * CHECK_PENDING_REQUESTS_INTERVAL_MS when not throttled, as kafkajs does) or a throttle still
 * running; with neither it arms nothing. A check already armed stays unless this one is due
 * sooner, which replaces it: a throttle shorter than the 10 ms fallback armed for requests held
 * by the in-flight limit releases them at its end, as kafkajs' 1 ms poll happened to (else a
 * request pushed after the throttle could be sent before them; found by a breaker).
 */
function scheduleCheckPendingRequests(this: RequestQueueState): void {
  const now = Date.now();
  const throttleLeft = this.throttledUntil - now;
  let delay: number;
  if (this.pending.length > 0) delay = throttleLeft > 0 ? throttleLeft : CHECK_PENDING_REQUESTS_INTERVAL_MS;
  else if (throttleLeft > 0) delay = throttleLeft;
  else return;
  const due = now + delay;
  if (this.throttleCheckTimeoutId) {
    // armed by kafkajs itself (before the fix was installed): it runs within a millisecond
    if (this[CHECK_DUE] === undefined || this[CHECK_DUE] <= due) return;
    clearTimeout(this.throttleCheckTimeoutId);
  }
  this[CHECK_DUE] = due;
  this.throttleCheckTimeoutId = setTimeout(() => {
    this.throttleCheckTimeoutId = null;
    this.checkPendingRequests();
  }, delay);
}

/**
 * Replaces `scheduleCheckPendingRequests` of kafkajs' RequestQueue (process-wide, every kafkajs
 * client, present and future) with the fixed one above. With nothing pending and no throttle no
 * timer is armed: a request pushed later is sent at once or pends and arms the timer itself,
 * and a response looks at the queue by itself. Every timer armed there has a positive delay, so
 * Node's negative-timer warning no longer comes from it.
 *
 * Idempotent (a no-op while the fixed method is in place); `KafkaLog`'s constructor calls it,
 * and so do bench/run.ts and every bench command's `runMain` (bench/cli.ts) for their own
 * kafkajs clients. Throws an Error when the installed kafkajs' queue is not of the shape this
 * fix was written for (kafkajs 2.2.4: the method, and `throttledUntil` -1, `pending` [] and
 * `throttleCheckTimeoutId` null on a new queue): another kafkajs must be looked at again.
 */
export function fixKafkajsRequestQueue(): void {
  const require = createRequire(import.meta.url);
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as RequestQueueClass;
  if (RequestQueue.prototype.scheduleCheckPendingRequests === scheduleCheckPendingRequests) return;
  const probe = typeof RequestQueue.prototype.scheduleCheckPendingRequests === 'function'
    ? new RequestQueue({ maxInFlightRequests: null, requestTimeout: 1000, enforceRequestTimeout: false, clientId: 'probe', broker: 'probe', logger: null })
    : undefined;
  if (!probe || probe.throttledUntil !== -1 || !Array.isArray(probe.pending) || probe.throttleCheckTimeoutId !== null) {
    throw new Error('kafkajs RequestQueue is not of the shape libs/events/src/kafkajs-request-queue.ts fixes (kafkajs 2.2.4): look at the fix again for this kafkajs version');
  }
  RequestQueue.prototype.scheduleCheckPendingRequests = scheduleCheckPendingRequests;
}
