// The gateway's side of the admission policy (issue 8): the hold's terms from the request, the
// caller's spend limits and overdraft, the refusal a client reads, and the body sent upstream
// when the store clamped max_tokens. The decision itself is the balance store's one atomic step.

import { gatewayError, type GatewayError } from '@tollgate/anthropic';
import type { KeyEntry } from '@tollgate/keys';
import type { HoldResult, SpendWindow, SpendWindowName } from '@tollgate/ledger';
import { formatCredits, type Admission } from '@tollgate/pricing';

/** The response header naming a clamp: `tollgate-max-tokens-clamped: <asked>-><sent>` (tokens). */
export const CLAMP_HEADER = 'tollgate-max-tokens-clamped';

/** µc decimal string of a record field → bigint, or undefined (absent / null: no limit). */
function micros(v: string | null | undefined): bigint | undefined {
  return v === null || v === undefined ? undefined : BigInt(v);
}

/**
 * The spend windows and overdraft of a caller, from its key (`hourly_credits`, `daily_credits`,
 * `total_credits`) and account (`daily_credits`, `monthly_credits`, `overdraft_credits`), all µc.
 */
export function spendTerms(caller: KeyEntry): { windows: SpendWindow[]; overdraft: bigint } {
  const k = caller.key;
  const a = caller.account;
  const windows: SpendWindow[] = [];
  const add = (name: SpendWindowName, limit: bigint | undefined) => { if (limit !== undefined) windows.push({ name, limit }); };
  add('key_hourly', micros(k.hourly_credits));
  add('key_daily', micros(k.daily_credits));
  add('key_total', micros(k.total_credits));
  add('account_daily', micros(a.daily_credits));
  add('account_monthly', micros(a.monthly_credits));
  return { windows, overdraft: micros(a.overdraft_credits) ?? 0n };
}

const WINDOW_TEXT: Record<SpendWindowName, string> = {
  key_hourly: "this key's hourly", key_daily: "this key's daily", key_total: "this key's total",
  account_daily: "this account's daily", account_monthly: "this account's monthly",
};

/**
 * The client's answer to a refused hold: 402 `insufficient_credits` stating the request's worst
 * case (or, under clamp, the hold at the floor) and what is available; 429 `spend_limit_exceeded`
 * naming the window, its limit, what is used and when it resets, with `retry-after` (seconds)
 * except for a key's total limit, which never resets. `not_ready` is the caller's (503).
 */
export function refusal(hold: Exclude<HoldResult, { ok: true }>, adm: Admission, now = Date.now()): GatewayError {
  const required = 'required' in hold && hold.required !== undefined ? hold.required : adm.amount;
  const at = required === adm.amount
    ? `its worst case at max_tokens ${adm.maxTokens}`
    : `its worst case even at max_tokens ${adm.floorTokens}, the least this gateway sends`;
  if (hold.reason === 'spend_limit_exceeded') {
    const reset = hold.resetAt === null ? 'it does not reset' : `it resets at ${new Date(hold.resetAt).toISOString()}`;
    return gatewayError('spend_limit_exceeded',
      `This request would exceed ${WINDOW_TEXT[hold.window]} spend limit (${hold.window}) of ${formatCredits(hold.limit)} credits: ` +
      `${formatCredits(hold.used)} credits are spent or held and the request needs up to ${formatCredits(required)} (${at}); ${reset}`,
      hold.resetAt === null ? undefined : { headers: { 'retry-after': String(Math.max(1, Math.ceil((hold.resetAt - now) / 1000))) } });
  }
  return gatewayError('insufficient_credits',
    `Your credit balance is too low for this request: it needs up to ${formatCredits(required)} credits (${at}) ` +
    `and ${formatCredits(hold.available < 0n ? 0n : hold.available)} credits are available`);
}

/**
 * The body to send upstream after the store clamped max_tokens to `tokens`: `max_tokens`
 * replaced, and a thinking budget (`{type: "enabled", budget_tokens}`) scaled by the same
 * ratio, kept ≥ `minBudget` and < `tokens` (Anthropic: 1,024 ≤ budget_tokens < max_tokens); the
 * same for the thinking of each `fallbacks` entry that runs at the request's max_tokens (no
 * `max_tokens` of its own).
 */
export function clampedBody(sent: Buffer | string, askedMaxTokens: number, tokens: number, minBudget: number): string {
  const out = JSON.parse(typeof sent === 'string' ? sent : sent.toString('utf8')) as Record<string, unknown>;
  out.max_tokens = tokens;
  const scale = (holder: Record<string, unknown>) => {
    const thinking = holder.thinking as { type?: unknown; budget_tokens?: unknown } | null | undefined;
    if (thinking && thinking.type === 'enabled' && typeof thinking.budget_tokens === 'number') {
      const scaled = Math.floor((thinking.budget_tokens * tokens) / askedMaxTokens);
      holder.thinking = { ...thinking, budget_tokens: Math.min(tokens - 1, Math.max(minBudget, scaled)) };
    }
  };
  scale(out);
  if (Array.isArray(out.fallbacks)) {
    for (const f of out.fallbacks) {
      if (f !== null && typeof f === 'object' && ((f as Record<string, unknown>).max_tokens ?? null) === null) scale(f as Record<string, unknown>);
    }
  }
  return JSON.stringify(out);
}

/**
 * Whether the request thinks on a budget upstream: the client's `thinking: {type: "enabled"}`
 * (its own or a `fallbacks` entry's that runs at the request's max_tokens), or a `-thinking`
 * name of a budget-mode model (the gateway adds the budget). Then a clamp must leave max_tokens
 * above the minimum budget.
 */
export function budgetThinking(body: { thinking?: unknown; fallbacks?: unknown }, resolved: { thinking?: boolean; model: { thinking: { mode: string } } }): boolean {
  const t = body.thinking as { type?: unknown } | null | undefined;
  if (t && t.type === 'enabled') return true;
  // a fallbacks entry thinking on a budget at the request's max_tokens
  const fallbacks = (body as { fallbacks?: unknown }).fallbacks;
  if (Array.isArray(fallbacks) && fallbacks.some((f) => {
    const e = f !== null && typeof f === 'object' ? f as { thinking?: { type?: unknown } | null; max_tokens?: unknown } : undefined;
    return e !== undefined && (e.max_tokens ?? null) === null && e.thinking?.type === 'enabled';
  })) return true;
  return (t === undefined || t === null) && resolved.thinking === true && resolved.model.thinking.mode === 'budget';
}
