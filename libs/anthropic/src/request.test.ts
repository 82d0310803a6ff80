import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IMAGE_TOKEN_BOUND,
  estimateInputTokens,
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

test('wrong types', () => {
  rejects(null, '', 'Input should be a valid dictionary');
  rejects([ok()], '', 'Input should be a valid dictionary');
  rejects('{}', '', 'Input should be a valid dictionary');
  rejects({ ...ok(), model: 42 }, 'model', 'model: Input should be a valid string');
  rejects({ ...ok(), model: '' }, 'model', 'model: String should have at least 1 character');
  rejects({ ...ok(), messages: {} }, 'messages', 'messages: Input should be a valid list');
  rejects({ ...ok(), messages: 'hi' }, 'messages', 'messages: Input should be a valid list');
  rejects({ ...ok(), max_tokens: '1024' }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  rejects({ ...ok(), max_tokens: 1.5 }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  rejects({ ...ok(), max_tokens: Number.NaN }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  rejects({ ...ok(), max_tokens: 1e300 }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  rejects({ ...ok(), max_tokens: 0 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 1');
  rejects({ ...ok(), max_tokens: -5 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 1');
  rejects({ ...ok(), max_tokens: null }, 'max_tokens', 'max_tokens: Input should be a valid integer');
});

test('count_tokens does not need max_tokens but checks the rest', () => {
  const body = { model: 'm', messages: [], tools: [{ name: 't' }] };
  assert.equal(validateCountTokensRequest(body), body);
  rejects({ messages: [] }, 'model', 'model: Field required', validateCountTokensRequest);
  rejects({ model: 'm' }, 'messages', 'messages: Field required', validateCountTokensRequest);
});

test('estimateInputTokens: ceil(bytes/3) of system + messages + tools', () => {
  const body: MessagesRequest = {
    model: 'm',
    max_tokens: 10,
    system: 'You are helpful.',
    messages: [{ role: 'user', content: 'héllo 世界' }],
    tools: [{ name: 'get_weather', input_schema: { type: 'object' } }],
  };
  const bytes =
    Buffer.byteLength(JSON.stringify(body.system)) +
    Buffer.byteLength(JSON.stringify(body.messages)) +
    Buffer.byteLength(JSON.stringify(body.tools));
  assert.equal(estimateInputTokens(body), Math.ceil(bytes / 3));
});

test('estimateInputTokens: absent system/tools count nothing', () => {
  const body: MessagesRequest = { model: 'm', max_tokens: 10, messages: [] };
  assert.equal(estimateInputTokens(body), 1); // "[]" = 2 bytes
});

test('estimateInputTokens: rawBodyBytes is used instead of serialising', () => {
  const body: MessagesRequest = { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'x'.repeat(999) }] };
  assert.equal(estimateInputTokens(body, 90_001), 30_001);
  assert.equal(estimateInputTokens(body, 0), 0);
});

test('estimateInputTokens: 1600 per image block, including inside tool_result', () => {
  const img = { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } };
  const body: MessagesRequest = {
    model: 'm',
    max_tokens: 10,
    messages: [
      { role: 'user', content: [img, { type: 'text', text: 'what is this' }, img] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'screenshot', input: {} }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [img] }] },
      { role: 'user', content: 'plain string content' },
    ],
  };
  const base = Math.ceil(Buffer.byteLength(JSON.stringify(body.messages)) / 3);
  assert.equal(estimateInputTokens(body), base + 3 * IMAGE_TOKEN_BOUND);
  assert.equal(estimateInputTokens(body, 300), 100 + 3 * IMAGE_TOKEN_BOUND);
});

test('estimateInputTokens: an upper bound for ordinary text', () => {
  // English averages ~4 characters a token; the estimate must never be below chars/4.
  const text = 'The quick brown fox jumps over the lazy dog. '.repeat(200);
  const body: MessagesRequest = { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: text }] };
  assert.ok(estimateInputTokens(body) >= text.length / 4);
});
