import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  validateCountTokensRequest,
  validateMessagesRequest,
} from './request.ts';
import { GatewayError, ProtocolError } from './errors.ts';
import type { MessagesRequest } from './types.ts';

const ok = () => ({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1024 });

function rejects(body: unknown, field: string, message: string, validate: (body: unknown) => unknown = validateMessagesRequest): void {
  assert.throws(
    () => validate(body),
    (err: unknown) => {
      assert.ok(err instanceof ProtocolError);
      assert.ok(err instanceof GatewayError);
      assert.equal(err.field, field);
      assert.equal(err.message, message);
      assert.equal(err.status, 400);
      assert.equal(err.type, 'invalid_request_error');
      assert.equal(err.code, 'invalid_request');
      return true;
    },
  );
}

test('accepts a minimal request and returns the same object', () => {
  const body = ok();
  assert.equal(validateMessagesRequest(body), body);
});

test('extra fields pass through untouched', () => {
  const body = {
    ...ok(),
    stream: true,
    thinking: { type: 'adaptive' },
    context_management: { edits: [{ type: 'clear_tool_uses_20250919' }] },
    output_config: { effort: 'high' },
    metadata: { user_id: 'user_abc', extra: 1 },
    system: [{ type: 'text', text: 'x', cache_control: { type: 'ephemeral', ttl: '1h' } }],
  };
  const before = JSON.stringify(body);
  const out = validateMessagesRequest(body);
  assert.equal(out, body);
  assert.equal(JSON.stringify(out), before);
  assert.deepEqual(out.context_management, { edits: [{ type: 'clear_tool_uses_20250919' }] });
});

test('each missing field is named', () => {
  const { model: _m, ...noModel } = ok();
  const { messages: _s, ...noMessages } = ok();
  const { max_tokens: _t, ...noMax } = ok();
  rejects(noModel, 'model', 'model: Field required');
  rejects(noMessages, 'messages', 'messages: Field required');
  rejects(noMax, 'max_tokens', 'max_tokens: Field required');
});

test('absent max_tokens with a gateway default: filled in on the body; null and bad values still refused', () => {
  const { max_tokens: _t, ...noMax } = ok();
  const out = validateMessagesRequest({ ...noMax }, 1024);
  assert.equal(out.max_tokens, 1024);
  assert.equal(validateMessagesRequest(ok(), 7).max_tokens, 1024);
  rejects({ ...noMax, max_tokens: null }, 'max_tokens', 'max_tokens: Input should be a valid integer', (b) => validateMessagesRequest(b, 1024));
  rejects({ ...noMax, max_tokens: 0 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 1', (b) => validateMessagesRequest(b, 1024));
});

test('wrong types', () => {
  rejects(null, '', 'Input should be a valid dictionary');
  rejects([ok()], '', 'Input should be a valid dictionary');
  rejects('{}', '', 'Input should be a valid dictionary');
  rejects({ ...ok(), model: 42 }, 'model', 'model: Input should be a valid string');
  rejects({ ...ok(), model: '' }, 'model', 'model: String should have at least 1 character');
  rejects({ ...ok(), messages: {} }, 'messages', 'messages: Input should be a valid list');
  rejects({ ...ok(), messages: 'hi' }, 'messages', 'messages: Input should be a valid list');
  rejects({ ...ok(), messages: [] }, 'messages', 'messages: List should have at least 1 item');
  rejects({ ...ok(), stream: 'yes' }, 'stream', 'stream: Input should be a valid boolean');
  rejects({ ...ok(), stream: 1 }, 'stream', 'stream: Input should be a valid boolean');
  rejects({ ...ok(), stream: null }, 'stream', 'stream: Input should be a valid boolean');
  rejects({ ...ok(), max_tokens: '1024' }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  rejects({ ...ok(), max_tokens: 1.5 }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  rejects({ ...ok(), max_tokens: Number.NaN }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  rejects({ ...ok(), max_tokens: 1e300 }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  rejects({ ...ok(), max_tokens: 0 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 1');
  rejects({ ...ok(), max_tokens: -5 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 1');
  rejects({ ...ok(), max_tokens: null }, 'max_tokens', 'max_tokens: Input should be a valid integer');
});

test('count_tokens does not need max_tokens but checks the rest', () => {
  const body = { model: 'm', messages: [{ role: 'user', content: 'hi' }], tools: [{ name: 't' }] };
  assert.equal(validateCountTokensRequest(body), body);
  rejects({ messages: [] }, 'model', 'model: Field required', validateCountTokensRequest);
  rejects({ model: 'm', messages: [] }, 'messages', 'messages: List should have at least 1 item', validateCountTokensRequest);
  rejects({ model: 'm' }, 'messages', 'messages: Field required', validateCountTokensRequest);
});
