import { MemoryBalanceStore } from '@tollgate/ledger';
import { balanceStoreContract } from './balance-store.contract.ts';
import { admissionContract } from './admission.contract.ts';

balanceStoreContract('memory', async () => ({ store: new MemoryBalanceStore(), cleanup: async () => {} }));

admissionContract('memory', async (now) => ({ store: new MemoryBalanceStore({ now }), cleanup: async () => {} }));
