// The record-batch codecs KafkaLog installs in kafkajs: exact round trips on both sides of the
// sync/async size limits, the standard framings, and gzip's zlib-wrapped variant. The broker
// side (a real broker accepts and serves each codec) is in kafka-log.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { deflateSync, gzipSync, unzipSync, zstdCompressSync, zstdDecompress, zstdDecompressSync } from 'node:zlib';
import kafkajs, { CompressionTypes } from 'kafkajs';
import { gunzipOptions, registerKafkaCodecs, SYNC_MAX_BYTES, SYNC_MAX_OUTPUT_BYTES, zstdOptions } from '@tollgate/events';

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

test('codec output sizing: a batch is decompressed into one buffer of its declared size + 1 (the gzip trailer\'s ISIZE, zstd\'s Frame_Content_Size); a missing or lying size changes only where the work is done, never the bytes', async () => {
  // Kind: a record batch decompressed in zlib's default 16 KiB chunks and then concatenated.
  const input = jsonLike(60_000);
  const gz = codecs[CompressionTypes.GZIP]!();
  for (const [name, type] of [['gzip', CompressionTypes.GZIP], ['zstd', CompressionTypes.ZSTD]] as const) {
    const codec = codecs[type]!();
    const packed = await codec.compress({ buffer: input });
    const back = await codec.decompress(packed);
    assert.ok(back.equals(input), `${name}: the bytes`);
    // one allocation of exactly 60,001 bytes (a pooled or concatenated buffer would differ)
    assert.equal(back.buffer.byteLength, 60_001, `${name}: one output buffer of the declared size + 1`);
    // far over Node's pool of small buffers, still the one buffer, not copied out
    const big = jsonLike(200_000);
    const bigBack = await codec.decompress(await codec.compress({ buffer: big }));
    assert.ok(bigBack.equals(big) && bigBack.buffer.byteLength === 200_001, `${name}: 200,000 bytes in one buffer of 200,001`);
  }
  // the synchronous call stops at its one chunk: output past the declared size is not its to make
  assert.deepEqual(gunzipOptions(gzipSync(input)), { maxOutputLength: 60_000, chunkSize: 60_001 });
  // below zlib's default chunk the default chunk is used; above the sync output limit, the limit + 1
  assert.deepEqual(gunzipOptions(gzipSync(Buffer.from('{}'))), { maxOutputLength: 16_383, chunkSize: 16_384 });
  assert.deepEqual(gunzipOptions(gzipSync(Buffer.alloc(SYNC_MAX_OUTPUT_BYTES + 10, 'a'))), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES, chunkSize: SYNC_MAX_OUTPUT_BYTES + 1 });
  const lying = (size: number): Buffer => { const b = Buffer.from(gzipSync(input)); b.writeUInt32LE(size, b.length - 4); return b; };
  assert.equal(gunzipOptions(lying(3)).chunkSize, 16_384);
  // a wrong trailer is a corrupt batch, refused as without the sizing (zlib checks ISIZE against what it wrote)
  await assert.rejects(gz.decompress(lying(3)), { code: 'Z_DATA_ERROR' });
  // a zlib-framed batch has no trailer to read: the defaults
  assert.deepEqual(gunzipOptions(deflateSync(input)), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES });
  assert.deepEqual(gunzipOptions(Buffer.alloc(0)), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES });
});

test('codec output sizing: output past the declared size costs the synchronous call at most one chunk; the thread pool returns the batch whole', async () => {
  // Kind: a size hint that understates the output (a multi-member gzip declares only its last
  // member's size; zstd frames each their own). Before: a declared size just under the limit let
  // zlib fill one 4 MiB chunk, allocate a second and fill it too before giving up.
  const first = Buffer.alloc(SYNC_MAX_OUTPUT_BYTES, 'a');
  const second = Buffer.alloc(SYNC_MAX_OUTPUT_BYTES - 1, 'b');
  const gzipTwo = Buffer.concat([gzipSync(first), gzipSync(second)]);
  const zstdTwo = Buffer.concat([zstdCompressSync(second), zstdCompressSync(first)]);
  for (const [name, type, packed, options, decompressSync] of [
    ['gzip', CompressionTypes.GZIP, gzipTwo, gunzipOptions(gzipTwo), (b: Buffer, o: object) => unzipSync(b, o)],
    ['zstd', CompressionTypes.ZSTD, zstdTwo, zstdOptions(zstdTwo), (b: Buffer, o: object) => zstdDecompressSync(b, o)],
  ] as const) {
    assert.deepEqual(options, { maxOutputLength: SYNC_MAX_OUTPUT_BYTES - 1, chunkSize: SYNC_MAX_OUTPUT_BYTES }, `${name}: sized from the declared ${SYNC_MAX_OUTPUT_BYTES - 1}`);
    assert.throws(() => decompressSync(packed, options), { code: 'ERR_BUFFER_TOO_LARGE' }, `${name}: the sync call gives up after its one chunk`);
    const back = await codecs[type]!().decompress(packed);
    assert.equal(back.length, 2 * SYNC_MAX_OUTPUT_BYTES - 1, `${name}: the whole batch`);
    assert.ok(back.subarray(0, 4).equals(Buffer.from(name === 'gzip' ? 'aaaa' : 'bbbb')) && back.subarray(-4).equals(Buffer.from(name === 'gzip' ? 'bbbb' : 'aaaa')), `${name}: in order`);
  }
});

test('codec output sizing: a size hint that overstates a small batch never leaves its output pinning a big buffer', async () => {
  // Kind: a tiny gzip member with zero padding after it (gunzip accepts it), whose last four
  // bytes read as a huge ISIZE: each record of the batch would be a view of a 4 MiB buffer.
  const small = Buffer.from('{"event_id":"e","tokens":1}');
  const padded = Buffer.concat([gzipSync(small), Buffer.from([0, 0xff, 0xff, 0xff, 0xff])]);
  assert.deepEqual(gunzipOptions(padded), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES }, 'more than deflate can expand 52 bytes to: not a trailer');
  const back = await codecs[CompressionTypes.GZIP]!().decompress(padded);
  assert.ok(back.equals(small));
  // a slice of Node's shared pool of small buffers, as any small buffer is; not a 4 MiB one of its own
  assert.ok(back.buffer.byteLength <= Buffer.poolSize, `backed by ${back.buffer.byteLength} bytes`);
  // within deflate's ratio, the padding still overstates (a ~1 KB batch read as ~1 MB): the output is copied out
  const some = jsonLike(40_000);
  const member = gzipSync(some);
  const claim = member.length * 1000;
  const overstated = Buffer.concat([member, Buffer.from([0, 0, 0, 0]), Buffer.alloc(4)]);
  overstated.writeUInt32LE(claim, overstated.length - 4);
  assert.equal(gunzipOptions(overstated).chunkSize, Math.min(claim, SYNC_MAX_OUTPUT_BYTES) + 1);
  // deflate's bound exactly: 1,032 × the batch's length is a size; one byte more is not
  const claiming = (n: number): Buffer => { const b = Buffer.from(overstated); b.writeUInt32LE(n, b.length - 4); return b; };
  assert.equal(gunzipOptions(claiming(1032 * overstated.length)).chunkSize, Math.min(1032 * overstated.length, SYNC_MAX_OUTPUT_BYTES) + 1);
  assert.deepEqual(gunzipOptions(claiming(1032 * overstated.length + 1)), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES });
  const copied = await codecs[CompressionTypes.GZIP]!().decompress(overstated);
  assert.ok(copied.equals(some));
  assert.equal(copied.buffer.byteLength, 40_000, 'its own buffer, of its own size');
});

test('codec output sizing: a zstd frame that declares a window over zstd\'s limit is refused on every path (sized, it would decode in one pass without the check)', async () => {
  // Kind: a frame header property that zstd's streaming decoder checks and its one-pass decoder does not.
  const data = jsonLike(60_000);
  const z = zstdCompressSync(data);
  assert.equal(z[4]! & 0x20, 0x20, 'Node writes a single-segment frame');
  // the same frame, not single-segment, with a Window_Descriptor of 2^28 (exponent 18)
  const wide = Buffer.concat([z.subarray(0, 4), Buffer.from([z[4]! & ~0x20, 18 << 3]), z.subarray(5)]);
  assert.deepEqual(zstdOptions(wide), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES });
  await assert.rejects(codecs[CompressionTypes.ZSTD]!().decompress(wide), /too much memory/);
  await assert.rejects(new Promise((resolve, reject) => zstdDecompress(wide, (err, out) => (err ? reject(err) : resolve(out)))), /too much memory/, 'as on the thread pool');
  // the mantissa counts: 2^27 + 2^24 (exponent 17, mantissa 1) is over; 2^26 + 7 × 2^23 (16, 7) is under
  const windowed = (w: number): Buffer => Buffer.concat([z.subarray(0, 4), Buffer.from([z[4]! & ~0x20, w]), z.subarray(5)]);
  assert.deepEqual(zstdOptions(windowed((17 << 3) | 1)), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES });
  assert.deepEqual(zstdOptions(windowed((16 << 3) | 7)), { maxOutputLength: 60_000, chunkSize: 60_001 });
  // at the limit (2^27, exponent 17) it is read, sized
  const atLimit = Buffer.concat([z.subarray(0, 4), Buffer.from([z[4]! & ~0x20, 17 << 3]), z.subarray(5)]);
  assert.deepEqual(zstdOptions(atLimit), { maxOutputLength: 60_000, chunkSize: 60_001 });
  assert.ok((await codecs[CompressionTypes.ZSTD]!().decompress(atLimit)).equals(data));
});

test('codec output sizing: every Frame_Content_Size layout of a zstd frame header (RFC 8878 §3.1.1.1) is read exactly', () => {
  const frame = (bytes: number[]): Buffer => Buffer.from([0x28, 0xb5, 0x2f, 0xfd, ...bytes, 0, 0, 0]);
  const sized = (n: number) => ({ maxOutputLength: n, chunkSize: n + 1 });
  // flag 0, single segment: 1 byte (under the default chunk, so 16 KiB); a 1-byte dictionary id before it
  assert.equal(zstdOptions(frame([0x20, 200])).chunkSize, 16_384);
  assert.equal(zstdOptions(frame([0x21, 9, 200])).chunkSize, 16_384);
  // flag 1: 2 bytes + 256; single segment, no dictionary id
  assert.deepEqual(zstdOptions(frame([0x60, 0x50, 0xc2])), sized(0xc250 + 256));
  // flag 2: 4 bytes, after a window descriptor and a 1-byte dictionary id
  assert.deepEqual(zstdOptions(frame([0x81, 0x58, 0x07, 0x40, 0x0d, 0x03, 0x00])), sized(200_000));
  // flag 2: 4 bytes, after a 2-byte dictionary id; single segment
  assert.deepEqual(zstdOptions(frame([0xa2, 0x34, 0x12, 0x40, 0x0d, 0x03, 0x00])), sized(200_000));
  // flag 3: 8 bytes, after a 4-byte dictionary id; over the limit: capped
  assert.deepEqual(zstdOptions(frame([0xe3, 1, 2, 3, 4, 0x40, 0x0d, 0x03, 0, 0, 0, 0, 0])), sized(200_000));
  assert.deepEqual(zstdOptions(frame([0xe0, 0, 0, 0, 0, 0, 0, 0, 1])), sized(SYNC_MAX_OUTPUT_BYTES));
  // flag 0 without a single segment: no size; a truncated header or another magic: the defaults
  assert.deepEqual(zstdOptions(frame([0x00, 0x58])), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES });
  assert.deepEqual(zstdOptions(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x80, 0x58, 0x07])), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES });
  assert.deepEqual(zstdOptions(Buffer.from('not zstd at all')), { maxOutputLength: SYNC_MAX_OUTPUT_BYTES });
  // Node's own one-shot frames carry the size
  assert.deepEqual(zstdOptions(zstdCompressSync(Buffer.alloc(50_000, 'a'))), sized(50_000));
});
