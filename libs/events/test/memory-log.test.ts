// The EventLog contract against the embedded in-process log.
import { MemoryLog } from '@tollgate/events';
import { eventLogContract } from './event-log.contract.ts';

eventLogContract('MemoryLog', async () => ({ log: new MemoryLog(), cleanup: async () => {} }));
