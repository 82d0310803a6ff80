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
 * - `gzip` (default): readable by any Kafka client and broker, Tollgate's earlier versions
 *   included;
 * - `zstd`: Zstandard level 3, ~5× cheaper to produce on big batches; readable only by
 *   consumers that have these codecs (this version on) and needs Kafka ≥ 2.1 (produce v7,
 *   fetch v10): kafkajs alone throws "ZSTD compression not implemented" for the whole fetch;
 * - `none`.
 * A KafkaLog consumer reads every codec whatever this says (the codec is per record batch).
 */
export type KafkaCompression = 'gzip' | 'zstd' | 'none';
export const KAFKA_COMPRESSIONS: readonly KafkaCompression[] = ['gzip', 'zstd', 'none'];

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

/**
 * Most bytes a synchronous decompression may produce: what a KafkaLog writes is at most
 * ~1 MB per batch, but another producer's small batch can expand to far more (a 2 KB zstd
 * batch to 64 MiB took 54 ms here, found in review). Past this the call stops and the batch is
 * decompressed again on the thread pool. The ceiling: a batch that declares its size stops
 * sooner, past that size (`gunzipOptions`, `zstdOptions`).
 */
export const SYNC_MAX_OUTPUT_BYTES = 4 << 20;

/** zlib options of a synchronous decompression (bytes): the output buffer's size and the most output. */
export type SyncOutputOptions = Readonly<{ maxOutputLength: number; chunkSize?: number }>;

/** The defaults: zlib's 16 KiB chunks, up to SYNC_MAX_OUTPUT_BYTES. Frozen: shared by every call. */
const SYNC_OUT: SyncOutputOptions = Object.freeze({ maxOutputLength: SYNC_MAX_OUTPUT_BYTES });

type Codec = { compress(encoder: { buffer: Buffer }): Promise<Buffer>; decompress(buffer: Buffer): Promise<Buffer> };

/**
 * Most ms of synchronous work (the codecs' and whatever ran before them in the same turn of the
 * event loop) after which a codec call first lets the event loop turn. kafkajs decodes a whole
 * fetch response in one chain of promises: every record batch of every partition in it, up to
 * ~1 MiB compressed each, back to back. Decompressed synchronously without a pause, a consumer
 * catching up held its event loop for 230–360 ms at a time (found in review; with kafkajs' own
 * asynchronous gzip 27–42 ms), and an embedded process serves requests on that loop.
 */
export const CODEC_SLICE_MS = 2;

/** When the current slice of synchronous work began (performance.now()); null once the loop turned. */
let sliceFrom: number | null = null;
const endSlice = (): void => { sliceFrom = null; };

/**
 * Before a synchronous (de)compression: once CODEC_SLICE_MS have passed since the slice began,
 * waits for a `setImmediate` turn (timers, I/O, requests run), then starts the next slice.
 */
async function turnIfDue(): Promise<void> {
  for (;;) {
    if (sliceFrom === null) {
      sliceFrom = performance.now();
      setImmediate(endSlice);
      return;
    }
    if (performance.now() - sliceFrom < CODEC_SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * `out` itself, or a copy when it is a small view of a much larger buffer: kafkajs keeps slices
 * of a batch's output (each record's key, value and headers) until the fetch is handled, and
 * they would pin the whole buffer. Only a size hint that overstated the output makes one: a
 * gzip member with zero padding after it, whose last four bytes then read as a size of up to
 * 1,032 × the batch's length (beyond that `gunzipOptions` ignores them). Sized right, the
 * buffer is the output + 1; zlib's default 16 KiB chunks come from Node's shared pool of small
 * buffers (`Buffer.poolSize`, 64 KiB in Node 24), as every small buffer does.
 */
function ownSized(out: Buffer): Buffer {
  return out.buffer.byteLength > Math.max(Buffer.poolSize, 2 * out.length) ? Buffer.from(out) : out;
}

function codec(
  limits: { compress: number; decompress: number },
  compressSync: (b: Buffer) => Buffer, compressAsync: (b: Buffer) => Promise<Buffer>,
  decompressSync: (b: Buffer) => Buffer, decompressAsync: (b: Buffer) => Promise<Buffer>,
): Codec {
  return {
    async compress(encoder) {
      const b = encoder.buffer;
      if (b.length > limits.compress) return compressAsync(b);
      await turnIfDue();
      return compressSync(b);
    },
    async decompress(b) {
      if (b.length > limits.decompress) return decompressAsync(b);
      await turnIfDue();
      try {
        return ownSized(decompressSync(b));
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'ERR_BUFFER_TOO_LARGE') throw err;
        return decompressAsync(b);
      }
    },
  };
}

/**
 * Output options for a synchronous decompression whose result is expected to be `size` bytes:
 * one output buffer of `size + 1` (zlib ends with room to spare, so it neither allocates a
 * second chunk nor concatenates), at least zlib's default chunk (16 KiB: a header that claims
 * a tiny size cannot make it work in tiny chunks) and at most SYNC_MAX_OUTPUT_BYTES + 1.
 * The synchronous call stops at that one chunk (`maxOutputLength` is its size − 1): output
 * beyond the declared size (a multi-member gzip, a header that lies) throws
 * ERR_BUFFER_TOO_LARGE after at most one chunk of work, and the codec decompresses the batch
 * again on the thread pool, whole. (With `maxOutputLength` at the limit, a declared size just
 * under it let zlib fill a first chunk, allocate a second and fill that too: 8 MiB of
 * synchronous work, found in review.)
 */
function sizedOutput(size: number): SyncOutputOptions {
  const chunkSize = Math.max(constants.Z_DEFAULT_CHUNK, Math.min(size, SYNC_MAX_OUTPUT_BYTES) + 1);
  return { maxOutputLength: chunkSize - 1, chunkSize };
}

/**
 * zlib options (bytes) for a synchronous gunzip of record batch `b`: one output buffer sized
 * from the gzip trailer's ISIZE (RFC 1952 §2.3.1: the uncompressed length mod 2^32,
 * little-endian, the member's last 4 bytes), or the defaults (16 KiB chunks up to
 * SYNC_MAX_OUTPUT_BYTES). Never throws; the size is only a hint (`sizedOutput`). With zlib's
 * default 16 KiB chunks a record batch of ~60 events came out in 4+ buffers that were then
 * concatenated; one buffer gave a warehouse consumer ~8 % more events per CPU-second
 * (bench/README.md, "Decompressed into one buffer"). A zlib-framed batch (no trailer) gets the
 * defaults; a multi-member gzip (the trailer is its last member's) goes to the thread pool when
 * it is longer than that; a wrong ISIZE is refused by zlib's own length check, as without the
 * sizing. A trailer that claims more than deflate can expand the input (1,032:1, RFC 1951's
 * longest match per bit) is not a gzip trailer (zero padding after the member, which gunzip
 * accepts, puts other bytes there): the defaults.
 */
export function gunzipOptions(b: Buffer): SyncOutputOptions {
  if (b.length < 18 || b[0] !== 0x1f || b[1] !== 0x8b) return SYNC_OUT;
  const size = b.readUInt32LE(b.length - 4);
  return size > MAX_DEFLATE_RATIO * b.length ? SYNC_OUT : sizedOutput(size);
}

/** The most a deflate stream expands its input: 258 bytes per 2 bits at best (RFC 1951). */
const MAX_DEFLATE_RATIO = 1032;

/** zstd's default largest window (2^27 bytes, ZSTD_WINDOWLOG_LIMIT_DEFAULT), which its decoder enforces. */
const ZSTD_MAX_WINDOW = 2 ** 27;

/**
 * zlib options (bytes) for a synchronous zstd decompression of record batch `b`: one output
 * buffer sized from its first frame header's Frame_Content_Size (RFC 8878 §3.1.1.1: present
 * when the writer knew the size, as Node's one-shot `zstdCompress` does; streaming writers, Java
 * clients among them, leave it out), or the defaults (16 KiB chunks up to
 * SYNC_MAX_OUTPUT_BYTES). Never throws; the size is only a hint (`sizedOutput`). Not for a
 * frame that declares a window over zstd's default limit: given room for the whole frame, zstd
 * decodes it in one pass without the window check its streaming decoder makes, so such a frame
 * would be read here and refused on the thread pool (found in review); with the defaults it is
 * refused on both.
 */
export function zstdOptions(b: Buffer): SyncOutputOptions {
  if (b.length < 6 || b.readUInt32LE(0) !== 0xfd2fb528) return SYNC_OUT;
  const descriptor = b[4]!;
  const sizeFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  if (!singleSegment) {
    // Window_Descriptor: 2^(10 + exponent) plus mantissa eighths of it
    const w = b[5]!;
    const base = 2 ** (10 + (w >> 3));
    if (base + (base / 8) * (w & 7) > ZSTD_MAX_WINDOW) return SYNC_OUT;
  }
  // magic, descriptor, then the window descriptor (absent for a single segment) and the dictionary id (0, 1, 2 or 4 bytes)
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!;
  // Frame_Content_Size: 1 byte (flag 0, single segment only), 2 (+256), 4 or 8
  const bytes = sizeFlag === 0 ? singleSegment : 1 << sizeFlag;
  if (bytes === 0 || b.length < at + bytes) return SYNC_OUT;
  // (an 8-byte size past 2^53 loses precision in Number; sizedOutput caps it at the limit anyway)
  if (bytes === 8) return sizedOutput(Number(b.readBigUInt64LE(at)));
  return sizedOutput(bytes === 1 ? b[at]! : bytes === 2 ? b.readUInt16LE(at) + 256 : b.readUInt32LE(at));
}

const ZSTD_LEVEL = { params: { [constants.ZSTD_c_compressionLevel]: 3 } };
const zstdCompressAsync = promisify(zstdCompress);
const zstdCodec = codec(SYNC_MAX_BYTES.zstd,
  (b) => zstdCompressSync(b, ZSTD_LEVEL), (b) => zstdCompressAsync(b, ZSTD_LEVEL),
  (b) => zstdDecompressSync(b, zstdOptions(b)), promisify(zstdDecompress),
);
// unzip, as kafkajs: it reads the gzip framing Kafka clients write and the zlib one some older ones did
const gzipCodec = codec(SYNC_MAX_BYTES.gzip, (b) => gzipSync(b), promisify(gzip), (b) => unzipSync(b, gunzipOptions(b)), promisify(unzip));

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
