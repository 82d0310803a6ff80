import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { formatCredits, listModels, creditsToNumber } from '@tollgate/pricing';
import type { GatewayDeps } from '../deps.ts';
import { guardState } from '../state.ts';
import { resolveOr404 } from './messages.ts';

/** GET /v1/models in Anthropic's list shape, and GET /v1/credits for the caller's own account. */
export function accountRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const models = listModels(deps.catalog);

  app.get('/v1/models', async (request) => {
    const q = request.query as { limit?: string; after_id?: string; before_id?: string };
    const limit = Math.min(Math.max(Number(q.limit ?? 1000) || 1000, 1), 1000);
    let start = 0;
    if (q.after_id) start = models.findIndex((m) => m.id === q.after_id) + 1;
    const page = models.slice(start, start + limit);
    return {
      data: page,
      has_more: start + limit < models.length,
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
    };
  });

  // Resolved exactly as /v1/messages resolves `model` (aliases, `-thinking`, `name/provider`,
  // mapping rules), so a client that checks a model here can use it there. Like Anthropic's
  // alias lookup, the answer is the model the id resolves to (its canonical id).
  // A wildcard, not `:id`: `name/provider` ids may arrive with a raw `/`.
  app.get('/v1/models/*', async (request) => {
    const id = (request.params as { '*': string })['*'];
    const resolved = resolveOr404(deps, id);
    const canonical = resolved.thinking ? `${resolved.model.id}-thinking` : resolved.model.id;
    const model = models.find((m) => m.id === canonical);
    if (!model) throw gatewayError('model_not_found', `model: ${id} is not available on this gateway`);
    return model;
  });

  app.get('/v1/credits', async (request) => {
    const caller = request.caller!;
    const b = await guardState(() => deps.balances.get(caller.account.id));
    return {
      account_id: caller.account.id,
      currency: deps.catalog.credit.currency,
      credit_value: deps.catalog.credit.description,
      balance_credits: creditsToNumber(b.balance),
      held_credits: creditsToNumber(b.held),
      available_credits: creditsToNumber(b.available),
      balance_micro_credits: b.balance.toString(),
      balance: formatCredits(b.balance),
    };
  });
}
