import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { buildSimulator } from '../src/index.ts';
import { useSimulator } from './support.ts';
import type { RecordedRequest } from '../src/index.ts';

const MODEL = 'claude-sonnet-5-5';
const HELLO = 'Hello there, how are you?'; // 25 chars → 7 input tokens

let baseURL: string;
let client: Anthropic;

useSimulator((h) => { ({ baseURL, client } = h); });

function user(content: Anthropic.MessageParam['content']): Anthropic.MessageParam[] {
  return [{ role: 'user', content }];
}

function wordCount(text: string): number {
  return text.split(' ').length;
}

async function post(path: string, body: unknown, headers: Record<string, string> = { 'x-api-key': 'sk-test' }) {
  const res = await fetch(`${baseURL}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function recorded(limit: number): Promise<RecordedRequest[]> {
  const res = await fetch(`${baseURL}/_sim/requests?limit=${limit}`);
  return (await res.json()) as RecordedRequest[];
}

describe('messages', () => {
  test('non-streaming reply is deterministic, with exact usage and ids', async () => {
    const { data, response } = await client.messages
      .create({ model: MODEL, max_tokens: 100, messages: user(HELLO) })
      .withResponse();
    const n = response.headers.get('request-id')?.replace('req_sim_', '');
    assert.match(response.headers.get('request-id') ?? '', /^req_sim_\d+$/);
    assert.equal(data.id, `msg_sim_${n}`);
    assert.equal(data.model, MODEL);
    assert.equal(data.stop_reason, 'end_turn');
    assert.equal(data.stop_sequence, null);
    assert.deepEqual(data.content, [
      {
        type: 'text',
        text:
          'Simulated reply to: Hello there, how are you? lorem ipsum dolor sit amet consectetur ' +
          'adipiscing elit sed do eiusmod tempor incididunt ut labore et',
      },
    ]);
    assert.deepEqual(data.usage, {
      input_tokens: 7,
      output_tokens: 24,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
      service_tier: 'standard',
    });
  });

  test('streaming produces the same content and usage as non-streaming', async () => {
    const params = { model: MODEL, max_tokens: 100, messages: user(HELLO) };
    const plain = await client.messages.create(params);
    const stream = client.messages.stream(params);
    const deltas: string[] = [];
    stream.on('text', (text) => deltas.push(text));
    const streamed = await stream.finalMessage();
    assert.deepEqual(streamed.content, plain.content);
    assert.deepEqual(streamed.usage, plain.usage);
    assert.equal(streamed.stop_reason, 'end_turn');
    // Three words per delta: the reply really arrives in pieces.
    assert.equal(deltas.length, 8);
    assert.equal(deltas[0], 'Simulated reply to:');
  });

  test('SSE wire format: event order and message_start / message_delta usage', async () => {
    const res = await post('/v1/messages?beta=true', {
      model: MODEL,
      max_tokens: 100,
      stream: true,
      messages: user('Hi [[sim output=4]]'),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const frames = res.text
      .trim()
      .split('\n\n')
      .map((frame) => {
        const [eventLine, dataLine] = frame.split('\n');
        const data = JSON.parse((dataLine ?? '').replace(/^data: /, '')) as { type: string; [k: string]: unknown };
        assert.equal(eventLine, `event: ${data.type}`);
        return data;
      });
    assert.deepEqual(
      frames.map((f) => f.type),
      [
        'message_start',
        'content_block_start',
        'ping',
        'content_block_delta',
        'content_block_delta',
        'content_block_stop',
        'message_delta',
        'message_stop',
      ],
    );
    const start = frames[0] as unknown as { message: { usage: Record<string, unknown>; content: unknown[] } };
    assert.deepEqual(start.message.content, []);
    assert.equal(start.message.usage['output_tokens'], 1);
    // 'Hi [[sim output=4]]' is 19 chars → 5 input tokens (directives are prompt text too).
    assert.equal(start.message.usage['input_tokens'], 5);
    assert.deepEqual(frames[6], {
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: 4, input_tokens: 5, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
  });

  test('forced tool use builds the input from required properties', async () => {
    const params: Anthropic.MessageCreateParamsNonStreaming = {
      model: MODEL,
      max_tokens: 100,
      messages: user('What is the weather in Paris?'),
      tools: [
        { name: 'lookup', input_schema: { type: 'object', properties: { q: { type: 'string' } } } },
        {
          name: 'get_weather',
          description: 'Current weather',
          input_schema: {
            type: 'object',
            properties: { city: { type: 'string' }, days: { type: 'integer' }, metric: { type: 'boolean' }, note: { type: 'string' } },
            required: ['city', 'days', 'metric'],
          },
        },
      ],
      tool_choice: { type: 'tool', name: 'get_weather' },
    };
    const plain = await client.messages.create(params);
    assert.equal(plain.stop_reason, 'tool_use');
    const last = plain.content.at(-1);
    assert.ok(last?.type === 'tool_use');
    assert.equal(last.name, 'get_weather');
    assert.match(last.id, /^toolu_sim_\d+$/);
    assert.deepEqual(last.input, { city: 'sim', days: 1, metric: true });
    // {"city":"sim","days":1,"metric":true} is 37 chars → 10 tokens; 14 words of text before it.
    const text = plain.content[0];
    assert.ok(text?.type === 'text');
    assert.equal(wordCount(text.text), 14);
    assert.equal(plain.usage.output_tokens, 24);

    const streamed = await client.messages.stream({ ...params, stream: true }).finalMessage();
    assert.deepEqual(streamed.content.map((b) => (b.type === 'tool_use' ? { ...b, id: 'x' } : b)), plain.content.map((b) => (b.type === 'tool_use' ? { ...b, id: 'x' } : b)));
    assert.deepEqual(streamed.usage, plain.usage);
    assert.equal(streamed.stop_reason, 'tool_use');
  });

  test('tool directive forces a tool under tool_choice auto; an unknown tool is a 400', async () => {
    const tools: Anthropic.Tool[] = [
      { name: 'a', input_schema: { type: 'object' } },
      { name: 'b', input_schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } },
    ];
    const msg = await client.messages.create({ model: MODEL, max_tokens: 50, tools, messages: user('go [[sim tool=b]]') });
    assert.equal(msg.stop_reason, 'tool_use');
    const last = msg.content.at(-1);
    assert.ok(last?.type === 'tool_use');
    assert.equal(last.name, 'b');
    assert.deepEqual(last.input, { n: 1 });

    await assert.rejects(
      client.messages.create({ model: MODEL, max_tokens: 50, tools, messages: user('go [[sim tool=zzz]]') }),
      (err: unknown) => err instanceof Anthropic.BadRequestError && err.type === 'invalid_request_error',
    );
  });

  test('thinking comes first, with a signature, and counts toward output', async () => {
    const params = {
      model: MODEL,
      max_tokens: 2048,
      thinking: { type: 'enabled', budget_tokens: 1024 } as const,
      messages: user(HELLO),
    };
    const plain = await client.messages.create(params);
    const [thinking, text] = plain.content;
    assert.ok(thinking?.type === 'thinking');
    assert.equal(thinking.thinking, 'Thinking about: Hello there, how are you? lorem ipsum dolor sit amet');
    assert.ok(thinking.signature.length > 0);
    assert.ok(text?.type === 'text');
    assert.equal(text.text, 'Simulated reply to: Hello there, how are you? lorem ipsum dolor sit');
    assert.equal(plain.usage.output_tokens, 24);

    const streamed = await client.messages.stream(params).finalMessage();
    assert.deepEqual(streamed.content, plain.content);
    assert.deepEqual(streamed.usage, plain.usage);
  });

  test('an image whose size cannot be read costs 1000 input tokens (see realism.test.ts for sized images)', async () => {
    const msg = await client.messages.create({
      model: MODEL,
      max_tokens: 10,
      messages: user([
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
        { type: 'text', text: 'Describe' },
      ]),
    });
    assert.equal(msg.usage.input_tokens, 1002);
    assert.equal(msg.usage.output_tokens, 10);
    assert.equal(msg.stop_reason, 'end_turn');
  });

  test('count_tokens counts system, messages and tool definitions', async () => {
    const result = await client.messages.countTokens({
      model: MODEL,
      system: 'You are terse.',
      messages: user('Hi'),
      tools: [{ name: 't', input_schema: { type: 'object' } }],
    });
    // 14 (system) + 2 (message) + 45 ({"name":"t","input_schema":{"type":"object"}}) = 61 chars → 16.
    assert.deepEqual(result, { input_tokens: 16 });
  });
});

describe('prompt caching', () => {
  test('a repeated prefix is written once, then read', async () => {
    const system: Anthropic.TextBlockParam[] = [
      { type: 'text', text: 'S'.repeat(4000), cache_control: { type: 'ephemeral' } },
    ];
    const first = await client.messages.create({ model: MODEL, max_tokens: 5, system, messages: user('Question one') });
    // 4000 + 12 chars → 1003 tokens, of which the 4000-char prefix is 1000.
    assert.deepEqual(first.usage, {
      input_tokens: 3,
      output_tokens: 5,
      cache_creation_input_tokens: 1000,
      cache_read_input_tokens: 0,
      cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 0 },
      service_tier: 'standard',
    });

    const second = await client.messages
      .stream({ model: MODEL, max_tokens: 5, system, messages: user('Another question here') })
      .finalMessage();
    assert.deepEqual(second.usage, {
      input_tokens: 6,
      output_tokens: 5,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 1000,
      cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
      service_tier: 'standard',
    });

    // Caches are per model.
    const other = await client.messages.create({ model: 'claude-haiku-5-5', max_tokens: 5, system, messages: user('Question one') });
    assert.equal(other.usage.cache_creation_input_tokens, 1000);
  });

  test('a 1h breakpoint is reported in the 1h bucket; a longer prefix reads the shorter one', async () => {
    const tools: Anthropic.Tool[] = [
      { name: 'big', description: 'T'.repeat(7936), input_schema: { type: 'object' }, cache_control: { type: 'ephemeral', ttl: '1h' } },
    ];
    // {"name":"big","description":"<7936>","input_schema":{"type":"object"}} = 8000 chars → 2000.
    const first = await client.messages.create({ model: MODEL, max_tokens: 5, tools, messages: user('ok') });
    assert.deepEqual(first.usage.cache_creation, { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 2000 });
    assert.equal(first.usage.cache_creation_input_tokens, 2000);
    assert.equal(first.usage.input_tokens, 1);

    const grown = await client.messages.create({
      model: MODEL,
      max_tokens: 5,
      tools,
      messages: user([{ type: 'text', text: 'U'.repeat(400), cache_control: { type: 'ephemeral' } }, { type: 'text', text: 'next' }]),
    });
    assert.equal(grown.usage.cache_read_input_tokens, 2000);
    assert.deepEqual(grown.usage.cache_creation, { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 0 });
    assert.equal(grown.usage.input_tokens, 1);
  });
});

describe('directives', () => {
  test('usage overrides are reported exactly and output sets the words produced', async () => {
    const msg = await client.messages.create({
      model: MODEL,
      max_tokens: 100,
      messages: user('Count to three [[sim input=1234 output=7 cache_read=50 cache_write_5m=10 cache_write_1h=20]]'),
    });
    assert.deepEqual(msg.content, [{ type: 'text', text: 'Simulated reply to: Count to three lorem' }]);
    assert.deepEqual(msg.usage, {
      input_tokens: 1234,
      output_tokens: 7,
      cache_creation_input_tokens: 30,
      cache_read_input_tokens: 50,
      cache_creation: { ephemeral_5m_input_tokens: 10, ephemeral_1h_input_tokens: 20 },
      service_tier: 'standard',
    });
  });

  test('x-sim-* headers work, and the text directive wins over them', async () => {
    const byHeader = await client.messages.create(
      { model: MODEL, max_tokens: 100, messages: user('plain') },
      { headers: { 'x-sim-output': '3', 'x-sim-input': '99' } },
    );
    assert.deepEqual(byHeader.content, [{ type: 'text', text: 'Simulated reply to:' }]);
    assert.equal(byHeader.usage.input_tokens, 99);

    const both = await client.messages.create(
      { model: MODEL, max_tokens: 100, messages: user('plain [[sim output=5]]') },
      { headers: { 'x-sim-output': '3' } },
    );
    assert.equal(both.usage.output_tokens, 5);
  });

  test('output beyond max_tokens is cut at max_tokens', async () => {
    const params = { model: MODEL, max_tokens: 10, messages: user('long please [[sim output=50]]') };
    const plain = await client.messages.create(params);
    assert.equal(plain.stop_reason, 'max_tokens');
    assert.equal(plain.usage.output_tokens, 10);
    const text = plain.content[0];
    assert.ok(text?.type === 'text');
    assert.equal(wordCount(text.text), 10);
    const streamed = await client.messages.stream(params).finalMessage();
    assert.equal(streamed.stop_reason, 'max_tokens');
    assert.deepEqual(streamed.usage, plain.usage);
  });

  test('status and fault=overloaded return the Anthropic error for that status', async () => {
    await assert.rejects(
      client.messages.create({ model: MODEL, max_tokens: 10, messages: user('x [[sim status=529]]') }),
      (err: unknown) => err instanceof Anthropic.APIError && err.status === 529 && err.type === 'overloaded_error',
    );
    await assert.rejects(
      client.messages.stream({ model: MODEL, max_tokens: 10, messages: user('x [[sim fault=overloaded]]') }).finalMessage(),
      (err: unknown) => err instanceof Anthropic.APIError && err.status === 529 && err.type === 'overloaded_error',
    );
    await assert.rejects(
      client.messages.create({ model: MODEL, max_tokens: 10, messages: user('x') }, { headers: { 'x-sim-status': '429' } }),
      (err: unknown) => err instanceof Anthropic.RateLimitError && err.type === 'rate_limit_error',
    );
    const res = await post('/v1/messages', { model: MODEL, max_tokens: 10, messages: user('x [[sim status=418]]') });
    assert.equal(res.status, 418);
    const body = JSON.parse(res.text) as { type: string; error: { type: string }; request_id: string };
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'api_error');
    assert.equal(body.request_id, res.headers.get('request-id'));
  });

  test('sse_error_after sends an error event after n deltas on a 200 stream', async () => {
    const stream = client.messages.stream({ model: MODEL, max_tokens: 100, messages: user(`${HELLO} [[sim fault=sse_error_after:2]]`) });
    const deltas: string[] = [];
    stream.on('text', (text) => deltas.push(text));
    await assert.rejects(
      stream.finalMessage(),
      (err: unknown) => err instanceof Anthropic.APIError && err.status === undefined && err.type === 'overloaded_error',
    );
    assert.deepEqual(deltas, ['Simulated reply to:', ' Hello there, how']);
    // The usage of message_start was already delivered before the failure.
    assert.equal(stream.currentMessage?.usage.input_tokens, 15);
  });

  test('drop_after cuts the connection mid-stream; fault=drop before any response', async () => {
    const stream = client.messages.stream({ model: MODEL, max_tokens: 100, messages: user(`${HELLO} [[sim fault=drop_after:1]]`) });
    const deltas: string[] = [];
    stream.on('text', (text) => deltas.push(text));
    await assert.rejects(stream.finalMessage(), (err: unknown) => err instanceof Error);
    assert.deepEqual(deltas, ['Simulated reply to:']);
    assert.equal(stream.currentMessage?.stop_reason ?? null, null);

    await assert.rejects(
      client.messages.create({ model: MODEL, max_tokens: 10, messages: user('x [[sim fault=drop]]') }),
      (err: unknown) => err instanceof Anthropic.APIConnectionError,
    );
  });

  test('paced streams deliver the same reply, and a client abort mid-stream leaves the simulator serving', async () => {
    const params = { model: MODEL, max_tokens: 100, messages: user(HELLO) };
    const plain = await client.messages.create(params);
    const paced = await client.messages
      .stream(params, { headers: { 'x-sim-ttft-ms': '5', 'x-sim-tps': '2000', 'x-sim-latency-ms': '1' } })
      .finalMessage();
    assert.deepEqual(paced.content, plain.content);

    // 2 tokens per second: the rest of the reply would take many seconds, so the abort lands mid-stream.
    const slow = client.messages.stream({ ...params, messages: user(`${HELLO} [[sim tps=2]]`) });
    const first = await new Promise<string>((resolve) => slow.once('text', resolve));
    slow.abort();
    await assert.rejects(slow.finalMessage(), (err: unknown) => err instanceof Anthropic.APIUserAbortError);
    assert.equal(first, 'Simulated reply to:');
    const after = await client.messages.create(params);
    assert.deepEqual(after.content, plain.content);
  });

  test('an unknown or malformed directive is a 400, not silently ignored', async () => {
    for (const directive of ['[[sim outptu=5]]', '[[sim output=-1]]', '[[sim fault=explode]]', '[[sim status=200]]']) {
      const res = await post('/v1/messages', { model: MODEL, max_tokens: 10, messages: user(`x ${directive}`) });
      assert.equal(res.status, 400, directive);
      assert.equal((JSON.parse(res.text) as { error: { type: string } }).error.type, 'invalid_request_error');
    }
  });
});

describe('recording, auth and validation', () => {
  test('/_sim/requests records method, url, headers and body; DELETE clears', async () => {
    await client.messages.create(
      { model: MODEL, max_tokens: 10, messages: user('record me'), metadata: { user_id: 'u-1' } },
      { headers: { 'anthropic-beta': 'context-management-2025-06-27' } },
    );
    const [last] = await recorded(1);
    assert.ok(last);
    assert.equal(last.method, 'POST');
    assert.equal(last.url, '/v1/messages');
    assert.equal(last.headers['anthropic-beta'], 'context-management-2025-06-27');
    // This SDK version sends its API key as a bearer token.
    assert.equal(last.headers['authorization'], 'Bearer sk-test');
    assert.deepEqual(last.body, { model: MODEL, max_tokens: 10, messages: user('record me'), metadata: { user_id: 'u-1' } });

    const del = await fetch(`${baseURL}/_sim/requests`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    await post('/v1/messages?beta=true', { model: MODEL, max_tokens: 1, messages: user('a'), context_management: { edits: [] } });
    const all = await recorded(10);
    assert.equal(all.length, 1);
    assert.equal(all[0]?.url, '/v1/messages?beta=true');
    assert.deepEqual((all[0]?.body as { context_management: unknown }).context_management, { edits: [] });
  });

  test('a missing credential is a 401 authentication_error', async () => {
    const res = await post('/v1/messages', { model: MODEL, max_tokens: 10, messages: user('x') }, {});
    assert.equal(res.status, 401);
    const body = JSON.parse(res.text) as { error: { type: string } };
    assert.equal(body.error.type, 'authentication_error');
    const bearer = await post('/v1/messages', { model: MODEL, max_tokens: 10, messages: user('x') }, { authorization: 'Bearer tok' });
    assert.equal(bearer.status, 200);
  });

  test('with apiKey configured only that key is accepted', async () => {
    const locked = buildSimulator({ apiKey: 'sk-upstream' });
    const url = await locked.listen({ port: 0, host: '127.0.0.1' });
    try {
      const params = { model: MODEL, max_tokens: 5, messages: user('x') };
      await assert.rejects(
        new Anthropic({ apiKey: 'sk-test', baseURL: url, maxRetries: 0, logLevel: 'error' }).messages.create(params),
        (err: unknown) => err instanceof Anthropic.AuthenticationError && err.status === 401,
      );
      const ok = await new Anthropic({ apiKey: 'sk-upstream', baseURL: url, maxRetries: 0, logLevel: 'error' }).messages.create(params);
      assert.equal(ok.usage.output_tokens, 5);
    } finally {
      await locked.close();
    }
  });

  test('invalid bodies are a 400 invalid_request_error', async () => {
    const cases: unknown[] = [
      { model: MODEL, messages: user('x') },
      { model: MODEL, max_tokens: -1, messages: user('x') },
      { model: MODEL, max_tokens: 0, stream: true, messages: user('x') },
      { model: MODEL, max_tokens: 0, thinking: { type: 'adaptive' }, messages: user('x') },
      { model: MODEL, max_tokens: 1.5, messages: user('x') },
      { model: MODEL, max_tokens: 10, messages: [] },
      { max_tokens: 10, messages: user('x') },
    ];
    for (const body of cases) {
      const res = await post('/v1/messages', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal((JSON.parse(res.text) as { error: { type: string } }).error.type, 'invalid_request_error');
    }
    const countRes = await post('/v1/messages/count_tokens', { model: MODEL, messages: user('abcd') });
    assert.deepEqual(JSON.parse(countRes.text), { input_tokens: 1 });
  });

  test('max_tokens 0 pre-warms the cache: the input is read and reported, nothing generated, stop_reason max_tokens', async () => {
    const msg = await client.messages.create({ model: MODEL, max_tokens: 0, messages: user('[[sim input=7 cache_write_5m=40]]') });
    assert.deepEqual([msg.content, msg.stop_reason, msg.usage.input_tokens, msg.usage.cache_creation_input_tokens, msg.usage.output_tokens], [[], 'max_tokens', 7, 40, 0]);
    const res = await post('/v1/messages', { model: MODEL, max_tokens: 0, stream: true, messages: user('x') });
    assert.deepEqual([res.status, (JSON.parse(res.text) as { error: { message: string } }).error.message],
      [400, 'max_tokens: 0 pre-warms the prompt cache and cannot be used with stream']);
  });

  test('models list and health', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.ok(ids.includes(MODEL));
    assert.equal(page.has_more, false);
    assert.equal(page.first_id, ids[0]);
    assert.equal(page.last_id, ids.at(-1));
    assert.equal((await fetch(`${baseURL}/health`)).status, 200);
  });
});
