export type {
  HoldRequest, HoldResult, AccountBalance, ApplyResult, BalanceStore, BalanceSnapshot, LogPosition, StateSnapshot,
  LedgerQuarantine, LedgerEntry, ReferenceClaim, BatchItem, BatchOutcome, AdmissionSegment, HoldAdmission, RestoredHold, SpendWindow, SpendWindowCount, SpendWindowName,
} from './balance-store.ts';
export { admissionHoldAt, clampAdmission, isRefusal, positionKey, RebuildSupersededError, windowBounds, SPEND_WINDOW_NAMES, StoreNotReadyError } from './balance-store.ts';
export { MemoryBalanceStore } from './memory-balance-store.ts';
export { RedisBalanceStore, accountHashTag, LOST_DURING_REBUILD, MIN_REDIS_VERSION, redisVersionProblem, RESTORE_WINDOW_MS, RESTORE_WAIT_MAX_MS, RESTORE_ANNOUNCE_MS, RECORD_HOLDER_MS, RESTORE_POLL_MS, LOST_SETTLE_MS } from './redis-balance-store.ts';
export type { RedisBalanceStoreOptions } from './redis-balance-store.ts';
export { EpochRegistry } from './epoch-registry.ts';
export { ApplyCoalescer, DEFAULT_COALESCE_MAX_EVENTS } from './apply-coalescer.ts';
export type { EpochRegistryOptions, RegistryEntry } from './epoch-registry.ts';
export { releaseUnanswered } from './release-unanswered.ts';
export { acquireOwned, tryWithLock } from './held-lock.ts';
export type { ReleaseRetryOptions } from './release-unanswered.ts';
