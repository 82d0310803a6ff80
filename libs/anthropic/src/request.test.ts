import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  mayCompact,
  validateCountTokensRequest,
  validateMessagesRequest,
  integerProblem,
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
  rejects({ ...noMax, max_tokens: -1 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 0', (b) => validateMessagesRequest(b, 1024));
  // 0 pre-warms the prompt cache (no output): a value of its own, never replaced by the default
  assert.equal(validateMessagesRequest({ ...noMax, max_tokens: 0 }, 1024).max_tokens, 0);
});

test('wrong types', () => {
  const notObject = (got: string) => `Input should be a valid dictionary: the request body must be a JSON object (with model, max_tokens and messages), got ${got}`;
  rejects(null, '', notObject('null'));
  rejects([ok()], '', notObject('an array'));
  rejects('{}', '', notObject('a string'));
  rejects(undefined, '', notObject('an empty body'));
  rejects(42, '', notObject('a number'));
  rejects({ ...ok(), model: 42 }, 'model', 'model: Input should be a valid string');
  rejects({ ...ok(), model: '' }, 'model', 'model: String should have at least 1 character');
  rejects({ ...ok(), messages: {} }, 'messages', 'messages: Input should be a valid list');
  rejects({ ...ok(), messages: 'hi' }, 'messages', 'messages: Input should be a valid list');
  rejects({ ...ok(), messages: [] }, 'messages', 'messages: List should have at least 1 item');
  rejects({ ...ok(), stream: 'yes' }, 'stream', 'stream: Input should be a valid boolean');
  rejects({ ...ok(), stream: 1 }, 'stream', 'stream: Input should be a valid boolean');
  rejects({ ...ok(), stream: null }, 'stream', 'stream: Input should be a valid boolean');
  rejects({ ...ok(), max_tokens: '1024' }, 'max_tokens', 'max_tokens: Input should be a valid integer');
});

test('an integer field out of what the API validates is named for what it is (integerProblem)', () => {
  // the kinds: not a number, not finite, a fraction, an integer no stage holds exactly, below the minimum
  rejects({ ...ok(), max_tokens: 1.5 }, 'max_tokens', 'max_tokens: Input should be a valid integer, got a number with a fractional part');
  rejects({ ...ok(), max_tokens: 1024.000001 }, 'max_tokens', 'max_tokens: Input should be a valid integer, got a number with a fractional part');
  rejects({ ...ok(), max_tokens: Number.NaN }, 'max_tokens', 'max_tokens: Input should be a finite number');
  rejects(JSON.parse('{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}'), 'max_tokens', 'max_tokens: Input should be a finite number');
  rejects({ ...ok(), max_tokens: Number.NEGATIVE_INFINITY }, 'max_tokens', 'max_tokens: Input should be a finite number');
  rejects({ ...ok(), max_tokens: 1e300 }, 'max_tokens', 'max_tokens: Input should be less than or equal to 9007199254740991');
  rejects(JSON.parse('{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"max_tokens":9007199254740993}'), 'max_tokens', 'max_tokens: Input should be less than or equal to 9007199254740991');
  rejects({ ...ok(), max_tokens: -1e300 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 0');
  rejects({ ...ok(), max_tokens: true }, 'max_tokens', 'max_tokens: Input should be a valid integer');
  assert.equal(validateMessagesRequest({ ...ok(), max_tokens: Number.MAX_SAFE_INTEGER }).max_tokens, 9007199254740991);
  assert.equal(integerProblem(1, 1), undefined);
  assert.equal(integerProblem(0, 1), 'Input should be greater than or equal to 1');
  assert.equal(integerProblem('7', 1), 'Input should be a valid integer');
  rejects({ ...ok(), max_tokens: -1 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 0');
  rejects({ ...ok(), max_tokens: -5 }, 'max_tokens', 'max_tokens: Input should be greater than or equal to 0');
  rejects({ ...ok(), max_tokens: null }, 'max_tokens', 'max_tokens: Input should be a valid integer');
});

test('count_tokens does not need max_tokens but checks the rest', () => {
  const body = { model: 'm', messages: [{ role: 'user', content: 'hi' }], tools: [{ name: 't' }] };
  assert.equal(validateCountTokensRequest(body), body);
  rejects({ messages: [] }, 'model', 'model: Field required', validateCountTokensRequest);
  rejects({ model: 'm', messages: [] }, 'messages', 'messages: List should have at least 1 item', validateCountTokensRequest);
  rejects({ model: 'm' }, 'messages', 'messages: Field required', validateCountTokensRequest);
});

test('a key that differs from a Messages API field only in letter case is refused naming it, wherever the gateway or the price reads fields; free-form objects keep any keys', () => {
  const problem = (field: string) => `not a field of the Messages API: a reader that ignores case takes it for "${field}" (field names are lowercase)`;
  const cases: Array<[Record<string, unknown>, string, string]> = [
    [{ ...ok(), MODEL: 'claude-opus-4-6' }, 'MODEL', 'model'],
    [{ ...ok(), Max_Tokens: 64_000 }, 'Max_Tokens', 'max_tokens'],
    // U+212A KELVIN SIGN and U+017F LONG S fold onto k and s in Go's encoding/json
    [{ ...ok(), 'max_to\u212aens': 64_000 }, '["max_to\\u212aens"]', 'max_tokens'],
    [{ ...ok(), '\u017ftream': true }, '["\\u017ftream"]', 'stream'],
    [{ ...ok(), thinking: { type: 'enabled', budget_tokens: 1024, Budget_tokens: 60_000 } }, 'thinking.Budget_tokens', 'budget_tokens'],
    [{ ...ok(), tools: [{ name: 'a', input_schema: {} }, { type: 'advisor_20260301', name: 'advisor', model: 'claude-haiku-4-5', MODEL: 'claude-opus-4-6' }] }, 'tools[1].MODEL', 'model'],
    [{ ...ok(), fallbacks: [{ model: 'claude-haiku-4-5', Model: 'claude-opus-4-6' }] }, 'fallbacks[0].Model', 'model'],
    [{ ...ok(), system: [{ type: 'text', text: 'a', TEXT: 'b' }] }, 'system[0].TEXT', 'text'],
    [{ ...ok(), messages: [{ role: 'user', Content: 'x', content: 'y' }] }, 'messages[0].Content', 'content'],
    [{ ...ok(), messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image', Type: 'document', source: {} }] }] }, 'messages[0].content[1].Type', 'type'],
    [{ ...ok(), tool_choice: { type: 'auto', Type: 'any' } }, 'tool_choice.Type', 'type'],
    [{ ...ok(), metadata: { User_ID: 'x' } }, 'metadata.User_ID', 'user_id'],
    // a block's source and citations, and the blocks inside a tool_result, at any depth
    [{ ...ok(), messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'hi', TYPE: 'url', url: 'https://x/a.pdf' } }] }] },
      'messages[0].content[0].source.TYPE', 'type'],
    [{ ...ok(), messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', data: 'x' }, citations: { ENABLED: true } }] }] },
      'messages[0].content[0].citations.ENABLED', 'enabled'],
    [{ ...ok(), messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'text', text: 'a' }, { type: 'text', TYPE: 'document', text: 'b' }] }] }] },
      'messages[0].content[0].content[1].TYPE', 'type'],
    [{ ...ok(), messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'image', source: { type: 'base64', data: 'x', URL: 'https://x' } }] }] }] },
      'messages[0].content[0].content[0].source.URL', 'url'],
    [{ ...ok(), system: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b', CACHE_CONTROL: {} }] }, 'system[1].CACHE_CONTROL', 'cache_control'],
  ];
  for (const [body, field, reads] of cases) rejects(body, field, `${field}: ${problem(reads)}`);
  // count_tokens reads the same fields
  rejects({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }], MODEL: 'x' }, 'MODEL', `MODEL: ${problem('model')}`, validateCountTokensRequest);
  // Keys of free-form objects (a tool's input and schema, metadata's own), and upper-case keys
  // that are no API field, pass.
  const free = {
    ...ok(),
    metadata: { user_id: 'u', Tenant: 'acme' },
    tools: [{ name: 'lookup', input_schema: { type: 'object', properties: { Model: { type: 'string' }, TYPE: { type: 'string' } } } }],
    messages: [
      { role: 'user', content: 'look it up' },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'lookup', input: { Model: 'x', TYPE: 'y', Text: 'z' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'ok' }] },
    ],
    X_Custom: 1,
  };
  assert.equal(validateMessagesRequest(free), free);
});

test('mayCompact: a context_management that may compact (a step the upstream bills) — any edit but clearing ones, or another shape', () => {
  assert.equal(mayCompact({}), false);
  assert.equal(mayCompact({ context_management: null }), false);
  // Claude Code's edits only clear content
  assert.equal(mayCompact({ context_management: { edits: [{ type: 'clear_thinking_20251015', keep: 'all' }, { type: 'clear_tool_uses_20250919' }] } }), false);
  assert.equal(mayCompact({ context_management: { edits: [] } }), false);
  assert.equal(mayCompact({ context_management: { edits: [{ type: 'clear_thinking_20251015' }, { type: 'compact_20260112' }] } }), true);
  assert.equal(mayCompact({ context_management: { edits: [{ type: 7 }] } }), true);
  assert.equal(mayCompact({ context_management: { edits: [null] } }), true);
  // no edits: nothing to apply (a breaker's LOW: {} doubled the hold)
  assert.equal(mayCompact({ context_management: {} }), false);
  assert.equal(mayCompact({ context_management: { edits: null } }), false);
  assert.equal(mayCompact({ context_management: { edits: 'compact' } }), true);
  assert.equal(mayCompact({ context_management: 'compact' }), true);
  assert.equal(mayCompact(null), false);
});
