// The record-batch codecs KafkaLog installs in kafkajs: exact round trips on both sides of the
// sync/async size limits, the standard framings, and gzip's zlib-wrapped variant. The broker
// side (a real broker accepts and serves each codec) is in kafka-log.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import kafkajs, { CompressionTypes } from 'kafkajs';
import { registerKafkaCodecs, SYNC_MAX_BYTES, SYNC_MAX_OUTPUT_BYTES } from '@tollgate/events';

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
    // a few KB compressed, over SYNC_MAX_OUTPUT_BYTES out: the sync call stops, the pool finishes
    'expands past the sync output limit': Buffer.alloc(SYNC_MAX_OUTPUT_BYTES + 1, 'a'),
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

for (const [name, type] of [['zstd', CompressionTypes.ZSTD], ['gzip', CompressionTypes.GZIP]] as const) {
  test(`codec ${name}: a run of synchronous decompressions (a fetch response's record batches, decoded in one promise chain by kafkajs) lets the event loop turn`, async () => {
    // Kind: synchronous work in one chain of promises never yields to timers, I/O or requests.
    // 100 batches of 1 MB out take well over CODEC_SLICE_MS here (~0.2–1 ms each), so an
    // immediate queued before the run must get its turn before the run ends.
    const codec = codecs[type]!();
    const input = jsonLike(1_000_000);
    const packed = await codec.compress({ buffer: input });
    assert.ok(packed.length <= SYNC_MAX_BYTES[name].decompress, 'each batch is decompressed synchronously');
    let turned = -1;
    let i = 0;
    setImmediate(() => { turned = i; });
    for (; i < 100; i++) assert.ok((await codec.decompress(packed)).equals(input));
    assert.ok(turned >= 0 && turned < 100, `the event loop turned during the run (at batch ${turned})`);
  });
}
