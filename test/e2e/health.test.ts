// Liveness (GET /health) and readiness (GET /ready), and the consumer-lag gauge, as an
// orchestrator and a dashboard see them: the embedded process; a distributed process (all roles,
// on the local Kafka and Redis, under prefixes of its own) whose hot state is lost and rebuilt;
// and a Kafka consumer group whose lag is measured while it is held and after it consumes.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig } from '@tollgate/config';
import { DEAD_LETTER_TOPIC, KafkaLog, TOPICS, type ConsumedEvent, fixKafkajsRequestQueue } from '@tollgate/events';
import { createMetrics } from '@tollgate/telemetry';
import { startTollgate, type Tollgate } from '@tollgate/tollgate';
import { grantEvent } from '../support/events.ts';
import { findKafka, findRedis } from '../support/services.ts';
import { requireKafka, requireRedis } from '../support/services.ts';
import { ADMIN_TOKEN, customer, startSimulator, UPSTREAM_KEY } from '../support/tollgate.ts';

// kafkajs' request queue without its 1 ms poll (libs/events/src/kafkajs-request-queue.ts) for this file's own kafkajs clients
fixKafkajsRequestQueue();

/** Polls `check` every 50 ms, at most `tries` times; only arrival is asserted, never timing. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, tries = 400): Promise<T> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) { last = err; }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} never happened${last ? `: ${String(last)}` : ''}`);
}

async function probe(url: string, path: '/health' | '/ready'): Promise<{ status: number; body: unknown; retryAfter: string | null }> {
  const res = await fetch(`${url}${path}`);
  return { status: res.status, body: await res.json(), retryAfter: res.headers.get('retry-after') };
}

function lagSeries(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^tollgate_consumer_lag\{group="([^"]+)",topic="([^"]+)",partition="(\d+)"\} (\S+)$/gm)) {
    out.set(`${m[1]}/${m[2]}/${m[3]}`, Number(m[4]));
  }
  return out;
}

let sim: Awaited<ReturnType<typeof startSimulator>>;
before(async () => { sim = await startSimulator(); });
after(async () => { await sim?.sim.close(); });

describe('health, embedded', () => {
  let tollgate: Tollgate;
  before(async () => {
    tollgate = await startTollgate(loadConfig({
      DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-health-')), HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent',
      UPSTREAM_URL: sim.simUrl, UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN,
    }));
  });
  after(async () => { await tollgate?.close(); });

  test('liveness and readiness of a started process: 200 with exact bodies, no auth asked', async () => {
    assert.deepEqual(await probe(tollgate.url!, '/health'), { status: 200, body: { status: 'ok' }, retryAfter: null });
    assert.deepEqual(await probe(tollgate.url!, '/ready'), { status: 200, body: { status: 'ready', reasons: [] }, retryAfter: null });
  });

  test('the embedded log has no lag: every consumer group and topic reads 0', async () => {
    const text = await tollgate.metrics.scrape();
    const lag = lagSeries(text);
    assert.deepEqual([...lag.keys()].sort(), ['ledger/control/0', 'ledger/ledger/0', 'ledger/usage/0', 'warehouse/control/0', 'warehouse/ledger/0', 'warehouse/usage/0']);
    assert.deepEqual([...new Set(lag.values())], [0]);
  });
});

describe('health and consumer lag, distributed (Kafka + Redis)', () => {
  const id = randomUUID().slice(0, 8);
  const prefix = `t:${id}:`;
  let tollgate: Tollgate | undefined;
  // A gateway-only process on the same hot state: it never rebuilds, so what it says of lost
  // state does not race the owner's ready-mark watch (every HOT_STATE_CHECK_MS).
  let gateway: Tollgate | undefined;

  before(async () => {
    const [kafka, redis] = [await findKafka(), await findRedis()];
    if (!kafka || !redis) return;
    const env = {
      HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent',
      UPSTREAM_URL: sim.simUrl, UPSTREAM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN,
      KAFKA_BROKERS: kafka, REDIS_URL: redis, KAFKA_TOPIC_PREFIX: `t-${id}.`, KAFKA_CLIENT_ID: `tollgate-${id}`, REDIS_PREFIX: prefix,
      KAFKA_PARTITIONS: '2', KEY_HASH_SECRET: `key-hash-secret-${id}-0123456789`, WAREHOUSE_FLUSH_MS: '50',
      CONSUMER_LAG_INTERVAL_MS: '100',
    };
    tollgate = await startTollgate(loadConfig({ ...env, DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-health-d-')) }));
    gateway = await startTollgate(loadConfig({ ...env, DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-health-g-')), TOLLGATE_ROLES: 'gateway' }));
  });
  after(async () => { await gateway?.close(); await tollgate?.close(); });

  test('hot state lost: /ready is 503 naming it; while the rebuild runs, 503 naming the rebuild; 200 once rebuilt', async (t) => {
    if (!(await requireKafka(t)) || !(await requireRedis(t)) || !tollgate || !gateway) return;
    const tg = tollgate;
    const url = tg.url!;
    assert.equal((await probe(url, '/ready')).status, 200);
    assert.equal((await probe(gateway.url!, '/ready')).status, 200);

    // The rebuild is held at its first warehouse read (the real read, started when the gate
    // opens), so "while it runs" is a state the test controls rather than a race it hopes to win.
    // The gate is in place before the state is lost: the owner's watch may start the rebuild
    // at any moment from then on (a CI run lost that race once).
    const warehouse = tg.warehouse;
    const read = warehouse.logPositions.bind(warehouse);
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    let entered!: () => void;
    const reached = new Promise<void>((r) => { entered = r; });
    warehouse.logPositions = async () => { entered(); await gate; return read(); };
    try {
      // Redis restarted empty, as far as hot state can tell: its ready mark is gone.
      await tg.adapters.redis!.del(`${prefix}ledger-ready`);
      assert.deepEqual(await probe(gateway.url!, '/ready'), {
        status: 503, body: { status: 'not_ready', reasons: ['hot state is not ready (lost or not yet rebuilt)'] }, retryAfter: '2',
      });
      assert.deepEqual(await probe(gateway.url!, '/health'), { status: 200, body: { status: 'ok' }, retryAfter: null }, 'alive all along');
      assert.deepEqual(await probe(url, '/health'), { status: 200, body: { status: 'ok' }, retryAfter: null }, 'alive all along');
      // Any event the ledger group reads finds the state lost and starts the rebuild (if the
      // owner's watch has not already).
      await tg.log.publish('ledger', [{ event: grantEvent(`acct_health_${id}`, 'r1', '1000000') }]);
      await reached;
      assert.deepEqual(await probe(url, '/ready'), {
        status: 503, body: { status: 'not_ready', reasons: ['hot state is being rebuilt from the warehouse'] }, retryAfter: '2',
      });
      assert.deepEqual((await probe(gateway.url!, '/ready')).body, {
        status: 'not_ready', reasons: ['hot state is not ready (lost or not yet rebuilt)'] }, 'a gateway waits for the mark the rebuild sets');
    } finally {
      open();
      warehouse.logPositions = read;
    }
    for (const [who, u] of [['owner', url], ['gateway', gateway.url!]] as const) {
      const ready = await eventually(`readiness of the ${who} after the rebuild`, async () => {
        const p = await probe(u, '/ready');
        return p.status === 200 ? p : undefined;
      });
      assert.deepEqual(ready.body, { status: 'ready', reasons: [] });
    }
  });

  test('consumer lag after traffic: a series per group, topic and partition, all 0 once consumed', async (t) => {
    if (!(await requireKafka(t)) || !(await requireRedis(t)) || !tollgate) return;
    const tg = tollgate;
    const c = await customer(tg.url!, 10);
    for (let i = 0; i < 3; i++) {
      await c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: '[[sim input=10 output=2]]' }] });
    }
    // KAFKA_PARTITIONS=2 for the event topics; the dead-letter topic (read by the warehouse group) has one.
    const expected = [
      ...['ledger', 'warehouse'].flatMap((g) => TOPICS.flatMap((topic) => [0, 1].map((p) => `${g}/${topic}/${p}`))),
      `warehouse/${DEAD_LETTER_TOPIC}/0`,
    ].sort();
    let last = '';
    const lag = await eventually('every lag series at 0', async () => {
      const res = await fetch(`${tg.url}/metrics`);
      const series = lagSeries(await res.text());
      const keys = [...series.keys()].sort();
      last = JSON.stringify([...series]);
      return JSON.stringify(keys) === JSON.stringify(expected) && [...series.values()].every((v) => v === 0) ? series : undefined;
    }).catch((err: Error) => { throw new Error(`${err.message}; last seen ${last}`); });
    assert.equal(lag.size, expected.length);
  });

  test('a stop while a hot-state rebuild cannot finish (the warehouse not answering) returns, and leaves hot state marked lost', async (t) => {
    if (!(await requireKafka(t)) || !(await requireRedis(t)) || !tollgate || !gateway) return;
    const tg = tollgate;
    const warehouse = tg.warehouse;
    let entered!: () => void;
    const reached = new Promise<void>((r) => { entered = r; });
    // The warehouse's first read of the rebuild never answers, as a frozen ClickHouse server.
    warehouse.logPositions = () => { entered(); return new Promise<never>(() => {}); };
    // An operator's rebuild in flight, waiting on that read: cut once the grace is over (it held
    // the stop until the hard exit, a tester's finding).
    const byHand = fetch(`${tg.url}/ops/v1/rebuild`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      .then((res) => `answered ${res.status}`, (err: Error) => `cut: ${err.message}`);
    await reached;
    // The process's one rebuild: a second one asked meanwhile is 409, and the loss reported
    // meanwhile (an event the ledger finds the state lost with) starts none beside it.
    const second = await fetch(`${tg.url}/ops/v1/rebuild`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.deepEqual([second.status, ((await second.json()) as { error: { message: string } }).error.message],
      [409, 'a rebuild is under way in this process (after a loss, or asked for by hand); ask again once it has finished']);
    await tg.adapters.redis!.del(`${prefix}ledger-ready`);
    await tg.log.publish('ledger', [{ event: grantEvent(`acct_health_stop_${id}`, 'r1', '1000000') }]);
    await new Promise((r) => setTimeout(r, 200));
    // Bounded by REBUILD_STOP_WAIT_MS (3 s); before it the stop waited for the rebuild for good.
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      tg.close({ graceMs: 300 }).then(() => 'stopped'),
      new Promise<string>((r) => { timer = setTimeout(() => r('still waiting after 30 s'), 30_000); }),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, 'stopped');
    assert.equal(await byHand, 'cut: fetch failed', 'the request in flight was cut, not answered');
    assert.deepEqual((await probe(gateway.url!, '/ready')).body, {
      status: 'not_ready', reasons: ['hot state is not ready (lost or not yet rebuilt)'] }, 'nothing was loaded: still marked lost for the next owner');
  });
});

describe('consumer lag measured against the broker', () => {
  test('two members of one consumer group: each partition is exported by exactly one process; the survivor exports all after the other leaves', async (t) => {
    const brokers = await requireKafka(t);
    if (!brokers) return;
    const kafka = new Kafka({ clientId: 'tollgate-lag-members', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
    const prefix = `t-lag2-${randomUUID().slice(0, 8)}.`;
    const member = () => {
      const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: mkdtempSync(join(tmpdir(), 'tollgate-lag2-')), consumerMaxWaitMs: 100, logger: { warn: () => {}, error: () => {} } });
      const metrics = createMetrics({ defaultMetrics: false });
      log.reportLag((g, topic, p, n) => metrics.consumerLag(g, topic, p, n), 100);
      return { log, metrics, partitions: async () => [...lagSeries(await metrics.scrape()).keys()].filter((k) => k.startsWith('pair/ledger/')).map((k) => Number(k.split('/')[2])).sort() };
    };
    const [a, b] = [member(), member()];
    const subs: Array<{ stop(): Promise<void> }> = [];
    try {
      await a.log.ensureTopics(2);
      const handler = async () => {};
      subs.push(await a.log.subscribe({ group: 'pair', topics: ['ledger'], fromBeginning: true, handler }));
      subs.push(await b.log.subscribe({ group: 'pair', topics: ['ledger'], fromBeginning: true, handler }));
      // Once the group has settled with both members: one partition each, none exported twice.
      const split = await eventually('one partition per member', async () => {
        const [pa, pb] = [await a.partitions(), await b.partitions()];
        return pa.length === 1 && pb.length === 1 ? [pa, pb] : undefined;
      }, 600);
      assert.deepEqual([...split[0]!, ...split[1]!].sort(), [0, 1]);
      await subs.pop()!.stop();
      assert.deepEqual(await b.partitions(), [], 'a member that left exports nothing');
      assert.deepEqual(await eventually('the survivor exports both', async () => {
        const pa = await a.partitions();
        return pa.length === 2 ? pa : undefined;
      }, 600), [0, 1]);
    } finally {
      for (const s of subs) await s.stop();
      await a.log.close();
      await b.log.close();
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [...TOPICS.map((x) => prefix + x), prefix + DEAD_LETTER_TOPIC] }).catch(() => {});
      await admin.disconnect();
    }
  });

  test('a held consumer group lags by exactly the records published; 0 once it has consumed and committed them', async (t) => {
    const brokers = await requireKafka(t);
    if (!brokers) return;
    const kafka = new Kafka({ clientId: 'tollgate-lag-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
    const prefix = `t-lag-${randomUUID().slice(0, 8)}.`;
    const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: mkdtempSync(join(tmpdir(), 'tollgate-lag-')), consumerMaxWaitMs: 100, logger: { warn: () => {}, error: () => {} } });
    const metrics = createMetrics({ defaultMetrics: false });
    try {
      await log.ensureTopics(1);
      log.reportLag((g, topic, p, n) => metrics.consumerLag(g, topic, p, n), 100);
      const account = `acct_lag_${randomUUID().slice(0, 8)}`;
      await log.publish('ledger', [1, 2, 3].map((i) => ({ event: grantEvent(account, `r${i}`, '1000') })));
      await log.flush();

      let release!: () => void;
      const held = new Promise<void>((r) => { release = r; });
      const seen: ConsumedEvent[] = [];
      const sub = await log.subscribe({
        group: 'lagtest', topics: ['ledger'], fromBeginning: true,
        handler: async (batch) => { await held; seen.push(...batch); },
      });
      try {
        const lagOf = async () => lagSeries(await metrics.scrape()).get('lagtest/ledger/0');
        // Nothing committed yet: high watermark 3 − the partition's start 0.
        assert.equal(await eventually('lag 3 while held', async () => ((await lagOf()) === 3 ? 3 : undefined)), 3);
        release();
        await eventually('lag 0 after consumption', async () => ((await lagOf()) === 0 ? 0 : undefined));
        assert.deepEqual(seen.map((e) => (e.event as { reference: string }).reference), ['r1', 'r2', 'r3']);
      } finally {
        release();
        await sub.stop();
      }
    } finally {
      await log.close();
      const admin = kafka.admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [...TOPICS.map((x) => prefix + x), prefix + DEAD_LETTER_TOPIC] }).catch(() => {});
      await admin.disconnect();
    }
  });
});
