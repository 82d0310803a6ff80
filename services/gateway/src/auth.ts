import { gatewayError, type GatewayError } from '@tollgate/anthropic';
import { advisorTools, requestFallbacks } from '@tollgate/pricing';
import { hashSecret, ipAllowed, keyExpired, keyFromHeaders, looksLikeKey, type KeyDirectory, type KeyEntry } from '@tollgate/keys';
import type { IncomingHttpHeaders } from 'node:http';
import { guardState, stateUnavailable } from './state.ts';

/** Most key hashes `secretHash` remembers (about 0.6 MB at most); the least recently used go first. */
const MAX_REMEMBERED_HASHES = 4096;
const hashes = new Map<string, string>();

/**
 * `hashSecret(secret, serverKey)`, remembered for the keys seen lately: a client sends the same
 * key on every request and the HMAC was ~2 % of a request's CPU (issue 11). The map holds the
 * secrets of recent callers, as the process already does while their requests run (and the
 * secret scrubbers of @tollgate/anthropic for the headers they send); it never leaves memory.
 */
function secretHash(secret: string, serverKey: string): string {
  const id = `${serverKey}\0${secret}`;
  let hash = hashes.get(id);
  if (hash === undefined) {
    hash = hashSecret(secret, serverKey);
    if (hashes.size >= MAX_REMEMBERED_HASHES) hashes.delete(hashes.keys().next().value!);
  } else {
    hashes.delete(id); // re-inserted below: Map order is recency order
  }
  hashes.set(id, hash);
  return hash;
}

/**
 * What `authenticate` is told of the hot state when a key is not found: `false` lost (Redis
 * empty or unreachable: 503), `true` ready (the miss is a bad key: 401), `'recovered'` ready
 * again a moment ago (the miss may have been read while it was lost: the key is read again).
 */
export type StateReadiness = boolean | 'recovered';

/**
 * The 401 for a request without a usable key, naming the header it was read from and nothing
 * about the key itself: `invalid x-api-key` (Anthropic's own message) when `x-api-key` carried
 * it, `invalid API key in Authorization: Bearer` when the OpenAI-style header did, and
 * Anthropic's `x-api-key header is required` when neither carries one.
 */
function badKey(headers: IncomingHttpHeaders): GatewayError {
  const direct = headers['x-api-key'];
  if (typeof direct === 'string' && direct.length > 0) return gatewayError('invalid_api_key', 'invalid x-api-key');
  if (typeof headers.authorization === 'string' && /^\s*Bearer\s+\S/i.test(headers.authorization)) {
    return gatewayError('invalid_api_key', 'invalid API key in Authorization: Bearer');
  }
  return gatewayError('invalid_api_key', 'x-api-key header is required (or Authorization: Bearer <key>)');
}

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
 * `stateReady(since)` is asked on a miss: the state as a check begun at or after `since`
 * (performance.now() ms, once the miss was read) found it, so a "ready" read before a loss is
 * never reused for a miss read after it.
 * @throws GatewayError as above; 503 `state_unavailable` when hot state is lost (or in the
 * restore window after a rebuild: BalanceStore.stateLost)
 */
export async function authenticate(
  keys: KeyDirectory,
  keyHashSecret: string,
  headers: IncomingHttpHeaders,
  stateReady: (since: number) => Promise<StateReadiness>,
  ip: string,
  now: number = Date.now(),
): Promise<KeyEntry> {
  const secret = keyFromHeaders(headers);
  if (!secret || !looksLikeKey(secret)) throw badKey(headers);
  const hash = secretHash(secret, keyHashSecret);
  let entry = await guardState(() => keys.byHash(hash));
  if (!entry) {
    // A miss while hot state is lost is not a bad key: answer 503, not 401 (misses are rare, so
    // the extra round trip is off the common path).
    // Only a check begun once the miss was read speaks for it (performance.now() ms).
    const missedAt = performance.now();
    const state = await guardState(() => stateReady(missedAt));
    if (state === false) throw stateUnavailable();
    // Just rebuilt: this miss may have been read before (a valid key would get a 401; seen: 209
    // requests in 0.17 s after Redis came back). The cache forgot its misses when the rebuild
    // was seen, so this reads the store again.
    if (state === 'recovered') entry = await guardState(() => keys.byHash(hash));
  }
  if (!entry || entry.key.status !== 'active' || entry.account.status === 'disabled') {
    throw badKey(headers);
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
export function checkModelAllowed(entry: KeyEntry, catalogModel: string, requested: string, where = 'model'): void {
  const allowed = entry.key.allowed_models;
  if (!allowed || allowed.length === 0 || allowed.includes(catalogModel)) return;
  throw gatewayError('model_not_allowed', `${where}: this key may not use ${requested} (allowed: ${allowed.join(', ')})`);
}

/**
 * `checkModelAllowed` for every model a Messages request can be served by, not only
 * `body.model`: each `fallbacks[i].model` (server-side fallback beta) and each advisor tool's
 * `tools[i].model` (the advisor is a model call billed to the key). Read with the same parsers
 * the pricing uses (`requestFallbacks`, `advisorTools` of @tollgate/pricing), one entry at a
 * time so the error names its place. A name is resolved to its catalog id first (aliases
 * count as their model); a name the catalog does not know can be in no allow-list, so it is
 * refused too when the key has one, as is `fallbacks: "default"` (the upstream chooses).
 * Throws 403 `model_not_allowed` naming the model and where.
 */
export function checkServingModelsAllowed(
  entry: KeyEntry, body: { fallbacks?: unknown; tools?: unknown }, catalogId: (name: string) => string | undefined,
): void {
  const allowed = entry.key.allowed_models;
  if (!allowed || allowed.length === 0) return;
  const check = (name: string, where: string) => checkModelAllowed(entry, catalogId(name) ?? name, name, where);
  // "default": the upstream chooses the model, which no allow-list can be checked against
  if (body.fallbacks === 'default') {
    throw gatewayError('model_not_allowed', `fallbacks: "default" lets the upstream choose the fallback model, and this key may use only ${allowed.join(', ')}; name the fallback models instead`);
  }
  if (Array.isArray(body.fallbacks)) {
    body.fallbacks.forEach((f, i) => {
      for (const name of requestFallbacks([f])) check(name, typeof f === 'string' ? `fallbacks[${i}]` : `fallbacks[${i}].model`);
    });
  }
  if (Array.isArray(body.tools)) {
    body.tools.forEach((t, i) => {
      for (const a of advisorTools([t])) check(a.model, `tools[${i}].model`);
    });
  }
}
