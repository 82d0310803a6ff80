// Secrets Tollgate must use again later (webhook signing secrets; issue 10: upstream credentials)
// cannot be hashed like customer keys: they are sealed. AES-256-GCM (authenticated: a changed
// byte fails to open instead of yielding garbage) under a key derived by HKDF-SHA256 (RFC 5869)
// from KEY_HASH_SECRET, which every process already shares, so any process can open what
// another sealed and no new secret has to be distributed.

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

const VERSION = 'sealed1';
/** HKDF salt: fixed and public (RFC 5869 §3.1 allows it); separates this use of the secret from key hashing. */
const SALT = Buffer.from('tollgate/sealed/v1', 'utf8');
const IV_BYTES = 12; // NIST SP 800-38D: 96-bit nonces for GCM
const TAG_BYTES = 16;

/** A sealed value that does not open: wrong secret, wrong context, or altered text. */
export class SealError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SealError';
  }
}

function keyFor(secret: string, purpose: string): Buffer {
  if (secret.length < 16) throw new SealError('the sealing secret (KEY_HASH_SECRET) must be at least 16 characters');
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), SALT, Buffer.from(purpose, 'utf8'), 32));
}

/**
 * Seals `plaintext` for storage: `sealed1.<iv>.<ciphertext>.<tag>` (base64url parts).
 * `purpose` (e.g. `webhook-secret`) selects the derived key; `context` (e.g. the webhook id) is
 * authenticated data, so a sealed value copied onto another record does not open there.
 * A fresh random IV per call: the same plaintext seals differently each time.
 * @throws SealError when `secret` is shorter than 16 characters
 */
export function seal(plaintext: string, secret: string, purpose: string, context: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', keyFor(secret, purpose), iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return [VERSION, iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
}

/**
 * Opens what `seal` produced with the same secret, purpose and context.
 * @throws SealError when the text is not a sealed value or does not authenticate (another
 * secret, purpose or context, or altered bytes); never returns a wrong plaintext
 */
export function unseal(sealed: string, secret: string, purpose: string, context: string): string {
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== VERSION) throw new SealError('not a sealed value');
  const [, iv, ct, tag] = parts.map((p) => Buffer.from(p, 'base64url')) as [Buffer, Buffer, Buffer, Buffer];
  if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new SealError('not a sealed value');
  try {
    const decipher = createDecipheriv('aes-256-gcm', keyFor(secret, purpose), iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
  } catch {
    throw new SealError('sealed value does not open with this secret and context (altered, or sealed under another KEY_HASH_SECRET)');
  }
}
