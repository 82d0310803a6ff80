// The EventLog contract: every adapter (memory, Kafka) runs this same suite. It checks what
// consumers rely on: every event at least once, per-key order, independent groups,
// redelivery after a failed handler, resumption from the committed position, headers.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import type {
  AnyEvent, ConsumedEvent, EventHeaders, EventLog, PublishedEvent, Subscription, Topic,
} from '@tollgate/events';
import { NotPublishedError, partitionKey } from '@tollgate/events';

export interface EventLogFixture {
  log: EventLog;
  cleanup(): Promise<void>;
}

const N = 500;
const ACCOUNTS = 16;
/** Upper bound on waiting for deliveries; a guard against hanging, not a timing assertion. */
const DELIVERY_DEADLINE_MS = 30_000;

interface Sample {
  topic: Topic;
  event: AnyEvent;
  headers: EventHeaders;
}

/** N events over three topics and ACCOUNTS keys; `ts` is the publish sequence number. */
export function sampleEvents(run: string, n = N): Sample[] {
  const out: Sample[] = [];
  for (let i = 0; i < n; i++) {
    const account = `acct-${run}-${i % ACCOUNTS}`;
    const event_id = `${run}-${i}`;
    const headers = {
      traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
      'x-seq': String(i),
    };
    switch (i % 3) {
      case 0:
        out.push({
          topic: 'usage', headers, event: {
            type: 'usage', event_id, ts: i, account_id: account, key_id: 'key-1', model: 'claude-test',
            catalog_model: 'claude-test', upstream_model: 'claude-test', input_tokens: 10, output_tokens: i,
            cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cost_micros: String(i * 7),
            status: 'ok', http_status: 200, latency_ms: 5, ttft_ms: null, stream: false,
            upstream_request_id: null, gateway_id: 'gw-test',
          },
        });
        break;
      case 1:
        out.push({
          topic: 'ledger', headers, event: {
            type: 'ledger', event_id, ts: i, account_id: account, kind: 'grant',
            amount_micros: '9007199254740993', reference: event_id,
          },
        });
        break;
      default:
        out.push({
          topic: 'control', headers, event: {
            type: 'account', event_id, ts: i,
            account: { id: account, name: `Account ${i}`, status: 'active', created_at: 0, version: i },
          },
        });
    }
  }
  return out;
}

/** Publishes in small calls, all issued at once: call order must be kept per key. */
export async function publishAll(log: EventLog, samples: Sample[], callSize = 25): Promise<void> {
  const byTopic = new Map<Topic, PublishedEvent[]>();
  for (const s of samples) {
    let list = byTopic.get(s.topic);
    if (!list) byTopic.set(s.topic, (list = []));
    list.push({ event: s.event, headers: s.headers });
  }
  const calls: Promise<void>[] = [];
  for (let from = 0; from < samples.length; from += callSize) {
    for (const [topic, list] of byTopic) {
      const slice = list.slice(from, from + callSize);
      if (slice.length > 0) calls.push(log.publish(topic, slice));
    }
  }
  await Promise.all(calls);
}

/**
 * Records what a group sees and checks order as it goes: within every batch and across first
 * deliveries, offsets rise strictly per partition, and publish order holds per key.
 */
export class Collector {
  readonly seen = new Map<string, ConsumedEvent>();
  readonly deliveries = new Map<string, number>();
  readonly violations: string[] = [];
  calls = 0;
  #maxOffset = new Map<string, bigint>();
  #lastSeq = new Map<string, number>();
  #keyPartition = new Map<string, number>();

  /** Wraps a handler; `before` may throw to fail the batch before anything is recorded. */
  handler(before?: (batch: ConsumedEvent[], call: number) => void): (batch: ConsumedEvent[]) => Promise<void> {
    return async (batch) => {
      const call = ++this.calls;
      before?.(batch, call);
      const inBatch = new Map<string, bigint>();
      for (const e of batch) {
        const where = `${e.topic}/${e.partition}`;
        const prev = inBatch.get(where);
        if (prev !== undefined && e.offset <= prev) this.violations.push(`batch offsets not rising on ${where}: ${prev} then ${e.offset}`);
        inBatch.set(where, e.offset);
        this.deliveries.set(e.event.event_id, (this.deliveries.get(e.event.event_id) ?? 0) + 1);
        if (this.seen.has(e.event.event_id)) continue; // a redelivery
        this.seen.set(e.event.event_id, e);
        const max = this.#maxOffset.get(where);
        if (max !== undefined && e.offset <= max) this.violations.push(`new event at offset ${e.offset} after ${max} on ${where}`);
        this.#maxOffset.set(where, e.offset);
        const key = `${e.topic}|${partitionKey(e.event)}`;
        const partition = this.#keyPartition.get(key);
        if (partition !== undefined && partition !== e.partition) this.violations.push(`key ${key} in partitions ${partition} and ${e.partition}`);
        this.#keyPartition.set(key, e.partition);
        const last = this.#lastSeq.get(key);
        if (last !== undefined && e.event.ts <= last) this.violations.push(`key ${key}: event ${e.event.ts} after ${last}`);
        this.#lastSeq.set(key, e.event.ts);
      }
    };
  }

  missing(samples: Sample[]): string[] {
    return samples.map((s) => s.event.event_id).filter((id) => !this.seen.has(id));
  }

  async waitForAll(samples: Sample[], what: string): Promise<void> {
    const deadline = Date.now() + DELIVERY_DEADLINE_MS;
    while (this.missing(samples).length > 0) {
      if (Date.now() > deadline) {
        const missing = this.missing(samples);
        assert.fail(`${what}: ${missing.length} of ${samples.length} events never delivered (e.g. ${missing.slice(0, 5).join(', ')})`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

export function eventLogContract(name: string, make: () => Promise<EventLogFixture>): void {
  const it = (title: string, body: (log: EventLog, run: string) => Promise<void>) =>
    test(title, async () => {
      const { log, cleanup } = await make();
      try {
        await body(log, randomUUID().slice(0, 8));
      } finally {
        await log.close();
        await cleanup();
      }
    });

  const stopAll = (subs: Subscription[]) => Promise.all(subs.map((s) => s.stop()));

  describe(`EventLog contract: ${name}`, () => {
    it('delivers every event at least once, in order per key, from the beginning', async (log, run) => {
      const samples = sampleEvents(run);
      await publishAll(log, samples);
      await log.flush();
      const seen = new Collector();
      const sub = await log.subscribe({ group: `g-${run}`, topics: ['usage', 'ledger', 'control'], handler: seen.handler(), fromBeginning: true });
      try {
        await seen.waitForAll(samples, 'one group');
      } finally {
        await sub.stop();
      }
      assert.deepEqual(seen.violations, []);
      for (const s of samples) {
        const got = seen.seen.get(s.event.event_id)!;
        assert.equal(got.topic, s.topic);
        assert.deepEqual(got.event, s.event);
      }
      assert.equal(seen.seen.size, N);
    });

    it('two groups each receive everything, including events published after they joined', async (log, run) => {
      const samples = sampleEvents(run);
      const a = new Collector();
      const b = new Collector();
      const subs = [
        await log.subscribe({ group: `a-${run}`, topics: ['usage', 'ledger', 'control'], handler: a.handler(), fromBeginning: true }),
        await log.subscribe({ group: `b-${run}`, topics: ['usage', 'ledger', 'control'], handler: b.handler(), fromBeginning: true }),
      ];
      try {
        await publishAll(log, samples.slice(0, N / 2));
        await publishAll(log, samples.slice(N / 2));
        await log.flush();
        await a.waitForAll(samples, 'group a');
        await b.waitForAll(samples, 'group b');
      } finally {
        await stopAll(subs);
      }
      assert.deepEqual(a.violations, []);
      assert.deepEqual(b.violations, []);
    });

    it('a group only sees the topics it subscribed to', async (log, run) => {
      const samples = sampleEvents(run, 60);
      await publishAll(log, samples);
      const usage = samples.filter((s) => s.topic === 'usage');
      const seen = new Collector();
      const sub = await log.subscribe({ group: `u-${run}`, topics: ['usage'], handler: seen.handler(), fromBeginning: true });
      try {
        await seen.waitForAll(usage, 'usage group');
      } finally {
        await sub.stop();
      }
      assert.deepEqual([...seen.seen.values()].filter((e) => e.topic !== 'usage'), []);
      assert.equal(seen.seen.size, usage.length);
    });

    it('a handler that throws gets the same events again, and nothing is lost', async (log, run) => {
      const samples = sampleEvents(run);
      await publishAll(log, samples);
      const failed: string[] = [];
      const seen = new Collector();
      const handler = seen.handler((batch, call) => {
        if (call === 1) {
          failed.push(...batch.map((e) => e.event.event_id));
          throw new Error('sink unavailable (test)');
        }
      });
      const sub = await log.subscribe({ group: `r-${run}`, topics: ['usage', 'ledger', 'control'], handler, fromBeginning: true });
      try {
        await seen.waitForAll(samples, 'after a failed batch');
      } finally {
        await sub.stop();
      }
      assert.ok(failed.length > 0, 'the first batch failed');
      for (const id of failed) assert.ok(seen.seen.has(id), `failed event ${id} redelivered`);
      assert.deepEqual(seen.violations, []);
    });

    it('a group that stops and subscribes again resumes where it committed', async (log, run) => {
      const first = sampleEvents(`${run}a`, 120);
      const second = sampleEvents(`${run}b`, 120);
      const group = `s-${run}`;
      const topics: Topic[] = ['usage', 'ledger', 'control'];
      await publishAll(log, first);
      const before = new Collector();
      const sub1 = await log.subscribe({ group, topics, handler: before.handler(), fromBeginning: true });
      try {
        await before.waitForAll(first, 'first subscription');
      } finally {
        await sub1.stop();
      }
      await publishAll(log, second);
      const after = new Collector();
      const sub2 = await log.subscribe({ group, topics, handler: after.handler(), fromBeginning: true });
      try {
        await after.waitForAll(second, 'second subscription');
      } finally {
        await sub2.stop();
      }
      // A clean stop commits what was handled: nothing of the first wave comes back.
      assert.deepEqual(first.filter((s) => after.seen.has(s.event.event_id)).map((s) => s.event.event_id), []);
      assert.deepEqual(after.violations, []);
    });

    it('headers round-trip beside the event', async (log, run) => {
      const samples = sampleEvents(run, 30);
      await publishAll(log, samples, 5);
      const seen = new Collector();
      const sub = await log.subscribe({ group: `h-${run}`, topics: ['usage', 'ledger', 'control'], handler: seen.handler(), fromBeginning: true });
      try {
        await seen.waitForAll(samples, 'headers');
      } finally {
        await sub.stop();
      }
      for (const s of samples) {
        const got = seen.seen.get(s.event.event_id)!.headers;
        // Exactly the caller's, nothing added (the event holds its id).
        assert.deepEqual({ ...got }, s.headers, `headers of ${s.event.event_id}`);
        assert.equal('traceparent' in s.event, false, 'headers never leak into the event');
      }
    });

    it('a header no log can carry (a value that is not a string, or the reserved event_id) is refused at publish, nothing of the publish written, on every log', async (log, run) => {
      const [good, bad] = sampleEvents(run, 2);
      for (const [headers, problem] of [
        [{ event_id: 'mine' }, `event ${bad!.event.event_id} has header "event_id", which the log reserves (records of earlier versions carry the event's id under it); leave it out (nothing of this publish was written)`],
        [{ 'x-n': 5 }, `event ${bad!.event.event_id} has header "x-n" of type number; header values are strings (nothing of this publish was written)`],
      ] as const) {
        const err = await log.publish(bad!.topic, [{ event: good!.event, headers: good!.headers }, { event: bad!.event, headers: headers as unknown as Record<string, string> }])
          .then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof NotPublishedError, String(err));
        assert.equal(err.message, problem);
      }
      // nothing of either publish arrived: the good event of the same call neither
      const seen = new Collector();
      await log.publish(good!.topic, [{ event: good!.event, headers: good!.headers }]);
      const sub = await log.subscribe({ group: `r-${run}`, topics: ['usage', 'ledger', 'control'], handler: seen.handler(), fromBeginning: true });
      try {
        await seen.waitForAll([good!], 'the later publish');
        await new Promise((r) => setTimeout(r, 300));
      } finally {
        await sub.stop();
      }
      assert.deepEqual([...seen.seen.keys()], [good!.event.event_id]);
      assert.equal(seen.deliveries.get(good!.event.event_id), 1);
    });

    it('flush resolves only after every earlier publish has resolved', async (log, run) => {
      const samples = sampleEvents(run, 50);
      let resolved = 0;
      const calls = samples.map((s) => log.publish(s.topic, [{ event: s.event, headers: s.headers }]).then(() => { resolved++; }));
      await log.flush();
      assert.equal(resolved, samples.length);
      await Promise.all(calls);
      await log.flush(); // and immediately when there is nothing left to send
    });
  });
}
