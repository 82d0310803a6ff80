// The admission policy's terms: what a request's hold is at its full max_tokens, and how it
// shrinks with fewer output tokens (its output's rates, dearest first). Exact integers
// throughout; the clamp and the atomic check-and-reserve are the balance store's
// (`clampAdmission` and `BalanceStore.hold` of @tollgate/ledger).

import type { CatalogModel } from './catalog.ts';
import { holdTerms } from './price.ts';
import type { HoldRequest, HoldSegment, PriceVersion } from './price.ts';

/** `strict`: refuse (402) when the worst case exceeds what is available; `clamp`: lower max_tokens to fit. */
export type AdmissionPolicy = 'strict' | 'clamp';

export const ADMISSION_POLICIES: readonly AdmissionPolicy[] = ['strict', 'clamp'];

/**
 * The hold terms of one request, in the shape `@tollgate/ledger`'s `HoldRequest.admission` takes
 * (plus `amount`, the hold at the full max_tokens). For every t in [0, maxTokens]:
 * `holdBound(t) ≤ base + t tokens laid over segments` (`HoldTerms`), and
 * `amount = holdBound(maxTokens)`.
 */
export interface Admission {
  policy: AdmissionPolicy;
  /** holdBound at the full max_tokens, µc */
  amount: bigint;
  /** holdBound with no output, rounded up, µc */
  base: bigint;
  /** the output's rates, dearest first, each for up to `tokens` tokens (null: the rest), µc per token */
  segments: readonly HoldSegment[];
  /** the request's max_tokens */
  maxTokens: number;
  /** the least max_tokens a clamp may send: min(floor asked for, maxTokens) */
  floorTokens: number;
}

/**
 * The admission terms of a request (its hold bound and how it scales with max_tokens), from
 * `holdTerms` of the request's price version. `floorTokens` is the operator's floor (a thinking
 * request needs more than its minimum budget, 1,024 tokens, for the budget to fit under
 * max_tokens: pass at least 1,025 there). Throws what `holdBound` throws (RangeError on bad
 * counts, HoldBoundError on an unbounded priced tool) and RangeError on a bad floor.
 */
export function admission(version: PriceVersion, model: CatalogModel, req: HoldRequest,
  policy: AdmissionPolicy, floorTokens: number): Admission {
  if (!Number.isSafeInteger(floorTokens) || floorTokens < 1) throw new RangeError(`floorTokens must be a positive integer, got ${floorTokens}`);
  const terms = holdTerms(version, model, req);
  return {
    policy,
    amount: terms.amount,
    base: terms.base,
    segments: terms.segments,
    maxTokens: req.maxTokens,
    floorTokens: Math.min(floorTokens, req.maxTokens),
  };
}
