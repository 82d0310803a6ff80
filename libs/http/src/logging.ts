/**
 * pino options shared by every process: secrets are redacted wherever they could appear
 * (request headers, upstream headers, config), so a log line never carries a credential.
 */
export function loggerOptions(level: string, name: string) {
  return {
    level,
    name,
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
