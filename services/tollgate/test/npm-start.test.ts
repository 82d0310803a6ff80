// `npm start` under a process manager: SIGTERM to the npm process must stop the whole tree
// (npm → launcher → Node 24 program) and free the port. npm runs scripts through `sh -c`, and
// dash neither execs the last command nor forwards signals, so without `exec` in the script the
// gateway was orphaned and kept serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../../test/support/cluster.ts';

const ROOT = join(import.meta.dirname, '../../..');

/** Every live descendant of `pid` (Linux /proc). */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may contain spaces, so read after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(d), ppid);
    } catch { /* gone */ }
  }
  const out: number[] = [];
  const walk = (p: number) => { for (const [c, pp] of parent) if (pp === p) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    // a zombie still has a /proc entry; its state is Z
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const NPM = spawnSync('npm', ['--version'], { encoding: 'utf8' }).status === 0 ? 'npm' : undefined;
/** Node 20 (the machine's own) makes the launcher spawn Node 24 as a child: the deeper tree. */
const OLD_NODE_DIR = ['/usr/bin', '/usr/local/bin'].find((d) => {
  if (!existsSync(join(d, 'node'))) return false;
  const v = spawnSync(join(d, 'node'), ['--version'], { encoding: 'utf8' }).stdout.trim();
  return v !== '' && !v.startsWith('v24.');
});

const variants: Array<[string, string]> = [['Node 24 first on PATH (launcher runs the program in process)', process.env.PATH ?? '']];
if (OLD_NODE_DIR) variants.push([`an older node first on PATH (launcher spawns Node 24)`, `${OLD_NODE_DIR}:${process.env.PATH ?? ''}`]);

for (const [what, PATH] of variants) {
  test(`npm start, SIGTERM to the npm pid: every process of the tree exits and the port is free — ${what}`,
    { skip: process.platform !== 'linux' || !NPM ? 'needs Linux /proc and npm' : false }, async () => {
      const port = await freePort();
      const dataDir = mkdtempSync(join(tmpdir(), 'tg-npm-start-'));
      const ownTmp = mkdtempSync(join(tmpdir(), 'tg-npm-start-tmp-'));
      const npm = spawn('npm', ['start'], {
        cwd: ROOT,
        env: { PATH, HOME: process.env.HOME ?? tmpdir(), PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', TMPDIR: ownTmp },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      npm.stdout!.on('data', (b: Buffer) => { output += b.toString(); });
      npm.stderr!.on('data', (b: Buffer) => { output += b.toString(); });
      const npmExited = new Promise<void>((r) => npm.once('exit', () => r()));
      let up = false;
      for (let i = 0; i < 600 && !up && npm.exitCode === null; i++) {
        try { up = (await fetch(`http://127.0.0.1:${port}/health`)).ok; } catch { await new Promise((r) => setTimeout(r, 100)); }
      }
      assert.ok(up, `gateway did not start:\n${output}`);
      // The server's modules are in Node's compile cache, in its default directory (under the
      // TMPDIR given), once it has started and before any exit (main.ts: enableCompileCache,
      // flushCompileCache): the next start reads them (hundreds of files for the runtime's graph).
      // (Asserted after the stop below, so a failure does not leave the gateway running.)
      const cacheDir = join(ownTmp, 'node-compile-cache');
      const cached = existsSync(cacheDir) ? readdirSync(cacheDir, { recursive: true }).length : 0;
      const tree = descendants(npm.pid!);
      assert.ok(tree.length >= 1, 'npm has children');
      assert.ok(tree.some((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('services/tollgate/src/main.ts')));

      npm.kill('SIGTERM');
      await npmExited;
      // The program shuts down gracefully (server close, log drain): wait for it, boundedly.
      for (let i = 0; i < 300 && tree.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
      const left = tree.filter(alive);
      // On failure, do not leave them holding the port and this test's pipes.
      for (const p of left) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
      // Every writer gone: read the pipe to its end (boundedly) before looking at the output.
      if (left.length === 0 && !npm.stdout!.readableEnded) {
        await Promise.race([new Promise((r) => npm.stdout!.once('end', r)), new Promise((r) => setTimeout(r, 2000))]);
      }
      npm.stdout!.destroy();
      npm.stderr!.destroy();
      assert.deepEqual(left, [], `processes left running after SIGTERM to npm:\n${output}`);
      assert.ok(await portFree(port), `port ${port} is still taken`);
      assert.ok(cached >= 100, `${cached} entries in the compile cache once the gateway had started`);
      assert.match(output, /"signal":"SIGTERM","msg":"shutting down"/, 'the program shut down gracefully on the forwarded SIGTERM');
      assert.match(output, /"signal":"SIGTERM","msg":"shutting down"}\n(.*\n)*.*"signal":"SIGTERM","ms":\d+,"msg":"stopped"}\n/, 'a line says the stop finished, after the shutting-down one');
    });
}
