import kafkajs, { Kafka, logLevel, CompressionTypes } from 'kafkajs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { KafkaLog, TOPICS, DEAD_LETTER_TOPIC } from '@tollgate/events';
const kafka = new Kafka({ clientId: 'breaker2', brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });
const prefix = process.argv[2] ?? `brk2-${randomUUID().slice(0, 8)}.`;
const mode = process.argv[3] ?? 'ours';
const dir = await mkdtemp(join(tmpdir(), 'brk2-'));
const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: dir, consumerMaxWaitMs: 250, logger: { warn: () => {}, error: () => {} } });
if (mode === 'stock') { const { createRequire } = await import('node:module'); const gz = createRequire(import.meta.url)('/work/main/node_modules/kafkajs/src/protocol/message/compression/gzip.js'); (kafkajs as any).CompressionCodecs[CompressionTypes.GZIP] = gz; }
const N = 200_000;
if (mode === 'produce') {
  await log.ensureTopics(12);
  const ev = (i: number) => ({ type: 'usage', event_id: `s-${i}-${randomUUID()}`, ts: i, account_id: `acct-${i % 997}`, key_id: 'k', model: 'm', catalog_model: 'm', upstream_model: 'm',
    input_tokens: i, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cost_micros: String(i * 7), status: 'ok', http_status: 200,
    latency_ms: 5, ttft_ms: null, stream: false, upstream_request_id: randomUUID(), gateway_id: 'gw' } as any);
  for (let i = 0; i < N; i += 1000) await log.publish('usage', Array.from({ length: 1000 }, (_, j) => ({ event: ev(i + j), headers: { traceparent: `00-${randomUUID()}` } })));
  await log.flush(); console.log('produced'); await log.close(); await rm(dir, { recursive: true, force: true }); process.exit(0);
}
const h = monitorEventLoopDelay({ resolution: 1 }); h.enable();
let n = 0; const t0 = Date.now();
let maxGap = 0, last = performance.now(), gaps: number[] = []; const iv = setInterval(() => { const t = performance.now(); if (n > 0) { maxGap = Math.max(maxGap, t - last); if (t - last > 30) gaps.push(Math.round(t - last)); } last = t; }, 1);
const sub = await log.subscribe({ group: `g-${randomUUID()}`, topics: ['usage'], fromBeginning: true, concurrentPartitions: 1, handler: async (b) => { n += b.length; } });
while (n < N && Date.now() - t0 < 90000) await new Promise((r) => setTimeout(r, 100));
clearInterval(iv);
console.log(mode, 'consumed', n, 's', (Date.now() - t0) / 1000, 'maxGap ms', maxGap.toFixed(1), 'p99', (h.percentile(99) / 1e6).toFixed(1), 'gaps>30', gaps.length, gaps.slice(0, 12).join(','));
await sub.stop(); await log.close();
if (mode === 'cleanup') { const admin = kafka.admin(); await admin.connect(); await admin.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] }); await admin.disconnect(); }
await rm(dir, { recursive: true, force: true }); process.exit(0);
