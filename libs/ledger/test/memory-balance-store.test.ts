import { MemoryBalanceStore } from '@tollgate/ledger';
import { balanceStoreContract } from './balance-store.contract.ts';

balanceStoreContract('memory', async () => ({ store: new MemoryBalanceStore(), cleanup: async () => {} }));
