import { Agent, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { gatewayError, isAnthropicErrorBody, upstreamErrorToGateway, type GatewayError } from '@tollgate/anthropic';
import type { UpstreamOptions } from './deps.ts';

/**
 * Request headers that never reach the upstream: the customer's credentials (the upstream
 * credential is injected instead), cookies, hop-by-hop headers, and accept-encoding (usage is
 * read from the body on the side, so it must arrive uncompressed).
 */
const DROPPED = new Set([
  'host', 'connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'expect',
  'x-api-key', 'authorization', 'cookie', 'accept-encoding',
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip',
]);

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
  if (apiKey) out['x-api-key'] = apiKey;
  return out;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

export class Upstream {
  #options: UpstreamOptions;
  #dispatcher: Dispatcher;
  #ownsDispatcher: boolean;
  #origin: string;
  #basePath: string;

  constructor(options: UpstreamOptions, dispatcher?: Dispatcher) {
    this.#options = options;
    const base = new URL(options.url);
    this.#origin = base.origin;
    this.#basePath = base.pathname.replace(/\/+$/, '');
    this.#ownsDispatcher = !dispatcher;
    this.#dispatcher = dispatcher ?? new Agent({
      keepAliveTimeout: 30_000,
      connections: 512,
      headersTimeout: options.timeoutMs,
      // between two body chunks; a stream that goes silent this long is dead
      bodyTimeout: Math.min(options.timeoutMs, 300_000),
    });
  }

  /**
   * POSTs to `<upstream>/<path><search>`; connection failures become `upstream_error`.
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
    try {
      const res = await this.#dispatcher.request({
        origin: this.#origin,
        path: this.#basePath + path + search,
        method: 'POST',
        headers: out,
        body,
      });
      return { status: res.statusCode, headers: res.headers, body: res.body };
    } catch (err) {
      throw gatewayError('upstream_error', 'Upstream provider unavailable', { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }
}

/** The query string of a request URL (`?beta=true`), passed on as it came. */
export function searchOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? '' : url.slice(q);
}

export function header(res: UpstreamResponse, name: string): string | null {
  const v = res.headers[name];
  return typeof v === 'string' ? v : Array.isArray(v) ? (v[0] ?? null) : null;
}

/** Reads an upstream error body and turns it into the error the client sees (retry-after kept). */
export async function upstreamErrorOf(res: UpstreamResponse): Promise<GatewayError> {
  const text = await res.body.text().catch(() => '');
  let json: unknown = undefined;
  try { json = JSON.parse(text); } catch { /* not JSON: keep the status only */ }
  const retryAfter = header(res, 'retry-after');
  return upstreamErrorToGateway(res.status, isAnthropicErrorBody(json) ? json : undefined,
    retryAfter ? { 'retry-after': retryAfter } : undefined);
}
