// Issue 6 item 13: one key's long streams must not make other accounts wait behind the upstream
// pool. Per-key in-flight cap (429 at once), pool cap (503 at once), released when the work ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway } from './support.ts';

const MODEL = 'claude-sonnet-4-6';
const messages = [{ role: 'user' as const, content: 'a long answer please' }];
// Slow enough that the steps between opening the streams and checking them take far less.
const SLOW_HEADERS = { 'x-sim-latency-ms': '2500' };
const SLOW_BODY = { 'x-sim-output': '10', 'x-sim-tps': '4' };

async function readStream(client: Anthropic, headers: Record<string, string>): Promise<void> {
  const stream = await client.messages.create({ model: MODEL, max_tokens: 50, messages, stream: true }, { headers });
  for await (const _ of stream) { /* to the end */ }
}

/** The API error `p` rejects with (an HTTP answer, so it has headers). */
async function failure(p: Promise<unknown>): Promise<InstanceType<typeof Anthropic.APIError> & { headers: Headers }> {
  const err = await p.then(() => assert.fail('expected an error'), (e: unknown) => e);
  assert.ok(err instanceof Anthropic.APIError && err.headers !== undefined, String(err));
  return err as InstanceType<typeof Anthropic.APIError> & { headers: Headers };
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition never held');
}

test("one key saturates its share with slow streams: another key is served meanwhile, the key's extra request gets 429 at once, a full upstream pool 503, all released afterwards", async () => {
  const stack = await startGateway({ keyMaxConcurrentRequests: 2, upstreamMaxConnections: 3 });
  try {
    const a = await stack.customer();
    const b = await stack.customer();
    const c = await stack.customer();
    const order: string[] = [];
    const a1 = readStream(a.client, SLOW_HEADERS).then(() => order.push('A1 done'));
    const a2 = readStream(a.client, SLOW_BODY).then(() => order.push('A2 done'));
    await until(async () => (await stack.simRequests()).length === 2);

    // A's third request (and its count_tokens) are refused in the gateway: never upstream.
    const a3 = await failure(a.client.messages.create({ model: MODEL, max_tokens: 50, messages }));
    assert.deepEqual([a3.status, (a3.error as { error: { code: string } }).error.code, a3.headers.get('retry-after')],
      [429, 'rate_limit_exceeded', '1']);
    const a4 = await failure(a.client.messages.countTokens({ model: MODEL, messages }));
    assert.equal(a4.status, 429);
    assert.equal((await stack.simRequests()).length, 2);
    order.push('A refused');

    // B is served while A's two streams are still open.
    const served = await b.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-output': '3' } });
    assert.equal(served.usage.output_tokens, 3);
    order.push('B served');

    // B's slow request takes the pool's last connection; C is refused at once with 503.
    const b2 = readStream(b.client, SLOW_HEADERS).then(() => order.push('B2 done'));
    await until(async () => (await stack.simRequests()).length === 4);
    const full = await failure(c.client.messages.create({ model: MODEL, max_tokens: 50, messages }));
    assert.deepEqual(
      [full.status, (full.error as { error: { type: string; code: string } }).error, full.headers.get('retry-after')],
      [503, { type: 'overloaded_error', code: 'overloaded', message: "The gateway's upstream connections are all in use; retry shortly" }, '1'],
    );
    assert.equal((await stack.simRequests()).length, 4);
    order.push('C refused');

    await Promise.all([a1, a2, b2]);
    assert.deepEqual(order.slice(0, 3), ['A refused', 'B served', 'C refused']);
    assert.deepEqual(order.slice(3).sort(), ['A1 done', 'A2 done', 'B2 done']);

    // Every slot came back: A can again run two at once while C takes the third connection.
    await Promise.all([
      a.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-latency-ms': '200' } }),
      a.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-latency-ms': '200' } }),
      c.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-latency-ms': '200' } }),
    ]);
    // failed requests release too: an upstream error, then a full share again
    await failure(a.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-status': '500' } }));
    await failure(a.client.messages.countTokens({ model: MODEL, messages }, { headers: { 'x-sim-status': '500' } }));
    await Promise.all([
      a.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-latency-ms': '200' } }),
      a.client.messages.create({ model: MODEL, max_tokens: 50, messages }, { headers: { 'x-sim-latency-ms': '200' } }),
    ]);
  } finally {
    await stack.close();
  }
});
