import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  anthropicErrorOf, anthropicSseFromOpenAI, anthropicUsage, ChatStreamTranslator, fromOpenAICompletion, KEEPALIVE_PING_MS, NO_USAGE_WAIT_GRACES, openAIErrorToAnthropic, UNUSABLE_CACHED_TOKENS,
} from '@tollgate/openai-compat';
import type { OpenAIChatCompletion } from '@tollgate/openai-compat';

const ctx = { model: 'claude-sonnet-4-6', stopSequences: ['END'] };
const usage = { prompt_tokens: 1000, completion_tokens: 20, total_tokens: 1020, prompt_tokens_details: { cached_tokens: 600 } };

function completion(message: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}): OpenAIChatCompletion {
  return { id: 'chatcmpl-Ab1', object: 'chat.completion', created: 1, model: 'gpt-4o-2024-08-06',
    choices: [{ index: 0, message: { role: 'assistant', content: null, ...message }, finish_reason: finish, ...extra }], usage } as OpenAIChatCompletion;
}

test('completion with text and tool calls: blocks, tool_use stop, usage with cached tokens as cache reads', () => {
  const out = fromOpenAICompletion(completion({ content: 'On it.', tool_calls: [
    { id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
    { id: 'call_2', type: 'function', function: { name: 'weather', arguments: '{"city":' } },
  ] }, 'tool_calls'), ctx);
  assert.deepEqual(out, {
    id: 'msg_chatcmpl_Ab1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-6',
    content: [
      { type: 'text', text: 'On it.' },
      { type: 'tool_use', id: 'call_1', name: 'weather', input: { city: 'Paris' } },
      { type: 'tool_use', id: 'call_2', name: 'weather', input: { _unparsed_arguments: '{"city":' } },
    ],
    stop_reason: 'tool_use', stop_sequence: null,
    usage: { input_tokens: 400, cache_creation_input_tokens: 0, cache_read_input_tokens: 600, output_tokens: 20 },
  });
});

test('finish reasons: stop, stop with the matched sequence, length, content_filter', () => {
  const stop = (finish: string, extra: Record<string, unknown> = {}) => {
    const m = fromOpenAICompletion(completion({ content: 'x' }, finish, extra), ctx);
    return [m.stop_reason, m.stop_sequence];
  };
  assert.deepEqual(stop('stop'), ['end_turn', null]);
  assert.deepEqual(stop('stop', { stop_reason: 'END' }), ['stop_sequence', 'END']);
  assert.deepEqual(stop('stop', { stop_reason: 'NOT-ASKED' }), ['end_turn', null]);
  assert.deepEqual(stop('length'), ['max_tokens', null]);
  assert.deepEqual(stop('content_filter'), ['refusal', null]);
  const refused = fromOpenAICompletion(completion({ refusal: 'No.' }, 'stop'), ctx);
  assert.deepEqual([refused.content, refused.stop_reason], [[{ type: 'text', text: 'No.' }], 'refusal']);
});

test('completion without usage: no usage object (the gateway records no_usage)', () => {
  const c = completion({ content: 'x' }, 'stop');
  delete c.usage;
  assert.equal('usage' in fromOpenAICompletion(c, ctx), false);
});

const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}) =>
  ({ id: 'chatcmpl-Z', object: 'chat.completion.chunk', created: 1, model: 'gpt', choices: [{ index: 0, delta, finish_reason: finish, ...extra }] });

test('stream of text then two tool calls: one block each, partial JSON as it comes, final usage in message_delta', () => {
  const t = new ChatStreamTranslator(ctx);
  const events = [
    chunk({ role: 'assistant', content: '' }),
    chunk({ content: 'Hi' }),
    chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'f', arguments: '' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '{"a":' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] }),
    chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'g', arguments: '{}' } }] }),
    chunk({}, 'tool_calls'),
    { id: 'chatcmpl-Z', object: 'chat.completion.chunk', created: 1, model: 'gpt', choices: [], usage },
  ].flatMap((c) => t.push(c));
  events.push(...t.end());
  assert.deepEqual(events, [
    { type: 'message_start', message: { id: 'msg_chatcmpl_Z', type: 'message', role: 'assistant', model: 'claude-sonnet-4-6', content: [], stop_reason: null, stop_sequence: null,
      usage: { input_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 0 } } },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hi' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'call_a', name: 'f', input: {} } },
    { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"a":' } },
    { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '1}' } },
    { type: 'content_block_stop', index: 1 },
    { type: 'content_block_start', index: 2, content_block: { type: 'tool_use', id: 'call_b', name: 'g', input: {} } },
    { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '{}' } },
    { type: 'content_block_stop', index: 2 },
    { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: { input_tokens: 400, cache_creation_input_tokens: 0, cache_read_input_tokens: 600, output_tokens: 20 } },
    { type: 'message_stop' },
  ]);
});

test('stream that ends without a finish_reason: no message_delta (the gateway sees an interrupted stream)', () => {
  const t = new ChatStreamTranslator(ctx);
  const events = [chunk({ content: 'Hi' })].flatMap((c) => t.push(c));
  assert.deepEqual(t.end(), []);
  assert.deepEqual(events.map((e) => e.type), ['message_start', 'content_block_start', 'content_block_delta']);
});

test('a streamed refusal ends `refusal`, as the JSON answer with only a refusal does; refusal text beside content text ends as its finish says', () => {
  // Kind: the stream and the JSON path disagreeing on one answer's stop_reason (the stream said
  // end_turn for what the JSON path calls a refusal).
  const refusedOnly = new ChatStreamTranslator(ctx);
  const events = [chunk({ role: 'assistant', content: '' }), chunk({ refusal: 'I can' }), chunk({ refusal: 'not help.' }), chunk({}, 'stop')]
    .flatMap((c) => refusedOnly.push(c));
  events.push(...refusedOnly.end());
  assert.deepEqual(events.filter((e) => e.type === 'content_block_delta').map((e) => (e as unknown as { delta: { text: string } }).delta.text), ['I can', 'not help.']);
  assert.deepEqual(events.at(-2), { type: 'message_delta', delta: { stop_reason: 'refusal', stop_sequence: null }, usage: { output_tokens: null } });
  const json = fromOpenAICompletion(completion({ refusal: 'I cannot help.' }, 'stop'), ctx);
  assert.equal(json.stop_reason, 'refusal');
  // content first, then a refusal piece: the answer is the content's, its finish decides
  const mixed = new ChatStreamTranslator(ctx);
  mixed.push(chunk({ content: 'Partly: ' }));
  mixed.push(chunk({ refusal: 'no more.' }));
  mixed.push(chunk({}, 'stop'));
  assert.deepEqual(mixed.end()[0], { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: null } });
  // refusal text beside a tool call: the call wins (an agent loop runs it), in both paths
  const withCall = new ChatStreamTranslator(ctx);
  withCall.push(chunk({ refusal: 'I will not answer, ' }));
  withCall.push(chunk({ tool_calls: [{ index: 0, id: 'call_w', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }));
  withCall.push(chunk({}, 'tool_calls'));
  assert.equal((withCall.end().at(-2) as unknown as { delta: { stop_reason: string } }).delta.stop_reason, 'tool_use');
  const jsonWithCall = fromOpenAICompletion(completion({ refusal: 'I will not answer, ', tool_calls: [{ id: 'call_w', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }, 'tool_calls'), ctx);
  assert.equal(jsonWithCall.stop_reason, 'tool_use');
  // content_filter is a refusal whatever was streamed
  const filtered = new ChatStreamTranslator(ctx);
  filtered.push(chunk({ content: 'Hm' }));
  filtered.push(chunk({}, 'content_filter'));
  assert.equal((filtered.end()[0] as unknown as { delta: { stop_reason: string } }).delta.stop_reason, 'refusal');
});

test('stream with a finish_reason but no usage chunk: output_tokens null (the gateway records invalid_count)', () => {
  const t = new ChatStreamTranslator(ctx);
  t.push(chunk({ content: 'Hi' }));
  t.push(chunk({}, 'stop', { stop_reason: 'END' }));
  assert.deepEqual(t.end(), [
    { type: 'message_delta', delta: { stop_reason: 'stop_sequence', stop_sequence: 'END' }, usage: { output_tokens: null } },
    { type: 'message_stop' },
  ]);
});

test('SSE bytes split anywhere: the same Anthropic frames; an error chunk becomes an error event', async () => {
  const body = [
    `data: ${JSON.stringify(chunk({ content: 'Hi' }))}\n\n`,
    `data: ${JSON.stringify(chunk({}, 'length'))}\n\n`,
    `data: ${JSON.stringify({ id: 'chatcmpl-Z', choices: [], usage: { prompt_tokens: 5, completion_tokens: 1 } })}\n\ndata: [DONE]\n\n`,
  ].join('');
  async function* bytes() { for (let i = 0; i < body.length; i += 7) yield Buffer.from(body.slice(i, i + 7)); }
  let text = '';
  for await (const b of anthropicSseFromOpenAI(bytes(), ctx)) text += b.toString();
  const frames = text.split('\n\n').filter(Boolean);
  assert.equal(frames.length, 6);
  assert.equal(frames[4], 'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"input_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}');
  const t = new ChatStreamTranslator(ctx);
  assert.deepEqual(t.push({ error: { message: 'overloaded', type: 'server_error', code: null } }),
    [{ type: 'error', error: { type: 'api_error', message: 'overloaded' } }]);
});

test('OpenAI errors: status and type in Anthropic shape; insufficient_quota is the operator account (402), 503 overloaded (529)', () => {
  assert.deepEqual(openAIErrorToAnthropic(400, { error: { message: 'bad', type: 'invalid_request_error', param: 'messages', code: null } }),
    { status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: 'bad' } } });
  assert.deepEqual(openAIErrorToAnthropic(429, { error: { message: 'quota', type: 'insufficient_quota', code: 'insufficient_quota' } }),
    { status: 402, body: { type: 'error', error: { type: 'billing_error', message: 'quota' } } });
  assert.deepEqual(openAIErrorToAnthropic(429, { error: { message: 'slow down', type: 'requests', code: 'rate_limit_exceeded' } }),
    { status: 429, body: { type: 'error', error: { type: 'rate_limit_error', message: 'slow down' } } });
  assert.deepEqual(openAIErrorToAnthropic(503, 'not json'),
    { status: 529, body: { type: 'error', error: { type: 'overloaded_error', message: 'Upstream returned HTTP 503' } } });
  assert.deepEqual(openAIErrorToAnthropic(401, { error: { message: 'Incorrect API key', type: 'invalid_request_error', code: 'invalid_api_key' } }).status, 401);
});

test('a finished stream over a connection left open: message_delta and message_stop as soon as finish_reason and usage are both known, nothing after', () => {
  const t = new ChatStreamTranslator(ctx);
  const types = (events: Array<{ type: string }>) => events.map((e) => e.type);
  assert.deepEqual(types(t.push(chunk({ role: 'assistant', content: 'a b' }))), ['message_start', 'content_block_start', 'content_block_delta']);
  // finish_reason alone: the usage chunk is still to come (include_usage), nothing closes yet but the block
  assert.deepEqual(types(t.push(chunk({}, 'stop'))), ['content_block_stop']);
  const closing = t.push({ id: 'chatcmpl-Z', object: 'chat.completion.chunk', choices: [], usage });
  assert.deepEqual(closing, [
    { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { input_tokens: 400, cache_creation_input_tokens: 0, cache_read_input_tokens: 600, output_tokens: 20 } },
    { type: 'message_stop' },
  ]);
  assert.equal(t.ended, true);
  assert.deepEqual(t.push(chunk({ content: 'late' })), []);
  assert.deepEqual(t.end(), []);
  // usage on the finish chunk itself (vLLM continuous usage): complete but for the usage chunk
  // that may follow it; end() (the relay's wait over, [DONE], the body's end) closes with it
  const u = new ChatStreamTranslator(ctx);
  u.push(chunk({ content: 'x' }));
  assert.deepEqual(types(u.push({ ...chunk({}, 'length'), usage })), ['content_block_stop']);
  assert.equal(u.awaitingFinalUsage, true);
  assert.deepEqual(u.end().map((e) => e.type === 'message_delta' ? e.usage : e.type), [
    { input_tokens: 400, cache_creation_input_tokens: 0, cache_read_input_tokens: 600, output_tokens: 20 }, 'message_stop']);
});

test('stale usage is never the answer\'s: a running usage on content chunks, `usage: {}` first, usage on the finish chunk: the usage chunk after the finish counts', () => {
  const final = { prompt_tokens: 100, completion_tokens: 60, total_tokens: 160 };
  const closing = (chunks: unknown[]) => {
    const t = new ChatStreamTranslator(ctx);
    return chunks.flatMap((c) => t.push(c)).filter((e) => e.type === 'message_delta').map((e) => e.usage);
  };
  const want = [{ input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 60 }];
  // continuous usage stats: a running count on every content chunk, none on the finish chunk, then the usage chunk
  assert.deepEqual(closing([
    { ...chunk({ content: 'a' }), usage: { prompt_tokens: 100, completion_tokens: 10, total_tokens: 110 } },
    { ...chunk({ content: 'b' }), usage: { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 } },
    chunk({}, 'stop'),
    { id: 'chatcmpl-Z', choices: [], usage: final },
  ]), want);
  // an empty usage on the first chunk
  assert.deepEqual(closing([{ ...chunk({ role: 'assistant', content: 'a' }), usage: {} }, chunk({}, 'stop'), { id: 'chatcmpl-Z', choices: [], usage: final }]), want);
  // a usage on the finish chunk, then the usage chunk with other counts: the later one
  assert.deepEqual(closing([
    chunk({ content: 'a' }),
    { ...chunk({}, 'stop'), usage: { prompt_tokens: 100, completion_tokens: 5, total_tokens: 105 } },
    { id: 'chatcmpl-Z', choices: [], usage: final },
  ]), want);
  // a running usage and a finish without usage, then [DONE] (no usage chunk): the last usage seen
  // (the relay waits one grace for a usage chunk before it closes with it)
  const t = new ChatStreamTranslator(ctx);
  t.push({ ...chunk({ content: 'a' }), usage: { prompt_tokens: 100, completion_tokens: 7, total_tokens: 107 } });
  t.push(chunk({}, 'stop'));
  assert.equal(t.awaitingFinalUsage, true);
  assert.deepEqual(t.end().find((e) => e.type === 'message_delta')?.usage,
    { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 7 });
});

test('usage on the finish chunk over a connection left open: the relay waits the grace for a usage chunk, then closes with the usage it has', async () => {
  const frames = [
    `data: ${JSON.stringify(chunk({ role: 'assistant', content: 'a b' }))}\n\n`,
    `data: ${JSON.stringify({ ...chunk({}, 'stop'), usage })}\n\n`,
  ];
  async function* body() {
    for (const f of frames) yield Buffer.from(f);
    await new Promise(() => {}); // silence, never closed
  }
  const started = performance.now();
  let text = '';
  for await (const b of anthropicSseFromOpenAI(body(), ctx, 50)) text += b.toString('utf8');
  assert.ok(performance.now() - started >= 45, 'waited for a usage chunk');
  assert.match(text, /"usage":\{"input_tokens":400,"cache_creation_input_tokens":0,"cache_read_input_tokens":600,"output_tokens":20\}\}\n\nevent: message_stop\ndata: \{"type":"message_stop"\}\n\n$/);
  // the same with the usage chunk coming: closed by it, with its counts
  const later = { prompt_tokens: 1000, completion_tokens: 30, total_tokens: 1030 };
  async function* body2() {
    for (const f of frames) yield Buffer.from(f);
    yield Buffer.from(`data: ${JSON.stringify({ id: 'chatcmpl-Z', choices: [], usage: later })}\n\n`);
    await new Promise(() => {});
  }
  text = '';
  for await (const b of anthropicSseFromOpenAI(body2(), ctx, 60_000)) text += b.toString('utf8');
  // merged count by count: completion 20 → 30; cached_tokens, left out of the later report, stays 600
  assert.match(text, /"usage":\{"input_tokens":400,"cache_creation_input_tokens":0,"cache_read_input_tokens":600,"output_tokens":30\}\}\n\nevent: message_stop/);
});

test('a finished stream over a connection left open: the SSE relay yields the closing frames and stops reading without [DONE] or the end of the body', async () => {
  const frames = [
    `data: ${JSON.stringify(chunk({ role: 'assistant', content: 'a b' }))}\n\n`,
    `data: ${JSON.stringify(chunk({}, 'stop'))}\n\n`,
    `data: ${JSON.stringify({ id: 'chatcmpl-Z', choices: [], usage })}\n\n`,
  ];
  let pulledAfter = false;
  async function* body() {
    for (const f of frames) yield Buffer.from(f);
    // the upstream keeps the connection open: this never resolves unless read
    pulledAfter = true;
    await new Promise(() => {});
  }
  let text = '';
  for await (const b of anthropicSseFromOpenAI(body(), ctx)) text += b.toString('utf8');
  assert.equal(pulledAfter, false);
  assert.match(text, /event: message_delta\ndata: \{"type":"message_delta","delta":\{"stop_reason":"end_turn","stop_sequence":null\},"usage":\{"input_tokens":400,"cache_creation_input_tokens":0,"cache_read_input_tokens":600,"output_tokens":20\}\}\n\nevent: message_stop\ndata: \{"type":"message_stop"\}\n\n$/);
});

test('interleaved parallel tool-call pieces: each block start → deltas → stop before the next, the later call buffered whole', () => {
  const t = new ChatStreamTranslator(ctx);
  const call = (index: number, fn: Record<string, unknown>, id?: string) => chunk({ tool_calls: [{ index, ...(id ? { id, type: 'function' } : {}), function: fn }] });
  const events = [
    chunk({ role: 'assistant', content: null }),
    call(0, { name: 't', arguments: '' }, 'call_a'),
    call(1, { name: 't', arguments: '' }, 'call_b'),
    call(0, { arguments: '{"x":' }),
    call(1, { arguments: '{"x":' }),
    call(0, { arguments: '1}' }),
    call(1, { arguments: '2}' }),
    chunk({}, 'tool_calls'),
    { id: 'chatcmpl-Z', choices: [], usage },
  ].flatMap((c) => t.push(c));
  assert.deepEqual(events.slice(1), [
    { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 'call_a', name: 't', input: {} } },
    { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '{"x":' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '1}' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'call_b', name: 't', input: {} } },
    { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"x":2}' } },
    { type: 'content_block_stop', index: 1 },
    { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: { input_tokens: 400, cache_creation_input_tokens: 0, cache_read_input_tokens: 600, output_tokens: 20 } },
    { type: 'message_stop' },
  ]);
});

test('OpenAI errors with code null map by status first, like the Anthropic path: 403 permission, 413 too large, 404 not found', () => {
  const e = (status: number) => openAIErrorToAnthropic(status, { error: { message: 'm', type: 'invalid_request_error', param: null, code: null } });
  assert.deepEqual(e(403), { status: 403, body: { type: 'error', error: { type: 'permission_error', message: 'm' } } });
  assert.deepEqual(e(413), { status: 413, body: { type: 'error', error: { type: 'request_too_large', message: 'm' } } });
  assert.deepEqual(e(404), { status: 404, body: { type: 'error', error: { type: 'not_found_error', message: 'm' } } });
  assert.deepEqual(e(401), { status: 401, body: { type: 'error', error: { type: 'authentication_error', message: 'm' } } });
  // in a stream (no status): the code decides
  const t = new ChatStreamTranslator(ctx);
  assert.deepEqual(t.push({ error: { message: 'slow down', type: 'requests', code: 'rate_limit_exceeded' } }),
    [{ type: 'error', error: { type: 'rate_limit_error', message: 'slow down' } }]);
});

test('cached_tokens that are no split of the prompt (negative, a fraction, a string, more than prompt_tokens): the whole prompt is input, cache reads marked unusable (-1: invalid_count, 0)', () => {
  const u = (cached: unknown) => anthropicUsage({ prompt_tokens: 100, completion_tokens: 10, total_tokens: 110, prompt_tokens_details: { cached_tokens: cached as number } });
  const whole = { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: UNUSABLE_CACHED_TOKENS, output_tokens: 10 };
  for (const bad of [-50, 10.5, '40', 500, 1e20]) assert.deepEqual(u(bad), whole, String(bad));
  assert.equal(UNUSABLE_CACHED_TOKENS, -1);
  // usable: split as before; absent or null: no cache reads
  assert.deepEqual(u(40), { input_tokens: 60, cache_creation_input_tokens: 0, cache_read_input_tokens: 40, output_tokens: 10 });
  assert.deepEqual(u(100), { input_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 100, output_tokens: 10 });
  assert.deepEqual(u(null), { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 10 });
  assert.deepEqual(anthropicUsage({ prompt_tokens: 100, completion_tokens: 10, total_tokens: 110 }), { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 10 });
});

test('an OpenAI error object where an answer was due: the Anthropic error body, type by its code', () => {
  assert.deepEqual(anthropicErrorOf({ message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' }),
    { type: 'error', error: { type: 'api_error', message: 'Incorrect API key provided' } });
  assert.deepEqual(anthropicErrorOf({ message: 'too long', code: 'context_length_exceeded' }), { type: 'error', error: { type: 'invalid_request_error', message: 'too long' } });
  assert.deepEqual(anthropicErrorOf({ code: 'rate_limit_exceeded' }), { type: 'error', error: { type: 'rate_limit_error', message: 'Upstream error' } });
  assert.deepEqual(anthropicErrorOf({ message: 'quota', type: 'insufficient_quota' }), { type: 'error', error: { type: 'billing_error', message: 'quota' } });
});

test('a complete answer is never lost to what follows it: an error chunk after the finish, the body breaking after it, an empty usage after the real one; usage before the finish closes after the grace', async () => {
  const usage5 = { prompt_tokens: 30, completion_tokens: 10, total_tokens: 40 };
  const want = { input_tokens: 30, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 10 };
  const deltaOf = (text: string) => {
    const frames = text.split('\n\n').filter(Boolean);
    const delta = frames.find((f) => f.startsWith('event: message_delta'));
    return { usage: delta === undefined ? undefined : JSON.parse(delta.split('\ndata: ')[1]!).usage, last: frames.at(-1)?.split('\n')[0] };
  };
  const relay = async (pieces: Array<string | Error | 'hang'>, grace = 60_000) => {
    async function* body() {
      for (const p of pieces) {
        if (p === 'hang') await new Promise(() => {});
        else if (p instanceof Error) throw p;
        else yield Buffer.from(p);
      }
    }
    let text = '';
    for await (const b of anthropicSseFromOpenAI(body(), ctx, grace)) text += b.toString('utf8');
    return deltaOf(text);
  };
  const data = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
  const hello = data(chunk({ role: 'assistant', content: 'hello' }));
  const finishWithUsage = data({ ...chunk({}, 'stop'), usage: usage5 });
  // an error chunk after the finish: the answer closes with its usage, no error event
  assert.deepEqual(await relay([hello, finishWithUsage, data({ error: { message: 'late', type: 'server_error' } }), 'hang']).then((r) => [r.usage, r.last]),
    [want, 'event: message_stop']);
  // the body breaks after the finish: the same
  assert.deepEqual(await relay([hello, finishWithUsage, new Error('socket reset')]).then((r) => [r.usage, r.last]), [want, 'event: message_stop']);
  // before the finish the break is the stream's failure
  await assert.rejects(relay([hello, new Error('socket reset')]), /socket reset/);
  // an empty usage after the real one replaces nothing
  assert.deepEqual((await relay([hello, finishWithUsage, data({ id: 'x', choices: [], usage: {} }), 'hang'], 50)).usage, want);
  // the usage chunk before the finish chunk, then silence: closed one grace after the finish with it
  // (the body never ends: only the grace can close it)
  const early = await relay([hello, data({ id: 'x', choices: [], usage: usage5 }), data(chunk({}, 'stop')), 'hang'], 50);
  assert.deepEqual(early.usage, want);
  // keep-alives after the finish do not extend the grace: comments every 25 ms for ever against a
  // grace of 100 ms (a grace restarted by each would never end; run from the finish, it ends)
  let pings = 0;
  async function* pinging() {
    yield Buffer.from(hello + finishWithUsage);
    for (;;) {
      await new Promise((r) => setTimeout(r, 25));
      pings++;
      yield Buffer.from(': ping\n\n');
    }
  }
  let text = '';
  for await (const b of anthropicSseFromOpenAI(pinging(), ctx, 100)) text += b.toString('utf8');
  assert.deepEqual(deltaOf(text).usage, want);
  assert.ok(pings > 0, 'keep-alives came meanwhile');
});

test('a stream is read defensively: malformed pieces are skipped, never thrown on; usage reports merge count by count; tool calls without an index keep apart by id', async () => {
  const data = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
  const relay = async (pieces: string[], grace = 60_000) => {
    async function* body() {
      for (const p of pieces) yield Buffer.from(p);
      await new Promise(() => {});
    }
    const events: Array<Record<string, unknown>> = [];
    let text = '';
    for await (const b of anthropicSseFromOpenAI(body(), ctx, grace)) text += b.toString('utf8');
    for (const f of text.split('\n\n').filter(Boolean)) events.push(JSON.parse(f.split('\ndata: ')[1]!));
    return events;
  };
  const deltaUsage = (events: Array<Record<string, unknown>>) => events.find((e) => e.type === 'message_delta')?.usage;
  const hello = data(chunk({ role: 'assistant', content: 'hello' }));
  const fin = (u?: unknown) => data({ ...chunk({}, 'stop'), ...(u ? { usage: u } : {}) });
  const full = { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050 };
  const want = { input_tokens: 1000, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 50 };
  // malformed pieces after (and before) the finish: skipped
  for (const bad of [{ choices: [null] }, { choices: 5 }, { choices: [{ index: 0, delta: { tool_calls: [null] } }] }, { choices: [{ index: 0, delta: { tool_calls: 5 } }] }, { choices: [{ delta: null }] }]) {
    const events = await relay([hello, data(bad), fin(full), data(bad), data({ id: 'x', choices: [], usage: full })]);
    assert.deepEqual([deltaUsage(events), events.at(-1)?.type, events.some((e) => e.type === 'error')], [want, 'message_stop', false], JSON.stringify(bad));
  }
  // a later report with only total_tokens, only completion_tokens, or a null prompt takes nothing back
  for (const later of [{ total_tokens: 1050 }, { completion_tokens: 50 }, { prompt_tokens: null, completion_tokens: 50 }]) {
    assert.deepEqual(deltaUsage(await relay([hello, fin(full), data({ id: 'x', choices: [], usage: later })], 50)), want, JSON.stringify(later));
  }
  // a finish and no usage, then keep-alives for ever: closed NO_USAGE_WAIT_GRACES graces after it, usage unknown (invalid_count)
  async function* pinging() {
    yield Buffer.from(hello + fin());
    for (;;) {
      await new Promise((r) => setTimeout(r, 10));
      yield Buffer.from(': keep-alive\n\n');
    }
  }
  let text = '';
  for await (const b of anthropicSseFromOpenAI(pinging(), ctx, 20)) text += b.toString('utf8');
  assert.match(text, /"usage":\{"output_tokens":null\}\}\n\nevent: message_stop\ndata: \{"type":"message_stop"\}\n\n$/);
  assert.equal(NO_USAGE_WAIT_GRACES, 5);
  // two tool calls streamed without index: apart by id, each whole
  const t = new ChatStreamTranslator(ctx);
  const events = [
    chunk({ role: 'assistant', content: null }),
    chunk({ tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'f', arguments: '{"x":' } }] }),
    chunk({ tool_calls: [{ function: { arguments: '1}' } }] }),
    chunk({ tool_calls: [{ id: 'call_b', type: 'function', function: { name: 'g', arguments: '{"y":2}' } }] }),
    chunk({}, 'tool_calls'),
    { id: 'x', choices: [], usage: full },
  ].flatMap((c) => t.push(c));
  const starts = events.filter((e) => e.type === 'content_block_start').map((e) => (e.content_block as { id: string; name: string }));
  assert.deepEqual(starts.map((b) => [b.id, b.name]), [['call_a', 'f'], ['call_b', 'g']]);
  const json = (i: number) => events.filter((e) => e.type === 'content_block_delta' && e.index === i).map((e) => (e.delta as { partial_json: string }).partial_json).join('');
  assert.deepEqual([json(0), json(1)], ['{"x":1}', '{"y":2}']);
  // a prompt that is no count is passed as it came (flagged by the reader), never clamped into one
  assert.equal(anthropicUsage({ prompt_tokens: 2 ** 53, completion_tokens: 1, total_tokens: 0, prompt_tokens_details: { cached_tokens: 2 } }).input_tokens, 2 ** 53);
  assert.equal(anthropicUsage({ prompt_tokens: -1000, completion_tokens: 1, total_tokens: 0 }).input_tokens, -1000);
});

test('usage is never dropped for being where the relay closes: an error chunk carrying it, a report split over two chunks, a cached-only report (no prompt to split), a cut before the finish (the usage so far, no stop_reason)', async () => {
  const data = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
  const run = async (pieces: Array<string | Error>, grace = 60_000) => {
    async function* body() {
      for (const p of pieces) {
        if (p instanceof Error) throw p;
        yield Buffer.from(p);
      }
      await new Promise(() => {});
    }
    const frames: Array<Record<string, unknown>> = [];
    let text = '';
    let failed: unknown;
    try {
      for await (const b of anthropicSseFromOpenAI(body(), ctx, grace)) text += b.toString('utf8');
    } catch (err) { failed = err; }
    for (const f of text.split('\n\n').filter(Boolean)) frames.push(JSON.parse(f.split('\ndata: ')[1]!));
    const delta = frames.find((e) => e.type === 'message_delta') as { usage?: unknown; delta?: { stop_reason: unknown } } | undefined;
    return { usage: delta?.usage, stop: delta?.delta?.stop_reason, last: frames.at(-1)?.type, failed: failed !== undefined };
  };
  const hello = data(chunk({ role: 'assistant', content: 'hello world' }));
  const fin = data(chunk({}, 'stop'));
  const want = { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 50 };
  // an error chunk after the finish that carries the usage: closed with it
  assert.deepEqual(await run([hello, fin, data({ error: { message: 'x', type: 'server_error' }, usage: { prompt_tokens: 100, completion_tokens: 50 } })]),
    { usage: want, stop: 'end_turn', last: 'message_stop', failed: false });
  // the usage chunk split in two: prompt, then completion
  assert.deepEqual((await run([hello, fin, data({ choices: [], usage: { prompt_tokens: 100 } }), data({ choices: [], usage: { completion_tokens: 50 } }), 'data: [DONE]\n\n'])).usage, want);
  // a cached-only report is no usage yet (no prompt to split): the full report 1.5 graces later counts
  async function* late() {
    yield Buffer.from(hello + fin + data({ choices: [], usage: { prompt_tokens_details: { cached_tokens: 80 } } }));
    await new Promise((r) => setTimeout(r, 60));
    yield Buffer.from(data({ choices: [], usage: { prompt_tokens: 100, completion_tokens: 50, prompt_tokens_details: { cached_tokens: 80 } } }));
    await new Promise(() => {});
  }
  let text = '';
  for await (const b of anthropicSseFromOpenAI(late(), ctx, 40)) text += b.toString('utf8');
  assert.match(text, /"usage":\{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":80,"output_tokens":50\}\}/);
  assert.deepEqual(anthropicUsage({ completion_tokens: 5, prompt_tokens_details: { cached_tokens: 80 } } as never).cache_read_input_tokens, UNUSABLE_CACHED_TOKENS);
  // cut before the finish after a running usage: the usage so far, without a stop_reason (an interrupted stream), then the break
  assert.deepEqual(await run([data({ ...chunk({ role: 'assistant', content: 'hel' }), usage: { prompt_tokens: 100, completion_tokens: 10 } }), new Error('reset')]),
    { usage: { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 10 }, stop: null, last: 'message_delta', failed: true });
  // an error chunk before the finish: the usage so far, then the error event
  assert.deepEqual(await run([data({ ...chunk({ role: 'assistant', content: 'hel' }), usage: { prompt_tokens: 100, completion_tokens: 10 } }), data({ error: { message: 'boom', type: 'server_error' } })]),
    { usage: { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 10 }, stop: null, last: 'error', failed: false });
});

test('JSON completions read defensively: tool_calls in shapes no server documents are skipped or read as absent, arguments given as an object kept, content parts joined; never a throw', () => {
  const usage100 = { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 };
  const msgOf = (message: unknown, finish = 'stop') => fromOpenAICompletion({ id: 'c', choices: [{ index: 0, message, finish_reason: finish }], usage: usage100 } as never, ctx);
  for (const calls of [{ id: 'x', function: { name: 'f', arguments: '{}' } }, 5, [null], 'abc']) {
    const m = msgOf({ content: 'ok', tool_calls: calls });
    assert.deepEqual([m.content, m.usage], [[{ type: 'text', text: 'ok' }], { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 50 }], JSON.stringify(calls));
  }
  const made = msgOf({ content: null, tool_calls: [{ function: { name: 'f', arguments: { x: 1 } } }] }, 'tool_calls').content as Array<{ id: string }>;
  assert.deepEqual(made.map(({ id: _id, ...b }) => b), [{ type: 'tool_use', name: 'f', input: { x: 1 } }]);
  // a made-up id is unique: two turns never share one
  assert.match(made[0]!.id, /^toolu_[0-9a-f]{24}$/);
  assert.notEqual(made[0]!.id, (msgOf({ content: null, tool_calls: [{ function: { name: 'f', arguments: '{}' } }] }, 'tool_calls').content as Array<{ id: string }>)[0]!.id);
  assert.deepEqual(msgOf({ content: [{ type: 'text', text: 'a ' }, { type: 'text', text: 'b' }, { type: 'image_url' }] }).content, [{ type: 'text', text: 'a b' }]);
  assert.deepEqual(fromOpenAICompletion({ id: 'c', choices: 5, usage: usage100 } as never, ctx).content, []);
});

test('a stream whose finish_reason says the upstream gave up (abort, error) is interrupted, not complete: the usage so far, then an error event', () => {
  const t = new ChatStreamTranslator(ctx);
  t.push(chunk({ role: 'assistant', content: 'Half an ans' }));
  const out = t.push({ ...chunk({}, 'abort'), usage: { prompt_tokens: 100, completion_tokens: 50 } });
  assert.deepEqual(out.map((e) => e.type), ['message_delta', 'error']);
  assert.deepEqual([(out[0]!.delta as { stop_reason: unknown }).stop_reason, (out[1]!.error as { type: string }).type], [null, 'api_error']);
  assert.equal(t.ended, true);
});

test('parallel tool calls that reuse index 0 with new ids stay apart; reasoning chunks (dropped) give a ping at most every KEEPALIVE_PING_MS; content parts in deltas are text', () => {
  const t = new ChatStreamTranslator(ctx);
  const events = [
    chunk({ role: 'assistant', content: null }),
    chunk({ tool_calls: [{ index: 0, id: 'call_A', type: 'function', function: { name: 'fa', arguments: '{"x":1}' } }] }),
    chunk({ tool_calls: [{ index: 0, id: 'call_B', type: 'function', function: { name: 'fb', arguments: '{"y":' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '2}' } }] }),
    chunk({}, 'tool_calls'),
    { id: 'x', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } },
  ].flatMap((c) => t.push(c));
  const starts = events.filter((e) => e.type === 'content_block_start').map((e) => (e.content_block as { id: string }).id);
  assert.deepEqual(starts, ['call_A', 'call_B']);
  const json = (i: number) => events.filter((e) => e.type === 'content_block_delta' && e.index === i).map((e) => (e.delta as { partial_json: string }).partial_json).join('');
  assert.deepEqual([json(0), json(1)], ['{"x":1}', '{"y":2}']);
  const r = new ChatStreamTranslator(ctx);
  r.push(chunk({ role: 'assistant', content: '' }));
  const pings = [1, 2, 3].flatMap(() => r.push(chunk({ reasoning_content: 'thinking…' }))).filter((e) => e.type === 'ping');
  assert.equal(pings.length, 1, 'the first reasoning chunk pings, the next ones within KEEPALIVE_PING_MS do not');
  assert.equal(KEEPALIVE_PING_MS, 5_000);
  assert.deepEqual(r.push(chunk({ content: [{ type: 'text', text: 'hi' }] })).filter((e) => e.type === 'content_block_delta').map((e) => e.delta), [{ type: 'text_delta', text: 'hi' }]);
});

test('any number of calls reusing one tool-call index stay apart; a choice with index null is the first; arguments given as an object in a stream are its JSON; an answer that calls tools with finish_reason stop is tool_use', () => {
  const t = new ChatStreamTranslator(ctx);
  const call = (id: string, city: string) => chunk({ tool_calls: [{ index: 0, id, type: 'function', function: { name: 'get', arguments: `{"city":"${city}"}` } }] });
  const events = [
    chunk({ role: 'assistant', content: null }),
    ...['A', 'B', 'C', 'D', 'E'].map((x) => call(`call_${x}`, x)),
    { id: 'c', choices: [{ index: null, delta: { tool_calls: [{ index: 1, id: 'call_F', function: { name: 'get', arguments: { city: 'F' } } }] }, finish_reason: null }] },
    chunk({}, 'stop'),
    { id: 'x', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } },
  ].flatMap((c) => t.push(c));
  const starts = events.filter((e) => e.type === 'content_block_start').map((e) => [e.index, (e.content_block as { id: string }).id]);
  assert.deepEqual(starts.map(([, id]) => id), ['call_A', 'call_B', 'call_C', 'call_D', 'call_E', 'call_F']);
  for (const [index, id] of starts) {
    const json = events.filter((e) => e.type === 'content_block_delta' && e.index === index).map((e) => (e.delta as { partial_json: string }).partial_json).join('');
    assert.equal(json, `{"city":"${String(id).slice(-1)}"}`, String(id));
  }
  assert.equal((events.find((e) => e.type === 'message_delta')!.delta as { stop_reason: string }).stop_reason, 'tool_use');
  // a whole text stream whose choices say index: null is answered, not cut
  const u = new ChatStreamTranslator(ctx);
  const text = [
    { id: 'c', choices: [{ index: null, delta: { role: 'assistant', content: 'Hello' }, finish_reason: null }] },
    { id: 'c', choices: [{ index: null, delta: {}, finish_reason: 'stop' }] },
    { id: 'c', choices: [], usage: { prompt_tokens: 1000, completion_tokens: 50 } },
  ].flatMap((c) => u.push(c));
  assert.deepEqual(text.filter((e) => e.type === 'message_delta').map((e) => (e.delta as { stop_reason: string }).stop_reason), ['end_turn']);
  // JSON: tool calls under finish_reason stop
  const m = fromOpenAICompletion({ id: 'c', choices: [{ index: 0, message: { content: null, tool_calls: [{ id: 'call_1', function: { name: 'f', arguments: '{}' } }] }, finish_reason: 'stop' }] } as never, ctx);
  assert.equal(m.stop_reason, 'tool_use');
});

test('tool calls without ids: a second name is a second call (with or without index 0); an id seen before returns to its call; usage where servers put it (x_groq.usage, the choice); a count above the reader\'s bound is none', () => {
  const ids = (events: Array<Record<string, unknown>>) => events.filter((e) => e.type === 'content_block_start').map((e) => (e.content_block as { name: string }).name);
  const json = (events: Array<Record<string, unknown>>) => {
    const starts = events.filter((e) => e.type === 'content_block_start').map((e) => e.index);
    return starts.map((i) => events.filter((e) => e.type === 'content_block_delta' && e.index === i).map((e) => (e.delta as { partial_json: string }).partial_json).join(''));
  };
  for (const withIndex of [false, true]) {
    const t = new ChatStreamTranslator(ctx);
    const events = [
      chunk({ role: 'assistant', content: null }),
      ...[0, 1, 2].map((n) => chunk({ tool_calls: [{ ...(withIndex ? { index: 0 } : {}), type: 'function', function: { name: `g${n}`, arguments: `{"n":${n}}` } }] })),
      chunk({}, 'tool_calls'),
      { id: 'x', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } },
    ].flatMap((c) => t.push(c));
    assert.deepEqual([ids(events), json(events)], [['g0', 'g1', 'g2'], ['{"n":0}', '{"n":1}', '{"n":2}']], `index given: ${withIndex}`);
  }
  // a server that repeats a call's own name on every piece: one call
  const same = new ChatStreamTranslator(ctx);
  const rep = [
    chunk({ role: 'assistant', content: null }),
    chunk({ tool_calls: [{ index: 0, function: { name: 'get', arguments: '{"ci' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { name: 'get', arguments: 'ty":"P"}' } }] }),
    chunk({}, 'tool_calls'),
  ].flatMap((c) => same.push(c));
  assert.deepEqual([ids(rep), json(rep)], [['get'], ['{"city":"P"}']]);
  // ids alternating on one index: each piece back to its own call
  const t = new ChatStreamTranslator(ctx);
  const alt = [
    chunk({ role: 'assistant', content: null }),
    chunk({ tool_calls: [{ index: 0, id: 'A', function: { name: 'a', arguments: '{"a":' } }] }),
    chunk({ tool_calls: [{ index: 0, id: 'B', function: { name: 'b', arguments: '{"b":' } }] }),
    chunk({ tool_calls: [{ index: 0, id: 'A', function: { arguments: '1}' } }] }),
    chunk({ tool_calls: [{ index: 0, id: 'B', function: { arguments: '2}' } }] }),
    chunk({}, 'tool_calls'),
    { id: 'x', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } },
  ].flatMap((c) => t.push(c));
  assert.deepEqual([ids(alt), json(alt)], [['a', 'b'], ['{"a":1}', '{"b":2}']]);
  // usage in x_groq, or on the choice
  for (const where of ['x_groq', 'choice'] as const) {
    const u = new ChatStreamTranslator(ctx);
    u.push(chunk({ role: 'assistant', content: 'hi' }));
    const usage = { prompt_tokens: 1000, completion_tokens: 500 };
    const fin = where === 'x_groq' ? { ...chunk({}, 'stop'), x_groq: { usage } } : { id: 'c', choices: [{ index: 0, delta: {}, finish_reason: 'stop', usage }] };
    u.push(fin);
    assert.deepEqual(u.end().find((e) => e.type === 'message_delta')?.usage, { input_tokens: 1000, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 500 }, where);
  }
  // a running report above 2^32 − 1 never outweighs the true final one
  const big = new ChatStreamTranslator(ctx);
  big.push({ ...chunk({ role: 'assistant', content: 'hi' }), usage: { prompt_tokens: 2 ** 52, completion_tokens: 1 } });
  big.push(chunk({}, 'stop'));
  const closing = big.push({ id: 'x', choices: [], usage: { prompt_tokens: 1000, completion_tokens: 500 } });
  assert.deepEqual(closing.find((e) => e.type === 'message_delta')?.usage, { input_tokens: 1000, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 500 });
});

test('upstream keep-alive comments reach the client: message_start at the first (its headers), then a ping at most every KEEPALIVE_PING_MS', async () => {
  let pulled = 0;
  async function* body() {
    for (let i = 0; i < 3; i++) {
      pulled++;
      yield Buffer.from(': OPENROUTER PROCESSING\n\n');
    }
    yield Buffer.from(`data: ${JSON.stringify(chunk({ role: 'assistant', content: 'hi' }))}\n\ndata: ${JSON.stringify(chunk({}, 'stop'))}\n\ndata: ${JSON.stringify({ id: 'x', choices: [], usage: { prompt_tokens: 5, completion_tokens: 1 } })}\n\n`);
  }
  const types: string[] = [];
  for await (const b of anthropicSseFromOpenAI(body(), ctx)) {
    for (const f of b.toString('utf8').split('\n\n').filter(Boolean)) types.push(f.split('\n')[0]!.slice('event: '.length));
  }
  assert.equal(pulled, 3);
  assert.deepEqual(types, ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
});
