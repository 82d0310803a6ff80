import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toOpenAIRequest, TranslationError } from '@tollgate/openai-compat';

const PNG = 'iVBORw0KGgo=';

test('system blocks, text, images, tool_use and tool_result map to their Chat Completions messages', () => {
  const { request, dropped } = toOpenAIRequest({
    model: 'gpt-4o', max_tokens: 100, temperature: 0.5, top_p: 0.9, top_k: 5,
    system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }, { type: 'text', text: 'Be kind.' }],
    stop_sequences: ['END'], metadata: { user_id: 'user-42' }, thinking: { type: 'enabled', budget_tokens: 2048 },
    tools: [{ name: 'weather', description: 'Weather of a city', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
    tool_choice: { type: 'any', disable_parallel_tool_use: true },
    messages: [
      { role: 'user', content: [
        { type: 'text', text: 'Look' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
        { type: 'image', source: { type: 'url', url: 'https://example.com/a.jpg' } },
      ] },
      { role: 'assistant', content: [
        { type: 'thinking', thinking: 'hmm', signature: 's' },
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris' } },
      ] },
      { role: 'user', content: [
        { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: 'Sunny' }, { type: 'text', text: 'Windy' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } }] },
        { type: 'text', text: 'And?' },
      ] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_2', name: 'weather', input: {} }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_2', content: 'boom', is_error: true }] },
    ],
  });
  assert.deepEqual(request, {
    model: 'gpt-4o',
    messages: [
      { role: 'system', content: 'Be brief.\nBe kind.' },
      { role: 'user', content: [
        { type: 'text', text: 'Look' },
        { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
        { type: 'image_url', image_url: { url: 'https://example.com/a.jpg' } },
      ] },
      { role: 'assistant', content: 'Checking.', tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'Sunny\nWindy' },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }, { type: 'text', text: 'And?' }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_2', type: 'function', function: { name: 'weather', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'toolu_2', content: '[error] boom' },
    ],
    max_completion_tokens: 100, temperature: 0.5, top_p: 0.9, stop: ['END'], user: 'user-42',
    tools: [{ type: 'function', function: { name: 'weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
    tool_choice: 'required', parallel_tool_calls: false,
  });
  assert.deepEqual(dropped, ['top_k', 'thinking', 'messages.1.content.0']);
});

test('tool_choice auto, tool and none; stream asks for the usage chunk', () => {
  const tools = [{ name: 't', input_schema: { type: 'object' } }];
  const base = { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: 'x' }], tools };
  assert.equal(toOpenAIRequest({ ...base, tool_choice: { type: 'auto' } }).request.tool_choice, 'auto');
  assert.equal(toOpenAIRequest({ ...base, tool_choice: { type: 'none' } }).request.tool_choice, 'none');
  assert.deepEqual(toOpenAIRequest({ ...base, tool_choice: { type: 'tool', name: 't' } }).request.tool_choice, { type: 'function', function: { name: 't' } });
  const s = toOpenAIRequest({ model: 'm', max_tokens: 1, stream: true, messages: [{ role: 'user', content: 'x' }] }).request;
  assert.deepEqual(s, { model: 'm', messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 1, stream: true, stream_options: { include_usage: true } });
});

test('features without an OpenAI equivalent are refused naming the field', () => {
  const refuse = (body: Record<string, unknown>, field: string) => assert.throws(() => toOpenAIRequest(body),
    (e: unknown) => e instanceof TranslationError && e.field === field && e.message.startsWith(`${field}: `));
  const user = (content: unknown) => ({ model: 'm', max_tokens: 1, messages: [{ role: 'user', content }] });
  refuse({ ...user('x'), tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'tools.0');
  refuse(user([{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBER' } }]), 'messages.0.content.0');
  refuse(user([{ type: 'image', source: { type: 'file', file_id: 'file_1' } }]), 'messages.0.content.0.source');
  refuse({ ...user('x'), mcp_servers: [{ type: 'url', url: 'https://mcp.example', name: 'x' }] }, 'mcp_servers');
  // max_tokens 0 pre-warms Anthropic's prompt cache; Chat Completions takes at least 1
  refuse({ ...user('x'), max_tokens: 0 }, 'max_tokens');
  // a plain-text document is text
  assert.deepEqual(toOpenAIRequest(user([{ type: 'document', title: 'T', source: { type: 'text', media_type: 'text/plain', data: 'body' } }])).request.messages,
    [{ role: 'user', content: 'T\n\nbody' }]);
  // text blocks alone: one string
  assert.deepEqual(toOpenAIRequest(user([{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }])).request.messages, [{ role: 'user', content: 'a\nb' }]);
});

test('an assistant prefill (last message assistant) is refused naming the message: Chat Completions would answer it as a new turn', () => {
  assert.throws(() => toOpenAIRequest({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'The answer is' }] }),
    (err: unknown) => err instanceof TranslationError && err.field === 'messages.1'
      && err.message === 'messages.1: a final assistant message (prefill) is not supported on platform openai (Chat Completions answers it as a finished turn)');
  // an assistant message earlier in the conversation is history, not a prefill
  assert.equal(toOpenAIRequest({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }] }).request.messages.length, 3);
});
