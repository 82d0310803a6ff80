import { gatewayError } from '@tollgate/anthropic';
import { hashSecret, ipAllowed, keyExpired, keyFromHeaders, looksLikeKey, type KeyDirectory, type KeyEntry } from '@tollgate/keys';
import type { IncomingHttpHeaders } from 'node:http';
import { guardState, stateUnavailable } from './state.ts';

/**
 * The caller behind a request: the key from `x-api-key` or `Authorization: Bearer`, looked up
 * by its HMAC, and the access rules of its record (issue 8), in this order:
 * - unknown, revoked or `disabled` key, or `disabled` account → 401 `invalid_api_key`, one
 *   message for all so the answer does not tell which keys exist;
 * - `ip` outside the key's `ip_allowlist` → 403 `ip_not_allowed` (before the states below, so a
 *   leaked key tried from elsewhere learns nothing more about itself);
 * - `expires_at` reached → 401 `key_expired`;
 * - `suspended` account → 403 `account_suspended`.
 * `ip` is the client address as the server resolved it (`request.ip`: the socket's peer, or the
 * `x-forwarded-for` client when TRUST_PROXY is on). `allowed_models` is checked by the routes,
 * after model resolution (`checkModelAllowed`).
 * @throws GatewayError as above; 503 `state_unavailable` when hot state is lost
 */
export async function authenticate(
  keys: KeyDirectory,
  keyHashSecret: string,
  headers: IncomingHttpHeaders,
  stateReady: () => Promise<boolean>,
  ip: string,
  now: number = Date.now(),
): Promise<KeyEntry> {
  const secret = keyFromHeaders(headers);
  if (!secret || !looksLikeKey(secret)) throw gatewayError('invalid_api_key', 'invalid x-api-key');
  const entry = await guardState(() => keys.byHash(hashSecret(secret, keyHashSecret)));
  // A miss while hot state is lost is not a bad key: answer 503, not 401 (misses are rare, so
  // the extra round trip is off the common path).
  if (!entry && !(await guardState(stateReady))) throw stateUnavailable();
  if (!entry || entry.key.status !== 'active' || entry.account.status === 'disabled') {
    throw gatewayError('invalid_api_key', 'invalid x-api-key');
  }
  if (!ipAllowed(entry.key.ip_allowlist, ip)) {
    throw gatewayError('ip_not_allowed', `Requests from ${ip} are not allowed for this key`);
  }
  if (keyExpired(entry.key, now)) {
    throw gatewayError('key_expired', `This API key expired at ${new Date(entry.key.expires_at!).toISOString()}`);
  }
  if (entry.account.status !== 'active') throw gatewayError('account_suspended', 'This account is suspended; contact the operator');
  return entry;
}

/**
 * 403 `model_not_allowed` unless the key's `allowed_models` (catalog ids; empty or absent: every
 * model) holds `catalogModel`, the catalog id the request's model resolved to (aliases and
 * `-thinking` variants included).
 */
export function checkModelAllowed(entry: KeyEntry, catalogModel: string, requested: string): void {
  const allowed = entry.key.allowed_models;
  if (!allowed || allowed.length === 0 || allowed.includes(catalogModel)) return;
  throw gatewayError('model_not_allowed', `model: this key may not use ${requested} (allowed: ${allowed.join(', ')})`);
}
