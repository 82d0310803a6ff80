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
import { customer, settledBalance, simRequests, startStack } from '../support/tollgate.ts';

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
  // The disk is full: whatever segment comes next is /dev/full, and probes cannot write.
  const full: string[] = [];
  for (let seq = 1; seq <= 1_000; seq++) full.push(join(journal, `${String(seq).padStart(16, '0')}.jsonl`));
  await Promise.all(full.map((p) => symlink('/dev/full', p)));
  await mkdir(join(journal, PROBE_NAME));

  // Answered upstream, but its event cannot be written: withheld, 503.
  const withheld = await c.client.messages.create(params('withheld-2')).then(() => undefined, (err: unknown) => err as InstanceType<typeof Anthropic.APIError>);
  assert.equal(withheld?.status, 503);
  assert.match(String(withheld?.message), /"code":"usage_unrecorded".*could not record the usage of this request, so its answer is withheld and nothing is charged/);
  assert.ok(await forwarded('withheld-2'), 'that one had been forwarded');
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
  // Billed: exactly the two answered requests.
  assert.equal(await settledBalance(stack, c.accountId), GRANT - 2n * COST);
});
