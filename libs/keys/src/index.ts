export {
  KEY_PREFIX, DISPLAY_CHARS, generateSecret, hashSecret, displayPrefix, looksLikeKey, keyFromHeaders,
} from './secret.ts';
export type { KeyEntry, KeyDirectory } from './key-directory.ts';
export { MemoryKeyDirectory } from './memory-key-directory.ts';
export { RedisKeyDirectory } from './redis-key-directory.ts';
export type { RedisKeyDirectoryOptions } from './redis-key-directory.ts';
export { CachedKeyDirectory } from './cached-key-directory.ts';
export type { CachedKeyDirectoryOptions } from './cached-key-directory.ts';
export { CidrError, normaliseCidr, ipAllowed, keyExpired } from './access.ts';
export { seal, unseal, SealError } from './sealed.ts';
export { putVersioned } from './versioned-put.ts';
