import { gatewayError } from '@tollgate/anthropic';

/** Echoed back in an error message: short, and only printable ASCII. */
export function shown(value: string): string {
  const s = (value.length > 40 ? value.slice(0, 40) : value).replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(value.length > 40 ? `${s}…` : s);
}

function bad(name: string, problem: string): never {
  throw gatewayError('invalid_request', `${name}: ${problem}`);
}

/**
 * One query parameter as a string, or undefined when absent. Throws 400 `invalid_request` naming
 * it when it is empty (`?format=`: an empty value is a bad value, not an absent one, so a
 * client's unfilled field is never silently read as the default) or given more than once
 * (`?from=1&from=2`), since which one was meant is a guess.
 */
export function queryParam(query: unknown, name: string): string | undefined {
  if (typeof query !== 'object' || query === null) return undefined;
  const v = (query as Record<string, unknown>)[name];
  if (v === undefined) return undefined;
  if (v === '') bad(name, 'is empty; give a value or leave the parameter out');
  if (typeof v !== 'string') bad(name, 'given more than once');
  return v;
}

/**
 * Throws 400 `invalid_request` "Malformed URL (bad percent-encoding in the query string)" unless
 * the query string of `url` (a request target) is well-formed percent-encoded UTF-8, i.e. what
 * `decodeURIComponent` accepts: `?a=%FF`, `?a=%`, `?a=%C0%80` (overlong), `?a=%ED%A0%80` (a
 * surrogate) are refused, as the same escape in the path is before routing. The query starts
 * where the router (find-my-way) starts it: after the first `?` or `#`, whichever comes first
 * (`/v1/usage#model=%FF` is a query there). Fastify's query parser keeps an escape it cannot
 * decode as literal text, so without this a filter would search for a value nobody sent.
 * Cost: two `indexOf`; the decode runs only when the query has a `%`.
 */
export function checkQueryEncoding(url: string): void {
  const question = url.indexOf('?');
  const hash = url.indexOf('#');
  const start = question < 0 ? hash : hash < 0 ? question : Math.min(question, hash);
  if (start < 0 || !url.includes('%', start)) return;
  try {
    decodeURIComponent(url.slice(start + 1));
  } catch {
    throw gatewayError('invalid_request', 'Malformed URL (bad percent-encoding in the query string)');
  }
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|([+-])(\d{2}):(\d{2})))?$/;
/** The largest instant accepted: 9999-12-31T23:59:59.999Z, the end of RFC 3339's range. */
const MAX_MS = 253_402_300_799_999;

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * A point in time from a query parameter, as epoch milliseconds (UTC). Accepted forms:
 * - an RFC 3339 date-time: `2026-11-30T12:00:00Z`, `2026-11-30T12:00:00.5+08:00` (`t`, `z` and
 *   a space for `T` too, as RFC 3339 §5.6 allows); a fraction finer than a millisecond rounds
 *   up to the next whole millisecond, the first one not before the instant given, so that as a
 *   window's inclusive start, its exclusive end or an expiry it admits exactly the millisecond
 *   stamps the instant does (`…00.0001Z` is `…00.001Z`: an event stamped `…00.000Z` is before it);
 *   a leap second (`:60`) counts as the next second;
 * - an RFC 3339 full-date, `2026-11-30`, meaning 00:00:00 UTC that day;
 * - epoch milliseconds, `1796036704220` (digits only), for compatibility.
 * Anything else, a date that does not exist (`2026-02-30`), or an instant before 1970 or after
 * 9999 throws 400 `invalid_request` whose message names `name` and shows the accepted forms.
 */
export function parseTime(value: string, name: string): number {
  const forms = 'expected an RFC 3339 timestamp such as 2026-11-30T12:00:00Z, a date such as 2026-11-30 (00:00 UTC), or epoch milliseconds';
  if (/^\d{1,16}$/.test(value)) {
    const ms = Number(value);
    if (ms > MAX_MS) bad(name, `${shown(value)} is beyond year 9999; ${forms}`);
    return ms;
  }
  const m = RFC3339.exec(value);
  if (!m) {
    // `?from=2026-11-30T12:00:00+08:00` unescaped: a query reads the `+` as a space
    if (/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})? \d{2}:\d{2}$/.test(value)) {
      bad(name, `${shown(value)} is not a time: a "+" in a query string reads as a space, so write the offset as %2B (…%2B08:00), or give the time in UTC (…Z)`);
    }
    bad(name, `${shown(value)} is not a time; ${forms}`);
  }
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const [hour, minute, second] = [Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0)];
  const fraction = m[7] ?? '';
  const millis = Number(fraction.padEnd(3, '0').slice(0, 3)) + (/[1-9]/.test(fraction.slice(3)) ? 1 : 0);
  const offsetMin = m[9] === undefined ? 0 : (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11]));
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 60
    || (m[10] !== undefined && (Number(m[10]) > 23 || Number(m[11]) > 59))) {
    bad(name, `${shown(value)} is not a valid date or time; ${forms}`);
  }
  if (year < 1970) bad(name, `${shown(value)} is before 1970`);
  const ms = Date.UTC(year, month - 1, day, hour, minute, second, millis) - offsetMin * 60_000;
  if (ms < 0 || ms > MAX_MS) bad(name, `${shown(value)} is outside 1970-01-01T00:00:00Z … 9999-12-31T23:59:59Z`);
  return ms;
}

/**
 * A whole number in [min, max] from a query parameter (decimal digits only: `1e3`, `10.5`,
 * `-1`, `0x10` are refused). Throws 400 `invalid_request` naming `name`.
 */
export function parseIntParam(value: string, name: string, min: number, max: number): number {
  if (!/^\d{1,16}$/.test(value)) bad(name, `${shown(value)} is not a whole number between ${min} and ${max}`);
  const n = Number(value);
  if (n < min || n > max) bad(name, `${shown(value)} is not between ${min} and ${max}`);
  return n;
}

/** One of `allowed`, exactly; otherwise 400 `invalid_request` naming `name` and listing them. */
export function parseEnumParam<T extends string>(value: string, name: string, allowed: readonly T[]): T {
  const hit = allowed.find((a) => a === value);
  if (hit === undefined) bad(name, `${shown(value)} is not one of ${allowed.join(', ')}`);
  return hit;
}

/**
 * Throws the 400 `invalid_request` of a window whose `to` (epoch ms) is before its `from`,
 * naming `to` and both times as RFC 3339 (the message every time-window route gives).
 */
export function checkTimeOrder(from: number, to: number): void {
  if (to < from) bad('to', `${new Date(to).toISOString()} is before from (${new Date(from).toISOString()})`);
}

/**
 * A `[from, to)` time window from `from` and `to` query parameters (see parseTime), both
 * optional; `to` before `from` is a 400 naming `to`.
 */
export function parseTimeRange(query: unknown): { from?: number; to?: number } {
  const f = queryParam(query, 'from');
  const t = queryParam(query, 'to');
  const from = f === undefined ? undefined : parseTime(f, 'from');
  const to = t === undefined ? undefined : parseTime(t, 'to');
  if (from !== undefined && to !== undefined) checkTimeOrder(from, to);
  return { ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) };
}

/**
 * Refuses query parameters a route does not take: 400 `invalid_request` whose message starts
 * with their names (a name of other than letters, digits and `_.-[]` in JSON quotes, cut to 40
 * characters, printable ASCII) and lists the ones the route takes ("none" when it takes none),
 * e.g. `acount_id: unknown query parameter; this route takes from, to, limit, cursor`. A query
 * that is not an object has none to refuse. The operator routes get it for every route through
 * `guardOperatorRoutes` (auth.ts) and their `config.query`.
 */
export function refuseUnknownParams(query: unknown, known: readonly string[]): void {
  if (typeof query !== 'object' || query === null) return;
  const unknown = Object.keys(query).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    const names = unknown.map((k) => (/^[A-Za-z0-9_.\-[\]]{1,40}$/.test(k) ? k : JSON.stringify(k.slice(0, 40)).replace(/[^\x20-\x7e]/g, '?'))).join(', ');
    throw gatewayError('invalid_request', `${names}: unknown query parameter${unknown.length > 1 ? 's' : ''}; this route takes ${known.length > 0 ? known.join(', ') : 'none'}`);
  }
}

/** Where a credit-history page starts and how long it is: the parameters `parseCreditHistoryQuery` reads. */
export interface CreditHistoryQuery {
  limit: number;
  from?: number;
  to?: number;
  /** the id of the last entry of the previous page */
  after?: string;
}

/** The query parameters `parseCreditHistoryQuery` reads. */
export const CREDIT_HISTORY_PARAMS = ['from', 'to', 'limit', 'cursor'] as const;
const CREDIT_HISTORY_DEFAULT_LIMIT = 100;
const CREDIT_HISTORY_MAX_LIMIT = 1000;

/**
 * The query of a credit-history route (the customer's GET /v1/credits/history and the operator's
 * GET /admin/v1/accounts/:id/credits/history): `from`, `to` (parseTimeRange), `limit` (1–1000,
 * default 100) and `cursor` (the `next_cursor` of the previous page: the last entry's id,
 * base64url). An unknown or bad parameter is a 400 `invalid_request` naming it.
 */
export function parseCreditHistoryQuery(query: unknown): CreditHistoryQuery {
  refuseUnknownParams(query, CREDIT_HISTORY_PARAMS);
  const { from, to } = parseTimeRange(query);
  const l = queryParam(query, 'limit');
  const limit = l === undefined ? CREDIT_HISTORY_DEFAULT_LIMIT : parseIntParam(l, 'limit', 1, CREDIT_HISTORY_MAX_LIMIT);
  const cursor = queryParam(query, 'cursor');
  let after: string | undefined;
  if (cursor !== undefined) {
    after = Buffer.from(cursor, 'base64url').toString('utf8');
    // the cursor is the last entry's id, base64url: anything that does not round-trip was not given here
    if (cursor.length > 1100 || Buffer.from(after, 'utf8').toString('base64url') !== cursor) {
      throw gatewayError('invalid_request', 'cursor: not a cursor this route gave (use next_cursor of the previous page)');
    }
  }
  return { limit, ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }), ...(after === undefined ? {} : { after }) };
}

/**
 * The answer of a credit-history route from one page (`null`: the cursor is no longer in the
 * window, a 400 `invalid_request`): `{data, has_more, next_cursor}`, the cursor being the last
 * entry's id, base64url.
 */
export function creditHistoryBody<T extends { id: string }>(
  page: { data: T[]; hasMore: boolean } | null,
): { data: T[]; has_more: boolean; next_cursor: string | null } {
  if (page === null) throw gatewayError('invalid_request', 'cursor: no longer in this window (use next_cursor of the previous page with the same from and to)');
  const { data, hasMore } = page;
  return { data, has_more: hasMore, next_cursor: hasMore ? Buffer.from(data.at(-1)!.id, 'utf8').toString('base64url') : null };
}
