export type { GroupRecord, HealthSnapshot, Platform, PoolStore, UpstreamRecord } from './types.ts';
