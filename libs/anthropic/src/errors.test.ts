import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clientText,
  ProtocolError,
  ERRORS,
  ERROR_CODES,
  GatewayError,
  errorBody,
  gatewayError,
  isAnthropicErrorBody,
  isGatewayError,
  sseErrorEvent,
  redactCredentials,
  toGatewayError,
  upstreamErrorToGateway,
  upstreamEventError,
  upstreamRetryHeaders,
} from './errors.ts';
import type { ErrorCode } from './errors.ts';
import { StreamMeter } from './sse.ts';

const TABLE: Record<ErrorCode, [number, string, boolean]> = {
  invalid_request: [400, 'invalid_request_error', false],
  invalid_json: [400, 'invalid_request_error', false],
  unpriced_request: [400, 'invalid_request_error', false],
  invalid_api_key: [401, 'authentication_error', false],
  key_expired: [401, 'authentication_error', false],
  insufficient_credits: [402, 'billing_error', false],
  ip_not_allowed: [403, 'permission_error', false],
  account_suspended: [403, 'permission_error', false],
  model_not_allowed: [403, 'permission_error', false],
  permission_denied: [403, 'permission_error', false],
  model_not_found: [404, 'not_found_error', false],
  not_found: [404, 'not_found_error', false],
  conflict: [409, 'invalid_request_error', false],
  request_too_large: [413, 'request_too_large', false],
  request_timeout: [408, 'timeout_error', true],
  unsupported_encoding: [415, 'invalid_request_error', false],
  headers_too_large: [431, 'request_too_large', false],
  rate_limit_exceeded: [429, 'rate_limit_error', true],
  spend_limit_exceeded: [429, 'billing_error', false],
  internal_error: [500, 'api_error', true],
  upstream_error: [503, 'api_error', true],
  overloaded: [503, 'overloaded_error', true],
  state_unavailable: [503, 'api_error', true],
  usage_unrecorded: [503, 'api_error', true],
  warehouse_unavailable: [503, 'api_error', true],
};

test('catalogue: every code has the agreed status, type, retriable and a message', () => {
  assert.deepEqual([...ERROR_CODES].sort(), Object.keys(TABLE).sort());
  for (const code of ERROR_CODES) {
    const [status, type, retriable] = TABLE[code];
    const spec = ERRORS[code];
    assert.equal(spec.status, status, code);
    assert.equal(spec.type, type, code);
    assert.equal(spec.retriable, retriable, code);
    assert.ok(spec.message.length > 0, code);
    const err = gatewayError(code);
    assert.ok(err instanceof GatewayError && err instanceof Error);
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    assert.equal(err.type, type);
    assert.equal(err.retriable, retriable);
    assert.equal(err.message, spec.message);
  }
});

test('gatewayError: message, headers and cause', () => {
  const cause = new Error('ECONNREFUSED');
  const err = gatewayError('state_unavailable', 'Balance store unreachable', { headers: { 'retry-after': '5' }, cause });
  assert.equal(err.message, 'Balance store unreachable');
  assert.deepEqual(err.headers, { 'retry-after': '5' });
  assert.equal(err.cause, cause);
  assert.equal(gatewayError('not_found').headers, undefined);
  assert.ok(isGatewayError(err));
  assert.ok(!isGatewayError(cause));
});

test('toGatewayError hides unknown errors as internal_error', () => {
  const boom = new TypeError('x is undefined');
  const err = toGatewayError(boom);
  assert.equal(err.code, 'internal_error');
  assert.equal(err.message, 'Internal server error');
  assert.equal(err.cause, boom);
  const known = gatewayError('invalid_api_key');
  assert.equal(toGatewayError(known), known);
});

test('errorBody shape is exact', () => {
  const err = gatewayError('insufficient_credits', 'Balance too low: need 120 credits, have 3');
  assert.equal(
    JSON.stringify(errorBody(err, 'req_011CTest')),
    '{"type":"error","error":{"type":"billing_error","code":"insufficient_credits","message":"Balance too low: need 120 credits, have 3"},"request_id":"req_011CTest"}',
  );
  assert.ok(isAnthropicErrorBody(errorBody(err, 'r')));
});

test('sseErrorEvent is one SSE error frame the meter (and SDKs) read back', () => {
  const err = gatewayError('upstream_error', 'Upstream closed the stream\nunexpectedly');
  const text = sseErrorEvent(err, 'req_1');
  assert.equal(
    text,
    'event: error\ndata: {"type":"error","error":{"type":"api_error","code":"upstream_error","message":"Upstream closed the stream\\nunexpectedly"},"request_id":"req_1"}\n\n',
  );
  const m = new StreamMeter();
  m.push(text);
  assert.deepEqual(m.error, { type: 'api_error', message: 'Upstream closed the stream\nunexpectedly' });
});

test('isAnthropicErrorBody', () => {
  assert.ok(isAnthropicErrorBody({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
  assert.ok(isAnthropicErrorBody({ type: 'error', error: { type: 'x', message: 'y', extra: 1 }, request_id: null }));
  assert.ok(!isAnthropicErrorBody({ type: 'error', error: { type: 'x' } }));
  assert.ok(!isAnthropicErrorBody({ type: 'message' }));
  assert.ok(!isAnthropicErrorBody(null));
  assert.ok(!isAnthropicErrorBody('error'));
});

const upstream = (type: string, message: string) => ({ type: 'error', error: { type, message }, request_id: 'req_up' });

test('upstream errors keep their status, type and message', () => {
  const cases: [number, unknown, ErrorCode, string, boolean][] = [
    [529, upstream('overloaded_error', 'Overloaded'), 'overloaded', 'overloaded_error', true],
    [429, upstream('rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit'), 'rate_limit_exceeded', 'rate_limit_error', true],
    [400, upstream('invalid_request_error', 'messages.1.content: Input should be a valid list'), 'invalid_request', 'invalid_request_error', false],
    [404, upstream('not_found_error', 'model: claude-nope'), 'not_found', 'not_found_error', false],
    [403, upstream('permission_error', 'Not allowed'), 'permission_denied', 'permission_error', false],
    [413, upstream('request_too_large', 'Request exceeds the maximum allowed number of bytes.'), 'request_too_large', 'request_too_large', false],
    [500, upstream('api_error', 'Internal server error'), 'upstream_error', 'api_error', true],
    [504, upstream('timeout_error', 'Request timed out'), 'upstream_error', 'timeout_error', true],
    [503, upstream('overloaded_error', 'Overloaded'), 'overloaded', 'overloaded_error', true],
  ];
  for (const [status, body, code, type, retriable] of cases) {
    const err = upstreamErrorToGateway(status, body);
    const msg = (body as { error: { message: string } }).error.message;
    assert.deepEqual(
      { status: err.status, code: err.code, type: err.type, retriable: err.retriable, message: err.message },
      { status, code, type, retriable, message: msg },
      `HTTP ${status}`,
    );
  }
});

test('upstream errors without an Anthropic body get a type from the status', () => {
  const e502 = upstreamErrorToGateway(502, '<html>Bad Gateway</html>');
  assert.equal(e502.status, 502);
  assert.equal(e502.type, 'api_error');
  assert.equal(e502.code, 'upstream_error');
  assert.equal(e502.message, 'Upstream provider returned HTTP 502');
  const e529 = upstreamErrorToGateway(529, null);
  assert.equal(e529.code, 'overloaded');
  assert.equal(e529.type, 'overloaded_error');
  const unknownType = upstreamErrorToGateway(409, upstream('memory_path_conflict_error', 'conflict'));
  assert.equal(unknownType.type, 'invalid_request_error');
  assert.equal(unknownType.code, 'conflict');
  assert.equal(unknownType.message, 'conflict');
});

test("upstream 401/402 are about the gateway's upstream account, not the client's", () => {
  for (const [status, type] of [[401, 'authentication_error'], [402, 'billing_error']] as const) {
    const err = upstreamErrorToGateway(status, upstream(type, 'invalid x-api-key'));
    assert.equal(err.status, 503);
    assert.equal(err.code, 'upstream_error');
    assert.equal(err.type, 'api_error');
    assert.equal(err.retriable, true);
    assert.match(err.message, new RegExp(type));
  }
  assert.equal(upstreamErrorToGateway(200, {}).code, 'upstream_error');
});

test('upstream retry-after is carried over', () => {
  const err = upstreamErrorToGateway(429, upstream('rate_limit_error', 'slow down'), { 'retry-after': '17', 'x-other': 'y' });
  assert.deepEqual(err.headers, { 'retry-after': '17' });
  assert.equal(upstreamErrorToGateway(429, null).headers, undefined);
});

test('credentials echoed in upstream messages are redacted: configured key, sk- keys, Bearer tokens, key=value pairs', () => {
  const configured = 'upstream-secret-value-42';
  assert.equal(
    redactCredentials(`bad key ${configured}; sk-ant-api03-AbC_d-e; Authorization: Bearer eyJ.x.y, api_key=k1&token=t2 x-api-key: "k3"`, [configured]),
    'bad key [redacted]; [redacted]; Authorization: Bearer [redacted], api_key=[redacted]&token=[redacted] x-api-key: "[redacted]"',
  );
  assert.equal(redactCredentials('max_tokens: 5 is too small; see task-list'), 'max_tokens: 5 is too small; see task-list');
  // secrets shorter than 8 characters would blank out ordinary words: only the patterns apply
  assert.equal(redactCredentials('the key is short', ['short']), 'the key is short');
});

test('upstream 401/402/403 carry x-should-retry: false; 401/402 drop the upstream message; others keep retry-after and x-should-retry only', () => {
  const echo = upstream('authentication_error', 'invalid x-api-key: sk-ant-operator-key-123456');
  for (const status of [401, 402]) {
    const err = upstreamErrorToGateway(status, echo, { 'retry-after': '3' }, { secrets: ['sk-ant-operator-key-123456'] });
    assert.deepEqual(err.headers, { 'x-should-retry': 'false' });
    assert.ok(!err.message.includes('invalid x-api-key'), err.message);
  }
  const forbidden = upstreamErrorToGateway(403, upstream('permission_error', 'key sk-ant-operator-key-123456 may not use this model'));
  assert.deepEqual([forbidden.status, forbidden.code, forbidden.headers, forbidden.message],
    [403, 'permission_denied', { 'x-should-retry': 'false' }, 'key [redacted] may not use this model']);
  const limited = upstreamErrorToGateway(429, upstream('rate_limit_error', 'slow down'), {
    'retry-after': '9', 'x-should-retry': 'true', 'anthropic-ratelimit-unified-status': 'rejected', 'anthropic-ratelimit-requests-remaining': '0',
  });
  assert.deepEqual(limited.headers, { 'retry-after': '9', 'x-should-retry': 'true' });
});

test('a configured secret is redacted in any letter case, percent-encoded, and base64/base64url at any alignment', () => {
  const key = 'sim-upstream-key-0123456789';
  const cases = [
    key.toUpperCase(), key.toLowerCase(), `"${key}"`, encodeURIComponent(`k:${key}/`),
    Buffer.from(key).toString('base64'), Buffer.from(`x${key}`).toString('base64url'), Buffer.from(`xy${key}z`).toString('base64'),
  ];
  for (const text of cases) {
    const out = redactCredentials(`echo ${text} end`, [key]);
    assert.ok(out.includes('[redacted]'), out);
    for (let i = 0; i + 12 <= key.length; i++) assert.ok(!out.toLowerCase().includes(key.slice(i, i + 12).toLowerCase()), out);
  }
  assert.equal(redactCredentials(`a ${Buffer.from(key).toString('base64')} b`, [key]), 'a [redacted] b');
  // ordinary words stay
  assert.equal(redactCredentials('the upstream is overloaded', [key]), 'the upstream is overloaded');
});

test('upstream retry headers: retry-after only as delta-seconds or an HTTP-date, x-should-retry only true/false', () => {
  assert.deepEqual(upstreamRetryHeaders({ 'retry-after': '30', 'x-should-retry': 'false' }), { 'retry-after': '30', 'x-should-retry': 'false' });
  assert.deepEqual(upstreamRetryHeaders({ 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT', 'x-should-retry': ' True ' }),
    { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT', 'x-should-retry': 'true' });
  assert.deepEqual(upstreamRetryHeaders({ 'retry-after': 'Wed Oct 21  7:28:00 2015' }), {});
  assert.deepEqual(upstreamRetryHeaders({ 'retry-after': 'Wed Oct 21 07:28:00 2015' }), { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' });
  for (const bad of ['sk-ant-api03-secret', '1.5', '-1', '30s', 'Wed, 21 Oct 2015 07:28:00 GMT sk-x', '']) {
    assert.deepEqual(upstreamRetryHeaders({ 'retry-after': bad, 'x-should-retry': bad }), {}, bad);
  }
});

test('an upstream error inside a 2xx (SSE error event, JSON error body): catalogue code and status, redacted message; account errors say nothing of the upstream', () => {
  const secrets = ['sk-ant-configured-0123456789'];
  const over = upstreamEventError({ type: 'error', error: { type: 'overloaded_error', message: 'busy sk-ant-configured-0123456789' } }, { secrets });
  assert.deepEqual([over.code, over.status, over.type, over.message], ['overloaded', 503, 'overloaded_error', 'busy [redacted]']);
  const auth = upstreamEventError({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key: whatever' } }, { secrets });
  assert.deepEqual([auth.code, auth.status, auth.headers], ['upstream_error', 503, { 'x-should-retry': 'false' }]);
  assert.ok(!auth.message.includes('whatever'));
  const odd = upstreamEventError('not json');
  assert.deepEqual([odd.code, odd.status, odd.type, odd.message], ['upstream_error', 503, 'api_error', 'Upstream provider reported an error']);
});

test('an error message is bounded and carries no control or bidi control, whatever it quotes: every GatewayError and ProtocolError', () => {
  // a right-to-left override, a BEL, an ESC sequence, C1, a line separator: escaped, never raw
  assert.equal(clientText('name "a\u202Eb" \u0007\u001b[31m \u0085 \u2028 \u061c\u200e\u2066'),
    'name "a\\u202eb" \\u0007\\u001b[31m \\u0085 \\u2028 \\u061c\\u200e\\u2066');
  // ordinary text, quotes, non-Latin scripts, tab and line feed pass unchanged; CR does not
  assert.equal(clientText('model: "claude-haiku-4-5" 模型 — ok\n\tnext\r'), 'model: "claude-haiku-4-5" 模型 — ok\n\tnext\\u000d');
  // at most 1,024 characters, cut with … and never between a surrogate pair's halves
  assert.equal(clientText('x'.repeat(5000)), `${'x'.repeat(1023)}…`);
  assert.equal(clientText(`${'x'.repeat(1022)}😀tail`), `${'x'.repeat(1022)}…`);
  assert.equal(clientText(`${'x'.repeat(1021)}😀tail`), `${'x'.repeat(1021)}😀…`);
  // escaping cannot push it past the bound
  assert.equal(clientText('\u0007'.repeat(1000)).length, 1024);
  assert.equal(clientText('ok', 10), 'ok');
  // applied where every error is made: the gateway's own and a field error
  const e = gatewayError('invalid_request', `temperature ${JSON.stringify(0.5 + 'e'.repeat(100_000))} \u202e`);
  assert.equal(e.message.length, 1024);
  assert.ok(!/[\u202e\u0000-\u001f]/.test(e.message));
  const p = new ProtocolError(`k\u202e${'k'.repeat(300)}`, 'unknown field');
  assert.equal(p.field, `k\\u202e${'k'.repeat(192)}…`);
  assert.equal(p.message, `k\\u202e${'k'.repeat(300)}: unknown field`);
});
