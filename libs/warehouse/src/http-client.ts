// The distributed transport: @clickhouse/client over HTTP to a ClickHouse server.

import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import type { ClickHouseClient, ErrorLogParams, Logger, LogParams, ResponseHeaders, WarnLogParams } from '@clickhouse/client';

/**
 * An answer at the ClickHouse server's address that is not the server's (a proxy or load
 * balancer answering for it): a failed response whose body is not a ClickHouse exception (a
 * 502/503/504 page, an auth proxy's 401), a successful one without the `X-ClickHouse-Query-Id`
 * header every ClickHouse answer carries (a proxy's 200 page, whose body would read as no rows,
 * and would let an INSERT count as done), or a body that does not parse. The message says what
 * came (the body's first line, quoted; for the log, never shown to API clients), the client's
 * error the cause.
 */
export class ForeignAnswerError extends Error {
  override readonly name = 'ForeignAnswerError';
}

/** The first line of `text`, at most `max` characters. */
function firstLine(text: string, max = 120): string {
  const line = text.trim().split(/\r?\n/, 1)[0] ?? '';
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/**
 * `err`, thrown by a call of @clickhouse/client, as a ForeignAnswerError when the client made it
 * of a body that is not ClickHouse's: a plain Error of the body (its parseError found no
 * ClickHouse exception in it; no code, no status) or a SyntaxError; else `err` itself (a
 * ClickHouseError, a transport failure with Node's code, the client's "Timeout error.").
 */
function foreignOrAsIs(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const plain = Object.getPrototypeOf(err) === Error.prototype && (err as { code?: unknown }).code === undefined && err.message !== 'Timeout error.';
  if (!plain && !(err instanceof SyntaxError)) return err;
  return new ForeignAnswerError(JSON.stringify(firstLine(err.message)), { cause: err });
}

/** Throws ForeignAnswerError when a successful response lacks ClickHouse's query id header. */
function fromClickHouse(headers: ResponseHeaders, release: () => void): void {
  if (headers['x-clickhouse-query-id'] !== undefined) return;
  release();
  throw new ForeignAnswerError('an answer without the X-ClickHouse-Query-Id header every ClickHouse answer carries');
}

/**
 * `client` whose calls (query, and the JSON read of its result; insert; command; exec) accept
 * only the ClickHouse server's own answers: anything else is thrown as ForeignAnswerError,
 * which the Warehouse reports as unavailable (a 503 for reads, a retried batch for the sink),
 * never as rows, an empty result, or a write done.
 */
function clickHouseOnly(client: ClickHouseClient): ClickHouseClient {
  const query = client.query.bind(client);
  const insert = client.insert.bind(client);
  const command = client.command.bind(client);
  const exec = client.exec.bind(client);
  const guarded = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      throw foreignOrAsIs(err);
    }
  };
  return Object.assign(client, {
    query: ((params: Parameters<typeof query>[0]) => guarded(async () => {
      const rs = await query(params);
      fromClickHouse(rs.response_headers, () => rs.close());
      const json = rs.json.bind(rs);
      const text = rs.text.bind(rs);
      return Object.assign(rs, {
        json: () => guarded(() => json()),
        text: () => guarded(() => text()),
      });
    })) as typeof client.query,
    insert: ((params: Parameters<typeof insert>[0]) => guarded(async () => {
      const r = await insert(params);
      fromClickHouse(r.response_headers, () => {});
      return r;
    })) as typeof client.insert,
    command: ((params: Parameters<typeof command>[0]) => guarded(async () => {
      const r = await command(params);
      fromClickHouse(r.response_headers, () => {});
      return r;
    })) as typeof client.command,
    exec: ((params: Parameters<typeof exec>[0]) => guarded(async () => {
      const r = await exec(params);
      fromClickHouse(r.response_headers, () => r.stream.destroy());
      return r;
    })) as typeof client.exec,
  });
}

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

/**
 * A @clickhouse/client over HTTP that accepts only the ClickHouse server's own answers (see
 * ForeignAnswerError): a proxy's page, a 200 without ClickHouse's headers, or an unparsable body
 * is thrown as ForeignAnswerError, never read as rows or as a write done.
 */
export function createHttpClickHouse(opts: HttpClickHouseOptions): ClickHouseClient {
  return clickHouseOnly(createClient({
    url: opts.url,
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
    ...(opts.database !== undefined ? { database: opts.database } : {}),
    ...(opts.requestTimeoutMs !== undefined ? { request_timeout: opts.requestTimeoutMs } : {}),
    ...(opts.logger !== undefined ? { log: { LoggerClass: loggerClass(opts.logger), level: ClickHouseLogLevel.WARN } } : {}),
  }));
}
