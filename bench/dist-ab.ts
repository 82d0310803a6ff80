// Distributed vs embedded gateway, interleaved in one run (issue 11 outcome 3), for a machine
// whose other load drifts: `npm run bench` measures each scenario once, one after the other, so
// a neighbour's burst lands in one scenario only and the ratio moves by ±50 % between runs. Here
// the targets take turns in short slices (order rotated every round), so drift hits them alike:
//
//   node bench/dist-ab.ts [--concurrency 1] [--rounds 6] [--slice 3] [--base <checkout>]
//
// Targets: `embedded` (services/tollgate all roles, in-memory hot state, chDB), `dist` (a gateway
// process of a deployment with one aggregator `ledger,warehouse` and one control process, Kafka
// and Redis as the test suites find them) and, with `--base <dir>`, `dist-base`: a second gateway
// of the SAME deployment run from another checkout (e.g. the commit before a change, extracted
// with `git archive`, its node_modules beside it), for a before/after in the same run.
// Reported per target: requests, req/s over all its slices, the median over rounds of the
// slice p50 / p99, gateway CPU ms per request (/proc, the gateway process only), and the ratio
// and added p50 / p99 against `embedded` (medians of the per-round differences).
// BENCH_GATEWAY_CPU_PROF=<dir> writes a V8 CPU profile of each distributed gateway when it stops.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { deployment, findServices, removeDeployment, startRole } from './distributed.ts';
import { median, runLoad, type LoadTarget } from './load.ts';
import { childEnv } from '../test/support/services.ts';
import {
  ADMIN_TOKEN, UPSTREAM_API_KEY, cpuSeconds, createCustomer, machineBusySeconds, freePort, localServicePids, startSimulator, startTollgate, stopAll, waitForIdle,
} from './stack.ts';
import { Redis } from 'ioredis';
import { commandLine, counted, envPairs, numberValue, runMain, UsageError } from './cli.ts';

const MODEL = 'claude-sonnet-4-5-20250929';

const stderrLog = (m: string) => process.stderr.write(`${m}\n`);

/** The bench's request, shortened: same model, 64 output tokens, no cache_control. */
function body(): string {
  return JSON.stringify({
    model: MODEL, max_tokens: 256, stream: false, metadata: { user_id: 'user_bench_0001' },
    system: 'You are a senior software engineer reviewing a pull request. Be concise and concrete.',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Does the new error path leak the hold? Keep it short. [[sim output=64]]' }] }],
  });
}

/** The bench's request (body()) to `origin` on `key`, as a LoadTarget. */
export function target(origin: string, key: string): LoadTarget {
  return {
    origin, path: '/v1/messages', body: body(), stream: false, bodyEndsWith: '}',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': key },
  };
}

/** A gateway process of the deployment, run from another checkout (`--base`). */
async function startBaseGateway(dir: string, env: Record<string, string>): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-base-'));
  const child = spawn(process.execPath, [join(dir, 'services/tollgate/src/main.ts')], {
    cwd: dir, stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...childEnv(), ...env, DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'error',
      ADMIN_TOKEN, UPSTREAM_API_KEY, SHUTDOWN_GRACE_MS: '5000', KEY_MAX_CONCURRENT_REQUESTS: '100000', UPSTREAM_MAX_CONNECTIONS: '4096',
      ...(process.env.BENCH_GATEWAY_CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_GATEWAY_CPU_PROF}` } : {}),
    },
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`base gateway exited (${child.exitCode})`);
    const ok = await request(`${url}/health`).then(async (r) => { await r.body.dump(); return r.statusCode === 200; }, () => false);
    if (ok) break;
    if (i > 600) throw new Error('base gateway not ready after 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, child,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Sets the CPU affinity of every thread of each process (`taskset -a -p -c`): `cpu` alone, or
 * every CPU when undefined. Undefined pids are skipped; throws when taskset fails.
 */
function pinTo(pids: Array<number | undefined>, cpu: number | undefined): void {
  const list = cpu === undefined ? `0-${availableParallelism() - 1}` : String(cpu);
  for (const pid of pids) {
    if (pid !== undefined) execFileSync('taskset', ['-a', '-p', '-c', list, String(pid)], { stdio: 'ignore' });
  }
}

/** Resolves once `url` answers the bench request on `key` with 200 (a new key reaches a gateway's cache); throws after ~15 s. */
export async function accepted(url: string, key: string): Promise<void> {
  const t = target(url, key);
  for (let i = 0; ; i++) {
    const res = await request(`${url}/v1/messages`, { method: 'POST', headers: t.headers, body: t.body });
    await res.body.dump();
    if (res.statusCode === 200) return;
    if (i > 150) throw new Error(`${url} refused the bench key: HTTP ${res.statusCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Options of one interleaved comparison. */
export interface DistAbOptions {
  /** concurrent requests (= connections) of every slice */
  concurrency: number;
  /** rounds; each round runs one slice per target, order rotated per round */
  rounds: number;
  /** measured seconds per slice (each slice is preceded by 0.5 s of unmeasured warmup) */
  sliceS: number;
  /** another checkout whose gateway joins as `dist-base` (before/after in one run) */
  base?: string;
  /** environment (K=V) of an extra gateway of this tree, `dist-alt` (a knob's A/B) */
  altEnv?: Record<string, string>;
  /**
   * CPU affinity: every measured gateway process (`embedded`, `dist`, …) on CPU 0, everything
   * else (this load generator, the simulator, the aggregator, control, Kafka, Redis, the
   * ClickHouse server) on CPU 1: the gateway process's own throughput per core, with the
   * deployment's other tiers on a core of their own as they would be on other machines.
   * Restored to all CPUs at the end. Needs `taskset` and at least 2 CPUs.
   */
  pin?: boolean;
  /** progress lines (stderr in the CLI) */
  log?: (line: string) => void;
}

/**
 * One slice of one target: counts, seconds, ms percentiles, gateway CPU-seconds (undefined: /proc
 * not readable), and Redis over the slice, every client included (the aggregator's ledger too):
 * its CPU-seconds (undefined: not the local Redis of deploy/redis.sh), commands processed and
 * reads processed (INFO stats: one read per batch of commands a connection sent together).
 */
export interface DistAbSlice {
  requests: number; sent: number; seconds: number; p50: number; p99: number; cpuS: number | undefined; errors: number;
  /**
   * CPU-seconds the whole machine was busy (/proc/stat, every process: load generator,
   * simulator, gateways, aggregator, Kafka, Redis) from the slice's start until the bench's
   * processes were idle again after it, so the aggregator's work for the slice's events counts;
   * undefined without /proc
   */
  machineS: number | undefined;
  /** CPU-seconds over the same span of the other processes: load (this process), simulator, aggregator, Kafka (undefined: not measurable) */
  parts: Record<'load' | 'simulator' | 'aggregator' | 'kafka', number | undefined>;
  redis: { cpuS: number | undefined; commands: number; reads: number };
}

/** Per round figures of one target; `vsEmbedded` pairs each round with embedded's slice of the same round. */
export interface DistAbRound {
  /** requests/s of the slice (measured requests ÷ measured seconds) */
  rps: number;
  /** ms, the slice's percentiles of the time to the last byte */
  p50: number;
  p99: number;
  /** gateway CPU ms per request served in the slice (warmup included); NaN when /proc was not readable */
  cpuMsPerRequest: number;
  /** the whole machine's CPU ms per request served in the slice (`DistAbSlice.machineS`); NaN without /proc */
  machineCpuMsPerRequest: number;
  /** Redis per request served in the slice: CPU ms (NaN: not measurable), commands, reads (socket reads with commands) */
  redisCpuMsPerRequest: number;
  redisCommandsPerRequest: number;
  redisReadsPerRequest: number;
  errors: number;
  /** this round's rps ÷ embedded's rps of the same round */
  ratio: number;
  /** ms, this round's p50 / p99 minus embedded's of the same round */
  addedP50: number;
  addedP99: number;
}

/** The result of `runDistAb`: per target (`embedded`, `dist`, optional `dist-base` / `dist-alt`) its slices and rounds. */
export interface DistAbResult {
  concurrency: number;
  rounds: number;
  sliceS: number;
  targets: Array<{ name: string; slices: DistAbSlice[]; rounds: DistAbRound[] }>;
}

/** median of xs (NaN when empty) */
export { median };

/**
 * Embedded vs distributed gateway, interleaved: starts its own simulator, an embedded Tollgate and
 * a distributed deployment (aggregator `ledger,warehouse`, control, gateway; Kafka and Redis as
 * `findServices` finds them), runs `rounds` rounds of one `sliceS` slice per target and stops
 * everything it started (and only that). Throws when Kafka or Redis is missing or a process fails.
 */
export async function runDistAb(o: DistAbOptions): Promise<DistAbResult> {
  const log = o.log ?? stderrLog;
  const services = await findServices();
  if ('missing' in services) throw new Error(`needs Kafka and Redis: ${services.missing.join('; ')}`);
  const stops: Array<() => Promise<void>> = [];
  const d = deployment(services, `ab${o.concurrency}`);
  try {
    const sim = await startSimulator();
    stops.push(() => sim.stop());
    const embedded = await startTollgate(sim.url);
    stops.push(() => embedded.stop());
    const aggregator = await startRole(d, sim.url, 'aggregator', 'aggregator', {
      AGGREGATOR_GROUPS: 'ledger,warehouse',
      ...(process.env.BENCH_AGGREGATOR_CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_AGGREGATOR_CPU_PROF}` } : {}),
    });
    stops.push(() => aggregator.stop());
    const prof: Record<string, string> = process.env.BENCH_GATEWAY_CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_GATEWAY_CPU_PROF}` } : {};
    const [control, gw] = await Promise.all([
      startRole(d, sim.url, 'control', 'control'),
      startRole(d, sim.url, 'gateway', 'gateway', prof),
    ]);
    stops.push(() => control.stop(), () => gw.stop());
    const alt = o.altEnv ? await startRole(d, sim.url, 'gateway-alt', 'gateway', { ...prof, ...o.altEnv }) : undefined;
    if (alt) stops.push(() => alt.stop());
    const base = o.base ? await startBaseGateway(o.base, { ...d.env, TOLLGATE_ROLES: 'gateway', GATEWAY_ID: 'bench-gateway-base', UPSTREAM_URL: sim.url }) : undefined;
    if (base) stops.push(() => base.stop());
    const embKey = (await createCustomer(embedded.url, '100000000')).secret;
    const distKey = (await createCustomer(control.url, '100000000')).secret;
    await accepted(embedded.url, embKey);
    await accepted(gw.url, distKey);
    if (base) await accepted(base.url, distKey);
    if (alt) await accepted(alt.url, distKey);
    const targets = [
      { name: 'embedded', t: target(embedded.url, embKey), pid: embedded.child.pid },
      { name: 'dist', t: target(gw.url, distKey), pid: gw.child.pid },
      ...(base ? [{ name: 'dist-base', t: target(base.url, distKey), pid: base.child.pid }] : []),
      ...(alt ? [{ name: 'dist-alt', t: target(alt.url, distKey), pid: alt.child.pid }] : []),
    ];
    const redisStats = new Redis(services.redis, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redisStats.connect();
    stops.push(async () => { redisStats.disconnect(); });
    const redisPid = localServicePids().redis;
    const redisCounters = async () => {
      const info = await redisStats.info('stats');
      const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
      return { cpuS: cpuSeconds(redisPid), commands: field('total_commands_processed'), reads: field('total_reads_processed') };
    };
    const background = [sim.child.pid, embedded.child.pid, aggregator.child.pid, control.child.pid, gw.child.pid, base?.child.pid, alt?.child.pid];
    if (o.pin) {
      const services = localServicePids();
      const others = [process.pid, sim.child.pid, aggregator.child.pid, control.child.pid, services.kafka, services.redis, services.clickhouse];
      const measured = targets.map((t) => t.pid);
      stops.push(async () => pinTo([...others, ...measured], undefined));
      pinTo(others, 1);
      pinTo(measured, 0);
      log(`dist-ab: pinned the measured gateways (${measured.join(', ')}) to CPU 0, the rest (${others.filter((p) => p !== undefined).join(', ')}) to CPU 1`);
    }
    const kafkaPid = localServicePids().kafka;
    const partCpu = (): DistAbSlice['parts'] => ({
      load: cpuSeconds(process.pid), simulator: cpuSeconds(sim.child.pid), aggregator: cpuSeconds(aggregator.child.pid), kafka: cpuSeconds(kafkaPid),
    });
    const slices = new Map<string, DistAbSlice[]>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < o.rounds; r++) {
      for (let i = 0; i < targets.length; i++) {
        const tg = targets[(r + i) % targets.length]!;
        // the previous slice's background work (warehouse inserts, ledger debits) must not land in this one
        await waitForIdle(background, 0.1, 300, 10_000);
        const redis0 = await redisCounters();
        const cpu0 = cpuSeconds(tg.pid);
        const machine0 = machineBusySeconds();
        const parts0 = partCpu();
        const res = await runLoad(tg.t, { concurrency: o.concurrency, warmupMs: 500, durationMs: o.sliceS * 1000 });
        const cpu1 = cpuSeconds(tg.pid);
        const redis1 = await redisCounters();
        await waitForIdle(background, 0.1, 300, 10_000);
        const machine1 = machineBusySeconds();
        const parts1 = partCpu();
        const s: DistAbSlice = {
          requests: res.requests, sent: res.okTotal + res.errorTotal, seconds: res.elapsedS, p50: res.latency.p50, p99: res.latency.p99,
          cpuS: cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0, errors: res.errorTotal,
          machineS: machine0 === undefined || machine1 === undefined ? undefined : machine1 - machine0,
          parts: Object.fromEntries(Object.entries(parts1).map(([k, v]) => [k, v === undefined || parts0[k as keyof typeof parts0] === undefined ? undefined : v - parts0[k as keyof typeof parts0]!])) as DistAbSlice['parts'],
          // minus one: the first INFO of the pair is counted between the two snapshots (its own
          // reply does not count it yet; the second's read is counted before its reply)
          redis: {
            cpuS: redis0.cpuS === undefined || redis1.cpuS === undefined ? undefined : redis1.cpuS - redis0.cpuS,
            commands: redis1.commands - redis0.commands - 1, reads: redis1.reads - redis0.reads - 1,
          },
        };
        slices.get(tg.name)!.push(s);
        log(`dist-ab c=${o.concurrency} round ${r + 1}/${o.rounds} ${tg.name.padEnd(9)} ${(s.requests / s.seconds).toFixed(0).padStart(6)} req/s  p50 ${s.p50.toFixed(2)}  p99 ${s.p99.toFixed(2)} ms  cpu ${s.cpuS === undefined ? '-' : ((s.cpuS * 1000) / s.sent).toFixed(2)} ms/req  machine ${s.machineS === undefined ? '-' : ((s.machineS * 1000) / s.sent).toFixed(2)} ms/req (${Object.entries(s.parts).map(([k, v]) => `${k} ${v === undefined ? '-' : ((v * 1000) / s.sent).toFixed(2)}`).join(', ')})  redis ${s.redis.cpuS === undefined ? '-' : ((s.redis.cpuS * 1000) / s.sent).toFixed(3)} ms, ${(s.redis.commands / s.sent).toFixed(2)} commands, ${(s.redis.reads / s.sent).toFixed(2)} reads per req  errors ${s.errors}`);
      }
    }
    const emb = slices.get('embedded')!;
    return {
      concurrency: o.concurrency, rounds: o.rounds, sliceS: o.sliceS,
      targets: [...slices].map(([name, ss]) => ({
        name, slices: ss,
        rounds: ss.map((s, i) => ({
          rps: s.requests / s.seconds, p50: s.p50, p99: s.p99,
          cpuMsPerRequest: s.cpuS === undefined ? NaN : (s.cpuS * 1000) / s.sent, errors: s.errors,
          machineCpuMsPerRequest: s.machineS === undefined ? NaN : (s.machineS * 1000) / s.sent,
          redisCpuMsPerRequest: s.redis.cpuS === undefined ? NaN : (s.redis.cpuS * 1000) / s.sent,
          redisCommandsPerRequest: s.redis.commands / s.sent, redisReadsPerRequest: s.redis.reads / s.sent,
          ratio: s.requests / s.seconds / (emb[i]!.requests / emb[i]!.seconds), addedP50: s.p50 - emb[i]!.p50, addedP99: s.p99 - emb[i]!.p99,
        })),
      })),
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await removeDeployment(d);
  }
}

/** The CLI's table (the figures of `runDistAb`, aggregated over all slices as before). */
function distAbTable(r: DistAbResult): string {
  const lines: string[] = [];
  const emb = r.targets.find((t) => t.name === 'embedded')!.slices;
  lines.push(`interleaved A/B: concurrency ${r.concurrency}, ${counted(r.rounds, 'round')} × ${r.sliceS} s per target (+0.5 s warmup each), order rotated per round`);
  lines.push('target     requests  served  req/s  p50 ms  p99 ms  gw cpu ms/req  machine cpu ms/req  ratio vs emb  added p50/p99 ms  errors  redis cpu ms/req  cmds/req  reads/req');
  lines.push('requests/req/s = measured (after each slice\'s warmup); served = every request the process answered in its slices, warmup included');
  lines.push('(the denominator of gw cpu ms/req); p50/p99 = median over rounds of the slice percentile; added = median of the per-round differences;');
  lines.push('machine = every process on the machine (load, simulator, gateways, aggregator, Kafka, Redis), each slice until its work was done;');
  lines.push('redis = the Redis server over the slices, every client (aggregator included): CPU, commands processed, socket reads with commands (INFO stats)');
  for (const { name, slices: ss } of r.targets) {
    const req = ss.reduce((n, s) => n + s.requests, 0);
    const secs = ss.reduce((n, s) => n + s.seconds, 0);
    const sent = ss.reduce((n, s) => n + s.sent, 0);
    const cpu = ss.every((s) => s.cpuS !== undefined) ? (ss.reduce((n, s) => n + s.cpuS!, 0) * 1000) / sent : NaN;
    const machine = ss.every((s) => s.machineS !== undefined) ? (ss.reduce((n, s) => n + s.machineS!, 0) * 1000) / sent : NaN;
    const redisCpu = ss.every((s) => s.redis.cpuS !== undefined) ? (ss.reduce((n, s) => n + s.redis.cpuS!, 0) * 1000) / sent : NaN;
    const redisCmds = ss.reduce((n, s) => n + s.redis.commands, 0) / sent;
    const redisReads = ss.reduce((n, s) => n + s.redis.reads, 0) / sent;
    const rate = req / secs;
    const embRate = emb.reduce((n, s) => n + s.requests, 0) / emb.reduce((n, s) => n + s.seconds, 0);
    const addP50 = median(ss.map((s, i) => s.p50 - emb[i]!.p50));
    const addP99 = median(ss.map((s, i) => s.p99 - emb[i]!.p99));
    lines.push(`${name.padEnd(9)} ${String(req).padStart(9)} ${String(sent).padStart(7)} ${rate.toFixed(0).padStart(6)} ${median(ss.map((s) => s.p50)).toFixed(2).padStart(7)} ${median(ss.map((s) => s.p99)).toFixed(2).padStart(7)} ${cpu.toFixed(2).padStart(14)} ${machine.toFixed(2).padStart(19)} ${(rate / embRate).toFixed(2).padStart(12)}x ${`${addP50 >= 0 ? '+' : ''}${addP50.toFixed(2)}/${addP99 >= 0 ? '+' : ''}${addP99.toFixed(2)}`.padStart(16)} ${String(ss.reduce((n, s) => n + s.errors, 0)).padStart(7)} ${redisCpu.toFixed(3).padStart(17)} ${redisCmds.toFixed(2).padStart(9)} ${redisReads.toFixed(2).padStart(10)}`);
  }
  return lines.join('\n');
}

const DIST_AB_USAGE = `Usage: node bench/dist-ab.ts [options]   (also a section of npm run bench: --dist-rounds)

Distributed vs embedded gateway, interleaved in one run: a simulator, an embedded Tollgate and a
deployment (aggregator ledger,warehouse, control, gateway) on Kafka and Redis; the targets take
turns in short slices, order rotated every round, so the machine's drift hits them alike. Prints
per target requests, req/s, median p50 / p99, gateway CPU ms per request, and the ratio and
added p50 / p99 against embedded. Needs Kafka and Redis. See bench/README.md.

Options:
  --concurrency <n>  concurrent requests (= connections) of every slice (default 1)
  --rounds <n>       rounds; each runs one slice per target (default 6)
  --slice <s>        measured seconds per slice, after 0.5 s of warmup (default 3)
  --base <dir>       another checkout (with its node_modules) whose gateway joins the same
                     deployment as dist-base: a before/after in one run (default none)
  --alt-env <K=V,..> a third gateway of this tree, dist-alt, with this environment on top:
                     a setting's A/B (default none)
  --pin              CPU affinity (taskset): the measured gateways on CPU 0, everything else
                     (load, simulator, aggregator, control, Kafka, Redis, ClickHouse) on CPU 1:
                     a gateway process's own throughput per core (default: no pinning)
  -h, --help         show this help

Progress goes to stderr, the table to stdout.

Environment:
  KAFKA_BROKERS, REDIS_URL  Kafka and Redis (default 127.0.0.1:9092, redis://127.0.0.1:6379)
  BENCH_GATEWAY_CPU_PROF    a directory: each distributed gateway writes a V8 CPU profile
                            there when it stops (default: none)
  BENCH_AGGREGATOR_CPU_PROF a directory: the aggregator writes a V8 CPU profile there when
                            it stops (default: none)

Example:
  node bench/dist-ab.ts --concurrency 32 --rounds 4 --alt-env KEY_CACHE_TTL_MS=0

Exit status: 0 done, 1 the run failed (Kafka or Redis missing, a process did not start), 2 bad usage.`;

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values: opts } = commandLine({ name: 'bench/dist-ab', usage: DIST_AB_USAGE, options: {
    concurrency: { type: 'string' },
    rounds: { type: 'string' },
    slice: { type: 'string' },
    base: { type: 'string' },
    'alt-env': { type: 'string' },
    pin: { type: 'boolean' },
  } });
  runMain('bench/dist-ab', async () => {
    // --alt-env K=V,K=V: a third gateway of this tree, with that environment on top (a knob's A/B)
    const altEnv = opts['alt-env'] !== undefined ? envPairs('--alt-env', opts['alt-env']) : undefined;
    const o = {
      concurrency: numberValue('--concurrency', opts.concurrency, 1, { min: 1, max: 4096, integer: true }),
      rounds: numberValue('--rounds', opts.rounds, 6, { min: 1, max: 1000, integer: true }),
      sliceS: numberValue('--slice', opts.slice, 3, { min: 0.1, max: 3600 }),
    };
    if (opts.base !== undefined && !existsSync(join(opts.base, 'services/tollgate/src/main.ts'))) {
      throw new UsageError(`--base: ${opts.base} is not a Tollgate checkout (no services/tollgate/src/main.ts)`);
    }
    try {
      if (opts.pin && availableParallelism() < 2) throw new UsageError('--pin needs at least 2 CPUs');
      const r = await runDistAb({ ...o, base: opts.base, altEnv, pin: opts.pin === true });
      process.stdout.write(`${distAbTable(r)}\n`);
      return 0;
    } finally {
      await stopAll().catch(() => {});
    }
  });
}
