import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { badOutputTokens, compressedSink, compressSync, plainSink, rateLimitHeaders, serializeWithBadUsage } from './anomalies.ts';
import { installJsonParser, MAX_JSON_DEPTH, TooDeepBody } from './body.ts';
import { parseDirectives } from './directives.ts';
import { FaultQueue, faultHeaders, parseFault } from './faults.ts';
import type { BadUsage, Directives, Encoding, Fault } from './directives.ts';
import { defaultErrorMessage, errorBody, errorTypeForStatus, invalidRequest, SimulatorError } from './errors.ts';
import { contextWindow, maxOutputTokens, MODELS } from './models.ts';
import { PromptCache } from './prompt-cache.ts';
import { registerOpenAIMode } from './openai.ts';
import type { CacheOutcome } from './prompt-cache.ts';
import { RequestRecorder } from './recorder.ts';
import { buildReply, streamPlan } from './reply.ts';
import type { Reply } from './reply.ts';
import { lastUserText, parseMessagesBody } from './request.ts';
import type { MessagesBody } from './request.ts';
import { countInputTokens, promptUnits } from './tokens.ts';
import type { PromptUnit } from './tokens.ts';
import type { ErrorType, Message, StreamEvent, Usage } from './wire.ts';

export interface SimulatorOptions {
  /** When set, `x-api-key` (or `Authorization: Bearer`) must equal it; otherwise any non-empty key is accepted. */
  apiKey?: string;
  /** Delay before response headers. */
  latencyMs?: number;
  /** Delay between message_start and the first content delta. */
  ttftMs?: number;
  /** Output pacing; 0 = as fast as possible. */
  tokensPerSecond?: number;
  /** Output tokens when no `output` directive is given (capped at max_tokens). Default 24. */
  defaultOutputTokens?: number;
  /** Size of the /_sim/requests ring buffer. Default 200; 0 disables recording. */
  recordRequests?: number;
  /** Fastify request logging. Default off: the simulator runs inside test processes. */
  logger?: boolean;
}

// Anthropic accepts request bodies up to 32 MB; Fastify's 1 MiB default would reject real
// Claude Code traffic before the simulator could see it.
const BODY_LIMIT = 32 * 1024 * 1024;

interface Timing {
  readonly latencyMs: number;
  readonly ttftMs: number;
  readonly tokensPerSecond: number;
}

function nonNegative(name: string, value: number | undefined, fallback: number, integer: boolean): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new RangeError(`simulator option ${name} must be a non-negative ${integer ? 'integer' : 'number'}, got ${value}`);
  }
  return value;
}

function credentialOf(request: FastifyRequest): string | undefined {
  const key = request.headers['x-api-key'];
  if (typeof key === 'string' && key !== '') return key;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  return match?.[1];
}

/** Aborts pending waits when the client goes away, so a cancelled stream stops generating. */
function closeSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => controller.abort());
  return controller.signal;
}

function faultStatus(directives: Directives, stream: boolean): number | undefined {
  if (directives.status !== undefined) return directives.status;
  if (directives.fault?.kind === 'overloaded') return 529;
  // A mid-stream overload has no place to happen in a non-streaming reply; the nearest
  // equivalent is the overloaded error response itself.
  if (!stream && directives.fault?.kind === 'sse_error_after') return 529;
  return undefined;
}

function dropsBeforeResponse(fault: Fault | undefined, stream: boolean): boolean {
  return fault?.kind === 'drop' || (!stream && fault?.kind === 'drop_after');
}

function buildUsage(units: readonly PromptUnit[], cache: CacheOutcome, directives: Directives, outputTokens: number): Usage {
  const total = countInputTokens(units);
  const write5m = directives.cache_write_5m ?? (cache.writeTtl === '5m' ? cache.writeTokens : 0);
  const write1h = directives.cache_write_1h ?? (cache.writeTtl === '1h' ? cache.writeTokens : 0);
  const usage: Usage = {
    input_tokens: directives.input ?? Math.max(0, total - cache.readTokens - cache.writeTokens),
    output_tokens: outputTokens,
    cache_creation_input_tokens: write5m + write1h,
    cache_read_input_tokens: directives.cache_read ?? cache.readTokens,
    cache_creation: { ephemeral_5m_input_tokens: write5m, ephemeral_1h_input_tokens: write1h },
    service_tier: directives.tier ?? 'standard',
  };
  Object.assign(usage, pricingFields(directives));
  return usage;
}

/** The usage fields beyond token counts that the pricing directives ask for (also repeated in the final message_delta). */
function pricingFields(directives: Directives): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (directives.web_search !== undefined || directives.web_fetch !== undefined) {
    out.server_tool_use = { web_search_requests: directives.web_search ?? 0, web_fetch_requests: directives.web_fetch ?? 0 };
  }
  if (directives.tier !== undefined) out.service_tier = directives.tier;
  if (directives.geo !== undefined) out.inference_geo = directives.geo;
  if (directives.speed !== undefined) out.speed = directives.speed;
  if (directives.iterations !== undefined) {
    out.iterations = directives.iterations.map((i) => ({
      type: i.type, ...(i.model === null ? {} : { model: i.model }),
      input_tokens: i.input, output_tokens: i.output, cache_read_input_tokens: 0, cache_creation_input_tokens: 0,
    }));
  }
  if (directives.usage_field !== undefined) out[directives.usage_field.name] = directives.usage_field.value;
  return out;
}

function sseFrame(event: StreamEvent, badUsage?: BadUsage): string {
  return `event: ${event.type}\ndata: ${serializeWithBadUsage(event, badUsage)}\n\n`;
}

interface StreamJob {
  readonly requestId: string;
  readonly message: Message;
  readonly reply: Reply;
  readonly directives: Directives;
  readonly timing: Timing;
  readonly signal: AbortSignal;
}

/**
 * Writes the SSE response event by event on the raw socket (the reply is hijacked), so
 * time-to-first-token, pacing, mid-stream faults and stream anomalies (`sse=`, `bad_usage=`)
 * are observable by the client.
 */
async function writeStream(fastifyReply: FastifyReply, job: StreamJob): Promise<void> {
  const res = fastifyReply.raw;
  const { message, reply, timing, signal, directives } = job;
  const { fault, sse } = directives;
  const encoding = directives.encoding;
  res.writeHead(200, {
    'request-id': job.requestId,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    ...(encoding === undefined ? {} : { 'content-encoding': encoding }),
  });
  const sink = encoding === undefined ? plainSink(res) : compressedSink(res, encoding);
  const send = (event: StreamEvent, badUsage?: BadUsage): Promise<void> => sink.write(sseFrame(event, badUsage));
  // Returns true when the fault fired and the response is over.
  const fire = async (): Promise<boolean> => {
    if (fault?.kind === 'sse_error_after') {
      await send({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
      await sink.end();
      return true;
    }
    if (fault?.kind === 'drop_after') {
      sink.destroy();
      return true;
    }
    return false;
  };
  const faultAfter = fault?.kind === 'sse_error_after' || fault?.kind === 'drop_after' ? fault.after : Infinity;

  const start: StreamEvent = {
    type: 'message_start',
    message: { ...message, content: [], stop_reason: null, usage: { ...message.usage, output_tokens: 1 } },
  };
  await send(start);
  const plan = streamPlan(reply.content);
  if (plan.length === 0) {
    if (sse === 'duplicate_message_start') await send(start);
    await send({ type: 'ping' });
  }

  const firstDeltaAt = performance.now() + timing.ttftMs;
  let deltasSent = 0;
  let tokensSent = 0;
  for (const [index, block] of plan.entries()) {
    await send({ type: 'content_block_start', index, content_block: block.start });
    if (index === 0 && sse === 'duplicate_message_start') await send(start);
    if (index === 0) await send({ type: 'ping' });
    for (const { delta, tokens } of block.deltas) {
      if (deltasSent === faultAfter && (await fire())) return;
      // Scheduled against one start time so per-delta timer slack does not accumulate.
      const due = firstDeltaAt + (timing.tokensPerSecond > 0 ? (tokensSent * 1000) / timing.tokensPerSecond : 0);
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait, undefined, { signal });
      await send({ type: 'content_block_delta', index, delta });
      deltasSent += 1;
      tokensSent += tokens;
    }
    await send({ type: 'content_block_stop', index });
  }
  // A fault set beyond the last delta still fires, before the final usage.
  if (faultAfter !== Infinity && (await fire())) return;

  const { usage } = message;
  const finalUsage = {
    output_tokens: usage.output_tokens,
    input_tokens: sse === 'delta_lower' ? 0 : usage.input_tokens,
    cache_creation_input_tokens: usage.cache_creation_input_tokens,
    cache_read_input_tokens: sse === 'delta_lower' ? 0 : usage.cache_read_input_tokens,
    ...pricingFields(directives),
  };
  const delta = { stop_reason: reply.stopReason, stop_sequence: null };
  const badUsage = directives.bad_usage;
  await send(
    {
      type: 'message_delta',
      delta,
      usage: badUsage === undefined ? finalUsage : { ...finalUsage, output_tokens: badOutputTokens(badUsage) as number },
    },
    badUsage,
  );
  if (sse !== 'no_message_stop') await send({ type: 'message_stop' });
  if (sse === 'delta_after_stop') {
    await send({ type: 'message_delta', delta, usage: { ...finalUsage, output_tokens: usage.output_tokens * 2 } });
  }
  await sink.end();
}

export function buildSimulator(opts: SimulatorOptions = {}): FastifyInstance {
  const defaults: Timing = {
    latencyMs: nonNegative('latencyMs', opts.latencyMs, 0, false),
    ttftMs: nonNegative('ttftMs', opts.ttftMs, 0, false),
    tokensPerSecond: nonNegative('tokensPerSecond', opts.tokensPerSecond, 0, false),
  };
  const defaultOutputTokens = nonNegative('defaultOutputTokens', opts.defaultOutputTokens, 24, true);
  const recorder = new RequestRecorder(nonNegative('recordRequests', opts.recordRequests, 200, true));
  const cache = new PromptCache();
  const apiKey = opts.apiKey;

  let counter = 0;
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: BODY_LIMIT,
    genReqId: () => `req_sim_${++counter}`,
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('request-id', request.id);
  });
  installJsonParser(app);

  // `encoding=` compresses every body the request gets (message, error, count_tokens), whatever
  // the client accepts: the simulated fault is a CDN that compresses anyway.
  const forcedEncoding = new WeakMap<FastifyRequest, Encoding>();
  app.addHook('onSend', async (request, reply, payload) => {
    const encoding = forcedEncoding.get(request);
    if (encoding === undefined || (typeof payload !== 'string' && !Buffer.isBuffer(payload))) return payload;
    reply.header('content-encoding', encoding);
    reply.removeHeader('content-length');
    return compressSync(encoding, payload);
  });

  app.setErrorHandler((error, request, reply) => {
    let status: number;
    let type: ErrorType;
    if (error instanceof SimulatorError) {
      status = error.status;
      type = error.type;
      void reply.headers(error.headers);
    } else {
      const code = (error as { statusCode?: unknown }).statusCode;
      status = typeof code === 'number' && code >= 400 && code < 600 ? code : 500;
      type = errorTypeForStatus(status);
      // Fastify's own 4xx (bad JSON, wrong content type) are the client's fault.
      if (status < 500 && type === 'api_error') type = 'invalid_request_error';
    }
    const message = error instanceof Error && error.message !== '' ? error.message : defaultErrorMessage(type);
    void reply.code(status).send(errorBody(type, message, request.id));
  });

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(errorBody('not_found_error', `${request.method} ${request.url} not found`, request.id));
  });

  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/_sim/requests', async (request) => {
    const raw = (request.query as Record<string, unknown>)['limit'];
    if (raw === undefined) return recorder.list();
    if (typeof raw !== 'string' || !/^\d+$/.test(raw)) throw invalidRequest('limit: expected a non-negative integer');
    return recorder.list(Number(raw));
  });

  app.delete('/_sim/requests', async (_request, reply) => {
    recorder.clear();
    return reply.code(204).send();
  });

  // Faults for this instance's next model calls (src/faults.ts): one upstream of a pool fails, the others serve.
  const faults = new FaultQueue();
  app.post('/_sim/faults', async (request) => {
    const { count, fault } = parseFault(request.body);
    faults.add(count, fault);
    return { pending: faults.pending };
  });
  app.get('/_sim/faults', async () => ({ pending: faults.pending }));
  app.delete('/_sim/faults', async (_request, reply) => {
    faults.clear();
    return reply.code(204).send();
  });

  registerOpenAIMode(app, { recorder, apiKey, ...defaults, defaultOutputTokens, faults });

  app.register(async (v1) => {
    v1.addHook('preHandler', async (request) => {
      // Recorded before the credential check so tests can see what a gateway sent even when
      // it was rejected.
      recorder.record({ method: request.method, url: request.url, headers: { ...request.headers }, body: request.body ?? null });
      const presented = credentialOf(request);
      if (presented === undefined) {
        throw new SimulatorError(401, 'x-api-key header is required', 'authentication_error');
      }
      if (apiKey !== undefined && presented !== apiKey) {
        throw new SimulatorError(401, 'invalid x-api-key', 'authentication_error');
      }
      if (request.body instanceof TooDeepBody) {
        throw invalidRequest(`request body nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`);
      }
    });

    const betasOf = (request: FastifyRequest): string[] => {
      const raw = request.headers['anthropic-beta'];
      const values = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
      return values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
    };

    const timingFor = (d: Directives): Timing => ({
      latencyMs: d.latency_ms ?? defaults.latencyMs,
      ttftMs: d.ttft_ms ?? defaults.ttftMs,
      tokensPerSecond: d.tps ?? defaults.tokensPerSecond,
    });

    /**
     * Shared opening of every model call: wait the latency, then drop or fail as directed.
     * Returns false when the request was answered (or dropped) here.
     */
    const preamble = async (
      request: FastifyRequest,
      reply: FastifyReply,
      body: MessagesBody,
      directives: Directives,
      timing: Timing,
      signal: AbortSignal,
    ): Promise<boolean> => {
      await sleep(timing.latencyMs, undefined, { signal });
      const queued = faults.take();
      if (queued !== undefined) {
        if (queued.delay_ms !== undefined) await sleep(queued.delay_ms, undefined, { signal });
        if (queued.reset === true) {
          reply.hijack();
          reply.raw.destroy();
          return false;
        }
        if (queued.status !== undefined) {
          const type = errorTypeForStatus(queued.status);
          throw new SimulatorError(queued.status, defaultErrorMessage(type), type, faultHeaders(queued));
        }
      }
      if (dropsBeforeResponse(directives.fault, body.stream)) {
        reply.hijack();
        reply.raw.destroy();
        return false;
      }
      const status = faultStatus(directives, body.stream);
      if (status !== undefined) {
        const type = errorTypeForStatus(status);
        const message = directives.echo_key
          ? `invalid x-api-key: ${credentialOf(request) ?? ''}`
          : defaultErrorMessage(type);
        const headers = directives.retry_after === undefined ? {} : rateLimitHeaders(directives.retry_after);
        throw new SimulatorError(status, message, type, headers);
      }
      return true;
    };

    const ignoreDisconnect = (reply: FastifyReply, signal: AbortSignal, error: unknown): void => {
      if (!signal.aborted) throw error;
      // The client left; nobody is there to answer.
      if (!reply.sent) reply.hijack();
    };

    v1.post('/v1/messages', async (request, reply) => {
      const parsed = parseMessagesBody(request.body, { requireMaxTokens: true, betas: betasOf(request) });
      // requireMaxTokens has already rejected a missing max_tokens; this only narrows the type.
      const body = { ...parsed, maxTokens: parsed.maxTokens ?? 1 };
      const directives = parseDirectives(lastUserText(body.messages), request.headers);
      if (directives.encoding !== undefined) forcedEncoding.set(request, directives.encoding);
      if (directives.sse !== undefined && !body.stream) {
        throw invalidRequest(`simulator directive sse=${directives.sse} applies to streaming requests only`);
      }
      if (directives.body !== undefined && body.stream) {
        throw invalidRequest(`simulator directive body=${directives.body} applies to non-streaming requests only`);
      }
      const outputLimit = maxOutputTokens(body.model, betasOf(request));
      if (outputLimit !== undefined && body.maxTokens > outputLimit) {
        throw invalidRequest(`max_tokens: ${body.maxTokens} > ${outputLimit}, which is the maximum allowed number of output tokens for ${body.model}`);
      }
      const units = promptUnits(body);
      // The API's own check, on the prompt as counted (a `input=` directive only changes what is reported).
      const promptTokens = countInputTokens(units);
      const window = contextWindow(body.model, betasOf(request));
      if (promptTokens > window) throw invalidRequest(`prompt is too long: ${promptTokens} tokens > ${window} maximum`);
      const n = request.id.slice('req_sim_'.length);
      const generated = directives.refusal
        ? { content: [], stopReason: 'refusal' as const, outputTokens: directives.output ?? 0 }
        : buildReply(body, directives, defaultOutputTokens, `toolu_sim_${n}`);
      const timing = timingFor(directives);
      const signal = closeSignal(reply.raw);

      try {
        if (!(await preamble(request, reply, body, directives, timing, signal))) return;
        const usage = buildUsage(units, cache.settle(body.model, units), directives, generated.outputTokens);
        const message: Message = {
          id: `msg_sim_${n}`,
          type: 'message',
          role: 'assistant',
          model: directives.served_model ?? body.model,
          content: generated.content,
          stop_reason: generated.stopReason,
          stop_sequence: null,
          usage,
        };
        if (body.stream) {
          reply.hijack();
          await writeStream(reply, { requestId: request.id, message, reply: generated, directives, timing, signal }).catch(
            (error: unknown) => {
              if (!signal.aborted) reply.raw.destroy(error instanceof Error ? error : undefined);
            },
          );
          return;
        }
        const generation = timing.tokensPerSecond > 0 ? (usage.output_tokens * 1000) / timing.tokensPerSecond : 0;
        await sleep(timing.ttftMs + generation, undefined, { signal });
        if (directives.body === 'not_json') return reply.code(200).type('application/json').send('not json');
        if (directives.body === 'no_usage') {
          const { usage: _omitted, ...withoutUsage } = message;
          return reply.code(200).send(withoutUsage);
        }
        if (directives.bad_usage !== undefined) {
          const corrupt = { ...message, usage: { ...usage, output_tokens: badOutputTokens(directives.bad_usage) } };
          return reply.code(200).type('application/json').send(serializeWithBadUsage(corrupt, directives.bad_usage));
        }
        return reply.code(200).send(message);
      } catch (error) {
        ignoreDisconnect(reply, signal, error);
        return;
      }
    });

    v1.post('/v1/messages/count_tokens', async (request, reply) => {
      const body = parseMessagesBody(request.body, { requireMaxTokens: false, betas: betasOf(request) });
      const directives = parseDirectives(lastUserText(body.messages), request.headers);
      if (directives.encoding !== undefined) forcedEncoding.set(request, directives.encoding);
      const units = promptUnits(body);
      const signal = closeSignal(reply.raw);
      try {
        if (!(await preamble(request, reply, { ...body, stream: false }, directives, timingFor(directives), signal))) return;
        return { input_tokens: directives.input ?? countInputTokens(units) };
      } catch (error) {
        ignoreDisconnect(reply, signal, error);
        return;
      }
    });

    v1.get('/v1/models', async () => ({
      data: MODELS,
      has_more: false,
      first_id: MODELS[0]?.id ?? null,
      last_id: MODELS.at(-1)?.id ?? null,
    }));

    v1.get('/v1/models/:model_id', async (request) => {
      const { model_id: id } = request.params as { model_id: string };
      const model = MODELS.find((m) => m.id === id);
      if (model === undefined) throw new SimulatorError(404, `model: ${id}`, 'not_found_error');
      return model;
    });
  });

  return app;
}
