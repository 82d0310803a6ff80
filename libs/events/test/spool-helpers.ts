// Shared by the spool and outage tests.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaLog, TOPICS } from '@tollgate/events';
import type { ConsumedEvent, KafkaLogLogger } from '@tollgate/events';

export const quiet = (): KafkaLogLogger & { lines: string[] } => {
  const lines: string[] = [];
  return { lines, warn: (_o, m) => { lines.push(m ?? ''); }, error: (_o, m) => { lines.push(m ?? ''); } };
};

/** A client for a broker address where nothing listens: every connect is refused at once. */
export function deadClient(): Kafka {
  return new Kafka({ brokers: ['127.0.0.1:1'], connectionTimeout: 200, retry: { retries: 0 }, logLevel: logLevel.NOTHING });
}

export async function spoolLines(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.jsonl')).sort();
  const lines: string[] = [];
  for (const n of names) lines.push(...(await readFile(join(dir, n), 'utf8')).split('\n').filter((l) => l !== ''));
  return lines;
}

export async function deleteTopics(kafka: Kafka, prefix: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics: TOPICS.map((t) => prefix + t) });
  } finally {
    await admin.disconnect();
  }
}

/** Reads every record of the run's topics once per Kafka offset (a plain group, no dedupe). */
export async function readAll(log: KafkaLog, expected: number): Promise<ConsumedEvent[]> {
  const byOffset = new Map<string, ConsumedEvent>();
  const sub = await log.subscribe({
    group: `count-${randomUUID()}`, topics: ['usage', 'ledger', 'control'], fromBeginning: true,
    handler: async (batch) => { for (const e of batch) byOffset.set(`${e.topic}/${e.partition}/${e.offset}`, e); },
  });
  const deadline = Date.now() + 30_000;
  while (byOffset.size < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  // A little longer, so that copies beyond `expected` would show up too.
  await new Promise((r) => setTimeout(r, 500));
  await sub.stop();
  return [...byOffset.values()];
}

/**
 * Wire-level faults on a real broker: calls `onRequest(header)` for every request kafkajs writes
 * on `socket` (one request per `write` in kafkajs, connection.js; `header` holds size, api key,
 * api version and correlation id) and cuts what the broker sends into whole response frames
 * (int32 size first), each handed to `onFrame(frame, deliver)`, which passes it on to kafkajs
 * with `deliver(frame)` (now, later, changed, or never). `deliver` is also the socket's own emit,
 * for other events (`deliver('end')`).
 */
export function interceptFrames(
  socket: Socket,
  onRequest: (header: Buffer) => void,
  onFrame: (frame: Buffer, deliver: (event: string | Buffer, ...args: unknown[]) => boolean) => void,
): void {
  const write = socket.write.bind(socket) as (chunk: unknown, ...rest: unknown[]) => boolean;
  socket.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (Buffer.isBuffer(chunk) && chunk.length >= 12) onRequest(chunk);
    return write(chunk, ...rest);
  }) as typeof socket.write;
  const emit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
  const deliver = (event: string | Buffer, ...args: unknown[]): boolean => (Buffer.isBuffer(event) ? emit('data', event) : emit(event, ...args));
  let pending = Buffer.alloc(0);
  socket.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (event !== 'data') return emit(event, ...args);
    pending = Buffer.concat([pending, args[0] as Buffer]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
      const frame = Buffer.from(pending.subarray(0, 4 + pending.readInt32BE(0)));
      pending = pending.subarray(frame.length);
      onFrame(frame, deliver);
    }
    return true;
  }) as typeof socket.emit;
}
