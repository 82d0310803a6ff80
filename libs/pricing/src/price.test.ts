// The price rules as a table of hand-computed cases over the two shipped catalogs.
// Prices used below, in micro-credits (µc) per million tokens unless marked "per unit":
//   cny (¥1 = 10 credits; ¥x/MTok = 10x credits = 10x·10⁶ µc/MTok):
//     sonnet-4-5  in 72e6  out 360e6  cr 7.2e6  w5m 90e6  w1h 144e6   web search 240,000 µc per unit
//       long_context (>200,000 input-side): in 144e6  out 540e6  cr 14.4e6  w5m 180e6  w1h 288e6
//     sonnet-4-6  in 180e6 out 900e6  cr 18e6   w5m 225e6 w1h 360e6
//     opus-4-6    in 300e6 out 1500e6 ...; fast: in 1800e6 out 9000e6 cr 180e6 w5m 2250e6 w1h 3600e6
//       fast long_context: in 3600e6 out 13500e6 ...
//     haiku-4-5   in 24e6  out 120e6  cr 2.4e6  w5m 30e6  w1h 48e6
//   usd (prices in credits/MTok; n credits = n·10⁶ µc):
//     sonnet-4-5  in 883e6 out 4412e6 cr 89e6 w5m 1103e6 w1h 1765e6   web search 2,000,000 µc per unit
//       long_context: in 1766e6 out 6618e6 ...
//     sonnet-4-6  same as sonnet-4-5, no tier;  opus-4-7 in 1471e6 out 7353e6;  haiku-4-5 in 295e6 out 1471e6
//   multipliers: batch 0.5 (tokens), us_geo 1.1 (tokens; 4.6+ models); price list vip 0.8 (everything)
//   upstream (µ$ per MTok): sonnet in 3e6 out 15e6 cr 0.3e6; long_context in 6e6 out 22.5e6 cr 0.6e6; web search 10,000 µ$ per unit
// cost = ⌈ Σ quantity × price / 10⁶ (tokens) or quantity × price (units), times factors ⌉, once per request.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bundledCatalogPath, loadCatalogFile, parseCatalog } from './catalog.ts';
import type { Catalog, CatalogModel } from './catalog.ts';
import { PriceBook } from './book.ts';
import { quantities } from './dimensions.ts';
import type { Dimension } from './dimensions.ts';
import { HoldBoundError, advisorOutputTokens, advisorTools, holdBound, priceRequest, requestFallbacks } from './price.ts';
import type { PricedRequest, PricingContext, PriceVersion } from './price.ts';
import { resolveModel } from './resolve.ts';

const cny = new PriceBook(loadCatalogFile(bundledCatalogPath('cny'))).current();
const usd = new PriceBook(loadCatalogFile(bundledCatalogPath('usd'))).current();

function model(v: PriceVersion, name: string) {
  const m = resolveModel(v.catalog, name)?.model;
  assert.ok(m, name);
  return m;
}

interface Case {
  name: string;
  v: PriceVersion;
  model: string;
  q: Partial<Record<Dimension, number>>;
  ctx?: Omit<PricingContext, 'model'>;
  cost: bigint;
  check?: (r: PricedRequest) => void;
}

const CASES: Case[] = [
  {
    name: 'issue example 1: three web searches on sonnet-4-5 (cny)',
    v: cny, model: 'claude-sonnet-4-5', q: { input: 2000, output: 300, web_search_requests: 3 },
    // 2,000×72 + 300×360 = 144,000 + 108,000 = 252,000 tokens; 3 × 240,000 = 720,000 searches → 972,000
    cost: 972_000n,
    check: (r) => {
      assert.equal(r.unitPrices['web_search_requests'], '240000');
      // upstream: 2,000×3 + 300×15 = 10,500 µ$; 3 × 10,000 = 30,000 → 40,500 µ$ ($0.0405)
      assert.equal(r.upstreamCostMicros, 40_500n);
      assert.equal(r.upstreamCurrency, 'USD');
      assert.deepEqual(r.lines.map((l) => [l.dimension, l.quantity, l.unitPrice, l.amount]), [
        ['input', 2000, '72000000', '144000'], ['output', 300, '360000000', '108000'], ['web_search_requests', 3, '240000', '720000'],
      ]);
    },
  },
  {
    name: 'issue example 2: US-only inference on sonnet-4-6 (cny) is 1.1×',
    v: cny, model: 'claude-sonnet-4-6', q: { input: 1000, output: 200 }, ctx: { inferenceGeo: 'us' },
    // (1,000×180 + 200×900) × 1.1 = 360,000 × 1.1 = 396,000
    cost: 396_000n,
    check: (r) => {
      assert.deepEqual(r.multipliers, ['us_geo']);
      assert.equal(r.unitPrices['input'], '198000000'); // 180e6 × 1.1
      assert.equal(r.unitPrices['output'], '990000000');
      assert.equal(r.upstreamCostMicros, 6_600n); // (1,000×3 + 200×15) × 1.1 = 6,600 µ$
    },
  },
  {
    name: 'global inference on sonnet-4-6 (cny): no multiplier',
    v: cny, model: 'claude-sonnet-4-6', q: { input: 1000, output: 200 }, ctx: { inferenceGeo: 'global' },
    cost: 360_000n, // 180,000 + 180,000
    check: (r) => assert.deepEqual(r.multipliers, []),
  },
  {
    name: 'us geo reported on sonnet-4-5 (cny): the multiplier is for 4.6+ models only',
    v: cny, model: 'claude-sonnet-4-5', q: { input: 1000, output: 200 }, ctx: { inferenceGeo: 'us' },
    cost: 144_000n, // 1,000×72 + 200×360 = 72,000 + 72,000
    check: (r) => assert.deepEqual(r.multipliers, []),
  },
  {
    name: 'long-context tier on sonnet-4-5 (cny): cache reads count toward 200,000 and every token moves to the tier',
    v: cny, model: 'claude-sonnet-4-5', q: { input: 150_000, cache_read: 50_001, output: 1000 },
    // input-side 200,001 > 200,000: 150,000×144 = 21,600,000; 50,001×14.4 = 720,014.4; 1,000×540 = 540,000
    // Σ = 22,860,014.4 → ⌈⌉ 22,860,015
    cost: 22_860_015n,
    check: (r) => {
      assert.equal(r.tier, 'long_context');
      assert.equal(r.lines.find((l) => l.dimension === 'cache_read')?.amount, '720014.4');
      // upstream: 150,000×6 + 50,001×0.6 + 1,000×22.5 = 900,000 + 30,000.6 + 22,500 = 952,500.6 → 952,501 µ$
      assert.equal(r.upstreamCostMicros, 952_501n);
    },
  },
  {
    name: 'long-context tier boundary: exactly 200,000 input-side tokens stays at base prices (cny sonnet-4-5)',
    v: cny, model: 'claude-sonnet-4-5', q: { input: 200_000, output: 1000 },
    cost: 14_760_000n, // 200,000×72 = 14,400,000 + 1,000×360 = 360,000
    check: (r) => assert.equal(r.tier, null),
  },
  {
    name: 'long-context tier counts both cache-write TTLs (cny sonnet-4-5), 1 h priced above 5 m',
    v: cny, model: 'claude-sonnet-4-5', q: { input: 1, cache_write_5m: 100_000, cache_write_1h: 100_000 },
    cost: 46_800_144n, // 200,001 input-side: 1×144 + 100,000×180 + 100,000×288 = 144 + 18,000,000 + 28,800,000
  },
  {
    name: 'long-context tier on sonnet-4 (cny), the other model of the family',
    v: cny, model: 'claude-sonnet-4-0', q: { input: 250_000, output: 10 },
    cost: 36_005_400n, // 250,000×144 = 36,000,000 + 10×540 = 5,400
  },
  {
    name: 'no tier on sonnet-4-6 (cny): 1M context at standard prices',
    v: cny, model: 'claude-sonnet-4-6', q: { input: 300_000 },
    cost: 54_000_000n, // 300,000×180
    check: (r) => assert.equal(r.tier, null),
  },
  {
    name: 'batch tier halves token prices (cny sonnet-4-6)',
    v: cny, model: 'claude-sonnet-4-6', q: { input: 1000, output: 200 }, ctx: { serviceTier: 'batch' },
    cost: 180_000n, // 360,000 × 0.5
    check: (r) => assert.deepEqual(r.multipliers, ['batch']),
  },
  {
    name: 'batch and US geo stack (cny sonnet-4-6): 0.5 × 1.1',
    v: cny, model: 'claude-sonnet-4-6', q: { input: 1000, output: 200 }, ctx: { serviceTier: 'batch', inferenceGeo: 'us' },
    cost: 198_000n, // 360,000 × 0.55
    check: (r) => {
      assert.deepEqual(r.multipliers, ['batch', 'us_geo']);
      assert.equal(r.upstreamCostMicros, 3_300n); // (3,000 + 3,000) × 0.55 µ$
    },
  },
  {
    name: 'batch does not discount web searches (cny sonnet-4-5)',
    v: cny, model: 'claude-sonnet-4-5', q: { input: 2000, output: 300, web_search_requests: 3 }, ctx: { serviceTier: 'batch' },
    cost: 846_000n, // 252,000 × 0.5 = 126,000 + 720,000
  },
  {
    name: 'fast mode uses its own table (cny opus-4-6)',
    v: cny, model: 'claude-opus-4-6', q: { input: 1000, output: 100 }, ctx: { speed: 'fast' },
    cost: 2_700_000n, // 1,000×1,800 + 100×9,000 = 1,800,000 + 900,000
    check: (r) => assert.equal(r.upstreamCostMicros, 45_000n), // 1,000×30 + 100×150 µ$
  },
  {
    name: 'fast mode with a long prompt uses the fast table\'s own tier (cny opus-4-6)',
    v: cny, model: 'claude-opus-4-6', q: { input: 200_001, output: 10 }, ctx: { speed: 'fast' },
    cost: 720_138_600n, // 200,001×3,600 = 720,003,600 + 10×13,500 = 135,000
    check: (r) => assert.equal(r.tier, 'long_context'),
  },
  {
    name: 'fast mode and US geo stack (cny opus-4-6)',
    v: cny, model: 'claude-opus-4-6', q: { input: 1000, output: 100 }, ctx: { speed: 'fast', inferenceGeo: 'us' },
    cost: 2_970_000n, // 2,700,000 × 1.1
  },
  {
    name: 'fast mode on a model without a fast table: standard prices, premium recorded as unpriced (cny sonnet-4-6)',
    v: cny, model: 'claude-sonnet-4-6', q: { input: 1000, output: 200 }, ctx: { speed: 'fast' },
    cost: 360_000n,
    check: (r) => assert.deepEqual(r.unpriced, ['speed:fast']),
  },
  {
    name: 'refusal before any output is charged 0 (cny haiku)',
    v: cny, model: 'claude-haiku-4-5', q: { input: 5000 }, ctx: { stopReason: 'refusal' },
    cost: 0n,
    check: (r) => {
      assert.deepEqual(r.lines, []);
      assert.equal(r.upstreamCostMicros, 0n);
    },
  },
  {
    name: 'refusal after output is charged as usual (cny haiku)',
    v: cny, model: 'claude-haiku-4-5', q: { input: 5000, output: 10 }, ctx: { stopReason: 'refusal', outputSeen: true },
    cost: 121_200n, // 5,000×24 + 10×120 = 120,000 + 1,200
  },
  {
    name: 'a fraction of a micro-credit rounds up (cny haiku cache read)',
    v: cny, model: 'claude-haiku-4-5', q: { cache_read: 1 },
    cost: 3n, // 1 × 2.4 = 2.4 → 3
  },
  {
    name: 'iterations round once per request, not once per iteration (cny)',
    v: cny, model: 'claude-sonnet-4-5', q: { cache_read: 2 },
    ctx: { iterations: [{ type: 'advisor_message', model: 'claude-haiku-4-5', quantities: quantities({ cache_read: 1 }) }] },
    // haiku 1×2.4 + sonnet-4-5 (the rest: 1 cache read) 1×7.2 = 9.6 → 10 (3 + 8 = 11 if rounded per iteration)
    cost: 10n,
    check: (r) => assert.deepEqual(r.iterations, [{ type: 'advisor_message', model: 'claude-haiku-4-5', catalogModel: 'claude-haiku-4-5-20251001', costMicros: 3n }]),
  },
  {
    name: 'web searches on sonnet-4-5 (usd): 2 credits each',
    v: usd, model: 'claude-sonnet-4-5', q: { input: 2000, output: 300, web_search_requests: 3 },
    cost: 9_089_600n, // 2,000×883 = 1,766,000 + 300×4,412 = 1,323,600 + 3×2,000,000
  },
  {
    name: 'US geo on opus-4-7 (usd)',
    v: usd, model: 'claude-opus-4-7', q: { input: 1000, output: 100 }, ctx: { inferenceGeo: 'us' },
    cost: 2_426_930n, // (1,471,000 + 735,300) × 1.1 = 2,206,300 × 1.1
  },
  {
    name: 'long-context tier on sonnet-4-5 (usd)',
    v: usd, model: 'claude-sonnet-4-5', q: { input: 300_000, output: 1000 },
    cost: 536_418_000n, // 300,000×1,766 = 529,800,000 + 1,000×6,618 = 6,618,000
  },
  {
    name: 'cache writes: 1 hour priced as 1 hour, not as 5 minutes (usd sonnet-4-5)',
    v: usd, model: 'claude-sonnet-4-5', q: { cache_write_5m: 1000, cache_write_1h: 1000 },
    cost: 2_868_000n, // 1,000×1,103 + 1,000×1,765
  },
  {
    name: 'price list vip 0.8 (usd haiku)',
    v: usd, model: 'claude-haiku-4-5', q: { input: 1000, output: 100 }, ctx: { priceList: 'vip' },
    cost: 353_680n, // (295,000 + 147,100) × 0.8 = 442,100 × 0.8
    check: (r) => {
      assert.equal(r.priceList, 'vip');
      assert.equal(r.upstreamCostMicros, 1_500n); // the list is the customer's price, not the upstream's: 1,000×1 + 100×5 µ$
    },
  },
  {
    name: 'price list and batch stack (usd haiku): 0.8 × 0.5',
    v: usd, model: 'claude-haiku-4-5', q: { input: 1000, output: 100 }, ctx: { priceList: 'vip', serviceTier: 'batch' },
    cost: 176_840n, // 442,100 × 0.4
  },
  {
    name: 'an unknown price list name is not applied and says so (usd haiku)',
    v: usd, model: 'claude-haiku-4-5', q: { input: 1000, output: 100 }, ctx: { priceList: 'gone' },
    cost: 442_100n,
    check: (r) => assert.equal(r.priceList, 'default'),
  },
  {
    name: 'fallback: priced at the serving model, not the requested one (usd opus-4-7 → sonnet-4-5)',
    v: usd, model: 'claude-opus-4-7', q: { input: 1000, output: 100 }, ctx: { servedModel: 'claude-sonnet-4-5-20250929' },
    cost: 1_324_200n, // 1,000×883 + 100×4,412 = 883,000 + 441,200 (opus would be 2,206,300)
    check: (r) => assert.equal(r.lines[0]?.model, 'claude-sonnet-4-5'),
  },
  {
    name: 'advisor iterations each at their own model (usd sonnet-4-6 executor, opus-4-7 advisor)',
    v: usd, model: 'claude-sonnet-4-6', q: { input: 1500, output: 150 },
    ctx: {
      iterations: [
        { type: 'message', model: 'claude-sonnet-4-6', quantities: quantities({ input: 1000, output: 100 }) },
        { type: 'advisor_message', model: 'claude-opus-4-7', quantities: quantities({ input: 500, output: 50 }) },
      ],
    },
    // sonnet 1,000×883 + 100×4,412 = 1,324,200; opus 500×1,471 + 50×7,353 = 735,500 + 367,650 = 1,103,150
    cost: 2_427_350n,
    check: (r) => assert.deepEqual(r.iterations.map((i) => i.costMicros), [1_324_200n, 1_103_150n]),
  },
  {
    name: 'unpriced dimension and unknown usage field are recorded, never silently free (usd sonnet-4-5)',
    v: usd, model: 'claude-sonnet-4-5', q: { input: 100, code_execution_seconds: 30 }, ctx: { unknown: { image_generation_requests: 2, zero_field: 0 } },
    cost: 88_300n, // 100×883; code execution has no price in usd.json
    check: (r) => assert.deepEqual(r.unpriced, ['image_generation_requests', 'code_execution_seconds']),
  },
  {
    name: 'an iteration at a model the catalog does not know: priced at the request\'s model and flagged (usd)',
    v: usd, model: 'claude-sonnet-4-5', q: { input: 100 },
    ctx: { iterations: [{ type: 'message', model: 'claude-mystery-9', quantities: quantities({ input: 100 }) }] },
    cost: 88_300n,
    check: (r) => {
      assert.deepEqual(r.unpriced, ['model:claude-mystery-9']);
      assert.equal(r.iterations[0]?.catalogModel, null);
    },
  },
  {
    name: 'web fetch is priced at zero, which is not unpriced (usd sonnet-4-5)',
    v: usd, model: 'claude-sonnet-4-5', q: { input: 100, web_fetch_requests: 5 },
    cost: 88_300n,
    check: (r) => {
      assert.deepEqual(r.unpriced, []);
      assert.equal(r.lines.find((l) => l.dimension === 'web_fetch_requests')?.amount, '0');
    },
  },
];

test('price rules: at least 25 hand-computed cases over both catalogs', () => {
  assert.ok(CASES.length >= 25, `${CASES.length} cases`);
});

for (const c of CASES) {
  test(`price rule: ${c.name}`, () => {
    const r = priceRequest(c.v, quantities(c.q), { model: model(c.v, c.model), ...c.ctx });
    assert.equal(r.costMicros, c.cost);
    assert.equal(r.priceVersion, c.v.id);
    c.check?.(r);
  });
}

test('seed token prices are what priceRequest charges: rates agree with the legacy prices field', () => {
  for (const v of [cny, usd]) {
    for (const m of v.catalog.models) {
      assert.deepEqual(
        [m.rates.standard.tokens.input, m.rates.standard.tokens.output, m.rates.standard.tokens.cache_read, m.rates.standard.tokens.cache_write_5m, m.rates.standard.tokens.cache_write_1h],
        [m.prices.input, m.prices.output, m.prices.cacheRead, m.prices.cacheWrite5m, m.prices.cacheWrite1h],
        m.id,
      );
    }
  }
});

test('priceRequest rejects quantities that are not non-negative integers', () => {
  const m = model(cny, 'claude-haiku-4-5');
  assert.throws(() => priceRequest(cny, { ...quantities({}), input: -1 }, { model: m }), RangeError);
  assert.throws(() => priceRequest(cny, { ...quantities({}), output: 1.5 }, { model: m }), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Holds

test('hold covers the long-context tier: every input token at the tier\'s dearest input-side class (cny sonnet-4-5)', () => {
  const m = model(cny, 'claude-sonnet-4-5');
  // 300,000 × 288 (tier cache write 1 h) = 86,400,000 + 1,000 × 540 = 540,000
  const hold = holdBound(cny, m, { inputTokens: 300_000, maxTokens: 1000, serviceTier: null, inferenceGeo: null, speed: null });
  assert.equal(hold, 86_940_000n);
  assert.equal(priceRequest(cny, quantities({ cache_write_1h: 300_000, output: 1000 }), { model: m }).costMicros, hold);
});

test('hold assumes a multiplier above 1 when its condition is not known yet, and never one below 1 (cny sonnet-4-6)', () => {
  const m = model(cny, 'claude-sonnet-4-6');
  // 1,000 × 360 (cache write 1 h) + 200 × 900 = 540,000; geo unknown → × 1.1 = 594,000; batch (0.5) not assumed
  assert.equal(holdBound(cny, m, { inputTokens: 1000, maxTokens: 200 }), 594_000n);
  assert.equal(holdBound(cny, m, { inputTokens: 1000, maxTokens: 200, inferenceGeo: null }), 540_000n);
  assert.equal(holdBound(cny, m, { inputTokens: 1000, maxTokens: 200, inferenceGeo: 'us', serviceTier: 'batch' }), 297_000n);
});

test('hold covers fast mode unless the request is known to be standard speed (cny opus-4-6)', () => {
  const m = model(cny, 'claude-opus-4-6');
  // fast: 1,000 × 3,600 + 100 × 9,000 = 4,500,000; × 1.1 (geo unknown) = 4,950,000
  assert.equal(holdBound(cny, m, { inputTokens: 1000, maxTokens: 100 }), 4_950_000n);
  // standard, global: 1,000 × 600 + 100 × 1,500 = 750,000
  assert.equal(holdBound(cny, m, { inputTokens: 1000, maxTokens: 100, speed: null, inferenceGeo: null }), 750_000n);
});

test('hold covers web searches: max_uses, or the catalog bound when the tool has none (cny sonnet-4-5)', () => {
  const m = model(cny, 'claude-sonnet-4-5');
  assert.equal(holdBound(cny, m, { inputTokens: 0, maxTokens: 0, units: { web_search_requests: 3 } }), 720_000n); // 3 × 240,000
  assert.equal(holdBound(cny, m, { inputTokens: 0, maxTokens: 0, units: { web_search_requests: null } }), 12_000_000n); // 50 × 240,000
  // 1,000 × 144 + 100 × 360 = 180,000 + 720,000
  assert.equal(holdBound(cny, m, { inputTokens: 1000, maxTokens: 100, units: { web_search_requests: 3 } }), 900_000n);
});

test('hold applies the account\'s price list and adds further sampling at other models (usd)', () => {
  const haiku = model(usd, 'claude-haiku-4-5');
  const opus = model(usd, 'claude-opus-4-7');
  // haiku: 1,000 × 589 + 100 × 1,471 = 736,100 × 0.8 = 588,880
  assert.equal(holdBound(usd, haiku, { inputTokens: 1000, maxTokens: 100, priceList: 'vip', inferenceGeo: null }), 588_880n);
  // + opus advisor: 500 × 2,942 + 50 × 7,353 = 1,471,000 + 367,650 = 1,838,650; × 0.8 = 1,470,920 → 2,059,800
  assert.equal(
    holdBound(usd, haiku, { inputTokens: 1000, maxTokens: 100, priceList: 'vip', inferenceGeo: null, extra: [{ model: opus, inputTokens: 500, maxTokens: 50 }] }),
    2_059_800n,
  );
});

test('hold is never below the cost of any usage within its bounds (both catalogs, every model, sampled usages)', () => {
  const shapes: Array<Partial<Record<Dimension, number>>> = [
    { input: 1 }, { cache_read: 7 }, { cache_write_5m: 13 }, { cache_write_1h: 17, output: 3 },
    { input: 199_999, cache_read: 2, output: 64_000 }, { cache_write_1h: 250_000, output: 1 }, { input: 120_000, cache_write_5m: 80_001 },
  ];
  const contexts: Array<Omit<PricingContext, 'model'>> = [{}, { inferenceGeo: 'us' }, { serviceTier: 'batch' }, { speed: 'fast' }, { speed: 'fast', inferenceGeo: 'us' }];
  for (const v of [cny, usd]) {
    for (const m of v.catalog.models) {
      for (const s of shapes) {
        const q = quantities({ ...s, web_search_requests: 2 });
        const bound = { inputTokens: (q.input + q.cache_read + q.cache_write_5m + q.cache_write_1h), maxTokens: q.output, units: { web_search_requests: 2 } };
        const hold = holdBound(v, m, bound);
        for (const ctx of contexts) {
          const cost = priceRequest(v, q, { model: m, ...ctx }).costMicros;
          assert.ok(cost <= hold, `${m.id} ${JSON.stringify(s)} ${JSON.stringify(ctx)}: ${cost} > ${hold}`);
        }
      }
    }
  }
});

function catalogWithoutBounds(): Catalog {
  return parseCatalog({
    version: 1, name: 't', credit: { currency: 'USD', unit_per_credit: '0.005' }, price_unit: 'credits',
    models: [{ id: 'm', prices: { input: '1', output: '1', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1', web_search_requests: '2' } }],
  });
}

test('hold refuses a priced server tool without max_uses when the catalog gives no bound', () => {
  const v = new PriceBook(catalogWithoutBounds()).current();
  const m = v.catalog.models[0];
  assert.ok(m);
  assert.throws(() => holdBound(v, m, { inputTokens: 1, maxTokens: 1, units: { web_search_requests: null } }), HoldBoundError);
  assert.equal(holdBound(v, m, { inputTokens: 1, maxTokens: 1, units: { web_search_requests: 4 } }), 8_000_002n); // 1 + 1 + 4 × 2,000,000
  // an unpriced tool needs no bound: it charges nothing
  assert.equal(holdBound(v, m, { inputTokens: 1, maxTokens: 1, units: { code_execution_seconds: null } }), 2n);
});

/** The shipped cny catalog with `patch` applied to its document (e.g. fallback_models on a model). */
function cnyWith(patch: (doc: { models: Array<Record<string, unknown>> } & Record<string, unknown>) => void): PriceVersion {
  const doc = structuredClone(cny.catalog.document) as { models: Array<Record<string, unknown>> } & Record<string, unknown>;
  patch(doc);
  return new PriceBook(parseCatalog(doc)).current();
}

test('serving conditions dearer than the requested model are held: catalog fallback_models, the request\'s own fallbacks, advisor tools (cny haiku-4-5)', () => {
  const std = { inputTokens: 1000, maxTokens: 100, speed: 'standard', inferenceGeo: null } as const;
  // haiku alone: 1,000 × 48 (cache write 1 h) + 100 × 120 = 60,000
  assert.equal(holdBound(cny, model(cny, 'claude-haiku-4-5'), std), 60_000n);
  // catalog: haiku may be served by opus-4-6 → 1,000 × 600 + 100 × 1,500 = 750,000 (the dearest of the two)
  const v = cnyWith((d) => { d.models.find((m) => m.id === 'claude-haiku-4-5-20251001')!.fallback_models = ['claude-opus-4-6']; });
  const haiku = model(v, 'claude-haiku-4-5');
  assert.deepEqual([...haiku.fallbackModels], ['claude-opus-4-6']);
  assert.equal(holdBound(v, haiku, std), 750_000n);
  // what the fallback costs when it serves: exactly the hold, not capped
  assert.equal(priceRequest(v, quantities({ cache_write_1h: 1000, output: 100 }), { model: haiku, servedModel: 'claude-opus-4-6' }).costMicros, 750_000n);
  // units are held at the dearest candidate too: + 3 × 240,000
  assert.equal(holdBound(v, haiku, { ...std, units: { web_search_requests: 3 } }), 1_470_000n);
  // the request's own fallbacks, an attempt each after haiku's: sonnet-4-6 1,000 × 360 + 100 × 900
  // = 450,000; an unknown one is priced at whichever model served the request, so held at the
  // dearest of them, sonnet-4-6 again: 60,000 + 450,000 + 450,000 (alone, at haiku: 60,000)
  assert.equal(holdBound(cny, model(cny, 'claude-haiku-4-5'), { ...std, fallbacks: ['claude-sonnet-4-6', 'gpt-x'] }), 960_000n);
  assert.equal(holdBound(cny, model(cny, 'claude-haiku-4-5'), { ...std, fallbacks: ['gpt-x'] }), 120_000n);
  // advisor opus-4-6, max_uses 2: each call 1,000 × 600 + 4,096 × 1,500 = 6,744,000; + 60,000
  const h = model(cny, 'claude-haiku-4-5');
  assert.equal(holdBound(cny, h, { ...std, advisors: [{ model: 'claude-opus-4-6', maxUses: 2 }] }), 13_548_000n);
  // no max_uses: the catalog's advisor_hold.max_uses (10 by default)
  assert.equal(holdBound(cny, h, { ...std, advisors: [{ model: 'claude-opus-4-6', maxUses: null }] }), 67_500_000n);
  // advisor_hold set in the catalog: 1 call × (600,000 + 1,000 × 1,500) + 60,000
  const tight = cnyWith((d) => { d.advisor_hold = { max_uses: 1, output_tokens: 1000 }; });
  assert.equal(holdBound(tight, model(tight, 'claude-haiku-4-5'), { ...std, advisors: [{ model: 'claude-opus-4-6', maxUses: null }] }), 2_160_000n);
});

test('request readers for the hold: advisor tools and fallbacks from a Messages body', () => {
  assert.deepEqual(advisorTools([
    { type: 'advisor_20260301', name: 'advisor', model: 'claude-opus-4-6', max_uses: 2 },
    { type: 'web_search_20250305', name: 'web_search' },
    { type: 'advisor_20260301', model: 5 },
    { type: 'advisor_20260301', name: 'advisor', model: 'm', max_uses: 0 },
    { type: 'advisor_20260301', name: 'advisor', model: 'n', max_tokens: 128_000 },
    { type: 'advisor_20260301', name: 'advisor', model: 'o', max_tokens: 1.5 },
    null,
  ]), [{ model: 'claude-opus-4-6', maxUses: 2, maxTokens: null }, { model: 'm', maxUses: null, maxTokens: null },
    { model: 'n', maxUses: null, maxTokens: 128_000 }, { model: 'o', maxUses: null, maxTokens: null }]);
  // every call's output in all: 2 × 4,096 (advisor_hold) + 10 × 128,000
  assert.equal(advisorOutputTokens(cny.catalog, [{ model: 'a', maxUses: 2, maxTokens: null }, { model: 'b', maxUses: null, maxTokens: 128_000 }]), 8_192 + 1_280_000);
  assert.deepEqual(advisorTools(undefined), []);
  assert.deepEqual(requestFallbacks([{ model: 'claude-opus-4-6' }, 'claude-sonnet-4-6', { model: 3 }, 7]), ['claude-opus-4-6', 'claude-sonnet-4-6']);
  assert.deepEqual(requestFallbacks('default'), []);
});

test('catalog fallback_models must name models of the catalog; advisor_hold bounds are validated', () => {
  const bad = structuredClone(cny.catalog.document) as { models: Array<Record<string, unknown>> } & Record<string, unknown>;
  bad.models[0]!.fallback_models = ['claude-opus-4-6', 'claude-nope'];
  assert.throws(() => parseCatalog(bad), (err: Error & { problems?: string[] }) => {
    assert.deepEqual(err.problems, ['models[0].fallback_models[1]: no model "claude-nope" in this catalog (use an id or alias)']);
    return true;
  });
  const zero = structuredClone(cny.catalog.document) as Record<string, unknown>;
  zero.advisor_hold = { max_uses: 0 };
  assert.throws(() => parseCatalog(zero), (err: Error & { problems?: string[] }) => {
    assert.deepEqual(err.problems, ['advisor_hold.max_uses: must be at least 1']);
    return true;
  });
  assert.deepEqual(cny.catalog.advisorHold, { maxUses: 10, outputTokens: 4096 });
});

test('long-context tier is judged per sampling step: 2 iterations of 150,000 are standard, one prompt of 300,000 is tiered (cny sonnet-4-5)', () => {
  const m = model(cny, 'claude-sonnet-4-5');
  const step = { type: 'message', model: 'claude-sonnet-4-5', quantities: quantities({ input: 150_000, output: 10 }) };
  // each step: 150,000×72 + 10×360 = 10,803,600; two = 21,607,200 (not 300,000×144 + 20×540)
  const two = priceRequest(cny, quantities({ input: 300_000, output: 20 }), { model: m, iterations: [step, step] });
  assert.equal(two.costMicros, 21_607_200n);
  // one prompt of 300,000: 300,000×144 + 20×540 = 43,200,000 + 10,800
  const one = priceRequest(cny, quantities({ input: 300_000, output: 20 }), { model: m });
  assert.deepEqual([one.costMicros, one.tier], [43_210_800n, 'long_context']);
});

/** cny plus `sonnet-premium`, a second entry selling claude-sonnet-4-6, at output ¥99 (990 µc per token) where claude-sonnet-4-6 sells it at ¥90. */
function premiumCatalog(): { version: PriceVersion; premium: CatalogModel } {
  const doc = structuredClone(loadCatalogFile(bundledCatalogPath('cny')).document) as { models: Array<Record<string, unknown>> };
  const base = doc.models.find((m) => m['id'] === 'claude-sonnet-4-6')!;
  doc.models.push({ ...structuredClone(base), id: 'sonnet-premium', display_name: 'Sonnet premium', thinking_variant: false, thinking: undefined,
    prices: { ...(base['prices'] as Record<string, string>), output: '99.00' } });
  const version = new PriceBook(parseCatalog(doc, 'premium')).current();
  return { version, premium: resolveModel(version.catalog, 'sonnet-premium')!.model };
}

test('a step or answer naming the requested model\'s own upstream model is priced at the requested catalog entry, also when a group\'s mapping sent it as another name and another entry sells that upstream model', () => {
  // cny plus `sonnet-premium`, selling claude-sonnet-4-6 at output ¥99 (990 µc per token) where
  // claude-sonnet-4-6 sells it at ¥90 (900); inference_geo global: no us-only factor
  const { version, premium } = premiumCatalog();
  const priced = (model: typeof premium, ctx: Partial<PricingContext>) => priceRequest(version, quantities({ input: 1_000, output: 1_000 }), {
    model, inferenceGeo: 'global', ...ctx,
  }).costMicros;
  // 1,000 × 180 + 1,000 × 990, whether the name came back as sent or as the catalog's
  assert.equal(priced(premium, { servedModel: 'claude-sonnet-4-6' }), 1_170_000n);
  const mapped = { ...premium, upstreamModel: 'relay-sonnet' };
  assert.equal(priced(mapped, { servedModel: 'relay-sonnet' }), 1_170_000n);
  // was 1,080,000: the name read as claude-sonnet-4-6's, the first entry selling it
  assert.equal(priced(mapped, { servedModel: 'claude-sonnet-4-6' }), 1_170_000n);
  assert.equal(priceRequest(version, quantities({}), {
    model: mapped, inferenceGeo: 'global', servedModel: 'claude-opus-4-6',
    iterations: [{ type: 'message', model: 'claude-sonnet-4-6', quantities: quantities({ input: 1_000, output: 1_000 }) }],
  }).costMicros, 1_170_000n);
});

test('a fallbacks entry reached only through a mapping rule is held at the dearest of the request\'s models and the rule\'s target: pricing may read its reported name as the requested entry\'s', () => {
  // cny plus `sonnet-premium` selling claude-sonnet-4-6 at output ¥99 (990 µc per token; input-side
  // dearest, the 1 h cache write, 360); `claude-sonnet-9` reaches claude-sonnet-4-6 (output 900)
  // only through the catalog's `claude-sonnet-*` rule, and the upstream may report the step as
  // claude-sonnet-4-6, which is the premium request's own upstream name
  const { version, premium } = premiumCatalog();
  // two attempts, each 1 × 360 + 1,000 × 990 (the entry held at claude-sonnet-4-6: 1,890,720)
  assert.equal(holdBound(version, premium, { inputTokens: 1, maxTokens: 1_000, inferenceGeo: 'global', speed: 'standard', fallbacks: [{ model: 'claude-sonnet-9', maxTokens: null }] }), 1_980_720n);
});
