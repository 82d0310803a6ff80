// `/admin/v1/plans`: the rate-limit plans an operator sells (issue 8). Mounted inside the admin
// scope of registerControl, so the admin token is already checked.

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { gatewayError } from '@tollgate/anthropic';
import { MAX_PLAN_LIMIT, type PlanRecord } from '@tollgate/events';
import type { KeyDirectory } from '@tollgate/keys';
import { findPlan, SEED_PLANS, seedPlan, type SeedPlan } from '@tollgate/limits';
import { bodyErrorMap, bodyProblems, planNameProblem } from './body-problems.ts';
import { newId, nextVersion } from './ids.ts';
import type { RecordExclusive, RecordFence } from './record-lock.ts';

const LIMIT_FIELDS = ['requests_per_minute', 'requests_per_5h', 'requests_per_week', 'tokens_per_minute', 'concurrent_requests'] as const;

const limit = z.number().int().min(0).max(MAX_PLAN_LIMIT).nullable().optional();
/** A plan's name (`planNameProblem`, which the operator CLI checks with too), stored trimmed. */
const planName = z.string().superRefine((v, ctx) => {
  const problem = planNameProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
}).transform((v) => v.trim());
export const PlanBody = z.object({
  name: planName.optional(),
  requests_per_minute: limit, requests_per_5h: limit, requests_per_week: limit,
  tokens_per_minute: limit, concurrent_requests: limit,
}).strict();

function parse(body: unknown): z.infer<typeof PlanBody> {
  const r = PlanBody.safeParse(body ?? {}, { error: bodyErrorMap });
  if (!r.success) {
    const msg = bodyProblems(r.error).join('; ');
    // The rule of the limits, when a limit is what is wrong (not after `name` or an unknown field).
    const aboutLimits = r.error.issues.some((i) => (LIMIT_FIELDS as readonly PropertyKey[]).includes(i.path[0] ?? ''));
    throw gatewayError('invalid_request', aboutLimits ? `${msg} (plan limits are whole numbers 0 … ${MAX_PLAN_LIMIT}, or null for unlimited)` : msg);
  }
  return r.data;
}

/**
 * The API shape of a plan: `{id, name, requests_per_minute, requests_per_5h, requests_per_week,
 * tokens_per_minute, concurrent_requests, seed, created_at}`; limits are numbers or null
 * (unlimited); `seed` is true for the four built-in plans (changed or not); `created_at` is RFC
 * 3339, null for an unchanged seed plan.
 */
export function planView(p: PlanRecord | SeedPlan) {
  const created = 'created_at' in p ? new Date(p.created_at).toISOString() : null;
  return {
    id: p.id, name: p.name,
    requests_per_minute: p.requests_per_minute, requests_per_5h: p.requests_per_5h,
    requests_per_week: p.requests_per_week, tokens_per_minute: p.tokens_per_minute,
    concurrent_requests: p.concurrent_requests,
    seed: seedPlan(p.id) !== undefined, created_at: created,
  };
}

/**
 * The plan in force with this id (stored, else seed), or throws 404 `not_found`. For the
 * account and key PATCH routes, to refuse a `plan_id` that names no plan.
 */
export async function requirePlan(keys: KeyDirectory, id: string): Promise<PlanRecord | SeedPlan> {
  const plan = await findPlan(id, (i) => keys.plan(i));
  if (!plan) throw gatewayError('not_found', `plan ${id} does not exist`);
  return plan;
}

/**
 * `POST /admin/v1/plans` → 201 plan; `GET /admin/v1/plans` → `{data: [plan]}` (seeds first, then
 * by creation); `GET /admin/v1/plans/:id`; `PATCH /admin/v1/plans/:id` (any subset of the POST
 * fields; a seed plan becomes a stored record); `DELETE /admin/v1/plans/:id` → `{id, deleted:
 * true}` (a tombstone; keys and accounts naming it fall back to the next plan in line), or for a
 * seed plan `{id, deleted: false, reset_to_seed: true}` (its changes dropped; it stays).
 * Every write goes to the key directory at once and to the control log (replayable), through `savePlan`.
 */
export function registerPlanRoutes(admin: FastifyInstance, deps: {
  keys: KeyDirectory;
  /** runs a change of an existing plan alone among the changes of that plan, in every control process (record-lock.ts) */
  exclusive: RecordExclusive;
  /** writes a plan record to the key directory and the control log (registerControl's, through its ControlRecordRegistry) */
  savePlan: (plan: PlanRecord, fence?: RecordFence) => Promise<void>;
}): void {
  const save = deps.savePlan;

  admin.post('/admin/v1/plans', async (request, reply) => {
    const body = parse(request.body);
    const id = newId('plan');
    const plan: PlanRecord = {
      id, name: body.name ?? id,
      requests_per_minute: null, requests_per_5h: null, requests_per_week: null, tokens_per_minute: null, concurrent_requests: null,
      created_at: Date.now(), version: nextVersion(undefined),
    };
    for (const f of LIMIT_FIELDS) if (body[f] !== undefined) plan[f] = body[f];
    await save(plan);
    return reply.code(201).send(planView(plan));
  });

  admin.get('/admin/v1/plans', async () => {
    const stored = await deps.keys.plans();
    const byId = new Map(stored.map((p) => [p.id, p]));
    const seeds = SEED_PLANS.flatMap((s) => {
      const p = byId.get(s.id);
      return p === undefined || p.deleted ? [s] : [p];
    });
    const others = stored.filter((p) => !p.deleted && seedPlan(p.id) === undefined)
      .sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
    return { data: [...seeds, ...others].map(planView) };
  });

  admin.get('/admin/v1/plans/:id', async (request) => {
    const { id } = request.params as { id: string };
    return planView(await requirePlan(deps.keys, id));
  });

  admin.patch('/admin/v1/plans/:id', async (request) => {
    const { id } = request.params as { id: string };
    const body = parse(request.body);
    return deps.exclusive(`plan:${id}`, async (fence) => {
      const current = await requirePlan(deps.keys, id);
      const stored = await deps.keys.plan(id);
      const next: PlanRecord = {
        id, name: body.name ?? current.name,
        requests_per_minute: current.requests_per_minute, requests_per_5h: current.requests_per_5h,
        requests_per_week: current.requests_per_week, tokens_per_minute: current.tokens_per_minute,
        concurrent_requests: current.concurrent_requests,
        created_at: 'created_at' in current ? current.created_at : Date.now(),
        version: nextVersion(stored?.version),
      };
      for (const f of LIMIT_FIELDS) if (body[f] !== undefined) next[f] = body[f];
      await save(next, fence);
      return planView(next);
    });
  });

  admin.delete('/admin/v1/plans/:id', async (request) => {
    const { id } = request.params as { id: string };
    return deps.exclusive(`plan:${id}`, async (fence) => {
      const current = await requirePlan(deps.keys, id);
      const stored = await deps.keys.plan(id);
      const tombstone: PlanRecord = {
        ...planFields(current), created_at: 'created_at' in current ? current.created_at : Date.now(),
        deleted: true, version: nextVersion(stored?.version),
      };
      await save(tombstone, fence);
      // A seed plan stays, with its own limits again (findPlan).
      return seedPlan(id) === undefined ? { id, deleted: true } : { id, deleted: false, reset_to_seed: true };
    });
  });
}

function planFields(p: PlanRecord | SeedPlan) {
  return {
    id: p.id, name: p.name,
    requests_per_minute: p.requests_per_minute, requests_per_5h: p.requests_per_5h,
    requests_per_week: p.requests_per_week, tokens_per_minute: p.tokens_per_minute,
    concurrent_requests: p.concurrent_requests,
  };
}
