// The admission policy's arithmetic over the shipped cny catalog (µc per token: sonnet-4-5
// input 72, output 360, cache write 1 h 144; opus-4-6 input 300, output 1,500, cache write 1 h
// 600, us_geo ×1.1 when the request does not name its geo) and one catalog with a fractional
// output price.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { bundledCatalogPath, loadCatalogFile, parseCatalog } from './catalog.ts';
import { PriceBook } from './book.ts';
import { holdBound, resolveServing } from './price.ts';
import type { HoldRequest, PriceVersion } from './price.ts';
import { resolveModel } from './resolve.ts';
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

test("fallback output limit: a fallback writes at most its own max_output_tokens, so the output is held dearest first up to each fallback's limit", () => {
  const m = model(cny, 'claude-sonnet-4-6');
  // Sonnet 4.6 (128,000 out): input-side 360, output 900 µc per token; Opus 4 (32,000 out): 720
  // and 1,800. Base: the dearer input side, 1,000 × 720 = 720,000.
  const a = admission(cny, m, WITH_OPUS4, 'clamp', 1_024);
  assert.equal(a.base, 720_000n);
  assert.deepEqual(a.segments, [{ perOutputToken: 1_800n, tokens: 32_000 }, { perOutputToken: 900n, tokens: null }]);
  // 720,000 + 32,000 × 1,800 + 68,000 × 900 = 720,000 + 57,600,000 + 61,200,000: the worst case
  // splits the output between the models (usage.iterations prices each step at its own model).
  // Opus 4 for all 100,000 tokens held 180,720,000.
  assert.equal(a.amount, 119_520_000n);
  assert.equal(holdBound(cny, m, WITH_OPUS4), 119_520_000n);
  assert.equal(heldAt(a, 100_000), 119_520_000n);
  // at 40,000: 720,000 + 57,600,000 + 8,000 × 900 = 65,520,000; below 32,000 all at Opus 4's rate
  assert.equal(holdBound(cny, m, { ...WITH_OPUS4, maxTokens: 40_000 }), 65_520_000n);
  assert.equal(heldAt(a, 40_000), 65_520_000n);
  assert.equal(holdBound(cny, m, { ...WITH_OPUS4, maxTokens: 20_000 }), 720_000n + 20_000n * 1_800n);
  // the catalog's own fallback_models are capped the same way
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-sonnet-4-6').fallback_models = ['claude-opus-4-20250514'];
  const withCatalogFallback = new PriceBook(parseCatalog(doc)).current();
  const { fallbacks: _, ...plain } = WITH_OPUS4;
  assert.equal(holdBound(withCatalogFallback, model(withCatalogFallback, 'claude-sonnet-4-6'), plain), 119_520_000n);
});

test('fallback output limit: a beta the request names that raises the fallback\'s limit raises its cap, and no other beta does', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-opus-4-20250514').max_output_tokens_betas = { 'output-128k-2025-02-19': 128_000 };
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-sonnet-4-6');
  // with the beta Opus 4 can write all 100,000: 720,000 + 100,000 × 1,800 = 180,720,000
  assert.equal(holdBound(v, m, { ...WITH_OPUS4, anthropicBeta: 'files-api-2025-04-14, output-128k-2025-02-19' }), 180_720_000n);
  assert.deepEqual(admission(v, m, { ...WITH_OPUS4, anthropicBeta: ['output-128k-2025-02-19'] }, 'clamp', 1).segments,
    [{ perOutputToken: 1_800n, tokens: 128_000 }, { perOutputToken: 900n, tokens: null }]);
  assert.equal(holdBound(v, m, { ...WITH_OPUS4, anthropicBeta: 'files-api-2025-04-14' }), 119_520_000n);
  assert.equal(holdBound(v, m, WITH_OPUS4), 119_520_000n);
});

test('fallback output limit: a fallback reached only through a mapping rule is not capped (upstream it may be another model)', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.mapping.rules[0].target = 'claude-opus-4-20250514'; // claude-opus-* → opus-4 (32,000 out)
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-sonnet-4-6');
  // claude-opus-4-7 is priced as opus-4 through the rule, but may write 100,000 upstream:
  // 720,000 + 100,000 × 1,800 = 180,720,000
  const globbed = admission(v, m, { ...WITH_OPUS4, fallbacks: ['claude-opus-4-7'] }, 'clamp', 1);
  assert.deepEqual([globbed.amount, globbed.segments], [180_720_000n, [{ perOutputToken: 1_800n, tokens: null }]]);
  // named exactly as well as through the rule: the rule's reach wins
  assert.equal(holdBound(v, m, { ...WITH_OPUS4, fallbacks: ['claude-opus-4-0', 'claude-opus-4-7'] }), 180_720_000n);
  assert.equal(holdBound(v, m, WITH_OPUS4), 119_520_000n);
});

test('fallback output limit: the limit is per call: a fallback named twice may write it twice, and a request of several steps caps no fallback', () => {
  const m = model(cny, 'claude-sonnet-4-6');
  // opus-4 by alias and by its -thinking name: two calls of up to 32,000 each:
  // 720,000 + 64,000 × 1,800 + 36,000 × 900 = 720,000 + 115,200,000 + 32,400,000
  const twice = admission(cny, m, { ...WITH_OPUS4, fallbacks: ['claude-opus-4-0', 'claude-opus-4-20250514-thinking'] }, 'clamp', 1);
  assert.deepEqual([twice.amount, twice.segments], [148_320_000n, [{ perOutputToken: 1_800n, tokens: 64_000 }, { perOutputToken: 900n, tokens: null }]]);
  // the catalog's fallback_models entry and the body's name are two calls too
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-sonnet-4-6').fallback_models = ['claude-opus-4-20250514'];
  const v = new PriceBook(parseCatalog(doc)).current();
  assert.equal(holdBound(v, model(v, 'claude-sonnet-4-6'), WITH_OPUS4), 148_320_000n);
  // a server-tool loop or a compaction may call opus-4 in every step: no cap,
  // 720,000 + 100,000 × 1,800
  for (const steps of [2, 10]) {
    const a = admission(cny, m, { ...WITH_OPUS4, steps }, 'clamp', 1);
    assert.deepEqual([a.amount, a.segments], [180_720_000n, [{ perOutputToken: 1_800n, tokens: null }]], `steps ${steps}`);
  }
  assert.equal(holdBound(cny, m, { ...WITH_OPUS4, steps: 1 }), 119_520_000n);
});

test('serving models are held by every name pricing knows them by: an upstream model name, every entry of a long fallbacks list', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-opus-4-20250514').upstream_model = 'anthropic.claude-opus-4-20250514-v1:0';
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-sonnet-4-6');
  // priced as opus-4 when it serves (resolveServing), so held as opus-4: 119,520,000 as above
  // (it was held as sonnet alone: 360,000 + 100,000 × 900 = 90,360,000)
  assert.equal(resolveServing(v.catalog, 'anthropic.claude-opus-4-20250514-v1:0', m).model.id, 'claude-opus-4-20250514');
  assert.equal(holdBound(v, m, { ...WITH_OPUS4, fallbacks: ['anthropic.claude-opus-4-20250514-v1:0'] }), 119_520_000n);
  // an advisor named by its upstream model is held at that model too
  const adv = (name: string) => holdBound(v, m, { inputTokens: 1_000, maxTokens: 1_000, speed: 'standard', inferenceGeo: 'global', advisors: [{ model: name, maxUses: 1 }] });
  assert.equal(adv('anthropic.claude-opus-4-20250514-v1:0'), adv('claude-opus-4-20250514'));
  // the 17th entry of a body's fallbacks serves (and bills) as well as the first
  const long = [...Array.from({ length: 16 }, () => 'claude-haiku-4-5'), 'claude-opus-4-0'];
  assert.equal(holdBound(cny, model(cny, 'claude-sonnet-4-6'), { ...WITH_OPUS4, fallbacks: long }), 119_520_000n);
});

test('a fallback no dearer per output token than the requested model adds no segment; the requested model named as its own fallback changes nothing', () => {
  // Haiku 4.5 (48 / 120 µc, 64,000 out) falling back from Sonnet 4.5 (144 / 360)
  const sonnet = model(cny, 'claude-sonnet-4-5');
  const a = admission(cny, sonnet, { inputTokens: 1_000, maxTokens: 64_000, speed: 'standard', fallbacks: ['claude-haiku-4-5'] }, 'clamp', 1);
  assert.deepEqual([a.base, a.segments, a.amount], [144_000n, [{ perOutputToken: 360n, tokens: null }], 23_184_000n]);
  const self = admission(cny, sonnet, { inputTokens: 1_000, maxTokens: 64_000, speed: 'standard', fallbacks: ['claude-sonnet-4-5-20250929'] }, 'clamp', 1);
  assert.deepEqual([self.base, self.segments, self.amount], [144_000n, [{ perOutputToken: 360n, tokens: null }], 23_184_000n]);
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

test('with a capped fallback and fractional rates, the terms bound holdBound at every count, by less than a µc per token', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  const opus4 = doc.models.find((x: { id: string }) => x.id === 'claude-opus-4-20250514');
  opus4.max_output_tokens = 1_500;
  opus4.prices.output = '180.05'; // 1,800.5 µc per token → vip 1,440.4 → 1,441
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-sonnet-4-6');
  const req: HoldRequest = { inputTokens: 7, maxTokens: 3_000, speed: 'standard', priceList: 'vip', fallbacks: ['claude-opus-4-0'] };
  const a = admission(v, m, req, 'clamp', 1);
  // vip ×0.8; us_geo ×1.1 on sonnet-4-6 (geo not named): 900 × 0.88 = 792 per token
  assert.deepEqual(a.segments, [{ perOutputToken: 1_441n, tokens: 1_500 }, { perOutputToken: 792n, tokens: null }]);
  for (let t = 0; t <= 3_000; t++) {
    const exact = holdBound(v, m, { ...req, maxTokens: t });
    const held = heldAt(a, t);
    assert.ok(exact <= held, `t=${t}: ${exact} > ${held}`);
    assert.ok(held - exact <= BigInt(t) + 1n, `t=${t}: ${held} − ${exact} too loose`);
  }
});
