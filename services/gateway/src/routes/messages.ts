import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import {
  createStreamMeter, gatewayError, inputTokenBound, isErrorFrame, mayCompact, prewarms, readMessage, SseFramer, sseErrorEvent,
  upstreamEventError, USAGE_ANOMALIES, validateMessagesRequest, integerProblem, isRecord, validateModelId, type GatewayError, type MessagesRequest, type UsageAnomaly,
} from '@tollgate/anthropic';
import { DiskReserveLowError, type UsageEvent } from '@tollgate/events';
import { sendError } from '@tollgate/http';
import { releaseUnanswered, StoreNotReadyError } from '@tollgate/ledger';
import {
  admission, advisorOutputTokens, advisorTools, attemptModels, resolveAdvisor, contextWindowFor, exactModel, HoldBoundError, maxOutputTokensFor, requestFallbackAttempts, requestUnpriced, resolveServing, resolveModel, type Admission, type AdmissionPolicy, type Catalog, type CatalogModel, type FallbackAttempt, type PriceVersion, type ResolvedModel, type UnitDimension,
} from '@tollgate/pricing';
import {
  context, failSpan, genAiRequestAttributes, genAiSpanName, injectContext, noopTracer, setGenAiResponse, SpanKind, trace, type Span,
} from '@tollgate/telemetry';
import type { GatewayDeps } from '../deps.ts';
import { advisorBoundKey, boundedUpstreamId, settle, type AttemptBound, type Metered, type Outcome, type Publication } from '../metering.ts';
import { header, isEventStream, scrubBody, searchOf, upstreamErrorOf, type Upstream, type UpstreamResponse } from '../upstream.ts';
import type { Route, Sent, UpstreamPool } from '../pool/selector.ts';
import { guardState, stateUnavailable } from '../state.ts';
import { spanned, UNTRACED_SPAN } from '../spans.ts';
import { acquireLimits, type LimitTicket } from '../limits.ts';
import { checkModelAllowed, checkServingModelsAllowed } from '../auth.ts';
import { JsonValueEnd, serverTools, turnCanCarryThinking, upstreamBody, type ServerTools } from '../upstream-body.ts';
import { checkTranslatable } from '../openai-upstream.ts';
import { openAIImageRule, openAIImageTokenCap, openAIImageTokens } from '@tollgate/openai-compat';
import { budgetThinking, CLAMP_HEADER, clampedBody, refusal, spendTerms } from '../admission.ts';

/**
 * Holds `body.max_tokens` to `model`'s output limit (catalog `max_output_tokens`, raised by
 * the betas of its `max_output_tokens_betas` the request names), as the upstream does: a
 * `max_tokens` the client sent above it is a 400 `invalid_request` in Anthropic's words
 * ("max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for …",
 * naming the model as the client did), before any plan limit or hold, so such a request never
 * holds credit for output the model cannot produce. A `max_tokens` the gateway filled in
 * (`defaulted`: DEFAULT_MAX_TOKENS) is lowered to the limit instead. No limit in the catalog:
 * nothing is checked. Mutates `body.max_tokens` only when defaulted.
 */
export function checkMaxTokens(body: MessagesRequest, model: CatalogModel, anthropicBeta: string | string[] | undefined, defaulted: boolean): void {
  const limit = maxOutputTokensFor(model, anthropicBeta);
  if (limit === undefined || body.max_tokens <= limit) return;
  if (defaulted) {
    body.max_tokens = limit;
    return;
  }
  throw gatewayError('invalid_request', `max_tokens: ${body.max_tokens} > ${limit}, which is the maximum allowed number of output tokens for ${body.model}`);
}

/** The most `fallbacks` entries a request may name: each is an attempt the hold prices. */
export const MAX_FALLBACKS = 16;

/**
 * The body's `fallbacks` entries, before anything reads them (Anthropic server-side fallback: an
 * entry's `max_tokens` and `speed` replace the request's for its attempt): at most
 * `MAX_FALLBACKS` of them; each `max_tokens` absent, null or an integer ≥ 1 and, where the
 * catalog knows the entry's model by name, at most its output limit (`maxOutputTokensFor`, in
 * the upstream's words), and absent or null on a pre-warm (`max_tokens: 0` generates nothing, so
 * no attempt may); each `speed` absent, null, `"standard"` or `"fast"`. Anything else is a 400
 * `invalid_request` naming `fallbacks` or `fallbacks[i].<field>`, before any hold: the hold
 * could not bound it.
 */
export function checkFallbackEntries(body: MessagesRequest, catalog: Catalog, anthropicBeta: string | string[] | undefined): void {
  const fallbacks = (body as Record<string, unknown>).fallbacks;
  if (fallbacks === undefined || fallbacks === null || fallbacks === 'default') return;
  // any other shape would be read as no fallbacks here (no access check, no hold) and forwarded
  if (!Array.isArray(fallbacks)) throw gatewayError('invalid_request', `fallbacks: Input should be a valid list or 'default'`);
  if (fallbacks.length > MAX_FALLBACKS) {
    throw gatewayError('invalid_request', `fallbacks: at most ${MAX_FALLBACKS} entries on this gateway, got ${fallbacks.length}`);
  }
  fallbacks.forEach((f, i) => {
    if (typeof f === 'string' && f !== '') return;
    if (!isRecord(f)) throw gatewayError('invalid_request', `fallbacks[${i}]: Input should be a valid dictionary with a model`);
    const e = f as Record<string, unknown>;
    if (typeof e.model !== 'string' || e.model === '') {
      throw gatewayError('invalid_request', `fallbacks[${i}].model: ${e.model === undefined ? 'Field required' : 'Input should be a non-empty string'}`);
    }
    const max = e.max_tokens;
    if (max !== undefined && max !== null) {
      const problem = integerProblem(max, 1);
      if (problem !== undefined) throw gatewayError('invalid_request', `fallbacks[${i}].max_tokens: ${problem}`);
      if (prewarms(body)) throw gatewayError('invalid_request', `fallbacks[${i}].max_tokens: max_tokens 0 pre-warms the prompt cache and generates nothing; a fallback cannot set its own max_tokens with it`);
      const m = typeof e.model === 'string' ? exactModel(catalog, e.model) : undefined;
      const limit = m === undefined ? undefined : maxOutputTokensFor(m, anthropicBeta);
      if (limit !== undefined && (max as number) > limit) {
        throw gatewayError('invalid_request', `fallbacks[${i}].max_tokens: ${max as number} > ${limit}, which is the maximum allowed number of output tokens for ${String(e.model)}`);
      }
    }
    const speed = e.speed;
    if (speed !== undefined && speed !== null && speed !== 'standard' && speed !== 'fast') {
      throw gatewayError('invalid_request', `fallbacks[${i}].speed: Input should be 'standard' or 'fast'`);
    }
  });
}

/**
 * The shapes the hold and the access checks read in `tools`, refused at the edge with a 400 naming
 * the field (as the upstream would refuse them after the hold): `tools` a list of objects, and an
 * advisor tool (`type` `advisor_<date>`) with its `model` a non-empty string and its `max_tokens`,
 * where given, an integer ≥ 1. Read otherwise, such a tool was held as no tool, or at the
 * catalog's worst case (a 402), and its model escaped `allowed_models`.
 */
export function checkToolShapes(body: MessagesRequest): void {
  const tools = (body as Record<string, unknown>).tools;
  if (tools === undefined || tools === null) return;
  if (!Array.isArray(tools)) throw gatewayError('invalid_request', 'tools: Input should be a valid list');
  tools.forEach((t: unknown, i: number) => {
    if (!isRecord(t)) throw gatewayError('invalid_request', `tools[${i}]: Input should be a valid dictionary`);
    if (typeof t.type !== 'string' || !t.type.startsWith('advisor_')) return;
    if (typeof t.model !== 'string' || t.model === '') {
      throw gatewayError('invalid_request', `tools[${i}].model: ${t.model === undefined ? 'Field required' : 'Input should be a non-empty string'}`);
    }
    if (t.max_tokens !== undefined && t.max_tokens !== null) {
      const problem = integerProblem(t.max_tokens, 1);
      if (problem !== undefined) throw gatewayError('invalid_request', `tools[${i}].max_tokens: ${problem}`);
    }
  });
}

/**
 * `max_tokens: 0` pre-warms the prompt cache: the upstream reads (and caches) the input and
 * generates nothing (Anthropic "Prompt caching", "Pre-warming the cache"). It cannot stream or
 * think, so with `stream: true` or on a `-thinking` variant (whose thinking the gateway would
 * add, unless the client disables it or the turn cannot carry it) it is a 400 `invalid_request`
 * here, before any hold. A client's own `thinking` field is
 * the upstream's to judge, as on any plain model.
 */
export function checkPrewarm(body: MessagesRequest, resolved: ResolvedModel): void {
  if (!prewarms(body)) return;
  if (body.stream === true) throw gatewayError('invalid_request', 'max_tokens: 0 pre-warms the prompt cache and cannot be used with stream');
  // The variant adds thinking unless the client's own `thinking` is `disabled`, or the turn in
  // progress did not start with thinking (`upstreamBody`: then it is sent without).
  const own = body.thinking !== undefined && body.thinking !== null;
  const thinks = own ? (body.thinking as { type?: unknown }).type !== 'disabled' : turnCanCarryThinking(body.messages);
  if (resolved.thinking && thinks) {
    throw gatewayError('invalid_request', `max_tokens: 0 pre-warms the prompt cache and cannot be used with thinking, which ${resolved.requested} turns on`);
  }
}

/**
 * The catalog model `model` names in `catalog`, or 404 `model_not_found`. The id is first
 * checked by `validateModelId` (400 `invalid_request` on `model`), so every route that takes a
 * model id (/v1/messages, count_tokens, /v1/models/{id}) refuses the same ids the same way.
 */
export function resolveOr404(catalog: Catalog, model: string): ResolvedModel {
  validateModelId(model);
  const resolved = resolveModel(catalog, model);
  if (!resolved) throw gatewayError('model_not_found', `model: ${model} is not available on this gateway`);
  return resolved;
}

/**
 * The input bound's image rule and window for platform `openai`, where the model served is
 * `upstreamModel` (an OpenAI model, or whatever an OpenAI-compatible server hosts): images at
 * that model's OpenAI rule (@tollgate/openai-compat `openAIImageRule`: the dearest documented
 * one for a name it does not know), and the catalog's (Claude's) window bounding only what
 * nothing else bounds, since it is not the served model's.
 */
function openAIInputLimits(upstreamModel: string): { imageTokenCap: number; imageTokensOf: (w: number, h: number) => number; windowBoundsBilling: false } {
  const rule = openAIImageRule(upstreamModel);
  return { imageTokenCap: openAIImageTokenCap(rule), imageTokensOf: (w, h) => openAIImageTokens(rule, w, h), windowBoundsBilling: false };
}

/**
 * `resolved` with `upstreamModel` as the name sent upstream (a group's `model_mapping`, issue 10):
 * priced as the same catalog model, and an answer naming the mapped model is that model.
 */
function mappedTo(resolved: ResolvedModel, upstreamModel: string): ResolvedModel {
  return { ...resolved, upstreamModel, model: { ...resolved.model, upstreamModel } };
}

/**
 * Most bytes of a stream the gateway buffers for a client that does not read. The upstream is
 * always read at its own pace (it generates and bills whatever the client does), so a client is
 * never waited for; one that falls this far behind is cut off and the stream is read to its end
 * without it (`client_disconnect`). 8 MiB is several times the SSE of a 64 K-token answer.
 */
export const MAX_CLIENT_BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * How long a stream may go quiet after its final `message_delta` (the one with `stop_reason`)
 * without `message_stop`: after this many ms with no event but pings the answer is taken as
 * complete, the client's response closed with `message_stop`, the request settled and the
 * upstream connection closed. Every event other than `ping` restarts the wait, so a later
 * `message_delta` with more usage is counted (content after the `stop_reason` is relayed too,
 * and flagged `event_after_stop`). The whole wait after the final delta is bounded by
 * `answerEndLimitMs` (the upstream's own body timeout): an upstream that keeps talking past it
 * is cut there. Anthropic sends `message_stop` right after the final delta, so the grace only
 * ever matters for an upstream that leaves the connection open.
 */
export const ANSWER_END_GRACE_MS = 2_000;

/** The longest wait after the final `message_delta`, in ms: the upstream's body timeout (`UPSTREAM_TIMEOUT_MS`, at most 300 s). */
export function answerEndLimitMs(upstreamTimeoutMs: number): number {
  return Math.min(upstreamTimeoutMs, 300_000);
}

/** The type of an SSE event: its `event:` field, else its data's `type` ('' when neither). */
function frameType(frame: { event: string; data: string }): string {
  if (frame.event !== '') return frame.event;
  try {
    const t: unknown = (JSON.parse(frame.data) as { type?: unknown }).type;
    return typeof t === 'string' ? t : '';
  } catch {
    return '';
  }
}

/** The frame that closes a message (Anthropic "Streaming Messages": the last event of a stream). */
const MESSAGE_STOP_FRAME = 'event: message_stop\ndata: {"type":"message_stop"}\n\n';

/** Whether the client is still connected. */
interface ClientWatch {
  /** the connection closed before the response was finished */
  readonly gone: boolean;
}

/**
 * Watches the client from the moment the handler starts. `close` may already have fired before
 * (a client that sent its body and left at once), so the socket's state is checked as well as
 * the event: no code path may wait for an event that already happened.
 */
function watchClient(raw: ServerResponse): ClientWatch {
  let closed = false;
  raw.once('close', () => {
    if (!raw.writableFinished) closed = true;
  });
  return {
    get gone() {
      if (raw.writableFinished) return false;
      return closed || raw.destroyed || raw.socket === null || raw.socket.destroyed;
    },
  };
}

/** One request on its way through the hot path. */
interface Exchange {
  request: FastifyRequest;
  reply: FastifyReply;
  body: MessagesRequest;
  resolved: ResolvedModel;
  /** the body as received */
  raw: Buffer;
  /** the body to send upstream (a `-thinking` variant's rewritten), built before any hold */
  sent: Buffer | string;
  /** upper bound of the input tokens, for the hold and the token rate limit */
  estimate: number;
  /** upper bound of the output tokens of its sampling steps: max_tokens × the server-loop iterations (a compaction's summary is not one of them) */
  maxOutputTokens: number;
  /** sampling steps the request may run: the input bound's iterations (1, or the server-tool loop's) */
  iterations: number;
  /** the body's `fallbacks` entries, an attempt each (`requestFallbackAttempts`) */
  fallbacks: FallbackAttempt[];
  limit: LimitTicket;
  client: ClientWatch;
  /** performance.now() and Date.now() when the request arrived */
  startedAt: number;
  ts: number;
  /** the price version in force when the request arrived: it prices the request to the end */
  version: PriceVersion;
  /** the request's server tools: units and their bounds */
  tools: ServerTools;
  /** the caller's group and the upstreams that may serve the request (issue 10) */
  route: Route;
  /** the client's API format: how its request is read and its answer written */
  format: ClientFormat;
}

/**
 * The API format a client speaks, around the one pipeline (auth, plan limits, hold, upstream,
 * metering, one usage event, tracing) that serves it: `/v1/messages` is Anthropic's own format
 * (`ANTHROPIC_FORMAT`, nothing rewritten); `/v1/chat/completions` (routes/chat-completions.ts)
 * reads an OpenAI request and writes OpenAI answers. The pipeline always sees and meters the
 * Anthropic request and answer, so a format can never change what is charged. Errors the
 * pipeline renders itself (`sendError`, the app's error handler) are in Anthropic's shape; a
 * format rewrites them on its own route (an onSend hook), SSE error events through `stream`.
 */
export interface ClientFormat {
  /** `anthropic` or `openai`: a span attribute and log field */
  readonly name: string;
  /** The request as an Anthropic Messages body (not yet validated) and the bytes it was read from. Throws GatewayError 400. */
  request(request: FastifyRequest): { body: unknown; raw: Buffer };
  /**
   * A 2xx JSON answer as the client's: `message` is the Anthropic Message when the pipeline read
   * (metered) it, else null and `parsed` is the body parsed as JSON (undefined: not JSON). Returns
   * the status and JSON text to send; a format must answer every case in its own shape. Absent:
   * the upstream's status and bytes as they are.
   */
  json?(answer: { message: Record<string, unknown> | null; parsed: unknown; status: number }): { status: number; body: string };
  /** A writer for one stream: each complete Anthropic SSE event (`error` events included) → the client's bytes ('' for none); absent: unchanged. */
  stream?(): (event: Buffer | string) => Buffer | string;
}

/** Anthropic Messages clients: the request and the answer pass as they are. */
export const ANTHROPIC_FORMAT: ClientFormat = {
  name: 'anthropic',
  request: (request) => ({ body: request.body, raw: request.rawBody! }),
};

/** Serves one request of a client `format` through the Messages pipeline (what `/v1/messages` runs). */
export type MessagesPipeline = (request: FastifyRequest, reply: FastifyReply, format: ClientFormat) => Promise<FastifyReply | undefined>;

/** Mounts `/v1/messages` (and `/api/v1/messages`); returns the pipeline for other client formats. */
export function messagesRoutes(app: FastifyInstance, deps: GatewayDeps, _upstream: Upstream, pool: UpstreamPool): MessagesPipeline {
  const tracer = deps.tracer ?? noopTracer;
  // Untraced (no exporter): no step span is started, nor its attributes built (`spanned`).
  const traced = deps.tracer !== undefined && deps.tracer !== noopTracer;
  const metrics = deps.metrics;
  const upstreamHost = new URL(deps.upstream.url).host;

  const serve: MessagesPipeline = async (request, reply, format) => {
    const startedAt = performance.now();
    const ts = Date.now();
    // Before the first await: from here on the client may leave at any moment, and the request
    // is carried through to the upstream's end whatever it does (README, "Settlement").
    const client = watchClient(reply.raw);
    const caller = request.caller!;
    // Captured once: a price change (reload) applies from the next request, never mid-request.
    const version = deps.prices!.current();
    // max_tokens is optional here (issue 8): absent, DEFAULT_MAX_TOKENS is sent upstream and held for.
    const input = format.request(request);
    const defaulted = typeof input.body === 'object' && input.body !== null && (input.body as Record<string, unknown>)['max_tokens'] === undefined;
    const body = validateMessagesRequest(input.body, deps.defaultMaxTokens ?? 1_024);
    let resolved = resolveOr404(version.catalog, body.model);
    checkModelAllowed(caller, resolved.model.id, body.model);
    // Before anything reads the entries: their count and the fields the hold reads.
    checkFallbackEntries(body, version.catalog, request.headers['anthropic-beta']);
    checkToolShapes(body);
    checkServingModelsAllowed(caller, body, (name) => resolveModel(version.catalog, name)?.model.id);
    checkPrewarm(body, resolved);
    const fallbacks = requestFallbackAttempts((body as Record<string, unknown>).fallbacks);
    // The caller's group (issue 10): an upstream of it must serve the model (else 404 before any
    // hold), and its model_mapping names the model upstream (priced as the catalog model).
    const route = await pool.route(caller.account, caller.key, resolved.model.id, body.model);
    // The output limit of the model the upstream is sent: a group's mapped model where the
    // catalog knows it (a name it does not know: the upstream's own check only).
    const limited = route.mappedModel === undefined ? resolved.model : exactModel(version.catalog, route.mappedModel);
    if (limited !== undefined) checkMaxTokens(body, limited, request.headers['anthropic-beta'], defaulted);
    if (route.mappedModel !== undefined) resolved = mappedTo(resolved, route.mappedModel);
    // Platform openai: what Chat Completions cannot serve is a 400 naming the field, before any hold.
    if (route.group.platform === 'openai') checkTranslatable(body);
    const stream = body.stream === true;
    request.observed = { model: resolved.model.id, stream };
    // Ids only: the key's secret never reaches a span (it is not even on `caller`).
    request.span?.setAttributes({
      'gen_ai.request.model': resolved.model.id,
      'tollgate.model.requested': body.model,
      'tollgate.account.id': caller.account.id,
      'tollgate.key.id': caller.key.id,
      'tollgate.stream': stream,
      'tollgate.api_format': format.name,
    });
    const raw = input.raw;
    const tools = serverTools(body, version, resolved.model);
    refuseUnpriced(version, resolved, body, tools, fallbacks);
    // Before any limit or hold: a -thinking body no model accepts is a 400 that costs nothing.
    const betaHeader = request.headers['anthropic-beta'];
    const betas = (Array.isArray(betaHeader) ? betaHeader.join(',') : betaHeader ?? '').split(',');
    const sent = upstreamBody(body, raw, resolved, tools.maxUses, betas, defaulted);
    const bound = inputTokenBound(body, raw, {
      contextWindow: attemptsContextWindow(version.catalog, resolved.model, limited, body, fallbacks, request.headers['anthropic-beta']),
      ...(route.group.platform === 'openai' ? openAIInputLimits(resolved.upstreamModel) : { imageTokenCap: resolved.model.imageTokenCap }),
    });
    request.span?.setAttributes({
      'tollgate.input_bound.unbounded': bound.unbounded.join(','), 'tollgate.input_bound.iterations': bound.iterations,
    });
    const estimate = bound.tokens;
    // The token window is charged the request's worst case (input bound + every call's
    // max_tokens), not the input alone, so concurrent requests cannot together overrun it;
    // `done(used)` corrects it to the real total when the request ends.
    const worstTokens = estimate + body.max_tokens * bound.iterations;
    const limit = await spanned(deps.tracer, 'limits', () => ({ 'tollgate.estimated_input_tokens': estimate, 'tollgate.estimated_tokens': worstTokens }),
      () => acquireLimits(deps, request, worstTokens));
    // Before anything can refuse (the hold's 402 included): every answer carries the windows.
    reply.headers(limit.headers);
    try {
      return await metered({
        request, reply, body, resolved, raw, sent, estimate, maxOutputTokens: body.max_tokens * bound.iterations, iterations: bound.iterations,
        fallbacks, limit, client, startedAt, ts, version, tools, format, route,
      });
    } finally {
      // Refused before the upstream (402, 503): no tokens were used. After a settlement this
      // is a no-op (the ticket is already done).
      await limit.done(0);
    }
  };

  /** From the hold to the published usage event: exactly one settlement on every path. */
  const metered = async (x: Exchange) => {
    const { request, reply, body, resolved, estimate } = x;
    const caller = request.caller!;
    // The write ahead is failing (a full or read-only disk, DATA_DIR taken over): an answer now
    // could not be recorded, so the upstream is not paid for one that would be withheld.
    const unwritable = deps.log.writeAheadProblem?.();
    if (unwritable) {
      reply.headers(await x.limit.refund());
      throw usageUnrecordable();
    }
    const priceList = caller.account.price_list ?? null;
    // Admission (issue 8): the worst case, the caller's spend windows and overdraft, and the
    // policy (clamp lowers max_tokens to what is available), decided and reserved in one step.
    const minBudget = resolved.model.thinking.minBudgetTokens;
    const floor = Math.max(deps.admission?.floorTokens ?? 1_024, budgetThinking(body, resolved) ? minBudget + 1 : 1);
    const adm = holdFor(x, priceList, caller.account.admission_policy ?? deps.admission?.policy ?? 'clamp', floor);
    const spend = spendTerms(caller);
    // Hot state was just rebuilt: this gateway's requests in flight are re-reserved first.
    const restoring = deps.holds?.restoring();
    if (restoring) await restoring;
    // ...and control processes put back records only their spools held (a revoked key is active
    // in the rebuilt state until then): no hold before that, nor for a key read before it.
    if (deps.holds && (deps.holds.recordsPending() || deps.holds.recordsRestoredAt() > (request.keyReadAt ?? Number.NEGATIVE_INFINITY))) {
      reply.headers(await x.limit.refund());
      metrics?.holdRefused('state_unavailable');
      throw stateUnavailable();
    }
    const hold = await spanned(deps.tracer, 'hold', () => ({ 'tollgate.hold.micro_credits': adm.amount.toString() }), async (span) => {
      try {
        const result = await guardState(() => deps.balances.hold({
          holdId: request.id, accountId: caller.account.id, keyId: caller.key.id, amount: adm.amount, ttlMs: deps.holdTtlMs,
          overdraft: spend.overdraft, windows: spend.windows, admission: adm,
        }));
        span.setAttribute('tollgate.hold.result', result.ok ? 'held' : result.reason);
        return result;
      } catch (err) {
        metrics?.holdRefused('state_unavailable');
        // A call that was sent and failed without an answer (timed out, or its connection
        // reset under an auto-pipeline) may still have reserved the credit: give it back (a
        // no-op if it did not), retried until Redis answers, rather than leave it held (and
        // counted in the spend windows) until it expires. One never sent (the connection was
        // down) reserved nothing: no retries pile up for every request of an outage.
        const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
        if (!(cause instanceof StoreNotReadyError)) void releaseUnanswered(deps.balances, request.id, caller.account.id, {
          maxWaitMs: deps.holdTtlMs,
          onFailedTry: (releaseErr, tryNumber) => {
            if (tryNumber === 1) request.log.warn({ err: releaseErr }, 'could not release a hold whose reservation went unanswered; retrying until the state store answers');
          },
        }).then((released) => {
          if (!released) request.log.error({ requestId: request.id }, 'gave up releasing an unanswered hold; it expires with its TTL');
        });
        reply.headers(await x.limit.refund());
        throw err;
      }
    });
    if (!hold.ok) {
      // Never served: the plan windows get the request back (README, "Plans and rate-limit headers").
      reply.headers(await x.limit.refund());
      metrics?.holdRefused(hold.reason === 'not_ready' ? 'state_unavailable' : 'insufficient_credits');
      if (hold.reason === 'not_ready') throw stateUnavailable();
      if (hold.reason === 'spend_limit_exceeded') {
        deps.alerts?.spendLimitReached({ accountId: caller.account.id, keyId: caller.key.id, window: hold.window, limit: hold.limit, used: hold.used, resetAt: hold.resetAt });
      }
      throw refusal(hold, adm);
    }
    // Clamped: the upstream is sent the max_tokens the hold covers, and the client is told.
    const amount = hold.amount;
    deps.holds?.held(request.id, caller.account.id, caller.key.id, x.ts, amount, deps.holdTtlMs);
    // the max_tokens sent upstream: the asked one, or what the clamp affords
    const sentMaxTokens = hold.maxTokens !== undefined && hold.maxTokens < body.max_tokens ? hold.maxTokens : body.max_tokens;
    if (sentMaxTokens < body.max_tokens) {
      x.sent = clampedBody(x.sent, body.max_tokens, sentMaxTokens, minBudget);
      x.maxOutputTokens = x.iterations * sentMaxTokens;
      reply.header(CLAMP_HEADER, `${body.max_tokens}->${sentMaxTokens}`);
    }

    const m: Metered = {
      requestId: request.id, ts: x.ts, startedAt: x.startedAt, caller, resolved, stream: body.stream === true, holdMicros: amount,
      version: x.version, priceList, maxUnits: x.tools.units,
      outputBounds: outputBounds(x.body, x.version.catalog, x.resolved.model, sentMaxTokens),
      ...chainBounds(x, sentMaxTokens),
    };
    reply.headers(x.limit.headers);
    // However long the upstream takes (a long generation, a stream read to its end after the
    // client left), the hold must not expire under a live request.
    const keepAlive = setInterval(() => {
      deps.balances.extend(request.id, caller.account.id, deps.holdTtlMs).catch(() => {});
      deps.holds?.extended(request.id, deps.holdTtlMs);
    }, Math.max(1000, Math.floor(deps.holdTtlMs / 3)));
    keepAlive.unref();
    // the pool's answer: the serving upstream's slot is held until the answer is read
    let served: Sent | undefined;
    try {
      /**
       * Shrinks the hold and frees the limiter slot now; returns the usage event (its status may
       * still change before publication) and its publication, for after the reply.
       */
      const finish = async (outcome: Outcome): Promise<Settled> => {
        clearInterval(keepAlive);
        // The status keeps the upstream's outcome; finance still learns no reply reached anyone
        // (a 503 `upstream_error` to a client already gone was never sent).
        if (x.client.gone && outcome.status !== 'client_disconnect' && outcome.status !== 'ok') {
          outcome = { ...outcome, anomalies: [...(outcome.anomalies ?? []), 'client_gone'] };
        }
        const u = outcome.usage;
        // The limiter's release and the hold's shrink are independent: one round trip of wait.
        const [, { event, publish }] = await Promise.all([
          x.limit.done(u ? u.input + u.output + u.cacheRead + u.cacheWrite5m + u.cacheWrite1h : 0),
          spanned(deps.tracer, 'settle', () => ({ 'tollgate.usage.status': outcome.status }), (span) =>
            settle(deps, m, outcome, (err) => {
              failSpan(span, err);
              request.log.warn({ err }, 'could not shrink the hold; it will expire');
            })),
        ]);
        // which upstream served (or failed last) and after how many attempts; failed attempts cost nothing
        // Both on every event: '' and 0 when none was tried (503 overloaded before any attempt).
        event.upstream_id = served?.upstreamId ?? '';
        event.attempts = served?.attempts ?? 0;
        return {
          event,
          publish: () => {
            // Published only once the upstream's answer is over (read whole, failed, or its error
            // read): its pool slot is free now, on every path, not after Kafka's acknowledgement
            // that the caller awaits next (KAFKA_LINGER_MS and the produce; seconds while Kafka
            // is slow).
            served?.release();
            const publication = publish();
            if (publication.refused) {
              deps.metrics?.usageUnrecorded();
              request.log.error({ err: publication.refused, requestId: request.id }, 'usage event could not be written ahead; the answer is withheld and nothing is charged');
            }
            return {
              refused: publication.refused,
              done: publication.done.catch((err: unknown) => request.log.error({ err, requestId: request.id }, 'usage event could not be published')),
            };
          },
        };
      };

      // A client span from the call until the upstream body is read to its end (streams included);
      // ended by `endUpstream` on every path.
      // GenAI semantic conventions: `chat <model>`, the model and max_tokens as sent upstream.
      const upstreamSpan = !traced ? UNTRACED_SPAN : tracer.startSpan(genAiSpanName(resolved.upstreamModel), {
        kind: SpanKind.CLIENT,
        attributes: {
          'http.request.method': 'POST', 'server.address': upstreamHost,
          ...genAiRequestAttributes({
            model: resolved.upstreamModel, stream: body.stream === true,
            maxTokens: hold.maxTokens !== undefined && hold.maxTokens < body.max_tokens ? hold.maxTokens : body.max_tokens,
          }),
        },
      });
      // only read when the span records (the traceparent sent upstream)
      const upstreamCtx = traced ? trace.setSpan(context.active(), upstreamSpan) : undefined;
      const endUpstream = (err?: unknown) => {
        if (err !== undefined) failSpan(upstreamSpan, err);
        upstreamSpan.end();
      };

      let res: UpstreamResponse;
      try {
        // Failover before the first byte (pool/selector.ts): only the serving attempt's answer is read and billed.
        served = await pool.send(x.route, { headers: request.headers, body, accountId: caller.account.id, keyId: caller.key.id, arrivedAt: x.ts },
          (client) => client.post('/v1/messages', searchOf(request.url), request.headers, x.sent,
            upstreamSpan.isRecording() && upstreamCtx !== undefined ? injectContext(upstreamCtx) : undefined));
        if (upstreamSpan.isRecording()) {
          upstreamSpan.setAttributes({ 'tollgate.upstream.id': served.upstreamId ?? '', 'tollgate.upstream.attempts': served.attempts });
        }
        if ('error' in served.outcome) throw served.outcome.error;
        res = served.outcome.res;
      } catch (err) {
        metrics?.upstreamError('unreachable');
        endUpstream(err);
        await (await finish({ status: 'upstream_error', httpStatus: 503, usage: null, billable: false, firstByteAt: null, firstTokenAt: null, upstreamRequestId: null })).publish().done;
        throw err;
      }
      const upstreamRequestId = boundedUpstreamId(header(res, 'request-id'));
      if (upstreamSpan.isRecording()) {
        upstreamSpan.setAttribute('http.response.status_code', res.status);
        if (upstreamRequestId) upstreamSpan.setAttribute('tollgate.upstream.request_id', upstreamRequestId);
      }
      if (res.status < 200 || res.status >= 300) {
        metrics?.upstreamError(res.status);
        const err = await upstreamErrorOf(res);
        endUpstream(err);
        const { publish } = await finish({ status: 'upstream_error', httpStatus: err.status, usage: null, billable: false, firstByteAt: performance.now(), firstTokenAt: null, upstreamRequestId });
        if (err.status >= 500) request.log.warn({ upstreamStatus: res.status, code: err.code }, 'upstream error');
        sendError(reply, err);
        await publish().done;
        return reply;
      }

      if (isEventStream(header(res, 'content-type'))) {
        // An event stream to a request that did not ask for one is read (metered) but never relayed.
        await relayStream(deps, x, res, upstreamRequestId, finish, upstreamSpan, m.stream);
        return reply;
      }

      let bytes: Buffer;
      let firstByteAt: number | null = null;
      try {
        // The answer is over when its top-level JSON value closes (JsonValueEnd), not when the
        // upstream closes the connection: one that keeps it open cannot hold the client, the
        // hold or the slot. Whatever it sends after that cannot change the answer.
        const chunks: Buffer[] = [];
        const end = new JsonValueEnd();
        for await (const chunk of res.body) {
          firstByteAt ??= performance.now();
          chunks.push(Buffer.from(chunk as Uint8Array));
          if (end.push(chunk as Uint8Array)) break;
        }
        res.body.cancel();
        // as `arrayBuffer()` would give it: the gateway's own secrets redacted
        bytes = scrubBody(Buffer.concat(chunks), res.secrets);
        firstByteAt ??= performance.now();
      } catch (err) {
        metrics?.upstreamError('stream_dropped');
        endUpstream(err);
        await (await finish({ status: 'upstream_error', httpStatus: 503, usage: null, billable: false, firstByteAt, firstTokenAt: null, upstreamRequestId })).publish().done;
        throw gatewayError('upstream_error', 'Upstream connection failed while reading the response', { cause: err });
      }
      let json: unknown = undefined;
      try { json = JSON.parse(bytes.toString('utf8')); } catch { /* not JSON */ }
      const read = json === undefined ? null : readMessage(json);
      const messageId = (json as { id?: unknown } | undefined)?.id;
      setGenAiResponse(upstreamSpan, {
        model: read?.model, stopReason: read?.stopReason, usage: read?.usage, id: typeof messageId === 'string' ? messageId : null,
      });
      endUpstream();
      if (typeof json === 'object' && json !== null && (json as { type?: unknown }).type === 'error') {
        // An error in a 2xx body is an upstream error like any other: relayed redacted, never
        // verbatim, and nothing is charged (no answer was given).
        metrics?.upstreamError(res.status);
        const err = upstreamEventError(json, { secrets: res.secrets });
        const { publish } = await finish({ status: 'upstream_error', httpStatus: err.status, usage: null, billable: false, firstByteAt, firstTokenAt: null, upstreamRequestId });
        sendError(reply, err);
        await publish().done;
        return reply;
      }
      if (m.stream) {
        // A streaming request answered in one body: not the framing the client can read.
        metrics?.upstreamError('stream_error');
        const { publish } = await finish({
          status: 'upstream_error', httpStatus: 503, usage: read?.usage ?? null,
          report: read === null ? null : { tally: read.tally, model: read.model, stopReason: read.stopReason, outputSeen: read.outputSeen },
          billable: read !== null && deps.streamErrorBilling === 'usage', firstByteAt, firstTokenAt: null, upstreamRequestId,
          anomalies: read === null ? ['no_usage'] : read.anomalies,
        });
        request.log.warn({ upstreamRequestId, contentType: header(res, 'content-type') }, 'upstream answered a streaming request without an event stream');
        sendError(reply, framingError('a streaming request with a single (non event-stream) body'));
        await publish().done;
        return reply;
      }
      if (read === null) {
        // A 2xx without a readable message is not something we can measure; pass it on,
        // charge nothing, and flag it for finance (status `unmetered`, metric, log).
        request.log.warn({ upstreamRequestId }, 'upstream 2xx without usage; not charged');
      }
      // Every answer is rewritten for another format, a message that could not be read included.
      const written = x.format.json?.({ message: read === null ? null : json as Record<string, unknown>, parsed: json, status: res.status }) ?? null;
      const settled = await finish({
        status: read === null ? 'unmetered' : x.client.gone ? 'client_disconnect' : 'ok',
        httpStatus: written?.status ?? res.status,
        usage: read?.usage ?? null,
        report: read === null ? null : { tally: read.tally, model: read.model, stopReason: read.stopReason, outputSeen: read.outputSeen },
        billable: read !== null,
        firstByteAt,
        // A JSON answer arrives whole: its first byte is the first token the client can see.
        firstTokenAt: read !== null && read.outputSeen ? firstByteAt : null,
        upstreamRequestId,
        anomalies: read === null ? ['no_usage'] : read.anomalies,
      });
      // The client may have left while the hold shrank: then the answer was never written.
      if (x.client.gone) leftBeforeDelivery(settled.event);
      // Published (written ahead to the log's disk, synchronously inside this call) before the
      // first byte of the answer leaves: a gateway killed after the client got its answer still
      // has the usage event. Kafka's acknowledgement is awaited after the reply, off its latency.
      // An event that could not be written ahead is no answer at all (nobody could be billed for it).
      const published = settled.publish();
      if (published.refused) sendError(reply, usageUnrecorded());
      else reply.code(written?.status ?? res.status).type(written === null ? header(res, 'content-type') ?? 'application/json' : 'application/json').send(written?.body ?? bytes);
      await published.done;
      return reply;
    } finally {
      clearInterval(keepAlive);
      served?.release();
    }
  };

  // Every anomaly kind exists at zero from the start, so an alert on its increase fires on the first.
  for (const kind of USAGE_ANOMALIES) metrics?.usageAnomaly(kind, 0);

  const handler = (request: FastifyRequest, reply: FastifyReply) => serve(request, reply, ANTHROPIC_FORMAT);
  app.post('/v1/messages', handler);
  app.post('/api/v1/messages', handler);
  return serve;
}

/** A request field the hold can rely on: a string value, or undefined (not known before the answer). */
function requestLabel(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/**
 * The request's worst case under its price version (`holdBound`): the input bound at the
 * dearest input-side price of every table and tier it could reach, `max_tokens` of output,
 * each priced server tool at its `max_uses` (the catalog's bound where the client gave none,
 * which the gateway also sends upstream), multipliers that match or could (the request's
 * `speed` and `inference_geo` when it names them; standard speed when it does not ask for
 * fast), and the account's price list; at the dearest of the model and its catalog
 * `fallback_models`, plus each of the body's `fallbacks` entries (or `"default"`) as an attempt
 * of its own (`holdTerms`), plus every advisor tool's calls at its model.
 * Returned as admission terms (`admission` of @tollgate/pricing): the full worst case, and how
 * the hold shrinks if the policy clamps.
 */
function holdFor(x: Exchange, priceList: string | null, policy: AdmissionPolicy, floorTokens: number): Admission {
  const speed = requestLabel((x.body as Record<string, unknown>).speed) ?? 'standard';
  const geo = requestLabel((x.body as Record<string, unknown>).inference_geo);
  // one step of the server loop reads at most the estimate over its steps; a compaction is a
  // step of its own that reads the context so far, so it adds one such read
  const stepInputTokens = x.body.max_tokens > 0 ? Math.ceil(x.estimate / x.iterations) : x.estimate;
  const compacts = mayCompact(x.body);
  try {
    return admission(x.version, x.resolved.model, {
      inputTokens: x.estimate + (compacts ? stepInputTokens : 0), maxTokens: x.body.max_tokens, units: x.tools.units, speed,
      ...(geo === undefined ? {} : { inferenceGeo: geo }), priceList,
      // every model the request can be served by: its fallbacks (body and catalog) and advisors
      // (a pre-warm calls no advisor)
      advisors: prewarms(x.body) ? [] : advisorTools(x.body.tools),
      // each fallbacks entry is an attempt of its own, at its own max_tokens and speed
      fallbacks: x.fallbacks,
      defaultFallbacks: (x.body as Record<string, unknown>).fallbacks === 'default',
      // a fallback writes at most its own output limit per call, raised by the betas the request
      // names; counted only for a one-step request (no server-tool loop, no compaction)
      anthropicBeta: x.request.headers['anthropic-beta'], steps: holdSteps(x), compactions: compacts ? 1 : 0,
      // an advisor call reads one step's input
      stepInputTokens,
    }, policy, floorTokens);
  } catch (err) {
    if (err instanceof HoldBoundError) {
      throw gatewayError('invalid_request', `tools: ${err.message.split(':')[0]} has no max_uses and this gateway has no bound for it; set max_uses on the tool`);
    }
    throw err;
  }
}

/**
 * The output ceiling of a request (`Metered.maxOutputTokens`: the `max_tokens` sent ×
 * its steps), and with `fallbacks` its attempts (`Metered.attempts`), whose sum the ceiling is
 * then: the requested model's writes up to the `max_tokens` sent, each entry up to its own
 * (else the one sent) but at most its model's limit where the hold counts one (`attemptModels`,
 * the reading `holdTerms` holds), `"default"` one more at the one sent, any model; each × the
 * loop's steps.
 */
function chainBounds(x: Exchange, sentMaxTokens: number): { maxOutputTokens: number; attempts?: AttemptBound[] } {
  const chain = (x.body as Record<string, unknown>).fallbacks;
  if (x.fallbacks.length === 0 && chain !== 'default') return { maxOutputTokens: x.maxOutputTokens };
  const steps = sentMaxTokens > 0 ? x.iterations : 1;
  const read = attemptModels(x.version.catalog, x.resolved.model, x.fallbacks, { steps: holdSteps(x), anthropicBeta: x.request.headers['anthropic-beta'] });
  const attempts: AttemptBound[] = read.map((a, i) => {
    const own = i === 0 ? sentMaxTokens : x.fallbacks[i - 1]!.maxTokens ?? sentMaxTokens;
    return { tokens: Math.min(own, a.limit ?? own) * steps, models: a.models === null ? null : a.models.map((m) => m.id) };
  });
  if (chain === 'default') attempts.push({ tokens: sentMaxTokens * steps, models: null });
  return { maxOutputTokens: attempts.reduce((n, a) => n + a.tokens, 0), attempts };
}

/**
 * The context window the input bound may use for a request (`inputTokenBound`'s
 * `contextWindow`): the largest of the model's (`contextWindowFor`, raised by the request's
 * betas), the model a group's mapping sends upstream where the catalog knows it (`sent`), and
 * every model its `fallbacks` attempts may run on (each entry's model and its catalog
 * `fallback_models`; a name the catalog does not know, or `"default"`: the catalog's largest),
 * since each attempt reads the prompt up to its own model's window per step.
 */
function attemptsContextWindow(catalog: Catalog, model: CatalogModel, sent: CatalogModel | undefined, body: MessagesRequest,
  attempts: readonly FallbackAttempt[], anthropicBeta: string | string[] | undefined): number {
  let window = contextWindowFor(model, anthropicBeta);
  if (sent !== undefined) window = Math.max(window, contextWindowFor(sent, anthropicBeta));
  const widen = (m: CatalogModel) => {
    const w = contextWindowFor(m, anthropicBeta);
    if (w > window) window = w;
    if (m.fallbackModels.size > 0) for (const f of catalog.models) if (m.fallbackModels.has(f.id)) window = Math.max(window, contextWindowFor(f, anthropicBeta));
  };
  widen(model);
  if ((body as Record<string, unknown>).fallbacks === 'default') {
    for (const m of catalog.models) widen(m);
    return window;
  }
  for (const f of attempts) {
    const hit = f.model === '' ? undefined : resolveServing(catalog, f.model, model);
    if (hit === undefined || !hit.resolved) {
      for (const m of catalog.models) widen(m);
      break;
    }
    widen(hit.model);
  }
  return window;
}

/**
 * The sampling steps a request may run, for its hold (`HoldRequest.steps`): the input bound's
 * iterations (1, or the server-tool loop's), and one more when its `context_management` may
 * compact (`mayCompact`: a compaction is a step of its own in `usage.iterations`, beside the
 * loop's steps, reading the context so far and writing its summary).
 */
function holdSteps(x: Exchange): number {
  const iterations = x.body.max_tokens > 0 ? x.iterations : 1;
  return mayCompact(x.body) ? iterations + 1 : iterations;
}

/**
 * The `usage.iterations` types whose output is not bound by the request's `max_tokens` ×
 * steps, each with its own bound, what the hold priced for it (`Metered.outputBounds`): one
 * compaction's summary, up to the `max_tokens` sent (`sentMaxTokens`), when the request may
 * compact; the advisors' answers, `advisorOutputTokens` per advisor model (`advisorBoundKey`), when
 * it names advisor tools. None on a pre-warm (it generates nothing, and calls no advisor). A step
 * of such a type on a request that could not run one stays under the ceiling.
 */
function outputBounds(body: MessagesRequest, catalog: Catalog, requested: CatalogModel, sentMaxTokens: number): Record<string, number> {
  const out: Record<string, number> = {};
  if (prewarms(body)) return out;
  if (mayCompact(body)) out['compaction'] = sentMaxTokens;
  // per advisor model (as pricing resolves a step's model): output held at one model's rate is
  // never charged at another's
  for (const a of advisorTools(body.tools)) {
    const key = advisorBoundKey(resolveAdvisor(catalog, a.model, requested).model.id);
    out[key] = (out[key] ?? 0) + advisorOutputTokens(catalog, [a]);
  }
  return out;
}

/**
 * The catalog's `unpriced: "refuse"` policy, before anything is held or sent: a request whose
 * server tools bill a unit the catalog has no price for, or that asks for fast mode on a model
 * without fast prices, is a 400 `unpriced_request` naming what is unpriced. With `record` (the
 * default) it is served and the unpriced units are recorded on its usage event.
 */
function refuseUnpriced(version: PriceVersion, resolved: ResolvedModel, body: MessagesRequest, tools: ServerTools, fallbacks: readonly FallbackAttempt[]): void {
  if (version.catalog.unpriced !== 'refuse') return;
  const missing = requestUnpriced(resolved.model, {
    speed: requestLabel((body as Record<string, unknown>).speed) ?? null,
    units: Object.keys(tools.units) as UnitDimension[],
  });
  if (missing.length > 0) {
    throw gatewayError('unpriced_request',
      `${resolved.model.id} has no price on this gateway for ${missing.join(', ')}; remove the tool or option that uses it`);
  }
  // a fallbacks entry's own fast mode, at its model
  fallbacks.forEach((f, i) => {
    const m = f.speed === 'fast' ? resolveModel(version.catalog, f.model)?.model : undefined;
    if (m !== undefined && requestUnpriced(m, { speed: 'fast' }).length > 0) {
      throw gatewayError('unpriced_request', `fallbacks[${i}].speed: ${m.id} has no price on this gateway for speed:fast; remove the entry's speed`);
    }
  });
}

/**
 * The error for an upstream that answered in another framing than the request asked for
 * (`stream` true answered with one body, or false answered with an event stream): 503
 * `upstream_error` with `x-should-retry: false`, since the upstream has already generated (and
 * billed) the answer and a retry through the same upstream would do it again.
 */
function framingError(what: string): GatewayError {
  return gatewayError('upstream_error', `Upstream answered ${what}; the gateway operator must fix its upstream`, {
    headers: { 'x-should-retry': 'false' },
  });
}

/**
 * A settled request's usage event and its publication: `publish` writes it ahead (before the
 * answer's last bytes; `refused`: it could not be, logged and counted, and the answer must be
 * withheld) and `done` resolves once it is acknowledged (a failure is logged, never thrown).
 */
interface Settled {
  event: UsageEvent;
  publish: () => Publication;
}

/**
 * The answer withheld because its usage event could not be written ahead (Publication.refused):
 * 503, retriable (`retry-after: 2`, as the refusals that follow it), nothing charged (README, "Errors").
 */
function usageUnrecorded(): GatewayError {
  return gatewayError('usage_unrecorded', 'This gateway could not record the usage of this request, so its answer is withheld and nothing is charged; retry the request', {
    headers: { 'retry-after': '2' },
  });
}

/**
 * Refused before forwarding while the write ahead fails (EventLog.writeAheadProblem): 503,
 * `retry-after: 2`, nothing sent upstream or charged (README, "Errors").
 */
function usageUnrecordable(): GatewayError {
  return gatewayError('usage_unrecorded', 'This gateway cannot record usage right now, so the request was not forwarded and nothing is charged; retry the request', {
    headers: { 'retry-after': '2' },
  });
}

/** The client left before the answer was written: an answered request becomes `client_disconnect`. */
function leftBeforeDelivery(event: UsageEvent): void {
  if (event.status === 'ok' || event.status === 'usage_anomaly') event.status = 'client_disconnect';
}

/**
 * Passes the upstream's SSE to the client one complete event at a time (`SseFramer`: the bytes
 * unchanged) while the meter reads usage on the side. Settlement rules (README, "Settlement"):
 * - answered stream (`message_stop`, or a final `message_delta` with `stop_reason`): the usage
 *   tally of the whole message. The answer is over at `message_stop`, or `ANSWER_END_GRACE_MS`
 *   after the last non-ping event once the final `message_delta` came (at most
 *   `answerEndLimitMs` after that delta): then the client's response ends, the request settles
 *   and the upstream connection is closed, however long the upstream would keep it open;
 * - with `relay` false (the request did not ask for a stream) nothing is relayed: the stream is
 *   read by the same rules, settled as `upstream_error` (charged per `STREAM_ERROR_BILLING`,
 *   usage recorded), and the client gets `framingError` (503 JSON);
 * - the client leaves at any point: the upstream keeps generating and bills for it, so Tollgate
 *   keeps reading (without forwarding) to the end of the answer and bills exactly the usage the
 *   upstream reports; `client_disconnect` unless the answer had already been handed to the
 *   connection;
 * - SSE `error` event after 200 before the answer was complete, or the upstream ends before the
 *   answer: `STREAM_ERROR_BILLING` (default `refund`: nothing is charged; `usage`: the usage
 *   reported until then). An `error` after a complete answer is `error_after_answer`: charged.
 * An upstream `error` event is never relayed as written: the gateway renders its own
 * (`upstreamEventError`, credentials redacted). The client is never waited for (see
 * `MAX_CLIENT_BUFFER_BYTES`), so nothing it does can stall the upstream, the settlement, or the
 * hold and limiter slots.
 */
async function relayStream(
  deps: GatewayDeps,
  { request, reply, limit, client, format }: Exchange,
  res: UpstreamResponse,
  upstreamRequestId: string | null,
  finish: (o: Outcome) => Promise<Settled>,
  upstreamSpan: Span,
  relay: boolean,
): Promise<void> {
  // Not relayed (the request did not ask for a stream): read and metered by the same rules,
  // then answered with the gateway's JSON error.
  if (relay) reply.hijack();
  const raw = reply.raw;
  // Set when the client is gone or cut off; from then on the stream is only metered.
  let forwarding = relay && !client.gone;
  if (forwarding) {
    // Every header the reply already has (clamp, rate-limit, CORS, request-id hooks) goes out
    // too: after the hijack Fastify sends none of them itself.
    const { 'content-length': _length, 'transfer-encoding': _te, ...set } = reply.getHeaders() as OutgoingHttpHeaders;
    const already = Object.fromEntries(Object.entries(set).filter(([, v]) => v !== undefined)) as OutgoingHttpHeaders;
    raw.writeHead(200, {
      ...already,
      ...limit.headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'request-id': request.id,
      'x-accel-buffering': 'no',
    });
    raw.flushHeaders();
  }
  const meter = createStreamMeter();
  const framer = new SseFramer();
  let firstByteAt: number | null = null;
  // The first event that carried content (the meter's outputSeen turned true): the event's ttft.
  let firstTokenAt: number | null = null;
  let dropped = false;
  // The answer (up to message_stop) was handed to the client's connection while it was there.
  let delivered = false;
  // The stream's last bytes (message_stop, or the gateway's closing frame) as Anthropic events,
  // written through the client's format after the usage event is published; then the response ends.
  const tail: Array<Buffer | string> = [];
  // The upstream's error event before the answer was complete, as the client gets it.
  let streamError: GatewayError | null = null;
  // The answer is over (message_stop, an error, the grace after the final delta): stop reading.
  let over = false;
  // Each complete event as the client's format writes it (unchanged for Anthropic clients).
  const write = format.stream?.() ?? ((event: Buffer | string) => event);
  // The answer was cut by the gateway because its usage could not be recorded (`send`).
  let withheld = false;
  const send = (bytes: Buffer | string) => {
    if (!forwarding) return;
    if (client.gone) {
      forwarding = false;
      return;
    }
    const writeAhead = deps.log.writeAheadProblem?.();
    // The disk only fell below its reserve: appends still work, so this answer is recorded in it.
    if (writeAhead && !(writeAhead instanceof DiskReserveLowError)) {
      // The write ahead failed meanwhile (another request's append found the disk full): this
      // answer could not be recorded either, so its text stops here, not at its last frame. The
      // client was told it was withheld and to retry: charged nothing, even if the disk is freed
      // before its upstream ends (a breaker saw it charged in full, the retry paying twice).
      withheld = true;
      raw.write(write(sseErrorEvent(gatewayError('usage_unrecorded', 'This gateway cannot record usage right now, so the rest of this answer is withheld; retry the request'), request.id)));
      raw.end();
      forwarding = false;
      return;
    }
    raw.write(write(bytes));
    if (raw.writableLength > MAX_CLIENT_BUFFER_BYTES) {
      request.log.warn({ buffered: raw.writableLength }, 'client stopped reading; cut off, the stream is read to its end');
      forwarding = false;
      raw.destroy();
    }
  };
  const iterator = res.body[Symbol.asyncIterator]();
  let graceTimer: NodeJS.Timeout | undefined;
  let graceUntil: number | null = null;
  // When the final message_delta came, and the latest the answer may end after it.
  let stoppedAt: number | null = null;
  const endLimit = answerEndLimitMs(deps.upstream.timeoutMs);
  let contentAfterStop = false;
  try {
    while (!over) {
      const next = iterator.next();
      let step: IteratorResult<Buffer> | 'grace';
      if (meter.stopped && !meter.completed) {
        // The final message_delta came: only message_stop (or late usage) may still follow.
        // The grace restarts on every event but a ping (graceUntil reset below), never past the limit.
        stoppedAt ??= performance.now();
        graceUntil ??= Math.min(performance.now() + ANSWER_END_GRACE_MS, stoppedAt + endLimit);
        const wait = Math.max(0, graceUntil - performance.now());
        step = await Promise.race([
          next,
          new Promise<'grace'>((resolve) => { graceTimer = setTimeout(() => resolve('grace'), wait); }),
        ]);
        clearTimeout(graceTimer);
        if (step === 'grace') {
          next.catch(() => {});
          break;
        }
      } else {
        step = await next;
      }
      if (step.done) break;
      if (firstByteAt === null) {
        firstByteAt = performance.now();
        upstreamSpan.addEvent('first byte');
      }
      for (const frame of framer.push(step.value)) {
        const answeredBefore = meter.answered;
        meter.push(frame.raw);
        if (firstTokenAt === null && meter.outputSeen) firstTokenAt = performance.now();
        if (meter.stopped) {
          const type = frameType(frame);
          if (type !== 'ping') graceUntil = null;
          // Content after the stop_reason: the answer was declared over, yet it goes on.
          if (answeredBefore && !meter.completed && type.startsWith('content_block')) contentAfterStop = true;
        }
        if (isErrorFrame(frame)) {
          // After a complete answer the error changes nothing the client has (the meter flags
          // it); before, it ends the stream. Either way its text is the upstream's, not ours.
          if (!answeredBefore) {
            let data: unknown = undefined;
            try { data = JSON.parse(frame.data); } catch { /* rendered as a generic upstream error */ }
            streamError = upstreamEventError(data, { secrets: res.secrets });
            send(sseErrorEvent(streamError, request.id));
          }
          over = true;
          break;
        }
        // Comments dropped, the gateway's own secrets redacted (`scrubEvent`); the meter read the original.
        if (meter.completed) {
          // message_stop, the answer's last bytes, is held back until its usage event is
          // written ahead (below): a gateway killed once the client has the whole answer has it.
          if (forwarding && !client.gone) {
            delivered = true;
            tail.push(res.scrubEvent(frame.raw));
          }
          over = true;
          break;
        }
        send(res.scrubEvent(frame.raw));
      }
      if (framer.overflowed) {
        request.log.warn({ upstreamRequestId }, 'upstream SSE event too large; the stream is treated as broken');
        break;
      }
    }
  } catch (err) {
    dropped = true;
    failSpan(upstreamSpan, err);
    request.log.warn({ err, upstreamRequestId }, 'upstream stream broke');
  } finally {
    clearTimeout(graceTimer);
    // Whatever the upstream still sends cannot change the answer or its cost.
    res.body.cancel();
  }
  meter.end();
  if (forwarding && client.gone) forwarding = false;
  // Completeness is judged by the answer: a final message_delta with stop_reason is one, even
  // if message_stop never came or the connection broke after it.
  const incomplete = !meter.answered;
  if (streamError !== null) {
    deps.metrics?.upstreamError('stream_error');
    failSpan(upstreamSpan, new Error('SSE error event from the upstream'));
  } else if (incomplete) {
    deps.metrics?.upstreamError('stream_dropped');
    if (!dropped) failSpan(upstreamSpan, new Error('upstream stream ended before the answer did'));
  }
  if (!forwarding) upstreamSpan.setAttribute('tollgate.client_aborted', true);
  setGenAiResponse(upstreamSpan, {
    model: meter.model, id: meter.messageId, stopReason: meter.stopReason, usage: meter.hasUsage ? meter.usage() : null,
  });
  upstreamSpan.end();
  // Cut by this process's shutdown (GatewayDeps.shutdown): the upstream bills what it generated
  // until the cut, so the usage reported so far is charged, as when a client leaves.
  const cut = incomplete && streamError === null && deps.shutdown?.aborted === true;
  if (forwarding) {
    if (cut) {
      // Not the upstream's fault: the client is told to retry (overloaded_error, the type Anthropic gives a temporary refusal).
      tail.push(sseErrorEvent(gatewayError('overloaded', 'This gateway is shutting down and cut the stream before the answer ended; retry the request'), request.id));
    } else if (incomplete && streamError === null) {
      tail.push(sseErrorEvent(gatewayError('upstream_error', 'Upstream connection was interrupted'), request.id));
    } else if (!meter.completed && streamError === null) {
      // Answered and charged, but the upstream left out the closing frame: close the message
      // for the client, whose SDK otherwise rejects an answer it is billed for.
      tail.push(MESSAGE_STOP_FRAME);
    }
    // Every byte of an answer without message_stop reached the connection too.
    if (meter.answered && streamError === null) delivered = true;
  }
  let ended = false;
  const endStream = () => {
    if (ended || !forwarding) return;
    ended = true;
    for (const bytes of tail) raw.write(write(bytes));
    raw.end();
  };
  const failed = streamError !== null || incomplete;
  const unmetered = !failed && !meter.hasUsage;
  const anomalies: UsageAnomaly[] = meter.anomalies;
  if (unmetered || (!relay && !meter.hasUsage)) anomalies.push('no_usage');
  if (contentAfterStop && !anomalies.includes('event_after_stop')) anomalies.push('event_after_stop');
  if (!relay) {
    // An event stream answering a request that asked for one JSON body (`framingError`):
    // settled like a stream that failed after 200, its usage recorded either way.
    if (streamError === null && !incomplete) deps.metrics?.upstreamError('stream_error');
    request.log.warn({ upstreamRequestId }, 'upstream answered a non-streaming request with an event stream');
    const { publish } = await finish({
      status: 'upstream_error',
      httpStatus: 503,
      usage: meter.hasUsage ? meter.usage() : null,
      report: meter.hasUsage ? { tally: meter.tally, model: meter.model, stopReason: meter.stopReason, outputSeen: meter.outputSeen } : null,
      billable: meter.hasUsage && deps.streamErrorBilling === 'usage',
      firstByteAt,
      // the client got a framing error, never a token
      firstTokenAt: null,
      upstreamRequestId,
      anomalies,
    });
    sendError(reply, framingError('a non-streaming request with an event stream'));
    await publish().done;
    return;
  }
  if (cut) anomalies.push('cut_by_shutdown');
  // recorded as charged nothing on purpose, so that nothing (a re-price) bills it later
  if (withheld) anomalies.push('answer_withheld');
  try {
    const { publish } = await finish({
      status: cut ? 'client_disconnect' : streamError !== null ? 'stream_error' : incomplete ? 'upstream_error' : unmetered ? 'unmetered' : delivered ? 'ok' : 'client_disconnect',
      httpStatus: 200,
      usage: meter.hasUsage ? meter.usage() : null,
      report: meter.hasUsage ? { tally: meter.tally, model: meter.model, stopReason: meter.stopReason, outputSeen: meter.outputSeen } : null,
      billable: meter.hasUsage && !withheld && (cut || !failed || deps.streamErrorBilling === 'usage'),
      firstByteAt,
      // tokens relayed before a later error still arrived when they did
      firstTokenAt,
      upstreamRequestId,
      anomalies,
    });
    // Written ahead synchronously inside this call; the stream's last bytes leave after it, or,
    // when it could not be (nobody could be billed), an error event instead of them.
    const published = publish();
    if (published.refused && streamError === null) tail.splice(0, tail.length, sseErrorEvent(usageUnrecorded(), request.id));
    endStream();
    await published.done;
  } finally {
    endStream();
  }
}
