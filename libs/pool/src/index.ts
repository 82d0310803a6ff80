export type { GroupRecord, HealthSnapshot, Platform, PoolStore, UpstreamRecord } from './types.ts';
export { MemoryPoolStore, HEALTH_TTL_MS } from './memory.ts';
