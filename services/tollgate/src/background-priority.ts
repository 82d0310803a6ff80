// Background threads of this process at a lower CPU priority than the thread serving requests.
//
// The embedded process runs the warehouse engine (chDB) in-process: every flush runs ~20–40 ms
// of CPU on chDB's query threads and the libuv pool, and its merges run on more threads. On a
// machine with few cores those threads take the cores the request thread (and the upstream and
// clients on the same machine) need, and a request that arrives then waits for a core: the tail
// at concurrency 1 (bench/README.md, "The tail at concurrency 1"). Linux schedules threads, and
// `setpriority(PRIO_PROCESS, tid)` sets one thread's nice value; so every thread but the main
// thread and V8's own (GC helpers, whose work the main thread waits for) gets `nice`, and
// yields a core to the request thread whenever both want one. The work still all runs: a nicer
// thread gets the CPU nobody else wants, and its share under contention (nice 10 against 0:
// weight 110 against 1024, ~10 %). Measured: bench/README.md, "Background threads at a lower priority".
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** What `lowerBackgroundThreads` did so far. */
export interface BackgroundPriority {
  /** threads reniced so far, by name (comm), e.g. { ThreadPool: 17, 'libuv-worker': 4 } */
  readonly lowered: Readonly<Record<string, number>>;
  /** stops the periodic scan (already reniced threads keep their priority) */
  stop(): void;
}

/** Threads kept at the process's own priority: V8's platform workers (GC, compilation), which the main thread waits on. */
const KEEP = /^V8 ?Worker|^V8 DefaultWorke|^v8:/;

/**
 * Gives every thread of this process except the main thread and V8's workers the nice value
 * `nice` (0–19; higher is lower priority) unless it already has that or a higher one, now and
 * every `intervalMs` (threads such as chDB's pools are created on demand; each thread is looked
 * at once). Linux only: elsewhere (no /proc/self/task) it does nothing.
 * A thread that cannot be reniced (it exited, or the process may not lower its priority) is
 * skipped silently: priority is an optimisation, never a condition for serving.
 * Throws RangeError for `nice` outside 0–19 or `intervalMs` < 100.
 */
export function lowerBackgroundThreads(nice: number, intervalMs = 2000): BackgroundPriority {
  if (!Number.isInteger(nice) || nice < 0 || nice > 19) throw new RangeError(`nice must be an integer from 0 to 19, got ${nice}`);
  if (!(intervalMs >= 100)) throw new RangeError(`intervalMs must be >= 100, got ${intervalMs}`);
  const lowered: Record<string, number> = {};
  const seen = new Set<number>();
  const scan = () => {
    let tids: string[];
    try {
      tids = readdirSync('/proc/self/task');
    } catch {
      return;
    }
    for (const t of tids) {
      const tid = Number(t);
      if (tid === process.pid || seen.has(tid)) continue;
      seen.add(tid);
      let name: string;
      try {
        name = readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
      } catch {
        continue;
      }
      if (KEEP.test(name)) continue;
      try {
        // Lower only: a thread already at this nice value or a higher one (the whole process
        // started under `nice`) keeps its own.
        if (getPriority(tid) >= nice) continue;
        setPriority(tid, nice);
        const key = name.replace(/[0-9]+$/, '');
        lowered[key] = (lowered[key] ?? 0) + 1;
      } catch {
        // gone, or not permitted: leave it
      }
    }
  };
  scan();
  const timer = setInterval(scan, intervalMs);
  timer.unref();
  return { lowered, stop: () => clearInterval(timer) };
}
