import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import cors from '@fastify/cors';
import Fastify, { type FastifyInstance, type FastifyRequest, type preParsingHookHandler } from 'fastify';
import { CONTROL_CHARACTER, errorBody, gatewayError, type GatewayError } from '@tollgate/anthropic';
import { decodeBody, parseJsonBody } from './body.ts';
import { installErrorHandling, newRequestId, requestIdOptions, sendError } from './errors.ts';
import { checkQueryEncoding } from './params.ts';
import { installTelemetry, type HttpTelemetry } from './telemetry.ts';
import { lazyChildLoggerFactory } from './logging.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** the JSON body as received, with any content-encoding undone, so a proxy can forward it byte for byte */
    rawBody?: Buffer;
  }
}

export interface HttpServerOptions {
  /** pino options, or false */
  logger?: object | boolean;
  bodyLimitBytes: number;
  /** Fastify's `trustProxy`: false, true (every hop) or a comma list of proxy addresses/CIDRs */
  trustProxy?: boolean | string;
  /** server spans (tracer) and request metrics plus `GET /metrics` (metrics); both optional */
  telemetry?: HttpTelemetry;
  /**
   * ms to receive a whole request, headers and body, from its first byte (0 = unbounded);
   * default 120,000. Past it the client gets 408 `request_timeout` and the socket closes. It
   * never limits the response: a generation may stream for as long as it takes.
   */
  requestTimeoutMs?: number;
  /** ms to receive the request headers; default min(20,000, requestTimeoutMs) */
  headersTimeoutMs?: number;
  /** simultaneous connections; further ones are closed at once. Default `defaultMaxConnections()` */
  maxConnections?: number;
  /**
   * Simultaneous connections from one socket address; further ones from it are closed at once.
   * Default `defaultMaxConnectionsPerIp(maxConnections, trustProxy)`. Counted by the socket's
   * address: behind a reverse proxy (`trustProxy`) that is the proxy's, not the client's.
   */
  maxConnectionsPerIp?: number;
  /**
   * ms a connection may go without a complete request head before it can be reclaimed near the
   * cap (see `reclaimNearCap`); default UNSTARTED_RECLAIM_MS.
   */
  unstartedReclaimMs?: number;
  /**
   * Browser origins allowed to call the API (CORS), e.g. `['https://app.example.com']`, or `'*'`
   * for any; undefined = CORS off (no preflight route, no `access-control-*` headers).
   */
  corsOrigins?: readonly string[] | '*';
  /**
   * The process's own credentials (admin and finance tokens, upstream key): a 404 that repeats
   * the request's path writes any segment holding one as `[redacted]` (as the access log does).
   */
  secrets?: readonly string[];
}

/** Idle time of a keep-alive connection between requests (above common load balancers' 60 s). */
export const KEEP_ALIVE_TIMEOUT_MS = 75_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;
const DEFAULT_HEADERS_TIMEOUT_MS = 20_000;

/**
 * A connection cap under the process's open-file limit: half of the soft `RLIMIT_NOFILE` (each
 * proxied request holds a client socket and an upstream socket) less 256 for files, Kafka,
 * Redis and chDB, at most 10,000; 4,096 when the limit cannot be read (not Linux).
 */
export function defaultMaxConnections(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m && m[1] !== 'unlimited') return Math.max(64, Math.min(10_000, Math.floor((Number(m[1]) - 256) / 2)));
    if (m) return 10_000;
  } catch { /* not Linux */ }
  return 4096;
}

/** Response headers a browser script may read (CORS): ids and the rate-limit advice. */
export const CORS_EXPOSED_HEADERS = [
  'request-id', 'retry-after', 'x-should-retry',
  'anthropic-ratelimit-requests-limit', 'anthropic-ratelimit-requests-remaining', 'anthropic-ratelimit-requests-reset',
  'anthropic-ratelimit-tokens-limit', 'anthropic-ratelimit-tokens-remaining', 'anthropic-ratelimit-tokens-reset',
];
/**
 * Request headers the official SDKs send from a browser (`dangerouslyAllowBrowser`); a
 * preflight must name each one, including the SDK's `x-stainless-*` telemetry headers.
 */
export const CORS_ALLOWED_HEADERS = [
  'x-api-key', 'authorization', 'content-type', 'anthropic-version', 'anthropic-beta',
  'anthropic-dangerous-direct-browser-access',
  'x-stainless-arch', 'x-stainless-lang', 'x-stainless-os', 'x-stainless-package-version', 'x-stainless-retry-count',
  'x-stainless-runtime', 'x-stainless-runtime-version', 'x-stainless-timeout', 'x-stainless-helper-method', 'x-stainless-async',
];

/**
 * The share of `maxConnections` above which connections that hold the cap without using it are
 * closed as a new connection arrives. Past the cap Node drops new sockets at accept, so the
 * reclaim must happen before it is reached: at 90 % (and at least one below the cap).
 */
export const IDLE_RECLAIM_FRACTION = 0.9;

/**
 * ms after which a connection that has not sent a complete request head (silent, or trickling
 * header lines) may be closed near the cap. Any real client sends its head in one write well
 * within it; the headers timeout (20 s) still bounds such sockets when far from the cap.
 */
export const UNSTARTED_RECLAIM_MS = 2_000;

/**
 * The per-address connection cap when none is set: a quarter of `maxConnections`, at least 16,
 * so no single address can take the whole cap. Behind a reverse proxy (`trustProxy`) every
 * connection comes from the proxy, so the cap is `maxConnections` (off).
 */
export function defaultMaxConnectionsPerIp(maxConnections: number, trustProxy: boolean | string = false): number {
  return trustProxy !== false ? maxConnections : Math.min(maxConnections, Math.max(16, Math.floor(maxConnections / 4)));
}

/**
 * Each open connection of a server made by `createHttpServer`: `active` requests being answered
 * (each until its response's 'close', which comes once its bytes are written out), whether one
 * was `answered` or `started`, when it was accepted (`at`, performance.now() ms), and `read`, the
 * socket's bytesRead when it last had nothing in progress, or when `closeIdleConnections` last
 * saw it grow (`readAt`, ms; -Infinity: nothing read since the last answer); `request` and
 * `response`, the last request received and its answer.
 */
type ConnectionStates = Map<Socket, {
  answered: boolean; active: number; started: boolean; at: number; read: number; readAt: number; request?: IncomingMessage; response?: ServerResponse;
}>;

/**
 * ms a connection with bytes read since its last answer (a next request arriving, or a stray
 * CRLF) is kept open by `closeIdleConnections` after those bytes stop growing with no request
 * made of them.
 */
export const NEXT_REQUEST_WAIT_MS = 1_000;

/** Where `reclaimNearCap` leaves a server's `ConnectionStates`. */
const CONNECTIONS = Symbol('tollgate.connections');

/**
 * For a stop whose grace is over: closes every connection of `server` (made by
 * `createHttpServer`) that holds no request being handled, which the server's
 * `closeIdleConnections` leaves open: one whose answers are all given but still queued for a
 * client that stopped reading, one whose next request has only begun to arrive, and one whose
 * request's head or body is still arriving (a slow upload, a trickle: its handler has not run,
 * and Node's request timeout stops with the server). Requests received whole are left to the
 * caller. A server not made by `createHttpServer` is left as it is.
 */
export function closeUnhandledConnections(server: Server): void {
  const state = (server as Server & { [CONNECTIONS]?: ConnectionStates })[CONNECTIONS];
  for (const [socket, st] of state ?? []) {
    if (st.active === 0 || !st.request?.complete || st.response?.writableEnded) socket.destroy();
  }
}

/**
 * Keeps connections that are not making requests from holding the connection cap. Near the cap
 * (a new connection brings the count to the reclaim threshold) two kinds are closed:
 * - idle keep-alive: answered at least once, no request in progress (the client reconnects);
 * - unstarted: no complete request head after `unstartedMs` (silent sockets, slow headers).
 * The connection that just arrived is never closed. Besides, a connection from an address that
 * already holds `perIp` connections is closed at once. Node's own `closeIdleConnections()` is
 * not used: it closes every connection without a request, including ones a second old. It is
 * replaced on `server` (a stop calls it) by one that never cuts an answer still being written.
 */
function reclaimNearCap(server: Server, maxConnections: number, perIp: number, unstartedMs: number): void {
  const threshold = Math.max(1, Math.min(maxConnections - 1, Math.floor(maxConnections * IDLE_RECLAIM_FRACTION)));
  const state: ConnectionStates = new Map();
  (server as Server & { [CONNECTIONS]?: ConnectionStates })[CONNECTIONS] = state;
  const byAddress = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const held = byAddress.get(address) ?? 0;
    if (held >= perIp) {
      socket.destroy();
      return;
    }
    byAddress.set(address, held + 1);
    state.set(socket, { answered: false, active: 0, started: false, at: performance.now(), read: 0, readAt: -Infinity });
    socket.once('close', () => {
      state.delete(socket);
      const n = (byAddress.get(address) ?? 1) - 1;
      if (n <= 0) byAddress.delete(address);
      else byAddress.set(address, n);
    });
    if (state.size < threshold) return;
    const now = performance.now();
    for (const [s, st] of state) {
      if (s === socket || st.active > 0) continue;
      if (st.answered || (!st.started && now - st.at >= unstartedMs)) s.destroy();
    }
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const st = state.get(req.socket);
    if (!st) return;
    st.started = true;
    st.active++;
    st.request = req;
    st.response = res;
    res.once('close', () => {
      st.active--;
      st.answered = true;
      st.read = req.socket.bytesRead;
      st.readAt = -Infinity;
    });
  });
  // Node's own, which `server.close()` calls first (and so a stop), destroys a connection whose
  // last answer has ended but is still being written to a slow reader: the answer is cut short
  // (a large JSON body, a stream's last events) after it was charged. This one closes only a
  // connection with nothing in progress: no request being answered (a response's 'close' comes
  // once its bytes are written out), nothing left to write, no bytes of a next request read.
  // Bytes read after the last answer without a request following within NEXT_REQUEST_WAIT_MS
  // of the last of them (a stray CRLF, which HTTP lets a client send; an `Expect` Node answered
  // with 417 itself) do not keep a connection open.
  server.closeIdleConnections = () => {
    const now = performance.now();
    for (const [s, st] of state) {
      if (st.active > 0 || s.writableLength > 0) continue;
      if (s.bytesRead !== st.read) {
        st.read = s.bytesRead;
        st.readAt = now;
        continue;
      }
      if (now - st.readAt >= NEXT_REQUEST_WAIT_MS) s.destroy();
    }
  };
}

/**
 * The CORS headers of an answer made outside Fastify's hooks (pre-routing errors, errors
 * written to the socket), the same as @fastify/cors gives every other answer: for `'*'`, `*`;
 * for a list, the request's `origin` when listed. When the origin cannot be known (headers
 * that never finished parsing) and exactly one origin is configured, that one: a browser
 * compares it with its own, so naming it can only help the page that is allowed. Empty when
 * CORS is off or the origin is not allowed.
 */
export function corsHeadersFor(origins: readonly string[] | '*' | undefined, origin: string | undefined): Record<string, string> {
  if (origins === undefined) return {};
  const expose = { 'access-control-expose-headers': CORS_EXPOSED_HEADERS.join(', ') };
  if (origins === '*') return { 'access-control-allow-origin': '*', ...expose };
  const allowed = origin !== undefined ? (origins.includes(origin) ? origin : undefined) : origins.length === 1 ? origins[0] : undefined;
  return allowed === undefined ? {} : { 'access-control-allow-origin': allowed, vary: 'Origin', ...expose };
}

/** The `origin` header in the raw bytes of a request whose headers Node could not parse. */
function originInRaw(raw: Buffer | undefined): string | undefined {
  if (!raw) return undefined;
  const head = raw.toString('latin1', 0, Math.min(raw.length, 64 * 1024)).split('\r\n\r\n', 1)[0]!;
  const m = /\r\norigin:[ \t]*([^\r\n]*?)[ \t]*(?:\r\n|$)/i.exec(head);
  return m ? m[1] : undefined;
}

/**
 * An error written straight to a socket, for errors Node raises before (or instead of) a
 * request Fastify can answer: request timeout, oversized headers, unparsable HTTP. Carries the
 * CORS headers like every other answer. Always closes the connection.
 */
function writeSocketError(socket: Socket, err: GatewayError, headers: Record<string, string> = {}): void {
  // Like every other answer: the request id in a `request-id` header as well as in the body.
  const requestId = newRequestId();
  const body = JSON.stringify(errorBody(err, requestId));
  const extra = Object.entries({ 'request-id': requestId, ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${err.status} ${err.status === 408 ? 'Request Timeout' : err.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n`
    + `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`);
  socket.destroySoon();
}

/**
 * The one HTTP server every role mounts its routes on: request ids, Anthropic-shaped errors,
 * and a JSON parser that keeps the raw bytes (content-encoding undone; `parseJsonBody` refuses
 * deep nesting, non-UTF-8 bytes and repeated keys, so the value checked is the value every
 * reader of those bytes sees). Limits, against clients that hold sockets open (slowloris):
 * - headers must arrive within `headersTimeoutMs`, the whole request within
 *   `requestTimeoutMs` (Node's `server.requestTimeout`, which stops counting once the request
 *   is received, so responses stream as long as they need) → 408 and the socket closes;
 * - an answer sent before the request body was read (401 from an onRequest hook, 413) carries
 *   `connection: close` and the socket is closed instead of draining the body;
 * - idle keep-alive connections close after KEEP_ALIVE_TIMEOUT_MS; at most `maxConnections`
 *   connections at once, `maxConnectionsPerIp` from one address; near the cap, idle and
 *   unstarted connections are reclaimed (`reclaimNearCap`);
 * - body size (Anthropic's 32 MB by default), headers (Node's 16 KB → 431).
 * With `telemetry`: a server span per request, request metrics, and `GET /metrics`. With
 * `corsOrigins`: CORS for browser use of the SDKs (@fastify/cors).
 */
export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const requestTimeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const headersTimeout = options.headersTimeoutMs
    ?? (requestTimeout > 0 ? Math.min(DEFAULT_HEADERS_TIMEOUT_MS, requestTimeout) : DEFAULT_HEADERS_TIMEOUT_MS);
  const app = Fastify({
    logger: options.logger ?? false,
    // A request's pino child is built only if the request logs something (logging.ts).
    childLoggerFactory: lazyChildLoggerFactory,
    bodyLimit: options.bodyLimitBytes,
    trustProxy: options.trustProxy ?? false,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout,
    connectionTimeout: 0,
    forceCloseConnections: 'idle',
    // A request arriving while the server stops gets the catalogue's answer (refuseWhileStopping).
    return503OnClosing: false,
    // The router matches any parameter that fits in a request head; the 100-character limit is
    // checked after routing (`checkRequestTarget`), where the parameter's name is known.
    routerOptions: { maxParamLength: ROUTER_MAX_PARAM_CHARS },
    http: {
      headersTimeout,
      requestTimeout,
      // How often Node looks for expired requests (default 30 s, which would let a slow
      // socket live up to 30 s past its deadline).
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
    },
    clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket) {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      // Part of a response already went out on this socket: nothing sensible can follow it.
      const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
      if (!socket.writable || inFlight?.headersSent) {
        socket.destroy();
        return;
      }
      // The request's parsed head, when its headers arrived (a body that came too slowly).
      const incoming = (socket as Socket & { parser?: { incoming?: IncomingMessage } }).parser?.incoming;
      // Node raises one code for both deadlines: name the one that ran out.
      const gErr = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? gatewayError('request_timeout', incoming === undefined || incoming === null
          ? `The request headers were not received within ${headersTimeout} ms`
          : `The request was not received within ${requestTimeout} ms`)
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? gatewayError('headers_too_large')
          : gatewayError('invalid_request', 'Malformed HTTP request');
      this.log.debug({ code: err.code }, 'client error');
      // The request's origin: from its parsed headers, else from the bytes Node could not parse.
      const given = incoming?.headers.origin ?? originInRaw((err as NodeJS.ErrnoException & { rawPacket?: Buffer }).rawPacket);
      writeSocketError(socket, gErr, corsHeadersFor(options.corsOrigins, given));
    },
    // Errors Fastify raises before routing (bad percent-encoding, an over-long path
    // parameter): in the catalogue's shape like every other error, not Fastify's own.
    frameworkErrors(err, request, reply) {
      const gErr = err.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? gatewayError('invalid_request', `A path parameter is longer than ${ROUTER_MAX_PARAM_CHARS} characters`)
        : err.code === 'FST_ERR_BAD_URL'
          ? gatewayError('invalid_request', 'Malformed URL (bad percent-encoding)')
          : gatewayError('invalid_request', 'Malformed request');
      reply.header('request-id', request.id);
      // Answered before any hook ran, so @fastify/cors did not see it either.
      reply.headers(corsHeadersFor(options.corsOrigins, request.headers.origin));
      void sendError(reply, gErr);
    },
    ...requestIdOptions,
  });
  app.server.maxConnections = options.maxConnections ?? defaultMaxConnections();
  reclaimNearCap(app.server, app.server.maxConnections,
    options.maxConnectionsPerIp ?? defaultMaxConnectionsPerIp(app.server.maxConnections, options.trustProxy),
    options.unstartedReclaimMs ?? UNSTARTED_RECLAIM_MS);
  // First, so that its onRoute hook sees every route registered after it.
  if (options.telemetry) installTelemetry(app, options.telemetry);
  installErrorHandling(app, options.secrets ?? []);
  // From the stop's first step on (Fastify's preClose), a request that still reaches the server
  // on a connection opened before is refused (`refuseWhileStopping`), and every answer closes its
  // connection, so that a client does not send its next request on it as it is being closed.
  let stopping = false;
  app.addHook('preClose', (done) => {
    stopping = true;
    done();
  });
  // After onRequest (CORS headers, authentication: a caller without access learns nothing more),
  // before the body is read.
  app.addHook('preParsing', function (request, reply, payload, done) {
    if (stopping && !SERVED_WHILE_STOPPING.has(request.routeOptions.url ?? '')) refuseWhileStopping(request, done);
    else checkRequestTarget.call(this, request, reply, payload, done);
  });
  // An answer before the body was read (401, 413): close rather than drain a body nobody wants,
  // which is how slow-body sockets would otherwise stay open.
  // A callback hook, not an async one: no promise and microtask hop per request (issue 11).
  app.addHook('onSend', (request, reply, payload, done) => {
    if (stopping || !request.raw.complete) reply.header('connection', 'close');
    done(null, payload);
  });
  if (options.corsOrigins !== undefined) installCors(app, options.corsOrigins);
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', 'text/plain'], { parseAs: 'buffer', bodyLimit: options.bodyLimitBytes },
    (request, received: Buffer, done) => {
      const encoding = request.headers['content-encoding'];
      const parse = (body: Buffer) => {
        request.rawBody = body;
        let parsed: unknown;
        try {
          parsed = parseJsonBody(body);
        } catch (err) {
          return done(err as Error, undefined);
        }
        done(null, parsed);
      };
      // An uncompressed body (nearly every request) is parsed at once, without a promise's hop.
      if (encoding === undefined) parse(received);
      else decodeBody(received, encoding, options.bodyLimitBytes).then(parse, (err: unknown) => done(err as Error, undefined));
    });
  // Liveness: the process answers HTTP. Readiness: every check registered with
  // `addReadinessCheck` finds nothing wrong (README, Observability: "Health").
  app.get(HEALTH_PATH, async () => ({ status: 'ok' }));
  app.get(READY_PATH, async (_request, reply) => {
    const reasons = await notReadyReasons(app);
    if (reasons.length > 0) reply.code(503).header('retry-after', '2');
    return { status: reasons.length > 0 ? 'not_ready' : 'ready', reasons };
  });
  return app;
}

/** Liveness probe path: 200 `{"status":"ok"}` while the process serves HTTP at all. */
export const HEALTH_PATH = '/health';
/**
 * Readiness probe path: 200 `{"status":"ready","reasons":[]}`, or 503
 * `{"status":"not_ready","reasons":[…]}` (one short sentence per failed check) with `retry-after: 2`.
 */
export const READY_PATH = '/ready';

/**
 * One readiness check: the reasons this process should get no traffic now (empty: none). A
 * check that throws counts as its message; one that takes longer than READINESS_CHECK_TIMEOUT_MS
 * counts as "<name>: no answer within … ms", so a probe never hangs on a dead dependency.
 */
export type ReadinessCheck = () => Promise<readonly string[]> | readonly string[];
/** ms a readiness check may take before it counts as failed (below Kubernetes' 1 s probe default). */
export const READINESS_CHECK_TIMEOUT_MS = 800;
const readinessChecks = new WeakMap<FastifyInstance, Array<{ name: string; check: ReadinessCheck }>>();

/** Registers a readiness check on a server made by `createHttpServer`; `name` prefixes its timeout and error reasons. */
export function addReadinessCheck(app: FastifyInstance, name: string, check: ReadinessCheck): void {
  let list = readinessChecks.get(app);
  if (!list) readinessChecks.set(app, list = []);
  list.push({ name, check });
}

async function notReadyReasons(app: FastifyInstance): Promise<string[]> {
  const checks = readinessChecks.get(app) ?? [];
  const results = await Promise.all(checks.map(async ({ name, check }) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string[]>((resolve) => {
      timer = setTimeout(() => resolve([`${name}: no answer within ${READINESS_CHECK_TIMEOUT_MS} ms`]), READINESS_CHECK_TIMEOUT_MS);
    });
    try {
      return await Promise.race([Promise.resolve().then(check), timeout]);
    } catch (err) {
      return [`${name}: ${err instanceof Error ? err.message : String(err)}`];
    } finally {
      clearTimeout(timer);
    }
  }));
  return results.flat();
}

/** Most characters a path parameter (`:id`, `:month`, …) may have; longer is a 400 naming it. */
export const MAX_PATH_PARAM_CHARS = 100;
/** What the router itself matches (a request head is at most 16 KB, so no parameter reaches it). */
const ROUTER_MAX_PARAM_CHARS = 16_384;

/** The message of a request refused because its process is stopping (503 `overloaded`). */
export const SHUTTING_DOWN_MESSAGE = 'This gateway is shutting down and did not take the request; retry it';

/** ms a refused request's body is read for, at most, before the refusal is sent (`refuseWhileStopping`). */
export const STOPPING_DRAIN_MS = 1_000;

/** Routes answered as usual while the server stops: the probes (/ready says why it is not ready). */
const SERVED_WHILE_STOPPING = new Set([HEALTH_PATH, READY_PATH]);

/**
 * A request that reached a stopping server: 503 `overloaded` in Anthropic's shape
 * (`SHUTTING_DOWN_MESSAGE`), with its request id, CORS headers (their hook has run) and
 * `connection: close`; the client's SDK retries a 503 on a new connection, which the load
 * balancer sends to another process. Nothing of it is handled. Its body is read and dropped
 * first, for at most STOPPING_DRAIN_MS: a socket closed with bytes unread is reset, and the client
 * would see the reset instead of the answer; a body slower than that (a trickle) is not waited
 * for. (Fastify's own answer, `return503OnClosing`, is off: a bare `{"error":"Service
 * Unavailable"}` without any of that.)
 */
function refuseWhileStopping(request: FastifyRequest, done: (err: Error) => void): void {
  const refusal = gatewayError('overloaded', SHUTTING_DOWN_MESSAGE);
  if (request.raw.complete) return done(refusal);
  let sent = false;
  const send = () => {
    if (sent) return;
    sent = true;
    clearTimeout(timer);
    done(refusal);
  };
  const timer = setTimeout(send, STOPPING_DRAIN_MS);
  request.raw.once('end', send);
  request.raw.once('close', send);
  request.raw.resume();
}

/**
 * The request target's parts that routing took as given, checked for every route of every
 * service after the onRequest hooks (CORS, authentication: a caller without access learns
 * nothing more) and before the body is read (a refused upload is not read, decompressed and
 * parsed first), each a 400 `invalid_request`:
 * - every path parameter of the matched route (after percent-decoding) is at most
 *   MAX_PATH_PARAM_CHARS characters and has no control character (`%00`, `%0A`, `%7F`, `%C2%85`);
 *   the message starts with the parameter's name (`id: is 180 characters long; …`,
 *   `id: contains a control character; …`) like every other bad parameter. Such an id cannot
 *   exist, so it is the client's mistake, not a 404;
 * - the query string is well-formed percent-encoding of UTF-8 (`checkQueryEncoding`), on the
 *   gateway's routes too, whose query is forwarded upstream.
 */
const checkRequestTarget: preParsingHookHandler = (request, _reply, payload, done) => {
  // A callback hook, not an async one: no promise and microtask hop per request (issue 11).
  const params = request.params;
  if (typeof params === 'object' && params !== null) {
    for (const name in params) {
      if (!Object.hasOwn(params, name)) continue;
      const value = (params as Record<string, unknown>)[name];
      // '*' is a wildcard's rest of the path (the simulator, proxies), not an identifier
      if (name === '*' || typeof value !== 'string') continue;
      if (value.length > MAX_PATH_PARAM_CHARS) {
        done(gatewayError('invalid_request', `${name}: is ${value.length} characters long; a path parameter is at most ${MAX_PATH_PARAM_CHARS}`));
        return;
      }
      if (CONTROL_CHARACTER.test(value)) {
        done(gatewayError('invalid_request', `${name}: contains a control character; a path parameter has none`));
        return;
      }
    }
  }
  try {
    checkQueryEncoding(request.raw.url ?? '');
  } catch (err) {
    done(err as Error);
    return;
  }
  done(null, payload);
};

/**
 * CORS for the official SDKs in a browser (`dangerouslyAllowBrowser`, which sends
 * `anthropic-dangerous-direct-browser-access: true`): preflights answered with 204 and the
 * allowed headers, responses carry `access-control-allow-origin` for configured origins.
 * Routes that hijack the reply (SSE) write their own head, so the CORS headers are also set on
 * the raw response before the handler runs; Node merges them into that head.
 */
function installCors(app: FastifyInstance, origins: readonly string[] | '*'): void {
  app.register(cors, {
    origin: origins === '*' ? '*' : [...origins],
    methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    maxAge: 86_400,
    strictPreflight: false,
  });
  app.addHook('preHandler', async (_request, reply) => {
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if ((name.startsWith('access-control-') || name === 'vary') && value !== undefined) reply.raw.setHeader(name, value as string);
    }
  });
}
