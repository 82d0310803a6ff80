// Issue 11's figures gathered at the end of `npm run bench`: the interleaved distributed-vs-
// embedded section's table, the repeated consumer throughput, and the "Issue 11 targets" summary
// (each target of outcomes 2–4 with its measured band and met / not met / skipped). Pure
// functions over the sections' results, so run.ts stays the orchestration.
import { machineCeiling, type ConsumerBenchResult } from './consumers.ts';
import type { DistAbResult } from './dist-ab.ts';
import type { PeersBenchResult } from './peers.ts';
import { median } from './load.ts';
import { counted } from './cli.ts';

/** Median, min and max of a list of figures (NaN when empty; NaN entries are dropped). */
export interface Band { median: number; min: number; max: number; n: number }

/** The band of `xs`, NaN entries left out. */
export function bandOf(xs: number[]): Band {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  return { median: median(s), min: s[0]!, max: s.at(-1)!, n: s.length };
}

/** "median (min–max)" with `digits` decimals, "-" when empty; a single figure alone. */
export function fmtBand(b: Band, digits: number): string {
  if (b.n === 0) return '-';
  const f = (v: number) => v.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return b.n === 1 ? f(b.median) : `${f(b.median)} (${f(b.min)}–${f(b.max)})`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

function leftTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** The interleaved section: per concurrency, per target req/s, CPU ms/request, p50/p99, ratio and added p50/p99 vs embedded, each median (min–max) over rounds. */
export function distAbReport(runs: DistAbResult[]): string {
  const lines: string[] = [];
  for (const r of runs) {
    lines.push(`distributed vs embedded gateway, interleaved (bench/dist-ab.ts): concurrency ${r.concurrency}, ${counted(r.rounds, 'round')} × ${r.sliceS} s per target ` +
      '(+0.5 s warmup), order rotated per round; each figure median (min–max) over the rounds; ratio and added = per-round vs embedded\'s slice of the same round');
    lines.push(table([
      ['target', 'req/s', 'gw cpu ms/req', 'p50 ms', 'p99 ms', 'ratio vs emb', 'added p50 ms', 'added p99 ms', 'errors', 'redis cpu ms/req', 'redis cmds/req', 'redis reads/req'],
      ...r.targets.map((t) => {
        const b = (f: (x: DistAbResult['targets'][number]['rounds'][number]) => number, d: number) => fmtBand(bandOf(t.rounds.map(f)), d);
        const emb = t.name === 'embedded';
        return [t.name, b((x) => x.rps, 0), b((x) => x.cpuMsPerRequest, 3), b((x) => x.p50, 2), b((x) => x.p99, 2),
          emb ? '-' : `${b((x) => x.ratio, 2)}x`, emb ? '-' : b((x) => x.addedP50, 2), emb ? '-' : b((x) => x.addedP99, 2), String(t.rounds.reduce((n, x) => n + x.errors, 0)),
          emb ? '-' : b((x) => x.redisCpuMsPerRequest, 3), emb ? '-' : b((x) => x.redisCommandsPerRequest, 2), emb ? '-' : b((x) => x.redisReadsPerRequest, 2)];
      }),
    ]));
  }
  return lines.join('\n');
}

/** A throughput row's name: group, for the warehouse where it inserted, for the ledger its members when more than one. */
const rowName = (f: ConsumerBenchResult['throughput'][number]) =>
  (f.warehouse ? `${f.group} (${f.warehouse})` : f.members ? `${f.group} (${f.members} members)` : f.group);

/**
 * Per consumer group (warehouse per kind): events/s, events per CPU-second of the consumer, the
 * whole machine's µs of CPU per event and the events/s that allows on all of the machine's cores
 * (`machineCeiling`; NaN rows dropped: no /proc), over the reps, median (min–max).
 */
export function consumerBands(reps: ConsumerBenchResult[]): Array<{ name: string; eventsPerS: Band; eventsPerCpuS: Band; machineUsPerEvent: Band; ceiling: Band; exact: boolean }> {
  const names = [...new Set(reps.flatMap((r) => r.throughput.map(rowName)))];
  return names.map((name) => {
    const rows = reps.flatMap((r) => r.throughput.filter((f) => rowName(f) === name).map((f) => ({ f, cores: r.cores })));
    const machine = rows.map(({ f }) => f.machineCpuUsPerEvent ?? NaN);
    const ceiling = rows.map(({ f, cores }) => (f.machineCpuUsPerEvent === undefined || cores === undefined ? NaN : machineCeiling(f.machineCpuUsPerEvent, cores)));
    return {
      name, eventsPerS: bandOf(rows.map(({ f }) => f.eventsPerS)), eventsPerCpuS: bandOf(rows.map(({ f }) => f.eventsPerCpuS)),
      machineUsPerEvent: bandOf(machine), ceiling: bandOf(ceiling), exact: rows.every(({ f }) => f.exact),
    };
  });
}

/** The repeated consumer throughput's table. */
export function consumerRepsReport(reps: ConsumerBenchResult[], events: number): string {
  return [
    `consumer throughput repeated (bench/consumers.ts, --consumer-reps ${reps.length}): each rep produces ${events.toLocaleString('en')} events on fresh topics and ` +
      'drains them with a fresh group, store and warehouse; median (min–max) over the reps',
    table([
      ['group', 'events/s', 'events per CPU-s', `machine µs/event`, `machine ceiling events/s (${reps[0]?.cores ?? '?'} cores)`, 'effects exact'],
      ...consumerBands(reps).map((c) => [c.name, fmtBand(c.eventsPerS, 0), fmtBand(c.eventsPerCpuS, 0), fmtBand(c.machineUsPerEvent, 1), fmtBand(c.ceiling, 0), c.exact ? 'yes' : 'NO']),
    ]),
  ].join('\n');
}

/** One row of the summary: the target, the figure measured (band), and the verdict. */
export interface TargetRow {
  outcome: number;
  target: string;
  /** "median (min–max) unit", or why it was not measured */
  measured: string;
  status: 'met' | 'not met' | 'skipped' | 'reported';
}

/** What the summary is computed from; a missing section makes its rows `skipped` with `skipped[section]` as the reason. */
export interface TargetInputs {
  consumerReps?: ConsumerBenchResult[];
  distAb?: DistAbResult[];
  peers?: PeersBenchResult;
  /** why a section did not run: keys `consumers`, `distAb`, `peers` */
  skipped: Partial<Record<'consumers' | 'distAb' | 'peers', string>>;
}

/**
 * The "Issue 11 targets" rows. A band's median decides met / not met (the min–max is printed
 * beside it, so a verdict that a noisy round would flip is visible).
 */
export function issue11Targets(i: TargetInputs): TargetRow[] {
  const rows: TargetRow[] = [];
  const skip = (outcome: number, target: string, why: string | undefined) => rows.push({ outcome, target, measured: `skipped (${why ?? 'section not run'})`, status: 'skipped' });
  const judge = (outcome: number, target: string, b: Band, digits: number, unit: string, ok: (m: number) => boolean, why?: string) => {
    if (b.n === 0) return skip(outcome, target, why);
    rows.push({ outcome, target, measured: `${fmtBand(b, digits)} ${unit}`.trim(), status: ok(b.median) ? 'met' : 'not met' });
  };
  // outcome 2: consumers
  const cons = i.consumerReps;
  if (!cons || cons.length === 0) {
    skip(2, 'warehouse ≥ 50,000 events/s per process', i.skipped.consumers);
    skip(2, 'ledger ≥ 50,000 events/s per process', i.skipped.consumers);
    skip(2, 'event-to-balance p99 ≤ 100 ms at 5,000/s', i.skipped.consumers);
    skip(2, 'event-to-queryable p99 ≤ 1 s at 5,000/s', i.skipped.consumers);
  } else {
    const bands = consumerBands(cons);
    const wh = bands.filter((b) => b.name.startsWith('warehouse'));
    if (wh.length === 0) skip(2, 'warehouse ≥ 50,000 events/s per process', 'no warehouse run');
    for (const w of wh) judge(2, `${w.name} ≥ 50,000 events/s per process`, w.eventsPerS, 0, 'events/s', (m) => m >= 50_000);
    // one row per ledger configuration (1 member, the default; LEDGER_CONSUMERS=2)
    const led = bands.filter((b) => b.name === 'ledger' || b.name.startsWith('ledger ('));
    if (led.length === 0) skip(2, 'ledger ≥ 50,000 events/s per process', 'no ledger run');
    for (const l of led) judge(2, `${l.name} ≥ 50,000 events/s per process`, l.eventsPerS, 0, 'events/s', (m) => m >= 50_000);
    // what the whole machine spent per event, and so the most it allows (the group's bound when
    // every core is busy: consumer, Kafka, Redis or the server share them)
    const cores = cons[0]?.cores;
    for (const b of bands) {
      if (b.ceiling.n === 0) continue;
      rows.push({ outcome: 2, target: `${b.name}: the machine's events/s at full use of its ${cores} cores`,
        measured: `${fmtBand(b.ceiling, 0)} events/s (${fmtBand(b.machineUsPerEvent, 1)} µs per event)`, status: 'reported' });
    }
    const lat = cons.flatMap((r) => r.latency);
    const l = lat.filter((f) => f.group === 'ledger');
    judge(2, 'event-to-balance p99 ≤ 100 ms at 5,000/s', bandOf(l.map((f) => f.p99Ms)), 1, 'ms', (m) => m <= 100, 'no latency phase');
    const whKinds = [...new Set(lat.filter((f) => f.group === 'warehouse').map((f) => f.warehouse))];
    if (whKinds.length === 0) skip(2, 'event-to-queryable p99 ≤ 1 s at 5,000/s', 'no latency phase');
    for (const k of whKinds) {
      judge(2, `event-to-queryable (${k}) p99 ≤ 1 s at 5,000/s`, bandOf(lat.filter((f) => f.group === 'warehouse' && f.warehouse === k).map((f) => f.p99Ms)), 0, 'ms', (m) => m <= 1000);
    }
  }
  // outcome 3: distributed gateway vs embedded (interleaved section)
  const dist = (c: DistAbResult | undefined) => c?.targets.find((t) => t.name === 'dist');
  const ab = i.distAb ?? [];
  const c1 = ab.find((r) => r.concurrency === 1);
  const cN = [...ab].sort((a, b) => b.concurrency - a.concurrency)[0];
  judge(3, `distributed ≥ 0.8× embedded req/s${cN ? ` (c=${cN.concurrency})` : ''}`, bandOf(dist(cN)?.rounds.map((x) => x.ratio) ?? []), 2, '×', (m) => m >= 0.8, i.skipped.distAb);
  judge(3, 'distributed added p99 ≤ 1 ms over embedded at c=1', bandOf(dist(c1)?.rounds.map((x) => x.addedP99) ?? []), 2, 'ms', (m) => m <= 1, i.skipped.distAb);
  // outcome 4: peers
  const p = i.peers;
  const tg = p?.targets.find((t) => t.name === 'tollgate');
  const pk = p?.targets.find((t) => t.name === 'portkey');
  const direct = p?.targets.find((t) => t.name === 'direct');
  const why = i.skipped.peers;
  judge(4, 'Tollgate ≥ 4× Portkey req/s', bandOf(tg && pk && !pk.skipped ? tg.reps.map((x, k) => x.rps / (pk.reps[k]?.rps ?? NaN)) : []), 2, '×', (m) => m >= 4,
    pk?.skipped ? `Portkey: ${pk.skipped}` : why);
  // Context for the row above, no target: the same ratio for a bare Node forwarder (node:http +
  // undici, no metering), i.e. the most any gateway on Node's HTTP stack reaches against Portkey.
  const floor = p?.targets.find((t) => t.name === 'floor');
  const floorRatio = bandOf(floor && !floor.skipped && pk && !pk.skipped ? floor.reps.map((x, k) => x.rps / (pk.reps[k]?.rps ?? NaN)) : []);
  if (floorRatio.n > 0) rows.push({ outcome: 4, target: 'bare Node forwarder ÷ Portkey req/s (a Node gateway\'s ceiling)', measured: `${fmtBand(floorRatio, 2)} ×`, status: 'reported' });
  const added = (t: typeof tg, k: 'p50' | 'p99') => bandOf(t && !t.skipped && direct && !direct.skipped ? t.reps.map((x, n) => x[k] - (direct.reps[n]?.[k] ?? NaN)) : []);
  judge(4, 'added latency p50 ≤ 0.3 ms at c=1 (vs direct)', added(tg, 'p50'), 2, 'ms', (m) => m <= 0.3, why);
  judge(4, 'added latency p99 ≤ 0.8 ms at c=1 (vs direct)', added(tg, 'p99'), 2, 'ms', (m) => m <= 0.8, why);
  // Context for the two rows above, no target: what the bare forwarder itself adds in the same
  // rounds, i.e. the least a gateway on Node's HTTP stack adds on this machine (client, simulator
  // and gateway share its cores, so the tail is mostly waiting for one).
  for (const k of ['p50', 'p99'] as const) {
    const b = added(floor, k);
    if (b.n > 0) rows.push({ outcome: 4, target: `bare Node forwarder's added latency ${k} at c=1 (vs direct)`, measured: `${fmtBand(b, 2)} ms`, status: 'reported' });
  }
  const mem = p?.memory;
  // RSS alone can even shrink while the streams are open (the allocator returns pages freed since the
  // idle sample), so the judged figure is the larger of the RSS growth and the JS heap + external growth.
  judge(4, '≤ 50 MB per 1,000 open streams (max of RSS, heap + external)', bandOf(mem ? [Math.max(mem.rssPer1000MB, mem.heapPer1000MB + mem.externalPer1000MB)] : []), 1, 'MB', (m) => m <= 50, why ?? (p ? 'memory phase not run' : undefined));
  if (mem) rows.push({ outcome: 4, target: 'idle RSS reported', measured: `${(mem.idle.rss / 1e6).toFixed(1)} MB`, status: 'reported' });
  else skip(4, 'idle RSS reported', why ?? (p ? 'memory phase not run' : undefined));
  return rows;
}

/** The summary table, with the load average at the start and end of the run. */
export function targetsReport(rows: TargetRow[], load: { start: number[]; end: number[] }): string {
  const la = (x: number[]) => x.map((v) => v.toFixed(2)).join(' ');
  return [
    `Issue 11 targets (median (min–max) over the section's rounds/reps; the median decides; load average 1/5/15 min: start ${la(load.start)}, end ${la(load.end)})`,
    leftTable([['outcome', 'target', 'measured', 'status'], ...rows.map((r) => [String(r.outcome), r.target, r.measured, r.status])]),
  ].join('\n');
}

// Run directly (`node bench/targets.ts`): say what to run instead of silently doing nothing.
if (import.meta.main) (await import('./cli.ts')).notACommand(import.meta, 'npm run bench (see npm run bench -- --help)');
