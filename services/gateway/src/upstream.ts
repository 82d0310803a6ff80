import { Agent, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { pipeline, Transform, type Readable } from 'node:stream';
import { arrayBuffer as readArrayBuffer } from 'node:stream/consumers';
import {
  constants as zlibConstants, createBrotliDecompress, createGunzip, createInflate, createInflateRaw, createZstdDecompress,
} from 'node:zlib';
import {
  gatewayError, isAnthropicErrorBody, redactCredentials, secretScrubber, upstreamErrorToGateway, type GatewayError,
} from '@tollgate/anthropic';
import { isCredentialName, lenientDecode, looksLikeCredential, stripCredentialParams } from '@tollgate/http';
import type { UpstreamOptions } from './deps.ts';

/** Connections to the upstream when `UpstreamOptions.maxConnections` is not set. */
export const DEFAULT_UPSTREAM_CONNECTIONS = 512;

/**
 * Client request headers that may reach the upstream, by exact name: what the official SDKs
 * (`x-stainless-*` aside), Claude Code and W3C trace context send that the upstream reads.
 * Every other header stays behind — an allowlist, so a key under a name nobody thought of
 * (`x-goog-api-key`, `api-key`, `x-auth-token`, `x-amz-security-token`…) never leaves.
 */
const FORWARDED = new Set(['accept', 'user-agent', 'x-app', 'traceparent', 'tracestate', 'idempotency-key']);
/**
 * Name prefixes forwarded too: Anthropic's API headers, the Stainless SDK telemetry, Claude
 * Code's own, and `x-sim-` (the simulator's per-request directives, services/simulator/README;
 * a real upstream ignores them).
 */
const FORWARDED_PREFIXES = ['anthropic-', 'x-stainless-', 'x-claude-code-', 'x-sim-'];
/**
 * Headers whose value is a comma-separated list (RFC 9110 §5.6.1): each member is judged alone,
 * so one member that carries a secret drops that member, not the whole list (`anthropic-beta:
 * files-api-2025-04-14,<key>` keeps `files-api-2025-04-14`).
 */
const COMMA_LISTS = new Set(['anthropic-beta', 'accept', 'tracestate']);
/**
 * Opaque ids by design (an SDK's random idempotency key, Claude Code's session id): a random
 * token is what they are, so they are checked only against the caller's key and the gateway's
 * secrets (whole, fragment or encoded), not by the random-token rule.
 */
const OPAQUE_IDS = new Set(['idempotency-key', 'x-claude-code-session-id']);
/** A W3C `traceparent` (its 32 hex digits would otherwise look like a random token). */
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The caller's own key as it came in (`x-api-key`, or `authorization: Bearer …`), if any. */
function callerKeys(incoming: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  const apiKey = incoming['x-api-key'];
  for (const k of Array.isArray(apiKey) ? apiKey : [apiKey]) if (k) out.push(k.trim());
  const auth = incoming.authorization?.match(/^\s*bearer\s+(\S+)/i);
  if (auth) out.push(auth[1]!);
  return out.filter((k) => k.length >= 8);
}

/**
 * True when a header value carries a secret, read as is and percent/`+`-decoded: any
 * credential shape of `looksLikeCredential` (`sk-…`, `Bearer …`, a random token, one of
 * `secrets` whole) or anything `redactCredentials` would hide (one of `secrets` in any case,
 * percent or base64 encoded, or a run of ≥ 12 of its characters; `token=` style pairs).
 */
function carriesSecret(value: string, secrets: readonly string[]): boolean {
  for (const v of value === lenientDecode(value) ? [value] : [value, lenientDecode(value)]) {
    if (looksLikeCredential(v, secrets) || redactCredentials(v, secrets) !== v) return true;
  }
  return false;
}

/**
 * What of header `name`'s value `v` may go upstream, or null for none: a `traceparent` only in
 * its W3C shape; an opaque id (`OPAQUE_IDS`) unless it holds one of `known`; a comma list
 * (`COMMA_LISTS`) less each member that carries a secret (the rest trimmed and joined by `,`;
 * untouched when none does); any other value whole or not at all (`carriesSecret`).
 * `knownId`: `known.join('\0')`.
 */
function forwardedValue(name: string, v: string, known: readonly string[], knownId: string): string | null {
  // Pure in (name, v, known): a client sends the same few headers on every request (the SDK's
  // `x-stainless-*`, `anthropic-version`, `user-agent`), so their verdicts are remembered instead
  // of running the credential rules again each time (issue 11: the per-request CPU). Keyed by
  // content like `secretScrubber` (the caller's key is part of `known`), short values only.
  if (v.length > MAX_REMEMBERED_VALUE_CHARS) return judgeValue(name, v, known);
  const id = `${name}\0${v}\0${knownId}`;
  const seen = verdicts.get(id);
  if (seen !== undefined) return seen === FORWARD_NOTHING ? null : seen;
  const kept = judgeValue(name, v, known);
  if (verdicts.size >= MAX_VERDICTS) verdicts.delete(verdicts.keys().next().value!);
  verdicts.set(id, kept ?? FORWARD_NOTHING);
  return kept;
}

/** Longest header value whose verdict `forwardedValue` remembers, in characters. */
const MAX_REMEMBERED_VALUE_CHARS = 512;
/** Most verdicts remembered; the oldest is forgotten first. */
const MAX_VERDICTS = 4096;
/** Stands for a null verdict in `verdicts` (a header value that must not be forwarded). */
const FORWARD_NOTHING = Symbol('forward nothing');
const verdicts = new Map<string, string | typeof FORWARD_NOTHING>();

/** `forwardedValue` without the memo. */
function judgeValue(name: string, v: string, known: readonly string[]): string | null {
  if (name === 'traceparent') return TRACEPARENT.test(v) ? v : null;
  if (OPAQUE_IDS.has(name)) {
    const decoded = lenientDecode(v);
    const scrubber = secretScrubber(known);
    const holds = [v, decoded].some((x) => known.some((s) => s.length >= 8 && x.includes(s)) || scrubber.redact(x) !== x);
    return holds ? null : v;
  }
  if (COMMA_LISTS.has(name)) {
    const members = v.split(',');
    const kept = members.filter((m) => !carriesSecret(m, known));
    if (kept.length === members.length) return v;
    const rest = kept.map((m) => m.trim()).filter(Boolean);
    return rest.length === 0 ? null : rest.join(',');
  }
  return carriesSecret(v, known) ? null : v;
}

/**
 * The headers sent upstream for a client request: of the client's own only those named in
 * `FORWARDED` / `FORWARDED_PREFIXES` (less any a prefix admits whose name is a credential's,
 * `anthropic-api-key`), and of those only the ones whose value carries no secret
 * (`carriesSecret` against the caller's own key and `secrets`, the gateway's credentials: the
 * caller's key never leaves, in any header or encoding the redaction knows); plus
 * `content-type: application/json`, a default `anthropic-version`, `accept-encoding: identity`
 * (usage is read from the body on the side, so it should arrive uncompressed; whatever arrives
 * anyway is decoded) and the upstream key.
 */
export function upstreamHeaders(
  incoming: IncomingHttpHeaders, apiKey: string | undefined, secrets: readonly string[] = [],
): Record<string, string> {
  const out: Record<string, string> = {};
  const known = [...callerKeys(incoming), ...secrets];
  // `known` by content, once per request (the verdict memo's key, see `forwardedValue`)
  const knownId = known.join('\0');
  // A header the client's `connection` lists is hop-by-hop (RFC 9110 §7.6.1), allowed or not.
  const connectionListed = new Set(
    String(incoming.connection ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean),
  );
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || connectionListed.has(name)) continue;
    // A prefix admits a family, not a credential's name in it (`anthropic-api-key`); the
    // simulator's directive names (`x-sim-echo-key`) are its own vocabulary, checked by value only.
    const admitted = FORWARDED.has(name) || name.startsWith('x-sim-')
      || (FORWARDED_PREFIXES.some((p) => name.startsWith(p)) && !isCredentialName(name));
    if (!admitted) continue;
    const v = Array.isArray(value) ? value.join(', ') : value;
    const kept = forwardedValue(name, v, known, knownId);
    if (kept !== null) out[name] = kept;
  }
  out['content-type'] = 'application/json';
  out['anthropic-version'] ??= '2023-06-01';
  out['accept-encoding'] = 'identity';
  if (apiKey) out['x-api-key'] = apiKey;
  return out;
}

/**
 * `search` (`?a=1&api_key=sk-…`, or '') without any parameter that carries a credential, by
 * its name or by its value (`stripCredentialParams` of @tollgate/http: the same definition the
 * logs redact by), so a key put anywhere in the URL never reaches the upstream. `secrets`: the
 * process's own credentials, looked for by value too. Every other parameter keeps its exact
 * bytes; returns '' when nothing is left.
 */
export function upstreamSearch(search: string, secrets: readonly string[] = []): string {
  return stripCredentialParams(search, secrets);
}

/**
 * A decoded upstream response body: the bytes as the upstream meant them, whatever
 * `content-encoding` it used. Read it once, by one of the three ways.
 */
export interface UpstreamBody extends AsyncIterable<Buffer> {
  /** the whole body, the gateway's own secrets redacted (`scrubBody`) */
  text(): Promise<string>;
  /** the whole body's bytes, the gateway's own secrets redacted (`scrubBody`) */
  arrayBuffer(): Promise<ArrayBuffer>;
  /** reads and discards the rest */
  dump(): Promise<void>;
  /**
   * The answer is over: the rest of the body is discarded, and the upstream connection is cut
   * if the body has not ended within `CANCEL_GRACE_MS` (an upstream that keeps it open holds
   * nothing; one that ends at once keeps its keep-alive connection). Returns at once. Idempotent.
   */
  cancel(): void;
}

export interface UpstreamResponse {
  status: number;
  /** the upstream's headers; `content-encoding` and `content-length` removed once decoded */
  headers: Record<string, string | string[] | undefined>;
  body: UpstreamBody;
  /** what the upstream could echo of the gateway's credentials (its own key), redacted from its output */
  secrets: readonly string[];
  /**
   * One SSE event (`SseFrame.raw`) as the client may see it: `scrubEvent` with `secrets`
   * (comment lines dropped, the gateway's secrets redacted). Iterating `body` gives raw bytes,
   * so a relay writes each event through this.
   */
  scrubEvent(raw: Buffer): Buffer;
}

const COLON = 0x3a;

/**
 * `raw` (one complete SSE event) with its comment lines (`:`…) dropped — nothing a client reads,
 * and text the upstream chose — and every whole secret or run of ≥ 12 of its characters, in any
 * form `SecretScrubber` knows, replaced by `[redacted]` (the event stays valid: a secret has no
 * JSON-special character). An event of comments only becomes empty. The cheap path (no `:` at a
 * line start, no probe window of a secret) returns `raw` itself, untouched.
 */
export function scrubEvent(raw: Buffer, secrets: readonly string[]): Buffer {
  const hasComment = raw[0] === COLON || raw.includes('\n:') || raw.includes('\r:');
  const scrubber = secretScrubber(secrets);
  const hasSecret = scrubber.mayContain(raw.toString('latin1'));
  if (!hasComment && !hasSecret) return raw;
  let text = raw.toString('utf8');
  if (hasComment) {
    const parts = text.split(/(\r\n|\r|\n)/);
    let kept = '';
    let anyLine = false;
    for (let i = 0; i < parts.length; i += 2) {
      if (parts[i]!.startsWith(':')) continue;
      if (parts[i] !== '') anyLine = true;
      kept += parts[i]! + (parts[i + 1] ?? '');
    }
    if (!anyLine) return Buffer.alloc(0);
    text = kept;
  }
  if (hasSecret) text = scrubber.redact(text);
  return Buffer.from(text, 'utf8');
}

/**
 * A whole upstream body (JSON answer, count_tokens result, error body) with the gateway's own
 * secrets redacted as `scrubEvent` does; `bytes` itself when the cheap probe finds nothing.
 */
export function scrubBody(bytes: Buffer, secrets: readonly string[]): Buffer {
  const scrubber = secretScrubber(secrets);
  if (!scrubber.mayContain(bytes.toString('latin1'))) return bytes;
  return Buffer.from(scrubber.redact(bytes.toString('utf8')), 'utf8');
}

/**
 * How long `UpstreamBody.cancel` lets an upstream finish a body whose answer is already complete
 * before cutting it (ms): long enough for the end of a well-behaved response to arrive, short
 * enough that one that stays open holds nothing (the client, hold and slots are already freed).
 */
export const CANCEL_GRACE_MS = 1000;

/** More stacked encodings than this is an attack or a broken proxy, not a real response. */
const MAX_ENCODINGS = 5;

type Decoder = () => Transform;

const DECODERS: Record<string, Decoder> = {
  gzip: () => createGunzip(),
  'x-gzip': () => createGunzip(),
  deflate: () => inflateEither(),
  br: () => createBrotliDecompress(),
  // RFC 9659 §3: a zstd content coding needs at most an 8 MB window.
  zstd: () => createZstdDecompress({ params: { [zlibConstants.ZSTD_d_windowLogMax]: 23 } }),
};

/**
 * `deflate` is meant to be zlib-wrapped (RFC 9110 §8.4.1.2) but some servers send raw deflate;
 * the first two bytes tell them apart (a zlib header: method 8, window ≤ 32 K, check bits make
 * the pair a multiple of 31), as browsers and curl do.
 */
function inflateEither(): Transform {
  let inner: Transform | null = null;
  let head = Buffer.alloc(0);
  const outer = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (inner === null) {
        head = Buffer.concat([head, chunk]);
        if (head.length < 2) return cb();
        start();
        chunk = head;
      }
      if (inner!.write(chunk)) cb();
      else inner!.once('drain', () => cb());
    },
    flush(cb) {
      if (inner === null) {
        if (head.length === 0) return cb();
        start();
        inner!.write(head);
      }
      inner!.once('end', () => cb());
      inner!.end();
    },
    destroy(err, cb) {
      inner?.destroy();
      cb(err);
    },
  });
  const start = () => {
    const zlibWrapped = (head[0]! & 0x0f) === 8 && head[0]! >> 4 <= 7 && ((head[0]! << 8) | head[1]!) % 31 === 0;
    inner = zlibWrapped ? createInflate() : createInflateRaw();
    inner.on('data', (d: Buffer) => outer.push(d));
    inner.on('error', (err) => outer.destroy(err));
  };
  return outer;
}

/**
 * The decoders for a `content-encoding` value, in the order to apply them (the reverse of the
 * order the codings were applied, RFC 9110 §8.4); `identity` is skipped. Throws
 * `upstream_error` (503) for a coding Node's zlib cannot read, or more than five codings.
 */
export function decodersFor(contentEncoding: string): Decoder[] {
  const codings = contentEncoding.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity');
  if (codings.length > MAX_ENCODINGS) {
    throw gatewayError('upstream_error', `Upstream response has ${codings.length} stacked content-encodings; at most ${MAX_ENCODINGS} are decoded`);
  }
  return codings.reverse().map((c) => {
    const decoder = DECODERS[c];
    if (!decoder) throw gatewayError('upstream_error', `Upstream response uses content-encoding "${c}", which the gateway cannot decode`);
    return decoder;
  });
}

export function asUpstreamBody(stream: Readable, secrets: readonly string[]): UpstreamBody {
  const whole = async () => scrubBody(Buffer.from(await readArrayBuffer(stream)), secrets);
  return {
    text: async () => (await whole()).toString('utf8'),
    arrayBuffer: async () => {
      const b = await whole();
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    },
    dump: async () => { for await (const _ of stream) { /* discard */ } },
    cancel: () => {
      if (stream.readableEnded || stream.destroyed) return;
      // The answer is complete; what follows cannot change it. A well-behaved upstream ends its
      // body at once (usually in the same chunk), and letting it finish returns its keep-alive
      // connection to the pool (no new TCP/TLS handshake for the next request); one that keeps
      // sending or stays open is cut after CANCEL_GRACE_MS. Never awaited by the caller.
      const cut = setTimeout(() => stream.destroy(), CANCEL_GRACE_MS);
      cut.unref();
      stream.once('end', () => clearTimeout(cut));
      stream.once('close', () => clearTimeout(cut));
      stream.on('error', () => {});
      stream.resume();
    },
    // Leaving a loop early must not destroy the body: `cancel` decides how it ends.
    [Symbol.asyncIterator]: () => stream.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer>,
  };
}

/**
 * The response with its body decoded: every caller (messages JSON and SSE, count_tokens,
 * error bodies) reads identity bytes, and the stale `content-encoding` / `content-length`
 * headers are gone.
 */
export function decoded(status: number, headers: UpstreamResponse['headers'], body: Readable, secrets: readonly string[]): UpstreamResponse {
  const raw = headers['content-encoding'];
  const contentEncoding = Array.isArray(raw) ? raw.join(',') : raw ?? '';
  // 204/304 and declared-empty bodies have no bytes to decode (a decoder would call them truncated).
  const empty = status === 204 || status === 304 || headers['content-length'] === '0';
  const decoders = empty ? [] : decodersFor(contentEncoding);
  if (decoders.length === 0) {
    return { status, headers, body: asUpstreamBody(body, secrets), secrets, scrubEvent: (raw) => scrubEvent(raw, secrets) };
  }
  const { 'content-encoding': _ce, 'content-length': _cl, ...rest } = headers;
  const stages = decoders.map((d) => d());
  // pipeline destroys every stage (the upstream body included) when one fails or the reader
  // stops early; the last stage then rejects its reader with the error.
  const out = pipeline([body, ...stages], () => {}) as unknown as Readable;
  return { status, headers: rest, body: asUpstreamBody(out, secrets), secrets, scrubEvent: (raw) => scrubEvent(raw, secrets) };
}

/**
 * What the gateway sends a request through (issue 10): one upstream speaking Anthropic's API
 * (`Upstream`), or one that translates to another platform (OpenAI Chat Completions) and answers
 * in Anthropic's shapes, so the metering never sees the difference.
 */
export interface UpstreamClient {
  /** `path` is Anthropic's (`/v1/messages`, `/v1/messages/count_tokens`); see `Upstream.post` */
  post(path: string, search: string, headers: IncomingHttpHeaders, body: Buffer | string, trace?: Record<string, string>): Promise<UpstreamResponse>;
  /** connections this client may open at most */
  readonly maxConnections: number;
  close(): Promise<void>;
  /** cuts every connection now (a shutdown whose grace ran out) */
  destroy(): Promise<void>;
}

/**
 * What every upstream client holds (`Upstream`, `OpenAIUpstream`): the upstream's origin and base
 * path, the secrets scrubbed from what goes up and from what comes back, and the connection pool
 * (`dispatcher`: the caller's, or an undici `Agent` of its own that `close` and `destroy` end).
 */
export class UpstreamConnection {
  readonly dispatcher: Dispatcher;
  readonly origin: string;
  /** the upstream URL's path, without trailing slashes */
  readonly basePath: string;
  /** the upstream key and `redact`: never sent on (headers, query) */
  readonly secrets: readonly string[];
  /**
   * What the upstream could echo: its own key only (the admin/finance tokens never go upstream,
   * and scrubbing them from answers would blank ordinary words that happen to match).
   */
  readonly outputSecrets: readonly string[];
  readonly options: UpstreamOptions;
  readonly #ownsDispatcher: boolean;
  #destroyed = false;

  constructor(options: UpstreamOptions, dispatcher?: Dispatcher) {
    this.options = options;
    const base = new URL(options.url);
    this.origin = base.origin;
    this.basePath = base.pathname.replace(/\/+$/, '');
    this.secrets = [options.apiKey, ...(options.redact ?? [])].filter((s): s is string => !!s);
    this.outputSecrets = options.apiKey ? [options.apiKey] : [];
    this.#ownsDispatcher = !dispatcher;
    this.dispatcher = dispatcher ?? new Agent({
      keepAliveTimeout: 30_000,
      connections: this.maxConnections,
      headersTimeout: options.timeoutMs,
      // between two body chunks; a stream that goes silent this long is dead
      bodyTimeout: Math.min(options.timeoutMs, 300_000),
    });
  }

  /** connections the pool may open to the upstream (`UPSTREAM_MAX_CONNECTIONS`) */
  get maxConnections(): number {
    return this.options.maxConnections ?? DEFAULT_UPSTREAM_CONNECTIONS;
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher && !this.#destroyed) await this.dispatcher.close();
  }

  /** Cuts every connection now: reads in flight fail. Only an `Agent` of its own. */
  async destroy(): Promise<void> {
    if (!this.#ownsDispatcher || this.#destroyed) return;
    this.#destroyed = true;
    await this.dispatcher.destroy().catch(() => {});
  }
}

export class Upstream implements UpstreamClient {
  readonly #conn: UpstreamConnection;

  constructor(options: UpstreamOptions, dispatcher?: Dispatcher) {
    this.#conn = new UpstreamConnection(options, dispatcher);
  }

  get maxConnections(): number {
    return this.#conn.maxConnections;
  }

  /**
   * POSTs to `<upstream>/<path><search>` (credential parameters stripped from `search`);
   * resolves with the body already decoded. Connection failures, and a response in an
   * encoding that cannot be decoded, become `upstream_error` (503).
   * `trace` (W3C `traceparent` of the upstream span) replaces any the client sent.
   */
  async post(
    path: string, search: string, headers: IncomingHttpHeaders, body: Buffer | string, trace?: Record<string, string>,
  ): Promise<UpstreamResponse> {
    const out = upstreamHeaders(headers, this.#conn.options.apiKey, this.#conn.secrets);
    if (trace?.traceparent) {
      delete out.tracestate;
      Object.assign(out, trace);
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#conn.dispatcher.request({
        origin: this.#conn.origin,
        path: this.#conn.basePath + path + upstreamSearch(search, this.#conn.secrets),
        method: 'POST',
        headers: out,
        body,
      });
    } catch (err) {
      throw gatewayError('upstream_error', 'Upstream provider unavailable', { cause: err });
    }
    try {
      return decoded(res.statusCode, res.headers, res.body, this.#conn.outputSecrets);
    } catch (err) {
      // Not worth reading: let undici read a little and then close the connection.
      res.body.dump().catch(() => {});
      throw err;
    }
  }

  close(): Promise<void> {
    return this.#conn.close();
  }

  /** Cuts every upstream connection now (a shutdown whose grace ran out): reads in flight fail. */
  destroy(): Promise<void> {
    return this.#conn.destroy();
  }
}

/** The query string of a request URL (`?beta=true`); `Upstream.post` strips credentials from it. */
export function searchOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? '' : url.slice(q);
}

export function header(res: UpstreamResponse, name: string): string | null {
  const v = res.headers[name];
  return typeof v === 'string' ? v : Array.isArray(v) ? (v[0] ?? null) : null;
}

/**
 * Whether a `content-type` value is an event stream: its media type (before any `;` parameter),
 * compared case-insensitively as RFC 9110 §8.3.1 says (`Text/Event-Stream; charset=utf-8` is one).
 */
export function isEventStream(contentType: string | null | undefined): boolean {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase() === 'text/event-stream';
}

/**
 * Reads an upstream error body and turns it into the error the client sees: `retry-after` and
 * `x-should-retry` kept, no other upstream header, credentials redacted from the message
 * (`upstreamErrorToGateway`).
 */
export async function upstreamErrorOf(res: UpstreamResponse): Promise<GatewayError> {
  const text = await res.body.text().catch(() => '');
  let json: unknown = undefined;
  try { json = JSON.parse(text); } catch { /* not JSON: keep the status only */ }
  return upstreamErrorToGateway(res.status, isAnthropicErrorBody(json) ? json : undefined, res.headers, { secrets: res.secrets });
}
