import { Kafka, logLevel } from 'kafkajs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID, randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { KafkaLog, TOPICS, DEAD_LETTER_TOPIC } from '@tollgate/events';
const kafka = new Kafka({ clientId: 'breaker2', brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });
const prefix = `brk2-${randomUUID().slice(0, 8)}.`;
const quiet = { warn: (o: any, m?: string) => console.log('W', m, o?.err?.message ?? ''), error: (o: any, m?: string) => console.log('E', m, o?.err?.message ?? '') };
const dirs: string[] = [];
const mk = async (compression: 'gzip' | 'zstd' | 'none') => { const d = await mkdtemp(join(tmpdir(), 'brk2-')); dirs.push(d); return new KafkaLog({ kafka, topicPrefix: prefix, spoolDir: d, consumerMaxWaitMs: 250, compression, logger: quiet }); };
const P = 8, N = 60_000, ACCTS = 97;
const gz = await mk('gzip'), zs = await mk('zstd'), con = await mk('gzip');
await gz.ensureTopics(P);
const ev = (i: number) => ({ type: 'usage', event_id: `e-${i}`, ts: i, account_id: `acct-${i % ACCTS}`, key_id: 'k', model: 'm', catalog_model: 'm', upstream_model: 'm',
  input_tokens: i, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cost_micros: '1', status: 'ok', http_status: 200,
  latency_ms: 5, ttft_ms: null, stream: false, upstream_request_id: randomBytes(i % 5 === 0 ? 96 : 8).toString('base64'), gateway_id: 'gw' } as any);
// first half published before subscribing (catch-up), second half while consuming
const pubRange = async (from: number, to: number) => { for (let i = from; i < to; i += 250) { const log = (i / 250) % 2 ? zs : gz; await log.publish('usage', Array.from({ length: Math.min(250, to - i) }, (_, j) => ({ event: ev(i + j), headers: { traceparent: `00-${i + j}` } }))); } };
await pubRange(0, N / 2); await gz.flush(); await zs.flush();
const h = monitorEventLoopDelay({ resolution: 1 }); h.enable();
type St = { accepted: Map<number, bigint>; seen: Set<string>; dups: number; gaps: string[]; order: string[]; failed: number; perAcct: Map<string, number> };
const mkState = (): St => ({ accepted: new Map(), seen: new Set(), dups: 0, gaps: [], order: [], failed: 0, perAcct: new Map() });
const handler = (st: St, failEvery: number) => async (batch: any[]) => {
  await new Promise((r) => setImmediate(r));
  if (failEvery && Math.random() < 1 / failEvery) { st.failed++; throw new Error('boom'); }
  for (const e of batch) {
    const last = st.accepted.get(e.partition) ?? -1n;
    if (e.offset !== last + 1n) st.gaps.push(`p${e.partition} ${last}->${e.offset}`);
    st.accepted.set(e.partition, e.offset);
    if (st.seen.has(e.event.event_id)) st.dups++; st.seen.add(e.event.event_id);
    const prev = st.perAcct.get(e.event.account_id) ?? -1;
    if (e.event.ts < prev) st.order.push(`${e.event.account_id} ${prev}>${e.event.ts}`);
    st.perAcct.set(e.event.account_id, e.event.ts);
  }
};
const s1 = mkState(), s2 = mkState(), s3 = mkState();
const subs = await Promise.all([
  con.subscribe({ group: `g1-${prefix}`, topics: ['usage'], fromBeginning: true, concurrentPartitions: 4, handler: handler(s1, 7) }),
  con.subscribe({ group: `g2-${prefix}`, topics: ['usage'], fromBeginning: true, concurrentPartitions: 8, maxBatch: 5000, handler: handler(s2, 0) }),
  gz.subscribe({ group: `g3-${prefix}`, topics: ['usage'], fromBeginning: true, concurrentPartitions: 3, handler: handler(s3, 0) }),
]);
const t0 = Date.now();
await pubRange(N / 2, N); await gz.flush(); await zs.flush();
while ([s1, s2, s3].some((s) => s.seen.size < N) && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 200));
h.disable();
for (const [n, s] of [['g1 cp4 failing', s1], ['g2 cp8', s2], ['g3 cp3 same log as producer', s3]] as const)
  console.log(n, 'seen', s.seen.size, 'dups', s.dups, 'gaps', s.gaps.length, s.gaps.slice(0, 3), 'order', s.order.length, s.order.slice(0, 3), 'failed', s.failed);
console.log('loop delay max ms', (h.max / 1e6).toFixed(1), 'p99', (h.percentile(99) / 1e6).toFixed(1), 'secs', (Date.now() - t0) / 1000);
await Promise.all(subs.map((s) => s.stop()));
await Promise.all([gz, zs, con].map((l) => l.close()));
const admin = kafka.admin(); await admin.connect();
await admin.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] }); await admin.disconnect();
for (const d of dirs) await rm(d, { recursive: true, force: true });
process.exit(0);
