import { MAX_TOKEN_COUNT, ZERO_USAGE, type TokenUsage, type UsageAnomaly, type UsageTally } from '@tollgate/anthropic';
import type { Appended, UsageEvent, UsageEventV2, UsageStatus } from '@tollgate/events';
import type { KeyEntry } from '@tollgate/keys';
import {
  DIMENSIONS, fromTokenUsage, priceRequest, quantities as toQuantities, resolveAdvisor, resolveIteration, resolveServing, servedModelOf, UNIT_DIMENSIONS,
  type Dimension, type PricedRequest, type PriceVersion, type PricingIteration, type Quantities, type ResolvedModel, type UnitDimension,
} from '@tollgate/pricing';
import { context, failSpan, injectContext, noopTracer, SpanKind, trace } from '@tollgate/telemetry';
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
  /** the price version captured when the request arrived: it prices the request to the end */
  version: PriceVersion;
  /** the account's price list (`AccountRecord.price_list`), null or absent for the catalog's own prices */
  priceList?: string | null;
  /**
   * Most uses of each server-tool unit the request allows (`ServerTools.units`: Σ `max_uses` of
   * its tools of that unit, the catalog bound where the gateway sent it); null or absent: not
   * bounded (code execution is billed by time). Reported uses above it are clamped.
   */
  maxUnits?: Readonly<Partial<Record<UnitDimension, number | null>>>;
  /**
   * `usage.iterations` types outside `maxOutputTokens`, each with the most output its steps may
   * write in all (a compaction's summary on a request that may compact: its max_tokens, key
   * `compaction`; the advisors' answers at each advisor model on one with advisor tools:
   * `advisorOutputTokens`, key `advisorBoundKey(catalog id)`): what the hold priced for
   * them; above it clamped in order and flagged `output_over_max_tokens`. Default none.
   */
  outputBounds?: Readonly<Record<string, number>>;
  /**
   * The attempts of a request with `fallbacks` (absent: none), in the order they run, the
   * requested model's first (Anthropic "Refusals and fallback": each runs after the one before
   * declined, and every one that ran is reported as steps of `usage.iterations` naming its model).
   * `maxOutputTokens` is then their sum, and `maxUnits` and `outputBounds` are one attempt's:
   * the settlement counts them once per attempt the answer shows may have run.
   */
  attempts?: readonly AttemptBound[];
}

/** One attempt of a fallback chain (`Metered.attempts`). */
export interface AttemptBound {
  /** the most output it writes, tokens: its `max_tokens` (else the one sent; at most its model's limit where the hold counts one) × the steps */
  tokens: number;
  /** catalog ids of the models it may be priced at (the model, its catalog `fallback_models`); null: any (a name the catalog does not tell) */
  models: readonly string[] | null;
}

/** What the upstream's answer says about its price, besides the token counts. */
export interface UsageReport {
  /** the merged usage of the message (`StreamMeter.tally`, `readMessage(...).tally`) */
  tally: UsageTally;
  /** the answer's top-level `model` (the serving model), null when none was read */
  model: string | null;
  stopReason: string | null;
  /** some content was produced; a refusal before any costs 0 */
  outputSeen: boolean;
}

export interface Outcome {
  status: UsageStatus;
  httpStatus: number;
  usage: TokenUsage | null;
  /** every dimension and pricing condition of the answer; absent: the token classes of `usage` only */
  report?: UsageReport | null;
  /** whether the usage is charged (false: the upstream failed, the hold is refunded) */
  billable: boolean;
  /** `performance.now()` of the first upstream body byte (the time-to-first-byte metric), null when none came */
  firstByteAt: number | null;
  /**
   * `performance.now()` when the first token of the answer arrived (the event's `ttft_ms`):
   * for a stream, the first event that carries content (`StreamMeter.outputSeen` turns true:
   * a non-empty text/thinking/JSON delta or a block with content of its own); for a JSON
   * answer, its first body byte when the message has content (the client cannot see a token
   * earlier). Null when no token came or the client got an error instead of the answer (an
   * upstream error status, an error body, a framing error), so an error is never a "first token".
   */
  firstTokenAt: number | null;
  /** the upstream's `request-id` header as received (bounded here before it reaches the event) */
  upstreamRequestId: string | null;
  /** protocol anomalies of the upstream's usage (`StreamMeter.anomalies`, `readMessageUsage`) */
  anomalies?: readonly UsageAnomaly[];
}

/** The `Metered.outputBounds` key of advisor answers at one catalog model. */
export function advisorBoundKey(catalogModelId: string): string {
  return `advisor_message ${catalogModelId}`;
}

/** Most distinct unknown usage names one event records; the rest are recorded as `OTHER_UNKNOWN`. */
export const MAX_UNKNOWN_NAMES = 16;
/** The name unknown usage fields past `MAX_UNKNOWN_NAMES` are recorded under. */
export const OTHER_UNKNOWN = 'other_usage_fields';
/** Most names the event's `unpriced` carries (the event decoder's bound); past it the last says `and_more`. */
export const MAX_UNPRICED_NAMES = 64;

/** Where each unit dimension sits under `usage.server_tool_use` (from DIMENSIONS' wire paths). */
const SERVER_TOOL_UNITS: ReadonlyMap<string, Dimension> = new Map(DIMENSIONS
  .filter((d) => d.kind === 'unit' && d.wire.length === 2 && d.wire[0] === 'server_tool_use')
  .map((d) => [d.wire[1] as string, d.key]));

/** Token classes from the v1 shape plus the units of a `server_tool_use` record; names no dimension reads go to `unknown`. */
function quantitiesOf(usage: TokenUsage, serverToolUse: Readonly<Record<string, number>>, unknown: Record<string, number>): Record<Dimension, number> {
  const q: Record<Dimension, number> = { ...fromTokenUsage(usage) };
  for (const [k, v] of Object.entries(serverToolUse)) {
    const dim = SERVER_TOOL_UNITS.get(k);
    if (dim !== undefined) q[dim] = v;
    else {
      // Each iteration may name its own fields: past MAX_UNKNOWN names they are recorded as one.
      let name = `server_tool_use.${k}`;
      if (!Object.hasOwn(unknown, name) && Object.keys(unknown).length >= MAX_UNKNOWN_NAMES) name = OTHER_UNKNOWN;
      unknown[name] = Math.max(unknown[name] ?? 0, v);
    }
  }
  return q;
}

/**
 * Every dimension of an answer (DIMENSIONS order) and its iterations, ready for `priceRequest`.
 * Totals are per dimension the larger of the top-level usage and the sum over `usage.iterations`:
 * Anthropic leaves compaction steps out of the top level, and a top level that does include every
 * step equals the sum, so either way nothing is charged twice or left out. A compaction step
 * names no model (the official SDK's `BetaCompactionIterationUsage`): it is its attempt's, the
 * model of the next sampling step that names one (which reads its summary), else of the one
 * before; any other step without its own `model` was served by the answer's serving model
 * (`servingName`). `named` says per iteration whether its model was reported (its own, or a
 * compaction's neighbour's) rather than assumed.
 */
export function measured(usage: TokenUsage, report: UsageReport | null | undefined, fallbackModel: string): {
  quantities: Record<Dimension, number>; iterations: PricingIteration[]; unknown: Record<string, number>; named: boolean[];
  /** `servingName` of the report (null without one, or when it names none) */
  servedAs: string | null;
} {
  const unknown: Record<string, number> = {};
  if (!report) return { quantities: { ...fromTokenUsage(usage) }, iterations: [], unknown, named: [], servedAs: null };
  const totals = quantitiesOf(usage, report.tally.serverToolUse(), unknown);
  for (const [k, v] of Object.entries(report.tally.otherCounts())) unknown[k] = v;
  const iterations: PricingIteration[] = [];
  const named: boolean[] = [];
  const sums: Record<Dimension, number> = { ...fromTokenUsage(ZERO_USAGE) };
  const wire = report.tally.iterations() ?? [];
  const servedAs = servingName(report, wire);
  const serving = servedAs ?? fallbackModel;
  // the model of the sampling step (not a compaction's nor an advisor's) nearest after i that names one, else before
  const sampled = (i: number): string | null => {
    const pick = (it: { type: string; model: string | null }) => it.type !== 'compaction' && it.type !== 'advisor_message' && it.model !== null;
    return wire.slice(i + 1).find(pick)?.model ?? wire.slice(0, i).findLast(pick)?.model ?? null;
  };
  wire.forEach((it, i) => {
    const q = quantitiesOf(it.usage, it.serverToolUse, unknown);
    for (const d of DIMENSIONS) sums[d.key] = Math.min(MAX_TOKEN_COUNT, sums[d.key] + q[d.key]);
    const model = it.model ?? (it.type === 'compaction' ? sampled(i) : null);
    iterations.push({ type: it.type, model: model ?? serving, quantities: toQuantities(q) });
    named.push(model !== null);
  });
  // Cache writes are one count with a 5 m / 1 h split (usageFromWire; docs/decisions.md "Cache
  // writes are one counter with a split"): taken per class, a top level of 1 h 1000 over an
  // iteration of 5 m 1000 (one without a breakdown reads as 5 m) charged 2000 writes.
  const topWrites = totals.cache_write_5m + totals.cache_write_1h;
  const stepWrites = sums.cache_write_5m + sums.cache_write_1h;
  // the top level leaves compaction steps out: its 1 h reading plus theirs
  const top1h = totals.cache_write_1h + iterations.reduce((n, it) => (it.type === 'compaction' ? n + it.quantities.cache_write_1h : n), 0);
  for (const d of DIMENSIONS) totals[d.key] = Math.min(MAX_TOKEN_COUNT, Math.max(totals[d.key], sums[d.key]));
  if (stepWrites > 0) {
    const writes = Math.min(MAX_TOKEN_COUNT, Math.max(topWrites, stepWrites));
    totals.cache_write_1h = Math.min(writes, Math.max(top1h, sums.cache_write_1h));
    totals.cache_write_5m = writes - totals.cache_write_1h;
    alignCacheWrites(iterations, totals.cache_write_5m);
  }
  return { quantities: totals, iterations, unknown, named, servedAs };
}

/**
 * The model that served an answer, as reported: the model of its `fallback_message` step where a
 * fallback served and the step names it (a stream's `message_start` names the requested model,
 * sent before any attempt declined), else the answer's `model`; null when neither is known.
 * `wire` is `report.tally.iterations()`.
 */
function servingName(report: UsageReport, wire: readonly { type: string; model: string | null }[]): string | null {
  return wire.findLast((it) => it.type === 'fallback_message' && it.model !== null)?.model ?? report.model;
}

/**
 * Makes the iterations' cache-write splits fit the request's (`fiveMinute` 5 m writes, whose
 * total with the 1 h ones is at least the iterations', and whose 1 h part is at least theirs, as
 * `measured` sets them): 5 m writes the iterations hold beyond the request's are moved, in
 * iteration order, to 1 h, so the writes beyond the iterations (the top level's remainder,
 * `priceRequest`) are never negative in one class while counted again in the other. A write some
 * report calls 1 h is so priced as 1 h (the dearer reading, as the hold assumed).
 */
function alignCacheWrites(iterations: PricingIteration[], fiveMinute: number): void {
  let over = iterations.reduce((n, it) => n + it.quantities.cache_write_5m, 0) - fiveMinute;
  for (let i = 0; i < iterations.length && over > 0; i++) {
    const q = iterations[i]!.quantities;
    const moved = Math.min(q.cache_write_5m, over);
    if (moved === 0) continue;
    iterations[i] = { ...iterations[i]!, quantities: toQuantities({ ...q, cache_write_5m: q.cache_write_5m - moved, cache_write_1h: q.cache_write_1h + moved }) };
    over -= moved;
  }
}

/** The settled money of one request: the charge, the price it was computed with, and the quantities. */
export interface Settlement {
  cost: bigint;
  status: UsageStatus;
  anomalies: UsageAnomaly[];
  /** the token classes after the output clamp (null when the upstream reported none) */
  usage: TokenUsage | null;
  /** every dimension, totals over the request, after the output clamp */
  quantities: Quantities;
  /** `usage.iterations` as priced (same order as `priced.iterations`) */
  iterations: PricingIteration[];
  /** the price under the request's version (cost before the cap at the hold, upstream cost, unit prices, …) */
  priced: PricedRequest;
  /** the model that served the answer as reported (`servingName`: a `fallback_message` step's, else the answer's `model`); null when none */
  servedModel: string | null;
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
 * How many attempts of a fallback chain (`attempts`, in the order they run) the answer shows
 * may have run, at most, and each step's catalog model (`resolve`, as pricing resolves a step:
 * `resolveIteration`; undefined for a step that names no model, one the catalog does not know,
 * or one whose name could be two attempts' models). Attempts run as a prefix of the chain, each
 * that ran reported as steps of `usage.iterations` (the official SDK's
 * `BetaFallbackMessageIterationUsage`: a declined hop is a `message` step), the last sampling
 * step (not a compaction's or an advisor's) being the last attempt's. So: an answer without
 * iterations is one attempt's, the requested one, when the serving model is one it may be priced
 * at (else any number: a fallback served without reporting its steps); with iterations, up to
 * the last attempt that may be the last sampling step's model (all, where that step names none
 * the catalog knows). Never fewer than ran, even where a report leaves a declined attempt's step out.
 */
function chainRun(attempts: readonly AttemptBound[], iterations: readonly PricingIteration[], named: readonly boolean[],
  served: { model: { id: string }; resolved: boolean } | undefined, resolve: (it: PricingIteration) => { model: { id: string }; resolved: boolean },
  plain: (name: string) => { id: string } | undefined): {
  ran: number; stepIds: Array<string | undefined>;
} {
  const may = (a: AttemptBound, id: string) => a.models === null || a.models.includes(id);
  const later = attempts.slice(1);
  const stepIds = iterations.map((it, i) => {
    if (!named[i]) return undefined;
    const s = resolve(it);
    if (!s.resolved) return undefined;
    // A name the requested model was sent as (a group's model_mapping) that is also another
    // catalog model's own, which a later attempt may be, could be either attempt's step; so
    // could a fallback's step resolved to a model only the requested attempt may be (it is no
    // step of that attempt): the chain's sum alone bounds such a step.
    const own = plain(it.model)?.id;
    if (own !== undefined && own !== s.model.id && later.some((a) => may(a, own))) return undefined;
    if (it.type === 'fallback_message' && !later.some((a) => may(a, s.model.id))) return undefined;
    return s.model.id;
  });
  if (iterations.length === 0) {
    const id = served?.resolved === true ? served.model.id : undefined;
    return { ran: id !== undefined && attempts[0]!.models!.includes(id) ? 1 : attempts.length, stepIds };
  }
  const sampling = iterations.findLastIndex((it) => it.type !== 'compaction' && it.type !== 'advisor_message');
  const last = sampling < 0 ? undefined : stepIds[sampling];
  const fit = last === undefined ? 0 : attempts.findLastIndex((a) => may(a, last)) + 1;
  return { ran: fit > 0 ? fit : attempts.length, stepIds };
}

/**
 * The money and status of one settled request (README, "Money and billing rules"):
 * - every dimension the answer reports is priced under the request's price version
 *   (`priceRequest`: tiers, multipliers, fast, iterations at their own model, the account's
 *   price list, refusal before output = 0, unpriced dimensions recorded), rounded up once;
 * - output above `m.maxOutputTokens` is clamped to it (no genuine answer can be longer), in the
 *   totals and across the iterations in order, and flagged `output_over_max_tokens`; steps of a
 *   type `m.outputBounds` names (a compaction, an advisor's answers per model) are outside it and
 *   clamped to their own bound; the returned `usage` and `quantities` are the clamped ones;
 * - on a request with `fallbacks` (`m.attempts`), only the attempts the answer shows may have
 *   run count (`chainRun`): the output ceiling is the sum of theirs, each server-tool bound and
 *   each compaction and advisor bound is one attempt's × their number; before that sum, per
 *   catalog model, the steps that name a model priced at it (`resolveIteration`; and the remainder,
 *   at the serving model) are clamped to what those attempts that may be priced at it may write,
 *   and its compaction steps to one summary per such attempt; flagged `output_over_max_tokens`;
 * - server-tool uses above the request's declared bound (`m.maxUnits`: its `max_uses`; 0 for a
 *   unit no tool of the request enables) are clamped to it, in the totals and across the
 *   iterations in order, and flagged `units_over_max_uses` (the upstream may not run a tool more
 *   than `max_uses` times);
 * - the charge is that price when billable, else 0;
 * - a cost above the hold is capped at the hold (`m.holdMicros`, the proven upper bound) and
 *   flagged `cost_over_bound`;
 * - an `ok` request with any anomaly becomes `usage_anomaly` (other statuses say more and stay).
 * Returns the anomalies sorted, each once. Throws only on a programming error (bad quantities).
 */
export function settlement(m: Pick<Metered, 'holdMicros' | 'resolved' | 'maxOutputTokens' | 'version' | 'priceList' | 'maxUnits' | 'outputBounds' | 'attempts'>, outcome: Outcome): Settlement {
  const anomalies = new Set(outcome.anomalies ?? []);
  let usage = outcome.usage;
  const report = outcome.report ?? null;
  const { quantities, iterations, unknown, named, servedAs } = measured(usage ?? ZERO_USAGE, report, m.resolved.upstreamModel);
  // A bound holds for the request as priced: its total and its iterations, each priced at its
  // own model, clamped alike (the top level's remainder is what the iterations leave of it).
  // Iterations `exempt` says are outside the bound keep theirs, and the total keeps their sum.
  // `inside` says which iterations the bound covers; `rest` whether it covers the top level's
  // remainder beyond the iterations too (priced at the serving model).
  const clamp = (dimension: Dimension, bound: number, inside: (i: number) => boolean = () => true, rest = true): boolean => {
    let steps = 0;
    let counted = 0;
    iterations.forEach((it, i) => {
      steps += it.quantities[dimension];
      if (inside(i)) counted += it.quantities[dimension];
    });
    if (rest) counted += Math.max(0, quantities[dimension] - steps);
    if (counted <= bound) return false;
    let left = bound;
    let cut = 0;
    for (let i = 0; i < iterations.length; i++) {
      const it = iterations[i]!;
      if (!inside(i)) continue;
      const kept = Math.min(it.quantities[dimension], left);
      left -= kept;
      if (kept === it.quantities[dimension]) continue;
      cut += it.quantities[dimension] - kept;
      iterations[i] = { ...it, quantities: toQuantities({ ...it.quantities, [dimension]: kept }) };
    }
    // the total loses what the covered steps lost, and with the remainder, all it had above the bound
    quantities[dimension] -= rest ? counted - bound : cut;
    return true;
  };
  const catalog = m.version.catalog;
  const served = servedAs === null ? undefined : resolveServing(catalog, servedAs, m.resolved.model);
  const main = served?.model ?? m.resolved.model;
  // Of a fallback chain, the attempts that may have run, and each step's model where it names one
  // the catalog knows (docs/decisions.md, "Each fallback attempt's output is bounded by its own max_tokens").
  const { ran, stepIds } = m.attempts === undefined || report === null
    ? { ran: m.attempts?.length ?? 1, stepIds: [] as Array<string | undefined> }
    : chainRun(m.attempts, iterations, named, served, (it) => resolveIteration(catalog, it, m.resolved.model, main), (name) => servedModelOf(catalog, name));
  const first = m.attempts?.slice(0, ran);
  // max_tokens bounds each sampling step's output; a compaction's summary and an advisor's
  // answers are not such steps, where the request can run them: each type has its own bound,
  // what the hold priced for it once per attempt (holdSteps, advisorOutputTokens).
  const bounds = m.outputBounds ?? {};
  const advised = Object.keys(bounds).some((k) => k.startsWith(advisorBoundKey('')));
  // an advisor step's bound is its model's (as pricing resolves the step's model); an advisor
  // model no advisor tool names has none (0)
  const exempt = (type: string) => (type === 'compaction' && Object.hasOwn(bounds, 'compaction')) || (type === 'advisor_message' && advised);
  // an advisor answered by one of its model's catalog fallback_models draws on that advisor's
  // bound, as the hold priced its calls at the dearest of them (sharedHold)
  const advisorKey = (id: string): string => {
    const own = advisorBoundKey(id);
    if (Object.hasOwn(bounds, own)) return own;
    const tool = catalog.models.find((t) => t.fallbackModels.has(id) && Object.hasOwn(bounds, advisorBoundKey(t.id)));
    return tool === undefined ? own : advisorBoundKey(tool.id);
  };
  const keyOf = (it: PricingIteration): string | undefined => !exempt(it.type) ? undefined
    : it.type === 'compaction' ? 'compaction' : advisorKey(resolveAdvisor(catalog, it.model, m.resolved.model).model.id);
  const bounded = (i: number) => !exempt(iterations[i]!.type);
  const over = (): void => {
    if (usage !== null) usage = { ...usage, output: Math.min(usage.output, quantities.output) };
    anomalies.add('output_over_max_tokens');
  };
  // Per catalog model, what the attempts that may have run as it may write (every one's models
  // known), for its steps and, at the serving model, the remainder beyond the steps.
  const perModel = (tokens: (a: AttemptBound) => number): Map<string, number> | undefined => {
    if (first === undefined || iterations.length === 0 || first.some((a) => a.models === null)) return undefined;
    const by = new Map<string, number>();
    for (const a of first) for (const id of a.models!) by.set(id, (by.get(id) ?? 0) + tokens(a));
    return by;
  };
  const restAt = served?.resolved === true ? main.id : undefined;
  // Each attempt within its own ceiling first, so the chain's sum never takes from one attempt
  // what another reported above its own.
  for (const [id, bound] of perModel((a) => a.tokens) ?? []) {
    if (clamp('output', bound, (i) => stepIds[i] === id && bounded(i), restAt === id)) over();
  }
  const ceiling = first === undefined ? m.maxOutputTokens : first.reduce((n, a) => n + a.tokens, 0);
  if (ceiling !== undefined && clamp('output', ceiling, bounded)) {
    if (usage !== null) usage = { ...usage, output: Math.min(usage.output, ceiling) };
    anomalies.add('output_over_max_tokens');
  }
  // A compaction's summary is held once per attempt at that attempt's models: per model first.
  const summary = bounds['compaction'];
  if (summary !== undefined) {
    for (const [id, bound] of perModel(() => summary) ?? []) {
      if (clamp('output', bound, (i) => stepIds[i] === id && iterations[i]!.type === 'compaction', false)) over();
    }
  }
  const left = new Map(Object.entries(bounds).map(([k, v]) => [k, v * ran]));
  for (let i = 0; i < iterations.length; i++) {
    const it = iterations[i]!;
    const key = keyOf(it);
    if (key === undefined) continue;
    const kept = Math.min(it.quantities.output, left.get(key) ?? 0);
    left.set(key, (left.get(key) ?? 0) - kept);
    if (kept === it.quantities.output) continue;
    quantities.output -= it.quantities.output - kept;
    iterations[i] = { ...it, quantities: toQuantities({ ...it.quantities, output: kept }) };
    anomalies.add('output_over_max_tokens');
  }
  // A unit no tool of the request enables has bound 0 (the hold priced none of it); null: no
  // bound. Each attempt that may have run may use its tools.
  for (const unit of UNIT_DIMENSIONS) {
    const bound = m.maxUnits === undefined ? undefined : m.maxUnits[unit] === undefined ? 0 : m.maxUnits[unit];
    if (bound == null) continue;
    if (clamp(unit, bound * ran)) anomalies.add('units_over_max_uses');
  }
  const labels = report?.tally.labels();
  const priced = priceRequest(m.version, toQuantities(quantities), {
    model: m.resolved.model,
    servedModel: servedAs,
    serviceTier: labels?.service_tier ?? null,
    inferenceGeo: labels?.inference_geo ?? null,
    speed: labels?.speed ?? null,
    stopReason: report?.stopReason ?? null,
    ...(report ? { outputSeen: report.outputSeen } : {}),
    iterations,
    priceList: m.priceList ?? null,
    unknown,
  });
  let cost = outcome.billable ? priced.costMicros : 0n;
  if (cost > m.holdMicros) {
    cost = m.holdMicros;
    anomalies.add('cost_over_bound');
  }
  const status = outcome.status === 'ok' && anomalies.size > 0 ? 'usage_anomaly' : outcome.status;
  return { cost, status, anomalies: [...anomalies].sort(), usage, quantities: toQuantities(quantities), iterations, priced, servedModel: servedAs };
}

/**
 * Settles a request exactly once: the hold shrinks to the actual cost (or is released), and
 * the usage event is built; `publish` then writes it ahead to the log before the answer's last
 * bytes leave, and the log's acknowledgement is waited for after them (off the client's
 * latency): see Publication. The ledger consumer debits the balance from that event and closes
 * the hold, so between the two steps `available` is already right. The shrink is sent at once
 * but not awaited here: the publication's `done` resolves once both the event is published and
 * the shrink is done (its failure goes to `onStateError`).
 */
export async function settle(
  deps: GatewayDeps,
  m: Metered,
  outcome: Outcome,
  onStateError: (err: unknown) => void,
): Promise<{ event: UsageEvent; publish: () => Publication }> {
  const settled = settlement(m, outcome);
  const { cost, status, anomalies } = settled;
  const accountId = m.caller.account.id;
  // Sent now, not waited for before the reply (distributed: one Redis round trip off every
  // request's latency; issue 11). Exact either way: the usage event is what charges the account,
  // and a settle that arrives after the event closed its hold is a no-op. The command leaves
  // before the event is even spooled, and one connection's commands run in order, so the
  // caller's next hold sees the shrunk hold. `publish` waits for it (a request is done, for a
  // graceful stop, only once its hold is settled). Hot state failing here only leaves the hold
  // to expire, so the event is published whatever happened to the hold.
  const shrunk = (cost > 0n
    ? deps.balances.settle(m.requestId, accountId, cost, deps.holdTtlMs)
    : deps.balances.release(m.requestId, accountId)).catch(onStateError);
  if (cost > 0n) deps.holds?.settled(m.requestId, cost, deps.holdTtlMs);
  else deps.holds?.released(m.requestId);
  // Acknowledged by the log, not only spooled while it is away: from then on a rebuild reads it.
  const acknowledged = () => {
    deps.holds?.published(m.requestId, deps.log.reachable?.() !== false);
  };
  const now = performance.now();
  const { priced, quantities } = settled;
  const report = outcome.report ?? null;
  const event: UsageEventV2 = {
    type: 'usage',
    v: 2,
    event_id: m.requestId,
    ts: m.ts,
    account_id: accountId,
    key_id: m.caller.key.id,
    model: m.resolved.requested,
    catalog_model: m.resolved.model.id,
    upstream_model: m.resolved.upstreamModel,
    served_model: settled.servedModel,
    quantities: { ...quantities },
    iterations: priced.iterations.map((it, i) => ({
      type: it.type, model: it.model, catalog_model: it.catalogModel,
      quantities: { ...(settled.iterations[i]?.quantities ?? quantities) },
      cost_micros: it.costMicros.toString(),
    })),
    service_tier: report?.tally.labels().service_tier ?? null,
    inference_geo: report?.tally.labels().inference_geo ?? null,
    speed: report?.tally.labels().speed ?? null,
    stop_reason: report?.stopReason ?? null,
    // Anthropic reports no separate thinking count: thinking is part of output_tokens.
    thinking_tokens: null,
    cost_micros: cost.toString(),
    upstream_cost_micros: priced.upstreamCostMicros === null ? null : priced.upstreamCostMicros.toString(),
    upstream_currency: priced.upstreamCostMicros === null ? null : priced.upstreamCurrency,
    price_version: priced.priceVersion,
    price_list: priced.priceList,
    unit_prices: { ...priced.unitPrices },
    tier: priced.tier,
    multipliers: [...priced.multipliers],
    unpriced: priced.unpriced.length <= MAX_UNPRICED_NAMES
      ? [...priced.unpriced] : [...priced.unpriced.slice(0, MAX_UNPRICED_NAMES - 1), 'and_more'],
    status,
    http_status: outcome.httpStatus,
    latency_ms: Math.round(now - m.startedAt),
    ttft_ms: outcome.firstTokenAt === null ? null : Math.round(outcome.firstTokenAt - m.startedAt),
    stream: m.stream,
    upstream_request_id: boundedUpstreamId(outcome.upstreamRequestId),
    gateway_id: deps.gatewayId,
  };
  if (anomalies.length > 0) event.anomalies = anomalies;
  const model = m.resolved.model.id;
  if (deps.metrics) {
    deps.metrics.usage(model, settled.usage, cost);
    for (const kind of anomalies) deps.metrics.usageAnomaly(kind);
    deps.metrics.usageUnits(model, quantities);
    deps.metrics.unpricedUsage(priced.unpriced);
    if (outcome.firstByteAt !== null) deps.metrics.firstByte(model, m.stream, (outcome.firstByteAt - m.startedAt) / 1000);
  }
  const tracer = deps.tracer ?? noopTracer;
  // The producer span's context rides in the event's headers: the consumers' spans are its
  // children, so the request's one trace runs on into the ledger and the warehouse. Untraced,
  // no span is started (a no-op one would carry the active context unchanged into the headers).
  // Without any tracer (no OpenTelemetry SDK registered in this process) there is no context to
  // carry: the headers are `{}`, as `injectContext()` would give, without running the propagator.
  // Either way `done` waits for the shrink too: a graceful stop closes Redis once requests end.
  const publication = (appended: Appended): Publication => {
    if (appended.error === undefined) return { done: Promise.all([appended.durable, shrunk]).then(acknowledged) };
    // Not recorded (a spool write refused: this process's DATA_DIR was taken over while it was
    // stopped; the disk is full): nobody can be billed for the request, so the caller delivers
    // no answer and the hold is given back now rather than left to expire (or to a rebuild).
    deps.holds?.released(m.requestId);
    const released = shrunk.then(() => deps.balances.release(m.requestId, accountId)).then(() => {}, onStateError);
    return { refused: appended.error, done: released };
  };
  if (tracer === noopTracer) {
    return { event, publish: () => publication(deps.log.append('usage', [{ event, headers: deps.tracer === undefined ? {} : injectContext() }])) };
  }
  const publish = (): Publication => {
    const span = tracer.startSpan('publish usage', {
      kind: SpanKind.PRODUCER,
      attributes: { 'messaging.operation.type': 'send', 'messaging.destination.name': 'usage', 'tollgate.event.id': event.event_id },
    });
    const ended = (err?: unknown) => {
      if (err !== undefined) failSpan(span, err);
      span.end();
    };
    const appended = context.with(trace.setSpan(context.active(), span), () => deps.log.append('usage', [{ event, headers: injectContext() }]));
    if (appended.error !== undefined) {
      ended(appended.error);
      return publication(appended);
    }
    return publication({ durable: appended.durable.then(() => ended(), (err: unknown) => { ended(err); throw err; }) });
  };
  return { event, publish };
}

/**
 * A usage event's publication (settle's `publish`), its write ahead told at once.
 * - `refused` absent: the event is written ahead (DATA_DIR/spool, or the embedded log's journal):
 *   the answer may be delivered. `done` resolves once the log acknowledged it (Kafka: acks=all;
 *   while Kafka is away, once it is fsync'd in the spool) and the hold is settled; it rejects
 *   when the publication failed after the write (the spooled event is sent at the next start).
 * - `refused`: the event was not written (EventLog.append's error): the request is not billed,
 *   so the caller must not deliver its answer; the hold is released (`done` resolves once it is,
 *   a Redis failure going to settle's `onStateError`; never rejects).
 */
export interface Publication {
  refused?: Error;
  done: Promise<void>;
}
