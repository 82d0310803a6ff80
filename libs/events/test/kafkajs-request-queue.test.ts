// kafkajs' request queue without its 1 ms poll (src/kafkajs-request-queue.ts). kafkajs 2.2.4
// re-arms the queue's check timer after every check, with nothing pending, at a negative delay
// (1 ms): each broker connection woke the process ~1,000 times a second for nothing. The cases
// run kafkajs' own RequestQueue class with the fix in place and hold it to kafkajs' behaviour
// for requests that pend (an in-flight limit, a broker's throttle); one runs kafkajs' original
// method on the same class to show the poll is real; one counts the checks of a real
// connection; two child processes show the Node 24 warning the poll caused is gone with it.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { fixKafkajsRequestQueue } from '@tollgate/events';
import { requireKafka } from '../../../test/support/services.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const require = createRequire(import.meta.url);

/** kafkajs' RequestQueue as far as these cases use it. */
interface Queue {
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  pending: unknown[];
  inflight: Map<number, unknown>;
  push(request: { entry: Entry; expectResponse: boolean; sendRequest: () => void }): void;
  fulfillRequest(response: { correlationId: number; payload: Buffer; size: number }): void;
  maybeThrottle(ms: number): void;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
  destroy(): void;
}
interface Entry { correlationId: number; apiKey: number; apiName: string; apiVersion: number; resolve(v: unknown): void; reject(e: unknown): void }
const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as {
  new (options: Record<string, unknown>): Queue;
  prototype: Queue;
};
// kafkajs' own method, kept before the fix replaces it on the class
const shipped = RequestQueue.prototype.scheduleCheckPendingRequests;
fixKafkajsRequestQueue();

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** Every queue the cases made: destroyed after each (a queue still polling would keep the test process alive). */
const made: Queue[] = [];
afterEach(() => { for (const q of made.splice(0)) q.destroy(); });

/** A queue of kafkajs' class; `sent` lists the correlation ids in the order it sent them, `checks` counts its pending-request checks. */
function queue(maxInFlightRequests: number | null = null): { q: Queue; sent: number[]; checks: () => number; request(id: number): void } {
  const q = new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 'test', broker: 'b:1', logger: silent });
  made.push(q);
  const sent: number[] = [];
  let checks = 0;
  const check = q.checkPendingRequests;
  q.checkPendingRequests = function () { checks++; check.call(this); };
  return {
    q, sent, checks: () => checks,
    request(id) {
      q.push({
        entry: { correlationId: id, apiKey: 1, apiName: 'Fetch', apiVersion: 11, resolve() {}, reject() {} },
        expectResponse: true, sendRequest: () => sent.push(id),
      });
    },
  };
}

const respond = (q: Queue, id: number): void => q.fulfillRequest({ correlationId: id, payload: Buffer.alloc(0), size: 0 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (up to 2 s) until `done`; true if it came. For timers of 10–50 ms: arrival is asserted, never how long it took. */
async function until(done: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !done(); i++) await sleep(10);
  return done();
}

test('kafkajs request queue poll: after a response with nothing pending no timer is armed and nothing checks again; kafkajs as shipped re-arms every check', async () => {
  const { q, sent, checks, request } = queue();
  request(1);
  assert.deepEqual(sent, [1]);
  respond(q, 1);
  assert.equal(q.throttleCheckTimeoutId, null);
  const after = checks();
  await sleep(50);
  assert.equal(checks(), after, 'an idle queue checked again');

  // The same class with kafkajs' own method: the poll this fix removes. Node 24's warning of
  // its negative delay is kept off this process's stderr (the child cases below show it).
  const real = queue();
  real.q.scheduleCheckPendingRequests = shipped;
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, type?: unknown, ...rest: unknown[]) => {
    if (type !== 'TimeoutNegativeWarning') (emitWarning as (...a: unknown[]) => void).call(process, warning, type, ...rest);
  }) as typeof process.emitWarning;
  try {
    real.request(1);
    respond(real.q, 1);
  } finally {
    process.emitWarning = emitWarning;
  }
  assert.notEqual(real.q.throttleCheckTimeoutId, null, 'kafkajs as shipped arms a timer with nothing pending');
  const first = real.checks();
  assert.ok(await until(() => real.checks() >= first + 3), 'kafkajs as shipped checks again and again');
});

test('kafkajs request queue poll: a request held by the in-flight limit is sent when a response frees the slot, and afterwards nothing is armed', async () => {
  const { q, sent, request } = queue(1);
  request(1);
  request(2);
  assert.deepEqual(sent, [1]);
  assert.equal(q.pending.length, 1);
  assert.notEqual(q.throttleCheckTimeoutId, null, 'a pending request arms the fallback check');
  respond(q, 1);
  assert.deepEqual(sent, [1, 2]);
  respond(q, 2);
  assert.ok(await until(() => q.throttleCheckTimeoutId === null), 'the fallback check, once run with nothing pending, re-armed itself');
  assert.deepEqual([q.pending.length, q.inflight.size], [0, 0]);
});

test('kafkajs request queue poll: a throttled queue sends its pending request once the throttle ends, then arms nothing', async () => {
  const { q, sent, request } = queue();
  q.maybeThrottle(40);
  request(7);
  assert.deepEqual(sent, [], 'sent while throttled');
  assert.notEqual(q.throttleCheckTimeoutId, null);
  assert.ok(await until(() => sent.length === 1), 'the pending request was never sent after the throttle');
  assert.deepEqual(sent, [7]);
  respond(q, 7);
  assert.ok(await until(() => q.throttleCheckTimeoutId === null));
});

test('kafkajs request queue poll: a throttle with nothing pending arms one check at its end, which arms nothing more', async () => {
  const { q, checks } = queue();
  q.maybeThrottle(30);
  q.scheduleCheckPendingRequests();
  assert.notEqual(q.throttleCheckTimeoutId, null);
  assert.ok(await until(() => q.throttleCheckTimeoutId === null && checks() >= 1));
  // one check at the throttle's end; a second where the timer fired a moment before the throttle's
  // end by Date.now() (a timer may, on a loaded machine: CI saw it), which then re-arms once
  const after = checks();
  assert.ok(after <= 2, `${after} checks for one throttle`);
  await sleep(50);
  assert.equal(checks(), after, 'checked again after the throttle ended');
});

test('kafkajs request queue poll: a throttle shorter than the 10 ms fallback releases requests held by the in-flight limit at its end, before a request pushed after it', async () => {
  const { q, sent, request } = queue(1);
  request(1);
  request(2);
  request(3); // 2 and 3 pend behind 1: the 10 ms fallback is armed
  respond(q, 1); // sends 2
  q.maybeThrottle(4); // kafkajs' order: the response, then its throttle time
  respond(q, 2); // the slot is free but the queue is throttled: 3 waits for the throttle's end
  assert.deepEqual(sent, [1, 2]);
  await sleep(7); // past the throttle, before the fallback
  request(4);
  assert.deepEqual(sent, [1, 2, 3], 'request 3 waited for the 10 ms fallback and request 4 could overtake it');
  respond(q, 3);
  assert.deepEqual(sent, [1, 2, 3, 4]);
  respond(q, 4);
  assert.ok(await until(() => q.throttleCheckTimeoutId === null));
});

test('kafkajs request queue poll: the fix is in place after every call, also when kafkajs\' method was put back in between', () => {
  const proto = RequestQueue.prototype;
  const fixed = proto.scheduleCheckPendingRequests;
  assert.notEqual(fixed, shipped);
  fixKafkajsRequestQueue();
  assert.equal(proto.scheduleCheckPendingRequests, fixed, 'a second call replaced the fixed method');
  proto.scheduleCheckPendingRequests = shipped;
  try {
    fixKafkajsRequestQueue();
    assert.equal(proto.scheduleCheckPendingRequests, fixed);
  } finally {
    proto.scheduleCheckPendingRequests = fixed;
  }
});

test('kafkajs request queue poll: a producer and an admin client connected to a real broker check their queues a few times a second, not a thousand', async (t) => {
  const url = await requireKafka(t);
  if (!url) return;
  let checks = 0;
  const check = RequestQueue.prototype.checkPendingRequests;
  RequestQueue.prototype.checkPendingRequests = function (this: Queue) { checks++; check.call(this); };
  const kafka = new Kafka({ clientId: 'tollgate-queue-test', brokers: url.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer();
  const admin = kafka.admin();
  try {
    await producer.connect();
    await admin.connect();
    await admin.listTopics();
    checks = 0;
    await sleep(1000);
    // kafkajs as shipped: ~1,000 a second per connection (18,114–24,391 in 10 s here)
    assert.ok(checks < 50, `${checks} checks in a second of idle connections`);
  } finally {
    RequestQueue.prototype.checkPendingRequests = check;
    await Promise.allSettled([producer.disconnect(), admin.disconnect()]);
  }
});

/**
 * stderr of a child that (optionally) opens a KafkaLog, then makes a queue of kafkajs' class arm
 * its check the way a broker's first response does, and emits one warning of its own; the
 * child's pid in it reads `PID`.
 */
function childStderr(openKafkaLog: boolean): string {
  const script = `
    import { createRequire } from 'node:module';
    import { Kafka, logLevel } from 'kafkajs';
    import { KafkaLog } from '@tollgate/events';
    const require = createRequire(import.meta.url);
    if (${openKafkaLog}) {
      new KafkaLog({ kafka: new Kafka({ brokers: ['127.0.0.1:1'], logLevel: logLevel.NOTHING }), spoolDir: ${JSON.stringify(mkdtempSync(join(tmpdir(), 'tollgate-queue-')))} });
    }
    const RequestQueue = require('kafkajs/src/network/requestQueue/index.js');
    const queue = new RequestQueue({ maxInFlightRequests: null, requestTimeout: 1000, enforceRequestTimeout: false, clientId: 't', broker: 'b', logger: null });
    queue.checkPendingRequests();
    process.emitWarning('another');
    setTimeout(() => process.exit(0), 20);
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000 });
  assert.equal(child.status, 0, child.stderr);
  return child.stderr.replaceAll(`(node:${child.pid})`, '(node:PID)');
}

test('kafkajs request queue poll: a process without the fix prints Node 24\'s negative-timer warning for it (the case is real)', () => {
  assert.match(childStderr(false), /^\(node:PID\) TimeoutNegativeWarning: -\d{13} is a negative number\.\nTimeout duration was set to 1\./);
});

test('kafkajs request queue poll: a process with a KafkaLog prints no negative-timer warning, and other warnings as Node does', () => {
  assert.equal(childStderr(true), [
    '(node:PID) Warning: another',
    '(Use `node --trace-warnings ...` to show where the warning was created)',
    '',
  ].join('\n'));
});
