// Summarizes a V8 CPU profile (`.cpuprofile`, or `.cpuprofile.gz`) of a Tollgate process:
// busy time, the functions with the most self time, and inclusive time per component (a
// sample counts once in every component on its stack), plus, with --callers <fn>, the stacks
// that lead to one function's self time. Used for the distributed gateway profiles of issue 11:
//   node bench/profiles/summarize.ts bench/profiles/dist-c1-after.cpuprofile.gz [--top 30] [--requests N] [--from-first-request]
// --requests N adds each figure per request (µs), N = the requests the process served.
// Sampling is by wall time: a sample inside a system call (a socket write) also counts the time
// the process waited for a core during it, so on a loaded machine writes look costlier than
// their CPU; /proc CPU per request (the benches' `cpu ms/req`) is the CPU figure.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { commandLine, exitUsage, numberValue, reportUncaught } from '../cli.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

const USAGE = `Usage: node bench/profiles/summarize.ts <file.cpuprofile[.gz]> [options]

Summarizes a V8 CPU profile of a Tollgate process: busy time, the functions with the most self
time, inclusive time per component, and with --callers the stacks leading to one function's
self time. Prints the summary on stdout.

Options:
  --top <n>              functions listed by self time (default 25)
  --requests <n>         the requests the process served: adds each figure per request, µs
                         (default: not shown)
  --from-first-request   only samples from the first one inside the gateway's request handler on
                         (leaves out start-up)
  --callers <function>   the stacks that lead to this function's self time (default: none)
  -h, --help             show this help

Example:
  node bench/profiles/summarize.ts bench/profiles/dist-c1-after.cpuprofile.gz --top 30 --requests 12000

Exit status: 0 done, 1 the file cannot be read or is not a CPU profile, 2 bad usage.`;

const { values, positionals } = commandLine({ name: 'bench/profiles/summarize', usage: USAGE, positionals: true, options: {
  top: { type: 'string' }, requests: { type: 'string' }, 'from-first-request': { type: 'boolean' }, callers: { type: 'string' },
} });
if (positionals.length !== 1) exitUsage('bench/profiles/summarize', positionals.length === 0 ? 'missing the profile file' : `unexpected argument ${JSON.stringify(positionals[1])}`);
const file = positionals[0]!;
let top: number, requests: number | undefined;
try {
  top = numberValue('--top', values.top, 25, { min: 1, max: 10_000, integer: true });
  requests = values.requests === undefined ? undefined : numberValue('--requests', values.requests, 0, { min: 1, max: 1e12, integer: true });
} catch (err) {
  exitUsage('bench/profiles/summarize', (err as Error).message);
}
const callersOf = values.callers;
reportUncaught('bench/profiles/summarize');

let p: Profile;
try {
  let raw = readFileSync(file);
  if (file.endsWith('.gz')) raw = gunzipSync(raw);
  p = JSON.parse(raw.toString('utf8')) as Profile;
  if (!Array.isArray(p.nodes) || !Array.isArray(p.samples) || !Array.isArray(p.timeDeltas)) throw new Error('not a V8 CPU profile (no nodes, samples, timeDeltas)');
} catch (err) {
  process.stderr.write(`bench/profiles/summarize: ${file}: ${(err as Error).message}\n`);
  process.exit(1);
}
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<number, number>(); // µs per node
// --from-first-request: only samples from the first one inside the gateway's request handler
// on (leaves out start-up: module compilation, connects), so the busy time is the serving's.
const inHandler = (id: number): boolean => {
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    if (byId.get(cur)!.callFrame.url.includes('services/gateway/src/routes/messages.ts')) return true;
  }
  return false;
};
let from = 0;
if (values['from-first-request']) {
  from = p.samples.findIndex(inHandler);
  if (from < 0) from = 0;
}
for (let i = from; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));

const where = (u: string) => u.replace(/^.*\/(node_modules|libs|services)\//, '$1/').replace(/^file:\/\/.*\/bench\//, 'bench/');
const label = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;

/** The component a frame belongs to, by its file; null for frames that name none (node internals). */
function component(n: ProfileNode): string | null {
  const u = n.callFrame.url;
  const rules: Array<[RegExp, string]> = [
    [/kafkajs/, 'kafkajs (producer)'], [/ioredis|redis-parser|denque/, 'ioredis'], [/node:zlib/, 'zlib (Kafka codecs)'],
    [/libs\/events\/src\/kafka-log/, 'KafkaLog (spool, sender)'], [/libs\/ledger\//, 'ledger (hold/settle calls)'],
    [/libs\/limits\//, 'limits'], [/libs\/keys\//, 'keys'], [/fastify|find-my-way|avvio/, 'fastify'], [/undici/, 'undici (upstream client)'],
    [/opentelemetry/, 'opentelemetry'], [/prom-client/, 'prom-client'], [/pino/, 'pino'], [/libs\/pricing\//, 'pricing'],
    [/libs\/anthropic\//, 'anthropic (parsing)'], [/services\/gateway\//, 'gateway'],
  ];
  for (const [re, name] of rules) if (re.test(u)) return name;
  return null;
}

let total = 0;
let idle = 0;
const selfByLabel = new Map<string, number>();
const inclusive = new Map<string, number>();
const callers = new Map<string, number>();
for (const [id, us] of self) {
  const n = byId.get(id)!;
  total += us;
  if (n.callFrame.functionName === '(idle)') { idle += us; continue; }
  selfByLabel.set(label(n), (selfByLabel.get(label(n)) ?? 0) + us);
  const seen = new Set<string>();
  const chain: string[] = [];
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const m = byId.get(cur)!;
    const c = component(m);
    if (c) seen.add(c);
    if (cur !== id && m.callFrame.url && chain.length < 6) chain.push(`${m.callFrame.functionName || '(anonymous)'}@${where(m.callFrame.url)}:${m.callFrame.lineNumber + 1}`);
  }
  for (const c of seen) inclusive.set(c, (inclusive.get(c) ?? 0) + us);
  if (callersOf !== undefined && n.callFrame.functionName === callersOf) callers.set(chain.join(' < '), (callers.get(chain.join(' < ')) ?? 0) + us);
}
const busy = total - idle;
const row = (us: number, name: string) =>
  `${(us / 1000).toFixed(0).padStart(7)} ms ${((us / busy) * 100).toFixed(1).padStart(5)} %${requests ? ` ${(us / requests).toFixed(1).padStart(7)} µs/req` : ''}  ${name}`;
console.log(`${file}${from > 0 ? ' (from the first request on)' : ''}: ${(total / 1000).toFixed(0)} ms profiled, ${(idle / 1000).toFixed(0)} ms idle, ${(busy / 1000).toFixed(0)} ms busy` +
  (requests ? ` (${(busy / requests).toFixed(0)} µs busy per request over ${requests} requests)` : ''));
console.log(`-- top ${top} functions by self time (share of busy time)`);
for (const [name, us] of [...selfByLabel].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(row(us, name));
console.log('-- inclusive time by component (a sample counts once in each component on its stack)');
for (const [name, us] of [...inclusive].sort((a, b) => b[1] - a[1])) console.log(row(us, name));
if (callersOf !== undefined) {
  console.log(`-- stacks into ${callersOf} (self time)`);
  for (const [chain, us] of [...callers].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(row(us, chain));
}
