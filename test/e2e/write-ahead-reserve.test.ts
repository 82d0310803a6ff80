// Kind: too little room left on the disk to record what is answered. A request whose own append
// was the first to find the disk full had relayed its whole stream before that append (only its
// `message_stop` was withheld): served and never billed. Now the disk's free space is watched
// against a reserve (WRITE_AHEAD_RESERVE_MB): below it, new paid requests are refused before
// they are forwarded and `/ready` says why, while the streams in flight go on to their end and
// are billed from the reserve; operator writes still record. Embedded mode on a real file
// system (tmpfs /dev/shm when there is one, so other tests' writes do not move the figures),
// the official SDK as client, the simulator as upstream.
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, statfsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { admin, customer, settledBalance, simRequests, startStack } from '../support/tollgate.ts';

const MiB = 1_048_576;
// claude-sonnet-4-5 in the CNY catalog: input 72 µc, output 360 µc per token.
const COST = 100n * 72n + 3n * 360n; // 8_280 µc
/** Output tokens of the slow stream: at 5 tokens/s it lasts 8 s, long enough for a check or two on a loaded machine. */
const SLOW_TOKENS = 40;
const SLOW_COST = 100n * 72n + 40n * 360n; // 7_200 + 14_400 = 21_600 µc
const GRANT = 10_000_000n; // 10 credits
const TOP_UP = 1_000_000n; // 1 credit, granted while the disk is below its reserve

/** The test's request: 100 input tokens, `output` tokens (above 3: at 5 tokens/s). */
const params = (tag: string, output = 3) => ({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user' as const, content: `${tag} [[sim input=100 output=${output}${output > 3 ? ' tps=5' : ''}]]` }] });

/**
 * A slow stream (SLOW_TOKENS at 5/s), resolved once its first text has arrived: the event types
 * the client got so far (and later), and its end (the final message, or the error it ended with).
 */
async function slowStream(client: Anthropic, tag: string) {
  const events: string[] = [];
  let first: () => void = () => {};
  const started = new Promise<void>((r) => { first = r; });
  const stream = client.messages.stream(params(tag, SLOW_TOKENS));
  stream.on('streamEvent', (e) => {
    events.push(e.type);
    if (e.type === 'content_block_delta') first();
  });
  const end = stream.finalMessage().then((m) => ({ message: m, error: undefined }), (err: unknown) => ({ message: undefined, error: err as InstanceType<typeof Anthropic.APIError> }));
  await started;
  return { events, end, requestId: () => stream.request_id };
}

/** The write ahead's gauges as GET /metrics has them (name without the prefix → value). */
async function writeAheadGauges(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^tollgate_write_ahead_(state|free_bytes|reserve_bytes) (\S+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

test('write ahead below its reserve (too little room to record what is answered): new paid requests are refused before forwarding and /ready says why, the stream in flight ends whole and billed, operator writes still record; served again once there is room', async (t) => {
  const dataDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tollgate-reserve-'));
  const freeMiB = () => { const s = statfsSync(dataDir); return (s.bavail * s.bsize) / MiB; };
  // 48 MiB under what is free now: the warehouse's own files stay above it, 128 MiB of ballast does not.
  const reserveMiB = Math.floor(freeMiB()) - 48;
  const stack = await startStack({ DATA_DIR: dataDir, WRITE_AHEAD_RESERVE_MB: String(reserveMiB) });
  t.after(async () => {
    await stack.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  const c = await customer(stack.url, 10);
  const forwarded = async (tag: string) => (await simRequests(stack.simUrl, 50)).some((r) => JSON.stringify(r.body).includes(tag));
  const readiness = async () => {
    const res = await fetch(`${stack.url}/ready`);
    return { status: res.status, reasons: res.status === 200 ? [] : ((await res.json()) as { reasons: string[] }).reasons };
  };

  assert.equal((await c.client.messages.create(params('ok-1'))).type, 'message');
  assert.equal((await readiness()).status, 200);
  const above = await writeAheadGauges(stack.url);
  assert.deepEqual({ state: above.state, reserve_bytes: above.reserve_bytes }, { state: 0, reserve_bytes: reserveMiB * MiB });
  assert.ok(above.free_bytes! > reserveMiB * MiB, `free ${above.free_bytes}`);

  // A slow stream in flight when the disk falls below the reserve.
  const slow = await slowStream(c.client, 'slow-2');
  await writeFile(join(dataDir, 'ballast'), Buffer.alloc(128 * MiB));
  for (const end = Date.now() + 5_000; (await readiness()).status === 200;) {
    if (Date.now() > end) throw new Error(`the reserve was never seen crossed (${freeMiB().toFixed(0)} MiB free, reserve ${reserveMiB})`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(await readiness(), { status: 503, reasons: ['the disk of DATA_DIR is below the write-ahead reserve (WRITE_AHEAD_RESERVE_MB)'] });
  const below = await writeAheadGauges(stack.url);
  assert.equal(below.state, 1, 'tollgate_write_ahead_state: below the reserve');
  assert.ok(below.free_bytes! < reserveMiB * MiB, `free ${below.free_bytes}`);

  // A new paid request: refused before forwarding, no text, not sent upstream.
  const refusedEvents: string[] = [];
  const refused = await (async () => {
    const s = c.client.messages.stream(params('refused-3'));
    s.on('streamEvent', (e) => refusedEvents.push(e.type));
    return s.finalMessage().then(() => undefined, (err: unknown) => err as InstanceType<typeof Anthropic.APIError>);
  })();
  assert.equal(refused?.status, 503);
  assert.equal(refused?.headers?.get('retry-after'), '2');
  assert.match(String(refused?.message), /"code":"usage_unrecorded".*cannot record usage right now, so the request was not forwarded and nothing is charged/);
  assert.deepEqual(refusedEvents, []);
  assert.equal(await forwarded('refused-3'), false, 'not sent upstream');

  // An operator write still records (the reserve is for those too: a revocation in an incident).
  const topUp = await admin<{ status?: string }>(stack.url, 'POST', `/admin/v1/accounts/${c.accountId}/credits`, { credits: 1, reference: 'below-reserve' });
  assert.ok(topUp.status === 200 || topUp.status === 201 || topUp.status === 202, `grant answered ${topUp.status}`);

  // The stream in flight was not cut: it ends with its stop_reason and its whole text.
  const slowEnd = await slow.end;
  assert.equal(slowEnd.error, undefined);
  assert.equal(slowEnd.message?.stop_reason, 'end_turn');
  assert.equal(slow.events.at(-1), 'message_stop');
  assert.ok(slow.events.filter((x) => x === 'content_block_delta').length > 1, slow.events.join(' '));
  assert.equal((await readiness()).status, 503, 'still below the reserve');

  // Room again: ready within a check or two, and served.
  await rm(join(dataDir, 'ballast'));
  for (const end = Date.now() + 5_000; (await readiness()).status !== 200;) {
    if (Date.now() > end) throw new Error(`not ready again: ${JSON.stringify(await readiness())}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal((await c.client.messages.create(params('ok-4'))).type, 'message');
  assert.equal((await writeAheadGauges(stack.url)).state, 0, 'tollgate_write_ahead_state: writing again');
  // Billed: ok-1, the slow stream in full and ok-4; the refused one not at all; the top-up counted.
  assert.equal(await settledBalance(stack, c.accountId), GRANT + TOP_UP - 2n * COST - SLOW_COST);
});

test('write ahead on an exhausted disk (its last MiB going while a stream relays text that could not be recorded): the stream is cut at its next frame and charged nothing, before any append failed; a process whose disk is smaller than its reserve does not start', async (t) => {
  if (process.getuid?.() !== 0) { t.skip('needs root to mount a small tmpfs'); return; }
  const mount = mkdtempSync(join(tmpdir(), 'tollgate-exhausted-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', mount]);
  t.after(async () => {
    execFileSync('umount', ['-l', mount]);
    await rm(mount, { recursive: true, force: true });
  });
  // The whole disk is smaller than the reserve asked for: refused at start, with the variable named.
  await assert.rejects(startStack({ DATA_DIR: join(mount, 'too-small'), WRITE_AHEAD_RESERVE_MB: '512' }), (err: Error) => {
    assert.match(err.message, /WRITE_AHEAD_RESERVE_MB: 512 MiB is more than the whole disk of DATA_DIR \(.*: 256 MiB\), so every paid request would be refused; set it lower \(0 turns the watch off\)/);
    return true;
  });
  const dataDir = join(mount, 'data');
  const stack = await startStack({ DATA_DIR: dataDir, WRITE_AHEAD_RESERVE_MB: '16' });
  t.after(() => stack.close());
  const c = await customer(stack.url, 10);
  assert.equal((await c.client.messages.create(params('ok-1'))).type, 'message');
  const slow = await slowStream(c.client, 'slow-2');
  // Everything but half a MiB taken (or all of it, if the warehouse wrote meanwhile: full either way).
  const s = statfsSync(mount);
  await writeFile(join(mount, 'ballast'), Buffer.alloc(s.bavail * s.bsize - MiB / 2)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOSPC') throw err;
  });
  const cut = (await slow.end).error;
  assert.match(String(cut?.message), /"code":"usage_unrecorded".*cannot record usage right now, so the rest of this answer is withheld/);
  assert.ok(!slow.events.includes('message_stop'), slow.events.join(' '));
  assert.ok(slow.events.filter((x) => x === 'content_block_delta').length < SLOW_TOKENS, slow.events.join(' '));
  assert.deepEqual(await (await fetch(`${stack.url}/ready`)).json(), { status: 'not_ready', reasons: ['events cannot be written ahead (the spool or journal in DATA_DIR cannot be written)'] });
  const full = await writeAheadGauges(stack.url);
  assert.deepEqual({ state: full.state, reserve_bytes: full.reserve_bytes }, { state: 2, reserve_bytes: 16 * MiB }, 'tollgate_write_ahead_state: cannot write');
  assert.ok(full.free_bytes! < MiB, `free ${full.free_bytes}`);
  await rm(join(mount, 'ballast'));
  for (const end = Date.now() + 5_000; (await fetch(`${stack.url}/ready`)).status !== 200;) {
    if (Date.now() > end) throw new Error('not ready again');
    await new Promise((r) => setTimeout(r, 50));
  }
  // Billed: ok-1 and ok-3; the cut stream is recorded at cost 0 once its upstream has ended
  // (the gateway reads it to its end: up to 8 s).
  assert.equal((await c.client.messages.create(params('ok-3'))).type, 'message');
  const cutId = slow.requestId();
  for (const end = Date.now() + 20_000; ; await new Promise((r) => setTimeout(r, 200))) {
    const events = await admin<{ data: Array<{ event_id: string; cost_micros: string; status: string; anomalies?: string[] }> }>(stack.url, 'GET', `/admin/v1/usage/events?account_id=${c.accountId}&limit=100`);
    const cutEvent = events.json.data.find((e) => e.event_id === cutId);
    if (cutEvent) {
      // marked, so that a re-price keeps it at 0
      assert.deepEqual([cutEvent.cost_micros, cutEvent.status, cutEvent.anomalies], ['0', 'client_disconnect', ['answer_withheld']]);
      break;
    }
    if (Date.now() > end) throw new Error(`the cut stream ${cutId} was never recorded`);
  }
  assert.equal(await settledBalance(stack, c.accountId), GRANT - 2n * COST);
});
