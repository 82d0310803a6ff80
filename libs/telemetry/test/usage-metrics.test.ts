// The usage metrics derived from DIMENSIONS: units per model and dimension, unpriced usage with
// bounded labels (a model name or an endless stream of new field names never becomes a series each).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DIMENSIONS } from '@tollgate/pricing';
import { createMetrics, MAX_UNPRICED_LABELS } from '@tollgate/telemetry';

function series(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`));
}

test('tollgate_usage_units_total counts every dimension of a request by catalog model; zeros add no series', async () => {
  const m = createMetrics({ defaultMetrics: false });
  m.usageUnits('claude-sonnet-4-5-20250929', { input: 2000, output: 300, web_search_requests: 3, cache_read: 0 });
  m.usageUnits('claude-sonnet-4-5-20250929', { input: 1, code_execution_seconds: 30 });
  assert.deepEqual(series(await m.scrape(), 'tollgate_usage_units_total'), [
    'tollgate_usage_units_total{model="claude-sonnet-4-5-20250929",dimension="input"} 2001',
    'tollgate_usage_units_total{model="claude-sonnet-4-5-20250929",dimension="output"} 300',
    'tollgate_usage_units_total{model="claude-sonnet-4-5-20250929",dimension="web_search_requests"} 3',
    'tollgate_usage_units_total{model="claude-sonnet-4-5-20250929",dimension="code_execution_seconds"} 30',
  ]);
});

test('tollgate_unpriced_usage_total: a series per dimension from the start; model names and unknown fields stay bounded', async () => {
  const m = createMetrics({ defaultMetrics: false });
  const zero = series(await m.scrape(), 'tollgate_unpriced_usage_total');
  assert.deepEqual(zero, DIMENSIONS.map((d) => `tollgate_unpriced_usage_total{dimension="${d.label}"} 0`));
  m.unpricedUsage(['code_execution_seconds', 'speed:fast', 'model:claude-future-9', 'model:claude-future-10', 'image_generation_requests', 'Bad Field!']);
  for (let i = 0; i < MAX_UNPRICED_LABELS + 5; i++) m.unpricedUsage([`new_field_${i}`]);
  const text = await m.scrape();
  const lines = series(text, 'tollgate_unpriced_usage_total');
  assert.ok(lines.includes('tollgate_unpriced_usage_total{dimension="code_execution_seconds"} 1'));
  assert.ok(lines.includes('tollgate_unpriced_usage_total{dimension="speed:fast"} 1'));
  assert.ok(lines.includes('tollgate_unpriced_usage_total{dimension="model"} 2'));
  assert.ok(lines.includes('tollgate_unpriced_usage_total{dimension="image_generation_requests"} 1'));
  // 'Bad Field!' and the field names past the first MAX_UNPRICED_LABELS (one taken above) are `other`
  assert.ok(lines.includes('tollgate_unpriced_usage_total{dimension="other"} 7'), lines.join('\n'));
  // the dimensions, speed:fast, model, other, and MAX_UNPRICED_LABELS field names
  assert.equal(lines.length, DIMENSIONS.length + 3 + MAX_UNPRICED_LABELS);
});
