// Kind: the write ahead fails for a reason of the disk's (full: every write ENOSPC, here the
// journal's next segment is /dev/full; a directory stands where the probe writes, so probes fail
// until the "disk" is freed). A tester's HIGH: with a full disk every stream was relayed whole
// and never billed (only its `message_stop` was withheld) and `/ready` stayed 200, for as long
// as the disk stayed full. Now the answer whose event could not be written is withheld, every
// next paid request is refused before it is forwarded (nothing paid upstream, no text leaves),
// `/ready` says why, and serving resumes once a probe write succeeds. Embedded mode, the
// official SDK as client, the simulator as upstream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { PROBE_NAME } from '@tollgate/events';
import { admin, customer, settledBalance, simRequests, startStack } from '../support/tollgate.ts';

// claude-sonnet-4-5 in the CNY catalog: input 72 µc, output 360 µc per token;
// 100 × 72 + 3 × 360 = 7_200 + 1_080 = 8_280 µc per request.
const COST = 8_280n;
const GRANT = 10_000_000n; // 10 credits

test('write ahead failing (full disk): the answer it could not record is withheld, the next paid requests are refused before forwarding (no text leaves), /ready says why; served and billed again once the disk is writable', async (t) => {
  const stack = await startStack();
  t.after(() => stack.close());
  const c = await customer(stack.url, 10);
  const params = (tag: string) => ({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user' as const, content: `${tag} [[sim input=100 output=3]]` }] });
  const forwarded = async (tag: string) => (await simRequests(stack.simUrl, 50)).some((r) => JSON.stringify(r.body).includes(tag));
  /** A stream read to its end: the text and event types the client got, or the error it ended with. */
  const stream = async (tag: string) => {
    const got: string[] = [];
    try {
      const s = c.client.messages.stream(params(tag));
      s.on('streamEvent', (e) => got.push(e.type));
      await s.finalMessage();
      return { got, error: undefined };
    } catch (err) {
      return { got, error: err as InstanceType<typeof Anthropic.APIError> };
    }
  };

  assert.equal((await c.client.messages.create(params('ok-1'))).type, 'message');
  // Everything applied: the journal's segment is released, so the next append opens a new one.
  const journal = join(stack.dataDir, 'journal');
  await stack.tollgate.drain();
  for (const end = Date.now() + 5_000; readdirSync(journal).some((f) => f.endsWith('.jsonl'));) {
    if (Date.now() > end) throw new Error(`journal segments not released: ${readdirSync(journal).join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  // A slow stream in flight (12 tokens at 4/s): its first text has left when the disk fills.
  const slowText: string[] = [];
  let slowFirst: () => void = () => {};
  const slowStarted = new Promise<void>((r) => { slowFirst = r; });
  const slow = (async () => {
    const s = c.client.messages.stream({ ...params('slow-5'), messages: [{ role: 'user', content: 'slow-5 [[sim input=100 output=12 tps=4]]' }] });
    s.on('streamEvent', (e) => {
      slowText.push(e.type);
      if (e.type === 'content_block_delta') slowFirst();
    });
    return s.finalMessage().then(() => undefined, (err: unknown) => err as InstanceType<typeof Anthropic.APIError>);
  })();
  await slowStarted;
  // The disk is full: whatever segment comes next is /dev/full, and probes cannot write.
  const full: string[] = [];
  for (let seq = 1; seq <= 1_000; seq++) full.push(join(journal, `${String(seq).padStart(16, '0')}.jsonl`));
  await Promise.all(full.map((p) => symlink('/dev/full', p)));
  await mkdir(join(journal, PROBE_NAME));

  // Answered upstream, but its event cannot be written: withheld, 503.
  const withheld = await c.client.messages.create(params('withheld-2')).then(() => undefined, (err: unknown) => err as InstanceType<typeof Anthropic.APIError>);
  assert.equal(withheld?.status, 503);
  assert.equal(withheld?.headers?.get('retry-after'), '2');
  assert.match(String(withheld?.message), /"code":"usage_unrecorded".*could not record the usage of this request, so its answer is withheld and nothing is charged/);
  assert.ok(await forwarded('withheld-2'), 'that one had been forwarded');
  // The journal gave up (and removed) the segment that failed; on a full disk its next one fails
  // too: so does this stand-in's.
  await Promise.all(full.map((p) => symlink('/dev/full', p).catch(() => {})));
  // The stream in flight stops at its next frame, not at its last: no stop_reason, no message_stop.
  const slowEnd = await slow;
  assert.match(String(slowEnd?.message), /"code":"usage_unrecorded".*cannot record usage right now, so the rest of this answer is withheld/);
  assert.ok(!slowText.includes('message_delta') && !slowText.includes('message_stop'), slowText.join(' '));
  assert.ok(slowText.filter((x) => x === 'content_block_delta').length < 12, slowText.join(' '));
  // Its upstream read to its end, its event refused too (the disk is still full): two answers withheld.
  for (const end = Date.now() + 10_000; !/tollgate_usage_unrecorded_total 2\b/.test(await (await fetch(`${stack.url}/metrics`)).text());) {
    if (Date.now() > end) throw new Error(`the slow stream was never settled: ${(await (await fetch(`${stack.url}/metrics`)).text()).split("\n").filter((l) => l.includes("unrecorded")).join(" / ")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // From then on refused before forwarding: a stream gets no text at all.
  const refused = await stream('refused-3');
  assert.equal(refused.error?.status, 503);
  assert.match(String(refused.error?.message), /"code":"usage_unrecorded".*cannot record usage right now, so the request was not forwarded and nothing is charged/);
  assert.equal(refused.error?.headers?.get('retry-after'), '2');
  assert.deepEqual(refused.got, []);
  assert.equal(await forwarded('refused-3'), false, 'not sent upstream');
  const ready = await fetch(`${stack.url}/ready`);
  assert.equal(ready.status, 503);
  assert.deepEqual(((await ready.json()) as { reasons: string[] }).reasons, ['events cannot be written ahead (the spool or journal in DATA_DIR cannot be written)']);

  // Operator writes are refused before anything changes (they answered 500 before, a key made
  // but its secret never shown and its record lost at the next start).
  const before = (await admin<{ data: unknown[] }>(stack.url, 'GET', '/admin/v1/accounts')).json.data.length;
  for (const [method, path, body] of [
    ['POST', '/admin/v1/accounts', { name: 'while full' }],
    ['POST', `/admin/v1/accounts/${c.accountId}/keys`, {}],
    ['POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference: 'while-full' }],
  ] as const) {
    const res = await admin<{ error: { code: string; message: string } }>(stack.url, method, path, body);
    assert.deepEqual([res.status, res.json.error.code, res.json.error.message],
      [503, 'state_unavailable', 'This process cannot record the change now (its events cannot be written ahead to its DATA_DIR); retry shortly'], path);
  }
  assert.equal((await admin<{ data: unknown[] }>(stack.url, 'GET', '/admin/v1/accounts')).json.data.length, before);

  // Room again: ready within a probe or two, and a stream is served whole and billed.
  await Promise.all(full.map((p) => rm(p, { force: true })));
  await rm(join(journal, PROBE_NAME), { recursive: true });
  for (const end = Date.now() + 5_000; (await fetch(`${stack.url}/ready`)).status !== 200;) {
    if (Date.now() > end) throw new Error('not ready again');
    await new Promise((r) => setTimeout(r, 100));
  }
  const served = await stream('ok-4');
  assert.equal(served.error, undefined);
  assert.equal(served.got.at(-1), 'message_stop');
  // Billed: exactly the two answered requests (the slow stream, withheld, is not).
  assert.equal(await settledBalance(stack, c.accountId), GRANT - 2n * COST);

  // A stream cut because its usage could not be recorded is not charged even when the disk is
  // freed before its upstream ends and its event can be written after all (a breaker saw it
  // charged in full: the client, told to retry, paid twice).
  let cutFirst: () => void = () => {};
  const cutStarted = new Promise<void>((r) => { cutFirst = r; });
  const cutStream = c.client.messages.stream({ ...params('slow-6'), messages: [{ role: 'user', content: 'slow-6 [[sim input=100 output=12 tps=4]]' }] });
  cutStream.on('streamEvent', (e) => { if (e.type === 'content_block_delta') cutFirst(); });
  const cutEnd = cutStream.finalMessage().then(() => undefined, (err: unknown) => err as InstanceType<typeof Anthropic.APIError>);
  await cutStarted;
  await Promise.all(full.map((p) => symlink('/dev/full', p).catch(() => {})));
  assert.equal((await c.client.messages.create(params('withheld-7')).then(() => undefined, (err: unknown) => err as InstanceType<typeof Anthropic.APIError>))?.status, 503);
  assert.match(String((await cutEnd)?.message), /the rest of this answer is withheld/);
  await Promise.all(full.map((p) => rm(p, { force: true }))); // freed while its upstream still streams
  const cutId = cutStream.request_id!;
  const cutEvent = await (async () => {
    for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
      const r = await admin<{ data: Array<{ event_id: string; cost_micros: string; status: string }> }>(stack.url, 'GET', `/admin/v1/usage/events?account_id=${c.accountId}&limit=100`);
      const e = r.json.data.find((x) => x.event_id === cutId);
      if (e) return e;
    }
    throw new Error('the cut stream was never recorded');
  })();
  assert.equal(cutEvent.cost_micros, '0');
  assert.equal(await settledBalance(stack, c.accountId), GRANT - 2n * COST);
});
