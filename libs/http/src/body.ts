import { isUtf8 } from 'node:buffer';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { gatewayError } from '@tollgate/anthropic';
import { visit } from 'jsonc-parser';
import { shown } from './params.ts';

/**
 * The deepest nesting of objects and arrays a request body may have. Anthropic documents no
 * limit; a real Messages body (tool schemas included) is a few dozen levels deep, while 100k
 * levels make recursive code further on overflow its stack. 512 leaves ample room for any
 * legitimate body and keeps every recursive walk of it shallow.
 */
export const MAX_JSON_DEPTH = 512;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

/**
 * One scan of a JSON body's bytes: the number of object members (name/value pairs) in it, or
 * -1 when it nests objects/arrays deeper than `maxDepth` levels. It skips strings by jumping
 * from quote to quote (so brackets and colons inside them do not count) and counts the colons
 * outside them: in valid JSON each one separates a member's name from its value (RFC 8259 §4).
 * It does not validate JSON (JSON.parse does that next); an unterminated string ends the scan.
 */
export function jsonMemberCount(json: Buffer, maxDepth = MAX_JSON_DEPTH): number {
  let depth = 0;
  let members = 0;
  const n = json.length;
  for (let i = 0; i < n; i++) {
    const c = json[i];
    if (c === QUOTE) {
      let j = i + 1;
      for (;;) {
        j = json.indexOf(QUOTE, j);
        if (j < 0) return members;
        let backslashes = 0;
        for (let k = j - 1; k > i && json[k] === BACKSLASH; k--) backslashes++;
        if (backslashes % 2 === 0) break;
        j++;
      }
      i = j;
    } else if (c === COLON) {
      members++;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return -1;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return members;
}

/** The own keys of every object in a JSON.parse result, summed (array elements are walked, not counted). */
function parsedMemberCount(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) n += parsedMemberCount(value[i]);
    return n;
  }
  // JSON.parse makes plain objects whose keys are all own and enumerable (`__proto__` too).
  for (const key in value) n += 1 + parsedMemberCount((value as Record<string, unknown>)[key]);
  return n;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/**
 * Where `text` (valid JSON) first names a key twice in one object, as a path in the style of
 * the gateway's other field errors (`messages[0].content[1].type`; a key that is not an
 * identifier as `metadata["a b"]`), or undefined. Keys compare as decoded strings, so `"model"`
 * and `"mod\u0065l"` are the same key. Run only when the member counts show a repeat.
 */
function duplicateKeyPath(text: string): string | undefined {
  const seen: Array<Set<string>> = [];
  let found: string | undefined;
  const render = (path: ReadonlyArray<string | number>): string => path.map((part, i) =>
    typeof part === 'number' ? `[${part}]` : IDENTIFIER.test(part) ? (i === 0 ? part : `.${part}`) : `[${shown(part)}]`).join('');
  visit(text, {
    onObjectBegin: () => { seen.push(new Set()); },
    onObjectEnd: () => { seen.pop(); },
    onObjectProperty: (key, _offset, _length, _line, _column, pathSupplier) => {
      const keys = seen.at(-1)!;
      if (found === undefined && keys.has(key)) found = render([...pathSupplier(), key]);
      keys.add(key);
    },
  });
  return found;
}

/**
 * A request body's JSON, read once and only if every reader of the same bytes would read it the
 * same way, since the gateway checks the parsed value (model, limits, the cost bound) but
 * forwards the bytes (`rawBody`). Refused with a 400 GatewayError:
 * - nesting deeper than MAX_JSON_DEPTH (`invalid_request`): later recursive walks stay shallow;
 * - bytes that are not UTF-8 (`invalid_json`, RFC 8259 §8.1): the gateway would read U+FFFD
 *   where the upstream reads something else, or refuses the body after the hold;
 * - text JSON.parse refuses (`invalid_json`);
 * - a key given twice in one object (`invalid_request`, naming the first such key's path).
 *   RFC 8259 §4 leaves the meaning of a repeated name to each reader: JSON.parse keeps the
 *   last, other parsers the first, so `{"model":"cheap","model":"dear"}` would be checked as one
 *   model and served as the other. RFC 7493 (I-JSON) forbids repeats outright.
 * An empty body is `undefined`. Cost over JSON.parse alone: one byte scan (shared with the
 * depth check), one UTF-8 check, and one walk of the parsed value counting keys.
 */
export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0) return undefined;
  const members = jsonMemberCount(body, MAX_JSON_DEPTH);
  if (members < 0) {
    throw gatewayError('invalid_request', `Request body nests objects and arrays more than ${MAX_JSON_DEPTH} levels deep`);
  }
  if (!isUtf8(body)) throw gatewayError('invalid_json', 'Request body is not valid JSON: it is not UTF-8 text (RFC 8259 §8.1)');
  const text = body.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw gatewayError('invalid_json', 'Request body is not valid JSON');
  }
  if (members > 0 && parsedMemberCount(parsed) !== members) {
    const path = duplicateKeyPath(text) ?? 'Request body';
    throw gatewayError('invalid_request', `${path}: given more than once in one object; which one was meant is a guess, so send each key once`);
  }
  return parsed;
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
