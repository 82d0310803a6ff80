// The reporters `npm test` adds to node:test's spec output (scripts/test.ts): the progress line
// as each test file finishes, and the counts with every failure kept for the closing reprint.
// Fed the events node:test emits under process isolation (each file a top-level entry named
// after it, its tests at nesting 0 too).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import progressReporter from '../scripts/progress-reporter.ts';
import countReporter from '../scripts/count-reporter.ts';

type Ev = { type: string; data: Record<string, unknown> };
async function* events(list: Ev[]) { for (const e of list) yield e; }
async function collect(gen: AsyncGenerator<string>): Promise<string> {
  let out = '';
  for await (const chunk of gen) out += chunk;
  return out;
}

const RUN: Ev[] = [
  { type: 'test:pass', data: { name: 'adds', file: '/r/a.test.ts', nesting: 0, details: { type: 'test' } } },
  { type: 'test:complete', data: { name: 'adds', file: '/r/a.test.ts', nesting: 0, details: { duration_ms: 3 } } },
  { type: 'test:complete', data: { name: 'a.test.ts', file: '/r/a.test.ts', nesting: 0, details: { duration_ms: 1234 } } },
  { type: 'test:fail', data: { name: 'breaks', file: '/r/b/b.test.ts', line: 7, nesting: 0, details: { type: 'test', error: new Error('boom') } } },
  { type: 'test:pass', data: { name: 'skipped one', file: '/r/b/b.test.ts', nesting: 0, skip: true, details: { type: 'test' } } },
  { type: 'test:pass', data: { name: 'needs kafka', file: '/r/b/b.test.ts', nesting: 0, skip: 'SKIPPED: needs Kafka (hint)', details: { type: 'test' } } },
  { type: 'test:pass', data: { name: 'needs kafka too', file: '/r/b/b.test.ts', nesting: 0, skip: 'SKIPPED: needs Kafka (hint)', details: { type: 'test' } } },
  { type: 'test:pass', data: { name: 'later', file: '/r/b/b.test.ts', nesting: 0, todo: true, details: { type: 'test' } } },
  { type: 'test:fail', data: { name: 'later, failing', file: '/r/b/b.test.ts', nesting: 0, todo: 'not yet', details: { type: 'test', error: new Error('todo') } } },
  { type: 'test:pass', data: { name: 'a skipped suite', file: '/r/b/b.test.ts', nesting: 0, skip: 'needs Redis', details: { type: 'suite' } } },
  { type: 'test:complete', data: { name: 'b/b.test.ts', file: '/r/b/b.test.ts', nesting: 0, details: { duration_ms: 50 } } },
];

test('progress reporter: one line per finished test file, N of the phase\'s M files, with its time; a test\'s own completion is no file', async () => {
  // npm test's own TOLLGATE_TEST_COUNTS (inherited by this file) must not receive these counts.
  const before = [process.env['TOLLGATE_TEST_FILES'], process.env['TOLLGATE_TEST_COUNTS']];
  process.env['TOLLGATE_TEST_FILES'] = '192';
  delete process.env['TOLLGATE_TEST_COUNTS'];
  try {
    assert.equal(await collect(progressReporter(events(RUN))), '[1/192 files] a.test.ts (1.2 s)\n[2/192 files] b/b.test.ts (0.1 s)\n');
  } finally {
    for (const [name, value] of [['TOLLGATE_TEST_FILES', before[0]], ['TOLLGATE_TEST_COUNTS', before[1]]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});

test('count reporter: passed, failed and skipped tests counted (file entries and suites are not tests), each failure kept with its place and error, each skip by its reason', async () => {
  const out = JSON.parse(await collect(countReporter(events(RUN)))) as { passed: number; failed: number; skipped: number; failures: Array<{ name: string; file: string; line: number; error: string }>; skips: Record<string, number> };
  assert.deepEqual([out.passed, out.failed, out.skipped], [1, 1, 6]);
  assert.deepEqual(out.skips, { '(no reason given)': 1, 'SKIPPED: needs Kafka (hint)': 2, todo: 1, 'not yet': 1, '(suite) needs Redis': 1 });
  assert.deepEqual([out.failures[0]!.name, out.failures[0]!.file, out.failures[0]!.line], ['breaks', '/r/b/b.test.ts', 7]);
  assert.match(out.failures[0]!.error, /^Error: boom/);
});

test('progress reporter with TOLLGATE_TEST_COUNTS: the same progress lines, and the count reporter\'s line written to that file at the end (npm test runs two reporters, not three: a third made node:test warn of an EventEmitter leak)', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'reporters-')), 'counts.json');
  const before = [process.env['TOLLGATE_TEST_FILES'], process.env['TOLLGATE_TEST_COUNTS']];
  process.env['TOLLGATE_TEST_FILES'] = '2';
  process.env['TOLLGATE_TEST_COUNTS'] = file;
  try {
    assert.equal(await collect(progressReporter(events(RUN))), '[1/2 files] a.test.ts (1.2 s)\n[2/2 files] b/b.test.ts (0.1 s)\n');
    assert.equal(readFileSync(file, 'utf8'), await collect(countReporter(events(RUN))));
  } finally {
    for (const [name, value] of [['TOLLGATE_TEST_FILES', before[0]], ['TOLLGATE_TEST_COUNTS', before[1]]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});
