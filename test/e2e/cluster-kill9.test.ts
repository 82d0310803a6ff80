// A distributed gateway killed with kill -9 while traffic flows loses no answered request: the
// KafkaLog writes every usage event ahead to its spool (synchronously, before publish returns,
// and the JSON answer is sent only after that call), and the restarted gateway re-publishes
// what the dead one left; the ledger and warehouse groups drop copies by event_id. Real
// processes (test/support/cluster.ts), real Kafka, Redis and chDB; the official SDK as client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { newAccount, ONE_GATEWAY, startCluster, useCluster, type Cluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

const run = useCluster(() => startCluster(ONE_GATEWAY));

// claude-sonnet-4-5 in the CNY catalog: input 72 µc, output 360 µc per token;
// 100 × 72 + 3 × 360 = 7_200 + 1_080 = 8_280 µc per request.
const COST = 8_280n;
const GRANT = 1_000_000_000n; // 1000 credits

/** The spool lines a gateway process left in its data directory (`<dataDir>/spool/*.jsonl`). */
/** Each spool segment of process `name` as [file name, text], oldest first (none before the first publish). */
function spoolFiles(c: Cluster, name: string): Array<[string, string]> {
  const dir = join(c.dir, name, 'spool');
  let files: string[] = [];
  try { files = readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort(); } catch { /* no spool yet */ }
  return files.map((f) => [f, readFileSync(join(dir, f), 'utf8')]);
}

function spoolLines(c: Cluster, name: string): string[] {
  return spoolFiles(c, name).flatMap(([, text]) => text.split('\n').filter((l) => l !== ''));
}

/**
 * The records a killed gateway left in its spool, and the torn line if the kill cut a write
 * short. The kernel ends a write at a page boundary when SIGKILL is pending, so the line being
 * written can be torn; only the last line of a file, unterminated, may be (the product's spool
 * reader skips it the same way: that write never returned, so its request was never answered).
 * Any other unreadable line fails the test.
 */
function spoolRecords(c: Cluster, name: string): { records: Array<{ topic: string; event: { event_id: string } }>; torn: string[] } {
  const records: Array<{ topic: string; event: { event_id: string } }> = [];
  const torn: string[] = [];
  for (const [f, text] of spoolFiles(c, name)) {
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      const unterminatedLast = i === lines.length - 1; // no newline after it
      try {
        records.push(JSON.parse(line) as { topic: string; event: { event_id: string } });
      } catch (err) {
        if (!unterminatedLast) throw new Error(`${f} line ${i + 1}: unreadable and not the torn end of the file: ${String(err)}`);
        torn.push(`${f}: ${line.length} characters`);
      }
    }
  }
  return { records, torn };
}

test('gateway killed with kill -9 during traffic: every answered request has exactly one event, the balance moved by exactly Σ costs', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const c = run.cluster;
  const acct = await newAccount(c, 1000);
  const client = new Anthropic({ apiKey: acct.secret, baseURL: c.url('gw1'), maxRetries: 0, logLevel: 'error', timeout: 20_000 });

  // 8 clients in a loop, JSON and streaming (a stream counts as answered once message_stop
  // arrived). From the 30th answer on, the client that receives an answer whose event is still
  // in the gateway's spool (not yet acknowledged by Kafka) kills the gateway at once. A cycle in
  // which Kafka acknowledged everything answered before the signal landed proves nothing: the
  // gateway is restarted and traffic resumes, up to 3 cycles.
  const answered: string[] = [];
  let attempted = 0;
  let left: Array<{ topic: string; event: { event_id: string } }> = [];
  let caught: string[] = [];
  for (let cycle = 1; cycle <= 3 && caught.length === 0; cycle++) {
    if (cycle > 1) await c.start('gw1');
    const base = answered.length;
    let killed: Promise<void> | undefined;
    const worker = async (w: number) => {
      for (let i = 0; !killed; i++) {
        attempted++;
        try {
          const params = { model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user' as const, content: `c${cycle} w${w} r${i} [[sim input=100 output=3]]` }] };
          let id: string | null | undefined;
          if ((w + i) % 2 === 0) {
            id = (await client.messages.create(params))._request_id;
          } else {
            const stream = client.messages.stream(params);
            let stopped = false;
            stream.on('streamEvent', (e) => { if (e.type === 'message_stop') stopped = true; });
            await stream.finalMessage();
            assert.ok(stopped, 'the stream ended with message_stop');
            id = stream.request_id;
          }
          assert.ok(id, 'the gateway answers with its request id (the usage event id)');
          answered.push(id);
          const n = answered.length - base;
          // Synchronous from the spool read to the signal: nothing else runs in between.
          if (!killed && n >= 30 && (n >= 300 || spoolLines(c, 'gw1').some((l) => l.includes(id)))) killed = c.kill('gw1', 'SIGKILL');
        } catch (err) {
          if (!killed) throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    await killed;
    const spool = spoolRecords(c, 'gw1');
    left = spool.records;
    const ids = new Set(answered);
    caught = left.filter((r) => ids.has(r.event.event_id)).map((r) => r.event.event_id);
    t.diagnostic(`cycle ${cycle}: answered ${answered.length} of ${attempted}; the killed gateway left ${left.length} events in its spool, ${caught.length} of them answered` +
      (spool.torn.length > 0 ? `; a write the kill cut short: ${spool.torn.join(', ')}` : ''));
  }
  // Answered, and still only in the spool when the process died: the old in-memory queue lost these.
  assert.ok(caught.length > 0, 'the gateway was killed with answered requests not yet acknowledged by Kafka');

  await c.start('gw1'); // re-publishes the spool before anything else
  await c.eventually('the spool delivered', async () => (spoolLines(c, 'gw1').length === 0 ? true : undefined));

  const settledOnce = async () => {
    // Every answered request is warehoused; requests in flight at the kill may be too (their
    // event was written before the answer could leave), never twice.
    const events = await c.eventually('every answered request warehoused', async () => {
      const r = await c.admin<{ data: Array<{ event_id: string; cost_micros: string }> }>(
        'GET', `/admin/v1/usage/events?account_id=${acct.accountId}&limit=1000`, undefined, c.url('agg'));
      const ids = new Set(r.json.data.map((e) => e.event_id));
      return answered.every((id) => ids.has(id)) ? r.json.data : undefined;
    });
    const ids = events.map((e) => e.event_id);
    assert.equal(new Set(ids).size, ids.length, 'each event once');
    for (const id of answered) assert.equal(ids.filter((x) => x === id).length, 1, `${id} exactly once`);
    assert.ok(events.length >= answered.length && events.length <= attempted, `${events.length} events for ${answered.length} answered of ${attempted} attempted`);
    for (const e of events) assert.equal(e.cost_micros, COST.toString());
    const expected = COST * BigInt(events.length);
    const totals = await c.eventually('warehouse totals', async () => {
      const r = await c.admin<{ totals: { requests: number; cost_micros: string } }>(
        'GET', `/admin/v1/usage?granularity=month&from=2020-01-01&to=2100-01-01&account_id=${acct.accountId}`, undefined, c.url('agg'));
      return r.json.totals.requests === events.length ? r.json.totals : undefined;
    });
    assert.equal(BigInt(totals.cost_micros), expected);
    const balance = await c.eventually('ledger applied every event', async () => {
      const v = await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${acct.accountId}`);
      const b = BigInt(v.json.balance_micro_credits);
      return b === GRANT - expected ? b : undefined;
    });
    assert.equal(balance, GRANT - expected);
    return { ids: ids.sort(), balance };
  };
  const first = await settledOnce();

  // The same records published once more (a spool whose acknowledgement the dead process never
  // saw): the ledger and the warehouse drop every copy by event_id; nothing moves.
  await c.kill('gw1', 'SIGKILL');
  writeFileSync(join(c.dir, 'gw1', 'spool', 'spool-000000009999.jsonl'), left.map((r) => `${JSON.stringify(r)}\n`).join(''));
  await c.start('gw1');
  await c.eventually('the copies delivered', async () => (spoolLines(c, 'gw1').length === 0 ? true : undefined));
  // A marker request published after the copies: once it is applied, so are they (one key, one partition, in order).
  attempted++;
  const marker = await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'marker [[sim input=100 output=3]]' }] });
  answered.push(marker._request_id!);
  const second = await settledOnce();
  assert.deepEqual(second.ids, [...first.ids, marker._request_id!].sort());
  assert.equal(second.balance, first.balance - COST);

  const rec = await c.admin<{ ok: boolean; differences: unknown[] }>('GET', '/ops/v1/reconcile', undefined, c.url('agg'));
  assert.deepEqual(rec.json.differences, []);
  assert.equal(rec.json.ok, true);
});
