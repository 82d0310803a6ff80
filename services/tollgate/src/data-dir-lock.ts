// One process per DATA_DIR in distributed mode. Every process keeps its write-ahead spool of
// events in DATA_DIR/spool and, at start, sends and deletes whatever segments it finds there
// as "an earlier run's". Two live processes on one directory (the same working directory and
// no DATA_DIR, as a README example once had it) therefore stole each other's segments: a
// process deleted a file the other was still appending to, and the events it appended after
// that (answered requests) never reached the log, so they were never billed.
//
// The lock is proper-lockfile's: a directory created atomically (mkdir) whose mtime the holder
// refreshes; one not refreshed for LOCK_STALE_MS is a dead holder's and is taken over. It works
// across processes, containers sharing a volume and network filesystems, with no native module.
// (The embedded mode needs none: its chDB warehouse already refuses a second process.)

import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import lockfile from 'proper-lockfile';

/** ms after its holder's last refresh that a lock counts as a dead process's (proper-lockfile `stale`). */
export const LOCK_STALE_MS = 10_000;
/** ms between the holder's refreshes: a quarter of LOCK_STALE_MS, so an event loop stalled for up to ~7 s keeps it. */
const LOCK_UPDATE_MS = LOCK_STALE_MS / 4;
/** The lock's directory inside DATA_DIR. */
export const LOCK_NAME = 'tollgate.lock';

/** Another live process holds DATA_DIR (its lock was refreshed within LOCK_STALE_MS all the while this process waited). */
export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
}

/**
 * ms the event loop may go without a heartbeat (every HEARTBEAT_MS) before `check` looks at the
 * lock on disk again: a process stopped (SIGSTOP, a frozen VM) or stalled that long may have had
 * its lock taken over as stale meanwhile, and after it resumes it may run I/O callbacks (a
 * request's last bytes, its publish) before any timer, so the check is made where the spool is
 * written, not only by a timer.
 */
const STALL_MS = 2000;
const HEARTBEAT_MS = 500;
/**
 * ms after taking the lock before this process trusts it: proper-lockfile removes a stale lock
 * and creates its own, and two processes doing that at once can each remove the other's fresh
 * one (a tester saw two holders in 5 of 40 races). Each taker then writes its token into the
 * owner file (OWNER_NAME); the one whose token is still there after this long holds it, the
 * others try again. (Should the survivor's token sit on the other's directory, its refresh
 * finds the directory's time not its own within LOCK_UPDATE_MS and it stops: never two holders.)
 */
const VERIFY_MS = 300;

/**
 * A held DATA_DIR. `check()` (synchronous, cheap: one clock read unless the loop stalled) says
 * whether this process still holds it: undefined, or the Error to refuse a spool write with
 * (the lock was lost; `onLost` has been called). `release` gives it up (idempotent).
 */
export interface DataDirLock {
  check(): Error | undefined;
  release(): Promise<void>;
}

/** The owner file beside the lock: the token of the process that last took it. */
export const OWNER_NAME = `${LOCK_NAME}.owner`;

/** The token in the owner file, or undefined when there is none. */
function ownerOf(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Takes DATA_DIR for this process (creating it if missing). A lock whose holder stopped
 * refreshing it (a process killed less than LOCK_STALE_MS ago, the usual case of an
 * orchestrator's restart) is waited for, up to `waitMs` (default LOCK_STALE_MS + 2 s), with one
 * `onWait` call first; one still held after that is a live process's: DataDirInUseError.
 * `onLost` runs if the lock is lost later (its refresh failed for longer than LOCK_STALE_MS, or
 * another process took it over): the caller should stop, since two processes would then share
 * the spool.
 */
export async function lockDataDir(
  dataDir: string,
  opts: { waitMs?: number; onWait?: () => void; onLost: (err: Error) => void },
): Promise<DataDirLock> {
  const dir = resolve(dataDir);
  const lockPath = join(dir, LOCK_NAME);
  // The holder's mark: proper-lockfile's directory says only that someone holds the lock, and a
  // removed and re-made directory can even get the same inode back.
  const ownerPath = join(dir, OWNER_NAME);
  const token = `${process.pid} ${randomUUID()}`;
  const unusable = (err: unknown) => new DataDirInUseError(
    `DATA_DIR ${dir} cannot be used: ${(err as Error).message} (it must be a writable directory of this process's own)`);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw unusable(err);
  }
  const deadline = Date.now() + (opts.waitMs ?? LOCK_STALE_MS + 2000);
  let waited = false;
  for (;;) {
    /** set once this attempt's lock is given up or lost: its late callbacks are ignored */
    let done = false;
    let lost: Error | undefined;
    const lose = (err: Error) => {
      if (done || lost) return;
      lost = err;
      opts.onLost(err);
    };
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(dir, {
        lockfilePath: lockPath, stale: LOCK_STALE_MS, update: LOCK_UPDATE_MS, realpath: false, onCompromised: (err) => lose(err),
      });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code !== 'ELOCKED' && code !== 'ENOENT') throw unusable(err);
      if (Date.now() >= deadline) throw inUse(dir);
      if (!waited) opts.onWait?.();
      waited = true;
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    try {
      writeFileSync(ownerPath, token);
    } catch (err) {
      done = true;
      await release().catch(() => {});
      throw unusable(err);
    }
    await new Promise((r) => setTimeout(r, VERIFY_MS));
    if (ownerOf(ownerPath) !== token) {
      // Another process re-created it meanwhile (a race over a stale lock): it is theirs. Not
      // released (that would remove their directory); this attempt's refreshes stop on their own.
      done = true;
      if (Date.now() >= deadline) throw inUse(dir);
      continue;
    }
    let lastBeat = Date.now();
    const verify = (): Error | undefined => {
      if (lost) return lost;
      const now = Date.now();
      if (now - lastBeat > STALL_MS) {
        if (ownerOf(ownerPath) !== token) lose(new Error(`the DATA_DIR lock ${lockPath} was taken over while this process was stopped or stalled`));
        lastBeat = now;
      }
      return lost;
    };
    const heartbeat = setInterval(() => { verify(); lastBeat = Date.now(); }, HEARTBEAT_MS);
    heartbeat.unref();
    return {
      check: verify,
      async release() {
        if (done) return;
        done = true;
        clearInterval(heartbeat);
        if (lost) return; // nothing left to give up
        if (ownerOf(ownerPath) === token) rmSync(ownerPath, { force: true });
        await release().catch(() => {});
      },
    };
  }
}

function inUse(dir: string): DataDirInUseError {
  return new DataDirInUseError(`DATA_DIR ${dir} is in use by another process (its spool of events is one process's); stop it or set DATA_DIR to another`);
}
