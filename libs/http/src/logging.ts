import type { FastifyRequest } from 'fastify';

/**
 * Query parameters that carry credentials in the wild (`?api_key=sk-…` from a misconfigured
 * client, `?access_token=` from OAuth habits). Matched case-insensitively, `-`/`_` alike.
 */
const CREDENTIAL_PARAMS = new Set(['api_key', 'key', 'apikey', 'x_api_key', 'access_token', 'token']);

/**
 * `url` (a request target: path and query) with the value of every credential-shaped query
 * parameter replaced by `[redacted]`; everything else byte for byte. For log lines: a customer
 * key sent as `?api_key=` must not end up in the logs.
 */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const parts = url.slice(q + 1).split('&').map((pair) => {
    const eq = pair.indexOf('=');
    let name = eq < 0 ? pair : pair.slice(0, eq);
    try {
      name = decodeURIComponent(name.replace(/\+/g, ' '));
    } catch { /* keep it raw */ }
    return CREDENTIAL_PARAMS.has(name.trim().toLowerCase().replace(/-/g, '_')) && eq >= 0
      ? `${pair.slice(0, eq)}=[redacted]`
      : pair;
  });
  return `${url.slice(0, q)}?${parts.join('&')}`;
}

/**
 * pino options shared by every process: secrets are redacted wherever they could appear
 * (request headers, credential-shaped query parameters of the logged URL, upstream headers,
 * config), so a log line never carries a credential. The `req` serializer is Fastify's own
 * (method, url, host, remote address and port) with the URL redacted.
 */
export function loggerOptions(level: string, name: string) {
  return {
    level,
    name,
    serializers: {
      req(request: FastifyRequest) {
        return {
          method: request.method,
          url: redactUrl(request.url),
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
