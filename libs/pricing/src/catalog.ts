// The model catalog: which model ids a gateway sells, what they are called upstream, and what
// each token class costs. The file is operator-written JSON; it is validated in full (every
// problem reported with its path) and converted once into integer micro-credits per million
// tokens, so nothing downstream ever sees a decimal string or a currency.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { MAX_TEXT_CHARS, textProblem } from '@tollgate/events';
import { MICROS_PER_CREDIT, MoneyError, parseExactDecimal } from './money.ts';
import type { ExactDecimal } from './money.ts';
import { buildIndex, indexCatalog } from './resolve.ts';

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
  /** the most input tokens one image can cost on this model, after the upstream's resizing */
  readonly imageTokenCap: number;
  /** how the `-thinking` variant turns extended thinking on; see ThinkingCapability */
  readonly thinking: ThinkingCapability;
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
}

/** Returned by GET /v1/models when a file gives no `created_at` for a model. */
export const DEFAULT_CREATED_AT = '2025-01-01T00:00:00Z';

/** An invalid catalog. `problems` lists every violation as `path: message`. */
export class CatalogError extends Error {
  override readonly name = 'CatalogError';
  readonly source: string;
  readonly problems: readonly string[];

  constructor(source: string, problems: readonly string[]) {
    super(`invalid pricing catalog ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.source = source;
    this.problems = problems;
  }
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
  });

const priceSchema = decimalString({ positive: false });

/** A positive whole number of tokens (context windows, caps): JSON integers are exact up to 2^53. */
const tokenCount = z
  .number({ error: (iss) => (iss.input === undefined ? 'required' : 'expected a whole number of tokens') })
  .int('expected a whole number of tokens')
  .positive('must be greater than zero')
  .max(100_000_000, 'must be at most 100,000,000');

const pricesSchema = z.strictObject({
  input: priceSchema,
  output: priceSchema,
  cache_read: priceSchema,
  cache_write_5m: priceSchema,
  cache_write_1h: priceSchema,
});

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
  created_at: z.iso.datetime({ offset: true, error: 'expected an RFC 3339 timestamp like "2025-05-14T00:00:00Z"' }).optional(),
  notes: z.string().optional(),
  prices: pricesSchema,
  context_window: tokenCount.optional(),
  context_window_betas: z
    .record(z.string().regex(/^[A-Za-z0-9._-]+$/, 'expected an anthropic-beta name like "context-1m-2025-08-07"'), tokenCount)
    .optional(),
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
});

type CatalogFile = z.infer<typeof catalogSchema>;

/** `models[3].prices.input` */
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
  let window = model.contextWindow;
  if (anthropicBeta === undefined) return window;
  const values = typeof anthropicBeta === 'string' ? [anthropicBeta] : anthropicBeta;
  for (const value of values) {
    for (const name of value.split(',')) {
      const wider = Object.hasOwn(model.contextWindowBetas, name.trim()) ? model.contextWindowBetas[name.trim()] : undefined;
      if (wider !== undefined && wider > window) window = wider;
    }
  }
  return window;
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
      parsed.error.issues.map((i) => `${formatIssuePath(i.path)}: ${i.message}`),
    );
  }
  const file = parsed.data;
  const problems: string[] = [];

  const creditsPerUnit = creditsPerCurrencyUnit(file.credit);
  const models = file.models.map((m, i) => toModel(m, i, file.price_unit, creditsPerUnit, problems));
  const mapping: CatalogMapping = Object.freeze({
    enabled: file.mapping.enabled,
    rules: Object.freeze(file.mapping.rules.map((r) => Object.freeze({ match: r.match, target: r.target }))),
  });

  const catalog: Catalog = Object.freeze({
    name: file.name,
    source,
    version: 1,
    credit: toCredit(file.credit),
    priceUnit: file.price_unit,
    notes: file.notes,
    models: Object.freeze(models),
    mapping,
  });

  // Names must be unique across ids, aliases and their generated `-thinking` forms, and every
  // mapping target must resolve; buildIndex checks both and reports with paths.
  const index = buildIndex(catalog, problems);
  if (problems.length > 0) throw new CatalogError(source, problems);
  indexCatalog(catalog, index);
  return catalog;
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
    imageTokenCap: m.image_token_cap ?? DEFAULT_IMAGE_TOKEN_CAP,
    thinking: m.thinking === undefined
      ? DEFAULT_THINKING
      : Object.freeze({ mode: m.thinking.mode, minBudgetTokens: m.thinking.min_budget_tokens ?? DEFAULT_THINKING.minBudgetTokens }),
  });
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
