import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TOKEN_COUNT, readMessage, readMessageUsage, UsageTally, usageFromMessage, usageFromWire } from './usage.ts';
import type { Usage } from './types.ts';

test('plain usage', () => {
  assert.deepEqual(usageFromWire({ input_tokens: 12, output_tokens: 34 }), {
    input: 12, output: 34, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0,
  });
});

test('cache breakdown splits writes into 5m and 1h', () => {
  const u: Usage = {
    input_tokens: 5,
    output_tokens: 7,
    cache_read_input_tokens: 1000,
    cache_creation_input_tokens: 300,
    cache_creation: { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 200 },
  };
  assert.deepEqual(usageFromWire(u), { input: 5, output: 7, cacheRead: 1000, cacheWrite5m: 100, cacheWrite1h: 200 });
});

test('only cache_creation_input_tokens: all of it is 5m', () => {
  assert.deepEqual(usageFromWire({ input_tokens: 1, output_tokens: 1, cache_creation_input_tokens: 250 }), {
    input: 1, output: 1, cacheRead: 0, cacheWrite5m: 250, cacheWrite1h: 0,
  });
  // a null or empty breakdown is no breakdown
  assert.equal(usageFromWire({ cache_creation_input_tokens: 250, cache_creation: null }).cacheWrite5m, 250);
  assert.equal(usageFromWire({ cache_creation_input_tokens: 250, cache_creation: {} }).cacheWrite5m, 250);
});

test('breakdown without total, and total above the breakdown sum (excess is 5m)', () => {
  assert.deepEqual(usageFromWire({ cache_creation: { ephemeral_1h_input_tokens: 40 } }), {
    input: 0, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 40,
  });
  const u = usageFromWire({
    cache_creation_input_tokens: 150,
    cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 100 },
  });
  assert.equal(u.cacheWrite5m, 50);
  assert.equal(u.cacheWrite1h, 100);
});

test('missing, null, negative, fractional and non-number counts are 0', () => {
  const zero = { input: 0, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 };
  assert.deepEqual(usageFromWire({}), zero);
  assert.deepEqual(usageFromWire(null), zero);
  assert.deepEqual(usageFromWire(undefined), zero);
  assert.deepEqual(
    usageFromWire({
      input_tokens: -1,
      output_tokens: 2.5,
      cache_read_input_tokens: null,
      cache_creation_input_tokens: Number.NaN,
      cache_creation: { ephemeral_5m_input_tokens: -3, ephemeral_1h_input_tokens: Infinity },
    }),
    zero,
  );
  assert.deepEqual(usageFromWire(JSON.parse('{"input_tokens":"12","output_tokens":true}')), zero);
});

test('tally: reports merge by max per field; absent and null keep the earlier value', () => {
  const t = new UsageTally();
  t.add({ input_tokens: 10, output_tokens: 1, cache_read_input_tokens: 500, service_tier: 'standard' });
  t.add({ input_tokens: null, output_tokens: 250, cache_creation_input_tokens: 30 });
  assert.deepEqual(t.wire(), {
    input_tokens: 10, output_tokens: 250, cache_read_input_tokens: 500, cache_creation_input_tokens: 30, service_tier: 'standard',
  });
  assert.deepEqual(t.usage(), { input: 10, output: 250, cacheRead: 500, cacheWrite5m: 30, cacheWrite1h: 0 });
  assert.deepEqual([...t.anomalies], []);
});

test('lower cumulative count (item 6): the larger is kept, per class, and flagged count_decreased', () => {
  const t = new UsageTally();
  t.add({ input_tokens: 1200, output_tokens: 1, cache_read_input_tokens: 3000 });
  t.add({ input_tokens: 0, output_tokens: 50, cache_read_input_tokens: 0 });
  assert.deepEqual(t.usage(), { input: 1200, output: 50, cacheRead: 3000, cacheWrite5m: 0, cacheWrite1h: 0 });
  assert.deepEqual([...t.anomalies], ['count_decreased']);
});

test('cache breakdown merges per field: a later total without breakdown keeps the split, its excess is 5m', () => {
  const t = new UsageTally();
  t.add({ output_tokens: 1, cache_creation_input_tokens: 300, cache_creation: { ephemeral_5m_input_tokens: 200, ephemeral_1h_input_tokens: 100 } });
  t.add({ output_tokens: 9, cache_creation_input_tokens: 300 });
  assert.deepEqual(t.usage(), { input: 0, output: 9, cacheRead: 0, cacheWrite5m: 200, cacheWrite1h: 100 });
  t.add({ output_tokens: 9, cache_creation_input_tokens: 500 });
  assert.deepEqual(t.usage(), { input: 0, output: 9, cacheRead: 0, cacheWrite5m: 400, cacheWrite1h: 100 });
  assert.deepEqual([...t.anomalies], []);
});

test('invalid counts (negative, string, NaN, 1e20, fraction, above UInt32) are ignored, the earlier value kept, flagged invalid_count', () => {
  for (const bad of [-5, '12', Number.NaN, 1e20, 2.5, MAX_TOKEN_COUNT + 1, Infinity, true, {}]) {
    const t = new UsageTally();
    t.add({ input_tokens: 500, output_tokens: 1 });
    t.add({ output_tokens: bad });
    assert.deepEqual(t.usage(), { input: 500, output: 1, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 }, String(bad));
    assert.deepEqual([...t.anomalies], ['invalid_count'], String(bad));
  }
  // the largest storable count is a count
  const t = new UsageTally();
  t.add({ output_tokens: MAX_TOKEN_COUNT });
  assert.equal(t.usage().output, MAX_TOKEN_COUNT);
  assert.deepEqual([...t.anomalies], []);
});

test('a null or missing output_tokens, a non-object usage or cache_creation is invalid_count', () => {
  const t = new UsageTally();
  t.add({ input_tokens: 500, output_tokens: 3 });
  t.add({ output_tokens: null });
  assert.equal(t.usage().output, 3);
  assert.deepEqual([...t.anomalies], ['invalid_count']);
  for (const report of [{ input_tokens: 1 }, 'usage', null, [1], { output_tokens: 1, cache_creation: 7 }]) {
    const u = new UsageTally();
    u.add(report);
    assert.deepEqual([...u.anomalies], ['invalid_count'], JSON.stringify(report));
  }
  // input_tokens null is normal in message_delta
  const d = new UsageTally();
  d.add({ input_tokens: 5, output_tokens: 1 });
  d.add({ input_tokens: null, output_tokens: 2, cache_read_input_tokens: null });
  assert.deepEqual([...d.anomalies], []);
  assert.equal(d.hasCounts, true);
  assert.equal(new UsageTally().hasCounts, false);
});

test('readMessageUsage: JSON messages need input and output counts; a bad one is 0 and flagged', () => {
  assert.deepEqual(readMessageUsage({ type: 'message', usage: { input_tokens: 800, output_tokens: 120 } }), {
    usage: { input: 800, output: 120, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 }, anomalies: [],
  });
  assert.deepEqual(readMessageUsage({ type: 'message', usage: { input_tokens: 800, output_tokens: -5 } }), {
    usage: { input: 800, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 }, anomalies: ['invalid_count'],
  });
  assert.deepEqual(readMessageUsage({ type: 'message', usage: { input_tokens: 800, output_tokens: null } })?.anomalies, ['invalid_count']);
  assert.deepEqual(readMessageUsage({ type: 'message', usage: { output_tokens: 1 } })?.anomalies, ['invalid_count']);
  assert.equal(readMessageUsage({ type: 'message' }), null);
  assert.equal(readMessageUsage({ type: 'message', usage: 'x' }), null);
  assert.equal(readMessageUsage([]), null);
});

test('usageFromWire: counts above UInt32 are 0', () => {
  assert.equal(usageFromWire({ input_tokens: MAX_TOKEN_COUNT + 1, output_tokens: 1e20 }).input, 0);
  assert.equal(usageFromWire({ input_tokens: MAX_TOKEN_COUNT }).input, MAX_TOKEN_COUNT);
});

test('usageFromMessage', () => {
  assert.deepEqual(usageFromMessage({ type: 'message', usage: { input_tokens: 3, output_tokens: 4 } }), {
    input: 3, output: 4, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0,
  });
  assert.equal(usageFromMessage({ type: 'error', error: {} }), null);
  assert.equal(usageFromMessage('nope'), null);
});

test('cache-write breakdown that moves between reports: never above the largest total, split as the latest report that gave it', () => {
  const t = new UsageTally();
  t.add({ output_tokens: 1, cache_creation_input_tokens: 1000, cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 0 } });
  t.add({ output_tokens: 40, cache_creation_input_tokens: 1000, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 } });
  // 1000 tokens, all 1h (the latest split of the largest total), not 1000 + 1000
  assert.deepEqual(t.usage(), { input: 0, output: 40, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 1000 });
  assert.deepEqual([...t.anomalies], []);
  // a later, larger total without a split: the latest split, excess 5m
  t.add({ output_tokens: 41, cache_creation_input_tokens: 1500 });
  assert.deepEqual(t.usage(), { input: 0, output: 41, cacheRead: 0, cacheWrite5m: 500, cacheWrite1h: 1000 });
  // a lower reading with another split changes nothing but is flagged
  t.add({ output_tokens: 41, cache_creation_input_tokens: 200, cache_creation: { ephemeral_5m_input_tokens: 200, ephemeral_1h_input_tokens: 0 } });
  assert.equal(t.usage().cacheWrite5m + t.usage().cacheWrite1h, 1500);
  assert.deepEqual([...t.anomalies], ['count_decreased']);
});

test('a report whose breakdown disagrees with its own total: charged as the larger reading, cache_breakdown_mismatch', () => {
  const over = new UsageTally();
  over.add({ output_tokens: 1, cache_creation_input_tokens: 0, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 } });
  assert.deepEqual(over.usage(), { input: 0, output: 1, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 1000 });
  assert.deepEqual([...over.anomalies], ['cache_breakdown_mismatch']);
  const under = readMessageUsage({
    type: 'message',
    usage: { input_tokens: 1, output_tokens: 1, cache_creation_input_tokens: 50_000, cache_creation: { ephemeral_5m_input_tokens: 10, ephemeral_1h_input_tokens: 0 } },
  });
  assert.deepEqual(under, { usage: { input: 1, output: 1, cacheRead: 0, cacheWrite5m: 50_000, cacheWrite1h: 0 }, anomalies: ['cache_breakdown_mismatch'] });
  // agreeing readings are not flagged
  const ok = new UsageTally();
  ok.add({ output_tokens: 1, cache_creation_input_tokens: 30, cache_creation: { ephemeral_5m_input_tokens: 10, ephemeral_1h_input_tokens: 20 } });
  assert.deepEqual([...ok.anomalies], []);
});

test('server_tool_use counts (web searches, fetches) merge by max like token counts: lower is count_decreased, bad is invalid_count', () => {
  const t = new UsageTally();
  t.add({ output_tokens: 1, server_tool_use: { web_search_requests: 2 } });
  t.add({ output_tokens: 5, server_tool_use: { web_search_requests: 3, web_fetch_requests: 1 } });
  t.add({ output_tokens: 6, server_tool_use: { web_search_requests: 1, web_fetch_requests: -4 } });
  assert.deepEqual(t.serverToolUse(), { web_search_requests: 3, web_fetch_requests: 1 });
  assert.deepEqual(t.wire().server_tool_use, { web_search_requests: 3, web_fetch_requests: 1 });
  assert.deepEqual([...t.anomalies].sort(), ['count_decreased', 'invalid_count']);
  // server tool units alone are usage: a message that reported only searches is metered
  const only = new UsageTally();
  only.add({ server_tool_use: { web_search_requests: 1 } }, []);
  assert.equal(only.hasCounts, true);
});

test('pricing labels: service_tier, inference_geo, speed kept when short printable text, else invalid_label and ignored', () => {
  const t = new UsageTally();
  t.add({ output_tokens: 1, service_tier: 'batch', inference_geo: 'us', speed: 'fast' });
  assert.deepEqual(t.labels(), { service_tier: 'batch', inference_geo: 'us', speed: 'fast' });
  const bad = new UsageTally();
  bad.add({ output_tokens: 1, service_tier: 'x'.repeat(65), inference_geo: 'u\ns', speed: 7 });
  assert.deepEqual(bad.labels(), { service_tier: null, inference_geo: null, speed: null });
  assert.deepEqual([...bad.anomalies], ['invalid_label']);
});

test('usage.iterations: each entry validated like a report; the model is kept; a bad list or more than 64 entries is invalid_label and ignored', () => {
  const t = new UsageTally();
  t.add({
    input_tokens: 23000, output_tokens: 1000,
    iterations: [
      { type: 'compaction', input_tokens: 180000, output_tokens: 3500 },
      { type: 'advisor_message', model: 'claude-haiku-4-5', input_tokens: 500, output_tokens: 50, cache_read_input_tokens: -1 },
    ],
  });
  assert.deepEqual(t.iterations(), [
    { type: 'compaction', model: null, usage: { input: 180000, output: 3500, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 }, serverToolUse: {} },
    { type: 'advisor_message', model: 'claude-haiku-4-5', usage: { input: 500, output: 50, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 }, serverToolUse: {} },
  ]);
  assert.deepEqual([...t.anomalies], ['invalid_count']);
  for (const bad of ['nope', [{ type: 'message', model: 'm\u0000' }], [{ input_tokens: 1 }], Array.from({ length: 65 }, () => ({ type: 'message' }))]) {
    const b = new UsageTally();
    b.add({ output_tokens: 1, iterations: bad });
    assert.equal(b.iterations(), null, JSON.stringify(bad).slice(0, 40));
    assert.deepEqual([...b.anomalies], ['invalid_label']);
  }
  // a later, shorter list never replaces a longer one
  const s = new UsageTally();
  s.add({ output_tokens: 1, iterations: [{ type: 'message' }, { type: 'compaction' }] });
  s.add({ output_tokens: 2, iterations: [{ type: 'message' }] });
  assert.equal(s.iterations()!.length, 2);
  assert.deepEqual([...s.anomalies], ['count_decreased']);
});

test('an unknown numeric usage field is tallied (recorded as unpriced by the gateway); hostile names and more than 16 are invalid_label', () => {
  const t = new UsageTally();
  t.add({ output_tokens: 1, hologram_units: 3 });
  t.add({ output_tokens: 1, hologram_units: 2 });
  assert.deepEqual(t.otherCounts(), { hologram_units: 3 });
  assert.deepEqual([...t.anomalies], ['count_decreased']);
  const h = new UsageTally();
  const many: Record<string, number> = { output_tokens: 1, ['bad name']: 1, ['x'.repeat(65)]: 1 };
  for (let i = 0; i < 20; i++) many[`f${i}`] = i;
  h.add(many);
  assert.equal(Object.keys(h.otherCounts()).length, 16);
  assert.deepEqual([...h.anomalies], ['invalid_label']);
});

test('readMessage: serving model, stop_reason and whether any output was produced (a refusal with empty content has none)', () => {
  const r = readMessage({ type: 'message', model: 'claude-haiku-4-5-20251001', stop_reason: 'refusal', content: [], usage: { input_tokens: 10, output_tokens: 0 } })!;
  assert.deepEqual([r.model, r.stopReason, r.outputSeen], ['claude-haiku-4-5-20251001', 'refusal', false]);
  const t = readMessage({ type: 'message', model: 'x'.repeat(257), stop_reason: 'end_turn', content: [{ type: 'text', text: 'hi' }], usage: { input_tokens: 1, output_tokens: 1 } })!;
  assert.deepEqual([t.model, t.outputSeen, t.anomalies], [null, true, ['invalid_label']]);
});

test('message_start output is a placeholder: the final message_delta output wins even when lower (0), no count_decreased; input still only grows', () => {
  const t = new UsageTally();
  t.add({ input_tokens: 0, output_tokens: 1, cache_read_input_tokens: 1 }, ['output_tokens'], true);
  t.add({ output_tokens: 0 });
  assert.deepEqual(t.usage(), { input: 0, output: 0, cacheRead: 1, cacheWrite5m: 0, cacheWrite1h: 0 });
  assert.deepEqual([...t.anomalies], []);
  // a later delta lower than an earlier delta is still a decrease
  t.add({ output_tokens: 5 });
  t.add({ output_tokens: 3 });
  assert.equal(t.usage().output, 5);
  assert.deepEqual([...t.anomalies], ['count_decreased']);
  // a repeated message_start after a delta does not raise the delta's output
  const r = new UsageTally();
  r.add({ input_tokens: 10, output_tokens: 1 }, ['output_tokens'], true);
  r.add({ output_tokens: 0 });
  r.add({ input_tokens: 10, output_tokens: 1 }, ['output_tokens'], true);
  assert.equal(r.usage().output, 0);
  // input-side classes keep "counters only grow" even across the start/delta boundary
  const i = new UsageTally();
  i.add({ input_tokens: 100, output_tokens: 1 }, ['output_tokens'], true);
  i.add({ input_tokens: 50, output_tokens: 0 });
  assert.deepEqual([i.usage().input, i.usage().output, [...i.anomalies]], [100, 0, ['count_decreased']]);
  // an unusable final count after the placeholder: no count was given, 0, as the JSON answer reads it
  for (const bad of [-5, '200', null, 1e20, 1.5]) {
    const u = new UsageTally();
    u.add({ input_tokens: 1000, output_tokens: 1 }, ['output_tokens'], true);
    u.add({ output_tokens: bad });
    const json = readMessageUsage({ id: 'm', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: 'end_turn', usage: { input_tokens: 1000, output_tokens: bad } });
    assert.deepEqual([u.usage().output, [...u.anomalies], json!.usage.output], [0, ['invalid_count'], 0], String(bad));
    // a valid count after it still counts
    u.add({ output_tokens: 7 });
    assert.equal(u.usage().output, 7);
  }
});

test('stream with final output 0 reads the same usage as the JSON message (haiku cache_read 1, output 0)', async () => {
  const { StreamMeter } = await import('./sse.ts');
  const m = new StreamMeter();
  const frame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  m.push(frame('message_start', { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, usage: { input_tokens: 0, output_tokens: 1, cache_read_input_tokens: 1 } } }));
  m.push(frame('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 0 } }));
  m.push(frame('message_stop', { type: 'message_stop' }));
  const json = readMessageUsage({ id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: 'end_turn', usage: { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 1 } });
  assert.deepEqual(m.usage(), json!.usage);
  assert.deepEqual(m.usage(), { input: 0, output: 0, cacheRead: 1, cacheWrite5m: 0, cacheWrite1h: 0 });
  assert.deepEqual(m.anomalies, []);
});
