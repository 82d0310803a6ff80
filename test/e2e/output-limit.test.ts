// The kind: a max_tokens above the model's own output limit. The upstream refuses it (400,
// "max_tokens: N > L, which is the maximum allowed number of output tokens for <model>"), so
// the gateway refuses it first, in the same words, before any plan window or hold: it used to
// hold (or clamp to) credit for output the model can never produce, and that hold could starve
// the account's other requests (402). Official SDKs → embedded Tollgate → the simulator, which
// enforces the same limits. Prices (cny catalog, µc per token): haiku-4-5 input 24, output 120.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { admin, customer, settledBalance, simRequests, startStack, type Stack } from '../support/tollgate.ts';

/** Every model name of the cny catalog a client may send, with the output limit of the model it resolves to. */
const LIMITS: Array<[string, number]> = [
  ['claude-haiku-4-5', 64_000],
  ['claude-haiku-4-5-20251001-thinking', 64_000],
  ['claude-sonnet-4-20250514', 64_000],
  ['claude-sonnet-4-5', 64_000],
  ['claude-sonnet-4-6', 128_000],
  ['claude-opus-4-6', 128_000],
  ['claude-opus-4-7', 128_000], // mapped to opus-4-6 by the catalog's rules
  ['claude-opus-4-20250514', 32_000],
  ['claude-opus-4-20250514-thinking', 32_000],
  ['claude-opus-4-5-20251101', 64_000],
];

const user = (text: string) => [{ role: 'user' as const, content: text }];

describe('max_tokens above the model\'s output limit', () => {
  let stack: Stack;
  let c: Awaited<ReturnType<typeof customer>>;
  before(async () => {
    stack = await startStack({ DEFAULT_MAX_TOKENS: '100000' });
    c = await customer(stack.url, 1000);
  });
  after(async () => { await stack?.close(); });

  test('refused 400 invalid_request_error in Anthropic\'s words for every model, before any hold: nothing sent upstream, balance exact', async () => {
    const seenBefore = JSON.stringify(await simRequests(stack.simUrl, 1));
    const balance = await settledBalance(stack, c.accountId);
    for (const [model, limit] of LIMITS) {
      for (const maxTokens of [limit + 1, 1_000_000]) {
        for (const stream of [false, true]) {
          // An explicit timeout: the SDK itself refuses a non-streaming request this large without one.
          const err = await c.client.messages.create({ model, max_tokens: maxTokens, stream, messages: user('hi') }, { timeout: 60_000 }).then(
            () => assert.fail(`${model} max_tokens ${maxTokens} was served`), (e: unknown) => e);
          assert.ok(err instanceof Anthropic.BadRequestError, `${model}: ${String(err)}`);
          assert.deepEqual(err.error, {
            type: 'error',
            error: { type: 'invalid_request_error', code: 'invalid_request', message: `max_tokens: ${maxTokens} > ${limit}, which is the maximum allowed number of output tokens for ${model}` },
            request_id: err.requestID,
          }, model);
        }
      }
    }
    assert.equal(JSON.stringify(await simRequests(stack.simUrl, 1)), seenBefore, 'nothing reached the upstream');
    assert.equal(await settledBalance(stack, c.accountId), balance, 'nothing held or charged');
  });

  test('at the limit exactly: served, held and sent upstream as asked, charged the usage only', async () => {
    const before = await settledBalance(stack, c.accountId);
    const res = await c.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64_000, messages: user('[[sim input=5 output=10]]') }, { timeout: 60_000 }).withResponse();
    assert.equal(res.response.headers.get('tollgate-max-tokens-clamped'), null);
    assert.equal((await simRequests(stack.simUrl, 1))[0]!.body['max_tokens'], 64_000);
    // 5 × 24 + 10 × 120 = 120 + 1,200 = 1,320 µc
    assert.equal(await settledBalance(stack, c.accountId), before - 1_320n);
  });

  test('a defaulted max_tokens (DEFAULT_MAX_TOKENS 100,000) is lowered to the model\'s limit, not refused', async () => {
    const before = await settledBalance(stack, c.accountId);
    const res = await fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': c.secret },
      body: JSON.stringify({ model: 'claude-opus-4-20250514', messages: user('[[sim input=5 output=10]]') }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await simRequests(stack.simUrl, 1))[0]!.body['max_tokens'], 32_000);
    // opus-4 (cny): input 360, output 1,800 µc per token: 5 × 360 + 10 × 1,800 = 1,800 + 18,000 = 19,800 µc
    assert.equal(await settledBalance(stack, c.accountId), before - 19_800n);
  });

  test('OpenAI-format clients: the same 400 in OpenAI\'s shape, naming the field the client sent (max_completion_tokens or max_tokens)', async () => {
    const client = new OpenAI({ apiKey: c.secret, baseURL: `${stack.url}/v1`, maxRetries: 0, logLevel: 'error' });
    const seenBefore = JSON.stringify(await simRequests(stack.simUrl, 1));
    for (const field of ['max_completion_tokens', 'max_tokens'] as const) {
      const err = await client.chat.completions.create({ model: 'claude-sonnet-4-5', [field]: 64_001, messages: user('hi') }).then(
        () => assert.fail('served'), (e: unknown) => e);
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      assert.deepEqual([err.type, err.param, err.code, err.message], [
        'invalid_request_error', field, 'invalid_request',
        `400 ${field}: 64001 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5`,
      ]);
    }
    assert.equal(JSON.stringify(await simRequests(stack.simUrl, 1)), seenBefore, 'nothing reached the upstream');
  });

  test('a group\'s model_mapping: the limit of the model the upstream is sent, where the catalog knows it', async () => {
    const group = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', {
      name: 'mapped', platform: 'anthropic', upstream_ids: ['default'],
      model_mapping: { 'claude-sonnet-4-6': 'claude-haiku-4-5-20251001', 'claude-opus-4-20250514': 'claude-opus-4-6', 'claude-sonnet-4-5': 'claude-sonnet-by-glob' },
    });
    assert.equal(group.status, 201, JSON.stringify(group.json));
    // strict: a request the upstream could never serve must not get a 402 for its impossible worst case
    const m = await customer(stack.url, 30, 'mapped');
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${m.accountId}`, { group_id: group.json.id, admission_policy: 'strict' })).status, 200);
    const balance = await settledBalance(stack, m.accountId);
    const seenBefore = JSON.stringify(await simRequests(stack.simUrl, 1));
    // sonnet-4-6 (128,000) is sent upstream as haiku-4-5 (64,000): refused above 64,000, named as the client named it
    const err = await m.client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 64_001, messages: user('hi') }, { timeout: 60_000 }).then(
      () => assert.fail('served'), (e: unknown) => e);
    assert.ok(err instanceof Anthropic.BadRequestError, String(err));
    assert.equal((err.error as { error: { message: string } }).error.message, 'max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-6');
    assert.equal(JSON.stringify(await simRequests(stack.simUrl, 1)), seenBefore, 'nothing reached the upstream');
    assert.equal(await settledBalance(stack, m.accountId), balance);
    // opus-4 (32,000) is sent upstream as opus-4-6 (128,000): 64,000 is served, priced as opus-4:
    // 5 × 360 + 10 × 1,800 = 19,800 µc. Its hold (over 64,000 × 1,800 µc = 115.2 credits) needs
    // more than 30 credits under strict, so 200 more are granted first.
    await admin(stack.url, 'POST', `/admin/v1/accounts/${m.accountId}/credits`, { credits: 200, reference: `raise-${m.accountId}` });
    const served = await m.client.messages.create({ model: 'claude-opus-4-20250514', max_tokens: 64_000, messages: user('[[sim input=5 output=10]]') }, { timeout: 60_000 });
    assert.equal(served.usage.output_tokens, 10);
    assert.deepEqual([(await simRequests(stack.simUrl, 1))[0]!.body['model'], (await simRequests(stack.simUrl, 1))[0]!.body['max_tokens']], ['claude-opus-4-6', 64_000]);
    assert.equal(await settledBalance(stack, m.accountId), balance + 200_000_000n - 19_800n);
    // A mapped name the catalog knows only through a mapping rule's glob (claude-sonnet-* →
    // sonnet-4-6, 128,000) is not known: only the upstream's own check (the simulator serves an
    // id of no family whatever it asks), never the limit of the model the rule would serve it as.
    await m.client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 130_000, messages: user('[[sim input=5 output=10]]') }, { timeout: 60_000 });
    assert.deepEqual([(await simRequests(stack.simUrl, 1))[0]!.body['model'], (await simRequests(stack.simUrl, 1))[0]!.body['max_tokens']], ['claude-sonnet-by-glob', 130_000]);
  });

  test('a server-tool loop may write max_tokens in every step: the hold covers it, so such an answer is charged in full, never capped at the hold', async () => {
    // haiku-4-5 (cny): input-side 48 at most (1 h cache write), output 120, a search 240,000 µc.
    // Ten steps of 136,000 in and 64,000 out (each at the 200,000 window), ten searches:
    // 1,360,000 × 24 + 640,000 × 120 + 10 × 240,000 = 32,640,000 + 76,800,000 + 2,400,000.
    // The output part of the hold was 64,000 × 120 once: 5,760,000 µc short, capped (a breaker's HIGH).
    const rich = await customer(stack.url, 1_000);
    const steps = Array.from({ length: 10 }, () => 'message:-:136000:64000').join(',');
    const res = await fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': rich.secret },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 64_000, tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 10 }],
        messages: user(`search [[sim input=0 output=640000 web_search=10 iterations=${steps}]]`) }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    await stack.tollgate.drain();
    const e = await stack.tollgate.warehouse.getUsageEvent(res.headers.get('request-id')!);
    assert.deepEqual([e?.cost_micros, e?.status, e?.anomalies ?? []], ['111840000', 'ok', []]);
    assert.equal(await settledBalance(stack, rich.accountId), 1_000_000_000n - 111_840_000n);
  });

  test('a compaction is a step of its own beside a server-tool loop: its read and its summary are held (a loop of 2 compacting once was capped 0.12 credits short)', async () => {
    // haiku-4-5, max_tokens 1,000, one web search (2 loop steps), a compacting edit: the input
    // bound is 2 × the 200,000 window, and the compaction reads one step more; output 1,000 per
    // step, the compaction's summary one step more, re-read by the step after it. Hold:
    // 600,000 × 48 + 3 × 1,000 × 120 + 1,000 × 48 + 240,000 = 28,800,000 + 360,000 + 48,000 +
    // 240,000 = 29,448,000 µc.
    const req = (text: string) => JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 1_000,
      tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 1 }],
      context_management: { edits: [{ type: 'compact_20260112' }] }, messages: user(text) });
    const post = (secret: string, b: string) => fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': secret }, body: b });
    const poor = await customer(stack.url, 1);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${poor.accountId}`, { admission_policy: 'strict' })).status, 200);
    const refused = await post(poor.secret, req('hi'));
    assert.equal(refused.status, 402);
    assert.match(((await refused.json()) as { error: { message: string } }).error.message, /needs up to 29\.448 credits \(its worst case at max_tokens 1000\)/);
    // two steps at their max_tokens, a 1,000-token summary, 400,000 1 h cache writes, a search:
    // 400,000 × 48 + 3,000 × 120 + 240,000 = 19,800,000 µc, charged in full
    const rich = await customer(stack.url, 100);
    const res = await post(rich.secret, req('[[sim input=0 cache_write_1h=400000 output=2000 web_search=1 iterations=message:-:0:1000,message:-:0:1000,compaction:-:0:1000]]'));
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    await stack.tollgate.drain();
    const e = await stack.tollgate.warehouse.getUsageEvent(res.headers.get('request-id')!);
    assert.deepEqual([e?.cost_micros, e?.status, e?.anomalies ?? []], ['19800000', 'ok', []]);
  });

  test('an advisor tool\'s own max_tokens is each call\'s bound in the hold, and advisor answers above what was held, or any on a pre-warm, are clamped, not charged', async () => {
    const post = (secret: string, b: unknown) => fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': secret }, body: JSON.stringify(b) });
    const worst = async (r: Response) => Number(/needs up to ([0-9.]+) credits/.exec(((await r.json()) as { error: { message: string } }).error.message)![1]) * 1e6;
    const poor = await customer(stack.url, 1);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${poor.accountId}`, { admission_policy: 'strict' })).status, 200);
    const advised = (advisor: Record<string, unknown>) => ({ model: 'claude-haiku-4-5', max_tokens: 1_000, inference_geo: 'global',
      tools: [{ type: 'advisor_20260301', name: 'advisor', model: 'claude-opus-4-6', max_uses: 2, ...advisor }], messages: user('advise') });
    // two calls at 128,000 instead of advisor_hold's 4,096: 2 × 123,904 × 1,500 (opus-4-6 output) more
    const plain = await worst(await post(poor.secret, advised({})));
    const own = await worst(await post(poor.secret, advised({ max_tokens: 128_000 })));
    assert.equal(Math.round(own - plain), 371_712_000);
    // settled: three answers of 4,096 against max_uses 2 × 4,096 held: the third is clamped to 0;
    // haiku 100 × 24 + 100 × 120, opus 2 × 4,096 × 1,500
    const rich = await customer(stack.url, 1_000);
    const res = await post(rich.secret, { ...advised({}), messages: user('advise [[sim input=0 output=100 iterations=message:-:100:100,advisor_message:claude-opus-4-6:0:4096,advisor_message:claude-opus-4-6:0:4096,advisor_message:claude-opus-4-6:0:4096]]') });
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    await stack.tollgate.drain();
    const e = await stack.tollgate.warehouse.getUsageEvent(res.headers.get('request-id')!);
    assert.deepEqual([e?.cost_micros, e?.status, e?.anomalies ?? []], [String(2_400 + 12_000 + 2 * 4_096 * 1_500), 'usage_anomaly', ['output_over_max_tokens']]);
    // a pre-warm calls no advisor and generates nothing: an advisor answer reported on one is
    // clamped to 0, the prompt's 100 × 24 charged
    const warm = await post(rich.secret, { ...advised({}), max_tokens: 0, messages: user('[[sim input=100 output=0 iterations=advisor_message:claude-haiku-4-5:0:20000]]') });
    assert.equal(warm.status, 200, await warm.clone().text());
    await warm.arrayBuffer();
    await stack.tollgate.drain();
    const w = await stack.tollgate.warehouse.getUsageEvent(warm.headers.get('request-id')!);
    assert.deepEqual([w?.cost_micros, w?.status, w?.anomalies ?? []], ['2400', 'usage_anomaly', ['output_over_max_tokens']]);
  });

  test('client tools the upstream does not run (memory, the browser and computer toolsets) are no server-tool loop: one step held, their definitions bounded', async () => {
    // haiku-4-5, max_tokens 64,000: the body's bytes + 1,000 (tool-use prompt) + the tool's
    // overhead, at 48, + 64,000 × 120 once (a loop would hold 10 windows and 10 × the output)
    const poor = await customer(stack.url, 1);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${poor.accountId}`, { admission_policy: 'strict' })).status, 200);
    for (const [tool, overhead] of [['memory_20250818', 2_000], ['browser_toolset_20260801', 10_000], ['computer_toolset_20260801', 10_000]] as const) {
      const b = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 64_000, tools: [{ type: tool, ...(tool.startsWith('memory') ? { name: 'memory' } : {}) }], messages: user('remember') });
      const r = await fetch(`${stack.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': poor.secret }, body: b });
      assert.equal(r.status, 402, tool);
      const hold = (Buffer.byteLength(b) + 1_000 + overhead) * 48 + 64_000 * 120;
      assert.match(((await r.json()) as { error: { message: string } }).error.message,
        new RegExp(`needs up to ${(hold / 1e6).toString().replace('.', '\\.')} credits `), tool);
    }
  });

  test('fallback attempts: each fallbacks entry is held as an attempt of its own, at most its own output limit, its own max_tokens and speed', async () => {
    // sonnet-4-6 asked (cny, inference_geo global: no us_geo factor): input-side 360, output 900
    // µc per token; the opus-4 entry writes at most 32,000 tokens: 720 and 1,800. Each attempt
    // reads the prompt, whose bound is one token per byte of the body (B); the declined sonnet
    // attempt may have written its whole max_tokens before opus-4 took over.
    const body = (maxTokens: number, text = '[[sim input=5 output=10]]') => JSON.stringify({
      model: 'claude-sonnet-4-6', max_tokens: maxTokens, inference_geo: 'global', fallbacks: [{ model: 'claude-opus-4-0' }],
      messages: user(text),
    });
    assert.deepEqual([Buffer.byteLength(body(100_000)), Buffer.byteLength(body(40_000))], [183, 182]);
    const post = (secret: string, b: string) => fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': secret }, body: b,
    });
    const charged = async (res: Response) => {
      assert.equal(res.status, 200, await res.clone().text());
      await stack.tollgate.drain();
      const e = await stack.tollgate.warehouse.getUsageEvent(res.headers.get('request-id')!);
      return [e?.cost_micros, e?.status, e?.anomalies ?? []];
    };
    // strict: 183 × (360 + 720) + 100,000 × 900 + 32,000 × 1,800 = 197,640 + 90,000,000 +
    // 57,600,000 = 147,797,640; opus-4 for all 100,000 would be 180,000,000 of output alone
    const s = await customer(stack.url, 1);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${s.accountId}`, { admission_policy: 'strict' })).status, 200);
    const refused = await post(s.secret, body(100_000));
    assert.equal(refused.status, 402);
    assert.match(((await refused.json()) as { error: { message: string } }).error.message, /needs up to 147\.79764 credits \(its worst case at max_tokens 100000\)/);
    // a request that may run several steps (a web search loop: 1 + max_uses = 2) may call opus-4
    // in each, so nothing is capped: the input bound is sonnet-4-6's window × 2 steps = 2,000,000
    // tokens, read by both attempts (× 360 and × 720), one search each (240,000), and each step of
    // each attempt may write max_tokens, 2 × 100,000 × 2,700:
    // 720,000,000 + 1,440,000,000 + 480,000 + 540,000,000
    const looping = await post(s.secret, JSON.stringify({ ...JSON.parse(body(100_000)), tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 1 }] }));
    assert.equal(looping.status, 402);
    assert.match(((await looping.json()) as { error: { message: string } }).error.message, /needs up to 2700\.48 credits \(its worst case at max_tokens 100000\)/);
    // each attempt reads up to its own model's window per step: sonnet-4-5 (200,000) with an
    // opus-4-6 entry (1,000,000) and a web fetch loop (1 + max_uses 2 = 3 steps) holds
    // 3,000,000 input tokens per attempt: sonnet-4-5 at its long-context tier (288 input-side,
    // 540 out) 864,000,000 + 3 steps × 1,000 × 540, opus-4-6 (600, 1,500) 1,800,000,000 + 3 × 1,000 × 1,500
    const wide = await post(s.secret, JSON.stringify({
      model: 'claude-sonnet-4-5', max_tokens: 1_000, inference_geo: 'global', fallbacks: [{ model: 'claude-opus-4-6' }],
      tools: [{ type: 'web_fetch_20250910', name: 'web_fetch', max_uses: 2 }], messages: user('fetch it'),
    }));
    assert.equal(wide.status, 402);
    assert.match(((await wide.json()) as { error: { message: string } }).error.message, /needs up to 2670\.12 credits \(its worst case at max_tokens 1000\)/);
    // clamp, exactly the worst case: served whole (no clamp), charged 5 × 180 + 10 × 900 = 9,900 µc
    const whole = await customer(stack.url, '147.79764');
    const served = await post(whole.secret, body(100_000));
    assert.equal(served.status, 200, await served.clone().text());
    assert.equal(served.headers.get('tollgate-max-tokens-clamped'), null);
    assert.equal((await simRequests(stack.simUrl, 1))[0]!.body['max_tokens'], 100_000);
    assert.equal(await settledBalance(stack, whole.accountId), 147_797_640n - 9_900n);
    // at 40,000: 182 × 1,080 + 40,000 × 900 + 32,000 × 1,800 = 93,796,560. One µc less: both
    // write the first 32,000 (86,400,000 at 2,700), and ⌊(93,796,559 − 196,560 − 86,400,000) /
    // 900⌋ = 7,999 more at sonnet's rate: 39,999 tokens
    const short = await customer(stack.url, '93.796559');
    const clamped = await post(short.secret, body(40_000));
    assert.equal(clamped.status, 200, await clamped.clone().text());
    assert.equal(clamped.headers.get('tollgate-max-tokens-clamped'), '40000->39999');
    assert.equal((await simRequests(stack.simUrl, 1))[0]!.body['max_tokens'], 39_999);
    assert.equal(await settledBalance(stack, short.accountId), 93_796_559n - 9_900n);
    // what the attempts can write is charged in full, within the hold:
    const rich = await customer(stack.url, 1_000);
    // sonnet declines after 60,000, opus-4 writes 32,000: 5 × 180 + 60,000 × 900 + 5 × 360 + 32,000 × 1,800
    assert.deepEqual(await charged(await post(rich.secret, body(100_000,
      '[[sim input=10 output=92000 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:60000,fallback_message:claude-opus-4-20250514:5:32000]]'))),
    ['111602700', 'ok', []]);
    // sonnet declines after 64,000, opus-4 then writes 32,000 more
    assert.deepEqual(await charged(await post(rich.secret, body(64_000,
      '[[sim input=10 output=64000 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:60000,fallback_message:claude-opus-4-20250514:5:32000]]'))),
    ['111602700', 'ok', []]);
    // opus-4 named twice (alias and -thinking name), two attempts of 32,000:
    // 2 × (5 × 360 + 32,000 × 1,800) + 5 × 180 + 36,000 × 900 = 115,203,600 + 32,400,900
    assert.deepEqual(await charged(await post(rich.secret, JSON.stringify({
      model: 'claude-sonnet-4-6', max_tokens: 100_000, inference_geo: 'global',
      fallbacks: [{ model: 'claude-opus-4-0' }, { model: 'claude-opus-4-20250514-thinking' }],
      messages: user('[[sim input=15 output=100000 iterations=message:claude-sonnet-4-6:5:36000,fallback_message:claude-opus-4-20250514:5:32000,fallback_message:claude-opus-4-20250514:5:32000]]'),
    }))), ['147604500', 'ok', []]);
    // an entry's own max_tokens above the request's: 5 × 360 + 32,000 × 1,800
    assert.deepEqual(await charged(await post(rich.secret, JSON.stringify({
      model: 'claude-sonnet-4-6', max_tokens: 1_024, inference_geo: 'global', fallbacks: [{ model: 'claude-opus-4-0', max_tokens: 32_000 }],
      messages: user('[[sim input=5 output=1024 served_model=claude-opus-4-20250514 iterations=fallback_message:claude-opus-4-20250514:5:32000]]'),
    }))), ['57601800', 'ok', []]);
    // an entry's own speed: opus-4-6 fast (1,800 input, 9,000 output): 5 × 1,800 + 8,000 × 9,000
    assert.deepEqual(await charged(await post(rich.secret, JSON.stringify({
      model: 'claude-sonnet-4-6', max_tokens: 8_000, inference_geo: 'global', fallbacks: [{ model: 'claude-opus-4-6', speed: 'fast' }],
      messages: user('[[sim input=5 output=8000 speed=fast served_model=claude-opus-4-6 iterations=fallback_message:claude-opus-4-6:5:8000]]'),
    }))), ['72009000', 'ok', []]);
    // the 16th entry as well as the first: 5 × 360 + 32,000 × 1,800
    assert.deepEqual(await charged(await post(rich.secret, JSON.stringify({
      model: 'claude-sonnet-4-6', max_tokens: 32_000, inference_geo: 'global',
      fallbacks: [...Array.from({ length: 15 }, () => ({ model: 'claude-haiku-4-5' })), { model: 'claude-opus-4-0' }],
      messages: user('[[sim input=5 output=32000 served_model=claude-opus-4-20250514]]'),
    }))), ['57601800', 'ok', []]);
  });

  /** A new customer of `credits`; returns a poster of Messages bodies for it, each answering the settled event's [cost µc, status, anomalies]. */
  const chargedTo = async (credits: number) => {
    const rich = await customer(stack.url, credits);
    return async (b: Record<string, unknown>) => {
      const res = await fetch(`${stack.url}/v1/messages`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': rich.secret }, body: JSON.stringify(b),
      });
      assert.equal(res.status, 200, await res.clone().text());
      await res.arrayBuffer();
      await stack.tollgate.drain();
      const e = await stack.tollgate.warehouse.getUsageEvent(res.headers.get('request-id')!);
      return [e?.cost_micros, e?.status, e?.anomalies ?? []];
    };
  };

  test('each fallback attempt is bounded by its own max_tokens: output reported above an attempt\'s ceiling is clamped to it, not to the chain\'s sum', async () => {
    // sonnet-4-6 (input 180, output 900 µc per token) asks max_tokens 1,024 with an opus-4 entry
    // of its own max_tokens 32,000 (input 360, output 1,800): the chain may write 33,024 tokens,
    // but the sonnet attempt 1,024 of them and the opus-4 one 32,000.
    const charged = await chargedTo(100_000);
    const chain = (maxTokens: number, entryMaxTokens: number, text: string, extra: Record<string, unknown> = {}) => ({
      model: 'claude-sonnet-4-6', max_tokens: maxTokens, inference_geo: 'global',
      fallbacks: [{ model: 'claude-opus-4-0', max_tokens: entryMaxTokens }], messages: user(text), ...extra,
    });
    const over = ['usage_anomaly', ['output_over_max_tokens']];
    // no fallback served (no fallback_message step): sonnet wrote it all, its one step reporting
    // 30,000, at most 1,024: 5 × 180 + 1,024 × 900 (the sum's ceiling charged 27,000,900), as
    // JSON and as a stream
    const alone = '[[sim input=5 output=30000 iterations=message:claude-sonnet-4-6:5:30000]]';
    assert.deepEqual(await charged(chain(1_024, 32_000, alone)), ['922500', ...over]);
    assert.deepEqual(await charged(chain(1_024, 32_000, alone, { stream: true })), ['922500', ...over]);
    // a fallback served, the declined sonnet attempt reported above its own ceiling: 5 × 180 +
    // 1,024 × 900 + 5 × 360 + 2,000 × 1,800 (the sum's ceiling charged 30,602,700)
    assert.deepEqual(await charged(chain(1_024, 32_000,
      '[[sim input=5 output=32000 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:30000,fallback_message:claude-opus-4-20250514:5:2000]]')),
    ['4524300', ...over]);
    // the reverse: the opus-4 entry's own max_tokens 1,000 under a request of 32,000, 20,000
    // reported by it: 5 × 180 + 100 × 900 + 5 × 360 + 1,000 × 1,800 (the sum's charged 36,092,700)
    assert.deepEqual(await charged(chain(32_000, 1_000,
      '[[sim input=5 output=20100 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:100,fallback_message:claude-opus-4-20250514:5:20000]]')),
    ['1892700', ...over]);
    // output the top level reports beyond the steps is the serving model's (opus-4): its step's
    // 500 and that remainder of 4,400 are at most 1,000 together: 5 × 180 + 100 × 900 + 5 × 360 +
    // 1,000 × 1,800 (the sum's ceiling charged 8,912,700)
    assert.deepEqual(await charged(chain(32_000, 1_000,
      '[[sim input=5 output=5000 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:100,fallback_message:claude-opus-4-20250514:5:500]]')),
    ['1892700', ...over]);
    // within each attempt's ceiling, all of it: 5 × 180 + 1,024 × 900 + 5 × 360 + 32,000 × 1,800
    assert.deepEqual(await charged(chain(1_024, 32_000,
      '[[sim input=5 output=33024 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:1024,fallback_message:claude-opus-4-20250514:5:32000]]')),
    ['58524300', 'ok', []]);
    // each attempt is clamped before the chain's sum, which would otherwise keep sonnet's 30,000
    // and cut opus-4's genuine 32,000 to 3,024 (6,367,500): 922,500 + 57,601,800
    assert.deepEqual(await charged(chain(1_024, 32_000,
      '[[sim input=5 output=62000 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:30000,fallback_message:claude-opus-4-20250514:5:32000]]')),
    ['58524300', ...over]);
    // every attempt declined: two message steps and no fallback_message (a stream's message_start
    // names sonnet), opus-4's 5,000 are its own: 922,500 + 5 × 360 + 5,000 × 1,800, JSON and stream
    const declined = '[[sim input=5 output=6024 iterations=message:claude-sonnet-4-6:5:1024,message:claude-opus-4-20250514:5:5000]]';
    assert.deepEqual(await charged(chain(1_024, 32_000, declined)), ['9924300', 'ok', []]);
    assert.deepEqual(await charged(chain(1_024, 32_000, declined, { stream: true })), ['9924300', 'ok', []]);
    // a step that names no model could be any attempt's: priced at the serving model (opus-4), it
    // is under the sum only, never counted in opus-4's own 32,000 (which cut its 31,000 by 1,000):
    // 5 × 360 + 2,000 × 1,800 + 5 × 360 + 31,000 × 1,800
    assert.deepEqual(await charged(chain(32_000, 32_000,
      '[[sim input=5 output=33000 served_model=claude-opus-4-20250514 iterations=message:-:5:2000,fallback_message:claude-opus-4-20250514:5:31000]]')),
    ['59403600', 'ok', []]);
  });

  /** A customer of `credits` in a new group of the default upstream whose model_mapping is `mapping`. */
  const mappedCustomer = async (name: string, mapping: Record<string, string>, credits: number) => {
    const group = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/groups', { name, platform: 'anthropic', upstream_ids: ['default'], model_mapping: mapping });
    assert.equal(group.status, 201, JSON.stringify(group.json));
    const c = await customer(stack.url, credits, name);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: group.json.id })).status, 200);
    return c;
  };
  /** Posts a Messages body with `secret`; answers its settled usage event. */
  const eventOf = async (secret: string, b: Record<string, unknown>) => {
    const res = await fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': secret }, body: JSON.stringify(b),
    });
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    await stack.tollgate.drain();
    return (await stack.tollgate.warehouse.getUsageEvent(res.headers.get('request-id')!)) as ({ cost_micros: string; status: string; iterations?: Array<{ catalog_model: string | null }> } | null);
  };

  test('a fallback chain under a group\'s model_mapping: a step naming the name the requested model was sent as is the requested model\'s, priced and bounded as it', async () => {
    const m = await mappedCustomer('deployment', { 'claude-sonnet-4-6': 'sonnet-deployment-7' }, 1_000);
    const e = await eventOf(m.secret, {
      model: 'claude-sonnet-4-6', max_tokens: 32_000, inference_geo: 'global', fallbacks: [{ model: 'claude-opus-4-0' }],
      messages: user('[[sim input=5 output=52000 served_model=claude-opus-4-20250514 iterations=message:sonnet-deployment-7:5:20000,fallback_message:claude-opus-4-20250514:5:32000]]'),
    });
    assert.equal((await simRequests(stack.simUrl, 1))[0]!.body['model'], 'sonnet-deployment-7');
    // sonnet's declined 20,000 at sonnet's rates, opus-4's 32,000 whole: 5 × 180 + 20,000 × 900 +
    // 5 × 360 + 32,000 × 1,800 (it was priced at opus-4 and counted in opus-4's 32,000: 57,603,600)
    assert.deepEqual([e?.cost_micros, e?.status, e?.iterations?.map((it) => it.catalog_model)],
      ['75602700', 'ok', ['claude-sonnet-4-6', 'claude-opus-4-20250514']]);
    // a mapping onto another catalog model's own name, with that model as an entry: a fallback's
    // step of that name could be either, so it is bounded by the chain alone, and priced as the
    // requested model (opus-4-6: 300, 1,500) as the requested attempt's steps are: 2 × 5 × 300 +
    // 500 × 1,500 + 20,000 × 1,500 (one attempt counted cut it to 524: 1,539,000)
    const o = await mappedCustomer('onto-opus-4', { 'claude-opus-4-6': 'claude-opus-4-20250514' }, 5_000);
    const b = await eventOf(o.secret, {
      model: 'claude-opus-4-6', max_tokens: 1_024, fallbacks: [{ model: 'claude-opus-4-0', max_tokens: 32_000 }],
      messages: user('[[sim input=10 output=20500 served_model=claude-opus-4-20250514 iterations=message:claude-opus-4-20250514:5:500,fallback_message:claude-opus-4-20250514:5:20000]]'),
    });
    assert.deepEqual([b?.cost_micros, b?.status], ['30753000', 'ok']);
    // so could the serving fallback's earlier loop steps of that name, and a summary read by one:
    // a web search loop, 15 × 300 + 40,500 × 1,500 + 240,000 (the requested attempt's bound cut
    // the middle step to 1,548: 33,316,500); two compactions, 15 × 300 + 22,500 × 1,500 (the
    // second cut to 24: 32,290,500)
    const x = 'claude-opus-4-20250514';
    for (const [extra, iterations, cost] of [
      [{ tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 1 }] }, `web_search=1 iterations=message:${x}:5:500,message:${x}:5:20000,fallback_message:${x}:5:20000`, '60994500'],
      [{ context_management: { edits: [{ type: 'compact_20260112' }] } }, `iterations=compaction:-:0:1000,message:${x}:5:500,compaction:-:0:1000,fallback_message:${x}:5:20000`, '33754500'],
    ] as const) {
      const e = await eventOf(o.secret, {
        model: 'claude-opus-4-6', max_tokens: 1_024, fallbacks: [{ model: 'claude-opus-4-0', max_tokens: 32_000 }], ...extra,
        messages: user(`[[sim input=15 output=40500 served_model=${x} ${iterations}]]`),
      });
      assert.deepEqual([e?.cost_micros, e?.status], [cost, 'ok'], iterations);
    }
  });

  test('an advisor naming the model a group\'s mapping sends the requested model as: its steps are the advisor\'s, priced and bounded as the advisor', async () => {
    const g = await mappedCustomer('successor', { 'claude-sonnet-4-0': 'claude-sonnet-4-5-20250929' }, 1_000);
    const x = 'claude-sonnet-4-5-20250929';
    const e = await eventOf(g.secret, {
      model: 'claude-sonnet-4-0', max_tokens: 1_000, tools: [{ type: 'advisor_20260301', name: 'advisor', model: 'claude-sonnet-4-5', max_uses: 1, max_tokens: 2_000 }],
      messages: user(`[[sim input=3000 output=500 iterations=message:${x}:1000:300,advisor_message:${x}:1000:2000,message:${x}:1000:200]]`),
    });
    // sonnet-4-0 and sonnet-4-5 both 72 in, 360 out: 3,000 × 72 + 500 × 360 + 2,000 × 360 at the
    // advisor sonnet-4-5 (read as the requested model's step, its advisor output was cut to 0: 396,000)
    assert.deepEqual([e?.cost_micros, e?.status, e?.iterations?.map((it) => it.catalog_model)],
      ['1116000', 'ok', ['claude-sonnet-4-20250514', 'claude-sonnet-4-5-20250929', 'claude-sonnet-4-20250514']]);
  });

  test('every attempt of a fallback chain may run the request\'s server tools and advisor calls: bounded per attempt, as held', async () => {
    // an advisor call reads the conversation so far, up to the window: a balance of 100,000 credits
    const charged = await chargedTo(100_000);
    const base = { model: 'claude-sonnet-4-6', max_tokens: 1_024, inference_geo: 'global', fallbacks: [{ model: 'claude-opus-4-0', max_tokens: 32_000 }] };
    // an opus-4-6 advisor (input 300, output 1,500), max_uses 1 and 2,000 tokens a call, called
    // once by each attempt: 922,500 + 2 × (5 × 300 + 2,000 × 1,500) + 5 × 360 + 4,000 × 1,800
    // (one call's bound per request cut the second to 0: 11,127,300)
    assert.deepEqual(await charged({
      ...base, tools: [{ type: 'advisor_20260301', name: 'advisor', model: 'claude-opus-4-6', max_uses: 1, max_tokens: 2_000 }],
      messages: user('[[sim input=5 output=9024 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:1024,advisor_message:claude-opus-4-6:5:2000,advisor_message:claude-opus-4-6:5:2000,fallback_message:claude-opus-4-20250514:5:4000]]'),
    }), ['14127300', 'ok', []]);
    // a web search of max_uses 1 run by each attempt (240,000 each): 5 × 180 + 10 × 900 + 5 × 360
    // + 10 × 1,800 + 2 × 240,000 (one per request charged 269,700, units_over_max_uses)
    assert.deepEqual(await charged({
      ...base, tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 1 }],
      messages: user('[[sim input=5 output=20 web_search=2 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:10,fallback_message:claude-opus-4-20250514:5:10]]'),
    }), ['509700', 'ok', []]);
    // only the attempts the answer shows ran count. No usage.iterations: the requested attempt
    // alone (a declined one is a step of its own), even beside an entry of the same model:
    // haiku-4-5 (24, 120) with max_uses 5 and 10 searches reported: 5 × 24 + 10 × 120 + 5 × 240,000
    // (× 2 attempts charged all 10: 2,401,320)
    assert.deepEqual(await charged({
      model: 'claude-haiku-4-5', max_tokens: 1_024, fallbacks: [{ model: 'claude-haiku-4-5' }],
      tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 5 }], messages: user('[[sim input=5 output=10 web_search=10]]'),
    }), ['1201320', 'usage_anomaly', ['units_over_max_uses']]);
    // the last step is opus-4's and only the requested attempt may be opus-4: one attempt ran, so
    // one compaction's summary (32,000), the second cut to 0: 32,000 × 1,800 + 100 × 1,800
    // (115,380,000 with a second summary counted for the haiku entry that never ran)
    const compacting = { context_management: { edits: [{ type: 'compact_20260112' }] } };
    assert.deepEqual(await charged({
      model: 'claude-opus-4-20250514', max_tokens: 32_000, fallbacks: [{ model: 'claude-haiku-4-5' }], ...compacting,
      messages: user('[[sim input=0 output=100 iterations=compaction:claude-opus-4-20250514:0:32000,compaction:claude-opus-4-20250514:0:32000,message:claude-opus-4-20250514:0:100]]'),
    }), ['57780000', 'usage_anomaly', ['output_over_max_tokens']]);
    // a compaction is held once per attempt at that attempt's model: of two opus-4 summaries after
    // a haiku attempt, one (the haiku attempt's was held at haiku's rate): 10 × 120 + 10,000 × 1,800
    // + 1,000 × 1,800 (37,801,200 with both at opus-4's)
    assert.deepEqual(await charged({
      model: 'claude-haiku-4-5', max_tokens: 10_000, fallbacks: [{ model: 'claude-opus-4-0' }], ...compacting,
      messages: user('[[sim input=0 output=1010 served_model=claude-opus-4-20250514 iterations=message:claude-haiku-4-5:0:10,compaction:claude-opus-4-20250514:0:10000,compaction:claude-opus-4-20250514:0:10000,fallback_message:claude-opus-4-20250514:0:1000]]'),
    }), ['19801200', 'usage_anomaly', ['output_over_max_tokens']]);
    // the API names no model on a compaction step: it is the attempt's whose next sampling step
    // reads its summary (opus-4 here), the same answer, the same charge (both summaries at opus-4
    // and uncut: 37,801,200)
    const haikuThenOpus = { model: 'claude-haiku-4-5', max_tokens: 10_000, fallbacks: [{ model: 'claude-opus-4-0' }], ...compacting };
    assert.deepEqual(await charged({
      ...haikuThenOpus,
      messages: user('[[sim input=0 output=1010 served_model=claude-opus-4-20250514 iterations=message:claude-haiku-4-5-20251001:0:10,compaction:-:0:10000,compaction:-:0:10000,fallback_message:claude-opus-4-20250514:0:1000]]'),
    }), ['19801200', 'usage_anomaly', ['output_over_max_tokens']]);
    // a stream's message_start names the requested model (haiku) whoever serves: the serving model
    // is the fallback_message step's, and opus-4's summary is priced at opus-4: 10 × 120 + 10 ×
    // 1,800 + 10,000 × 1,800 + 1,000 × 1,800 (at haiku's rate: 3,019,200)
    assert.deepEqual(await charged({
      ...haikuThenOpus, stream: true,
      messages: user('[[sim input=0 output=1010 iterations=message:claude-haiku-4-5-20251001:0:10,message:claude-opus-4-20250514:0:10,compaction:-:0:10000,fallback_message:claude-opus-4-20250514:0:1000]]'),
    }), ['19819200', 'ok', []]);
  });

  test('a fallback entry\'s output ceiling is at most its model\'s output limit, as its hold is', async () => {
    const charged = await chargedTo(1_000);
    // sonnet-4-6 at max_tokens 64,000 with an opus-4 entry (32,000 out), one step: the entry's
    // 50,000 reported are cut to 32,000: 5 × 180 + 10 × 900 + 5 × 360 + 32,000 × 1,800 (its
    // max_tokens of 64,000 let 90,011,700 through)
    assert.deepEqual(await charged({
      model: 'claude-sonnet-4-6', max_tokens: 64_000, inference_geo: 'global', fallbacks: [{ model: 'claude-opus-4-0' }],
      messages: user('[[sim input=5 output=50010 served_model=claude-opus-4-20250514 iterations=message:claude-sonnet-4-6:5:10,fallback_message:claude-opus-4-20250514:5:50000]]'),
    }), ['57611700', 'usage_anomaly', ['output_over_max_tokens']]);
  });

  test('fallback entries the hold cannot bound are refused at the edge, nothing sent or held; "default" is refused to a key with allowed_models', async () => {
    const seenBefore = JSON.stringify(await simRequests(stack.simUrl, 1));
    const cases: Array<[unknown, string]> = [
      [[{ model: 'claude-opus-4-0', max_tokens: 40_000 }], 'fallbacks[0].max_tokens: 40000 > 32000, which is the maximum allowed number of output tokens for claude-opus-4-0'],
      [[{ model: 'claude-haiku-4-5' }, { model: 'claude-opus-4-0', max_tokens: '100' }], 'fallbacks[1].max_tokens: Input should be a valid integer'],
      [[{ model: 'claude-opus-4-0', max_tokens: 0 }], 'fallbacks[0].max_tokens: Input should be greater than or equal to 1'],
      [[{ model: 'claude-opus-4-0', max_tokens: 1.5 }], 'fallbacks[0].max_tokens: Input should be a valid integer, got a number with a fractional part'],
      [[{ model: 'claude-opus-4-0', max_tokens: 1e300 }], 'fallbacks[0].max_tokens: Input should be less than or equal to 9007199254740991'],
      [[{ model: 'claude-opus-4-6', speed: 'turbo' }], "fallbacks[0].speed: Input should be 'standard' or 'fast'"],
      // each entry is an attempt the hold prices: a long list is refused before anything reads it
      [Array.from({ length: 17 }, () => null), 'fallbacks: at most 16 entries on this gateway, got 17'],
      [Array.from({ length: 100_000 }, () => 0), 'fallbacks: at most 16 entries on this gateway, got 100000'],
    ];
    for (const [fallbacks, message] of cases) {
      const err = await c.client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 16, fallbacks, messages: user('hi') } as never).then(
        () => assert.fail(`${JSON.stringify(fallbacks)} was served`), (e: unknown) => e);
      assert.ok(err instanceof Anthropic.BadRequestError, String(err));
      assert.equal((err.error as { error: { message: string } }).error.message, message);
    }
    // a pre-warm generates nothing, so no attempt may set its own max_tokens
    const prewarm = await c.client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 0, fallbacks: [{ model: 'claude-opus-4-0', max_tokens: 32_000 }], messages: user('hi') } as never).then(
      () => assert.fail('served'), (e: unknown) => e);
    assert.ok(prewarm instanceof Anthropic.BadRequestError, String(prewarm));
    assert.equal((prewarm.error as { error: { message: string } }).error.message,
      'fallbacks[0].max_tokens: max_tokens 0 pre-warms the prompt cache and generates nothing; a fallback cannot set its own max_tokens with it');
    assert.equal(JSON.stringify(await simRequests(stack.simUrl, 1)), seenBefore, 'nothing reached the upstream');
    const limited = await customer(stack.url, 10);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/keys/${limited.keyId}`, { allowed_models: ['claude-sonnet-4-6'] })).status, 200);
    const err = await limited.client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 16, fallbacks: 'default', messages: user('hi') } as never).then(
      () => assert.fail('default fallbacks were served'), (e: unknown) => e);
    assert.ok(err instanceof Anthropic.PermissionDeniedError, String(err));
    assert.match((err.error as { error: { message: string } }).error.message, /^fallbacks: "default" lets the upstream choose the fallback model/);
  });

  test('fallbacks and tools in a shape the hold and the access checks cannot read are a 400 naming the field: nothing sent, held or charged (they were read as none, and forwarded)', async () => {
    const seenBefore = JSON.stringify(await simRequests(stack.simUrl, 1));
    const poor = await customer(stack.url, 1);
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/keys/${poor.keyId}`, { allowed_models: ['claude-haiku-4-5'] })).status, 200);
    const balance = await settledBalance(stack, poor.accountId);
    const advisor = { type: 'advisor_20260301', name: 'advisor' };
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ fallbacks: { model: 'claude-opus-4-6' } }, "fallbacks: Input should be a valid list or 'default'"],
      [{ fallbacks: 'opus' }, "fallbacks: Input should be a valid list or 'default'"],
      [{ fallbacks: [[{ model: 'claude-opus-4-6' }]] }, 'fallbacks[0]: Input should be a valid dictionary with a model'],
      [{ fallbacks: [{ model: 'claude-haiku-4-5' }, 7] }, 'fallbacks[1]: Input should be a valid dictionary with a model'],
      [{ fallbacks: [''] }, 'fallbacks[0]: Input should be a valid dictionary with a model'],
      [{ fallbacks: [{ model: null }] }, 'fallbacks[0].model: Input should be a non-empty string'],
      [{ fallbacks: [{ max_tokens: 10 }] }, 'fallbacks[0].model: Field required'],
      [{ tools: { ...advisor, model: 'claude-opus-4-6' } }, 'tools: Input should be a valid list'],
      [{ tools: ['web_search'] }, 'tools[0]: Input should be a valid dictionary'],
      [{ tools: [{ ...advisor, model: 5 }] }, 'tools[0].model: Input should be a non-empty string'],
      [{ tools: [advisor] }, 'tools[0].model: Field required'],
      [{ tools: [{ ...advisor, model: 'claude-opus-4-6', max_tokens: 'x' }] }, 'tools[0].max_tokens: Input should be a valid integer'],
      [{ tools: [{ ...advisor, model: 'claude-opus-4-6', max_tokens: 0 }] }, 'tools[0].max_tokens: Input should be greater than or equal to 1'],
    ];
    for (const [extra, message] of cases) {
      const res = await fetch(`${stack.url}/v1/messages`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': poor.secret },
        body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 16, messages: user('hi'), ...extra }),
      });
      assert.equal(res.status, 400, JSON.stringify(extra));
      const body = (await res.json()) as { type: string; error: { type: string; code: string; message: string } };
      assert.deepEqual([body.type, body.error.type, body.error.code, body.error.message], ['error', 'invalid_request_error', 'invalid_request', message]);
    }
    assert.equal(JSON.stringify(await simRequests(stack.simUrl, 1)), seenBefore, 'nothing reached the upstream');
    assert.equal(await settledBalance(stack, poor.accountId), balance);
  });

  test('GET /v1/models states each model\'s limits in Anthropic\'s fields (max_input_tokens, max_tokens)', async () => {
    const page = await c.client.models.list({ limit: 1000 });
    const byId = Object.fromEntries(page.data.map((m) => [m.id, [m.max_input_tokens, m.max_tokens]]));
    assert.deepEqual(byId['claude-opus-4-20250514'], [200_000, 32_000]);
    assert.deepEqual(byId['claude-opus-4-20250514-thinking'], [200_000, 32_000]);
    assert.deepEqual(byId['claude-sonnet-4-6'], [1_000_000, 128_000]);
  });
});

// The kind: max_tokens 0, which pre-warms the prompt cache (the official SDK's max_tokens doc;
// Anthropic "Prompt caching", "Pre-warming the cache"): the input is read and cached, nothing is
// generated. It was refused (400 "greater than or equal to 1") by the gateway and the simulator.
describe('max_tokens 0: pre-warming the prompt cache', () => {
  let stack: Stack;
  let c: Awaited<ReturnType<typeof customer>>;
  before(async () => {
    stack = await startStack();
    c = await customer(stack.url, 10);
  });
  after(async () => { await stack?.close(); });

  test('served with no output and charged the cache write alone; held for the input bound only', async () => {
    const balance = await settledBalance(stack, c.accountId);
    const msg = await c.client.messages.create({
      // an 8 KB prompt: its input bound (≥ 8,000 tokens) covers the 2,003 tokens reported
      model: 'claude-haiku-4-5', max_tokens: 0, messages: user(`${'cache me '.repeat(900)}[[sim input=3 cache_write_5m=2000]]`),
    });
    assert.deepEqual([msg.content, msg.stop_reason, msg.usage.output_tokens, msg.usage.cache_creation_input_tokens], [[], 'max_tokens', 0, 2000]);
    assert.equal((await simRequests(stack.simUrl, 1))[0]!.body['max_tokens'], 0);
    // haiku-4-5 (cny, µc per token): input 24, cache write 5m 30: 3 × 24 + 2,000 × 30 = 72 + 60,000 = 60,072 µc
    assert.equal(await settledBalance(stack, c.accountId), balance - 60_072n);
  });

  test('a pre-warm with server and advisor tools holds one step of input, no tool uses, no advisor calls: served where a generating request is refused', async () => {
    // strict, 12 credits. The prewarm's hold: web_search makes the input bound one context window
    // (200,000 tokens × haiku's dearest input-side price, cache write 1 h 48 µc = 9.6 credits), no
    // search (0.24 credits each) and no advisor call can happen. The same body at max_tokens 1
    // holds two loop steps (max_uses 1) and the Opus advisor's calls: refused.
    const s = await customer(stack.url, 12, 'prewarm-tools');
    assert.equal((await admin(stack.url, 'PATCH', `/admin/v1/accounts/${s.accountId}`, { admission_policy: 'strict' })).status, 200);
    const body = (maxTokens: number) => ({
      model: 'claude-haiku-4-5', max_tokens: maxTokens, messages: user('[[sim input=3 cache_write_5m=20 output=0]]'),
      tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 1 }, { type: 'advisor_20260301', name: 'advisor', model: 'claude-opus-4-6', max_uses: 1 }],
    });
    const post = (b: unknown) => fetch(`${stack.url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': s.secret }, body: JSON.stringify(b),
    });
    const generating = await post(body(1));
    assert.equal(generating.status, 402, await generating.clone().text());
    const prewarm = await post(body(0));
    assert.equal(prewarm.status, 200, await prewarm.clone().text());
    // 3 × 24 + 20 × 30 = 72 + 600 = 672 µc
    assert.equal(await settledBalance(stack, s.accountId), 12_000_000n - 672n);
  });

  test('not with stream nor on a -thinking variant: 400 at the edge, nothing sent or held; a negative max_tokens is still refused', async () => {
    const balance = await settledBalance(stack, c.accountId);
    const seenBefore = JSON.stringify(await simRequests(stack.simUrl, 1));
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ model: 'claude-haiku-4-5', stream: true }, 'max_tokens: 0 pre-warms the prompt cache and cannot be used with stream'],
      [{ model: 'claude-haiku-4-5-thinking' }, 'max_tokens: 0 pre-warms the prompt cache and cannot be used with thinking, which claude-haiku-4-5-thinking turns on'],
      [{ model: 'claude-sonnet-4-6-thinking' }, 'max_tokens: 0 pre-warms the prompt cache and cannot be used with thinking, which claude-sonnet-4-6-thinking turns on'],
      [{ model: 'claude-haiku-4-5', max_tokens: -1 }, 'max_tokens: Input should be greater than or equal to 0'],
    ];
    for (const [extra, message] of cases) {
      const res = await fetch(`${stack.url}/v1/messages`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': c.secret },
        body: JSON.stringify({ max_tokens: 0, messages: user('hi'), ...extra }),
      });
      assert.equal(res.status, 400, JSON.stringify(extra));
      assert.equal(((await res.json()) as { error: { message: string } }).error.message, message);
    }
    assert.equal(JSON.stringify(await simRequests(stack.simUrl, 1)), seenBefore, 'nothing reached the upstream');
    assert.equal(await settledBalance(stack, c.accountId), balance);
  });

  test('a -thinking variant that would send no thinking pre-warms: the client\'s thinking disabled, or a tool-loop turn that did not start with thinking', async () => {
    const balance = await settledBalance(stack, c.accountId);
    const toolTurn = [
      { role: 'user' as const, content: 'look it up' },
      { role: 'assistant' as const, content: [{ type: 'tool_use' as const, id: 'toolu_1', name: 'get', input: {} }] },
      { role: 'user' as const, content: [{ type: 'tool_result' as const, tool_use_id: 'toolu_1', content: 'found' }, { type: 'text' as const, text: '[[sim input=5]]' }] },
    ];
    const tools = [{ name: 'get', description: 'look up', input_schema: { type: 'object' as const, properties: {} } }];
    const bodies = [
      { model: 'claude-haiku-4-5-thinking', max_tokens: 0, thinking: { type: 'disabled' as const }, messages: user('[[sim input=5]]') },
      { model: 'claude-haiku-4-5-thinking', max_tokens: 0, tools, messages: toolTurn },
    ];
    for (const body of bodies) {
      const msg = await c.client.messages.create(body as Anthropic.MessageCreateParamsNonStreaming);
      assert.deepEqual([msg.content, msg.stop_reason], [[], 'max_tokens']);
      const [sent] = await simRequests(stack.simUrl, 1);
      assert.notDeepEqual(sent!.body['thinking'] && (sent!.body['thinking'] as { type: string }).type, 'enabled');
    }
    // 5 input tokens × 24 µc, twice
    assert.equal(await settledBalance(stack, c.accountId), balance - 240n);
  });
});
