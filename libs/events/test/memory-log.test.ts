// The EventLog contract against the embedded in-process log.
import { MemoryLog } from '@tollgate/events';
import { eventLogContract } from './event-log.contract.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal } from '@tollgate/events';

eventLogContract('MemoryLog', async () => ({ log: new MemoryLog(), cleanup: async () => {} }));

// …and with its write-ahead journal.

eventLogContract('MemoryLog with a journal', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-journal-'));
  return { log: new MemoryLog({ journal: new Journal(dir, { segmentEvents: 50 }) }), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});
