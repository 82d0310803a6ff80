// The upstream's pool slot is given back once its answer is read whole, not once Kafka
// acknowledges the request's usage event: a usage event may wait KAFKA_LINGER_MS (and longer
// while Kafka is slow) before it is even sent, and every slot held meanwhile is one a waiting
// request cannot have. The kind: every path that awaits the publication after the answer (a
// JSON answer, an event stream, the upstream's error answers, a bad 2xx body, a stream that
// ends in an error or is cut). Real Kafka behind a KafkaLog whose linger outlasts the test,
// an upstream pool of one upstream with max_concurrency 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { DEAD_LETTER_TOPIC, KafkaLog, TOPICS } from '@tollgate/events';
import { seal } from '@tollgate/keys';
import { CachedPoolView, MemoryPoolStore, UPSTREAM_KEY_PURPOSE } from '@tollgate/pool';
import { findKafka, requireKafka } from '../../../test/support/services.ts';
import { startGateway, UPSTREAM_KEY } from './support.ts';

// the fixture's KEY_HASH_SECRET (support.ts): upstream credentials are sealed under it
const HASH = 'gateway-test-hash-secret-0123456789';

const MODEL = 'claude-sonnet-4-6';
const messages = [{ role: 'user' as const, content: 'hello' }];

test('slot before acknowledgement, the kind: the upstream slot is free once the answer is over (JSON, stream, upstream error, bad body, a stream ending in an error or cut), while its usage event still waits for Kafka', { timeout: 60_000 }, async (t) => {
  const brokers = await findKafka();
  if (!(await requireKafka(t))) return;
  const kafka = new Kafka({ clientId: 'tollgate-slot-test', brokers: brokers!.split(','), logLevel: logLevel.NOTHING });
  const prefix = `t-${randomUUID().slice(0, 8)}.`;
  const spoolDir = await mkdtemp(join(tmpdir(), 'tollgate-spool-'));
  // Kafka never acknowledges within the test: the usage events linger until close().
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, lingerMs: 120_000, logger: { warn: () => {}, error: () => {} } });
  await log.ensureTopics(1);
  const store = new MemoryPoolStore();
  const view = new CachedPoolView({ store, configured: { url: 'http://127.0.0.1:9', apiKey: undefined }, keyHashSecret: HASH, ttlMs: 0 });
  const stack = await startGateway({ log, pool: { store, view } });
  try {
    await store.putUpstream({
      id: 'up_one', name: 'one', platform: 'anthropic', base_url: stack.simUrl, api_key_sealed: seal(UPSTREAM_KEY, HASH, UPSTREAM_KEY_PURPOSE, 'up_one'),
      models: null, weight: 1, priority: 0, max_concurrency: 1, status: 'active', created_at: Date.now(), deleted: false, version: 1,
    });
    await store.putGroup({ id: 'default', name: 'default', platform: 'anthropic', upstream_ids: ['up_one'], model_mapping: null, created_at: 0, deleted: false, version: 1 });
    const a = await stack.customer();
    // Each answer kind, then a plain request that needs the slot the answer held.
    const kinds: Array<{ name: string; stream: boolean; headers?: Record<string, string> }> = [
      { name: 'stream', stream: true },
      { name: 'json', stream: false },
      { name: 'upstream 400, json', stream: false, headers: { 'x-sim-status': '400' } },
      { name: 'upstream 400, stream asked', stream: true, headers: { 'x-sim-status': '400' } },
      { name: '2xx body not JSON', stream: false, headers: { 'x-sim-body': 'not_json' } },
      { name: 'stream with an error event', stream: true, headers: { 'x-sim-fault': 'sse_error_after:2' } },
      { name: 'stream cut by the upstream', stream: true, headers: { 'x-sim-fault': 'drop_after:2' } },
    ];
    let calls = 0;
    for (const k of kinds) {
      const settled = k.stream
        ? a.client.messages.create({ model: MODEL, max_tokens: 20, messages, stream: true }, { headers: k.headers ?? {} })
          .then(async (s) => { for await (const _ of s) { /* to the end */ } })
        : a.client.messages.create({ model: MODEL, max_tokens: 20, messages }, { headers: k.headers ?? {} });
      await settled.catch(() => {}); // the error answers are the point; the next request is the check
      calls++;
      const next = await a.client.messages.create({ model: MODEL, max_tokens: 20, messages }).then(
        (r) => r.type, (err: unknown) => `refused: ${err instanceof Error ? err.message : String(err)}`);
      calls++;
      assert.equal(next, 'message', `after "${k.name}": the slot is free while its usage event still waits for Kafka`);
    }
    // Every answer went through the one upstream that takes one request at a time. Held until
    // the acknowledgement, each next request was refused with 503 overloaded_error.
    assert.equal((await stack.simRequests()).length, calls);
  } finally {
    await log.close(); // ends the linger: the handlers still awaiting their publication finish
    await stack.close();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [...TOPICS.map((x) => prefix + x), prefix + DEAD_LETTER_TOPIC] }).finally(() => admin.disconnect());
    await rm(spoolDir, { recursive: true, force: true });
  }
});
