import { Agent, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { pipeline, Transform, type Readable } from 'node:stream';
import { arrayBuffer as readArrayBuffer, text as readText } from 'node:stream/consumers';
import {
  constants as zlibConstants, createBrotliDecompress, createGunzip, createInflate, createInflateRaw, createZstdDecompress,
} from 'node:zlib';
import { gatewayError, isAnthropicErrorBody, upstreamErrorToGateway, type GatewayError } from '@tollgate/anthropic';
import { stripCredentialParams } from '@tollgate/http';
import type { UpstreamOptions } from './deps.ts';

/** Connections to the upstream when `UpstreamOptions.maxConnections` is not set. */
export const DEFAULT_UPSTREAM_CONNECTIONS = 512;

/**
 * Request headers that never reach the upstream: the customer's credentials (the upstream
 * credential is injected instead), cookies, hop-by-hop headers, accept-encoding (replaced by
 * `identity`) and content-encoding (the HTTP parser has already decoded a compressed request
 * body, so the bytes forwarded are always identity).
 */
const DROPPED = new Set([
  'host', 'connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'expect',
  'x-api-key', 'authorization', 'cookie', 'accept-encoding', 'content-encoding',
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip',
]);

/**
 * The headers sent upstream for a client request: the client's own minus `DROPPED` and any
 * header its `connection` lists, plus `content-type: application/json`, a default
 * `anthropic-version`, `accept-encoding: identity` (usage is read from the body on the side,
 * so it should arrive uncompressed; whatever arrives anyway is decoded) and the upstream key.
 */
export function upstreamHeaders(incoming: IncomingHttpHeaders, apiKey: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const connectionListed = new Set(
    String(incoming.connection ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean),
  );
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || DROPPED.has(name) || connectionListed.has(name)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
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
  text(): Promise<string>;
  arrayBuffer(): Promise<ArrayBuffer>;
  /** reads and discards the rest */
  dump(): Promise<void>;
  /**
   * Stops reading and closes the upstream connection (a pending read ends): for a stream whose
   * answer is over while the upstream keeps the connection open. Idempotent.
   */
  cancel(): void;
}

export interface UpstreamResponse {
  status: number;
  /** the upstream's headers; `content-encoding` and `content-length` removed once decoded */
  headers: Record<string, string | string[] | undefined>;
  body: UpstreamBody;
  /** credentials of the gateway itself, to be redacted from anything the upstream echoes */
  secrets: readonly string[];
}

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

function asUpstreamBody(stream: Readable): UpstreamBody {
  return {
    text: () => readText(stream),
    arrayBuffer: () => readArrayBuffer(stream),
    dump: async () => { for await (const _ of stream) { /* discard */ } },
    cancel: () => { stream.destroy(); },
    [Symbol.asyncIterator]: () => stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>,
  };
}

/**
 * The response with its body decoded: every caller (messages JSON and SSE, count_tokens,
 * error bodies) reads identity bytes, and the stale `content-encoding` / `content-length`
 * headers are gone.
 */
function decoded(status: number, headers: UpstreamResponse['headers'], body: Readable, secrets: readonly string[]): UpstreamResponse {
  const raw = headers['content-encoding'];
  const contentEncoding = Array.isArray(raw) ? raw.join(',') : raw ?? '';
  // 204/304 and declared-empty bodies have no bytes to decode (a decoder would call them truncated).
  const empty = status === 204 || status === 304 || headers['content-length'] === '0';
  const decoders = empty ? [] : decodersFor(contentEncoding);
  if (decoders.length === 0) {
    return { status, headers, body: asUpstreamBody(body), secrets };
  }
  const { 'content-encoding': _ce, 'content-length': _cl, ...rest } = headers;
  const stages = decoders.map((d) => d());
  // pipeline destroys every stage (the upstream body included) when one fails or the reader
  // stops early; the last stage then rejects its reader with the error.
  const out = pipeline([body, ...stages], () => {}) as unknown as Readable;
  return { status, headers: rest, body: asUpstreamBody(out), secrets };
}

export class Upstream {
  #options: UpstreamOptions;
  #dispatcher: Dispatcher;
  #ownsDispatcher: boolean;
  #origin: string;
  #basePath: string;
  #secrets: readonly string[];

  constructor(options: UpstreamOptions, dispatcher?: Dispatcher) {
    this.#options = options;
    const base = new URL(options.url);
    this.#origin = base.origin;
    this.#basePath = base.pathname.replace(/\/+$/, '');
    this.#secrets = [options.apiKey, ...(options.redact ?? [])].filter((s): s is string => !!s);
    this.#ownsDispatcher = !dispatcher;
    this.#dispatcher = dispatcher ?? new Agent({
      keepAliveTimeout: 30_000,
      connections: this.maxConnections,
      headersTimeout: options.timeoutMs,
      // between two body chunks; a stream that goes silent this long is dead
      bodyTimeout: Math.min(options.timeoutMs, 300_000),
    });
  }

  /** connections the pool may open to the upstream (`UPSTREAM_MAX_CONNECTIONS`) */
  get maxConnections(): number {
    return this.#options.maxConnections ?? DEFAULT_UPSTREAM_CONNECTIONS;
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
    const out = upstreamHeaders(headers, this.#options.apiKey);
    if (trace?.traceparent) {
      delete out.tracestate;
      Object.assign(out, trace);
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#dispatcher.request({
        origin: this.#origin,
        path: this.#basePath + path + upstreamSearch(search, this.#secrets),
        method: 'POST',
        headers: out,
        body,
      });
    } catch (err) {
      throw gatewayError('upstream_error', 'Upstream provider unavailable', { cause: err });
    }
    try {
      return decoded(res.statusCode, res.headers, res.body, this.#secrets);
    } catch (err) {
      // Not worth reading: let undici read a little and then close the connection.
      res.body.dump().catch(() => {});
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
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
