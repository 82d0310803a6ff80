import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_CATALOG_BYTES } from '@tollgate/events';
import { CatalogError, DEFAULT_CREATED_AT, bundledCatalogPath, contextWindowFor, loadCatalogFile, maxOutputTokensFor, parseCatalog } from './catalog.ts';
import type { Catalog, Prices } from './catalog.ts';
import { resolveModel } from './resolve.ts';

// ---------------------------------------------------------------------------------------------
// The reference tables, copied from the pricing brief. Prices per 1M tokens.

/** cny.json: ¥ input / ¥ output; cache prices are 0.1× / 1.25× / 2× of input. 1 ¥ = 10 credits. */
const CNY_TABLE: Array<[id: string, input: string, output: string]> = [
  ['claude-haiku-4-5-20251001', '2.40', '12.00'],
  ['claude-sonnet-4-20250514', '7.20', '36.00'],
  ['claude-sonnet-4-5-20250929', '7.20', '36.00'],
  ['claude-sonnet-4-6', '18.00', '90.00'],
  ['claude-opus-4-6', '30.00', '150.00'],
  ['claude-opus-4-20250514', '36.00', '180.00'],
  ['claude-opus-4-5-20251101', '12.00', '60.00'],
];

/** usd.json, in credits: input / cache read / cache write 5m / cache write 1h / output. */
const USD_TABLE: Array<[id: string, upstream: string, input: number, cacheRead: number, cw5m: number, cw1h: number, output: number]> = [
  ['claude-haiku-4-5', 'claude-haiku-4-5-20251001', 295, 30, 368, 589, 1471],
  ['claude-opus-4-5', 'claude-opus-4-5-20251101', 1471, 148, 1839, 2942, 7353],
  ['claude-opus-4-6', 'claude-opus-4-6', 1471, 148, 1839, 2942, 7353],
  ['claude-opus-4-7', 'claude-opus-4-7', 1471, 148, 1839, 2942, 7353],
  ['claude-sonnet-4-5', 'claude-sonnet-4-5-20250929', 883, 89, 1103, 1765, 4412],
  ['claude-sonnet-4-6', 'claude-sonnet-4-6', 883, 89, 1103, 1765, 4412],
];

/** ¥ per MTok → micro-credits per MTok, by hand: ¥x = 10x credits = 10x × 1e6 micro. "7.20" → 72_000_000n */
function cnyMicros(yuan: string, multiplierTenths: bigint): bigint {
  const [whole = '0', frac = ''] = yuan.split('.');
  const fen = BigInt(whole) * 100n + BigInt((frac + '00').slice(0, 2)); // hundredths of a yuan
  // fen/100 ¥ × 10 credits × 1e6 micro × multiplier/10
  return (fen * 10n * 1_000_000n * multiplierTenths) / (100n * 10n);
}

test('cny.json loads and holds every reference price exactly', () => {
  const catalog = loadCatalogFile(bundledCatalogPath('cny'));
  assert.equal(catalog.name, 'cny-reference');
  assert.equal(catalog.credit.description, '¥1 = 10 credits');
  assert.deepEqual(catalog.credit.rate, { kind: 'credits_per_unit', value: '10' });
  assert.equal(catalog.priceUnit, 'currency');
  assert.equal(catalog.models.length, CNY_TABLE.length);
  assert.match(catalog.notes ?? '', /0\.1x.*1\.25x.*2x/);
  for (const [id, input, output] of CNY_TABLE) {
    const model = catalog.models.find((m) => m.id === id);
    assert.ok(model, id);
    const expected: Prices = {
      input: cnyMicros(input, 10n),
      output: cnyMicros(output, 10n),
      cacheRead: cnyMicros(input, 1n),
      cacheWrite5m: (cnyMicros(input, 10n) * 125n) / 100n,
      cacheWrite1h: cnyMicros(input, 20n),
    };
    assert.deepEqual(model.prices, expected, id);
    assert.equal(model.thinkingVariant, true, id);
    assert.equal(model.upstreamModel, id);
  }
  // spot checks written out in full
  const sonnet45 = resolveModel(catalog, 'claude-sonnet-4-5')?.model.prices;
  assert.deepEqual(sonnet45, {
    input: 72_000_000n,
    output: 360_000_000n,
    cacheRead: 7_200_000n,
    cacheWrite5m: 90_000_000n,
    cacheWrite1h: 144_000_000n,
  });
  assert.equal(resolveModel(catalog, 'claude-haiku-4-5')?.model.prices.input, 24_000_000n);
  assert.equal(resolveModel(catalog, 'claude-opus-4-6')?.model.prices.output, 1_500_000_000n);
});

test('usd.json loads and holds every reference price exactly', () => {
  const catalog = loadCatalogFile(bundledCatalogPath('usd'));
  assert.equal(catalog.name, 'usd-reference');
  assert.equal(catalog.credit.description, '1 credit = $0.005');
  assert.deepEqual(catalog.credit.rate, { kind: 'unit_per_credit', value: '0.005' });
  assert.equal(catalog.priceUnit, 'credits');
  assert.equal(catalog.models.length, USD_TABLE.length);
  for (const [id, upstream, input, cacheRead, cw5m, cw1h, output] of USD_TABLE) {
    const model = catalog.models.find((m) => m.id === id);
    assert.ok(model, id);
    assert.deepEqual(
      model.prices,
      {
        input: BigInt(input) * 1_000_000n,
        output: BigInt(output) * 1_000_000n,
        cacheRead: BigInt(cacheRead) * 1_000_000n,
        cacheWrite5m: BigInt(cw5m) * 1_000_000n,
        cacheWrite1h: BigInt(cw1h) * 1_000_000n,
      },
      id,
    );
    assert.equal(model.upstreamModel, upstream, id);
    assert.equal(model.provider, 'anthropic', id);
    assert.equal(model.thinkingVariant, true, id);
    const viaProvider = resolveModel(catalog, `${id}/anthropic`);
    assert.equal(viaProvider?.model, model, `${id}/anthropic`);
    assert.equal(viaProvider?.via, 'provider');
  }
  assert.equal(resolveModel(catalog, 'claude-sonnet-4-5/anthropic')?.model.prices.input, 883_000_000n);
});

// ---------------------------------------------------------------------------------------------
// Validation

function base(): Record<string, unknown> {
  return {
    version: 1,
    name: 'test',
    credit: { currency: 'CNY', credits_per_unit: '10' },
    price_unit: 'currency',
    models: [
      {
        id: 'a',
        prices: { input: '1', output: '2', cache_read: '0.1', cache_write_5m: '1.25', cache_write_1h: '2' },
      },
    ],
  };
}

function problemsOf(json: unknown): readonly string[] {
  try {
    parseCatalog(json, 'test.json');
  } catch (err) {
    assert.ok(err instanceof CatalogError, String(err));
    assert.equal(err.source, 'test.json');
    assert.ok(err.message.includes('test.json'));
    return err.problems;
  }
  assert.fail('expected a CatalogError');
}

test('defaults for optional model fields', () => {
  const catalog = parseCatalog(base());
  const m = catalog.models[0];
  assert.ok(m);
  assert.deepEqual(m.aliases, []);
  assert.equal(m.upstreamModel, 'a');
  assert.equal(m.displayName, 'a');
  assert.equal(m.provider, undefined);
  assert.equal(m.thinkingVariant, false);
  assert.equal(m.createdAt, DEFAULT_CREATED_AT);
  assert.deepEqual(catalog.mapping, { enabled: false, rules: [] });
  assert.equal(catalog.source, '(inline)');
  assert.deepEqual(m.prices, {
    input: 10_000_000n,
    output: 20_000_000n,
    cacheRead: 1_000_000n,
    cacheWrite5m: 12_500_000n,
    cacheWrite1h: 20_000_000n,
  });
});

test('the loaded catalog is frozen', () => {
  const catalog = parseCatalog(base());
  assert.ok(Object.isFrozen(catalog));
  assert.ok(Object.isFrozen(catalog.models[0]));
  assert.ok(Object.isFrozen(catalog.models[0]?.prices));
});

test('every shape violation is reported with its path', () => {
  const json = base();
  json['models'] = [
    ...(json['models'] as unknown[]),
    { id: 'b', prices: { input: 7.2, output: '1', cache_read: '-1', cache_write_5m: 'abc', cache_write_1h: '1' } },
    { id: 'c', prices: { input: '1', output: '1', cache_read: '1', cache_write_5m: '1' }, colour: 'red' },
  ];
  json['price_unit'] = 'yuan';
  const problems = problemsOf(json);
  assert.ok(problems.includes('models[1].prices.input: expected a decimal string'), problems.join('\n'));
  assert.ok(problems.includes('models[1].prices.cache_read: must not be negative'), problems.join('\n'));
  assert.ok(problems.includes('models[1].prices.cache_write_5m: expected a decimal string'), problems.join('\n'));
  assert.ok(problems.includes('models[2].prices.cache_write_1h: required'), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('models[2]: ') && p.includes('colour')), problems.join('\n'));
  assert.ok(problems.includes('price_unit: expected "currency" or "credits"'), problems.join('\n'));
});

test('a problem in a model names it by id as well as index in the message, in shape and in rule checks; a price list\'s own models[] path is left as is', () => {
  // Kind: an operator told "models[37]" in a file of dozens of models. The message (what the
  // start and a reload print) adds each model's id; `problems` keep the bare paths.
  const messageOf = (json: unknown) => {
    try {
      parseCatalog(json, 'test.json');
    } catch (err) {
      assert.ok(err instanceof CatalogError, String(err));
      return err.message;
    }
    assert.fail('the catalog was accepted');
  };
  const shape = base();
  shape['models'] = [...(shape['models'] as unknown[]), { id: 'claude-x', prices: { input: 7.2, output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' } }];
  assert.equal(messageOf(shape), 'invalid pricing catalog test.json:\n  - models[1] "claude-x".prices.input: expected a decimal string');
  const rule = base();
  rule['models'] = [...(rule['models'] as unknown[]), { id: 'b', aliases: ['a'], prices: { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' } }];
  rule['price_lists'] = { vip: { multiplier: '0.8', models: ['zz'] } };
  assert.equal(messageOf(rule), 'invalid pricing catalog test.json:\n'
    + '  - models[1] "b".aliases[0]: "a" is already used by models[0].id\n'
    + '  - price_lists.vip.models[0]: no model "zz" in this catalog (use an id or alias)');
  // Only the path a line starts with is annotated, never the file's own text that looks like
  // one (a quoted name, a record key); an id is quoted inert: control and format characters
  // (a right-to-left override, a C1 escape) as \u escapes, at most 80 code points.
  const model = (id: string, more: Record<string, unknown> = {}) => ({ id, prices: { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' }, ...more });
  const quoted = base();
  quoted['models'] = [...(quoted['models'] as unknown[]), model('b', { fallback_models: ['models[0]'] })];
  assert.equal(messageOf(quoted), 'invalid pricing catalog test.json:\n'
    + '  - models[1] "b".fallback_models[0]: no model "models[0]" in this catalog (use an id or alias)');
  const control = base();
  control['models'] = [...(control['models'] as unknown[]), model('m\u202e\u009b2J')];
  assert.equal(messageOf(control), 'invalid pricing catalog test.json:\n'
    + '  - models[1] "m\\u202e\\u009b2J".id: must not contain control characters (it is stored in usage events)');
  const long = base();
  (long['models'] as Array<Record<string, unknown>>)[0]!['id'] = `${'x'.repeat(79)}\u{1F600}${'y'.repeat(100)}`;
  (long['models'] as Array<Record<string, unknown>>)[0]!['prices'] = { input: 'abc', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' };
  const cut = `models[0] "${'x'.repeat(79)}\u{1F600}…"`; // 80 code points: the emoji whole, not half a surrogate pair
  assert.equal(messageOf(long), `invalid pricing catalog test.json:\n  - ${cut}.id: must be printable ASCII (a model name travels to the upstream and back)\n  - ${cut}.prices.input: expected a decimal string`);
});

test('the credit needs exactly one positive rate', () => {
  const both = base();
  both['credit'] = { currency: 'USD', credits_per_unit: '10', unit_per_credit: '0.1' };
  assert.match(problemsOf(both).join('\n'), /^credit: set exactly one/m);
  const neither = base();
  neither['credit'] = { currency: 'USD' };
  assert.match(problemsOf(neither).join('\n'), /^credit: set exactly one/m);
  const zero = base();
  zero['credit'] = { currency: 'USD', unit_per_credit: '0.000' };
  assert.deepEqual(problemsOf(zero), ['credit.unit_per_credit: must be greater than zero']);
  const lower = base();
  lower['credit'] = { currency: 'usd', unit_per_credit: '1' };
  assert.match(problemsOf(lower).join('\n'), /^credit\.currency: expected an ISO 4217/m);
});

test('a price that is not a whole number of micro-credits per MTok is rejected with its path', () => {
  const json = base();
  json['price_unit'] = 'credits';
  json['models'] = [
    { id: 'a', prices: { input: '0.0000001', output: '0.000001', cache_read: '0', cache_write_5m: '0', cache_write_1h: '0' } },
  ];
  assert.deepEqual(problemsOf(json), [
    'models[0].prices.input: 0.0000001 credits per million tokens is not a whole number of micro-credits per million tokens',
  ]);
  // currency prices: ¥0.00000001 × 10 = 0.0000001 credits → not exact; ¥0.0000001 × 10 = 1 micro → exact
  const cny = base();
  cny['models'] = [
    { id: 'a', prices: { input: '0.00000001', output: '0.0000001', cache_read: '0', cache_write_5m: '0', cache_write_1h: '0' } },
  ];
  assert.equal(problemsOf(cny).length, 1);
  assert.match(problemsOf(cny)[0] ?? '', /^models\[0\]\.prices\.input: /);
});

test('unit_per_credit conversion is exact or rejected', () => {
  const json = base();
  json['credit'] = { currency: 'USD', unit_per_credit: '0.005' };
  json['models'] = [
    // $3/MTok ÷ $0.005 = 600 credits/MTok; $0.000001 ÷ 0.005 = 0.0002 credits = 200 micro
    { id: 'a', prices: { input: '3', output: '0.000001', cache_read: '0', cache_write_5m: '0', cache_write_1h: '0' } },
  ];
  const m = parseCatalog(json).models[0];
  assert.equal(m?.prices.input, 600_000_000n);
  assert.equal(m?.prices.output, 200n);
  // 1 credit = $0.003: $3/MTok = 1000 credits is fine, $1/MTok = 333.333… credits is not
  json['credit'] = { currency: 'USD', unit_per_credit: '0.003' };
  json['models'] = [
    { id: 'a', prices: { input: '1', output: '0.000001', cache_read: '3', cache_write_5m: '0', cache_write_1h: '0' } },
  ];
  assert.deepEqual(problemsOf(json), [
    'models[0].prices.input: 1 currency units per million tokens is not a whole number of micro-credits per million tokens',
    'models[0].prices.output: 0.000001 currency units per million tokens is not a whole number of micro-credits per million tokens',
  ]);
});

test('names are unique across ids, aliases and generated -thinking names', () => {
  const prices = { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' };
  const json = base();
  json['models'] = [
    { id: 'a', aliases: ['a1'], thinking_variant: true, prices },
    { id: 'b', aliases: ['a1', 'b'], prices },
    { id: 'a-thinking', prices },
    { id: 'c', aliases: ['a1-thinking'], prices },
  ];
  assert.deepEqual(problemsOf(json), [
    'models[1].aliases[0]: "a1" is already used by models[0].aliases[0]',
    'models[1].aliases[1]: "b" is already used by models[1].id',
    'models[0].thinking_variant: generated name "a-thinking" is already used by models[2].id',
    'models[0].thinking_variant: generated name "a1-thinking" is already used by models[3].aliases[0]',
  ]);
});

test('mapping targets must exist', () => {
  const json = base();
  json['mapping'] = { enabled: false, rules: [{ match: 'x-*', target: 'a' }, { match: 'y-*', target: 'nope' }] };
  assert.deepEqual(problemsOf(json), [
    'mapping.rules[1].target: "nope" is not a model id, alias or thinking variant in this catalog',
  ]);
});

test('version, name, models and top-level keys are checked', () => {
  assert.deepEqual(problemsOf({ ...base(), version: 2 }), ['version: expected 1 (the only catalog format version)']);
  assert.deepEqual(problemsOf({ ...base(), models: [] }), ['models: a catalog needs at least one model']);
  assert.match(problemsOf({ ...base(), extra: true }).join('\n'), /^\(root\): .*extra/m);
  assert.match(problemsOf(null).join('\n'), /^\(root\): /m);
  assert.deepEqual(problemsOf({ version: 1, name: 'x', price_unit: 'credits', models: [{ prices: {} }] }), [
    'credit: required',
    'models[0].id: required',
    'models[0].prices.input: required',
    'models[0].prices.output: required',
    'models[0].prices.cache_read: required',
    'models[0].prices.cache_write_5m: required',
    'models[0].prices.cache_write_1h: required',
  ]);
  const ws = base();
  ws['models'] = [{ id: 'has space', prices: { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' } }];
  assert.deepEqual(problemsOf(ws), ['models[0].id: must not contain whitespace']);
  const date = base();
  date['models'] = [{ id: 'a', created_at: 'yesterday', prices: { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' } }];
  assert.match(problemsOf(date).join('\n'), /^models\[0\]\.created_at: expected an RFC 3339 timestamp/m);
});

test('loadCatalogFile reports unreadable and malformed files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pricing-'));
  const missing = join(dir, 'missing.json');
  assert.throws(() => loadCatalogFile(missing), (err: unknown) => {
    assert.ok(err instanceof CatalogError);
    assert.equal(err.source, missing);
    assert.match(err.problems[0] ?? '', /^\(file\): cannot read/);
    return true;
  });
  const broken = join(dir, 'broken.json');
  writeFileSync(broken, '{ "version": 1, ');
  assert.throws(() => loadCatalogFile(broken), /not valid JSON/);
  const ok = join(dir, 'ok.json');
  writeFileSync(ok, JSON.stringify(base()));
  const catalog: Catalog = loadCatalogFile(ok);
  assert.equal(catalog.source, ok);
});

test('model limits: context window, 1M-context beta, image cap and thinking mode, with defaults', () => {
  const m = parseCatalog(base()).models[0]!;
  assert.deepEqual([m.contextWindow, m.contextWindowBetas, m.imageTokenCap, m.thinking], [200_000, {}, 1_600, { mode: 'budget', minBudgetTokens: 1024 }]);
  assert.equal(contextWindowFor(m, 'context-1m-2025-08-07'), 200_000, 'a beta the model does not list changes nothing');

  const json = base();
  const model = (json['models'] as Array<Record<string, unknown>>)[0]!;
  Object.assign(model, {
    context_window: 200_000, context_window_betas: { 'context-1m-2025-08-07': 1_000_000 }, image_token_cap: 5_000, thinking: { mode: 'adaptive' },
  });
  const wide = parseCatalog(json).models[0]!;
  assert.deepEqual([wide.imageTokenCap, wide.thinking], [5_000, { mode: 'adaptive', minBudgetTokens: 1024 }]);
  assert.equal(contextWindowFor(wide, undefined), 200_000);
  assert.equal(contextWindowFor(wide, 'prompt-caching-2024-07-31,context-1m-2025-08-07'), 1_000_000);
  assert.equal(contextWindowFor(wide, ['files-api-2025-04-14', ' context-1m-2025-08-07 ']), 1_000_000);
  assert.equal(contextWindowFor(wide, 'toString'), 200_000, 'only the model\'s own betas, never inherited keys');

  Object.assign(model, { context_window: 0, image_token_cap: 1.5, thinking: { mode: 'always' }, context_window_betas: { 'bad beta': 1 } });
  const problems = problemsOf(json);
  assert.ok(problems.includes('models[0].context_window: must be greater than zero'), problems.join('\n'));
  assert.ok(problems.includes('models[0].image_token_cap: expected a whole number of tokens'), problems.join('\n'));
  assert.ok(problems.includes('models[0].thinking.mode: expected "adaptive" or "budget"'), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('models[0].context_window_betas')), problems.join('\n'));
});

test('model output limit: max_output_tokens, raised by its own betas only; absent = no limit; betas need the base', () => {
  const m = parseCatalog(base()).models[0]!;
  assert.deepEqual([m.maxOutputTokens, m.maxOutputTokensBetas, maxOutputTokensFor(m, 'output-128k-2025-02-19')], [undefined, {}, undefined]);

  const json = base();
  const model = (json['models'] as Array<Record<string, unknown>>)[0]!;
  Object.assign(model, { max_output_tokens: 64_000, max_output_tokens_betas: { 'output-128k-2025-02-19': 128_000 } });
  const limited = parseCatalog(json).models[0]!;
  assert.equal(maxOutputTokensFor(limited, undefined), 64_000);
  assert.equal(maxOutputTokensFor(limited, 'prompt-caching-2024-07-31, output-128k-2025-02-19'), 128_000);
  assert.equal(maxOutputTokensFor(limited, ['files-api-2025-04-14', 'output-128k-2025-02-19']), 128_000);
  assert.equal(maxOutputTokensFor(limited, 'constructor'), 64_000, 'only the model\'s own betas, never inherited keys');

  Object.assign(model, { max_output_tokens: 0, max_output_tokens_betas: { 'bad beta': 1 } });
  let problems = problemsOf(json);
  assert.ok(problems.includes('models[0].max_output_tokens: must be greater than zero'), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('models[0].max_output_tokens_betas')), problems.join('\n'));
  delete model['max_output_tokens'];
  Object.assign(model, { max_output_tokens_betas: { 'output-128k-2025-02-19': 128_000 } });
  problems = problemsOf(json);
  assert.deepEqual(problems, ['models[0].max_output_tokens_betas: needs "max_output_tokens" (the limit without a beta)']);

  // Limits that cannot be meant: a beta that raises nothing; a budget -thinking variant left no valid max_tokens.
  Object.assign(model, { max_output_tokens: 64_000, max_output_tokens_betas: { 'same-beta': 64_000 } });
  assert.deepEqual(problemsOf(json), ['models[0].max_output_tokens_betas.same-beta: 64000 is not above max_output_tokens (64000); a beta only raises the limit']);
  // A context_window_beta that raises nothing still loads, as it did before session 55: stored
  // price versions of older catalogs are read back by billing and rerate.
  Object.assign(model, { max_output_tokens_betas: {}, context_window_betas: { 'context-1m-2025-08-07': 200_000 } });
  assert.equal(contextWindowFor(parseCatalog(json).models[0]!, 'context-1m-2025-08-07'), 200_000);
  Object.assign(model, { max_output_tokens: 1_024, max_output_tokens_betas: {}, context_window_betas: {}, thinking_variant: true });
  assert.deepEqual(problemsOf(json), ['models[0].max_output_tokens: 1024 leaves its -thinking variant no valid request (a thinking budget of at least 1024 tokens below max_tokens)']);
  Object.assign(model, { max_output_tokens: 1_025 });
  assert.equal(parseCatalog(json).models[0]!.maxOutputTokens, 1_025, 'the smallest limit with a valid budget (1,024 < 1,025)');
  Object.assign(model, { max_output_tokens: 1_024, thinking: { mode: 'adaptive' } });
  assert.equal(parseCatalog(json).models[0]!.maxOutputTokens, 1_024, 'adaptive thinking has no budget to fit');
});

test('shipped catalogs: thinking mode and context window per model, as Anthropic documents them', () => {
  const cny = loadCatalogFile(bundledCatalogPath('cny'));
  const usd = loadCatalogFile(bundledCatalogPath('usd'));
  const view = (c: Catalog) => Object.fromEntries(c.models.map((m) => [m.upstreamModel, [m.thinking.mode, m.contextWindow, contextWindowFor(m, 'context-1m-2025-08-07'), m.imageTokenCap]]));
  assert.deepEqual(view(cny), {
    'claude-haiku-4-5-20251001': ['budget', 200_000, 200_000, 1_600],
    'claude-sonnet-4-20250514': ['budget', 200_000, 1_000_000, 1_600],
    'claude-sonnet-4-5-20250929': ['budget', 200_000, 1_000_000, 1_600],
    'claude-sonnet-4-6': ['adaptive', 1_000_000, 1_000_000, 1_600],
    'claude-opus-4-6': ['adaptive', 1_000_000, 1_000_000, 1_600],
    'claude-opus-4-20250514': ['budget', 200_000, 200_000, 1_600],
    'claude-opus-4-5-20251101': ['budget', 200_000, 200_000, 1_600],
  });
  assert.deepEqual(view(usd)['claude-opus-4-7'], ['adaptive', 1_000_000, 1_000_000, 5_000]);
  // Output limits (Anthropic "Models overview"): Opus 4 32,000; the 4.5 family and Sonnet 4 64,000; 4.6 and later 128,000.
  const limits = (c: Catalog) => Object.fromEntries(c.models.map((m) => [m.id, m.maxOutputTokens]));
  assert.deepEqual(limits(cny), {
    'claude-haiku-4-5-20251001': 64_000, 'claude-sonnet-4-20250514': 64_000, 'claude-sonnet-4-5-20250929': 64_000, 'claude-sonnet-4-6': 128_000,
    'claude-opus-4-6': 128_000, 'claude-opus-4-20250514': 32_000, 'claude-opus-4-5-20251101': 64_000,
  });
  assert.deepEqual(limits(usd), {
    'claude-haiku-4-5': 64_000, 'claude-opus-4-5': 64_000, 'claude-opus-4-6': 128_000, 'claude-opus-4-7': 128_000, 'claude-sonnet-4-5': 64_000, 'claude-sonnet-4-6': 128_000,
  });
});

test('model ids, aliases and upstream model ids are held to the event decoder\'s text rule (they land in every usage event)', () => {
  const prices = { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' };
  const withModel = (m: Record<string, unknown>) => ({ ...base(), models: [{ id: 'ok', prices, ...m }] });
  // JSON escapes let a file carry what no one would type: NUL, ESC, DEL, a lone surrogate.
  assert.deepEqual(problemsOf(withModel({ id: 'claude\u0000x' })), ['models[0].id: must not contain control characters (it is stored in usage events)']);
  assert.deepEqual(problemsOf(withModel({ aliases: ['fast\u001b[31m'] })), ['models[0].aliases[0]: must not contain control characters (it is stored in usage events)']);
  assert.deepEqual(problemsOf(withModel({ upstream_model: 'claude-\ud800' })), ['models[0].upstream_model: must be well-formed Unicode (it contains a lone surrogate) (it is stored in usage events)']);
  assert.deepEqual(problemsOf(withModel({ upstream_model: 'u'.repeat(201) })), ['models[0].upstream_model: must be at most 200 characters']);
  assert.deepEqual(problemsOf(withModel({ aliases: ['del\u007f'] })), ['models[0].aliases[0]: must not contain control characters (it is stored in usage events)']);
  assert.equal(parseCatalog(withModel({ id: 'claude-opus-4-6', aliases: ['opus'], upstream_model: 'claude-opus-4-6' }), 'test.json').models[0]!.id, 'claude-opus-4-6');
});

test('a catalog over MAX_CATALOG_BYTES (983,040 bytes of compact JSON) is refused; one at exactly the bound loads', () => {
  // Kind: a catalog the loader accepts and its price_version event cannot carry. A 2.7 MB file was
  // put in force, and its event held the Kafka spool (or was quarantined by every group).
  const base = JSON.parse(readFileSync(bundledCatalogPath('usd'), 'utf8')) as Record<string, unknown>;
  const padded = (bytes: number) => {
    const doc = { ...base, notes: '' };
    return { ...doc, notes: 'n'.repeat(bytes - Buffer.byteLength(JSON.stringify(doc))) };
  };
  assert.equal(MAX_CATALOG_BYTES, 983_040);
  assert.equal(Buffer.byteLength(JSON.stringify(padded(983_040))), 983_040);
  parseCatalog(padded(983_040), 'at-bound.json');
  assert.throws(() => parseCatalog(padded(983_041), 'over.json'), (e: unknown) => e instanceof CatalogError
    && e.message === 'invalid pricing catalog over.json:\n  - (file): 983041 bytes as compact JSON; a catalog is at most 983040 (it travels whole in each price version event)');
});

test('a catalog model name that is not printable ASCII is refused: it travels to the upstream and back as the served model', () => {
  // Kind: a name the loader accepted and metering refused when the upstream reported it back.
  const base = JSON.parse(readFileSync(bundledCatalogPath('usd'), 'utf8')) as { models: Array<Record<string, unknown>> };
  const doc = { ...base, models: base.models.map((m, i) => (i === 0 ? { ...m, upstream_model: 'sonnet-模型' } : m)) };
  assert.throws(() => parseCatalog(doc, 'nonascii.json'), (e: unknown) => e instanceof CatalogError
    && e.problems.includes('models[0].upstream_model: must be printable ASCII (a model name travels to the upstream and back)'));
});

test('a catalog whose unit prices a usage event could not carry (over 64 characters) or with more multipliers than an event names (64) is refused, naming the model and table', () => {
  // Kind: a price the loader accepted and the event decoder refused: the request was served and
  // its usage event quarantined by every group, so it was never charged (a tester's case).
  const base = JSON.parse(readFileSync(bundledCatalogPath('usd'), 'utf8')) as { models: Array<Record<string, unknown>>; multipliers?: Record<string, unknown> };
  const first = base.models[0]! as { prices: Record<string, string> };
  const huge = { ...base, models: base.models.map((m, i) => (i === 0 ? { ...m, prices: { ...first.prices, web_fetch_requests: `1${'0'.repeat(60)}` } } : m)) };
  assert.throws(() => parseCatalog(huge, 'huge.json'), (e: unknown) => e instanceof CatalogError
    && e.problems.some((p) => /^models\[0\]\.prices \(units\): with every multiplier that can apply, a unit price could take \d+ characters .*; a usage event carries at most 64$/.test(p)));
  // 10^20 per fetch (in µc with the shipped multipliers: well within 64 characters) loads.
  const fine = { ...base, models: base.models.map((m, i) => (i === 0 ? { ...m, prices: { ...first.prices, web_fetch_requests: `1${'0'.repeat(20)}` } } : m)) };
  parseCatalog(fine, 'fine.json');
  const many = { ...base, multipliers: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`m${i}`, { factor: '1', when: { service_tier: `t${i}` } }])) };
  assert.throws(() => parseCatalog(many, 'many.json'), (e: unknown) => e instanceof CatalogError
    && e.problems.includes('multipliers: 65 of them; a usage event names at most 64'));
});

test('a "__proto__" name in a catalog\'s records (multipliers, price_lists, a model\'s context_window_betas) is refused with its path, not dropped', () => {
  for (const field of ['multipliers', 'price_lists']) {
    const json = base();
    json[field] = JSON.parse('{"__proto__": {"anything": 1}}');
    assert.deepEqual(problemsOf(json), [`${field}.__proto__: "__proto__" is not allowed as a name`], field);
  }
  const json = base();
  (json['models'] as Array<Record<string, unknown>>)[0]!['context_window_betas'] = JSON.parse('{"__proto__": 2000000, "context-1m-2025-08-07": 1000000}');
  const problems = problemsOf(json);
  assert.equal(problems.length, 1, problems.join('\n'));
  assert.match(problems[0]!, /^models\[0\]( \(a\))?\.context_window_betas\.__proto__: "__proto__" is not allowed as a name$/);
});
