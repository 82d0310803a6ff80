// Issue #2 end to end: the official SDK → Tollgate (embedded: memory state, in-process log,
// chDB) → the simulator. Every money assertion is exact to the micro-credit, computed here by
// hand from the CNY catalog (¥1 = 10 credits), so a wrong price or rounding fails the test:
//   sonnet-4-0 per token: input 72, output 360, cache read 7.2, write 5m 90, write 1h 144 µcr
//     (Sonnet 4.5's prices; 4.5 reached its end of life on 2026-11-30, and the SDK warns on every
//     call naming it)
//   opus-4-6   per token: input 300, output 1500
//   haiku-4-5  per token: input 24, output 120, cache read 2.4
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { admin, customer, settledBalance, simRequests, startStack, UPSTREAM_KEY, type Stack } from '../support/tollgate.ts';
import { flatUsage } from '../support/events.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

const user = (text: string) => [{ role: 'user' as const, content: text }];

async function usageEvent(requestId: string | null | undefined) {
  assert.ok(requestId, 'response carries a request-id');
  await stack.tollgate.drain();
  const e = await stack.tollgate.warehouse.getUsageEvent(requestId);
  assert.ok(e, `usage event ${requestId} is in the warehouse`);
  return flatUsage(e);
}

describe('metering, exact to the micro-credit', () => {
  test('non-streaming: every token class priced, one usage event, balance debited', async () => {
    const c = await customer(stack.url, 10);
    // max_tokens 512: the hold (≥ 512 × 360) must cover the simulated usage, which is far above
    // what this short body could really cost; a cost above the hold is capped (cost_over_bound).
    const msg = await c.client.messages.create({
      model: 'claude-sonnet-4-0', max_tokens: 512,
      messages: user('hello [[sim input=1000 output=10 cache_read=2000 cache_write_5m=300 cache_write_1h=100]]'),
    });
    assert.equal(msg.type, 'message');
    assert.equal(msg.usage.input_tokens, 1000);
    const e = await usageEvent(msg._request_id);
    // 1000×72 + 10×360 + 2000×7.2 + 300×90 + 100×144
    assert.equal(e.cost_micros, '131400');
    assert.deepEqual(
      [e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_5m_tokens, e.cache_write_1h_tokens],
      [1000, 10, 2000, 300, 100],
    );
    assert.equal(e.model, 'claude-sonnet-4-0');
    assert.equal(e.catalog_model, 'claude-sonnet-4-20250514');
    assert.equal(e.upstream_model, 'claude-sonnet-4-20250514');
    assert.equal(e.status, 'ok');
    assert.equal(e.stream, false);
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 131_400n);
  });

  test('streaming: usage read on the side from message_start and the cumulative message_delta', async () => {
    const c = await customer(stack.url, 10);
    // max_tokens 256: a hold above the simulated cost (see the first test)
    const stream = c.client.messages.stream({ model: 'claude-opus-4-6', max_tokens: 256, messages: user('stream please [[sim input=500 output=40]]') });
    const final = await stream.finalMessage();
    assert.equal(final.usage.output_tokens, 40);
    const e = await usageEvent(stream.request_id);
    assert.equal(e.cost_micros, String(500 * 300 + 40 * 1500));
    assert.equal(e.stream, true);
    assert.ok(e.ttft_ms !== null && e.ttft_ms >= 0);
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 210_000n);
  });

  test('cost is rounded up once per request, after summing the classes', async () => {
    const c = await customer(stack.url, 1);
    const msg = await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 8, messages: user('[[sim input=1 output=1 cache_read=1]]') });
    const e = await usageEvent(msg._request_id);
    assert.equal(e.cost_micros, '147'); // 24 + 120 + 2.4 = 146.4 → 147
    assert.equal(await settledBalance(stack, c.accountId), 1_000_000n - 147n);
  });

  test('concurrent mixed traffic on one account: balance drop = Σ costs = warehouse total, each id once', async () => {
    const c = await customer(stack.url, 50);
    const n = 30;
    const ids = await Promise.all(Array.from({ length: n }, async (_, i) => {
      const input = 100 + i;
      const output = 5 + (i % 7);
      const params = { model: 'claude-sonnet-4-0', max_tokens: 32, messages: user(`req ${i} [[sim input=${input} output=${output}]]`) };
      if (i % 2 === 0) {
        const s = c.client.messages.stream(params);
        await s.finalMessage();
        return { id: s.request_id, cost: BigInt(input * 72 + output * 360) };
      }
      const m = await c.client.messages.create(params);
      return { id: m._request_id, cost: BigInt(input * 72 + output * 360) };
    }));
    const expected = ids.reduce((s, x) => s + x.cost, 0n);
    assert.equal(await settledBalance(stack, c.accountId), 50_000_000n - expected);
    const totals = await stack.tollgate.warehouse.usageTotals({ accountId: c.accountId });
    assert.equal(totals.costMicros, expected);
    assert.equal(totals.requests, n);
    const stored = await stack.tollgate.warehouse.usageEventIds({ accountId: c.accountId });
    assert.deepEqual([...stored].sort(), ids.map((x) => x.id!).sort());
    assert.deepEqual(await stack.tollgate.warehouse.duplicateUsageIds(), []);
  });
});

describe('protocol pass-through', () => {
  test('tools, and a -thinking variant that turns thinking on upstream', async () => {
    const c = await customer(stack.url, 10);
    const tools = [{ name: 'get_weather', description: 'w', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] } }];
    const msg = await c.client.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 256, tools, tool_choice: { type: 'any' }, messages: user('weather?') });
    assert.equal(msg.stop_reason, 'tool_use');
    assert.equal(msg.content.at(-1)?.type, 'tool_use');

    const t = await c.client.messages.create({ model: 'claude-sonnet-4-0-thinking', max_tokens: 4096, messages: user('think') });
    assert.equal(t.content[0]?.type, 'thinking');
    const [seen] = await simRequests(stack.simUrl);
    assert.equal(seen!.body.model, 'claude-sonnet-4-20250514');
    assert.deepEqual(seen!.body.thinking, { type: 'enabled', budget_tokens: 2048 });
    const e = await usageEvent(t._request_id);
    assert.equal(e.model, 'claude-sonnet-4-0-thinking');
  });

  test('vision: an image block passes through and its tokens are billed; /api/v1/messages is the same API', async () => {
    const c = await customer(stack.url, 10);
    const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
    // The simulator bills an image as the API does, ⌈w×h/750⌉: this 1×1 PNG is 1 token, and
    // 'what is this? [[sim output=2]]' is 30 characters → 8: 9 input tokens.
    const msg = await c.client.messages.create({
      model: 'claude-sonnet-4-0', max_tokens: 256,
      messages: [{ role: 'user', content: [
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } },
        { type: 'text', text: 'what is this? [[sim output=2]]' },
      ] }],
    });
    const [seen] = await simRequests(stack.simUrl);
    const content = (seen!.body.messages as Array<{ content: Array<{ type: string; source?: { data: string } }> }>)[0]!.content;
    assert.equal(content[0]!.type, 'image');
    assert.equal(content[0]!.source!.data, png);
    assert.equal(msg.usage.input_tokens, 9);
    const e = await usageEvent(msg._request_id);
    assert.equal(e.cost_micros, '1368'); // 9 × 72 + 2 × 360 = 648 + 720

    const res = await fetch(`${stack.url}/api/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${c.secret}` },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 4, messages: user('[[sim input=1 output=1]]') }),
    });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { type: string }).type, 'message');
  });

  test('an id newer than the price list maps to a priced model (claude-opus-5-5 → opus 4.6)', async () => {
    const c = await customer(stack.url, 10);
    const msg = await c.client.messages.create({ model: 'claude-opus-5-5', max_tokens: 16, messages: user('[[sim input=10 output=2]]') });
    const e = await usageEvent(msg._request_id);
    assert.equal(e.catalog_model, 'claude-opus-4-6');
    assert.equal(e.cost_micros, String(10 * 300 + 2 * 1500));
    const [seen] = await simRequests(stack.simUrl);
    assert.equal(seen!.body.model, 'claude-opus-4-6');
  });

  test('Claude Code shaped 80 KB body, ?beta=true and anthropic-* headers reach the upstream untouched; credentials do not', async () => {
    const c = await customer(stack.url, 100);
    const body = {
      // adaptive thinking exists on 4.6+ models only; the simulator rejects it elsewhere, as the API does
      model: 'claude-sonnet-4-6', max_tokens: 1024, stream: false,
      system: [{ type: 'text', text: 'You are Claude Code.', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'x'.repeat(80_000) }] }],
      thinking: { type: 'adaptive' },
      context_management: { edits: [{ type: 'clear_thinking_20251015', keep: 'all' }] },
      output_config: { effort: 'high' },
      metadata: { user_id: 'user_abc_account__session_1' },
      tools: [], an_unknown_future_field: { nested: [1, 2, 3] },
    };
    const res = await fetch(`${stack.url}/v1/messages?beta=true`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json', 'x-api-key': c.secret, cookie: 'session=secret',
        'anthropic-version': '2023-06-01', 'anthropic-beta': 'claude-code-20250219,context-management-2025-06-27',
        'anthropic-dangerous-direct-browser-access': 'true',
      },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, 200);
    await res.json();
    const [seen] = await simRequests(stack.simUrl);
    assert.equal(seen!.url, '/v1/messages?beta=true');
    assert.deepEqual(seen!.body, body);
    assert.equal(seen!.headers['anthropic-beta'], 'claude-code-20250219,context-management-2025-06-27');
    assert.equal(seen!.headers['anthropic-dangerous-direct-browser-access'], 'true');
    assert.equal(seen!.headers['x-api-key'], UPSTREAM_KEY);
    assert.equal(seen!.headers.cookie, undefined);
    assert.equal(seen!.headers.authorization, undefined);
  });

  test('count_tokens is forwarded and free; models and credits answer for the caller', async () => {
    const c = await customer(stack.url, 3);
    const r = await c.client.messages.countTokens({ model: 'claude-sonnet-4-0', messages: user('count me') });
    assert.ok(r.input_tokens > 0);
    const models = await c.client.models.list();
    const ids = models.data.map((m) => m.id);
    assert.ok(ids.includes('claude-sonnet-4-20250514'));
    assert.ok(ids.includes('claude-opus-4-6-thinking'));
    const credits = await fetch(`${stack.url}/v1/credits`, { headers: { authorization: `Bearer ${c.secret}` } });
    const json = (await credits.json()) as { account_id: string; balance_micro_credits: string };
    assert.equal(json.account_id, c.accountId);
    assert.equal(json.balance_micro_credits, '3000000');
    assert.equal(await settledBalance(stack, c.accountId), 3_000_000n);
  });
});

describe('errors in Anthropic shape, and failures charge nothing', () => {
  const expectError = async (p: Promise<unknown>, status: number, type: string, code: string) => {
    await assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof Anthropic.APIError, String(err));
      assert.equal(err.status, status);
      const e = (err.error as { error: { type: string; code: string } }).error;
      assert.equal(e.type, type);
      assert.equal(e.code, code);
      return true;
    });
  };

  test('401 bad key, 400 missing field, 404 unknown model, 402 no credit', async () => {
    const bad = new Anthropic({ apiKey: 'sk-not-a-real-key-000000000', baseURL: stack.url, maxRetries: 0, logLevel: 'error' });
    await expectError(bad.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 8, messages: user('x') }), 401, 'authentication_error', 'invalid_api_key');
    const c = await customer(stack.url, 1);
    // max_tokens may be omitted (DEFAULT_MAX_TOKENS, issue 8); messages may not.
    await expectError(c.client.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 8 } as never), 400, 'invalid_request_error', 'invalid_request');
    await expectError(c.client.messages.create({ model: 'gpt-4o', max_tokens: 8, messages: user('x') }), 404, 'not_found_error', 'model_not_found');
    const broke = await customer(stack.url, 0);
    await expectError(broke.client.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 8, messages: user('x') }), 402, 'billing_error', 'insufficient_credits');
    await expectError(broke.client.messages.countTokens({ model: 'claude-sonnet-4-0', messages: user('x') }), 402, 'billing_error', 'insufficient_credits');
  });

  test('a balance that went negative gets 402', async () => {
    const c = await customer(stack.url, 1);
    await admin(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: '-1.5', kind: 'adjustment', reference: 'chargeback' });
    await expectError(c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1, messages: user('x') }), 402, 'billing_error', 'insufficient_credits');
    assert.equal(await settledBalance(stack, c.accountId), -500_000n);
  });

  test('invalid JSON → 400, body over 32 MB → 413', async () => {
    const c = await customer(stack.url, 1);
    const post = (body: string) => fetch(`${stack.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': c.secret }, body });
    const r1 = await post('{"model": ');
    assert.equal(r1.status, 400);
    assert.equal(((await r1.json()) as { error: { code: string } }).error.code, 'invalid_json');
    const r2 = await post(JSON.stringify({ model: 'claude-sonnet-4-0', max_tokens: 1, messages: [{ role: 'user', content: 'x'.repeat(33 * 1024 * 1024) }] }));
    assert.equal(r2.status, 413);
    const j2 = (await r2.json()) as { type: string; error: { type: string; code: string }; request_id: string };
    assert.equal(j2.error.type, 'request_too_large');
    assert.match(j2.request_id, /^req_/);
  });

  test('upstream 529 and 429 are passed on; nothing is charged', async () => {
    const c = await customer(stack.url, 2);
    await expectError(c.client.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 8, messages: user('[[sim fault=overloaded]]') }), 529, 'overloaded_error', 'overloaded');
    await assert.rejects(c.client.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 8, messages: user('[[sim status=429]]') }), Anthropic.RateLimitError);
    assert.equal(await settledBalance(stack, c.accountId), 2_000_000n);
    const totals = await stack.tollgate.warehouse.usageBreakdown({ accountId: c.accountId, groupBy: 'status' });
    assert.deepEqual(totals.map((t) => [t.group, t.requests, t.costMicros]), [['upstream_error', 2, 0n]]);
  });

  test('upstream unreachable → 503 upstream_error, no charge', async () => {
    const { startStack: _ } = { startStack };
    const c = await customer(stack.url, 2);
    const saved = stack.env.UPSTREAM_URL;
    // A second gateway on the same state whose upstream refuses connections.
    const { registerGateway } = await import('@tollgate/gateway');
    const { createHttpServer } = await import('@tollgate/http');
    const app = createHttpServer({ bodyLimitBytes: 1024 * 1024 });
    const t = stack.tollgate;
    registerGateway(app, {
      catalog: t.catalog, keys: t.keys, balances: t.balances, log: t.log, keyHashSecret: (await import('node:fs')).readFileSync(`${stack.dataDir}/key-hash-secret`, 'utf8').trim(),
      upstream: { url: 'http://127.0.0.1:1', apiKey: 'x', timeoutMs: 2000 }, holdTtlMs: 60_000, streamErrorBilling: 'refund',
      bodyLimitBytes: 1024 * 1024, gatewayId: 'test',
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const client = new Anthropic({ apiKey: c.secret, baseURL: url, maxRetries: 0, logLevel: 'error' });
      await expectError(client.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 8, messages: user('x') }), 503, 'api_error', 'upstream_error');
    } finally {
      await app.close();
    }
    assert.equal(saved, stack.env.UPSTREAM_URL);
    assert.equal(await settledBalance(stack, c.accountId), 2_000_000n);
  });

  test('SSE error after HTTP 200, and a dropped upstream stream: the client sees an error, nothing is charged', async () => {
    const c = await customer(stack.url, 2);
    const s1 = c.client.messages.stream({ model: 'claude-sonnet-4-0', max_tokens: 64, messages: user('[[sim output=30 fault=sse_error_after:3]]') });
    await assert.rejects(s1.finalMessage());
    const s2 = c.client.messages.stream({ model: 'claude-sonnet-4-0', max_tokens: 64, messages: user('[[sim output=30 fault=drop_after:3]]') });
    await assert.rejects(s2.finalMessage());
    assert.equal(await settledBalance(stack, c.accountId), 2_000_000n);
    const byStatus = await stack.tollgate.warehouse.usageBreakdown({ accountId: c.accountId, groupBy: 'status' });
    assert.deepEqual(byStatus.map((t) => [t.group, t.requests, t.costMicros]).sort(), [['stream_error', 1, 0n], ['upstream_error', 1, 0n]]);
  });

  test('client disconnects mid-stream: billed the usage the upstream reports for the whole message', async () => {
    const c = await customer(stack.url, 5);
    const ac = new AbortController();
    const res = await fetch(`${stack.url}/v1/messages`, {
      method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json', 'x-api-key': c.secret },
      body: JSON.stringify({ model: 'claude-opus-4-6', max_tokens: 256, stream: true, messages: user('[[sim input=100 output=200 tps=200]]') }),
    });
    const requestId = res.headers.get('request-id');
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort(); // the stream runs 1 s (200 tokens at 200/s); at 2,000/s it ran 100 ms and a loaded CI run saw it end before the abort (status ok)
    // 100×300 + 200×1500: the upstream finished the message, so that is what it bills.
    assert.equal(await settledBalance(stack, c.accountId), 5_000_000n - 330_000n);
    const e = await usageEvent(requestId);
    assert.equal(e.status, 'client_disconnect');
    assert.equal(e.cost_micros, '330000');
  });
});

describe('control API', () => {
  test('a revoked key is refused at once; a repeated credit reference credits once', async () => {
    const c = await customer(stack.url, 1);
    await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 4, messages: user('[[sim input=1 output=1]]') });
    const del = await admin(stack.url, 'DELETE', `/admin/v1/keys/${c.keyId}`);
    assert.equal(del.status, 200);
    await assert.rejects(c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 4, messages: user('x') }), Anthropic.AuthenticationError);

    const first = await admin(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 2.5, reference: 'invoice-7' });
    const again = await admin(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 2.5, reference: 'invoice-7' });
    const clash = await admin(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 3, reference: 'invoice-7' });
    assert.equal(first.status, 201);
    assert.equal(again.status, 200);
    assert.equal(again.json.duplicate, true);
    assert.equal(clash.status, 409);
    // Racing grants under one reference with different amounts: exactly one is credited, and
    // every request that did not credit says so (409 or duplicate), none claims success falsely.
    const race = await Promise.all([7, 8, 9].map((credits) =>
      admin(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits, reference: 'race' })));
    const created = race.filter((r) => r.status === 201);
    assert.equal(created.length, 1);
    const winner = [7, 8, 9][race.indexOf(created[0]!)]!;
    assert.ok(race.every((r) => r.status === 201 || r.status === 409 || r.json.duplicate === true));
    assert.equal(await settledBalance(stack, c.accountId), 1_000_000n + 2_500_000n + BigInt(winner) * 1_000_000n - 144n);
  });

  test('admin endpoints need the admin token; customer keys are not admin tokens', async () => {
    const c = await customer(stack.url, 1);
    const r = await fetch(`${stack.url}/admin/v1/accounts`, { headers: { authorization: `Bearer ${c.secret}` } });
    assert.equal(r.status, 401);
    const bad = await admin(stack.url, 'POST', '/admin/v1/accounts', { nme: 'typo' });
    assert.equal(bad.status, 400);
    const missing = await admin(stack.url, 'GET', '/admin/v1/accounts/acct_nope');
    assert.equal(missing.status, 404);
  });
});

describe('restart', () => {
  test('balances, keys and usage survive a restart exactly', async () => {
    const c = await customer(stack.url, 7);
    await c.client.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 16, messages: user('[[sim input=10 output=3]]') });
    const before = await settledBalance(stack, c.accountId);
    assert.equal(before, 7_000_000n - (720n + 1080n));
    const totalsBefore = await stack.tollgate.warehouse.usageTotals({});
    const balancesBefore = await stack.tollgate.balances.balances();

    await stack.restart();

    assert.equal(await settledBalance(stack, c.accountId), before);
    assert.deepEqual(await stack.tollgate.warehouse.usageTotals({}), totalsBefore);
    const after = await stack.tollgate.balances.balances();
    for (const [id, b] of balancesBefore) assert.equal(after.get(id) ?? 0n, b, id);
    const client = new Anthropic({ apiKey: c.secret, baseURL: stack.url, maxRetries: 0, logLevel: 'error' });
    await client.messages.create({ model: 'claude-sonnet-4-0', max_tokens: 16, messages: user('[[sim input=10 output=3]]') });
    assert.equal(await settledBalance(stack, c.accountId), before - 1800n);
  });
});
