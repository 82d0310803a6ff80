export type ModelLine = 'haiku' | 'sonnet' | 'opus';

/** The /v1/models entry shape; capability and limit fields are null because the simulator does not model them. */
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
  readonly max_input_tokens: null;
  readonly max_tokens: null;
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
    max_input_tokens: null,
    max_tokens: null,
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
