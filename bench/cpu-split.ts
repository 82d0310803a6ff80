// Where a deployment's CPU goes, per request: every process of a Tollgate deployment under a
// steady load, and every thread of each (/proc/<pid>/task/*: the gateway's main thread, V8's GC
// helpers, libuv's pool, chDB's engine threads, Kafka's network and GC threads, Redis):
//
//   node bench/cpu-split.ts [--mode dist|embedded] [--concurrency 32] [--seconds 15] [--env K=V,..]
//
// CPU time, not wall time: a sample of a CPU profile that lands in a system call also counts the
// time the process waited for a core, which on a loaded 2-core machine makes socket writes look
// dearer than they are. `dist` starts a deployment (aggregator `ledger,warehouse`, control,
// gateway) on the Kafka and Redis the test suites find; `embedded` one Tollgate with every role.
// Used in session 50 to weigh KAFKA_LINGER_MS (docs/decisions.md, "Usage events linger 20 ms").
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deployment, findServices, redisHostPort, removeDeployment, startRole } from './distributed.ts';
import { createCustomer, localServicePids, startSimulator, startTollgate, stopAll, type TollgateService } from './stack.ts';
import { runLoad } from './load.ts';
import { accepted, target } from './dist-ab.ts';
import { commandLine, envPairs, numberValue, oneChoice, runMain } from './cli.ts';

/**
 * CPU ms used so far by each thread name of process `pid` (user + system, from
 * /proc/<pid>/task/<tid>/stat in clock ticks of 10 ms); trailing digits are dropped from the
 * names, so a pool's threads add up under one name. Threads that ended are not counted.
 */
export function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim().replace(/[#\d\s]+$/, '');
      const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      out.set(name, (out.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) * 10);
    } catch { /* the thread ended meanwhile */ }
  }
  return out;
}

/** One process's CPU per request over the measured window: in all, and by thread name (µs). */
export interface ProcessSplit { process: string; usPerRequest: number; threads: Array<{ name: string; usPerRequest: number }> }

/** What one run measured. */
export interface CpuSplit { mode: 'dist' | 'embedded'; concurrency: number; requests: number; rps: number; errors: number; processes: ProcessSplit[]; totalUsPerRequest: number }

/**
 * Starts the simulator and the deployment of `mode` (with `env` on top of every Tollgate process),
 * runs 2 s of warmup and `seconds` of load at `concurrency`, waits 1.5 s for the consumers to
 * finish, and returns each process's CPU per request. Stops what it started. Throws when Kafka or
 * Redis is missing (dist) or a process fails to start.
 */
export async function measureCpuSplit(o: { mode: 'dist' | 'embedded'; concurrency: number; seconds: number; env: Record<string, string>; log: (m: string) => void }): Promise<CpuSplit> {
  const sim = await startSimulator();
  const started: TollgateService[] = [];
  const pids: Record<string, number> = {};
  let d: ReturnType<typeof deployment> | undefined;
  try {
    let url: string;
    let key: string;
    if (o.mode === 'dist') {
      const services = await findServices();
      if ('missing' in services) throw new Error(`needs Kafka and Redis: ${services.missing.join('; ')}`);
      d = deployment(services, 'cpu');
      const aggregator = await startRole(d, sim.url, 'aggregator', 'aggregator', { AGGREGATOR_GROUPS: 'ledger,warehouse', ...o.env });
      started.push(aggregator);
      const control = await startRole(d, sim.url, 'control', 'control', o.env);
      started.push(control);
      const gateway = await startRole(d, sim.url, 'gateway', 'gateway', o.env);
      started.push(gateway);
      Object.assign(pids, { gateway: gateway.child.pid!, aggregator: aggregator.child.pid!, control: control.child.pid! });
      url = gateway.url;
      key = (await createCustomer(control.url, '100000000')).secret;
      o.log(`bench/cpu-split: Kafka ${services.kafka}, Redis ${redisHostPort(services.redis)}`);
      const local = localServicePids();
      if (local.kafka) pids.kafka = local.kafka;
      if (local.redis) pids.redis = local.redis;
      const uncounted = (['kafka', 'redis'] as const).filter((k) => !local[k]);
      if (uncounted.length > 0) {
        o.log(`bench/cpu-split: ${uncounted.join(' and ')} CPU not counted: no live pid file under ${process.env.TOLLGATE_DEPLOY_DIR || '.deploy'} (TOLLGATE_DEPLOY_DIR, as deploy/services.sh writes it)`);
      }
    } else {
      const e = await startTollgate(sim.url, o.env);
      started.push(e);
      pids.embedded = e.child.pid!;
      url = e.url;
      key = (await createCustomer(e.url, '100000000')).secret;
    }
    pids.simulator = sim.child.pid!;
    const t = target(url, key);
    await accepted(url, key);
    o.log(`bench/cpu-split: ${o.mode}, concurrency ${o.concurrency}: 2 s warmup, then ${o.seconds} s measured`);
    await runLoad(t, { concurrency: o.concurrency, warmupMs: 0, durationMs: 2000 });
    const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, threadCpuMs(p)]));
    const r = await runLoad(t, { concurrency: o.concurrency, warmupMs: 0, durationMs: o.seconds * 1000 });
    // The consumers finish the window's events before the second reading.
    await new Promise((res) => setTimeout(res, 1500));
    const n = Math.max(1, r.requests);
    const processes: ProcessSplit[] = [];
    for (const [name, pid] of Object.entries(pids)) {
      const after = threadCpuMs(pid);
      const threads = [...after].map(([t2, ms]) => ({ name: t2, usPerRequest: ((ms - (before[name]!.get(t2) ?? 0)) * 1000) / n }))
        .filter((x) => x.usPerRequest > 0).sort((a, b) => b.usPerRequest - a.usPerRequest);
      processes.push({ process: name, usPerRequest: threads.reduce((s, x) => s + x.usPerRequest, 0), threads });
    }
    return { mode: o.mode, concurrency: o.concurrency, requests: r.requests, rps: r.throughput, errors: r.errors, processes, totalUsPerRequest: processes.reduce((s, p) => s + p.usPerRequest, 0) };
  } finally {
    for (const s of started.reverse()) await s.stop().catch(() => {});
    await sim.stop().catch(() => {});
    if (d) await removeDeployment(d).catch(() => {});
  }
}

/** The run as text: one line per process, its threads that used at least 1 µs per request. */
export function cpuSplitText(s: CpuSplit): string {
  const lines = [`${s.mode} at concurrency ${s.concurrency}: ${s.requests} requests, ${s.rps.toFixed(0)} req/s, ${s.errors} errors; CPU µs per request (the load generator not counted)`];
  for (const p of s.processes) {
    lines.push(`  ${p.process.padEnd(10)} ${p.usPerRequest.toFixed(0).padStart(6)}  ${p.threads.filter((x) => x.usPerRequest >= 1).map((x) => `${x.name} ${x.usPerRequest.toFixed(0)}`).join(', ')}`);
  }
  lines.push(`  ${'total'.padEnd(10)} ${s.totalUsPerRequest.toFixed(0).padStart(6)}`);
  return lines.join('\n');
}

const USAGE = `Usage: node bench/cpu-split.ts [options]

Where a deployment's CPU goes per request: a simulator and a Tollgate deployment under a steady
load, then each process's CPU time per request over the window, split by thread (/proc). CPU
time, not the wall-time samples of a CPU profile. dist needs Kafka and Redis. See bench/README.md.

Options:
  --mode <m>         dist (aggregator ledger,warehouse + control + gateway on Kafka and Redis)
                     or embedded (one process, every role) (default dist)
  --concurrency <n>  concurrent requests (default 32)
  --seconds <s>      measured seconds, after 2 s of warmup (default 15)
  --env <K=V,..>     environment on top of every Tollgate process started (default none)
  -h, --help         show this help

Progress goes to stderr, the table to stdout.

Environment (--mode dist):
  KAFKA_BROKERS, REDIS_URL  Kafka and Redis, found as the test suites find them: these, else
                            127.0.0.1 on KAFKA_PORT (9092) and REDIS_PORT (6379);
                            TOLLGATE_TEST_SERVICES=none finds none. The run names the ones it uses.
  TOLLGATE_DEPLOY_DIR       where deploy/services.sh keeps the pid files (default .deploy): Kafka's
                            and Redis's CPU is counted only when their pid files are found there

Example:
  node bench/cpu-split.ts --mode dist --env KAFKA_LINGER_MS=5

Exit status: 0 done, 1 the run failed (Kafka or Redis missing, a process did not start), 2 bad usage.`;

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values: opts } = commandLine({ name: 'bench/cpu-split', usage: USAGE, options: {
    mode: { type: 'string' },
    concurrency: { type: 'string' },
    seconds: { type: 'string' },
    env: { type: 'string' },
  } });
  runMain('bench/cpu-split', async () => {
    const env = opts.env !== undefined ? envPairs('--env', opts.env) : {};
    const o = {
      mode: opts.mode === undefined ? 'dist' as const : oneChoice('--mode', opts.mode, ['dist', 'embedded'] as const),
      concurrency: numberValue('--concurrency', opts.concurrency, 32, { min: 1, max: 4096, integer: true }),
      seconds: numberValue('--seconds', opts.seconds, 15, { min: 1, max: 3600 }),
      env,
      log: (m: string) => process.stderr.write(`${m}\n`),
    };
    try {
      process.stdout.write(`${cpuSplitText(await measureCpuSplit(o))}\n`);
      return 0;
    } finally {
      await stopAll().catch(() => {});
    }
  });
}
