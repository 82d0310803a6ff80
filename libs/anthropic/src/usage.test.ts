import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeUsage, usageFromMessage, usageFromWire } from './usage.ts';
import type { Usage } from './types.ts';

test('plain usage', () => {
  assert.deepEqual(usageFromWire({ input_tokens: 12, output_tokens: 34 }), {
    input: 12, output: 34, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0,
  });
});

test('cache breakdown splits writes into 5m and 1h', () => {
  const u: Usage = {
    input_tokens: 5,
    output_tokens: 7,
    cache_read_input_tokens: 1000,
    cache_creation_input_tokens: 300,
    cache_creation: { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 200 },
  };
  assert.deepEqual(usageFromWire(u), { input: 5, output: 7, cacheRead: 1000, cacheWrite5m: 100, cacheWrite1h: 200 });
});

test('only cache_creation_input_tokens: all of it is 5m', () => {
  assert.deepEqual(usageFromWire({ input_tokens: 1, output_tokens: 1, cache_creation_input_tokens: 250 }), {
    input: 1, output: 1, cacheRead: 0, cacheWrite5m: 250, cacheWrite1h: 0,
  });
  // a null or empty breakdown is no breakdown
  assert.equal(usageFromWire({ cache_creation_input_tokens: 250, cache_creation: null }).cacheWrite5m, 250);
  assert.equal(usageFromWire({ cache_creation_input_tokens: 250, cache_creation: {} }).cacheWrite5m, 250);
});

test('breakdown without total, and total above the breakdown sum (excess is 5m)', () => {
  assert.deepEqual(usageFromWire({ cache_creation: { ephemeral_1h_input_tokens: 40 } }), {
    input: 0, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 40,
  });
  const u = usageFromWire({
    cache_creation_input_tokens: 150,
    cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 100 },
  });
  assert.equal(u.cacheWrite5m, 50);
  assert.equal(u.cacheWrite1h, 100);
});

test('missing, null, negative, fractional and non-number counts are 0', () => {
  const zero = { input: 0, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 };
  assert.deepEqual(usageFromWire({}), zero);
  assert.deepEqual(usageFromWire(null), zero);
  assert.deepEqual(usageFromWire(undefined), zero);
  assert.deepEqual(
    usageFromWire({
      input_tokens: -1,
      output_tokens: 2.5,
      cache_read_input_tokens: null,
      cache_creation_input_tokens: Number.NaN,
      cache_creation: { ephemeral_5m_input_tokens: -3, ephemeral_1h_input_tokens: Infinity },
    }),
    zero,
  );
  assert.deepEqual(usageFromWire(JSON.parse('{"input_tokens":"12","output_tokens":true}')), zero);
});

test('mergeUsage: later present fields replace, absent and null keep, inputs unchanged', () => {
  const start: Usage = { input_tokens: 10, output_tokens: 1, cache_read_input_tokens: 500, service_tier: 'standard' };
  const delta: Usage = { input_tokens: null, output_tokens: 250, cache_creation_input_tokens: 30 };
  const merged = mergeUsage(start, delta);
  assert.deepEqual(merged, {
    input_tokens: 10, output_tokens: 250, cache_read_input_tokens: 500, cache_creation_input_tokens: 30, service_tier: 'standard',
  });
  assert.deepEqual(start, { input_tokens: 10, output_tokens: 1, cache_read_input_tokens: 500, service_tier: 'standard' });
});

test('usageFromMessage', () => {
  assert.deepEqual(usageFromMessage({ type: 'message', usage: { input_tokens: 3, output_tokens: 4 } }), {
    input: 3, output: 4, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0,
  });
  assert.equal(usageFromMessage({ type: 'error', error: {} }), null);
  assert.equal(usageFromMessage('nope'), null);
});
