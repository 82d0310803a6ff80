// Kind: a gateway whose DATA_DIR was taken over while it was stopped (SIGSTOP, a frozen VM) and
// that then resumes with answers in hand. Its spool now belongs to the other process, so it
// cannot write their usage events ahead; it used to send the answers anyway (200, full body)
// and log the failed publish: served, never billed, invisible to reconcile, holds left behind.
// Now an answer whose event cannot be written ahead is withheld: a JSON request gets 503
// `usage_unrecorded`, a stream an SSE `error` event instead of `message_stop`, nothing is
// charged and the hold is released. Every answer a client did get is billed exactly once.
// Real processes (test/support/cluster.ts), real Kafka and Redis; the official SDK as client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { newAccount, ONE_GATEWAY, startCluster, useCluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

const run = useCluster(() => startCluster(ONE_GATEWAY));

// claude-sonnet-4-5 in the CNY catalog: input 72 µc, output 360 µc per token;
// 100 × 72 + 3 × 360 = 7_200 + 1_080 = 8_280 µc per request.
const COST = 8_280n;
const GRANT = 1_000_000_000n; // 1000 credits

test('DATA_DIR taken over while its gateway was stopped: answers whose usage cannot be written ahead are withheld (503 usage_unrecorded, stream error event), charged nothing, holds released; every answer a client got is billed once', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const c = run.cluster;
  const acct = await newAccount(c, 1000);
  const client = new Anthropic({ apiKey: acct.secret, baseURL: c.url('gw1'), maxRetries: 0, logLevel: 'off', timeout: 120_000 });
  const answered: string[] = [];
  const withheld: string[] = [];
  // request ids of the withheld answers (the gateway's `request-id` header): none may have an event
  const withheldIds: string[] = [];
  const params = (tag: string, latencyMs: number) => ({
    model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user' as const, content: `${tag} [[sim input=100 output=3 latency_ms=${latencyMs}]]` }],
  });
  /** One request, JSON or streamed; an answer's request id goes to `answered`, a withheld one's error text to `withheld`. */
  const one = async (tag: string, stream: boolean, latencyMs: number) => {
    let s: ReturnType<typeof client.messages.stream> | undefined;
    try {
      if (!stream) {
        const m = await client.messages.create(params(tag, latencyMs));
        answered.push(m._request_id!);
        return;
      }
      const sent = client.messages.stream(params(tag, latencyMs));
      s = sent;
      let stopped = false;
      sent.on('streamEvent', (e) => { if (e.type === 'message_stop') stopped = true; });
      await sent.finalMessage();
      assert.ok(stopped, 'an answered stream ends with message_stop');
      answered.push(sent.request_id!);
    } catch (err) {
      assert.ok(err instanceof Anthropic.APIError, `${tag}: ${String(err)}`);
      withheld.push(`${tag} ${stream ? 'stream' : 'json'} ${err.status ?? 'sse'}: ${err.message}`);
      const id = err.requestID ?? s?.request_id;
      if (id) withheldIds.push(id);
    }
  };

  // Answered before the stop: billed as ever.
  await Promise.all([one('before-1', false, 0), one('before-2', true, 0)]);
  assert.equal(answered.length, 2);

  // In flight when the process is stopped: the upstream answers while it is stopped.
  const inFlight = Promise.all(Array.from({ length: 8 }, (_, i) => one(`during-${i}`, i % 2 === 1, 1_500)));
  await new Promise((r) => setTimeout(r, 500));
  c.pause('gw1');
  // A second process on the same DATA_DIR takes the lock once it is stale (10 s unrefreshed).
  await c.add('gw2', { roles: 'gateway', dataDirOf: 'gw1' });
  c.resume('gw1');
  await inFlight;
  // The resumed process finds its lock taken over and stops as on SIGTERM.
  assert.equal(await c.exited('gw1'), 0, c.logOf('gw1'));
  t.diagnostic(`answered ${answered.length}, withheld ${withheld.length}: ${withheld.join(' | ')}`);

  // The process that holds the directory now serves, and bills.
  const gw2 = new Anthropic({ apiKey: acct.secret, baseURL: c.url('gw2'), maxRetries: 0, logLevel: 'off' });
  answered.push((await gw2.messages.create(params('after', 0)))._request_id!);

  // Exactly the answered requests have events (the withheld have none), each once; the ledger
  // charged exactly those; nothing is left held.
  const events = await c.eventually('every answered request warehoused', async () => {
    const r = await c.admin<{ data: Array<{ event_id: string; cost_micros: string }> }>(
      'GET', `/admin/v1/usage/events?account_id=${acct.accountId}&limit=1000`, undefined, c.url('agg'));
    const ids = new Set(r.json.data.map((e) => e.event_id));
    return answered.every((id) => ids.has(id)) ? r.json.data : undefined;
  });
  const withheldEvents = events.filter((e) => withheldIds.includes(e.event_id));
  assert.deepEqual(withheldEvents, [], 'a withheld answer has no usage event');
  assert.ok(withheldIds.length > 0, 'the withheld answers carried their request ids');
  const billed = events.filter((e) => e.cost_micros !== '0').map((e) => e.event_id).sort();
  assert.deepEqual(billed, [...answered].sort(), 'the billed events are exactly the answered requests');
  for (const e of events) if (e.cost_micros !== '0') assert.equal(e.cost_micros, COST.toString());
  const expected = GRANT - COST * BigInt(answered.length);
  const account = await c.eventually('the ledger applied every event and no hold is left', async () => {
    const r = await c.admin<{ balance_micro_credits: string; held_credits: string }>('GET', `/admin/v1/accounts/${acct.accountId}`);
    return BigInt(r.json.balance_micro_credits) === expected && Number(r.json.held_credits) === 0 ? r.json : undefined;
  });
  assert.equal(BigInt(account.balance_micro_credits), expected);
  // Checked after the money: without the fix the answers arrive (200) and are never billed.
  assert.ok(withheld.length > 0, 'some in-flight answers were withheld (else this proves nothing)');
  for (const w of withheld) {
    // JSON: 503 usage_unrecorded; a stream: its error event in place of message_stop (the SDK
    // gives it no status); either way the gateway's own message. Requests the stopping process
    // refused before forwarding are fine too (nothing was answered).
    assert.match(w, /(could not record the usage of this request, so its answer is withheld and nothing is charged|cannot record usage right now, so the rest of this answer is withheld|cannot record usage right now, so the request was not forwarded|shutting down)/, w);
  }
  assert.ok(withheld.some((w) => w.includes('json 503') && w.includes('could not record')), 'a JSON answer withheld with 503');
  assert.ok(withheld.some((w) => w.includes('stream') && /could not record|the rest of this answer is withheld/.test(w)), 'a stream cut with the error event');

  const rec = await c.admin<{ ok: boolean; differences: unknown[] }>('GET', '/ops/v1/reconcile', undefined, c.url('agg'));
  assert.deepEqual(rec.json.differences, []);
});
