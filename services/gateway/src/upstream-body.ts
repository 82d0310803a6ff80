// The body the gateway sends upstream for /v1/messages, and the extended-thinking body a
// `<model>-thinking` variant must carry to be accepted by that model.

import { gatewayError, type MessagesRequest } from '@tollgate/anthropic';
import type { ResolvedModel, ThinkingCapability } from '@tollgate/pricing';

/** The `thinking` parameter the gateway adds for a `-thinking` variant. */
export type ThinkingParam = { type: 'enabled'; budget_tokens: number } | { type: 'adaptive' };

/**
 * The `thinking` parameter a `-thinking` variant sends for this request, or a 400 when no
 * body with thinking on can be valid. Rules (Anthropic docs, "Extended thinking" → feature
 * compatibility; "Adaptive thinking"):
 * - thinking allows `temperature` 1 only, no `top_k`, `top_p` between 0.95 and 1, and
 *   `tool_choice` `auto` or `none` only (not `any` / `tool`), and no prefilled assistant turn;
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
  const refuse = (what: string, fix: string): never => {
    throw gatewayError('invalid_request',
      `${requested} turns on extended thinking, which does not allow ${what}; ${fix} or use ${plain}`);
  };
  const t = body.temperature;
  if (t !== undefined && t !== null && t !== 1) refuse(`temperature ${String(t)}`, 'omit temperature (or set it to 1)');
  if (body.top_k !== undefined && body.top_k !== null) refuse('top_k', 'omit top_k');
  const p = body.top_p;
  if (p !== undefined && p !== null && !(typeof p === 'number' && p >= 0.95 && p <= 1)) {
    refuse(`top_p ${String(p)}`, 'omit top_p or set it between 0.95 and 1');
  }
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null) {
    const type = typeof choice === 'object' ? (choice as { type?: unknown }).type : choice;
    if (type === 'any' || type === 'tool') refuse(`tool_choice ${String(type)} (forced tool use)`, 'use tool_choice auto or none');
  }
  const last = Array.isArray(body.messages) ? body.messages.at(-1) : undefined;
  if (typeof last === 'object' && last !== null && (last as { role?: unknown }).role === 'assistant') {
    refuse('a prefilled assistant message', 'end messages with a user turn');
  }
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
 * The body sent upstream. Untouched bytes when nothing needs changing (the common case, and
 * the only way to be sure every field a client sends passes through as it was); otherwise
 * the model name is swapped for the upstream's, and a `-thinking` variant turns thinking on
 * with a body that model accepts (`thinkingFor`). A client that sends its own `thinking`
 * keeps it. Throws GatewayError `invalid_request` (400) when no valid thinking body exists:
 * the upstream would reject it anyway, and this way the client learns why.
 */
export function upstreamBody(body: MessagesRequest, raw: Buffer, resolved: ResolvedModel): Buffer | string {
  const rename = resolved.upstreamModel !== body.model;
  const think = resolved.thinking && body.thinking === undefined;
  if (!rename && !think) return raw;
  const out: MessagesRequest = { ...body, model: resolved.upstreamModel };
  if (think) out.thinking = thinkingFor(body, resolved.model.thinking, resolved.requested);
  return JSON.stringify(out);
}
