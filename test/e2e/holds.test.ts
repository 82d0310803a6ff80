// Issue 6, items 3 and 8 end to end: the official SDK (or exact bytes over fetch) → Tollgate
// (embedded) → the simulator. Holds are proven bounds (an image by its dimensions, a document
// the upstream fetches by the context window), and a `-thinking` variant never sends a body the
// upstream must reject. Prices from the CNY catalog, per token: sonnet-4-5 input 72, output 360,
// cache write 1 h 144 (the dearest input-side class, which holds price every input token at).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import { bundledCatalogPath, loadCatalogFile } from '@tollgate/pricing';
import { admin, customer, settledBalance, simRequests, startStack, type Stack } from '../support/tollgate.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

const be32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
const chunk = (type: string, data: Buffer) => {
  const t = Buffer.from(type, 'latin1');
  return Buffer.concat([be32(data.length), t, data, be32(crc32(Buffer.concat([t, data])))]);
};
/** A PNG of w×h whose file is `padding` bytes larger than its header (a private chunk). */
function screenshot(w: number, h: number, padding: number): string {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 6;
  const filler = Buffer.alloc(padding);
  for (let i = 0; i < padding; i++) filler[i] = (i * 2654435761) >>> 24; // incompressible-looking
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('scRn', filler), chunk('IEND', Buffer.alloc(0))]).toString('base64');
}

async function heldMicros(accountId: string): Promise<number> {
  const view = await admin<{ held_credits: number }>(stack.url, 'GET', `/admin/v1/accounts/${accountId}`);
  return Math.round(view.json.held_credits * 1_000_000);
}

describe('holds are proven bounds', () => {
  test('a 1.5 MB screenshot on a 20-credit account: held by its dimensions, served, billed as the upstream reports', async () => {
    const c = await customer(stack.url, 20);
    const data = screenshot(2880, 1800, 1_100_000); // 1,100,057 bytes → 1,466,744 base64 characters
    assert.equal(data.length, 1_466_744);
    const text = 'what is on this screen? [[sim input=1700 output=10 latency_ms=1500]]';
    const body = JSON.stringify({
      model: 'claude-sonnet-4-5', max_tokens: 1024,
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data } }, { type: 'text', text }] }],
    });
    // 261 bytes of JSON around the image; the image is 2880×1800 → ⌈5,184,000/750⌉ = 6,912, resized
    // by the upstream to the cap: 1,600. Hold = (261 + 1,600) × 144 + 1,024 × 360 = 636,624 µc.
    // (The old rule held ⌈1,467,005 / 3⌉ + 1,600 = 490,602 tokens × 144 = 70.6 credits: 402.)
    assert.equal(Buffer.byteLength(body) - data.length, 261);
    const pending = fetch(`${stack.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': c.secret }, body });
    let held = 0;
    for (let i = 0; i < 400 && held === 0; i++) {
      held = await heldMicros(c.accountId);
      if (held === 0) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(held, 636_624);
    const res = await pending;
    assert.equal(res.status, 200);
    const msg = (await res.json()) as { usage: { input_tokens: number; output_tokens: number } };
    assert.deepEqual([msg.usage.input_tokens, msg.usage.output_tokens], [1700, 10]);
    // 1,700 × 72 + 10 × 360 = 122,400 + 3,600 = 126,000 µc
    assert.equal(await settledBalance(stack, c.accountId), 20_000_000n - 126_000n);
  });

  test('0.33 credits and a document by URL: 402 before the upstream, the balance never goes negative', async () => {
    const c = await customer(stack.url, '0.33');
    await fetch(`${stack.simUrl}/_sim/requests`, { method: 'DELETE' });
    // The upstream could read up to the whole window: 200,000 × 144 + 100 × 360 = 28,836,000 µc > 330,000.
    await assert.rejects(c.client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 100,
      messages: [{ role: 'user', content: [
        { type: 'document', source: { type: 'url', url: 'https://example.com/600-pages.pdf' } },
        { type: 'text', text: 'summarise [[sim input=640000 output=100]]' },
      ] }],
    }), (err: unknown) => {
      assert.ok(err instanceof Anthropic.APIError);
      assert.equal(err.status, 402);
      assert.equal((err.error as { error: { code: string } }).error.code, 'insufficient_credits');
      return true;
    });
    assert.deepEqual(await simRequests(stack.simUrl, 10), [], 'the upstream never saw it');
    assert.equal(await settledBalance(stack, c.accountId), 330_000n);
  });

  test('a document by URL on an account that covers the window: served, billed exactly what the upstream reports', async () => {
    const c = await customer(stack.url, 30); // ≥ the 28,836,000 µc hold above
    const msg = await c.client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 100,
      messages: [{ role: 'user', content: [
        { type: 'document', source: { type: 'url', url: 'https://example.com/600-pages.pdf' } },
        { type: 'text', text: 'summarise [[sim input=150000 output=100]]' },
      ] }],
    });
    assert.equal(msg.usage.input_tokens, 150_000);
    // 150,000 × 72 + 100 × 360 = 10,800,000 + 36,000 = 10,836,000 µc
    assert.equal(await settledBalance(stack, c.accountId), 30_000_000n - 10_836_000n);
  });
});

describe('-thinking variants send a body the model accepts', () => {
  const catalog = loadCatalogFile(bundledCatalogPath('cny'));
  const CONFLICTS: Array<[string, Record<string, unknown>]> = [
    ['none', {}], ['temperature 0.3', { temperature: 0.3 }], ['top_k 40', { top_k: 40 }],
    ['top_p 0.5', { top_p: 0.5 }], ['tool_choice any', { tool_choice: { type: 'any' } }],
  ];

  test('every shipped thinking model × max_tokens × conflicting params: the upstream never answers 400', async () => {
    const c = await customer(stack.url, 1000);
    const tools = [{ name: 'f', description: 'f', input_schema: { type: 'object' as const, properties: {} } }];
    let served = 0;
    let refused = 0;
    for (const model of catalog.models.filter((m) => m.thinkingVariant)) {
      const name = `${model.aliases[0] ?? model.id}-thinking`;
      // up to the model's own output limit (32,000 on Opus 4; above it is a 400 of its own, test/e2e/output-limit.test.ts)
      for (const max of [1025, 1200, 2048, 4096, model.maxOutputTokens ?? 64_000]) {
        for (const [label, extra] of CONFLICTS) {
          await fetch(`${stack.simUrl}/_sim/requests`, { method: 'DELETE' });
          try {
            const msg = await c.client.messages.create({
              model: name, max_tokens: max, tools, messages: [{ role: 'user', content: 'think [[sim output=4]]' }], ...extra,
            } as Anthropic.MessageCreateParamsNonStreaming, { timeout: 60_000 }); // an explicit timeout lets the SDK send 64K non-streaming
            assert.equal(label, 'none', `${name} ${max}: only the conflict-free body is served`);
            assert.equal(msg.content[0]?.type, 'thinking', `${name} ${max}`);
            const [seen] = await simRequests(stack.simUrl);
            const thinking = model.thinking.mode === 'adaptive'
              ? { type: 'adaptive' }
              : { type: 'enabled', budget_tokens: Math.min(max - 1, Math.max(1024, Math.floor(max / 2))) };
            assert.deepEqual(seen!.body.thinking, thinking, `${name} ${max}`);
            served++;
          } catch (err) {
            if (!(err instanceof Anthropic.APIError)) throw err;
            // The gateway's own 400, before any hold or upstream call; never the upstream's.
            assert.equal(err.status, 400, `${name} ${max} ${label}`);
            const body = err.error as { error: { code: string; message: string } };
            assert.equal(body.error.code, 'invalid_request', `${name} ${max} ${label}`);
            assert.ok(body.error.message.startsWith(`${name} turns on extended thinking, which does not allow `), body.error.message);
            assert.deepEqual(await simRequests(stack.simUrl, 10), [], `${name} ${max} ${label}: not forwarded`);
            refused++;
          }
        }
      }
    }
    assert.deepEqual([served, refused], [7 * 5, 7 * 5 * 4]);
  });
});

describe('-thinking variants: the body the gateway derives is read by the upstream as the checks read it', () => {
  const catalog = loadCatalogFile(bundledCatalogPath('cny'));
  const tools = [{ name: 'get', description: 'look up', input_schema: { type: 'object' as const, properties: {} } }];
  const toolUse = { type: 'tool_use' as const, id: 'toolu_1', name: 'get', input: {} };
  const toolResult = { role: 'user' as const, content: [{ type: 'tool_result' as const, tool_use_id: 'toolu_1', content: 'result' }] };
  const thought = { type: 'thinking' as const, thinking: 'look it up', signature: 'c2ln' };
  /** Conversations a -thinking model meets mid-session, and whether thinking can be on for them. */
  const SHAPES: Array<[string, Anthropic.MessageParam[], boolean]> = [
    ['tool loop, assistant turn without thinking', [{ role: 'user', content: 'look it up' }, { role: 'assistant', content: [toolUse] }, toolResult], false],
    ['tool loop, text before the tool call', [{ role: 'user', content: 'look it up' }, { role: 'assistant', content: [{ type: 'text', text: 'let me' }, toolUse] }, toolResult], false],
    ['prefilled assistant turn', [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'Sure,' }], false],
    ['tool loop that started with thinking', [{ role: 'user', content: 'look it up' }, { role: 'assistant', content: [thought, toolUse] }, toolResult], true],
    ['next user turn after a loop without thinking', [{ role: 'user', content: 'look it up' }, { role: 'assistant', content: [toolUse] }, toolResult, { role: 'assistant', content: 'done' }, { role: 'user', content: 'and now?' }], true],
  ];

  test('a tool-use loop whose assistant turn has no thinking block: sent without thinking, never an upstream 400 (budget and adaptive models)', async () => {
    const c = await customer(stack.url, 1000);
    let withThinking = 0;
    let without = 0;
    for (const model of catalog.models.filter((m) => m.thinkingVariant)) {
      const name = `${model.aliases[0] ?? model.id}-thinking`;
      for (const [label, messages, carries] of SHAPES) {
        await fetch(`${stack.simUrl}/_sim/requests`, { method: 'DELETE' });
        const msg = await c.client.messages.create(
          { model: name, max_tokens: 4096, tools, messages },
          { headers: { 'x-sim-output': '4' } },
        ); // any upstream 400 would throw here
        assert.equal(msg.stop_reason, 'end_turn', `${name}: ${label}`);
        const [seen] = await simRequests(stack.simUrl);
        assert.equal(seen!.body.model, model.upstreamModel, `${name}: ${label}`);
        if (carries) {
          const thinking = model.thinking.mode === 'adaptive' ? { type: 'adaptive' } : { type: 'enabled', budget_tokens: 2048 };
          assert.deepEqual(seen!.body.thinking, thinking, `${name}: ${label}`);
          assert.equal(msg.content[0]?.type, 'thinking', `${name}: ${label}`);
          withThinking++;
        } else {
          assert.equal('thinking' in seen!.body, false, `${name}: ${label}`);
          assert.notEqual(msg.content[0]?.type, 'thinking', `${name}: ${label}`);
          without++;
        }
      }
    }
    // 7 thinking models in the CNY catalog (5 budget, 2 adaptive) × 5 shapes: 2 carry thinking, 3 cannot.
    assert.deepEqual([withThinking, without], [7 * 2, 7 * 3]);
  });

  test('null sampling parameters on a -thinking model are unset: dropped from the body, thinking on, never an upstream 400', async () => {
    const c = await customer(stack.url, 1000);
    for (const model of catalog.models.filter((m) => m.thinkingVariant)) {
      const name = `${model.aliases[0] ?? model.id}-thinking`;
      await fetch(`${stack.simUrl}/_sim/requests`, { method: 'DELETE' });
      const msg = await c.client.messages.create({
        model: name, max_tokens: 2048, tools, messages: [{ role: 'user', content: 'hi [[sim output=4]]' }],
        temperature: null, top_k: null, top_p: null, tool_choice: null, thinking: null,
      } as unknown as Anthropic.MessageCreateParamsNonStreaming);
      assert.equal(msg.content[0]?.type, 'thinking', name);
      const [seen] = await simRequests(stack.simUrl);
      assert.deepEqual(Object.keys(seen!.body).sort(), ['max_tokens', 'messages', 'model', 'thinking', 'tools'], name);
      const thinking = model.thinking.mode === 'adaptive' ? { type: 'adaptive' } : { type: 'enabled', budget_tokens: 1024 };
      assert.deepEqual(seen!.body.thinking, thinking, name);
    }
  });
  test('a client\'s own thinking on a -thinking variant: wrong mode derived, bad type or budget the gateway\'s 400 naming the field (nothing forwarded), never an upstream 400', async () => {
    const c = await customer(stack.url, 1000);
    const HAIKU = 'claude-haiku-4-5-thinking';
    const tail = `(${HAIKU} turns on extended thinking; omit thinking to let the gateway set it)`;
    /** [client thinking and extras, what the simulator must see as thinking, or the gateway's exact 400] */
    const CASES: Array<[Record<string, unknown>, { sent: unknown } | { refused: string }]> = [
      [{ thinking: { type: 'adaptive' } }, { sent: { type: 'enabled', budget_tokens: 2048 } }], // ⌊4096 / 2⌋
      [{ thinking: { type: 'enabled', budget_tokens: 1500 } }, { sent: { type: 'enabled', budget_tokens: 1500 } }],
      [{ thinking: { type: 'enabled', budget_tokens: 100 } }, { refused: `thinking.budget_tokens: must be at least 1024, got 100 ${tail}` }],
      [{ thinking: { type: 'enabled', budget_tokens: 9000 } }, { refused: `thinking.budget_tokens: must be less than max_tokens (4096), got 9000 ${tail}` }],
      [{ thinking: 'on' }, { refused: `thinking: expected an object with a "type" ${tail}` }],
      [{ thinking: { type: 'enabled', budget_tokens: 2048 }, temperature: 0.3 },
        { refused: `${HAIKU} turns on extended thinking, which does not allow temperature 0.3; omit temperature (or set it to 1) or use claude-haiku-4-5` }],
    ];
    for (const [extra, expected] of CASES) {
      const label = JSON.stringify(extra);
      await fetch(`${stack.simUrl}/_sim/requests`, { method: 'DELETE' });
      const res = await fetch(`${stack.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': c.secret },
        body: JSON.stringify({ model: HAIKU, max_tokens: 4096, messages: [{ role: 'user', content: 'hi [[sim output=4]]' }], ...extra }),
      });
      const body = await res.json() as { content?: Array<{ type: string }>; error?: { code: string; message: string } };
      if ('sent' in expected) {
        assert.equal(res.status, 200, label);
        assert.equal(body.content?.[0]?.type, 'thinking', label);
        const [seen] = await simRequests(stack.simUrl);
        assert.deepEqual(seen!.body.thinking, expected.sent, label);
      } else {
        assert.equal(res.status, 400, label);
        assert.deepEqual([body.error?.code, body.error?.message], ['invalid_request', expected.refused], label);
        assert.deepEqual(await simRequests(stack.simUrl, 10), [], `${label}: not forwarded`);
      }
    }
  });
});
