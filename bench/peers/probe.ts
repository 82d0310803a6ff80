// Loaded into a process under test with `node --import <this file>` (NODE_OPTIONS), so the
// gateway's own code stays free of bench hooks. It serves a tiny HTTP API on 127.0.0.1:
// BENCH_PROBE_PORT, only for the bench (never in production):
//   POST /reset?watch=on start watching: the event-loop-delay histogram and the GC tally, from zero
//   POST /reset          stop watching (nothing of the probe runs in the process until asked again)
//   GET  /report         JSON ProbeReport (below) of the window since `/reset?watch=on`; 409 when
//                        nothing is being watched
//   GET  /memory         JSON MemoryReport after a full GC (so the figures are live objects)
//   POST /live/start, /live/stop  live heap by allocation site (sampled every 4 KB) between the two
//   POST /profile/start  start the V8 CPU sampling profiler (node:inspector, 1 ms interval)
//   POST /profile/stop   stop it, answer the top self-time functions (ProfileSummary)
//                        /profile/start also starts V8's sampling heap profiler (every 32 KB
//                        allocated, collected objects kept), so the summary names the top allocators
// Loaded, the probe costs the process nothing but an idle, unref'd listening socket: everything
// else starts when the bench asks, and watching (the delay monitor, a libuv timer that wakes the
// loop 1,000 times a second, and the GC observer) only for phases the bench does not compare with
// a peer. Watching all the time, as it once did (with `--expose-gc` set at load), taxed the
// embedded Tollgate at concurrency 1 (2026-12-01, interleaved, 8 rounds × 5 s, medians): main-
// thread CPU 0.845 ms per request against 0.658 idle as now and 0.684 with no probe; p50 3.109
// against 2.979 and 2.967 ms; while the peers it is compared with run bare.
import { createServer } from 'node:http';
import { Session } from 'node:inspector/promises';
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Event-loop delay (ms) and GC pauses since the last reset. */
export interface ProbeReport {
  /** perf_hooks.monitorEventLoopDelay, 1 ms resolution: how late timers ran, in ms */
  eld: { p50: number; p99: number; max: number; mean: number; count: number };
  /** GC pauses (PerformanceObserver 'gc' entries): count, total ms, longest ms, by kind */
  gc: { count: number; totalMs: number; maxMs: number; byKind: Record<string, { count: number; totalMs: number }> };
  /** wall ms since the reset */
  windowMs: number;
}

/** process.memoryUsage() after a full GC, bytes. */
export interface MemoryReport { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number }

/** Top functions by self time of one CPU profile. */
export interface ProfileSummary {
  totalMs: number;
  /** self ms by function ("name url:line"), largest first, at most 25 */
  top: Array<{ fn: string; selfMs: number; pct: number }>;
  /** self ms by area (program, gc, idle, node internals, dependencies by package, our libs by workspace) */
  areas: Array<{ area: string; selfMs: number; pct: number }>;
  /** bytes allocated (sampled) by function, largest first, at most 15 */
  allocations?: Array<{ fn: string; mb: number; pct: number }>;
}

const port = Number(process.env.BENCH_PROBE_PORT);
if (Number.isInteger(port) && port > 0) start(port);

function start(probePort: number): void {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  let watching = false;
  let since = performance.now();
  // Node's own codes for a GC entry's kind (perf_hooks.constants)
  const gcKinds: Record<number, string> = {
    [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [perfConstants.NODE_PERFORMANCE_GC_MINOR_MARK_SWEEP]: 'minor',
    [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  let gc = { count: 0, totalMs: 0, maxMs: 0, byKind: {} as Record<string, { count: number; totalMs: number }> };
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.count++;
      gc.totalMs += e.duration;
      if (e.duration > gc.maxMs) gc.maxMs = e.duration;
      const kind = gcKinds[((e as unknown as { detail?: { kind?: number } }).detail)?.kind ?? 0] ?? 'other';
      const k = (gc.byKind[kind] ??= { count: 0, totalMs: 0 });
      k.count++;
      k.totalMs += e.duration;
    }
  });
  const watch = (on: boolean) => {
    if (on && !watching) {
      eld.enable();
      gcObserver.observe({ entryTypes: ['gc'] });
    } else if (!on && watching) {
      eld.disable();
      gcObserver.disconnect();
    }
    watching = on;
    eld.reset();
    gc = { count: 0, totalMs: 0, maxMs: 0, byKind: {} };
    since = performance.now();
  };

  // A full GC for the memory figures. `--expose-gc` is on only while the function is taken from
  // a fresh context, then off again: the flag is never left set in the process under test.
  let gcFn: (() => void) | undefined;
  const fullGc = () => {
    if (!gcFn) {
      setFlagsFromString('--expose-gc');
      try {
        gcFn = runInNewContext('gc') as () => void;
      } finally {
        setFlagsFromString('--no-expose-gc');
      }
    }
    gcFn();
  };
  let session: Session | undefined;
  let liveSession: Session | undefined;

  const ms = (ns: number) => Math.round(ns / 1e4) / 100;
  const server = createServer(async (req, res) => {
    try {
      let body: unknown;
      if (req.url === '/reset' || req.url === '/reset?watch=on') {
        watch(req.url === '/reset?watch=on');
        body = { ok: true };
      } else if (req.url === '/report') {
        if (!watching) {
          res.writeHead(409, { 'content-type': 'text/plain' }).end('not watching: POST /reset?watch=on first');
          return;
        }
        body = {
          eld: { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max), mean: ms(eld.mean), count: eld.count },
          gc, windowMs: Math.round(performance.now() - since),
        } satisfies ProbeReport;
      } else if (req.url === '/memory') {
        fullGc();
        fullGc();
        const m = process.memoryUsage();
        body = { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers } satisfies MemoryReport;
      } else if (req.url === '/live/start') {
        // Live objects by allocation site: what a held stream keeps (collected objects dropped).
        liveSession = new Session();
        liveSession.connect();
        await liveSession.post('HeapProfiler.enable');
        await liveSession.post('HeapProfiler.startSampling', { samplingInterval: 4096 });
        body = { ok: true };
      } else if (req.url === '/live/stop' && liveSession) {
        fullGc();
        const heap = await liveSession.post('HeapProfiler.stopSampling');
        liveSession.disconnect();
        liveSession = undefined;
        body = summarizeHeap(heap.profile.head as unknown as HeapNode);
      } else if (req.url === '/profile/start') {
        session = new Session();
        session.connect();
        await session.post('Profiler.enable');
        await session.post('Profiler.setSamplingInterval', { interval: 1000 });
        await session.post('Profiler.start');
        await session.post('HeapProfiler.enable');
        await session.post('HeapProfiler.startSampling', {
          samplingInterval: 32_768, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true,
        } as never);
        body = { ok: true };
      } else if (req.url === '/profile/stop' && session) {
        const { profile } = await session.post('Profiler.stop');
        const heap = await session.post('HeapProfiler.stopSampling');
        session.disconnect();
        session = undefined;
        if (process.env.BENCH_PROFILE_DIR) {
          const { writeFileSync } = await import('node:fs');
          const at = Date.now();
          writeFileSync(`${process.env.BENCH_PROFILE_DIR}/tollgate-${at}.cpuprofile`, JSON.stringify(profile));
          // the sampling heap profile too (Chrome DevTools' Memory tab opens it): allocation stacks
          writeFileSync(`${process.env.BENCH_PROFILE_DIR}/tollgate-${at}.heapprofile`, JSON.stringify(heap.profile));
        }
        body = { ...summarize(profile as unknown as CpuProfile), allocations: summarizeHeap(heap.profile.head as unknown as HeapNode) };
      } else {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
    }
  });
  server.listen(probePort, '127.0.0.1');
  // Never keep the process alive: it must exit on SIGTERM exactly as it would without the probe.
  server.unref();
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time per function and per area from a V8 CPU profile (sample count × interval). */
export function summarize(p: CpuProfile): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0));
  }
  const fns = new Map<string, number>();
  const areas = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    total += us;
    const file = f.url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules|libs|services|bench)\//, '$1/');
    const name = `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : ''}`.trim();
    fns.set(name, (fns.get(name) ?? 0) + us);
    const area = areaOf(f.functionName, f.url);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const pct = (us: number) => Math.round((us / total) * 1000) / 10;
  const sorted = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
  return {
    totalMs: Math.round(total / 1000),
    top: sorted(fns, 25).map(([fn, us]) => ({ fn, selfMs: Math.round(us / 100) / 10, pct: pct(us) })),
    areas: sorted(areas, 20).map(([area, us]) => ({ area, selfMs: Math.round(us / 100) / 10, pct: pct(us) })),
  };
}

interface HeapNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: HeapNode[] }

/** Sampled bytes allocated per function ("name url:line") of a sampling heap profile. */
function summarizeHeap(head: HeapNode): Array<{ fn: string; mb: number; pct: number }> {
  const by = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode) => {
    if (n.selfSize > 0) {
      const f = n.callFrame;
      const file = f.url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules|libs|services|bench)\//, '$1/');
      const name = `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : ''}`.trim();
      by.set(name, (by.get(name) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c);
  };
  walk(head);
  return [...by].sort((a, b) => b[1] - a[1]).slice(0, 15)
    .map(([fn, bytes]) => ({ fn, mb: Math.round(bytes / 1e5) / 10, pct: Math.round((bytes / total) * 1000) / 10 }));
}

function areaOf(fn: string, url: string): string {
  if (fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)') return fn;
  if (!url) return '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const dep = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dep) return dep[1]!.startsWith('@tollgate/') ? `libs/${dep[1]!.slice(10)}` : dep[1]!;
  const ws = /\/(libs|services)\/([^/]+)\//.exec(url);
  return ws ? `${ws[1]}/${ws[2]}` : 'other';
}
