import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PromptCache } from './prompt-cache.ts';
import type { PromptUnit } from './tokens.ts';

const unit = (key: string, chars: number, breakpoint?: '5m' | '1h'): PromptUnit => ({ key, chars, imageTokens: 0, breakpoint });

test('no breakpoint, no caching', () => {
  assert.deepEqual(new PromptCache().settle('m', [unit('a', 400)]), { readTokens: 0, writeTokens: 0, writeTtl: '5m' });
});

test('writes the prefix once, then reads it; per model; clear forgets', () => {
  const cache = new PromptCache();
  const units = [unit('sys', 400, '1h'), unit('q', 40)];
  assert.deepEqual(cache.settle('m', units), { readTokens: 0, writeTokens: 100, writeTtl: '1h' });
  assert.deepEqual(cache.settle('m', [unit('sys', 400, '1h'), unit('other', 8)]), { readTokens: 100, writeTokens: 0, writeTtl: '1h' });
  assert.deepEqual(cache.settle('n', units), { readTokens: 0, writeTokens: 100, writeTtl: '1h' });
  cache.clear();
  assert.equal(cache.settle('m', units).writeTokens, 100);
});

test('a growing conversation reads the longest seen breakpoint and writes only the new part', () => {
  const cache = new PromptCache();
  cache.settle('m', [unit('sys', 400, '5m'), unit('u1', 40, '5m')]);
  const next = cache.settle('m', [unit('sys', 400), unit('u1', 40, '5m'), unit('a1', 40), unit('u2', 41, '5m')]);
  // Prefix through u1 is 440 chars = 110 tokens; through u2 521 chars = 131 tokens.
  assert.deepEqual(next, { readTokens: 110, writeTokens: 21, writeTtl: '5m' });
});

test('a changed earlier block misses the cache', () => {
  const cache = new PromptCache();
  cache.settle('m', [unit('sys', 400, '5m')]);
  assert.deepEqual(cache.settle('m', [unit('sys2', 400, '5m')]), { readTokens: 0, writeTokens: 100, writeTtl: '5m' });
});
