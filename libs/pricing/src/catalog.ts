// The model catalog: which model ids a gateway sells, what they are called upstream, and what
// each token class costs. The file is operator-written JSON; it is validated in full (every
// problem reported with its path) and converted once into integer micro-credits per million
// tokens, so nothing downstream ever sees a decimal string or a currency.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { MAX_CATALOG_BYTES, MAX_DECIMAL_CHARS, MAX_NAMES, MAX_TEXT_CHARS, ownRecord, textProblem } from '@tollgate/events';
import { MICROS_PER_CREDIT, MoneyError, parseExactDecimal } from './money.ts';
import type { ExactDecimal } from './money.ts';
import { buildIndex, indexCatalog } from './resolve.ts';
import { DIMENSIONS, TOKEN_CLASSES, UNIT_DIMENSIONS } from './dimensions.ts';
import type { TokenClass, UnitDimension } from './dimensions.ts';

/** Integer micro-credits per million tokens, per token class. */
export interface Prices {
  readonly input: bigint;
  readonly output: bigint;
  readonly cacheRead: bigint;
  readonly cacheWrite5m: bigint;
  readonly cacheWrite1h: bigint;
}

export type PriceClass = keyof Prices;

export interface CatalogModel {
  readonly id: string;
  readonly aliases: readonly string[];
  /** the model name sent to the upstream */
  readonly upstreamModel: string;
  readonly displayName: string;
  /** when set, a `<name>/<provider>` request matches this model only for this provider */
  readonly provider: string | undefined;
  /** `<id>-thinking` and `<alias>-thinking` also resolve here, with extended thinking on */
  readonly thinkingVariant: boolean;
  /** RFC 3339, for GET /v1/models */
  readonly createdAt: string;
  readonly prices: Prices;
  /** tokens the model reads in one sampling step without any beta (input + output) */
  readonly contextWindow: number;
  /**
   * Betas that widen the context window, by `anthropic-beta` value, e.g.
   * `context-1m-2025-08-07` → 1,000,000. See `contextWindowFor`.
   */
  readonly contextWindowBetas: Readonly<Record<string, number>>;
  /**
   * The most output tokens one sampling step may be asked for (`max_tokens`), as the upstream
   * enforces it (Anthropic "Models overview": 64,000 for the 4.5 family, 128,000 for 4.6 and
   * later); undefined = not given, no limit is checked. A request above it is a 400 at the edge,
   * before any limit or hold, and a defaulted `max_tokens` never exceeds it. See `maxOutputTokensFor`.
   */
  readonly maxOutputTokens: number | undefined;
  /** Betas that raise `maxOutputTokens`, by `anthropic-beta` value (e.g. `output-128k-2025-02-19` → 128,000). */
  readonly maxOutputTokensBetas: Readonly<Record<string, number>>;
  /** the most input tokens one image can cost on this model, after the upstream's resizing */
  readonly imageTokenCap: number;
  /** how the `-thinking` variant turns extended thinking on; see ThinkingCapability */
  readonly thinking: ThinkingCapability;
  /** selling prices in µc: token classes per MTok (same values as `prices`), tiers, fast mode, units per unit */
  readonly rates: RateCard;
  /** the upstream's list prices in µ of `Catalog.upstreamCurrency`; undefined = not given (cost unknown) */
  readonly upstreamRates: RateCard | undefined;
  /**
   * Catalog ids of the models the upstream may serve this one with (`fallback_models`): the
   * response then names that model and is priced at it, so the hold covers the dearest of them.
   */
  readonly fallbackModels: ReadonlySet<string>;
}

/**
 * How a model accepts extended thinking (Anthropic docs, "Extended thinking" / "Adaptive
 * thinking"):
 * - `budget`: `thinking: {type: "enabled", budget_tokens}` with `minBudgetTokens` (1,024) ≤
 *   budget_tokens < max_tokens. Every Claude 4 model up to 4.5 accepts only this form.
 * - `adaptive`: `thinking: {type: "adaptive"}` (4.6 and later; the model sizes its own thinking).
 */
export interface ThinkingCapability {
  readonly mode: 'adaptive' | 'budget';
  /** smallest `budget_tokens` the upstream accepts (budget mode) */
  readonly minBudgetTokens: number;
}

/** Integer micro-units per million tokens, per token class (µc for selling prices, µ of the upstream currency for list prices). */
export type TokenRates = Readonly<Record<TokenClass, bigint>>;

/** Integer micro-units per one unit (a search, a fetch, a second). A dimension absent here is unpriced. */
export type UnitRates = Readonly<Partial<Record<UnitDimension, bigint>>>;

/**
 * A prompt-size tier: when the request's input-side tokens (input + cache reads + cache writes)
 * exceed `aboveInputTokens`, EVERY token of the request is priced at `tokens` (Anthropic "Pricing",
 * long context: over 200K input tokens on sonnet-4 / sonnet-4-5, input-side ×2, output ×1.5).
 */
export interface PriceTier {
  readonly name: string;
  /** tokens; the tier applies strictly above this many input-side tokens */
  readonly aboveInputTokens: number;
  readonly tokens: TokenRates;
}

/** Token prices and their tiers (ascending `aboveInputTokens`; the highest one exceeded wins). */
export interface RateTable {
  readonly tokens: TokenRates;
  readonly tiers: readonly PriceTier[];
}

/**
 * Every price of one model in one unit: the standard table, the fast-mode table (`speed: "fast"`,
 * its own per-model prices; undefined = no fast mode priced), and per-unit prices.
 */
export interface RateCard {
  readonly standard: RateTable;
  readonly fast: RateTable | undefined;
  readonly units: UnitRates;
}

/** Which request/response field a multiplier or condition reads. */
export type ConditionField = 'service_tier' | 'inference_geo' | 'speed';

/** An exact positive fraction read from a decimal string ("1.1" → 11/10). */
export interface Factor {
  readonly text: string;
  readonly num: bigint;
  readonly den: bigint;
}

/**
 * A stacking multiplier: applies when every `when` field of the request equals its value, to
 * the dimensions of `appliesTo`, on `models` (catalog ids; null = every model). Applied to the
 * selling price AND the upstream cost (they mirror the upstream's own rules: batch 0.5, US-only
 * inference 1.1; Anthropic "Pricing").
 */
export interface Multiplier {
  readonly name: string;
  readonly factor: Factor;
  readonly when: Readonly<Partial<Record<ConditionField, string>>>;
  readonly appliesTo: 'tokens' | 'units' | 'all';
  readonly models: ReadonlySet<string> | null;
}

/** A customer group's price list: `factor` on every dimension of `models` (catalog ids; null = all). Selling price only. */
export interface PriceList {
  readonly name: string;
  readonly factor: Factor;
  readonly models: ReadonlySet<string> | null;
  readonly description: string | undefined;
}

/** What to do with a request whose usage has a dimension the catalog does not price. */
export type UnpricedPolicy = 'record' | 'refuse';

/**
 * The advisor-tool hold when the catalog does not say: 10 calls (the server-tool loop bound the
 * gateway holds for) of 4,096 output tokens each (Anthropic documents 1,400–1,800 typical).
 */
export const DEFAULT_ADVISOR_HOLD = Object.freeze({ maxUses: 10, outputTokens: 4096 });

/** A model's context window without betas, when the catalog does not say (Claude 4: 200K). */
export const DEFAULT_CONTEXT_WINDOW = 200_000;

/**
 * Tokens one image can cost at most when the catalog does not say. Anthropic resizes an image
 * whose long edge exceeds 1,568 px or that would cost more than about 1,600 tokens; the largest
 * unresized sizes it documents (e.g. 1092×1092, 784×1568) come to at most 1,568 28-px patches.
 */
export const DEFAULT_IMAGE_TOKEN_CAP = 1_600;

/** Extended thinking when the catalog does not say: the budget form every Claude 4 model accepts. */
export const DEFAULT_THINKING: ThinkingCapability = Object.freeze({ mode: 'budget', minBudgetTokens: 1024 });

export interface MappingRule {
  /** glob over the requested model name; `*` matches any run of characters */
  readonly match: string;
  /** a catalog id (or alias, or `-thinking` name) the match resolves to */
  readonly target: string;
}

export interface CatalogMapping {
  readonly enabled: boolean;
  readonly rules: readonly MappingRule[];
}

/** What one credit is worth, as written in the file (exactly one of the two rates is set). */
export type CreditRate =
  | { readonly kind: 'credits_per_unit'; readonly value: string }
  | { readonly kind: 'unit_per_credit'; readonly value: string };

export interface CatalogCredit {
  /** ISO 4217 code, e.g. "CNY" */
  readonly currency: string;
  readonly rate: CreditRate;
  /** for people: "¥1 = 10 credits", "1 credit = $0.005" */
  readonly description: string;
}

export type PriceUnit = 'currency' | 'credits';

export interface Catalog {
  readonly name: string;
  /** where it was loaded from (a path, or what the caller passed) */
  readonly source: string;
  readonly version: 1;
  readonly credit: CatalogCredit;
  /** the unit the file's prices were written in; `Prices` are always micro-credits */
  readonly priceUnit: PriceUnit;
  readonly notes: string | undefined;
  readonly models: readonly CatalogModel[];
  readonly mapping: CatalogMapping;
  /** in file order */
  readonly multipliers: readonly Multiplier[];
  /** by name; the default list (the catalog itself) is not in here */
  readonly priceLists: Readonly<Record<string, PriceList>>;
  /** `record` (default): charge what is priced, record the rest; `refuse`: the gateway refuses such requests */
  readonly unpriced: UnpricedPolicy;
  /** ISO 4217 code of `upstreamRates`, e.g. "USD"; undefined when no model gives upstream prices */
  readonly upstreamCurrency: string | undefined;
  /**
   * `upstream_exchange_rate`: units of the credit currency per unit of `upstreamCurrency`
   * (decimal text, e.g. "7.10" CNY per USD), for margins in analytics; absent: not given
   */
  readonly upstreamExchangeRate?: string;
  /** units the hold assumes when a request enables a server tool without a `max_uses` (e.g. web search) */
  readonly unitHoldBounds: Readonly<Partial<Record<UnitDimension, number>>>;
  /**
   * What the hold assumes for an advisor tool (`advisor_*` in `tools`, a sub-inference at the
   * tool's `model` reading the whole conversation): `maxUses` calls when the tool sets no
   * `max_uses`, each at most `outputTokens` of output (Anthropic documents 1,400–1,800 tokens
   * typical including thinking, no hard limit). Defaults 10 and 4,096.
   */
  readonly advisorHold: Readonly<{ maxUses: number; outputTokens: number }>;
  /** the validated file document with defaults applied (plain JSON): what a price version stores */
  readonly document: unknown;
  /** short content hash of `document` (12 hex digits of SHA-256 over canonical JSON) */
  readonly contentId: string;
}

/** Returned by GET /v1/models when a file gives no `created_at` for a model. */
export const DEFAULT_CREATED_AT = '2025-01-01T00:00:00Z';

/** An invalid catalog. `problems` lists every violation as `path: message`. */
export class CatalogError extends Error {
  override readonly name = 'CatalogError';
  readonly source: string;
  /** One line per problem, each starting with the path in the file (`models[3].prices.input: …`). */
  readonly problems: readonly string[];

  /**
   * @param modelIds the `id` of each entry of the file's `models` (undefined where it has none):
   *   the message names a model by its id as well as its index (`models[3] "claude-x".prices…`),
   *   which is how an operator finds it in a file of dozens; `problems` keep the bare path.
   */
  constructor(source: string, problems: readonly string[], modelIds: readonly (string | undefined)[] = []) {
    // Only the path a problem starts with: `models[N]` elsewhere in the line may be the file's
    // own text (a quoted name, a record key), which must not be rewritten.
    const named = (p: string) => p.replace(/^models\[(\d+)\]/, (at, i: string) => {
      const id = modelIds[Number(i)];
      return id === undefined ? at : `${at} ${quotedId(id)}`;
    });
    super(`invalid pricing catalog ${source}:\n${problems.map((p) => `  - ${named(p)}`).join('\n')}`);
    this.source = source;
    this.problems = problems;
  }
}

/**
 * A model id from the file as a bounded, inert quote for a message: JSON string syntax, at most
 * 80 code points (then `…`), and every control, format or line/paragraph separator character
 * (C0, C1, bidi overrides, zero-width marks: Unicode categories Cc, Cf, Zl, Zp) as a `\uXXXX`
 * escape, so a terminal or log viewer shows it as text.
 */
function quotedId(id: string): string {
  const points = [...id.toWellFormed()];
  const cut = points.length > 80 ? `${points.slice(0, 80).join('')}…` : id.toWellFormed();
  return JSON.stringify(cut).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (c) => {
    const cp = c.codePointAt(0)!;
    return cp > 0xffff ? `\\u{${cp.toString(16)}}` : `\\u${cp.toString(16).padStart(4, '0')}`;
  });
}

/** The `id` of each entry of a catalog document's `models` that has a string one (for CatalogError). */
function rawModelIds(json: unknown): (string | undefined)[] {
  const models = typeof json === 'object' && json !== null ? (json as { models?: unknown }).models : undefined;
  if (!Array.isArray(models)) return [];
  return models.map((m: unknown) => {
    const id = typeof m === 'object' && m !== null ? (m as { id?: unknown }).id : undefined;
    return typeof id === 'string' && id !== '' ? id : undefined;
  });
}

// ---------------------------------------------------------------------------------------------
// File format

const DECIMAL_RE = /^-?\d+(\.\d+)?$/;

/** A decimal written as a JSON string: JSON numbers become doubles and lose exactness. */
function decimalString(opts: { positive: boolean }) {
  return z
    .string({ error: (iss) => (iss.input === undefined ? 'required' : 'expected a decimal string') })
    .regex(DECIMAL_RE, 'expected a decimal string')
    .refine((s) => !s.startsWith('-'), 'must not be negative')
    .refine((s) => !opts.positive || /[1-9]/.test(s), 'must be greater than zero');
}

/**
 * A catalog model id, alias or upstream model id: each lands in usage events (`model`,
 * `catalog_model`, `upstream_model`), so it is held to the event decoder's own text rule
 * (`textProblem`: well-formed, no control characters; libs/events) as well as to 200
 * characters, which leaves room within the decoder's MAX_TEXT_CHARS for `-thinking` and a
 * `/provider` suffix.
 */
const modelName = z
  .string({ error: (iss) => (iss.input === undefined ? 'required' : 'expected a string') })
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  .regex(/^\S+$/, 'must not contain whitespace')
  .superRefine((v, ctx) => {
    const problem = textProblem(v, MAX_TEXT_CHARS);
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem} (it is stored in usage events)` });
    // A model name goes on the wire (the upstream model, the id when there is none) and comes
    // back as the served model, which metering reads only as printable ASCII (@tollgate/anthropic
    // `wireLabel`): another name made every answer a usage anomaly (a tester's case).
    else if (!/^[\x00-\x7f]*$/.test(v)) ctx.addIssue({ code: 'custom', message: 'must be printable ASCII (a model name travels to the upstream and back)' });
  });

const priceSchema = decimalString({ positive: false });

/** A positive whole number of tokens (context windows, caps): JSON integers are exact up to 2^53. */
const tokenCount = z
  .number({ error: (iss) => (iss.input === undefined ? 'required' : 'expected a whole number of tokens') })
  .int('expected a whole number of tokens')
  .positive('must be greater than zero')
  .max(100_000_000, 'must be at most 100,000,000');

/** Token classes (required, per million tokens) and units (optional, per unit), keyed by DIMENSIONS. */
const pricesSchema = z.strictObject(
  Object.fromEntries(DIMENSIONS.map((d) => [d.key, d.kind === 'token' ? priceSchema : priceSchema.optional()])) as
    Record<TokenClass, typeof priceSchema> & Record<UnitDimension, z.ZodOptional<typeof priceSchema>>,
);

/** Token classes only (tiers and fast mode re-price tokens; units always come from `prices`). */
const tokenPricesSchema = z.strictObject(
  Object.fromEntries(TOKEN_CLASSES.map((k) => [k, priceSchema])) as Record<TokenClass, typeof priceSchema>,
);

const tierName = z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'expected a short lowercase name like "long_context"');

const tiersSchema = z
  .array(
    z.strictObject({
      name: tierName,
      above_input_tokens: tokenCount,
      prices: tokenPricesSchema,
    }),
  )
  .superRefine((tiers, ctx) => {
    for (let i = 1; i < tiers.length; i++) {
      const prev = tiers[i - 1];
      const cur = tiers[i];
      if (prev !== undefined && cur !== undefined && cur.above_input_tokens <= prev.above_input_tokens) {
        ctx.addIssue({ code: 'custom', path: [i, 'above_input_tokens'], message: `must be greater than the previous tier's (${prev.above_input_tokens}): list tiers in ascending order` });
      }
    }
    const seen = new Set<string>();
    tiers.forEach((t, i) => {
      if (seen.has(t.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate tier name "${t.name}"` });
      seen.add(t.name);
    });
  });

const fastSchema = z.strictObject({ prices: tokenPricesSchema, tiers: tiersSchema.optional() });

const upstreamPricesSchema = z.strictObject({
  prices: pricesSchema,
  tiers: tiersSchema.optional(),
  fast: fastSchema.optional(),
});

/** A positive decimal factor like "0.5" or "1.1", at most 6 decimal places. */
const factorSchema = decimalString({ positive: true }).refine((s) => !/\.\d{7,}$/.test(s), 'at most 6 decimal places');

const groupName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,39}$/, 'expected a short lowercase name like "vip" or "us_geo"');

const multiplierSchema = z.strictObject({
  factor: factorSchema,
  when: z
    .strictObject({
      service_tier: z.string().min(1).optional(),
      inference_geo: z.string().min(1).optional(),
      speed: z.string().min(1).optional(),
    })
    .refine((w) => Object.keys(w).length > 0, 'name at least one of "service_tier", "inference_geo", "speed"'),
  applies_to: z.enum(['tokens', 'units', 'all'], 'expected "tokens", "units" or "all"').default('tokens'),
  models: z.array(modelName).min(1, 'omit "models" to apply to every model').optional(),
  notes: z.string().optional(),
});

const priceListSchema = z.strictObject({
  multiplier: factorSchema,
  models: z.array(modelName).min(1, 'omit "models" to apply to every model').optional(),
  description: z.string().optional(),
});

/** A whole number of units (searches, seconds) the hold assumes. */
const unitCount = z
  .number({ error: 'expected a whole number' })
  .int('expected a whole number')
  // A bound of 0 would send `max_uses: 0` upstream and hold nothing for a tool the request declared.
  .min(1, 'must be at least 1')
  .max(1_000_000, 'must be at most 1,000,000');

/** A token limit per `anthropic-beta` name that raises it (`context_window_betas`, `max_output_tokens_betas`). */
const betaLimits = ownRecord(z.string().regex(/^[A-Za-z0-9._-]+$/, 'expected an anthropic-beta name like "context-1m-2025-08-07"'), tokenCount);

const modelSchema = z.strictObject({
  id: modelName,
  aliases: z.array(modelName).default([]),
  upstream_model: modelName.optional(),
  display_name: z.string().min(1, 'must not be empty').optional(),
  provider: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'expected a provider name like "anthropic" (no "/")')
    .optional(),
  thinking_variant: z.boolean().default(false),
  fallback_models: z.array(modelName).optional(),
  created_at: z.iso.datetime({ offset: true, error: 'expected an RFC 3339 timestamp like "2025-05-14T00:00:00Z"' }).optional(),
  notes: z.string().optional(),
  prices: pricesSchema,
  tiers: tiersSchema.optional(),
  fast: fastSchema.optional(),
  upstream_prices: upstreamPricesSchema.optional(),
  context_window: tokenCount.optional(),
  context_window_betas: betaLimits.optional(),
  max_output_tokens: tokenCount.optional(),
  max_output_tokens_betas: betaLimits.optional(),
  image_token_cap: tokenCount.optional(),
  thinking: z
    .strictObject({
      mode: z.enum(['adaptive', 'budget'], 'expected "adaptive" or "budget"'),
      min_budget_tokens: tokenCount.optional(),
    })
    .optional(),
});

const creditSchema = z
  .strictObject({
    currency: z.string().regex(/^[A-Z]{3}$/, 'expected an ISO 4217 currency code like "CNY" or "USD"'),
    credits_per_unit: decimalString({ positive: true }).optional(),
    unit_per_credit: decimalString({ positive: true }).optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.credits_per_unit === undefined) === (c.unit_per_credit === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'set exactly one of "credits_per_unit" (e.g. "10": 1 unit = 10 credits) or "unit_per_credit" (e.g. "0.005": 1 credit = 0.005 units)',
      });
    }
  });

const mappingSchema = z.strictObject({
  enabled: z.boolean(),
  rules: z
    .array(
      z.strictObject({
        match: z.string().min(1, 'must not be empty').regex(/^\S+$/, 'must not contain whitespace'),
        target: modelName,
      }),
    )
    .default([]),
});

const catalogSchema = z.strictObject({
  $schema: z.string().optional(),
  version: z.literal(1, 'expected 1 (the only catalog format version)'),
  name: z.string().min(1, 'must not be empty'),
  notes: z.string().optional(),
  credit: creditSchema,
  price_unit: z.enum(['currency', 'credits'], 'expected "currency" or "credits"'),
  models: z.array(modelSchema).min(1, 'a catalog needs at least one model'),
  mapping: mappingSchema.default({ enabled: false, rules: [] }),
  upstream_currency: z.string().regex(/^[A-Z]{3}$/, 'expected an ISO 4217 currency code like "USD"').optional(),
  upstream_exchange_rate: decimalString({ positive: true }).optional(),
  multipliers: ownRecord(groupName, multiplierSchema).default({}),
  price_lists: ownRecord(groupName, priceListSchema)
    .refine((r) => !Object.hasOwn(r, 'default'), '"default" is the catalog itself and cannot be redefined')
    .default({}),
  unpriced: z.enum(['record', 'refuse'], 'expected "record" or "refuse"').default('record'),
  unit_hold_bounds: z
    .strictObject(Object.fromEntries(UNIT_DIMENSIONS.map((k) => [k, unitCount.optional()])) as Record<UnitDimension, z.ZodOptional<typeof unitCount>>)
    .default({}),
  // Optional without schema defaults: a default would enter the canonical document and change
  // the content id (the price version) of every catalog stored before this field existed.
  advisor_hold: z.strictObject({ max_uses: unitCount.optional(), output_tokens: tokenCount.optional() }).optional(),
});

type CatalogFile = z.infer<typeof catalogSchema>;

/** `models[3].prices.input` */
/**
 * The price lists accounts are assigned (`assigned`: each account's `price_list`; null, absent
 * and "default" are the catalog itself) that `catalog` does not define, with how many accounts
 * hold each, sorted by name. Empty when the catalog covers every assignment. A reload that would
 * leave any is refused: those accounts would silently pay full price.
 */
export function missingPriceLists(catalog: Catalog, assigned: Iterable<string | null | undefined>): Array<{ list: string; accounts: number }> {
  const counts = new Map<string, number>();
  for (const list of assigned) {
    if (list == null || list === 'default' || Object.hasOwn(catalog.priceLists, list)) continue;
    counts.set(list, (counts.get(list) ?? 0) + 1);
  }
  return [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([list, accounts]) => ({ list, accounts }));
}

export function formatIssuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? '(root)' : out;
}

/**
 * The context window that applies to one request: the model's own, or a wider one when the
 * request's `anthropic-beta` header (comma-separated, possibly repeated) names one of the
 * model's `contextWindowBetas`. Never smaller than `contextWindow`.
 */
export function contextWindowFor(model: CatalogModel, anthropicBeta: string | readonly string[] | undefined): number {
  return raisedByBeta(model.contextWindow, model.contextWindowBetas, anthropicBeta);
}

/**
 * The most `max_tokens` one request to `model` may ask for (tokens): the model's
 * `maxOutputTokens`, or a higher one when the request's `anthropic-beta` header names one of its
 * `maxOutputTokensBetas`; undefined when the catalog gives no limit for the model.
 */
export function maxOutputTokensFor(model: CatalogModel, anthropicBeta: string | readonly string[] | undefined): number | undefined {
  return model.maxOutputTokens === undefined ? undefined : raisedByBeta(model.maxOutputTokens, model.maxOutputTokensBetas, anthropicBeta);
}

/** `base`, or the highest of `byBeta`'s values whose beta the header names (only the record's own keys). */
function raisedByBeta(base: number, byBeta: Readonly<Record<string, number>>, anthropicBeta: string | readonly string[] | undefined): number {
  let limit = base;
  if (anthropicBeta === undefined) return limit;
  const values = typeof anthropicBeta === 'string' ? [anthropicBeta] : anthropicBeta;
  for (const value of values) {
    for (const name of value.split(',')) {
      const raised = Object.hasOwn(byBeta, name.trim()) ? byBeta[name.trim()] : undefined;
      if (raised !== undefined && raised > limit) limit = raised;
    }
  }
  return limit;
}

// ---------------------------------------------------------------------------------------------
// Loading

/** The reference catalogs shipped in `libs/pricing/catalogs/`. */
export type BundledCatalog = 'cny' | 'usd';

/** Absolute path of a shipped catalog, e.g. the default when no PRICING_FILE is configured. */
export function bundledCatalogPath(name: BundledCatalog): string {
  return fileURLToPath(new URL(`../catalogs/${name}.json`, import.meta.url));
}

/** Reads, validates and converts a catalog file. Throws CatalogError listing every problem. */
export function loadCatalogFile(path: string): Catalog {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CatalogError(path, [`(file): cannot read: ${(err as Error).message}`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CatalogError(path, [`(file): not valid JSON: ${(err as Error).message}`]);
  }
  return parseCatalog(json, path);
}

/** Validates and converts an already-parsed catalog document. Throws CatalogError. */
export function parseCatalog(json: unknown, source = '(inline)'): Catalog {
  const parsed = catalogSchema.safeParse(json, {
    // schema-level messages win; this only rewords zod's default for a missing key
    error: (iss) => (iss.code === 'invalid_type' && iss.input === undefined ? 'required' : undefined),
  });
  if (!parsed.success) {
    throw new CatalogError(
      source,
      // a bad record key (a multiplier or price-list name) carries its reason one level down
      parsed.error.issues.map((i) => `${formatIssuePath(i.path)}: ${i.code === 'invalid_key' && i.issues[0] !== undefined ? `invalid name: ${i.issues[0].message}` : i.message}`),
      rawModelIds(json),
    );
  }
  const file = parsed.data;
  const problems: string[] = [];

  const creditsPerUnit = creditsPerCurrencyUnit(file.credit);
  const models = file.models.map((m, i) => toModel(m, i, file.price_unit, creditsPerUnit, problems));
  if (file.upstream_currency === undefined) {
    file.models.forEach((m, i) => {
      if (m.upstream_prices !== undefined) {
        problems.push(`models[${i}].upstream_prices: needs "upstream_currency" at the top level (e.g. "USD")`);
      }
    });
  }
  const mapping: CatalogMapping = Object.freeze({
    enabled: file.mapping.enabled,
    rules: Object.freeze(file.mapping.rules.map((r) => Object.freeze({ match: r.match, target: r.target }))),
  });

  // Multipliers and price lists name models; the names resolve once the index exists, so the
  // sets are filled in below (before anything is frozen or returned).
  const multiplierModels = new Map<string, Set<string>>();
  const multipliers: Multiplier[] = Object.entries(file.multipliers).map(([name, m]) => {
    const models = m.models === undefined ? null : new Set<string>();
    if (models !== null) multiplierModels.set(`multipliers.${name}`, models);
    return Object.freeze({
      name,
      factor: toFactor(m.factor),
      when: Object.freeze({ ...m.when }),
      appliesTo: m.applies_to,
      models,
    });
  });
  const priceLists: Record<string, PriceList> = {};
  for (const [name, l] of Object.entries(file.price_lists)) {
    const models = l.models === undefined ? null : new Set<string>();
    if (models !== null) multiplierModels.set(`price_lists.${name}`, models);
    priceLists[name] = Object.freeze({ name, factor: toFactor(l.multiplier), models, description: l.description });
  }

  const document = canonical(file);
  // Measured on what each price version event carries (`document`), defaults included.
  const bytes = Buffer.byteLength(document, 'utf8');
  if (bytes > MAX_CATALOG_BYTES) {
    throw new CatalogError(source, [`(file): ${bytes} bytes as compact JSON; a catalog is at most ${MAX_CATALOG_BYTES} (it travels whole in each price version event)`]);
  }
  const catalog: Catalog = Object.freeze({
    name: file.name,
    source,
    version: 1,
    credit: toCredit(file.credit),
    priceUnit: file.price_unit,
    notes: file.notes,
    models: Object.freeze(models),
    mapping,
    multipliers: Object.freeze(multipliers),
    priceLists: Object.freeze(priceLists),
    unpriced: file.unpriced,
    upstreamCurrency: file.upstream_currency,
    ...(file.upstream_exchange_rate !== undefined ? { upstreamExchangeRate: file.upstream_exchange_rate } : {}),
    unitHoldBounds: Object.freeze({ ...file.unit_hold_bounds }),
    advisorHold: Object.freeze({ maxUses: file.advisor_hold?.max_uses ?? DEFAULT_ADVISOR_HOLD.maxUses, outputTokens: file.advisor_hold?.output_tokens ?? DEFAULT_ADVISOR_HOLD.outputTokens }),
    document: deepFreeze(JSON.parse(document) as unknown),
    contentId: createHash('sha256').update(document).digest('hex').slice(0, 12),
  });

  // Names must be unique across ids, aliases and their generated `-thinking` forms, and every
  // mapping target must resolve; buildIndex checks both and reports with paths.
  const index = buildIndex(catalog, problems);
  const groups: Array<[string, readonly string[] | undefined]> = [
    ...Object.entries(file.multipliers).map(([n, m]) => [`multipliers.${n}`, m.models] as [string, readonly string[] | undefined]),
    ...Object.entries(file.price_lists).map(([n, l]) => [`price_lists.${n}`, l.models] as [string, readonly string[] | undefined]),
  ];
  for (const [path, names] of groups) {
    const set = multiplierModels.get(path);
    if (names === undefined || set === undefined) continue;
    names.forEach((name, i) => {
      const hit = index.exact.get(name);
      if (hit === undefined) problems.push(`${path}.models[${i}]: no model "${name}" in this catalog (use an id or alias)`);
      else set.add(hit.model.id);
    });
  }
  file.models.forEach((m, i) => {
    const set = models[i]!.fallbackModels as Set<string>;
    (m.fallback_models ?? []).forEach((name, j) => {
      const hit = index.exact.get(name);
      if (hit === undefined) problems.push(`models[${i}].fallback_models[${j}]: no model "${name}" in this catalog (use an id or alias)`);
      else if (hit.model.id !== m.id) set.add(hit.model.id);
    });
  });
  eventBoundProblems(catalog, problems);
  if (problems.length > 0) throw new CatalogError(source, problems, rawModelIds(json));
  indexCatalog(catalog, index);
  return catalog;
}

/**
 * What a usage event cannot carry, so a request priced with this catalog would be served and
 * its event refused by every consumer (never charged; a tester's case): more multipliers than
 * an event names (MAX_NAMES of @tollgate/events), or a unit price whose decimal text could pass
 * MAX_DECIMAL_CHARS. The second is a bound, not a search over which multipliers can meet: each
 * rate × every multiplier that applies to the model (factors above 1 only) × the largest price
 * list factor gives the integer digits, and the factors' decimal places add up. Pushes one
 * problem per model and table at most.
 */
function eventBoundProblems(catalog: Catalog, problems: string[]): void {
  if (catalog.multipliers.length > MAX_NAMES) {
    problems.push(`multipliers: ${catalog.multipliers.length} of them; a usage event names at most ${MAX_NAMES}`);
  }
  const scale = (f: Factor) => f.den.toString().length - 1;
  catalog.models.forEach((model, i) => {
    let num = 1n;
    let den = 1n;
    let places = 0;
    for (const m of catalog.multipliers) {
      if (m.models !== null && !m.models.has(model.id)) continue;
      if (m.factor.num > m.factor.den) { num *= m.factor.num; den *= m.factor.den; }
      places += scale(m.factor);
    }
    let listNum = 1n;
    let listDen = 1n;
    let listPlaces = 0;
    for (const l of Object.values(catalog.priceLists)) {
      if (l.models !== null && !l.models.has(model.id)) continue;
      if (l.factor.num * listDen > listNum * l.factor.den) { listNum = l.factor.num; listDen = l.factor.den; }
      listPlaces = Math.max(listPlaces, scale(l.factor));
    }
    const decimals = places + listPlaces;
    const tables: Array<[string, bigint[]]> = [['prices', Object.values(model.rates.standard.tokens)]];
    model.rates.standard.tiers.forEach((t, j) => tables.push([`tiers[${j}]`, Object.values(t.tokens)]));
    if (model.rates.fast !== undefined) {
      tables.push(['fast.prices', Object.values(model.rates.fast.tokens)]);
      model.rates.fast.tiers.forEach((t, j) => tables.push([`fast.tiers[${j}]`, Object.values(t.tokens)]));
    }
    tables.push(['prices (units)', Object.values(model.rates.units).filter((v): v is bigint => v !== undefined)]);
    for (const [table, rates] of tables) {
      const worst = rates.reduce((a, r) => (r > a ? r : a), 0n);
      const chars = ((worst * num * listNum) / (den * listDen)).toString().length + (decimals > 0 ? decimals + 1 : 0);
      if (chars > MAX_DECIMAL_CHARS) {
        problems.push(`models[${i}].${table}: with every multiplier that can apply, a unit price could take ${chars} characters (${worst} µc per MTok or unit, ${decimals} decimal places of factors); a usage event carries at most ${MAX_DECIMAL_CHARS}`);
      }
    }
  });
}

/** JSON with object keys sorted at every level: the same document always hashes the same. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) sorted[k] = (value as Record<string, unknown>)[k];
    return sorted;
  });
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object') {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/** A validated decimal string ("0.5", "1.1") as an exact fraction. */
export function toFactor(text: string): Factor {
  const d = parseExactDecimal(text);
  return Object.freeze({ text, num: d.units, den: pow10(d.scale) });
}

/** Credits per one unit of the currency, as an exact fraction. */
interface Ratio {
  readonly num: bigint;
  readonly den: bigint;
}

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

function creditsPerCurrencyUnit(credit: CatalogFile['credit']): Ratio {
  if (credit.credits_per_unit !== undefined) {
    const d = parseExactDecimal(credit.credits_per_unit);
    return { num: d.units, den: pow10(d.scale) };
  }
  // The schema guarantees exactly one rate is set and that it is > 0.
  const d = parseExactDecimal(credit.unit_per_credit ?? '1');
  return { num: pow10(d.scale), den: d.units };
}

const CURRENCY_SYMBOLS: Readonly<Record<string, string>> = {
  CNY: '¥',
  USD: '$',
  EUR: '€',
  GBP: '£',
  JPY: '¥',
  HKD: 'HK$',
};

function money(currency: string, amount: string): string {
  const symbol = CURRENCY_SYMBOLS[currency];
  return symbol === undefined ? `${amount} ${currency}` : `${symbol}${amount}`;
}

function toCredit(credit: CatalogFile['credit']): CatalogCredit {
  if (credit.credits_per_unit !== undefined) {
    const value = credit.credits_per_unit;
    return Object.freeze({
      currency: credit.currency,
      rate: Object.freeze({ kind: 'credits_per_unit' as const, value }),
      description: `${money(credit.currency, '1')} = ${value} credit${value === '1' ? '' : 's'}`,
    });
  }
  const value = credit.unit_per_credit ?? '';
  return Object.freeze({
    currency: credit.currency,
    rate: Object.freeze({ kind: 'unit_per_credit' as const, value }),
    description: `1 credit = ${money(credit.currency, value)}`,
  });
}

const PRICE_FIELDS = [
  ['input', 'input'],
  ['output', 'output'],
  ['cacheRead', 'cache_read'],
  ['cacheWrite5m', 'cache_write_5m'],
  ['cacheWrite1h', 'cache_write_1h'],
] as const satisfies ReadonlyArray<readonly [PriceClass, keyof CatalogFile['models'][number]['prices']]>;

function toModel(
  m: CatalogFile['models'][number],
  i: number,
  priceUnit: PriceUnit,
  creditsPerUnit: Ratio,
  problems: string[],
): CatalogModel {
  const prices: Record<PriceClass, bigint> = {
    input: 0n,
    output: 0n,
    cacheRead: 0n,
    cacheWrite5m: 0n,
    cacheWrite1h: 0n,
  };
  for (const [key, field] of PRICE_FIELDS) {
    const text = m.prices[field];
    const micros = priceToMicros(text, priceUnit, creditsPerUnit);
    if (micros === undefined) {
      const unit = priceUnit === 'credits' ? 'credits' : 'currency units';
      problems.push(
        `models[${i}].prices.${field}: ${text} ${unit} per million tokens is not a whole number of micro-credits per million tokens`,
      );
    } else {
      prices[key] = micros;
    }
  }
  const at = `models[${i}]`;
  if (m.max_output_tokens_betas !== undefined && m.max_output_tokens === undefined && Object.keys(m.max_output_tokens_betas).length > 0) {
    problems.push(`${at}.max_output_tokens_betas: needs "max_output_tokens" (the limit without a beta)`);
  }
  // Output limits that cannot be what was meant: a beta that does not raise the limit (it would
  // be ignored), and a limit that leaves the -thinking variant of a budget model no valid request
  // (its budget must be ≥ min_budget_tokens and below max_tokens). Only the fields new in
  // session 55: a stored price version of an older catalog must load as it did (billing and
  // rerate read every version back), so `context_window_betas` keeps its old rule.
  for (const [beta, limit] of Object.entries(m.max_output_tokens_betas ?? {})) {
    if (m.max_output_tokens !== undefined && limit <= m.max_output_tokens) {
      problems.push(`${at}.max_output_tokens_betas.${beta}: ${limit} is not above max_output_tokens (${m.max_output_tokens}); a beta only raises the limit`);
    }
  }
  const minBudget = m.thinking?.min_budget_tokens ?? DEFAULT_THINKING.minBudgetTokens;
  if (m.thinking_variant && (m.thinking?.mode ?? DEFAULT_THINKING.mode) === 'budget' && m.max_output_tokens !== undefined && m.max_output_tokens <= minBudget) {
    problems.push(`${at}.max_output_tokens: ${m.max_output_tokens} leaves its -thinking variant no valid request (a thinking budget of at least ${minBudget} tokens below max_tokens)`);
  }
  const rates = toRateCard(m, at, priceUnit, creditsPerUnit, problems);
  const upstreamRates = m.upstream_prices === undefined
    ? undefined
    : toRateCard(m.upstream_prices, `${at}.upstream_prices`, 'currency', { num: 1n, den: 1n }, problems);
  return Object.freeze({
    id: m.id,
    aliases: Object.freeze([...m.aliases]),
    upstreamModel: m.upstream_model ?? m.id,
    displayName: m.display_name ?? m.id,
    provider: m.provider,
    thinkingVariant: m.thinking_variant,
    createdAt: m.created_at ?? DEFAULT_CREATED_AT,
    prices: Object.freeze(prices),
    contextWindow: m.context_window ?? DEFAULT_CONTEXT_WINDOW,
    contextWindowBetas: Object.freeze({ ...(m.context_window_betas ?? {}) }),
    maxOutputTokens: m.max_output_tokens,
    maxOutputTokensBetas: Object.freeze({ ...(m.max_output_tokens_betas ?? {}) }),
    imageTokenCap: m.image_token_cap ?? DEFAULT_IMAGE_TOKEN_CAP,
    thinking: m.thinking === undefined
      ? DEFAULT_THINKING
      : Object.freeze({ mode: m.thinking.mode, minBudgetTokens: m.thinking.min_budget_tokens ?? DEFAULT_THINKING.minBudgetTokens }),
    rates,
    upstreamRates,
    // filled once every name resolves (parseCatalog), before the catalog is returned
    fallbackModels: new Set<string>(),
  });
}

type FilePrices = CatalogFile['models'][number]['prices'];
type FileTokenPrices = NonNullable<CatalogFile['models'][number]['fast']>['prices'];
type FileTiers = NonNullable<CatalogFile['models'][number]['tiers']>;

/** `{prices, tiers?, fast?}` (a model, or its `upstream_prices`) → a RateCard in micro-units; problems get paths. */
function toRateCard(
  src: { prices: FilePrices; tiers?: FileTiers | undefined; fast?: { prices: FileTokenPrices; tiers?: FileTiers | undefined } | undefined },
  at: string,
  priceUnit: PriceUnit,
  perUnit: Ratio,
  problems: string[],
): RateCard {
  const units: Partial<Record<UnitDimension, bigint>> = {};
  for (const k of UNIT_DIMENSIONS) {
    const text = src.prices[k];
    if (text === undefined) continue;
    const micros = priceToMicros(text, priceUnit, perUnit);
    if (micros === undefined) problems.push(`${at}.prices.${k}: ${text} ${unitWord(priceUnit)} per unit is not a whole number of micro-${priceUnit === 'credits' ? 'credits' : 'units'}`);
    else units[k] = micros;
  }
  return Object.freeze({
    standard: toRateTable(src.prices, src.tiers, at, priceUnit, perUnit, problems),
    fast: src.fast === undefined ? undefined : toRateTable(src.fast.prices, src.fast.tiers, `${at}.fast`, priceUnit, perUnit, problems),
    units: Object.freeze(units),
  });
}

function unitWord(priceUnit: PriceUnit): string {
  return priceUnit === 'credits' ? 'credits' : 'currency units';
}

function toTokenRates(src: FileTokenPrices, at: string, priceUnit: PriceUnit, perUnit: Ratio, problems: string[]): TokenRates {
  const out = {} as Record<TokenClass, bigint>;
  for (const k of TOKEN_CLASSES) {
    const text = src[k];
    const micros = priceToMicros(text, priceUnit, perUnit);
    if (micros === undefined) {
      problems.push(`${at}.${k}: ${text} ${unitWord(priceUnit)} per million tokens is not a whole number of micro-${priceUnit === 'credits' ? 'credits' : 'units'} per million tokens`);
      out[k] = 0n;
    } else {
      out[k] = micros;
    }
  }
  return Object.freeze(out);
}

function toRateTable(
  prices: FileTokenPrices,
  tiers: FileTiers | undefined,
  at: string,
  priceUnit: PriceUnit,
  perUnit: Ratio,
  problems: string[],
): RateTable {
  // The model's own `prices` are also checked (with the historic message) by toModel; report each problem once.
  const tokens = toTokenRates(prices, `${at}.prices`, priceUnit, perUnit, at.endsWith(']') ? [] : problems);
  const exact: boolean[] = [];
  const tierTables = (tiers ?? []).map((t, j) => {
    const before = problems.length;
    const table = Object.freeze({
      name: t.name,
      aboveInputTokens: t.above_input_tokens,
      tokens: toTokenRates(t.prices, `${at}.tiers[${j}].prices`, priceUnit, perUnit, problems),
    });
    exact.push(problems.length === before);
    return table;
  });
  // A tier is a surcharge for a long prompt (Anthropic's long-context pricing is ×2 / ×1.5): a tier
  // price below the price it replaces is a typo that would sell long prompts cheaper, so refused.
  tierTables.forEach((t, j) => {
    const below = j === 0 ? tokens : tierTables[j - 1]!.tokens;
    if (!exact[j] || (j > 0 && !exact[j - 1])) return;
    for (const k of TOKEN_CLASSES) {
      if (t.tokens[k] < below[k]) {
        problems.push(`${at}.tiers[${j}].prices.${k}: ${tiers![j]!.prices[k]} is below the ${j === 0 ? 'base' : 'previous tier\'s'} price (${j === 0 ? prices[k] : tiers![j - 1]!.prices[k]}): a tier may not be cheaper than what it replaces`);
      }
    }
  });
  return Object.freeze({ tokens, tiers: Object.freeze(tierTables) });
}

/** Exact micro-credits per MTok, or undefined when the value is not a whole number of them. */
function priceToMicros(text: string, priceUnit: PriceUnit, creditsPerUnit: Ratio): bigint | undefined {
  let d: ExactDecimal;
  try {
    d = parseExactDecimal(text);
  } catch (err) {
    if (err instanceof MoneyError) return undefined;
    throw err;
  }
  let num = d.units * MICROS_PER_CREDIT;
  let den = pow10(d.scale);
  if (priceUnit === 'currency') {
    num *= creditsPerUnit.num;
    den *= creditsPerUnit.den;
  }
  return num % den === 0n ? num / den : undefined;
}
