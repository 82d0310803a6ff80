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
