// One process per DATA_DIR (distributed mode): the lock its spool of events relies on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirInUseError, LOCK_NAME, LOCK_STALE_MS, lockDataDir, OWNER_NAME } from '../src/data-dir-lock.ts';

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
  assert.equal(existsSync(join(dir, OWNER_NAME)), false, 'its owner file removed with it');
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

/** Blocks the event loop for `ms`: a stopped or stalled process, as far as its timers can tell. */
function stall(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* stalled */ }
}

test('a holder stalled past 2 s re-checks the lock on disk before the next spool write: taken over meanwhile (a new lock directory), check() refuses and onLost runs once; still its own, check() allows', async () => {
  // Kind: a holder that resumes after its lock went stale and was taken (SIGSTOP, a frozen VM):
  // a tester's paused gateway answered a queued request after resuming and appended its event
  // to a segment the new holder had read and then deleted (never billed).
  const dir = mkdtempSync(join(tmpdir(), 'tg-lock-'));
  const lost: Error[] = [];
  const lock = await lockDataDir(dir, { onLost: (err) => lost.push(err) });
  try {
    stall(2100);
    assert.equal(lock.check(), undefined, 'a stall alone, the lock unchanged: still held');
    // Another process's takeover: the stale lock removed, a new one made, its token written.
    rmSync(join(dir, LOCK_NAME), { recursive: true });
    mkdirSync(join(dir, LOCK_NAME));
    writeFileSync(join(dir, OWNER_NAME), 'another process');
    stall(2100);
    const refused = lock.check();
    assert.ok(refused instanceof Error);
    assert.equal(refused.message, `the DATA_DIR lock ${join(dir, LOCK_NAME)} was taken over while this process was stopped or stalled`);
    assert.equal(lock.check(), refused, 'it stays lost');
    assert.deepEqual(lost, [refused], 'onLost once');
  } finally {
    await lock.release();
  }
});

test('two takers of one stale lock: the one whose lock directory another re-created within the verification window does not count itself a holder', async () => {
  // Kind: racing takeovers of a stale lock (proper-lockfile removes it and makes its own; two at
  // once can each remove the other's): a tester saw two holders in 5 of 40 races.
  const dir = mkdtempSync(join(tmpdir(), 'tg-lock-'));
  mkdirSync(join(dir, LOCK_NAME));
  const old = (Date.now() - 2 * LOCK_STALE_MS) / 1000;
  utimesSync(join(dir, LOCK_NAME), old, old);
  const taking = lockDataDir(dir, { waitMs: 1000, onLost: never });
  // The other taker, 100 ms in: it removes this one's fresh lock, makes its own, writes its token.
  await new Promise((r) => setTimeout(r, 100));
  rmSync(join(dir, LOCK_NAME), { recursive: true });
  mkdirSync(join(dir, LOCK_NAME));
  writeFileSync(join(dir, OWNER_NAME), 'another process');
  await assert.rejects(taking, DataDirInUseError);
});
