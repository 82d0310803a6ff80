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
// paid requests while the requests in flight still have room to record theirs; at the last MiB
// (or inodes) it counts as failing, and streams being relayed are cut.

import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** ms between probe writes while the write ahead fails. */
export const PROBE_INTERVAL_MS = 1000;
/** Bytes of the probe write: more than any usage event's line (~1.3 KB), so room for it means room for them. */
const PROBE_BYTES = Buffer.alloc(64 * 1024, 0x20);
/** The probe's file name in the directory written ahead to (never read as a segment: it is not `*.jsonl`). */
export const PROBE_NAME = '.write-probe';

const MiB = 1_048_576;
const mib = (bytes: number) => (bytes / MiB).toFixed(1).replace(/\.0$/, '');

/**
 * Below this much free space the disk counts as full (DiskExhaustedError): appends are about to
 * fail, so the write ahead counts as failing before one does, and a stream being relayed is cut
 * (a tester's HIGH: with the disk at 0 bytes free for 9 s, three streams in flight still sent
 * their whole text, their appends failing only at their ends). Sixteen probe writes: 1 MiB.
 */
export const EXHAUSTED_BYTES = 16 * PROBE_BYTES.length;
/** Free inodes below which the disk counts as full (a new segment needs one): DiskExhaustedError. */
export const EXHAUSTED_INODES = 8;
/** Free inodes below which the disk counts as below its reserve, on a file system that counts them. */
export const RESERVE_INODES = 256;

/** Inodes more than a threshold that must be free again before its verdict clears. */
const INODE_CLEAR_MARGIN = 16;

/** How much more than a threshold must be free again before its verdict clears (no flapping): 1/16 of it, 1 to 8 MiB. */
function clearMargin(bytes: number): number {
  return Math.min(8 * MiB, Math.max(MiB, Math.floor(bytes / 16)));
}

/**
 * The disk under the write ahead has less free space (or fewer free inodes) than the reserve
 * (`problem()` of a WriteAheadHealth watching space). Appends still work: requests in flight
 * record their usage in the reserve, while new paid requests are refused.
 */
export class DiskReserveLowError extends Error {
  override name = 'DiskReserveLowError';
  /** the directory whose disk is watched */
  readonly dir: string;
  /** bytes statfs says an unprivileged writer may still use on that disk (`bavail` × `bsize`) */
  readonly freeBytes: number;
  /** the reserve, bytes */
  readonly reserveBytes: number;
  /** free inodes (statfs `ffree`), or undefined on a file system that does not count them */
  readonly freeInodes: number | undefined;

  constructor(dir: string, freeBytes: number, reserveBytes: number, freeInodes?: number) {
    super(freeInodes !== undefined && freeInodes < RESERVE_INODES && freeBytes >= reserveBytes
      ? `only ${freeInodes} inodes free on the disk of ${dir}, below the write-ahead reserve of ${RESERVE_INODES} inodes`
      : `only ${mib(freeBytes)} MiB free on the disk of ${dir}, below the write-ahead reserve of ${mib(reserveBytes)} MiB (WRITE_AHEAD_RESERVE_MB)`);
    this.dir = dir;
    this.freeBytes = freeBytes;
    this.reserveBytes = reserveBytes;
    this.freeInodes = freeInodes;
  }
}

/**
 * The disk under the write ahead is as good as full: less than EXHAUSTED_BYTES free or fewer
 * than EXHAUSTED_INODES inodes. Counts as a failing write ahead (not a DiskReserveLowError):
 * streams in flight are cut and operator writes refused, as when an append failed.
 */
export class DiskExhaustedError extends Error {
  override name = 'DiskExhaustedError';
  constructor(dir: string, freeBytes: number, freeInodes: number | undefined) {
    super(`the disk of ${dir} is full: ${mib(freeBytes)} MiB${freeInodes === undefined ? '' : ` and ${freeInodes} inodes`} free, less than the write ahead needs to go on (${mib(EXHAUSTED_BYTES)} MiB, ${EXHAUSTED_INODES} inodes)`);
  }
}

/** What a WriteAheadHealth watches of the disk: `dir`'s file system, every PROBE_INTERVAL_MS. */
export interface SpaceWatch {
  /** the directory written ahead to (statfs of it; made again when it is gone) */
  dir: string;
  /** bytes that must stay free (statfs `bavail` × `bsize`); 0 watches nothing */
  reserveBytes: number;
  /** told when the verdict changes: the error while below the reserve or full, undefined when there is room again */
  onChange?: (problem: DiskReserveLowError | DiskExhaustedError | undefined) => void;
}

/**
 * The write ahead's health: `failed(err)` after an append failed for a reason of the log's;
 * that error is `problem()` until `probe` (every PROBE_INTERVAL_MS, throwing while the fault
 * lasts) succeeds. With a `SpaceWatch` (checked at construction and every PROBE_INTERVAL_MS),
 * `problem()` is otherwise a DiskExhaustedError while the disk is as good as full, or a
 * DiskReserveLowError while it is below the reserve; each clears once clearMargin more than its
 * threshold is free again. `stop()` at close.
 */
export class WriteAheadHealth {
  #problem: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #probe: () => void;
  #low: DiskReserveLowError | undefined;
  #exhausted: DiskExhaustedError | undefined;
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
    let s;
    try {
      s = statfsSync(space.dir);
    } catch {
      // Removed from under the process: made again (appends and the probe would make it too,
      // but none comes while paid requests are refused), else the last verdict stands.
      try {
        mkdirSync(space.dir, { recursive: true });
        s = statfsSync(space.dir);
      } catch {
        return;
      }
    }
    const free = s.bavail * s.bsize;
    const inodes = s.files > 0 ? s.ffree : undefined;
    const under = (bytes: number, inodeCount: number, was: boolean) => {
      const margin = was ? clearMargin(bytes) : 0;
      return free < bytes + margin || (inodes !== undefined && inodes < inodeCount + (was ? INODE_CLEAR_MARGIN : 0));
    };
    const before = this.#problemOfSpace();
    this.#exhausted = under(EXHAUSTED_BYTES, EXHAUSTED_INODES, this.#exhausted !== undefined) ? new DiskExhaustedError(space.dir, free, inodes) : undefined;
    this.#low = under(space.reserveBytes, RESERVE_INODES, this.#low !== undefined) ? new DiskReserveLowError(space.dir, free, space.reserveBytes, inodes) : undefined;
    const after = this.#problemOfSpace();
    if (before?.name !== after?.name) space.onChange?.(after);
  }

  /** What the space watch says now: DiskExhaustedError, else DiskReserveLowError, else undefined. */
  #problemOfSpace(): DiskReserveLowError | DiskExhaustedError | undefined {
    return this.#exhausted ?? this.#low;
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

  /**
   * Why nothing new should be recorded now: the last append's failure (until a probe succeeds),
   * else the disk as good as full, else below its reserve (DiskReserveLowError, the only one
   * under which appends still work), else undefined.
   */
  problem(): Error | undefined {
    return this.#problem ?? this.#exhausted ?? this.#low;
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
 * reserve or is as good as full (what is refused meanwhile), and one when it is above it again.
 */
export function reserveChanged(log: { warn(obj: object, msg?: string): void }, problem: DiskReserveLowError | DiskExhaustedError | undefined, dir: string): void {
  if (problem instanceof DiskReserveLowError) {
    log.warn({ dir, freeBytes: problem.freeBytes, reserveBytes: problem.reserveBytes, freeInodes: problem.freeInodes }, `${problem.message}: paid requests are refused until there is room again (operator writes and the requests in flight still record)`);
  } else if (problem) {
    log.warn({ dir }, `${problem.message}: paid requests and operator writes are refused, and streams being relayed are cut, until there is room again`);
  } else {
    log.warn({ dir }, 'free space on the disk written ahead to is above the reserve again: serving');
  }
}
