// A stop must end the process even when whoever read its log is gone (a crashed log shipper, a
// killed parent, `| head`): stdout and stderr then fail with EPIPE. pino's exit hook flushes the
// lines still buffered with sonic-boom's flushSync, which before sonic-boom 5 retried a failed
// write forever, EPIPE included: the process never exited, and its own hard-stop timer could not
// fire (package.json pins sonic-boom ^5.0.2 through `overrides`; docs/decisions.md, "A stop
// ends the process even when its log reader is gone").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../../test/support/cluster.ts';

const MAIN = join(import.meta.dirname, '../src/main.ts');

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} after the log's reader went away (stdout and stderr broken pipes): the process still stops, exit 0`, async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN], {
      // Embedded (none of the services' variables a test run may carry), logging at info.
      env: { PATH: process.env.PATH, HOME: process.env.HOME ?? tmpdir(), DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-exit-')), HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '1000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (code, sig) => resolve([code, sig])));
    let up = false;
    for (let i = 0; i < 600 && !up && child.exitCode === null; i++) {
      try { up = (await fetch(`http://127.0.0.1:${port}/health`)).ok; } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    assert.ok(up, 'the gateway started');
    // The reader goes: every later write of the child's log fails with EPIPE.
    child.stdout!.destroy();
    child.stderr!.destroy();
    child.kill(signal);
    const bound = new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 30_000).unref());
    const outcome = await Promise.race([exited, bound]);
    if (outcome === 'still running') child.kill('SIGKILL');
    assert.deepEqual(outcome, [0, null]);
  });
}
