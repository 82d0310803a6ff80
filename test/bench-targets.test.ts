// The bench's issue 11 summary (bench/targets.ts), from synthetic section results: the consumer
// rows judge events/s against 50,000, and each group's machine ceiling (the whole machine's CPU
// per event shared over its cores) is reported beside them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { machineCeiling, type ConsumerBenchResult, type ThroughputFigure } from '../bench/consumers.ts';
import { consumerRepsReport, issue11Targets } from '../bench/targets.ts';
import type { PeersBenchResult } from '../bench/peers.ts';

const drain = (f: Partial<ThroughputFigure> & Pick<ThroughputFigure, 'group' | 'eventsPerS'>): ThroughputFigure => ({
  mode: 'batch', events: 1_000_000, seconds: 1_000_000 / f.eventsPerS, eventsPerCpuS: f.eventsPerS * 1.1, exact: true, ...f,
});

const reps: ConsumerBenchResult[] = [
  { produceEventsPerS: 1, cores: 2, latency: [], throughput: [
    drain({ group: 'warehouse', warehouse: 'server', eventsPerS: 45_000, machineCpuUsPerEvent: 40 }),
    drain({ group: 'ledger', eventsPerS: 48_000, machineCpuUsPerEvent: 32 }),
    drain({ group: 'ledger', members: 2, eventsPerS: 51_000 }),
  ] },
  { produceEventsPerS: 1, cores: 2, latency: [], throughput: [
    drain({ group: 'warehouse', warehouse: 'server', eventsPerS: 47_000, machineCpuUsPerEvent: 37.5 }),
    drain({ group: 'ledger', eventsPerS: 50_500, machineCpuUsPerEvent: 30 }),
    drain({ group: 'ledger', members: 2, eventsPerS: 52_000 }),
  ] },
];

test('machine ceiling: cores × 10^6 ÷ the machine\'s µs of CPU per event, exactly', () => {
  assert.equal(machineCeiling(40, 2), 50_000);
  assert.equal(machineCeiling(37.5, 2), 53_333.333333333336);
  assert.equal(machineCeiling(25, 4), 160_000);
});

test('issue 11 summary: each consumer configuration judged by its median events/s, then each one\'s machine ceiling reported where the machine\'s CPU was read', () => {
  const rows = issue11Targets({ consumerReps: reps, skipped: {} }).filter((r) => r.outcome === 2);
  assert.deepEqual(rows.slice(0, 5), [
    { outcome: 2, target: 'warehouse (server) ≥ 50,000 events/s per process', measured: '46,000 (45,000–47,000) events/s', status: 'not met' },
    { outcome: 2, target: 'ledger ≥ 50,000 events/s per process', measured: '49,250 (48,000–50,500) events/s', status: 'not met' },
    { outcome: 2, target: 'ledger (2 members) ≥ 50,000 events/s per process', measured: '51,500 (51,000–52,000) events/s', status: 'met' },
    // 2 cores: 10^6 × 2 ÷ 40 = 50,000 and ÷ 37.5 = 53,333; ÷ 32 = 62,500 and ÷ 30 = 66,667
    { outcome: 2, target: 'warehouse (server): the machine\'s events/s at full use of its 2 cores', measured: '51,667 (50,000–53,333) events/s (38.8 (37.5–40.0) µs per event)', status: 'reported' },
    { outcome: 2, target: 'ledger: the machine\'s events/s at full use of its 2 cores', measured: '64,583 (62,500–66,667) events/s (31.0 (30.0–32.0) µs per event)', status: 'reported' },
  ]);
  // no machine figure (no /proc): no ceiling row for that configuration
  assert.equal(rows.filter((r) => r.target.startsWith('ledger (2 members):')).length, 0);
});

test('consumer reps table: the machine\'s µs per event and its ceiling beside events/s, "-" where not read', () => {
  const lines = consumerRepsReport(reps, 1_000_000).split('\n');
  assert.match(lines[1]!, /^group\s+events\/s\s+events per CPU-s\s+machine µs\/event\s+machine ceiling events\/s \(2 cores\)\s+effects exact$/);
  assert.match(lines[2]!, /^warehouse \(server\)\s+46,000 \(45,000–47,000\)\s+50,600 \(49,500–51,700\)\s+38\.8 \(37\.5–40\.0\)\s+51,667 \(50,000–53,333\)\s+yes$/);
  assert.match(lines[4]!, /^ledger \(2 members\)\s+51,500 \(51,000–52,000\)\s+56,650 \(56,100–57,200\)\s+-\s+-\s+yes$/);
});

test('issue 11 summary, outcome 4: Tollgate judged against Portkey and direct; the bare forwarder\'s ratio and added latency reported beside, from the same rounds', () => {
  const rep = (rps: number, p50: number, p99: number) => ({ rps, p50, p99, errors: 0, cpuMsPerRequest: undefined });
  const peers: PeersBenchResult = {
    concurrency: 32, durationS: 5, warmupS: 1, watched: [], problems: [],
    targets: [
      { name: 'direct', description: '', reps: [rep(8000, 2.5, 3.5), rep(7000, 2.75, 4)] },
      { name: 'tollgate', description: '', reps: [rep(2000, 3.25, 6), rep(1500, 3.5, 7.5)] },
      { name: 'floor', description: '', reps: [rep(6000, 2.75, 4.5), rep(5000, 2.5, 3.25)] },
      { name: 'portkey', description: '', reps: [rep(1600, 3.5, 6), rep(1250, 4, 7)] },
    ],
  };
  const rows = issue11Targets({ peers, skipped: {} }).filter((r) => r.outcome === 4);
  assert.deepEqual(rows, [
    // 2000 / 1600 = 1.25, 1500 / 1250 = 1.2
    { outcome: 4, target: 'Tollgate ≥ 4× Portkey req/s', measured: '1.23 (1.20–1.25) ×', status: 'not met' },
    // 6000 / 1600 = 3.75, 5000 / 1250 = 4
    { outcome: 4, target: 'bare Node forwarder ÷ Portkey req/s (a Node gateway\'s ceiling)', measured: '3.88 (3.75–4.00) ×', status: 'reported' },
    // 3.25 − 2.5 = 0.75, 3.5 − 2.75 = 0.75; 6 − 3.5 = 2.5, 7.5 − 4 = 3.5
    { outcome: 4, target: 'added latency p50 ≤ 0.3 ms at c=1 (vs direct)', measured: '0.75 (0.75–0.75) ms', status: 'not met' },
    { outcome: 4, target: 'added latency p99 ≤ 0.8 ms at c=1 (vs direct)', measured: '3.00 (2.50–3.50) ms', status: 'not met' },
    // 2.75 − 2.5 = 0.25, 2.5 − 2.75 = −0.25; 4.5 − 3.5 = 1, 3.25 − 4 = −0.75
    { outcome: 4, target: 'bare Node forwarder\'s added latency p50 at c=1 (vs direct)', measured: '0.00 (-0.25–0.25) ms', status: 'reported' },
    { outcome: 4, target: 'bare Node forwarder\'s added latency p99 at c=1 (vs direct)', measured: '0.13 (-0.75–1.00) ms', status: 'reported' },
    { outcome: 4, target: '≤ 50 MB per 1,000 open streams (max of RSS, heap + external)', measured: 'skipped (memory phase not run)', status: 'skipped' },
    { outcome: 4, target: 'idle RSS reported', measured: 'skipped (memory phase not run)', status: 'skipped' },
  ]);
});
