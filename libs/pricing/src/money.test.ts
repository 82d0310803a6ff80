import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MICROS_PER_CREDIT,
  MoneyError,
  ceilDiv,
  creditsToNumber,
  formatCredits,
  parseCredits,
  parseDecimal,
  parseExactDecimal,
} from './money.ts';

test('MICROS_PER_CREDIT is one million', () => {
  assert.equal(MICROS_PER_CREDIT, 1_000_000n);
});

test('parseCredits parses decimal strings exactly', () => {
  const cases: Array<[string, bigint]> = [
    ['0', 0n],
    ['-0', 0n],
    ['3', 3_000_000n],
    ['+3', 3_000_000n],
    ['12.345678', 12_345_678n],
    ['-0.5', -500_000n],
    ['0.000001', 1n],
    ['0.1', 100_000n],
    ['007.50', 7_500_000n],
    ['1.2300000000', 1_230_000n], // extra digits are zeros: still exact
    ['123456789012345678901234567890', 123456789012345678901234567890_000000n],
  ];
  for (const [input, micros] of cases) {
    assert.equal(parseCredits(input), micros, input);
  }
});

test('parseCredits reads numbers through their shortest decimal text', () => {
  assert.equal(parseCredits(0.1), 100_000n);
  assert.equal(parseCredits(0.3), 300_000n); // 0.1 + 0.2 style float error never appears
  assert.equal(parseCredits(-2.5), -2_500_000n);
  assert.equal(parseCredits(100), 100_000_000n);
  assert.equal(parseCredits(0.000001), 1n);
});

test('a JSON number of credits is exact below 2^28; from there on one with a fraction is refused (a double no longer tells every amount apart), a whole one read exactly', () => {
  // just below 2^28: doubles are under 10^-7 apart, every 6-decimal amount exact, a 7th decimal refused
  assert.equal(parseCredits(268435455.999999), 268_435_455_999_999n);
  assert.equal(parseCredits(-268435455.000001), -268_435_455_000_001n);
  assert.throws(() => parseCredits(268435455.9999995), /more than 6 decimal places/);
  // from 2^28: 8,589,934,591.9999995 would read as …999999 (its 7th decimal gone), 8,999,999,999.999999
  // as …998 (no double of its own): refused, without quoting the double as what to send
  for (const v of [268435456.5, 8589934591.9999995, 8999999999.999999, -9007199254.740991]) {
    assert.throws(() => parseCredits(v), /^MoneyError: a credit amount of 268435456 credits or more with a fraction is not exact as a JSON number: send it as a decimal string$/, String(v));
  }
  // the same amounts as strings, and whole numbers there, are exact
  assert.equal(parseCredits('8999999999.999999'), 8_999_999_999_999_999n);
  assert.equal(parseCredits('-9007199254.740991'), -9_007_199_254_740_991n);
  assert.equal(parseCredits(8999999999), 8_999_999_999_000_000n);
  assert.equal(parseCredits(-9007199254), -9_007_199_254_000_000n);
});

test('parseCredits rejects what it cannot represent exactly', () => {
  const bad: Array<string | number> = [
    '', ' 1', '1 ', '1.', '.5', '1e3', '1,5', '0x10', 'abc', '--1', '1_000',
    '0.0000001', '1.1234567',
    Number.NaN, Number.POSITIVE_INFINITY, 1e21, 1e-7, 0.0000001,
  ];
  for (const v of bad) {
    assert.throws(() => parseCredits(v), MoneyError, String(v));
  }
  assert.throws(() => parseCredits('0.0000001'), /more than 6 decimal places/);
  assert.throws(() => parseCredits(1e21), /out of range: amounts are within/);
  const err = (() => {
    try {
      parseCredits('abc');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof MoneyError);
  assert.ok(err instanceof Error);
  assert.equal(err.name, 'MoneyError');
});

test('parseDecimal scales to any number of places', () => {
  assert.equal(parseDecimal('12.34', 2), 1234n);
  assert.equal(parseDecimal('12.34', 0 + 4), 123_400n);
  assert.equal(parseDecimal('5', 0), 5n);
  assert.throws(() => parseDecimal('1.5', 0), MoneyError);
  assert.throws(() => parseDecimal('1', -1), MoneyError);
});

test('parseExactDecimal keeps the smallest scale', () => {
  assert.deepEqual(parseExactDecimal('7.20'), { units: 72n, scale: 1 });
  assert.deepEqual(parseExactDecimal('0.005'), { units: 5n, scale: 3 });
  assert.deepEqual(parseExactDecimal('-10'), { units: -10n, scale: 0 });
});

test('formatCredits trims trailing zeros and never uses floats', () => {
  const cases: Array<[bigint, string]> = [
    [0n, '0'],
    [3_000_000n, '3'],
    [12_345_678n, '12.345678'],
    [-500_000n, '-0.5'],
    [1n, '0.000001'],
    [-1n, '-0.000001'],
    [10_000_000_100_000n, '10000000.1'],
    [9007199254740993_000001n, '9007199254740993.000001'],
  ];
  for (const [micros, text] of cases) {
    assert.equal(formatCredits(micros), text);
    assert.equal(parseCredits(text), micros, `round trip ${text}`);
  }
});

test('creditsToNumber is for display', () => {
  assert.equal(creditsToNumber(12_345_678n), 12.345678);
  assert.equal(creditsToNumber(-500_000n), -0.5);
  assert.equal(creditsToNumber(0n), 0);
});

test('ceilDiv rounds up', () => {
  assert.equal(ceilDiv(0n, 1_000_000n), 0n);
  assert.equal(ceilDiv(1n, 1_000_000n), 1n);
  assert.equal(ceilDiv(1_000_000n, 1_000_000n), 1n);
  assert.equal(ceilDiv(1_000_001n, 1_000_000n), 2n);
  assert.throws(() => ceilDiv(1n, 0n), RangeError);
  assert.throws(() => ceilDiv(-1n, 1n), RangeError);
});

test('money error text: one sentence naming the value and the rule, nothing repeated', () => {
  const message = (v: string | number) => {
    try {
      parseCredits(v);
    } catch (e) {
      return (e as Error).message;
    }
    return undefined;
  };
  assert.equal(message('1.1234567'), '"1.1234567" has more than 6 decimal places');
  assert.equal(message('abc'), '"abc" is not a decimal number (expected e.g. "12.5" or "3")');
  assert.equal(message(1e21), 'credit amount 1e+21 is out of range: amounts are within ±9007199254.740991 credits');
  assert.equal(message(-1e30), 'credit amount -1e+30 is out of range: amounts are within ±9007199254.740991 credits');
  // below 1e-6 a number is written with an exponent: too many decimals, not out of range
  assert.equal(message(1e-7), 'credit amount 1e-7 has more than 6 decimal places');
  assert.equal(message(-2.5e-8), 'credit amount -2.5e-8 has more than 6 decimal places');
  assert.equal(parseCredits(1e-6), 1n);
});
