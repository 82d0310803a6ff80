// The in-process log's write-ahead journal: what was published survives the process until
// every group has consumed it, and no longer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal, MemoryLog, type LedgerEvent } from '@tollgate/events';

const grant = (i: number): LedgerEvent => ({
  type: 'ledger', event_id: `credit:a:${i}`, ts: i, account_id: 'a', kind: 'grant', amount_micros: String(i), reference: String(i),
});
const segments = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.jsonl'));

test('published events are on disk before any group sees them; a torn last line is skipped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-journal-'));
  const log = new MemoryLog({ journal: new Journal(dir, { segmentEvents: 4 }) });
  for (let i = 0; i < 10; i++) await log.publish('ledger', [{ event: grant(i), headers: { traceparent: `t${i}` } }]);
  // No consumer: a process killed now would leave all ten, in order, with their headers.
  const read = Journal.read(dir);
  assert.deepEqual(read.map((r) => r.event.event_id), Array.from({ length: 10 }, (_, i) => `credit:a:${i}`));
  assert.equal(read[3]!.headers.traceparent, 't3');
  assert.equal(segments(dir).length, 3); // rotated every 4 events
  appendFileSync(join(dir, segments(dir).sort().at(-1)!), '{"topic":"ledger","ev');
  assert.equal(Journal.read(dir).length, 10);
});

test('segments go once every group has consumed them; a group that lags keeps them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-journal-'));
  const log = new MemoryLog({ journal: new Journal(dir, { segmentEvents: 5 }) });
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  await log.subscribe({ group: 'fast', topics: ['ledger'], handler: async () => {} });
  await log.subscribe({ group: 'slow', topics: ['ledger'], handler: async () => { await gate; } });
  for (let i = 0; i < 12; i++) await log.publish('ledger', [{ event: grant(i) }]);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(Journal.read(dir).length, 12, 'the slow group has not consumed them');
  release();
  await log.drain();
  assert.deepEqual(Journal.read(dir), []);
  assert.deepEqual(segments(dir), []);
  await log.publish('ledger', [{ event: grant(99) }]);
  await log.drain();
  await log.close();
  assert.deepEqual(Journal.read(dir), [], 'a clean stop leaves an empty journal');
});

test('Journal.clear removes everything; reading a missing directory gives nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-journal-'));
  const j = new Journal(dir);
  j.append([{ topic: 'ledger', event: grant(1), headers: {} }], 1);
  j.close();
  Journal.clear(dir);
  assert.deepEqual(Journal.read(dir), []);
});

test('an unreadable line is reported by scan, never dropped silently; only the last segment\'s unterminated last line is torn', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-journal-'));
  const line = (i: number) => JSON.stringify({ topic: 'ledger', event: grant(i), headers: {} });
  const first = Array.from({ length: 12 }, (_, i) => line(i));
  first[5] = '{"topic":"ledger","ev';
  first[8] = 'null';
  writeFileSync(join(dir, '0000000000000001.jsonl'), `${first.join('\n')}\n{"cut short in an earlier segment`);
  writeFileSync(join(dir, '0000000000000013.jsonl'), `${line(12)}\n${line(13)}\n{"topic":"led`);
  const scan = Journal.scan(dir);
  assert.deepEqual(scan.records.map((r) => r.event.event_id),
    [0, 1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 13].map((i) => `credit:a:${i}`));
  assert.deepEqual(scan.unreadable.map((u) => [u.segment, u.line, u.raw]), [
    ['0000000000000001.jsonl', 6, '{"topic":"ledger","ev'],
    ['0000000000000001.jsonl', 9, 'null'],
    ['0000000000000001.jsonl', 13, '{"cut short in an earlier segment'],
  ]);
  assert.equal(scan.unreadable[1]!.error, 'not a journal record (an object with a topic and an event)');
  assert.equal(scan.torn, '{"topic":"led');
  assert.equal(Journal.read(dir).length, 12);
});

test('a journal line whose headers no log can carry (written by an earlier version, or damaged) is replayed with the headers every log carries, never refused', async () => {
  // Kind: publish refuses headers that are not strings or are reserved (headersProblem); a
  // replay at start re-publishes journal lines, so their headers are read as carriedHeaders.
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-journal-'));
  const line = (i: number, headers: unknown) => JSON.stringify({ topic: 'ledger', event: grant(i), headers });
  writeFileSync(join(dir, '0000000000000001.jsonl'), [
    line(1, { traceparent: 't1', 'x-n': 5, 'x-ok': true, 'x-null': null, 'x-obj': { a: 1 }, event_id: 'theirs' }),
    line(2, 'not an object'),
    line(3, ['a']),
    line(4, null),
  ].join('\n') + '\n');
  const read = Journal.read(dir);
  assert.deepEqual(read.map((r) => r.headers), [{ traceparent: 't1', 'x-n': '5', 'x-ok': 'true' }, {}, {}, {}]);
  const log = new MemoryLog();
  for (const r of read) await log.publish(r.topic, [{ event: r.event, headers: r.headers }]);
  const got: Array<Record<string, string>> = [];
  await log.subscribe({ group: 'g', topics: ['ledger'], handler: async (batch) => { for (const e of batch) got.push(e.headers); } });
  await log.drain();
  assert.deepEqual(got, [{ traceparent: 't1', 'x-n': '5', 'x-ok': 'true' }, {}, {}, {}]);
  await log.close();
});
