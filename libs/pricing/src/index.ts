// Public API of @tollgate/pricing: money in micro-credits, the model catalog, cost.

export {
  MICROS_PER_CREDIT,
  CREDIT_DECIMALS,
  MoneyError,
  parseCredits,
  parseDecimal,
  parseExactDecimal,
  formatCredits,
  creditsToNumber,
  balanceView,
  ceilDiv,
} from './money.ts';
export type { ExactDecimal } from './money.ts';

export {
  CatalogError,
  bundledCatalogPath,
  contextWindowFor,
  maxOutputTokensFor,
  DEFAULT_CONTEXT_WINDOW,
  DEFAULT_CREATED_AT,
  DEFAULT_IMAGE_TOKEN_CAP,
  DEFAULT_THINKING,
  formatIssuePath,
  loadCatalogFile,
  missingPriceLists,
  parseCatalog,
  toFactor,
} from './catalog.ts';
export type {
  BundledCatalog,
  Catalog,
  ConditionField,
  Factor,
  Multiplier,
  PriceList,
  PriceTier,
  RateCard,
  RateTable,
  TokenRates,
  UnitRates,
  UnpricedPolicy,
  CatalogCredit,
  CatalogMapping,
  CatalogModel,
  CreditRate,
  MappingRule,
  PriceClass,
  PriceUnit,
  Prices,
  ThinkingCapability,
} from './catalog.ts';

export { exactModel, globMatch, listModels, resolveModel } from './resolve.ts';
export type { ListModelsOptions, ModelInfo, ResolvedModel, ResolvedVia } from './resolve.ts';

export { TOKENS_PER_PRICE_UNIT, costMicros, holdMicros } from './cost.ts';
export type { TokenUsage } from './cost.ts';

export {
  DIMENSIONS,
  DIMENSION_KEYS,
  TOKEN_CLASSES,
  UNIT_DIMENSIONS,
  ZERO_QUANTITIES,
  dimensionSpec,
  fromTokenUsage,
  inputSideTokens,
  isDimension,
  quantities,
} from './dimensions.ts';
export type { Dimension, DimensionSpec, LegacyTokenField, Quantities, TokenClass, UnitDimension } from './dimensions.ts';

export { HoldBoundError, advisorOutputTokens, advisorTools, attemptModels, findPriceList, holdBound, holdTerms, priceRequest, requestFallbackAttempts, requestFallbacks, resolveAdvisor, resolveIteration, resolveServing, resolveStep, servedModelOf } from './price.ts';
export type { AdvisorTool, FallbackAttempt, HoldRequest, HoldSegment, HoldTerms, PriceLine, PricedIteration, PricedRequest, PriceVersion, PricingContext, PricingIteration } from './price.ts';

export { PriceBook, priceVersion } from './book.ts';
export type { StoredPriceVersion } from './book.ts';

export { modelPricing, requestUnpriced } from './info.ts';
export type { ModelPricing, TokenPriceText } from './info.ts';

export { admission, ADMISSION_POLICIES } from './admission.ts';
export type { Admission, AdmissionPolicy } from './admission.ts';
