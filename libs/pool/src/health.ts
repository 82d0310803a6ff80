// What `GET /admin/v1/upstreams` shows of an upstream's health: the reports of every gateway
// (HealthSnapshot, about once a second each, kept HEALTH_TTL_MS) folded into one picture.

import type { HealthSnapshot } from './types.ts';

/** One upstream's health across every gateway that reported it recently. */
export interface PoolHealth {
  /** worst of the gateways' circuits (`open` > `half_open` > `closed`); null: no gateway reported */
  circuit: 'closed' | 'open' | 'half_open' | null;
  /** epoch ms of the latest cool-down still running on any gateway (429 retry-after, unified limit rejected); null: none */
  cooldown_until: number | null;
  /** requests in flight, summed over the gateways */
  in_flight: number;
  /** attempts and failures in the last 60 s, summed */
  recent_requests: number;
  recent_failures: number;
  /** recent_failures / recent_requests, to 4 places; null when there were no requests */
  recent_error_rate: number | null;
  /** how many gateways reported */
  gateways: number;
  /** epoch ms of the newest report; null: none */
  reported_at: number | null;
}

const SEVERITY = { closed: 0, half_open: 1, open: 2 } as const;

/**
 * Folds the live snapshots of one upstream (one per gateway, as `PoolStore.health` returns
 * them) into one: circuit worst-of, in-flight and recent counts summed, the error rate of the
 * sums, the latest cool-down still in the future at `now` (epoch ms).
 */
export function aggregateHealth(snapshots: readonly HealthSnapshot[], now = Date.now()): PoolHealth {
  let circuit: PoolHealth['circuit'] = null;
  let cooldown: number | null = null;
  let inFlight = 0;
  let requests = 0;
  let failures = 0;
  let reportedAt: number | null = null;
  for (const s of snapshots) {
    if (circuit === null || SEVERITY[s.circuit] > SEVERITY[circuit]) circuit = s.circuit;
    if (s.cooldown_until !== null && s.cooldown_until > now && (cooldown === null || s.cooldown_until > cooldown)) cooldown = s.cooldown_until;
    inFlight += s.in_flight;
    requests += s.recent_requests;
    failures += s.recent_failures;
    if (reportedAt === null || s.at > reportedAt) reportedAt = s.at;
  }
  return {
    circuit, cooldown_until: cooldown, in_flight: inFlight, recent_requests: requests, recent_failures: failures,
    recent_error_rate: requests === 0 ? null : Math.round((failures / requests) * 10_000) / 10_000,
    gateways: snapshots.length, reported_at: reportedAt,
  };
}
