// A graceful stop never loses a usage event: requests in flight finish within the grace; at its
// end the upstream reads still running are cut, settled with the usage the upstream reported
// until then (status client_disconnect, anomaly cut_by_shutdown), published and warehoused
// before the process lets go. Ordering, not timing: the grace is either unbounded (the stream
// ends by itself) or 0 (cut once the client has seen the answer begin).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { loadConfig } from '@tollgate/config';
import { SHUTTING_DOWN_MESSAGE } from '@tollgate/http';
import { rawConnection } from '../../../test/support/raw-http.ts';
import { startTollgate } from '../src/runtime.ts';
import { flatUsage, type FlatUsage } from '../../../test/support/events.ts';
import { customer, settledBalance, startStack, type Stack } from '../../../test/support/tollgate.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack.close(); });

/** Starts a streaming request; resolves once `until` appears in what the client received, with the rest of the body to come. */
async function streamUntil(key: string, content: string, until: string): Promise<{ rest: Promise<string> }> {
  const res = await fetch(`${stack.url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 1000, stream: true, messages: [{ role: 'user', content }] }),
  });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!text.includes(until)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
      if (done) return text;
      text += decoder.decode(value, { stream: true });
    }
  })();
  return { rest };
}

/** The account's usage events as the warehouse holds them, after a restart on the same DATA_DIR. */
async function usageAfterRestart(accountId: string): Promise<FlatUsage[]> {
  stack.tollgate = await startTollgate(loadConfig(stack.env));
  stack.url = stack.tollgate.url!;
  return (await stack.tollgate.warehouse.usageEvents({ accountId })).map(flatUsage);
}

test('stop while a stream outlives the grace: the upstream read is cut and settled with the usage reported so far (client_disconnect, cut_by_shutdown), published before exit', async () => {
  const a = await customer(stack.url, 10, 'shutdown-cut'); // 10_000_000 µc
  // 600 output tokens at 2 per second: runs for minutes unless cut
  const s = await streamUntil(a.secret, 'hi [[sim input=100 output=600 tps=2]]', 'content_block_delta');
  await stack.tollgate.close({ graceMs: 0 });
  const text = await s.rest;
  // the client is told the answer was cut, in the stream's own error shape
  assert.match(text, /event: error\ndata: \{"type":"error","error":\{"type":"overloaded_error","code":"overloaded","message":"This gateway is shutting down and cut the stream before the answer ended; retry the request"\},"request_id":"[^"]+"\}\n\n$/);
  const events = await usageAfterRestart(a.accountId);
  // reported until the cut (message_start): 100 input; its output 1 is a placeholder, no count → 100 × 24 = 2,400 µc
  assert.deepEqual(events.map((e) => [e.status, e.input_tokens, e.output_tokens, e.cost_micros, e.anomalies]), [
    ['client_disconnect', 100, 0, '2400', ['cut_by_shutdown']],
  ]);
  assert.equal(await settledBalance(stack, a.accountId), 10_000_000n - 2_400n);
});

test('stop while a stream would end within the grace: it is not cut, it ends and is charged in full (ok)', async () => {
  const a = await customer(stack.url, 10, 'shutdown-within'); // 10_000_000 µc
  const s = await streamUntil(a.secret, 'hi [[sim input=100 output=8 tps=20]]', 'message_start');
  // an unbounded grace: close returns only once the stream ended by itself and was published
  await stack.tollgate.close({ graceMs: 600_000 });
  assert.match(await s.rest, /event: message_stop\ndata: \{"type":"message_stop"\}\n\n$/);
  const events = await usageAfterRestart(a.accountId);
  // 100 × 24 + 8 × 120 = 3,360 µc
  assert.deepEqual(events.map((e) => [e.status, e.input_tokens, e.output_tokens, e.cost_micros]), [['ok', 100, 8, '3360']]);
  assert.equal(await settledBalance(stack, a.accountId), 10_000_000n - 3_360n);
});

/** Resolves once a new TCP connection to `url`'s port fails: the server has stopped listening. */
async function untilRefused(url: string): Promise<void> {
  const { hostname, port } = new URL(url);
  for (;;) {
    const socket = connect(Number(port), hostname);
    const refused = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(false));
      socket.once('error', () => resolve(true));
    });
    socket.destroy();
    if (refused) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** One HTTP/1.1 request as bytes, `connection` left to its keep-alive default. */
function rawRequest(host: string, key: string, body: object): string {
  const json = JSON.stringify(body);
  return `POST /v1/messages HTTP/1.1\r\nhost: ${host}\r\nx-api-key: ${key}\r\nanthropic-version: 2023-06-01\r\n`
    + `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\n\r\n${json}`;
}

/** A raw connection to `url` made a kept-alive one by a first request (GET /v1/models); `since` marks where later answers start. */
async function keptAlive(url: string, key: string) {
  const { host } = new URL(url);
  const { socket, closed, text: received } = await rawConnection(url);
  socket.write(`GET /v1/models HTTP/1.1\r\nhost: ${host}\r\nx-api-key: ${key}\r\nanthropic-version: 2023-06-01\r\n\r\n`);
  while (!/^HTTP\/1\.1 200 [^]*\r\n\r\n\{[^]*\}$/.test(received())) await once(socket, 'data');
  assert.match(received(), /\r\nConnection: keep-alive\r\n/);
  const since = received().length;
  return {
    host, socket, closed,
    /** Everything received after the first answer. */
    text: () => received().slice(since),
    /** The answer after the first: its status line, headers (lower-case names) and body. */
    answer() {
      const [head, body] = received().slice(since).split('\r\n\r\n') as [string, string];
      const headers = new Map(head.split('\r\n').slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      assert.equal(Buffer.byteLength(body), Number(headers.get('content-length')), 'one whole answer');
      return { status: head.split('\r\n', 1)[0], headers, body: JSON.parse(body) as unknown };
    },
  };
}

test('a request that reaches a stopping gateway on a kept-alive connection is refused in Anthropic\'s shape (503 overloaded, request-id, connection: close), not forwarded, not charged, not Fastify\'s bare 503; /ready says why', async () => {
  const a = await customer(stack.url, 10, 'shutdown-refused'); // 10_000_000 µc
  const paid = await keptAlive(stack.url, a.secret);
  const probe = await keptAlive(stack.url, a.secret);
  const trickle = await keptAlive(stack.url, a.secret);
  // The next requests are on their way when the stop begins: their heads have begun to arrive
  // (so the stop's closing of idle connections leaves these open), the rest comes after.
  const message = rawRequest(paid.host, a.secret, { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi [[sim input=5 output=1]]' }] });
  const ready = `GET /ready HTTP/1.1\r\nhost: ${probe.host}\r\nconnection: close\r\n\r\n`;
  paid.socket.write(message.slice(0, 20));
  probe.socket.write(ready.slice(0, 5));
  trickle.socket.write(message.slice(0, 20));
  // The server reads those bytes in a turn of its loop (this process's) after these writes:
  // given 200 ms, so that the stop finds the requests begun rather than the connections idle.
  await new Promise((r) => setTimeout(r, 200));
  const stopped = stack.tollgate.close({ graceMs: 600_000 });
  await untilRefused(stack.url);
  paid.socket.write(message.slice(20));
  probe.socket.write(ready.slice(5));
  // This one's body stops 10 bytes short and never comes: refused all the same once
  // STOPPING_DRAIN_MS has passed, so it holds neither its connection nor (the grace is 10 min
  // here) the stop.
  trickle.socket.write(message.slice(20, -10));
  await Promise.all([paid.closed, probe.closed, trickle.closed, stopped]);
  const refused = paid.answer();
  assert.equal(refused.status, 'HTTP/1.1 503 Service Unavailable');
  assert.equal(refused.headers.get('connection'), 'close');
  assert.equal(refused.headers.get('content-type'), 'application/json; charset=utf-8');
  const requestId = refused.headers.get('request-id');
  assert.match(requestId ?? '', /^req_/);
  assert.deepEqual(refused.body, {
    type: 'error', error: { type: 'overloaded_error', code: 'overloaded', message: SHUTTING_DOWN_MESSAGE }, request_id: requestId,
  });
  const trickled = trickle.answer();
  assert.equal(trickled.status, 'HTTP/1.1 503 Service Unavailable');
  assert.equal(trickled.headers.get('connection'), 'close');
  assert.deepEqual(trickled.body, {
    type: 'error', error: { type: 'overloaded_error', code: 'overloaded', message: SHUTTING_DOWN_MESSAGE }, request_id: trickled.headers.get('request-id'),
  });
  // The probe is answered as a probe: not ready, and why.
  const readiness = probe.answer();
  assert.equal(readiness.status, 'HTTP/1.1 503 Service Unavailable');
  assert.deepEqual(readiness.body, { status: 'not_ready', reasons: ['shutting down'] });
  // Nothing forwarded, nothing charged.
  assert.deepEqual(await usageAfterRestart(a.accountId), []);
  assert.equal(await settledBalance(stack, a.accountId), 10_000_000n);
});

test('a stop whose grace ends with an upload still trickling in (begun before the stop, its body never finished) cuts that connection and ends: nothing forwarded or charged', { timeout: 60_000 }, async () => {
  const a = await customer(stack.url, 10, 'shutdown-trickle'); // 10_000_000 µc
  const upload = await keptAlive(stack.url, a.secret);
  const message = rawRequest(upload.host, a.secret, { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi [[sim input=5 output=1]]' }] });
  upload.socket.write(message.slice(0, -10)); // the head and most of the body; the rest never comes
  await new Promise((r) => setTimeout(r, 200)); // read by the server (see above)
  // Before the fix the connection held the stop until the hard exit (Node's request timeout
  // stops with the server); a grace of 300 ms, then the cut, so this resolves.
  await stack.tollgate.close({ graceMs: 300 });
  await upload.closed;
  assert.deepEqual(await usageAfterRestart(a.accountId), []);
  assert.equal(await settledBalance(stack, a.accountId), 10_000_000n);
});

test('an upload begun before the stop whose body arrives during the grace, after the gateway was idle: its stream is cut at the grace\'s end like any other (SSE error, charged the usage so far, cut_by_shutdown), not left running past the stop', { timeout: 60_000 }, async () => {
  const a = await customer(stack.url, 10, 'shutdown-late-body'); // 10_000_000 µc
  const upload = await keptAlive(stack.url, a.secret);
  // 600 output tokens at 2 per second: runs for minutes unless cut
  const message = rawRequest(upload.host, a.secret, { model: 'claude-haiku-4-5', max_tokens: 1000, stream: true, messages: [{ role: 'user', content: 'hi [[sim input=100 output=600 tps=2]]' }] });
  upload.socket.write(message.slice(0, -10)); // the head and most of the body: taken before the stop
  await new Promise((r) => setTimeout(r, 200)); // read by the server (see above)
  const stopped = stack.tollgate.close({ graceMs: 1_500 });
  await untilRefused(stack.url); // the stop has begun, and with nothing in flight the gateway is idle
  upload.socket.write(message.slice(-10));
  await Promise.all([stopped, upload.closed]);
  const text = upload.text();
  assert.match(text, /event: error\ndata: \{"type":"error","error":\{"type":"overloaded_error","code":"overloaded","message":"This gateway is shutting down and cut the stream before the answer ended; retry the request"\},"request_id":"[^"]+"\}\n\n/);
  // reported until the cut (message_start): 100 input; its output 1 is a placeholder, no count → 100 × 24 = 2,400 µc
  const events = await usageAfterRestart(a.accountId);
  assert.deepEqual(events.map((e) => [e.status, e.input_tokens, e.output_tokens, e.cost_micros, e.anomalies]), [
    ['client_disconnect', 100, 0, '2400', ['cut_by_shutdown']],
  ]);
  assert.equal(await settledBalance(stack, a.accountId), 10_000_000n - 2_400n);
});
