// The embedded journal after a crash: only a torn LAST line may be dropped. Any other line that
// cannot be read is reported (an error log line) and quarantined with reason
// `unreadable_journal_line`, never dropped silently, and everything around it is recovered.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { loadConfig } from '@tollgate/config';
import { embeddedAdapters } from '../src/adapters.ts';
import { startTollgate } from '../src/runtime.ts';
import { customer, settledBalance, startStack, type Stack } from '../../../test/support/tollgate.ts';
import { grantEvent, usageEvent } from '../../../test/support/events.ts';
import { admin } from '../../../test/support/tollgate.ts';
import { startReceiver } from '../../../libs/webhooks/test/receiver.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack.close(); });

test('an unreadable line in the middle of a journal segment is logged and quarantined as unreadable_journal_line; the other 11 events are recovered; the torn last line is dropped', async () => {
  const a = await customer(stack.url, 1, 'journal-lines'); // 1_000_000 µc
  await stack.tollgate.close();
  // What a killed process could leave: 12 lines, the 6th unreadable, then an unfinished write.
  const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({
    topic: 'usage', event: usageEvent(`jl-${i + 1}`, a.accountId, { cost_micros: '7' }), headers: {},
  }));
  lines[5] = '{"topic":"usage","event":{"type":"usage","event_id":"jl-6","acc';
  const dir = join(stack.dataDir, 'journal');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '0000000000000001.jsonl'), `${lines.join('\n')}\n{"topic":"usage","ev`);

  const logged: Array<[string, Record<string, unknown>, string | undefined]> = [];
  const logger = {
    info: (o: object, m?: string) => { logged.push(['info', o as Record<string, unknown>, m]); },
    warn: (o: object, m?: string) => { logged.push(['warn', o as Record<string, unknown>, m]); },
    error: (o: object, m?: string) => { logged.push(['error', o as Record<string, unknown>, m]); },
  };
  const adapters = await embeddedAdapters(loadConfig(stack.env), logger);
  try {
    // No consumer listens here: the 11 records go into this log's journal, and the next start applies them.
    assert.equal(await adapters.recover!(), 11);
    const unreadable = logged.filter(([, o]) => o['segment'] !== undefined);
    assert.deepEqual(unreadable.map(([level, o, m]) => [level, o['segment'], o['line'], m]), [
      ['error', '0000000000000001.jsonl', 6, 'journal: unreadable line (not the torn end); quarantined as unreadable_journal_line'],
    ]);
    assert.ok(logged.some(([level, , m]) => level === 'warn' && m === 'journal: dropped the torn last line (a write the stop cut short)'));
    const q = (await adapters.warehouse!.quarantined()).filter((r) => r.group === 'journal');
    assert.deepEqual(q.map((r) => [r.event_id.replace(/:\d{16}\//, ':<generation>/'), r.kind, r.reason, r.topic]), [
      ['undecodable:journal:<generation>/0000000000000001.jsonl:6', 'undecodable', 'unreadable_journal_line', 'journal'],
    ]);
    // The line itself is kept for finance, byte for byte.
    assert.equal((JSON.parse(q[0]!.raw) as { raw: string }).raw, '{"topic":"usage","event":{"type":"usage","event_id":"jl-6","acc');
  } finally {
    await adapters.close();
  }
  stack.tollgate = await startTollgate(loadConfig(stack.env));
  stack.url = stack.tollgate.url!;
  // 11 readable usage events of 7 µc each: 1_000_000 − 77.
  assert.equal(await settledBalance(stack, a.accountId), 999_923n);
});

/** Writes `records` as the journal a killed process left (one segment), then starts Tollgate on it. */
async function restartOnJournal(records: Array<{ topic: string; event: unknown }>): Promise<void> {
  await stack.tollgate.close();
  const dir = join(stack.dataDir, 'journal');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '0000000000000001.jsonl'), records.map((r) => `${JSON.stringify({ ...r, headers: {} })}\n`).join(''));
  stack.tollgate = await startTollgate(loadConfig(stack.env));
  stack.url = stack.tollgate.url!;
}

/** `tollgate_events_quarantined_total` samples of this process, as `group/reason` → count. */
async function quarantinedMetric(): Promise<Record<string, number>> {
  const text = await stack.tollgate.metrics.registry.metrics();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^tollgate_events_quarantined_total\{([^}]*)\} (\d+)$/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    out[`${labels['group']}/${labels['reason']}`] = Number(m[2]);
  }
  return out;
}

test('journal recovery goes through the live balance bound: grants past 2^53−1 µc are refused balance_out_of_range, the balance stays exact and reconcile agrees', async () => {
  const a = await customer(stack.url, 1, 'journal-bound'); // 1_000_000 µc
  await restartOnJournal([
    // 1_000_000 + 9_007_199_253_740_991 = 9_007_199_254_740_991 = 2^53 − 1: exactly the bound, applied
    { topic: 'ledger', event: grantEvent(a.accountId, 'to-the-bound', '9007199253740991') },
    // one more grant of 2^53 − 1 would pass it: refused, as live
    { topic: 'ledger', event: grantEvent(a.accountId, 'past-the-bound', '9007199254740991') },
    { topic: 'usage', event: usageEvent('jb-usage', a.accountId, { cost_micros: '7' }) },
  ]);
  // 9_007_199_254_740_991 − 7
  assert.equal(await settledBalance(stack, a.accountId), 9_007_199_254_740_984n);
  const q = (await stack.tollgate.warehouse.quarantined()).filter((r) => r.event_id === `credit:${a.accountId}:past-the-bound`);
  assert.deepEqual(q.map((r) => [r.group, r.kind]), [['ledger', 'apply_failed']]);
  assert.match(q[0]!.reason, /balance_out_of_range/);
  const rec = await admin<{ ok: boolean; differences: unknown[] }>(stack.url, 'GET', '/ops/v1/reconcile');
  assert.deepEqual([rec.status, rec.json.ok, rec.json.differences], [200, true, []]);
  assert.equal((await quarantinedMetric())['ledger/apply_failed'], 1);
});

test('journal recovery counts a replayed usage in its key\'s and account\'s spend windows: a kill -9 does not give a daily limit back (its hold died with the process)', async () => {
  // Kind: usage the rebuilt state never held (1 µc of headroom left: even a clamped hold is refused), debited but counted in no window (a tester spent
  // 0.4392 credits against a 0.3 limit this way). The warehouse has no row of it at the start's
  // rebuild; the journal replay applies it after, with no hold and no hold marker.
  const a = await customer(stack.url, 1, 'journal-windows'); // 1_000_000 µc
  const patched = await admin(stack.url, 'PATCH', `/admin/v1/keys/${a.keyId}`, { daily_credits: 0.0005 }); // 500 µc
  assert.equal(patched.status, 200);
  await restartOnJournal([
    { topic: 'usage', event: usageEvent('jw-usage', a.accountId, { key_id: a.keyId, cost_micros: '499' }) },
  ]);
  assert.equal(await settledBalance(stack, a.accountId), 999_501n);
  assert.equal(await stack.tollgate.balances.windowUsed('key_daily', a.accountId, a.keyId), 499n);
  assert.equal(await stack.tollgate.balances.windowUsed('account_monthly', a.accountId, a.keyId), 499n);
  // The restarted process listens on a new port.
  const client = new Anthropic({ apiKey: a.secret, baseURL: stack.url, maxRetries: 0, logLevel: 'error' });
  const refused = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 200, messages: [{ role: 'user', content: 'hi' }] })
    .then(() => undefined, (err: unknown) => err);
  assert.ok(refused instanceof Anthropic.APIError, `refused with an API error, got ${String(refused)}`);
  assert.equal(refused.status, 429);
  const body = refused.error as { error: { type: string; message: string } };
  assert.equal(body.error.type, 'billing_error');
  assert.match(body.error.message, /key's daily spend limit \(key_daily\) of 0\.0005 credits: 0\.000499 credits are spent or held and the request needs up to /);
});

test('journal recovery checks topics and decodes like the live consumers: an unknown topic and a topic/type mismatch are quarantined unread, a bad value is quarantined by both groups, each counted in tollgate_events_quarantined_total', async () => {
  const a = await customer(stack.url, 1, 'journal-topics'); // 1_000_000 µc
  await restartOnJournal([
    { topic: 'nope', event: usageEvent('jt-nope', a.accountId, { cost_micros: '5' }) },
    { topic: 'ledger', event: usageEvent('jt-usage-on-ledger', a.accountId, { cost_micros: '11' }) },
    { topic: 'usage', event: grantEvent(a.accountId, 'grant-on-usage', '13') },
    { topic: 'usage', event: usageEvent('jt-negative', a.accountId, { cost_micros: '-5' }) },
    { topic: 'usage', event: usageEvent('jt-good', a.accountId, { cost_micros: '7' }) },
  ]);
  // only jt-good applies: 1_000_000 − 7
  assert.equal(await settledBalance(stack, a.accountId), 999_993n);
  const q = await stack.tollgate.warehouse.quarantined();
  const journal = q.filter((r) => r.group === 'journal' && r.raw.includes(a.accountId))
    .map((r) => JSON.parse(r.raw) as { raw: string; error: string })
    .map((r) => [JSON.parse(r.raw) as { topic: string; event: { event_id: string } }, r.error] as const);
  assert.deepEqual(journal.map(([r, error]) => [r.topic, r.event.event_id, error]).sort(), [
    ['ledger', 'jt-usage-on-ledger', 'a usage event on topic ledger'],
    ['nope', 'jt-nope', 'unknown topic "nope"'],
    ['usage', `credit:${a.accountId}:grant-on-usage`, 'a ledger event on topic usage'],
  ]);
  assert.deepEqual(q.filter((r) => r.event_id === 'jt-negative').map((r) => [r.group, r.kind]).sort(), [['ledger', 'invalid_event'], ['warehouse', 'invalid_event']]);
  const m = await quarantinedMetric();
  assert.deepEqual([m['journal/undecodable'], m['ledger/invalid_event'], m['warehouse/invalid_event']], [3, 1, 1]);
  const rec = await admin<{ ok: boolean }>(stack.url, 'GET', '/ops/v1/reconcile');
  assert.equal(rec.json.ok, true);
});

test('poisoned journal at start: every group\'s quarantine is alerted as event.quarantined, journal included (the hooks are ready before recovery)', { timeout: 120_000 }, async () => {
  const rx = await startReceiver();
  try {
    const created = await admin<{ id: string }>(stack.url, 'POST', '/admin/v1/webhooks', { url: `${rx.url}/q`, events: ['event.quarantined'] });
    assert.equal(created.status, 201);
    const a = await customer(stack.url, 1, 'journal-alert'); // 1_000_000 µc
    await restartOnJournal([
      { topic: 'nope', event: usageEvent('ja-nope', a.accountId, { cost_micros: '5' }) },
      { topic: 'usage', event: usageEvent('ja-negative', a.accountId, { cost_micros: '-5' }) },
    ]);
    // journal (unknown topic), then ledger and warehouse (the negative cost), one delivery each
    const got = (await rx.waitFor(3)).map((r) => JSON.parse(r.body) as { type: string; data: { group: string; event_id: string; kind: string; topic: string } });
    const seen = got.map((b) => [b.type, b.data.group, b.data.kind, b.data.topic, b.data.event_id.replace(/^undecodable:journal:\d+\//, 'undecodable:journal:<generation>/')]).sort();
    assert.deepEqual(seen, [
      ['event.quarantined', 'journal', 'undecodable', 'journal', 'undecodable:journal:<generation>/0000000000000001.jsonl:1'],
      ['event.quarantined', 'ledger', 'invalid_event', 'usage', 'ja-negative'],
      ['event.quarantined', 'warehouse', 'invalid_event', 'usage', 'ja-negative'],
    ]);
  } finally {
    await rx.close();
  }
});
