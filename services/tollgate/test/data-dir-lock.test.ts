// One process per DATA_DIR (distributed mode): the lock its spool of events relies on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirInUseError, LOCK_NAME, LOCK_STALE_MS, lockDataDir } from '../src/data-dir-lock.ts';

const never = (err: Error) => { throw err; };

test('DATA_DIR held by a live holder: a second taker waits, then is refused with DataDirInUseError naming the directory; free again once released', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tg-lock-'));
  const first = await lockDataDir(dir, { onLost: never });
  let waits = 0;
  const started = Date.now();
  await assert.rejects(lockDataDir(dir, { waitMs: 1200, onWait: () => waits++, onLost: never }), (err: unknown) => {
    assert.ok(err instanceof DataDirInUseError);
    assert.equal(err.message, `DATA_DIR ${dir} is in use by another process (its spool of events is one process's); stop it or set DATA_DIR to another`);
    return true;
  });
  assert.equal(waits, 1, 'one wait notice, not one per try');
  assert.ok(Date.now() - started >= 1200, 'it waited out waitMs');
  await first.release();
  await first.release(); // idempotent
  const second = await lockDataDir(dir, { waitMs: 0, onLost: never });
  await second.release();
});

test('DATA_DIR whose holder died (its lock not refreshed for longer than LOCK_STALE_MS) is taken over at once; a missing DATA_DIR is created', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'tg-lock-')), 'not-yet');
  // A killed process's lock: the directory proper-lockfile made, last refreshed 20 s ago.
  mkdirSync(join(dir, LOCK_NAME), { recursive: true });
  const old = (Date.now() - 2 * LOCK_STALE_MS) / 1000;
  utimesSync(join(dir, LOCK_NAME), old, old);
  let waits = 0;
  const lock = await lockDataDir(dir, { waitMs: 0, onWait: () => waits++, onLost: never });
  assert.equal(waits, 0);
  await lock.release();
});
