export type {
  LimitPolicy, LimitName, LimitHeaders, LimitDecision, LimitGrant, LimitRefusal,
  LimitAcquireResult, RateLimiter,
} from './limits.ts';
export { RATELIMIT_HEADERS } from './limits.ts';
export { CONCURRENCY_RETRY_AFTER_MS } from './flexible-rate-limiter.ts';
export { MemoryRateLimiter } from './memory-rate-limiter.ts';
export { RedisRateLimiter, DEFAULT_CONCURRENCY_TTL_SECONDS } from './redis-rate-limiter.ts';
export type { RedisRateLimiterOptions } from './redis-rate-limiter.ts';
export { UNIFIED_WARNING_UTILIZATION } from './limits.ts';
export { SEED_PLANS, seedPlan, policyOfPlan, findPlan } from './plans.ts';
export type { PlanLimits, SeedPlan } from './plans.ts';
