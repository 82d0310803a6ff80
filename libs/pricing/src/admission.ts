// The admission policy's arithmetic: what a request's hold is at its full max_tokens, how it
// shrinks with fewer output tokens, and how many output tokens an amount of credit affords.
// Exact integers throughout; the atomic check-and-reserve itself is the balance store's.

import type { CatalogModel } from './catalog.ts';
import { holdBound, holdPerOutputToken } from './price.ts';
import type { HoldRequest, PriceVersion } from './price.ts';

/** `strict`: refuse (402) when the worst case exceeds what is available; `clamp`: lower max_tokens to fit. */
export type AdmissionPolicy = 'strict' | 'clamp';

export const ADMISSION_POLICIES: readonly AdmissionPolicy[] = ['strict', 'clamp'];

/**
 * The hold terms of one request, in the shape `@tollgate/ledger`'s `HoldRequest.admission` takes
 * (plus `amount`, the hold at the full max_tokens). For every t in [0, maxTokens]:
 * `holdBound(t) ≤ base + t × perOutputToken`, and `amount = holdBound(maxTokens)`.
 */
export interface Admission {
  policy: AdmissionPolicy;
  /** holdBound at the full max_tokens, µc */
  amount: bigint;
  /** holdBound with no output: the input-side worst case, server tools and extras, µc */
  base: bigint;
  /** µc per output token, rounded up (a clamped hold over-reserves by < 1 µc per token) */
  perOutputToken: bigint;
  /** the request's max_tokens */
  maxTokens: number;
  /** the least max_tokens a clamp may send: min(floor asked for, maxTokens) */
  floorTokens: number;
}

/**
 * The admission terms of a request (its hold bound and how it scales with max_tokens), from
 * `holdBound` of the request's price version. `floorTokens` is the operator's floor (a thinking
 * request needs more than its minimum budget, 1,024 tokens, for the budget to fit under
 * max_tokens: pass at least 1,025 there). Throws what `holdBound` throws (RangeError on bad
 * counts, HoldBoundError on an unbounded priced tool) and RangeError on a bad floor.
 */
export function admission(version: PriceVersion, model: CatalogModel, req: HoldRequest,
  policy: AdmissionPolicy, floorTokens: number): Admission {
  if (!Number.isSafeInteger(floorTokens) || floorTokens < 1) throw new RangeError(`floorTokens must be a positive integer, got ${floorTokens}`);
  return {
    policy,
    amount: holdBound(version, model, req),
    base: holdBound(version, model, { ...req, maxTokens: 0 }),
    perOutputToken: holdPerOutputToken(version, model, req),
    maxTokens: req.maxTokens,
    floorTokens: Math.min(floorTokens, req.maxTokens),
  };
}

/**
 * The largest max_tokens in [floorTokens, maxTokens] whose hold fits in `available` µc, or null
 * when not even the floor fits. `maxTokens` itself when the full hold fits (whatever the
 * policy: strict callers compare the result with `maxTokens`). Pure; the store applies the same
 * rule inside its atomic step.
 */
export function affordableMaxTokens(available: bigint, a: Admission): number | null {
  if (available >= a.amount) return a.maxTokens;
  if (a.perOutputToken <= 0n) return null;
  const floorAmount = a.base + BigInt(a.floorTokens) * a.perOutputToken;
  if (available < floorAmount) return null;
  const t = (available - a.base) / a.perOutputToken;
  return Number(t > BigInt(a.maxTokens) ? BigInt(a.maxTokens) : t);
}

/** The µc a hold of `tokens` output tokens reserves under these terms (the full `amount` at maxTokens). */
export function admissionHold(a: Admission, tokens: number): bigint {
  return tokens >= a.maxTokens ? a.amount : a.base + BigInt(tokens) * a.perOutputToken;
}
