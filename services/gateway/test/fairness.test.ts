// Issue 6 item 13: one key's long streams must not make other accounts wait behind the upstream
// pool. Per-key and per-account in-flight caps (429 at once, uploads counted from
// authentication), pool cap (503 at once), each released exactly once when the work ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { connect, type Socket } from 'node:net';
import { displayPrefix, generateSecret, hashSecret } from '@tollgate/keys';
import { ConcurrencyGates } from '../src/index.ts';
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
  const stack = await startGateway({ keyMaxConcurrentRequests: 2, accountMaxConcurrentRequests: 2, upstreamMaxConnections: 3 });
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

/** A raw POST /v1/messages whose body never finishes uploading (headers and one byte). */
function slowUpload(port: number, secret: string): Promise<{ socket: Socket; answer: Promise<string> }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    let data = '';
    socket.on('data', (b: Buffer) => { data += b.toString('latin1'); });
    const answer = new Promise<string>((r) => socket.once('close', () => r(data)));
    socket.once('connect', () => {
      socket.write(`POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: ${secret}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{`);
      resolve({ socket, answer });
    });
  });
}

test('slow uploads count against the key from authentication: the 5th of 10 gets 429 at once and its socket closes; slots come back when clients leave', async () => {
  const gates = new ConcurrencyGates({ perKey: 4, pool: 16 });
  const stack = await startGateway({ concurrency: gates, upstreamMaxConnections: 16 });
  try {
    const a = await stack.customer();
    const port = Number(new URL(stack.gatewayUrl).port);
    const uploads = [];
    for (let i = 0; i < 4; i++) {
      uploads.push(await slowUpload(port, a.secret));
      await until(async () => gates.inFlightOf(a.keyId) === i + 1);
    }
    const refused = [];
    for (let i = 0; i < 6; i++) refused.push(await (await slowUpload(port, a.secret)).answer);
    for (const text of refused) {
      assert.match(text, /^HTTP\/1\.1 429 /);
      assert.match(text, /\r\nconnection: close\r\n/i);
      assert.match(text, /"code":"rate_limit_exceeded","message":"Too many concurrent requests for this key \(4 in flight on this gateway\); retry when one finishes"/);
    }
    assert.equal(gates.inFlightOf(a.keyId), 4);
    // A finished request of the same key is refused too while the four uploads hold its share.
    const fast = await failure(a.client.messages.create({ model: MODEL, max_tokens: 5, messages }));
    assert.equal(fast.status, 429);
    // Two uploaders leave: their slots come back, and the key is served again.
    uploads[0]!.socket.destroy();
    uploads[1]!.socket.destroy();
    await until(async () => gates.inFlightOf(a.keyId) === 2);
    const served = await a.client.messages.create({ model: MODEL, max_tokens: 5, messages }, { headers: { 'x-sim-output': '2' } });
    assert.equal(served.usage.output_tokens, 2);
    for (const u of uploads) u.socket.destroy();
    await until(async () => gates.inFlightOf(a.keyId) === 0 && gates.inFlightOfAccount(a.accountId) === 0 && gates.inFlight === 0);
  } finally {
    await stack.close();
  }
});

test('a tenant slot is released exactly once on every path: early errors, refusals, upstream errors, a client gone mid-stream, settled', async () => {
  const gates = new ConcurrencyGates({ perKey: 2, pool: 8 });
  const stack = await startGateway({ concurrency: gates, upstreamMaxConnections: 8 });
  try {
    const a = await stack.customer();
    const poor = await stack.customer(0n);
    const json = { 'content-type': 'application/json', 'x-api-key': a.secret };
    // 400 invalid JSON, 400 invalid body, 404 unknown model: before the upstream.
    for (const body of ['{"model":', '{}', JSON.stringify({ model: 'claude-nope-9', max_tokens: 5, messages })]) {
      const res = await fetch(`${stack.gatewayUrl}/v1/messages`, { method: 'POST', headers: json, body });
      assert.ok(res.status === 400 || res.status === 404, String(res.status));
      await res.arrayBuffer();
    }
    // 402 at the hold, and the same for count_tokens.
    assert.equal((await failure(poor.client.messages.create({ model: MODEL, max_tokens: 5, messages }))).status, 402);
    assert.equal((await failure(poor.client.messages.countTokens({ model: MODEL, messages }))).status, 402);
    // upstream 500 for a message and for count_tokens
    await failure(a.client.messages.create({ model: MODEL, max_tokens: 5, messages }, { headers: { 'x-sim-status': '500' } }));
    await failure(a.client.messages.countTokens({ model: MODEL, messages }, { headers: { 'x-sim-status': '500' } }));
    // a client that leaves mid-stream: the upstream is read to its end, then the slot frees
    const controller = new AbortController();
    const stream = await a.client.messages.create({ model: MODEL, max_tokens: 50, messages, stream: true },
      { headers: { 'x-sim-output': '8', 'x-sim-tps': '8' }, signal: controller.signal });
    for await (const _ of stream) { controller.abort(); }
    // settled: a JSON answer and a stream
    await a.client.messages.create({ model: MODEL, max_tokens: 5, messages });
    await readStream(a.client, {});
    await until(async () => gates.inFlightOf(a.keyId) === 0 && gates.inFlightOfAccount(a.accountId) === 0
      && gates.inFlightOfAccount(poor.accountId) === 0 && gates.inFlight === 0);
    // Exactly once: the key's full share of 2 is usable, and not one more (a double release
    // would have let a third through).
    const slow = [readStream(a.client, SLOW_HEADERS), readStream(a.client, SLOW_HEADERS)];
    await until(async () => gates.inFlightOf(a.keyId) === 2);
    assert.equal((await failure(a.client.messages.create({ model: MODEL, max_tokens: 5, messages }))).status, 429);
    await Promise.all(slow);
  } finally {
    await stack.close();
  }
});

test('pool fairness is per account: one account with 2 keys x 4 streams gets half the pool, the rest 429; another account is served', async () => {
  // ACCOUNT_MAX_CONCURRENT_REQUESTS unset: the gates' default, half the pool.
  const gates = new ConcurrencyGates({ perKey: 4, pool: 8 });
  const stack = await startGateway({ concurrency: gates, upstreamMaxConnections: 8 });
  try {
    const a1 = await stack.customer();
    // A second key on a1's account.
    const secret = generateSecret();
    const now = Date.now();
    await stack.deps.keys.putKey({
      id: `${a1.keyId}_2`, account_id: a1.accountId, name: 'second', prefix: displayPrefix(secret),
      hash: hashSecret(secret, stack.deps.keyHashSecret), status: 'active', created_at: now, revoked_at: null, version: 1,
    });
    const a2 = new Anthropic({ apiKey: secret, baseURL: stack.gatewayUrl, maxRetries: 0, logLevel: 'error' });
    const b = await stack.customer();
    assert.equal(gates.perAccount, 4, 'ACCOUNT_MAX_CONCURRENT_REQUESTS defaults to half the pool of 8');

    const long = [0, 1, 2, 3].map(() => readStream(a1.client, SLOW_HEADERS));
    await until(async () => (await stack.simRequests()).length === 4);
    const refused = [];
    for (let i = 0; i < 4; i++) refused.push(await failure(a2.messages.create({ model: MODEL, max_tokens: 5, messages })));
    for (const r of refused) {
      assert.deepEqual([r.status, (r.error as { error: { code: string; message: string } }).error, r.headers.get('retry-after')], [429, {
        type: 'rate_limit_error', code: 'rate_limit_exceeded',
        message: 'Too many concurrent requests for this account (4 in flight on this gateway); retry when one finishes',
      }, '1']);
    }
    assert.equal((await stack.simRequests()).length, 4);
    const served = await b.client.messages.create({ model: MODEL, max_tokens: 5, messages }, { headers: { 'x-sim-output': '3' } });
    assert.equal(served.usage.output_tokens, 3);
    await Promise.all(long);
    await until(async () => gates.inFlightOfAccount(a1.accountId) === 0);
    const again = await a2.messages.create({ model: MODEL, max_tokens: 5, messages }, { headers: { 'x-sim-output': '1' } });
    assert.equal(again.usage.output_tokens, 1);
  } finally {
    await stack.close();
  }
});
