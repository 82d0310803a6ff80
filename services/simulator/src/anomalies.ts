// Upstream misbehaviour on demand: forced compression, corrupt usage figures, rate-limit
// rejections. Each is something a real upstream (or a CDN or proxy in front of it) has done,
// so a gateway's tests can prove it survives it.
import type { ServerResponse } from 'node:http';
import { once } from 'node:events';
import zlib from 'node:zlib';
import type { Transform } from 'node:stream';
import type { BadUsage, Encoding } from './directives.ts';

/** Compresses a whole body at once (JSON messages, error bodies, count_tokens). */
export function compressSync(encoding: Encoding, data: string | Buffer): Buffer {
  switch (encoding) {
    case 'gzip':
      return zlib.gzipSync(data);
    case 'deflate':
      // HTTP "deflate" is the zlib format (RFC 9110 §8.4.1.2), which createDeflate produces.
      return zlib.deflateSync(data);
    case 'br':
      return zlib.brotliCompressSync(data);
    case 'zstd':
      return zlib.zstdCompressSync(data);
  }
}

function compressor(encoding: Encoding): { stream: Transform; flushKind: number } {
  switch (encoding) {
    case 'gzip':
      return { stream: zlib.createGzip(), flushKind: zlib.constants.Z_SYNC_FLUSH };
    case 'deflate':
      return { stream: zlib.createDeflate(), flushKind: zlib.constants.Z_SYNC_FLUSH };
    case 'br':
      return { stream: zlib.createBrotliCompress(), flushKind: zlib.constants.BROTLI_OPERATION_FLUSH };
    case 'zstd':
      return { stream: zlib.createZstdCompress(), flushKind: zlib.constants.ZSTD_e_flush };
  }
}

/**
 * Where SSE frames go. `write` resolves once the socket has taken the bytes of that frame, so a
 * client sees every event as it is produced and a deliberate drop never discards an event that
 * was already "sent".
 */
export interface FrameSink {
  write(text: string): Promise<void>;
  end(): Promise<void>;
  destroy(): void;
}

export function plainSink(res: ServerResponse): FrameSink {
  return {
    write: (text) => new Promise((resolve, reject) => res.write(text, (error) => (error ? reject(error) : resolve()))),
    end: async () => {
      res.end();
    },
    destroy: () => res.destroy(),
  };
}

/**
 * One compressed stream for the whole response, flushed after every frame (sync flush for
 * gzip/deflate, flush operations for br/zstd) so each event is decodable as soon as it arrives.
 */
export function compressedSink(res: ServerResponse, encoding: Encoding): FrameSink {
  const { stream, flushKind } = compressor(encoding);
  let written: Promise<void> = Promise.resolve();
  let failure: Error | undefined;
  stream.on('data', (chunk: Buffer) => {
    written = new Promise((resolve) =>
      res.write(chunk, (error) => {
        if (error) failure ??= error;
        resolve();
      }),
    );
  });
  stream.on('error', (error) => {
    failure ??= error;
  });
  res.once('close', () => stream.destroy());
  const settled = async (): Promise<void> => {
    await written;
    if (failure !== undefined) throw failure;
  };
  return {
    write: async (text) => {
      if (failure === undefined && stream.destroyed) failure = new Error('response closed');
      if (failure !== undefined) throw failure;
      await new Promise<void>((resolve) => {
        // A destroyed compressor (the client left) never calls the flush callback.
        const done = (): void => {
          stream.off('close', done);
          resolve();
        };
        stream.once('close', done);
        stream.write(text);
        // zlib emits the flushed output before it calls the flush callback.
        (stream as unknown as zlib.Zlib).flush(flushKind, done);
      });
      if (failure === undefined && stream.destroyed) failure = new Error('response closed');
      await settled();
    },
    end: async () => {
      stream.end();
      await once(stream, 'end');
      await settled();
      res.end();
    },
    destroy: () => {
      stream.destroy();
      res.destroy();
    },
  };
}

// JSON.stringify cannot write NaN or 1e20 literally, so the value goes in as this marker and
// the marker's last occurrence (usage comes after the echoed content) is replaced in the text.
const RAW_MARKER = '__sim_raw_output_tokens__';

/** The JSON value `bad_usage` puts in place of `output_tokens`. */
export function badOutputTokens(kind: BadUsage): unknown {
  switch (kind) {
    case 'negative':
      return -5;
    case 'string':
      return '12';
    case 'null':
      return null;
    case 'nan':
    case 'huge':
      return RAW_MARKER;
  }
}

/** JSON text of `value`, with the raw `NaN` / `1e20` literal written where `badOutputTokens` put its marker. */
export function serializeWithBadUsage(value: unknown, kind: BadUsage | undefined): string {
  const text = JSON.stringify(value);
  if (kind !== 'nan' && kind !== 'huge') return text;
  const quoted = JSON.stringify(RAW_MARKER);
  const at = text.lastIndexOf(quoted);
  if (at < 0) return text;
  return text.slice(0, at) + (kind === 'nan' ? 'NaN' : '1e20') + text.slice(at + quoted.length);
}

/**
 * The headers a real 429 from the upstream account carries (Anthropic "Rate limits" docs:
 * `retry-after` in seconds, `anthropic-ratelimit-requests-*` with an RFC 3339 reset time),
 * plus `x-should-retry` and the unified status the subscription-style limiter sends.
 */
export function rateLimitHeaders(retryAfterSeconds: number, now: number = Date.now()): Record<string, string> {
  const reset = new Date(now + retryAfterSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return {
    'retry-after': String(retryAfterSeconds),
    'x-should-retry': 'true',
    'anthropic-ratelimit-requests-limit': '50',
    'anthropic-ratelimit-requests-remaining': '0',
    'anthropic-ratelimit-requests-reset': reset,
    'anthropic-ratelimit-unified-status': 'rejected',
  };
}
