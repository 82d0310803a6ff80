// Rate limits on the hot path (embedded mode): refused requests get Anthropic's 429 with
// retry-after and anthropic-ratelimit-* headers, reach no upstream and cost nothing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { customer, settledBalance, startStack, type Stack } from '../support/tollgate.ts';

let stack: Stack;
before(async () => { stack = await startStack({ RATE_LIMIT_RPM: '3', RATE_LIMIT_CONCURRENT: '2' }); });
after(async () => { await stack?.close(); });

const msg = (text: string) => ({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user' as const, content: text }] });

test('requests per minute: the 4th request of a key is refused with 429, headers, and no charge', async () => {
  const c = await customer(stack.url, 1);
  for (let i = 0; i < 3; i++) {
    const { response } = await c.client.messages.create(msg('[[sim input=1 output=1]]')).withResponse();
    assert.equal(response.headers.get('anthropic-ratelimit-requests-limit'), '3');
    assert.equal(response.headers.get('anthropic-ratelimit-requests-remaining'), String(2 - i));
  }
  await assert.rejects(c.client.messages.create(msg('[[sim input=1 output=1]]')), (err: unknown) => {
    assert.ok(err instanceof Anthropic.RateLimitError);
    assert.equal((err.error as { error: { code: string } }).error.code, 'rate_limit_exceeded');
    const retry = Number(err.headers?.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 60, `retry-after ${retry}`);
    return true;
  });
  // another key of another account has its own window
  const d = await customer(stack.url, 1);
  await d.client.messages.create(msg('[[sim input=1 output=1]]'));
  assert.equal(await settledBalance(stack, c.accountId), 1_000_000n - 3n * 144n);
});

test('concurrent requests: a third in-flight stream of one key is refused, a slot frees when one ends', async () => {
  const c = await customer(stack.url, 1);
  // 200 tokens at 100 tokens/s: each stream runs 2 s (under msg's max_tokens of 8 the simulator
  // stopped at 8 tokens, 80 ms, and on a loaded CI run both ended before the third was admitted)
  const slow = () => c.client.messages.stream({ ...msg('[[sim input=1 output=200 tps=100]]'), max_tokens: 256 });
  const a = slow();
  const b = slow();
  await Promise.all([a.emitted('streamEvent'), b.emitted('streamEvent')]);
  await assert.rejects(c.client.messages.create(msg('x')), (err: unknown) => {
    assert.ok(err instanceof Anthropic.RateLimitError);
    assert.match(err.message, /concurrent_requests/);
    return true;
  });
  await a.finalMessage();
  await b.finalMessage();
  await c.client.messages.create(msg('[[sim input=1 output=1]]'));
});
