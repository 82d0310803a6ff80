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

/**
 * The most object members (name/value pairs, at any depth) a request body may have. A real
 * Messages body has a few thousand (a long agent conversation with 100 tools: ~20,000); 32 MB
 * of `{"k":1,…}` has 2.7 million, and JSON.parse alone held the event loop ~2 s on it, the key
 * count and a repeat's path finder ~5 s more. At this cap a body costs ~0.5 s at most, and one
 * over it is refused by the byte scan before JSON.parse (~70 ms for 34 MB).
 */
export const MAX_JSON_MEMBERS = 500_000;

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
function jsonMemberCount(json: Buffer, maxDepth = MAX_JSON_DEPTH): number {
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

/**
 * The own keys of every object in a JSON.parse result, summed (array elements are walked, not
 * counted), or -1 when the value holds a number JSON.parse made infinite (`1e400`: beyond a
 * 64-bit float, which other readers refuse or hold exactly).
 */
function parsedMemberCount(value: unknown): number {
  if (typeof value !== 'object' || value === null) return typeof value === 'number' && value - value !== 0 ? -1 : 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const m = parsedMemberCount(value[i]);
      if (m < 0) return -1;
      n += m;
    }
    return n;
  }
  // JSON.parse makes plain objects whose keys are all own and enumerable (`__proto__` too).
  for (const key in value) {
    const m = parsedMemberCount((value as Record<string, unknown>)[key]);
    if (m < 0) return -1;
    n += 1 + m;
  }
  return n;
}

type JsonPath = ReadonlyArray<string | number>;

/**
 * The path of the first key or value in `value` that `bad` holds for (a key is tested as a
 * string, before its value), depth first in document order, or undefined. One path array,
 * pushed and popped, copied only when found: a walk costs the value's size, not size × depth.
 */
function firstPath(value: unknown, bad: (v: unknown) => boolean): JsonPath | undefined {
  const path: Array<string | number> = [];
  const walk = (v: unknown): boolean => {
    if (bad(v)) return true;
    if (typeof v !== 'object' || v === null) return false;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        if (walk(v[i])) return true;
        path.pop();
      }
      return false;
    }
    for (const key in v) {
      path.push(key);
      if (bad(key) || walk((v as Record<string, unknown>)[key])) return true;
      path.pop();
    }
    return false;
  };
  return walk(value) ? [...path] : undefined;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]{0,39}$/;
/** Characters of a path shown in an error at most: its start and its end, `…` between. */
const MAX_PATH_CHARS = 200;

/**
 * A path in the style of the gateway's other field errors: `messages[0].content[1].type`; a
 * key that is not a short identifier as `metadata["a b"]` (`shown`: printable ASCII, at most
 * 40 characters). A path longer than MAX_PATH_CHARS keeps its start and end. Empty: `body`.
 */
function renderPath(path: JsonPath): string {
  if (path.length === 0) return 'body';
  const text = path.map((part, i) =>
    typeof part === 'number' ? `[${part}]` : IDENTIFIER.test(part) ? (i === 0 ? part : `.${part}`) : `[${shown(part)}]`).join('');
  if (text.length <= MAX_PATH_CHARS) return text;
  const head = Math.floor(MAX_PATH_CHARS / 2);
  return `${text.slice(0, head)}…${text.slice(text.length - (MAX_PATH_CHARS - head - 1))}`;
}

/**
 * Where `text` (valid JSON) first names a key twice in one object, as its path, or undefined.
 * Keys compare as decoded strings, so `"model"` and `"mod\u0065l"` are the same key. Run only
 * when the member counts show a repeat (jsonc-parser's visitor: a library for the error path).
 */
function duplicateKeyPath(text: string): JsonPath | undefined {
  const seen: Array<Set<string>> = [];
  let found: JsonPath | undefined;
  visit(text, {
    onObjectBegin: () => { seen.push(new Set()); },
    onObjectEnd: () => { seen.pop(); },
    onObjectProperty: (key, _offset, _length, _line, _column, pathSupplier) => {
      const keys = seen.at(-1)!;
      if (found === undefined && keys.has(key)) found = [...pathSupplier(), key];
      keys.add(key);
    },
  });
  return found;
}

/**
 * A `\u` escape of half a surrogate pair that is not beside its other half in the text: a high
 * one (U+D800–U+DBFF) not followed by a low escape, or a low one (U+DC00–U+DFFF) not preceded by
 * a high escape. A match is confirmed on the parsed strings (an escaped backslash before `u`
 * matches here but is no escape).
 */
const LONE_SURROGATE_ESCAPE = /\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F]/;

/** A `\u` escape of any surrogate code unit. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/**
 * Whether `text` may hold half a surrogate pair: LONE_SURROGATE_ESCAPE matches, or the text has
 * an escaped backslash and any surrogate escape (`\\ud800\udc00` is a backslash, `ud800` and a
 * lone low half, which the regex's look-behind would take for a pair).
 */
function mayHaveLoneSurrogate(text: string): boolean {
  if (!text.includes('\\u')) return false;
  return LONE_SURROGATE_ESCAPE.test(text) || (text.includes('\\\\') && SURROGATE_ESCAPE.test(text));
}

/** Whether any key or string in `value` is not well-formed UTF-16. No allocation: the path is found after. */
function hasUnpaired(value: unknown): boolean {
  if (typeof value === 'string') return !value.isWellFormed();
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (hasUnpaired(value[i])) return true;
    return false;
  }
  for (const key in value) {
    if (!key.isWellFormed() || hasUnpaired((value as Record<string, unknown>)[key])) return true;
  }
  return false;
}

/** A string that is not well-formed UTF-16 (a surrogate without its other half). */
function unpaired(v: unknown): boolean {
  return typeof v === 'string' && !v.isWellFormed();
}

/** A number JSON.parse made infinite. */
function notFinite(v: unknown): boolean {
  return typeof v === 'number' && !Number.isFinite(v);
}

/**
 * The offset of the first byte of `body` that does not belong to valid UTF-8 (called only when
 * `isUtf8` said there is one). Node's decoder writes U+FFFD for each bad sequence; a U+FFFD the
 * body itself encodes (EF BF BD) is skipped.
 */
function firstBadUtf8(body: Buffer): number {
  const text = body.toString('utf8');
  let bytes = 0;
  let from = 0;
  for (let i = text.indexOf('\ufffd'); i >= 0; i = text.indexOf('\ufffd', i + 1)) {
    bytes += Buffer.byteLength(text.slice(from, i));
    from = i + 1;
    if (body[bytes] === 0xef && body[bytes + 1] === 0xbf && body[bytes + 2] === 0xbd) {
      bytes += 3;
      continue;
    }
    return bytes;
  }
  return 0;
}

/**
 * A request body's JSON, read once and only if every reader of the same bytes would read it the
 * same way, since the gateway checks the parsed value (model, limits, the cost bound) but
 * forwards the bytes (`rawBody`). Refused with a 400 GatewayError:
 * - nesting deeper than MAX_JSON_DEPTH (`invalid_request`): later recursive walks stay shallow;
 * - more than MAX_JSON_MEMBERS object members (413 `request_too_large`): what it takes to parse
 *   and check a body stays well under a second of the event loop;
 * - bytes that are not UTF-8 (`invalid_json`, RFC 8259 §8.1): the gateway would read U+FFFD
 *   where the upstream reads something else, or refuses the body after the hold;
 * - text JSON.parse refuses (`invalid_json`);
 * - a `\u` escape of half a surrogate pair in a key or string (`invalid_json`, naming its
 *   path): JSON.parse keeps it, Anthropic's API refuses the body ("no low surrogate in
 *   string"), other readers put U+FFFD in its place (which can make two keys one);
 * - a number beyond a 64-bit float (`1e400`; `invalid_request` naming its path): JSON.parse
 *   makes it Infinity, other readers refuse it or keep it exactly;
 * - a key given twice in one object (`invalid_request`, naming the first such key's path).
 *   RFC 8259 §4 leaves the meaning of a repeated name to each reader: JSON.parse keeps the
 *   last, other parsers the first, so `{"model":"cheap","model":"dear"}` would be checked as one
 *   model and served as the other. RFC 7493 (I-JSON) forbids repeats outright.
 * Paths in messages are cut to MAX_PATH_CHARS. An empty body is `undefined`. Cost over
 * JSON.parse alone: one byte scan (shared with the depth check), one UTF-8 check, one walk of
 * the parsed value counting keys, and a walk of its strings only when the text has a surrogate
 * escape without its other half beside it.
 */
export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0) return undefined;
  const members = jsonMemberCount(body, MAX_JSON_DEPTH);
  if (members < 0) {
    throw gatewayError('invalid_request', `Request body nests objects and arrays more than ${MAX_JSON_DEPTH} levels deep`);
  }
  if (members > MAX_JSON_MEMBERS) {
    throw gatewayError('request_too_large',
      `Request body has ${members} object members (name/value pairs); at most ${MAX_JSON_MEMBERS} are read (a long agent conversation has a few thousand)`);
  }
  if (!isUtf8(body)) {
    const at = firstBadUtf8(body);
    throw gatewayError('invalid_json',
      `Request body is not valid JSON: it is not UTF-8 text (RFC 8259 §8.1): byte 0x${body[at]!.toString(16).padStart(2, '0')} at offset ${at}`);
  }
  const text = body.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // V8 says where: "Expected ',' or '}' after property value in JSON at position 6 (line 1 column 7)".
    throw gatewayError('invalid_json', `Request body is not valid JSON: ${(err as Error).message}`);
  }
  if (mayHaveLoneSurrogate(text) && hasUnpaired(parsed)) {
    throw gatewayError('invalid_json',
      `Request body is not valid JSON: ${renderPath(firstPath(parsed, unpaired) ?? [])} has a \\u escape of half a surrogate pair (U+D800–U+DFFF without its other half), which is not text`);
  }
  const counted = parsedMemberCount(parsed);
  if (counted < 0) {
    throw gatewayError('invalid_request',
      `${renderPath(firstPath(parsed, notFinite) ?? [])}: is a number beyond the range of a 64-bit float (about ±1.8e308)`);
  }
  if (counted !== members) {
    const path = duplicateKeyPath(text);
    throw gatewayError('invalid_request',
      `${path ? renderPath(path) : 'body'}: given more than once in one object; which one was meant is a guess, so send each key once`);
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
