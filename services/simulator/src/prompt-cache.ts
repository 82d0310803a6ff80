import { createHash } from 'node:crypto';
import { tokensFor } from './tokens.ts';
import type { PromptUnit } from './tokens.ts';
import type { CacheTtl } from './wire.ts';

export interface CacheOutcome {
  readonly readTokens: number;
  readonly writeTokens: number;
  readonly writeTtl: CacheTtl;
}

/**
 * In-memory prompt cache: remembers every breakpoint prefix it has seen (hashed with the
 * model, since caches are per model). Entries never expire, so a test gets the same answer no
 * matter how slowly it runs.
 */
export class PromptCache {
  readonly #seen = new Set<string>();

  /**
   * Reads the longest already-seen breakpoint prefix and writes the rest up to the last
   * breakpoint, then remembers every breakpoint of this request. With one breakpoint this is
   * simply "write the first time, read afterwards".
   */
  settle(model: string, units: readonly PromptUnit[]): CacheOutcome {
    const hash = createHash('sha256').update(model).update('\u0000');
    let chars = 0;
    let imageTokens = 0;
    const breakpoints: { digest: string; tokens: number; ttl: CacheTtl }[] = [];
    for (const u of units) {
      hash.update(u.key).update('\u0000');
      chars += u.chars;
      imageTokens += u.imageTokens;
      if (u.breakpoint !== undefined) {
        breakpoints.push({ digest: hash.copy().digest('hex'), tokens: tokensFor(chars, imageTokens), ttl: u.breakpoint });
      }
    }
    const last = breakpoints.at(-1);
    if (last === undefined) return { readTokens: 0, writeTokens: 0, writeTtl: '5m' };

    let readTokens = 0;
    for (const bp of breakpoints) if (this.#seen.has(bp.digest)) readTokens = bp.tokens;
    for (const bp of breakpoints) this.#seen.add(bp.digest);
    return { readTokens, writeTokens: last.tokens - readTokens, writeTtl: last.ttl };
  }

  clear(): void {
    this.#seen.clear();
  }
}
