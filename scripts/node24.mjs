#!/usr/bin/env node
// Runs a TypeScript entry point with Node 24, whatever `node` is on PATH. Plain JavaScript on
// purpose: it must run on the old Node a fresh machine may have (Node runs .ts natively only
// from 22.18/23.6 on, and the project targets 24 LTS).
//   node scripts/node24.mjs <entry.ts> [args…]   run it with Node 24
//   node scripts/node24.mjs --install             make sure Node 24 is available (postinstall)
// Node 24 comes from the npm registry (package node-<platform>-<arch>@24) into .tools/.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const major = Number(process.versions.node.split('.')[0]);
const platform = process.platform === 'win32' ? 'win' : process.platform;
const pkg = `node-${platform}-${process.arch}`;
const bundled = join(root, '.tools', 'node_modules', pkg, 'bin', process.platform === 'win32' ? 'node.exe' : 'node');

function node24() {
  if (major === 24) return process.execPath;
  if (existsSync(bundled)) return bundled;
  process.stderr.write(`node ${process.versions.node} is not Node 24; installing ${pkg}@24 into .tools/ from the npm registry…\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['install', '--prefix', join(root, '.tools'), '--no-save', '--no-audit', '--no-fund', `${pkg}@24`], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0 || !existsSync(bundled)) {
    process.stderr.write(`could not install ${pkg}@24; install Node 24 LTS (see .nvmrc) and try again\n`);
    process.exit(1);
  }
  return bundled;
}

const USAGE = `Usage: node scripts/node24.mjs <entry.ts> [args…]
       node scripts/node24.mjs --install

Runs a TypeScript entry point with Node 24 whatever \`node\` is on PATH (the npm scripts start,
simulator, tollgate, test and bench go through it), installing Node 24 from the npm registry
(package ${pkg}@24) into .tools/ when this Node is not 24. --install only installs it.
The arguments after <entry.ts> are the program's own (--help among them).`;

const args = process.argv.slice(2);
// Before the entry point, --help anywhere is this launcher's (after it, it is the program's).
if (args[0]?.startsWith('-') && (args.includes('--help') || args.includes('-h'))) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (args[0]?.startsWith('-') && args[0] !== '--install') {
  process.stderr.write(`node24: unknown option ${JSON.stringify(args[0])} (see node scripts/node24.mjs --help)\n`);
  process.exit(2);
}
if (args[0] === '--install') {
  node24();
  process.exit(0);
}
if (args.length === 0) {
  process.stderr.write('node24: missing the entry point (see node scripts/node24.mjs --help)\n');
  process.exit(2);
}
if (!existsSync(args[0])) {
  process.stderr.write(`node24: no such file ${JSON.stringify(args[0])} (see node scripts/node24.mjs --help)\n`);
  process.exit(2);
}
const exe = node24();
if (exe === process.execPath) {
  // Already Node 24: run in this process, no second one to manage.
  process.argv = [process.argv[0], resolve(args[0]), ...args.slice(1)];
  await import(new URL(`file://${process.argv[1]}`).href);
} else {
  const child = spawn(exe, args, { stdio: 'inherit', cwd: process.cwd() });
  // Signals sent to this launcher (a supervisor's SIGTERM, npm passing one on) reach the
  // program, which then shuts down gracefully; the launcher exits as the program did. The npm
  // scripts `exec` this launcher, so npm's signal lands here and not on an intermediate
  // `sh -c` (dash does not forward signals: the program would be orphaned, holding its port).
  const forward = (sig) => child.kill(sig);
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of signals) process.on(sig, forward);
  child.on('exit', (code, signal) => {
    if (signal) {
      // Die of the same signal, for the supervisor's sake: without our handler, or it would
      // only be forwarded to the (gone) child again and the launcher would never exit.
      for (const sig of signals) process.off(sig, forward);
      process.kill(process.pid, signal);
    } else {
      process.exit(code ?? 1);
    }
  });
}
