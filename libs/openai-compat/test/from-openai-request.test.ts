// OpenAI-format clients: the Chat Completions request the gateway receives → the Anthropic body
// its pipeline serves. Exact objects; every refusal names its parameter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtocolError } from '@tollgate/anthropic';
import { fromOpenAIRequest } from '@tollgate/openai-compat';

const user = [{ role: 'user', content: 'Hi' }];

test('system and developer messages anywhere become system blocks in order; a user message after tool results joins their turn', () => {
  const t = fromOpenAIRequest({
    model: 'claude-sonnet-4-5',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Weather?' },
      { role: 'assistant', content: 'Let me look.', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'w', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: 'Sunny' },
      { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
      { role: 'user', content: 'And tomorrow?' },
    ],
  });
  assert.deepEqual(t, {
    stream: false, includeUsage: false, renamed: {},
    body: {
      model: 'claude-sonnet-4-5',
      system: [{ type: 'text', text: 'Be brief.' }, { type: 'text', text: 'Answer in French.' }],
      messages: [
        { role: 'user', content: 'Weather?' },
        { role: 'assistant', content: [{ type: 'text', text: 'Let me look.' }, { type: 'tool_use', id: 'c1', name: 'w', input: { city: 'Paris' } }] },
        { role: 'user', content: [
          { type: 'tool_result', tool_use_id: 'c1', content: 'Sunny' },
          { type: 'text', text: 'And tomorrow?' },
        ] },
      ],
    },
  });
});

test('sampling, limits, stop, user and stream options map; absent max tokens stay absent for the gateway default', () => {
  const t = fromOpenAIRequest({
    model: 'm', messages: user, max_tokens: 20, max_completion_tokens: 20, temperature: 1, top_p: 0.5, stop: 'END', user: 'u1',
    stream: true, stream_options: { include_usage: true }, n: 1, logprobs: false, presence_penalty: 0, response_format: { type: 'text' }, seed: null,
  });
  assert.deepEqual(t.body, {
    model: 'm', messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 20, temperature: 1, top_p: 0.5, stop_sequences: ['END'], metadata: { user_id: 'u1' }, stream: true,
  });
  assert.deepEqual([t.stream, t.includeUsage], [true, true]);
  // the client's names of the fields it sent under another name, for errors about them
  assert.deepEqual(t.renamed, { max_tokens: 'max_completion_tokens', stop_sequences: 'stop' });
  assert.deepEqual(fromOpenAIRequest({ model: 'm', messages: user, max_tokens: 10 }).renamed, {});
  assert.equal('max_tokens' in fromOpenAIRequest({ model: 'm', messages: user }).body, false);
});

test('tool_choice: auto, none, required → any, a named function → tool; parallel_tool_calls false → disable_parallel_tool_use', () => {
  const tools = [{ type: 'function', function: { name: 'f' } }];
  const choice = (tool_choice: unknown, extra: Record<string, unknown> = {}) =>
    fromOpenAIRequest({ model: 'm', messages: user, tools, tool_choice, ...extra }).body['tool_choice'];
  assert.deepEqual(choice('auto'), { type: 'auto' });
  assert.deepEqual(choice('none'), { type: 'none' });
  assert.deepEqual(choice('required'), { type: 'any' });
  assert.deepEqual(choice({ type: 'function', function: { name: 'f' } }), { type: 'tool', name: 'f' });
  assert.deepEqual(choice('required', { parallel_tool_calls: false }), { type: 'any', disable_parallel_tool_use: true });
  assert.deepEqual(choice(undefined, { parallel_tool_calls: false }), { type: 'auto', disable_parallel_tool_use: true });
  // A function without parameters gets the empty object schema Anthropic requires.
  assert.deepEqual(fromOpenAIRequest({ model: 'm', messages: user, tools }).body['tools'], [{ name: 'f', input_schema: { type: 'object', properties: {} } }]);
});

test('images: data: URL → base64 source (media type lower-cased), http(s) → url source, anything else refused', () => {
  const t = fromOpenAIRequest({ model: 'm', messages: [{ role: 'user', content: [
    { type: 'image_url', image_url: { url: 'data:Image/PNG;base64,AAAA' } },
    { type: 'image_url', image_url: { url: 'http://x.test/a.gif' } },
  ] }] });
  assert.deepEqual(t.body['messages'], [{ role: 'user', content: [
    { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
    { type: 'image', source: { type: 'url', url: 'http://x.test/a.gif' } },
  ] }]);
  assert.throws(() => fromOpenAIRequest({ model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'ftp://x/a.png' } }] }] }),
    (e: ProtocolError) => e.field === 'messages[0].content[0].image_url.url');
});

test('every parameter not mapped, or malformed, is a 400 naming it', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['n', { n: 3 }],
    ['logprobs', { logprobs: true }],
    ['top_logprobs', { top_logprobs: 2 }],
    ['response_format', { response_format: { type: 'json_object' } }],
    ['audio', { audio: {} }],
    ['modalities', { modalities: ['text', 'audio'] }],
    ['functions', { functions: [] }],
    ['reasoning_effort', { reasoning_effort: 'low' }],
    ['frequency_penalty', { frequency_penalty: 0.5 }],
    ['temperature', { temperature: 1.2 }],
    ['temperature', { temperature: -1 }],
    ['top_p', { top_p: 2 }],
    ['max_tokens', { max_tokens: 0 }],
    ['max_completion_tokens', { max_completion_tokens: 1.5 }],
    ['stop', { stop: [''] }],
    ['user', { user: 5 }],
    ['stream_options', { stream_options: { include_usage: true } }],
    ['stream_options.chunk_size', { stream: true, stream_options: { chunk_size: 1 } }],
    ['tool_choice', { tool_choice: 'required' }],
    ['tools[0].type', { tools: [{ type: 'custom', custom: {} }] }],
    ['model', { model: undefined }],
    ['messages', { messages: [] }],
    ['messages[0].role', { messages: [{ role: 'function', content: 'x', name: 'f' }] }],
    ['messages[0].content', { messages: [{ role: 'assistant', content: null }] }],
    ['messages[0].tool_call_id', { messages: [{ role: 'tool', content: 'x' }] }],
    ['messages[0].content[0].type', { messages: [{ role: 'user', content: [{ type: 'file', file: {} }] }] }],
    ['messages[1].tool_calls[0].function.arguments', { messages: [...user, { role: 'assistant', tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '[1]' } }] }] }],
  ];
  for (const [param, extra] of cases) {
    assert.throws(() => fromOpenAIRequest({ model: 'm', messages: user, ...extra }), (e: unknown) => {
      assert.ok(e instanceof ProtocolError, param);
      assert.equal(e.field, param);
      assert.equal(e.status, 400);
      assert.ok(e.message.startsWith(`${param}: `), e.message);
      return true;
    }, param);
  }
});

test('a max_completion_tokens out of range is named for what it is: not a positive integer, or above 2^53 − 1', () => {
  const message = (extra: Record<string, unknown>) => {
    try { fromOpenAIRequest({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra }); } catch (e) { return (e as Error).message; }
    return 'accepted';
  };
  assert.equal(message({ max_completion_tokens: 1.5 }), 'max_completion_tokens: must be a positive integer');
  assert.equal(message({ max_completion_tokens: '100' }), 'max_completion_tokens: must be a positive integer');
  assert.equal(message({ max_completion_tokens: 1e300 }), 'max_completion_tokens: must be at most 9007199254740991');
  assert.equal(message({ max_tokens: 2 ** 53 }), 'max_tokens: must be at most 9007199254740991');
  assert.equal(message({ max_tokens: Number.MAX_SAFE_INTEGER }), 'accepted');
});

test('max_tokens beside max_completion_tokens is checked too: a bad one, or one that disagrees, is a 400 naming it, never dropped', () => {
  const message = (extra: Record<string, unknown>) => {
    try { fromOpenAIRequest({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra }); } catch (e) { return (e as Error).message; }
    return 'accepted';
  };
  assert.equal(message({ max_tokens: 'abc', max_completion_tokens: 20 }), 'max_tokens: must be a positive integer');
  assert.equal(message({ max_tokens: -5, max_completion_tokens: 20 }), 'max_tokens: must be a positive integer');
  assert.equal(message({ max_tokens: 0, max_completion_tokens: 20 }), 'max_tokens: must be a positive integer');
  assert.equal(message({ max_tokens: 10, max_completion_tokens: 20 }), 'max_tokens: 10 differs from max_completion_tokens 20: give one of them (max_tokens is its older name)');
  assert.equal(message({ max_tokens: 20, max_completion_tokens: 20 }), 'accepted');
  assert.equal(message({ max_tokens: null, max_completion_tokens: 20 }), 'accepted');
});

test('string contents stay strings (same bytes, hence same input bound, as the Anthropic request of the same conversation)', () => {
  const t = fromOpenAIRequest({
    model: 'm', max_tokens: 7,
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello' },
      { role: 'user', content: 'Bye' },
    ],
  });
  const anthropic = { model: 'm', system: 'Be brief.', messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: 'Bye' }], max_tokens: 7 };
  assert.deepEqual(t.body, anthropic);
  assert.equal(JSON.stringify(t.body).length, JSON.stringify(anthropic).length);
});

test('message-level fields: name is refused naming it, an assistant refusal is kept as text, unknown fields refused', () => {
  const refused = (messages: unknown[], param: string, problem: RegExp) => assert.throws(() => fromOpenAIRequest({ model: 'm', messages }),
    (err: unknown) => err instanceof ProtocolError && err.message.startsWith(`${param}: `) && problem.test(err.message));
  refused([{ role: 'user', content: 'Hi', name: 'alice' }], 'messages[0].name', /participant names are not supported/);
  refused([{ role: 'system', content: 'S', name: 'ops' }, ...user], 'messages[0].name', /participant names/);
  refused([...user, { role: 'assistant', content: 'x', name: 'bot' }, ...user], 'messages[1].name', /participant names/);
  refused([...user, { role: 'tool', tool_call_id: 'c', content: 'r', name: 'f' }], 'messages[1].name', /participant names/);
  refused([{ role: 'user', content: 'Hi', cache: true }], 'messages[0].cache', /unsupported parameter/);
  const t = fromOpenAIRequest({ model: 'm', messages: [...user, { role: 'assistant', content: null, refusal: 'I cannot help' }, { role: 'user', content: 'Why?' }] });
  assert.deepEqual(t.body['messages'], [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: [{ type: 'text', text: 'I cannot help' }] },
    { role: 'user', content: 'Why?' },
  ]);
  // null is "absent", as OpenAI's SDK serialises unset fields
  assert.doesNotThrow(() => fromOpenAIRequest({ model: 'm', messages: [{ role: 'user', content: 'Hi', name: null }] }));
});
