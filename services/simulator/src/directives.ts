import type { IncomingHttpHeaders } from 'node:http';
import { invalidRequest } from './errors.ts';

export type Fault =
  | { readonly kind: 'overloaded' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'drop_after'; readonly after: number }
  | { readonly kind: 'sse_error_after'; readonly after: number };

/** `content-encoding` values the simulator can force onto a response (RFC 9110 names). */
export const ENCODINGS = ['gzip', 'deflate', 'br', 'zstd'] as const;
export type Encoding = (typeof ENCODINGS)[number];

/** Upstream stream anomalies (`sse=<kind>`, streaming only). */
export const SSE_ANOMALIES = ['no_message_stop', 'duplicate_message_start', 'delta_after_stop', 'delta_lower'] as const;
export type SseAnomaly = (typeof SSE_ANOMALIES)[number];

/** Corruptions of the final reported `output_tokens` (`bad_usage=<kind>`). */
export const BAD_USAGE = ['negative', 'string', 'nan', 'huge', 'null'] as const;
export type BadUsage = (typeof BAD_USAGE)[number];

/** Malformed 2xx bodies (`body=<kind>`, non-streaming only). */
export const BAD_BODIES = ['no_usage', 'not_json'] as const;
export type BadBody = (typeof BAD_BODIES)[number];

/** Per-request overrides, from `[[sim key=value]]` in the last user message or `x-sim-<key>` headers. */
export interface Directives {
  readonly input?: number;
  readonly output?: number;
  readonly cache_read?: number;
  readonly cache_write_5m?: number;
  readonly cache_write_1h?: number;
  readonly status?: number;
  readonly fault?: Fault;
  readonly latency_ms?: number;
  readonly ttft_ms?: number;
  readonly tps?: number;
  readonly tool?: string;
  /** Compress every response body of this request with this encoding, whatever `accept-encoding` says. */
  readonly encoding?: Encoding;
  readonly sse?: SseAnomaly;
  readonly bad_usage?: BadUsage;
  readonly body?: BadBody;
  /** Seconds; the error response carries `retry-after` and a rejected rate-limit header set. Needs `status` or `fault=overloaded`. */
  readonly retry_after?: number;
  /** The error message echoes the received credential. Needs `status` or `fault=overloaded`. */
  readonly echo_key?: boolean;
  /** `usage.server_tool_use.web_search_requests` */
  readonly web_search?: number;
  /** `usage.server_tool_use.web_fetch_requests` */
  readonly web_fetch?: number;
  /** `usage.inference_geo` (e.g. `us`) */
  readonly geo?: string;
  /** `usage.service_tier` */
  readonly tier?: (typeof SERVICE_TIERS)[number];
  /** `usage.speed` */
  readonly speed?: (typeof SPEEDS)[number];
  /** the reply's top-level `model` (a fallback serves another model than the one asked for) */
  readonly served_model?: string;
  /** a `refusal` before any output: empty content, `stop_reason: "refusal"`, output = the `output` directive or 0 */
  readonly refusal?: boolean;
  /** `usage.iterations`: `type:model:input:output` entries, comma-separated (`model` may be `-` for none) */
  readonly iterations?: ReadonlyArray<{ type: string; model: string | null; input: number; output: number }>;
  /** an extra numeric usage field the gateway does not know, `name:n` */
  readonly usage_field?: { name: string; value: number };
}

export const SERVICE_TIERS = ['standard', 'priority', 'batch'] as const;
export const SPEEDS = ['standard', 'fast'] as const;
const LABEL = /^[A-Za-z0-9_.:@-]{1,64}$/;

// A directive starts the text or follows whitespace: `arr[[sim x=1]]` in pasted code is code.
const DIRECTIVE = /(?<!\S)\[\[sim\b([^\]]*)\]\]/g;
const HEADER_PREFIX = 'x-sim-';
const INTEGER_KEYS = ['input', 'output', 'cache_read', 'cache_write_5m', 'cache_write_1h', 'latency_ms', 'ttft_ms', 'retry_after', 'web_search', 'web_fetch'] as const;

function label(key: string, value: string): string {
  if (!LABEL.test(value)) throw invalidRequest(`simulator directive ${key}=${value}: expected a name of letters, digits and _.:@-`);
  return value;
}

function oneOf<T extends string>(key: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw invalidRequest(`simulator directive ${key}=${value}: expected one of ${allowed.join(', ')}`);
}

export function stripDirectives(text: string): string {
  return text.replace(DIRECTIVE, ' ');
}

function nonNegativeInteger(key: string, value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw invalidRequest(`simulator directive ${key}=${value}: expected a non-negative integer`);
  }
  return Number(value);
}

function parseFault(value: string): Fault {
  if (value === 'overloaded' || value === 'drop') return { kind: value };
  const match = /^(drop_after|sse_error_after):(\d+)$/.exec(value);
  if (match?.[1] === 'drop_after' || match?.[1] === 'sse_error_after') {
    return { kind: match[1], after: nonNegativeInteger('fault', match[2] ?? '') };
  }
  throw invalidRequest(
    `simulator directive fault=${value}: expected overloaded, drop, drop_after:<n> or sse_error_after:<n>`,
  );
}

/**
 * Merges header directives with text directives (text wins, later text wins over earlier) and
 * validates them. Unknown keys and malformed values are a 400 so a typo in a test fails loudly
 * instead of silently running the default path.
 */
export function parseDirectives(text: string, headers: IncomingHttpHeaders): Directives {
  const raw = new Map<string, string>();
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(HEADER_PREFIX) || value === undefined) continue;
    const v = Array.isArray(value) ? value.at(-1) : value;
    if (v !== undefined) raw.set(name.slice(HEADER_PREFIX.length).replaceAll('-', '_'), v.trim());
  }
  for (const match of text.matchAll(DIRECTIVE)) {
    for (const pair of (match[1] ?? '').trim().split(/\s+/)) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq <= 0) throw invalidRequest(`simulator directive "${pair}": expected key=value`);
      raw.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
  }

  const out: { -readonly [K in keyof Directives]: Directives[K] } = {};
  for (const [key, value] of raw) {
    if ((INTEGER_KEYS as readonly string[]).includes(key)) {
      out[key as (typeof INTEGER_KEYS)[number]] = nonNegativeInteger(key, value);
    } else if (key === 'status') {
      const status = nonNegativeInteger(key, value);
      if (status < 400 || status > 599) throw invalidRequest(`simulator directive status=${value}: expected 400-599`);
      out.status = status;
    } else if (key === 'tps') {
      const tps = Number(value);
      if (value === '' || !Number.isFinite(tps) || tps < 0) {
        throw invalidRequest(`simulator directive tps=${value}: expected a non-negative number`);
      }
      out.tps = tps;
    } else if (key === 'fault') {
      out.fault = parseFault(value);
    } else if (key === 'tool') {
      if (value === '') throw invalidRequest('simulator directive tool: expected a tool name');
      out.tool = value;
    } else if (key === 'encoding') {
      out.encoding = oneOf(key, value, ENCODINGS);
    } else if (key === 'sse') {
      out.sse = oneOf(key, value, SSE_ANOMALIES);
    } else if (key === 'bad_usage') {
      out.bad_usage = oneOf(key, value, BAD_USAGE);
    } else if (key === 'body') {
      out.body = oneOf(key, value, BAD_BODIES);
    } else if (key === 'geo') {
      out.geo = label(key, value);
    } else if (key === 'tier') {
      out.tier = oneOf(key, value, SERVICE_TIERS);
    } else if (key === 'speed') {
      out.speed = oneOf(key, value, SPEEDS);
    } else if (key === 'served_model') {
      out.served_model = label(key, value);
    } else if (key === 'refusal') {
      if (value !== '1') throw invalidRequest(`simulator directive refusal=${value}: expected 1`);
      out.refusal = true;
    } else if (key === 'iterations') {
      out.iterations = value.split(',').map((entry) => {
        const m = /^([a-z_]{1,64}):([A-Za-z0-9_.@-]{1,64}):(\d+):(\d+)$/.exec(entry);
        if (!m) throw invalidRequest(`simulator directive iterations=${value}: expected type:model:input:output[,…] (model - for none)`);
        return { type: m[1]!, model: m[2] === '-' ? null : m[2]!, input: nonNegativeInteger(key, m[3]!), output: nonNegativeInteger(key, m[4]!) };
      });
    } else if (key === 'usage_field') {
      const m = /^([a-z_]{1,64}):(\d+)$/.exec(value);
      if (!m) throw invalidRequest(`simulator directive usage_field=${value}: expected name:count`);
      out.usage_field = { name: m[1]!, value: nonNegativeInteger(key, m[2]!) };
    } else if (key === 'echo_key') {
      if (value !== '1') throw invalidRequest(`simulator directive echo_key=${value}: expected 1`);
      out.echo_key = true;
    } else {
      throw invalidRequest(`unknown simulator directive "${key}"`);
    }
  }
  // These shape an error response; without one they would silently do nothing.
  if ((out.retry_after !== undefined || out.echo_key) && out.status === undefined && out.fault?.kind !== 'overloaded') {
    throw invalidRequest('simulator directives retry_after and echo_key need status=<400-599> or fault=overloaded');
  }
  return out;
}
