// Issue 6, items 2, 4, 5, 6 end to end: the official SDK (or a raw socket where the SDK cannot
// leave at the phase under test) → Tollgate embedded → the simulator. Every amount is computed
// here by hand from the CNY catalog (µc per token): sonnet-4-5 input 72, output 360, cache read
// 7.2. The settlement rule under test (README, "Settlement"): once a request body has been
// received in full, the gateway carries the request through to the upstream's end whatever the
// client does; exactly one usage event; hold and limiter slots released when the upstream ends.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { admin, customer, settledBalance, startStack, type Stack } from '../support/tollgate.ts';
import { requestUntil, sendAndLeave, upstreamSaw as sawIn } from '../support/leaving-client.ts';

let stack: Stack;
before(async () => { stack = await startStack({ RATE_LIMIT_CONCURRENT: '2' }); });
after(async () => { await stack?.close(); });

const user = (text: string) => [{ role: 'user' as const, content: text }];
const SONNET = 'claude-sonnet-4-5';
// input 800 / output 120 on sonnet-4-5: 800×72 + 120×360 = 57,600 + 43,200
const BILLED = 100_800n;

async function usageEvent(requestId: string) {
  await stack.tollgate.drain();
  const e = await stack.tollgate.warehouse.getUsageEvent(requestId);
  assert.ok(e, `usage event ${requestId} is in the warehouse`);
  return e;
}

/** Every usage event id of an account (to prove there is exactly one per request). */
async function eventIds(accountId: string): Promise<string[]> {
  await stack.tollgate.drain();
  return [...await stack.tollgate.warehouse.usageEventIds({ accountId })].sort();
}

const upstreamSaw = (marker: string) => sawIn(stack.simUrl, marker);

function messageBody(text: string, stream: boolean): string {
  // max_tokens 1024: the hold (≥ 1024 × 360 µc) covers every amount below, so only the
  // cost_over_bound test meets the cap.
  return JSON.stringify({ model: SONNET, max_tokens: 1024, stream, messages: user(text) });
}

describe('clients that leave: carried through to the upstream end, one event, hold and slots released', () => {
  // One key for every phase, with RATE_LIMIT_CONCURRENT=2: a leaked limiter slot or hold from
  // any phase makes the last test fail with 429 (or the balance assertion with a hold).
  let c: Awaited<ReturnType<typeof customer>>;
  let balance = 10_000_000n;
  const ids: string[] = [];
  before(async () => { c = await customer(stack.url, 10); });

  /** Exactly one new usage event for this account; returns it. */
  async function theNewEvent() {
    const all = await eventIds(c.accountId);
    const fresh = all.filter((id) => !ids.includes(id));
    assert.equal(fresh.length, 1, `exactly one new usage event, got ${fresh.length}`);
    ids.push(fresh[0]!);
    return usageEvent(fresh[0]!);
  }

  async function billed(expectedStatus: string) {
    balance -= BILLED;
    assert.equal(await settledBalance(stack, c.accountId), balance);
    const e = await theNewEvent();
    assert.equal(e.cost_micros, String(BILLED));
    assert.deepEqual([e.input_tokens, e.output_tokens], [800, 120]);
    assert.equal(e.status, expectedStatus);
    return e;
  }

  test('client leaves right after sending its body (before the hold), stream: billed as the upstream bills, client_disconnect', async () => {
    await sendAndLeave(stack.url, c.secret, messageBody('phase-before-hold [[sim input=800 output=120]]', true));
    await upstreamSaw('phase-before-hold');
    await billed('client_disconnect');
  });

  test('client leaves right after sending its body, JSON: billed as the upstream bills, client_disconnect', async () => {
    await sendAndLeave(stack.url, c.secret, messageBody('phase-before-hold-json [[sim input=800 output=120]]', false));
    await upstreamSaw('phase-before-hold-json');
    await billed('client_disconnect');
  });

  test('stream client leaves while waiting for upstream headers: billed as the upstream bills, client_disconnect', async () => {
    const r = requestUntil(stack.url, c.secret, messageBody('phase-headers [[sim input=800 output=120 latency_ms=1500]]', true), 'read', () => false);
    await upstreamSaw('phase-headers');
    r.abort();
    await r.done;
    await billed('client_disconnect');
  });

  test('JSON client leaves while waiting for the answer: billed as the upstream bills, client_disconnect', async () => {
    const r = requestUntil(stack.url, c.secret, messageBody('phase-json [[sim input=800 output=120 latency_ms=1500]]', false), 'read', () => false);
    await upstreamSaw('phase-json');
    r.abort();
    await r.done;
    await billed('client_disconnect');
  });

  test('client leaves mid-stream (after the first content delta): read to the end, billed in full, client_disconnect', async () => {
    const r = requestUntil(stack.url, c.secret, messageBody('phase-mid [[sim input=800 output=120 tps=150]]', true), 'read',
      (text) => text.includes('event: content_block_delta'));
    const id = await r.done;
    const e = await billed('client_disconnect');
    assert.equal(e.event_id, id);
  });

  test('client leaves right after message_stop: the answer was delivered, status ok', async () => {
    const r = requestUntil(stack.url, c.secret, messageBody('phase-stop [[sim input=800 output=120]]', true), 'read',
      (text) => text.includes('event: message_stop'));
    const id = await r.done;
    const e = await billed('ok');
    assert.equal(e.event_id, id);
  });

  test('after every phase the key still serves RATE_LIMIT_CONCURRENT=2 requests at once: no slot or hold was leaked', async () => {
    const [a, b] = await Promise.all([1, 2].map((i) => c.client.messages.create({
      model: SONNET, max_tokens: 256, messages: user(`after-${i} [[sim input=800 output=120]]`),
    })));
    assert.equal(a!.usage.output_tokens, 120);
    assert.equal(b!.usage.output_tokens, 120);
    balance -= 2n * BILLED;
    assert.equal(await settledBalance(stack, c.accountId), balance);
  });
});

/** A streaming request read to its end over plain HTTP; returns the gateway's id and the SSE text. */
async function streamText(secret: string, text: string): Promise<{ id: string; sse: string }> {
  const res = await fetch(`${stack.url}/v1/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': secret }, body: messageBody(text, true),
  });
  assert.equal(res.status, 200);
  return { id: res.headers.get('request-id')!, sse: await res.text() };
}

async function jsonAnswer(secret: string, text: string): Promise<{ id: string; status: number; body: string }> {
  const res = await fetch(`${stack.url}/v1/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': secret }, body: messageBody(text, false),
  });
  return { id: res.headers.get('request-id')!, status: res.status, body: await res.text() };
}

describe('upstream anomalies: one rule each, a status finance can find, never more than the hold', () => {
  test('stream without message_stop after a final message_delta (item 5): a complete answer, charged, no error appended', async () => {
    const c = await customer(stack.url, 10);
    // the gateway closes the charged answer for the client, so the official SDK accepts it
    const s = c.client.messages.stream({ model: SONNET, max_tokens: 1024, messages: user('[[sim input=500 output=40 sse=no_message_stop]]') });
    const final = await s.finalMessage();
    assert.equal(final.usage.output_tokens, 40);
    assert.equal(final.stop_reason, 'end_turn');
    const { id, sse } = await streamText(c.secret, '[[sim input=500 output=40 sse=no_message_stop]]');
    assert.equal(sse.includes('event: error'), false);
    assert.ok(sse.endsWith('event: message_stop\ndata: {"type":"message_stop"}\n\n'));
    assert.equal(sse.split('event: message_stop').length, 2, 'one message_stop');
    // 500×72 + 40×360 = 36,000 + 14,400, twice
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 2n * 50_400n);
    const e = await usageEvent(id);
    assert.equal(e.cost_micros, '50400');
    assert.equal(e.status, 'usage_anomaly');
    assert.deepEqual(e.anomalies, ['missing_message_stop']);
  });

  test('final message_delta lower than message_start (item 6): counters only grow, 126,000 not 39,600', async () => {
    const c = await customer(stack.url, 10);
    const { id } = await streamText(c.secret, '[[sim input=1200 cache_read=3000 output=50 sse=delta_lower]]');
    // 1200×72 + 3000×7.2 + 50×360 = 86,400 + 21,600 + 18,000
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 126_000n);
    const e = await usageEvent(id);
    assert.equal(e.cost_micros, '126000');
    assert.deepEqual([e.input_tokens, e.cache_read_tokens, e.output_tokens], [1200, 3000, 50]);
    assert.equal(e.status, 'usage_anomaly');
    assert.deepEqual(e.anomalies, ['count_decreased']);
  });

  test('duplicate message_start and a message_delta after message_stop: merged by max / ignored, flagged', async () => {
    const c = await customer(stack.url, 10);
    const dup = await streamText(c.secret, '[[sim input=300 output=20 sse=duplicate_message_start]]');
    const late = await streamText(c.secret, '[[sim input=300 output=20 sse=delta_after_stop]]');
    // 300×72 + 20×360 = 28,800 each; the late delta (output 40) is not charged
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 2n * 28_800n);
    const a = await usageEvent(dup.id);
    assert.deepEqual([a.cost_micros, a.status, a.anomalies], ['28800', 'usage_anomaly', ['duplicate_message_start']]);
    const b = await usageEvent(late.id);
    assert.deepEqual([b.cost_micros, b.output_tokens, b.status, b.anomalies], ['28800', 20, 'usage_anomaly', ['event_after_stop']]);
  });

  test('stream with a bad final output_tokens (negative, string, null, 1e20, NaN): the value is rejected, message_start\'s kept, flagged', async () => {
    const c = await customer(stack.url, 10);
    const expected: Record<string, string[]> = {
      negative: ['invalid_count'], string: ['invalid_count'], null: ['invalid_count'], huge: ['invalid_count'],
      // NaN is not JSON: the whole message_delta is unreadable
      nan: ['malformed_event'],
    };
    for (const [kind, anomalies] of Object.entries(expected)) {
      const { id } = await streamText(c.secret, `[[sim input=300 output=20 bad_usage=${kind}]]`);
      const e = await usageEvent(id);
      // 300×72 + 1×360 (message_start's output count)
      assert.deepEqual([e.cost_micros, e.output_tokens, e.status, e.anomalies], ['21960', 1, 'usage_anomaly', anomalies], kind);
    }
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 5n * 21_960n);
  });

  test('JSON with a bad output_tokens: 0 for that class and flagged; NaN, no usage or not JSON: unmetered, charged 0', async () => {
    const c = await customer(stack.url, 10);
    for (const kind of ['negative', 'string', 'null', 'huge']) {
      const r = await jsonAnswer(c.secret, `[[sim input=300 output=20 bad_usage=${kind}]]`);
      assert.equal(r.status, 200);
      const e = await usageEvent(r.id);
      // 300×72
      assert.deepEqual([e.cost_micros, e.output_tokens, e.status, e.anomalies], ['21600', 0, 'usage_anomaly', ['invalid_count']], kind);
    }
    for (const directive of ['bad_usage=nan', 'body=no_usage', 'body=not_json']) {
      const r = await jsonAnswer(c.secret, `[[sim input=300 output=20 ${directive}]]`);
      assert.equal(r.status, 200, 'the answer is passed on as it came');
      const e = await usageEvent(r.id);
      assert.deepEqual([e.cost_micros, e.input_tokens, e.status, e.anomalies], ['0', 0, 'unmetered', ['no_usage']], directive);
    }
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 4n * 21_600n);
  });

  test('usage above what the hold proved possible: charged the hold, flagged cost_over_bound', async () => {
    const c = await customer(stack.url, 10);
    const alertsBefore = await anomalyMetric('cost_over_bound');
    // 4,000,000,000 input tokens would be 288,000,000,000 µc; the request's hold is far less.
    const r = requestUntil(stack.url, c.secret, messageBody('[[sim input=4000000000 output=20 latency_ms=300]]', false), 'read', () => false);
    // While the upstream waits, the hold is the only thing held on the account.
    const held = await heldMicros(c.accountId);
    const id = await r.done;
    assert.ok(id);
    const e = await usageEvent(id);
    assert.equal(e.cost_micros, String(held));
    assert.equal(e.status, 'usage_anomaly');
    assert.deepEqual(e.anomalies, ['cost_over_bound']);
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - held);
    assert.equal(await anomalyMetric('cost_over_bound'), alertsBefore + 1, 'tollgate_usage_anomalies_total{kind="cost_over_bound"} counted it');
  });
});

/** The account's held amount while a request is in flight, in µc (polls until it is non-zero). */
async function heldMicros(accountId: string): Promise<bigint> {
  for (let i = 0; i < 200; i++) {
    const v = await admin<{ held_credits: number | string }>(stack.url, 'GET', `/admin/v1/accounts/${accountId}`);
    // held_credits is a decimal with up to 6 places: exact in µc after scaling by its string
    const text = String(v.json.held_credits);
    if (text !== '0') {
      const [whole, frac = ''] = text.split('.');
      return BigInt(whole!) * 1_000_000n + BigInt(frac.padEnd(6, '0'));
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('no hold appeared');
}

/** The current value of `tollgate_usage_anomalies_total{kind}` on the gateway's /metrics. */
async function anomalyMetric(kind: string): Promise<number> {
  const text = await (await fetch(`${stack.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`tollgate_usage_anomalies_total{kind="${kind}"} `));
  assert.ok(line, `the ${kind} series exists from the start`);
  return Number(line.split(' ')[1]);
}
