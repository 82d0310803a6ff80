// Issue 7 end to end: the gateway prices every dimension the upstream reports (web searches,
// US-only inference, batch, fast mode, long-context tier, fallback / advisor iterations,
// refusals, unpriced fields), per account price list, under the price version in force when the
// request arrived (reload by SIGHUP or file change), through the official SDK, JSON and SSE,
// over both shipped catalogs. Every amount is hand-computed in µc (cny: ¥1 = 10 credits).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { bundledCatalogPath } from '@tollgate/pricing';
import { admin, customer, settledBalance, simRequests, startStack, type Stack } from '../support/tollgate.ts';
import { flatUsage } from '../support/events.ts';

const user = (text: string) => [{ role: 'user' as const, content: text }];
const WEB_SEARCH = { type: 'web_search_20250305', name: 'web_search', max_uses: 5 };

async function usageEvent(stack: Stack, requestId: string | null | undefined) {
  assert.ok(requestId, 'response carries a request-id');
  await stack.tollgate.drain();
  const e = await stack.tollgate.warehouse.getUsageEvent(requestId);
  assert.ok(e, `usage event ${requestId} is in the warehouse`);
  return flatUsage(e);
}

/** Reads a whole SSE stream through the SDK; returns the request id. */
async function streamed(client: Anthropic, params: Record<string, unknown>): Promise<string> {
  const { data: stream, response } = await client.messages
    .create({ ...params, stream: true } as unknown as Anthropic.MessageCreateParamsStreaming).withResponse();
  for await (const _ of stream) { /* drain */ }
  return response.headers.get('request-id') ?? '';
}

// A server tool lets the upstream read up to the context window per loop step (README, holds):
// web search accounts hold (1 + Σ max_uses, at most 10) steps × 200,000 tokens at the dearest
// input-side price of the tier those tokens reach.

describe('cny catalog: every dimension priced', () => {
  let stack: Stack;
  before(async () => { stack = await startStack(); });
  after(async () => { await stack.close(); });

  test('web search: 3 searches + input 2,000 / output 300 on sonnet-4-5 = 972,000 µc (JSON and stream)', async () => {
    const c = await customer(stack.url, 400);
    const msg = await c.client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 512, tools: [WEB_SEARCH] as never,
      messages: user('news [[sim input=2000 output=300 web_search=3]]'),
    });
    // 2,000×72 + 300×360 + 3×240,000 = 144,000 + 108,000 + 720,000
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.v, e.cost_micros, e.quantities.web_search_requests, e.unit_prices.web_search_requests, e.price_list],
      [2, '972000', 3, '240000', 'default']);
    const id = await streamed(c.client, {
      model: 'claude-sonnet-4-5', max_tokens: 512, tools: [WEB_SEARCH], messages: user('news [[sim input=2000 output=300 web_search=3]]'),
    });
    assert.equal((await usageEvent(stack, id)).cost_micros, '972000');
    assert.equal(await settledBalance(stack, c.accountId), 400_000_000n - 2n * 972_000n);
  });

  test('web search without max_uses: the catalog bound (50) is held and sent upstream as max_uses', async () => {
    // 10 steps × 200,000 tokens reach the long-context tier: 2,000,000 × 288 + 50 searches × 240,000 + …
    const c = await customer(stack.url, 1000);
    await fetch(`${stack.simUrl}/_sim/requests`, { method: 'DELETE' });
    const msg = await c.client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 64, tools: [{ type: 'web_search_20250305', name: 'web_search' }] as never,
      messages: user('news [[sim input=100 output=10 web_search=1]]'),
    });
    const [seen] = await simRequests(stack.simUrl, 1);
    assert.deepEqual((seen!.body.tools as Array<Record<string, unknown>>)[0], { type: 'web_search_20250305', name: 'web_search', max_uses: 50 });
    // 100×72 + 10×360 + 240,000 = 7,200 + 3,600 + 240,000
    assert.equal((await usageEvent(stack, msg._request_id)).cost_micros, '250800');
  });

  test('web searches above the declared max_uses: charged at max_uses, flagged units_over_max_uses (JSON and stream)', async () => {
    const c = await customer(stack.url, 400);
    const body = { model: 'claude-sonnet-4-5', max_tokens: 512, tools: [WEB_SEARCH], messages: user('news [[sim input=2000 output=300 web_search=60]]') };
    // max_uses 5: 2,000×72 + 300×360 + 5×240,000 = 144,000 + 108,000 + 1,200,000 (60 reported: 14,652,000)
    const msg = await c.client.messages.create(body as never) as Anthropic.Message & { _request_id?: string | null };
    const j = await usageEvent(stack, msg._request_id);
    const s = await usageEvent(stack, await streamed(c.client, body));
    for (const e of [j, s]) {
      assert.deepEqual([e.cost_micros, e.quantities.web_search_requests, e.status, e.anomalies], ['1452000', 5, 'usage_anomaly', ['units_over_max_uses']]);
    }
  });

  test('US-only inference on sonnet-4-6: input 1,000 / output 200 ×1.1 = 396,000 µc (stream)', async () => {
    const c = await customer(stack.url, 10);
    const id = await streamed(c.client, { model: 'claude-sonnet-4-6', max_tokens: 512, messages: user('hi [[sim input=1000 output=200 geo=us]]') });
    // (1,000×180 + 200×900) × 1.1 = 360,000 × 1.1
    const e = await usageEvent(stack, id);
    assert.deepEqual([e.cost_micros, e.inference_geo, e.multipliers, e.unit_prices.input], ['396000', 'us', ['us_geo'], '198000000']);
  });

  test('batch tier halves token prices: sonnet-4-5 input 1,000 / output 100 = 54,000 µc', async () => {
    const c = await customer(stack.url, 10);
    const msg = await c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 256, messages: user('x [[sim input=1000 output=100 tier=batch]]') });
    // (72,000 + 36,000) × 0.5
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.cost_micros, e.service_tier, e.multipliers], ['54000', 'batch', ['batch']]);
  });

  test('fast mode on opus-4-6 uses its own table (6×): input 1,000 / output 100 = 2,700,000 µc', async () => {
    const c = await customer(stack.url, 20);
    const msg = await c.client.messages.create({
      model: 'claude-opus-4-6', max_tokens: 256, speed: 'fast', messages: user('x [[sim input=1000 output=100 speed=fast]]'),
    } as never) as Anthropic.Message & { _request_id?: string | null };
    // 1,000×1,800 + 100×9,000 = 1,800,000 + 900,000
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.cost_micros, e.speed], ['2700000', 'fast']);
  });

  test('long-context tier: over 200,000 input tokens on sonnet-4-5 every token at the tier (input ×2, output ×1.5)', async () => {
    const c = await customer(stack.url, 500);
    const prompt = 'x '.repeat(410_000) + '[[sim input=250000 output=100]]';
    const msg = await c.client.messages.create(
      { model: 'claude-sonnet-4-5', max_tokens: 256, messages: user(prompt) },
      { headers: { 'anthropic-beta': 'context-1m-2025-08-07' } },
    );
    // 250,000×144 + 100×540 = 36,000,000 + 54,000
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.cost_micros, e.tier, e.status], ['36054000', 'long_context', 'ok']);
  });

  test('fallback: the answer served by haiku-4-5 is priced at haiku, not the model asked for', async () => {
    const c = await customer(stack.url, 10);
    const msg = await c.client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 512, messages: user('x [[sim input=1000 output=100 served_model=claude-haiku-4-5-20251001]]'),
    });
    // 1,000×24 + 100×120 = 24,000 + 12,000
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.cost_micros, e.served_model, e.catalog_model], ['36000', 'claude-haiku-4-5-20251001', 'claude-sonnet-4-5-20250929']);
  });

  test('serving models dearer than the one asked for are held, so charged in full: the body\'s fallbacks and an advisor tool\'s model', async () => {
    // an advisor tool makes a server loop: the hold covers 10 steps × 200,000 tokens plus the advisor's calls
    const c = await customer(stack.url, 500);
    // haiku asked, opus-4-6 named as a fallback and serving: 100×300 + 1,000×1,500 = 30,000 + 1,500,000
    const msg = await c.client.messages.create({
      model: 'claude-haiku-4-5', max_tokens: 1000, fallbacks: [{ model: 'claude-opus-4-6' }],
      messages: user('x [[sim input=100 output=1000 served_model=claude-opus-4-6]]'),
    } as never) as Anthropic.Message & { _request_id?: string | null };
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.cost_micros, e.status, e.anomalies ?? []], ['1530000', 'ok', []]);
    // an opus-4-6 advisor (max_uses 1) on a haiku executor: haiku 1,000×24 + 100×120 = 36,000;
    // advisor 2,000×300 + 1,500×1,500 = 600,000 + 2,250,000 = 2,850,000
    const id = await streamed(c.client, {
      model: 'claude-haiku-4-5', max_tokens: 512, tools: [{ type: 'advisor_20260301', name: 'advisor', model: 'claude-opus-4-6', max_uses: 1 }],
      messages: user('x [[sim input=3000 output=1600 iterations=message:-:1000:100,advisor_message:claude-opus-4-6:2000:1500]]'),
    });
    const a = await usageEvent(stack, id);
    assert.deepEqual([a.cost_micros, a.status, a.anomalies ?? []], ['2886000', 'ok', []]);
    assert.equal(await settledBalance(stack, c.accountId), 500_000_000n - 1_530_000n - 2_886_000n);
  });

  test('advisor iteration priced at its own model: sonnet step 108,000 + haiku advisor 18,000 = 126,000 µc (stream)', async () => {
    const c = await customer(stack.url, 10);
    const id = await streamed(c.client, {
      model: 'claude-sonnet-4-5', max_tokens: 512,
      messages: user('x [[sim input=1000 output=100 iterations=message:-:1000:100,advisor_message:claude-haiku-4-5-20251001:500:50]]'),
    });
    // message: 1,000×72 + 100×360 = 108,000; advisor: 500×24 + 50×120 = 18,000; totals 1,500 / 150
    const e = await usageEvent(stack, id);
    assert.equal(e.cost_micros, '126000');
    assert.deepEqual([e.quantities.input, e.quantities.output], [1500, 150]);
    assert.deepEqual(e.iterations.map((i) => [i.type, i.catalog_model, i.cost_micros]),
      [['message', 'claude-sonnet-4-5-20250929', '108000'], ['advisor_message', 'claude-haiku-4-5-20251001', '18000']]);
  });

  test('refusal before any output costs 0', async () => {
    const c = await customer(stack.url, 10);
    const msg = await c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 256, messages: user('x [[sim input=1000 refusal=1]]') });
    assert.equal(msg.stop_reason, 'refusal');
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.cost_micros, e.stop_reason, e.quantities.input], ['0', 'refusal', 1000]);
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n);
  });

  test('final output 0 over SSE: message_start\'s output 1 is a placeholder, the stream charges what JSON charges (3 µc; refusal ok in both)', async () => {
    const c = await customer(stack.url, 10);
    const body = { model: 'claude-haiku-4-5', max_tokens: 64, messages: user('x [[sim input=0 output=0 cache_read=1]]') };
    const msg = await c.client.messages.create(body);
    // ⌈1 × 2.4⌉ = 3 (the simulator, like the API, sends output_tokens 1 in message_start, 0 at the end)
    const j = await usageEvent(stack, msg._request_id);
    const s = await usageEvent(stack, await streamed(c.client, body));
    assert.deepEqual([j.cost_micros, j.quantities.output, j.status], ['3', 0, 'ok']);
    assert.deepEqual([s.cost_micros, s.quantities.output, s.status, s.anomalies ?? []], ['3', 0, 'ok', []]);
    const refusal = { model: 'claude-sonnet-4-5', max_tokens: 64, messages: user('x [[sim input=1000 refusal=1]]') };
    const rj = await usageEvent(stack, (await c.client.messages.create(refusal))._request_id);
    const rs = await usageEvent(stack, await streamed(c.client, refusal));
    assert.deepEqual([rj.cost_micros, rj.status, rs.cost_micros, rs.status, rs.anomalies ?? []], ['0', 'ok', '0', 'ok', []]);
  });

  test('a usage field the catalog does not price is recorded as unpriced, never silently dropped', async () => {
    const c = await customer(stack.url, 10);
    const msg = await c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 256, messages: user('x [[sim input=1000 output=100 usage_field=hologram_units:3]]') });
    const e = await usageEvent(stack, msg._request_id);
    // the priced part: 72,000 + 36,000
    assert.deepEqual([e.cost_micros, e.unpriced], ['108000', ['hologram_units']]);
  });

  test('vip price list at 0.8×: PATCH validated against the catalog, event records the list', async () => {
    const c = await customer(stack.url, 10);
    const bad = await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { price_list: 'gold' });
    assert.equal(bad.status, 400);
    assert.match(String((bad.json as { error: { message: string } }).error.message), /^price_list: "gold" is not a price list/);
    const ok = await admin<{ price_list: string }>(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { price_list: 'vip' });
    assert.deepEqual([ok.status, ok.json.price_list], [200, 'vip']);
    const msg = await c.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 256, messages: user('x [[sim input=1000 output=100]]') });
    // (72,000 + 36,000) × 0.8
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.cost_micros, e.price_list], ['86400', 'vip']);
  });

  test('an account\'s price list survives a restart (the control record carries it through the log)', async () => {
    const c = await customer(stack.url, 10);
    await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { price_list: 'vip' });
    await stack.restart();
    const view = await admin<{ price_list: string }>(stack.url, 'GET', `/admin/v1/accounts/${c.accountId}`);
    assert.equal(view.json.price_list, 'vip');
    const client = new Anthropic({ apiKey: c.secret, baseURL: stack.url, maxRetries: 0, logLevel: 'error' });
    const msg = await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 256, messages: user('x [[sim input=1000 output=100]]') });
    // (72,000 + 36,000) × 0.8
    assert.equal((await usageEvent(stack, msg._request_id)).cost_micros, '86400');
    // back to the catalog's own prices
    const reset = await admin<{ price_list: string }>(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { price_list: null });
    assert.equal(reset.json.price_list, 'default');
  });

  test('GET /v1/models carries a pricing object per model (credits per MTok, per unit, tiers, multipliers)', async () => {
    const c = await customer(stack.url, 1);
    const res = await fetch(`${stack.url}/v1/models/claude-sonnet-4-5`, { headers: { 'x-api-key': c.secret } });
    const m = (await res.json()) as { id: string; pricing: Record<string, unknown> & { per_million_tokens: Record<string, string>; per_unit: Record<string, string>; tiers: Array<{ name: string; above_input_tokens: number }> } };
    assert.equal(m.id, 'claude-sonnet-4-5-20250929');
    assert.deepEqual([m.pricing.per_million_tokens.input, m.pricing.per_million_tokens.output, m.pricing.per_unit.web_search_requests, m.pricing.currency],
      ['72', '360', '0.24', 'CNY']);
    assert.deepEqual(m.pricing.tiers.map((t) => [t.name, t.above_input_tokens]), [['long_context', 200000]]);
    const list = (await (await fetch(`${stack.url}/v1/models`, { headers: { 'x-api-key': c.secret } })).json()) as { data: Array<{ pricing?: unknown }> };
    assert.ok(list.data.length > 0 && list.data.every((x) => x.pricing !== undefined));
  });

  test('GET /v1/models shows the caller\'s own price list: a vip key sees 0.8× every price, what it is charged', async () => {
    const c = await customer(stack.url, 10);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { price_list: 'vip' })).status, 200);
    type Priced = { id: string; pricing: { price_list: string; per_million_tokens: Record<string, string>; per_unit: Record<string, string>; tiers: Array<{ per_million_tokens: Record<string, string> }> } };
    const one = (await (await fetch(`${stack.url}/v1/models/claude-sonnet-4-5`, { headers: { 'x-api-key': c.secret } })).json()) as Priced;
    // 72 × 0.8, 360 × 0.8, 0.24 × 0.8, the tier's 144 × 0.8
    assert.deepEqual([one.pricing.price_list, one.pricing.per_million_tokens.input, one.pricing.per_million_tokens.output, one.pricing.per_unit.web_search_requests, one.pricing.tiers[0]!.per_million_tokens.input],
      ['vip', '57.6', '288', '0.192', '115.2']);
    const list = (await (await fetch(`${stack.url}/v1/models`, { headers: { 'x-api-key': c.secret } })).json()) as { data: Priced[] };
    // haiku 24 × 0.8 = 19.2 and 120 × 0.8 = 96 credits per MTok: 1,000 in / 10 out cost 19,200 + 960 µc
    const haiku = list.data.find((m) => m.id === 'claude-haiku-4-5-20251001')!.pricing.per_million_tokens;
    assert.deepEqual([haiku.input, haiku.output], ['19.2', '96']);
    const msg = await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1024, messages: user('x [[sim input=1000 output=10]]') });
    const ev = await usageEvent(stack, msg._request_id);
    assert.deepEqual([ev.cost_micros, ev.quantities.input, ev.quantities.output, ev.price_list], ['20160', 1000, 10, 'vip']);
    // a default key still sees the catalog's prices
    const d = await customer(stack.url, 1);
    const plain = (await (await fetch(`${stack.url}/v1/models/claude-sonnet-4-5`, { headers: { 'x-api-key': d.secret } })).json()) as Priced;
    assert.deepEqual([plain.pricing.price_list, plain.pricing.per_million_tokens.input], ['default', '72']);
  });
});

describe('usd catalog', () => {
  let stack: Stack;
  before(async () => { stack = await startStack({ PRICING_FILE: bundledCatalogPath('usd') }); });
  after(async () => { await stack.close(); });

  test('3 web searches + input 2,000 / output 300 on sonnet-4-5 = 9,089,600 µc (2 credits per search)', async () => {
    const c = await customer(stack.url, 5000);
    const msg = await c.client.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 512, tools: [WEB_SEARCH] as never, messages: user('news [[sim input=2000 output=300 web_search=3]]'),
    });
    // 2,000×883 + 300×4,412 + 3×2,000,000 = 1,766,000 + 1,323,600 + 6,000,000
    assert.equal((await usageEvent(stack, msg._request_id)).cost_micros, '9089600');
  });
});

describe('price changes: reload by SIGHUP or file change, never mid-request; unpriced refusal', () => {
  let stack: Stack;
  let file: string;
  let base: Record<string, unknown>;
  const withHaikuInput = (price: string, extra: Record<string, unknown> = {}) => {
    const doc = structuredClone(base) as { models: Array<{ id: string; prices: Record<string, string> }> };
    doc.models.find((m) => m.id === 'claude-haiku-4-5-20251001')!.prices.input = price;
    return JSON.stringify({ ...doc, ...extra }, null, 2);
  };
  before(async () => {
    base = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8')) as Record<string, unknown>;
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    file = join(mkdtempSync(join(tmpdir(), 'tollgate-prices-')), 'prices.json');
    writeFileSync(file, withHaikuInput('2.40', { unpriced: 'refuse' }));
    stack = await startStack({ PRICING_FILE: file });
  });
  after(async () => { await stack.close(); });

  test('unpriced "refuse": a code-execution tool (no price) is a 400 unpriced_request before anything is held', async () => {
    const c = await customer(stack.url, 5);
    await assert.rejects(c.client.messages.create({
      model: 'claude-haiku-4-5', max_tokens: 64, tools: [{ type: 'code_execution_20250825', name: 'code_execution' }] as never, messages: user('run'),
    }), (err: unknown) => {
      assert.ok(err instanceof Anthropic.APIError);
      assert.equal(err.status, 400);
      assert.equal((err.error as { error: { code: string } }).error.code, 'unpriced_request');
      return true;
    });
    // fast mode on a model without fast prices is refused the same way
    await assert.rejects(c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, speed: 'fast', messages: user('hi') } as never),
      (err: unknown) => err instanceof Anthropic.APIError && err.status === 400 && /speed:fast/.test(err.message));
    // and a fallbacks entry's own fast mode, at the entry's model
    await assert.rejects(c.client.messages.create({ model: 'claude-opus-4-6', max_tokens: 64, fallbacks: [{ model: 'claude-haiku-4-5', speed: 'fast' }], messages: user('hi') } as never),
      (err: unknown) => err instanceof Anthropic.APIError && err.status === 400 &&
        (err.error as { error: { message: string } }).error.message === 'fallbacks[0].speed: claude-haiku-4-5-20251001 has no price on this gateway for speed:fast; remove the entry\'s speed');
    assert.equal(await settledBalance(stack, c.accountId), 5_000_000n);
  });

  test('SIGHUP: a request in flight keeps the old price, the next one gets the new; a bad file keeps the prices', async () => {
    const c = await customer(stack.url, 10);
    const before = stack.tollgate.prices.current().id;
    // in flight for 1.5 s while the price of haiku input goes from ¥2.40 to ¥4.80 per MTok
    const inFlight = c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1024, messages: user('x [[sim input=1000 output=100 latency_ms=1500]]') });
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(file, withHaikuInput('4.80', { unpriced: 'refuse' }));
    process.kill(process.pid, 'SIGHUP');
    for (let i = 0; i < 200 && stack.tollgate.prices.current().id === before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.notEqual(stack.tollgate.prices.current().id, before);
    const old = await inFlight;
    // old: 1,000×24 + 100×120 = 36,000; new: 1,000×48 + 100×120 = 60,000
    const a = await usageEvent(stack, old._request_id);
    assert.deepEqual([a.cost_micros, a.price_version], ['36000', before]);
    const next = await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1024, messages: user('x [[sim input=1000 output=100]]') });
    const b = await usageEvent(stack, next._request_id);
    assert.deepEqual([b.cost_micros, b.price_version], ['60000', stack.tollgate.prices.current().id]);
    // both versions are kept: a rerate under the stored versions finds every charge exact
    const from = Date.now() - 3_600_000;
    const rerate = await admin<{ versions: Record<string, number>; accounts: Array<{ events: number; events_different: number }> }>(
      stack.url, 'POST', '/ops/v1/rerate', { from, to: Date.now() + 60_000, account_id: c.accountId });
    assert.equal(rerate.status, 200);
    assert.deepEqual(rerate.json.versions, { [before]: 1, [b.price_version]: 1 });
    assert.deepEqual(rerate.json.accounts.map((x) => [x.events, x.events_different]), [[2, 0]]);
    // a broken file: refused, the version in force stays
    const inForce = stack.tollgate.prices.current().id;
    writeFileSync(file, '{"version": 1, "models": "oops"}');
    assert.equal(await stack.tollgate.reloadPrices(), null);
    assert.equal(stack.tollgate.prices.current().id, inForce);
  });

  test('file change: the watcher reloads the catalog without a signal (debounced)', async () => {
    const c = await customer(stack.url, 10);
    const before = stack.tollgate.prices.current().id;
    writeFileSync(file, withHaikuInput('7.20', { unpriced: 'refuse' }));
    for (let i = 0; i < 300 && stack.tollgate.prices.current().id === before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.notEqual(stack.tollgate.prices.current().id, before);
    const msg = await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1024, messages: user('x [[sim input=1000 output=100]]') });
    // 1,000×72 + 100×120 = 72,000 + 12,000
    assert.equal((await usageEvent(stack, msg._request_id)).cost_micros, '84000');
  });

  test('a reload that drops a price list still assigned to accounts is refused: the prices in force stay, the list keeps pricing', async () => {
    const c = await customer(stack.url, 10);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { price_list: 'vip' })).status, 200);
    const inForce = stack.tollgate.prices.current().id;
    writeFileSync(file, withHaikuInput('7.20', { unpriced: 'refuse', price_lists: {} }));
    assert.equal(await stack.tollgate.reloadPrices(), null);
    assert.equal(stack.tollgate.prices.current().id, inForce);
    const msg = await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1024, messages: user('x [[sim input=1000 output=100]]') });
    // vip 0.8 × (1,000×72 + 100×120) = 0.8 × 84,000
    const e = await usageEvent(stack, msg._request_id);
    assert.deepEqual([e.cost_micros, e.price_list, e.price_version], ['67200', 'vip', inForce]);
    // once no account holds the list, the same file is accepted
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { price_list: null })).status, 200);
    assert.notEqual(await stack.tollgate.reloadPrices(), null);
    assert.notEqual(stack.tollgate.prices.current().id, inForce);
  });
});
