import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { gatewayError } from '@tollgate/anthropic';

/**
 * The deepest nesting of objects and arrays a request body may have. Anthropic documents no
 * limit; a real Messages body (tool schemas included) is a few dozen levels deep, while 100k
 * levels make recursive code further on overflow its stack. 512 leaves ample room for any
 * legitimate body and keeps every recursive walk of it shallow.
 */
export const MAX_JSON_DEPTH = 512;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * True when `json` nests objects/arrays deeper than `max` levels. A byte scan that skips
 * strings (so brackets inside them do not count) by jumping from quote to quote; it does not
 * validate JSON (JSON.parse does that next), and an unterminated string ends the scan.
 */
export function jsonDepthExceeds(json: Buffer, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  const n = json.length;
  for (let i = 0; i < n; i++) {
    const c = json[i];
    if (c === QUOTE) {
      let j = i + 1;
      for (;;) {
        j = json.indexOf(QUOTE, j);
        if (j < 0) return false;
        let backslashes = 0;
        for (let k = j - 1; k > i && json[k] === BACKSLASH; k--) backslashes++;
        if (backslashes % 2 === 0) break;
        j++;
      }
      i = j;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}

type Decoder = (buf: Buffer, options: zlib.ZlibOptions) => Promise<Buffer>;

const gunzip = promisify(zlib.gunzip) as Decoder;
const inflate = promisify(zlib.inflate) as Decoder;
const inflateRaw = promisify(zlib.inflateRaw) as Decoder;
const brotli = promisify(zlib.brotliDecompress) as Decoder;
const zstd = promisify(zlib.zstdDecompress) as Decoder;

/** A zlib stream header (RFC 1950): deflate method, and the check bits of the first two bytes. */
function zlibWrapped(buf: Buffer): boolean {
  return buf.length >= 2 && (buf[0]! & 0x0f) === 8 && ((buf[0]! << 8) | buf[1]!) % 31 === 0;
}

const DECODERS: Record<string, Decoder> = {
  gzip: gunzip,
  'x-gzip': gunzip,
  // RFC 9110 says zlib-wrapped; some clients send raw deflate, so both are read.
  deflate: (buf, o) => (zlibWrapped(buf) ? inflate(buf, o) : inflateRaw(buf, o)),
  br: brotli,
  zstd,
};

/** Stacked codings decoded at most (`gzip, br` is two). */
export const MAX_CODINGS = 2;

/** The content codings `decodeBody` reads (RFC 9110 §8.4.1 names, plus `zstd`, RFC 8878). */
export const SUPPORTED_ENCODINGS = Object.keys(DECODERS).filter((e) => e !== 'x-gzip');

/**
 * The body with its `content-encoding` undone (codings are listed in the order they were
 * applied, so they are undone from the last). `identity` and an absent header leave it as is.
 * Each step's output is capped at `limitBytes`, so a small compressed body that expands beyond
 * the body limit (a zip bomb) stops there.
 *
 * Throws (GatewayError): 415 `unsupported_encoding` for a coding not in SUPPORTED_ENCODINGS
 * or more than MAX_CODINGS stacked,
 * 413 `request_too_large` when the decoded body exceeds `limitBytes`, 400 `invalid_request`
 * when the bytes are not valid data of the declared coding.
 */
export async function decodeBody(body: Buffer, contentEncoding: string | undefined, limitBytes: number): Promise<Buffer> {
  if (contentEncoding === undefined) return body;
  const codings = contentEncoding.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity');
  // Each layer may be as large as the limit: a long stack would multiply the decoding work.
  if (codings.length > MAX_CODINGS) {
    throw gatewayError('unsupported_encoding', `content-encoding lists ${codings.length} codings; at most ${MAX_CODINGS} stacked codings are decoded`);
  }
  for (const c of codings) {
    if (!(c in DECODERS)) {
      throw gatewayError('unsupported_encoding',
        `content-encoding ${JSON.stringify(c.slice(0, 40))} is not supported; send the body uncompressed or as ${SUPPORTED_ENCODINGS.join(', ')}`);
    }
  }
  let out = body;
  for (const c of codings.reverse()) {
    try {
      out = await DECODERS[c]!(out, { maxOutputLength: limitBytes });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw gatewayError('request_too_large', `Request body exceeds ${limitBytes} bytes once decoded (content-encoding ${c})`);
      }
      throw gatewayError('invalid_request', `Request body is not valid ${c} data (content-encoding)`);
    }
  }
  return out;
}
