import { Kafka, logLevel } from 'kafkajs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID, randomBytes } from 'node:crypto';
import { KafkaLog, TOPICS, DEAD_LETTER_TOPIC, type KafkaLogOptions } from '@tollgate/events';
const kafka = new Kafka({ clientId: 'breaker2', brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });
const base = (id: string, acct: string) => ({
  type: 'usage', event_id: id, ts: 1, account_id: acct, key_id: 'key-1', model: 'm', catalog_model: 'm', upstream_model: 'm',
  input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cost_micros: '1',
  status: 'ok', http_status: 200, latency_ms: 5, ttft_ms: null, stream: false, upstream_request_id: null, gateway_id: 'gw',
} as any);
const padTo = (e: any, bytes: number, rnd = false) => { const b = { ...e, pad: '' }; const n = bytes - Buffer.byteLength(JSON.stringify(b)); return { ...b, pad: rnd ? randomBytes(n).toString('base64').slice(0, n) : 'p'.repeat(n) }; };
async function attempt(name: string, opts: Partial<KafkaLogOptions>, events: any[]) {
  const prefix = `brk2-${randomUUID().slice(0, 8)}.`;
  const spoolDir = await mkdtemp(join(tmpdir(), 'brk2-'));
  const warns: string[] = [];
  const log = new KafkaLog({ kafka, topicPrefix: prefix, spoolDir, consumerMaxWaitMs: 250, closeTimeoutMs: 500, logger: { warn: (o: any, m?: string) => warns.push(`${m}: ${o?.err?.message ?? ''}`), error: (o: any, m?: string) => warns.push(`E ${m}: ${o?.err?.message ?? ''}`) }, ...opts });
  await log.ensureTopics(1);
  let res = '';
  try {
    await log.publish('usage', events);
    res = await Promise.race([log.flush().then(() => 'delivered'), new Promise<string>((r) => setTimeout(() => r('NOT delivered in 20s'), 20000))]);
  } catch (e: any) { res = `publish threw ${e.name}: ${e.message.slice(0, 120)}`; }
  console.log(name, '=>', res, '|', [...new Set(warns)].slice(0, 2).join(' || ').slice(0, 300));
  await log.close().catch(() => {});
  const admin = kafka.admin(); await admin.connect();
  await admin.deleteTopics({ topics: [...TOPICS.map((t) => prefix + t), prefix + DEAD_LETTER_TOPIC] }).catch(() => {});
  await admin.disconnect();
  await rm(spoolDir, { recursive: true, force: true });
}
const which = process.argv[2];
if (!which || which === 'a') await attempt('a: none, lone 1,000,000-byte event + 60 KB header', { compression: 'none' },
  [{ event: padTo(base(randomUUID(), 'acct-1'), 1_000_000), headers: { traceparent: '00-aa-bb-01', baggage: 'h'.repeat(60_000) } }]);
if (!which || which === 'b') { const acct = randomBytes(400_000).toString('base64').slice(0, 480_000);
  await attempt('b: gzip default, lone event, 480 KB random account_id (key) + random pad to 1,000,000', {},
  [{ event: padTo(base(randomUUID(), acct), 1_000_000, true) }]); }
if (!which || which === 'c') await attempt('c: header value undefined', { compression: 'none' },
  [{ event: base(randomUUID(), 'acct-1'), headers: { traceparent: undefined as any } }]);
if (!which || which === 'd') await attempt('d: header value number', { compression: 'none' },
  [{ event: base(randomUUID(), 'acct-1'), headers: { 'x-n': 5 as any } }]);
process.exit(0);
