// The body the gateway sends upstream for /v1/messages, and the extended-thinking body a
// `<model>-thinking` variant must carry to be accepted by that model.

import { gatewayError, isRecord, prewarms, type MessagesRequest } from '@tollgate/anthropic';
import type { CatalogModel, PriceVersion, ResolvedModel, ThinkingCapability, UnitDimension } from '@tollgate/pricing';

/** The `thinking` parameter the gateway adds for a `-thinking` variant. */
export type ThinkingParam = { type: 'enabled'; budget_tokens: number } | { type: 'adaptive' };

/** Fields thinking restricts; `null` in any of them means "unset" to the client. */
const THINKING_RESTRICTED = ['temperature', 'top_k', 'top_p', 'tool_choice'] as const;


/** The first block type of a message's content (`text` for string content), or undefined. */
function firstBlockType(message: unknown): unknown {
  if (!isRecord(message)) return undefined;
  const content = message.content;
  if (typeof content === 'string') return 'text';
  if (!Array.isArray(content)) return undefined;
  const first: unknown = content[0];
  return isRecord(first) ? first.type : undefined;
}

/**
 * Whether thinking can be on for this request, judged by the assistant turn in progress.
 * Anthropic ("Extended thinking" → thinking with tool use; the API's 400 "Expected `thinking`
 * or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant`
 * message must start with a thinking block"): a tool-use loop is ONE assistant turn and keeps
 * one thinking mode, so when the body continues a turn, either by ending with tool results
 * (a user message holding a `tool_result` block) or with an assistant message (prefill, or a
 * `pause_turn` continuation), the first assistant message of that turn must start with a
 * `thinking` or `redacted_thinking` block. The turn starts after the last user message that
 * holds no `tool_result`. A body that starts a new turn (ends with a plain user message) can
 * always carry thinking.
 */
export function turnCanCarryThinking(messages: unknown): boolean {
  if (!Array.isArray(messages) || messages.length === 0) return true;
  const isToolResults = (m: unknown): boolean =>
    isRecord(m) && m.role === 'user' && Array.isArray(m.content) &&
    m.content.some((b: unknown) => isRecord(b) && b.type === 'tool_result');
  const last: unknown = messages.at(-1);
  const continuing = (isRecord(last) && last.role === 'assistant') || isToolResults(last);
  if (!continuing) return true;
  let first: unknown;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m: unknown = messages[i];
    if (!isRecord(m)) continue;
    if (m.role === 'assistant') first = m;
    else if (m.role === 'user' && !isToolResults(m)) break;
  }
  // A tool result with no assistant turn before it: the upstream judges that body on its own.
  if (first === undefined) return true;
  const type = firstBlockType(first);
  return type === 'thinking' || type === 'redacted_thinking';
}

/** Fails with the gateway's 400 when `body` cannot carry thinking: the sampling rules below. */
function checkSampling(body: MessagesRequest, requested: string): void {
  const plain = requested.replace(/-thinking(?=$|\/)/, '');
  const refuse = (what: string, fix: string): never => {
    throw gatewayError('invalid_request',
      `${requested} turns on extended thinking, which does not allow ${what}; ${fix} or use ${plain}`);
  };
  const t = body.temperature;
  if (t !== undefined && t !== null && t !== 1) refuse(`temperature ${JSON.stringify(t)}`, 'omit temperature (or set it to 1)');
  if (body.top_k !== undefined && body.top_k !== null) refuse('top_k', 'omit top_k');
  const p = body.top_p;
  if (p !== undefined && p !== null && !(typeof p === 'number' && p >= 0.95 && p <= 1)) {
    refuse(`top_p ${JSON.stringify(p)}`, 'omit top_p or set it between 0.95 and 1');
  }
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null) {
    const type = typeof choice === 'object' ? (choice as { type?: unknown }).type : choice;
    if (type === 'any' || type === 'tool') refuse(`tool_choice ${String(type)} (forced tool use)`, 'use tool_choice auto or none');
  }
}

/**
 * The `thinking` parameter a `-thinking` variant sends for this request, or a 400 when no
 * body with thinking on can be valid. Rules (Anthropic docs, "Extended thinking" → feature
 * compatibility; "Adaptive thinking"):
 * - thinking allows `temperature` 1 only, no `top_k`, `top_p` between 0.95 and 1, and
 *   `tool_choice` `auto` or `none` only (not `any` / `tool`); `null` in any of these is
 *   "unset" (`upstreamBody` drops it before sending, as the upstream reads null as a value);
 * - a body continuing a turn without thinking is not judged here (`turnCanCarryThinking`);
 * - budget mode (models up to 4.5): `budget_tokens` ≥ `minBudgetTokens` (1,024) and
 *   < `max_tokens`. The gateway gives thinking half of `max_tokens`, at least the minimum:
 *   `clamp(⌊max_tokens / 2⌋, min, max_tokens − 1)`; max_tokens ≤ min has no valid budget;
 * - adaptive mode (4.6 and later): `{type: "adaptive"}` at any `max_tokens`.
 *
 * `requested` is the name the client used (for the message); `plain` is the name without
 * `-thinking`. Throws GatewayError `invalid_request` (400) naming the conflicting field.
 */
export function thinkingFor(body: MessagesRequest, capability: ThinkingCapability, requested: string): ThinkingParam {
  const plain = requested.replace(/-thinking(?=$|\/)/, '');
  checkSampling(body, requested);
  if (capability.mode === 'adaptive') return { type: 'adaptive' };
  const min = capability.minBudgetTokens;
  const max = body.max_tokens;
  if (max <= min) {
    throw gatewayError('invalid_request',
      `${requested} turns on extended thinking, which needs max_tokens of at least ${min + 1} (budget_tokens ≥ ${min} and < max_tokens); raise max_tokens or use ${plain}`);
  }
  return { type: 'enabled', budget_tokens: Math.min(max - 1, Math.max(min, Math.floor(max / 2))) };
}

/**
 * A `thinking` the client sent itself on a `-thinking` variant, judged against the catalog's
 * capability before it is forwarded (Anthropic "Extended thinking" / "Adaptive thinking"; the
 * API answers 400 to each case below, so the gateway says why first, at no cost):
 * - not an object with a string `type`, or a `type` other than `enabled` / `adaptive` /
 *   `disabled`: 400 naming `thinking` / `thinking.type`;
 * - `disabled`: the client turns thinking off for this request; forwarded as sent;
 * - `adaptive` on a budget-mode model (4.5 and older, which reject it): the intent (think, at
 *   the model's discretion) is clear, so it becomes the variant's own budget (`thinkingFor`);
 * - `enabled`: `budget_tokens` must be an integer ≥ `minBudgetTokens` and < `max_tokens`
 *   (unless an `interleaved-thinking-*` beta lets the budget span the turn), else 400 naming
 *   `thinking.budget_tokens`; kept as sent (on an adaptive model too: the API still accepts a
 *   budget there);
 * - whenever thinking ends up on, the sampling rules of `thinkingFor` apply as for the
 *   gateway's own thinking (null sampling fields dropped, conflicting ones a 400).
 * Returns the thinking to send, or undefined when it is off (`disabled`).
 */
export function clientThinking(body: MessagesRequest, capability: ThinkingCapability, requested: string, betas: readonly string[] = []): ThinkingParam | undefined {
  const given: unknown = body.thinking;
  const refuse = (field: string, what: string): never => {
    throw gatewayError('invalid_request', `${field}: ${what} (${requested} turns on extended thinking; omit thinking to let the gateway set it)`);
  };
  if (!isRecord(given) || typeof given.type !== 'string') refuse('thinking', 'expected an object with a "type"');
  const t = given as Record<string, unknown>;
  if (t.type === 'disabled') return undefined;
  if (t.type === 'adaptive') {
    return capability.mode === 'adaptive' ? (checkSampling(body, requested), { type: 'adaptive' }) : thinkingFor(body, capability, requested);
  }
  if (t.type !== 'enabled') refuse('thinking.type', `expected "enabled", "adaptive" or "disabled", got ${JSON.stringify(t.type).slice(0, 40)}`);
  const budget = t.budget_tokens;
  if (typeof budget !== 'number' || !Number.isSafeInteger(budget)) refuse('thinking.budget_tokens', 'expected an integer');
  const n = budget as number;
  if (n < capability.minBudgetTokens) refuse('thinking.budget_tokens', `must be at least ${capability.minBudgetTokens}, got ${n}`);
  const interleaved = betas.some((b) => b.trim().startsWith('interleaved-thinking'));
  if (!interleaved && n >= body.max_tokens) refuse('thinking.budget_tokens', `must be less than max_tokens (${body.max_tokens}), got ${n}`);
  checkSampling(body, requested);
  return { type: 'enabled', budget_tokens: n };
}

/**
 * The body sent upstream. Untouched bytes when nothing needs changing (the common case, and
 * the only way to be sure every field a client sends passes through as it was); otherwise
 * the model name is swapped for the upstream's, and a `-thinking` variant turns thinking on
 * with a body that model accepts (`thinkingFor`), derived so the upstream reads it exactly as
 * the checks did:
 * - `temperature`, `top_k`, `top_p`, `tool_choice` sent as `null` are dropped (the client
 *   means "unset"; the upstream would read null as a value thinking forbids);
 * - a body continuing a turn that did not start with thinking (`turnCanCarryThinking`: a
 *   tool-use loop whose assistant message has no thinking block, a plain prefill) is sent
 *   without thinking: the variant thinks from the next turn on.
 * A client that sends its own `thinking` (not null) on a variant has it judged by
 * `clientThinking` (kept, derived, or a 400). On a plain model a client's `thinking` is its
 * own body to the model it named and passes through unjudged. `betas` is the request's
 * `anthropic-beta` list. `maxTokensDefaulted`: the body's max_tokens was filled in by the
 * gateway (DEFAULT_MAX_TOKENS), so `raw` lacks it. Throws GatewayError `invalid_request` (400)
 * when no valid thinking body exists: the upstream would reject it anyway, and this way the
 * client learns why.
 */
export function upstreamBody(
  body: MessagesRequest, raw: Buffer, resolved: ResolvedModel, maxUses?: ReadonlyMap<number, number>,
  betas: readonly string[] = [], maxTokensDefaulted = false,
): Buffer | string {
  const rename = resolved.upstreamModel !== body.model;
  const own = resolved.thinking && body.thinking !== undefined && body.thinking !== null;
  const think = resolved.thinking && !own && turnCanCarryThinking(body.messages);
  const limit = maxUses !== undefined && maxUses.size > 0 && Array.isArray(body.tools);
  // A defaulted max_tokens (DEFAULT_MAX_TOKENS) is on `body`, not in `raw`: the upstream needs it.
  if (!rename && !think && !limit && !own && !maxTokensDefaulted) return raw;
  const out: MessagesRequest = { ...body, model: resolved.upstreamModel };
  if (limit) {
    // The hold assumed this many uses: the upstream is told the same, so it cannot run more.
    out.tools = (body.tools as unknown[]).map((t, i) => {
      const n = maxUses.get(i);
      return n === undefined || !isRecord(t) ? t : { ...t, max_uses: n };
    });
  }
  const record = out as unknown as Record<string, unknown>;
  const dropNulls = () => { for (const field of THINKING_RESTRICTED) if (record[field] === null) delete record[field]; };
  if (own) {
    const chosen = clientThinking(out, resolved.model.thinking, resolved.requested, betas);
    if (chosen === undefined) return rename || limit ? JSON.stringify(out) : raw;
    dropNulls();
    out.thinking = chosen;
  } else if (think) {
    dropNulls();
    out.thinking = thinkingFor(out, resolved.model.thinking, resolved.requested);
  }
  return JSON.stringify(out);
}

/**
 * Finds where a JSON answer's top-level value ends while its bytes arrive, so an upstream that
 * sends a complete body and then keeps the connection open (no final chunk, no close) does not
 * hold the client, the hold and the limiter slot until it lets go. Only an object or array at
 * the top level has a knowable end (its closing bracket at depth 0, outside strings, escapes
 * honoured); anything else (a bare scalar, not JSON) is read to the connection's end as before.
 * Constant state per byte: bracket depth, in-string, escape. UTF-8 multibyte sequences never
 * contain the ASCII bytes it looks at. A body with `content-length` needs none of this (the
 * HTTP client ends it at that length).
 */
export class JsonValueEnd {
  #depth = 0;
  #started = false;
  #inString = false;
  #escaped = false;
  /** true once the top-level value has closed; false for a body whose end cannot be known here */
  done = false;
  /** the body does not start with `{` or `[`: only the connection's end ends it */
  unknowable = false;

  /** Reads the next chunk; returns whether the top-level value is now complete. */
  push(chunk: Uint8Array): boolean {
    if (this.done || this.unknowable) return this.done;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (!this.#started) {
        if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
        if (b !== 0x7b && b !== 0x5b) {
          this.unknowable = true;
          return false;
        }
        this.#started = true;
        this.#depth = 1;
        continue;
      }
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (b === 0x5c) this.#escaped = true;
        else if (b === 0x22) this.#inString = false;
        continue;
      }
      if (b === 0x22) this.#inString = true;
      else if (b === 0x7b || b === 0x5b) this.#depth++;
      else if ((b === 0x7d || b === 0x5d) && --this.#depth === 0) {
        this.done = true;
        return true;
      }
    }
    return false;
  }
}

/** The unit a server tool's uses are billed in, by its `type` prefix (Anthropic "Pricing": web search per search, web fetch per fetch, code execution by time). */
export function toolUnit(type: unknown): UnitDimension | undefined {
  if (typeof type !== 'string') return undefined;
  if (type.startsWith('web_search_')) return 'web_search_requests';
  if (type.startsWith('web_fetch_')) return 'web_fetch_requests';
  if (type.startsWith('code_execution_')) return 'code_execution_seconds';
  return undefined;
}

/** What the server tools of a request mean for its price (`serverTools`). */
export interface ServerTools {
  /** per unit the request enables: the most uses it allows (Σ `max_uses` over its tools), for `holdBound` */
  units: Partial<Record<UnitDimension, number | null>>;
  /** tool index → the `max_uses` the gateway sends where the client gave none (the catalog's bound) */
  maxUses: Map<number, number>;
}

/**
 * The units a request's server tools can bill and the bound of each. A priced tool (web search)
 * without `max_uses` gets the catalog's `unit_hold_bounds` as its `max_uses` when the catalog has
 * one, so the hold and the upstream agree on the most it may run; without a bound its units are
 * null (`holdBound` then throws HoldBoundError). Code execution is billed by time, not uses: its
 * unit is listed (for the unpriced policy) with no bound. `max_uses` null or absent is missing
 * (the catalog bound as above). Throws GatewayError `invalid_request` (400) naming
 * `tools[i].max_uses` when a tool's `max_uses` is anything else but a positive integer (`0`, `-1`,
 * `1.5`, `"3"`): taken as missing, it was replaced by the catalog bound and forwarded, so an
 * invalid request ran and was charged.
 */
export function serverTools(body: MessagesRequest, version: PriceVersion, model: CatalogModel): ServerTools {
  const units: Partial<Record<UnitDimension, number | null>> = {};
  const maxUses = new Map<number, number>();
  if (!Array.isArray(body.tools)) return { units, maxUses };
  body.tools.forEach((tool: unknown, i: number) => {
    if (!isRecord(tool)) return;
    const given = tool.max_uses;
    if (given !== undefined && given !== null && !(typeof given === 'number' && Number.isSafeInteger(given) && given > 0)) {
      throw gatewayError('invalid_request', `tools[${i}].max_uses: must be a positive integer (got ${JSON.stringify(given) ?? String(given)})`);
    }
    const unit = toolUnit(tool.type);
    if (unit === undefined) return;
    // a pre-warm runs no tool
    if (prewarms(body)) {
      units[unit] = 0;
      return;
    }
    if (unit === 'code_execution_seconds') {
      units[unit] = null;
      return;
    }
    let n: number | null = typeof tool.max_uses === 'number' && Number.isSafeInteger(tool.max_uses) && tool.max_uses > 0 ? tool.max_uses : null;
    const price = model.rates.units[unit];
    const bound = version.catalog.unitHoldBounds[unit];
    if (n === null && price !== undefined && price > 0n && bound !== undefined) {
      n = bound;
      maxUses.set(i, bound);
    }
    const before = units[unit];
    units[unit] = before === null || n === null ? (before === undefined ? n : null) : (before ?? 0) + n;
  });
  return { units, maxUses };
}
