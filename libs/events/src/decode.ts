// The consumer boundary: every event a consumer takes from a log goes through `decodeEvent`
// before it touches a store. An event one stage accepts and a later stage rejects would stop
// the pipeline at that later stage forever, so the bounds here are the narrowest that EVERY
// stage can hold (ClickHouse UInt32 / Int64 columns, Redis Lua numbers, JS bigint), and the
// edges (gateway, control API) refuse the same values with a 400 before they become events.

import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { AnyEvent } from './types.ts';
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

const UsageSchema = z.object({
  type: z.literal('usage'),
  event_id: eventId,
  ts: epochMs,
  account_id: id,
  key_id: text(MAX_TEXT_CHARS),
  model: text(MAX_TEXT_CHARS),
  catalog_model: text(MAX_TEXT_CHARS),
  upstream_model: text(MAX_TEXT_CHARS),
  input_tokens: count,
  output_tokens: count,
  cache_read_tokens: count,
  cache_write_5m_tokens: count,
  cache_write_1h_tokens: count,
  cost_micros: money('nonnegative'),
  status: z.enum(['ok', 'upstream_error', 'client_disconnect', 'stream_error', 'unmetered', 'usage_anomaly']),
  http_status: z.number().int().min(0).max(65535),
  latency_ms: count,
  ttft_ms: count.nullable(),
  stream: z.boolean(),
  upstream_request_id: text(MAX_TEXT_CHARS).nullable(),
  gateway_id: text(MAX_TEXT_CHARS),
  anomalies: z.array(text(MAX_TEXT_CHARS)).max(32).optional(),
});

const LedgerSchema = z.discriminatedUnion('kind', [
  // Grants and refunds add money; an adjustment is a signed correction.
  z.object({ kind: z.literal('grant'), amount_micros: money('positive') }),
  z.object({ kind: z.literal('refund'), amount_micros: money('positive') }),
  z.object({ kind: z.literal('adjustment'), amount_micros: money('nonzero') }),
]).and(z.object({
  type: z.literal('ledger'),
  event_id: eventId,
  ts: epochMs,
  account_id: id,
  reference: text(MAX_REFERENCE_CHARS, 1),
}));

const AccountSchema = z.object({
  type: z.literal('account'),
  event_id: eventId,
  ts: epochMs,
  account: z.object({
    id, name: text(MAX_TEXT_CHARS), status: z.enum(['active', 'disabled']), created_at: epochMs,
    version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
});

const KeySchema = z.object({
  type: z.literal('key'),
  event_id: eventId,
  ts: epochMs,
  key: z.object({
    id, account_id: id, name: text(MAX_TEXT_CHARS), prefix: text(MAX_TEXT_CHARS), hash: id,
    status: z.enum(['active', 'revoked']), created_at: epochMs, revoked_at: epochMs.nullable(),
    version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
});

const SCHEMAS: Record<string, z.ZodType> = { usage: UsageSchema, ledger: LedgerSchema, account: AccountSchema, key: KeySchema };

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
  const schema = SCHEMAS[String(rec['type'])];
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
