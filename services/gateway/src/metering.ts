import { ZERO_USAGE, type TokenUsage } from '@tollgate/anthropic';
import type { UsageEvent, UsageStatus } from '@tollgate/events';
import type { KeyEntry } from '@tollgate/keys';
import { costMicros, type ResolvedModel } from '@tollgate/pricing';
import { injectContext, inSpan, noopTracer, SpanKind } from '@tollgate/telemetry';
import type { GatewayDeps } from './deps.ts';


/** Everything about one metered request that the usage event needs, gathered along the way. */
export interface Metered {
  requestId: string;
  ts: number;
  startedAt: number;
  caller: KeyEntry;
  resolved: ResolvedModel;
  stream: boolean;
}

export interface Outcome {
  status: UsageStatus;
  httpStatus: number;
  usage: TokenUsage | null;
  /** whether the usage is charged (false: the upstream failed, the hold is refunded) */
  billable: boolean;
  firstByteAt: number | null;
  upstreamRequestId: string | null;
}

/**
 * Settles a request exactly once: the hold shrinks to the actual cost (or is released), and
 * the usage event is built; `publish` then hands it to the log (after the response is sent,
 * so the log is off the client's latency). The ledger consumer debits the balance from that
 * event and closes the hold, so between the two steps `available` is already right.
 */
export async function settle(
  deps: GatewayDeps,
  m: Metered,
  outcome: Outcome,
  onStateError: (err: unknown) => void,
): Promise<{ event: UsageEvent; publish: () => Promise<void> }> {
  const usage = outcome.usage ?? ZERO_USAGE;
  const cost = outcome.billable ? costMicros(usage, m.resolved.model.prices) : 0n;
  const accountId = m.caller.account.id;
  try {
    if (cost > 0n) await deps.balances.settle(m.requestId, accountId, cost, deps.holdTtlMs);
    else await deps.balances.release(m.requestId, accountId);
  } catch (err) {
    // The usage event is what charges the account; hot state failing here only leaves the hold
    // to expire, so the event must be published whatever happened to the hold.
    onStateError(err);
  }
  const now = performance.now();
  const event: UsageEvent = {
    type: 'usage',
    event_id: m.requestId,
    ts: m.ts,
    account_id: accountId,
    key_id: m.caller.key.id,
    model: m.resolved.requested,
    catalog_model: m.resolved.model.id,
    upstream_model: m.resolved.upstreamModel,
    input_tokens: usage.input,
    output_tokens: usage.output,
    cache_read_tokens: usage.cacheRead,
    cache_write_5m_tokens: usage.cacheWrite5m,
    cache_write_1h_tokens: usage.cacheWrite1h,
    cost_micros: cost.toString(),
    status: outcome.status,
    http_status: outcome.httpStatus,
    latency_ms: Math.round(now - m.startedAt),
    ttft_ms: outcome.firstByteAt === null ? null : Math.round(outcome.firstByteAt - m.startedAt),
    stream: m.stream,
    upstream_request_id: outcome.upstreamRequestId,
    gateway_id: deps.gatewayId,
  };
  const model = m.resolved.model.id;
  if (deps.metrics) {
    deps.metrics.usage(model, outcome.usage, cost);
    if (outcome.firstByteAt !== null) deps.metrics.firstByte(model, m.stream, (outcome.firstByteAt - m.startedAt) / 1000);
  }
  const tracer = deps.tracer ?? noopTracer;
  // The producer span's context rides in the event's headers: the consumers' spans are its
  // children, so the request's one trace runs on into the ledger and the warehouse.
  const publish = () => inSpan(tracer, 'publish usage', {
    kind: SpanKind.PRODUCER,
    attributes: { 'messaging.operation.type': 'send', 'messaging.destination.name': 'usage', 'tollgate.event.id': event.event_id },
  }, () => deps.log.publish('usage', [{ event, headers: injectContext() }]));
  return { event, publish };
}
