// A secret anywhere in a URL: one definition (libs/http/src/secrets.ts) decides what the
// gateway drops from the upstream query and what the logs redact, by name and by value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { credentialInUrl, isCredentialName, lenientDecode, looksLikeCredential, redactUrl, stripCredentialParams } from '../src/index.ts';

const KEY = 'sk-tg-QUERYSECRET0123456789abcdefghijklmnopq';
const ADMIN = 'admin-secret-token-do-not-log-0001';

/** Every spelling breakerB used to get a key past the old name list, then the ones it had. */
const HOSTILE: ReadonlyArray<readonly [string, string]> = [
  // [query as sent, what the log shows]
  [`authorization=Bearer%20${KEY}`, 'authorization=[redacted]'],
  [`anthropic_api_key=${KEY}`, 'anthropic_api_key=[redacted]'],
  ['auth=hunter2hunter2', 'auth=[redacted]'],
  ['secret=hunter2hunter2', 'secret=[redacted]'],
  ['password=hunter2hunter2', 'password=[redacted]'],
  [`api+key=${KEY}`, 'api+key=[redacted]'],
  [`api_key%3D${KEY}`, '[redacted]'],
  [`api_key[]=${KEY}`, 'api_key[]=[redacted]'],
  [`api_key.x=${KEY}`, 'api_key.x=[redacted]'],
  [`api_key%00=${KEY}`, 'api_key%00=[redacted]'],
  [`;api_key=${KEY}`, ';api_key=[redacted]'],
  [`x=${KEY}`, 'x=[redacted]'],
  [`admin_token=${ADMIN}`, 'admin_token=[redacted]'],
  [`note=${ADMIN}`, 'note=[redacted]'],
  [`${KEY}=1`, '[redacted]'],
  [`x=${encodeURIComponent(encodeURIComponent(KEY))}`, 'x=[redacted]'],
  [`x=${KEY.replace('-', '%2d')}`, 'x=[redacted]'],
  [`api_key=${KEY}`, 'api_key=[redacted]'],
  ['key=anything', 'key=[redacted]'],
  ['apikey=anything', 'apikey=[redacted]'],
  ['X-Api-Key=anything', 'X-Api-Key=[redacted]'],
  ['access_token=anything', 'access_token=[redacted]'],
  ['accessToken=anything', 'accessToken=[redacted]'],
  ['token=anything', 'token=[redacted]'],
  [`sig=${randomBytes(32).toString('base64url')}`, 'sig=[redacted]'],
  [`x=${randomBytes(32).toString('base64url')}`, 'x=[redacted]'],
  [`x=${randomBytes(16).toString('hex')}`, 'x=[redacted]'],
];

test('a secret anywhere in a URL, by name or by value: dropped from the upstream query, redacted in the log', () => {
  for (const [query, logged] of HOSTILE) {
    assert.equal(stripCredentialParams(`?beta=true&${query}`, [ADMIN]), '?beta=true', query);
    assert.equal(redactUrl(`/v1/messages?beta=true&${query}`, [ADMIN]), `/v1/messages?beta=true&${logged}`, query);
  }
  // `;` separates too: a key after one is not hidden inside a kept pair.
  assert.equal(stripCredentialParams(`?beta=true;api_key=${KEY}`), '?beta=true');
  assert.equal(redactUrl(`/v1/m?beta=true;api_key=${KEY}`), '/v1/m?beta=true;api_key=[redacted]');
  // A key as a path segment is redacted in the log line too.
  assert.equal(redactUrl(`/v1/${KEY}/messages?beta=true`), '/v1/[redacted]/messages?beta=true');
  assert.equal(redactUrl(`/v1/${encodeURIComponent(`Bearer ${KEY}`)}`), '/v1/[redacted]');
});

test('ordinary parameters keep their exact bytes: ids, times, model names, short words', () => {
  const ordinary = '?beta=true&account_id=acct_0123456789abcdefghij&key_id=key_0123456789abcdefghij'
    + '&from=2026-11-30T12%3A00%3A00Z&model=claude-sonnet-4-5-20250929&request_id=req_ABCDEFGHIJKLMNOPQRSTUVWX'
    + '&id=550e8400-e29b-41d4-a716-446655440000&q=MyVeryLongParameterValueForTestingThings&limit=20';
  assert.equal(stripCredentialParams(ordinary, [ADMIN]), ordinary);
  assert.equal(redactUrl(`/ops/v1/usage${ordinary}`, [ADMIN]), `/ops/v1/usage${ordinary}`);
  assert.equal(stripCredentialParams(''), '');
  assert.equal(stripCredentialParams('?'), '');
  assert.equal(stripCredentialParams(`?api_key=${KEY}`), '');
  assert.equal(redactUrl('/v1/models/%zz'), '/v1/models/%zz');
});

test('the pieces: names by their words, values by their shape, lenient decoding', () => {
  assert.deepEqual(['api key', 'api_key[]', 'api_key\u0000', 'xApiKey', 'ANTHROPIC_API_KEY', 'authorization', 'session', 'passwd']
    .map(isCredentialName), [true, true, true, true, true, true, true, true]);
  assert.deepEqual(['key_id', 'account_id', 'beta', 'monkey', 'model', 'keyboard'].map(isCredentialName), [false, false, false, false, false, false]);
  assert.equal(looksLikeCredential('Bearer abc'), true);
  assert.equal(looksLikeCredential('basic dXNlcjpwYXNz'), true);
  assert.equal(looksLikeCredential('a short note', ['short']), false, 'secrets under 8 characters are not matched');
  assert.equal(lenientDecode('a%2541%zz+b%E2%82%AC'), 'aA%zz b€');
});

test('credentials in any part of a URL: query, fragment (as a query, as a path with its own query, whole), path segments and ;matrix parameters', () => {
  const where = (u: string) => credentialInUrl(new URL(u), ['adm_0123456789abcdef']);
  const cases: Array<[string, string | undefined]> = [
    ['https://h.example/cb', undefined],
    ['https://h.example/cb?x=1#section-2', undefined],
    ['https://h.example/cb;version=2/x', undefined],
    ['https://h.example/#/settings?tab=alerts', undefined],
    ['https://u:p@h.example/cb', 'user info'],
    ['https://h.example/cb?token=abc', 'query'],
    ['https://h.example/cb?a=1;api_key=abc', 'query'],
    ['https://h.example/cb#access_token=abc', 'fragment'],
    ['https://h.example/cb#token=', 'fragment'],
    ['https://h.example/cb#/cb?token=abc', 'fragment'],
    ['https://h.example/cb#x=1&client_secret=abc', 'fragment'],
    ['https://h.example/cb#/cb/adm_0123456789abcdef', 'fragment'],
    ['https://h.example/cb;token=abc', 'path parameter'],
    ['https://h.example/cb;v=1;session=abc/next', 'path parameter'],
    ['https://h.example/cb%3Btoken%3Dabc', 'path parameter'],
    ['https://h.example/token=abc/cb', 'path'],
    ['https://h.example/adm_0123456789abcdef/cb', 'path'],
    ['https://h.example/sk-ant-api03-abcdef/cb', 'path'],
  ];
  for (const [u, part] of cases) assert.equal(where(u), part, u);
});
