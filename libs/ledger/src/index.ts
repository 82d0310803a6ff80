export type {
  HoldRequest, HoldResult, AccountBalance, ApplyResult, BalanceStore, BalanceSnapshot,
} from './balance-store.ts';
export { MemoryBalanceStore } from './memory-balance-store.ts';
