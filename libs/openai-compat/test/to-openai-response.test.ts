// OpenAI-format clients: the Anthropic answer the gateway meters → what the OpenAI client reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatChunkStream, finishReasonOf, KEEPALIVE_MS, openAIErrorBody, toChatCompletion } from '@tollgate/openai-compat';

const ev = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const chunksOf = (out: string) => out.split('\n\n').filter((s) => s !== '').map((s) => s.slice('data: '.length));

test('a message with text and tool_use: one choice, tool_calls with JSON arguments, usage counting every prompt token', () => {
  const c = toChatCompletion({
    id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', stop_reason: 'tool_use',
    content: [
      { type: 'thinking', thinking: 'hmm', signature: 's' },
      { type: 'text', text: 'Checking ' }, { type: 'text', text: 'now.' },
      { type: 'tool_use', id: 'toolu_1', name: 'w', input: { city: 'Paris' } },
    ],
    usage: { input_tokens: 10, output_tokens: 7, cache_read_input_tokens: 100, cache_creation_input_tokens: 20 },
  }, 1_700_000_000);
  assert.deepEqual(c, {
    id: 'chatcmpl-msg_1', object: 'chat.completion', created: 1_700_000_000, model: 'claude-sonnet-4-5-20250929',
    choices: [{
      index: 0, logprobs: null, finish_reason: 'tool_calls',
      message: { role: 'assistant', content: 'Checking now.', refusal: null, tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'w', arguments: '{"city":"Paris"}' } }] },
    }],
    usage: { prompt_tokens: 130, completion_tokens: 7, total_tokens: 137, prompt_tokens_details: { cached_tokens: 100 } },
  });
});

test('stop reasons → finish reasons', () => {
  assert.deepEqual(
    ['end_turn', 'stop_sequence', 'pause_turn', 'max_tokens', 'model_context_window_exceeded', 'tool_use', 'refusal', null].map(finishReasonOf),
    ['stop', 'stop', 'stop', 'length', 'length', 'tool_calls', 'content_filter', null]);
});

test('a stream: role chunk, text and tool-call deltas numbered among tool calls, finish chunk, usage chunk, [DONE]; pings and thinking dropped', () => {
  const s = new ChatChunkStream({ includeUsage: true, created: 5 });
  const out = [
    ev('message_start', { message: { id: 'msg_2', model: 'm', usage: { input_tokens: 3, cache_read_input_tokens: 4, output_tokens: 1 } } }),
    ev('ping', {}),
    ev('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }),
    ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'x' } }),
    ev('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }),
    ev('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'Hi' } }),
    ev('content_block_start', { index: 2, content_block: { type: 'tool_use', id: 'toolu_9', name: 'w', input: {} } }),
    ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '{"a":' } }),
    ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '1}' } }),
    ev('message_delta', { delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 9 } }),
    ev('message_stop', {}),
    ev('message_delta', { delta: {}, usage: { output_tokens: 99 } }),
  ].map((e) => s.push(e)).join('');
  const base = { id: 'chatcmpl-msg_2', object: 'chat.completion.chunk', created: 5, model: 'm' };
  const choice = (delta: unknown, finish: string | null = null) => ({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], usage: null });
  assert.deepEqual(chunksOf(out), [
    JSON.stringify(choice({ role: 'assistant', content: '' })),
    JSON.stringify(choice({ content: 'Hi' })),
    JSON.stringify(choice({ tool_calls: [{ index: 0, id: 'toolu_9', type: 'function', function: { name: 'w', arguments: '' } }] })),
    JSON.stringify(choice({ tool_calls: [{ index: 0, function: { arguments: '{"a":' } }] })),
    JSON.stringify(choice({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] })),
    JSON.stringify(choice({}, 'tool_calls')),
    JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 7, completion_tokens: 9, total_tokens: 16, prompt_tokens_details: { cached_tokens: 4 } } }),
    '[DONE]',
  ]);
});

test('an error event becomes an OpenAI error chunk and ends the stream without [DONE]', () => {
  const s = new ChatChunkStream({ includeUsage: false, created: 5 });
  s.push(ev('message_start', { message: { id: 'm', model: 'm', usage: {} } }));
  const out = s.push('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","code":"overloaded","message":"Overloaded"},"request_id":"req_1"}\n\n');
  assert.equal(out, 'data: {"error":{"message":"Overloaded","type":"overloaded_error","param":null,"code":"overloaded"}}\n\n');
  assert.equal(s.push(ev('message_stop', {})), '');
});

test('error bodies: param is the parameter a 400 message starts with, null otherwise', () => {
  assert.deepEqual(openAIErrorBody({ type: 'invalid_request_error', code: 'invalid_request', message: 'messages[0].content: Field required' }),
    { error: { message: 'messages[0].content: Field required', type: 'invalid_request_error', param: 'messages[0].content', code: 'invalid_request' } });
  assert.deepEqual(openAIErrorBody({ type: 'billing_error', code: 'insufficient_credits', message: 'model: low' }),
    { error: { message: 'model: low', type: 'billing_error', param: null, code: 'insufficient_credits' } });
  // A field the client sent under another name is named as the client named it, in param and message.
  const renamed = { max_tokens: 'max_completion_tokens', stop_sequences: 'stop' };
  assert.deepEqual(openAIErrorBody({ type: 'invalid_request_error', code: 'invalid_request', message: 'max_tokens: 64001 > 64000, which is …' }, renamed),
    { error: { message: 'max_completion_tokens: 64001 > 64000, which is …', type: 'invalid_request_error', param: 'max_completion_tokens', code: 'invalid_request' } });
  assert.deepEqual(openAIErrorBody({ type: 'invalid_request_error', code: 'invalid_request', message: 'max_tokens_x: y' }, renamed).error.param, 'max_tokens_x');
  assert.deepEqual(openAIErrorBody({ type: 'invalid_request_error', code: 'invalid_request', message: 'toString: y' }, renamed).error.param, 'toString');
  // mid-sentence mentions too, in any error (a 402's worst case, a thinking budget's bound), never a longer name
  assert.deepEqual(openAIErrorBody({ type: 'billing_error', code: 'insufficient_credits', message: 'it needs up to 2 credits (its worst case at max_tokens 64000) and 1 credits are available' }, renamed),
    { error: { message: 'it needs up to 2 credits (its worst case at max_completion_tokens 64000) and 1 credits are available', type: 'billing_error', param: null, code: 'insufficient_credits' } });
  assert.equal(openAIErrorBody({ type: 'invalid_request_error', code: 'invalid_request', message: 'thinking.budget_tokens: must be less than max_tokens (2048), got 4096; see max_tokens_x and x.max_tokens' }, renamed).error.message,
    'thinking.budget_tokens: must be less than max_completion_tokens (2048), got 4096; see max_tokens_x and x.max_tokens');
  assert.equal(openAIErrorBody({ type: 'invalid_request_error', code: 'invalid_request', message: 'max_tokens: 5 > 4' }, {}).error.message, 'max_tokens: 5 > 4');
});

test('the usage an OpenAI client reads is read as the gateway meters it: input-side counts only grow, the placeholder output yields to the delta, counts that are not counts are 0 or change nothing', () => {
  const usageChunk = (events: string[]) => {
    const s = new ChatChunkStream({ includeUsage: true, created: 5 });
    const chunks = chunksOf(events.map((e) => s.push(e)).join(''));
    return JSON.parse(chunks[chunks.length - 2]!).usage;
  };
  const start = (usage: Record<string, unknown>) => ev('message_start', { message: { id: 'msg_3', model: 'm', usage } });
  const delta = (usage: Record<string, unknown>) => ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage });
  // a delta that lowers input (7 → 0) and cache reads (3 → 0): the meter keeps 7 and 3; output 1 → 12 replaces
  assert.deepEqual(usageChunk([start({ input_tokens: 7, cache_read_input_tokens: 3, output_tokens: 1 }), delta({ input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 12 }), ev('message_stop', {})]),
    { prompt_tokens: 10, completion_tokens: 12, total_tokens: 22, prompt_tokens_details: { cached_tokens: 3 } });
  // a negative, a fraction and 1e20 change nothing (metered as invalid_count): 5 input; the placeholder
  // output 1 is no count, and no delta gave one: 0, as metered
  assert.deepEqual(usageChunk([start({ input_tokens: 5, output_tokens: 1 }), delta({ input_tokens: -5, output_tokens: 1e20, cache_read_input_tokens: 2.5 }), ev('message_stop', {})]),
    { prompt_tokens: 5, completion_tokens: 0, total_tokens: 5, prompt_tokens_details: { cached_tokens: 0 } });
  // a JSON message with counts that are not counts: 0 each, never negative or 1e20
  assert.deepEqual(toChatCompletion({ id: 'msg_4', model: 'm', stop_reason: 'end_turn', content: [], usage: { input_tokens: 4, output_tokens: -5, cache_read_input_tokens: 1e20 } }, 1).usage,
    { prompt_tokens: 4, completion_tokens: 0, total_tokens: 4, prompt_tokens_details: { cached_tokens: 0 } });
});

test('a stream that writes nothing for KEEPALIVE_MS (a model thinking: pings and thinking deltas are dropped) writes an SSE comment, at most one per interval; message_start\'s placeholder output is 0 when no delta gives one', () => {
  let now = 0;
  const s = new ChatChunkStream({ includeUsage: true, created: 5, now: () => now });
  const think = ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'hmm' } });
  assert.notEqual(s.push(ev('message_start', { message: { id: 'msg_k', model: 'm', usage: { input_tokens: 3, output_tokens: 1 } } })), '');
  now = KEEPALIVE_MS - 1;
  assert.equal(s.push(think), '');
  now = KEEPALIVE_MS;
  assert.equal(s.push(think), ': keep-alive\n\n');
  now += 1;
  assert.equal(s.push(ev('ping', {})), '', 'one per interval');
  now += KEEPALIVE_MS;
  assert.equal(s.push(ev('ping', {})), ': keep-alive\n\n');
  // a delta without usage: the placeholder 1 is no count
  s.push(ev('message_delta', { delta: { stop_reason: 'end_turn' } }));
  const out = chunksOf(s.push(ev('message_stop', {})));
  assert.deepEqual(JSON.parse(out[0]!).usage, { prompt_tokens: 3, completion_tokens: 0, total_tokens: 3, prompt_tokens_details: { cached_tokens: 0 } });
});
