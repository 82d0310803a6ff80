// The distributed transport: @clickhouse/client over HTTP to a ClickHouse server.

import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import type { ClickHouseClient, ErrorLogParams, Logger, LogParams, WarnLogParams } from '@clickhouse/client';

/** Where the client's own warnings and errors go: a pino logger, or anything with its `warn`. */
export interface ClientLogSink {
  warn(obj: object, msg: string): void;
}

export interface HttpClickHouseOptions {
  /** e.g. `http://localhost:8123` */
  url: string;
  username?: string;
  password?: string;
  /** default database of the connection; the Warehouse always qualifies its tables anyway */
  database?: string;
  /**
   * The process's logger: the client's warnings and errors become one JSON line each there
   * (`module`, message, the error's message), where by default the client prints multi-line
   * text blocks to the console, in the middle of a JSON log. Unset: the client's default.
   */
  logger?: ClientLogSink;
  /** ms the client waits for a response before it gives up (default: the client's 30,000) */
  requestTimeoutMs?: number;
}

/**
 * A @clickhouse/client `Logger` class writing into `sink` (warn and error only; the client is at
 * WARN). Its errors become `warn` lines: they are a failed request the caller gets as a rejected
 * promise and reports itself (the warehouse sink: "event handler failed; redelivering").
 */
function loggerClass(sink: ClientLogSink): new () => Logger {
  const line = (p: LogParams & { err?: Error }) => ({ module: `@clickhouse/client ${p.module}`, ...(p.err ? { err: p.err.message } : {}) });
  return class implements Logger {
    trace(): void {}
    debug(): void {}
    info(): void {}
    warn(p: WarnLogParams): void { sink.warn(line(p), p.message); }
    error(p: ErrorLogParams): void { sink.warn(line(p), p.message); }
  };
}

export function createHttpClickHouse(opts: HttpClickHouseOptions): ClickHouseClient {
  return createClient({
    url: opts.url,
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
    ...(opts.database !== undefined ? { database: opts.database } : {}),
    ...(opts.requestTimeoutMs !== undefined ? { request_timeout: opts.requestTimeoutMs } : {}),
    ...(opts.logger !== undefined ? { log: { LoggerClass: loggerClass(opts.logger), level: ClickHouseLogLevel.WARN } } : {}),
  });
}
