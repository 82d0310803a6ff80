import type { FastifyRequest } from 'fastify';
import { redactUrl } from './secrets.ts';

export { redactUrl };

/**
 * pino options shared by every process: secrets are redacted wherever they could appear
 * (request headers, upstream headers, config, and the logged URL: every query parameter and
 * path segment that carries a credential by name or by value, see `secrets.ts`), so a log
 * line never carries a credential. The `req` serializer is Fastify's own (method, url, host,
 * remote address and port) with the URL redacted. `secrets`: the process's own credentials
 * (admin and finance tokens, upstream key), also looked for by value in URLs.
 */
export function loggerOptions(level: string, name: string, secrets: readonly string[] = []) {
  return {
    level,
    name,
    serializers: {
      req(request: FastifyRequest) {
        return {
          method: request.method,
          url: redactUrl(request.url, secrets),
          host: request.host,
          remoteAddress: request.ip,
          remotePort: request.socket?.remotePort,
        };
      },
    },
    redact: {
      paths: [
        'req.headers["x-api-key"]',
        'req.headers.authorization',
        'req.headers.cookie',
        'headers["x-api-key"]',
        'headers.authorization',
        '*.apiKey',
        '*.adminToken',
        '*.financeToken',
        '*.keyHashSecret',
        'key',
        'secret',
      ],
      censor: '[redacted]',
    },
  };
}
