import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
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

type LevelName = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type Bindings = Parameters<FastifyBaseLogger['child']>[0];
type ChildLoggerOptions = NonNullable<Parameters<FastifyBaseLogger['child']>[1]>;
/** A pino logger as far as `LazyChildLogger` reads it. */
type PinoLike = FastifyBaseLogger & { isLevelEnabled(level: string): boolean; bindings(): Bindings };

/**
 * A request's logger, made on first use: Fastify's default builds a pino child (bindings
 * serialized through the redaction) for every request, though at the usual levels (`warn`,
 * `error`) almost no request logs anything (issue 11: about 1 % of the request path's CPU).
 * Until a method of an enabled level (or `child`) is called, nothing is built; then it is
 * exactly `parent.child(bindings)`, so what a line says is unchanged. `parent` is the server's
 * pino logger.
 */
class LazyChildLogger {
  #parent: PinoLike;
  #bindings: Bindings;
  #real: PinoLike | undefined;

  constructor(parent: PinoLike, bindings: Bindings) {
    this.#parent = parent;
    this.#bindings = bindings;
  }

  #logger(): PinoLike {
    return (this.#real ??= this.#parent.child(this.#bindings) as PinoLike);
  }

  #log(level: LevelName, args: unknown[]): void {
    const target = this.#real ?? this.#parent;
    if (!target.isLevelEnabled(level)) return;
    (this.#logger()[level] as (...a: unknown[]) => void)(...args);
  }

  get level(): string {
    return (this.#real ?? this.#parent).level;
  }

  set level(level: string) {
    this.#logger().level = level;
  }

  isLevelEnabled(level: string): boolean {
    return (this.#real ?? this.#parent).isLevelEnabled(level);
  }

  fatal(...args: unknown[]): void { this.#log('fatal', args); }
  error(...args: unknown[]): void { this.#log('error', args); }
  warn(...args: unknown[]): void { this.#log('warn', args); }
  info(...args: unknown[]): void { this.#log('info', args); }
  debug(...args: unknown[]): void { this.#log('debug', args); }
  trace(...args: unknown[]): void { this.#log('trace', args); }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#logger().child(bindings, options);
  }

  bindings(): Bindings {
    return this.#logger().bindings();
  }
}

/**
 * Fastify's `childLoggerFactory`: a `LazyChildLogger` for the request's bindings, or pino's own
 * child at once when the route sets logger options (a route `logLevel`), which the lazy one
 * does not carry.
 */
export function lazyChildLoggerFactory(logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  if (Object.keys(options).length > 0 || typeof (logger as Partial<PinoLike>).isLevelEnabled !== 'function') return logger.child(bindings, options);
  return new LazyChildLogger(logger as PinoLike, bindings) as unknown as FastifyBaseLogger;
}
