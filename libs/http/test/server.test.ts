// The shared HTTP edge on real sockets: hostile bodies (deep nesting, compression, zip bombs),
// CORS for browser use of the SDKs, the admin-token rule, and credential-free logs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { closeUnhandledConnections, createHttpServer, defaultMaxConnectionsPerIp, NEXT_REQUEST_WAIT_MS, SHUTTING_DOWN_MESSAGE, loggerOptions, MAX_JSON_MEMBERS, parseJsonBody, registerServedElsewhere, requireToken } from '../src/index.ts';
import { rawConnection } from '../../../test/support/raw-http.ts';

const LIMIT = 256 * 1024;
const ADMIN = 'admin-token-for-edge-tests-0001';
/** An operator-chosen credential of no credential shape (not random, no sk- prefix). */
const OWN_SECRET = 'letmein-pineapple';
let logs = '';
let app: FastifyInstance;
let url: string;
let corsApp: FastifyInstance;
let corsUrl: string;

/** A server with an echo route (what the parser made of the body), an SSE route that hijacks, and an admin route. */
function build(corsOrigins?: readonly string[] | '*') {
  const sink = new Writable({ write(chunk, _enc, cb) { logs += chunk.toString(); cb(); } });
  const s = createHttpServer({
    bodyLimitBytes: LIMIT,
    logger: { ...loggerOptions('trace', 'edge-test', [ADMIN, OWN_SECRET]), stream: sink },
    secrets: [ADMIN, OWN_SECRET],
    ...(corsOrigins === undefined ? {} : { corsOrigins }),
  });
  s.post('/echo', async (request) => ({ raw: request.rawBody?.toString('utf8') ?? null, parsed: request.body ?? null }));
  s.get('/v1/things/:id', async () => ({ ok: true }));
  s.get('/v1/pairs/:first/:second', async () => ({ ok: true }));
  // a lookup by a path parameter whose "not found" repeats it (as the admin API's do)
  s.get('/v1/accounts/:id', async (request) => { throw gatewayError('not_found', `account ${(request.params as { id: string }).id} does not exist`); });
  // a reply of some backend that does not parse: the server's fault, not the client's JSON
  s.get('/v1/backend-garbage', async () => JSON.parse('not json at all') as unknown);
  s.post('/v1/backend-garbage', async () => JSON.parse('{"truncated":') as unknown);
  // a library error that declares its answer (gatewayCode, retryAfterS), as WarehouseUnavailableError does
  s.get('/v1/declared', async () => { throw Object.assign(new Error('The thing is down (ECONNREFUSED); retry shortly'), { gatewayCode: 'warehouse_unavailable', retryAfterS: 5 }); });
  registerServedElsewhere(s, '/elsewhere/*', 'another process');
  s.get('/v1/declared-unknown', async () => { throw Object.assign(new Error('secret internals'), { gatewayCode: 'no_such_code' }); });
  s.get('/sse', async (_request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
    reply.raw.end('event: ping\ndata: {}\n\n');
  });
  s.register(async (scoped) => {
    scoped.addHook('onRequest', async (request) => {
      if (request.headers['x-api-key'] !== 'sk-good') throw gatewayError('invalid_api_key');
    });
    scoped.get('/v1/thing', async () => ({ ok: true }));
  });
  s.register(async (admin) => {
    admin.addHook('onRequest', requireToken(ADMIN));
    admin.get('/admin/v1/thing', async () => ({ ok: true }));
  });
  return s;
}

before(async () => {
  app = build();
  url = await app.listen({ host: '127.0.0.1', port: 0 });
  corsApp = build(['https://app.example.com']);
  corsUrl = await corsApp.listen({ host: '127.0.0.1', port: 0 });
});
after(async () => {
  await app.close();
  await corsApp.close();
});

async function post(body: Buffer | string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: res.status, json: (await res.json()) as { raw?: string; parsed?: unknown; error?: { type: string; code: string; message: string } } };
}

test('deep nesting (100k levels) is a 400 invalid_request at the parser, not a 500; 512 levels and brackets in strings pass', async () => {
  const deep = await post('['.repeat(100_000) + ']'.repeat(100_000));
  assert.equal(deep.status, 400);
  assert.equal(deep.json.error?.code, 'invalid_request');
  assert.equal(deep.json.error?.message, 'Request body nests objects and arrays more than 512 levels deep');
  const deepObj = await post('{"a":'.repeat(513) + '1' + '}'.repeat(513));
  assert.equal(deepObj.status, 400);

  const ok = await post('['.repeat(512) + ']'.repeat(512));
  assert.equal(ok.status, 200);
  // 10,000 brackets and an escaped quote inside a string are not nesting
  const text = JSON.stringify({ s: '['.repeat(10_000) + '\\"{' });
  const inString = await post(text);
  assert.equal(inString.status, 200);
  assert.equal(inString.json.raw, text);
});

test('a key given twice in one object: 400 invalid_request naming its path, at every depth and however the key is spelled; repeats across objects and colons in strings pass', async () => {
  const message = (path: string) => `${path}: given more than once in one object; which one was meant is a guess, so send each key once`;
  const refused: Array<[string, string]> = [
    ['{"model":"claude-opus-4-6","model":"claude-haiku-4-5"}', 'model'],
    ['{"max_tokens":1,"stream":false,"max_tokens":64000}', 'max_tokens'],
    ['{"stream":true,"messages":[],"stream":false}', 'stream'],
    // the same key once escaped: JSON decodes both to "model"
    ['{"model":"a","mod\\u0065l":"b"}', 'model'],
    ['{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image","type":"text","text":"b"}]}]}', 'messages[0].content[1].type'],
    ['{"tools":[{"name":"a","input_schema":{"type":"object"}},{"name":"b","name":"c","input_schema":{}}]}', 'tools[1].name'],
    ['{"thinking":{"type":"enabled","budget_tokens":1024,"budget_tokens":1}}', 'thinking.budget_tokens'],
    ['{"metadata":{"user id":"x","user id":"y"}}', 'metadata["user id"]'],
    ['{"a\\u0000":1,"a\\u0000":2}', '["a?"]'],
    ['{"__proto__":{},"__proto__":{}}', '__proto__'],
    ['{"":1,"":2}', '[""]'],
    // the first repeat is named when there are several
    ['{"x":{"k":1,"k":2},"y":1,"y":2}', 'x.k'],
    [`[${'{"ok":1},'.repeat(1000)}{"z":1,"z":1}]`, '[1000].z'],
  ];
  for (const [body, path] of refused) {
    const r = await post(body);
    assert.deepEqual([r.status, r.json.error?.code, r.json.error?.message], [400, 'invalid_request', message(path)], body.slice(0, 80));
  }
  // compressed: judged on the decoded bytes
  const gz = await post(zlib.gzipSync(Buffer.from('{"model":"a","model":"b"}')), { 'content-encoding': 'gzip' });
  assert.deepEqual([gz.status, gz.json.error?.message], [400, message('model')]);
  const passed = [
    '[{"a":1},{"a":1},{"b":{"a":1}}]',
    '{"a":"x:y:z","b":{":":":"},"c":"\\":"}',
    '{"model":"a","Model":"b","model ":"c"}',
    '{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}',
    '{}', '[]', '"{\\"a\\":1,\\"a\\":2}"', '1',
  ];
  for (const body of passed) {
    const r = await post(body);
    assert.deepEqual([r.status, r.json.raw, r.json.parsed], [200, body, JSON.parse(body)], body);
  }
});

test('half a surrogate pair in a \\u escape is 400 invalid_json naming where, as Anthropic refuses it; whole pairs, raw astral characters and an escaped backslash before u pass', async () => {
  const message = (path: string) => `Request body is not valid JSON: ${path} has a \\u escape of half a surrogate pair (U+D800–U+DFFF without its other half), which is not text`;
  const refused: Array<[string, string]> = [
    ['{"model":"\\ud800"}', 'model'],
    ['{"messages":[{"role":"user","content":"ab\\uDFFF"}]}', 'messages[0].content'],
    ['{"s":"\\udc00\\ud800"}', 's'], // the halves in the wrong order
    ['{"s":"x\\ud83d"}', 's'], // an emoji cut after its first half
    // in a key: a reader that writes U+FFFD for both makes these one key
    ['{"a\\ud800":1,"a\\udbff":2}', '["a?"]'],
    ['["ok","\\uDBFFx"]', '[1]'],
    ['"\\ud800"', 'body'],
    // an escaped backslash, then `ud800` as text, then a lone low half that looks paired
    ['{"a":"\\\\ud800\\udc00"}', 'a'],
  ];
  for (const [body, path] of refused) {
    const r = await post(body);
    assert.deepEqual([r.status, r.json.error?.code, r.json.error?.message], [400, 'invalid_json', message(path)], body);
  }
  const passed = ['{"s":"\\ud83d\\ude00"}', '{"s":"\\uD83D\\uDE00 😀"}', '{"s":"\\\\ud800"}', '{"s":"\\u00e9\\ud7ff\\ue000"}'];
  for (const body of passed) {
    const r = await post(body);
    assert.deepEqual([r.status, r.json.raw, r.json.parsed], [200, body, JSON.parse(body)], body);
  }
});

test('a number beyond a 64-bit float is 400 invalid_request naming where (JSON.parse would make it Infinity); the largest finite and underflowing numbers pass', async () => {
  const message = (path: string) => `${path}: is a number beyond the range of a 64-bit float (about ±1.8e308)`;
  const refused: Array<[string, string]> = [
    ['{"max_tokens":1e400}', 'max_tokens'],
    ['{"temperature":-1e400}', 'temperature'],
    ['{"tools":[{"input_schema":{"maximum":2e308}}]}', 'tools[0].input_schema.maximum'],
    ['[1,[2,1.8e308]]', '[1][1]'],
    [`{"n":1${'0'.repeat(400)}}`, 'n'],
    ['1e999', 'body'],
  ];
  for (const [body, path] of refused) {
    const r = await post(body);
    assert.deepEqual([r.status, r.json.error?.code, r.json.error?.message], [400, 'invalid_request', message(path)], body.slice(0, 60));
  }
  for (const body of ['{"n":1.7976931348623157e308}', '{"n":-1.7976931348623157e308}', '{"n":1e-400}', '{"n":-0}']) {
    const r = await post(body);
    assert.deepEqual([r.status, r.json.raw], [200, body], body);
  }
});

test('a path in a body error is cut to 200 characters, its start and end kept; a long key is shown by its first 40 characters', async () => {
  const long = 'k'.repeat(10_000);
  const r = await post(`{"${long}":1,"${long}":2}`);
  assert.deepEqual([r.status, r.json.error?.message],
    [400, `["${'k'.repeat(40)}…"]: given more than once in one object; which one was meant is a guess, so send each key once`]);
  const deep = `${'{"abcdefghij":'.repeat(100)}{"x":1,"x":2}${'}'.repeat(100)}`;
  const d = await post(deep);
  const path = `abcdefghij${'.abcdefghij'.repeat(99)}.x`;
  assert.equal(d.json.error?.message,
    `${path.slice(0, 100)}…${path.slice(path.length - 99)}: given more than once in one object; which one was meant is a guess, so send each key once`);
});

test('a SyntaxError a handler meets (a backend reply that does not parse) is a 500 internal_error, not the client\'s invalid_json; a declared answer is given as declared', async () => {
  for (const init of [{}, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }]) {
    const res = await fetch(`${url}/v1/backend-garbage`, init);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.deepEqual([res.status, body.error.code, body.error.message], [500, 'internal_error', 'Internal server error']);
  }
  const declared = await fetch(`${url}/v1/declared`);
  assert.equal(declared.status, 503);
  assert.equal(declared.headers.get('retry-after'), '5');
  assert.deepEqual(((await declared.json()) as { error: unknown }).error,
    { type: 'api_error', code: 'warehouse_unavailable', message: 'The thing is down (ECONNREFUSED); retry shortly' });
  // a code outside the catalogue is no declaration: an unexpected error, its message hidden
  const unknown = await fetch(`${url}/v1/declared-unknown`);
  assert.equal(unknown.status, 500);
  assert.ok(!(await unknown.text()).includes('secret internals'));
});

test('unparsable JSON is 400 invalid_json saying where, in V8\'s words', async () => {
  const cases: Array<[string, string]> = [
    ['{"a":1,]}', "Expected double-quoted property name in JSON at position 7 (line 1 column 8)"],
    ['{"a":1', "Expected ',' or '}' after property value in JSON at position 6 (line 1 column 7)"],
    ['{\n"a":\n}', 'Unexpected token \'}\', "{\n"a":\n}" is not valid JSON'],
  ];
  for (const [body, where] of cases) {
    const r = await post(body);
    assert.deepEqual([r.status, r.json.error?.code, r.json.error?.message], [400, 'invalid_json', `Request body is not valid JSON: ${where}`], body);
  }
});

test('more than MAX_JSON_MEMBERS (500,000) object members is 413 request_too_large before JSON.parse; exactly that many is read', () => {
  const body = (n: number) => Buffer.from(`{"a":[${Array.from({ length: n - 1 }, (_, i) => `{"k":${i}}`).join(',')}]}`);
  assert.equal(MAX_JSON_MEMBERS, 500_000);
  assert.equal((parseJsonBody(body(500_000)) as { a: unknown[] }).a.length, 499_999);
  assert.throws(() => parseJsonBody(body(500_001)), (err: unknown) => {
    const e = err as { status: number; code: string; message: string };
    assert.deepEqual([e.status, e.code, e.message], [413, 'request_too_large',
      'Request body has 500001 object members (name/value pairs); at most 500000 are read (a long agent conversation has a few thousand)']);
    return true;
  });
});

test('bytes that are not UTF-8 are 400 invalid_json before anything reads them; every valid UTF-8 sequence passes byte for byte', async () => {
  const wrap = (inner: number[]) => Buffer.concat([Buffer.from('{"text":"'), Buffer.from(inner), Buffer.from('"}')]);
  const bad: number[][] = [
    [0xff], [0x80], [0xc3], // a byte never in UTF-8, a lone continuation byte, a lead byte without its continuation
    [0xc0, 0xaf], [0xe0, 0x80, 0xaf], // overlong encodings of "/"
    [0xed, 0xa0, 0x80], // an encoded surrogate (U+D800)
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0xe2, 0x82], // a truncated three-byte sequence
  ];
  for (const inner of bad) {
    const r = await post(wrap(inner));
    // the first bad byte and its offset: after `{"text":"` (9 bytes)
    assert.deepEqual([r.status, r.json.error?.code, r.json.error?.message],
      [400, 'invalid_json', `Request body is not valid JSON: it is not UTF-8 text (RFC 8259 §8.1): byte 0x${inner[0]!.toString(16)} at offset 9`], Buffer.from(inner).toString('hex'));
  }
  // a U+FFFD the body encodes itself (EF BF BD) is text; the bad byte after it is named
  const afterReplacement = Buffer.concat([Buffer.from('{"t":"\ufffd é'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
  assert.equal((await post(afterReplacement)).json.error?.message, 'Request body is not valid JSON: it is not UTF-8 text (RFC 8259 §8.1): byte 0xc3 at offset 12');
  // A key that would be a repeat once invalid bytes read as U+FFFD is refused as not UTF-8.
  const twoWays = Buffer.concat([Buffer.from('{"a'), Buffer.from([0xff]), Buffer.from('":1,"a'), Buffer.from([0xfe]), Buffer.from('":2}')]);
  assert.equal((await post(twoWays)).json.error?.code, 'invalid_json');
  const good = '{"text":"é € 𝄞 \\ud83d\\ude00 \\u0000 ﻿"}';
  const r = await post(Buffer.from(good, 'utf8'));
  assert.deepEqual([r.status, r.json.raw], [200, good]);
});

test('compressed request bodies (gzip, x-gzip, deflate zlib and raw, br, zstd, stacked) are decoded: rawBody is the decoded bytes', async () => {
  const text = JSON.stringify({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'héllo'.repeat(200) }] });
  const plain = Buffer.from(text);
  const cases: Array<[string, Buffer]> = [
    ['gzip', zlib.gzipSync(plain)],
    ['x-gzip', zlib.gzipSync(plain)],
    ['deflate', zlib.deflateSync(plain)],
    ['deflate', zlib.deflateRawSync(plain)],
    ['br', zlib.brotliCompressSync(plain)],
    ['zstd', zlib.zstdCompressSync(plain)],
    ['GZIP', zlib.gzipSync(plain)],
    ['identity', plain],
    ['gzip, br', zlib.brotliCompressSync(zlib.gzipSync(plain))],
  ];
  for (const [encoding, body] of cases) {
    const r = await post(body, { 'content-encoding': encoding });
    assert.equal(r.status, 200, encoding);
    assert.equal(r.json.raw, text, encoding);
    assert.deepEqual(r.json.parsed, JSON.parse(text), encoding);
  }
});

test('zip bomb: a small compressed body that decodes past the body limit is a 413 request_too_large', async () => {
  // 256 KiB + 1 byte of spaces once decoded; well under 1 KiB on the wire
  const bomb = zlib.gzipSync(Buffer.alloc(LIMIT + 1, 0x20));
  assert.ok(bomb.length < 1024);
  const r = await post(bomb, { 'content-encoding': 'gzip' });
  assert.equal(r.status, 413);
  assert.equal(r.json.error?.code, 'request_too_large');
  assert.equal(r.json.error?.message, 'Request body exceeds 262144 bytes once decoded (content-encoding gzip)');
  const fits = await post(zlib.gzipSync(Buffer.from(`"${' '.repeat(LIMIT - 2)}"`)), { 'content-encoding': 'gzip' });
  assert.equal(fits.status, 200);
});

test('unknown content-encoding is a 415 unsupported_encoding; corrupt compressed bytes are a 400', async () => {
  const r = await post('{}', { 'content-encoding': 'compress' });
  assert.equal(r.status, 415);
  assert.equal(r.json.error?.type, 'invalid_request_error');
  assert.equal(r.json.error?.code, 'unsupported_encoding');
  assert.equal(r.json.error?.message, 'content-encoding "compress" is not supported; send the body uncompressed or as gzip, deflate, br, zstd');
  const stacked = await post(zlib.gzipSync(zlib.gzipSync(zlib.gzipSync('{}'))), { 'content-encoding': 'gzip, gzip, gzip' });
  assert.equal(stacked.status, 415);
  assert.equal(stacked.json.error?.message, 'content-encoding lists 3 codings; at most 2 stacked codings are decoded');
  const bad = await post('{"not":"gzip"}', { 'content-encoding': 'gzip' });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error?.code, 'invalid_request');
  assert.equal(bad.json.error?.message, 'Request body is not valid gzip data (content-encoding)');
});

test('admin token only as Authorization: Bearer; the same token in x-api-key is a 401', async () => {
  assert.equal((await fetch(`${url}/admin/v1/thing`, { headers: { authorization: `Bearer ${ADMIN}` } })).status, 200);
  const viaKey = await fetch(`${url}/admin/v1/thing`, { headers: { 'x-api-key': ADMIN } });
  assert.equal(viaKey.status, 401);
  const body = (await viaKey.json()) as { error: { type: string; code: string; message: string } };
  assert.deepEqual(body.error, { type: 'authentication_error', code: 'invalid_api_key', message: 'missing admin token: send it as Authorization: Bearer <token>' });
  assert.equal((await fetch(`${url}/admin/v1/thing`, { headers: { authorization: `Bearer ${ADMIN}x` } })).status, 401);
});

test('CORS off by default: no access-control headers, and a preflight is not a route', async () => {
  const res = await fetch(`${url}/v1/thing`, { headers: { 'x-api-key': 'sk-good', origin: 'https://app.example.com' } });
  assert.equal(res.status, 200);
  assert.equal([...res.headers.keys()].filter((h) => h.startsWith('access-control-')).length, 0);
  const pre = await fetch(`${url}/v1/thing`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } });
  assert.equal(pre.status, 404);
  assert.equal(pre.headers.get('access-control-allow-origin'), null);
});

test('CORS, allowed origin: preflight 204 with the SDK headers; answers, errors and hijacked SSE carry allow-origin and expose request-id', async () => {
  const origin = 'https://app.example.com';
  const pre = await fetch(`${corsUrl}/v1/messages`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-api-key,anthropic-version,anthropic-dangerous-direct-browser-access,content-type' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), origin);
  const allowed = (pre.headers.get('access-control-allow-headers') ?? '').split(/,\s*/);
  for (const h of ['x-api-key', 'anthropic-version', 'anthropic-beta', 'anthropic-dangerous-direct-browser-access', 'content-type', 'authorization']) {
    assert.ok(allowed.includes(h), `${h} allowed`);
  }
  assert.match(pre.headers.get('access-control-allow-methods') ?? '', /POST/);

  for (const [path, headers, status] of [
    ['/v1/thing', { 'x-api-key': 'sk-good' }, 200],
    ['/v1/thing', { 'x-api-key': 'sk-bad' }, 401],
    ['/sse', {}, 200],
  ] as const) {
    const res = await fetch(`${corsUrl}${path}`, { headers: { ...headers, origin } });
    assert.equal(res.status, status, path);
    await res.arrayBuffer();
    assert.equal(res.headers.get('access-control-allow-origin'), origin, `${path} ${status}`);
    const exposed = (res.headers.get('access-control-expose-headers') ?? '').split(/,\s*/);
    for (const h of ['request-id', 'retry-after', 'anthropic-ratelimit-requests-remaining']) assert.ok(exposed.includes(h), `${path} exposes ${h}`);
  }
});

test('CORS, disallowed origin: no allow-origin on the preflight or the answer', async () => {
  const origin = 'https://evil.example.net';
  const pre = await fetch(`${corsUrl}/v1/messages`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
  assert.equal(pre.headers.get('access-control-allow-origin'), null);
  const res = await fetch(`${corsUrl}/v1/thing`, { headers: { 'x-api-key': 'sk-good', origin } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
});

test('a secret anywhere in the URL (any parameter name, encoded names, by value, in the path) never reaches the log at trace level', async () => {
  logs = '';
  const secret = 'sk-tg-QUERYSECRET0123456789abcdefghijklmnopq';
  const queries = [
    'api_key', 'key', 'apikey', 'x-api-key', 'access_token', 'token', 'API_KEY', 'x%2Dapi%2Dkey', 'anthropic_api_key', 'auth',
    'secret', 'password', 'api+key', 'api_key[]', 'api_key.x', 'api_key%00', ';api_key', 'x', 'admin_token',
  ].map((name) => `${name}=${secret}`);
  queries.push(`authorization=Bearer%20${secret}`, `api_key%3D${secret}`, `admin_token=${ADMIN}`, `q=${ADMIN}`);
  for (const q of queries) {
    await (await fetch(`${url}/v1/thing?beta=true&${q}`, { headers: { 'x-api-key': 'sk-good' } })).arrayBuffer();
  }
  await (await fetch(`${url}/v1/${secret}/thing`)).arrayBuffer();
  assert.match(logs, /"url":"\/v1\/thing\?beta=true&api_key=\[redacted\]"/);
  assert.match(logs, /"url":"\/v1\/thing\?beta=true&x%2Dapi%2Dkey=\[redacted\]"/);
  assert.match(logs, /"url":"\/v1\/thing\?beta=true&authorization=\[redacted\]"/);
  assert.match(logs, /"url":"\/v1\/thing\?beta=true&\[redacted\]"/);
  assert.match(logs, /"url":"\/v1\/thing\?beta=true&q=\[redacted\]"/);
  assert.match(logs, /"url":"\/v1\/\[redacted\]\/thing"/);
  assert.ok(!logs.includes(secret), 'a key from the URL reached the log');
  assert.ok(!logs.includes(ADMIN), 'the admin token from the URL reached the log');
});

test('malformed URLs (bad percent-encoding in the path or the query, an over-long path parameter or one with a control character, named whichever it is) are Anthropic-shaped 400s with a request-id', async () => {
  assert.equal((await fetch(`${url}/v1/things/${'x'.repeat(100)}`)).status, 200, 'exactly 100 characters is allowed');
  // Well-formed escapes of any character, and a '%' spelled %25, are a query like any other.
  for (const ok of ['/v1/things/a%20b', '/v1/things/%C3%A9%E2%82%AC%F0%9F%98%80', '/v1/things/x?a=%25&b=%C3%A9%F0%9F%98%80&c=%00&d=+%2B', '/v1/things/x?', '/v1/things/x?%41=1']) {
    assert.equal((await fetch(`${url}${ok}`)).status, 200, ok);
  }
  const badQuery = 'Malformed URL (bad percent-encoding in the query string)';
  const control = (name: string) => `${name}: contains a control character; a path parameter has none`;
  for (const [path, message] of [
    ['/v1/things/%E0%A4%A', 'Malformed URL (bad percent-encoding)'],
    [`/v1/things/${'x'.repeat(101)}`, 'id: is 101 characters long; a path parameter is at most 100'],
    [`/v1/things/${'%C3%A9'.repeat(150)}`, 'id: is 150 characters long; a path parameter is at most 100'],
    [`/v1/pairs/a/${'y'.repeat(2000)}`, 'second: is 2000 characters long; a path parameter is at most 100'],
    // every escape that is not UTF-8, in a value or a name, first or last
    ['/v1/things/x?a=%FF', badQuery],
    ['/v1/things/x?a=%', badQuery],
    ['/v1/things/x?a=%4', badQuery],
    ['/v1/things/x?a=%zz', badQuery],
    ['/v1/things/x?a=%C0%80', badQuery],
    ['/v1/things/x?a=%ED%A0%80', badQuery],
    ['/v1/things/x?a=%E2%82', badQuery],
    ['/v1/things/x?a=%F4%90%80%80', badQuery],
    ['/v1/things/x?a=1&%FF=2', badQuery],
    ['/v1/things/x?a=ok&b=%E2%82%AC%', badQuery],
    // C0, DEL and C1 controls, in any parameter of the route
    ['/v1/things/%00', control('id')],
    ['/v1/things/a%0Ab', control('id')],
    ['/v1/things/%1F', control('id')],
    ['/v1/things/%7F', control('id')],
    ['/v1/things/%C2%85', control('id')],
    ['/v1/things/%C2%9F', control('id')],
    ['/v1/pairs/a/b%09', control('second')],
  ] as const) {
    const res = await fetch(`${url}${path}`);
    assert.equal(res.status, 400, path);
    assert.match(res.headers.get('request-id') ?? '', /^req_[0-9A-Za-z]{24}$/);
    const body = (await res.json()) as { type: string; error: unknown; request_id: string };
    assert.deepEqual(body.error, { type: 'invalid_request_error', code: 'invalid_request', message });
    assert.equal(body.request_id, res.headers.get('request-id'));
  }
});

/** Sends raw bytes on a fresh socket; resolves with everything the server sent until it closed. */
function raw(bytes: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(bytes));
    let data = '';
    socket.on('data', (b: Buffer) => { data += b.toString('latin1'); });
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
  });
}

test('a query after a raw "#" (where the router starts the query when no "?" comes first) is held to the same percent-encoding rule', async () => {
  for (const target of ['/v1/things/x#a=%FF', '/v1/things/x#%C0%80=1', '/v1/things/x#a=1?b=%', '/v1/things/x?a=1#b=%ED%A0%80']) {
    const answer = await raw(`GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 400 /, target);
    assert.ok(answer.includes('"message":"Malformed URL (bad percent-encoding in the query string)"'), `${target}: ${answer.slice(-200)}`);
  }
  const fine = await raw('GET /v1/things/x#a=%C3%A9 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
  assert.match(fine, /^HTTP\/1\.1 200 /);
});

test('unparsable HTTP and oversized headers: Anthropic-shaped 400 / 431 written to the socket, which then closes', async () => {
  const garbage = await raw('NOT HTTP AT ALL\r\n\r\n');
  assert.match(garbage, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(garbage, /\r\nconnection: close\r\n/);
  assert.match(garbage, /"error":\{"type":"invalid_request_error","code":"invalid_request","message":"Malformed HTTP request"\}/);
  const big = await raw(`GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
  assert.match(big, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  assert.match(big, /"error":\{"type":"request_too_large","code":"headers_too_large","message":"Request headers exceed the maximum allowed size"\}/);
  // Like every other answer: a request-id header, the same id as the body's.
  for (const answer of [garbage, big]) {
    const header = /\r\nrequest-id: (req_[0-9A-Za-z]{24})\r\n/.exec(answer)?.[1];
    assert.ok(header, `request-id header in ${answer.slice(0, 40)}`);
    assert.ok(answer.includes(`"request_id":"${header}"`), 'the header is the body\'s request_id');
  }
});

test('a request whose headers never finish: 408 naming the headers deadline (not the whole-request one), with a request-id header', async () => {
  const short = createHttpServer({ bodyLimitBytes: LIMIT, requestTimeoutMs: 5000, headersTimeoutMs: 300 });
  const shortUrl = await short.listen({ host: '127.0.0.1', port: 0 });
  try {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(shortUrl).port), '127.0.0.1', () => socket.write('POST /v1/messages HTTP/1.1\r\nhost: x\r\n'));
      let data = '';
      socket.on('data', (b: Buffer) => { data += b.toString('latin1'); });
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(answer, /"message":"The request headers were not received within 300 ms"/);
    assert.match(answer, /\r\nrequest-id: req_[0-9A-Za-z]{24}\r\n/);
  } finally {
    await short.close();
  }
});

test('connection cap: past maxConnections a new socket is closed at once; after one leaves, requests are served again', async () => {
  const capped = createHttpServer({ bodyLimitBytes: LIMIT, maxConnections: 5 });
  const cappedUrl = await capped.listen({ host: '127.0.0.1', port: 0 });
  const { port } = new URL(cappedUrl);
  const open = (): Promise<{ socket: import('node:net').Socket; closed: Promise<string> }> => new Promise((resolve) => {
    const socket = connect(Number(port), '127.0.0.1');
    let data = '';
    socket.on('data', (b: Buffer) => { data += b.toString(); });
    socket.on('error', () => {});
    const closed = new Promise<string>((r) => socket.once('close', () => r(data)));
    socket.once('connect', () => resolve({ socket, closed }));
  });
  try {
    const held = [];
    for (let i = 0; i < 5; i++) held.push(await open());
    const sixth = await open();
    sixth.socket.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n');
    assert.equal(await sixth.closed, '', 'the sixth connection was closed without an answer');
    held[0]!.socket.destroy();
    await held[0]!.closed;
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      const s = await open();
      s.socket.write('GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      status = Number(/^HTTP\/1\.1 (\d+)/.exec(await s.closed)?.[1] ?? 0);
    }
    assert.equal(status, 200);
    for (const h of held) h.socket.destroy();
  } finally {
    await capped.close();
  }
});

// (the timeout only turns a hang, when idle connections are never closed, into a failure)
test('idle keep-alive connections do not hold the connection cap: near the cap they are closed first and a new client is served', { timeout: 30_000 }, async () => {
  const capped = createHttpServer({ bodyLimitBytes: LIMIT, maxConnections: 10 });
  const cappedUrl = await capped.listen({ host: '127.0.0.1', port: 0 });
  const { port } = new URL(cappedUrl);
  /** A keep-alive connection that has had one `GET /health` answered and then sits idle. */
  const idle = (): Promise<{ socket: import('node:net').Socket; closed: Promise<void> }> => new Promise((resolve) => {
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    let data = '';
    socket.on('data', (b: Buffer) => {
      data += b.toString();
      if (data.endsWith('{"status":"ok"}')) resolve({ socket, closed });
    });
    socket.once('connect', () => socket.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n'));
  });
  try {
    const held = [];
    for (let i = 0; i < 10; i++) held.push(await idle());
    // The 9th connection reached the threshold (90 % of 10): the 8 answered, idle ones closed.
    await Promise.all(held.slice(0, 8).map((h) => h.closed));
    assert.deepEqual(held.map((h) => h.socket.destroyed), [true, true, true, true, true, true, true, true, false, false]);
    const res = await fetch(`${cappedUrl}/health`);
    assert.deepEqual([res.status, await res.json()], [200, { status: 'ok' }]);
    for (const h of held) h.socket.destroy();
  } finally {
    await capped.close();
  }
});

/** A raw socket to `port` (from `localAddress`), with everything it received once it closes. */
function openTo(port: number, localAddress?: string): Promise<{ socket: import('node:net').Socket; closed: Promise<string> }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
    let data = '';
    socket.on('data', (b: Buffer) => { data += b.toString(); });
    socket.on('error', () => {});
    const closed = new Promise<string>((r) => socket.once('close', () => r(data)));
    socket.once('connect', () => resolve({ socket, closed }));
  });
}

/** One `GET /health` on a socket of its own that asks to close: the status line's code, 0 if none. */
async function healthOn(port: number, localAddress?: string): Promise<number> {
  const s = await openTo(port, localAddress);
  s.socket.write('GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
  return Number(/^HTTP\/1\.1 (\d+)/.exec(await s.closed)?.[1] ?? 0);
}

test('connections without a complete request head (silent, slow headers) do not hold the connection cap: near the cap they are reclaimed, the newcomer is served', { timeout: 30_000 }, async () => {
  // unstartedReclaimMs 0: any connection without a request head is reclaimable, so the test
  // depends on the order of arrivals only, never on a clock.
  const capped = createHttpServer({ bodyLimitBytes: LIMIT, maxConnections: 10, maxConnectionsPerIp: 100, unstartedReclaimMs: 0 });
  const port = Number(new URL(await capped.listen({ host: '127.0.0.1', port: 0 })).port);
  try {
    const held = [];
    for (let i = 0; i < 8; i++) {
      const s = await openTo(port);
      // half never send a byte, half trickle an unfinished head
      if (i % 2 === 1) s.socket.write('GET /health HTTP/1.1\r\nhost: x\r\nx-slow: 1\r\n');
      held.push(s);
    }
    // The 9th connection reaches the threshold (90 % of 10): the 8 unstarted ones are closed, unanswered.
    const ninth = await openTo(port);
    assert.deepEqual(await Promise.all(held.map((h) => h.closed)), ['', '', '', '', '', '', '', '']);
    ninth.socket.write('GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    assert.match(await ninth.closed, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\{"status":"ok"\}$/);
  } finally {
    await capped.close();
  }
});

test('connections without a request head younger than unstartedReclaimMs are kept near the cap (a client sending its head is not cut)', { timeout: 30_000 }, async () => {
  const capped = createHttpServer({ bodyLimitBytes: LIMIT, maxConnections: 10, maxConnectionsPerIp: 100, unstartedReclaimMs: 600_000 });
  const port = Number(new URL(await capped.listen({ host: '127.0.0.1', port: 0 })).port);
  try {
    const held = [];
    for (let i = 0; i < 8; i++) held.push(await openTo(port));
    // The 9th reaches the threshold; served on its own socket, then the 8 are still open.
    assert.equal(await healthOn(port), 200);
    assert.deepEqual(held.map((h) => h.socket.destroyed), [false, false, false, false, false, false, false, false]);
    // and each of them is still served when it finally sends its head
    held[0]!.socket.write('GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    assert.match(await held[0]!.closed, /^HTTP\/1\.1 200 OK\r\n/);
    for (const h of held) h.socket.destroy();
  } finally {
    await capped.close();
  }
});

test('connections per client address are capped (maxConnectionsPerIp): the next one from that address is closed at once, other addresses are served', { timeout: 30_000 }, async () => {
  assert.deepEqual(
    [defaultMaxConnectionsPerIp(40), defaultMaxConnectionsPerIp(10), defaultMaxConnectionsPerIp(10_000), defaultMaxConnectionsPerIp(10_000, true)],
    [16, 10, 2500, 10_000],
  );
  const capped = createHttpServer({ bodyLimitBytes: LIMIT, maxConnections: 100, maxConnectionsPerIp: 3 });
  const port = Number(new URL(await capped.listen({ host: '127.0.0.1', port: 0 })).port);
  try {
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await openTo(port, '127.0.0.1'));
    const fourth = await openTo(port, '127.0.0.1');
    fourth.socket.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n');
    assert.equal(await fourth.closed, '', 'the fourth connection from 127.0.0.1 was closed without an answer');
    assert.equal(await healthOn(port, '127.0.0.2'), 200, 'another address is served');
    held[0]!.socket.destroy();
    await held[0]!.closed;
    let status = 0;
    // the server sees the close a moment after the client: retry until it has
    for (let i = 0; i < 50 && status !== 200; i++) status = await healthOn(port, '127.0.0.1');
    assert.equal(status, 200, 'after one of its connections left, the address is served again');
    for (const h of held) h.socket.destroy();
  } finally {
    await capped.close();
  }
});

/** Sends raw bytes to `base`; resolves with everything the server sent until it closed. */
function rawTo(base: string, bytes: string, keepOpen = false): Promise<string> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => {
      socket.write(bytes);
      if (!keepOpen) socket.end();
    });
    let data = '';
    socket.on('data', (b: Buffer) => { data += b.toString('latin1'); });
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
  });
}

test('CORS on every answer the server makes, before routing too: 404, bad percent-encoding, long parameter, bad JSON, 413, 415, 408, 431, unparsable HTTP', async () => {
  const A = 'https://app.example.com';
  const B = 'https://other.example.org';
  const s = build([A, B]);
  const anyOrigin = build('*');
  // Two origins, so the origin of each answer must be the request's own (not a lone default).
  const two = createHttpServer({ bodyLimitBytes: 1024, requestTimeoutMs: 1000, corsOrigins: [A, B] });
  two.post('/echo', async () => ({ ok: true }));
  two.get('/v1/things/:id', async () => ({ ok: true }));
  const base = await s.listen({ host: '127.0.0.1', port: 0 });
  const anyBase = await anyOrigin.listen({ host: '127.0.0.1', port: 0 });
  const twoBase = await two.listen({ host: '127.0.0.1', port: 0 });
  try {
    const json = { 'content-type': 'application/json' };
    for (const [what, path, init, status] of [
      ['404', '/nope', {}, 404],
      ['bad percent-encoding', '/v1/things/%zz', {}, 400],
      ['long path parameter', `/v1/things/${'x'.repeat(101)}`, {}, 400],
      ['bad JSON', '/echo', { method: 'POST', headers: json, body: '{"a":' }, 400],
      ['413', '/echo', { method: 'POST', headers: json, body: JSON.stringify({ a: 'x'.repeat(2000) }) }, 413],
      ['415', '/echo', { method: 'POST', headers: { ...json, 'content-encoding': 'compress' }, body: 'xx' }, 415],
    ] as const) {
      for (const origin of [A, B]) {
        const res = await fetch(`${twoBase}${path}`, { ...init, headers: { ...('headers' in init ? init.headers : {}), origin } });
        await res.arrayBuffer();
        assert.deepEqual([res.status, res.headers.get('access-control-allow-origin'), res.headers.get('vary')], [status, origin, 'Origin'], `${what} from ${origin}`);
        assert.match(res.headers.get('access-control-expose-headers') ?? '', /request-id/, what);
      }
      const evil = await fetch(`${twoBase}${path}`, { ...init, headers: { ...('headers' in init ? init.headers : {}), origin: 'https://evil.example.net' } });
      await evil.arrayBuffer();
      assert.deepEqual([evil.status, evil.headers.get('access-control-allow-origin')], [status, null], `${what}, disallowed origin`);
      const star = await fetch(`${anyBase}${path.replace('/echo', '/echo')}`, { ...init, headers: { ...('headers' in init ? init.headers : {}), origin: B } });
      await star.arrayBuffer();
      assert.equal(star.headers.get('access-control-allow-origin'), '*', `${what} with CORS_ORIGINS=*`);
    }
    // Written to the socket by the server itself: the origin comes from the request's headers,
    // or from the bytes Node could not parse.
    const big = await rawTo(twoBase, `GET /health HTTP/1.1\r\nhost: x\r\norigin: ${B}\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(big, /^HTTP\/1\.1 431 /);
    assert.match(big, new RegExp(`\\r\\naccess-control-allow-origin: ${B.replace(/\./g, '\\.')}\\r\\n`));
    const garbage = await rawTo(twoBase, `NOT HTTP\r\norigin: ${A}\r\n\r\n`);
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    assert.match(garbage, new RegExp(`\\r\\naccess-control-allow-origin: ${A.replace(/\./g, '\\.')}\\r\\n`));
    const slow = await rawTo(twoBase, `POST /echo HTTP/1.1\r\nhost: x\r\norigin: ${B}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{`, true);
    assert.match(slow, /^HTTP\/1\.1 408 /);
    assert.match(slow, new RegExp(`\\r\\naccess-control-allow-origin: ${B.replace(/\./g, '\\.')}\\r\\nvary: Origin\\r\\n`));
    const evil = await rawTo(twoBase, `GET /health HTTP/1.1\r\nhost: x\r\norigin: https://evil.example.net\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(evil, /^HTTP\/1\.1 431 /);
    assert.ok(!evil.includes('access-control-allow-origin'), 'no allow-origin for a disallowed origin');
    // One configured origin: named even when the request's headers could not be read at all.
    const lone = await rawTo(base, `GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\norigin: ${A}\r\n\r\n`);
    assert.match(lone, new RegExp(`\\r\\naccess-control-allow-origin: ${A.replace(/\./g, '\\.')}\\r\\n`));
    const anyBig = await rawTo(anyBase, `GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(anyBig, /\r\naccess-control-allow-origin: \*\r\n/);
  } finally {
    await Promise.all([s.close(), anyOrigin.close(), two.close()]);
  }
});

test('content types: text/plain is read as JSON like application/json; any other is a 400 that says which two are read', async () => {
  const plain = await post('{"a":1}', { 'content-type': 'text/plain' });
  assert.equal(plain.status, 200);
  assert.deepEqual(plain.json.parsed, { a: 1 });
  for (const type of ['application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const other = await post('{"a":1}', { 'content-type': type });
    assert.equal(other.status, 400, type);
    assert.equal(other.json.error?.message, 'Content-Type must be application/json (text/plain is read as JSON too)', type);
  }
});

test('client aborted upload: a client that sends part of its body and leaves is logged at info as "client aborted the request", never as an error', async () => {
  logs = '';
  const socket = connect(Number(new URL(url).port), '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', r));
  socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a":');
  await new Promise((r) => setTimeout(r, 100));
  socket.destroy();
  let line: { level?: number; msg?: string } | undefined;
  for (let i = 0; i < 100 && !line; i++) {
    await new Promise((r) => setTimeout(r, 20));
    line = logs.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level?: number; msg?: string })
      .find((l) => l.msg === 'client aborted the request' || l.msg === 'request failed');
  }
  assert.equal(line?.msg, 'client aborted the request', logs);
  assert.equal(line?.level, 30);
});

/** GET `path` answers 404 with `expected` as its message, and its body holds neither `key` nor OWN_SECRET. */
async function assertNotFoundRedacted(path: string, expected: string, key: string): Promise<void> {
  const res = await fetch(`${url}${path}`);
  const body = await res.text();
  assert.equal(res.status, 404, path);
  assert.equal((JSON.parse(body) as { error: { message: string } }).error.message, expected);
  assert.ok(!body.includes(key) && !body.includes(OWN_SECRET), path);
}

test('a path parameter echoed in an error message (an id that is a key or the process\'s own secret: "account <it> does not exist") is repeated as [redacted]', async () => {
  // Kind: a secret in the URL repeated by an error body, through a route's own message (a new
  // user's LOW: the admin token as an account id came back whole in the 404).
  const key = `sk-tg-${'A1b2C3d4'.repeat(5)}`;
  for (const [path, expected] of [
    [`/v1/accounts/${key}`, 'account [redacted] does not exist'],
    [`/v1/accounts/${OWN_SECRET}`, 'account [redacted] does not exist'],
    [`/v1/accounts/${encodeURIComponent(`${OWN_SECRET}`)}?q=1`, 'account [redacted] does not exist'],
    [`/v1/accounts/acct_plain`, 'account acct_plain does not exist'],
  ] as const) await assertNotFoundRedacted(path, expected, key);
});

test('a path echoed in a 404 (no such route, or served by another process) never repeats a credential pasted into it, nor the query', async () => {
  // Kind: a secret in the URL repeated by an error body (error bodies end up in clients' logs).
  const key = `sk-tg-${'A1b2C3d4'.repeat(5)}`;
  for (const [path, expected] of [
    [`/nowhere/${key}/x?api_key=${key}`, 'GET /nowhere/[redacted]/x does not exist'],
    [`/elsewhere/keys/${key}?x=1`, 'GET /elsewhere/keys/[redacted]: paths under /elsewhere/ are served by another process, not by this one'],
    ['/elsewhere/plain/path', 'GET /elsewhere/plain/path: paths under /elsewhere/ are served by another process, not by this one'],
    // the process's own credential, of no credential shape (an admin token an operator chose),
    // put in a base URL's path prefix: redacted by value (it was echoed, a tester's LOW)
    [`/${OWN_SECRET}/v1/messages`, 'GET /[redacted]/v1/messages does not exist'],
    [`/elsewhere/${encodeURIComponent(OWN_SECRET)}/x`, 'GET /elsewhere/[redacted]/x: paths under /elsewhere/ are served by another process, not by this one'],
  ] as const) await assertNotFoundRedacted(path, expected, key);
});

test('a stop never cuts an answer still being written to a slow reader (Node\'s closeIdleConnections did, after the answer had ended); idle connections close, so the stop ends', { timeout: 30_000 }, async () => {
  const s = createHttpServer({ bodyLimitBytes: LIMIT });
  const big = Buffer.alloc(16 * 1024 * 1024, 'a');
  s.get('/big', async (_request, reply) => reply.type('application/octet-stream').send(big));
  const where = new URL(await s.listen({ port: 0, host: '127.0.0.1' }));
  // A reader that asks for 16 MiB and does not read yet: the answer ends on the server's side
  // with most of its bytes still queued for the socket.
  const reader = connect(Number(where.port), where.hostname);
  await new Promise((r) => reader.once('connect', r));
  reader.pause();
  reader.write(`GET /big HTTP/1.1\r\nhost: x\r\n\r\n`);
  // An idle keep-alive connection, answered once.
  const idle = connect(Number(where.port), where.hostname);
  let idleText = '';
  idle.on('data', (c: Buffer) => { idleText += c.toString('latin1'); });
  const idleClosed = new Promise((r) => idle.once('close', r));
  idle.write(`GET /health HTTP/1.1\r\nhost: x\r\n\r\n`);
  while (!idleText.endsWith('{"status":"ok"}')) await new Promise((r) => idle.once('data', r));
  await new Promise((r) => setTimeout(r, 200)); // the big answer is handed to the socket, its end called
  const stopped = s.close();
  await idleClosed; // the stop closed the idle connection at once
  const chunks: Buffer[] = [];
  const readerClosed = new Promise((r) => reader.once('close', r));
  reader.on('data', (c: Buffer) => { chunks.push(c); });
  reader.resume();
  await readerClosed;
  await stopped;
  const received = Buffer.concat(chunks);
  const at = received.indexOf('\r\n\r\n');
  assert.match(received.subarray(0, at).toString('latin1'), /^HTTP\/1\.1 200 OK\r\n[^]*content-length: 16777216\r\n/i);
  assert.equal(received.length - at - 4, big.length, 'the whole body arrived');
  assert.ok(received.subarray(at + 4).equals(big));
});

test('closeUnhandledConnections (a stop\'s grace is over): a connection whose answer waits for a reader that never reads is closed, so the stop ends; one with a request in progress is left', { timeout: 30_000 }, async () => {
  const s = createHttpServer({ bodyLimitBytes: LIMIT });
  const big = Buffer.alloc(16 * 1024 * 1024, 'a');
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  s.get('/big', async (_request, reply) => reply.type('application/octet-stream').send(big));
  s.get('/held', async () => { await held; return { ok: true }; });
  const where = new URL(await s.listen({ port: 0, host: '127.0.0.1' }));
  const open = async (path: string) => {
    const socket = connect(Number(where.port), where.hostname);
    await new Promise((r) => socket.once('connect', r));
    socket.pause();
    socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
    let received = 0;
    socket.on('data', (c: Buffer) => { received += c.length; });
    socket.on('error', () => {});
    return { socket, closed: new Promise((r) => socket.once('close', r)), received: () => received };
  };
  const stalled = await open('/big');
  const busy = await open('/held');
  await new Promise((r) => setTimeout(r, 200)); // both requests arrived; the big answer has ended on the server's side
  let stopped = false;
  const stopping = s.close().then(() => { stopped = true; });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(stopped, false, 'the unread answer holds the stop (closeIdleConnections leaves it)');
  closeUnhandledConnections(s.server);
  stalled.socket.resume(); // what reached this side before the close; then its end
  await stalled.closed;
  assert.ok(stalled.received() < big.length, `cut: ${stalled.received()} bytes of ${big.length}`);
  assert.equal(busy.socket.destroyed, false, 'a request in progress is not cut');
  release();
  busy.socket.resume();
  await busy.closed;
  await stopping;
});

test('a request reaching a stopping server: 503 overloaded in Anthropic\'s shape with request-id, connection: close and the CORS headers of any other answer; the probes answer as probes', { timeout: 30_000 }, async () => {
  const s = createHttpServer({ bodyLimitBytes: LIMIT, corsOrigins: ['https://app.example'] });
  s.post('/echo', async (request) => ({ parsed: request.body ?? null }));
  const where = new URL(await s.listen({ port: 0, host: '127.0.0.1' }));
  const open = () => rawConnection(where);
  const body = '{"a":1}';
  const post = `POST /echo HTTP/1.1\r\nhost: x\r\norigin: https://app.example\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  const health = 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n';
  const refused = await open();
  const probe = await open();
  // Each request's head has begun to arrive when the stop begins (so the stop's closing of idle
  // connections leaves the connection open); given 100 ms to be read.
  refused.socket.write(post.slice(0, 10));
  probe.socket.write(health.slice(0, 5));
  await new Promise((r) => setTimeout(r, 100));
  const stopped = s.close();
  await new Promise((r) => setTimeout(r, 100));
  refused.socket.write(post.slice(10));
  probe.socket.write(health.slice(5));
  await Promise.all([refused.closed, probe.closed, stopped]);
  const [head, answer] = refused.text().split('\r\n\r\n') as [string, string];
  assert.match(head, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(head, /\r\naccess-control-allow-origin: https:\/\/app\.example\r\n/);
  assert.match(head, /\r\nconnection: close\r\n/i);
  const requestId = /\r\nrequest-id: (req_\w+)\r\n/.exec(head)?.[1];
  assert.ok(requestId, head);
  assert.deepEqual(JSON.parse(answer), {
    type: 'error', error: { type: 'overloaded_error', code: 'overloaded', message: SHUTTING_DOWN_MESSAGE }, request_id: requestId,
  });
  assert.match(probe.text(), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n\{"status":"ok"\}$/);
});

test('closeIdleConnections (a stop\'s sweep): a connection with nothing since its answer closes at once; bytes after it that make no request (a stray CRLF) keep it open NEXT_REQUEST_WAIT_MS at most', { timeout: 30_000 }, async () => {
  const s = createHttpServer({ bodyLimitBytes: LIMIT });
  const where = new URL(await s.listen({ port: 0, host: '127.0.0.1' }));
  const answered = async () => {
    const c = await rawConnection(where);
    c.socket.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n');
    while (!c.text().endsWith('{"status":"ok"}')) await new Promise((r) => c.socket.once('data', r));
    return c;
  };
  const quiet = await answered();
  const stray = await answered();
  stray.socket.write('\r\n');
  await new Promise((r) => setTimeout(r, 100)); // the CRLF is read
  const seen = performance.now(); // before the call that first sees the CRLF
  s.server.closeIdleConnections();
  await quiet.closed;
  assert.equal(stray.socket.destroyed, false, 'bytes after the answer: kept for now');
  const stopped = s.close();
  // the stop's sweep, as the runtime runs it
  const sweep = setInterval(() => s.server.closeIdleConnections(), 100);
  await stray.closed;
  clearInterval(sweep);
  await stopped;
  assert.ok(performance.now() - seen >= NEXT_REQUEST_WAIT_MS, 'not before NEXT_REQUEST_WAIT_MS');
});
