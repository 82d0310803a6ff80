// The admission policy's arithmetic over the shipped cny catalog (µc per token: sonnet-4-5
// input 72, output 360, cache write 1 h 144; opus-4-6 input 300, output 1,500, cache write 1 h
// 600, us_geo ×1.1 when the request does not name its geo) and one catalog with a fractional
// output price.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { bundledCatalogPath, loadCatalogFile, parseCatalog } from './catalog.ts';
import { PriceBook } from './book.ts';
import { holdBound } from './price.ts';
import type { HoldRequest, PriceVersion } from './price.ts';
import { resolveModel } from './resolve.ts';
import { admission, type Admission } from './admission.ts';

const cny = new PriceBook(loadCatalogFile(bundledCatalogPath('cny'))).current();

/** What the terms reserve for t output tokens: the largest piece at t (the ledger's admissionHoldAt). */
function heldAt(a: Admission, t: number): bigint {
  return a.pieces.reduce((m, p) => {
    const v = p.base + BigInt(p.capTokens !== null && p.capTokens < t ? p.capTokens : t) * p.perOutputToken;
    return v > m ? v : m;
  }, 0n);
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
  assert.deepEqual(a, { policy: 'clamp', amount: 23_184_000n, pieces: [{ base: 144_000n, perOutputToken: 360n, capTokens: null }], maxTokens: 64_000, floorTokens: 1_024 });
  assert.equal(a.amount, holdBound(cny, m, req));
  // a floor above max_tokens is max_tokens
  assert.equal(admission(cny, m, { inputTokens: 1, maxTokens: 100 }, 'strict', 1_024).floorTokens, 100);
});

test("fallback output limit: a fallback's output is held at most at its own max_output_tokens, one piece per serving model", () => {
  const m = model(cny, 'claude-sonnet-4-6');
  // Sonnet 4.6 (128,000 out): input-side 360 µc (cache write 1 h), output 900 µc per token;
  // Opus 4 (32,000 out): 720 and 1,800. Geo named "global": no us_geo factor.
  const req: HoldRequest = { inputTokens: 1_000, maxTokens: 100_000, speed: 'standard', inferenceGeo: 'global', fallbacks: ['claude-opus-4-0'] };
  const a = admission(cny, m, req, 'clamp', 1_024);
  assert.deepEqual(a.pieces, [
    { base: 360_000n, perOutputToken: 900n, capTokens: null },
    { base: 720_000n, perOutputToken: 1_800n, capTokens: 32_000 },
  ]);
  // max(360,000 + 100,000 × 900, 720,000 + 32,000 × 1,800) = max(90,360,000, 58,320,000); Opus 4
  // for all 100,000 tokens would be 180,720,000
  assert.equal(a.amount, 90_360_000n);
  assert.equal(holdBound(cny, m, req), 90_360_000n);
  // at 40,000 tokens the fallback is the dearer: 720,000 + 32,000 × 1,800 = 58,320,000 > 36,360,000
  assert.equal(holdBound(cny, m, { ...req, maxTokens: 40_000 }), 58_320_000n);
  assert.equal(heldAt(a, 40_000), 58_320_000n);
  // the catalog's own fallback_models are capped the same way
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-sonnet-4-6').fallback_models = ['claude-opus-4-20250514'];
  const withCatalogFallback = new PriceBook(parseCatalog(doc)).current();
  const { fallbacks: _, ...plain } = req;
  assert.equal(holdBound(withCatalogFallback, model(withCatalogFallback, 'claude-sonnet-4-6'), plain), 90_360_000n);
});

test('fallback output limit: a beta the request names that raises the fallback\'s limit raises its cap, and no other beta does', () => {
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8'));
  doc.models.find((x: { id: string }) => x.id === 'claude-opus-4-20250514').max_output_tokens_betas = { 'output-128k-2025-02-19': 128_000 };
  const v = new PriceBook(parseCatalog(doc)).current();
  const m = model(v, 'claude-sonnet-4-6');
  const req: HoldRequest = { inputTokens: 1_000, maxTokens: 100_000, speed: 'standard', inferenceGeo: 'global', fallbacks: ['claude-opus-4-0'] };
  // with the beta Opus 4 can write all 100,000: 720,000 + 100,000 × 1,800 = 180,720,000
  assert.equal(holdBound(v, m, { ...req, anthropicBeta: 'files-api-2025-04-14, output-128k-2025-02-19' }), 180_720_000n);
  assert.equal(admission(v, m, { ...req, anthropicBeta: ['output-128k-2025-02-19'] }, 'clamp', 1).pieces[1]!.capTokens, 128_000);
  assert.equal(holdBound(v, m, { ...req, anthropicBeta: 'files-api-2025-04-14' }), 90_360_000n);
  assert.equal(holdBound(v, m, req), 90_360_000n);
});

test('a fallback the requested model bounds at every count adds no piece', () => {
  // Haiku 4.5 (48 / 120 µc, 64,000 out) falling back from Sonnet 4.5 (144 / 360): Sonnet's piece bounds it
  const a = admission(cny, model(cny, 'claude-sonnet-4-5'), { inputTokens: 1_000, maxTokens: 64_000, speed: 'standard', fallbacks: ['claude-haiku-4-5'] }, 'clamp', 1);
  assert.deepEqual(a.pieces, [{ base: 144_000n, perOutputToken: 360n, capTokens: null }]);
  assert.equal(a.amount, 23_184_000n);
});

test("Claude Code's default request (opus via the catalog mapping, 64,000 / 128,000 max_tokens) clamps to what 100 credits afford", () => {
  const m = model(cny, 'claude-opus-4-7-20990101'); // any claude-opus-* maps to claude-opus-4-6
  assert.equal(m.id, 'claude-opus-4-6');
  for (const maxTokens of [64_000, 128_000]) {
    const a = admission(cny, m, { inputTokens: 30_000, maxTokens, speed: 'standard' }, 'clamp', 1_024);
    // us_geo 1.1 (geo not named): input-side 600 × 1.1 = 660 µc, output 1,500 × 1.1 = 1,650 µc per token
    // base 30,000 × 660 = 19,800,000 µc
    assert.deepEqual(a.pieces, [{ base: 19_800_000n, perOutputToken: 1_650n, capTokens: null }]);
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
  assert.deepEqual(a.pieces, [{ base: 116n, perOutputToken: 2n, capTokens: null }]);
  for (let t = 0; t <= 1_000; t++) {
    const exact = holdBound(v, m, { ...req, maxTokens: t });
    const held = heldAt(a, t);
    assert.ok(exact <= held, `t=${t}: ${exact} > ${held}`);
    // over-reserves by less than one µc per token, plus the rounding of the base
    assert.ok(held - exact <= BigInt(t) + 1n, `t=${t}: ${held} − ${exact} too loose`);
  }
});
