// The bench's issue 11 summary (bench/targets.ts), from synthetic section results: the consumer
// rows judge events/s against 50,000, and each group's machine ceiling (the whole machine's CPU
// per event shared over its cores) is reported beside them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { machineCeiling, type ConsumerBenchResult, type ThroughputFigure } from '../bench/consumers.ts';
import { consumerRepsReport, issue11Targets } from '../bench/targets.ts';

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
