// The one list of billable dimensions. The usage event, the warehouse columns, metric labels,
// analytics sums, invoice lines and the catalog's price keys all iterate DIMENSIONS, so adding
// a class the upstream starts billing is one entry here, a price in the catalogs, and tests.

/** Token classes, priced per million tokens (Anthropic "Pricing": base input, output, cache hits, 5 m and 1 h cache writes). */
export type TokenClass = 'input' | 'output' | 'cache_read' | 'cache_write_5m' | 'cache_write_1h';

/** Per-request units, priced per one unit (a search, a fetch, a second). */
export type UnitDimension = 'web_search_requests' | 'web_fetch_requests' | 'code_execution_seconds';

export type Dimension = TokenClass | UnitDimension;

/** The camelCase field of the v1 `TokenUsage` shape (`costMicros`, @tollgate/anthropic) for a token class. */
export type LegacyTokenField = 'input' | 'output' | 'cacheRead' | 'cacheWrite5m' | 'cacheWrite1h';

export interface DimensionSpec {
  readonly key: Dimension;
  /** `token`: priced in µc per million; `unit`: priced in µc per one unit */
  readonly kind: 'token' | 'unit';
  /** counts toward the prompt size that selects a tier, and toward the hold's input bound */
  readonly inputSide: boolean;
  /** warehouse column and v1 flat event field (the v1 names are kept), e.g. `input_tokens` */
  readonly column: string;
  /** metric label value (`tollgate_tokens_total{class=…}` keeps the v1 values) */
  readonly label: string;
  /** invoice wording */
  readonly description: string;
  /**
   * Where the count sits in Anthropic's wire `usage` object, e.g.
   * `['server_tool_use', 'web_search_requests']` (Messages API reference, `Usage`).
   */
  readonly wire: readonly string[];
  /**
   * Read instead when `wire` is absent: a 5-minute cache write is reported only as
   * `cache_creation_input_tokens` by upstreams that do not break writes down by TTL
   * (5 minutes is Anthropic's default TTL).
   */
  readonly wireFallback: readonly string[] | null;
  /** the field of the v1 `TokenUsage` shape, for token classes */
  readonly legacy: LegacyTokenField | null;
}

function spec(s: DimensionSpec): DimensionSpec {
  return Object.freeze({ ...s, wire: Object.freeze([...s.wire]), wireFallback: s.wireFallback === null ? null : Object.freeze([...s.wireFallback]) });
}

/** Every billable dimension: the five token classes, then the per-request units. Frozen. */
export const DIMENSIONS: readonly DimensionSpec[] = Object.freeze([
  spec({ key: 'input', kind: 'token', inputSide: true, column: 'input_tokens', label: 'input', description: 'Input tokens', wire: ['input_tokens'], wireFallback: null, legacy: 'input' }),
  spec({ key: 'output', kind: 'token', inputSide: false, column: 'output_tokens', label: 'output', description: 'Output tokens', wire: ['output_tokens'], wireFallback: null, legacy: 'output' }),
  spec({ key: 'cache_read', kind: 'token', inputSide: true, column: 'cache_read_tokens', label: 'cache_read', description: 'Cache reads', wire: ['cache_read_input_tokens'], wireFallback: null, legacy: 'cacheRead' }),
  spec({ key: 'cache_write_5m', kind: 'token', inputSide: true, column: 'cache_write_5m_tokens', label: 'cache_write_5m', description: 'Cache writes (5 minutes)', wire: ['cache_creation', 'ephemeral_5m_input_tokens'], wireFallback: ['cache_creation_input_tokens'], legacy: 'cacheWrite5m' }),
  spec({ key: 'cache_write_1h', kind: 'token', inputSide: true, column: 'cache_write_1h_tokens', label: 'cache_write_1h', description: 'Cache writes (1 hour)', wire: ['cache_creation', 'ephemeral_1h_input_tokens'], wireFallback: null, legacy: 'cacheWrite1h' }),
  spec({ key: 'web_search_requests', kind: 'unit', inputSide: false, column: 'web_search_requests', label: 'web_search_requests', description: 'Web searches', wire: ['server_tool_use', 'web_search_requests'], wireFallback: null, legacy: null }),
  spec({ key: 'web_fetch_requests', kind: 'unit', inputSide: false, column: 'web_fetch_requests', label: 'web_fetch_requests', description: 'Web fetches', wire: ['server_tool_use', 'web_fetch_requests'], wireFallback: null, legacy: null }),
  spec({ key: 'code_execution_seconds', kind: 'unit', inputSide: false, column: 'code_execution_seconds', label: 'code_execution_seconds', description: 'Code execution (seconds)', wire: ['server_tool_use', 'code_execution_seconds'], wireFallback: null, legacy: null }),
]);

/** The dimension keys in DIMENSIONS order. */
export const DIMENSION_KEYS: readonly Dimension[] = Object.freeze(DIMENSIONS.map((d) => d.key));
/** The token classes in DIMENSIONS order. */
export const TOKEN_CLASSES: readonly TokenClass[] = Object.freeze(
  DIMENSIONS.filter((d) => d.kind === 'token').map((d) => d.key as TokenClass),
);
/** The per-unit dimensions in DIMENSIONS order. */
export const UNIT_DIMENSIONS: readonly UnitDimension[] = Object.freeze(
  DIMENSIONS.filter((d) => d.kind === 'unit').map((d) => d.key as UnitDimension),
);

const BY_KEY: ReadonlyMap<string, DimensionSpec> = new Map(DIMENSIONS.map((d) => [d.key, d]));

/** The spec of a dimension, or undefined for a name that is not one (e.g. a new upstream field). */
export function dimensionSpec(key: string): DimensionSpec | undefined {
  return BY_KEY.get(key);
}

/** True for a known dimension key. */
export function isDimension(key: string): key is Dimension {
  return BY_KEY.has(key);
}

/** Quantities of one request (or one iteration) per dimension: non-negative safe integers. */
export type Quantities = Readonly<Record<Dimension, number>>;

/** Every dimension at 0. Frozen. */
export const ZERO_QUANTITIES: Quantities = Object.freeze(
  Object.fromEntries(DIMENSION_KEYS.map((k) => [k, 0])) as Record<Dimension, number>,
);

/**
 * Builds complete Quantities from a partial record (missing dimensions are 0).
 * Throws RangeError when a value is not a non-negative safe integer, or a key is not a dimension.
 */
export function quantities(partial: Partial<Record<Dimension, number>>): Quantities {
  const out: Record<Dimension, number> = { ...ZERO_QUANTITIES };
  // Object.keys, not entries: the same keys in the same order without a pair array per key.
  for (const k of Object.keys(partial)) {
    const v = (partial as Record<string, number | undefined>)[k];
    if (!isDimension(k)) throw new RangeError(`unknown dimension ${JSON.stringify(k)}`);
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${k} must be a non-negative integer, got ${v}`);
    out[k] = v;
  }
  return Object.freeze(out);
}

/** Tokens that make up the prompt: the sum of the input-side token classes (tiers, holds). */
export function inputSideTokens(q: Quantities): number {
  let n = 0;
  for (const d of DIMENSIONS) if (d.inputSide) n += q[d.key];
  return n;
}

/** The v1 `TokenUsage` shape (camelCase token classes) → Quantities with every unit at 0. */
export function fromTokenUsage(u: Readonly<Record<LegacyTokenField, number>>): Quantities {
  const partial: Partial<Record<Dimension, number>> = {};
  for (const d of DIMENSIONS) if (d.legacy !== null) partial[d.key] = u[d.legacy];
  return quantities(partial);
}
