export type ModelLine = 'haiku' | 'sonnet' | 'opus';

/** The /v1/models entry shape; `capabilities` is null because the simulator does not model them; the limits are `contextWindow` and `maxOutputTokens` without betas. */
export interface ModelInfo {
  readonly type: 'model';
  readonly id: string;
  readonly display_name: string;
  readonly created_at: string;
  readonly line: ModelLine;
  readonly lifecycle: 'active' | 'deprecated';
  readonly deprecated_at: string | null;
  readonly retires_at: string | null;
  readonly capabilities: null;
  readonly max_input_tokens: number;
  readonly max_tokens: number | null;
}

/** The 1M-token context beta (Anthropic "Context windows"). */
export const CONTEXT_1M_BETA = 'context-1m-2025-08-07';

/**
 * Models whose window is 1M tokens without a beta (4.6 and later), and models that reach 1M
 * with `CONTEXT_1M_BETA` (Sonnet 4 and 4.5); every other model has 200,000. Matched as
 * substrings of the model id, so dated and undated ids agree (`sonnet-4-2` is the dated 4.0
 * id `claude-sonnet-4-20250514`).
 */
const MILLION_NATIVE = ['sonnet-4-6', 'opus-4-6', 'opus-4-7', '-5-5'];
const MILLION_WITH_BETA = ['sonnet-4-5', 'sonnet-4-0', 'sonnet-4-2'];

/**
 * The most input tokens (input + cache read + cache write) one request to `model` may hold,
 * given the `anthropic-beta` values sent. A longer prompt is a 400 "prompt is too long".
 */
export function contextWindow(model: string, betas: readonly string[]): number {
  if (MILLION_NATIVE.some((m) => model.includes(m))) return 1_000_000;
  if (betas.includes(CONTEXT_1M_BETA) && MILLION_WITH_BETA.some((m) => model.includes(m))) return 1_000_000;
  return 200_000;
}

/** The beta that raises Claude Sonnet 3.7's output limit to 128,000 tokens (Anthropic "Extended output"). */
export const OUTPUT_128K_BETA = 'output-128k-2025-02-19';

/**
 * Output limits by model family, first match wins (substrings of the model id, as above), from
 * Anthropic's "Models overview": 128,000 for 4.6 and later; 32,000 for Opus 4 and 4.1; 64,000 for
 * the other 4.x models and Sonnet 3.7; 8,192 for the 3.5 models; 4,096 for the 3 models.
 */
const OUTPUT_LIMITS: ReadonlyArray<readonly [string, number]> = [
  ['sonnet-4-6', 128_000], ['opus-4-6', 128_000], ['opus-4-7', 128_000], ['opus-4-8', 128_000], ['-5-5', 128_000],
  ['opus-4-0', 32_000], ['opus-4-1', 32_000], ['opus-4-2', 32_000],
  ['-4-5', 64_000], ['sonnet-4-0', 64_000], ['sonnet-4-2', 64_000], ['3-7-sonnet', 64_000],
  ['3-5-', 8_192], ['claude-3-', 4_096],
];

/**
 * The most `max_tokens` a request to `model` may ask for, given the `anthropic-beta` values sent
 * (Sonnet 3.7 with `OUTPUT_128K_BETA`: 128,000); undefined for a model id of no family above,
 * which the simulator serves without a limit. More is a 400 "max_tokens: N > L, which is the
 * maximum allowed number of output tokens for <model>", as the API answers.
 */
export function maxOutputTokens(model: string, betas: readonly string[]): number | undefined {
  if (model.includes('3-7-sonnet') && betas.includes(OUTPUT_128K_BETA)) return 128_000;
  return OUTPUT_LIMITS.find(([family]) => model.includes(family))?.[1];
}

function model(
  id: string,
  display_name: string,
  created_at: string,
  line: ModelLine,
  retires_at: string | null = null,
): ModelInfo {
  return {
    type: 'model',
    id,
    display_name,
    created_at,
    line,
    lifecycle: retires_at === null ? 'active' : 'deprecated',
    deprecated_at: retires_at === null ? null : created_at,
    retires_at,
    capabilities: null,
    max_input_tokens: contextWindow(id, []),
    max_tokens: maxOutputTokens(id, []) ?? null,
  };
}

/**
 * Newest first, as the real /v1/models lists them. Ids follow the official SDK's model list;
 * the dates are illustrative. /v1/messages accepts any model id, listed here or not.
 */
export const MODELS: readonly ModelInfo[] = [
  model('claude-opus-5-5', 'Claude Opus 5.5', '2026-09-01T00:00:00Z', 'opus'),
  model('claude-sonnet-5-5', 'Claude Sonnet 5.5', '2026-09-01T00:00:00Z', 'sonnet'),
  model('claude-haiku-5-5', 'Claude Haiku 5.5', '2026-09-01T00:00:00Z', 'haiku'),
  model('claude-opus-4-7', 'Claude Opus 4.7', '2026-03-01T00:00:00Z', 'opus'),
  model('claude-sonnet-4-6', 'Claude Sonnet 4.6', '2026-02-01T00:00:00Z', 'sonnet'),
  model('claude-haiku-4-5-20251001', 'Claude Haiku 4.5', '2025-10-01T00:00:00Z', 'haiku'),
  model('claude-sonnet-4-5-20250929', 'Claude Sonnet 4.5', '2025-09-29T00:00:00Z', 'sonnet', '2026-11-30T00:00:00Z'),
];
