// Plans: named sets of rate-limit windows an operator sells. The record itself (PlanRecord) is a
// control record of @tollgate/events; this module only knows its limit fields, so the limiter
// does not depend on the event schema.

import type { LimitPolicy } from './limits.ts';

/**
 * The limit fields of a plan, in the control API's snake_case names. `null` (or absent) is
 * unlimited; a number is a whole number ≥ 0 (0 refuses everything). Windows: requests per fixed
 * 60 s / 5 h / 7 d window, estimated tokens (input + max output) per 60 s, requests in flight.
 */
export interface PlanLimits {
  requests_per_minute?: number | null;
  requests_per_5h?: number | null;
  requests_per_week?: number | null;
  tokens_per_minute?: number | null;
  concurrent_requests?: number | null;
}

/** A plan that ships with Tollgate; its `id` is its name. */
export interface SeedPlan extends Required<PlanLimits> {
  id: string;
  name: string;
}

const seed = (id: string, name: string, rpm: number, r5h: number, rweek: number): SeedPlan => ({
  id, name, requests_per_minute: rpm, requests_per_5h: r5h, requests_per_week: rweek,
  tokens_per_minute: null, concurrent_requests: null,
});

/**
 * The four reference plans of issue 8 (requests per minute / 5 h / week): Free 10 / 40 / 200,
 * Pro 20 / 400 / 2,000, Max 5x 60 / 1,200 / 6,000, Max 20x 120 / 3,000 / 15,000. They exist
 * without being created; a stored plan with the same id (a PATCH) replaces one, a DELETE hides it.
 */
export const SEED_PLANS: readonly SeedPlan[] = Object.freeze([
  seed('free', 'Free', 10, 40, 200),
  seed('pro', 'Pro', 20, 400, 2_000),
  seed('max-5x', 'Max 5x', 60, 1_200, 6_000),
  seed('max-20x', 'Max 20x', 120, 3_000, 15_000),
]);

/** The seed plan with this id, if any. */
export function seedPlan(id: string): SeedPlan | undefined {
  return SEED_PLANS.find((p) => p.id === id);
}

/** The limiter's policy for a plan: null / absent fields are left out (unlimited). */
export function policyOfPlan(plan: PlanLimits): LimitPolicy {
  const policy: LimitPolicy = {};
  const set = (field: keyof LimitPolicy, value: number | null | undefined) => {
    if (value !== null && value !== undefined) policy[field] = value;
  };
  set('requestsPerMinute', plan.requests_per_minute);
  set('requestsPer5h', plan.requests_per_5h);
  set('requestsPerWeek', plan.requests_per_week);
  set('tokensPerMinute', plan.tokens_per_minute);
  set('concurrentRequests', plan.concurrent_requests);
  return policy;
}

/**
 * The plan in force for `id`: the stored record unless it is a tombstone, else the seed plan of
 * that id, else undefined (no such plan). A seed plan always exists: deleting one (a tombstone
 * of its id) only drops the operator's changes, back to the seed's own limits; before, the
 * tombstone hid the seed for good, and nothing could create it again (POST takes no `id`).
 * `stored` looks a record up by id (a key directory's `plan`).
 */
export async function findPlan<P extends PlanLimits & { id: string; deleted?: boolean }>(
  id: string, stored: (id: string) => Promise<P | undefined>,
): Promise<P | SeedPlan | undefined> {
  const record = await stored(id);
  if (record !== undefined && !record.deleted) return record;
  return seedPlan(id);
}
