// What one image can cost on an OpenAI Chat Completions upstream (platform `openai`), for the
// hold's input bound: OpenAI counts images by its own rules, per model family, not Anthropic's
// (OpenAI "Images and vision", "Calculating costs"). The gateway sends images without `detail`
// (`auto`), so the high-detail rule is the bound.

/**
 * How a model family counts one image at high detail:
 * - `tiles`: the image is fitted into 2048 × 2048, its shortest side set to 768, and cut into
 *   512-px tiles: `base + perTile × tiles`. At most 8 tiles (768 × 2048), whatever the input
 *   size, so the bound is `base + 8 × perTile` for every image.
 * - `patches`: `ceil(w / 32) × ceil(h / 32)` patches of 32 px, scaled down to at most 1,536,
 *   times the family's multiplier (`multiplierPercent` / 100): the bound is read from the
 *   image's dimensions where they are proven, else from 1,536 patches.
 */
export type OpenAIImageRule =
  | { readonly kind: 'tiles'; readonly base: number; readonly perTile: number }
  | { readonly kind: 'patches'; readonly multiplierPercent: number };

/** Most 512-px tiles a high-detail image is cut into (768 × 2048 after OpenAI's resizing). */
const MAX_TILES = 8;
/** Most 32-px patches a patch-counted image keeps (larger ones are scaled down to fit). */
const MAX_PATCHES = 1_536;

/**
 * The dearest documented rule (gpt-4o-mini: 2,833 + 5,667 a tile, up to 48,169 tokens an image,
 * inflated for billing so its image price matches gpt-4o's). It bounds every documented family
 * (the patch families reach at most 1,536 × 2.46 = 3,779), and is the rule for a model name not
 * listed below: an OpenAI-compatible server hosting another model counts images its own way.
 */
export const DEAREST_OPENAI_IMAGE_RULE: OpenAIImageRule = Object.freeze({ kind: 'tiles', base: 2_833, perTile: 5_667 });

/**
 * Families by model-name prefix, the longest prefix first (OpenAI "Images and vision",
 * "Calculating costs", 2025): patch-counted gpt-4.1-mini (1.62), gpt-4.1-nano (2.46), o4-mini
 * (1.72), gpt-5-mini (1.62), gpt-5-nano (2.46); tile-counted gpt-4o-mini (2,833 / 5,667),
 * gpt-5 (70 / 140), gpt-4o, gpt-4.1 and gpt-4.5 (85 / 170), o1 and o3 (75 / 150),
 * computer-use-preview (65 / 129). A dated snapshot (`gpt-4o-2024-08-06`) is its family's.
 */
const FAMILIES: ReadonlyArray<readonly [prefix: string, rule: OpenAIImageRule]> = [
  ['gpt-4.1-mini', { kind: 'patches', multiplierPercent: 162 }],
  ['gpt-4.1-nano', { kind: 'patches', multiplierPercent: 246 }],
  ['gpt-5-mini', { kind: 'patches', multiplierPercent: 162 }],
  ['gpt-5-nano', { kind: 'patches', multiplierPercent: 246 }],
  ['o4-mini', { kind: 'patches', multiplierPercent: 172 }],
  ['gpt-4o-mini', DEAREST_OPENAI_IMAGE_RULE],
  ['computer-use-preview', { kind: 'tiles', base: 65, perTile: 129 }],
  ['gpt-5', { kind: 'tiles', base: 70, perTile: 140 }],
  ['gpt-4o', { kind: 'tiles', base: 85, perTile: 170 }],
  ['gpt-4.1', { kind: 'tiles', base: 85, perTile: 170 }],
  ['gpt-4.5', { kind: 'tiles', base: 85, perTile: 170 }],
  ['o1', { kind: 'tiles', base: 75, perTile: 150 }],
  ['o3', { kind: 'tiles', base: 75, perTile: 150 }],
];

/** A dated snapshot's suffix, as OpenAI names them (`-2024-08-06`). */
const SNAPSHOT = /^-\d{4}-\d{2}-\d{2}$/;

/**
 * The image rule of the model a `platform: openai` upstream is sent (a group's mapped name, or
 * the catalog model's upstream name): its family's when the name is the family's own or one of
 * its dated snapshots (`gpt-4o-2024-08-06` is gpt-4o's, `gpt-4o-mini-2024-07-18` mini's),
 * case-insensitively, after any `vendor/` prefix (routers: `openai/gpt-4o`); any other name
 * (`gpt-4o-mini:free`, `gpt-4o-mini@latest`, a fine-tune, another vendor's model) is
 * `DEAREST_OPENAI_IMAGE_RULE`: a suffix may be another family's, never a cheaper guess.
 */
export function openAIImageRule(model: string): OpenAIImageRule {
  const name = model.slice(model.lastIndexOf('/') + 1).toLowerCase();
  for (const [prefix, rule] of FAMILIES) {
    if (name === prefix || (name.startsWith(prefix) && SNAPSHOT.test(name.slice(prefix.length)))) return rule;
  }
  return DEAREST_OPENAI_IMAGE_RULE;
}

/** The most tokens one image can cost under `rule` (an image whose size is not proven: by URL, unreadable). */
export function openAIImageTokenCap(rule: OpenAIImageRule): number {
  return rule.kind === 'tiles' ? rule.base + MAX_TILES * rule.perTile : Math.ceil((MAX_PATCHES * rule.multiplierPercent) / 100);
}

/**
 * Upper bound of the tokens an image of `width` × `height` px (a proven bound of its decoded
 * size) costs under `rule`: tile rules give their cap (OpenAI may scale a small image up to a
 * 768-px shortest side, so the size proves little), patch rules `ceil(min(1,536, patches) ×
 * multiplier)`. Integers only; never below 1.
 */
export function openAIImageTokens(rule: OpenAIImageRule, width: number, height: number): number {
  if (rule.kind === 'tiles') return openAIImageTokenCap(rule);
  const patches = Math.min(MAX_PATCHES, Math.max(1, Math.ceil(width / 32)) * Math.max(1, Math.ceil(height / 32)));
  return Math.max(1, Math.ceil((patches * rule.multiplierPercent) / 100));
}
