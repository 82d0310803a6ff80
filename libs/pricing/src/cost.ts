// Cost of a request in micro-credits. The rounding rule is defined here and nowhere else:
// sum every token class at full precision (tokens × micro-credits per MTok), then divide by one
// million once, rounding up. One rounding per request, never in the customer's favour by more
// than one micro-credit, never per class (which could over-charge by up to five).

import { ceilDiv } from './money.ts';
import type { Prices } from './catalog.ts';

/** Prices are per million tokens. */
export const TOKENS_PER_PRICE_UNIT = 1_000_000n;

/** Token counts of one request, per class (non-negative integers). */
export interface TokenUsage {
  readonly input: number;
  readonly output: number;
  readonly cacheRead: number;
  readonly cacheWrite5m: number;
  readonly cacheWrite1h: number;
}

function tokens(n: number, what: string): bigint {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what} must be a non-negative integer, got ${n}`);
  }
  return BigInt(n);
}

/** ceil( Σ tokens × price_per_MTok / 1_000_000 ) micro-credits. */
export function costMicros(usage: TokenUsage, prices: Prices): bigint {
  const scaled =
    tokens(usage.input, 'usage.input') * prices.input +
    tokens(usage.output, 'usage.output') * prices.output +
    tokens(usage.cacheRead, 'usage.cacheRead') * prices.cacheRead +
    tokens(usage.cacheWrite5m, 'usage.cacheWrite5m') * prices.cacheWrite5m +
    tokens(usage.cacheWrite1h, 'usage.cacheWrite1h') * prices.cacheWrite1h;
  return ceilDiv(scaled, TOKENS_PER_PRICE_UNIT);
}

/**
 * The most a request can cost before we know how its input splits into classes: every input
 * token at the dearest input-side price, plus `maxTokens` of output, rounded like costMicros.
 * For any actual usage whose input-side tokens sum to at most `estimatedInputTokens` and whose
 * output is at most `maxTokens`, `costMicros(usage) <= holdMicros(...)`.
 */
export function holdMicros(estimatedInputTokens: number, maxTokens: number, prices: Prices): bigint {
  let dearestInput = prices.input;
  for (const p of [prices.cacheRead, prices.cacheWrite5m, prices.cacheWrite1h]) {
    if (p > dearestInput) dearestInput = p;
  }
  const scaled =
    tokens(estimatedInputTokens, 'estimatedInputTokens') * dearestInput +
    tokens(maxTokens, 'maxTokens') * prices.output;
  return ceilDiv(scaled, TOKENS_PER_PRICE_UNIT);
}
