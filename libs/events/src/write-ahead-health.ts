// Whether a log's write ahead (KafkaLog's DATA_DIR/spool, MemoryLog's journal) works now. An
// append that fails for a reason of the log's (a full or read-only disk, a DATA_DIR lock taken
// over) used to be seen only by the request whose answer it could not record: the gateway
// withheld that answer, but went on forwarding (and paying the upstream for) every next request,
// and a stream's text had left before its end was withheld (a tester's HIGH: a full disk served
// every stream whole and unbilled, with /ready still 200). A failure is now remembered until a
// probe write of the same directory succeeds, and the gateway refuses before forwarding meanwhile.
//
// The disk's free space is watched too (a reserve, WRITE_AHEAD_RESERVE_MB): a request whose own
// append was the first to find the disk full had already relayed its whole stream (the
// `message_stop` alone was withheld), served unbilled. Below the reserve the gateway refuses new
// paid requests while the requests in flight still have room to record theirs.

import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** ms between probe writes while the write ahead fails. */
export const PROBE_INTERVAL_MS = 1000;
/** Bytes of the probe write: more than any usage event's line (~1.3 KB), so room for it means room for them. */
const PROBE_BYTES = Buffer.alloc(64 * 1024, 0x20);
/** The probe's file name in the directory written ahead to (never read as a segment: it is not `*.jsonl`). */
export const PROBE_NAME = '.write-probe';

/**
 * The disk under the write ahead has less free space than the reserve (`problem()` of a
 * WriteAheadHealth watching space). Appends still work: requests in flight record their usage
 * in the reserve, while new paid requests and operator writes are refused.
 */
export class DiskReserveLowError extends Error {
  override name = 'DiskReserveLowError';
  /** the directory whose disk is watched */
  readonly dir: string;
  /** bytes statfs says an unprivileged writer may still use on that disk (`bavail` × `bsize`) */
  readonly freeBytes: number;
  /** the reserve it fell below, bytes */
  readonly reserveBytes: number;

  constructor(dir: string, freeBytes: number, reserveBytes: number) {
    super(`only ${mib(freeBytes)} MiB free on the disk of ${dir}, below the write-ahead reserve of ${mib(reserveBytes)} MiB (WRITE_AHEAD_RESERVE_MB)`);
    this.dir = dir;
    this.freeBytes = freeBytes;
    this.reserveBytes = reserveBytes;
  }
}

const mib = (bytes: number) => (bytes / 1_048_576).toFixed(1).replace(/\.0$/, '');

/** What a WriteAheadHealth watches of the disk: `dir`'s file system, every PROBE_INTERVAL_MS. */
export interface SpaceWatch {
  /** the directory written ahead to (statfs of it; while it cannot be read, the last verdict stands) */
  dir: string;
  /** bytes that must stay free (statfs `bavail` × `bsize`); 0 watches nothing */
  reserveBytes: number;
  /** told when the verdict changes: the error while below the reserve, undefined when above again */
  onChange?: (low: DiskReserveLowError | undefined) => void;
}

/**
 * The write ahead's health: `failed(err)` after an append failed for a reason of the log's;
 * `failing()` is that error until `probe` (every PROBE_INTERVAL_MS, throwing while the fault
 * lasts) succeeds. With a `SpaceWatch`, `problem()` is also a DiskReserveLowError while the
 * disk's free space is below the reserve (checked at construction and every PROBE_INTERVAL_MS).
 * `stop()` at close.
 */
export class WriteAheadHealth {
  #problem: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #probe: () => void;
  #low: DiskReserveLowError | undefined;
  #spaceTimer: NodeJS.Timeout | undefined;

  /** `probe`: one write like an append's (throws while the fault lasts); `space`: the reserve to watch. */
  constructor(probe: () => void, space?: SpaceWatch) {
    this.#probe = probe;
    if (space && space.reserveBytes > 0) {
      this.#checkSpace(space);
      this.#spaceTimer = setInterval(() => this.#checkSpace(space), PROBE_INTERVAL_MS);
      this.#spaceTimer.unref();
    }
  }

  #checkSpace(space: SpaceWatch): void {
    let free: number;
    try {
      const s = statfsSync(space.dir);
      free = s.bavail * s.bsize;
    } catch {
      return; // a directory removed from under the process: the probe makes it again
    }
    const low = free < space.reserveBytes ? new DiskReserveLowError(space.dir, free, space.reserveBytes) : undefined;
    if ((low === undefined) !== (this.#low === undefined)) space.onChange?.(low);
    this.#low = low;
  }

  /** An append failed for a reason of the log's: failing until a probe succeeds. */
  failed(err: Error): void {
    this.#problem = err;
    this.#timer ??= setInterval(() => {
      try {
        this.#probe();
      } catch (probeErr) {
        this.#problem = probeErr as Error;
        return;
      }
      this.succeeded();
    }, PROBE_INTERVAL_MS);
    this.#timer.unref();
  }

  /** An append succeeded: the write ahead works. */
  succeeded(): void {
    if (this.#problem === undefined) return;
    this.#problem = undefined;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Why appends fail now (the last one failed and no probe has succeeded since), or undefined. */
  failing(): Error | undefined {
    return this.#problem;
  }

  /** Why nothing new should be recorded now: `failing()`, else the disk below the reserve, else undefined. */
  problem(): Error | undefined {
    return this.#problem ?? this.#low;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    clearInterval(this.#spaceTimer);
    this.#spaceTimer = undefined;
  }
}

/** A probe of `dir`: writes PROBE_BYTES to PROBE_NAME there and removes it (throws what the write throws). */
export function probeDirectory(dir: string): () => void {
  return () => {
    const path = join(dir, PROBE_NAME);
    try {
      // A directory removed from under the process is made again (the spool and the journal
      // create their segments in it): it heals once it can be.
      mkdirSync(dir, { recursive: true });
      writeFileSync(path, PROBE_BYTES);
    } finally {
      try { rmSync(path, { force: true }); } catch { /* what the write threw is the answer */ }
    }
  };
}

/**
 * The log lines of a SpaceWatch's `onChange`: a warning when `dir`'s disk falls below the
 * reserve (what is refused meanwhile), and one when it is above it again.
 */
export function reserveChanged(log: { warn(obj: object, msg?: string): void }, low: DiskReserveLowError | undefined, dir: string): void {
  if (low) log.warn({ dir, freeBytes: low.freeBytes, reserveBytes: low.reserveBytes }, `${low.message}: paid requests and operator writes are refused until there is room again`);
  else log.warn({ dir }, 'free space on the disk written ahead to is above the reserve again: serving');
}
