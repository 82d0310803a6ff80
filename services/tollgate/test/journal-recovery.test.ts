// The embedded journal after a crash: only a torn LAST line may be dropped. Any other line that
// cannot be read is reported (an error log line) and quarantined with reason
// `unreadable_journal_line`, never dropped silently, and everything around it is recovered.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '@tollgate/config';
import { embeddedAdapters } from '../src/adapters.ts';
import { startTollgate } from '../src/runtime.ts';
import { customer, settledBalance, startStack, type Stack } from '../../../test/support/tollgate.ts';
import { usageEvent } from '../../../test/support/events.ts';

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
    const unreadable = logged.filter(([, o]) => o['segment'] !== undefined);
    assert.deepEqual(unreadable.map(([level, o, m]) => [level, o['segment'], o['line'], m]), [
      ['error', '0000000000000001.jsonl', 6, 'journal: unreadable line (not the torn end); quarantined as unreadable_journal_line'],
    ]);
    assert.ok(logged.some(([level, , m]) => level === 'warn' && m === 'journal: dropped the torn last line (a write the stop cut short)'));
    const q = (await adapters.warehouse!.quarantined()).filter((r) => r.group === 'journal');
    assert.deepEqual(q.map((r) => [r.event_id, r.kind, r.reason, r.topic]), [
      ['undecodable:journal:0000000000000001.jsonl:6', 'undecodable', 'unreadable_journal_line', 'journal'],
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
