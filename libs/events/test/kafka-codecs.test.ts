// The record-batch codecs KafkaLog installs in kafkajs: exact round trips on both sides of the
// sync/async size limits, the standard framings, and gzip's zlib-wrapped variant. The broker
// side (a real broker accepts and serves each codec) is in kafka-log.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import kafkajs, { CompressionTypes } from 'kafkajs';
import { registerKafkaCodecs, SYNC_MAX_BYTES } from '@tollgate/events';

type Codec = { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> };
const codecs = (kafkajs as unknown as { CompressionCodecs: Record<number, () => Codec> }).CompressionCodecs;

registerKafkaCodecs();
registerKafkaCodecs(); // idempotent

/** Event-like JSON: compresses well, like the topics' records. */
function jsonLike(bytes: number): Buffer {
  const one = JSON.stringify({ type: 'usage', event_id: 'req_0123456789', account_id: 'acct_1', cost_micros: '72672', model: 'claude-haiku-4-5' });
  return Buffer.from(one.repeat(Math.ceil(bytes / one.length)).slice(0, bytes));
}

/** Inputs on both sides of a codec's sync limits. */
function sizes(limits: { compress: number; decompress: number }): Record<string, Buffer> {
  return {
    'empty': Buffer.alloc(0),
    'one event': jsonLike(950),
    'at the sync compress limit': jsonLike(limits.compress),
    'over the sync compress limit (thread pool)': jsonLike(limits.compress + 1),
    // random bytes do not compress: the compressed input is over the sync decompress limit
    'incompressible, over the sync decompress limit': randomBytes(limits.decompress * 2),
  };
}

for (const [name, type, magic] of [['zstd', CompressionTypes.ZSTD, '28b52ffd'], ['gzip', CompressionTypes.GZIP, '1f8b']] as const) {
  test(`codec ${name}: exact round trip on both sides of the sync limits, in the standard framing`, async () => {
    const codec = codecs[type]!();
    for (const [label, input] of Object.entries(sizes(SYNC_MAX_BYTES[name]))) {
      const packed = await codec.compress({ buffer: input });
      assert.equal(packed.subarray(0, magic.length / 2).toString('hex'), magic, `${label}: ${name} framing`);
      const back = await codec.decompress(packed);
      assert.ok(back.equals(input), `${label}: ${input.length} bytes back exactly`);
    }
  });
}

test('codec gzip: a zlib-wrapped batch (written by some older clients) is read too', async () => {
  const input = jsonLike(10_000);
  assert.ok((await codecs[CompressionTypes.GZIP]!().decompress(deflateSync(input))).equals(input));
});
