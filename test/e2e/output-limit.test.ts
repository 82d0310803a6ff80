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
import { customer, settledBalance, simRequests, startStack, type Stack } from '../support/tollgate.ts';

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

  test('OpenAI-format clients: max_completion_tokens above the limit is the same 400, in OpenAI\'s shape', async () => {
    const client = new OpenAI({ apiKey: c.secret, baseURL: `${stack.url}/v1`, maxRetries: 0, logLevel: 'error' });
    const seenBefore = JSON.stringify(await simRequests(stack.simUrl, 1));
    const err = await client.chat.completions.create({ model: 'claude-sonnet-4-5', max_completion_tokens: 64_001, messages: user('hi') }).then(
      () => assert.fail('served'), (e: unknown) => e);
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.deepEqual([err.type, err.param, err.code, err.message], [
      'invalid_request_error', 'max_tokens', 'invalid_request',
      '400 max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5',
    ]);
    assert.equal(JSON.stringify(await simRequests(stack.simUrl, 1)), seenBefore, 'nothing reached the upstream');
  });

  test('GET /v1/models states each model\'s limits in Anthropic\'s fields (max_input_tokens, max_tokens)', async () => {
    const page = await c.client.models.list({ limit: 1000 });
    const byId = Object.fromEntries(page.data.map((m) => [m.id, [m.max_input_tokens, m.max_tokens]]));
    assert.deepEqual(byId['claude-opus-4-20250514'], [200_000, 32_000]);
    assert.deepEqual(byId['claude-opus-4-20250514-thinking'], [200_000, 32_000]);
    assert.deepEqual(byId['claude-sonnet-4-6'], [1_000_000, 128_000]);
  });
});
