// A graceful stop of a gateway process in the distributed deployment (Kafka + Redis): a stream
// that outlives SHUTDOWN_GRACE_MS is cut at the grace's end and settled before the process
// exits: its usage event reaches Kafka and the warehouse, and its Redis hold is settled, not
// left until HOLD_TTL_MS. SHUTDOWN_GRACE_MS=0 so the order is: the client sees the answer begin,
// SIGTERM, cut. Amounts from the CNY catalog: sonnet-4-5 input 72, output 360 µc per token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { UsageEvent } from '@tollgate/events';
import { newAccount, startCluster, useCluster } from '../../../test/support/cluster.ts';
import { flatUsage } from '../../../test/support/events.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../../../test/support/services.ts';

const run = useCluster(() => startCluster([
  ['agg1', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
  ['control', { roles: 'control' }],
  ['gw1', { roles: 'gateway', env: { SHUTDOWN_GRACE_MS: '0' } }],
]));

test('distributed: SIGTERM while a stream outlives the grace: cut, charged the usage reported so far (client_disconnect, cut_by_shutdown), hold settled, event warehoused', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const c = run.cluster;
  const acct = await newAccount(c, 10); // 10_000_000 µc
  const res = await fetch(`${c.url('gw1')}/v1/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': acct.secret },
    // 600 output tokens at 2 per second: minutes unless cut
    body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 1024, stream: true, messages: [{ role: 'user', content: 'hi [[sim input=800 output=600 tps=2]]' }] }),
  });
  assert.equal(res.status, 200);
  const requestId = res.headers.get('request-id')!;
  const reader = res.body!.getReader();
  let text = '';
  while (!text.includes('content_block_delta')) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await c.kill('gw1', 'SIGTERM');
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  assert.match(text, /event: error\ndata: \{"type":"error","error":\{"type":"overloaded_error","code":"overloaded","message":"This gateway is shutting down and cut the stream before the answer ended; retry the request"\}/);

  // reported until the cut (message_start): 800 × 72 = 57,600 µc; its output 1 is a placeholder, no count
  const expected = 10_000_000n - 57_600n;
  const balance = await c.eventually(`balance settled at ${expected}`, async () => {
    const v = await c.admin<{ held_credits: number; balance_micro_credits: string }>('GET', `/admin/v1/accounts/${acct.accountId}`);
    return v.json.held_credits === 0 && BigInt(v.json.balance_micro_credits) === expected ? BigInt(v.json.balance_micro_credits) : undefined;
  }, 30_000);
  assert.equal(balance, expected);
  const stored = await c.eventually('the usage event warehoused', async () => {
    const r = await c.admin<UsageEvent>('GET', `/admin/v1/usage/events/${requestId}`, undefined, c.url('agg1'));
    return r.status === 200 ? flatUsage(r.json) : undefined;
  }, 30_000);
  assert.deepEqual([stored.status, stored.input_tokens, stored.output_tokens, stored.cost_micros, stored.anomalies], ['client_disconnect', 800, 0, '57600', ['cut_by_shutdown']]);
});
