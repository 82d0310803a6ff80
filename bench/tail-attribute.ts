// What the Tollgate process did during its slowest requests: lines up the requests `bench/tail.ts`
// measured (BENCH_PROFILE_DIR=<dir>) with the V8 CPU profile (100 µs samples) of the same
// process, on the clock both use (CLOCK_MONOTONIC, µs). See `--help`.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandLine, numberValue, runMain, UsageError } from './cli.ts';

const HELP = `Usage: node bench/tail-attribute.ts [--slowest <pct>] <dir>

<dir> holds what \`BENCH_PROFILE_DIR=<dir> node bench/tail.ts …\` wrote: per Tollgate target
<name>-<pid>.cpuprofile and <name>-<pid>.requests.json. For each target, the µs per request
the main thread spent, by what it did, during the slowest --slowest % (default 1) of the
measured requests and during the middle 10 % (45th–55th percentile):
  idle        waiting (for the client, the simulator, or for a core: see gaps)
  request     the request path (Fastify, auth, limits, hold, upstream call, metering, reply)
  ledger      the embedded ledger consumer      warehouse  the warehouse sink and chDB calls
  log         the in-process log's delivery     gc         V8's collector on this thread
  other       anything else (Node internals outside those stacks, timers, the bench probe)
and "gaps": time between two profile samples longer than 1 ms, i.e. the process (its sampler
thread included) got no core: the machine was busy elsewhere. Then every measured request
together, and the slowest 10 requests one by one.

Options:
  --slowest <pct>  the share of the slowest requests looked at, percent, 0.01 to 100 (default 1)
  -h, --help       show this help

Environment: none read.

Example:
  BENCH_PROFILE_DIR=/tmp/tail-prof node bench/tail.ts --rounds 4
  node bench/tail-attribute.ts --slowest 0.5 /tmp/tail-prof

Exit status: 0 done, 1 failed (<dir> unreadable, no profile with its requests in it), 2 bad usage.`;

interface Node { id: number; callFrame: { functionName: string; url: string }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const CATEGORIES: Array<[string, RegExp]> = [
  ['warehouse', /warehouse|chdb|@clickhouse/],
  ['ledger', /ledger-consumer|applyBatch|applyUsage|memory-balance-store/],
  ['log', /memory-log/],
  ['request', /routes\/messages|metering\.ts|fastify|_http_server|_http_common|undici|gateway\/src|libs\/http|libs\/pricing|libs\/limits/],
];

/** One category per profile node, from its whole stack (leaf first). */
function categorize(p: Profile): Map<number, string> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const out = new Map<number, string>();
  for (const n of p.nodes) {
    const leaf = n.callFrame.functionName;
    if (leaf === '(idle)') { out.set(n.id, 'idle'); continue; }
    if (leaf === '(garbage collector)') { out.set(n.id, 'gc'); continue; }
    let stack = '';
    for (let x: number | undefined = n.id; x !== undefined; x = parent.get(x)) {
      const f = byId.get(x)!.callFrame;
      stack += `${f.functionName} ${f.url}|`;
    }
    // The log's delivery calls the consumers: the consumer wins; the request path publishes into the log: the request wins.
    out.set(n.id, CATEGORIES.find(([, re]) => re.test(stack))?.[0] ?? 'other');
  }
  return out;
}

/** µs per request by category over `spans`, and the µs of sampling gaps (> 1 ms) per request. */
function attribute(times: Float64Array, cats: string[], spans: Array<[number, number]>): { by: Map<string, number>; gaps: number } {
  const by = new Map<string, number>();
  let gaps = 0;
  for (const [a, b] of spans) {
    let lo = 0, hi = times.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (times[m]! < a) lo = m + 1; else hi = m; }
    let prev = a;
    for (let i = lo; i < times.length && times[i]! <= b; i++) {
      const d = times[i]! - prev;
      prev = times[i]!;
      by.set(cats[i]!, (by.get(cats[i]!) ?? 0) + d);
      if (d > 1000) gaps += d;
    }
    // no sample from the last one to the end: the sampler got no core either
    if (b - prev > 1000) gaps += b - prev;
  }
  for (const [k, v] of by) by.set(k, v / spans.length);
  return { by, gaps: gaps / spans.length };
}

const fmt = (r: { by: Map<string, number>; gaps: number }) =>
  `${[...r.by].sort((x, y) => y[1] - x[1]).filter(([, v]) => v >= 1).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}; gaps ${r.gaps.toFixed(0)}`;

/** The report for every target profiled in `dir`. Throws when `dir` holds no pair of files. */
export function attributeDir(dir: string, slowestPct = 1): string {
  const lines: string[] = [];
  const files = readdirSync(dir);
  const pairs = files.filter((f) => f.endsWith('.requests.json')).map((f) => ({ requests: f, profile: f.replace('.requests.json', '.cpuprofile') }))
    .filter((x) => files.includes(x.profile));
  if (pairs.length === 0) throw new Error(`${dir}: no <name>-<pid>.requests.json with its .cpuprofile`);
  for (const { requests, profile } of pairs) {
    const spans = JSON.parse(readFileSync(join(dir, requests), 'utf8')) as Array<[number, number]>;
    const p = JSON.parse(readFileSync(join(dir, profile), 'utf8')) as Profile;
    const catOf = categorize(p);
    const times = new Float64Array(p.samples.length);
    const cats: string[] = [];
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) { t += p.timeDeltas[i]!; times[i] = t; cats.push(catOf.get(p.samples[i]!)!); }
    const sorted = [...spans].sort((x, y) => (y[1] - y[0]) - (x[1] - x[0]));
    const dur = (s: [number, number]) => ((s[1] - s[0]) / 1000).toFixed(2);
    const slow = sorted.slice(0, Math.max(1, Math.ceil((spans.length * slowestPct) / 100)));
    const mid = sorted.slice(Math.floor(spans.length * 0.45), Math.ceil(spans.length * 0.55));
    lines.push(`${requests.replace('.requests.json', '')}: ${spans.length} requests, p50 ${dur(sorted[Math.floor(spans.length / 2)]!)} ms, slowest ${slowestPct} % from ${dur(slow.at(-1)!)} ms (µs per request)`);
    lines.push(`  slowest ${slowestPct} % (${slow.length}): ${fmt(attribute(times, cats, slow))}`);
    lines.push(`  middle 10 % (${mid.length}): ${fmt(attribute(times, cats, mid))}`);
    lines.push(`  all requests: ${fmt(attribute(times, cats, spans))}`);
    for (const s of sorted.slice(0, 10)) lines.push(`    ${dur(s)} ms: ${fmt(attribute(times, cats, [s]))}`);
  }
  return lines.join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values, positionals } = commandLine({ name: 'bench/tail-attribute', usage: HELP, positionals: true, options: { slowest: { type: 'string' } } });
  runMain('bench/tail-attribute', () => {
    const slowest = numberValue('--slowest', values.slowest, 1, { min: 0.01, max: 100 });
    if (positionals.length === 0) throw new UsageError('missing <dir>, the BENCH_PROFILE_DIR of a bench/tail.ts run');
    if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
    console.log(attributeDir(positionals[0]!, slowest));
    return 0;
  });
}
