import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** `<prefix>_` + 20 base36 characters (~103 bits): ids are made anywhere without coordination. */
export function newId(prefix: string): string {
  let out = `${prefix}_`;
  for (const b of randomBytes(20)) out += ALPHABET[b % 36];
  return out;
}

/** Versions only grow, even if clocks differ between control processes. */
export function nextVersion(previous: number | undefined): number {
  return Math.max((previous ?? 0) + 1, Date.now());
}
