// `npm test`: every *.test.ts in the workspace, through Node's own test runner, one process
// per file (chDB allows one data directory per process). Tests that need Kafka or Redis find
// them through test/support/services.ts and skip loudly when absent, unless
// TOLLGATE_REQUIRE_SERVICES=1 (as in CI), where a missing service is a failure.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

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

const filter = process.argv.slice(2);
let files = ['libs', 'services', 'test'].flatMap((d) => find(join(root, d), [])).sort();
if (filter.length) files = files.filter((f) => filter.some((p) => f.includes(p)));
if (files.length === 0) {
  process.stderr.write(`no test files match ${filter.join(' ')}\n`);
  process.exit(1);
}
process.stderr.write(`running ${files.length} test files\n`);
const result = spawnSync(process.execPath, [
  '--test',
  '--test-reporter=spec',
  `--test-concurrency=${process.env.TEST_CONCURRENCY ?? '2'}`,
  '--test-timeout=300000',
  ...files,
], { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
