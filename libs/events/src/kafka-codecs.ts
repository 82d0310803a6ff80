// Record-batch codecs for kafkajs, on Node's own zlib (gzip and zstd; zstd is built into Node
// since 22.15/23.8, so no native module and no install script).
//
// kafkajs ships gzip only, and runs it through zlib's asynchronous stream API: for the batches a
// gateway or consumer handles (1–1,000 events, ~1 KB each) the stream set-up and the thread-pool
// hand-off cost more than the compression itself: a ledger consumer moved 1.4–2.0× the events
// per second once its batches were decompressed synchronously (bench/README.md, "Kafka
// codecs"). So small buffers are (de)compressed on the calling thread, big ones on the pool.
import { promisify } from 'node:util';
import { constants, gzip, gzipSync, unzip, unzipSync, zstdCompress, zstdCompressSync, zstdDecompress, zstdDecompressSync } from 'node:zlib';
import kafkajs, { CompressionTypes } from 'kafkajs';

/**
 * How a KafkaLog compresses the record batches it produces (`KAFKA_COMPRESSION`):
 * - `zstd` (default): Zstandard level 3; needs Kafka ≥ 2.1 (produce v7, fetch v10) on the
 *   brokers and on every other consumer of the topics;
 * - `gzip`: readable by any Kafka client and broker;
 * - `none`.
 * Consumers read every codec whatever this says (the codec is per record batch).
 */
export type KafkaCompression = 'zstd' | 'gzip' | 'none';
export const KAFKA_COMPRESSIONS: readonly KafkaCompression[] = ['zstd', 'gzip', 'none'];

/**
 * Per codec, the largest input (bytes) (de)compressed on the calling thread; above it, the
 * thread pool. Each bounds a stall of the event loop at about a millisecond on this machine:
 * - `compress`: a whole produce request is at most MAX_EVENT_BYTES (1,000,000) of events;
 *   zstd level 3 takes ~0.9 µs per ~1 KB event in big batches (all of it, ~1 ms), gzip level
 *   6 ~5 µs (so 128 KiB, ~0.6 ms);
 * - `decompress` (compressed bytes): event JSON compresses ~15:1 in big batches, so 64 KiB is
 *   about a full produce request's worth (~1 MB out, ~0.5–1 ms either codec).
 */
export const SYNC_MAX_BYTES = {
  zstd: { compress: 1 << 20, decompress: 64 << 10 },
  gzip: { compress: 128 << 10, decompress: 64 << 10 },
} as const;

type Codec = { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> };

function codec(
  limits: { compress: number; decompress: number },
  compressSync: (b: Buffer) => Buffer, compressAsync: (b: Buffer) => Promise<Buffer>,
  decompressSync: (b: Buffer) => Buffer, decompressAsync: (b: Buffer) => Promise<Buffer>,
): Codec {
  return {
    async compress(encoder) {
      const b = encoder.buffer;
      return b.length <= limits.compress ? compressSync(b) : compressAsync(b);
    },
    async decompress(b) {
      return b.length <= limits.decompress ? decompressSync(b) : decompressAsync(b);
    },
  };
}

const ZSTD_LEVEL = { params: { [constants.ZSTD_c_compressionLevel]: 3 } };
const zstdCodec = codec(SYNC_MAX_BYTES.zstd,
  (b) => zstdCompressSync(b, ZSTD_LEVEL), (b) => promisify(zstdCompress)(b, ZSTD_LEVEL),
  (b) => zstdDecompressSync(b), promisify(zstdDecompress),
);
// unzip, as kafkajs: it reads the gzip framing Kafka clients write and the zlib one some older ones did
const gzipCodec = codec(SYNC_MAX_BYTES.gzip, (b) => gzipSync(b), promisify(gzip), (b) => unzipSync(b), promisify(unzip));

let registered = false;

/**
 * Installs Tollgate's gzip and zstd codecs in kafkajs' codec table (its documented extension
 * point, process-wide). Idempotent; KafkaLog's constructor calls it, so any process that
 * produces or consumes through a KafkaLog reads and writes both.
 */
export function registerKafkaCodecs(): void {
  if (registered) return;
  const codecs = (kafkajs as unknown as { CompressionCodecs: Record<number, () => Codec> }).CompressionCodecs;
  codecs[CompressionTypes.GZIP] = () => gzipCodec;
  codecs[CompressionTypes.ZSTD] = () => zstdCodec;
  registered = true;
}

/** The kafkajs codec id of a KafkaCompression. */
export function compressionType(c: KafkaCompression): CompressionTypes {
  return c === 'zstd' ? CompressionTypes.ZSTD : c === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
}
