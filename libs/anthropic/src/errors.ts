// The one catalogue of errors Tollgate returns. Every error a client can see is one of these
// codes; the HTTP status and the Anthropic error type come from here and nowhere else, so the
// official SDKs (which switch on status and `error.type`) behave as they do against Anthropic.
// `retriable` tells consumers and the upstream failover whether trying again can help.

import type { AnthropicErrorBody, AnthropicErrorType } from './types.ts';
import { isRecord } from './record.ts';

export interface ErrorSpec {
  status: number;
  type: AnthropicErrorType;
  retriable: boolean;
  /** default message when the caller gives none */
  message: string;
}

export const ERRORS = {
  invalid_request: { status: 400, type: 'invalid_request_error', retriable: false, message: 'Invalid request' },
  invalid_json: { status: 400, type: 'invalid_request_error', retriable: false, message: 'Request body is not valid JSON' },
  // The catalog's `unpriced: "refuse"` policy: the request would use something it has no price for.
  unpriced_request: { status: 400, type: 'invalid_request_error', retriable: false, message: 'This request uses a feature this gateway has no price for' },
  invalid_api_key: { status: 401, type: 'authentication_error', retriable: false, message: 'invalid x-api-key' },
  // Issue 8 access rules: a key past its `expires_at`.
  key_expired: { status: 401, type: 'authentication_error', retriable: false, message: 'This API key has expired' },
  insufficient_credits: { status: 402, type: 'billing_error', retriable: false, message: 'Your credit balance is too low to cover this request' },
  ip_not_allowed: { status: 403, type: 'permission_error', retriable: false, message: 'Requests from this IP address are not allowed for this key' },
  account_suspended: { status: 403, type: 'permission_error', retriable: false, message: 'This account is suspended' },
  model_not_allowed: { status: 403, type: 'permission_error', retriable: false, message: 'This key may not use this model' },
  permission_denied: { status: 403, type: 'permission_error', retriable: false, message: 'This key does not have permission to use this resource' },
  model_not_found: { status: 404, type: 'not_found_error', retriable: false, message: 'Model not found' },
  not_found: { status: 404, type: 'not_found_error', retriable: false, message: 'Not found' },
  conflict: { status: 409, type: 'invalid_request_error', retriable: false, message: 'Conflict' },
  request_too_large: { status: 413, type: 'request_too_large', retriable: false, message: 'Request exceeds the maximum allowed size' },
  // The client did not send its whole request within REQUEST_TIMEOUT_MS (slow or stalled body).
  request_timeout: { status: 408, type: 'timeout_error', retriable: true, message: 'The request was not received in time' },
  unsupported_encoding: { status: 415, type: 'invalid_request_error', retriable: false, message: 'Unsupported content-encoding' },
  headers_too_large: { status: 431, type: 'request_too_large', retriable: false, message: 'Request headers exceed the maximum allowed size' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error', retriable: true, message: 'Rate limit exceeded' },
  // Not retriable: waiting for the next request will not help until the spend window rolls.
  spend_limit_exceeded: { status: 429, type: 'billing_error', retriable: false, message: 'Spend limit exceeded for this key' },
  internal_error: { status: 500, type: 'api_error', retriable: true, message: 'Internal server error' },
  upstream_error: { status: 503, type: 'api_error', retriable: true, message: 'Upstream provider unavailable' },
  overloaded: { status: 503, type: 'overloaded_error', retriable: true, message: 'Overloaded' },
  // Redis (balances, holds) unreachable: we fail closed on money rather than serve unbilled.
  state_unavailable: { status: 503, type: 'api_error', retriable: true, message: 'Service temporarily unavailable' },
  // The answer was read but its usage event could not be written ahead (this process's DATA_DIR
  // was taken over while it was stopped; its spool cannot be written): withheld, nothing charged.
  usage_unrecorded: { status: 503, type: 'api_error', retriable: true, message: 'The usage of this request could not be recorded; retry the request' },
  // The usage warehouse (ClickHouse) unreachable or too slow: reports, invoices and event pages
  // cannot be read now; nothing is lost (usage keeps flowing through the log).
  warehouse_unavailable: { status: 503, type: 'api_error', retriable: true, message: 'The usage warehouse is temporarily unavailable; retry shortly' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export const ERROR_CODES: readonly ErrorCode[] = Object.keys(ERRORS) as ErrorCode[];

export interface GatewayErrorInit {
  code: ErrorCode;
  status: number;
  type: AnthropicErrorType;
  retriable: boolean;
  message: string;
  headers?: Record<string, string>;
  cause?: unknown;
}

/** Characters of an error message at most (`clientText`): room for any field path and value worth reading. */
export const MAX_ERROR_MESSAGE_CHARS = 1024;

/**
 * C0 controls but tab and line feed (which JSON escapes and a reader expects in a relayed
 * message), C1 controls, the bidi controls (U+061C, U+200E/F, U+202A–E, U+2066–9), U+2028/9.
 */
const UNSAFE_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

/** One UTF-16 code unit as its JSON-style `\uXXXX` escape (for a character shown inert in a message). */
export function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Text as an error message may carry it back to a client: at most `max` characters (cut with
 * `…`, never between the halves of a surrogate pair), and each control (but tab and line feed),
 * bidi control or Unicode line separator written as its `\uXXXX` escape. Messages quote client input (a field name, a value,
 * a model id); this keeps a 16 MB key or a right-to-left override out of every answer, log and
 * terminal that shows one, whichever code built the message.
 */
export function clientText(text: string, max = MAX_ERROR_MESSAGE_CHARS): string {
  const cut = (s: string): string => {
    if (s.length <= max) return s;
    let end = max - 1;
    const last = s.charCodeAt(end - 1);
    if (last >= 0xd800 && last <= 0xdbff) end--;
    return `${s.slice(0, end)}…`;
  };
  const escaped = cut(text).replace(UNSAFE_CHARS, unicodeEscape);
  return cut(escaped);
}

export class GatewayError extends Error {
  override name = 'GatewayError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: AnthropicErrorType;
  readonly retriable: boolean;
  /** extra response headers, e.g. `retry-after` */
  readonly headers?: Record<string, string>;

  /** The message passes through `clientText`: bounded, controls and bidi controls escaped. */
  constructor(init: GatewayErrorInit) {
    super(clientText(init.message), init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status;
    this.type = init.type;
    this.retriable = init.retriable;
    if (init.headers !== undefined) this.headers = init.headers;
  }
}

/**
 * A request body that breaks the protocol (400 `invalid_request`). `field` names the offending
 * field ('' for the body itself); the message reads like Anthropic's: "max_tokens: Field required".
 */
export class ProtocolError extends GatewayError {
  override name = 'ProtocolError';
  readonly field: string;

  constructor(field: string, problem: string) {
    const spec: ErrorSpec = ERRORS.invalid_request;
    super({
      code: 'invalid_request',
      status: spec.status,
      type: spec.type,
      retriable: spec.retriable,
      message: field === '' ? problem : `${field}: ${problem}`,
    });
    this.field = clientText(field, 200);
  }
}

export interface GatewayErrorExtra {
  headers?: Record<string, string>;
  cause?: unknown;
}

/** A catalogue error; status, type and retriable come from the catalogue. */
export function gatewayError(code: ErrorCode, message?: string, extra?: GatewayErrorExtra): GatewayError {
  const spec: ErrorSpec = ERRORS[code];
  return new GatewayError({
    code,
    status: spec.status,
    type: spec.type,
    retriable: spec.retriable,
    message: message ?? spec.message,
    ...(extra?.headers !== undefined ? { headers: extra.headers } : {}),
    ...(extra?.cause !== undefined ? { cause: extra.cause } : {}),
  });
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}

/** Any thrown value as a GatewayError; unknown errors become `internal_error`, message hidden. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return gatewayError('internal_error', undefined, { cause: err });
}

/** Tollgate's wire error: Anthropic's shape plus a machine `code`. */
export interface GatewayErrorBody {
  type: 'error';
  error: { type: AnthropicErrorType; code: ErrorCode; message: string };
  request_id: string;
}

export function errorBody(err: GatewayError, requestId: string): GatewayErrorBody {
  return {
    type: 'error',
    error: { type: err.type, code: err.code, message: err.message },
    request_id: requestId,
  };
}

/**
 * The bytes of an SSE `error` frame, for errors after the response has started streaming
 * (HTTP 200 already sent). Same body as `errorBody`; JSON.stringify never emits a raw newline,
 * so one `data:` line is always enough.
 */
export function sseErrorEvent(err: GatewayError, requestId: string): string {
  return `event: error\ndata: ${JSON.stringify(errorBody(err, requestId))}\n\n`;
}

export function isAnthropicErrorBody(json: unknown): json is AnthropicErrorBody {
  return (
    isRecord(json) &&
    json.type === 'error' &&
    isRecord(json.error) &&
    typeof json.error.type === 'string' &&
    typeof json.error.message === 'string'
  );
}

const ANTHROPIC_ERROR_TYPES: ReadonlySet<string> = new Set<AnthropicErrorType>([
  'invalid_request_error',
  'authentication_error',
  'billing_error',
  'permission_error',
  'not_found_error',
  'request_too_large',
  'rate_limit_error',
  'timeout_error',
  'api_error',
  'overloaded_error',
]);

function isAnthropicErrorType(t: string): t is AnthropicErrorType {
  return ANTHROPIC_ERROR_TYPES.has(t);
}

function typeForStatus(status: number): AnthropicErrorType {
  switch (status) {
    case 400: return 'invalid_request_error';
    case 401: return 'authentication_error';
    case 402: return 'billing_error';
    case 403: return 'permission_error';
    case 404: return 'not_found_error';
    case 408: return 'timeout_error';
    case 413: return 'request_too_large';
    case 429: return 'rate_limit_error';
    case 504: return 'timeout_error';
    case 529: return 'overloaded_error';
    default: return status >= 400 && status < 500 ? 'invalid_request_error' : 'api_error';
  }
}

/** Options of `upstreamErrorToGateway`. */
export interface UpstreamErrorOptions {
  /**
   * Credentials the gateway itself holds (the configured upstream key): removed from any
   * upstream message before a client sees it, on top of the credential-shaped patterns.
   */
  secrets?: readonly string[];
}

// Upstream response headers a client may see on a passed-on error: `retry-after` and
// `x-should-retry`, validated (`upstreamRetryHeaders`). Everything else stays behind; in
// particular `anthropic-ratelimit-*` describe the operator's upstream account, not the
// customer's key (`anthropic-ratelimit-unified-status: rejected` makes Claude Code stop).

const REDACTED = '[redacted]';

/** Shortest encoded run of a secret worth redacting: shorter runs occur in ordinary text. */
const MIN_ENCODED_RUN = 12;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The ways an upstream may echo a secret: as is (matched case-insensitively, which covers an
 * upper- or lower-cased echo), percent-encoded, and base64 / base64url. Base64 of a longer text
 * holds the secret at one of three byte alignments; for each, the characters that depend on the
 * secret alone are the run between the first and last partial 3-byte groups.
 */
function secretForms(secret: string): string[] {
  const forms = new Set([secret, encodeURIComponent(secret)]);
  const bytes = Buffer.from(secret, 'utf8');
  for (let offset = 0; offset < 3; offset++) {
    const b64 = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64').replace(/=+$/, '');
    const from = offset === 0 ? 0 : 4;
    // A trailing group of 1 or 2 bytes is 2 or 3 characters, which depend on what follows.
    const rem = (offset + bytes.length) % 3;
    const to = b64.length - (rem === 0 ? 0 : rem + 1);
    const run = b64.slice(from, Math.max(from, to));
    if (run.length >= MIN_ENCODED_RUN) {
      forms.add(run);
      forms.add(run.replaceAll('+', '-').replaceAll('/', '_'));
    }
  }
  // Longest first, so a shorter form never leaves part of a longer one behind.
  return [...forms].sort((a, b) => b.length - a.length);
}

/**
 * Length of a key's public head, which every key of its kind shares and which is therefore no
 * secret: a known prefix (`sk-ant-api03-`, `sk-ant-oat01-`, `sk-ant-admin01-`, `sk-tg-`, any
 * `sk-ant-<word><digits>-`), else any leading run of short lowercase words ending in `-`/`_`
 * (`admin-secret-`) before the random part. 0 when the key has no such head.
 */
export function publicPrefixLength(key: string): number {
  const known = /^sk-ant-[a-z]+\d+-|^sk-tg-|^sk-/.exec(key);
  if (known !== null) return known[0].length;
  const words = /^(?:[a-z]{1,12}\d{0,3}[-_])+/.exec(key);
  return words === null ? 0 : words[0].length;
}

/** Length of the fixed windows `SecretScrubber.mayContain` looks for (stride `PROBE_STRIDE`). */
const PROBE_WINDOW = 6;
/**
 * Any run of `MIN_ENCODED_RUN` (12) characters of a form holds one whole window starting at a
 * multiple of 7, since 12 ≥ 6 + 7 − 1: so probing those windows alone misses no fragment.
 */
const PROBE_STRIDE = MIN_ENCODED_RUN - PROBE_WINDOW + 1;

/** `s` with ASCII letters lowercased only, so every index still points at the same character. */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/**
 * Finds the gateway's own secrets (the configured upstream key(s)) in text the upstream wrote,
 * whole or in part: every form of `secretForms` (as is, in any letter case, percent-encoded,
 * base64/base64url at any alignment), and every run of at least 12 characters that is a
 * substring of one of those forms (an echo of `ant-api03-…` without its `sk-` prefix, or a
 * truncated key). Secrets under 8 characters are ignored (they would blank out ordinary words).
 * Fragments are taken from the random part of a key only (`publicPrefixLength`): the public
 * head every Anthropic key shares (`sk-ant-api03-`) is ordinary text in answers about keys and
 * is left alone; the whole key is still redacted in every form.
 *
 * Built once per secret list; `mayContain` is the cheap test for the hot path (one
 * case-insensitive regular expression over a few fixed 6-character windows of each form),
 * `redact` the full one.
 */
export class SecretScrubber {
  #forms: string[];
  /** every 12-character substring of every form, ASCII-lowercased */
  #windows = new Set<string>();
  #probe: RegExp | null;

  constructor(secrets: readonly string[]) {
    const forms = new Set<string>();
    const randomForms = new Set<string>();
    for (const s of secrets) {
      if (s.length < 8) continue;
      for (const f of secretForms(s)) forms.add(f);
      // Fragments come from the random part only: the public head (`sk-ant-api03-`) is in
      // every Anthropic key and in ordinary answers about them.
      const random = s.slice(publicPrefixLength(s));
      if (random.length >= MIN_ENCODED_RUN) for (const f of secretForms(random)) randomForms.add(f);
    }
    this.#forms = [...forms].sort((a, b) => b.length - a.length);
    const probes = new Set<string>();
    for (const f of randomForms) {
      const lower = asciiLower(f);
      for (let i = 0; i + MIN_ENCODED_RUN <= lower.length; i++) this.#windows.add(lower.slice(i, i + MIN_ENCODED_RUN));
      for (let i = 0; i + PROBE_WINDOW <= lower.length; i += PROBE_STRIDE) probes.add(lower.slice(i, i + PROBE_WINDOW));
    }
    // A whole form is found by its first window (a form whose random part is under 12 has no fragments).
    for (const f of this.#forms) probes.add(asciiLower(f).slice(0, PROBE_WINDOW));
    this.#probe = probes.size === 0 ? null : new RegExp([...probes].map(escapeRegExp).join('|'), 'i');
  }

  /** False when `text` certainly holds no secret (whole or a run of 12); true when it may. */
  mayContain(text: string): boolean {
    return this.#probe !== null && this.#probe.test(text);
  }

  /** `text` with each whole form, and each run of ≥ 12 characters of one, replaced by `[redacted]`. */
  redact(text: string): string {
    if (!this.mayContain(text)) return text;
    let out = text;
    for (const form of this.#forms) out = out.replace(new RegExp(escapeRegExp(form), 'gi'), REDACTED);
    const lower = asciiLower(out);
    let covered: Uint8Array | null = null;
    for (let i = 0; i + MIN_ENCODED_RUN <= lower.length; i++) {
      if (!this.#windows.has(lower.slice(i, i + MIN_ENCODED_RUN))) continue;
      covered ??= new Uint8Array(lower.length);
      covered.fill(1, i, i + MIN_ENCODED_RUN);
    }
    if (covered === null) return out;
    let result = '';
    for (let i = 0; i < out.length; i++) {
      if (covered[i] === 0) result += out[i];
      else if (i === 0 || covered[i - 1] === 0) result += REDACTED;
    }
    return result;
  }
}

/** Most scrubbers kept (one per distinct set of secrets: the gateway's own, plus each recent caller's key). */
const MAX_SCRUBBERS = 1024;
const scrubbers = new Map<string, SecretScrubber>();

/**
 * The scrubber of `secrets`, built once per distinct set (by content, not by array: callers
 * build a fresh array per request — the caller's key plus the gateway's secrets — and building
 * a scrubber compiles its forms and probe, far dearer than the redaction itself). Least
 * recently used sets are forgotten past `MAX_SCRUBBERS`.
 */
export function secretScrubber(secrets: readonly string[]): SecretScrubber {
  const id = secrets.join('\0');
  let s = scrubbers.get(id);
  if (s === undefined) {
    s = new SecretScrubber(secrets);
    if (scrubbers.size >= MAX_SCRUBBERS) scrubbers.delete(scrubbers.keys().next().value!);
  } else {
    scrubbers.delete(id); // re-inserted below: Map order is recency order
  }
  scrubbers.set(id, s);
  return s;
}

/**
 * The random-looking tokens in `text`, as [start, end) index pairs in order — the one
 * high-entropy rule of the project (`looksLikeCredential` of @tollgate/http reads it too): a run
 * of at least 32 base64/base64url/hex characters that mixes upper case, lower case and digits
 * (or, without digits, has two capitals side by side at least three times, as random letters do
 * and CamelCase words do not) — what `randomBytes(n).toString('base64url')` gives at n ≥ 24 —
 * or at least 32 hex digits in one piece with letters and digits (hex keys, hashes). Ids the
 * project puts in URLs stay outside it: `acct_`/`key_` + 20 base36 and `req_` + 24 base62 are
 * shorter than 32, and UUIDs and model ids (`claude-sonnet-4-5-20250929`) have no upper case
 * and are broken by dashes.
 */
export function randomTokenRuns(text: string): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const m of text.matchAll(/[A-Za-z0-9_+/=-]{32,}/g)) {
    const run = m[0];
    if (!/[A-Z]/.test(run) || !/[a-z]/.test(run)) continue;
    // Without a digit (one random 32-character token in ~250), random letters still put two
    // capitals side by side about every fourth pair; CamelCase words almost never do.
    const capitalPairs = (run.match(/[A-Z](?=[A-Z])/g) ?? []).length;
    if (/[0-9]/.test(run) || capitalPairs >= 3) runs.push([m.index, m.index + run.length]);
  }
  for (const m of text.matchAll(/[0-9A-Fa-f]{32,}/g)) {
    if (/[0-9]/.test(m[0]) && /[A-Fa-f]/.test(m[0]) && !runs.some(([a, b]) => a <= m.index && m.index + m[0].length <= b)) {
      runs.push([m.index, m.index + m[0].length]);
    }
  }
  runs.sort((a, b) => a[0] - b[0]);
  // A hex run may overlap a base64 one: one span each, so a redaction never cuts another.
  const merged: Array<[number, number]> = [];
  for (const r of runs) {
    const last = merged[merged.length - 1];
    if (last !== undefined && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

/**
 * `text` with every credential removed: each of `secrets` (≥ 8 characters so a short value
 * cannot blank out ordinary words) whole or as any run of ≥ 12 of its characters, in any letter
 * case, percent-encoded or base64/base64url encoded at any alignment (`SecretScrubber`), and
 * anything credential-shaped — `sk-…` keys (Anthropic's and Tollgate's), `Bearer <token>`,
 * `api_key=` / `x-api-key:` / `token=` style pairs, and random-looking tokens
 * (`randomTokenRuns`). For upstream error messages that echo what they were sent.
 */
export function redactCredentials(text: string, secrets: readonly string[] = []): string {
  let out = secretScrubber(secrets).redact(text)
    .replace(/\bsk-[A-Za-z0-9_-]{6,}/gi, REDACTED)
    .replace(/\bBearer\s+[^\s"',;]+/gi, `Bearer ${REDACTED}`)
    .replace(/\b(x-api-key|api[_-]?key|access[_-]?token|token)(["']?\s*[:=]\s*["']?)[^\s"',;&]+/gi, `$1$2${REDACTED}`);
  const runs = randomTokenRuns(out);
  for (let i = runs.length - 1; i >= 0; i--) out = out.slice(0, runs[i]![0]) + REDACTED + out.slice(runs[i]![1]);
  return out;
}

/**
 * An error the upstream returned (before any streamed byte), to be passed on to the client.
 * The upstream's status and error type are kept, with a Tollgate code added, and its message
 * with every credential redacted (`redactCredentials`) — except where the error is about the
 * gateway's own upstream account rather than the client's request:
 * - 401 (bad upstream credential) and 402 (upstream account out of credit) would tell the
 *   client its own key or balance is at fault, so they become `upstream_error` 503; the
 *   upstream's message is dropped entirely (it is about the operator's credential). Still
 *   `retriable` for the gateway (another upstream account may work).
 * - 403 stays `permission_denied` 403 (redacted message): the upstream only ever sees the
 *   operator's credential, so its refusal is about that account.
 * These three carry `x-should-retry: false`: the official SDKs retry 5xx twice by default, and
 * a retry cannot fix the operator's configuration.
 * Anything that is not an HTTP error status is also `upstream_error`, and so is a 408 (the
 * upstream's timeout, not the client's): 503, retriable.
 *
 * `headers` (optional) are the upstream response headers: `retry-after` and `x-should-retry`
 * are carried over on other errors (Anthropic's 429 / 529 advice); no other upstream header is.
 */
export function upstreamErrorToGateway(
  status: number,
  body: unknown,
  headers?: Record<string, string | string[] | undefined>,
  options: UpstreamErrorOptions = {},
): GatewayError {
  const upstream = isAnthropicErrorBody(body) ? body.error : null;
  const passed = headers === undefined ? {} : upstreamRetryHeaders(headers);
  const withHeaders = Object.keys(passed).length === 0 ? {} : { headers: passed };
  const operatorProblem = { headers: { 'x-should-retry': 'false' } };

  if (status === 401 || status === 402) {
    const what = status === 401 ? 'rejected the gateway\'s credential' : 'refused the gateway\'s account (billing)';
    const type = upstream !== null && isAnthropicErrorType(upstream.type) ? upstream.type : typeForStatus(status);
    return gatewayError('upstream_error', `Upstream provider ${what} (HTTP ${status} ${type}); the gateway operator must fix its upstream configuration`, operatorProblem);
  }
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    return gatewayError('upstream_error', `Upstream provider error (HTTP ${status})`, withHeaders);
  }
  if (status === 408) {
    // The upstream timed out waiting for the gateway: relayed as 408 it would read as the
    // client's own request timeout. Retriable: the SDKs retry a 503.
    return gatewayError('upstream_error', 'Upstream provider timed out (HTTP 408)', withHeaders);
  }

  const type = upstream !== null && isAnthropicErrorType(upstream.type) ? upstream.type : typeForStatus(status);
  const code = codeFor(status, type);
  const message = upstream === null
    ? `Upstream provider returned HTTP ${status}`
    : redactCredentials(upstream.message, options.secrets);
  return new GatewayError({
    code,
    status,
    type,
    retriable: status === 408 || status === 429 || status >= 500,
    message,
    ...(status === 403 ? operatorProblem : withHeaders),
  });
}

/** `Retry-After` as RFC 9110 §10.2.3 allows it: delta-seconds (digits only) or an HTTP-date. */
const DELTA_SECONDS = /^\d{1,10}$/;
/** An HTTP-date in any of the three forms RFC 9110 §5.6.7 lets a recipient accept. */
const HTTP_DATE = /^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT|(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4})$/;

/**
 * The retry advice of an upstream error response that a client may see, and nothing else:
 * `retry-after` only as delta-seconds or an HTTP-date (re-rendered in the IMF-fixdate form),
 * `x-should-retry` only as `true` or `false` (Anthropic's SDKs read exactly these). Any other
 * value is dropped: upstream header text reaches the client only in a shape that cannot carry
 * a credential or anything else the upstream echoes.
 */
export function upstreamRetryHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  const retryAfter = firstHeader(headers['retry-after'])?.trim();
  if (retryAfter !== undefined) {
    if (DELTA_SECONDS.test(retryAfter)) out['retry-after'] = retryAfter;
    else if (HTTP_DATE.test(retryAfter)) {
      const ms = Date.parse(retryAfter);
      if (Number.isFinite(ms)) out['retry-after'] = new Date(ms).toUTCString();
    }
  }
  const shouldRetry = firstHeader(headers['x-should-retry'])?.trim().toLowerCase();
  if (shouldRetry === 'true' || shouldRetry === 'false') out['x-should-retry'] = shouldRetry;
  return out;
}

/**
 * An error the upstream reported inside a successful response — an SSE `error` event after
 * HTTP 200, or a 2xx JSON body whose `type` is `error` — as the gateway relays it. `body` is
 * the event's `data` (or the JSON body), parsed, or anything unparsable. The upstream's error
 * type is kept when it is an Anthropic one (else `api_error`); the code, status and
 * retriability come from the catalogue (`overloaded_error` → `overloaded`, `rate_limit_error`
 * → `rate_limit_exceeded`, `invalid_request_error` → `invalid_request`, others →
 * `upstream_error`); the message is redacted (`redactCredentials`). An authentication,
 * billing or permission error is about the operator's upstream account: its message is dropped
 * entirely and the error is `upstream_error` with `x-should-retry: false`, as for an HTTP
 * 401/402/403 (`upstreamErrorToGateway`).
 */
export function upstreamEventError(body: unknown, options: UpstreamErrorOptions = {}): GatewayError {
  const upstream = isRecord(body) && isRecord(body.error) ? body.error : null;
  const type: AnthropicErrorType = upstream !== null && typeof upstream.type === 'string' && isAnthropicErrorType(upstream.type)
    ? upstream.type
    : 'api_error';
  if (type === 'authentication_error' || type === 'billing_error' || type === 'permission_error') {
    return gatewayError('upstream_error', `Upstream provider refused the gateway's account (${type}); the gateway operator must fix its upstream configuration`, {
      headers: { 'x-should-retry': 'false' },
    });
  }
  const code: ErrorCode = type === 'overloaded_error' ? 'overloaded'
    : type === 'rate_limit_error' ? 'rate_limit_exceeded'
    : type === 'invalid_request_error' ? 'invalid_request'
    : 'upstream_error';
  const spec: ErrorSpec = ERRORS[code];
  const message = upstream !== null && typeof upstream.message === 'string' && upstream.message !== ''
    ? redactCredentials(upstream.message, options.secrets)
    : 'Upstream provider reported an error';
  return new GatewayError({ code, status: spec.status, type, retriable: spec.retriable, message });
}

function codeFor(status: number, type: AnthropicErrorType): ErrorCode {
  if (type === 'overloaded_error') return 'overloaded';
  switch (status) {
    case 403: return 'permission_denied';
    case 404: return 'not_found';
    case 409: return 'conflict';
    case 413: return 'request_too_large';
    case 429: return 'rate_limit_exceeded';
  }
  if (status >= 500 || status === 408) return 'upstream_error';
  return 'invalid_request';
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
