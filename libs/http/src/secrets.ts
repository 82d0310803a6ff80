/**
 * One definition of "a secret in a URL", shared by the log serializer (`redactUrl`) and the
 * gateway's upstream query (`stripCredentialParams`), so what is kept from the upstream and
 * what is hidden in the logs can never disagree.
 *
 * A query parameter is a credential when, after percent- and `+`-decoding (repeated, so a
 * double-encoded value is seen too; bad escapes are decoded leniently, byte by byte):
 * - its NAME has a credential word (`CREDENTIAL_WORDS`: key, token, secret, password, auth…)
 *   among its words — split at every non-alphanumeric and at camelCase, so `api+key`,
 *   `api_key[]`, `api_key.x`, `api_key%00`, `;api_key`, `anthropic_api_key`, `xApiKey` all
 *   count — unless its last word is `id` (`key_id=key_…` names a key, it is not one); or
 * - its name or its VALUE looks like a credential (`looksLikeCredential`): an `sk-…`/`sk_…` key
 *   (Anthropic's and Tollgate's customer keys), `Bearer …` / `Basic …`, any of the process's
 *   own secrets (admin and finance tokens, the upstream key), or a long random-looking token.
 * The name rule alone is how a key under an unusual name used to slip through (`?auth=`,
 * `?x=<KEY>`); the value rule is what makes the name list not matter.
 */
import { randomTokenRuns } from '@tollgate/anthropic';

/** Words that make a parameter name a credential's name (compared lowercased). */
const CREDENTIAL_WORDS = new Set([
  'key', 'apikey', 'token', 'accesstoken', 'secret', 'password', 'passwd', 'pwd', 'pass', 'auth', 'authorization',
  'credential', 'credentials', 'signature', 'sig', 'session', 'sessionid', 'cookie', 'bearer', 'jwt',
]);

/**
 * A random token by value alone: `randomTokenRuns` of @tollgate/anthropic (32+ base64/hex
 * characters mixing cases and digits), the one rule the upstream error redaction applies too.
 */
function hasRandomToken(text: string): boolean {
  return randomTokenRuns(text).length > 0;
}

/**
 * True when `text` (already decoded) contains something credential-shaped: `sk-…`/`sk_…` (6+
 * token characters after it, not preceded by a letter or digit), `Bearer …`/`Basic …`, one of `secrets` (each ≥ 8 characters, so a
 * short value cannot match ordinary text), or a random token (`hasRandomToken`).
 */
export function looksLikeCredential(text: string, secrets: readonly string[] = []): boolean {
  // Not inside a word: `MyDesk-Assistant`, `mask-images-…` are no keys; `api_key=sk-…`, `_sk-…` are.
  if (/(?<![A-Za-z0-9])sk[-_][A-Za-z0-9_-]{6,}/i.test(text)) return true;
  if (/\b(bearer|basic)\s+\S/i.test(text)) return true;
  for (const s of secrets) if (s.length >= 8 && text.includes(s)) return true;
  return hasRandomToken(text);
}

/**
 * `s` with `%XX` escapes and `+` decoded, byte-wise and leniently (a bad escape stays as it
 * is, invalid UTF-8 becomes U+FFFD), repeated until it stops changing (at most 4 rounds) so a
 * double-encoded secret is decoded too.
 */
export function lenientDecode(s: string): string {
  let cur = s;
  for (let round = 0; round < 4; round++) {
    const bytes: number[] = [];
    const raw = Buffer.from(cur.replace(/\+/g, ' '), 'utf8');
    for (let i = 0; i < raw.length; i++) {
      const b = raw[i]!;
      if (b === 0x25 && i + 2 < raw.length && /^[0-9A-Fa-f]{2}$/.test(raw.toString('latin1', i + 1, i + 3))) {
        bytes.push(parseInt(raw.toString('latin1', i + 1, i + 3), 16));
        i += 2;
      } else {
        bytes.push(b);
      }
    }
    const next = Buffer.from(bytes).toString('utf8');
    if (next === cur) return next;
    cur = next;
  }
  return cur;
}

function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

/** True when a parameter name, decoded, names a credential (see the module comment). */
export function isCredentialName(decodedName: string): boolean {
  const w = words(decodedName);
  if (w.length === 0 || w[w.length - 1] === 'id') return false;
  return w.some((x) => CREDENTIAL_WORDS.has(x)) || CREDENTIAL_WORDS.has(w.join(''));
}

/**
 * True when the query pair `pair` (raw bytes of one `name=value`, or a bare `name`) carries a
 * credential by its name or by its name's or value's content. `secrets`: the process's own
 * credentials to look for by value.
 */
export function isCredentialPair(pair: string, secrets: readonly string[] = []): boolean {
  const eq = pair.indexOf('=');
  const name = lenientDecode(eq < 0 ? pair : pair.slice(0, eq));
  const value = eq < 0 ? '' : lenientDecode(pair.slice(eq + 1));
  // Name and value apart: read as one string, `id=` + a 28-character id would be a 31+ run.
  return isCredentialName(name) || looksLikeCredential(name, secrets) || looksLikeCredential(value, secrets);
}

/** Where in a URL a credential was found (`credentialInUrl`). */
export type UrlCredentialPart = 'user info' | 'query' | 'path' | 'path parameter' | 'fragment';

/** True when one of the `&`/`;`-separated pairs of `query` (raw, no leading `?`) is a credential. */
function queryHasCredential(query: string, secrets: readonly string[]): boolean {
  return query.split(/[&;]/).some((pair) => pair !== '' && isCredentialPair(pair, secrets));
}

/**
 * The part of `path` (raw, `/`-separated) that carries a credential, or undefined. Each segment
 * is decoded and judged whole (`looksLikeCredential`); its `;` matrix parameters (`/cb;token=…`,
 * also when percent-encoded) and a segment shaped `name=value` are judged as query pairs.
 */
function pathCredential(path: string, secrets: readonly string[]): 'path' | 'path parameter' | undefined {
  for (const raw of path.split('/')) {
    if (raw === '') continue;
    const seg = lenientDecode(raw);
    if (looksLikeCredential(seg, secrets)) return 'path';
    const [first, ...params] = seg.split(';');
    if (params.some((p) => p !== '' && isCredentialPair(p, secrets))) return 'path parameter';
    if (first!.includes('=') && isCredentialPair(first!, secrets)) return 'path';
  }
  return undefined;
}

/**
 * The first part of `url` that carries a credential, or undefined: the one judgement for every
 * URL an operator configures (webhook URLs; upstream base URLs, issue 10), with the rules above.
 * Every part is judged: a user name or password (any at all), each query pair, each path segment and its `;` matrix parameters, and the
 * fragment read three ways — as a query (`#access_token=…`, the OAuth implicit flow), as a path
 * with its own query (`#/cb?token=…`, client-side routes), and whole.
 */
export function credentialInUrl(url: URL, secrets: readonly string[] = []): UrlCredentialPart | undefined {
  if (url.username !== '' || url.password !== '') return 'user info';
  if (queryHasCredential(url.search.replace(/^\?/, ''), secrets)) return 'query';
  const path = pathCredential(url.pathname, secrets);
  if (path) return path;
  const fragment = url.hash.replace(/^#/, '');
  if (fragment === '') return undefined;
  const q = fragment.indexOf('?');
  const fragmentPath = q < 0 ? fragment : fragment.slice(0, q);
  if (looksLikeCredential(lenientDecode(fragment), secrets)
    || queryHasCredential(fragment, secrets)
    || pathCredential(fragmentPath, secrets) !== undefined
    || (q >= 0 && queryHasCredential(fragment.slice(q + 1), secrets))) return 'fragment';
  return undefined;
}

/**
 * `search` (`?a=1&api_key=sk-…`, or '') without any credential pair (`isCredentialPair`), for
 * the request the gateway sends upstream. Pairs are split at `&` and `;` (some servers treat
 * `;` as a separator too, so a secret after one must not hide inside a kept pair); every
 * other pair keeps its exact bytes. Returns '' when nothing is left.
 */
export function stripCredentialParams(search: string, secrets: readonly string[] = []): string {
  if (search === '' || search === '?') return '';
  const body = search.startsWith('?') ? search.slice(1) : search;
  const kept = body.split(/[&;]/).filter((pair) => pair !== '' && !isCredentialPair(pair, secrets));
  return kept.length === 0 ? '' : `?${kept.join('&')}`;
}

/**
 * `url` (a request target: path and query) for a log line: each query pair that carries a
 * credential becomes `name=[redacted]`, or `[redacted]` when the name itself is
 * credential-shaped (`?sk-…=` or `?api_key%3Dsk-…`); each path segment that looks like a
 * credential becomes `[redacted]`. Everything else is kept byte for byte.
 */
export function redactUrl(url: string, secrets: readonly string[] = []): string {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const redactedPath = path.split('/').map((seg) => (looksLikeCredential(lenientDecode(seg), secrets) ? '[redacted]' : seg)).join('/');
  if (q < 0) return redactedPath;
  const query = url.slice(q + 1);
  // Keep the separators as they were, so the logged URL is the URL that came in.
  const parts = query.split(/([&;])/).map((part, i) => {
    if (i % 2 === 1 || part === '' || !isCredentialPair(part, secrets)) return part;
    const eq = part.indexOf('=');
    const rawName = eq < 0 ? part : part.slice(0, eq);
    return eq < 0 || looksLikeCredential(lenientDecode(rawName), secrets) ? '[redacted]' : `${rawName}=[redacted]`;
  });
  return `${redactedPath}?${parts.join('')}`;
}
