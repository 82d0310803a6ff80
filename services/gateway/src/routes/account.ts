import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { parseIntParam, queryParam } from '@tollgate/http';
import { balanceView, findPriceList, listModels, modelPricing, resolveModel, type ModelInfo, type ModelPricing, type PriceVersion } from '@tollgate/pricing';
import type { GatewayDeps } from '../deps.ts';
import { guardState } from '../state.ts';
import { resolveOr404 } from './messages.ts';

/** Models per page of GET /v1/models without `limit`, and the most with one (Anthropic's list: 20, 1000). */
const MODELS_DEFAULT_LIMIT = 20;
const MODELS_MAX_LIMIT = 1000;

/** A model of GET /v1/models: Anthropic's fields plus what it costs here. */
export type PricedModelInfo = ModelInfo & {
  /**
   * The model's selling prices in credits (decimal text): per million tokens per token class,
   * per unit (web search, …), prompt-size tiers, fast mode, the multipliers that can apply, the
   * catalog's currency and credit value, the price version they come from, and the price list
   * they are under: the caller's account's (`price_list`, "default" = the catalog's own prices).
   */
  pricing: ModelPricing & { currency: string; credit_value: string; price_version: string; price_list: string };
};

/** The priced model list of a version under a price list, built once per (version, list); a reload makes new ones. */
function pricedModels(version: PriceVersion, listName: string | null | undefined): PricedModelInfo[] {
  const catalog = version.catalog;
  // An account whose list the catalog lacks is charged the catalog's prices: shown the same.
  const list = findPriceList(catalog, listName);
  return listModels(catalog).map((m) => {
    const model = resolveModel(catalog, m.id)!.model;
    return {
      ...m,
      pricing: {
        ...modelPricing(catalog, model, list),
        currency: catalog.credit.currency, credit_value: catalog.credit.description, price_version: version.id,
        price_list: list?.name ?? 'default',
      },
    };
  });
}

/** GET /v1/models in Anthropic's list shape, and GET /v1/credits for the caller's own account. */
export function accountRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  let cached: { id: string; effectiveAt: number; byList: Map<string, PricedModelInfo[]> } | null = null;
  // Customers see what they will pay: prices under the caller's own account price list.
  const current = (listName?: string | null) => {
    const version = deps.prices!.current();
    if (cached === null || cached.id !== version.id || cached.effectiveAt !== version.effectiveAt) {
      cached = { id: version.id, effectiveAt: version.effectiveAt, byList: new Map() };
    }
    const key = findPriceList(version.catalog, listName)?.name ?? 'default';
    let models = cached.byList.get(key);
    if (models === undefined) {
      models = pricedModels(version, key);
      cached.byList.set(key, models);
    }
    return { version, models };
  };

  // Paged as Anthropic's list is (https://docs.anthropic.com/en/api/models-list): `limit` 1–1000,
  // default 20; `after_id` / `before_id` an id of the list, one or the other. A malformed or
  // repeated parameter, or an id the list does not hold, is a 400 naming it (queryParam,
  // parseIntParam: the rules of every query of this gateway). Other parameters are left alone,
  // as Anthropic leaves them (the SDK's beta list adds `beta=true`).
  app.get('/v1/models', async (request) => {
    const { models } = current(request.caller?.account.price_list);
    const q = request.query;
    const l = queryParam(q, 'limit');
    const limit = l === undefined ? MODELS_DEFAULT_LIMIT : parseIntParam(l, 'limit', 1, MODELS_MAX_LIMIT);
    const afterId = queryParam(q, 'after_id');
    const beforeId = queryParam(q, 'before_id');
    if (afterId !== undefined && beforeId !== undefined) throw gatewayError('invalid_request', 'after_id, before_id: give one or the other');
    const at = (name: string, id: string): number => {
      const i = models.findIndex((m) => m.id === id);
      if (i < 0) throw gatewayError('invalid_request', `${name}: ${JSON.stringify(id.slice(0, 80))} is not a model id of this list`);
      return i;
    };
    const end = beforeId === undefined ? undefined : at('before_id', beforeId);
    const start = end !== undefined ? Math.max(0, end - limit) : afterId === undefined ? 0 : at('after_id', afterId) + 1;
    const page = models.slice(start, end ?? start + limit);
    return {
      data: page,
      has_more: end !== undefined ? start > 0 : start + limit < models.length,
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
    const { version, models } = current(request.caller?.account.price_list);
    const resolved = resolveOr404(version.catalog, id);
    const canonical = resolved.thinking ? `${resolved.model.id}-thinking` : resolved.model.id;
    const model = models.find((m) => m.id === canonical);
    if (!model) throw gatewayError('model_not_found', `model: ${id} is not available on this gateway`);
    return model;
  });

  app.get('/v1/credits', async (request) => {
    const caller = request.caller!;
    const b = await guardState(() => deps.balances.get(caller.account.id));
    const catalog = deps.prices!.current().catalog;
    return {
      account_id: caller.account.id,
      currency: catalog.credit.currency,
      credit_value: catalog.credit.description,
      ...balanceView(b),
    };
  });
}
