import { Kafka, logLevel, CompressionTypes } from 'kafkajs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { KafkaLog, TOPICS, DEAD_LETTER_TOPIC } from '@tollgate/events';
const kafka = new Kafka({ clientId: 'breaker2', brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });
const prefix = `brk2-${randomUUID().slice(0, 8)}.`;
const dir = await mkdtemp(join(tmpdir(), 'brk2-'));
const warns: string[] = [];
const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: dir, consumerMaxWaitMs: 250, logger: { warn: (o: any, m?: string) => warns.push(m!), error: (o: any, m?: string) => warns.push('E ' + m + ' ' + o?.err?.message) } });
await log.ensureTopics(2);
const ev = (i: number) => ({ type: 'usage', event_id: `b-${i}`, ts: i, account_id: `acct-${i % 3}`, key_id: 'k', model: 'm', catalog_model: 'm', upstream_model: 'm',
  input_tokens: i, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cost_micros: '1', status: 'ok', http_status: 200,
  latency_ms: 5, ttft_ms: null, stream: false, upstream_request_id: 'r'.repeat(3000), gateway_id: 'gw' });
const producer = kafka.producer(); await producer.connect();
const N = 6000; // ~20 MB uncompressed per produce, compresses tiny
for (const codec of [CompressionTypes.GZIP, CompressionTypes.ZSTD]) {
  const base = codec === CompressionTypes.GZIP ? 0 : N;
  await producer.send({ topic: prefix + 'usage', compression: codec, messages: Array.from({ length: N }, (_, i) => ({ key: `acct-${(base + i) % 3}`, value: JSON.stringify(ev(base + i)) })) });
}
await producer.disconnect();
const ids = new Map<string, number>(); const gaps: string[] = []; const last = new Map<number, bigint>();
const sub = await log.subscribe({ group: `g-${prefix}`, topics: ['usage'], fromBeginning: true, concurrentPartitions: 2, handler: async (b) => {
  for (const e of b) { ids.set(e.event.event_id, (ids.get(e.event.event_id) ?? 0) + 1); const l = last.get(e.partition) ?? -1n; if (e.offset !== l + 1n) gaps.push(`${e.partition}:${l}->${e.offset}`); last.set(e.partition, e.offset); }
} });
const t0 = Date.now(); while (ids.size < 2 * N && Date.now() - t0 < 60000) await new Promise((r) => setTimeout(r, 200));
console.log('distinct', ids.size, 'of', 2 * N, 'dups', [...ids.values()].filter((n) => n > 1).length, 'gaps', gaps.slice(0, 3), 'warns', [...new Set(warns)].slice(0, 3));
await sub.stop(); await log.close();
const admin = kafka.admin(); await admin.connect(); await admin.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] }); await admin.disconnect();
await rm(dir, { recursive: true, force: true }); process.exit(0);
