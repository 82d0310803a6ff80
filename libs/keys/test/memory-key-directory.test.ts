import { MemoryKeyDirectory } from '@tollgate/keys';
import { keyDirectoryContract } from './key-directory.contract.ts';

keyDirectoryContract('memory', async () => {
  const directory = new MemoryKeyDirectory();
  return { directory, peer: directory, propagationMs: 0, cleanup: () => directory.close() };
});
