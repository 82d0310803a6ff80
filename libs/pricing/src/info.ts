// What a model costs, for people (GET /v1/models `pricing`), and what a request would leave
// unpriced before it is sent (the catalog's `unpriced: "refuse"` policy).

import type { Catalog, CatalogModel, RateTable } from './catalog.ts';
import { TOKEN_CLASSES, UNIT_DIMENSIONS } from './dimensions.ts';
import type { TokenClass, UnitDimension } from './dimensions.ts';
import { formatCredits } from './money.ts';

/** Credits as decimal text per token class, per million tokens. */
export type TokenPriceText = Readonly<Record<TokenClass, string>>;

/** A model's selling prices in credits (decimal text), by dimension. */
export interface ModelPricing {
  /** credits per million tokens */
  readonly per_million_tokens: TokenPriceText;
  /** credits per unit; a unit dimension missing here is not priced */
  readonly per_unit: Readonly<Partial<Record<UnitDimension, string>>>;
  /** prompt-size tiers: above `above_input_tokens` input-side tokens, every token at these prices */
  readonly tiers: ReadonlyArray<{ readonly name: string; readonly above_input_tokens: number; readonly per_million_tokens: TokenPriceText }>;
  /** `speed: "fast"` prices, or null when the model has no fast mode priced */
  readonly fast: { readonly per_million_tokens: TokenPriceText; readonly tiers: ModelPricing['tiers'] } | null;
  /** stacking multipliers that can apply to this model: name, factor, condition */
  readonly multipliers: ReadonlyArray<{ readonly name: string; readonly factor: string; readonly when: Readonly<Record<string, string>>; readonly applies_to: string }>;
}

function tokenText(t: RateTable['tokens']): TokenPriceText {
  return Object.freeze(Object.fromEntries(TOKEN_CLASSES.map((k) => [k, formatCredits(t[k])])) as Record<TokenClass, string>);
}

function tiersText(t: RateTable): ModelPricing['tiers'] {
  return Object.freeze(t.tiers.map((x) => Object.freeze({ name: x.name, above_input_tokens: x.aboveInputTokens, per_million_tokens: tokenText(x.tokens) })));
}

/** The model's selling prices in credits, from the catalog (no price list applied). */
export function modelPricing(catalog: Catalog, model: CatalogModel): ModelPricing {
  const units: Partial<Record<UnitDimension, string>> = {};
  for (const k of UNIT_DIMENSIONS) {
    const p = model.rates.units[k];
    if (p !== undefined) units[k] = formatCredits(p);
  }
  const fast = model.rates.fast;
  return Object.freeze({
    per_million_tokens: tokenText(model.rates.standard.tokens),
    per_unit: Object.freeze(units),
    tiers: tiersText(model.rates.standard),
    fast: fast === undefined ? null : Object.freeze({ per_million_tokens: tokenText(fast.tokens), tiers: tiersText(fast) }),
    multipliers: Object.freeze(catalog.multipliers
      .filter((m) => m.models === null || m.models.has(model.id))
      .map((m) => Object.freeze({ name: m.name, factor: m.factor.text, when: m.when as Record<string, string>, applies_to: m.appliesTo }))),
  });
}

/**
 * What a request would report that the catalog does not price, known before sending it:
 * server tools it enables whose unit has no price (e.g. `code_execution_seconds`), and
 * `speed:fast` on a model without a fast table. With `catalog.unpriced === "refuse"` the
 * gateway refuses such a request (400) instead of serving it partly free.
 */
export function requestUnpriced(model: CatalogModel, req: { readonly speed?: string | null; readonly units?: Iterable<UnitDimension> }): string[] {
  const out: string[] = [];
  for (const k of req.units ?? []) if (model.rates.units[k] === undefined && !out.includes(k)) out.push(k);
  if (req.speed === 'fast' && model.rates.fast === undefined) out.push('speed:fast');
  return out;
}
