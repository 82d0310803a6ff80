import { test } from 'node:test';
import assert from 'node:assert/strict';
import { costMicros, holdMicros } from './cost.ts';
import type { TokenUsage } from './cost.ts';
import type { Prices } from './catalog.ts';
import { parseCatalog } from './catalog.ts';

const none: TokenUsage = { input: 0, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 };

/** usd.json Sonnet 4.5: 883 / 89 / 1103 / 1765 / 4412 credits per MTok */
const sonnetUsd: Prices = {
  input: 883_000_000n,
  output: 4_412_000_000n,
  cacheRead: 89_000_000n,
  cacheWrite5m: 1_103_000_000n,
  cacheWrite1h: 1_765_000_000n,
};

function pricesOf(price: string, unit: 'credits' | 'currency' = 'credits'): Prices {
  const catalog = parseCatalog({
    version: 1,
    name: 't',
    credit: { currency: 'CNY', credits_per_unit: '10' },
    price_unit: unit,
    models: [
      {
        id: 'm',
        prices: { input: price, output: price, cache_read: price, cache_write_5m: price, cache_write_1h: price },
      },
    ],
  });
  const model = catalog.models[0];
  assert.ok(model);
  return model.prices;
}

test('no tokens cost nothing', () => {
  assert.equal(costMicros(none, sonnetUsd), 0n);
  assert.equal(holdMicros(0, 0, sonnetUsd), 0n);
});

test('1 token at 295 credits/MTok costs exactly 295 micro-credits', () => {
  assert.equal(costMicros({ ...none, input: 1 }, pricesOf('295')), 295n);
});

test('1 token at ¥2.40/MTok with ¥1 = 10 credits costs exactly 24 micro-credits', () => {
  assert.equal(costMicros({ ...none, input: 1 }, pricesOf('2.40', 'currency')), 24n);
});

test('a fraction of a micro-credit rounds up to 1', () => {
  const tiny = pricesOf('0.000001'); // 1 micro-credit per million tokens
  assert.equal(tiny.input, 1n);
  assert.equal(costMicros({ ...none, input: 1 }, tiny), 1n);
  assert.equal(costMicros({ ...none, input: 999_999 }, tiny), 1n);
  assert.equal(costMicros({ ...none, input: 1_000_000 }, tiny), 1n);
  assert.equal(costMicros({ ...none, input: 1_000_001 }, tiny), 2n);
});

test('rounding happens once per request, after summing every class', () => {
  // Each class alone is 0.5 micro-credit; rounded per class that would be 5, summed first it is 3.
  const half: Prices = { input: 500_000n, output: 500_000n, cacheRead: 500_000n, cacheWrite5m: 500_000n, cacheWrite1h: 500_000n };
  const usage: TokenUsage = { input: 1, output: 1, cacheRead: 1, cacheWrite5m: 1, cacheWrite1h: 1 };
  assert.equal(costMicros(usage, half), 3n); // ceil(2.5)
});

test('a realistic Claude Code turn on Sonnet 4.5 (usd.json)', () => {
  const usage: TokenUsage = { input: 3, output: 512, cacheRead: 41_234, cacheWrite5m: 1_873, cacheWrite1h: 0 };
  // 3×883 + 512×4412 + 41234×89 + 1873×1103 = 2649 + 2258944 + 3669826 + 2065919 = 7997338 credits·tok/MTok
  // → 7_997_338_000_000 / 1e6 = 7_997_338 micro-credits exactly (no rounding needed)
  assert.equal(costMicros(usage, sonnetUsd), 7_997_338n);
});

test('cny Sonnet 4.5: 1234 input + 567 output tokens', () => {
  const p: Prices = { input: 72_000_000n, output: 360_000_000n, cacheRead: 7_200_000n, cacheWrite5m: 90_000_000n, cacheWrite1h: 144_000_000n };
  // 1234×72 + 567×360 = 88848 + 204120 = 292968 micro-credits
  assert.equal(costMicros({ ...none, input: 1234, output: 567 }, p), 292_968n);
  // with a cache read of 7 tokens at 7.2 credits/MTok: +50.4 → 293018.4 → 293019
  assert.equal(costMicros({ ...none, input: 1234, output: 567, cacheRead: 7 }, p), 293_019n);
});

test('hold prices every input token at the dearest input-side class', () => {
  // dearest input-side class is cache write 1h (1765)
  assert.equal(holdMicros(1000, 100, sonnetUsd), 1_765_000n + 441_200n);
  // rounding: 1 token × 1765 + 1 token × 4412 = 6177 micro exactly; with a 0.5 price it rounds up
  const odd: Prices = { input: 1_500_000n, output: 2_500_000n, cacheRead: 0n, cacheWrite5m: 0n, cacheWrite1h: 0n };
  assert.equal(holdMicros(1, 1, odd), 4n); // 1.5 + 2.5 = 4 (one rounding)
  assert.equal(holdMicros(1, 0, odd), 2n); // ceil(1.5)
  // an odd catalog where cache read is the dearest still yields a true worst case
  const weird: Prices = { input: 1_000_000n, output: 0n, cacheRead: 9_000_000n, cacheWrite5m: 0n, cacheWrite1h: 0n };
  assert.equal(holdMicros(1, 0, weird), 9n);
});

test('the hold covers every usage within its bounds', () => {
  const p = sonnetUsd;
  const inputBudget = 50;
  const maxTokens = 20;
  for (let a = 0; a <= inputBudget; a += 7) {
    for (let b = 0; a + b <= inputBudget; b += 11) {
      for (let c = 0; a + b + c <= inputBudget; c += 13) {
        const d = inputBudget - a - b - c;
        const usage: TokenUsage = { input: a, cacheRead: b, cacheWrite5m: c, cacheWrite1h: d, output: maxTokens };
        assert.ok(costMicros(usage, p) <= holdMicros(inputBudget, maxTokens, p));
      }
    }
  }
});

test('token counts must be non-negative safe integers', () => {
  assert.throws(() => costMicros({ ...none, input: -1 }, sonnetUsd), RangeError);
  assert.throws(() => costMicros({ ...none, output: 1.5 }, sonnetUsd), RangeError);
  assert.throws(() => costMicros({ ...none, cacheRead: Number.NaN }, sonnetUsd), RangeError);
  assert.throws(() => holdMicros(2 ** 53, 0, sonnetUsd), RangeError);
  assert.throws(() => holdMicros(0, -5, sonnetUsd), /maxTokens/);
});

test('large counts stay exact (no float anywhere)', () => {
  const usage: TokenUsage = { ...none, output: Number.MAX_SAFE_INTEGER };
  assert.equal(costMicros(usage, sonnetUsd), (BigInt(Number.MAX_SAFE_INTEGER) * 4_412_000_000n + 999_999n) / 1_000_000n);
});
