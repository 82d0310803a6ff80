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

import { mkdirSync } from 'node:fs';
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

/** A held DATA_DIR: `release` gives it up (idempotent). */
export interface DataDirLock {
  release(): Promise<void>;
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
  mkdirSync(dir, { recursive: true });
  const deadline = Date.now() + (opts.waitMs ?? LOCK_STALE_MS + 2000);
  let waited = false;
  for (;;) {
    try {
      const release = await lockfile.lock(dir, {
        lockfilePath: join(dir, LOCK_NAME), stale: LOCK_STALE_MS, update: LOCK_UPDATE_MS, realpath: false,
        onCompromised: opts.onLost,
      });
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          await release().catch(() => {}); // already lost: nothing left to give up
        },
      };
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ELOCKED') throw err;
      if (Date.now() >= deadline) {
        throw new DataDirInUseError(`DATA_DIR ${dir} is in use by another process (its spool of events is one process's); stop it or set DATA_DIR to another`);
      }
      if (!waited) opts.onWait?.();
      waited = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
