// Issue 10, outcome 4: platform `openai`. The official Anthropic SDK → Tollgate embedded
// (POST /v1/messages) → a group of platform openai whose upstream is the simulator's
// OpenAI-compatible mode (POST /v1/chat/completions). The client sees Anthropic shapes only and
// is billed from the translated usage. Amounts by hand from the CNY catalog (µc per token):
// sonnet-4-5 input 72, output 360, cache read 7.2.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { admin, customer, settledBalance, simRequests, startStack, UPSTREAM_KEY, type Stack } from '../support/tollgate.ts';
import { flatUsage } from '../support/events.ts';
import { requestUntil } from '../support/leaving-client.ts';

let stack: Stack;
let c: Awaited<ReturnType<typeof customer>>;
let client: Anthropic;
let groupId: string;
const SONNET = 'claude-sonnet-4-5';
const UPSTREAM_MODEL = 'claude-sonnet-4-5-20250929';
// A 1×1 PNG: the simulator bills a base64 image by its size.
const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
const WEATHER = { name: 'weather', description: 'Weather of a city', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] } };

before(async () => {
  stack = await startStack({ POOL_CACHE_TTL_MS: '0' });
  const up = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
    name: 'oai-1', platform: 'openai', base_url: `${stack.simUrl}/v1`, api_key: UPSTREAM_KEY, weight: 1, priority: 0,
  });
  assert.equal(up.status, 201, JSON.stringify(up.json));
  const group = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'openai', platform: 'openai', upstream_ids: [up.json.id] });
  assert.equal(group.status, 201, JSON.stringify(group.json));
  groupId = group.json.id;
  c = await customer(stack.url, 100);
  const patched = await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: group.json.id });
  assert.equal(patched.status, 200, JSON.stringify(patched.json));
  client = c.client;
});
after(async () => { await stack?.close(); });

async function lastUpstream() {
  const [seen] = await simRequests(stack.simUrl, 1);
  assert.ok(seen, 'the upstream received a request');
  return seen;
}

async function charged<T>(run: () => Promise<T>): Promise<{ value: T; cost: bigint }> {
  const before = await settledBalance(stack, c.accountId);
  const value = await run();
  return { value, cost: before - (await settledBalance(stack, c.accountId)) };
}

describe('platform openai: Anthropic Messages clients served by an OpenAI Chat Completions upstream', () => {
  test('text: system and user become chat messages with a Bearer key; the answer is an Anthropic message billed from translated usage', async () => {
    // prompt_tokens 1600 of which cached 600 → input 1000, cache read 600; output 20:
    // 1000×72 + 600×7.2 + 20×360 = 72,000 + 4,320 + 7,200 = 83,520 µc
    const { value: msg, cost } = await charged(() => client.messages.create({
      model: SONNET, max_tokens: 256, system: [{ type: 'text' as const, text: 'Be brief.' }], metadata: { user_id: 'u-1' },
      messages: [{ role: 'user', content: 'Hello there [[sim input=1000 cache_read=600 output=20]]' }],
    }));
    assert.match(msg.id, /^msg_chatcmpl_sim\d+$/);
    assert.equal(msg.model, UPSTREAM_MODEL);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.content.length, 1);
    assert.match((msg.content[0] as Anthropic.TextBlock).text, /^Simulated reply to: Hello there/);
    assert.deepEqual(msg.usage, { input_tokens: 1000, cache_creation_input_tokens: 0, cache_read_input_tokens: 600, output_tokens: 20 });
    assert.equal(cost, 83_520n);
    const seen = await lastUpstream();
    assert.equal(seen.url, '/v1/chat/completions');
    assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(seen.headers['x-api-key'], undefined);
    assert.deepEqual(seen.body, {
      model: UPSTREAM_MODEL, max_completion_tokens: 256, user: 'u-1',
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there [[sim input=1000 cache_read=600 output=20]]' }],
    });
  });

  test("the upstream's own prompt cache: a repeated prompt comes back as cache reads and is billed at the cache-read price", async () => {
    const system = 'You are a careful assistant. '.repeat(40); // 1,160 characters
    const ask = () => client.messages.create({ model: SONNET, max_tokens: 8, system, messages: [{ role: 'user', content: 'Cache me' }] });
    const first = await charged(ask);
    const second = await charged(ask);
    const prompt = first.value.usage.input_tokens;
    assert.ok(prompt > 290, `prompt tokens ${prompt}`);
    assert.equal(first.value.usage.cache_read_input_tokens, 0);
    // the whole prompt is a prefix the upstream has seen: all of it is read from its cache
    assert.deepEqual(second.value.usage, { input_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: prompt, output_tokens: 8 });
    assert.equal(first.cost, BigInt(prompt * 72 + 8 * 360));
    // ⌈prompt × 7.2 + 8 × 360⌉ in µc, in integers: ⌈(prompt × 72 + 28,800) / 10⌉
    assert.equal(second.cost, (BigInt(prompt * 72 + 28_800) + 9n) / 10n);
  });

  test('tools round trip: a forced tool call arrives as tool_use, its tool_result goes back as a tool message', async () => {
    const first = await client.messages.create({
      model: SONNET, max_tokens: 200, tools: [WEATHER], tool_choice: { type: 'tool', name: 'weather' },
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
    });
    assert.equal(first.stop_reason, 'tool_use');
    const call = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
    assert.ok(call);
    assert.equal(call.name, 'weather');
    assert.deepEqual(call.input, { city: 'sim' });
    assert.deepEqual((await lastUpstream()).body.tool_choice, { type: 'function', function: { name: 'weather' } });
    const second = await client.messages.create({
      model: SONNET, max_tokens: 50, tools: [WEATHER],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'Sunny, 21 C' }] },
      ],
    });
    assert.equal(second.stop_reason, 'end_turn');
    const sent = (await lastUpstream()).body.messages as Array<Record<string, unknown>>;
    assert.deepEqual(sent.slice(1), [
      { role: 'assistant', content: first.content[0]?.type === 'text' ? (first.content[0] as Anthropic.TextBlock).text : null,
        tool_calls: [{ id: call.id, type: 'function', function: { name: 'weather', arguments: '{"city":"sim"}' } }] },
      { role: 'tool', tool_call_id: call.id, content: 'Sunny, 21 C' },
    ]);
  });

  test('images: a base64 image goes upstream as a data: URL image part', async () => {
    const msg = await client.messages.create({
      model: SONNET, max_tokens: 16,
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_1X1 } }, { type: 'text', text: 'What is this?' }] }],
    });
    assert.equal(msg.stop_reason, 'end_turn');
    assert.deepEqual((await lastUpstream()).body.messages, [{ role: 'user', content: [
      { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_1X1}` } }, { type: 'text', text: 'What is this?' },
    ] }]);
  });

  test('images on an OpenAI model bill by its own rule (gpt-4o-mini: 2,833 + 5,667 a tile): the hold covers them, billed in full, no cost_over_bound', async () => {
    // a group mapping sonnet-4-5 to gpt-4o-mini, whose images the simulator bills as OpenAI does
    const up = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', {
      name: 'oai-mini', platform: 'openai', base_url: `${stack.simUrl}/v1`, api_key: UPSTREAM_KEY, weight: 1, priority: 0,
    });
    assert.equal(up.status, 201, JSON.stringify(up.json));
    const group = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', {
      name: 'openai-mini', platform: 'openai', upstream_ids: [up.json.id], model_mapping: { [SONNET]: 'gpt-4o-mini' },
    });
    assert.equal(group.status, 201, JSON.stringify(group.json));
    // the hold: 20 images × 48,169 (the rule's 8-tile cap) at the dearest input class and tier, ~278 credits
    const mini = await customer(stack.url, 300, 'mini-images');
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${mini.accountId}`, { group_id: group.json.id })).status, 200);
    const before = await settledBalance(stack, mini.accountId);
    const image = { type: 'image' as const, source: { type: 'base64' as const, media_type: 'image/png' as const, data: PNG_1X1 } };
    const { data, response } = await mini.client.messages.create({
      model: SONNET, max_tokens: 10,
      messages: [{ role: 'user', content: [...Array.from({ length: 20 }, () => image), { type: 'text', text: 'Describe them [[sim output=4]]' }] }],
    }).withResponse();
    assert.equal((await lastUpstream()).body.model, 'gpt-4o-mini');
    // 20 one-tile images × 8,500 = 170,000, and ⌈30 / 4⌉ = 8 for the text's 30 characters (the simulator's count)
    assert.deepEqual(data.usage, { input_tokens: 170_008, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 4 });
    await stack.tollgate.drain();
    const event = await stack.tollgate.warehouse.getUsageEvent(response.headers.get('request-id')!);
    assert.ok(event);
    const u = flatUsage(event);
    // sonnet-4-5 (CNY catalog): 170,008 × 72 + 4 × 360 = 12,240,576 + 1,440 = 12,242,016 µc (the Anthropic image
    // rule held 20 × 1 token: the charge was cut to that hold, cost_over_bound)
    assert.deepEqual([u.status, u.cost_micros, u.anomalies], ['ok', '12242016', undefined]);
    assert.equal(before - (await settledBalance(stack, mini.accountId)), 12_242_016n);
  });

  test('stop sequences: stop goes upstream, the matched sequence comes back as stop_sequence', async () => {
    const msg = await client.messages.create({
      model: SONNET, max_tokens: 30, stop_sequences: ['ipsum', 'never'], messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.deepEqual((await lastUpstream()).body.stop, ['ipsum', 'never']);
    assert.equal(msg.stop_reason, 'stop_sequence');
    assert.equal(msg.stop_sequence, 'ipsum');
    assert.deepEqual(msg.content, [{ type: 'text', text: 'Simulated reply to: Hi lorem ' }]);
    // "Simulated reply to: Hi lorem" is 5 words: 5 output tokens
    assert.equal(msg.usage.output_tokens, 5);
  });

  test('streaming text through the SDK stream helper: deltas, final message and usage from the usage chunk, billed exactly', async () => {
    // input 500, output 12: 500×72 + 12×360 = 36,000 + 4,320 = 40,320 µc
    const { value, cost } = await charged(async () => {
      const stream = client.messages.stream({ model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'Stream please [[sim input=500 output=12]]' }] });
      let text = '';
      stream.on('text', (t) => { text += t; });
      const final = await stream.finalMessage();
      return { text, final };
    });
    assert.equal(value.final.stop_reason, 'end_turn');
    assert.equal((value.final.content[0] as Anthropic.TextBlock).text, value.text);
    assert.equal(value.text.split(' ').length, 12);
    assert.deepEqual(value.final.usage, { input_tokens: 500, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 12 });
    assert.equal(cost, 40_320n);
    const seen = await lastUpstream();
    assert.deepEqual([seen.body.stream, seen.body.stream_options], [true, { include_usage: true }]);
  });

  test('streaming tool calls: input_json deltas build the tool input; stop_reason tool_use', async () => {
    const stream = client.messages.stream({
      model: SONNET, max_tokens: 200, tools: [WEATHER], tool_choice: { type: 'any' },
      messages: [{ role: 'user', content: 'Weather? [[sim output=10]]' }],
    });
    const partials: string[] = [];
    stream.on('inputJson', (partial) => { partials.push(partial); });
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    const call = final.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
    assert.deepEqual(call?.input, { city: 'sim' });
    assert.equal(partials.join(''), '{"city":"sim"}');
    assert.equal(final.usage.output_tokens, 10);
  });

  test('stream ending with a finish_reason but no usage chunk: not free of record, the usage event has the invalid_count anomaly', async () => {
    const stream = client.messages.stream({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'No usage [[sim body=no_usage]]' }] });
    const final = await stream.finalMessage();
    const requestId = stream.request_id;
    assert.ok(requestId);
    assert.equal(final.stop_reason, 'end_turn');
    await stack.tollgate.drain();
    const event = await stack.tollgate.warehouse.getUsageEvent(requestId);
    assert.ok(event);
    const anomalies = flatUsage(event).anomalies ?? [];
    assert.ok(anomalies.includes('invalid_count'), JSON.stringify(anomalies));
  });

  test('stream ending without a finish_reason: an interrupted stream (error event to the client, status upstream_error), charged 0', async () => {
    let requestId: string | null | undefined;
    const { cost } = await charged(async () => {
      const stream = client.messages.stream({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'Cut [[sim sse=no_message_stop]]' }] });
      await assert.rejects(stream.finalMessage(), (err: unknown) => {
        assert.ok(err instanceof Anthropic.APIError, String(err));
        assert.match(String(err), /Upstream connection was interrupted/);
        return true;
      });
      requestId = stream.request_id;
    });
    assert.equal(cost, 0n);
    assert.ok(requestId);
    await stack.tollgate.drain();
    const event = await stack.tollgate.warehouse.getUsageEvent(requestId);
    assert.ok(event);
    assert.equal(flatUsage(event).status, 'upstream_error');
  });

  test('JSON answer without usage: the usage event has the no_usage anomaly', async () => {
    const { data, response } = await client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'No usage [[sim body=no_usage]]' }] }).withResponse();
    assert.equal(data.stop_reason, 'end_turn');
    const requestId = response.headers.get('request-id');
    assert.ok(requestId);
    await stack.tollgate.drain();
    const event = await stack.tollgate.warehouse.getUsageEvent(requestId);
    assert.ok(event);
    assert.ok((flatUsage(event).anomalies ?? []).includes('no_usage'), JSON.stringify(flatUsage(event).anomalies));
  });

  test('upstream error in OpenAI shape: the client gets its status and message in Anthropic shape, nothing billed', async () => {
    const { cost } = await charged(() => assert.rejects(
      client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'Fail [[sim status=400]]' }] }),
      (err: unknown) => {
        assert.ok(err instanceof Anthropic.BadRequestError, String(err));
        assert.deepEqual((err.error as { error: { type: string; message: string } }).error.type, 'invalid_request_error');
        assert.equal((err.error as { error: { message: string } }).error.message, 'Simulated error (HTTP 400)');
        return true;
      }));
    assert.equal(cost, 0n);
  });

  test('client leaves mid-stream (after the first text delta): the OpenAI stream is read to its usage chunk and billed in full, client_disconnect', async () => {
    // input 200, output 120 (all generated: the upstream bills them): 200×72 + 120×360 = 14,400 + 43,200 = 57,600 µc
    const before = await settledBalance(stack, c.accountId);
    const body = JSON.stringify({ model: SONNET, max_tokens: 256, stream: true, messages: [{ role: 'user', content: 'Leave [[sim input=200 output=120 tps=400]]' }] });
    const r = requestUntil(stack.url, c.secret, body, 'read', (text) => text.includes('text_delta'));
    const requestId = await r.done;
    assert.ok(requestId);
    let event;
    for (let i = 0; i < 200 && !event; i++) {
      await stack.tollgate.drain();
      event = await stack.tollgate.warehouse.getUsageEvent(requestId);
      if (!event) await new Promise((res) => setTimeout(res, 25));
    }
    assert.ok(event, 'usage event recorded');
    const u = flatUsage(event);
    assert.deepEqual([u.status, u.input_tokens, u.output_tokens], ['client_disconnect', 200, 120]);
    assert.equal(before - (await settledBalance(stack, c.accountId)), 57_600n);
  });

  test('count_tokens on a platform openai group: 404 not_found_error, nothing sent upstream', async () => {
    const before = (await simRequests(stack.simUrl, 1))[0];
    await assert.rejects(client.messages.countTokens({ model: SONNET, messages: [{ role: 'user', content: 'count' }] }), (err: unknown) => {
      assert.ok(err instanceof Anthropic.NotFoundError);
      assert.equal(err.status, 404);
      assert.deepEqual((err.error as { error: { type: string; message: string } }).error.type, 'not_found_error');
      assert.equal((err.error as { error: { message: string } }).error.message, 'Token counting is not supported for this platform');
      return true;
    });
    assert.deepEqual((await simRequests(stack.simUrl, 1))[0], before);
  });

  test('a PDF document (no Chat Completions equivalent): 400 naming the field at the edge, before any hold, nothing sent upstream, nothing billed', async () => {
    // 1 credit cannot cover a PDF's worst case (a hold would answer 402): the 400 comes first
    const poor = await customer(stack.url, 1, 'poor');
    const patched = await admin(stack.url, 'PATCH', `/admin/v1/accounts/${poor.accountId}`, { group_id: groupId });
    assert.equal(patched.status, 200);
    const seenBefore = (await simRequests(stack.simUrl, 1))[0];
    const balanceBefore = await settledBalance(stack, poor.accountId);
    await assert.rejects(poor.client.messages.create({
      model: SONNET, max_tokens: 16,
      messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' } }] }],
    }), (err: unknown) => {
      assert.ok(err instanceof Anthropic.BadRequestError, String(err));
      assert.deepEqual((err.error as { error: { type: string; message: string } }).error, {
        type: 'invalid_request_error', code: 'invalid_request',
        message: 'messages.0.content.0: document blocks other than plain text (source type "base64") are not supported on platform openai',
      });
      return true;
    });
    assert.equal(await settledBalance(stack, poor.accountId), balanceBefore);
    assert.deepEqual((await simRequests(stack.simUrl, 1))[0], seenBefore);
  });
});

// ---------------------------------------------------------------------------------------------
// A scripted OpenAI upstream (node:http) for what the simulator's OpenAI mode does not do: an
// answer followed by an open connection, a body cut after 200. The script is named in the
// prompt as [[oai NAME]]. It serves at priority 10 in a group whose second upstream (priority 0)
// is the simulator: a failover would show as a request there.
const HAIKU = 'claude-haiku-4-5';
// 1,200 bytes of prompt: the input bound (one token per body byte) covers the script's 1,000 prompt tokens
const PAD = ' pad'.repeat(300);
const OAI_USAGE = { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050, prompt_tokens_details: { cached_tokens: 200 } };
/** A whole chat.completion's JSON: one choice with `message` ending `finish`, and `usage`. */
const oaiCompletion = (id: string, message: Record<string, unknown>, finish: string, usage: Record<string, unknown> = OAI_USAGE) =>
  JSON.stringify({ id, object: 'chat.completion', created: 1, model: 'gpt-x', choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: finish }], usage });
const oaiChunk = (o: Record<string, unknown>) => `data: ${JSON.stringify({ id: 'chatcmpl-S1', object: 'chat.completion.chunk', created: 1, model: 'gpt-x', ...o })}\n\n`;
const OAI_SCRIPTS: Record<string, (res: import('node:http').ServerResponse) => void> = {
  // finish_reason, then the usage chunk, then neither [DONE] nor the end of the body
  stream_open_after_usage: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(oaiChunk({ choices: [{ index: 0, delta: { role: 'assistant', content: 'a b' }, finish_reason: null }] }));
    res.write(oaiChunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }));
    res.write(oaiChunk({ choices: [], usage: OAI_USAGE }));
  },
  // a complete chat.completion, chunked, never ended
  json_open: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(oaiCompletion('chatcmpl-S2', { content: 'done' }, 'stop'));
  },
  // continuous usage stats: a running usage on each content chunk, a finish chunk without one,
  // then the usage chunk, then silence
  stream_running_usage: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(oaiChunk({ choices: [{ index: 0, delta: { role: 'assistant', content: 'a' }, finish_reason: null }], usage: { prompt_tokens: 1000, completion_tokens: 1, total_tokens: 1001 } }));
    res.write(oaiChunk({ choices: [{ index: 0, delta: { content: ' b' }, finish_reason: null }], usage: { prompt_tokens: 1000, completion_tokens: 30, total_tokens: 1030 } }));
    res.write(oaiChunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }));
    res.write(oaiChunk({ choices: [], usage: OAI_USAGE }));
  },
  // usage on the finish chunk (5 completion tokens), then the usage chunk with the final counts
  stream_finish_usage_then_final: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(oaiChunk({ choices: [{ index: 0, delta: { role: 'assistant', content: 'a b' }, finish_reason: null }] }));
    res.write(oaiChunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 1000, completion_tokens: 5, total_tokens: 1005 } }));
    setTimeout(() => res.write(oaiChunk({ choices: [], usage: OAI_USAGE })), 100);
  },
  // a running usage on a content chunk, then the connection is reset before any finish_reason
  stream_cut_after_running_usage: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(oaiChunk({ choices: [{ index: 0, delta: { role: 'assistant', content: 'a' }, finish_reason: null }], usage: { prompt_tokens: 1000, completion_tokens: 10, total_tokens: 1010 } }));
    setTimeout(() => res.socket?.destroy(), 50);
  },
  // a complete answer whose tool_calls is an object (no server documents it): still the answer
  json_odd_tool_calls: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(oaiCompletion('chatcmpl-S5', { content: 'done', tool_calls: { id: 'x', function: { name: 'f', arguments: '{}' } } }, 'stop'));
  },
  // vLLM's engine gave up: finish_reason abort, half an answer, usage reported
  json_abort: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(oaiCompletion('chatcmpl-S6', { content: 'Half an ans' }, 'abort'));
  },
  // an error as a bare string in a 200
  json_error_string_200: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'quota exceeded for this key' }));
  },
  // an error answered with a 200 (some OpenAI-compatible servers), naming the operator's key
  json_error_200: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${UPSTREAM_KEY}.`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }));
  },
  // cached_tokens that are no split of the prompt: negative
  json_cached_negative: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(oaiCompletion('chatcmpl-S4', { content: 'done' }, 'stop', { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050, prompt_tokens_details: { cached_tokens: -50 } }));
  },
  // 200 and half a body, then the connection is reset
  json_cut: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"id":"chatcmpl-S3","object":"chat.completion","choices":[{"index":0,');
    setTimeout(() => res.socket?.destroy(), 50);
  },
};

describe('platform openai, scripted upstream: the answer ends the request, a 2xx is the answer (no failover), prefill refused', () => {
  let server: import('node:http').Server;
  const seen: string[] = [];
  const closedByGateway: string[] = [];
  let scripted: Awaited<ReturnType<typeof customer>>;
  before(async () => {
    const { createServer } = await import('node:http');
    server = createServer(async (req, res) => {
      let body = '';
      for await (const chunk of req) body += String(chunk);
      const name = /\[\[oai (\w+)\]\]/.exec(body)?.[1] ?? '';
      seen.push(name);
      res.on('close', () => { if (!res.writableEnded) closedByGateway.push(name); });
      const script = OAI_SCRIPTS[name];
      if (script) script(res);
      else { res.writeHead(500); res.end('{}'); }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as import('node:net').AddressInfo).port;
    const ids: string[] = [];
    for (const [name, url, priority] of [['oai-scripted', `http://127.0.0.1:${port}/v1`, 10], ['oai-sim-backup', `${stack.simUrl}/v1`, 0]] as const) {
      const up = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/upstreams', { name, platform: 'openai', base_url: url, api_key: UPSTREAM_KEY, weight: 1, priority });
      assert.equal(up.status, 201, JSON.stringify(up.json));
      ids.push(up.json.id);
    }
    const group = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name: 'openai-scripted', platform: 'openai', upstream_ids: ids });
    assert.equal(group.status, 201, JSON.stringify(group.json));
    scripted = await customer(stack.url, 10, 'scripted');
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${scripted.accountId}`, { group_id: group.json.id })).status, 200);
  });
  after(async () => { server?.closeAllConnections(); await new Promise((r) => server?.close(r)); });

  async function eventOf(requestId: string) {
    await stack.tollgate.drain();
    const event = await stack.tollgate.warehouse.getUsageEvent(requestId);
    assert.ok(event, 'usage event recorded');
    return flatUsage(event) as ReturnType<typeof flatUsage> & { attempts?: number };
  }

  async function closedEventually(name: string, count: number): Promise<void> {
    for (let i = 0; i < 100 && closedByGateway.filter((n) => n === name).length < count; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(closedByGateway.filter((n) => n === name).length, count, `the gateway closed the ${name} connection(s) the upstream held open`);
  }

  test('a finished OpenAI stream over a connection left open (finish_reason, usage chunk, then silence): answered, settled and billed at the usage chunk', { timeout: 30_000 }, async () => {
    const before = await settledBalance(stack, scripted.accountId);
    const stream = scripted.client.messages.stream({ model: HAIKU, max_tokens: 100, messages: [{ role: 'user', content: `[[oai stream_open_after_usage]]${PAD}` }] });
    const final = await stream.finalMessage();
    assert.deepEqual([final.content, final.stop_reason], [[{ type: 'text', text: 'a b', citations: null }].map(({ citations: _c, ...t }) => t), 'end_turn']);
    assert.deepEqual(final.usage, { input_tokens: 800, cache_creation_input_tokens: 0, cache_read_input_tokens: 200, output_tokens: 50 });
    const u = await eventOf(stream.request_id!);
    // haiku-4-5: 800×24 + 200×2.4 + 50×120 = 19,200 + 480 + 6,000 = 25,680 µc
    assert.deepEqual([u.status, u.cost_micros, u.input_tokens, u.cache_read_tokens, u.output_tokens, u.anomalies], ['ok', '25680', 800, 200, 50, undefined]);
    assert.equal(before - (await settledBalance(stack, scripted.accountId)), 25_680n);
    await closedEventually('stream_open_after_usage', 1);
  });

  for (const script of ['stream_running_usage', 'stream_finish_usage_then_final']) {
    test(`stale usage is never the answer's (${script}): the usage chunk after the finish counts, billed at it`, { timeout: 30_000 }, async () => {
      const before = await settledBalance(stack, scripted.accountId);
      const stream = scripted.client.messages.stream({ model: HAIKU, max_tokens: 100, messages: [{ role: 'user', content: `[[oai ${script}]]${PAD}` }] });
      const final = await stream.finalMessage();
      assert.deepEqual(final.usage, { input_tokens: 800, cache_creation_input_tokens: 0, cache_read_input_tokens: 200, output_tokens: 50 });
      const u = await eventOf(stream.request_id!);
      // haiku-4-5: 800×24 + 200×2.4 + 50×120 = 19,200 + 480 + 6,000 = 25,680 µc (the stale counts: 1,000 and 30 → 27,600; 1,000 and 5 → 24,600)
      assert.deepEqual([u.status, u.cost_micros, u.output_tokens, u.anomalies], ['ok', '25680', 50, undefined]);
      assert.equal(before - (await settledBalance(stack, scripted.accountId)), 25_680n);
      await closedEventually(script, 1);
    });
  }

  test('a stream cut before its finish_reason: an interrupted stream, refunded (STREAM_ERROR_BILLING=refund), the usage reported so far recorded for finance', { timeout: 30_000 }, async () => {
    const before = await settledBalance(stack, scripted.accountId);
    const res = await fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': scripted.secret },
      body: JSON.stringify({ model: HAIKU, max_tokens: 100, stream: true, messages: [{ role: 'user', content: `[[oai stream_cut_after_running_usage]]${PAD}` }] }),
    });
    const text = await res.text();
    assert.match(text, /event: error/);
    const u = await eventOf(res.headers.get('request-id')!);
    // reported until the cut: 1,000 in, 10 out (24,000 + 1,200 = 25,200 µc under usage billing); refunded here
    assert.deepEqual([u.status, u.cost_micros, u.input_tokens, u.output_tokens], ['upstream_error', '0', 1000, 10]);
    assert.equal(await settledBalance(stack, scripted.accountId), before);
  });

  test('a complete JSON answer with tool_calls in an undocumented shape is still the answer, billed; one whose finish_reason is abort, or a 200 whose error is a string, is an upstream error, charged 0', { timeout: 30_000 }, async () => {
    const before = await settledBalance(stack, scripted.accountId);
    const { data, response } = await scripted.client.messages.create({ model: HAIKU, max_tokens: 100, messages: [{ role: 'user', content: `[[oai json_odd_tool_calls]]${PAD}` }] }).withResponse();
    assert.deepEqual(data.content, [{ type: 'text', text: 'done' }]);
    const u = await eventOf(response.headers.get('request-id')!);
    // 800×24 + 200×2.4 + 50×120 = 25,680 µc
    assert.deepEqual([u.status, u.cost_micros], ['ok', '25680']);
    for (const script of ['json_abort', 'json_error_string_200']) {
      const res = await fetch(`${stack.url}/v1/messages`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': scripted.secret },
        body: JSON.stringify({ model: HAIKU, max_tokens: 100, messages: [{ role: 'user', content: `[[oai ${script}]]${PAD}` }] }),
      });
      const text = await res.text();
      assert.ok(res.status >= 500, `${script}: ${res.status} ${text}`);
      const e = await eventOf(res.headers.get('request-id')!);
      assert.deepEqual([e.status, e.cost_micros], ['upstream_error', '0'], script);
    }
    assert.equal(before - (await settledBalance(stack, scripted.accountId)), 25_680n);
  });

  test('an error in a 200 JSON body: an upstream error to the client (not a 200), the upstream key redacted, charged 0', { timeout: 30_000 }, async () => {
    const before = await settledBalance(stack, scripted.accountId);
    const res = await fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': scripted.secret },
      body: JSON.stringify({ model: HAIKU, max_tokens: 100, messages: [{ role: 'user', content: '[[oai json_error_200]]' }] }),
    });
    const text = await res.text();
    assert.notEqual(res.status, 200, text);
    assert.ok(res.status >= 500, `${res.status} ${text}`);
    assert.equal(text.includes(UPSTREAM_KEY), false, text);
    assert.equal((JSON.parse(text) as { type: string }).type, 'error');
    const u = await eventOf(res.headers.get('request-id')!);
    assert.deepEqual([u.status, u.cost_micros], ['upstream_error', '0']);
    assert.equal(await settledBalance(stack, scripted.accountId), before);
  });

  test('cached_tokens that is no split of the prompt (negative): the whole prompt billed as input, invalid_count, never more', { timeout: 30_000 }, async () => {
    const before = await settledBalance(stack, scripted.accountId);
    const { data, response } = await scripted.client.messages.create({ model: HAIKU, max_tokens: 100, messages: [{ role: 'user', content: `[[oai json_cached_negative]]${PAD}` }] }).withResponse();
    assert.deepEqual(data.usage, { input_tokens: 1000, cache_creation_input_tokens: 0, cache_read_input_tokens: -1, output_tokens: 50 });
    const u = await eventOf(response.headers.get('request-id')!);
    // 1,000×24 + 50×120 = 24,000 + 6,000 = 30,000 µc (prompt − cached would have been 1,050 input: 31,200)
    assert.deepEqual([u.status, u.cost_micros, u.input_tokens, u.cache_read_tokens, u.anomalies], ['usage_anomaly', '30000', 1000, 0, ['invalid_count']]);
    assert.equal(before - (await settledBalance(stack, scripted.accountId)), 30_000n);
  });

  test('a complete JSON chat.completion over a connection left open: answered at its closing brace, billed, one attempt', { timeout: 30_000 }, async () => {
    const before = await settledBalance(stack, scripted.accountId);
    const simBefore = (await simRequests(stack.simUrl, 1))[0];
    const { data, response } = await scripted.client.messages.create({ model: HAIKU, max_tokens: 100, messages: [{ role: 'user', content: `[[oai json_open]]${PAD}` }] }).withResponse();
    assert.deepEqual(data.content, [{ type: 'text', text: 'done' }]);
    const u = await eventOf(response.headers.get('request-id')!);
    // 800×24 + 200×2.4 + 50×120 = 25,680 µc
    assert.deepEqual([u.status, u.cost_micros, u.attempts, u.anomalies], ['ok', '25680', 1, undefined]);
    assert.equal(before - (await settledBalance(stack, scripted.accountId)), 25_680n);
    assert.deepEqual((await simRequests(stack.simUrl, 1))[0], simBefore, 'no failover after a 2xx');
    await closedEventually('json_open', 1);
  });

  test('a JSON body cut after 200: 503 upstream_error as on an Anthropic upstream, charged 0, no failover to the next upstream', { timeout: 30_000 }, async () => {
    const before = await settledBalance(stack, scripted.accountId);
    const simBefore = (await simRequests(stack.simUrl, 1))[0];
    const res = await fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': scripted.secret },
      body: JSON.stringify({ model: HAIKU, max_tokens: 100, messages: [{ role: 'user', content: '[[oai json_cut]]' }] }),
    });
    const id = res.headers.get('request-id')!;
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), {
      type: 'error', error: { type: 'api_error', code: 'upstream_error', message: 'Upstream connection failed while reading the response' }, request_id: id,
    });
    const u = await eventOf(id);
    assert.deepEqual([u.status, u.cost_micros, u.attempts], ['upstream_error', '0', 1]);
    assert.equal(await settledBalance(stack, scripted.accountId), before);
    assert.deepEqual((await simRequests(stack.simUrl, 1))[0], simBefore, 'no failover after a 2xx');
  });

  test('an assistant prefill (last message assistant): 400 naming the message at the edge, before any hold, nothing sent upstream', async () => {
    // balance 0: a hold would answer 402; the 400 comes first
    const poor = await customer(stack.url, 0, 'poor-prefill');
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${poor.accountId}`, { group_id: groupId })).status, 200);
    const simBefore = (await simRequests(stack.simUrl, 1))[0];
    const seenBefore = seen.length;
    await assert.rejects(poor.client.messages.create({
      model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'Name a colour' }, { role: 'assistant', content: 'The colour is' }],
    }), (err: unknown) => {
      assert.ok(err instanceof Anthropic.BadRequestError, String(err));
      assert.deepEqual((err.error as { error: unknown }).error, {
        type: 'invalid_request_error', code: 'invalid_request',
        message: 'messages.1: a final assistant message (prefill) is not supported on platform openai (Chat Completions answers it as a finished turn)',
      });
      return true;
    });
    assert.deepEqual([(await simRequests(stack.simUrl, 1))[0], seen.length], [simBefore, seenBefore]);
  });
});
