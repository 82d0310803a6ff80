// GET /admin/v1/upstreams shows one health per upstream folded from every gateway's report:
// circuit worst-of, in-flight and recent counts summed, the error rate of the sums, the latest
// cool-down still running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggregateHealth, type HealthSnapshot } from '../src/index.ts';

const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);
const snap = (gatewayId: string, o: Partial<HealthSnapshot>): HealthSnapshot => ({
  upstream_id: 'up_a', gateway_id: gatewayId, circuit: 'closed', cooldown_until: null, in_flight: 0,
  recent_requests: 0, recent_failures: 0, at: NOW - 1000, ...o,
});

test('three gateways: worst circuit, summed in-flight and counts, error rate of the sums, latest running cool-down', () => {
  const h = aggregateHealth([
    snap('gw1', { circuit: 'half_open', in_flight: 2, recent_requests: 10, recent_failures: 1, cooldown_until: NOW + 5_000, at: NOW - 800 }),
    snap('gw2', { circuit: 'open', in_flight: 0, recent_requests: 20, recent_failures: 20, cooldown_until: NOW + 30_000, at: NOW - 200 }),
    snap('gw3', { circuit: 'closed', in_flight: 5, recent_requests: 0, recent_failures: 0, cooldown_until: NOW - 1, at: NOW - 900 }),
  ], NOW);
  // failures 1 + 20 + 0 = 21 of 10 + 20 + 0 = 30 requests: 0.7
  assert.deepEqual(h, {
    circuit: 'open', cooldown_until: NOW + 30_000, in_flight: 7, recent_requests: 30, recent_failures: 21,
    recent_error_rate: 0.7, gateways: 3, reported_at: NOW - 200,
  });
});

test('half-open beats closed; a rate is rounded to 4 places; a cool-down already over is none', () => {
  const h = aggregateHealth([
    snap('gw1', { circuit: 'closed', recent_requests: 3, recent_failures: 1, cooldown_until: NOW }),
    snap('gw2', { circuit: 'half_open' }),
  ], NOW);
  // 1 / 3 = 0.33333… → 0.3333
  assert.deepEqual([h.circuit, h.recent_error_rate, h.cooldown_until, h.gateways], ['half_open', 0.3333, null, 2]);
});

test('no gateway reported: circuit and rate unknown (null), zero counts', () => {
  assert.deepEqual(aggregateHealth([], NOW), {
    circuit: null, cooldown_until: null, in_flight: 0, recent_requests: 0, recent_failures: 0,
    recent_error_rate: null, gateways: 0, reported_at: null,
  });
});
