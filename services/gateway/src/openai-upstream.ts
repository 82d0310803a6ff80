// Platform `openai` (issue 10, outcome 4): an upstream that speaks OpenAI Chat Completions,
// behind the same `UpstreamClient` interface as an Anthropic upstream. Requests are translated
// on the way out and answers on the way back (@tollgate/openai-compat), so the gateway's
// metering, holds and relays see exactly what an Anthropic upstream would have sent.
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { gatewayError, isRecord } from '@tollgate/anthropic';
import {
  anthropicErrorOf, anthropicSseFromOpenAI, fromOpenAICompletion, openAIErrorInAnswer, openAIErrorToAnthropic, toOpenAIRequest, TranslationError,
  type OpenAIChatCompletion, type ResponseContext,
} from '@tollgate/openai-compat';
import type { UpstreamOptions } from './deps.ts';
import { JsonValueEnd } from './upstream-body.ts';
import {
  asUpstreamBody, decoded, isEventStream, upstreamHeaders, UpstreamConnection, type UpstreamClient, type UpstreamResponse,
} from './upstream.ts';

/** The message of the 404 `count_tokens` answers on this platform (seed reference wording). */
export const COUNT_TOKENS_UNSUPPORTED = 'Token counting is not supported for this platform';

/**
 * Refuses, before any hold, a Messages request that platform `openai` cannot serve faithfully
 * (`toOpenAIRequest`'s refusals: server tools, PDF documents, …), so the client is told at the
 * edge and nothing is held or sent. Throws `invalid_request` (400) whose message starts with the
 * field's path (`tools.0: …`).
 */
export function checkTranslatable(body: object): void {
  try {
    toOpenAIRequest(body as Record<string, unknown>);
  } catch (err) {
    if (err instanceof TranslationError) throw gatewayError('invalid_request', err.message);
    throw err;
  }
}

/** Client headers that still mean something to an OpenAI upstream: trace context and the simulator's directives. */
const KEPT = (name: string) => name === 'traceparent' || name === 'tracestate' || name.startsWith('x-sim-');

/**
 * `UpstreamClient` for an OpenAI Chat Completions upstream (`UpstreamOptions.url` is its base URL
 * including the version, e.g. `https://api.openai.com/v1`; the key goes as `Authorization: Bearer`).
 * - `/v1/messages` → `POST <url>/chat/completions` (`toOpenAIRequest`); a request the platform
 *   cannot serve (a server tool, a PDF…) is answered 400 `invalid_request_error` naming the field,
 *   nothing sent upstream.
 * - 2xx JSON → an Anthropic Message (`fromOpenAICompletion`); 2xx SSE → Anthropic SSE events
 *   (`anthropicSseFromOpenAI`), translated as chunks arrive; a 2xx JSON `{"error": …}` → the
 *   Anthropic error body (`anthropicErrorOf`: an upstream error, as a 2xx `type: "error"` is on
 *   the Anthropic path); an unreadable JSON body is passed on as is (the gateway records `no_usage`). A 2xx returns at its headers: the body is read and
 *   translated as the caller reads it, so read errors are the caller's (never a failover), and a
 *   JSON body ends when its top-level value closes (`JsonValueEnd`).
 * - errors → Anthropic's error shape and status (`openAIErrorToAnthropic`), `retry-after` kept.
 * - `/v1/messages/count_tokens` → 404 `not_found_error` `COUNT_TOKENS_UNSUPPORTED`.
 * The answer's `model` is the request's (the name the gateway sent), `request-id` the upstream's
 * `x-request-id`. Connection failures throw `upstream_error` (503), as `Upstream.post` does.
 */
export class OpenAIUpstream implements UpstreamClient {
  readonly #conn: UpstreamConnection;

  constructor(options: UpstreamOptions, dispatcher?: Dispatcher) {
    this.#conn = new UpstreamConnection(options, dispatcher);
  }

  get maxConnections(): number {
    return this.#conn.maxConnections;
  }

  /** A response made here (no upstream call): `json` as the body, with `status`. */
  #answer(status: number, json: unknown, headers: Record<string, string> = {}): UpstreamResponse {
    const bytes = Buffer.from(JSON.stringify(json), 'utf8');
    return this.#response(status, { 'content-type': 'application/json', ...headers }, Readable.from([bytes]));
  }

  #response(status: number, headers: UpstreamResponse['headers'], body: Readable): UpstreamResponse {
    return decoded(status, headers, body, this.#conn.outputSecrets);
  }

  async post(
    path: string, _search: string, headers: IncomingHttpHeaders, body: Buffer | string, trace?: Record<string, string>,
  ): Promise<UpstreamResponse> {
    if (path === '/v1/messages/count_tokens') {
      return this.#answer(404, { type: 'error', error: { type: 'not_found_error', message: COUNT_TOKENS_UNSUPPORTED } });
    }
    if (path !== '/v1/messages') {
      return this.#answer(404, { type: 'error', error: { type: 'not_found_error', message: `${path} is not supported for this platform` } });
    }
    let parsed: unknown;
    try { parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8')); } catch { parsed = undefined; }
    if (!isRecord(parsed)) {
      return this.#answer(400, { type: 'error', error: { type: 'invalid_request_error', message: 'request body: expected a JSON object' } });
    }
    let translated;
    try {
      translated = toOpenAIRequest(parsed);
    } catch (err) {
      if (!(err instanceof TranslationError)) throw err;
      return this.#answer(400, { type: 'error', error: { type: 'invalid_request_error', message: err.message } });
    }
    const ctx: ResponseContext = {
      model: String(parsed.model),
      stopSequences: Array.isArray(parsed.stop_sequences) ? parsed.stop_sequences.map(String) : [],
    };
    const kept = Object.fromEntries(Object.entries(upstreamHeaders(headers, undefined, this.#conn.secrets)).filter(([k]) => KEPT(k)));
    if (trace?.traceparent) {
      delete kept.tracestate;
      Object.assign(kept, trace);
    }
    const out: Record<string, string> = {
      ...kept,
      'content-type': 'application/json',
      'accept-encoding': 'identity',
      accept: translated.request.stream ? 'text/event-stream' : 'application/json',
    };
    if (this.#conn.options.apiKey) out.authorization = `Bearer ${this.#conn.options.apiKey}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#conn.dispatcher.request({
        origin: this.#conn.origin, path: `${this.#conn.basePath}/chat/completions`, method: 'POST', headers: out,
        body: JSON.stringify(translated.request),
      });
    } catch (err) {
      throw gatewayError('upstream_error', 'Upstream provider unavailable', { cause: err });
    }
    let raw: UpstreamResponse;
    try {
      raw = decoded(res.statusCode, res.headers, res.body, this.#conn.outputSecrets);
    } catch (err) {
      res.body.dump().catch(() => {});
      throw err;
    }
    const upstreamId = res.headers['x-request-id'];
    const requestId: Record<string, string> = typeof upstreamId === 'string' ? { 'request-id': upstreamId } : {};
    const contentType = String(res.headers['content-type'] ?? '');
    if (raw.status < 200 || raw.status >= 300) {
      const text = await raw.body.text().catch(() => '');
      let json: unknown;
      try { json = JSON.parse(text); } catch { json = undefined; }
      const mapped = openAIErrorToAnthropic(raw.status, json);
      const retry: Record<string, string> = {};
      for (const h of ['retry-after', 'x-should-retry']) {
        const v = res.headers[h];
        if (typeof v === 'string') retry[h] = v;
      }
      return this.#answer(mapped.status, mapped.body, { ...requestId, ...retry });
    }
    if (isEventStream(contentType)) {
      const inner = raw.body;
      const relay = async function* () {
        try { yield* anthropicSseFromOpenAI(inner, ctx); } finally { inner.cancel(); }
      };
      const stream = Readable.from(relay(), { objectMode: false });
      return this.#response(raw.status, { 'content-type': 'text/event-stream; charset=utf-8', ...requestId }, stream);
    }
    // Read after `post` returns, by whoever reads the body (the gateway's JSON loop), never here:
    // `post` runs inside the pool's attempt loop, and a 2xx is the answer (no failover after it).
    // A body cut mid-way then fails that read (503 upstream_error, as on an Anthropic upstream),
    // and the answer is over when its top-level object closes, not when the connection does.
    const inner = raw.body;
    const outputSecrets = this.#conn.outputSecrets;
    const translate = async function* () {
      const chunks: Buffer[] = [];
      const end = new JsonValueEnd();
      try {
        for await (const chunk of inner) {
          chunks.push(Buffer.from(chunk as Uint8Array));
          if (end.push(chunk as Uint8Array)) break;
        }
      } finally {
        inner.cancel();
      }
      const text = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try { json = JSON.parse(text); } catch { json = undefined; }
      // An error in a 2xx body (some OpenAI-compatible servers answer errors with a 200): the
      // Anthropic error body, which the gateway treats as any upstream error (never relayed as is).
      const failure = isRecord(json) ? openAIErrorInAnswer(json) : undefined;
      if (failure !== undefined) yield Buffer.from(JSON.stringify(anthropicErrorOf(failure)), 'utf8');
      // Not a completion: passed on as it came, so the gateway's own checks (no_usage) apply.
      else if (!isRecord(json) || !Array.isArray(json.choices)) yield Buffer.from(text, 'utf8');
      else yield Buffer.from(JSON.stringify(fromOpenAICompletion(json as unknown as OpenAIChatCompletion, ctx)), 'utf8');
    };
    return decoded(raw.status, { 'content-type': contentType || 'application/json', ...requestId }, Readable.from(translate(), { objectMode: false }), outputSecrets);
  }

  close(): Promise<void> {
    return this.#conn.close();
  }

  /** Cuts every upstream connection now (a shutdown whose grace ran out): reads in flight fail. */
  destroy(): Promise<void> {
    return this.#conn.destroy();
  }
}
