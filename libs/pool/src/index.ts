export type { GroupRecord, HealthSnapshot, Platform, PoolStore, UpstreamRecord } from './types.ts';
export { PoolBusyError, POOL_LOCK_TTL_MS, POOL_LOCK_WAIT_MS } from './types.ts';
export { MemoryPoolStore, HEALTH_TTL_MS } from './memory.ts';
export { RedisPoolStore } from './redis.ts';
export { aggregateHealth } from './health.ts';
export type { PoolHealth } from './health.ts';
export { saveUpstream, saveGroup, loadUpstreams, loadGroups, restorePool } from './durable.ts';
export {
  CachedPoolView, configuredGroup, configuredUpstream, DEFAULT_ID, MAX_POOL_CACHE_MS, UPSTREAM_KEY_PURPOSE,
} from './view.ts';
export type { CachedPoolViewOptions, ConfiguredUpstream, PoolView, ResolvedGroup, ResolvedUpstream } from './view.ts';
