// Issue 6, items 2, 4, 5, 6 end to end: the official SDK (or a raw socket where the SDK cannot
// leave at the phase under test) → Tollgate embedded → the simulator. Every amount is computed
// here by hand from the CNY catalog (µc per token): sonnet-4-5 input 72, output 360, cache read
// 7.2. The settlement rule under test (README, "Settlement"): once a request body has been
// received in full, the gateway carries the request through to the upstream's end whatever the
// client does; exactly one usage event; hold and limiter slots released when the upstream ends.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { admin, customer, settledBalance, startStack, type Stack } from '../support/tollgate.ts';
import { flatUsage } from '../support/events.ts';
import { requestUntil, sendAndLeave, upstreamSaw as sawIn } from '../support/leaving-client.ts';

let stack: Stack;
// The gateway's upstream is the scripted server below, which passes every request it has no
// script for on to the simulator (one embedded stack per process: chDB holds one data dir).
let up: ScriptedUpstream;
before(async () => {
  up = await scriptedUpstream();
  stack = await startStack({ RATE_LIMIT_CONCURRENT: '2', UPSTREAM_URL: up.url });
  up.forwardTo = stack.simUrl;
});
after(async () => {
  await stack?.close();
  await up?.close();
});

const user = (text: string) => [{ role: 'user' as const, content: text }];
const SONNET = 'claude-sonnet-4-5';
// input 800 / output 120 on sonnet-4-5: 800×72 + 120×360 = 57,600 + 43,200
const BILLED = 100_800n;

async function usageEvent(requestId: string) {
  await stack.tollgate.drain();
  const e = await stack.tollgate.warehouse.getUsageEvent(requestId);
  assert.ok(e, `usage event ${requestId} is in the warehouse`);
  return flatUsage(e);
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

  test('duplicate message_start and a message_delta after message_stop: merged by max and flagged / never read (the answer is over at message_stop)', async () => {
    const c = await customer(stack.url, 10);
    const dup = await streamText(c.secret, '[[sim input=300 output=20 sse=duplicate_message_start]]');
    const late = await streamText(c.secret, '[[sim input=300 output=20 sse=delta_after_stop]]');
    // 300×72 + 20×360 = 28,800 each; the late delta (output 40) is not charged
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 2n * 28_800n);
    const a = await usageEvent(dup.id);
    assert.deepEqual([a.cost_micros, a.status, a.anomalies], ['28800', 'usage_anomaly', ['duplicate_message_start']]);
    const b = await usageEvent(late.id);
    // the upstream connection is closed at message_stop: the late delta is not even read
    assert.deepEqual([b.cost_micros, b.output_tokens, b.status, b.anomalies], ['28800', 20, 'ok', undefined]);
  });

  test('stream with a bad final output_tokens (negative, string, null, 1e20, NaN): the value is rejected and no count given (0, as the JSON answer), flagged; NaN makes the delta unreadable', async () => {
    const c = await customer(stack.url, 10);
    const expected: Record<string, string[]> = {
      negative: ['invalid_count'], string: ['invalid_count'], null: ['invalid_count'], huge: ['invalid_count'],
      // NaN is not JSON: the whole message_delta is unreadable, so no output count was given either
      nan: ['invalid_count', 'malformed_event'],
    };
    for (const [kind, anomalies] of Object.entries(expected)) {
      const { id } = await streamText(c.secret, `[[sim input=300 output=20 bad_usage=${kind}]]`);
      const e = await usageEvent(id);
      // 300×72, as the JSON answer below; message_start's placeholder 1 is never charged as output
      assert.deepEqual([e.cost_micros, e.output_tokens, e.status, e.anomalies], ['21600', 0, 'usage_anomaly', anomalies], kind);
    }
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 5n * 21_600n);
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

// ---------------------------------------------------------------------------------------------
// A scripted upstream (a tiny node:http server) for what the simulator does not do: an answer
// followed by an open connection, an error after the answer, cache-write breakdowns that move
// or disagree with their totals, output above max_tokens. The script is named in the prompt as
/**
 * Waits (at most 5 s) until the gateway has closed exactly these scripted upstream connections
 * (`match` picks which to compare): an upstream that keeps its connection open after a complete
 * answer is cut `CANCEL_GRACE_MS` (1 s) after the answer, not at once — the client, hold and
 * slots were freed at the answer already (asserted before this is called).
 */
async function closedEventually(up: { closedByGateway: string[] }, match: (name: string) => boolean, expected: string[]): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const got = up.closedByGateway.filter(match).sort();
    if (got.length >= expected.length || Date.now() > deadline) {
      assert.deepEqual(got, [...expected].sort(), 'the gateway closed the upstream connections it held open');
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// [[script NAME]]; the server records whether the gateway closed each connection.

const sse = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const start = (usage: Record<string, unknown>) => sse('message_start', {
  message: { id: 'msg_script', type: 'message', role: 'assistant', model: SONNET, content: [], stop_reason: null, stop_sequence: null, usage },
});
const TEXT = sse('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
  + sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hi' } })
  + sse('content_block_stop', { index: 0 });
const finalDelta = (usage: Record<string, unknown>) => sse('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage });
const STOP = sse('message_stop', {});
const PING = sse('ping', {});
const jsonMessage = (usage: Record<string, unknown>) => JSON.stringify({
  id: 'msg_script', type: 'message', role: 'assistant', model: SONNET, content: [{ type: 'text', text: 'Hi' }],
  stop_reason: 'end_turn', stop_sequence: null, usage,
});

type Script = (res: ServerResponse) => void;
/** keeps the connection open with a ping every 100 ms until the other side closes it */
const pingForever = (res: ServerResponse) => {
  const t = setInterval(() => res.write(PING), 100);
  res.on('close', () => clearInterval(t));
};
const streamHead = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'text/event-stream', 'request-id': 'req_script' });
const SCRIPTS: Record<string, Script> = {
  // a complete stream whose final message_delta carries no usage: no output count was given
  final_delta_without_usage: (res) => {
    streamHead(res);
    res.end(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + sse('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null } }) + STOP);
  },
  // a complete stream under a media type written in capitals (media types are case-insensitive)
  capital_event_stream: (res) => {
    res.writeHead(200, { 'content-type': 'Text/Event-Stream; charset=UTF-8', 'request-id': 'req_script' });
    res.end(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + finalDelta({ output_tokens: 40 }) + STOP);
  },
  open_after_stop: (res) => {
    streamHead(res);
    res.write(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + finalDelta({ output_tokens: 40 }) + STOP);
    pingForever(res);
  },
  open_after_delta: (res) => {
    streamHead(res);
    res.write(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + finalDelta({ output_tokens: 40 }));
    pingForever(res);
  },
  error_after_answer: (res) => {
    streamHead(res);
    res.end(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + finalDelta({ output_tokens: 40 })
      + sse('error', { error: { type: 'overloaded_error', message: 'Overloaded' } }));
  },
  breakdown_shift: (res) => {
    streamHead(res);
    res.end(start({ input_tokens: 500, output_tokens: 1, cache_creation_input_tokens: 1000, cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 0 } })
      + TEXT + finalDelta({ output_tokens: 40, cache_creation_input_tokens: 1000, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 } }) + STOP);
  },
  breakdown_over_total: (res) => {
    streamHead(res);
    res.end(start({ input_tokens: 500, output_tokens: 1, cache_creation_input_tokens: 0, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 } })
      + TEXT + finalDelta({ output_tokens: 40 }) + STOP);
  },
  json_breakdown_under_total: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(jsonMessage({ input_tokens: 500, output_tokens: 40, cache_creation_input_tokens: 5000, cache_creation: { ephemeral_5m_input_tokens: 10, ephemeral_1h_input_tokens: 0 } }));
  },
  output_over_max: (res) => {
    streamHead(res);
    res.end(start({ input_tokens: 5, output_tokens: 1 }) + TEXT + finalDelta({ output_tokens: 300 }) + STOP);
  },
  // the final delta, then (each within the 2 s grace of the event before) more content and a
  // second final delta with more usage, then pings forever
  late_usage_after_stop_reason: (res) => {
    streamHead(res);
    res.write(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + finalDelta({ output_tokens: 40 }));
    const t1 = setTimeout(() => res.write(sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ' more' } })), 1_200);
    const t2 = setTimeout(() => { res.write(finalDelta({ output_tokens: 60 })); pingForever(res); }, 2_400);
    res.on('close', () => { clearTimeout(t1); clearTimeout(t2); });
  },
  // a complete answer in the framing the request did not ask for
  sse_framing: (res) => {
    streamHead(res);
    res.end(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + finalDelta({ output_tokens: 40 }) + STOP);
  },
  // the same, without message_stop and kept open with pings: the answer-end grace still ends it
  sse_framing_open: (res) => {
    streamHead(res);
    res.write(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + finalDelta({ output_tokens: 40 }));
    pingForever(res);
  },
  json_framing: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(jsonMessage({ input_tokens: 500, output_tokens: 40 }));
  },
  // a complete JSON answer (chunked, no content-length), then the connection kept open
  json_kept_open: (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_script' });
    res.write(jsonMessage({ input_tokens: 500, output_tokens: 40 }));
  },
  json_output_over_max: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(jsonMessage({ input_tokens: 5, output_tokens: 300 }));
  },
};

interface ScriptedUpstream {
  url: string;
  /** where requests without a script go (the simulator) */
  forwardTo: string;
  /** scripts whose connection the gateway closed before the upstream ended it */
  closedByGateway: string[];
  close(): Promise<void>;
}

async function scriptedUpstream(): Promise<ScriptedUpstream> {
  const closedByGateway: string[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const name = /\[\[script (\w+)\]\]/.exec(body.toString('utf8'))?.[1] ?? '';
    const script = SCRIPTS[name];
    if (script) {
      res.on('close', () => { if (!res.writableEnded) closedByGateway.push(name); });
      script(res);
      return;
    }
    const fwd = httpRequest(`${upstream.forwardTo}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    res.on('close', () => fwd.destroy());
    fwd.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const upstream: ScriptedUpstream = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    forwardTo: '',
    closedByGateway,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
  return upstream;
}

describe('scripted upstream: the answer ends the request; usage reports that cannot all be true are charged once, bounded, flagged', () => {
  const gw = { get url() { return stack.url; } };

  const post = (secret: string, script: string, { stream = true, maxTokens = 4096 } = {}) => fetch(`${gw.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': secret },
    body: JSON.stringify({ model: SONNET, max_tokens: maxTokens, stream, messages: user(`[[script ${script}]]`) }),
  });
  const eventOf = usageEvent;

  test('anything after the answer is complete (message_stop, or the final message_delta then silence/pings): client answered, settled, slots free, upstream closed', { timeout: 30_000 }, async () => {
    const c = await customer(gw.url, 10);
    // Two at once fill RATE_LIMIT_CONCURRENT=2; the upstream would keep both open forever.
    const runs = await Promise.all(['open_after_stop', 'open_after_delta'].map(async (script) => {
      const res = await post(c.secret, script);
      assert.equal(res.status, 200);
      return { script, id: res.headers.get('request-id')!, sse: await res.text() };
    }));
    for (const { script, sse: text } of runs) {
      // the client's response ended, closed by exactly one message_stop (appended for open_after_delta)
      assert.ok(text.endsWith(STOP), script);
      assert.equal(text.split('event: message_stop').length, 2, script);
      assert.equal(text.includes('event: error'), false, script);
    }
    // Both slots are free again although the upstream never ended either response.
    const third = await c.client.messages.create({ model: SONNET, max_tokens: 4096, messages: user('[[script json_breakdown_under_total]]') });
    assert.equal(third.usage.output_tokens, 40);
    await closedEventually(up, (n) => n.startsWith('open_'), ['open_after_delta', 'open_after_stop']);
    // 500×72 + 40×360 = 36,000 + 14,400 = 50,400 each
    const [stop, delta] = [await eventOf(runs[0]!.id), await eventOf(runs[1]!.id)];
    assert.deepEqual([stop.cost_micros, stop.status, stop.anomalies], ['50400', 'ok', undefined]);
    assert.deepEqual([delta.cost_micros, delta.status, delta.anomalies], ['50400', 'usage_anomaly', ['missing_message_stop']]);
    // third: 500×72 + 40×360 + 5,000×90 (cache write 5m) = 36,000 + 14,400 + 450,000 = 500,400
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 2n * 50_400n - 500_400n);
  });

  test('a complete stream whose final message_delta gives no output count: output 0 and invalid_count, never message_start\'s placeholder charged as output', async () => {
    const c = await customer(gw.url, 10);
    const res = await post(c.secret, 'final_delta_without_usage');
    assert.equal(res.status, 200);
    assert.ok((await res.text()).endsWith(STOP));
    const e = await eventOf(res.headers.get('request-id')!);
    // 500×72 + 0×360 = 36,000 µc (the placeholder as output: 36,360)
    assert.deepEqual([e.cost_micros, e.output_tokens, e.status, e.anomalies], ['36000', 0, 'usage_anomaly', ['invalid_count']]);
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 36_000n);
  });

  test('an event stream whose media type is written in capitals (Text/Event-Stream) is relayed and metered as one', async () => {
    const c = await customer(gw.url, 10);
    const res = await post(c.secret, 'capital_event_stream');
    assert.equal(res.status, 200);
    assert.ok((await res.text()).endsWith(STOP));
    const e = await eventOf(res.headers.get('request-id')!);
    // 500×72 + 40×360 = 36,000 + 14,400 = 50,400
    assert.deepEqual([e.cost_micros, e.status, e.anomalies], ['50400', 'ok', undefined]);
  });

  test('events after the final message_delta: the grace restarts on each non-ping event, a later delta\'s usage is counted, content after the stop_reason relayed and flagged event_after_stop', { timeout: 30_000 }, async () => {
    const c = await customer(gw.url, 10);
    const res = await post(c.secret, 'late_usage_after_stop_reason');
    const text = await res.text();
    assert.ok(text.includes('" more"'), 'the late content was relayed');
    assert.ok(text.replaceAll(PING, '').endsWith(finalDelta({ output_tokens: 60 }) + STOP), 'the later delta was relayed (pings aside), then the closing frame');
    const e = await eventOf(res.headers.get('request-id')!);
    // 500×72 + 60×360 = 36,000 + 21,600 = 57,600 (not 50,400: the second delta counts)
    assert.deepEqual([e.cost_micros, e.output_tokens, e.status, [...e.anomalies ?? []].sort()],
      ['57600', 60, 'usage_anomaly', ['event_after_stop', 'missing_message_stop']]);
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 57_600n);
    await closedEventually(up, (n) => n === 'late_usage_after_stop_reason', ['late_usage_after_stop_reason']);
  });

  test('the upstream answers in another framing than asked (event stream to a JSON request, one JSON body to a stream request): 503 upstream_error, not retried, usage recorded, charged 0 (STREAM_ERROR_BILLING refund)', async () => {
    const c = await customer(gw.url, 10);
    for (const [script, stream, what] of [
      ['sse_framing', false, 'a non-streaming request with an event stream'],
      ['sse_framing_open', false, 'a non-streaming request with an event stream'],
      ['json_framing', true, 'a streaming request with a single (non event-stream) body'],
    ] as const) {
      const res = await post(c.secret, script, { stream });
      const id = res.headers.get('request-id')!;
      assert.deepEqual([res.status, res.headers.get('content-type'), res.headers.get('x-should-retry')], [503, 'application/json; charset=utf-8', 'false'], script);
      assert.deepEqual(await res.json(), {
        type: 'error',
        error: { type: 'api_error', code: 'upstream_error', message: `Upstream answered ${what}; the gateway operator must fix its upstream` },
        request_id: id,
      }, script);
      const e = await eventOf(id);
      // the upstream's report (500 in, 40 out) is recorded for finance; refunded: 0 µc
      assert.deepEqual([e.status, e.http_status, e.input_tokens, e.output_tokens, e.cost_micros], ['upstream_error', 503, 500, 40, '0'], script);
    }
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n);
    await closedEventually(up, (n) => n === 'sse_framing_open', ['sse_framing_open']);
  });

  test('a complete JSON answer whose connection the upstream keeps open: answered and settled at the end of the JSON value, slot free, upstream closed', { timeout: 30_000 }, async () => {
    const c = await customer(gw.url, 10);
    // Two at once fill RATE_LIMIT_CONCURRENT=2; the upstream never ends either response.
    const answers = await Promise.all([1, 2].map(async () => {
      const res = await post(c.secret, 'json_kept_open', { stream: false });
      return { status: res.status, id: res.headers.get('request-id')!, text: await res.text() };
    }));
    for (const a of answers) {
      assert.deepEqual([a.status, a.text], [200, jsonMessage({ input_tokens: 500, output_tokens: 40 })]);
      // 500×72 + 40×360 = 36,000 + 14,400 = 50,400
      const e = await eventOf(a.id);
      assert.deepEqual([e.cost_micros, e.status], ['50400', 'ok']);
    }
    // both slots are free again: a third request is served, not 429
    const third = await c.client.messages.create({ model: SONNET, max_tokens: 1024, messages: user('hi [[sim input=800 output=120]]') });
    assert.equal(third.usage.output_tokens, 120);
    await closedEventually(up, (n) => n === 'json_kept_open', ['json_kept_open', 'json_kept_open']);
    // 2 × 50,400 + BILLED (100,800)
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 2n * 50_400n - BILLED);
  });

  test('SSE error after a complete answer (final message_delta with stop_reason): the answer is charged, the error not relayed, error_after_answer', async () => {
    const c = await customer(gw.url, 10);
    const res = await post(c.secret, 'error_after_answer');
    const text = await res.text();
    assert.equal(text.includes('event: error'), false);
    assert.ok(text.endsWith(finalDelta({ output_tokens: 40 }) + STOP));
    const e = await eventOf(res.headers.get('request-id')!);
    // 500×72 + 40×360 = 50,400
    assert.deepEqual([e.cost_micros, e.status, e.anomalies], ['50400', 'usage_anomaly', ['error_after_answer', 'missing_message_stop']]);
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 50_400n);
  });

  test('cache-write breakdown that moves between reports: never more than the largest total, split as the latest report that gave it', async () => {
    const c = await customer(gw.url, 10);
    const res = await post(c.secret, 'breakdown_shift');
    await res.text();
    const e = await eventOf(res.headers.get('request-id')!);
    // 500×72 + 40×360 + 1000×144 (1h, the delta's split) = 36,000 + 14,400 + 144,000 = 194,400, not 284,400
    assert.deepEqual([e.cost_micros, e.cache_write_5m_tokens, e.cache_write_1h_tokens, e.status, e.anomalies], ['194400', 0, 1000, 'ok', undefined]);
  });

  test('a report whose cache-write breakdown disagrees with its own total: charged as the larger reading, cache_breakdown_mismatch (SSE and JSON)', async () => {
    const c = await customer(gw.url, 10);
    const s = await post(c.secret, 'breakdown_over_total');
    await s.text();
    const a = await eventOf(s.headers.get('request-id')!);
    // total 0 but 1h 1000: 36,000 + 14,400 + 1000×144 = 194,400
    assert.deepEqual([a.cost_micros, a.cache_write_5m_tokens, a.cache_write_1h_tokens, a.status, a.anomalies],
      ['194400', 0, 1000, 'usage_anomaly', ['cache_breakdown_mismatch']]);
    const j = await post(c.secret, 'json_breakdown_under_total', { stream: false });
    assert.equal(j.status, 200);
    await j.text();
    const b = await eventOf(j.headers.get('request-id')!);
    // total 5,000 but breakdown 10: 36,000 + 14,400 + 5,000×90 = 500,400
    assert.deepEqual([b.cost_micros, b.cache_write_5m_tokens, b.cache_write_1h_tokens, b.status, b.anomalies],
      ['500400', 5000, 0, 'usage_anomaly', ['cache_breakdown_mismatch']]);
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 194_400n - 500_400n);
  });

  test('output above max_tokens × server-loop steps: clamped to that bound, output_over_max_tokens (SSE and JSON)', async () => {
    const c = await customer(gw.url, 10);
    for (const [script, stream] of [['output_over_max', true], ['json_output_over_max', false]] as const) {
      const res = await post(c.secret, script, { stream, maxTokens: 10 });
      assert.equal(res.status, 200);
      await res.text();
      const e = await eventOf(res.headers.get('request-id')!);
      // reported output 300, max_tokens 10, one step: 5×72 + 10×360 = 360 + 3,600 = 3,960
      assert.deepEqual([e.cost_micros, e.output_tokens, e.status, e.anomalies], ['3960', 10, 'usage_anomaly', ['output_over_max_tokens']], script);
    }
    assert.equal(await settledBalance(stack, c.accountId), 10_000_000n - 2n * 3_960n);
  });
});
