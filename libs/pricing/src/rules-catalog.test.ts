// Catalog validation of the price-rule fields: each new field rejects bad input with its path.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CatalogError, bundledCatalogPath, loadCatalogFile, missingPriceLists, parseCatalog } from './catalog.ts';
import { modelPricing, requestUnpriced } from './info.ts';
import { DIMENSIONS, DIMENSION_KEYS, ZERO_QUANTITIES, fromTokenUsage, inputSideTokens, quantities } from './dimensions.ts';

const TOKENS = { input: '1', output: '2', cache_read: '0.1', cache_write_5m: '1.25', cache_write_1h: '2' };

function base(): Record<string, unknown> & { models: Array<Record<string, unknown>> } {
  return {
    version: 1,
    name: 'test',
    credit: { currency: 'CNY', credits_per_unit: '10' },
    price_unit: 'currency',
    models: [
      { id: 'a', aliases: ['a-alias'], prices: { ...TOKENS } },
      { id: 'b', prices: { ...TOKENS } },
    ],
  };
}

function problems(doc: unknown): readonly string[] {
  try {
    parseCatalog(doc);
  } catch (err) {
    assert.ok(err instanceof CatalogError, String(err));
    return err.problems;
  }
  assert.fail('expected a CatalogError');
}

function withModel(patch: Record<string, unknown>) {
  const doc = base();
  doc.models[0] = { ...doc.models[0], ...patch };
  return doc;
}

test('the dimension list: token classes first, then units; quantities helpers', () => {
  assert.deepEqual(DIMENSION_KEYS, ['input', 'output', 'cache_read', 'cache_write_5m', 'cache_write_1h', 'web_search_requests', 'web_fetch_requests', 'code_execution_seconds']);
  assert.deepEqual(DIMENSIONS.filter((d) => d.inputSide).map((d) => d.key), ['input', 'cache_read', 'cache_write_5m', 'cache_write_1h']);
  assert.deepEqual(DIMENSIONS.slice(0, 5).map((d) => d.column), ['input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_5m_tokens', 'cache_write_1h_tokens']);
  assert.equal(inputSideTokens(quantities({ input: 1, output: 100, cache_read: 2, cache_write_5m: 4, cache_write_1h: 8, web_search_requests: 9 })), 15);
  assert.deepEqual(fromTokenUsage({ input: 1, output: 2, cacheRead: 3, cacheWrite5m: 4, cacheWrite1h: 5 }), { ...ZERO_QUANTITIES, input: 1, output: 2, cache_read: 3, cache_write_5m: 4, cache_write_1h: 5 });
  assert.throws(() => quantities({ input: -1 }), RangeError);
  assert.throws(() => quantities({ bogus: 1 } as never), /unknown dimension "bogus"/);
  assert.ok(Object.isFrozen(DIMENSIONS) && Object.isFrozen(DIMENSIONS[0]) && Object.isFrozen(ZERO_QUANTITIES));
});

test('unit prices: optional per dimension, exact, unknown keys refused', () => {
  const ok = parseCatalog(withModel({ prices: { ...TOKENS, web_search_requests: '0.024', web_fetch_requests: '0' } }));
  assert.deepEqual(ok.models[0]?.rates.units, { web_search_requests: 240_000n, web_fetch_requests: 0n }); // ¥0.024 × 10 × 10⁶
  assert.deepEqual(ok.models[1]?.rates.units, {});
  assert.deepEqual(problems(withModel({ prices: { ...TOKENS, web_search_requests: '0.00000001' } })), [
    'models[0].prices.web_search_requests: 0.00000001 currency units per unit is not a whole number of micro-units',
  ]);
  assert.deepEqual(problems(withModel({ prices: { ...TOKENS, web_search_requests: 2 } })), ['models[0].prices.web_search_requests: expected a decimal string']);
  assert.match(problems(withModel({ prices: { ...TOKENS, image_requests: '1' } })).join('\n'), /models\[0\]\.prices: .*image_requests/);
});

test('tiers: ascending thresholds, unique names, all five token prices, exact', () => {
  const tier = (name: string, above: number, prices: Record<string, unknown> = TOKENS) => ({ name, above_input_tokens: above, prices });
  const ok = parseCatalog(withModel({ tiers: [tier('long_context', 200_000), tier('huge', 500_000)] }));
  assert.deepEqual(ok.models[0]?.rates.standard.tiers.map((t) => [t.name, t.aboveInputTokens, t.tokens.input]), [['long_context', 200_000, 10_000_000n], ['huge', 500_000, 10_000_000n]]);
  assert.deepEqual(problems(withModel({ tiers: [tier('x', 500_000), tier('y', 200_000)] })), [
    "models[0].tiers[1].above_input_tokens: must be greater than the previous tier's (500000): list tiers in ascending order",
  ]);
  assert.deepEqual(problems(withModel({ tiers: [tier('x', 1), tier('x', 2)] })), ['models[0].tiers[1].name: duplicate tier name "x"']);
  assert.deepEqual(problems(withModel({ tiers: [tier('Long Context', 1)] })), ['models[0].tiers[0].name: expected a short lowercase name like "long_context"']);
  assert.deepEqual(problems(withModel({ tiers: [tier('x', 0)] })), ['models[0].tiers[0].above_input_tokens: must be greater than zero']);
  assert.deepEqual(problems(withModel({ tiers: [tier('x', 1, { ...TOKENS, output: undefined })] })), ['models[0].tiers[0].prices.output: required']);
  assert.match(problems(withModel({ tiers: [tier('x', 1, { ...TOKENS, web_search_requests: '1' })] })).join('\n'), /models\[0\]\.tiers\[0\]\.prices: .*web_search_requests/);
  assert.deepEqual(problems(withModel({ tiers: [tier('x', 1, { ...TOKENS, input: '0.00000001' })] })), [
    'models[0].tiers[0].prices.input: 0.00000001 currency units per million tokens is not a whole number of micro-units per million tokens',
  ]);
});

test('fast mode: its own token table and tiers, checked like the standard one', () => {
  const ok = parseCatalog(withModel({ fast: { prices: { ...TOKENS, input: '6' } } }));
  assert.equal(ok.models[0]?.rates.fast?.tokens.input, 60_000_000n);
  assert.equal(ok.models[1]?.rates.fast, undefined);
  assert.deepEqual(problems(withModel({ fast: { prices: { ...TOKENS, cache_read: '0.00000001' } } })), [
    'models[0].fast.prices.cache_read: 0.00000001 currency units per million tokens is not a whole number of micro-units per million tokens',
  ]);
  assert.deepEqual(problems(withModel({ fast: { prices: TOKENS, speed: 'x' } })), ['models[0].fast: Unrecognized key: "speed"']);
  assert.deepEqual(problems(withModel({ fast: {} })), ['models[0].fast.prices: required']);
});

test('upstream list prices: need upstream_currency, are always currency, exact', () => {
  const up = { prices: { input: '3', output: '15', cache_read: '0.30', cache_write_5m: '3.75', cache_write_1h: '6', web_search_requests: '0.01' } };
  const ok = parseCatalog({ ...withModel({ upstream_prices: up }), upstream_currency: 'USD' });
  assert.equal(ok.upstreamCurrency, 'USD');
  // in µ$: not multiplied by the credit rate (10) even though price_unit is "currency"
  assert.equal(ok.models[0]?.upstreamRates?.standard.tokens.cache_read, 300_000n);
  assert.equal(ok.models[0]?.upstreamRates?.units.web_search_requests, 10_000n);
  assert.equal(ok.models[1]?.upstreamRates, undefined);
  assert.deepEqual(problems(withModel({ upstream_prices: up })), ['models[0].upstream_prices: needs "upstream_currency" at the top level (e.g. "USD")']);
  assert.deepEqual(problems({ ...withModel({ upstream_prices: up }), upstream_currency: 'usd' }), ['upstream_currency: expected an ISO 4217 currency code like "USD"']);
  assert.deepEqual(problems({ ...withModel({ upstream_prices: { prices: { ...up.prices, input: '0.0000001' } } }), upstream_currency: 'USD' }), [
    'models[0].upstream_prices.prices.input: 0.0000001 currency units per million tokens is not a whole number of micro-units per million tokens',
  ]);
});

test('multipliers: positive exact factor, a condition, what they apply to, models that exist', () => {
  const ok = parseCatalog({
    ...base(),
    multipliers: {
      batch: { factor: '0.5', when: { service_tier: 'batch' } },
      us_geo: { factor: '1.1', when: { inference_geo: 'us' }, models: ['a-alias'], applies_to: 'all' },
    },
  });
  assert.deepEqual(ok.multipliers.map((m) => [m.name, m.factor.num, m.factor.den, m.appliesTo, m.models === null ? null : [...m.models]]), [
    ['batch', 5n, 10n, 'tokens', null],
    ['us_geo', 11n, 10n, 'all', ['a']],
  ]);
  const bad = (m: Record<string, unknown>) => problems({ ...base(), multipliers: { x: m } });
  assert.deepEqual(bad({ factor: '0', when: { speed: 'fast' } }), ['multipliers.x.factor: must be greater than zero']);
  assert.deepEqual(bad({ factor: '-1', when: { speed: 'fast' } }), ['multipliers.x.factor: must not be negative']);
  assert.deepEqual(bad({ factor: '1.0000001', when: { speed: 'fast' } }), ['multipliers.x.factor: at most 6 decimal places']);
  assert.deepEqual(bad({ factor: 1.1, when: { speed: 'fast' } }), ['multipliers.x.factor: expected a decimal string']);
  assert.deepEqual(bad({ factor: '2', when: {} }), ['multipliers.x.when: name at least one of "service_tier", "inference_geo", "speed"']);
  assert.deepEqual(bad({ factor: '2', when: { region: 'eu' } }), [
    'multipliers.x.when: Unrecognized key: "region"',
    'multipliers.x.when: name at least one of "service_tier", "inference_geo", "speed"',
  ]);
  assert.deepEqual(bad({ factor: '2', when: { speed: 'fast' }, applies_to: 'everything' }), ['multipliers.x.applies_to: expected "tokens", "units" or "all"']);
  assert.deepEqual(bad({ factor: '2', when: { speed: 'fast' }, models: ['a', 'nope'] }), ['multipliers.x.models[1]: no model "nope" in this catalog (use an id or alias)']);
  assert.deepEqual(problems({ ...base(), multipliers: { 'US Geo': { factor: '2', when: { speed: 'fast' } } } }), [
    'multipliers.US Geo: invalid name: expected a short lowercase name like "vip" or "us_geo"',
  ]);
});

test('price lists: a factor per group of models, "default" reserved, models must exist', () => {
  const ok = parseCatalog({ ...base(), price_lists: { vip: { multiplier: '0.8' }, partner: { multiplier: '0.9', models: ['b'] } } });
  assert.deepEqual(Object.keys(ok.priceLists), ['vip', 'partner']);
  assert.equal(ok.priceLists['vip']?.models, null);
  assert.deepEqual([...(ok.priceLists['partner']?.models ?? [])], ['b']);
  assert.deepEqual(problems({ ...base(), price_lists: { default: { multiplier: '0.8' } } }), ['price_lists: "default" is the catalog itself and cannot be redefined']);
  assert.deepEqual(problems({ ...base(), price_lists: { vip: { multiplier: '0' } } }), ['price_lists.vip.multiplier: must be greater than zero']);
  assert.deepEqual(problems({ ...base(), price_lists: { vip: { multiplier: '0.8', models: ['zz'] } } }), ['price_lists.vip.models[0]: no model "zz" in this catalog (use an id or alias)']);
});

test('unpriced policy and unit hold bounds', () => {
  const ok = parseCatalog({ ...base(), unpriced: 'refuse', unit_hold_bounds: { web_search_requests: 20 } });
  assert.equal(ok.unpriced, 'refuse');
  assert.deepEqual(ok.unitHoldBounds, { web_search_requests: 20 });
  assert.equal(parseCatalog(base()).unpriced, 'record');
  assert.deepEqual(problems({ ...base(), unpriced: 'free' }), ['unpriced: expected "record" or "refuse"']);
  assert.deepEqual(problems({ ...base(), unit_hold_bounds: { web_search_requests: -1 } }), ['unit_hold_bounds.web_search_requests: must be at least 1']);
  assert.deepEqual(problems({ ...base(), unit_hold_bounds: { web_search_requests: 1.5 } }), ['unit_hold_bounds.web_search_requests: expected a whole number']);
  assert.deepEqual(problems({ ...base(), unit_hold_bounds: { searches: 1 } }), ['unit_hold_bounds: Unrecognized key: "searches"']);
});

test('shipped catalogs: web search, tiers, multipliers, fast mode, upstream prices and bounds as documented', () => {
  const cny = loadCatalogFile(bundledCatalogPath('cny'));
  const usd = loadCatalogFile(bundledCatalogPath('usd'));
  for (const c of [cny, usd]) {
    assert.equal(c.upstreamCurrency, 'USD');
    assert.equal(c.unpriced, 'record');
    assert.deepEqual(c.unitHoldBounds, { web_search_requests: 50, web_fetch_requests: 50 });
    assert.deepEqual(c.multipliers.map((m) => [m.name, m.factor.text, m.appliesTo, m.when]), [
      ['batch', '0.5', 'tokens', { service_tier: 'batch' }],
      ['us_geo', '1.1', 'tokens', { inference_geo: 'us' }],
    ]);
    assert.equal(c.priceLists['vip']?.factor.text, '0.8');
    for (const m of c.models) {
      assert.equal(m.rates.units.web_search_requests, c === cny ? 240_000n : 2_000_000n, m.id); // ¥0.024 / 2 credits
      assert.equal(m.rates.units.web_fetch_requests, 0n, m.id);
      assert.equal(m.rates.units.code_execution_seconds, undefined, m.id);
      assert.equal(m.upstreamRates?.units.web_search_requests, 10_000n, m.id); // $0.01
      const lc = m.rates.standard.tiers.map((t) => t.name);
      assert.deepEqual(lc, /^claude-sonnet-4-(2025|5)/.test(m.id) ? ['long_context'] : [], m.id);
      assert.equal(m.rates.fast !== undefined, m.id === 'claude-opus-4-6', m.id);
    }
    const sonnet45 = c.models.find((m) => m.id.startsWith('claude-sonnet-4-5'));
    const tier = sonnet45?.rates.standard.tiers[0];
    const std = sonnet45?.rates.standard.tokens;
    assert.ok(tier && std);
    // input-side ×2, output ×1.5
    assert.deepEqual([tier.tokens.input, tier.tokens.cache_read, tier.tokens.cache_write_5m, tier.tokens.cache_write_1h, tier.tokens.output * 2n],
      [std.input * 2n, std.cache_read * 2n, std.cache_write_5m * 2n, std.cache_write_1h * 2n, std.output * 3n]);
  }
  assert.deepEqual([...(cny.multipliers[1]?.models ?? [])], ['claude-sonnet-4-6', 'claude-opus-4-6']);
  assert.deepEqual([...(usd.multipliers[1]?.models ?? [])], ['claude-opus-4-6', 'claude-opus-4-7', 'claude-sonnet-4-6']);
});

test('content id: same prices, same id; any change, a new id; whitespace and key order do not matter', () => {
  const a = parseCatalog(base());
  const b = parseCatalog(JSON.parse(JSON.stringify(base(), null, 4)) as unknown);
  const reordered = { models: base().models, price_unit: 'currency', name: 'test', credit: { credits_per_unit: '10', currency: 'CNY' }, version: 1 };
  assert.match(a.contentId, /^[0-9a-f]{12}$/);
  assert.equal(b.contentId, a.contentId);
  assert.equal(parseCatalog(reordered).contentId, a.contentId);
  assert.equal(parseCatalog(withModel({ aliases: ['a-alias'] })).contentId, a.contentId); // defaults applied before hashing
  assert.notEqual(parseCatalog(withModel({ prices: { ...TOKENS, input: '1.01' } })).contentId, a.contentId);
  // the stored document re-parses to the same catalog
  assert.equal(parseCatalog(a.document).contentId, a.contentId);
  assert.ok(Object.isFrozen(a.document));
});

test('modelPricing lists a model\'s prices per dimension in credits; requestUnpriced names what would go unpriced', () => {
  const cny = loadCatalogFile(bundledCatalogPath('cny'));
  const opus = cny.models.find((m) => m.id === 'claude-opus-4-6');
  const sonnet45 = cny.models.find((m) => m.id === 'claude-sonnet-4-5-20250929');
  assert.ok(opus && sonnet45);
  const p = modelPricing(cny, sonnet45);
  // ¥7.20/MTok = 72 credits; ¥0.024 per search = 0.24 credits
  assert.deepEqual(p.per_million_tokens, { input: '72', output: '360', cache_read: '7.2', cache_write_5m: '90', cache_write_1h: '144' });
  assert.deepEqual(p.per_unit, { web_search_requests: '0.24', web_fetch_requests: '0' });
  assert.deepEqual(p.tiers, [{ name: 'long_context', above_input_tokens: 200000, per_million_tokens: { input: '144', output: '540', cache_read: '14.4', cache_write_5m: '180', cache_write_1h: '288' } }]);
  assert.equal(p.fast, null);
  assert.deepEqual(p.multipliers.map((m) => m.name), ['batch']);
  const o = modelPricing(cny, opus);
  assert.equal(o.fast?.per_million_tokens.output, '9000');
  assert.deepEqual(o.multipliers.map((m) => [m.name, m.factor]), [['batch', '0.5'], ['us_geo', '1.1']]);
  assert.deepEqual(requestUnpriced(sonnet45, { speed: 'fast', units: ['web_search_requests', 'code_execution_seconds'] }), ['code_execution_seconds', 'speed:fast']);
  assert.deepEqual(requestUnpriced(opus, { speed: 'fast', units: ['web_search_requests'] }), []);
});

test('catalog typos that would undercharge are refused: a unit hold bound below 1, a tier cheaper than what it replaces', () => {
  // 0 would send max_uses 0 upstream and hold nothing for a declared tool
  assert.deepEqual(problems({ ...base(), unit_hold_bounds: { web_search_requests: 0 } }), ['unit_hold_bounds.web_search_requests: must be at least 1']);
  assert.equal(parseCatalog({ ...base(), unit_hold_bounds: { web_search_requests: 1 } }).unitHoldBounds.web_search_requests, 1);
  // base cache_read 0.1; tier input 0.5 < 1 and a second tier's output 3 < the first tier's 4
  const tier = (name: string, above: number, prices: Record<string, string>) => ({ name, above_input_tokens: above, prices: { ...TOKENS, ...prices } });
  assert.deepEqual(problems(withModel({ tiers: [tier('long_context', 200_000, { input: '0.5', output: '4' }), tier('huge', 500_000, { input: '2', output: '3' })] })), [
    'models[0].tiers[0].prices.input: 0.5 is below the base price (1): a tier may not be cheaper than what it replaces',
    "models[0].tiers[1].prices.output: 3 is below the previous tier's price (4): a tier may not be cheaper than what it replaces",
  ]);
  assert.deepEqual(problems(withModel({ fast: { prices: { ...TOKENS, input: '6' }, tiers: [tier('long_context', 1, { input: '5' })] } })), [
    'models[0].fast.tiers[0].prices.input: 5 is below the base price (6): a tier may not be cheaper than what it replaces',
  ]);
  // equal to the base is allowed
  assert.equal(parseCatalog(withModel({ tiers: [tier('flat', 1, {})] })).models[0]?.rates.standard.tiers[0]?.tokens.input, 10_000_000n);
});

test('price lists assigned to accounts that a catalog lacks: named with their account count; default and null are the catalog', () => {
  const doc = { ...base(), price_lists: { gold: { multiplier: '0.9' } } };
  const c = parseCatalog(doc);
  assert.deepEqual(missingPriceLists(c, ['vip', null, 'gold', 'default', undefined, 'vip', 'bronze']), [{ list: 'bronze', accounts: 1 }, { list: 'vip', accounts: 2 }]);
  assert.deepEqual(missingPriceLists(c, ['gold', null]), []);
});
