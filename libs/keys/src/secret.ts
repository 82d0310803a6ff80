import { createHmac, randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const KEY_PREFIX = 'sk-tg-';
/** characters of the secret kept in clear for display ("sk-tg-AbC1…") */
export const DISPLAY_CHARS = 12;

/** 40 base62 characters ≈ 238 bits of entropy. */
export function generateSecret(): string {
  const bytes = randomBytes(40);
  let out = KEY_PREFIX;
  // 62 does not divide 256; bias here is < 0.5 % per character and harmless for 238 bits.
  for (const b of bytes) out += ALPHABET[b % 62];
  return out;
}

/** Keys are only ever stored as HMAC-SHA256(server key, secret): a leaked table reveals nothing. */
export function hashSecret(secret: string, serverKey: string): string {
  return createHmac('sha256', serverKey).update(secret).digest('hex');
}

export function displayPrefix(secret: string): string {
  return secret.slice(0, DISPLAY_CHARS);
}

/** Customer keys are `sk-…`; anything else is rejected before hashing. */
export function looksLikeKey(value: string): boolean {
  return value.startsWith('sk-') && value.length >= 20 && value.length <= 200;
}

/** A key from `x-api-key` or `Authorization: Bearer …`, whichever is present. */
export function keyFromHeaders(headers: Record<string, string | string[] | undefined>): string | undefined {
  const direct = headers['x-api-key'];
  if (typeof direct === 'string' && direct.length > 0) return direct.trim();
  const auth = headers['authorization'];
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1]!.trim();
  }
  return undefined;
}
