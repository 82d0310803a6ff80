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
import { admission, admissionHold, affordableMaxTokens } from './admission.ts';

const cny = new PriceBook(loadCatalogFile(bundledCatalogPath('cny'))).current();

function model(v: PriceVersion, name: string) {
  const m = resolveModel(v.catalog, name)?.model;
  assert.ok(m, name);
  return m;
}

test('admission terms: base is the input-side worst case, per token the dearest output rate, amount the full holdBound', () => {
  const m = model(cny, 'claude-sonnet-4-5');
  const req: HoldRequest = { inputTokens: 1_000, maxTokens: 64_000, speed: 'standard' };
  const a = admission(cny, m, req, 'clamp', 1_024);
  // base = 1,000 × 144 (cache write 1 h, the dearest input-side class) = 144,000 µc
  // amount = 144,000 + 64,000 × 360 = 23,184,000 µc
  assert.deepEqual(a, { policy: 'clamp', amount: 23_184_000n, base: 144_000n, perOutputToken: 360n, maxTokens: 64_000, floorTokens: 1_024 });
  assert.equal(a.amount, holdBound(cny, m, req));
});

test('affordable max_tokens: the largest count whose hold fits, the full count when all fits, null below the floor', () => {
  const a = admission(cny, model(cny, 'claude-sonnet-4-5'), { inputTokens: 1_000, maxTokens: 64_000, speed: 'standard' }, 'clamp', 1_024);
  // (10,000,000 − 144,000) / 360 = 27,377.7… → 27,377 tokens; hold 144,000 + 27,377 × 360 = 9,999,720 µc
  assert.equal(affordableMaxTokens(10_000_000n, a), 27_377);
  assert.equal(admissionHold(a, 27_377), 9_999_720n);
  assert.equal(affordableMaxTokens(23_184_000n, a), 64_000);
  assert.equal(affordableMaxTokens(23_183_999n, a), 63_999);
  // floor: 144,000 + 1,024 × 360 = 512,640 µc
  assert.equal(affordableMaxTokens(512_640n, a), 1_024);
  assert.equal(affordableMaxTokens(512_639n, a), null);
  // a floor above max_tokens is max_tokens
  assert.equal(admission(cny, model(cny, 'claude-sonnet-4-5'), { inputTokens: 1, maxTokens: 100 }, 'strict', 1_024).floorTokens, 100);
});

test("Claude Code's default request (opus via the catalog mapping, 64,000 / 128,000 max_tokens) clamps to what 100 credits afford", () => {
  const m = model(cny, 'claude-opus-4-7-20990101'); // any claude-opus-* maps to claude-opus-4-6
  assert.equal(m.id, 'claude-opus-4-6');
  for (const maxTokens of [64_000, 128_000]) {
    const a = admission(cny, m, { inputTokens: 30_000, maxTokens, speed: 'standard' }, 'clamp', 1_024);
    // us_geo 1.1 (geo not named): input-side 600 × 1.1 = 660 µc, output 1,500 × 1.1 = 1,650 µc per token
    assert.equal(a.base, 19_800_000n); // 30,000 × 660
    assert.equal(a.perOutputToken, 1_650n);
    assert.equal(a.amount, 19_800_000n + BigInt(maxTokens) * 1_650n); // 125.4 / 231 credits: more than 100
    // (100,000,000 − 19,800,000) / 1,650 = 48,606.06… → 48,606 tokens, hold 99,999,900 µc
    assert.equal(affordableMaxTokens(100_000_000n, a), 48_606);
    assert.equal(admissionHold(a, 48_606), 99_999_900n);
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
  assert.equal(a.perOutputToken, 2n);
  assert.equal(a.base, 116n);
  for (let t = 0; t <= 1_000; t++) {
    const exact = holdBound(v, m, { ...req, maxTokens: t });
    const held = admissionHold({ ...a, maxTokens: 1_000 }, t);
    assert.ok(exact <= held, `t=${t}: ${exact} > ${held}`);
    // over-reserves by less than one µc per token, plus the rounding of the base
    assert.ok(held - exact <= BigInt(t) + 1n, `t=${t}: ${held} − ${exact} too loose`);
  }
});
