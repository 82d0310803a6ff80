// A graceful stop never loses a usage event: requests in flight finish within the grace; at its
// end the upstream reads still running are cut, settled with the usage the upstream reported
// until then (status client_disconnect, anomaly cut_by_shutdown), published and warehoused
// before the process lets go. Ordering, not timing: the grace is either unbounded (the stream
// ends by itself) or 0 (cut once the client has seen the answer begin).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '@tollgate/config';
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
  // reported until the cut (message_start): 100 input, 1 output → 100 × 24 + 1 × 120 = 2,520 µc
  assert.deepEqual(events.map((e) => [e.status, e.input_tokens, e.output_tokens, e.cost_micros, e.anomalies]), [
    ['client_disconnect', 100, 1, '2520', ['cut_by_shutdown']],
  ]);
  assert.equal(await settledBalance(stack, a.accountId), 10_000_000n - 2_520n);
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
