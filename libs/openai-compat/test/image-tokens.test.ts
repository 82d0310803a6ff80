// The image rule of the model a platform `openai` upstream is sent, for the hold's input bound
// (OpenAI "Images and vision", "Calculating costs").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEAREST_OPENAI_IMAGE_RULE, openAIImageRule, openAIImageTokenCap, openAIImageTokens } from '@tollgate/openai-compat';

test('image rules by model family: the longest prefix, dated snapshots and vendor prefixes included; an unknown name is the dearest rule', () => {
  assert.deepEqual(openAIImageRule('gpt-4o-mini-2024-07-18'), { kind: 'tiles', base: 2_833, perTile: 5_667 });
  assert.deepEqual(openAIImageRule('gpt-4o-2024-08-06'), { kind: 'tiles', base: 85, perTile: 170 });
  assert.deepEqual(openAIImageRule('openai/gpt-4.1'), { kind: 'tiles', base: 85, perTile: 170 });
  assert.deepEqual(openAIImageRule('gpt-4.1-mini'), { kind: 'patches', multiplierPercent: 162 });
  assert.deepEqual(openAIImageRule('gpt-5-nano-2025-08-07'), { kind: 'patches', multiplierPercent: 246 });
  assert.deepEqual(openAIImageRule('gpt-5'), { kind: 'tiles', base: 70, perTile: 140 });
  assert.deepEqual(openAIImageRule('o3'), { kind: 'tiles', base: 75, perTile: 150 });
  assert.deepEqual(openAIImageRule('GPT-4o-Mini'), { kind: 'tiles', base: 2_833, perTile: 5_667 });
  // a suffix that is not a dated snapshot is no family's: never read as a cheaper one (gpt-4o-mini:free is not gpt-4o)
  for (const unknown of ['Qwen/Qwen2.5-VL-72B-Instruct', 'gpt-4omini', 'claude-sonnet-4-5', 'o10',
    'openai/gpt-4o-mini:free', 'gpt-4o-mini:latest', 'gpt-4o-mini@2024-07-18', 'gpt-4o-mini_2024', 'gpt-4o-mini.1', 'gpt-4o-mini ',
    'gpt-4.1-mini:nitro', 'gpt-5-mini:online', 'gpt-5-nano:flex', 'ft:gpt-4o-mini:org::id', 'gpt-4o-audio-preview', 'gpt-4o-2024-08-06x']) {
    assert.equal(openAIImageRule(unknown), DEAREST_OPENAI_IMAGE_RULE, unknown);
  }
});

test('image tokens: tile rules at their 8-tile cap whatever the size, patch rules by the proven size up to 1,536 patches, in integers', () => {
  // 85 + 8 × 170 = 1,445; 2,833 + 8 × 5,667 = 48,169
  assert.equal(openAIImageTokens(openAIImageRule('gpt-4o'), 1, 1), 1_445);
  assert.equal(openAIImageTokenCap(openAIImageRule('gpt-4o')), 1_445);
  assert.equal(openAIImageTokens(DEAREST_OPENAI_IMAGE_RULE, 1, 1), 48_169);
  const mini41 = openAIImageRule('gpt-4.1-mini');
  // 1×1: 1 patch × 1.62 → 2; 1024×1024: 32 × 32 = 1,024 patches × 1.62 = 1,658.88 → 1,659; 4096×4096: capped at 1,536 × 1.62 = 2,488.32 → 2,489
  assert.deepEqual([openAIImageTokens(mini41, 1, 1), openAIImageTokens(mini41, 1024, 1024), openAIImageTokens(mini41, 4096, 4096)], [2, 1_659, 2_489]);
  assert.equal(openAIImageTokenCap(mini41), 2_489);
  // 1,536 × 2.46 = 3,778.56 → 3,779, under the dearest rule's one tile (8,500)
  assert.equal(openAIImageTokenCap(openAIImageRule('gpt-4.1-nano')), 3_779);
});
