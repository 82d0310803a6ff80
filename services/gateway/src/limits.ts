import { gatewayError } from '@tollgate/anthropic';
import type { GatewayDeps } from './deps.ts';
import { guardState } from './state.ts';

export interface LimitTicket {
  headers: Record<string, string>;
  /**
   * Ends the request for the limiter: frees its concurrency slot and, given the tokens it
   * really used, corrects the token window. Safe to call more than once; only the first counts.
   */
  done(usedTokens: number | null): Promise<void>;
}

const NONE: LimitTicket = { headers: {}, done: async () => {} };

/** Rate limits before any credit is held: refused → 429 `rate_limit_exceeded` with retry-after. */
export async function acquireLimits(deps: GatewayDeps, keyId: string, estimatedTokens: number): Promise<LimitTicket> {
  const policy = deps.limits;
  if (!deps.limiter || !policy || Object.keys(policy).length === 0) return NONE;
  const limiter = deps.limiter;
  // A request estimated above a whole minute's token allowance could never pass; count it as
  // exactly the allowance so it waits its turn instead of failing forever.
  const estimate = policy.tokensPerMinute ? Math.min(estimatedTokens, policy.tokensPerMinute) : estimatedTokens;
  const decision = await guardState(() => limiter.acquire(keyId, policy, estimate));
  if (!decision.ok) {
    throw gatewayError('rate_limit_exceeded', `Rate limit exceeded (${decision.limit}); retry after the reset`, { headers: decision.headers });
  }
  let done = false;
  return {
    headers: decision.headers,
    async done(usedTokens) {
      if (done) return;
      done = true;
      await Promise.all([
        decision.release?.().catch(() => {}),
        usedTokens !== null && policy.tokensPerMinute
          ? limiter.correctTokens(keyId, policy, estimate, usedTokens).catch(() => {})
          : undefined,
      ]);
    },
  };
}
