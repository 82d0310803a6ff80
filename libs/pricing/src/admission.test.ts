// The admission policy's arithmetic over the shipped cny catalog (µc per token: sonnet-4-5
// input 72, output 360, cache write 1 h 144; opus-4-6 input 300, output 1,500, cache write 1 h
// 600, us_geo ×1.1 when the request does not name its geo) and one catalog with a fractional
// output price.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { bundledCatalogPath, loadCatalogFile, parseCatalog } from './catalog.ts';
import { PriceBook } from './book.ts';
import { holdBound, priceRequest, resolveServing } from './price.ts';
import type { HoldRequest, PriceVersion } from './price.ts';
import { resolveModel } from './resolve.ts';
import { quantities } from './dimensions.ts';
import { admission, type Admission } from './admission.ts';

const cny = new PriceBook(loadCatalogFile(bundledCatalogPath('cny'))).current();

/** What the terms reserve for t output tokens: base plus t laid over the segments (the ledger's admissionHoldAt). */
function heldAt(a: Admission, t: number): bigint {
  let held = a.base;
  let left = t;
  for (const x of a.segments) {
    const take = x.tokens !== null && x.tokens < left ? x.tokens : left;
    held += BigInt(take) * x.perOutputToken;
    left -= take;
  }
  return held;
}

function model(v: PriceVersion, name: string) {
  const m = resolveModel(v.catalog, name)?.model;
  assert.ok(m, name);
  return m;
}

test('admission terms: one piece with the input-side worst case as base and the dearest output rate per token, amount the full holdBound', () => {
  const m = model(cny, 'claude-sonnet-4-5');
  const req: HoldRequest = { inputTokens: 1_000, maxTokens: 64_000, speed: 'standard' };
  const a = admission(cny, m, req, 'clamp', 1_024);
  // base = 1,000 × 144 (cache write 1 h, the dearest input-side class) = 144,000 µc
  // amount = 144,000 + 64,000 × 360 = 23,184,000 µc
  assert.deepEqual(a, { policy: 'clamp', amount: 23_184_000n, base: 144_000n, segments: [{ perOutputToken: 360n, tokens: null }], maxTokens: 64_000, floorTokens: 1_024 });
  assert.equal(a.amount, holdBound(cny, m, req));
  // a floor above max_tokens is max_tokens
  assert.equal(admission(cny, m, { inputTokens: 1, maxTokens: 100 }, 'strict', 1_024).floorTokens, 100);
});

/** sonnet-4-6 at max_tokens 100,000 with an opus-4 fallback, 1,000 input tokens, geo named "global" (no us_geo factor). */
const WITH_OPUS4: HoldRequest = { inputTokens: 1_000, maxTokens: 100_000, speed: 'standard', inferenceGeo: 'global', fallbacks: ['claude-opus-4-0'] };

// Prices (cny, µc per token): sonnet-4-6 input-side 360 (cache write 1 h), output 900, 128,000
// out; opus-4 720 and 1,800, 32,000 out; haiku-4-5 48 and 120, 64,000 out.

test('fallback attempts: each fallbacks entry is an attempt of its own, reading the prompt and writing at most its own output limit', () => {
  const m = model(cny, 'claude-sonnet-4-6');
  const a = admission(cny, m, WITH_OPUS4, 'clamp', 1_024);
  // two prompts: 1,000 × 360 + 1,000 × 720
  assert.equal(a.base, 1_080_000n);
  // up to 32,000 tokens both write (900 + 1,800 per token), past that sonnet alone
  assert.deepEqual(a.segments, [{ perOutputToken: 2_700n, tokens: 32_000 }, { perOutputToken: 900n, tokens: null }]);
  // 1,080,000 + 100,000 × 900 + 32,000 × 1,800 = 1,080,000 + 90,000,000 + 57,600,000; the declined
  // sonnet attempt may have written all its 100,000 before opus-4 took over
  assert.equal(a.amount, 148_680_000n);
  assert.equal(holdBound(cny, m, WITH_OPUS4), 148_680_000n);
  assert.equal(heldAt(a, 100_000), 148_680_000n);
  // at 40,000: 1,080,000 + 40,000 × 900 + 32,000 × 1,800; at 20,000: 1,080,000 + 20,000 × 2,700
  assert.equal(holdBound(cny, m, { ...WITH_OPUS4, maxTokens: 40_000 }), 94_680_000n);
  assert.equal(heldAt(a, 40_000), 94_680_000n);
  assert.equal(holdBound(cny, m, { ...WITH_OPUS4, maxTokens: 20_000 }), 55_080_000n);
  assert.equal(heldAt(a, 20_000), 55_080_000n);
  // the catalog's fallback_models may serve the one attempt in the requested model's place: its
  // dearest, uncapped: 720,000 + 100,000 × 1,800
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-sonnet-4-6').fallback_models = ['claude-opus-4-20250514'];
  const withCatalogFallback = new PriceBook(parseCatalog(doc)).current();
  const { fallbacks: _, ...plain } = WITH_OPUS4;
  assert.equal(holdBound(withCatalogFallback, model(withCatalogFallback, 'claude-sonnet-4-6'), plain), 180_720_000n);
});

test('fallback attempts: an entry\'s own max_tokens and speed replace the request\'s for its attempt, and "default" is an attempt at the catalog\'s dearest', () => {
  const m = model(cny, 'claude-sonnet-4-6');
  // opus-4 at its own 10,000: 1,080,000 + 10,000 × 1,800 fixed, + 100,000 × 900
  const own = admission(cny, m, { ...WITH_OPUS4, fallbacks: [{ model: 'claude-opus-4-0', maxTokens: 10_000 }] }, 'clamp', 1);
  assert.deepEqual([own.base, own.segments, own.amount], [19_080_000n, [{ perOutputToken: 900n, tokens: null }], 109_080_000n]);
  // above its limit it still writes 32,000 at most (the gateway refuses such an entry first)
  assert.equal(holdBound(cny, m, { ...WITH_OPUS4, fallbacks: [{ model: 'claude-opus-4-0', maxTokens: 40_000 }] }), 148_680_000n);
  // opus-4-6 fast (3,600 input-side, 9,000 out) at the request's 8,000:
  // 360,000 + 8,000 × 900 + 3,600,000 + 8,000 × 9,000 = 7,560,000 + 75,600,000
  const small = { inputTokens: 1_000, maxTokens: 8_000, speed: 'standard', inferenceGeo: 'global' } as const;
  assert.equal(holdBound(cny, m, { ...small, fallbacks: [{ model: 'claude-opus-4-6', maxTokens: null, speed: 'fast' }] }), 83_160_000n);
  // standard: 7,560,000 + 600,000 + 8,000 × 1,500; absent, the request's speed decides
  assert.equal(holdBound(cny, m, { ...small, fallbacks: [{ model: 'claude-opus-4-6', maxTokens: null }] }), 20_160_000n);
  assert.equal(holdBound(cny, m, { ...small, speed: 'fast', fallbacks: [{ model: 'claude-opus-4-6', maxTokens: null }] }), 83_160_000n);
  // an entry at another speed than the request's: pricing applies the answer's one usage.speed
  // to every step, so each attempt is held at both tables (a breaker's: a fast request with a
  // standard opus-4-6 entry was held at standard for it and charged fast, ~959 credits short)
  assert.equal(holdBound(cny, m, { ...small, speed: 'fast', fallbacks: [{ model: 'claude-opus-4-6', maxTokens: null, speed: 'standard' }] }), 83_160_000n);
  assert.equal(holdBound(cny, m, { ...small, speed: 'fast', fallbacks: [{ model: 'claude-opus-4-6', maxTokens: null, speed: null }] }), 83_160_000n);
  // opus-4-6 asked at standard with an opus-4-6 fast entry: both attempts at fast,
  // 2 × (3,600,000 + 8,000 × 9,000); the same chain at one speed holds each at it
  const opus = model(cny, 'claude-opus-4-6');
  assert.equal(holdBound(cny, opus, { ...small, fallbacks: [{ model: 'claude-opus-4-6', maxTokens: null, speed: 'fast' }] }), 151_200_000n);
  assert.equal(holdBound(cny, opus, { ...small, fallbacks: [{ model: 'claude-opus-4-6', maxTokens: null, speed: 'standard' }] }), 2n * (600_000n + 12_000_000n));
  // "default": one attempt at the dearest input side and output of the catalog (opus-4's),
  // uncapped: 7,560,000 + 720,000 + 8,000 × 1,800
  assert.equal(holdBound(cny, m, { ...small, defaultFallbacks: true }), 22_680_000n);
});

test('fallback attempts: a beta the request names that raises a fallback\'s limit raises its cap, and no other beta does', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-opus-4-20250514').max_output_tokens_betas = { 'output-128k-2025-02-19': 128_000 };
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-sonnet-4-6');
  // with the beta opus-4 can write all 100,000: 1,080,000 + 100,000 × (900 + 1,800)
  assert.equal(holdBound(v, m, { ...WITH_OPUS4, anthropicBeta: 'files-api-2025-04-14, output-128k-2025-02-19' }), 271_080_000n);
  assert.deepEqual(admission(v, m, { ...WITH_OPUS4, anthropicBeta: ['output-128k-2025-02-19'] }, 'clamp', 1).segments,
    [{ perOutputToken: 2_700n, tokens: 128_000 }, { perOutputToken: 900n, tokens: null }]);
  assert.equal(holdBound(v, m, { ...WITH_OPUS4, anthropicBeta: 'files-api-2025-04-14' }), 148_680_000n);
  assert.equal(holdBound(v, m, WITH_OPUS4), 148_680_000n);
});

test('a compaction is held at the max_tokens sent whichever attempt writes it, with its re-read, also beside an entry with its own max_tokens', () => {
  const m = model(cny, 'claude-sonnet-4-6');
  const req: HoldRequest = { ...WITH_OPUS4, maxTokens: 10_000, fallbacks: [{ model: 'claude-opus-4-0', maxTokens: 100 }], steps: 2, compactions: 1 };
  // sonnet: 1,000 × 360 in; per t, its one sampling step 900 + the summary 900 + its re-read 360.
  // opus-4 entry: 1,000 × 720 in, its own 100 × 1,800 for its sampling step; per t, its summary
  // 1,800 + re-read 720 (a breaker's: opus compacting at the request's 10,000 was held at 100).
  // base 360,000 + 720,000 + 180,000; at 10,000: + 10,000 × (2,160 + 2,520)
  const a = admission(cny, m, req, 'clamp', 1);
  assert.deepEqual([a.amount, a.base, a.segments], [48_060_000n, 1_260_000n, [{ perOutputToken: 4_680n, tokens: null }]]);
  // without the compaction: the loop's two sampling steps, no summary
  const loop = admission(cny, m, { ...req, compactions: 0 }, 'clamp', 1);
  assert.deepEqual([loop.amount, loop.base, loop.segments], [1_440_000n + 18_000_000n, 1_440_000n, [{ perOutputToken: 1_800n, tokens: null }]]);
});

test('the step after a compaction reads one step\'s input and the summary: the tiers it reaches and an advisor\'s read are held at that prompt', () => {
  // opus-4-6 fast (cny, global): 1 h write 3,600 / output 9,000; over 200,000 input-side tokens
  // 7,200 / 13,500. A 99,206-token prompt with max_tokens 128,000: the step after the compaction
  // may read 99,206 + 128,000 = 227,206, over the tier (a breaker's: held at the base rates,
  // 3,479,083,200 µc, for usage of 3,814,200,000). Input 2 × 99,206 × 7,200; per t, one
  // sampling step 13,500 + the summary 13,500 + its re-read 7,200.
  const opus = model(cny, 'claude-opus-4-6');
  const req: HoldRequest = { inputTokens: 198_412, stepInputTokens: 99_206, maxTokens: 128_000, speed: 'fast', inferenceGeo: 'global', steps: 2, compactions: 1 };
  assert.equal(holdBound(cny, opus, req), 1_428_566_400n + 128_000n * 34_200n);
  const usage = priceRequest(cny, quantities({ input: 309_000, output: 256_000 }), { model: opus, speed: 'fast', inferenceGeo: 'global', iterations: [
    { type: 'compaction', model: 'claude-opus-4-6', quantities: quantities({ input: 99_000, output: 128_000 }) },
    { type: 'message', model: 'claude-opus-4-6', quantities: quantities({ input: 210_000, output: 128_000 }) }] });
  assert.equal(usage.costMicros, 3_814_200_000n);
  assert.ok(usage.costMicros <= holdBound(cny, opus, req));
  // an advisor called after the compaction reads the summary too: sonnet-4-6 with an opus-4-6
  // advisor of max_tokens 100: 2,000 × 360 + 64,000 × 2,160 + (1,000 + 64,000) × 600 + 100 × 1,500
  const advised: HoldRequest = { inputTokens: 2_000, stepInputTokens: 1_000, maxTokens: 64_000, speed: 'standard', inferenceGeo: 'global', steps: 2, compactions: 1,
    advisors: [{ model: 'claude-opus-4-6', maxUses: 1, maxTokens: 100 }] };
  assert.equal(holdBound(cny, model(cny, 'claude-sonnet-4-6'), advised), 720_000n + 138_240_000n + 39_000_000n + 150_000n);
});

test('an advisor the catalog does not know is held at the dearest model that may serve the request, as pricing prices it at the served one', () => {
  // haiku-4-5 asked with an opus-4-6 entry (global: 600 / 1,500); an advisor named
  // claude-3-5-haiku-20241022 (no catalog entry, no mapping rule) of max_uses 1 and max_tokens 100
  // is priced at whichever model served: held at opus-4-6's 1,000 × 600 + 100 × 1,500 (a
  // breaker's: held at haiku's, ~5,366 credits short over ten calls of 64,000)
  const haiku = model(cny, 'claude-haiku-4-5');
  const req: HoldRequest = { inputTokens: 1_000, maxTokens: 1, speed: 'standard', inferenceGeo: 'global', fallbacks: [{ model: 'claude-opus-4-6', maxTokens: null }] };
  const unknown = holdBound(cny, haiku, { ...req, advisors: [{ model: 'claude-3-5-haiku-20241022', maxUses: 1, maxTokens: 100 }] });
  // per attempt (the advisor is shared by both): 2 × (600,000 + 150,000)
  assert.equal(unknown - holdBound(cny, haiku, req), 2n * 750_000n);
  // a known advisor is held at its own model: haiku-4-5's 1,000 × 48 + 100 × 120, per attempt
  assert.equal(holdBound(cny, haiku, { ...req, advisors: [{ model: 'claude-haiku-4-5', maxUses: 1, maxTokens: 100 }] }) - holdBound(cny, haiku, req), 2n * 60_000n);
});

test('fallback attempts: an entry reaching its model only through a mapping rule is not capped, and a request of several steps caps none', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.mapping.rules[0].target = 'claude-opus-4-20250514'; // claude-opus-* → opus-4 (32,000 out)
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-sonnet-4-6');
  // claude-opus-4-7 is priced as opus-4 through the rule, but may write 100,000 upstream:
  // 1,080,000 + 100,000 × 2,700
  const globbed = admission(v, m, { ...WITH_OPUS4, fallbacks: ['claude-opus-4-7'] }, 'clamp', 1);
  assert.deepEqual([globbed.amount, globbed.segments], [271_080_000n, [{ perOutputToken: 2_700n, tokens: null }]]);
  // a server-tool loop or a compaction may call opus-4 in every step, uncapped, and every step
  // of every attempt may write max_tokens: 1,080,000 + steps × 100,000 × 2,700
  for (const [steps, amount] of [[2, 541_080_000n], [10, 2_701_080_000n]] as const) {
    const a = admission(cny, model(cny, 'claude-sonnet-4-6'), { ...WITH_OPUS4, steps }, 'clamp', 1);
    assert.deepEqual([a.amount, a.segments], [amount, [{ perOutputToken: 2_700n * BigInt(steps), tokens: null }]], `steps ${steps}`);
  }
  assert.equal(holdBound(cny, model(cny, 'claude-sonnet-4-6'), { ...WITH_OPUS4, steps: 1 }), 148_680_000n);
});

test('fallback attempts: every entry counts, by every name pricing knows the model by; a cheaper model or the requested one again is an attempt too', () => {
  const m = model(cny, 'claude-sonnet-4-6');
  // opus-4 twice (alias, -thinking name): 360,000 + 2 × 720,000 + 100,000 × 900 + 2 × 32,000 × 1,800
  const twice = admission(cny, m, { ...WITH_OPUS4, fallbacks: ['claude-opus-4-0', 'claude-opus-4-20250514-thinking'] }, 'clamp', 1);
  assert.deepEqual([twice.amount, twice.segments], [207_000_000n, [{ perOutputToken: 4_500n, tokens: 32_000 }, { perOutputToken: 900n, tokens: null }]]);
  // the 17th entry as well as the first: its attempt adds 720,000 + 32,000 × 1,800
  const haikus = Array.from({ length: 16 }, () => 'claude-haiku-4-5');
  assert.equal(holdBound(cny, m, { ...WITH_OPUS4, fallbacks: [...haikus, 'claude-opus-4-0'] }) - holdBound(cny, m, { ...WITH_OPUS4, fallbacks: haikus }), 58_320_000n);
  // a model named by its upstream_model (a Bedrock-style name): priced as opus-4 when it serves
  // (resolveServing), so held as opus-4
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-opus-4-20250514').upstream_model = 'anthropic.claude-opus-4-20250514-v1:0';
  const v = new PriceBook(parseCatalog(doc)).current();
  const mv = model(v, 'claude-sonnet-4-6');
  assert.equal(resolveServing(v.catalog, 'anthropic.claude-opus-4-20250514-v1:0', mv).model.id, 'claude-opus-4-20250514');
  assert.equal(holdBound(v, mv, { ...WITH_OPUS4, fallbacks: ['anthropic.claude-opus-4-20250514-v1:0'] }), 148_680_000n);
  // an advisor named by its upstream model is held at that model too
  const adv = (name: string) => holdBound(v, mv, { inputTokens: 1_000, maxTokens: 1_000, speed: 'standard', inferenceGeo: 'global', advisors: [{ model: name, maxUses: 1 }] });
  assert.equal(adv('anthropic.claude-opus-4-20250514-v1:0'), adv('claude-opus-4-20250514'));
  // an entry's model with catalog fallback_models of its own: its attempt at the dearest of them,
  // uncapped: haiku listing opus-4, 1,080,000 + 100,000 × (900 + 1,800)
  const doc2 = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc2.models.find((x: { id: string }) => x.id === 'claude-haiku-4-5-20251001').fallback_models = ['claude-opus-4-20250514'];
  const v2 = new PriceBook(parseCatalog(doc2)).current();
  assert.equal(holdBound(v2, model(v2, 'claude-sonnet-4-6'), { ...WITH_OPUS4, fallbacks: ['claude-haiku-4-5'] }), 271_080_000n);
  // under a group's model_mapping the requested model is sent as another (opus-4 as opus-4-6):
  // an entry naming the model sent is the requested one, whose catalog limit is not the sent
  // model's, so it has no cap: 2 × 720,000 + 1,000 × 1,800 + 128,000 × 1,800 (capped at opus-4's
  // 32,000 it was 60,840,000)
  const opus4 = model(cny, 'claude-opus-4-0');
  const sentAs46 = { ...opus4, upstreamModel: 'claude-opus-4-6' };
  assert.equal(holdBound(cny, sentAs46, { inputTokens: 1_000, maxTokens: 1_000, speed: 'standard', inferenceGeo: 'global', fallbacks: [{ model: 'claude-opus-4-6', maxTokens: 128_000 }] }), 233_640_000n);
  // sonnet-4-5 (144 / 360) with a haiku entry: 144,000 + 48,000, 64,000 × (360 + 120)
  const sonnet = model(cny, 'claude-sonnet-4-5');
  const cheaper = admission(cny, sonnet, { inputTokens: 1_000, maxTokens: 64_000, speed: 'standard', fallbacks: ['claude-haiku-4-5'] }, 'clamp', 1);
  assert.deepEqual([cheaper.base, cheaper.segments, cheaper.amount], [192_000n, [{ perOutputToken: 480n, tokens: 64_000 }, { perOutputToken: 360n, tokens: null }], 30_912_000n]);
  // the requested model named again: a second attempt, 2 × (144,000 + 64,000 × 360)
  assert.equal(holdBound(cny, sonnet, { inputTokens: 1_000, maxTokens: 64_000, speed: 'standard', fallbacks: ['claude-sonnet-4-5-20250929'] }), 46_368_000n);
});

test("Claude Code's default request (opus via the catalog mapping, 64,000 / 128,000 max_tokens) clamps to what 100 credits afford", () => {
  const m = model(cny, 'claude-opus-4-7-20990101'); // any claude-opus-* maps to claude-opus-4-6
  assert.equal(m.id, 'claude-opus-4-6');
  for (const maxTokens of [64_000, 128_000]) {
    const a = admission(cny, m, { inputTokens: 30_000, maxTokens, speed: 'standard' }, 'clamp', 1_024);
    // us_geo 1.1 (geo not named): input-side 600 × 1.1 = 660 µc, output 1,500 × 1.1 = 1,650 µc per token
    // base 30,000 × 660 = 19,800,000 µc
    assert.deepEqual([a.base, a.segments], [19_800_000n, [{ perOutputToken: 1_650n, tokens: null }]]);
    assert.equal(a.amount, 19_800_000n + BigInt(maxTokens) * 1_650n); // 125.4 / 231 credits: more than 100
    // (100,000,000 − 19,800,000) / 1,650 = 48,606.06… → 48,606 tokens (the ledger's clamp), hold 99,999,900 µc
    assert.equal(heldAt(a, 48_606), 99_999_900n);
    assert.ok(heldAt(a, 48_607) > 100_000_000n);
  }
});

test('a fractional output rate is rounded up per token, so the clamped hold still bounds holdBound at every count', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  const haiku = doc.models.find((x: { id: string }) => x.id === 'claude-haiku-4-5-20251001');
  haiku.prices.output = '0.15'; // ¥0.15 × 10 = 1.5 credits per MTok = 1.5 µc per token
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-haiku-4-5');
  const req: HoldRequest = { inputTokens: 3, maxTokens: 1_000, speed: 'standard', priceList: 'vip' };
  const a = admission(v, m, req, 'clamp', 1);
  // vip ×0.8: output 1.2 µc per token → 2; input-side cache write 1 h 48 × 0.8 = 38.4 → base ⌈115.2⌉ = 116
  assert.deepEqual([a.base, a.segments], [116n, [{ perOutputToken: 2n, tokens: null }]]);
  for (let t = 0; t <= 1_000; t++) {
    const exact = holdBound(v, m, { ...req, maxTokens: t });
    const held = heldAt(a, t);
    assert.ok(exact <= held, `t=${t}: ${exact} > ${held}`);
    // over-reserves by less than one µc per token, plus the rounding of the base
    assert.ok(held - exact <= BigInt(t) + 1n, `t=${t}: ${held} − ${exact} too loose`);
  }
});

test('with a capped fallback and fractional rates, the terms bound holdBound at every count, by less than a µc per token per attempt', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  const opus4 = doc.models.find((x: { id: string }) => x.id === 'claude-opus-4-20250514');
  opus4.max_output_tokens = 1_500;
  opus4.prices.output = '180.05'; // 1,800.5 µc per token → vip 1,440.4 → 1,441
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-sonnet-4-6');
  const req: HoldRequest = { inputTokens: 7, maxTokens: 3_000, speed: 'standard', priceList: 'vip', fallbacks: ['claude-opus-4-0'] };
  const a = admission(v, m, req, 'clamp', 1);
  // vip ×0.8; us_geo ×1.1 on sonnet-4-6 (geo not named): 900 × 0.88 = 792 per token; both
  // attempts write up to opus-4's 1,500
  assert.deepEqual(a.segments, [{ perOutputToken: 2_233n, tokens: 1_500 }, { perOutputToken: 792n, tokens: null }]);
  for (let t = 0; t <= 3_000; t++) {
    const exact = holdBound(v, m, { ...req, maxTokens: t });
    const held = heldAt(a, t);
    assert.ok(exact <= held, `t=${t}: ${exact} > ${held}`);
    // less than a µc per token per attempt, plus the rounding of the base
    assert.ok(held - exact <= 2n * BigInt(t) + 1n, `t=${t}: ${held} − ${exact} too loose`);
  }
});
