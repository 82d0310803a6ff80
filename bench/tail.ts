// The embedded gateway's added latency at concurrency 1, many samples, A/B in one run (issue 11
// outcome 4: added p50 ≤ 0.3 ms, p99 ≤ 0.8 ms over calling the simulator directly). See
// bench/README.md "Peers" for the figures and `node bench/tail.ts --help` for the options.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';
import { median, percentile } from './load.ts';
import type { ProbeReport } from './peers/probe.ts';
import { ADMIN_TOKEN, createCustomer, freePort, ROOT, startSimulator, stopAll, UPSTREAM_API_KEY, waitForIdle } from './stack.ts';
import { childEnv } from '../test/support/services.ts';
import { commandLine, counted, numberValue, runMain, UsageError } from './cli.ts';

const HELP = `Usage: node bench/tail.ts [options]

Added latency of the embedded Tollgate (full metering: hold, ledger, journal, chDB warehouse)
over the simulator at concurrency 1, with many samples: one simulator, one embedded Tollgate per
target, and rounds of one slice per target (direct included; order rotated per round; each
slice waits for the processes to go idle first). Every Tollgate process carries the bench probe
(bench/peers/probe.ts), idle unless --watch has it measure event-loop delay and GC pauses over
each slice's measured part.

Options:
  --rounds <n>        rounds, 1 to 1000 (default 6)
  --slice <s>         measured seconds per slice, after 0.3 s of warmup, 0.1 to 3600 (default 3)
  --base <dir>        another checkout (e.g. the commit before a change, from \`git archive\`,
                      with its own node_modules) run as target \`base\`: before/after in one run
                      (default none)
  --alt-env <K=V,…>   a Tollgate of this tree with this environment on top, as target \`alt\`
                      (NODE_OPTIONS=… for Node flags, e.g. NODE_OPTIONS=--max-semi-space-size=64;
                      NODE_ARGS=… for flags NODE_OPTIONS refuses, e.g. NODE_ARGS=--trace-gc);
                      repeatable: one target each, alt1, alt2, … (default none)
  --head-env <K=V,…>  environment on top for this tree's target \`head\` too (and \`base\`)
                      (default none)
  --no-head           leave out this tree's own target (with --base and --alt-env)
  --watch             watch every Tollgate over the measured part of its slices (not the
                      warmup): event-loop delay (monitorEventLoopDelay, 1 ms resolution) and
                      GC pauses; off by default:
                      watching adds CPU and latency of its own (bench/peers/probe.ts), so
                      figures with it are not comparable to figures without
  --threads           after each slice, CPU ms per request of each thread of the process under test
                      by name (main, V8Worker = V8's GC helpers, ThreadPool/MergeMutate/… = chDB's,
                      libuv-worker), on stderr
  --json              the result as JSON on stdout (progress stays on stderr)
  -h, --help          show this help

Reported per target: requests, pooled p50 / p99 / p99.9 of every slice's samples (time to the
last byte, ms), added p50 / p99 over direct (pooled, and the median of the per-round
differences), CPU ms per request of the Tollgate process and of its main thread alone
(/proc/<pid>/task/<pid>/stat), and with --watch the event-loop delay p99 (median over slices)
and GC pauses per second of slice and the longest.
BENCH_PROFILE_DIR=<dir> passes --cpu-prof --cpu-prof-interval 100 to every Tollgate (written when
it stops, <target>-<pid>.cpuprofile) and writes each target's measured requests beside it
(<target>-<pid>.requests.json: [start, end] µs on CLOCK_MONOTONIC, the profile's clock); then
\`node bench/tail-attribute.ts <dir>\` says what each Tollgate's main thread did during its slowest
1 % of requests and during typical ones.

Environment:
  BENCH_PROFILE_DIR  a directory: CPU profiles and measured requests of every Tollgate, as above
                     (default: none, no profiling)

Example:
  node bench/tail.ts --base /tmp/tail-base --rounds 8 --slice 3
  BENCH_PROFILE_DIR=/tmp/tail-prof node bench/tail.ts --rounds 4 && node bench/tail-attribute.ts /tmp/tail-prof

Exit status: 0 done, 1 the run failed (a process did not start or become ready), 2 bad usage.`;

const MODEL = 'claude-sonnet-4-5-20250929';
const PROBE = join(ROOT, 'bench/peers/probe.ts');
const CLOCK_TICKS_PER_S = 100;

/** The main bench's ~2 KB request (bench/run.ts requestBody), non-streaming, 64 output tokens. */
function body(): string {
  return JSON.stringify({
    model: MODEL, max_tokens: 256, stream: false,
    system: 'You are a senior software engineer helping a colleague review a pull request in a TypeScript monorepo. Be concise and concrete: point at the exact file and line, explain why a change is risky, and suggest the smallest fix. Prefer standard library APIs over new dependencies. When you are unsure, say so and describe what you would check. Never invent APIs that do not exist.',
    metadata: { user_id: 'user_bench_0001' }, temperature: 0.2,
    messages: [
      { role: 'user', content: [{ type: 'text', text: `Here is the change I am about to merge:\n\n${'diff --git a/libs/ledger/src/memory-balance-store.ts b/libs/ledger/src/memory-balance-store.ts\n'.repeat(6)}\nDoes the new error path leak the hold?` }] },
      { role: 'assistant', content: [{ type: 'text', text: 'It does not leak it, but it throws before the hold is shrunk, so the caller must release it. Where is settle called from, and does that caller catch?' }] },
      { role: 'user', content: [{ type: 'text', text: 'It is called from the gateway metering step after the upstream finished, inside a try/finally that releases the hold on error. Anything else I should look at before merging? Keep it short. [[sim output=64]]' }] },
    ],
  });
}

/** CLOCK_MONOTONIC now, µs (the time base of V8 CPU profiles' timestamps). */
const monoUs = () => Number(process.hrtime.bigint() / 1000n);

/** CPU seconds (user + system) of a process and of its main thread, from /proc. */
function cpu(pid: number): { proc: number; main: number } {
  const of = (path: string) => {
    const stat = readFileSync(path, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_S;
  };
  return { proc: of(`/proc/${pid}/stat`), main: of(`/proc/${pid}/task/${pid}/stat`) };
}

/** CPU seconds per thread name (comm) of a process, from /proc/<pid>/task/<tid>/stat. */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, '#');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(comm, (out.get(comm) ?? 0) + (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_S);
    } catch { /* the thread ended */ }
  }
  return out;
}

interface Target {
  name: string;
  url: string;
  key: string;
  pid: number;
  probeUrl?: string;
  stop(): Promise<void>;
}

/** An embedded Tollgate run from checkout `dir` with the probe loaded; fresh DATA_DIR. */
export async function startEmbedded(name: string, dir: string, simUrl: string, extraEnv: Record<string, string>): Promise<Target> {
  const port = await freePort();
  const probePort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), `tollgate-tail-${name}-`));
  const prof = process.env.BENCH_PROFILE_DIR ? ` --cpu-prof --cpu-prof-interval 100 --cpu-prof-dir=${process.env.BENCH_PROFILE_DIR} --cpu-prof-name=${name}-\${pid}.cpuprofile` : '';
  const nodeOptions = `${extraEnv.NODE_OPTIONS ?? ''} --import ${PROBE}${prof}`.trim();
  // NODE_ARGS (not an environment variable of Node's): flags NODE_OPTIONS refuses, e.g. --trace-gc
  const { NODE_ARGS: nodeArgs, ...env } = extraEnv;
  const child: ChildProcess = spawn(process.execPath, [...(nodeArgs ? nodeArgs.split(' ').filter(Boolean) : []), join(dir, 'services/tollgate/src/main.ts')], {
    cwd: dir, stdio: ['ignore', nodeArgs ? 2 : 'ignore', 'inherit'], // --trace-gc and the like print on stdout
    env: childEnv({
      DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'error', UPSTREAM_URL: simUrl, UPSTREAM_API_KEY, ADMIN_TOKEN,
      SHUTDOWN_GRACE_MS: '5000', KEY_MAX_CONCURRENT_REQUESTS: '100000', UPSTREAM_MAX_CONNECTIONS: '4096',
      KAFKA_BROKERS: undefined, REDIS_URL: undefined, CLICKHOUSE_URL: undefined,
      ...env, NODE_OPTIONS: nodeOptions, BENCH_PROBE_PORT: String(probePort),
    }),
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before it was ready`);
    const ok = await request(`${url}/health`).then(async (r) => { await r.body.dump(); return r.statusCode === 200; }, () => false);
    if (ok) break;
    if (i > 1200) throw new Error(`${name} not ready after 120 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const customer = await createCustomer(url, '1000000000');
  return {
    name, url, key: customer.secret, pid: child.pid!, probeUrl: `http://127.0.0.1:${probePort}`,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function probe<T>(t: Target, path: string, method: 'GET' | 'POST' = 'GET'): Promise<T | undefined> {
  if (!t.probeUrl) return undefined;
  const r = await request(`${t.probeUrl}${path}`, { method });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`probe ${path}: ${r.statusCode} ${text}`);
  return JSON.parse(text) as T;
}

/**
 * One slice at concurrency 1: every latency sample (ms, time to the last byte) after the warmup.
 * `atMeasure`, when given, is awaited once between the warmup and the first measured request
 * (the probe's watching starts there, so its window holds the measured requests only).
 */
export async function slice(t: Target, warmupMs: number, durationMs: number, spans?: Array<[number, number]>, atMeasure?: () => Promise<unknown>): Promise<{ samples: number[]; sent: number; errors: number }> {
  const pool = new Pool(t.url, { connections: 1, pipelining: 1, keepAliveTimeout: 60_000 });
  const headers = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': t.key };
  const payload = body();
  const samples: number[] = [];
  let sent = 0;
  let errors = 0;
  const start = performance.now();
  let measuring = false;
  try {
    for (;;) {
      let t0 = performance.now();
      if (!measuring && t0 >= start + warmupMs) {
        measuring = true;
        if (atMeasure) {
          await atMeasure();
          t0 = performance.now();
        }
      }
      const m0 = spans ? monoUs() : 0;
      if (t0 > start + warmupMs + durationMs) break;
      sent++;
      try {
        const res = await pool.request({ path: '/v1/messages', method: 'POST', headers, body: payload });
        const text = await res.body.text();
        const t1 = performance.now();
        if (res.statusCode !== 200 || !text.endsWith('}')) { errors++; continue; }
        if (t0 >= start + warmupMs) {
          samples.push(t1 - t0);
          // on CLOCK_MONOTONIC in µs, the clock of V8's CPU profiles: bench/tail-attribute.ts lines them up
          spans?.push([m0, monoUs()]);
        }
      } catch {
        errors++;
      }
    }
  } finally {
    await pool.close();
  }
  return { samples, sent, errors };
}

/** Per-slice figures of one target. */
export interface TailSlice {
  requests: number;
  p50: number;
  p99: number;
  /** CPU ms per request sent in the slice (warmup included): whole process, main thread */
  cpuMs?: number;
  mainCpuMs?: number;
  probe?: ProbeReport;
  errors: number;
}

/** What `runTail` returns: per target its slices and pooled samples' percentiles. */
export interface TailResult {
  rounds: number;
  sliceS: number;
  targets: Array<{
    name: string;
    slices: TailSlice[];
    pooled: { count: number; p50: number; p99: number; p999: number };
    /** pooled percentile minus direct's pooled percentile, ms */
    addedPooled?: { p50: number; p99: number; p999: number };
    /** median over rounds of (this slice − direct's slice of the same round), ms */
    addedMedian?: { p50: number; p99: number };
  }>;
}

/** Runs the comparison (see HELP); stops everything it started. */
export async function runTail(o: { rounds: number; sliceS: number; base?: string; altEnv?: Array<Record<string, string>>; headEnv?: Record<string, string>; head: boolean; threads?: boolean; watch?: boolean; log: (l: string) => void }): Promise<TailResult> {
  const stops: Array<() => Promise<void>> = [];
  try {
    const sim = await startSimulator();
    stops.push(() => sim.stop());
    const targets: Target[] = [{ name: 'direct', url: sim.url, key: UPSTREAM_API_KEY, pid: sim.child.pid!, stop: async () => {} }];
    const add = async (name: string, dir: string, env: Record<string, string>) => {
      const t = await startEmbedded(name, dir, sim.url, env);
      stops.push(() => t.stop());
      targets.push(t);
    };
    if (o.head) await add('head', ROOT, o.headEnv ?? {});
    if (o.base) await add('base', resolve(o.base), o.headEnv ?? {});
    for (const [i, env] of (o.altEnv ?? []).entries()) await add(o.altEnv!.length === 1 ? 'alt' : `alt${i + 1}`, ROOT, env);
    const slices = new Map<string, Array<TailSlice & { samples: number[] }>>(targets.map((t) => [t.name, []]));
    const spans = new Map<string, Array<[number, number]>>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < o.rounds; r++) {
      for (let i = 0; i < targets.length; i++) {
        const t = targets[(r + i) % targets.length]!;
        await waitForIdle(targets.map((x) => x.pid), 0.05, 300, 10_000);
        const c0 = cpu(t.pid);
        const th0 = threadCpu(t.pid);
        // watching (--watch) starts after the warmup, so the probe's window is the measured requests
        const s = await slice(t, 300, o.sliceS * 1000, spans.get(t.name), o.watch ? () => probe(t, '/reset?watch=on', 'POST') : undefined);
        const c1 = cpu(t.pid);
        const th1 = threadCpu(t.pid);
        const threads = [...th1].map(([k, v]) => [k, ((v - (th0.get(k) ?? 0)) * 1000) / s.sent] as const).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
        // Watching stops with the slice: its timer must not run through the other targets' slices.
        const p = o.watch ? await probe<ProbeReport>(t, '/report') : undefined;
        if (o.watch) await probe(t, '/reset', 'POST');
        const sorted = [...s.samples].sort((a, b) => a - b);
        const row = {
          samples: s.samples, requests: s.samples.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), errors: s.errors,
          cpuMs: ((c1.proc - c0.proc) * 1000) / s.sent, mainCpuMs: ((c1.main - c0.main) * 1000) / s.sent, ...(p ? { probe: p } : {}),
        };
        slices.get(t.name)!.push(row);
        o.log(`tail round ${r + 1}/${o.rounds} ${t.name.padEnd(6)} n=${row.requests} p50 ${row.p50.toFixed(3)} p99 ${row.p99.toFixed(3)} ms  cpu ${row.cpuMs.toFixed(3)} (main ${row.mainCpuMs.toFixed(3)}) ms/req` +
          (p ? `  eld p99 ${p.eld.p99} max ${p.eld.max} ms  gc ${p.gc.count} (${p.gc.totalMs.toFixed(1)} ms, longest ${p.gc.maxMs.toFixed(2)})` : '') + `  errors ${row.errors}`);
        if (o.threads) o.log(`  threads (cpu ms/req): ${threads.slice(0, 8).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')}`);
      }
    }
    if (process.env.BENCH_PROFILE_DIR) {
      for (const t of targets) {
        if (t.name !== 'direct') writeFileSync(join(process.env.BENCH_PROFILE_DIR, `${t.name}-${t.pid}.requests.json`), JSON.stringify(spans.get(t.name)));
      }
    }
    const pooled = (ss: Array<{ samples: number[] }>) => {
      const all = ss.flatMap((s) => s.samples).sort((a, b) => a - b);
      return { count: all.length, p50: percentile(all, 50), p99: percentile(all, 99), p999: percentile(all, 99.9) };
    };
    const direct = slices.get('direct')!;
    const dp = pooled(direct);
    return {
      rounds: o.rounds, sliceS: o.sliceS,
      targets: [...slices].map(([name, ss]) => {
        const p = pooled(ss);
        const strip = ss.map(({ samples: _, ...rest }) => rest);
        if (name === 'direct') return { name, slices: strip, pooled: p };
        return {
          name, slices: strip, pooled: p,
          addedPooled: { p50: p.p50 - dp.p50, p99: p.p99 - dp.p99, p999: p.p999 - dp.p999 },
          addedMedian: { p50: median(ss.map((s, i) => s.p50 - direct[i]!.p50)), p99: median(ss.map((s, i) => s.p99 - direct[i]!.p99)) },
        };
      }),
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  }
}

/** The result as a table. */
export function tailTable(r: TailResult): string {
  const f = (x: number | undefined, d = 3) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));
  const lines = [
    `concurrency 1, ${counted(r.rounds, 'round')} × ${r.sliceS} s per target (+0.3 s warmup), order rotated; ms; added = over direct`,
    'target  requests  p50    p99    p99.9  added p50/p99/p99.9 (pooled)  added p50/p99 (median of rounds)  eld p99  gc/s  gc %  gc longest  cpu ms/req (main)',
  ];
  for (const t of r.targets) {
    const eld = median(t.slices.flatMap((s) => (s.probe ? [s.probe.eld.p99] : [])));
    const gcPerS = median(t.slices.flatMap((s) => (s.probe ? [s.probe.gc.count / (s.probe.windowMs / 1000)] : [])));
    const gcMax = Math.max(...t.slices.map((s) => s.probe?.gc.maxMs ?? NaN));
    const gcPct = median(t.slices.flatMap((s) => (s.probe ? [(100 * s.probe.gc.totalMs) / s.probe.windowMs] : [])));
    lines.push([
      t.name.padEnd(6), String(t.pooled.count).padStart(9), f(t.pooled.p50).padStart(6), f(t.pooled.p99).padStart(6), f(t.pooled.p999).padStart(6),
      `${f(t.addedPooled?.p50)}/${f(t.addedPooled?.p99)}/${f(t.addedPooled?.p999)}`.padStart(29),
      `${f(t.addedMedian?.p50)}/${f(t.addedMedian?.p99)}`.padStart(33),
      f(eld, 2).padStart(8), f(gcPerS, 2).padStart(5), f(gcPct, 2).padStart(5), f(gcMax, 2).padStart(11),
      `${f(median(t.slices.map((s) => s.cpuMs!)))} (${f(median(t.slices.map((s) => s.mainCpuMs!)))})`.padStart(18),
    ].join('  '));
  }
  return lines.join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values: opts } = commandLine({ name: 'bench/tail', usage: HELP, options: {
    rounds: { type: 'string' },
    slice: { type: 'string' },
    base: { type: 'string' },
    'alt-env': { type: 'string', multiple: true },
    'head-env': { type: 'string' },
    'no-head': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    threads: { type: 'boolean', default: false },
    watch: { type: 'boolean', default: false },
  } });
  runMain('bench/tail', async () => {
    // K=V,K=V; a value may hold '=' (NODE_OPTIONS=--max-semi-space-size=64), and spaces
    const envOf = (name: string, s: string | undefined): Record<string, string> | undefined => {
      if (s === undefined) return undefined;
      const pairs = s.split(',').filter(Boolean);
      const bad = pairs.find((kv) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(kv));
      if (bad !== undefined) throw new UsageError(`${name}: expected NAME=VALUE pairs separated by commas, got "${bad}"`);
      return Object.fromEntries(pairs.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    };
    const o = {
      rounds: numberValue('--rounds', opts.rounds, 6, { min: 1, max: 1000, integer: true }),
      sliceS: numberValue('--slice', opts.slice, 3, { min: 0.1, max: 3600 }),
      altEnv: opts['alt-env']?.map((e) => envOf('--alt-env', e)!),
      headEnv: envOf('--head-env', opts['head-env']),
    };
    if (opts.base !== undefined && !existsSync(join(opts.base, 'services/tollgate/src/main.ts'))) {
      throw new UsageError(`--base: ${opts.base} is not a Tollgate checkout (no services/tollgate/src/main.ts)`);
    }
    if (opts['no-head'] && opts.base === undefined && opts['alt-env'] === undefined) {
      throw new UsageError('--no-head: leaves no target under test without --base or --alt-env');
    }
    let r: TailResult;
    try {
      r = await runTail({ ...o, base: opts.base, head: !opts['no-head'], threads: opts.threads, watch: opts.watch, log: (l) => process.stderr.write(`${l}\n`) });
    } catch (err) {
      await stopAll().catch(() => {});
      throw err;
    }
    console.log(opts.json ? JSON.stringify(r, null, 2) : tailTable(r));
    return 0;
  });
}
