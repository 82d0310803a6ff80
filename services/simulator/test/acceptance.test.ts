// The simulator accepts what the real Messages API accepts and rejects what it rejects.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { useSimulator } from './support.ts';
import type { RecordedRequest } from '../src/index.ts';

let baseURL: string;
let client: Anthropic;

useSimulator((h) => { ({ baseURL, client } = h); });

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${baseURL}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': 'sk-test', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function errorOf(body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; type: string; message: string }> {
  const res = await post('/v1/messages', body, headers);
  const parsed = JSON.parse(res.text) as { error?: { type: string; message: string } };
  return { status: res.status, type: parsed.error?.type ?? '', message: parsed.error?.message ?? '' };
}

const CLAUDE_CODE_BETAS =
  'claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14';

/** A Claude-Code-shaped turn, as recorded from a real session and trimmed. */
function claudeCodeBody(midSystem: string): Record<string, unknown> {
  return {
    model: 'claude-opus-4-6',
    max_tokens: 32000,
    stream: true,
    system: [
      { type: 'text', text: "You are Claude Code, Anthropic's official CLI for Claude.", cache_control: { type: 'ephemeral', ttl: '1h' } },
      { type: 'text', text: 'Working directory: /repo. Platform: linux.' },
    ],
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: '<system-reminder>Use the TodoWrite tool.</system-reminder>' },
          { type: 'text', text: 'Fix the failing test', cache_control: { type: 'ephemeral' } },
        ],
      },
      {
        role: 'assistant',
        content: [
          { type: 'thinking', thinking: 'Run the tests first.', signature: 'c2ln' },
          { type: 'tool_use', id: 'toolu_01', name: 'Bash', input: { command: 'npm test' } },
        ],
      },
      {
        role: 'user',
        content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: [{ type: 'text', text: '1 failing' }], is_error: false }],
      },
      { role: 'system', content: midSystem },
      {
        role: 'assistant',
        content: [
          { type: 'redacted_thinking', data: 'EmwKAhgB' },
          { type: 'server_tool_use', id: 'srvtoolu_01', name: 'web_search', input: { query: 'node test runner' } },
          {
            type: 'web_search_tool_result',
            tool_use_id: 'srvtoolu_01',
            content: [{ type: 'web_search_result', url: 'https://nodejs.org/api/test.html', title: 'Test runner', encrypted_content: 'Zm9v' }],
          },
          { type: 'text', text: 'Found it.' },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'document', source: { type: 'url', url: 'https://example.com/spec.pdf' } },
          { type: 'document', source: { type: 'file', file_id: 'file_011' } },
          { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
          { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'plain text document' } },
          { type: 'document', source: { type: 'content', content: [{ type: 'text', text: 'inner' }] } },
          { type: 'image', source: { type: 'url', url: 'https://example.com/screen.png' } },
          { type: 'container_upload', file_id: 'file_012' },
          { type: 'text', text: 'Now continue', cache_control: { type: 'ephemeral' } },
        ],
      },
    ],
    tools: [
      {
        name: 'Bash',
        description: 'Run a shell command',
        input_schema: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] },
        cache_control: { type: 'ephemeral', ttl: '1h' },
      },
      { type: 'web_search_20250305', name: 'web_search', max_uses: 5 },
      { type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' },
      { type: 'mcp_toolset', mcp_server_name: 'github' },
    ],
    tool_choice: { type: 'auto' },
    thinking: { type: 'adaptive' },
    temperature: 1,
    context_management: { edits: [{ type: 'clear_tool_uses_20250919', trigger: { type: 'input_tokens', value: 100000 } }] },
    output_config: { effort: 'high' },
    metadata: { user_id: 'user_abc_account_def_session_123' },
    service_tier: 'auto',
    container: 'container_011',
    mcp_servers: [{ type: 'url', url: 'https://mcp.example.com/sse', name: 'github' }],
    stop_sequences: [],
  };
}

describe('accepts what the real API accepts', () => {
  test('Claude Code turn (mid-conversation system message, adaptive thinking on 4.6, context_management, typed tools, cache_control everywhere) streams through the official SDK', async () => {
    const body = claudeCodeBody('Context was compacted; the summary follows.');
    const stream = client.messages.stream(body as unknown as Anthropic.MessageCreateParamsStreaming, {
      headers: { 'anthropic-beta': CLAUDE_CODE_BETAS },
    });
    const message = await stream.finalMessage();
    assert.equal(message.stop_reason, 'end_turn');
    // Adaptive thinking is on: half of the 24 default words think, half answer.
    assert.deepEqual(
      message.content.map((b) => b.type),
      ['thinking', 'text'],
    );
    const text = message.content[1];
    assert.ok(text?.type === 'text');
    assert.equal(text.text, 'Simulated reply to: Now continue lorem ipsum dolor sit amet consectetur adipiscing');
    assert.equal(message.usage.output_tokens, 24);

    // Everything the client sent arrived as sent (nothing stripped by validation).
    const [last] = (await (await fetch(`${baseURL}/_sim/requests?limit=1`)).json()) as RecordedRequest[];
    assert.deepEqual(last?.body, body);
    assert.equal(last?.headers['anthropic-beta'], CLAUDE_CODE_BETAS);
  });

  test('mid-conversation system message counts like text: 400 more characters cost exactly 100 more input tokens', async () => {
    const count = async (midSystem: string): Promise<number> => {
      const { stream: _s, max_tokens: _m, ...rest } = claudeCodeBody(midSystem);
      const res = await post('/v1/messages/count_tokens', rest, { 'anthropic-beta': CLAUDE_CODE_BETAS });
      assert.equal(res.status, 200, res.text);
      return (JSON.parse(res.text) as { input_tokens: number }).input_tokens;
    };
    const base = await count('s'.repeat(400));
    const longer = await count('s'.repeat(800));
    assert.equal(longer - base, 100);
  });

  test('unknown role, disabled thinking with sampling parameters, and only-typed tools under tool_choice any are accepted', async () => {
    // 'abcdefgh' (8 chars, role developer) + 'hi' (2) = 10 chars → 3 input tokens.
    const res = await post('/v1/messages', {
      model: 'claude-sonnet-4-5',
      max_tokens: 5,
      messages: [
        { role: 'developer', content: 'abcdefgh' },
        { role: 'user', content: 'hi' },
      ],
      thinking: { type: 'disabled' },
      temperature: 0.2,
      top_k: 5,
      top_p: 0.5,
      tools: [{ type: 'web_search_20250305', name: 'web_search' }, { type: 'mcp_toolset', mcp_server_name: 'x' }],
      tool_choice: { type: 'any' },
    });
    assert.equal(res.status, 200, res.text);
    const message = JSON.parse(res.text) as { usage: { input_tokens: number }; content: Array<{ type: string }> };
    // tools JSON: {"type":"web_search_20250305","name":"web_search"} 49 + {"type":"mcp_toolset","mcp_server_name":"x"} 44 = 93 chars; +10 = 103 → 26.
    assert.equal(message.usage.input_tokens, 26);
    assert.deepEqual(message.content.map((b) => b.type), ['text']);
  });

  test('budget_tokens at or above max_tokens is accepted with the interleaved-thinking beta', async () => {
    const res = await post(
      '/v1/messages',
      { model: 'claude-sonnet-4-5', max_tokens: 2000, thinking: { type: 'enabled', budget_tokens: 4000 }, messages: [{ role: 'user', content: 'hi' }] },
      { 'anthropic-beta': 'interleaved-thinking-2025-05-14' },
    );
    assert.equal(res.status, 200, res.text);
  });

  test('thinking on with temperature 1 and top_p 0.95 is accepted', async () => {
    const res = await post('/v1/messages', {
      model: 'claude-sonnet-4-6',
      max_tokens: 2048,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      temperature: 1,
      top_p: 0.95,
      tool_choice: { type: 'auto' },
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(res.status, 200, res.text);
  });
});

describe('rejects what the real API rejects', () => {
  const user = [{ role: 'user', content: 'hi' }];
  const FEATURE = 'Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility';

  test('thinking budget below 1024 or not below max_tokens: 400', async () => {
    assert.deepEqual(await errorOf({ model: 'claude-sonnet-4-5', max_tokens: 4000, thinking: { type: 'enabled', budget_tokens: 1023 }, messages: user }), {
      status: 400,
      type: 'invalid_request_error',
      message: 'thinking.enabled.budget_tokens: Input should be greater than or equal to 1024',
    });
    assert.deepEqual(await errorOf({ model: 'claude-sonnet-4-5', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 2048 }, messages: user }), {
      status: 400,
      type: 'invalid_request_error',
      message:
        '`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size',
    });
    const missing = await errorOf({ model: 'claude-sonnet-4-5', max_tokens: 2048, thinking: { type: 'enabled' }, messages: user });
    assert.deepEqual(missing, { status: 400, type: 'invalid_request_error', message: 'thinking.enabled.budget_tokens: Field required' });
  });

  test('thinking on with temperature ≠ 1, top_k, or top_p < 0.95: 400, for enabled and adaptive alike', async () => {
    for (const thinking of [{ type: 'enabled', budget_tokens: 1024 }, { type: 'adaptive' }]) {
      const base = { model: 'claude-opus-4-6', max_tokens: 4096, thinking, messages: user };
      assert.deepEqual(await errorOf({ ...base, temperature: 0.7 }), {
        status: 400,
        type: 'invalid_request_error',
        message: `\`temperature\` may only be set to 1 when thinking is enabled. ${FEATURE}`,
      });
      assert.deepEqual(await errorOf({ ...base, top_k: 40 }), {
        status: 400,
        type: 'invalid_request_error',
        message: `\`top_k\` is not supported when thinking is enabled. ${FEATURE}`,
      });
      assert.deepEqual(await errorOf({ ...base, top_p: 0.9 }), {
        status: 400,
        type: 'invalid_request_error',
        message: `\`top_p\` must be greater than or equal to 0.95 and less than or equal to 1 when thinking is enabled. ${FEATURE}`,
      });
    }
  });

  test('thinking on with a forced tool (tool_choice any or tool): 400', async () => {
    const tools = [{ name: 't', input_schema: { type: 'object' } }];
    for (const tool_choice of [{ type: 'any' }, { type: 'tool', name: 't' }]) {
      assert.deepEqual(
        await errorOf({ model: 'claude-sonnet-4-6', max_tokens: 4096, thinking: { type: 'adaptive' }, tools, tool_choice, messages: user }),
        { status: 400, type: 'invalid_request_error', message: 'Thinking may not be enabled when tool_choice forces tool use.' },
      );
    }
  });

  test('adaptive thinking on a model older than 4.6: 400; on 4.6 models: 200', async () => {
    for (const model of ['claude-sonnet-4-5-20250929', 'claude-haiku-4-5', 'claude-opus-4-5', 'claude-opus-4-1-20250805', 'claude-sonnet-4-20250514', 'claude-3-7-sonnet-latest']) {
      assert.deepEqual(await errorOf({ model, max_tokens: 100, thinking: { type: 'adaptive' }, messages: user }), {
        status: 400,
        type: 'invalid_request_error',
        message: `thinking.type: "adaptive" is not supported on model ${model}; use {"type": "enabled", "budget_tokens": N}`,
      });
    }
    for (const model of ['claude-sonnet-4-6', 'claude-opus-4-6']) {
      const res = await post('/v1/messages', { model, max_tokens: 100, thinking: { type: 'adaptive' }, messages: user });
      assert.equal(res.status, 200, model);
    }
  });

  test('a custom tool without a name: 400', async () => {
    assert.deepEqual(await errorOf({ model: 'claude-sonnet-4-6', max_tokens: 10, tools: [{ input_schema: { type: 'object' } }], messages: user }), {
      status: 400,
      type: 'invalid_request_error',
      message: 'tools.0.custom.name: Field required',
    });
  });
});

describe('hostile bodies', () => {
  test('JSON nested 100,000 levels deep: 400 invalid_request_error, recorded, and the simulator keeps serving', async () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const raw = `{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":[{"type":"x","v":${deep}}]}]}`;
    const res = await post('/v1/messages', raw);
    assert.equal(res.status, 400);
    assert.equal(
      res.text,
      `{"type":"error","error":{"type":"invalid_request_error","message":"request body nests objects and arrays deeper than 1024 levels"},"request_id":"${res.headers.get('request-id')}"}`,
    );
    const [last] = (await (await fetch(`${baseURL}/_sim/requests?limit=1`)).json()) as RecordedRequest[];
    assert.deepEqual(last?.body, { simulator_rejected: 'body nests deeper than 1024 levels', bytes: raw.length });
    const next = await post('/v1/messages', { model: 'claude-sonnet-4-6', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(next.status, 200);
  });

  test('nesting exactly at the limit is accepted; one level more is not', async () => {
    // The body object is level 1, metadata level 2, so 1022 more arrays make 1024 levels.
    const body = (arrays: number): string =>
      `{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"metadata":{"x":${'['.repeat(arrays)}${']'.repeat(arrays)}}}`;
    assert.equal((await post('/v1/messages', body(1022))).status, 200);
    assert.equal((await post('/v1/messages', body(1023))).status, 400);
  });

  test('a body that is not JSON: 400 invalid_request_error', async () => {
    const res = await post('/v1/messages', '{"model": ');
    assert.equal(res.status, 400);
    const parsed = JSON.parse(res.text) as { error: { type: string; message: string } };
    assert.equal(parsed.error.type, 'invalid_request_error');
    assert.match(parsed.error.message, /^request body is not valid JSON: /);
  });
});
