import { Kafka, logLevel } from 'kafkajs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { KafkaLog, TOPICS, DEAD_LETTER_TOPIC } from '@tollgate/events';
const kafka = new Kafka({ clientId: 'breaker2', brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });
const prefix = `brk2-${randomUUID().slice(0, 8)}.`;
const dir = await mkdtemp(join(tmpdir(), 'brk2-'));
const warns: string[] = [];
const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: dir, consumerMaxWaitMs: 250, logger: { warn: (o: any, m?: string) => warns.push(m + ' ' + (o?.err?.message ?? '')), error: (o: any, m?: string) => warns.push('E ' + m + ' ' + (o?.err?.message ?? '')) } });
await log.ensureTopics(1);
const ev = (i: number) => ({ type: 'usage', event_id: `n-${i}`, ts: i, account_id: `acct-1`, key_id: 'k', model: 'm', catalog_model: 'm', upstream_model: 'm',
  input_tokens: i, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cost_micros: '1', status: 'ok', http_status: 200,
  latency_ms: 5, ttft_ms: null, stream: false, upstream_request_id: null, gateway_id: 'gw' });
const producer = kafka.producer(); await producer.connect();
await producer.send({ topic: prefix + 'usage', messages: [0, 1, 2].map((i) => ({ key: 'acct-1', value: JSON.stringify(ev(i)), headers: i === 1 ? { traceparent: undefined as any, n: 5 as any } : {} })) });
await producer.disconnect();
const got: string[] = [];
const sub = await log.subscribe({ group: `g-${prefix}`, topics: ['usage'], fromBeginning: true, handler: async (b) => { for (const e of b) got.push(`${e.event.event_id ?? e.event.type} ${JSON.stringify(e.headers)}`); } });
await new Promise((r) => setTimeout(r, 8000));
console.log('got', got, 'warns', [...new Set(warns)].slice(0, 4));
await sub.stop(); await log.close();
const admin = kafka.admin(); await admin.connect(); await admin.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] }); await admin.disconnect();
await rm(dir, { recursive: true, force: true }); process.exit(0);
