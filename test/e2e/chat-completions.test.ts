// Issue 10, outcome 5: OpenAI-format clients. The official `openai` client → Tollgate embedded
// (POST /v1/chat/completions) → the simulator (an Anthropic upstream). The same conversation is
// also sent through /v1/messages with the official Anthropic SDK: both must be metered, limited
// and billed alike. Amounts are computed by hand from the CNY catalog (µc per token):
// sonnet-4-5 input 72, output 360, cache read 7.2, cache write 5m 90.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { admin, customer, settledBalance, simRequests, startStack, UPSTREAM_KEY, type Stack } from '../support/tollgate.ts';
import { flatUsage } from '../support/events.ts';

let stack: Stack;
before(async () => { stack = await startStack({ POOL_CACHE_TTL_MS: '0' }); });
after(async () => { await stack?.close(); });

const SONNET = 'claude-sonnet-4-5';

function openai(secret: string): OpenAI {
  return new OpenAI({ apiKey: secret, baseURL: `${stack.url}/v1`, maxRetries: 0, logLevel: 'error' });
}

async function usageEvent(requestId: string) {
  await stack.tollgate.drain();
  const e = await stack.tollgate.warehouse.getUsageEvent(requestId);
  assert.ok(e, `usage event ${requestId} is in the warehouse`);
  return flatUsage(e);
}

/** The body the upstream received last (the simulator records every request). */
async function lastUpstreamBody(): Promise<Record<string, unknown>> {
  const [seen] = await simRequests(stack.simUrl, 1);
  assert.ok(seen, 'the upstream received a request');
  return seen.body;
}

// A 1×1 PNG: the simulator bills a base64 image by its size (1×1 → 1 token).
const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

describe('OpenAI-format clients on /v1/chat/completions', () => {
  let c: Awaited<ReturnType<typeof customer>>;
  let client: OpenAI;
  before(async () => {
    c = await customer(stack.url, 10);
    client = openai(c.secret);
  });

  test('JSON answer: one choice, usage with cached prompt tokens, billed exactly as the same conversation on /v1/messages', async () => {
    const before = await settledBalance(stack, c.accountId);
    // input 1000, output 50, cache read 200, cache write (5m) 100 on sonnet-4-5:
    // 1000×72 + 50×360 + 200×7.2 + 100×90 = 72,000 + 18,000 + 1,440 + 9,000 = 100,440 µc
    const sim = { 'x-sim-input': '1000', 'x-sim-output': '50', 'x-sim-cache-read': '200', 'x-sim-cache-write-5m': '100' };
    const { data, response } = await client.chat.completions.create({
      model: SONNET, max_tokens: 256,
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }],
    }, { headers: sim }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices.length, 1);
    assert.equal(data.choices[0]!.message.role, 'assistant');
    assert.match(data.choices[0]!.message.content ?? '', /^Simulated reply to: Hello there/);
    assert.equal(data.choices[0]!.finish_reason, 'stop');
    assert.deepEqual(data.usage, {
      prompt_tokens: 1300, completion_tokens: 50, total_tokens: 1350, prompt_tokens_details: { cached_tokens: 200 },
    });
    // The upstream got the Anthropic translation (system out of the messages, max_tokens as asked).
    const sent = await lastUpstreamBody();
    // String contents stay strings, as the Anthropic client of the same conversation sends them.
    assert.deepEqual(sent['system'], 'Be brief.');
    assert.deepEqual(sent['messages'], [{ role: 'user', content: 'Hello there' }]);
    assert.equal(sent['max_tokens'], 256);

    const e = await usageEvent(response.headers.get('request-id')!);
    assert.equal(e.cost_micros, '100440');
    assert.deepEqual([e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_5m_tokens, e.status], [1000, 50, 200, 100, 'ok']);
    assert.equal(await settledBalance(stack, c.accountId), before - 100_440n);

    // The same conversation through /v1/messages: the same usage event, the same amount.
    const { response: aRes } = await c.client.messages.create({
      model: SONNET, max_tokens: 256, system: 'Be brief.', messages: [{ role: 'user', content: 'Hello there' }],
    }, { headers: sim }).withResponse();
    const a = await usageEvent(aRes.headers.get('request-id')!);
    assert.deepEqual(
      [a.cost_micros, a.input_tokens, a.output_tokens, a.cache_read_tokens, a.cache_write_5m_tokens, a.status, a.model],
      [e.cost_micros, e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_5m_tokens, e.status, e.model]);
  });

  test('no max_tokens: the gateway default (DEFAULT_MAX_TOKENS, 1,024) is sent upstream, as on /v1/messages', async () => {
    // system 9 + user 11 characters → ceil(20/4) = 5 input tokens; 24 words of output (the
    // simulator's default): 5×72 + 24×360 = 360 + 8,640 = 9,000 µc on either route.
    const { data, response } = await client.chat.completions.create({
      model: SONNET, messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }],
    }).withResponse();
    assert.equal((await lastUpstreamBody())['max_tokens'], 1024);
    assert.deepEqual([data.usage?.prompt_tokens, data.usage?.completion_tokens], [5, 24]);
    const { response: aRes } = await c.client.messages.create({
      model: SONNET, max_tokens: 1024, system: 'Be brief.', messages: [{ role: 'user', content: 'Hello there' }],
    }).withResponse();
    assert.equal((await usageEvent(response.headers.get('request-id')!)).cost_micros, '9000');
    assert.equal((await usageEvent(aRes.headers.get('request-id')!)).cost_micros, '9000');
  });

  test('streaming with include_usage: role chunk, content deltas, finish_reason, a last usage chunk with no choices, then [DONE]', async () => {
    const body = { model: SONNET, max_tokens: 256, messages: [{ role: 'user' as const, content: 'Stream me' }] };
    const sim = { 'x-sim-input': '1000', 'x-sim-output': '30' };
    const whole = await client.chat.completions.create(body, { headers: sim });
    const { data: stream, response } = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } }, { headers: sim }).withResponse();
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.every((k) => k.object === 'chat.completion.chunk' && k.id === chunks[0]!.id));
    assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '' });
    const text = chunks.map((k) => k.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, whole.choices[0]!.message.content);
    const finishes = chunks.map((k) => k.choices[0]?.finish_reason).filter((f) => f != null);
    assert.deepEqual(finishes, ['stop']);
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    // input 1000, output 30: 1000×72 + 30×360 = 72,000 + 10,800 = 82,800 µc
    assert.deepEqual(last.usage, { prompt_tokens: 1000, completion_tokens: 30, total_tokens: 1030, prompt_tokens_details: { cached_tokens: 0 } });
    // Every chunk but the last carries usage: null (OpenAI's shape with include_usage).
    assert.ok(chunks.slice(0, -1).every((k) => k.usage === null));
    const e = await usageEvent(response.headers.get('request-id')!);
    assert.deepEqual([e.cost_micros, e.status, e.stream], ['82800', 'ok', true]);
  });

  test('streaming bytes: [DONE] closes the stream; without include_usage no usage chunk', async () => {
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${c.secret}`, 'content-type': 'application/json', 'x-sim-output': '3' },
      body: JSON.stringify({ model: SONNET, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'Hi' }] }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const text = await res.text();
    const events = text.split('\n\n').filter((s) => s !== '');
    assert.ok(events.every((ev) => ev.startsWith('data: ')), 'only data: events, no event: names');
    assert.equal(events.at(-1), 'data: [DONE]');
    const parsed = events.slice(0, -1).map((ev) => JSON.parse(ev.slice(6)) as { choices: unknown[]; usage?: unknown });
    assert.ok(parsed.every((p) => p.choices.length === 1 && !('usage' in p)));
  });

  test('tool calls round trip: tools and a named tool_choice in, tool_calls out (JSON and stream), tool results back as tool_result blocks', async () => {
    const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [{
      type: 'function',
      function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
    }];
    const ask = [{ role: 'user' as const, content: 'Weather in Paris?' }];
    const first = await client.chat.completions.create({
      model: SONNET, max_tokens: 256, messages: ask, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const sent = await lastUpstreamBody();
    assert.deepEqual(sent['tools'], [{ name: 'get_weather', description: 'Weather of a city', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }]);
    assert.deepEqual(sent['tool_choice'], { type: 'tool', name: 'get_weather' });
    const choice = first.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.tool_calls?.length, 1);
    const call = choice.message.tool_calls![0]!;
    assert.ok(call.type === 'function');
    assert.match(call.id, /^toolu_sim_/);
    assert.deepEqual([call.function.name, JSON.parse(call.function.arguments)], ['get_weather', { city: 'sim' }]);

    // The same call streamed: the arguments arrive in pieces on tool-call index 0.
    const stream = await client.chat.completions.create({
      model: SONNET, max_tokens: 256, messages: ask, tools, tool_choice: 'required', stream: true,
    });
    let args = '';
    let name = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const t of chunk.choices[0]?.delta.tool_calls ?? []) {
        assert.equal(t.index, 0);
        name += t.function?.name ?? '';
        args += t.function?.arguments ?? '';
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal((await lastUpstreamBody())['tool_choice'] !== undefined, true);
    assert.deepEqual([name, JSON.parse(args), finish], ['get_weather', { city: 'sim' }, 'tool_calls']);

    // Two tool results in a row become one user turn of tool_result blocks.
    const answer = await client.chat.completions.create({
      model: SONNET, max_tokens: 256, tools, parallel_tool_calls: false,
      messages: [
        ...ask,
        { role: 'assistant', content: null, tool_calls: [call, { id: 'toolu_x2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Lyon"}' } }] },
        { role: 'tool', tool_call_id: call.id, content: 'Sunny, 21°C' },
        { role: 'tool', tool_call_id: 'toolu_x2', content: [{ type: 'text', text: 'Rain' }] },
      ],
    });
    assert.equal(answer.choices[0]!.finish_reason, 'stop');
    const back = await lastUpstreamBody();
    assert.deepEqual(back['messages'], [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: [
        { type: 'tool_use', id: call.id, name: 'get_weather', input: { city: 'sim' } },
        { type: 'tool_use', id: 'toolu_x2', name: 'get_weather', input: { city: 'Lyon' } },
      ] },
      { role: 'user', content: [
        { type: 'tool_result', tool_use_id: call.id, content: 'Sunny, 21°C' },
        { type: 'tool_result', tool_use_id: 'toolu_x2', content: [{ type: 'text', text: 'Rain' }] },
      ] },
    ]);
    assert.deepEqual(back['tool_choice'], { type: 'auto', disable_parallel_tool_use: true });
  });

  test('images: a data: URL becomes a base64 image source, an https URL a url source; billed by the image tokens', async () => {
    const r = await client.chat.completions.create({
      model: SONNET, max_tokens: 64,
      messages: [{ role: 'user', content: [
        { type: 'text', text: 'What is it?' },
        { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_1X1}` } },
        { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'low' } },
      ] }],
    });
    assert.deepEqual((await lastUpstreamBody())['messages'], [{ role: 'user', content: [
      { type: 'text', text: 'What is it?' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_1X1 } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
    ] }]);
    // text ceil(11/4) = 3, the 1×1 PNG 1, an image by URL 1000 (simulator token rule)
    assert.equal(r.usage?.prompt_tokens, 1004);
  });

  test('stop (string or array) becomes stop_sequences; temperature, top_p and user are passed on', async () => {
    const r = await client.chat.completions.create({
      model: SONNET, max_tokens: 64, stop: ['END', '###'], temperature: 0.3, top_p: 0.9, user: 'user-42',
      messages: [{ role: 'user', content: 'Count' }],
    });
    const sent = await lastUpstreamBody();
    assert.deepEqual([sent['stop_sequences'], sent['temperature'], sent['top_p'], sent['metadata']], [['END', '###'], 0.3, 0.9, { user_id: 'user-42' }]);
    assert.equal(r.choices[0]!.finish_reason, 'stop');
    await client.chat.completions.create({ model: SONNET, max_tokens: 64, stop: 'END', messages: [{ role: 'user', content: 'Count' }] });
    assert.deepEqual((await lastUpstreamBody())['stop_sequences'], ['END']);
  });

  test('max_tokens reached: finish_reason length', async () => {
    // The simulator would write 50 words; max_completion_tokens cuts it at 5 (stop_reason max_tokens).
    const r = await client.chat.completions.create({ model: SONNET, max_completion_tokens: 5, messages: [{ role: 'user', content: 'Talk' }] }, { headers: { 'x-sim-output': '50' } });
    assert.equal((await lastUpstreamBody())['max_tokens'], 5);
    assert.deepEqual([r.choices[0]!.finish_reason, r.usage?.completion_tokens], ['length', 5]);
  });

  test('refusal: finish_reason content_filter', async () => {
    const r = await client.chat.completions.create({ model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'No' }] }, { headers: { 'x-sim-refusal': '1' } });
    assert.deepEqual([r.choices[0]!.finish_reason, r.choices[0]!.message.content], ['content_filter', null]);
  });

  test('a 2xx the gateway cannot meter reaches an OpenAI client in OpenAI shape: a message without usage as a chat.completion (no usage invented), a body that is not JSON as a 503 OpenAI error; charged 0', async () => {
    const before = await settledBalance(stack, c.accountId);
    const { data, response } = await client.chat.completions.create({
      model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }],
    }, { headers: { 'x-sim-body': 'no_usage' } }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal('usage' in data, false);
    assert.match(data.choices[0]!.message.content ?? '', /^Simulated reply to: hi/);
    const e = await usageEvent(response.headers.get('request-id')!);
    assert.deepEqual([e.status, e.cost_micros, e.anomalies], ['unmetered', '0', ['no_usage']]);

    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${c.secret}`, 'x-sim-body': 'not_json' },
      body: JSON.stringify({ model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.deepEqual([res.status, res.headers.get('content-type')], [503, 'application/json; charset=utf-8']);
    assert.deepEqual(await res.json(), { error: {
      message: 'Upstream answered with a body that is not a readable message; nothing was charged', type: 'api_error', param: null, code: 'upstream_error',
    } });
    const n = await usageEvent(res.headers.get('request-id')!);
    assert.deepEqual([n.status, n.http_status, n.cost_micros, n.anomalies], ['unmetered', 503, '0', ['no_usage']]);
    assert.equal(await settledBalance(stack, c.accountId), before);
  });

  test('client leaves mid-stream: carried to the upstream end and billed like /v1/messages, status client_disconnect', async () => {
    const before = await settledBalance(stack, c.accountId);
    // input 1000, output 40 (all generated: the upstream bills them): 1000×72 + 40×360 = 72,000 + 14,400 = 86,400 µc
    const { data: stream, response } = await client.chat.completions.create({
      model: SONNET, max_tokens: 256, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'A long answer please' }],
    }, { headers: { 'x-sim-input': '1000', 'x-sim-output': '40', 'x-sim-tps': '40' } }).withResponse();
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) break; // leaves: the SDK aborts the request
    }
    // Settled once the upstream's stream ends (the gateway reads it to the end without the client).
    assert.equal(await settledBalance(stack, c.accountId), before - 86_400n);
    const e = await usageEvent(response.headers.get('request-id')!);
    assert.deepEqual([e.status, e.cost_micros, e.input_tokens, e.output_tokens], ['client_disconnect', '86400', 1000, 40]);

    // The same departure from /v1/messages (the Anthropic SDK leaving at its first text): the same bill.
    const aStream = await c.client.messages.create({
      model: SONNET, max_tokens: 256, stream: true, messages: [{ role: 'user', content: 'A long answer please' }],
    }, { headers: { 'x-sim-input': '1000', 'x-sim-output': '40', 'x-sim-tps': '40' } }).withResponse();
    for await (const ev of aStream.data) {
      if (ev.type === 'content_block_delta') break;
    }
    assert.equal(await settledBalance(stack, c.accountId), before - 2n * 86_400n);
    const a = await usageEvent(aStream.response.headers.get('request-id')!);
    assert.deepEqual([a.status, a.cost_micros, a.input_tokens, a.output_tokens], [e.status, e.cost_micros, e.input_tokens, e.output_tokens]);
  });

  describe('errors in OpenAI shape, with the status /v1/messages gives', () => {
    /** The thrown APIError of a call (the call must fail). */
    async function failure(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
      try {
        await call;
      } catch (err) {
        assert.ok(err instanceof OpenAI.APIError, `an APIError, got ${String(err)}`);
        return err;
      }
      assert.fail('the call succeeded');
    }

    test('parameters that cannot be honoured: 400 invalid_request_error naming the parameter, nothing sent upstream, nothing billed', async () => {
      const seenBefore = (await simRequests(stack.simUrl, 1))[0];
      const base = { model: SONNET, max_tokens: 64, messages: [{ role: 'user' as const, content: 'x' }] };
      const cases: Array<[string, Record<string, unknown>]> = [
        ['n', { n: 2 }],
        ['logprobs', { logprobs: true }],
        ['response_format', { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } }],
        ['audio', { audio: { voice: 'alloy', format: 'wav' } }],
        ['seed', { seed: 7 }],
        ['temperature', { temperature: 1.5 }],
        ['messages[0].content[0].type', { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AA==', format: 'wav' } }] }] }],
        ['messages[1].tool_calls[0].function.arguments', { messages: [{ role: 'user', content: 'x' }, { role: 'assistant', tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{not json' } }] }] }],
        ['stream_options', { stream_options: { include_usage: true } }],
      ];
      for (const [param, extra] of cases) {
        const err = await failure(client.chat.completions.create({ ...base, ...extra } as never));
        assert.equal(err.status, 400, param);
        assert.deepEqual([err.type, err.param, err.code], ['invalid_request_error', param, 'invalid_request'], param);
        assert.ok(err.message.includes(param), `${param}: ${err.message}`);
      }
      assert.equal(JSON.stringify((await simRequests(stack.simUrl, 1))[0]), JSON.stringify(seenBefore), 'nothing reached the upstream');
      // A model the catalog does not have: 404 as on /v1/messages.
      const missing = await failure(client.chat.completions.create({ ...base, model: 'gpt-4o' }));
      assert.deepEqual([missing.status, missing.type, missing.code], [404, 'not_found_error', 'model_not_found']);
    });

    test('unparsable JSON body: 400 in OpenAI shape', async () => {
      const res = await fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST', headers: { authorization: `Bearer ${c.secret}`, 'content-type': 'application/json' }, body: '{"model":',
      });
      assert.equal(res.status, 400);
      const body = await res.json() as { error: { type: string; code: string; param: unknown; message: string } };
      assert.deepEqual([body.error.type, body.error.code, body.error.param], ['invalid_request_error', 'invalid_json', null]);
    });

    test('unknown key: 401 authentication_error (Bearer as the SDK sends it; x-api-key works too)', async () => {
      const err = await failure(openai('sk-not-a-real-key-000000000000').chat.completions.create({ model: SONNET, messages: [{ role: 'user', content: 'x' }] }));
      assert.ok(err instanceof OpenAI.AuthenticationError);
      assert.deepEqual([err.status, err.type, err.code, err.param], [401, 'authentication_error', 'invalid_api_key', null]);
      const viaHeader = await fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST', headers: { 'x-api-key': c.secret, 'content-type': 'application/json' },
        body: JSON.stringify({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }),
      });
      assert.equal(viaHeader.status, 200);
      assert.equal(((await viaHeader.json()) as { object: string }).object, 'chat.completion');
    });

    test('no credit: 402 billing_error insufficient_credits, as on /v1/messages', async () => {
      const broke = await customer(stack.url, 0, 'broke');
      const err = await failure(openai(broke.secret).chat.completions.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }));
      assert.deepEqual([err.status, err.type, err.code], [402, 'billing_error', 'insufficient_credits']);
      const viaMessages = await broke.client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }).then(() => null, (e: { status: number }) => e.status);
      assert.equal(viaMessages, 402);
      // too little credit: the worst case is stated in the field the client sent
      const poor = await customer(stack.url, '0.000001', 'poor');
      const short = await failure(openai(poor.secret).chat.completions.create({ model: SONNET, max_completion_tokens: 16, messages: [{ role: 'user', content: 'x' }] }));
      assert.equal(short.status, 402);
      assert.match(short.message, /\(its worst case at max_completion_tokens 16\) and 0\.000001 credits are available/);
      assert.doesNotMatch(short.message, /max_tokens/);
    });

    test('hold of one conversation on both routes: the same worst case in µc (string contents keep their bytes through the translation)', async () => {
      const broke = await customer(stack.url, 0, 'broke-same-hold');
      const conversation = { system: 'Be brief.', user: 'Hello there', assistant: 'Hi!', again: 'More please' };
      const err = await failure(openai(broke.secret).chat.completions.create({
        model: SONNET, max_tokens: 16,
        messages: [{ role: 'system', content: conversation.system }, { role: 'user', content: conversation.user },
          { role: 'assistant', content: conversation.assistant }, { role: 'user', content: conversation.again }],
      }));
      const viaMessages = await broke.client.messages.create({
        model: SONNET, max_tokens: 16, system: conversation.system,
        messages: [{ role: 'user', content: conversation.user }, { role: 'assistant', content: conversation.assistant }, { role: 'user', content: conversation.again }],
      }).then(() => null, (e: { status: number; error: { error: { message: string } } }) => e.error.error.message);
      // The hold bounds input at one token per body byte at the dearest input-side price (cache
      // write 1h, 144 µc on sonnet-4-5) plus max_tokens × output 360. Both routes serialise the
      // same 196 bytes ({"model":…,"system":"Be brief.","messages":[3 string turns],"max_tokens":16}):
      // 196 × 144 + 16 × 360 = 28,224 + 5,760 = 33,984 µc. (Turned into text blocks, as before
      // this fix, the translation added 25 bytes per string: 296 × 144 + 5,760 = 48,384 µc.)
      const message = (err.error as { message: string }).message;
      assert.equal(message, viaMessages);
      assert.equal(message, `Your credit balance is too low for this request: it needs up to 0.033984 credits (its worst case at max_tokens 16) and 0 credits are available`);
    });

    test('plan window spent: 429 rate_limit_error with the same windows for /v1/messages and /v1/chat/completions', async () => {
      const plan = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/plans', { name: 'one-a-minute', requests_per_minute: 1 });
      const limited = await customer(stack.url, 1, 'limited');
      await admin(stack.url, 'PATCH', `/admin/v1/keys/${limited.keyId}`, { plan_id: plan.json.id });
      // The one request of the minute goes through /v1/messages; the chat route shares the window.
      await limited.client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] });
      const err = await failure(openai(limited.secret).chat.completions.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }));
      assert.ok(err instanceof OpenAI.RateLimitError);
      assert.deepEqual([err.status, err.type, err.code], [429, 'rate_limit_error', 'rate_limit_exceeded']);
    });

    test('upstream error before any byte: its status (529) in OpenAI shape, nothing billed', async () => {
      const before = await settledBalance(stack, c.accountId);
      const err = await failure(client.chat.completions.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-sim-fault': 'overloaded' } }));
      assert.deepEqual([err.status, err.type], [529, 'overloaded_error']);
      assert.equal(await settledBalance(stack, c.accountId), before);
    });

    test('stream error event after 200: the SDK throws the error the stream carries', async () => {
      const stream = await client.chat.completions.create({
        model: SONNET, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'x' }],
      }, { headers: { 'x-sim-fault': 'sse_error_after:2', 'x-sim-output': '10' } });
      const err = await failure((async () => { for await (const _ of stream) { /* read */ } })());
      assert.equal(err.type, 'overloaded_error');
    });
  });
});

describe('OpenAI-format clients on a group of platform openai (translated both ways)', () => {
  let c: Awaited<ReturnType<typeof customer>>;
  let client: OpenAI;
  before(async () => {
    const up = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
      name: 'oai-chat', platform: 'openai', base_url: `${stack.simUrl}/v1`, api_key: UPSTREAM_KEY, weight: 1, priority: 0,
    });
    assert.equal(up.status, 201, JSON.stringify(up.json));
    const group = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'oai-chat', platform: 'openai', upstream_ids: [up.json.id] });
    assert.equal(group.status, 201, JSON.stringify(group.json));
    c = await customer(stack.url, 10, 'openai-group');
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: group.json.id })).status, 200);
    client = openai(c.secret);
  });

  test('JSON and include_usage stream through an OpenAI upstream: cached prompt tokens survive both translations, billed from them', async () => {
    const before = await settledBalance(stack, c.accountId);
    // The upstream reports prompt_tokens 1600 of which cached 600, completion 20 → input 1000,
    // cache read 600, output 20: 1000×72 + 600×7.2 + 20×360 = 72,000 + 4,320 + 7,200 = 83,520 µc each.
    // max_tokens 1024: the hold (input bound of the short text + 1024×360) covers the input the directive claims.
    const ask = { model: SONNET, max_tokens: 1024, messages: [{ role: 'user' as const, content: 'Hello there [[sim input=1000 cache_read=600 output=20]]' }] };
    const { data, response } = await client.chat.completions.create(ask).withResponse();
    assert.equal((await simRequests(stack.simUrl, 1))[0]?.url.split('?')[0], '/v1/chat/completions');
    assert.match(data.choices[0]!.message.content ?? '', /^Simulated reply to: Hello there/);
    assert.deepEqual(data.usage, { prompt_tokens: 1600, completion_tokens: 20, total_tokens: 1620, prompt_tokens_details: { cached_tokens: 600 } });
    const e = await usageEvent(response.headers.get('request-id')!);
    assert.deepEqual([e.cost_micros, e.input_tokens, e.cache_read_tokens, e.output_tokens, e.status], ['83520', 1000, 600, 20, 'ok']);

    const stream = await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, data.choices[0]!.message.content);
    assert.deepEqual(usage, data.usage);
    assert.equal(await settledBalance(stack, c.accountId), before - 2n * 83_520n);
  });
});
