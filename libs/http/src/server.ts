import Fastify, { type FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { installErrorHandling, requestIdOptions } from './errors.ts';
import { installTelemetry, type HttpTelemetry } from './telemetry.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** the JSON body as received, so a proxy can forward it byte for byte */
    rawBody?: Buffer;
  }
}

export interface HttpServerOptions {
  /** pino options, or false */
  logger?: object | boolean;
  bodyLimitBytes: number;
  trustProxy?: boolean;
  /** server spans (tracer) and request metrics plus `GET /metrics` (metrics); both optional */
  telemetry?: HttpTelemetry;
}

/**
 * The one HTTP server every role mounts its routes on: request ids, Anthropic-shaped errors,
 * and a JSON parser that keeps the raw bytes. Limits: body size (Anthropic's 32 MB by
 * default), headers (Node's 16 KB), idle keep-alive; no overall request timeout, because a
 * long generation legitimately streams for many minutes. With `telemetry`: a server span per
 * request, request metrics, and `GET /metrics`.
 */
export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimitBytes,
    trustProxy: options.trustProxy ?? false,
    keepAliveTimeout: 75_000,
    requestTimeout: 0,
    connectionTimeout: 0,
    forceCloseConnections: 'idle',
    ...requestIdOptions,
  });
  // First, so that its onRoute hook sees every route registered after it.
  if (options.telemetry) installTelemetry(app, options.telemetry);
  installErrorHandling(app);
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', 'text/plain'], { parseAs: 'buffer', bodyLimit: options.bodyLimitBytes },
    (request, body: Buffer, done) => {
      request.rawBody = body;
      if (body.length === 0) return done(null, undefined);
      try {
        done(null, JSON.parse(body.toString('utf8')));
      } catch {
        done(gatewayError('invalid_json', 'Request body is not valid JSON'), undefined);
      }
    });
  app.get('/health', async () => ({ status: 'ok' }));
  return app;
}
