import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bundledCatalogPath, loadCatalogFile, parseCatalog } from './catalog.ts';
import { globMatch, listModels, resolveModel } from './resolve.ts';

const cny = loadCatalogFile(bundledCatalogPath('cny'));
const usd = loadCatalogFile(bundledCatalogPath('usd'));

function summary(catalog: typeof cny, requested: string) {
  const r = resolveModel(catalog, requested);
  return r === undefined ? undefined : { id: r.model.id, upstream: r.upstreamModel, thinking: r.thinking, via: r.via };
}

test('resolution in the cny catalog', () => {
  const cases: Array<[string, ReturnType<typeof summary>]> = [
    ['claude-sonnet-4-5-20250929', { id: 'claude-sonnet-4-5-20250929', upstream: 'claude-sonnet-4-5-20250929', thinking: false, via: 'id' }],
    ['claude-sonnet-4-5', { id: 'claude-sonnet-4-5-20250929', upstream: 'claude-sonnet-4-5-20250929', thinking: false, via: 'alias' }],
    ['claude-sonnet-4-5-thinking', { id: 'claude-sonnet-4-5-20250929', upstream: 'claude-sonnet-4-5-20250929', thinking: true, via: 'thinking' }],
    ['claude-sonnet-4-5-20250929-thinking', { id: 'claude-sonnet-4-5-20250929', upstream: 'claude-sonnet-4-5-20250929', thinking: true, via: 'thinking' }],
    ['claude-opus-4-6/anthropic', { id: 'claude-opus-4-6', upstream: 'claude-opus-4-6', thinking: false, via: 'provider' }],
    ['claude-opus-4-6-thinking/anthropic', { id: 'claude-opus-4-6', upstream: 'claude-opus-4-6', thinking: true, via: 'provider' }],
    // newer than the price list (Claude Code's default) → mapping rules
    ['claude-opus-5-5', { id: 'claude-opus-4-6', upstream: 'claude-opus-4-6', thinking: false, via: 'mapping' }],
    ['claude-opus-5-5-thinking', { id: 'claude-opus-4-6', upstream: 'claude-opus-4-6', thinking: true, via: 'mapping' }],
    ['claude-opus-5-5-thinking/anthropic', { id: 'claude-opus-4-6', upstream: 'claude-opus-4-6', thinking: true, via: 'mapping' }],
    ['claude-sonnet-5', { id: 'claude-sonnet-4-6', upstream: 'claude-sonnet-4-6', thinking: false, via: 'mapping' }],
    ['claude-haiku-4-5-20991231', { id: 'claude-haiku-4-5-20251001', upstream: 'claude-haiku-4-5-20251001', thinking: false, via: 'mapping' }],
    ['claude-opus-4-0', { id: 'claude-opus-4-20250514', upstream: 'claude-opus-4-20250514', thinking: false, via: 'alias' }],
    ['gpt-4o', undefined],
    ['claude-3-5-haiku-latest', undefined],
    ['', undefined],
    ['/anthropic', undefined],
    ['claude-opus-4-6/', undefined],
  ];
  for (const [requested, expected] of cases) {
    assert.deepEqual(summary(cny, requested), expected, requested);
  }
});

test('resolution in the usd catalog (models declare provider "anthropic")', () => {
  assert.deepEqual(summary(usd, 'claude-haiku-4-5/anthropic'), {
    id: 'claude-haiku-4-5', upstream: 'claude-haiku-4-5-20251001', thinking: false, via: 'provider',
  });
  assert.deepEqual(summary(usd, 'claude-haiku-4-5-20251001'), {
    id: 'claude-haiku-4-5', upstream: 'claude-haiku-4-5-20251001', thinking: false, via: 'alias',
  });
  assert.deepEqual(summary(usd, 'claude-opus-4-5-thinking'), {
    id: 'claude-opus-4-5', upstream: 'claude-opus-4-5-20251101', thinking: true, via: 'thinking',
  });
  assert.equal(summary(usd, 'claude-opus-4-6/bedrock'), undefined); // another provider never matches
  assert.equal(summary(usd, 'claude-opus-9/bedrock'), undefined); // not even through mapping
  assert.deepEqual(summary(usd, 'claude-opus-5-5'), {
    id: 'claude-opus-4-7', upstream: 'claude-opus-4-7', thinking: false, via: 'mapping',
  });
  assert.deepEqual(summary(usd, 'claude-haiku-5/anthropic'), {
    id: 'claude-haiku-4-5', upstream: 'claude-haiku-4-5-20251001', thinking: false, via: 'mapping',
  });
});

const prices = { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' };

test('an id that contains "/provider" matches exactly before the provider rule', () => {
  const catalog = parseCatalog({
    version: 1,
    name: 't',
    credit: { currency: 'USD', unit_per_credit: '0.01' },
    price_unit: 'credits',
    models: [
      { id: 'm', provider: 'anthropic', prices },
      { id: 'm/anthropic', upstream_model: 'special', prices: { ...prices, input: '2' } },
      { id: 'free', prices },
    ],
  });
  const exact = resolveModel(catalog, 'm/anthropic');
  assert.equal(exact?.model.id, 'm/anthropic');
  assert.equal(exact?.via, 'id');
  assert.equal(exact?.upstreamModel, 'special');
  // a model without a declared provider accepts any provider suffix
  assert.equal(resolveModel(catalog, 'free/anything')?.model.id, 'free');
  assert.equal(resolveModel(catalog, 'm/openai'), undefined);
});

test('mapping: disabled, order, thinking, targets that are aliases', () => {
  const json = {
    version: 1,
    name: 't',
    credit: { currency: 'USD', unit_per_credit: '0.01' },
    price_unit: 'credits',
    models: [
      { id: 'big-1', aliases: ['big'], thinking_variant: true, prices },
      { id: 'small-1', prices },
    ],
    mapping: {
      enabled: true,
      rules: [
        { match: 'big-*-preview', target: 'small-1' },
        { match: 'big-*', target: 'big' },
        { match: 'small-*', target: 'small-1' },
        { match: 'deep-*', target: 'big-thinking' },
      ],
    },
  };
  const on = parseCatalog(json);
  assert.equal(resolveModel(on, 'big-2-preview')?.model.id, 'small-1'); // first matching rule wins
  assert.equal(resolveModel(on, 'big-2')?.model.id, 'big-1');
  assert.equal(resolveModel(on, 'big-2-thinking')?.thinking, true);
  assert.equal(resolveModel(on, 'deep-x')?.thinking, true); // a target may itself be a thinking name
  // small-1 has no thinking variant: "-thinking" is not granted; the full name is mapped as is
  const smallThinking = resolveModel(on, 'small-2-thinking');
  assert.equal(smallThinking?.model.id, 'small-1');
  assert.equal(smallThinking?.thinking, false);
  assert.equal(resolveModel(on, 'x'.repeat(10_000)), undefined);

  const off = parseCatalog({ ...json, mapping: { ...json.mapping, enabled: false } });
  assert.equal(resolveModel(off, 'big-2'), undefined);
  assert.equal(resolveModel(off, 'big-thinking')?.via, 'thinking');
});

test('exact hits return the same precomputed object (no allocation on the hot path)', () => {
  const a = resolveModel(cny, 'claude-sonnet-4-5');
  assert.ok(a);
  assert.equal(resolveModel(cny, 'claude-sonnet-4-5'), a);
  assert.equal(a.requested, 'claude-sonnet-4-5');
  assert.ok(Object.isFrozen(a));
});

test('globMatch', () => {
  assert.ok(globMatch('claude-opus-*', 'claude-opus-5-5'));
  assert.ok(globMatch('claude-opus-*', 'claude-opus-'));
  assert.ok(!globMatch('claude-opus-*', 'claude-opu'));
  assert.ok(globMatch('*', ''));
  assert.ok(globMatch('a*b*c', 'axxbyyc'));
  assert.ok(!globMatch('a*b*c', 'axxbyy'));
  assert.ok(globMatch('a.b', 'a.b'));
  assert.ok(!globMatch('a.b', 'axb')); // no regex semantics
  assert.ok(globMatch('*-thinking', 'x-thinking'));
  assert.ok(!globMatch('exact', 'exact-plus'));
  assert.ok(!globMatch('*a*a*a*a*a*b', 'a'.repeat(256))); // stays fast
});

test('listModels', () => {
  const list = listModels(cny);
  assert.equal(list.length, cny.models.length * 2);
  assert.deepEqual(list[0], {
    type: 'model',
    id: 'claude-haiku-4-5-20251001',
    display_name: 'Claude Haiku 4.5',
    created_at: '2025-10-01T00:00:00Z',
    max_input_tokens: 200_000,
    max_tokens: 64_000,
  });
  assert.deepEqual(list[1], {
    type: 'model',
    id: 'claude-haiku-4-5-20251001-thinking',
    display_name: 'Claude Haiku 4.5 (thinking)',
    created_at: '2025-10-01T00:00:00Z',
    max_input_tokens: 200_000,
    max_tokens: 64_000,
  });
  // Anthropic's limit fields: the catalog's context_window and max_output_tokens (null when not given)
  assert.deepEqual(
    listModels(usd, { includeThinkingVariants: false }).map((m) => [m.id, m.max_input_tokens, m.max_tokens]),
    [['claude-haiku-4-5', 200_000, 64_000], ['claude-opus-4-5', 200_000, 64_000], ['claude-opus-4-6', 1_000_000, 128_000],
      ['claude-opus-4-7', 1_000_000, 128_000], ['claude-sonnet-4-5', 200_000, 64_000], ['claude-sonnet-4-6', 1_000_000, 128_000]],
  );
  const plain = listModels(cny, { includeThinkingVariants: false });
  assert.deepEqual(plain.map((m) => m.id), cny.models.map((m) => m.id));
  assert.equal(plain.find((m) => m.id === 'claude-opus-4-6')?.created_at, '2025-01-01T00:00:00Z');
  // every listed id resolves
  for (const catalog of [cny, usd]) {
    for (const m of listModels(catalog)) assert.ok(resolveModel(catalog, m.id), m.id);
  }
});
