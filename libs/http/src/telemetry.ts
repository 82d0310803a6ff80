import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  extractContext, SpanKind, SpanStatusCode, withSpan, type Metrics, type Span, type Tracer,
} from '@tollgate/telemetry';
import { redactUrl } from './secrets.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** the server span of this request (only while tracing is on) */
    span?: Span;
    /** set by a route that knows them: the catalog model id and the stream flag, for metrics */
    observed?: { model: string; stream: boolean };
  }
}

export interface HttpTelemetry {
  tracer?: Tracer;
  metrics?: Metrics;
  /**
   * The process's own credentials (admin and finance tokens, upstream key), also looked for by
   * value in the span's `url.path`, as `loggerOptions` does for the logged URL.
   */
  secrets?: readonly string[];
}

/** Scrapes and health checks are noise in traces. */
const UNTRACED = new Set(['/metrics', '/health', '/ready']);

/**
 * The server span and the request metrics of every route, and `GET /metrics`. Both end on the
 * socket's `close`, which fires whether the response finished, the client went away, or the
 * route hijacked the reply (SSE streams), unlike Fastify's `onResponse`.
 *
 * The span is made the active context of the route handler by wrapping each handler as it is
 * registered (`onRoute`), so every span the handler starts, across awaits, is its child.
 */
export function installTelemetry(app: FastifyInstance, t: HttpTelemetry): void {
  const { tracer, metrics } = t;
  const secrets = t.secrets ?? [];
  if (!tracer && !metrics) return;
  if (tracer) {
    app.addHook('onRoute', (route) => {
      if (UNTRACED.has(route.url)) return;
      const handler = route.handler;
      route.handler = function traced(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
        const span = request.span;
        return span ? withSpan(span, () => handler.call(this, request, reply)) : handler.call(this, request, reply);
      };
    });
  }

  // A callback hook, not an async one: no promise and microtask hop per request (issue 11).
  app.addHook('onRequest', (request, reply, done) => {
    const startedAt = performance.now();
    const route = request.routeOptions.url ?? 'unmatched';
    let span: Span | undefined;
    if (tracer && !UNTRACED.has(route)) {
      // An incoming traceparent joins the caller's trace, as any OTel HTTP server does.
      span = tracer.startSpan(`${request.method} ${route}`, {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': request.method,
          'http.route': route,
          // Redacted as the log line's URL is: a client may put a key in the path (spans are exported).
          'url.path': redactUrl(request.url.split('?', 1)[0]!, secrets),
          'tollgate.request.id': request.id,
        },
      }, extractContext(request.headers));
      request.span = span;
      const traceId = span.spanContext().traceId;
      request.log = request.log.child({ trace_id: traceId });
    }
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode;
      const aborted = !reply.raw.writableFinished;
      if (span) {
        span.setAttribute('http.response.status_code', status);
        if (aborted) span.setAttribute('tollgate.client_aborted', true);
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      }
      if (metrics) {
        const o = request.observed;
        metrics.request(route, status, o?.model ?? '', o?.stream ?? false, (performance.now() - startedAt) / 1000);
      }
    });
    done();
  });

  if (metrics) {
    // Unauthenticated, like most /metrics endpoints: that is why no label carries an account
    // or key id. Put it behind the network policy that guards your other internal ports.
    app.get('/metrics', async (_request, reply) => {
      const text = await metrics.scrape();
      return reply.type(metrics.contentType).send(text);
    });
  }
}
