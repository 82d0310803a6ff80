import { gatewayError } from '@tollgate/anthropic';

/** Echoed back in an error message: short, and only printable ASCII. */
function shown(value: string): string {
  const s = value.length > 40 ? `${value.slice(0, 40)}…` : value;
  return JSON.stringify(s.replace(/[^\x20-\x7e]/g, '?'));
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

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|([+-])(\d{2}):(\d{2})))?$/;
/** The largest instant accepted: 9999-12-31T23:59:59.999Z, the end of RFC 3339's range. */
const MAX_MS = 253_402_300_799_999;

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * A point in time from a query parameter, as epoch milliseconds (UTC). Accepted forms:
 * - an RFC 3339 date-time: `2026-11-30T12:00:00Z`, `2026-11-30T12:00:00.5+08:00` (`t`, `z` and
 *   a space for `T` too, as RFC 3339 §5.6 allows); fractions beyond milliseconds are truncated;
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
  if (!m) bad(name, `${shown(value)} is not a time; ${forms}`);
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const [hour, minute, second] = [Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0)];
  const millis = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3));
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
 * A `[from, to)` time window from `from` and `to` query parameters (see parseTime), both
 * optional; `to` before `from` is a 400 naming `to`.
 */
export function parseTimeRange(query: unknown): { from?: number; to?: number } {
  const f = queryParam(query, 'from');
  const t = queryParam(query, 'to');
  const from = f === undefined ? undefined : parseTime(f, 'from');
  const to = t === undefined ? undefined : parseTime(t, 'to');
  if (from !== undefined && to !== undefined && to < from) bad('to', 'is before from');
  return { ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) };
}
