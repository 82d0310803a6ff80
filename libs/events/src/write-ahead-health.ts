// Whether a log's write ahead (KafkaLog's DATA_DIR/spool, MemoryLog's journal) works now. An
// append that fails for a reason of the log's (a full or read-only disk, a DATA_DIR lock taken
// over) used to be seen only by the request whose answer it could not record: the gateway
// withheld that answer, but went on forwarding (and paying the upstream for) every next request,
// and a stream's text had left before its end was withheld (a tester's HIGH: a full disk served
// every stream whole and unbilled, with /ready still 200). A failure is now remembered until a
// probe write of the same directory succeeds, and the gateway refuses before forwarding meanwhile.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** ms between probe writes while the write ahead fails. */
export const PROBE_INTERVAL_MS = 1000;
/** Bytes of the probe write: more than any usage event's line (~1.3 KB), so room for it means room for them. */
const PROBE_BYTES = Buffer.alloc(64 * 1024, 0x20);
/** The probe's file name in the directory written ahead to (never read as a segment: it is not `*.jsonl`). */
export const PROBE_NAME = '.write-probe';

/**
 * The write ahead's health: `failed(err)` after an append failed for a reason of the log's;
 * `problem()` is that error until `probe` (every PROBE_INTERVAL_MS, throwing while the fault
 * lasts) succeeds. `stop()` at close.
 */
export class WriteAheadHealth {
  #problem: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #probe: () => void;

  /** `probe`: one write like an append's (throws while the fault lasts). */
  constructor(probe: () => void) {
    this.#probe = probe;
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
    this.stop();
  }

  /** Why the write ahead fails now, or undefined. */
  problem(): Error | undefined {
    return this.#problem;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
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
