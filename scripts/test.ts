// `npm test`: every *.test.ts in the workspace, through Node's own test runner, one process
// per file (chDB allows one data directory per process). Tests that need Kafka or Redis find
// them through test/support/services.ts and skip loudly when absent, unless
// TOLLGATE_REQUIRE_SERVICES=1 (as in CI), where a missing service is a failure.
// Two phases: every ordinary suite in parallel, then the `*.fault.test.ts` suites one at a
// time, because they stop and start the shared Kafka and Redis.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Counts, Failure } from './count-reporter.ts';

const root = join(import.meta.dirname, '..');
const SKIP_DIRS = new Set(['node_modules', '.git', '.tools', '.deploy', 'data']);

function find(dir: string, out: string[]): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP_DIRS.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) find(path, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
  return out;
}

const USAGE = `Usage: npm test [-- FILTER…]

Runs every *.test.ts under libs/, services/ and test/ with Node's test runner, one process per
file: the ordinary suites in parallel, then the *.fault.test.ts suites one at a time (they stop
and start the shared Kafka and Redis). A FILTER keeps the files whose path contains it. Each
suite's output goes to stdout, then every failed test again with its error, then the skipped
tests counted by reason, then one closing line: tests: N passed, N failed, N skipped.

Environment:
  TEST_CONCURRENCY           test files run at once in the first phase (default 2)
  KAFKA_BROKERS, REDIS_URL, CLICKHOUSE_URL, REDIS_CLUSTER_NODES   the services (default:
                             the local ones of bash deploy/services.sh up, found on
                             127.0.0.1 at REDIS_PORT 6379, KAFKA_PORT 9092, CLICKHOUSE_PORT
                             8123, REDIS_CLUSTER_PORTS "7001 7002 7003")
  TOLLGATE_TEST_SERVICES=none  no probe of those ports: only services named above are used (a
                             shared machine whose default ports serve someone else's)
  TOLLGATE_REQUIRE_SERVICES=1  a missing service fails the suites that need it (default: skip)
  TOLLGATE_DEPLOY_DIR        the deploy scripts' state; /nonexistent makes the fault suites skip
  NODE_COMPILE_CACHE         Node's compile cache for every test process and what it spawns
                             (default <os tmpdir>/node-compile-cache; NODE_DISABLE_COMPILE_CACHE=1: none)

Example:
  npm test -- libs/ledger test/e2e/poison.test.ts

Exit status: 0 every test passed, 1 a test failed or no file matches, 2 bad usage.`;

const filter = process.argv.slice(2);
if (filter.includes('--help') || filter.includes('-h')) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
// Filters are parts of paths; an option here is a mistake (node --test's own flags are not passed on).
const option = filter.find((f) => f.startsWith('-'));
if (option !== undefined) {
  process.stderr.write(`npm test: unknown option ${JSON.stringify(option)}; the arguments are parts of test file paths (see npm test -- --help)\n`);
  process.exit(2);
}
let files = ['libs', 'services', 'test'].flatMap((d) => find(join(root, d), [])).sort();
if (filter.length) files = files.filter((f) => filter.some((p) => f.includes(p)));
if (files.length === 0) {
  process.stderr.write(`no test files match ${filter.join(' ')}\n`);
  process.exit(1);
}
// Node's compile cache for every test process and every process a test spawns (they inherit the
// environment): each file's compiled code, TypeScript stripped, is read from disk after its
// first load instead of compiled again in each of the hundreds of processes a run starts (a
// suite that spawns many took ~80 s without it and ~33 s with it warm). Node's own default
// directory; NODE_COMPILE_CACHE given, or NODE_DISABLE_COMPILE_CACHE=1, wins.
const testEnv = { ...process.env, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE || join(tmpdir(), 'node-compile-cache') };
const totals = { passed: 0, failed: 0, skipped: 0 };
const failures: Failure[] = [];
const skips = new Map<string, number>();
const countsDir = mkdtempSync(join(tmpdir(), 'tollgate-test-'));
const run = (label: string, list: string[], concurrency: string): number => {
  if (list.length === 0) return 0;
  const countsFile = join(countsDir, `${totals.passed + totals.failed + totals.skipped}-${list.length}.json`);
  process.stderr.write(`\n=== ${label}: ${list.length} test ${list.length === 1 ? 'file' : 'files'}\n`);
  const result = spawnSync(process.execPath, [
    '--test',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    `--test-reporter=${join(root, 'scripts/progress-reporter.ts')}`, '--test-reporter-destination=stderr',
    `--test-concurrency=${concurrency}`,
    '--test-timeout=600000',
    ...list,
  ], { cwd: root, stdio: 'inherit', env: { ...testEnv, TOLLGATE_TEST_FILES: String(list.length), TOLLGATE_TEST_COUNTS: countsFile } });
  try {
    const counts = JSON.parse(readFileSync(countsFile, 'utf8')) as Counts;
    totals.passed += counts.passed;
    totals.failed += counts.failed;
    totals.skipped += counts.skipped;
    failures.push(...counts.failures);
    for (const [reason, n] of Object.entries(counts.skips ?? {})) skips.set(reason, (skips.get(reason) ?? 0) + n);
  } catch {
    totals.failed++; // the runner died before reporting
    failures.push({ name: `${label}: the test runner died before reporting (exit ${result.status ?? result.signal})`, error: '' });
  }
  return result.status ?? 1;
};
const isFault = (f: string) => f.endsWith('.fault.test.ts');
const first = run('suites', files.filter((f) => !isFault(f)), process.env.TEST_CONCURRENCY ?? '2');
const second = run('fault suites (one at a time)', files.filter(isFault), '1');
// Every failure once more, last, with its error: the phases' own summaries scroll away.
if (failures.length) {
  process.stdout.write(`\n=== failed tests (${failures.length}), again:\n`);
  for (const f of failures) {
    const where = f.file ? ` (${relative(root, f.file)}${f.line ? `:${f.line}` : ''})` : '';
    process.stdout.write(`\n✖ ${f.name}${where}\n${f.error.replace(/^/gm, '    ')}\n`);
  }
}
// And why tests were skipped, most first: which services to start to run them.
if (skips.size) {
  process.stdout.write(`\n=== skipped tests (${totals.skipped}), by reason:\n`);
  for (const [reason, n] of [...skips].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) process.stdout.write(`${String(n).padStart(5)}  ${reason}\n`);
}
process.stdout.write(`\ntests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
process.exit(first || second || (totals.failed > 0 ? 1 : 0));
