// The command-line conventions of every command a user or operator runs from this repository
// (bench/*.ts, bench/profiles/summarize.ts, the npm scripts, the servers, deploy/*.sh, .ci/run):
// -h/--help prints the usage on stdout naming every option, exit 0; an unknown option is one
// line on stderr naming it (a `see --help` hint may follow on a second line), exit 2, no stack
// frames; a malformed value likewise. Nothing is started: every case ends before any service
// is reached, and the deploy scripts get a state directory of their own so that even a broken
// argument check could not stop the shared services.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runCommand, type CliResult } from './support/cli.ts';

const ROOT = resolve(import.meta.dirname, '..');
const NODE = process.execPath;

type Run = CliResult;

/** Runs `argv` in the repository root with `env` on top of this process's; killed after 30 s. */
function run(argv: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return runCommand(argv, env, { cwd: ROOT, timeoutMs: 30_000 });
}

/** Runs every job, at most `limit` at a time (the machine has 2 cores), results in order. */
async function pool<T, R>(items: readonly T[], limit: number, job: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await job(items[i]!);
    }
  }));
  return out;
}

/** A command: how it is started, and the options (and variables) its usage must name. */
interface Command { name: string; argv: string[]; names: string[] }

const node = (file: string, names: string[]): Command => ({ name: `node ${file}`, argv: [NODE, file], names });
const bash = (file: string, names: string[]): Command => ({ name: `bash ${file}`, argv: ['bash', file], names });

/** bench/*.ts that are parts of `npm run bench`, not commands: run directly, they say what to run. */
const SECTION_MODULES = ['bench/distributed.ts', 'bench/load.ts', 'bench/peers.ts', 'bench/pool.ts', 'bench/stack.ts', 'bench/targets.ts'];

const COMMANDS: Command[] = [
  node('bench/run.ts', ['--duration', '--warmup', '--concurrency', '--scenarios', '--events', '--lag-samples', '--embedded-only',
    '--analytics-events', '--skip-analytics', '--analytics-only', '--skip-pool', '--pool-only', '--skip-peers', '--peers-only',
    '--peer-reps', '--dist-rounds', '--consumer-reps', '--require-services', '--json', '--help',
    'KAFKA_BROKERS', 'REDIS_URL', 'BENCH_CONSUMER_EVENTS', 'BENCH_ANALYTICS_EVENTS', 'Example', 'Exit status']),
  node('bench/analytics.ts', ['--events', '--runs', '--budget', '--full-check', '--json', '--help', 'BENCH_ANALYTICS_EVENTS', 'Example', 'Exit status']),
  node('bench/consumers.ts', ['--events', '--partitions', '--accounts', '--rate', '--seconds', '--modes', '--groups', '--warehouse',
    '--sink-batch', '--sink-inserts', '--help', 'KAFKA_BROKERS', 'REDIS_URL', 'CLICKHOUSE_URL', 'REDIS_CLUSTER_NODES', 'CLICKHOUSE_PID', 'Example', 'Exit status']),
  node('bench/dist-ab.ts', ['--concurrency', '--rounds', '--slice', '--base', '--alt-env', '--help', 'KAFKA_BROKERS', 'REDIS_URL', 'BENCH_GATEWAY_CPU_PROF', 'Example', 'Exit status']),
  node('bench/cpu-split.ts', ['--mode', '--concurrency', '--seconds', '--env', '--help', 'KAFKA_BROKERS', 'REDIS_URL', 'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
  node('bench/store-events.ts', ['--events', '--batch', '--warehouse', '--v1', '--no-views', '--help', 'CLICKHOUSE_URL', 'Example', 'Exit status']),
  node('bench/usage-rows.ts', ['--events', '--batch', '--rounds', '--format', '--base', '--help', 'Example', 'Exit status']),
  node('bench/body-parse.ts', ['--rounds', '--ms', '--help', 'Example', 'Exit status']),
  node('bench/tail.ts', ['--rounds', '--slice', '--base', '--alt-env', '--head-env', '--no-head', '--threads', '--json', '--help',
    'BENCH_PROFILE_DIR', 'Example', 'Exit status']),
  node('bench/tail-attribute.ts', ['--slowest', '<dir>', '--help', 'Example', 'Exit status']),
  node('bench/flush-block.ts', ['--events', '--flushes', '--help', 'Example', 'Exit status']),
  node('bench/kafka-outage.ts', ['--fault', '--outage-ms', '--members', '--runs', '--help', 'BENCH_KAFKA_DIR', 'BENCH_KAFKA_PORT', 'BENCH_KAFKA_JARS',
    'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
  node('bench/profiles/summarize.ts', ['--top', '--requests', '--from-first-request', '--callers', '--help', 'Example', 'Exit status']),
  node('scripts/test.ts', ['FILTER', 'TEST_CONCURRENCY', 'TOLLGATE_REQUIRE_SERVICES', 'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
  node('scripts/node24.mjs', ['--install', '<entry.ts>']),
  node('services/tollgate/src/main.ts', ['--roles', '--version', '--help', 'rebuild', 'reconcile', 'rerate', 'Exit status']),
  node('services/simulator/src/main.ts', ['SIMULATOR_PORT', 'SIMULATOR_HOST', 'SIMULATOR_LATENCY_MS', 'SIMULATOR_TTFT_MS', 'SIMULATOR_TPS', 'SIMULATOR_API_KEY', 'SIMULATOR_LOG', 'Example', 'Exit status']),
  bash('deploy/services.sh', ['up', 'down', 'restart', 'status', 'env', 'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
  bash('deploy/redis.sh', ['install', 'start', 'stop', 'restart', 'status', 'logs', 'REDIS_PORT', 'REDIS_START_TIMEOUT', 'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
  bash('deploy/redis-cluster.sh', ['install', 'start', 'stop', 'restart', 'status', 'REDIS_CLUSTER_PORTS', 'REDIS_START_TIMEOUT', 'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
  bash('deploy/kafka.sh', ['install', 'start', 'stop', 'restart', 'status', 'logs', 'cli', 'KAFKA_PORT', 'KAFKA_CONTROLLER_PORT', 'KAFKA_START_TIMEOUT',
    'KAFKA_STOP_TIMEOUT', 'KAFKA_HEAP_OPTS', 'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
  bash('deploy/clickhouse.sh', ['install', 'start', 'stop', 'restart', 'status', 'logs', 'CLICKHOUSE_PORT', 'CLICKHOUSE_ENGINE', 'CLICKHOUSE_LIBCHDB',
    'CLICKHOUSE_PYPI_VERSION', 'CLICKHOUSE_START_TIMEOUT', 'CLICKHOUSE_STOP_TIMEOUT', 'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
  bash('deploy/kubernetes/tools.sh', ['KUSTOMIZE_VERSION', 'Example', 'Exit status']),
  bash('bench/peers/install.sh', ['portkey', 'litellm', 'all', 'PORTKEY_VERSION', 'LITELLM_VERSION', 'PYTHON', 'Example', 'Exit status']),
  bash('.ci/run', ['TOLLGATE_KEEP_SERVICES', 'TEST_CONCURRENCY', 'TOLLGATE_DEPLOY_DIR', 'Example', 'Exit status']),
];

/** Every npm script that starts a program (`exec node scripts/node24.mjs <file>`), as npm runs it. */
function npmScripts(): Command[] {
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  return Object.entries(scripts).flatMap(([name, line]) => {
    const m = /^exec node scripts\/node24\.mjs (\S+)$/.exec(line);
    return m ? [{ name: `npm run ${name}`, argv: [NODE, 'scripts/node24.mjs', m[1]!], names: [] }] : [];
  });
}

const deployDir = mkdtempSync(join(tmpdir(), 'cli-conventions-'));
/** A state directory of our own: the deploy scripts and .ci/run find no server of the shared ones there. */
const ENV = { TOLLGATE_DEPLOY_DIR: join(deployDir, 'none') };
test.after(() => rmSync(deployDir, { recursive: true, force: true }));

/** The bad-usage shape: exit 2, nothing on stdout, one line naming `what` (then at most a `--help` hint), no stack frames. */
function assertUsageError(r: Run, what: string, label: string): void {
  assert.equal(r.code, 2, `${label}: exit code (stderr: ${r.stderr})`);
  assert.equal(r.stdout, '', `${label}: stdout`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `${label}: a stack trace on stderr:\n${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.ok(lines[0]!.includes(what), `${label}: the first line names ${what}: ${r.stderr}`);
  assert.ok(lines.length === 1 || (lines.length === 2 && lines[1]!.includes('--help')), `${label}: one line (and a --help hint): ${r.stderr}`);
}

test('every runnable bench file is covered here: bench/*.ts, each a command or a section module', () => {
  const files = readdirSync(join(ROOT, 'bench')).filter((f) => f.endsWith('.ts') && f !== 'cli.ts').map((f) => `bench/${f}`).sort();
  const covered = [...COMMANDS.map((c) => c.argv[1]!), ...SECTION_MODULES].filter((f) => /^bench\/[^/]+\.ts$/.test(f)).sort();
  assert.deepEqual(files, covered);
});

test('--help and -h: usage on stdout naming every option, nothing on stderr, exit 0; --help wins over a mistake on the same line', async () => {
  // -h and the mixed line on the commands that start fast (the bench entry points share
  // bench/cli.ts, so dist-ab and store-events stand for run, analytics and consumers): the file
  // stays quick on 2 shared cores.
  const heavy = new Set(['bench/run.ts', 'bench/analytics.ts', 'bench/consumers.ts']);
  const cases = [...COMMANDS, ...npmScripts()].flatMap((c) => [
    { c, flags: ['--help'] }, { c, flags: ['-h'] }, { c, flags: ['--no-such-option', '--help'] },
  ]).filter(({ c, flags }) => flags[0] === '--help' || (!heavy.has(c.argv.at(-1)!) && (c.argv[0] === NODE || flags.length === 1)));
  const results = await pool(cases, 4, ({ c, flags }) => run([...c.argv, ...flags], ENV));
  for (const [i, { c, flags }] of cases.entries()) {
    const r = results[i]!;
    const label = `${c.name} ${flags.join(' ')}`;
    assert.equal(r.code, 0, `${label}: exit code (stderr: ${r.stderr})`);
    assert.equal(r.stderr, '', `${label}: stderr`);
    assert.match(r.stdout, /^Usage: /, `${label}: ${r.stdout.slice(0, 120)}`);
    for (const n of c.names) assert.ok(r.stdout.includes(n), `${label}: the usage names ${n}`);
  }
});

test('an unknown option: one line on stderr naming it, exit 2, no stack trace, nothing started', async () => {
  const cases = [...COMMANDS, ...npmScripts()];
  const results = await pool(cases, 4, (c) => run([...c.argv, '--no-such-option'], ENV));
  for (const [i, c] of cases.entries()) assertUsageError(results[i]!, '--no-such-option', `${c.name} --no-such-option`);
});

test('a malformed or out-of-range value: one line on stderr naming the option and the value, exit 2', async () => {
  const cases: Array<[string[], Record<string, string>, string]> = [
    [[NODE, 'bench/run.ts', '--duration', 'x'], {}, '--duration: expected a number from 0.1 to 3600, got "x"'],
    [[NODE, 'bench/run.ts', '--scenarios', 'direct-json,nope'], {}, '--scenarios: unknown "nope"'],
    [[NODE, 'bench/run.ts'], { BENCH_CONSUMER_EVENTS: '1e6' }, 'BENCH_CONSUMER_EVENTS: expected a whole number of events (0 skips the section), got "1e6"'],
    [[NODE, 'bench/run.ts', 'extra'], {}, 'unexpected argument "extra"'],
    [[NODE, 'bench/analytics.ts', '--events', '5'], {}, '--events: expected an integer from 10000 to 1000000000, got "5"'],
    [[NODE, 'bench/consumers.ts', '--events', '10k'], {}, '--events: expected an integer from 1 to 100000000, got "10k"'],
    [[NODE, 'bench/consumers.ts', '--modes', 'batch,fast'], {}, '--modes: unknown "fast"; expected any of per-event, batch, cluster'],
    [[NODE, 'bench/consumers.ts', '--sink-batch', '1000,'], {}, '--sink-batch: expected a comma-separated list of numbers, got "1000,"'],
    [[NODE, 'bench/consumers.ts', '--events'], {}, '--events'],
    [[NODE, 'bench/dist-ab.ts', '--rounds', '0'], {}, '--rounds: expected an integer from 1 to 1000, got "0"'],
    [[NODE, 'bench/dist-ab.ts', '--alt-env', 'NOEQUALS'], {}, '--alt-env: expected NAME=VALUE pairs separated by commas, got "NOEQUALS"'],
    [[NODE, 'bench/cpu-split.ts', '--mode', 'cluster'], {}, '--mode: unknown "cluster"; expected any of dist, embedded'],
    [[NODE, 'bench/cpu-split.ts', '--env', 'NOEQUALS'], {}, '--env: expected NAME=VALUE pairs separated by commas, got "NOEQUALS"'],
    [[NODE, 'bench/store-events.ts', '--warehouse', 'mysql'], {}, '--warehouse: unknown "mysql"; expected any of chdb, server'],
    [[NODE, 'bench/profiles/summarize.ts'], {}, 'missing the profile file'],
    [[NODE, 'bench/tail.ts', '--rounds', '0'], {}, '--rounds: expected an integer from 1 to 1000, got "0"'],
    // a negative number as a separate argument reaches the option's own range check too
    [[NODE, 'bench/tail.ts', '--rounds', '-1'], {}, '--rounds: expected an integer from 1 to 1000, got "-1"'],
    [[NODE, 'bench/run.ts', '--duration', '-0.5'], {}, '--duration: expected a number from 0.1 to 3600, got "-0.5"'],
    [[NODE, 'bench/consumers.ts', '--sink-batch', '-1,5'], {}, '--sink-batch: expected an integer'],
    // an empty value given is a mistake, not the default
    [[NODE, 'bench/run.ts', '--duration='], {}, '--duration: expected a value, got ""'],
    [[NODE, 'bench/tail.ts', '--rounds', ' '], {}, '--rounds: expected a value, got " "'],
    [[NODE, 'bench/tail.ts', '--base='], {}, '--base: expected a value, got ""'],
    [[NODE, 'bench/tail.ts', '--alt-env='], {}, '--alt-env: expected a value, got ""'],
    [[NODE, 'bench/run.ts', '--analytics-events='], {}, '--analytics-events: expected a value, got ""'],
    [[NODE, 'bench/run.ts', '--scenarios='], {}, '--scenarios: expected a value, got ""'],
    // numbers in decimal notation only (Number() alone takes hex, binary and octal)
    [[NODE, 'bench/run.ts', '--duration', '0x10'], {}, '--duration: expected a number from 0.1 to 3600, got "0x10"'],
    [[NODE, 'bench/tail.ts', '--rounds', '0b11'], {}, '--rounds: expected an integer from 1 to 1000, got "0b11"'],
    // an option given twice is refused, not the last one taken
    [[NODE, 'bench/tail.ts', '--rounds', '2', '--rounds', '3'], {}, '--rounds given more than once'],
    [[NODE, 'bench/run.ts', '--duration', '1', '--duration=2'], {}, '--duration given more than once'],
    // an empty entry in a list is refused like an unknown one
    [[NODE, 'bench/run.ts', '--scenarios', 'direct-json,,gateway-json'], {}, '--scenarios: unknown ""'],
    // after `--` everything is a positional, named as given
    [[NODE, 'bench/tail.ts', '--rounds', '2', '--', '-1'], {}, 'unexpected argument "-1"'],
    [[NODE, 'bench/tail.ts', '--head-env', 'NOEQUALS'], {}, '--head-env: expected NAME=VALUE pairs separated by commas, got "NOEQUALS"'],
    [[NODE, 'bench/tail-attribute.ts'], {}, 'missing <dir>'],
    [[NODE, 'bench/tail-attribute.ts', '--slowest', '0', 'dir'], {}, '--slowest: expected a number from 0.01 to 100, got "0"'],
    [[NODE, 'bench/flush-block.ts', '--events', '250,x'], {}, '--events: expected an integer from 1 to 1000000, got "x"'],
    [[NODE, 'bench/kafka-outage.ts', '--fault', 'crash'], {}, '--fault: unknown "crash"; expected one of stop, kill, pause'],
    [[NODE, 'bench/kafka-outage.ts'], { BENCH_KAFKA_PORT: '9092' }, 'BENCH_KAFKA_PORT: 9092 or its controller port 9093'],
    [[NODE, 'bench/profiles/summarize.ts', 'a.cpuprofile', '--top', '0'], {}, '--top: expected an integer from 1 to 10000, got "0"'],
    [[NODE, 'scripts/node24.mjs', 'no-such-file.ts'], {}, 'no such file "no-such-file.ts"'],
    [['bash', 'deploy/services.sh', 'start'], {}, 'unknown command "start"'],
    [['bash', 'bench/peers/install.sh', 'kong'], {}, 'unknown peer "kong"'],
    [['bash', '.ci/run', 'test'], {}, 'unexpected argument "test"'],
  ];
  const results = await pool(cases, 4, ([argv, env]) => run(argv, { ...ENV, ...env }));
  for (const [i, [argv, , what]] of cases.entries()) assertUsageError(results[i]!, what, argv.slice(1).join(' '));
});

test('a section module run directly says what to run instead: on stdout with exit 0 for --help, on stderr with exit 2 otherwise', async () => {
  const results = await pool(SECTION_MODULES, 4, async (f) => [await run([NODE, f, '--help']), await run([NODE, f])] as const);
  for (const [i, f] of SECTION_MODULES.entries()) {
    const [help, bare] = results[i]!;
    assert.deepEqual([help.code, help.stderr], [0, ''], f);
    assert.match(help.stdout, new RegExp(`^${f.replace('.', '\\.')} is a part of npm run bench, not a command of its own; run npm run bench`), f);
    assert.deepEqual([bare.code, bare.stdout, bare.stderr], [2, '', help.stdout], f);
  }
});

test('npm run bench with KAFKA_BROKERS / REDIS_URL given but not answering: --require-services fails before anything runs, naming both, the Redis password never printed', async () => {
  // port 1: nothing listens there
  const r = await run([NODE, 'bench/run.ts', '--require-services'], { ...ENV, KAFKA_BROKERS: '127.0.0.1:1', REDIS_URL: 'redis://:bench-secret@127.0.0.1:1/0' });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  assert.ok(r.stderr.includes('Kafka at 127.0.0.1:1 (KAFKA_BROKERS) not answering; Redis at 127.0.0.1:1 (REDIS_URL) not answering'), r.stderr);
  assert.ok(r.stderr.includes('--require-services: failing before anything runs'), r.stderr);
  assert.doesNotMatch(r.stderr, /bench-secret/);
  assert.doesNotMatch(r.stderr, /starting the simulator/);
});
