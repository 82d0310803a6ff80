import { ZERO_USAGE, type TokenUsage, type UsageAnomaly } from '@tollgate/anthropic';
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
  /** the request's hold in micro-credits: the proven upper bound of what it may cost */
  holdMicros: bigint;
  /**
   * Most output tokens the upstream can bill for this request: `max_tokens` × the sampling
   * steps of its server-tool loop (`inputTokenBound(...).iterations`; each step is capped by
   * `max_tokens`, Anthropic "Messages API"). Absent: not checked.
   */
  maxOutputTokens?: number;
}

export interface Outcome {
  status: UsageStatus;
  httpStatus: number;
  usage: TokenUsage | null;
  /** whether the usage is charged (false: the upstream failed, the hold is refunded) */
  billable: boolean;
  firstByteAt: number | null;
  /** the upstream's `request-id` header as received (bounded here before it reaches the event) */
  upstreamRequestId: string | null;
  /** protocol anomalies of the upstream's usage (`StreamMeter.anomalies`, `readMessageUsage`) */
  anomalies?: readonly UsageAnomaly[];
}

/** Longest upstream request id the event carries; Anthropic's are ~30 characters. */
export const MAX_UPSTREAM_ID_CHARS = 128;

/**
 * The upstream's request id as the usage event may carry it: printable ASCII (0x20–0x7E), 1 to
 * `MAX_UPSTREAM_ID_CHARS` characters; anything else is null. A value a consumer cannot store
 * (the event decoder and the warehouse bound their text fields) must never be produced.
 */
export function boundedUpstreamId(id: string | null | undefined): string | null {
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_UPSTREAM_ID_CHARS) return null;
  return /^[\x20-\x7e]+$/.test(id) ? id : null;
}

/**
 * The money and status of one settled request (README, "Money and billing rules"):
 * - output above `m.maxOutputTokens` is clamped to it (no genuine answer can be longer) and
 *   flagged `output_over_max_tokens`; the returned `usage` is the clamped one;
 * - cost = ⌈Σ tokens × price / 1e6⌉ µc when billable, else 0;
 * - a cost above the hold is capped at the hold (`m.holdMicros`, the proven upper bound) and
 *   flagged `cost_over_bound`;
 * - an `ok` request with any anomaly becomes `usage_anomaly` (other statuses say more and stay).
 * Returns the anomalies sorted, each once.
 */
export function settlement(m: Pick<Metered, 'holdMicros' | 'resolved' | 'maxOutputTokens'>, outcome: Outcome): {
  cost: bigint; status: UsageStatus; anomalies: UsageAnomaly[]; usage: TokenUsage | null;
} {
  const anomalies = new Set(outcome.anomalies ?? []);
  let usage = outcome.usage;
  if (usage !== null && m.maxOutputTokens !== undefined && usage.output > m.maxOutputTokens) {
    usage = { ...usage, output: m.maxOutputTokens };
    anomalies.add('output_over_max_tokens');
  }
  let cost = outcome.billable ? costMicros(usage ?? ZERO_USAGE, m.resolved.model.prices) : 0n;
  if (cost > m.holdMicros) {
    cost = m.holdMicros;
    anomalies.add('cost_over_bound');
  }
  const status = outcome.status === 'ok' && anomalies.size > 0 ? 'usage_anomaly' : outcome.status;
  return { cost, status, anomalies: [...anomalies].sort(), usage };
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
  const settled = settlement(m, outcome);
  const { cost, status, anomalies } = settled;
  const usage = settled.usage ?? ZERO_USAGE;
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
    status,
    http_status: outcome.httpStatus,
    latency_ms: Math.round(now - m.startedAt),
    ttft_ms: outcome.firstByteAt === null ? null : Math.round(outcome.firstByteAt - m.startedAt),
    stream: m.stream,
    upstream_request_id: boundedUpstreamId(outcome.upstreamRequestId),
    gateway_id: deps.gatewayId,
  };
  if (anomalies.length > 0) event.anomalies = anomalies;
  const model = m.resolved.model.id;
  if (deps.metrics) {
    deps.metrics.usage(model, settled.usage, cost);
    for (const kind of anomalies) deps.metrics.usageAnomaly(kind);
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
