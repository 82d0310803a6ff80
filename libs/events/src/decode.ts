// The consumer boundary: every event a consumer takes from a log goes through `decodeEvent`
// before it touches a store. An event one stage accepts and a later stage rejects would stop
// the pipeline at that later stage forever, so the bounds here are the narrowest that EVERY
// stage can hold (ClickHouse UInt32 / Int64 columns, Redis Lua numbers, JS bigint), and the
// edges (gateway, control API) refuse the same values with a 400 before they become events.

import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DIMENSIONS, DIMENSION_KEYS } from '@tollgate/pricing';
import type { Dimension } from '@tollgate/pricing';
import type { AnyEvent, LedgerKind, UsageEvent, UsageEventV1, UsageEventV2, UsageQuantities } from './types.ts';
import type { DeadLetter } from './event-log.ts';

/**
 * Largest amount of money, in micro-credits, any single value may carry (a grant, a cost, a
 * resulting balance): 2^53 − 1 µc (≈ 9.007 billion credits). Redis Lua numbers are doubles,
 * exact only up to 2^53, and ClickHouse Int64 and JS bigint hold far more, so this is the one
 * bound every stage keeps exact.
 */
export const MAX_MONEY_MICROS = 2n ** 53n - 1n;

/** Longest model name, account / key name, event id or account id stored in an event. */
export const MAX_TEXT_CHARS = 256;

/** Longest event id (`credit:<account>:<reference>` is the longest kind). */
export const MAX_EVENT_ID_CHARS = 512;

/** Longest free text (a credit reference) stored in an event. */
export const MAX_REFERENCE_CHARS = 200;

/** Longest short label stored in an event: a tier, multiplier, service tier, geo, speed, stop reason, iteration type, currency. */
export const MAX_LABEL_CHARS = 64;

/** Most `usage.iterations` one usage event carries (fallback and advisor sub-calls of one request). */
export const MAX_ITERATIONS = 64;

/** Most names in an event's `multipliers`, `unpriced` or `unit_prices`. */
export const MAX_NAMES = 64;

/** Longest exact decimal (a unit price in µc per MTok or per unit): digits, one point. */
export const MAX_DECIMAL_CHARS = 64;

/**
 * Largest catalog document a `price_version` event carries, as compact JSON (bytes of UTF-8),
 * and so the largest catalog the loader (`parseCatalog` of @tollgate/pricing) accepts: a catalog
 * put in force always has a version event every stage takes. Under MAX_EVENT_BYTES (1,000,000,
 * event-log.ts) with room for the event's own fields. It was 1 MiB here while the loader had no
 * bound: a 2.7 MB catalog was put in force, and its event held the Kafka spool (a tester's
 * case). The shipped catalogs are ~10 KB.
 */
export const MAX_CATALOG_BYTES = 960 * 1024;

/** Most bytes of an undecodable payload kept in a quarantine record. */
export const MAX_RAW_BYTES = 4096;

const UINT32_MAX = 2 ** 32 - 1;
const INT_RE = /^-?(0|[1-9]\d*)$/;
// C0 and C1 control characters, DEL included.
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Why `text` cannot be stored, or undefined when it can: a string of well-formed UTF-16 (no
 * lone surrogate: ClickHouse refuses it, and it has no UTF-8 form), without control
 * characters, at most `max` UTF-16 units long.
 */
export function textProblem(text: unknown, max: number): string | undefined {
  if (typeof text !== 'string') return 'must be a string';
  if (text.length > max) return `must be at most ${max} characters`;
  if (!text.isWellFormed()) return 'must be well-formed Unicode (it contains a lone surrogate)';
  if (CONTROL_RE.test(text)) return 'must not contain control characters';
  return undefined;
}

const text = (max: number, min = 0) => z.string().min(min).superRefine((v, ctx) => {
  const problem = textProblem(v, max);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
const id = text(MAX_TEXT_CHARS, 1);
const eventId = text(MAX_EVENT_ID_CHARS, 1);
const count = z.number().int().min(0).max(UINT32_MAX);
const epochMs = z.number().int().min(0).max(Date.UTC(2299, 11, 31));
/**
 * The last millisecond a usage event's ts may name: 2106-02-07T06:28:15.999Z. The usage rollups
 * bucket ts as a ClickHouse `DateTime` (whole seconds since 1970 in 32 bits), whose range ends
 * at 2^32 − 1 s; a later ts was stored raw but fell out of every rollup (a tester's case), so it
 * is refused here, where every stage decodes, instead.
 */
export const MAX_USAGE_EPOCH_MS = (2 ** 32 - 1) * 1000 + 999;
const usageEpochMs = z.number().int().min(0).max(MAX_USAGE_EPOCH_MS, {
  message: `must be at most ${MAX_USAGE_EPOCH_MS} (2106-02-07T06:28:15.999Z, the last second a usage rollup's DateTime bucket holds)`,
});
/** integer micro-credits as decimal text, |v| ≤ MAX_MONEY_MICROS */
const money = (sign: 'any' | 'nonnegative' | 'positive' | 'nonzero') => z.string().superRefine((v, ctx) => {
  if (!INT_RE.test(v)) {
    ctx.addIssue({ code: 'custom', message: 'must be an integer decimal string' });
    return;
  }
  const n = BigInt(v);
  if (n > MAX_MONEY_MICROS || n < -MAX_MONEY_MICROS) {
    ctx.addIssue({ code: 'custom', message: `must be within ±${MAX_MONEY_MICROS} micro-credits (2^53 − 1)` });
  } else if ((sign === 'nonnegative' && n < 0n) || (sign === 'positive' && n <= 0n) || (sign === 'nonzero' && n === 0n)) {
    ctx.addIssue({ code: 'custom', message: `must be ${sign}` });
  }
});

/** The fields both usage versions carry (`UsageEventBase`), with the bounds every stage holds. */
const USAGE_BASE = {
  type: z.literal('usage'),
  event_id: eventId,
  ts: usageEpochMs,
  account_id: id,
  key_id: text(MAX_TEXT_CHARS),
  model: text(MAX_TEXT_CHARS),
  catalog_model: text(MAX_TEXT_CHARS),
  upstream_model: text(MAX_TEXT_CHARS),
  cost_micros: money('nonnegative'),
  status: z.enum(['ok', 'upstream_error', 'client_disconnect', 'stream_error', 'unmetered', 'usage_anomaly']),
  http_status: z.number().int().min(0).max(65535),
  latency_ms: count,
  ttft_ms: count.nullable(),
  stream: z.boolean(),
  upstream_request_id: text(MAX_TEXT_CHARS).nullable(),
  gateway_id: text(MAX_TEXT_CHARS),
  // issue 10; optional so events of older gateways still decode
  // '' (with attempts 0): no upstream was tried (503 overloaded)
  upstream_id: text(MAX_TEXT_CHARS).optional(),
  attempts: z.number().int().min(0).max(255).optional(),
  anomalies: z.array(text(MAX_TEXT_CHARS)).max(32).optional(),
};

const UsageSchema = z.object({
  ...USAGE_BASE,
  input_tokens: count,
  output_tokens: count,
  cache_read_tokens: count,
  cache_write_5m_tokens: count,
  cache_write_1h_tokens: count,
});

const CATALOG_SIZE = (catalog: unknown): boolean => {
  try {
    return Buffer.byteLength(JSON.stringify(catalog) ?? '', 'utf8') <= MAX_CATALOG_BYTES;
  } catch {
    return false;
  }
};

/**
 * `z.record(key, value)` that refuses a `"__proto__"` key instead of losing it. `JSON.parse`
 * makes `"__proto__"` an own key, but zod's record parse (zod 4, `$ZodRecord`) skips it before
 * checking anything: the entry was accepted, neither checked nor kept, and not counted against a
 * bound (a tester's finding on `unit_prices`: `{"__proto__": "-1"}` decoded as `{}`). The issue is
 * reported at `<field>.__proto__` with `protoMessage`. Every record schema of outside input is
 * built with this: events, the price catalog, the admin API's model mapping.
 */
export function ownRecord<K extends z.core.$ZodRecordKey, V extends z.core.SomeType>(key: K, value: V, protoMessage = '"__proto__" is not allowed as a name') {
  return z.preprocess((input, ctx) => {
    if (typeof input === 'object' && input !== null && !Array.isArray(input) && Object.hasOwn(input, '__proto__')) {
      ctx.issues.push({ code: 'custom', message: protoMessage, path: ['__proto__'], input });
    }
    return input;
  }, z.record(key, value));
}

const PriceVersionSchema = z.object({
  type: z.literal('price_version'),
  event_id: eventId,
  ts: epochMs,
  id: z.string().regex(/^[0-9a-f]{12}$/, 'must be a catalog content id (12 hex digits)'),
  effective_at: epochMs,
  catalog: ownRecord(z.string(), z.unknown()).refine(CATALOG_SIZE, `must be a JSON object of at most ${MAX_CATALOG_BYTES} bytes`),
});

const LedgerSchema = z.discriminatedUnion('kind', [
  // Grants, top-ups (paid purchases) and refunds add money; an adjustment is a signed correction.
  z.object({ kind: z.literal('grant'), amount_micros: money('positive') }),
  z.object({ kind: z.literal('top_up'), amount_micros: money('positive') }),
  z.object({ kind: z.literal('refund'), amount_micros: money('positive') }),
  z.object({ kind: z.literal('adjustment'), amount_micros: money('nonzero') }),
]).and(z.object({
  type: z.literal('ledger'),
  event_id: eventId,
  ts: epochMs,
  account_id: id,
  reference: text(MAX_REFERENCE_CHARS, 1),
}));

/** Most CIDRs in a key's `ip_allowlist` and most model ids in its `allowed_models`. */
export const MAX_ACCESS_ENTRIES = 64;
/** Longest CIDR text (`ffff:…:ffff/128` is 43; a v4-mapped form a little more). */
export const MAX_CIDR_CHARS = 64;
/** A spend limit or overdraft: µc, 0 … MAX_MONEY_MICROS, or null / absent for none. */
const limitMicros = money('nonnegative').nullable().optional();
// Only the characters of an IPv4 / IPv6 CIDR; the gateway parses it (an entry it cannot parse matches nothing).
const cidr = z.string().min(3).max(MAX_CIDR_CHARS).regex(/^[0-9A-Fa-f:.]+\/\d{1,3}$/, 'must be a CIDR (address/prefix length)');

const AccountSchema = z.object({
  type: z.literal('account'),
  event_id: eventId,
  ts: epochMs,
  account: z.object({
    id, name: text(MAX_TEXT_CHARS), status: z.enum(['active', 'suspended', 'disabled']), created_at: epochMs,
    price_list: text(MAX_TEXT_CHARS, 1).nullable().optional(),
    plan_id: id.nullable().optional(),
    group_id: id.nullable().optional(),
    daily_credits: limitMicros, monthly_credits: limitMicros, overdraft_credits: limitMicros, low_balance_credits: limitMicros,
    admission_policy: z.enum(['strict', 'clamp']).nullable().optional(),
    version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
});

const KeySchema = z.object({
  type: z.literal('key'),
  event_id: eventId,
  ts: epochMs,
  key: z.object({
    id, account_id: id, name: text(MAX_TEXT_CHARS), prefix: text(MAX_TEXT_CHARS), hash: id,
    status: z.enum(['active', 'disabled', 'revoked']), created_at: epochMs, revoked_at: epochMs.nullable(),
    plan_id: id.nullable().optional(),
    group_id: id.nullable().optional(),
    hourly_credits: limitMicros, daily_credits: limitMicros, total_credits: limitMicros,
    ip_allowlist: z.array(cidr).max(MAX_ACCESS_ENTRIES).optional(),
    allowed_models: z.array(id).max(MAX_ACCESS_ENTRIES).optional(),
    expires_at: epochMs.nullable().optional(),
    version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
});

/** Largest value of a plan limit (requests or tokens per window, requests in flight). */
export const MAX_PLAN_LIMIT = 1_000_000_000;
const planLimit = z.number().int().min(0).max(MAX_PLAN_LIMIT).nullable();
const PlanSchema = z.object({
  type: z.literal('plan'),
  event_id: eventId,
  ts: epochMs,
  plan: z.object({
    id, name: text(MAX_TEXT_CHARS),
    requests_per_minute: planLimit, requests_per_5h: planLimit, requests_per_week: planLimit,
    tokens_per_minute: planLimit, concurrent_requests: planLimit,
    created_at: epochMs, deleted: z.boolean().optional(),
    version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
});

const label = text(MAX_LABEL_CHARS);
/**
 * Quantities per dimension: every key of DIMENSIONS, each a UInt32 (the warehouse column
 * type). A dimension missing from the object is 0 (an event of a gateway that predates it); a
 * key that is no dimension is dropped, like any unknown field (the event's `unpriced` names it).
 */
const quantitiesSchema = () => z.object(
  Object.fromEntries(DIMENSION_KEYS.map((k) => [k, count.default(0)])) as Record<Dimension, z.ZodDefault<typeof count>>,
);
// @tollgate/pricing imports this package too (textProblem): the schemas that read DIMENSIONS
// are built on first use, so either package may be loaded first.
/** A non-negative exact decimal, e.g. `72000000` or `79200000.5` (no exponent, no sign). */
const decimal = z.string().max(MAX_DECIMAL_CHARS).regex(/^(0|[1-9]\d*)(\.\d+)?$/, 'must be a non-negative decimal string such as "72000000" or "0.5"');

const iterationSchema = () => z.object({
  type: label.min(1),
  model: text(MAX_TEXT_CHARS),
  catalog_model: text(MAX_TEXT_CHARS).nullable(),
  quantities: quantitiesSchema(),
  cost_micros: money('nonnegative'),
});

const usageV2Schema = () => z.object({
  ...USAGE_BASE,
  v: z.literal(2),
  served_model: text(MAX_TEXT_CHARS).nullable(),
  quantities: quantitiesSchema(),
  iterations: z.array(iterationSchema()).max(MAX_ITERATIONS),
  service_tier: label.nullable(),
  inference_geo: label.nullable(),
  speed: label.nullable(),
  stop_reason: label.nullable(),
  thinking_tokens: count.nullable(),
  upstream_cost_micros: money('nonnegative').nullable(),
  upstream_currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as "USD"').nullable(),
  price_version: label.min(1),
  price_list: text(MAX_TEXT_CHARS, 1),
  unit_prices: ownRecord(label.min(1), decimal).refine((r) => Object.keys(r).length <= MAX_NAMES, `must have at most ${MAX_NAMES} entries`),
  tier: label.nullable(),
  multipliers: z.array(label.min(1)).max(MAX_NAMES),
  // `model:<name>` entries carry a model name
  unpriced: z.array(text(MAX_TEXT_CHARS + 8, 1)).max(MAX_NAMES),
});

let usageV2: z.ZodType | undefined;

const SCHEMAS: Record<string, z.ZodType> = {
  usage: UsageSchema, ledger: LedgerSchema, account: AccountSchema, key: KeySchema, plan: PlanSchema, price_version: PriceVersionSchema,
};

/**
 * What a log hands over for a message it could not even parse (not JSON, empty): delivered in
 * place of an event so that its offset is consumed like any other and every consumer
 * quarantines it (a consumer that never saw the offset would wait for it forever).
 */
export interface UndecodableMessage {
  type: 'undecodable';
  /** `undecodable:<topic>:<partition>:<offset>` */
  event_id: string;
  reason: string;
  /** the payload as text, at most MAX_RAW_BYTES */
  raw: string;
}

export type DecodeResult =
  | { ok: true; event: AnyEvent }
  | { ok: false; reason: string; eventId: string | undefined };

/**
 * Checks one consumed value against the event shapes and every stage's bounds. Unknown fields
 * are dropped (a newer producer may add some). Never throws; a failure names the field. The
 * event returned may be `value` itself, or share objects with it, where nothing needed
 * dropping or filling: both are read-only from here on (no consumer changes an event).
 *
 * Usage (both versions) and ledger events, nearly all of the traffic, first go through a
 * hand-written check of the same rules (`decodeEventFast`, about 10× cheaper than the schema: zod
 * was the consumers' largest cost after JSON parsing, issue 11). It only ever ACCEPTS: anything
 * it is not sure of (a bound crossed, an odd shape) goes to the schema, which gives the verdict
 * and names the field, so the accepted set and the reasons are exactly the schema's
 * (`decodeEventBySchema`; libs/events/test/decode-fast.test.ts compares both field by field).
 */
export function decodeEvent(value: unknown): DecodeResult {
  const fast = decodeEventFast(value);
  return fast !== undefined ? { ok: true, event: fast } : decodeEventBySchema(value);
}

/**
 * `decodeEvent` by the zod schemas alone: the reference the fast path is held to (same
 * result for every input). Never throws.
 */
export function decodeEventBySchema(value: unknown): DecodeResult {
  const rec = typeof value === 'object' && value !== null ? value as Record<string, unknown> : undefined;
  const rawId = rec?.['event_id'];
  const eventId = typeof rawId === 'string' && textProblem(rawId, MAX_EVENT_ID_CHARS) === undefined && rawId !== '' ? rawId : undefined;
  if (rec === undefined) return { ok: false, reason: 'not an object', eventId };
  if (rec['type'] === 'undecodable') return { ok: false, reason: String(rec['reason']), eventId };
  let kind = String(rec['type']);
  if (kind === 'usage' && rec['v'] !== undefined) {
    // Version 1 has no `v`; a version this consumer does not know is poison, not a guess.
    if (rec['v'] !== 2) return { ok: false, reason: `v: usage event version ${(typeof rec['v'] === 'bigint' ? String(rec['v']) : String(JSON.stringify(rec['v']))).slice(0, 20)} is not supported (1 has no "v"; 2)`, eventId };
    kind = 'usage_v2';
  }
  const schema = kind === 'usage_v2' ? (usageV2 ??= usageV2Schema()) : Object.hasOwn(SCHEMAS, kind) ? SCHEMAS[kind] : undefined;
  if (!schema) return { ok: false, reason: `unknown event type ${JSON.stringify(String(rec['type'])).slice(0, 80)}`, eventId };
  const r = schema.safeParse(value);
  if (!r.success) {
    // String each part: a symbol key in a record's path would make join throw.
    const reason = r.error.issues.slice(0, 3).map((i) => `${i.path.map(String).join('.') || 'event'}: ${i.message}`).join('; ');
    return { ok: false, reason, eventId };
  }
  return { ok: true, event: r.data as AnyEvent };
}

// ---------------------------------------------------------------------------------------------
// The fast path: the same rules as the schemas above, checked by hand for the hot event kinds.
// Returns the decoded event (the schema's fields, unknown fields dropped, defaults applied) or
// undefined: "not sure", and the schema decides. A usage v2 event (or part of one) that needs
// nothing dropped or filled is returned as it is, in its producer's key order; anything else is
// a new object in the schema's order. Copying every event cost the warehouse consumer ~5 % of
// its CPU and more in garbage collection (its batches live across an insert). Its domain is data
// as JSON.parse or a gateway's object literals make it: string keys, enumerable own properties.
// A symbol key or a non-enumerable property is not looked at (the schema refuses a symbol key
// in a record; the fast path keeps it), which no log, journal or producer of ours can hand over.

const MAX_EPOCH_MS = Date.UTC(2299, 11, 31);
const USAGE_STATUSES = new Set(['ok', 'upstream_error', 'client_disconnect', 'stream_error', 'unmetered', 'usage_anomaly']);
const DECIMAL_RE = /^(0|[1-9]\d*)(\.\d+)?$/;
const CURRENCY_RE = /^[A-Z]{3}$/;
/** decimal text of at most 15 digits is below 2^53 − 1 (16 digits) whatever the digits */
const SAFE_DIGITS = 15;

/** A plain object as JSON.parse makes it (no class instance, no array; prototype Object.prototype or null). */
export function plainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** text(max, min): a string of min…max UTF-16 units that textProblem accepts */
function okText(v: unknown, max: number, min = 0): v is string {
  return typeof v === 'string' && v.length >= min && v.length <= max && v.isWellFormed() && !CONTROL_RE.test(v);
}

function okCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= UINT32_MAX;
}

function okEpoch(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_EPOCH_MS;
}

/** money(sign): integer decimal text within ±MAX_MONEY_MICROS with the sign asked for */
function okMoney(v: unknown, sign: 'nonnegative' | 'positive' | 'nonzero'): v is string {
  if (typeof v !== 'string' || !INT_RE.test(v)) return false;
  const negative = v.charCodeAt(0) === 45; // '-'
  const digits = negative ? v.length - 1 : v.length;
  if (digits > SAFE_DIGITS) {
    const n = BigInt(v);
    if (n > MAX_MONEY_MICROS || n < -MAX_MONEY_MICROS) return false;
  }
  if (sign === 'nonnegative') return !negative;
  if (sign === 'positive') return !negative && v !== '0';
  return v !== '0' && v !== '-0';
}

/** present and undefined: left to the schema (it never comes out of JSON) */
function absent(rec: Record<string, unknown>, key: string): boolean {
  return !(key in rec);
}

function okLabels(v: unknown, max: number, min: number, most: number): v is string[] {
  if (!Array.isArray(v) || v.length > most) return false;
  for (let i = 0; i < v.length; i++) if (!okText(v[i], max, min)) return false;
  return true;
}

/** `o`'s enumerable keys (own, for an object JSON.parse made): a for-in, no array of names. */
function keyCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

/** An object as JSON.parse makes it, exactly: prototype Object.prototype (not null: the schema's copy would not be). */
function jsonShaped(v: object): boolean {
  return Object.getPrototypeOf(v) === Object.prototype;
}

/**
 * The quantities, every dimension a count: `v` itself when it already is what the schema gives
 * (every dimension present, nothing else, a JSON-shaped object), else a new object with the
 * missing ones 0 and unknown names dropped; undefined when one is not a count.
 */
function fastQuantities(v: unknown): UsageQuantities | undefined {
  if (!plainObject(v)) return undefined;
  let present = 0;
  for (let i = 0; i < DIMENSION_KEYS.length; i++) {
    const n = v[DIMENSION_KEYS[i]!];
    if (n === undefined) continue;
    if (!okCount(n)) return undefined;
    present++;
  }
  if (present === DIMENSION_KEYS.length && jsonShaped(v) && keyCount(v) === present) return v as unknown as UsageQuantities;
  const out = {} as Record<Dimension, number>;
  for (let i = 0; i < DIMENSION_KEYS.length; i++) {
    const k = DIMENSION_KEYS[i]!;
    out[k] = (v[k] as number | undefined) ?? 0;
  }
  return out as UsageQuantities;
}

/**
 * How many fields of USAGE_BASE `r` carries (16, and each optional one present) when every one
 * is well-formed, else undefined. Reads only; `usageBaseCopy` builds the copy when one is needed.
 */
function usageBaseFields(r: Record<string, unknown>): number | undefined {
  if (!okText(r['event_id'], MAX_EVENT_ID_CHARS, 1) || !okEpoch(r['ts']) || (r['ts'] as number) > MAX_USAGE_EPOCH_MS
    || !okText(r['account_id'], MAX_TEXT_CHARS, 1) || !okText(r['key_id'], MAX_TEXT_CHARS) || !okText(r['model'], MAX_TEXT_CHARS) || !okText(r['catalog_model'], MAX_TEXT_CHARS)
    || !okText(r['upstream_model'], MAX_TEXT_CHARS) || !okMoney(r['cost_micros'], 'nonnegative')
    || typeof r['status'] !== 'string' || !USAGE_STATUSES.has(r['status'])
    || typeof r['http_status'] !== 'number' || !Number.isInteger(r['http_status']) || r['http_status'] < 0 || r['http_status'] > 65535
    || !okCount(r['latency_ms']) || (r['ttft_ms'] !== null && !okCount(r['ttft_ms'])) || typeof r['stream'] !== 'boolean'
    || (r['upstream_request_id'] !== null && !okText(r['upstream_request_id'], MAX_TEXT_CHARS)) || !okText(r['gateway_id'], MAX_TEXT_CHARS)) {
    return undefined;
  }
  let fields = 16;
  if (!absent(r, 'upstream_id')) {
    if (!okText(r['upstream_id'], MAX_TEXT_CHARS)) return undefined;
    fields++;
  }
  if (!absent(r, 'attempts')) {
    const a = r['attempts'];
    if (typeof a !== 'number' || !Number.isInteger(a) || a < 0 || a > 255) return undefined;
    fields++;
  }
  if (!absent(r, 'anomalies')) {
    if (!okLabels(r['anomalies'], MAX_TEXT_CHARS, 0, 32)) return undefined;
    fields++;
  }
  return fields;
}

/** The fields of USAGE_BASE of `r` (checked by `usageBaseFields`) as a new object, in the schema's order. */
function usageBaseCopy(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {
    type: 'usage', event_id: r['event_id'], ts: r['ts'], account_id: r['account_id'], key_id: r['key_id'], model: r['model'],
    catalog_model: r['catalog_model'], upstream_model: r['upstream_model'], cost_micros: r['cost_micros'], status: r['status'],
    http_status: r['http_status'], latency_ms: r['latency_ms'], ttft_ms: r['ttft_ms'], stream: r['stream'],
    upstream_request_id: r['upstream_request_id'], gateway_id: r['gateway_id'],
  };
  if (!absent(r, 'upstream_id')) out['upstream_id'] = r['upstream_id'];
  if (!absent(r, 'attempts')) out['attempts'] = r['attempts'];
  if (!absent(r, 'anomalies')) out['anomalies'] = jsonArray(r['anomalies'] as string[]);
  return out;
}

function fastUsageV1(r: Record<string, unknown>): AnyEvent | undefined {
  if (usageBaseFields(r) === undefined) return undefined;
  const { input_tokens: a, output_tokens: b, cache_read_tokens: c, cache_write_5m_tokens: d, cache_write_1h_tokens: e } = r;
  if (!okCount(a) || !okCount(b) || !okCount(c) || !okCount(d) || !okCount(e)) return undefined;
  const out = usageBaseCopy(r);
  out['input_tokens'] = a;
  out['output_tokens'] = b;
  out['cache_read_tokens'] = c;
  out['cache_write_5m_tokens'] = d;
  out['cache_write_1h_tokens'] = e;
  return out as unknown as AnyEvent;
}

function nullableLabel(v: unknown, max = MAX_LABEL_CHARS): boolean {
  return v === null || okText(v, max);
}

/** The fields version 2 adds to USAGE_BASE (`v` … `unpriced`). */
const V2_FIELDS = 17;

/** An array as JSON.parse makes it: prototype Array.prototype (not a subclass). */
function jsonShapedArray(a: readonly unknown[]): boolean {
  return Object.getPrototypeOf(a) === Array.prototype;
}

/** `a` itself when JSON.parse could have made it, else a copy that could be (a subclass, say). */
function jsonArray<T>(a: T[]): T[] {
  return jsonShapedArray(a) ? a : [...a];
}

/**
 * A version 2 usage event. What needs nothing dropped or filled is kept as it is: with no
 * unknown field at any depth and every dimension present (a producer of this version), the
 * event is `r` itself, the schema's fields in the producer's order. Otherwise a new object in
 * the schema's order, holding those parts of `r` that need nothing.
 */
function fastUsageV2(r: Record<string, unknown>): AnyEvent | undefined {
  const baseFields = usageBaseFields(r);
  if (baseFields === undefined) return undefined;
  const quantities = fastQuantities(r['quantities']);
  const its = r['iterations'];
  if (!quantities || !Array.isArray(its) || its.length > MAX_ITERATIONS) return undefined;
  // `its` itself while every item is the schema's as it is (its five fields, its quantities);
  // from the first that is not (or for an array JSON.parse would not make), a new array.
  let copied: unknown[] | undefined = jsonShapedArray(its) ? undefined : [];
  for (let i = 0; i < its.length; i++) {
    const it: unknown = its[i];
    if (!plainObject(it) || !okText(it['type'], MAX_LABEL_CHARS, 1) || !okText(it['model'], MAX_TEXT_CHARS)
      || !nullableLabel(it['catalog_model'], MAX_TEXT_CHARS) || !okMoney(it['cost_micros'], 'nonnegative')) return undefined;
    const q = fastQuantities(it['quantities']);
    if (!q) return undefined;
    if (q === it['quantities'] && jsonShaped(it) && keyCount(it) === 5) {
      copied?.push(it);
      continue;
    }
    if (copied === undefined) {
      copied = [];
      for (let j = 0; j < i; j++) copied.push(its[j]);
    }
    copied.push({ type: it['type'], model: it['model'], catalog_model: it['catalog_model'], quantities: q, cost_micros: it['cost_micros'] });
  }
  const iterations = copied ?? its;
  const thinking = r['thinking_tokens'];
  const upstreamCost = r['upstream_cost_micros'];
  const currency = r['upstream_currency'];
  if (!nullableLabel(r['served_model'], MAX_TEXT_CHARS) || !nullableLabel(r['service_tier']) || !nullableLabel(r['inference_geo'])
    || !nullableLabel(r['speed']) || !nullableLabel(r['stop_reason']) || (thinking !== null && !okCount(thinking))
    || (upstreamCost !== null && !okMoney(upstreamCost, 'nonnegative'))
    || (currency !== null && (typeof currency !== 'string' || !CURRENCY_RE.test(currency)))
    || !okText(r['price_version'], MAX_LABEL_CHARS, 1) || !okText(r['price_list'], MAX_TEXT_CHARS, 1) || !nullableLabel(r['tier'])
    || !okLabels(r['multipliers'], MAX_LABEL_CHARS, 1, MAX_NAMES) || !okLabels(r['unpriced'], MAX_TEXT_CHARS + 8, 1, MAX_NAMES)) {
    return undefined;
  }
  const prices = r['unit_prices'];
  if (!plainObject(prices)) return undefined;
  let names = 0;
  for (const k in prices) {
    if (!Object.hasOwn(prices, k)) return undefined;
    const p = prices[k];
    // `__proto__` as a key would not be an own property of a copy: the schema decides
    if (k === '__proto__' || !okText(k, MAX_LABEL_CHARS, 1) || typeof p !== 'string' || p.length > MAX_DECIMAL_CHARS || !DECIMAL_RE.test(p)) return undefined;
    names++;
  }
  if (names > MAX_NAMES) return undefined;
  const unitPrices = jsonShaped(prices) ? prices : { ...prices };
  const multipliers = jsonArray(r['multipliers'] as string[]);
  const unpriced = jsonArray(r['unpriced'] as string[]);
  if (quantities === r['quantities'] && iterations === its && unitPrices === prices && multipliers === r['multipliers']
    && unpriced === r['unpriced'] && (r['anomalies'] === undefined || jsonShapedArray(r['anomalies'] as string[]))
    && jsonShaped(r) && keyCount(r) === baseFields + V2_FIELDS) {
    return r as unknown as AnyEvent;
  }
  const out = usageBaseCopy(r);
  out['v'] = 2;
  out['served_model'] = r['served_model'];
  out['quantities'] = quantities;
  out['iterations'] = iterations;
  out['service_tier'] = r['service_tier'];
  out['inference_geo'] = r['inference_geo'];
  out['speed'] = r['speed'];
  out['stop_reason'] = r['stop_reason'];
  out['thinking_tokens'] = thinking;
  out['upstream_cost_micros'] = upstreamCost;
  out['upstream_currency'] = currency;
  out['price_version'] = r['price_version'];
  out['price_list'] = r['price_list'];
  out['unit_prices'] = unitPrices;
  out['tier'] = r['tier'];
  out['multipliers'] = multipliers;
  out['unpriced'] = unpriced;
  return out as unknown as AnyEvent;
}

const LEDGER_SIGN = { grant: 'positive', top_up: 'positive', refund: 'positive', adjustment: 'nonzero' } as const;

/** Every ledger entry kind (`LedgerKind`), one list for every stage that reads a stored kind back. */
export const LEDGER_KINDS: readonly LedgerKind[] = Object.keys(LEDGER_SIGN) as LedgerKind[];

function fastLedger(r: Record<string, unknown>): AnyEvent | undefined {
  const kind = r['kind'];
  if (kind !== 'grant' && kind !== 'top_up' && kind !== 'refund' && kind !== 'adjustment') return undefined;
  if (!okMoney(r['amount_micros'], LEDGER_SIGN[kind]) || !okText(r['event_id'], MAX_EVENT_ID_CHARS, 1) || !okEpoch(r['ts'])
    || !okText(r['account_id'], MAX_TEXT_CHARS, 1) || !okText(r['reference'], MAX_REFERENCE_CHARS, 1)) return undefined;
  return {
    kind, amount_micros: r['amount_micros'], type: 'ledger', event_id: r['event_id'], ts: r['ts'],
    account_id: r['account_id'], reference: r['reference'],
  } as unknown as AnyEvent;
}

/**
 * The fast path of `decodeEvent` alone: the decoded event when the value is a usage (version 1
 * or 2) or ledger event it is sure is well-formed (then exactly what `decodeEventBySchema`
 * returns), else undefined (the schema decides). Exported for the tests that pin that.
 */
export function decodeEventFast(value: unknown): AnyEvent | undefined {
  if (!plainObject(value)) return undefined;
  const type = value['type'];
  if (type === 'usage') {
    if (absent(value, 'v')) return fastUsageV1(value);
    return value['v'] === 2 ? fastUsageV2(value) : undefined;
  }
  if (type === 'ledger') return fastLedger(value);
  return undefined;
}

/** A value as bounded text for a quarantine record: JSON (lone surrogates escaped), cut to MAX_RAW_BYTES. */
export function boundedRaw(value: unknown): string {
  let s: string;
  try {
    s = typeof value === 'string' ? value : JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
  } catch {
    s = String(value);
  }
  s = s.toWellFormed().replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '\ufffd');
  const bytes = Buffer.from(s, 'utf8');
  return bytes.length <= MAX_RAW_BYTES ? s : bytes.subarray(0, MAX_RAW_BYTES).toString('utf8').toWellFormed();
}

/** The id a quarantine record gets for an event without a usable id: `raw:<sha256 of boundedRaw(value)>`; the same in every consumer group. */
export function standInId(value: unknown): string {
  return `raw:${createHash('sha256').update(boundedRaw(value)).digest('hex')}`;
}

const DeadLetterSchema = z.object({
  event_id: text(MAX_EVENT_ID_CHARS, 1),
  group: text(64, 1),
  topic: text(64, 1),
  partition: z.number().int().min(-1).max(2 ** 31 - 1),
  offset: z.string().regex(/^(-1|0|[1-9]\d{0,18})$/),
  kind: z.enum(['undecodable', 'invalid_event', 'rejected_by_warehouse', 'apply_failed']),
  reason: z.string().max(4096),
  raw: z.string().max(2 * MAX_RAW_BYTES),
  ts: epochMs,
});

/** Checks a dead-letter record taken from the log; undefined when it is not one (it is then kept as raw text). */
export function decodeDeadLetter(value: unknown): DeadLetter | undefined {
  const r = DeadLetterSchema.safeParse(value);
  return r.success ? r.data : undefined;
}

/** Every dimension at 0, as a fresh mutable record. */
export function zeroQuantities(): UsageQuantities {
  // A loop, not Object.fromEntries: this runs for every version 1 event a consumer stores.
  const q = {} as Record<string, number>;
  for (const k of DIMENSION_KEYS) q[k] = 0;
  return q as UsageQuantities;
}

/**
 * Any usage event as version 2. A version 1 event maps its flat token fields (the DIMENSIONS
 * `column` names) into `quantities` (units 0), and gets the defaults of what it did not record:
 * `served_model`, conditions, thinking and upstream cost null, `price_version` `v1`,
 * `price_list` `default`, no unit prices, tier, multipliers, iterations or unpriced names.
 * Its charge (`cost_micros`) is kept as it was: version 1 events keep their totals.
 * A version 2 event is returned as it is.
 */
export function toV2(e: UsageEvent): UsageEventV2 {
  if (e.v === 2) return e;
  const v1: UsageEventV1 = e;
  const quantities = zeroQuantities();
  const flat = v1 as unknown as Record<string, unknown>;
  for (const d of DIMENSIONS) {
    const n = flat[d.column];
    if (typeof n === 'number') quantities[d.key] = n;
  }
  const out: UsageEventV2 = {
    type: 'usage', v: 2, event_id: v1.event_id, ts: v1.ts, account_id: v1.account_id, key_id: v1.key_id,
    model: v1.model, catalog_model: v1.catalog_model, upstream_model: v1.upstream_model, served_model: null,
    quantities, iterations: [], service_tier: null, inference_geo: null, speed: null, stop_reason: null,
    thinking_tokens: null, cost_micros: v1.cost_micros, upstream_cost_micros: null, upstream_currency: null,
    price_version: V1_PRICE_VERSION, price_list: 'default', unit_prices: {}, tier: null, multipliers: [], unpriced: [],
    status: v1.status, http_status: v1.http_status, latency_ms: v1.latency_ms, ttft_ms: v1.ttft_ms, stream: v1.stream,
    upstream_request_id: v1.upstream_request_id, gateway_id: v1.gateway_id,
  };
  if (v1.upstream_id !== undefined) out.upstream_id = v1.upstream_id;
  if (v1.attempts !== undefined) out.attempts = v1.attempts;
  if (v1.anomalies !== undefined && v1.anomalies.length > 0) out.anomalies = v1.anomalies;
  return out;
}

/** `price_version` of a version 1 event: it recorded none (re-pricing uses the version in force at its `ts`). */
export const V1_PRICE_VERSION = 'v1';
