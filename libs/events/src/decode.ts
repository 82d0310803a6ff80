// The consumer boundary: every event a consumer takes from a log goes through `decodeEvent`
// before it touches a store. An event one stage accepts and a later stage rejects would stop
// the pipeline at that later stage forever, so the bounds here are the narrowest that EVERY
// stage can hold (ClickHouse UInt32 / Int64 columns, Redis Lua numbers, JS bigint), and the
// edges (gateway, control API) refuse the same values with a 400 before they become events.

import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DIMENSIONS, DIMENSION_KEYS } from '@tollgate/pricing';
import type { Dimension } from '@tollgate/pricing';
import type { AnyEvent, UsageEvent, UsageEventV1, UsageEventV2, UsageQuantities } from './types.ts';
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

/** Largest catalog document a `price_version` event carries, as JSON text (bytes of UTF-8). */
export const MAX_CATALOG_BYTES = 1024 * 1024;

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
  ts: epochMs,
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

const PriceVersionSchema = z.object({
  type: z.literal('price_version'),
  event_id: eventId,
  ts: epochMs,
  id: z.string().regex(/^[0-9a-f]{12}$/, 'must be a catalog content id (12 hex digits)'),
  effective_at: epochMs,
  catalog: z.record(z.string(), z.unknown()).refine(CATALOG_SIZE, `must be a JSON object of at most ${MAX_CATALOG_BYTES} bytes`),
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
  unit_prices: z.record(label.min(1), decimal).refine((r) => Object.keys(r).length <= MAX_NAMES, `must have at most ${MAX_NAMES} entries`),
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
 * are dropped (a newer producer may add some). Never throws; a failure names the field.
 */
export function decodeEvent(value: unknown): DecodeResult {
  const rec = typeof value === 'object' && value !== null ? value as Record<string, unknown> : undefined;
  const rawId = rec?.['event_id'];
  const eventId = typeof rawId === 'string' && textProblem(rawId, MAX_EVENT_ID_CHARS) === undefined && rawId !== '' ? rawId : undefined;
  if (rec === undefined) return { ok: false, reason: 'not an object', eventId };
  if (rec['type'] === 'undecodable') return { ok: false, reason: String(rec['reason']), eventId };
  let kind = String(rec['type']);
  if (kind === 'usage' && rec['v'] !== undefined) {
    // Version 1 has no `v`; a version this consumer does not know is poison, not a guess.
    if (rec['v'] !== 2) return { ok: false, reason: `v: usage event version ${String(JSON.stringify(rec['v'])).slice(0, 20)} is not supported (1 has no "v"; 2)`, eventId };
    kind = 'usage_v2';
  }
  const schema = kind === 'usage_v2' ? (usageV2 ??= usageV2Schema()) : Object.hasOwn(SCHEMAS, kind) ? SCHEMAS[kind] : undefined;
  if (!schema) return { ok: false, reason: `unknown event type ${JSON.stringify(String(rec['type'])).slice(0, 80)}`, eventId };
  const r = schema.safeParse(value);
  if (!r.success) {
    const reason = r.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; ');
    return { ok: false, reason, eventId };
  }
  return { ok: true, event: r.data as AnyEvent };
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
  return Object.fromEntries(DIMENSION_KEYS.map((k) => [k, 0])) as UsageQuantities;
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
