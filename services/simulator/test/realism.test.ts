// The simulator accepts exactly what the real Messages API accepts and bills like it: directives
// only in the user's own words, the context window enforced, images billed by their dimensions,
// a turn in progress checked for thinking, and `npm run simulator -- --help`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { useSimulator } from './support.ts';

let baseURL: string;
let client: Anthropic;

useSimulator((h) => { ({ baseURL, client } = h); });

async function post(body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(`${baseURL}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': 'sk-test', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

const be32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
/** A PNG of w×h (signature, IHDR, IEND): what the API reads the dimensions from. */
function png(w: number, h: number): string {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 6;
  const chunk = (type: string, data: Buffer) => {
    const t = Buffer.from(type, 'latin1');
    return Buffer.concat([be32(data.length), t, data, be32(crc32(Buffer.concat([t, data])))]);
  };
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IEND', Buffer.alloc(0))]).toString('base64');
}

describe('directives are read only from the user\'s own words', () => {
  test('a tool result that quotes a directive (a session reading the simulator README) is not a directive', async () => {
    const readme = 'Use [[sim status=529]] or [[sim fault=bogus]] to simulate faults.';
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 50,
      tools: [{ name: 'Read', input_schema: { type: 'object' } }],
      messages: [
        { role: 'user', content: 'read the README' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Read', input: {} }] },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: readme },
            { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: readme }] },
          ],
        },
      ],
    });
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.output_tokens, 24, 'the default output, not a directive from the tool result');
  });

  test('string content and text blocks of the last user message still carry directives', async () => {
    const a = await client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 50, messages: [{ role: 'user', content: 'hi [[sim output=7]]' }] });
    assert.equal(a.usage.output_tokens, 7);
    const b = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 50,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'text', text: '[[sim output=9]]' }] }],
    });
    assert.equal(b.usage.output_tokens, 9);
    // Next to a tool result, the user's own text block is still theirs.
    const c = await post({
      model: 'claude-sonnet-4-6',
      max_tokens: 50,
      messages: [
        { role: 'user', content: 'go' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Read', input: {} }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '[[sim output=3]]' }, { type: 'text', text: '[[sim output=5]]' }] },
      ],
    });
    assert.equal(c.status, 200);
    assert.equal(c.json.usage.output_tokens, 5);
  });

  test('a directive starts the text or follows whitespace: `arr[[sim x=1]]` in pasted code is code', async () => {
    const code = await post({ model: 'claude-sonnet-4-6', max_tokens: 50, messages: [{ role: 'user', content: 'explain this: arr[[sim x=1]] and m[[sim]]' }] });
    assert.deepEqual([code.status, code.json.usage?.output_tokens], [200, 24]);
    const typo = await post({ model: 'claude-sonnet-4-6', max_tokens: 50, messages: [{ role: 'user', content: 'hi\n[[sim x=1]]' }] });
    assert.deepEqual([typo.status, typo.json.error?.message], [400, 'unknown simulator directive "x"']);
  });
});

describe('the context window is enforced like the API', () => {
  // Text costs ⌈chars / 4⌉: 800,000 characters are exactly 200,000 tokens; 4 more are 200,001.
  const body = (model: string, chars: number) => ({ model, max_tokens: 1, messages: [{ role: 'user', content: 'x'.repeat(chars) }] });

  test('prompt over the model\'s window: 400 "prompt is too long: N tokens > W maximum"', async () => {
    assert.equal((await post(body('claude-haiku-4-5', 800_000))).status, 200);
    const over = await post(body('claude-haiku-4-5', 800_004));
    assert.equal(over.status, 400);
    assert.deepEqual(over.json.error, { type: 'invalid_request_error', message: 'prompt is too long: 200001 tokens > 200000 maximum' });
    // The breaker's case: 750,000 input tokens on haiku.
    const huge = await post(body('claude-haiku-4-5-20251001', 3_000_000));
    assert.deepEqual([huge.status, huge.json.error.message], [400, 'prompt is too long: 750000 tokens > 200000 maximum']);
  });

  test('1M with the context-1m-2025-08-07 beta on the models that have it; 4.6 models have 1M natively', async () => {
    const beta = { 'anthropic-beta': 'context-1m-2025-08-07' };
    assert.equal((await post(body('claude-sonnet-4-5', 800_004))).status, 400);
    assert.equal((await post(body('claude-sonnet-4-5', 800_004), beta)).status, 200);
    assert.equal((await post(body('claude-sonnet-4-20250514', 800_004), { 'anthropic-beta': 'fine-grained-tool-streaming-2025-05-14, context-1m-2025-08-07' })).status, 200);
    // haiku has no 1M window: the beta changes nothing.
    const haiku = await post(body('claude-haiku-4-5', 800_004), beta);
    assert.deepEqual([haiku.status, haiku.json.error.message], [400, 'prompt is too long: 200001 tokens > 200000 maximum']);
    assert.equal((await post(body('claude-sonnet-4-6', 4_000_000))).status, 200);
    const over = await post(body('claude-opus-4-6', 4_000_004));
    assert.deepEqual([over.status, over.json.error.message], [400, 'prompt is too long: 1000001 tokens > 1000000 maximum']);
  });
});

describe('the output limit is enforced like the API', () => {
  const body = (model: string, maxTokens: number) => ({ model, max_tokens: maxTokens, messages: [{ role: 'user', content: '[[sim output=1]]' }] });
  const refusal = (model: string, maxTokens: number, limit: number) =>
    [400, { type: 'invalid_request_error', message: `max_tokens: ${maxTokens} > ${limit}, which is the maximum allowed number of output tokens for ${model}` }];

  test('max_tokens over the model\'s limit: 400 "max_tokens: N > L, which is the maximum allowed number of output tokens for <model>"; at the limit: served', async () => {
    const cases: Array<[string, number]> = [
      ['claude-haiku-4-5-20251001', 64_000], ['claude-sonnet-4-5-20250929', 64_000], ['claude-opus-4-5-20251101', 64_000],
      ['claude-sonnet-4-20250514', 64_000], ['claude-opus-4-20250514', 32_000], ['claude-opus-4-1-20250805', 32_000],
      ['claude-sonnet-4-6', 128_000], ['claude-opus-4-6', 128_000], ['claude-opus-4-7', 128_000], ['claude-opus-5-5', 128_000],
      ['claude-3-7-sonnet-20250219', 64_000], ['claude-3-5-haiku-20241022', 8_192], ['claude-3-haiku-20240307', 4_096],
    ];
    for (const [model, limit] of cases) {
      const at = await post(body(model, limit));
      assert.equal(at.status, 200, model);
      const over = await post(body(model, limit + 1));
      assert.deepEqual([over.status, over.json.error], refusal(model, limit + 1, limit), model);
    }
    // A model id of no known family is served whatever it asks (the simulator takes any id).
    assert.equal((await post(body('my-own-model', 10_000_000))).status, 200);
  });

  test('Sonnet 3.7 reaches 128,000 with the output-128k-2025-02-19 beta; the beta changes nothing elsewhere', async () => {
    const beta = { 'anthropic-beta': 'prompt-caching-2024-07-31,output-128k-2025-02-19' };
    assert.equal((await post(body('claude-3-7-sonnet-20250219', 128_000), beta)).status, 200);
    const over = await post(body('claude-3-7-sonnet-20250219', 128_001), beta);
    assert.deepEqual([over.status, over.json.error], refusal('claude-3-7-sonnet-20250219', 128_001, 128_000));
    const sonnet45 = await post(body('claude-sonnet-4-5', 64_001), beta);
    assert.deepEqual([sonnet45.status, sonnet45.json.error], refusal('claude-sonnet-4-5', 64_001, 64_000));
  });

  test('GET /v1/models gives each listed model\'s limits (max_input_tokens, max_tokens)', async () => {
    const page = await client.models.list({ limit: 1000 });
    const byId = Object.fromEntries(page.data.map((m) => [m.id, [m.max_input_tokens, m.max_tokens]]));
    assert.deepEqual(byId['claude-haiku-4-5-20251001'], [200_000, 64_000]);
    assert.deepEqual(byId['claude-sonnet-4-6'], [1_000_000, 128_000]);
  });
});

describe('images are billed as the API bills them', () => {
  test('⌈w×h/750⌉ from the real dimensions, after the resize to ≤ 1568 px long edge and ~1.15 MP; 1,000 when the size is unknown', async () => {
    const cases: Array<[string, Anthropic.ImageBlockParam['source'], number]> = [
      ['200×200', { type: 'base64', media_type: 'image/png', data: png(200, 200) }, 54], // ⌈40,000/750⌉
      ['1000×1000', { type: 'base64', media_type: 'image/png', data: png(1000, 1000) }, 1334], // ⌈1,000,000/750⌉
      ['2880×1800', { type: 'base64', media_type: 'image/png', data: png(2880, 1800) }, 1532], // → 1356×847: ⌈1,148,532/750⌉
      ['4000×100', { type: 'base64', media_type: 'image/png', data: png(4000, 100) }, 82], // → 1568×39: ⌈61,152/750⌉
      ['1×1', { type: 'base64', media_type: 'image/png', data: png(1, 1) }, 1],
      ['by URL', { type: 'url', url: 'https://example.com/a.png' }, 1000],
      ['unreadable', { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' }, 1000],
    ];
    for (const [label, source, tokens] of cases) {
      const msg = await client.messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 10,
        messages: [{ role: 'user', content: [{ type: 'image', source }, { type: 'text', text: 'Describe' }] }],
      });
      assert.equal(msg.usage.input_tokens, tokens + 2, label); // 'Describe': 8 chars → 2
    }
  });
});

describe('a turn in progress must have started with thinking when thinking is on', () => {
  const tools = [{ name: 'get', input_schema: { type: 'object' } }];
  const loop = (assistant: unknown[]) => [
    { role: 'user', content: 'look it up' },
    { role: 'assistant', content: assistant },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'result' }] },
  ];
  const toolUse = { type: 'tool_use', id: 'toolu_1', name: 'get', input: {} };
  const message = (index: number, found: string) =>
    `messages.${index}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${found}\`. ` +
    'When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). ' +
    'We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. ' +
    'Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking';

  test('a tool-use loop whose assistant message has no thinking block: 400 as the API answers (budget and adaptive)', async () => {
    for (const [model, thinking] of [['claude-sonnet-4-5', { type: 'enabled', budget_tokens: 2048 }], ['claude-sonnet-4-6', { type: 'adaptive' }]] as const) {
      const r = await post({ model, max_tokens: 4096, tools, thinking, messages: loop([toolUse]) });
      assert.deepEqual([r.status, r.json.error], [400, { type: 'invalid_request_error', message: message(1, 'tool_use') }], model);
      const text = await post({ model, max_tokens: 4096, tools, thinking, messages: loop([{ type: 'text', text: 'let me' }, toolUse]) });
      assert.equal(text.json.error?.message, message(1, 'text'), model);
      // A prefill that does not start with thinking.
      const prefill = await post({ model, max_tokens: 4096, thinking, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'Sure' }] });
      assert.equal(prefill.json.error?.message, message(1, 'text'), model);
    }
  });

  test('accepted: the turn starts with thinking or redacted_thinking (later steps need not), a new user turn, or thinking off', async () => {
    const thinking = { type: 'adaptive' };
    const ok = [
      { thinking, messages: loop([{ type: 'thinking', thinking: 'x', signature: 'c2ln' }, toolUse]) },
      { thinking, messages: loop([{ type: 'redacted_thinking', data: 'RW0=' }, toolUse]) },
      {
        thinking,
        messages: [
          ...loop([{ type: 'thinking', thinking: 'x', signature: 'c2ln' }, toolUse]),
          { role: 'assistant', content: [{ ...toolUse, id: 'toolu_2' }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_2', content: 'more' }] },
        ],
      },
      { thinking, messages: [...loop([toolUse]), { role: 'assistant', content: 'done' }, { role: 'user', content: 'next question' }] },
      { messages: loop([toolUse]) },
      { thinking: { type: 'disabled' }, messages: loop([toolUse]) },
    ];
    for (const [i, extra] of ok.entries()) {
      const r = await post({ model: 'claude-sonnet-4-6', max_tokens: 4096, tools, ...extra });
      assert.equal(r.status, 200, `case ${i}: ${JSON.stringify(r.json)}`);
    }
  });
});

test('npm run simulator -- --help prints the usage and exits 0; an unknown argument exits 2', () => {
  const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
  const help = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.ok(help.stdout.startsWith('Usage: npm run simulator [-- --help]\n'), help.stdout);
  for (const name of ['SIMULATOR_PORT', 'SIMULATOR_HOST', 'SIMULATOR_LATENCY_MS', 'SIMULATOR_TTFT_MS', 'SIMULATOR_TPS', 'SIMULATOR_API_KEY', 'SIMULATOR_LOG']) {
    assert.ok(help.stdout.includes(`  ${name}`), name);
  }
  const bad = spawnSync(process.execPath, [main, '--port=1'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.ok(bad.stderr.startsWith('simulator: unknown argument "--port=1"'), bad.stderr);
});
