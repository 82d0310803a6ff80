import { randomFillSync } from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { lenientDecode, looksLikeCredential, redactUrl } from './secrets.ts';
import { ERRORS, errorBody, gatewayError, isGatewayError, toGatewayError, type ErrorCode, type GatewayError } from '@tollgate/anthropic';

const ID_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ID_CODES = Buffer.from(ID_ALPHABET, 'latin1');
const ID_RANDOM_BYTES = 24;
/** Random bytes drawn from the CSPRNG 256 ids at a time: one call per 256 requests instead of one each. */
const idPool = Buffer.allocUnsafe(ID_RANDOM_BYTES * 256);
let idPoolAt = idPool.length;
/** The id being built: `req_` then 24 characters, read out as latin1 (ASCII). */
const idText = Buffer.from(`req_${'0'.repeat(ID_RANDOM_BYTES)}`, 'latin1');

/**
 * `req_` + 24 base62 characters: unique enough to be the usage event id across a fleet. Each
 * character is one CSPRNG byte mod 62 (as ever); the bytes come from a pooled `randomFillSync`
 * and the id is written into one buffer, so a request costs no crypto call and no string
 * concatenation (the request path's hot spot before, issue 11).
 */
export function newRequestId(): string {
  if (idPoolAt + ID_RANDOM_BYTES > idPool.length) {
    randomFillSync(idPool);
    idPoolAt = 0;
  }
  for (let i = 0; i < ID_RANDOM_BYTES; i++) idText[4 + i] = ID_CODES[idPool[idPoolAt + i]! % 62]!;
  idPoolAt += ID_RANDOM_BYTES;
  return idText.toString('latin1');
}

/** Fastify's own errors, in the catalogue's terms. */
function fromFastify(err: FastifyError): GatewayError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return gatewayError('request_too_large');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return gatewayError('invalid_json');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return gatewayError('invalid_request', 'Content-Type must be application/json (text/plain is read as JSON too)');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return gatewayError('invalid_request', 'Invalid Content-Length');
  }
  if (err.validation) return gatewayError('invalid_request', err.message);
  // Not every SyntaxError: the body parser answers bad JSON itself (parseJsonBody, 400
  // invalid_json naming where); one thrown later is the server's own fault (a reply of the
  // warehouse that does not parse), a 500, never the client's bad JSON.
  return undefined;
}

/**
 * The catalogue's answer a library error declares for itself: an error with a `gatewayCode`
 * naming a catalogue code (e.g. WarehouseUnavailableError of @tollgate/warehouse →
 * `warehouse_unavailable`) is answered with that code and the error's own message (such an
 * error's message is written for clients), plus `retry-after` when it has `retryAfterS`. This
 * keeps libraries free of HTTP types while their failures get their proper status.
 */
function fromDeclared(err: unknown): GatewayError | undefined {
  const code = (err as { gatewayCode?: unknown } | null)?.gatewayCode;
  if (typeof code !== 'string' || !Object.hasOwn(ERRORS, code)) return undefined;
  const retryAfter = (err as { retryAfterS?: unknown }).retryAfterS;
  return gatewayError(code as ErrorCode, (err as Error).message, {
    cause: err, ...(typeof retryAfter === 'number' && Number.isFinite(retryAfter) && retryAfter >= 0 ? { headers: { 'retry-after': String(retryAfter) } } : {}),
  });
}

/** The request failed because its client left while sending it (the body stream aborted or reset). */
function isClientAbort(err: unknown, request: FastifyRequest): boolean {
  const code = (err as { code?: unknown }).code;
  return (code === 'ECONNRESET' || code === 'ECONNABORTED' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as { message?: unknown }).message === 'aborted')
    && !request.raw.complete;
}

/**
 * Answers `err` as Anthropic's error body, its message without any credential the request's
 * path carried (`withoutPathSecrets`: an id parameter holding a key or the admin token, e.g.
 * "account <token> does not exist", is repeated as `[redacted]`).
 */
export function sendError(reply: FastifyReply, err: GatewayError): FastifyReply {
  if (err.headers) reply.headers(err.headers);
  const body = errorBody(err, String(reply.request.id));
  body.error.message = withoutPathSecrets(reply.request, err.message);
  return reply.code(err.status).type('application/json').send(body);
}

/**
 * `message` with every path segment of `request` that looks like a credential (or holds one of
 * the process's own, `installErrorHandling`'s `secrets`) written as `[redacted]`, as it came
 * in and percent-decoded: error bodies end up in clients' and proxies' logs.
 */
function withoutPathSecrets(request: FastifyRequest, message: string): string {
  const secrets = echoSecrets(request);
  const path = request.url.split('?', 1)[0]!;
  let out = message;
  for (const seg of path.split('/')) {
    if (seg === '') continue;
    const decoded = lenientDecode(seg);
    if (!looksLikeCredential(decoded, secrets)) continue;
    out = out.replaceAll(seg, '[redacted]');
    if (decoded !== seg && decoded !== '') out = out.replaceAll(decoded, '[redacted]');
  }
  return out;
}

/**
 * Request ids, the `request-id` response header, and one error handler that renders every
 * error in Anthropic's shape with a machine code. `secrets`: the process's own credentials
 * (admin and finance tokens, upstream key), redacted by value where a 404 repeats the path. Unknown errors are logged and shown as
 * `internal_error` without their message (it may carry internals).
 */
export function installErrorHandling(app: FastifyInstance, secrets: readonly string[] = []): void {
  (app as unknown as Record<symbol, readonly string[]>)[ECHO_SECRETS] = secrets;
  // A callback hook, not an async one: no promise and microtask hop per request (issue 11).
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    reply.header('request-id', request.id);
    done();
  });
  const known5xx = new KnownFailureLog();
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const known = isGatewayError(err) ? err : fromFastify(err) ?? fromDeclared(err);
    const gErr = known ?? toGatewayError(err);
    // A client that went away mid-upload (the body aborted, the socket reset) is routine: info.
    if (isClientAbort(err, request)) request.log.info({ code: (err as { code?: string }).code }, 'client aborted the request');
    // 500: something the gateway did not expect, known or not: an error line with its stack.
    else if (!known || gErr.status === 500) request.log.error({ err }, 'request failed');
    else if (gErr.status > 500) known5xx.note(request, gErr);
    return sendError(reply, gErr);
  });
  app.setNotFoundHandler((request, reply) => {
    sendError(reply, gatewayError('not_found', `${request.method} ${echoedPath(request)} does not exist`));
  });
}

/** Where `installErrorHandling` leaves the process's own credentials (child instances inherit it). */
const ECHO_SECRETS = Symbol('tollgate.echoSecrets');

/** The process's own credentials `installErrorHandling` was given, for the server `request` came to. */
function echoSecrets(request: FastifyRequest): readonly string[] {
  return (request.server as unknown as Record<symbol, readonly string[] | undefined>)[ECHO_SECRETS] ?? [];
}

/**
 * The request's path as an error message may repeat it to the caller: without the query, and
 * with any segment that looks like a credential (an `sk-…` key pasted into a path) or holds one
 * of the process's own (`installErrorHandling`'s `secrets`: an admin token put in a base URL's
 * path, whatever its shape) as `[redacted]`, as the access log writes it (`redactUrl`). Error
 * bodies end up in clients' logs.
 */
function echoedPath(request: FastifyRequest): string {
  const secrets = echoSecrets(request);
  return redactUrl(request.url.split('?', 1)[0]!, secrets);
}

/**
 * In a process whose roles do not serve `pattern` (a find-my-way wildcard such as `/admin/*`):
 * every path under it that this process has no route of its own for answers 404
 * `not_found_error` "<METHOD> <path>: paths under <prefix> are served by <servedBy>, not by this
 * one", so an operator or a client pointed at the wrong process of a distributed deployment
 * learns where to go instead of reading "does not exist" as a typo. It names the paths, not the
 * route: this process cannot know whether that process has one for this method and path (a
 * `PUT /admin/v1/usage` is "does not exist" there). Routes registered here win over the wildcard.
 * @param pattern a prefix ending in `/*`, e.g. `/admin/*`
 * @param servedBy the process that serves the paths, e.g. "a process running the control role"
 */
export function registerServedElsewhere(app: FastifyInstance, pattern: string, servedBy: string): void {
  const prefix = pattern.replace(/\*$/, '');
  registerNotHere(app, pattern, (head) => `${head}: paths under ${prefix} are served by ${servedBy}, not by this one`);
}

/**
 * Like `registerServedElsewhere`, for a process that serves some paths under `pattern` but not
 * others: every path under it without a route here answers 404 `not_found_error` "<METHOD>
 * <path> is not served by this process: <reason>" (e.g. a control process without a warehouse,
 * whose usage and billing routes are another process's).
 */
export function registerNotServedHere(app: FastifyInstance, pattern: string, reason: string): void {
  registerNotHere(app, pattern, (head) => `${head} is not served by this process: ${reason}`);
}

function registerNotHere(app: FastifyInstance, pattern: string, message: (head: string) => string): void {
  app.all(pattern, async (request) => {
    throw gatewayError('not_found', message(`${request.method} ${echoedPath(request)}`));
  });
}

/** How often one code of known 5xx answers is logged at most (ms). */
export const KNOWN_FAILURE_LOG_INTERVAL_MS = 1000;

/** Distinct (code, message) pairs the limiter tracks at most; past it, it starts over. */
const KNOWN_FAILURE_KINDS = 256;

/**
 * Known answers above 500 (`state_unavailable`, `overloaded`, `upstream_error`, …) are what an
 * outage looks like, the same for every request until it ends: per code and message, one `warn`
 * line at most every KNOWN_FAILURE_LOG_INTERVAL_MS, with the message the client got (already
 * free of credentials), its cause's message (no stack) and how many answers of that kind the
 * previous line left out (`repeated`). A Redis outage printed a stack trace per request before
 * (19,565 lines in 90 s). A 500 and errors the gateway does not know (bugs) are not counted
 * here: each gets an `error` line with its stack.
 */
class KnownFailureLog {
  #byKind = new Map<string, { next: number; left: number }>();

  note(request: FastifyRequest, err: GatewayError): void {
    const now = Date.now();
    const kind = `${err.code}\n${err.message}`;
    const seen = this.#byKind.get(kind);
    if (seen !== undefined && now < seen.next) {
      seen.left++;
      return;
    }
    const cause = (err as { cause?: unknown }).cause;
    request.log.warn({
      status: err.status, code: err.code, message: err.message, ...(cause instanceof Error ? { cause: cause.message } : {}),
      ...(seen !== undefined && seen.left > 0 ? { repeated: seen.left } : {}),
    }, `answered ${err.status} ${err.code}`);
    if (seen === undefined && this.#byKind.size >= KNOWN_FAILURE_KINDS) this.#byKind.clear();
    this.#byKind.set(kind, { next: now + KNOWN_FAILURE_LOG_INTERVAL_MS, left: 0 });
  }
}

export const requestIdOptions = {
  genReqId: () => newRequestId(),
  requestIdHeader: false as const,
};
