import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryRateLimiter } from '../src/index.ts';
import { rateLimiterContract } from './rate-limiter.contract.ts';

rateLimiterContract('memory', async () => new MemoryRateLimiter());

test('a closed MemoryRateLimiter refuses to be used', async () => {
  const rl = new MemoryRateLimiter();
  await rl.close();
  await assert.rejects(rl.acquire('k', {}, 0), /closed/);
});
