// A node:test reporter for `npm test`'s progress on stderr: one line as each test file finishes,
// `[N/M files] <file> (<s> s)`, M from TOLLGATE_TEST_FILES (scripts/test.ts sets it per phase).
// The spec reporter's lines show the tests; these show how far the run is (a new user could not
// tell, a run being ~12 minutes). With TOLLGATE_TEST_COUNTS set, it also writes the run's counts
// there at the end (count-reporter.ts's JSON line): one reporter fewer than a count reporter of
// its own, which made node:test warn of a possible EventEmitter leak (11 'end' listeners).
import { writeFileSync } from 'node:fs';
import { Tally, type TestEvent } from './count-reporter.ts';

export default async function* progressReporter(source: AsyncIterable<TestEvent>) {
  const total = process.env['TOLLGATE_TEST_FILES'] ?? '?';
  const countsFile = process.env['TOLLGATE_TEST_COUNTS'];
  const tally = new Tally();
  let done = 0;
  for await (const event of source) {
    tally.add(event);
    const { name, file, nesting, details } = event.data;
    // A file's own completion: the top-level entry named after the file (process isolation).
    if (event.type !== 'test:complete' || nesting !== 0 || !name || !file || !file.endsWith(name)) continue;
    done++;
    const seconds = details?.duration_ms === undefined ? '' : ` (${(details.duration_ms / 1000).toFixed(1)} s)`;
    yield `[${done}/${total} files] ${name}${seconds}\n`;
  }
  if (countsFile) writeFileSync(countsFile, tally.line());
}
