// Token usage as the gateway bills it. `TokenUsage` is the shape libs/pricing prices; keep the
// two in step.

import type { Usage } from './types.ts';
import { isRecord } from './record.ts';

export interface TokenUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite5m: number;
  cacheWrite1h: number;
}

export const ZERO_USAGE: Readonly<TokenUsage> = Object.freeze({
  input: 0,
  output: 0,
  cacheRead: 0,
  cacheWrite5m: 0,
  cacheWrite1h: 0,
});

/**
 * The largest token count Tollgate accepts from the wire: 2^32 − 1, what the warehouse stores
 * per class (UInt32). A larger value cannot be stored exactly, so it is no count at all.
 */
export const MAX_TOKEN_COUNT = 4_294_967_295;

/**
 * What can be wrong with the usage an upstream reports, one name per rule (README, "Money and
 * billing rules"). Recorded in the usage event's `anomalies` and counted by the metric
 * `tollgate_usage_anomalies_total{kind}`.
 * - `invalid_count`: a count that is not a non-negative safe integer ≤ `MAX_TOKEN_COUNT`
 *   (negative, fractional, NaN, 1e20, a string), or a required count (`output_tokens`; in a
 *   JSON message also `input_tokens`) missing or null. Ignored: the earlier value is kept.
 * - `count_decreased`: a report lower than an earlier one of the same message. Counters only
 *   grow, so the larger is kept.
 * - `duplicate_message_start`: a second `message_start`; its usage merges by max.
 * - `event_after_stop`: an event after `message_stop`; ignored.
 * - `malformed_event`: an SSE `data:` payload that is not a JSON object; ignored.
 * - `missing_message_stop`: the answer ended (`message_delta` with `stop_reason`) but
 *   `message_stop` never came; charged as complete.
 * - `no_usage`: a 2xx answer without readable usage (not JSON, no `usage`); charged 0.
 * - `cost_over_bound`: the cost came out above the request's hold, the proven upper bound;
 *   charged the hold.
 * - `cache_breakdown_mismatch`: a report's `cache_creation` breakdown does not add up to its own
 *   `cache_creation_input_tokens`; charged as the larger of the two readings.
 * - `error_after_answer`: an SSE `error` event after the answer was complete (a final
 *   `message_delta` with `stop_reason`); the answer is charged, the error not relayed.
 * - `output_over_max_tokens`: more output than `max_tokens` × the server-loop iterations of the
 *   request (`inputTokenBound(...).iterations`) allow; charged that bound.
 * - `units_over_max_uses`: more server-tool uses of a unit (web searches, web fetches) than the
 *   request declared (Σ `max_uses` of its tools of that unit, or the catalog bound the gateway
 *   sent where the tool had none); charged that bound, the excess as the upstream's own fault.
 * - `invalid_label`: a pricing condition or name (`usage.service_tier`, `inference_geo`,
 *   `speed`, the response `model`, an iteration's `type` / `model`) that is not short printable
 *   text (at most `MAX_LABEL_CHARS`, models `MAX_MODEL_CHARS`), or a `usage.iterations` that is
 *   not a list of objects or has more than `MAX_ITERATIONS` entries: ignored (the request is
 *   priced without it: standard conditions, the totals at the serving model).
 */
export type UsageAnomaly =
  | 'invalid_count'
  | 'count_decreased'
  | 'duplicate_message_start'
  | 'event_after_stop'
  | 'malformed_event'
  | 'missing_message_stop'
  | 'no_usage'
  | 'cost_over_bound'
  | 'cache_breakdown_mismatch'
  | 'error_after_answer'
  | 'output_over_max_tokens'
  | 'invalid_label'
  | 'units_over_max_uses'
  // set by the gateway, not read from the wire: the stream was cut when this process's shutdown
  // grace (SHUTDOWN_GRACE_MS) ran out; charged the usage reported until the cut
  | 'cut_by_shutdown'
  // set by the gateway: the client had left before the settlement, though the status keeps the
  // upstream's outcome (`upstream_error`, `stream_error`, `unmetered`): no reply reached it
  | 'client_gone'
  // set by the gateway: the rest of a stream was withheld because its usage could not be written
  // ahead (the client was told `usage_unrecorded` and to retry); charged nothing, whatever usage
  // the upstream reported, so a re-price keeps it at 0
  | 'answer_withheld';

/** Every `UsageAnomaly`, for metrics that should exist at zero from the start. */
export const USAGE_ANOMALIES: readonly UsageAnomaly[] = Object.freeze([
  'invalid_count', 'count_decreased', 'duplicate_message_start', 'event_after_stop',
  'malformed_event', 'missing_message_stop', 'no_usage', 'cost_over_bound',
  'cache_breakdown_mismatch', 'error_after_answer', 'output_over_max_tokens', 'invalid_label',
  'units_over_max_uses', 'cut_by_shutdown', 'client_gone', 'answer_withheld',
]);

/** Longest pricing label read from the wire (`service_tier`, `inference_geo`, `speed`, an iteration `type`). */
export const MAX_LABEL_CHARS = 64;
/** Longest model name read from the wire (the response's `model`, an iteration's `model`). */
export const MAX_MODEL_CHARS = 256;
/** Most `usage.iterations` entries read (fallback, advisor and compaction sub-calls of one request). */
export const MAX_ITERATIONS = 64;

/** Most count fields read beyond the known ones (new top-level usage counts; `server_tool_use` fields). */
export const MAX_OTHER_COUNTS = 16;

const LABEL_RE = /^[\x21-\x7e]+$/;
const MODEL_RE = /^[\x20-\x7e]+$/;

/** `v` when it is a label the event can carry (1–`max` printable ASCII characters, no spaces for labels); else undefined. */
export function wireLabel(v: unknown, max = MAX_LABEL_CHARS): string | undefined {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) return undefined;
  return (max === MAX_LABEL_CHARS ? LABEL_RE : MODEL_RE).test(v) ? v : undefined;
}

/**
 * One `usage.iterations` entry as read (Anthropic "Messages API", `Usage.iterations`: per
 * sampling step of the request, `type` `message` / `compaction` / `advisor_message`, its own
 * token counts, and `model` where another model served it). Counts are validated like the
 * top-level ones: an unusable count is 0 (and `invalid_count`).
 */
export interface WireIteration {
  type: string;
  /** the serving model, when the entry names one */
  model: string | null;
  usage: TokenUsage;
  /** the entry's `server_tool_use` counts, when it has any */
  serverToolUse: Record<string, number>;
}

/** Conditions of the response that decide its price (`usage.service_tier`, `inference_geo`, `speed`). */
export const USAGE_LABELS = ['service_tier', 'inference_geo', 'speed'] as const;

/** A usable token count: a non-negative safe integer no larger than `MAX_TOKEN_COUNT`. */
export function isTokenCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= MAX_TOKEN_COUNT;
}

/** A token count from the wire: anything but a usable count is 0. */
function count(v: unknown): number {
  return isTokenCount(v) ? v : 0;
}

/**
 * The billable token counts of a wire `usage` object.
 *
 * Cache writes: when the `cache_creation` breakdown is present it splits them into 5 m and 1 h.
 * When only `cache_creation_input_tokens` is present, all of it counts as 5 m (the default TTL,
 * and the cheaper rate). When both are present and the total exceeds the breakdown's sum — which
 * happens when a later cumulative `message_delta` raised the total without repeating the
 * breakdown — the excess counts as 5 m, so no token the upstream reported is dropped.
 *
 * Safe on any input: missing, null, negative, non-integer or too large (> `MAX_TOKEN_COUNT`)
 * counts are 0. To learn which values were bad, use `UsageTally`.
 */
export function usageFromWire(u: Usage | null | undefined): TokenUsage {
  if (!isRecord(u)) return { ...ZERO_USAGE };
  const total = count(u.cache_creation_input_tokens);
  let cacheWrite5m = total;
  let cacheWrite1h = 0;
  const cc = u.cache_creation;
  if (isRecord(cc) && (cc.ephemeral_5m_input_tokens != null || cc.ephemeral_1h_input_tokens != null)) {
    cacheWrite5m = count(cc.ephemeral_5m_input_tokens);
    cacheWrite1h = count(cc.ephemeral_1h_input_tokens);
    const excess = total - cacheWrite5m - cacheWrite1h;
    if (excess > 0) cacheWrite5m += excess;
  }
  return {
    input: count(u.input_tokens),
    output: count(u.output_tokens),
    cacheRead: count(u.cache_read_input_tokens),
    cacheWrite5m,
    cacheWrite1h,
  };
}

const TOP_COUNTS = ['input_tokens', 'output_tokens', 'cache_read_input_tokens'] as const;
const CACHE_TOTAL = 'cache_creation_input_tokens';
const BREAKDOWN_COUNTS = ['ephemeral_5m_input_tokens', 'ephemeral_1h_input_tokens'] as const;

/** One report's cache writes: its reading (the larger of total and breakdown sum) and its split. */
interface CacheReading {
  tokens: number;
  /** the breakdown as reported (valid fields only), null when the report gave none */
  split: { ephemeral_5m_input_tokens?: number; ephemeral_1h_input_tokens?: number } | null;
}

/**
 * The usage of one message, gathered from every report of it (`message_start.message.usage`,
 * each `message_delta.usage`, or the one `usage` of a JSON message).
 *
 * Rule: usage is cumulative and counters only grow, so each count is the largest valid value
 * any report gave for it. A field absent or null keeps the earlier value (Anthropic sends
 * `input_tokens: null` in `message_delta`). A lower value never erases a higher one
 * (`count_decreased`); an unusable value is ignored (`invalid_count`). Non-count fields
 * (`server_tool_use`, `service_tier`, …) are kept as the latest report gave them, for `wire()`.
 *
 * Cache writes are one counter with a split, not two counters: each report reads as the larger
 * of its `cache_creation_input_tokens` and its breakdown's sum (they should agree; when not, the
 * report is `cache_breakdown_mismatch`). The message's cache writes are the largest reading any
 * report gave, split as the latest report that gave that reading with a breakdown split them,
 * else as the latest breakdown, the excess counted as 5 m (the default TTL). So a split that
 * moves between reports (5 m 1000 then 1 h 1000, both totalling 1000) is charged 1000, never
 * the per-field maxima (2000).
 */
export class UsageTally {
  #counts = new Map<string, number>();
  #extra: Record<string, unknown> = {};
  /** largest cache-write reading so far and the split chosen for it */
  #cache: CacheReading | null = null;
  /** the latest breakdown any report gave */
  #lastSplit: CacheReading['split'] = null;
  /** `server_tool_use` counts (web searches, web fetches, …), merged by max like the token counts */
  #serverTools = new Map<string, number>();
  /** the latest valid `usage.iterations` */
  #iterations: WireIteration[] | null = null;
  /** the kept `iterations` came only from a `message_start`: their output counts are placeholders too */
  #iterationsPlaceholder = false;
  /** the kept `output_tokens` came only from a `message_start` (a placeholder, see `add`) */
  #outputPlaceholder = false;
  /** anomalies seen in the reports, in the order first seen */
  readonly anomalies = new Set<UsageAnomaly>();

  /**
   * Adds one usage report. `required` names top-level counts that must be present (Anthropic:
   * `output_tokens` in every report; a JSON message also has `input_tokens`): missing or null
   * there is `invalid_count`. A report that is not an object is `invalid_count`. Never throws.
   *
   * `placeholderOutput` (the `message_start` report): its `output_tokens` is a placeholder, not a
   * count — Anthropic sends 1 there before any output is generated. Output from a later report
   * (the cumulative `message_delta`) replaces it even when lower, without `count_decreased`, so a
   * stream whose final output is 0 is charged like the same JSON message. A placeholder never
   * overrides output a delta already gave. Input-side counts keep "counters only grow".
   */
  add(report: unknown, required: readonly string[] = ['output_tokens'], placeholderOutput = false): void {
    if (!isRecord(report)) {
      this.anomalies.add('invalid_count');
      return;
    }
    for (const field of required) {
      if (report[field] == null) this.anomalies.add('invalid_count');
    }
    for (const field of TOP_COUNTS) {
      if (field === 'output_tokens') this.#takeOutput(report[field], placeholderOutput);
      else this.#take(field, report[field]);
    }
    this.#takeCache(report);
    for (const [key, value] of Object.entries(report)) {
      if (value == null || key === 'cache_creation' || key === CACHE_TOTAL || (TOP_COUNTS as readonly string[]).includes(key)) continue;
      if (key === 'server_tool_use') this.#takeServerTools(value);
      else if (key === 'iterations') this.#takeIterations(value, placeholderOutput);
      else if ((USAGE_LABELS as readonly string[]).includes(key)) {
        if (wireLabel(value) === undefined) this.anomalies.add('invalid_label');
        else this.#extra[key] = value;
      } else if (typeof value === 'number') {
        // A count Tollgate does not know yet (a new billable field): tallied like the others
        // so it can be recorded as unpriced, never silently free. Its name reaches the event,
        // so it must be a short label, and only so many are kept.
        if (wireLabel(key) === undefined || (!this.#counts.has(key) && Object.keys(this.otherCounts()).length >= MAX_OTHER_COUNTS)) {
          this.anomalies.add('invalid_label');
        } else this.#take(key, value);
      } else this.#extra[key] = value;
    }
  }

  /**
   * The reports are over. An output count that is still `message_start`'s placeholder (the top
   * level's, or a step's of `iterations` only `message_start` gave) was never
   * given (a final `message_delta` without `usage`, or one that could not be read, or a stream
   * cut before it): it is 0, as a JSON answer without a usable count reads, never the
   * placeholder charged as output. True when that happened and no report gave the steps (whose
   * output then stands for the answer's): the caller flags `invalid_count` where the answer
   * claimed to be complete. Idempotent.
   */
  endReports(): boolean {
    // Steps only `message_start` reported: their output counts are placeholders as well (the
    // final report gave none for them); their input-side counts stand.
    const stepsGiven = this.#iterations !== null && !this.#iterationsPlaceholder;
    if (this.#iterationsPlaceholder && this.#iterations !== null) {
      for (const it of this.#iterations) it.usage = { ...it.usage, output: 0 };
    }
    this.#iterationsPlaceholder = false;
    if (!this.#outputPlaceholder) return false;
    this.#counts.set('output_tokens', 0);
    this.#outputPlaceholder = false;
    // A report that gave the steps gave their output: no count is missing.
    return !stepsGiven;
  }

  /** `output_tokens`: a placeholder (message_start) yields to the first authoritative report. */
  #takeOutput(value: unknown, placeholder: boolean): void {
    const had = this.#counts.has('output_tokens');
    // null after the placeholder is as unusable as a bad count (the required check flags it)
    if (value == null && !(had && this.#outputPlaceholder && !placeholder)) return;
    if (placeholder) {
      if (had && !this.#outputPlaceholder) {
        // A repeated message_start after a delta: the delta's count stands; only validate.
        if (!isTokenCount(value)) this.anomalies.add('invalid_count');
        return;
      }
      this.#take('output_tokens', value);
      if (this.#counts.has('output_tokens')) this.#outputPlaceholder = true;
      return;
    }
    if (had && this.#outputPlaceholder) {
      if (!isTokenCount(value)) {
        // An unusable count, with only the placeholder before it: no count was given (0), as a
        // JSON answer with the same unusable count reads.
        if (value != null) this.anomalies.add('invalid_count');
        this.#counts.set('output_tokens', 0);
        this.#outputPlaceholder = false;
        return;
      }
      this.#counts.set('output_tokens', value);
      this.#outputPlaceholder = false;
      return;
    }
    this.#take('output_tokens', value);
  }

  #take(key: string, value: unknown, into: Map<string, number> = this.#counts): void {
    if (value == null) return;
    if (!isTokenCount(value)) {
      this.anomalies.add('invalid_count');
      return;
    }
    const earlier = into.get(key);
    if (earlier !== undefined && value < earlier) {
      this.anomalies.add('count_decreased');
      return;
    }
    into.set(key, value);
  }

  /** `server_tool_use`: every numeric field is a count of server-side units (`web_search_requests`, …). */
  #takeServerTools(value: unknown): void {
    if (!isRecord(value)) {
      this.anomalies.add('invalid_count');
      return;
    }
    for (const [k, v] of Object.entries(value)) {
      if (v == null) continue;
      if (wireLabel(k) === undefined || (!this.#serverTools.has(k) && this.#serverTools.size >= MAX_OTHER_COUNTS)) {
        this.anomalies.add('invalid_label');
        continue;
      }
      this.#take(k, v, this.#serverTools);
    }
  }

  /**
   * `usage.iterations` is a per-step breakdown the upstream sends once, complete, with the final
   * usage. A later valid list replaces an earlier one unless it is shorter (counts only grow).
   */
  #takeIterations(value: unknown, placeholder = false): void {
    // A repeated message_start after a report that gave steps: those stand.
    if (placeholder && this.#iterations !== null && !this.#iterationsPlaceholder) return;
    if (!Array.isArray(value) || value.length > MAX_ITERATIONS) {
      this.anomalies.add('invalid_label');
      return;
    }
    const out: WireIteration[] = [];
    for (const entry of value) {
      if (!isRecord(entry)) {
        this.anomalies.add('invalid_label');
        return;
      }
      const type = wireLabel(entry.type);
      const model = entry.model == null ? null : wireLabel(entry.model, MAX_MODEL_CHARS);
      if (type === undefined || model === undefined) {
        this.anomalies.add('invalid_label');
        return;
      }
      // An iteration is one step: it has no iterations of its own.
      const { iterations: _nested, ...counts } = entry;
      const one = new UsageTally();
      one.add(counts, []);
      for (const a of one.anomalies) this.anomalies.add(a);
      out.push({ type, model, usage: one.usage(), serverToolUse: one.serverToolUse() });
    }
    if (this.#iterations !== null && out.length < this.#iterations.length) {
      this.anomalies.add('count_decreased');
      return;
    }
    this.#iterations = out;
    this.#iterationsPlaceholder = placeholder;
  }

  /** The merged `server_tool_use` counts (e.g. `{web_search_requests: 3}`). */
  serverToolUse(): Record<string, number> {
    return Object.fromEntries(this.#serverTools);
  }

  /** The latest valid `usage.iterations`, or null when none was reported. */
  iterations(): WireIteration[] | null {
    return this.#iterations === null ? null : this.#iterations.map((i) => ({ ...i, usage: { ...i.usage }, serverToolUse: { ...i.serverToolUse } }));
  }

  /** The response's pricing conditions: `usage.service_tier`, `inference_geo`, `speed` (null when not reported). */
  labels(): Record<(typeof USAGE_LABELS)[number], string | null> {
    const get = (k: string) => (typeof this.#extra[k] === 'string' ? this.#extra[k] as string : null);
    return { service_tier: get('service_tier'), inference_geo: get('inference_geo'), speed: get('speed') };
  }

  /**
   * Numeric top-level usage fields that are not one of the known token counts (a count the
   * upstream started sending): name → merged value. The caller prices what it knows and records
   * the rest as unpriced.
   */
  otherCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.#counts) if (!(TOP_COUNTS as readonly string[]).includes(k)) out[k] = v;
    return out;
  }

  #takeCache(report: Record<string, unknown>): void {
    let total: number | null = null;
    const rawTotal = report[CACHE_TOTAL];
    if (rawTotal != null) {
      if (isTokenCount(rawTotal)) total = rawTotal;
      else this.anomalies.add('invalid_count');
    }
    let split: CacheReading['split'] = null;
    let sum = 0;
    const cc = report.cache_creation;
    if (isRecord(cc)) {
      for (const field of BREAKDOWN_COUNTS) {
        const v = cc[field];
        if (v == null) continue;
        if (!isTokenCount(v)) {
          this.anomalies.add('invalid_count');
          continue;
        }
        split ??= {};
        split[field] = v;
        sum += v;
      }
    } else if (cc != null) {
      this.anomalies.add('invalid_count');
    }
    if (total === null && split === null) return;
    if (total !== null && split !== null && total !== sum) this.anomalies.add('cache_breakdown_mismatch');
    const tokens = Math.max(total ?? 0, sum);
    if (split !== null) this.#lastSplit = split;
    const earlier = this.#cache;
    if (earlier !== null && tokens < earlier.tokens) {
      this.anomalies.add('count_decreased');
      return;
    }
    // An equal reading without a split keeps the split of the earlier one.
    this.#cache = { tokens, split: split ?? (earlier !== null && earlier.tokens === tokens ? earlier.split : null) };
  }

  /** At least one valid count was reported. */
  get hasCounts(): boolean {
    return this.#counts.size > 0 || this.#cache !== null || this.#serverTools.size > 0;
  }

  /**
   * The merged usage in wire shape: the kept counts plus the latest non-count fields. Cache
   * writes: `cache_creation_input_tokens` is the largest reading, `cache_creation` the split
   * chosen for it (see the class rule); `usageFromWire` counts any excess over the split as 5 m.
   */
  wire(): Usage {
    const out: Usage = { ...this.#extra };
    for (const [field, v] of this.#counts) out[field] = v;
    if (this.#serverTools.size > 0) out.server_tool_use = this.serverToolUse();
    if (this.#iterations !== null) {
      out.iterations = this.#iterations.map((i) => ({
        type: i.type, ...(i.model === null ? {} : { model: i.model }),
        input_tokens: i.usage.input, output_tokens: i.usage.output, cache_read_input_tokens: i.usage.cacheRead,
        cache_creation_input_tokens: i.usage.cacheWrite5m + i.usage.cacheWrite1h,
        cache_creation: { ephemeral_5m_input_tokens: i.usage.cacheWrite5m, ephemeral_1h_input_tokens: i.usage.cacheWrite1h },
        ...(Object.keys(i.serverToolUse).length > 0 ? { server_tool_use: { ...i.serverToolUse } } : {}),
      }));
    }
    if (this.#cache !== null) {
      out[CACHE_TOTAL] = this.#cache.tokens;
      const split = this.#cache.split ?? this.#lastSplit;
      // Any split's sum is at most its own report's reading, so at most the largest one.
      if (split !== null) out.cache_creation = { ...split };
    }
    return out;
  }

  /** The billable counts (`usageFromWire` of `wire()`). */
  usage(): TokenUsage {
    return usageFromWire(this.wire());
  }
}

/** What a non-streaming Messages body says about usage. */
export interface MessageUsage {
  usage: TokenUsage;
  /** `invalid_count` when a count was unusable or a required one missing; else empty */
  anomalies: UsageAnomaly[];
}

/** Everything a non-streaming Messages body says about its price (`readMessage`). */
export interface MessageReport extends MessageUsage {
  /** the tally of the one report, for every dimension and condition (`server_tool_use`, iterations, labels) */
  tally: UsageTally;
  /** the body's top-level `model` (the serving model; a fallback differs from the request's), null when absent or not a label */
  model: string | null;
  /** the body's `stop_reason` */
  stopReason: string | null;
  /** whether the answer carries any content (text, thinking, a tool call): a refusal before output costs 0 */
  outputSeen: boolean;
}

/** Whether a content block carries output: non-empty text or thinking, or any other block (a tool call, a server tool result). */
export function blockHasOutput(block: unknown): boolean {
  if (!isRecord(block)) return false;
  if (block.type === 'text') return typeof block.text === 'string' && block.text.length > 0;
  if (block.type === 'thinking') return typeof block.thinking === 'string' && block.thinking.length > 0;
  return typeof block.type === 'string';
}

/**
 * The usage of a non-streaming Messages response body: null when it is not a message with a
 * `usage` object (the caller charges nothing and records `no_usage`). Unusable counts are 0
 * and reported as `invalid_count`.
 */
export function readMessageUsage(json: unknown): MessageUsage | null {
  const r = readMessage(json);
  return r === null ? null : { usage: r.usage, anomalies: r.anomalies };
}

/**
 * Like `readMessageUsage`, plus what the price depends on: the tally (every `server_tool_use`
 * count, `usage.iterations`, `service_tier` / `inference_geo` / `speed`), the serving `model`,
 * `stop_reason`, and whether any content was produced. Null when the body is not a message with
 * a `usage` object. Never throws.
 */
export function readMessage(json: unknown): MessageReport | null {
  if (!isRecord(json) || json.type !== 'message' || !isRecord(json.usage)) return null;
  const tally = new UsageTally();
  tally.add(json.usage, ['input_tokens', 'output_tokens']);
  const model = json.model == null ? null : wireLabel(json.model, MAX_MODEL_CHARS) ?? null;
  if (json.model != null && model === null) tally.anomalies.add('invalid_label');
  const stopReason = json.stop_reason == null ? null : wireLabel(json.stop_reason) ?? null;
  if (json.stop_reason != null && stopReason === null) tally.anomalies.add('invalid_label');
  const outputSeen = Array.isArray(json.content) && json.content.some(blockHasOutput);
  return { usage: tally.usage(), anomalies: [...tally.anomalies], tally, model, stopReason, outputSeen };
}

/** Usage of a non-streaming Messages response body; null when it is not a message with usage. */
export function usageFromMessage(json: unknown): TokenUsage | null {
  return readMessageUsage(json)?.usage ?? null;
}
