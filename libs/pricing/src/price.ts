// The price of one request under one price version: every dimension, tiers, stacking multipliers,
// fast mode, iterations at their own model, price lists, the upstream's own cost, and the one
// rounding: cost = ⌈ Σ quantity × unit price (exact, after every factor) ⌉ once per request.

import type { Catalog, CatalogModel, ConditionField, Factor, Multiplier, PriceList, PriceTier, RateCard, RateTable, TokenRates } from './catalog.ts';
import { DIMENSIONS, UNIT_DIMENSIONS, inputSideTokens, quantities as toQuantities } from './dimensions.ts';
import type { Dimension, Quantities, TokenClass, UnitDimension } from './dimensions.ts';
import { maxOutputTokensFor } from './catalog.ts';
import { resolveModel } from './resolve.ts';
import { ONE, ZERO, add, ceil, cmp, mul, rat, toDecimal } from './rational.ts';
import type { Rational } from './rational.ts';

/** One version of the price book: a catalog and when it took effect. See PriceBook. */
export interface PriceVersion {
  /** the catalog's content id (12 hex digits of SHA-256 over its canonical JSON) */
  readonly id: string;
  /** epoch ms from which requests are priced with this version */
  readonly effectiveAt: number;
  readonly catalog: Catalog;
}

/** A sub-call reported in `usage.iterations` (fallback, advisor, compaction), priced at its own model. */
export interface PricingIteration {
  /** e.g. `message`, `compaction`, `advisor_message` */
  readonly type: string;
  /** the model that served it, as the upstream names it; resolved through the catalog */
  readonly model: string;
  readonly quantities: Quantities;
}

/** Everything about a request, besides its quantities, that decides its price. */
export interface PricingContext {
  /** the catalog model resolved for the request */
  readonly model: CatalogModel;
  /** the response's top-level `model` when it differs (a fallback): the request is priced at it */
  readonly servedModel?: string | null;
  /** response `usage.service_tier` ("standard", "priority", "batch") */
  readonly serviceTier?: string | null;
  /** response `usage.inference_geo` ("global", "us") */
  readonly inferenceGeo?: string | null;
  /** response `usage.speed` ("standard", "fast") */
  readonly speed?: string | null;
  readonly stopReason?: string | null;
  /** whether any content reached the client; default: output tokens > 0. A refusal before output costs 0. */
  readonly outputSeen?: boolean;
  /** `usage.iterations`, when the upstream reported them; `quantities` must then be their totals */
  readonly iterations?: readonly PricingIteration[];
  /** the account's price list name; undefined, null or "default" = the catalog's own prices */
  readonly priceList?: string | null;
  /** usage fields the upstream reported that are not dimensions (a new billable field): never silently free */
  readonly unknown?: Readonly<Record<string, number>>;
}

/** One invoice line: exact, before the request's single rounding. */
export interface PriceLine {
  /** catalog id of the model that served these units */
  readonly model: string;
  readonly dimension: Dimension;
  readonly quantity: number;
  /** µc per million tokens (token classes) or per unit, after tier, multipliers and list, exact decimal */
  readonly unitPrice: string;
  /** µc, exact decimal (may have a fraction: the request rounds once, not per line) */
  readonly amount: string;
}

export interface PricedIteration {
  readonly type: string;
  readonly model: string;
  /** null when the name did not resolve (then priced at the request's model, and listed in `unpriced`) */
  readonly catalogModel: string | null;
  /** this iteration's share, rounded up on its own (for display; the request total rounds once) */
  readonly costMicros: bigint;
}

export interface PricedRequest {
  /** what the account is charged, µc: ⌈Σ lines⌉ */
  readonly costMicros: bigint;
  /** the operator's own cost at the upstream's list prices, µ of `upstreamCurrency`; null when the catalog has none for a serving model */
  readonly upstreamCostMicros: bigint | null;
  readonly upstreamCurrency: string | null;
  /** the price version applied */
  readonly priceVersion: string;
  /** the price list applied: "default" or a list name */
  readonly priceList: string;
  /** per dimension priced for the serving model: µc per MTok or per unit, after tier, multipliers and list */
  readonly unitPrices: Readonly<Record<string, string>>;
  /** the prompt-size tier applied (e.g. "long_context"), or null */
  readonly tier: string | null;
  /** names of the multipliers applied, in catalog order (e.g. ["batch", "us_geo"]) */
  readonly multipliers: readonly string[];
  /**
   * What was reported but not priced, so charged nothing: a dimension without a price
   * (`code_execution_seconds`), an unknown usage field (`<field>`), fast mode without a fast
   * table (`speed:fast`), a serving model not in the catalog (`model:<name>`).
   */
  readonly unpriced: readonly string[];
  readonly iterations: readonly PricedIteration[];
  readonly lines: readonly PriceLine[];
}

const PER_MTOK = 1_000_000n;

interface Conditions {
  readonly service_tier: string | null | undefined;
  readonly inference_geo: string | null | undefined;
  readonly speed: string | null | undefined;
}

function factorRat(f: Factor): Rational {
  return rat(f.num, f.den);
}

function appliesToModel(models: ReadonlySet<string> | null, model: CatalogModel): boolean {
  return models === null || models.has(model.id);
}

/** 'match' | 'mismatch' | 'unknown' (some field not known yet: holds assume the worst). */
function matchWhen(m: Multiplier, c: Conditions): 'match' | 'mismatch' | 'unknown' {
  let unknown = false;
  for (const field of Object.keys(m.when) as ConditionField[]) {
    const want = (m.when as Record<ConditionField, string>)[field];
    const have = c[field];
    if (have === undefined) unknown = true;
    else if (have !== want) return 'mismatch';
  }
  return unknown ? 'unknown' : 'match';
}

function kindCovered(appliesTo: Multiplier['appliesTo'], kind: 'token' | 'unit'): boolean {
  return appliesTo === 'all' || (appliesTo === 'tokens' ? kind === 'token' : kind === 'unit');
}

/** Picks the table (fast or standard) and tier for a prompt of `promptTokens` input-side tokens. */
function selectRates(table: RateTable, promptTokens: number): { tokens: TokenRates; tier: PriceTier | null } {
  let tier: PriceTier | null = null;
  for (const t of table.tiers) if (promptTokens > t.aboveInputTokens) tier = t;
  return { tokens: tier?.tokens ?? table.tokens, tier };
}

/** Resolves the price list by name; unknown names fall back to the default (and say so in the result). */
export function findPriceList(catalog: Catalog, name: string | null | undefined): PriceList | null {
  if (name === undefined || name === null || name === 'default') return null;
  return Object.hasOwn(catalog.priceLists, name) ? (catalog.priceLists[name] ?? null) : null;
}

interface Segment {
  readonly model: CatalogModel;
  readonly q: Quantities;
  readonly iteration: PricingIteration | null;
  readonly resolved: boolean;
}

interface SegmentPrice {
  sum: Rational;
  upstream: Rational | null;
  lines: PriceLine[];
  unitPrices: Record<string, string>;
  tier: string | null;
  multipliers: Set<string>;
  unpriced: string[];
}

function priceSegment(catalog: Catalog, seg: Segment, c: Conditions, list: PriceList | null): SegmentPrice {
  const { model, q } = seg;
  const out: SegmentPrice = { sum: ZERO, upstream: null, lines: [], unitPrices: {}, tier: null, multipliers: new Set(), unpriced: [] };

  // Factors per kind: stacking multipliers whose conditions match, then the account's list.
  const factor: Record<'token' | 'unit', Rational> = { token: ONE, unit: ONE };
  const upstreamFactor: Record<'token' | 'unit', Rational> = { token: ONE, unit: ONE };
  for (const m of catalog.multipliers) {
    if (!appliesToModel(m.models, model) || matchWhen(m, c) !== 'match') continue;
    out.multipliers.add(m.name);
    for (const kind of ['token', 'unit'] as const) {
      if (kindCovered(m.appliesTo, kind)) {
        factor[kind] = mul(factor[kind], factorRat(m.factor));
        upstreamFactor[kind] = mul(upstreamFactor[kind], factorRat(m.factor));
      }
    }
  }
  if (list !== null && appliesToModel(list.models, model)) {
    factor.token = mul(factor.token, factorRat(list.factor));
    factor.unit = mul(factor.unit, factorRat(list.factor));
  }

  const fast = c.speed === 'fast';
  const prompt = inputSideTokens(q);
  const pick = (card: RateCard): { tokens: TokenRates; tier: PriceTier | null } =>
    selectRates(fast && card.fast !== undefined ? card.fast : card.standard, prompt);
  if (fast && model.rates.fast === undefined && DIMENSIONS.some((d) => d.kind === 'token' && q[d.key] > 0)) {
    out.unpriced.push('speed:fast');
  }
  const sell = pick(model.rates);
  out.tier = sell.tier?.name ?? null;
  const up = model.upstreamRates === undefined ? undefined : pick(model.upstreamRates);
  let upstream: Rational | null = up === undefined ? null : ZERO;

  for (const d of DIMENSIONS) {
    const n = q[d.key];
    let base: bigint | undefined;
    let upBase: bigint | undefined;
    let per: bigint;
    if (d.kind === 'token') {
      base = sell.tokens[d.key as TokenClass];
      upBase = up?.tokens[d.key as TokenClass];
      per = PER_MTOK;
    } else {
      base = model.rates.units[d.key as UnitDimension];
      upBase = model.upstreamRates?.units[d.key as UnitDimension];
      per = 1n;
    }
    if (base === undefined) {
      if (n > 0) out.unpriced.push(d.key);
      continue;
    }
    const unitPrice = mul(rat(base), factor[d.kind]);
    out.unitPrices[d.key] = toDecimal(unitPrice);
    if (upstream !== null && upBase !== undefined && n > 0) {
      upstream = add(upstream, mul(rat(BigInt(n) * upBase, per), upstreamFactor[d.kind]));
    }
    if (n === 0) continue;
    const amount = mul(unitPrice, rat(BigInt(n), per));
    out.sum = add(out.sum, amount);
    out.lines.push(Object.freeze({ model: model.id, dimension: d.key, quantity: n, unitPrice: toDecimal(unitPrice), amount: toDecimal(amount) }));
  }
  out.upstream = upstream;
  return out;
}

/**
 * The catalog model a reported serving model (`served_model`, an iteration's `model`) is priced
 * at: the request's own model when the name is its own (`ownName`: its id, the upstream model
 * it was sent as, its catalog entry's upstream model), else the model selling
 * that upstream model, else the name resolved like a request's `model`; unresolvable: `fallback`
 * with `resolved: false`. Billing itemises usage under this model (the one the price came from).
 */
export function resolveServing(catalog: Catalog, name: string, fallback: CatalogModel): { model: CatalogModel; resolved: boolean } {
  const hit = servingModel(catalog, name, fallback);
  return hit === undefined ? { model: fallback, resolved: false } : { model: hit.model, resolved: true };
}

/**
 * The catalog model a `usage.iterations` step's `model` is priced at: the request's own model
 * (`requested`) when the name is its own (`ownName`: its id, the upstream model it was sent as,
 * a group's mapping included, its catalog entry's upstream model), whatever model served the
 * answer; else `resolveServing` with the serving model (`main`) in the fallback's place. A step
 * of the requested attempt thus stays at the requested model after a fallback served. Never throws.
 */
export function resolveStep(catalog: Catalog, name: string, requested: CatalogModel, main: CatalogModel): { model: CatalogModel; resolved: boolean } {
  if (ownName(catalog, requested, name)) return { model: requested, resolved: true };
  return resolveServing(catalog, name, main);
}

/**
 * The catalog model an advisor is priced at, from its tool's `model` or its `advisor_message`
 * step's: the model selling that upstream model, else the name resolved like a request's `model`
 * (`servedModelOf`), never the request's own model by the name it was sent as (under a group's
 * `model_mapping` that name may be the very model an advisor tool names); unresolvable:
 * `fallback` with `resolved: false`. The hold, the settlement's advisor bounds and pricing all
 * read advisors by this one rule. Never throws.
 */
export function resolveAdvisor(catalog: Catalog, name: string, fallback: CatalogModel): { model: CatalogModel; resolved: boolean } {
  const hit = servedModelOf(catalog, name);
  return hit === undefined ? { model: fallback, resolved: false } : { model: hit, resolved: true };
}

/**
 * The catalog model one `usage.iterations` step is priced at: an advisor's by `resolveAdvisor`,
 * any other by `resolveStep` (`requested` the request's model as sent, `main` the serving model).
 */
export function resolveIteration(catalog: Catalog, it: { type: string; model: string }, requested: CatalogModel, main: CatalogModel): { model: CatalogModel; resolved: boolean } {
  return it.type === 'advisor_message' ? resolveAdvisor(catalog, it.model, main) : resolveStep(catalog, it.model, requested, main);
}

/**
 * Whether `name` is `model`'s own: its id, the upstream model it was sent as (a group's mapping
 * gives a request's model another), or its catalog entry's own upstream model (two catalog
 * entries may sell one upstream model at different prices: the request's is the one it bought).
 */
function ownName(catalog: Catalog, model: CatalogModel, name: string): boolean {
  if (model.upstreamModel === name || model.id === name) return true;
  const own = catalog.models.find((m) => m.id === model.id);
  return own !== undefined && own !== model && own.upstreamModel === name;
}

/**
 * The catalog model a served name is priced at with no request's model to prefer: the model
 * selling that upstream model, else the name resolved like a request's `model`; undefined when
 * none (`resolveServing` without its first rule). Never throws.
 */
export function servedModelOf(catalog: Catalog, name: string): CatalogModel | undefined {
  return servedAs(catalog, name)?.model;
}

/** `servedModelOf` with whether the name is the model's own (`exact`) rather than a mapping rule's reach. */
function servedAs(catalog: Catalog, name: string): { model: CatalogModel; exact: boolean } | undefined {
  const byUpstream = catalog.models.find((m) => m.upstreamModel === name);
  if (byUpstream !== undefined) return { model: byUpstream, exact: true };
  const hit = resolveModel(catalog, name);
  return hit === undefined ? undefined : { model: hit.model, exact: hit.via !== 'mapping' };
}

/**
 * `resolveServing`'s rule, with whether the name is the model's own (`exact`: its id, upstream
 * model, alias, `-thinking` or `/provider` name) rather than a mapping rule's reach; undefined
 * when no catalog model sells the name.
 */
function servingModel(catalog: Catalog, name: string, requested: CatalogModel): { model: CatalogModel; exact: boolean } | undefined {
  // the request's own model first: two catalog entries may sell one upstream model at different prices
  return ownName(catalog, requested, name) ? { model: requested, exact: true } : servedAs(catalog, name);
}

/**
 * Prices one request. `quantities` are the request's totals over every iteration (Anthropic's
 * top-level usage leaves compaction iterations out; the usage parser sums `usage.iterations`).
 *
 * Rules (Anthropic "Pricing"; README "Price rules"): each iteration is priced at its own serving
 * model (`resolveIteration`) and whatever the totals hold beyond the iterations (e.g. server-tool units reported only
 * at the top level) at the request's serving model; per segment, a tier is chosen by its
 * input-side tokens, `speed: "fast"` selects the model's fast table, matching multipliers and
 * the price list multiply; a refusal before any output costs 0. Cost = ⌈Σ⌉ once.
 * Throws RangeError on quantities that are not non-negative safe integers.
 */
export function priceRequest(version: PriceVersion, quantities: Quantities, ctx: PricingContext): PricedRequest {
  const catalog = version.catalog;
  const totals = toQuantities(quantities);
  const list = findPriceList(catalog, ctx.priceList);
  const c: Conditions = { service_tier: ctx.serviceTier ?? null, inference_geo: ctx.inferenceGeo ?? null, speed: ctx.speed ?? null };
  const unpriced = new Set<string>();

  let main = ctx.model;
  if (ctx.servedModel !== undefined && ctx.servedModel !== null) {
    const s = resolveServing(catalog, ctx.servedModel, ctx.model);
    if (!s.resolved) unpriced.add(`model:${ctx.servedModel}`);
    main = s.model;
  }

  const segments: Segment[] = [];
  const rest: Record<Dimension, number> = { ...totals };
  for (const it of ctx.iterations ?? []) {
    const q = toQuantities(it.quantities);
    const s = resolveIteration(catalog, it, ctx.model, main);
    if (!s.resolved) unpriced.add(`model:${it.model}`);
    segments.push({ model: s.model, q, iteration: it, resolved: s.resolved });
    for (const d of DIMENSIONS) rest[d.key] = Math.max(0, rest[d.key] - q[d.key]);
  }
  const mainSegment: Segment = { model: main, q: Object.freeze(rest), iteration: null, resolved: true };
  segments.push(mainSegment);

  const refusedBeforeOutput = ctx.stopReason === 'refusal' && !(ctx.outputSeen ?? totals.output > 0);
  const priced = segments.map((s) => priceSegment(catalog, s, c, list));
  const mainPrice = priced[priced.length - 1] as SegmentPrice;

  for (const [k, v] of Object.entries(ctx.unknown ?? {})) if (v > 0) unpriced.add(k);
  for (const p of priced) for (const u of p.unpriced) unpriced.add(u);

  const upstreamCurrency = catalog.upstreamCurrency ?? null;
  if (refusedBeforeOutput) {
    return Object.freeze({
      costMicros: 0n,
      upstreamCostMicros: priced.every((p) => p.upstream !== null) ? 0n : null,
      upstreamCurrency,
      priceVersion: version.id,
      priceList: list?.name ?? 'default',
      unitPrices: Object.freeze(mainPrice.unitPrices),
      tier: null,
      multipliers: Object.freeze([]),
      unpriced: Object.freeze([...unpriced]),
      iterations: Object.freeze(segments.flatMap((s) => s.iteration === null ? [] : [Object.freeze({
        type: s.iteration.type, model: s.iteration.model, catalogModel: s.resolved ? s.model.id : null, costMicros: 0n,
      })])),
      lines: Object.freeze([]),
    });
  }

  let sum = ZERO;
  let upstream: Rational | null = ZERO;
  // A segment with nothing in it (e.g. the remainder after iterations) applies nothing: only
  // segments with quantities name their multipliers and tier.
  const used = new Set<string>();
  let tier: string | null = null;
  priced.forEach((p, i) => {
    sum = add(sum, p.sum);
    // A serving model without upstream list prices makes the whole upstream cost unknown.
    const empty = !DIMENSIONS.some((d) => (segments[i] as Segment).q[d.key] > 0);
    upstream = upstream === null || (p.upstream === null && !empty) ? null : add(upstream, p.upstream ?? ZERO);
    if (empty) return;
    for (const m of p.multipliers) used.add(m);
    tier ??= p.tier;
  });

  return Object.freeze({
    costMicros: ceil(sum),
    upstreamCostMicros: upstream === null ? null : ceil(upstream),
    upstreamCurrency,
    priceVersion: version.id,
    priceList: list?.name ?? 'default',
    unitPrices: Object.freeze(mainPrice.unitPrices),
    tier,
    multipliers: Object.freeze(catalog.multipliers.map((m) => m.name).filter((n) => used.has(n))),
    unpriced: Object.freeze([...unpriced]),
    iterations: Object.freeze(segments.flatMap((s, i) => s.iteration === null ? [] : [Object.freeze({
      type: s.iteration.type,
      model: s.iteration.model,
      catalogModel: s.resolved ? s.model.id : null,
      costMicros: ceil((priced[i] as SegmentPrice).sum),
    })])),
    lines: Object.freeze(priced.flatMap((p) => p.lines)),
  });
}

// ---------------------------------------------------------------------------------------------
// Holds

/** What is known about a request before it is sent, for its worst-case hold. */
export interface HoldRequest {
  /** upper bound of the prompt's input-side tokens (@tollgate/anthropic `inputTokenBound`) */
  readonly inputTokens: number;
  /** the request's `max_tokens` */
  readonly maxTokens: number;
  /**
   * Server tools the request enables, by unit: the tool's `max_uses`, or null when it has none
   * (the catalog's `unit_hold_bounds` is assumed; the gateway should send that as `max_uses`).
   */
  readonly units?: Readonly<Partial<Record<UnitDimension, number | null>>>;
  /** request values; undefined = not known before the response (the hold assumes the dearest) */
  readonly serviceTier?: string | null;
  readonly inferenceGeo?: string | null;
  readonly speed?: string | null;
  readonly priceList?: string | null;
  /** further sampling the request may cause at other models (e.g. an advisor tool), each with its bounds */
  readonly extra?: ReadonlyArray<{ readonly model: CatalogModel; readonly inputTokens: number; readonly maxTokens: number }>;
  /**
   * Advisor tools the request declares (`advisorTools(body.tools)`): each may call its model up
   * to `maxUses` times (null: the catalog's `advisorHold.maxUses`), every call reading the whole
   * prompt (`inputTokens`) and writing at most `advisorHold.outputTokens`.
   */
  readonly advisors?: ReadonlyArray<AdvisorTool>;
  /**
   * The most input one sampling step reads (a server-tool loop's `inputTokens` covers every step,
   * each at most one context window): what one advisor call can read. Default `inputTokens`.
   */
  readonly stepInputTokens?: number;
  /**
   * The request's own fallback attempts (`requestFallbackAttempts(body.fallbacks)`; a bare name
   * is an attempt at the request's `max_tokens` and speed), beside the catalog's `fallback_models`
   */
  readonly fallbacks?: ReadonlyArray<string | FallbackAttempt>;
  /** `fallbacks: "default"`: the upstream picks the fallback model (held as one attempt at the catalog's dearest model) */
  readonly defaultFallbacks?: boolean;
  /** the request's `anthropic-beta` header: betas that raise a fallback's output limit (`max_output_tokens_betas`) */
  readonly anthropicBeta?: string | readonly string[];
  /**
   * The sampling steps the request may run (`inputTokenBound`'s iterations: 1, or a server-tool
   * loop's; more than 1 for a request that may compact its context). Default 1. Every attempt's
   * output is held once per step (each step may write up to its max_tokens); only a one-step
   * request has its fallbacks' output capped at their limits (`holdTerms`).
   */
  readonly steps?: number;
  /**
   * How many of `steps` are a compaction (0 or 1: a request whose `context_management` may
   * compact): its summary is up to the max_tokens sent whichever attempt writes it, and the step
   * after it re-reads it. Default 0.
   */
  readonly compactions?: number;
}

/**
 * The fallback models a Messages request names in `fallbacks` (Anthropic server-side fallback
 * beta: a list of `{model}` entries, tried in order when the model refuses or fails; a bare
 * string is read as a model name too). Anything else is ignored. Never throws.
 */
export function requestFallbacks(fallbacks: unknown): string[] {
  // Every entry: each is forwarded and can serve (and bill) the request.
  return requestFallbackAttempts(fallbacks).flatMap((f) => (f.model === '' ? [] : [f.model]));
}

/**
 * One entry of a Messages request's `fallbacks` (Anthropic server-side fallback beta: when the
 * requested model declines, each entry is tried in order, one attempt each, with the entry's
 * own `max_tokens` and `speed` in place of the request's when it sets them).
 */
export interface FallbackAttempt {
  /** the entry's `model` ('' when it has none: held at the requested model, as an unknown name) */
  readonly model: string;
  /** the entry's own `max_tokens`, or null for the request's */
  readonly maxTokens: number | null;
  /** the entry's `speed`: 'fast' or 'standard'; null runs standard; undefined: the request's speed */
  readonly speed?: string | null;
}

/**
 * The attempts a Messages request's `fallbacks` asks for, one per entry (`{model, max_tokens,
 * speed}` or a bare name), whatever the entry's shape (a `max_tokens` that is not a number counts
 * as absent: the gateway refuses such a body before holding). Not an array (`"default"`,
 * absent): none. Never throws.
 */
export function requestFallbackAttempts(fallbacks: unknown): FallbackAttempt[] {
  if (!Array.isArray(fallbacks)) return [];
  return fallbacks.map((f): FallbackAttempt => {
    if (typeof f === 'string') return { model: f, maxTokens: null };
    const e = f !== null && typeof f === 'object' ? f as Record<string, unknown> : {};
    const maxTokens = typeof e.max_tokens === 'number' && Number.isSafeInteger(e.max_tokens) && e.max_tokens >= 0 ? e.max_tokens : null;
    const speed = typeof e.speed === 'string' || e.speed === null ? e.speed : undefined;
    return { model: typeof e.model === 'string' ? e.model : '', maxTokens, ...(speed === undefined ? {} : { speed }) };
  });
}

/** An advisor tool of a request: the model it consults and its `max_uses` (null when absent). */
export interface AdvisorTool {
  readonly model: string;
  readonly maxUses: number | null;
  /** the tool's own `max_tokens` (each call's output bound); null or absent when it sets none */
  readonly maxTokens?: number | null;
}

/**
 * The output tokens every advisor call of `tools` may write in all (`advisorTools`): each tool's
 * calls (its `max_uses`, else the catalog's `advisor_hold.max_uses`) × each call's bound (its
 * `max_tokens`, else `advisor_hold.output_tokens`), what the hold prices (`sharedHold`) and the
 * settlement bounds advisor steps by.
 */
export function advisorOutputTokens(catalog: Catalog, tools: readonly AdvisorTool[]): number {
  let total = 0;
  for (const a of tools) total += (a.maxUses ?? catalog.advisorHold.maxUses) * (a.maxTokens ?? catalog.advisorHold.outputTokens);
  return total;
}

/**
 * The advisor tools of a Messages request's `tools` (Anthropic advisor tool: `type`
 * `advisor_<date>`, `model` the advisor, optional `max_uses` and `max_tokens`, each call's
 * output bound). Anything else is ignored; a `max_uses` or `max_tokens` that is not a positive
 * integer counts as absent. Never throws.
 */
export function advisorTools(tools: unknown): AdvisorTool[] {
  if (!Array.isArray(tools)) return [];
  const out: AdvisorTool[] = [];
  for (const t of tools) {
    if (t === null || typeof t !== 'object') continue;
    const { type, model, max_uses: maxUses, max_tokens: maxTokens } = t as Record<string, unknown>;
    if (typeof type !== 'string' || !type.startsWith('advisor_') || typeof model !== 'string') continue;
    const positive = (n: unknown) => (typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : null);
    out.push({ model, maxUses: positive(maxUses), maxTokens: positive(maxTokens) });
  }
  return out;
}

/** Thrown when a request enables a priced unit without `max_uses` and the catalog gives no bound. */
export class HoldBoundError extends Error {
  override readonly name = 'HoldBoundError';
}

function count(n: number, what: string): bigint {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative integer, got ${n}`);
  return BigInt(n);
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** The dearest factor per kind a request could end up with, given what is known before it is sent. */
function holdFactors(catalog: Catalog, model: CatalogModel, c: Conditions, list: PriceList | null): Record<'token' | 'unit', Rational> {
  const f: Record<'token' | 'unit', Rational> = { token: ONE, unit: ONE };
  for (const m of catalog.multipliers) {
    if (!appliesToModel(m.models, model)) continue;
    const w = matchWhen(m, c);
    const r = factorRat(m.factor);
    if (w === 'mismatch' || (w === 'unknown' && cmp(r, ONE) <= 0)) continue;
    for (const kind of ['token', 'unit'] as const) if (kindCovered(m.appliesTo, kind)) f[kind] = mul(f[kind], r);
  }
  if (list !== null && appliesToModel(list.models, model)) {
    f.token = mul(f.token, factorRat(list.factor));
    f.unit = mul(f.unit, factorRat(list.factor));
  }
  return f;
}

/** The token classes on the input side (what the prompt is billed as), in DIMENSIONS order. */
const INPUT_SIDE_TOKEN_CLASSES: readonly TokenClass[] = DIMENSIONS.filter((d) => d.kind === 'token' && d.inputSide).map((d) => d.key as TokenClass);

/**
 * What a hold prices a model at: the dearest input-side and output rates (µc per million tokens)
 * of every table and tier the prompt could reach, and the hold's token factor.
 */
function holdRates(catalog: Catalog, model: CatalogModel, inputTokens: number, c: Conditions, list: PriceList | null): { dearestInput: bigint; output: bigint; factor: Rational } {
  // Every table the response could be priced at: standard, fast (unless speed is known not to
  // be fast), and each at its base and every tier the prompt could reach.
  const tables: RateTable[] = [];
  if (c.speed !== 'fast' || model.rates.fast === undefined) tables.push(model.rates.standard);
  if (model.rates.fast !== undefined && (c.speed === undefined || c.speed === 'fast')) tables.push(model.rates.fast);
  let dearestInput = 0n;
  let output = 0n;
  // The base rates and every tier the prompt could reach (plain loops: this runs several
  // times per request, issue 11).
  const consider = (tokens: TokenRates) => {
    for (const k of INPUT_SIDE_TOKEN_CLASSES) dearestInput = max(dearestInput, tokens[k]);
    output = max(output, tokens.output);
  };
  for (const t of tables) {
    consider(t.tokens);
    for (const x of t.tiers) if (inputTokens > x.aboveInputTokens) consider(x.tokens);
  }
  return { dearestInput, output, factor: holdFactors(catalog, model, c, list).token };
}

function modelHold(catalog: Catalog, model: CatalogModel, inputTokens: number, maxTokens: number, c: Conditions, list: PriceList | null): Rational {
  const r = holdRates(catalog, model, inputTokens, c, list);
  const scaled = count(inputTokens, 'inputTokens') * r.dearestInput + count(maxTokens, 'maxTokens') * r.output;
  return mul(rat(scaled, PER_MTOK), r.factor);
}

/** What a hold prices against: the version's catalog, the account's price list and the request's conditions. */
function holdContext(version: PriceVersion, req: HoldRequest): { catalog: Catalog; list: PriceList | null; c: Conditions } {
  const catalog = version.catalog;
  return {
    catalog,
    list: findPriceList(catalog, req.priceList),
    c: { service_tier: req.serviceTier, inference_geo: req.inferenceGeo, speed: req.speed },
  };
}

/**
 * One stretch of a hold's output (`HoldTerms.segments`): up to `tokens` output tokens at
 * `perOutputToken` µc each (rounded up to a whole µc), null tokens for every token left.
 */
export interface HoldSegment {
  readonly perOutputToken: bigint;
  readonly tokens: number | null;
}

/**
 * A request's worst case (`amount`, µc: `holdBound`) and how it varies with the output tokens
 * allowed: the hold of t output tokens is `base` plus t tokens laid over `segments` in order,
 * each segment taking up to its `tokens` at its rate (tokens past the last segment cost nothing).
 * For every t in [0, maxTokens] that bounds `holdBound` at t; `amount` = `holdBound` at
 * maxTokens. The admission policy clamps on these terms (`admission`).
 */
export interface HoldTerms {
  readonly amount: bigint;
  /** the hold with no output at the request's max_tokens, µc, rounded up: each attempt's input side, server tools, advisor calls and `extra`, and the output of the fallback entries that set their own max_tokens */
  readonly base: bigint;
  /** µc per token of the request's max_tokens, dearest first: up to the first fallback's limit the sum of every attempt's rate, then without the attempts whose limit is reached, down to the uncapped ones (the requested model among them) for the rest */
  readonly segments: readonly HoldSegment[];
}

/** One attempt of a request, for its hold: its input side and units, its rate per output token, its output. */
interface Attempt {
  input: Rational;
  units: Rational;
  out: Rational;
  /** µc per input token at its dearest input-side class (a compaction summary's re-read) */
  inRate: Rational;
  /** its own max_tokens (a fallback entry's), or undefined: the request's max_tokens */
  own: bigint | undefined;
  /** the most output it can write (a fallback's output limit), or undefined: no limit below max_tokens */
  cap: bigint | undefined;
}

/**
 * The hold of a request (see `holdBound`) and its admission terms, in one pricing pass.
 *
 * A request runs as attempts (Anthropic server-side fallback: the requested model, then each
 * entry of the body's `fallbacks` in order when the one before declined; each attempt reads the
 * prompt and writes output, and `usage.iterations` prices each at its own model). So the hold is
 * the sum over the attempts, each at its own model: the first at the dearest of the requested
 * model and its catalog `fallback_models` (alternatives for the same attempt), each entry at its
 * model (resolved as pricing resolves a served model; unknown: the requested model) with its
 * own `max_tokens` and `speed` where it sets them, and `fallbacks: "default"` as one attempt at
 * the catalog's dearest model. An entry's output is at most its model's limit per call (its
 * catalog `max_output_tokens`, raised by the betas the request names) on a one-step request
 * (`steps` 1: no server-tool loop, no compaction) when the entry names the model exactly (not
 * through a mapping rule, which may reach another model upstream). Advisor calls and `extra`
 * are held once per attempt. What varies with the request's `max_tokens` t is the sum of
 * min(t, cap) × rate over the attempts that write at the request's `max_tokens`: `segments`.
 * Sonnet 4.6 at max_tokens 100,000 with one Opus 4 entry (32,000 out) holds two prompts, 100,000
 * tokens at Sonnet's rate and 32,000 at Opus 4's.
 * Throws RangeError on bad counts, HoldBoundError on a priced tool with no bound.
 */
export function holdTerms(version: PriceVersion, model: CatalogModel, req: HoldRequest): HoldTerms {
  const { catalog, list, c } = holdContext(version, req);
  const inputTokens = count(req.inputTokens, 'inputTokens');
  const maxTokens = count(req.maxTokens, 'maxTokens');
  const oneStep = (req.steps ?? 1) <= 1;
  // Each sampling step may write up to its max_tokens (the settlement's output ceiling is
  // max_tokens × steps: docs/decisions.md, "Output is bounded like input"), so every attempt's
  // output is held that many times.
  const stepCount = count(req.steps ?? 1, 'steps');
  const steps = stepCount < 1n ? 1n : stepCount;
  // A step after a compaction reads up to one step's input and the summary (up to max_tokens):
  // the tiers it can reach are judged at that prompt, when it is larger.
  const tierInput = Math.max(req.inputTokens, stepRead(req));
  const attempt = (models: Iterable<CatalogModel>, conditions: Conditions, own: bigint | undefined, cap: bigint | undefined): Attempt => {
    let input = ZERO;
    let units = ZERO;
    let out = ZERO;
    let inRate = ZERO;
    for (const m of models) {
      const r = holdRates(catalog, m, tierInput, conditions, list);
      const perInput = mul(rat(r.dearestInput, PER_MTOK), r.factor);
      const i = mul(perInput, rat(inputTokens));
      const u = unitsHold(catalog, m, req, conditions, list);
      const o = mul(rat(r.output, PER_MTOK), r.factor);
      if (cmp(i, input) > 0) input = i;
      if (cmp(u, units) > 0) units = u;
      if (cmp(o, out) > 0) out = o;
      if (cmp(perInput, inRate) > 0) inRate = perInput;
    }
    return { input, units, out, inRate, own, cap };
  };
  // The requested model, or one of its catalog fallback_models in its place.
  const entries = chainEntries(catalog, model, (req.fallbacks ?? []).map((f): FallbackAttempt => (typeof f === 'string' ? { model: f, maxTokens: null } : f)),
    oneStep, req.anthropicBeta);
  // The entry's speed: fast or standard as it says (null: standard); absent, the request's.
  const speedOf = (entry: FallbackAttempt) => (entry.speed === undefined ? c.speed : entry.speed === 'fast' ? 'fast' : 'standard');
  // Pricing applies the answer's one `usage.speed` to every step (the iterations carry none), so
  // a chain whose attempts ask for different speeds may be priced at either for all of them:
  // every attempt, and what they share, is held at both tables then.
  const mixed = entries.some(({ entry }) => speedOf(entry) !== c.speed);
  const at = (speed: string | null | undefined): Conditions => ({ ...c, speed: mixed ? undefined : speed });
  const attempts: Attempt[] = [attempt(servingAlternatives(catalog, model), at(c.speed), undefined, undefined)];
  // A name the catalog does not know is priced at the model that served the request, which may
  // be any of the request's: held at the dearest of them.
  const anyServing = new Set(servingAlternatives(catalog, model));
  for (const { hit } of entries) if (hit !== undefined) for (const m of servingAlternatives(catalog, hit.model)) anyServing.add(m);
  for (const { entry, hit, alternatives, limit } of entries) {
    const own = entry.maxTokens === null ? undefined : count(entry.maxTokens, 'fallback maxTokens');
    // a name reached only through a mapping rule may be another model upstream, whose reported
    // name pricing may read as any of the request's: held at the dearest of them and the rule's
    const models = hit === undefined ? anyServing : hit.exact ? alternatives! : new Set([...alternatives!, ...anyServing]);
    attempts.push(attempt(models, at(speedOf(entry)), own, limit === undefined ? undefined : BigInt(limit)));
  }
  if (req.defaultFallbacks === true) attempts.push(attempt(catalog.models, at(c.speed), undefined, undefined));

  const shared = sharedHold(catalog, model, req, at(c.speed), list, [...anyServing]);
  // A compaction (`compactions`, counted in `steps`) writes a summary of up to the max_tokens
  // sent (t), whichever attempt runs it, and the step after it re-reads that summary: t × (its
  // output + its dearest input rate) per compaction, also for an entry with its own max_tokens,
  // whose own bound holds for its sampling steps only.
  const compactions = BigInt(count(req.compactions ?? 0, 'compactions'));
  const loopSteps = steps - compactions > 0n ? steps - compactions : 1n;
  let base = ZERO;
  // What grows with t, per attempt: µc per token of t, up to its cap.
  const growing: Array<{ rate: Rational; cap: bigint | undefined }> = [];
  for (const a of attempts) {
    base = add(base, add(add(a.input, a.units), shared));
    const summary = mul(add(a.out, a.inRate), rat(compactions));
    if (a.own !== undefined) {
      base = add(base, mul(a.out, rat(loopSteps * (a.cap !== undefined && a.cap < a.own ? a.cap : a.own))));
      if (compactions > 0n) growing.push({ rate: summary, cap: undefined });
    } else {
      growing.push({ rate: add(mul(a.out, rat(loopSteps)), summary), cap: a.cap });
    }
  }
  // Between two caps the rate is the sum of the contributions not yet capped: dearest first, down
  // to the uncapped ones (the requested model among them) for every token past the last cap.
  let exact = base;
  for (const g of growing) exact = add(exact, mul(g.rate, rat(g.cap !== undefined && g.cap < maxTokens ? g.cap : maxTokens)));
  const caps = [...new Set(growing.flatMap((g) => g.cap === undefined ? [] : [g.cap]))].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  const rateFrom = (tokens: bigint) => growing.reduce((sum, g) => (g.cap === undefined || g.cap >= tokens ? sum + ceil(g.rate) : sum), 0n);
  const segments: HoldSegment[] = [];
  let prev = 0n;
  for (const cap of caps) {
    if (cap > prev) segments.push({ perOutputToken: rateFrom(cap), tokens: Number(cap - prev) });
    prev = cap;
  }
  segments.push({ perOutputToken: rateFrom(prev + 1n), tokens: null });
  return { amount: ceil(exact), base: ceil(base), segments };
}

/**
 * The most a request can cost before its usage is known (µc, rounded up once): every input
 * token at the dearest input-side class of every table and tier it could reach, `maxTokens` of
 * output likewise, each enabled server tool at its `max_uses` (or the catalog bound), with every
 * multiplier that matches or could match (unknown condition, factor > 1) and the account's list.
 * Served by the dearest of the model and its catalog `fallback_models`, and each of the
 * request's `fallbacks` entries as an attempt of its own (`holdTerms`). Plus each advisor tool: its `max_uses` (or `advisorHold.maxUses`) calls at the
 * advisor's model, each one step's input (`stepInputTokens`: the whole conversation so far) and
 * `advisorHold.outputTokens` out.
 * For usage within these bounds, `priceRequest(...).costMicros` ≤ this.
 * Throws RangeError on bad counts, HoldBoundError on a priced tool with no bound.
 */
export function holdBound(version: PriceVersion, model: CatalogModel, req: HoldRequest): bigint {
  return holdTerms(version, model, req).amount;
}

/** What every serving of the request adds to its hold, whichever model serves it: `extra` and the advisor calls. */
function sharedHold(catalog: Catalog, model: CatalogModel, req: HoldRequest, c: Conditions, list: PriceList | null,
  anyServing: readonly CatalogModel[] = servingAlternatives(catalog, model)): Rational {
  let sum = ZERO;
  for (const x of req.extra ?? []) sum = add(sum, modelHold(catalog, x.model, x.inputTokens, x.maxTokens, c, list));
  for (const a of req.advisors ?? []) {
    // An advisor the catalog does not know is priced at the model that served the request
    // (recorded as unpriced), which may be any of the request's: held at the dearest of them.
    const known = servedModelOf(catalog, a.model);
    const calls = count(a.maxUses ?? catalog.advisorHold.maxUses, 'advisor max_uses');
    let dearest: Rational | undefined;
    for (const candidate of known === undefined ? anyServing : servingAlternatives(catalog, known)) {
      const one = modelHold(catalog, candidate, stepRead(req), a.maxTokens ?? catalog.advisorHold.outputTokens, c, list);
      if (dearest === undefined || cmp(one, dearest) > 0) dearest = one;
    }
    sum = add(sum, mul(dearest!, rat(calls)));
  }
  return sum;
}

/**
 * The prompt one sampling step may read, tokens: one step's input (`stepInputTokens`, at most
 * `inputTokens`), and after a compaction (`compactions`) the summary too, up to `maxTokens`.
 */
function stepRead(req: HoldRequest): number {
  return Math.min(req.stepInputTokens ?? req.inputTokens, req.inputTokens) + ((req.compactions ?? 0) > 0 ? req.maxTokens : 0);
}

/** One `fallbacks` entry as the hold and the settlement read it (`chainEntries`). */
interface ChainEntry {
  entry: FallbackAttempt;
  /** the catalog model its name resolves to as a served name (`servingModel`), undefined when none */
  hit: { model: CatalogModel; exact: boolean } | undefined;
  /** the entry's model and its catalog `fallback_models` (what may serve the attempt); undefined for no model */
  alternatives: CatalogModel[] | undefined;
  /** the most it writes per call, where that can be counted (see `holdTerms`); undefined: its max_tokens */
  limit: number | undefined;
}

/**
 * A request's `fallbacks` entries with their models and output limits, the one reading of them
 * that `holdTerms` holds and `attemptModels` gives the settlement: an entry writes at most its
 * model's output limit per call (`maxOutputTokensFor`, raised by `anthropicBeta`) on a one-step
 * request (`oneStep`) when its name is its model's own (not a mapping rule's reach), that model
 * has no catalog `fallback_models`, and it is not the requested model (under a group's
 * `model_mapping` its catalog entry is not the model sent upstream).
 */
function chainEntries(catalog: Catalog, model: CatalogModel, fallbacks: readonly FallbackAttempt[], oneStep: boolean,
  anthropicBeta: string | readonly string[] | undefined): ChainEntry[] {
  return fallbacks.map((entry) => {
    const hit = entry.model === '' ? undefined : servingModel(catalog, entry.model, model);
    const alternatives = hit === undefined ? undefined : servingAlternatives(catalog, hit.model);
    const limit = oneStep && hit?.exact === true && hit.model !== model && hit.model.id !== model.id && alternatives!.length === 1
      ? maxOutputTokensFor(hit.model, anthropicBeta) : undefined;
    return { entry, hit, alternatives, limit };
  });
}

/**
 * Each attempt of a request's fallback chain as the settlement bounds it, in the order they run,
 * read as `holdTerms` holds them and `priceRequest` resolves a step's `model`: the requested
 * model's (`models`: it and its catalog `fallback_models`; `limit` null), then one per
 * `fallbacks` entry: its model (a served name's resolution) and that model's `fallback_models`,
 * or null where the name does not tell the model (no name, one the catalog does not know, or one
 * reached only through a mapping rule, which may be another model upstream); `limit`, the most
 * it writes per call where the hold counts one (`chainEntries`), else null. `steps` is the
 * request's sampling steps (`HoldRequest.steps`). Never throws.
 */
export function attemptModels(catalog: Catalog, model: CatalogModel, fallbacks: readonly FallbackAttempt[],
  opts: { steps: number; anthropicBeta?: string | readonly string[] | undefined }): Array<{ models: CatalogModel[] | null; limit: number | null }> {
  return [
    { models: servingAlternatives(catalog, model), limit: null },
    ...chainEntries(catalog, model, fallbacks, opts.steps <= 1, opts.anthropicBeta).map((e) => ({
      models: e.hit === undefined || !e.hit.exact ? null : e.alternatives!,
      limit: e.limit ?? null,
    })),
  ];
}

/** `model` and the catalog models it may fall back to (its `fallback_models`): what may serve one attempt at it. */
function servingAlternatives(catalog: Catalog, model: CatalogModel): CatalogModel[] {
  const out = [model];
  for (const m of catalog.models) if (model.fallbackModels.has(m.id) && m !== model) out.push(m);
  return out;
}

/** The hold of the server-tool units of the request served by `model` (each at its max_uses or the catalog bound). */
function unitsHold(catalog: Catalog, model: CatalogModel, req: HoldRequest, c: Conditions, list: PriceList | null): Rational {
  let total = ZERO;
  if (req.units === undefined) return total;
  let f: Rational | undefined;
  for (const k of UNIT_DIMENSIONS) {
    if (!Object.hasOwn(req.units, k)) continue;
    const price = model.rates.units[k];
    if (price === undefined) continue; // unpriced: recorded, charged nothing
    const given = req.units[k];
    const n = given ?? catalog.unitHoldBounds[k];
    if (n === undefined) {
      throw new HoldBoundError(`${k}: the request sets no max_uses and the catalog has no unit_hold_bounds.${k}`);
    }
    f ??= holdFactors(catalog, model, c, list).unit;
    total = add(total, mul(rat(count(n, k) * price), f));
  }
  return total;
}
