// What a model costs, for people (GET /v1/models `pricing`), and what a request would leave
// unpriced before it is sent (the catalog's `unpriced: "refuse"` policy).

import type { Catalog, CatalogModel, Factor, PriceList, RateTable } from './catalog.ts';
import { TOKEN_CLASSES, UNIT_DIMENSIONS } from './dimensions.ts';
import type { TokenClass, UnitDimension } from './dimensions.ts';
import { formatCredits } from './money.ts';
import { rat, toDecimal } from './rational.ts';

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

/** µc → credits as exact decimal text, after a price list's factor (exact: the factor is a decimal). */
function credits(micros: bigint, f: Factor | null): string {
  return f === null ? formatCredits(micros) : toDecimal(rat(micros * f.num, f.den * 1_000_000n));
}

function tokenText(t: RateTable['tokens'], f: Factor | null): TokenPriceText {
  return Object.freeze(Object.fromEntries(TOKEN_CLASSES.map((k) => [k, credits(t[k], f)])) as Record<TokenClass, string>);
}

function tiersText(t: RateTable, f: Factor | null): ModelPricing['tiers'] {
  return Object.freeze(t.tiers.map((x) => Object.freeze({ name: x.name, above_input_tokens: x.aboveInputTokens, per_million_tokens: tokenText(x.tokens, f) })));
}

/**
 * The model's selling prices in credits, from the catalog, under `list` (a customer group's
 * price list: its factor on every dimension of the models it covers; null or absent = the
 * catalog's own prices), so a customer sees what they will pay. Multipliers are listed, not applied.
 */
export function modelPricing(catalog: Catalog, model: CatalogModel, list: PriceList | null = null): ModelPricing {
  const f = list !== null && (list.models === null || list.models.has(model.id)) ? list.factor : null;
  const units: Partial<Record<UnitDimension, string>> = {};
  for (const k of UNIT_DIMENSIONS) {
    const p = model.rates.units[k];
    if (p !== undefined) units[k] = credits(p, f);
  }
  const fast = model.rates.fast;
  return Object.freeze({
    per_million_tokens: tokenText(model.rates.standard.tokens, f),
    per_unit: Object.freeze(units),
    tiers: tiersText(model.rates.standard, f),
    fast: fast === undefined ? null : Object.freeze({ per_million_tokens: tokenText(fast.tokens, f), tiers: tiersText(fast, f) }),
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
