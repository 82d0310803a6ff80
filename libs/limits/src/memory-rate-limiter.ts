// In-process rate limits: the embedded (single-machine) adapter. Counters die with the process,
// and so do its in-flight requests, so concurrency counters need no expiry here.

import { RateLimiterMemory } from 'rate-limiter-flexible';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { FlexibleRateLimiter } from './flexible-rate-limiter.ts';
import type { RateLimiter } from './limits.ts';

export class MemoryRateLimiter extends FlexibleRateLimiter implements RateLimiter {
  constructor() {
    super(0);
  }

  protected override createLimiter(keyPrefix: string, points: number, durationSec: number): RateLimiterAbstract {
    return new RateLimiterMemory({ keyPrefix, points, duration: durationSec });
  }
}
