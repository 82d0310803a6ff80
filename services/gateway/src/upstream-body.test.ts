import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError, type MessagesRequest } from '@tollgate/anthropic';
import { bundledCatalogPath, loadCatalogFile, resolveModel } from '@tollgate/pricing';
import { JsonValueEnd, thinkingFor, upstreamBody } from './upstream-body.ts';

const catalogs = [loadCatalogFile(bundledCatalogPath('cny')), loadCatalogFile(bundledCatalogPath('usd'))];
const MAX_TOKENS = [1025, 1200, 2048, 4096, 64000] as const;

const TOOL_USE = { type: 'tool_use', id: 'toolu_1', name: 'f', input: {} };
const TOOL_RESULT = { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'done' }] };
const THOUGHT = { type: 'thinking', thinking: 'call f', signature: 'c2ln' };

/**
 * Parameters that conflict with thinking (and their harmless neighbours). `refused`: the exact
 * 400 tail; `dropped`: fields removed from the body sent (null means unset); `plain`: the body
 * cannot carry thinking on this turn and goes up without it.
 */
const PARAMS: ReadonlyArray<{ name: string; extra: Partial<MessagesRequest>; refused?: string; dropped?: string[]; plain?: true }> = [
  { name: 'none', extra: {} },
  { name: 'temperature 1', extra: { temperature: 1 } },
  { name: 'temperature 0.3', extra: { temperature: 0.3 }, refused: 'temperature 0.3; omit temperature (or set it to 1)' },
  { name: 'temperature 0', extra: { temperature: 0 }, refused: 'temperature 0; omit temperature (or set it to 1)' },
  // a string is not the number 1, and the message shows it is a string
  { name: 'temperature "1"', extra: { temperature: '1' } as never, refused: 'temperature "1"; omit temperature (or set it to 1)' },
  { name: 'top_k', extra: { top_k: 40 }, refused: 'top_k; omit top_k' },
  { name: 'top_p 0.95', extra: { top_p: 0.95 } },
  { name: 'top_p 0.9', extra: { top_p: 0.9 }, refused: 'top_p 0.9; omit top_p or set it between 0.95 and 1' },
  { name: 'tool_choice auto', extra: { tool_choice: { type: 'auto' } } },
  { name: 'tool_choice none', extra: { tool_choice: { type: 'none' } } },
  { name: 'tool_choice any', extra: { tool_choice: { type: 'any' } }, refused: 'tool_choice any (forced tool use); use tool_choice auto or none' },
  { name: 'tool_choice tool', extra: { tool_choice: { type: 'tool', name: 'f' } }, refused: 'tool_choice tool (forced tool use); use tool_choice auto or none' },
  // null is "unset": the check reads it as absent, so the body sent must not carry it.
  { name: 'temperature null', extra: { temperature: null } as never, dropped: ['temperature'] },
  { name: 'top_k null', extra: { top_k: null } as never, dropped: ['top_k'] },
  { name: 'top_p null', extra: { top_p: null } as never, dropped: ['top_p'] },
  { name: 'tool_choice null', extra: { tool_choice: null } as never, dropped: ['tool_choice'] },
  { name: 'all four null', extra: { temperature: null, top_k: null, top_p: null, tool_choice: null } as never, dropped: ['temperature', 'top_k', 'top_p', 'tool_choice'] },
  { name: 'thinking null', extra: { thinking: null } as never, dropped: ['thinking'] },
  // The turn in progress decides whether thinking can be on (first assistant message of the turn).
  { name: 'prefill', extra: { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'Sure' }] }, plain: true },
  { name: 'prefill starting with thinking', extra: { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [THOUGHT] }] } as never },
  { name: 'tool loop, assistant without thinking', extra: { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [TOOL_USE] }, TOOL_RESULT] } as never, plain: true },
  { name: 'tool loop without thinking, temperature 0.3', extra: { temperature: 0.3, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [{ type: 'text', text: 'let me' }, TOOL_USE] }, TOOL_RESULT] } as never, plain: true },
  { name: 'tool loop, assistant starting with thinking', extra: { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [THOUGHT, TOOL_USE] }, TOOL_RESULT] } as never },
  { name: 'tool loop, redacted thinking', extra: { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [{ type: 'redacted_thinking', data: 'RW0=' }, TOOL_USE] }, TOOL_RESULT] } as never },
  {
    name: 'second step of a loop that started with thinking',
    extra: { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [THOUGHT, TOOL_USE] }, TOOL_RESULT, { role: 'assistant', content: [{ ...TOOL_USE, id: 'toolu_2' }] }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_2', content: 'ok' }] }] } as never,
  },
  {
    name: 'earlier turn without thinking, new user turn',
    extra: { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [TOOL_USE] }, TOOL_RESULT, { role: 'assistant', content: 'done' }, { role: 'user', content: 'next' }] } as never,
  },
];

/** Budget per the docs: ≥ 1,024 and < max_tokens; the gateway gives half, at least 1,024. */
const BUDGET: Record<(typeof MAX_TOKENS)[number], number> = { 1025: 1024, 1200: 1024, 2048: 1024, 4096: 2048, 64000: 32000 };

for (const catalog of catalogs) {
  for (const model of catalog.models.filter((m) => m.thinkingVariant)) {
    const name = `${model.id}-thinking`;
    test(`${catalog.name}: ${name} (${model.thinking.mode}) × max_tokens × conflicting params, null params and turns in progress → exact body or exact 400`, () => {
      const resolved = resolveModel(catalog, name)!;
      for (const max of MAX_TOKENS) {
        for (const p of PARAMS) {
          const body = { model: name, max_tokens: max, messages: [{ role: 'user', content: 'hi' }], tools: [{ name: 'f', input_schema: { type: 'object' } }], ...p.extra } as MessagesRequest;
          const raw = Buffer.from(JSON.stringify(body));
          const label = `${name} max_tokens=${max} ${p.name}`;
          if (p.refused) {
            assert.throws(() => upstreamBody(body, raw, resolved), (err: unknown) => {
              assert.ok(err instanceof GatewayError, label);
              assert.deepEqual([err.status, err.code, err.type], [400, 'invalid_request', 'invalid_request_error'], label);
              assert.equal(err.message, `${name} turns on extended thinking, which does not allow ${p.refused} or use ${model.id}`, label);
              return true;
            });
            continue;
          }
          const sent = JSON.parse(String(upstreamBody(body, raw, resolved)));
          if (p.plain) {
            assert.deepEqual(sent, { ...body, model: model.upstreamModel }, label);
            continue;
          }
          const thinking = model.thinking.mode === 'adaptive' ? { type: 'adaptive' } : { type: 'enabled', budget_tokens: BUDGET[max] };
          const expected: Record<string, unknown> = { ...body, model: model.upstreamModel };
          for (const field of p.dropped ?? []) delete expected[field];
          assert.deepEqual(sent, { ...expected, thinking }, label);
        }
      }
    });
  }
}

test('budget models: max_tokens ≤ 1,024 leaves no valid budget → 400 that says why', () => {
  const catalog = catalogs[0]!;
  const resolved = resolveModel(catalog, 'claude-haiku-4-5-thinking')!;
  for (const max of [1, 1000, 1024]) {
    const body = { model: 'claude-haiku-4-5-thinking', max_tokens: max, messages: [{ role: 'user', content: 'hi' }] } as MessagesRequest;
    assert.throws(() => upstreamBody(body, Buffer.from(JSON.stringify(body)), resolved), {
      status: 400,
      code: 'invalid_request',
      message: 'claude-haiku-4-5-thinking turns on extended thinking, which needs max_tokens of at least 1025 (budget_tokens ≥ 1024 and < max_tokens); raise max_tokens or use claude-haiku-4-5',
    });
  }
  // Adaptive models take any max_tokens.
  const opus = resolveModel(catalog, 'claude-opus-4-6-thinking')!;
  const body = { model: 'claude-opus-4-6-thinking', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } as MessagesRequest;
  assert.deepEqual(JSON.parse(String(upstreamBody(body, Buffer.from('{}'), opus))).thinking, { type: 'adaptive' });
});

test('the issue\'s example, word for word; aliases and provider names keep the name the client used', () => {
  const [cny, usd] = catalogs as [typeof catalogs[0], typeof catalogs[0]];
  const body = { model: 'claude-sonnet-4-5-thinking', max_tokens: 2048, temperature: 0.3, messages: [] } as unknown as MessagesRequest;
  assert.throws(() => thinkingFor(body, resolveModel(cny, 'claude-sonnet-4-5-thinking')!.model.thinking, 'claude-sonnet-4-5-thinking'), {
    message: 'claude-sonnet-4-5-thinking turns on extended thinking, which does not allow temperature 0.3; omit temperature (or set it to 1) or use claude-sonnet-4-5',
  });
  assert.throws(() => thinkingFor(body, resolveModel(usd, 'claude-opus-4-6-thinking/anthropic')!.model.thinking, 'claude-opus-4-6-thinking/anthropic'), {
    message: 'claude-opus-4-6-thinking/anthropic turns on extended thinking, which does not allow temperature 0.3; omit temperature (or set it to 1) or use claude-opus-4-6/anthropic',
  });
});

test('untouched bytes when nothing changes; a client\'s own thinking is kept', () => {
  const catalog = catalogs[0]!;
  const plain = { model: 'claude-sonnet-4-6', max_tokens: 10, temperature: 0.3, messages: [] } as unknown as MessagesRequest;
  const raw = Buffer.from(JSON.stringify(plain));
  assert.equal(upstreamBody(plain, raw, resolveModel(catalog, 'claude-sonnet-4-6')!), raw);
  const own = { model: 'claude-sonnet-4-6-thinking', max_tokens: 10, thinking: { type: 'disabled' }, messages: [] } as unknown as MessagesRequest;
  assert.deepEqual(JSON.parse(String(upstreamBody(own, Buffer.from('{}'), resolveModel(catalog, 'claude-sonnet-4-6-thinking')!))).thinking, { type: 'disabled' });
});

test('server tools: units by tool type, Σ max_uses per unit; a priced tool without max_uses gets the catalog bound, sent upstream', async () => {
  const { priceVersion } = await import('@tollgate/pricing');
  const { serverTools, toolUnit } = await import('./upstream-body.ts');
  const version = priceVersion(catalogs[0]!);
  const resolved = resolveModel(version.catalog, 'claude-sonnet-4-5')!;
  assert.deepEqual(['web_search_20250305', 'web_fetch_20250910', 'code_execution_20250825', 'bash_20250124', 7].map(toolUnit),
    ['web_search_requests', 'web_fetch_requests', 'code_execution_seconds', undefined, undefined]);
  const body = {
    model: 'claude-sonnet-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }],
    tools: [
      { type: 'web_search_20250305', name: 'a', max_uses: 3 },
      { type: 'web_search_20250305', name: 'b', max_uses: 2 },
      { type: 'web_fetch_20250910', name: 'f' },
      { name: 'custom', input_schema: { type: 'object' } },
    ],
  } as unknown as MessagesRequest;
  const t = serverTools(body, version, resolved.model);
  // web fetch is priced at 0: no bound is imposed on it, the hold needs none
  assert.deepEqual([t.units, [...t.maxUses]], [{ web_search_requests: 5, web_fetch_requests: null }, []]);
  const open = { ...body, tools: [{ type: 'web_search_20250305', name: 'a' }, { name: 'custom', input_schema: { type: 'object' } }] } as unknown as MessagesRequest;
  const o = serverTools(open, version, resolved.model);
  assert.deepEqual([o.units, [...o.maxUses]], [{ web_search_requests: 50 }, [[0, 50]]]);
  const sent = JSON.parse(String(upstreamBody(open, Buffer.from(JSON.stringify(open)), resolved, o.maxUses))) as { tools: unknown[] };
  assert.deepEqual(sent.tools, [{ type: 'web_search_20250305', name: 'a', max_uses: 50 }, { name: 'custom', input_schema: { type: 'object' } }]);
});

test('a -thinking variant judges the client\'s own thinking: wrong mode derived, bad type/budget a 400 naming the field, sampling rules whenever thinking is on', () => {
  const catalog = catalogs[0]!;
  const send = (model: string, extra: Record<string, unknown>, betas: string[] = []) => {
    const body = { model, max_tokens: 4096, messages: [{ role: 'user', content: 'hi' }], ...extra } as unknown as MessagesRequest;
    return JSON.parse(String(upstreamBody(body, Buffer.from('{}'), resolveModel(catalog, model)!, undefined, betas))) as Record<string, unknown>;
  };
  const refused = (model: string, extra: Record<string, unknown>, message: string) =>
    assert.throws(() => send(model, extra), (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.deepEqual([err.status, err.code, err.message], [400, 'invalid_request', message]);
      return true;
    });
  const HAIKU = 'claude-haiku-4-5-thinking';
  const tail = `(${HAIKU} turns on extended thinking; omit thinking to let the gateway set it)`;
  // adaptive on a budget model: the intent is "think"; the variant's own budget, ⌊4096 / 2⌋ = 2048
  assert.deepEqual(send(HAIKU, { thinking: { type: 'adaptive' } }).thinking, { type: 'enabled', budget_tokens: 2048 });
  // a valid budget is kept as sent; on an adaptive model adaptive is kept
  assert.deepEqual(send(HAIKU, { thinking: { type: 'enabled', budget_tokens: 2048 } }).thinking, { type: 'enabled', budget_tokens: 2048 });
  assert.deepEqual(send('claude-opus-4-6-thinking', { thinking: { type: 'adaptive' } }).thinking, { type: 'adaptive' });
  // interleaved thinking lets the budget span the whole turn, above max_tokens
  assert.deepEqual(send(HAIKU, { thinking: { type: 'enabled', budget_tokens: 9000 } }, ['interleaved-thinking-2025-05-14']).thinking, { type: 'enabled', budget_tokens: 9000 });
  refused(HAIKU, { thinking: { type: 'enabled', budget_tokens: 100 } }, `thinking.budget_tokens: must be at least 1024, got 100 ${tail}`);
  refused(HAIKU, { thinking: { type: 'enabled', budget_tokens: 9000 } }, `thinking.budget_tokens: must be less than max_tokens (4096), got 9000 ${tail}`);
  refused(HAIKU, { thinking: { type: 'enabled', budget_tokens: 4096 } }, `thinking.budget_tokens: must be less than max_tokens (4096), got 4096 ${tail}`);
  refused(HAIKU, { thinking: { type: 'enabled' } }, `thinking.budget_tokens: expected an integer ${tail}`);
  refused(HAIKU, { thinking: 'on' }, `thinking: expected an object with a "type" ${tail}`);
  refused(HAIKU, { thinking: { type: 'on' } }, `thinking.type: expected "enabled", "adaptive" or "disabled", got "on" ${tail}`);
  // the sampling check holds whoever turned thinking on
  refused(HAIKU, { thinking: { type: 'enabled', budget_tokens: 2048 }, temperature: 0.3 },
    `${HAIKU} turns on extended thinking, which does not allow temperature 0.3; omit temperature (or set it to 1) or use claude-haiku-4-5`);
  refused('claude-opus-4-6-thinking', { thinking: { type: 'adaptive' }, top_k: 5 },
    'claude-opus-4-6-thinking turns on extended thinking, which does not allow top_k; omit top_k or use claude-opus-4-6');
  // null sampling fields are unset, as with the gateway's own thinking
  const nulls = send(HAIKU, { thinking: { type: 'enabled', budget_tokens: 2048 }, temperature: null, top_k: null });
  assert.deepEqual([Object.hasOwn(nulls, 'temperature'), Object.hasOwn(nulls, 'top_k')], [false, false]);
  // disabled: the client turned thinking off; its sampling params are its own
  assert.deepEqual(send(HAIKU, { thinking: { type: 'disabled' }, temperature: 0.3 }).temperature, 0.3);
  // a plain model: the client's thinking is its own body to the model it named, passed on unjudged
  const plainBody = { model: 'claude-haiku-4-5', max_tokens: 10, thinking: { type: 'adaptive' }, messages: [] } as unknown as MessagesRequest;
  assert.deepEqual(JSON.parse(String(upstreamBody(plainBody, Buffer.from(JSON.stringify(plainBody)), resolveModel(catalog, 'claude-haiku-4-5')!))).thinking, { type: 'adaptive' });
});

test('a JSON answer whose connection stays open: its end is the top-level value\'s closing bracket, at any chunking, strings and escapes honoured', () => {
  const body = JSON.stringify({ type: 'message', content: [{ type: 'text', text: 'a } ] \\" {[ 😀 "quoted"' }], usage: { input_tokens: 5 } });
  const bytes = Buffer.from(`  ${body}`);
  for (const size of [1, 2, 3, 7, bytes.length]) {
    const end = new JsonValueEnd();
    let doneAt = -1;
    for (let at = 0; at < bytes.length; at += size) {
      if (end.push(bytes.subarray(at, at + size))) { doneAt = Math.min(at + size, bytes.length); break; }
    }
    assert.equal(doneAt, bytes.length, `chunks of ${size}: complete exactly at the last byte`);
  }
  // one byte short is not complete
  const short = new JsonValueEnd();
  assert.equal(short.push(bytes.subarray(0, bytes.length - 1)), false);
  // arrays too; a bare scalar or non-JSON has no knowable end
  assert.equal(new JsonValueEnd().push(Buffer.from('[1,[2],{"a":"]"}]')), true);
  for (const other of ['42', '"text"', 'not json']) {
    const e = new JsonValueEnd();
    assert.deepEqual([e.push(Buffer.from(other)), e.unknowable], [false, true], other);
  }
});
