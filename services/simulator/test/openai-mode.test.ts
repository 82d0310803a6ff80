// The simulator's OpenAI-compatible mode (POST /v1/chat/completions) against the official
// `openai` client: the shapes a platform openai upstream answers with, usage included.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { FastifyInstance } from 'fastify';
import { buildSimulator } from '../src/index.ts';

let sim: FastifyInstance;
let client: OpenAI;
before(async () => {
  sim = buildSimulator({ apiKey: 'sk-oai' });
  const url = await sim.listen({ port: 0, host: '127.0.0.1' });
  client = new OpenAI({ apiKey: 'sk-oai', baseURL: `${url}/v1`, maxRetries: 0, logLevel: 'error' });
});
after(async () => { await sim.close(); });

const WEATHER = { type: 'function' as const, function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };

test('JSON completion: one choice, usage with prompt_tokens and cached_tokens; the same prompt again is read from the cache', async () => {
  const ask = () => client.chat.completions.create({
    model: 'claude-sonnet-4-6', max_completion_tokens: 6,
    messages: [{ role: 'system', content: 'abcd'.repeat(100) }, { role: 'user', content: 'Hello there' }],
  });
  const first = await ask();
  assert.equal(first.object, 'chat.completion');
  assert.deepEqual(first.choices[0]?.message.content, 'Simulated reply to: Hello there lorem');
  assert.equal(first.choices[0]?.finish_reason, 'stop');
  // system 400 chars + "Hello there" 11 chars: ⌈411 / 4⌉ = 103 prompt tokens
  assert.deepEqual([first.usage?.prompt_tokens, first.usage?.prompt_tokens_details?.cached_tokens, first.usage?.completion_tokens], [103, 0, 6]);
  const second = await ask();
  assert.deepEqual([second.usage?.prompt_tokens, second.usage?.prompt_tokens_details?.cached_tokens], [103, 103]);
});

test('stop: the text is cut before the first match, named in stop_reason (vLLM style)', async () => {
  const res = await client.chat.completions.create({ model: 'm', max_completion_tokens: 20, stop: ['dolor'], messages: [{ role: 'user', content: 'Hi' }] });
  assert.equal(res.choices[0]?.message.content, 'Simulated reply to: Hi lorem ipsum ');
  assert.equal((res.choices[0] as unknown as { stop_reason: string }).stop_reason, 'dolor');
  assert.equal(res.usage?.completion_tokens, 6);
});

test('streaming tool call with include_usage: the SDK accumulates the call; usage arrives in the last chunk', async () => {
  const stream = await client.chat.completions.create({
    model: 'm', stream: true, stream_options: { include_usage: true }, tools: [WEATHER], tool_choice: 'required',
    messages: [{ role: 'user', content: 'Weather? [[sim output=9]]' }],
  });
  let args = '';
  let name = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    const call = chunk.choices[0]?.delta.tool_calls?.[0];
    if (call?.function?.name) name = call.function.name;
    if (call?.function?.arguments) args += call.function.arguments;
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.deepEqual([name, args, finish, usage?.completion_tokens], ['weather', '{"city":"sim"}', 'tool_calls', 9]);
});

test('max_completion_tokens 0 is a 400 (OpenAI\'s minimum is 1; only Anthropic\'s API pre-warms a cache with 0)', async () => {
  for (const field of ['max_completion_tokens', 'max_tokens'] as const) {
    await assert.rejects(client.chat.completions.create({ model: 'claude-sonnet-4-6', [field]: 0, messages: [{ role: 'user', content: 'x' }] }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      assert.equal(err.message, `400 ${field}: 0 is less than the minimum of 1`);
      return true;
    });
  }
});

test('errors in OpenAI shape: a wrong key is 401 invalid_api_key, a directed 429 keeps retry-after', async () => {
  const bad = new OpenAI({ apiKey: 'wrong', baseURL: client.baseURL, maxRetries: 0, logLevel: 'error' });
  await assert.rejects(bad.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }), (err: unknown) => {
    assert.ok(err instanceof OpenAI.AuthenticationError);
    assert.equal(err.code, 'invalid_api_key');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x [[sim status=429 retry_after=7]]' }] }), (err: unknown) => {
    assert.ok(err instanceof OpenAI.RateLimitError);
    assert.equal(err.headers.get('retry-after'), '7');
    assert.equal(err.code, 'rate_limit_exceeded');
    return true;
  });
});
