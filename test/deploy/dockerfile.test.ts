// The Dockerfile checked against the repository without a Docker engine: base image, what the
// dependency stage copies and runs, the entrypoint file, signals, user, healthcheck, port, volume,
// and what .dockerignore lets into the build context.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CONFIG_VARIABLES, HEALTH_PATH, NODE_VARIABLES, ROOT, dockerIgnored, exists, healthcheckUrl, loadConfig, read, statusOf, workspaces,
} from './support.ts';

interface Instruction { op: string; args: string; line: number }

/** Dockerfile instructions: continuation lines joined, comments and parser directives dropped. */
function instructions(text = read('Dockerfile')): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (pending === '' && (line.trim() === '' || line.trimStart().startsWith('#'))) return;
    if (pending === '') start = i + 1;
    if (line.trimStart().startsWith('#')) return; // a comment inside a continued instruction
    pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (!line.endsWith('\\')) {
      const m = /^(\w+)\s+([\s\S]*)$/.exec(pending)!;
      out.push({ op: m[1]!.toUpperCase(), args: m[2]!, line: start });
      pending = '';
    }
  });
  return out;
}
const all = instructions();
/** The instructions of each stage, by index (0 = first FROM). */
const stages: Instruction[][] = [];
for (const ins of all) {
  if (ins.op === 'FROM') stages.push([]);
  if (stages.length) stages.at(-1)!.push(ins);
}
const runtime = stages.at(-1)!;
const deps = stages[0]!;
const execForm = (args: string): string[] => {
  const parsed = JSON.parse(args) as unknown;
  assert.ok(Array.isArray(parsed) && parsed.every((a) => typeof a === 'string'), `not exec (JSON array) form: ${args}`);
  return parsed as string[];
};
/** ARG defaults given before the first FROM (NODE_IMAGE). */
const globalArgs = Object.fromEntries(all.slice(0, all.findIndex((i) => i.op === 'FROM')).filter((i) => i.op === 'ARG')
  .map((i) => i.args.split('=') as [string, string]));
const fromImage = (ins: Instruction): string => ins.args.split(/\s+/)[0]!.replace(/^\$\{(\w+)\}$/, (_, n: string) => globalArgs[n] ?? '');
/** ENV of the runtime stage (`ENV A=1 B=2` forms). */
const runtimeEnv = Object.fromEntries(runtime.filter((i) => i.op === 'ENV').flatMap((i) => [...i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)].map((m) => [m[1]!, m[2]!.replace(/^"|"$/g, '')])));

test('base image: Node 24 (the .nvmrc major) in every stage, multi-stage', () => {
  const nvm = read('.nvmrc').trim();
  assert.ok(stages.length >= 2, 'a dependency stage and a runtime stage');
  for (const stage of stages) assert.match(fromImage(stage[0]!), new RegExp(`^node:${nvm}(-|$)`), `line ${stage[0]!.line}: ${stage[0]!.args}`);
});

test('dependencies: npm ci --omit=dev after copying every workspace manifest, the lockfile and the postinstall script', () => {
  const ci = deps.findIndex((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args));
  assert.ok(ci > 0, 'npm ci in the first stage');
  assert.match(deps[ci]!.args, /--omit=dev/);
  const copied = deps.slice(0, ci).filter((i) => i.op === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  const needed = ['package.json', 'package-lock.json', ...workspaces().map((w) => `${w}/package.json`)];
  assert.deepEqual(needed.filter((f) => !copied.includes(f)), [], 'manifests npm ci needs but the stage lacks');
  assert.deepEqual(copied.filter((f) => !exists(f)), [], 'copied files that do not exist');
  // The root postinstall runs at npm ci: its script must be in the stage.
  const postinstall = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.postinstall ?? '';
  for (const file of postinstall.match(/\S+\.m?js\b/g) ?? []) assert.ok(copied.includes(file), `postinstall needs ${file}`);
  // chDB's native library (embedded mode) is a production dependency for linux x64 glibc.
  const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { dev?: boolean; os?: string[]; cpu?: string[]; libc?: string[] }> };
  const lib = lock.packages['node_modules/@chdb/lib-linux-x64-gnu'];
  assert.ok(lib && !lib.dev, 'chDB native library in the lockfile as a production (optional) dependency');
  assert.deepEqual([lib.os, lib.cpu, lib.libc], [['linux'], ['x64'], ['glibc']], 'bookworm is glibc');
});

test('postinstall under Node 24 downloads nothing: no .tools in the image', () => {
  assert.equal(process.versions.node.split('.')[0], read('.nvmrc').trim(), 'this test runs on the image\'s Node major');
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-postinstall-'));
  try {
    cpSync(join(ROOT, 'scripts/node24.mjs'), join(dir, 'scripts/node24.mjs'));
    const r = spawnSync(process.execPath, ['scripts/node24.mjs', '--install'], { cwd: dir, encoding: 'utf8', env: { PATH: '/nonexistent' } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.deepEqual(readdirSync(dir), ['scripts'], 'nothing but the script: no .tools/');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('signals: tini is PID 1 and execs node on the entry file directly (exec form, no shell)', () => {
  const entry = execForm(runtime.find((i) => i.op === 'ENTRYPOINT')!.args);
  assert.match(entry[0]!, /(^|\/)tini$/);
  assert.equal(entry[1], '--');
  assert.equal(entry[2], 'node');
  const file = entry[3]!;
  assert.equal(file, 'services/tollgate/src/main.ts');
  assert.ok(exists(file), `${file} exists`);
  assert.ok(runtime.some((i) => i.op === 'RUN' && /apt-get install[^&]*\btini\b/.test(i.args)), 'tini installed in the runtime stage');
  const cmd = runtime.find((i) => i.op === 'CMD');
  if (cmd) assert.deepEqual(execForm(cmd.args), [], 'CMD adds nothing: arguments are the program\'s (--roles, commands)');
  // The entry file and everything it loads is in the image: sources copied, not ignored.
  const workdir = runtime.filter((i) => i.op === 'WORKDIR').at(-1)!.args;
  assert.equal(workdir, '/app');
  const copiedDirs = runtime.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).map((i) => i.args.split(/\s+/)[0]!);
  assert.ok(copiedDirs.includes('services') && copiedDirs.includes('libs') && copiedDirs.includes('package.json'), copiedDirs.join(' '));
  assert.ok(runtime.some((i) => i.op === 'COPY' && /^--from=\w+ \/app\/node_modules /.test(i.args)), 'production node_modules from the deps stage');
});

test('one image for every role: the entry accepts --roles and the roles are chosen at run time only', () => {
  assert.ok(!('TOLLGATE_ROLES' in runtimeEnv), 'no role baked into the image');
  // Each role alone is a valid command line for the entrypoint (with its distributed settings).
  const env = { KAFKA_BROKERS: 'kafka:9092', REDIS_URL: 'redis://redis:6379', KEY_HASH_SECRET: 'k'.repeat(16), ADMIN_TOKEN: 'a'.repeat(16) };
  for (const role of ['gateway', 'aggregator', 'control']) assert.deepEqual(loadConfig(env, ['--roles', role]).roles, [role]);
  assert.deepEqual(loadConfig({}, []).roles, ['gateway', 'aggregator', 'control'], 'no argument: every role, embedded');
});

test('non-root: the runtime runs as an unprivileged user that owns only DATA_DIR, a volume', () => {
  const users = runtime.filter((i) => i.op === 'USER').map((i) => i.args);
  assert.ok(users.length > 0 && !/^(root|0)(:|$)/.test(users.at(-1)!), `USER ${users.at(-1)}`);
  const dataDir = runtimeEnv.DATA_DIR!;
  assert.ok(dataDir?.startsWith('/'), 'DATA_DIR set to an absolute path');
  assert.deepEqual(execForm(runtime.find((i) => i.op === 'VOLUME')!.args), [dataDir]);
  assert.ok(runtime.some((i) => i.op === 'RUN' && i.args.includes(`chown ${users.at(-1)}:${users.at(-1)} ${dataDir}`)), 'the user owns DATA_DIR');
});

test('port and health: EXPOSE is the PORT the image sets, HEALTHCHECK requests /health there and the server answers it', async () => {
  const port = loadConfig(runtimeEnv).port;
  assert.deepEqual(runtime.filter((i) => i.op === 'EXPOSE').map((i) => i.args), [String(port)]);
  const hc = runtime.find((i) => i.op === 'HEALTHCHECK')!;
  const cmd = /CMD\s+(\[.*\])\s*$/.exec(hc.args);
  assert.ok(cmd, 'HEALTHCHECK CMD in exec form');
  const url = healthcheckUrl(execForm(cmd[1]!), port);
  assert.equal(url.port, String(port));
  assert.equal(url.pathname, HEALTH_PATH);
  assert.equal(await statusOf(url.pathname), 200);
  // The healthcheck runs with the image's own tools: node's fetch (no curl/wget in the slim image).
  assert.equal(execForm(cmd[1]!)[0], 'node');
});

test('environment: every ENV the image sets is a Tollgate setting or Node\'s', () => {
  const known = new Set([...CONFIG_VARIABLES, ...NODE_VARIABLES]);
  assert.deepEqual(Object.keys(runtimeEnv).filter((k) => !known.has(k)), []);
  assert.doesNotThrow(() => loadConfig(runtimeEnv));
});

test('build context: .dockerignore keeps host dependencies, Node downloads, data and secrets out and everything the image copies in', () => {
  for (const out of ['node_modules', 'libs/config/node_modules/x', '.tools/node_modules', 'data/chdb', '.env', '.git/HEAD', '.deploy/kafka', 'libs/config/src/config.test.ts']) {
    assert.ok(dockerIgnored(out), `${out} reaches the build context`);
  }
  const needed = ['package.json', 'package-lock.json', '.npmrc', 'scripts/node24.mjs', 'services/tollgate/src/main.ts', 'services/simulator/src/main.ts',
    ...workspaces().map((w) => `${w}/package.json`),
    ...readdirSync(join(ROOT, 'libs/pricing/catalogs')).map((f) => `libs/pricing/catalogs/${f}`)];
  assert.deepEqual(needed.filter((f) => dockerIgnored(f)), [], 'needed by the image but ignored');
  // Every COPY source of the Dockerfile is in the context.
  const sources = all.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  assert.deepEqual(sources.filter((s) => dockerIgnored(s) || !existsSync(join(ROOT, s))), []);
  // No test file is needed at run time: nothing the entry point imports is a *.test.ts.
  assert.doesNotMatch(readFileSync(join(ROOT, 'services/tollgate/src/main.ts'), 'utf8'), /\.test\.ts/);
});
