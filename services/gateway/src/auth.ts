import { gatewayError } from '@tollgate/anthropic';
import { hashSecret, keyFromHeaders, looksLikeKey, type KeyDirectory, type KeyEntry } from '@tollgate/keys';
import type { IncomingHttpHeaders } from 'node:http';
import { guardState, stateUnavailable } from './state.ts';

/**
 * The caller behind a request: the key from `x-api-key` or `Authorization: Bearer`, looked up
 * by its HMAC. Unknown, revoked, or on a disabled account → 401, with one message for all so
 * the answer does not tell which keys exist.
 */
export async function authenticate(
  keys: KeyDirectory,
  keyHashSecret: string,
  headers: IncomingHttpHeaders,
  stateReady: () => Promise<boolean>,
): Promise<KeyEntry> {
  const secret = keyFromHeaders(headers);
  if (!secret || !looksLikeKey(secret)) throw gatewayError('invalid_api_key', 'invalid x-api-key');
  const entry = await guardState(() => keys.byHash(hashSecret(secret, keyHashSecret)));
  // A miss while hot state is lost is not a bad key: answer 503, not 401 (misses are rare, so
  // the extra round trip is off the common path).
  if (!entry && !(await guardState(stateReady))) throw stateUnavailable();
  if (!entry || entry.key.status !== 'active' || entry.account.status !== 'active') {
    throw gatewayError('invalid_api_key', 'invalid x-api-key');
  }
  return entry;
}
