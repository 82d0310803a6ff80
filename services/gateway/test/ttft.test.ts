// Issue 9 (breaker finding: an upstream 529 had "ttft 325 ms"): the usage event's ttft_ms is the
// time to the first token of an answer, never to the first byte of an error. The simulator
// answers with its headers and message_start at once and holds the first content delta for
// `ttft_ms`, so a ttft measured at the first byte is below that delay and one measured at the
// first token is at least it (a lower bound the simulator guarantees, not a timing race).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import type { UsageEventV2 } from '@tollgate/events';
import { startGateway, type Customer, type GatewayStack } from './support.ts';

const MODEL = 'claude-haiku-4-5';
let stack: GatewayStack;
before(async () => { stack = await startGateway(); });
after(async () => stack.close());

/** The one usage event of the customer's account (each test uses a fresh customer). */
async function onlyEvent(c: Customer): Promise<UsageEventV2> {
  for (let i = 0; i < 400; i++) {
    const mine = [...stack.usage.values()].filter((e) => e.account_id === c.accountId);
    if (mine.length === 1) return mine[0] as UsageEventV2;
    assert.ok(mine.length <= 1, `expected one event, got ${mine.length}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no usage event for ${c.accountId}`);
}

async function readStream(c: Customer, directives: string): Promise<unknown> {
  try {
    const stream = await c.client.messages.create({ model: MODEL, max_tokens: 50, stream: true, messages: [{ role: 'user', content: `[[sim ${directives}]] hi` }] });
    for await (const _ of stream) { /* read to the end */ }
    return null;
  } catch (err) {
    return err;
  }
}

test('stream answered: ttft_ms is the first content delta, not the first byte (simulator holds the first delta 300 ms)', async () => {
  const c = await stack.customer();
  assert.equal(await readStream(c, 'input=5 output=4 ttft_ms=300 tps=0'), null);
  const e = await onlyEvent(c);
  assert.deepEqual([e.status, e.http_status, e.stream], ['ok', 200, true]);
  assert.ok(e.ttft_ms !== null && e.ttft_ms >= 300 && e.ttft_ms <= e.latency_ms, `ttft ${e.ttft_ms}, latency ${e.latency_ms}`);
});

test('stream with an upstream error status (529, 500): no token, ttft_ms null', async () => {
  for (const status of [529, 500]) {
    const c = await stack.customer();
    const err = await readStream(c, `status=${status} latency_ms=50`);
    assert.ok(err instanceof Anthropic.APIError && err.status === status, String(err));
    const e = await onlyEvent(c);
    assert.deepEqual([e.status, e.http_status, e.ttft_ms], ['upstream_error', status, null]);
  }
});

test('stream whose error event comes before any content: stream_error, ttft_ms null', async () => {
  const c = await stack.customer();
  const err = await readStream(c, 'output=4 ttft_ms=50 fault=sse_error_after:0');
  assert.ok(err instanceof Error, String(err));
  const e = await onlyEvent(c);
  assert.deepEqual([e.status, e.http_status, e.ttft_ms], ['stream_error', 200, null]);
});

test('stream cut before any content (connection dropped): ttft_ms null', async () => {
  const c = await stack.customer();
  assert.ok(await readStream(c, 'output=4 fault=drop_after:0') instanceof Error);
  const e = await onlyEvent(c);
  assert.deepEqual([e.status, e.ttft_ms], ['upstream_error', null]);
});

test('stream cut after content was relayed: the tokens came, so ttft_ms is when the first did', async () => {
  const c = await stack.customer();
  assert.ok(await readStream(c, 'output=4 ttft_ms=200 tps=0 fault=drop_after:1') instanceof Error);
  const e = await onlyEvent(c);
  assert.equal(e.status, 'upstream_error');
  assert.ok(e.ttft_ms !== null && e.ttft_ms >= 200, `ttft ${e.ttft_ms}`);
});

test('JSON answer with an upstream error status (529, 500): ttft_ms null', async () => {
  for (const status of [529, 500]) {
    const c = await stack.customer();
    const err = await c.client.messages.create({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: `[[sim status=${status} latency_ms=50]] hi` }] })
      .then(() => null, (x: unknown) => x);
    assert.ok(err instanceof Anthropic.APIError && err.status === status, String(err));
    const e = await onlyEvent(c);
    assert.deepEqual([e.status, e.http_status, e.stream, e.ttft_ms], ['upstream_error', status, false, null]);
  }
});

test('JSON answer: ttft_ms is its first body byte (the whole answer arrives at once; simulator latency 300 ms)', async () => {
  const c = await stack.customer();
  const msg = await c.client.messages.create({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: '[[sim input=5 output=4 latency_ms=300]] hi' }] });
  assert.equal(msg.type, 'message');
  const e = await onlyEvent(c);
  assert.deepEqual([e.status, e.http_status, e.stream], ['ok', 200, false]);
  assert.ok(e.ttft_ms !== null && e.ttft_ms >= 300 && e.ttft_ms <= e.latency_ms, `ttft ${e.ttft_ms}, latency ${e.latency_ms}`);
});
