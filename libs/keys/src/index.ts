export {
  KEY_PREFIX, DISPLAY_CHARS, generateSecret, hashSecret, displayPrefix, looksLikeKey, safeEqual, keyFromHeaders,
} from './secret.ts';
export type { KeyEntry, KeyDirectory } from './key-directory.ts';
export { MemoryKeyDirectory } from './memory-key-directory.ts';
