// OpenAI-compatible mode (issue 10): `POST /v1/chat/completions`, so the gateway's platform
// `openai` can be tested against a real HTTP upstream. The request is read into the same
// internal body the Messages route uses, so replies, tool calls, token counts and directives
// (`[[sim …]]` in the last user message, `x-sim-*` headers) are the Anthropic mode's; only the
// wire shapes (answer, chunks, usage, errors) are OpenAI's.
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseDirectives } from './directives.ts';
import type { Directives } from './directives.ts';
import { SimulatorError } from './errors.ts';
import { faultHeaders, type FaultQueue } from './faults.ts';
import { PromptCache } from './prompt-cache.ts';
import type { RequestRecorder } from './recorder.ts';
import { buildReply, streamPlan } from './reply.ts';
import { lastUserText, parseMessagesBody } from './request.ts';
import { countInputTokens, countWords, openAIImageRuleFor, promptUnits } from './tokens.ts';
import type { PromptUnit } from './tokens.ts';
import { isRecord } from './wire.ts';
import type { JsonObject, OutputBlock } from './wire.ts';

export interface OpenAIModeOptions {
  readonly recorder: RequestRecorder;
  /** as `SimulatorOptions.apiKey`: when set, the bearer token must equal it */
  readonly apiKey: string | undefined;
  readonly latencyMs: number;
  readonly ttftMs: number;
  readonly tokensPerSecond: number;
  readonly defaultOutputTokens: number;
  /** the instance's queue of `POST /_sim/faults`: a chat completion takes one as a Messages call does */
  readonly faults?: FaultQueue;
}

/** Output when a request gives neither `max_completion_tokens` nor `max_tokens` (OpenAI does not require one). */
const DEFAULT_MAX_COMPLETION_TOKENS = 4096;

/** OpenAI's error `type` for a status (its API reference, "Error codes"). */
function openAIType(status: number): string {
  if (status === 401) return 'invalid_request_error';
  if (status === 429) return 'requests';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

function openAIError(status: number, message: string, code: string | null = null): JsonObject {
  return { error: { message, type: openAIType(status), param: null, code } };
}

function credentialOf(request: FastifyRequest): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  if (match?.[1]) return match[1];
  const key = request.headers['x-api-key'];
  return typeof key === 'string' && key !== '' ? key : undefined;
}

const invalid = (message: string) => new SimulatorError(400, message, 'invalid_request_error');

/** An OpenAI content part → an Anthropic block (`data:` URLs → base64 images, other URLs → url images). */
function blockOf(part: unknown, at: string): JsonObject {
  if (typeof part === 'string') return { type: 'text', text: part };
  if (!isRecord(part)) throw invalid(`${at}: expected an object`);
  if (part['type'] === 'text' && typeof part['text'] === 'string') return { type: 'text', text: part['text'] };
  if (part['type'] === 'image_url' && isRecord(part['image_url']) && typeof part['image_url']['url'] === 'string') {
    const url = part['image_url']['url'];
    const data = /^data:([^;,]+);base64,(.*)$/s.exec(url);
    return data ? { type: 'image', source: { type: 'base64', media_type: data[1], data: data[2] } } : { type: 'image', source: { type: 'url', url } };
  }
  throw invalid(`${at}.type: unsupported content part ${JSON.stringify(part['type'])}`);
}

function blocksOf(content: unknown, at: string): JsonObject[] {
  if (content === null || content === undefined) return [];
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw invalid(`${at}: expected a string or an array of content parts`);
  return content.map((p, i) => blockOf(p, `${at}.${i}`));
}

/**
 * A Chat Completions body → the Anthropic-shaped body `parseMessagesBody` reads: system and
 * developer messages → `system`; `tool_calls` → `tool_use`; `tool` messages → user `tool_result`;
 * `tools[].function` → custom tools; `tool_choice` required/function/none/auto → any/tool/none/auto.
 */
function messagesBodyOf(body: JsonObject): JsonObject {
  if (typeof body['model'] !== 'string' || body['model'] === '') throw invalid("you must provide a model parameter");
  const raw = body['messages'];
  if (!Array.isArray(raw) || raw.length === 0) throw invalid("'messages' must contain at least one message");
  const system: string[] = [];
  const messages: JsonObject[] = [];
  raw.forEach((m: unknown, i) => {
    const at = `messages.${i}`;
    if (!isRecord(m)) throw invalid(`${at}: expected an object`);
    const role = m['role'];
    if (role === 'system' || role === 'developer') {
      system.push(blocksOf(m['content'], `${at}.content`).map((b) => String(b['text'] ?? '')).join('\n'));
    } else if (role === 'user') {
      messages.push({ role: 'user', content: blocksOf(m['content'], `${at}.content`) });
    } else if (role === 'assistant') {
      const content = blocksOf(m['content'], `${at}.content`);
      const calls = m['tool_calls'];
      if (Array.isArray(calls)) {
        calls.forEach((c: unknown, j) => {
          if (!isRecord(c) || !isRecord(c['function'])) throw invalid(`${at}.tool_calls.${j}: expected a function call`);
          let input: unknown;
          try { input = JSON.parse(String(c['function']['arguments'] ?? '{}')); } catch { throw invalid(`${at}.tool_calls.${j}.function.arguments: not valid JSON`); }
          content.push({ type: 'tool_use', id: String(c['id']), name: String(c['function']['name']), input });
        });
      }
      messages.push({ role: 'assistant', content });
    } else if (role === 'tool') {
      if (typeof m['tool_call_id'] !== 'string') throw invalid(`${at}.tool_call_id: Field required`);
      messages.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: m['tool_call_id'], content: blocksOf(m['content'], `${at}.content`) }] });
    } else throw invalid(`${at}.role: unsupported role ${JSON.stringify(role)}`);
  });
  const out: JsonObject = { model: body['model'], messages, stream: body['stream'] === true };
  if (system.length > 0) out['system'] = system.join('\n');
  const max = body['max_completion_tokens'] ?? body['max_tokens'] ?? DEFAULT_MAX_COMPLETION_TOKENS;
  // OpenAI's minimum is 1 (0 pre-warms a cache on Anthropic's API only)
  if (max === 0) throw invalid(`${body['max_completion_tokens'] !== undefined ? 'max_completion_tokens' : 'max_tokens'}: 0 is less than the minimum of 1`);
  out['max_tokens'] = max;
  const tools = body['tools'];
  if (Array.isArray(tools)) {
    out['tools'] = tools.map((t: unknown, i) => {
      if (!isRecord(t) || t['type'] !== 'function' || !isRecord(t['function'])) throw invalid(`tools.${i}: expected {"type":"function","function":{…}}`);
      const f = t['function'];
      return { name: f['name'], description: f['description'], input_schema: f['parameters'] ?? { type: 'object' } };
    });
  }
  const choice = body['tool_choice'];
  if (choice === 'required') out['tool_choice'] = { type: 'any' };
  else if (choice === 'none' || choice === 'auto') out['tool_choice'] = { type: choice };
  else if (isRecord(choice) && isRecord(choice['function'])) out['tool_choice'] = { type: 'tool', name: choice['function']['name'] };
  return out;
}

/**
 * OpenAI caches prompt prefixes on its own (no markers). Modelled as a cache point at the end of
 * the tools, of the system prompt and of every message: `cached_tokens` is the longest prefix
 * ending at one of them that this simulator has already seen for the model.
 */
function withImplicitBreakpoints(units: PromptUnit[], body: ReturnType<typeof parseMessagesBody>): PromptUnit[] {
  const ends = new Set<number>();
  let i = body.tools.length;
  if (i > 0) ends.add(i - 1);
  if (body.system !== undefined) {
    i += typeof body.system === 'string' ? 1 : body.system.length;
    ends.add(i - 1);
  }
  for (const m of body.messages) {
    i += typeof m.content === 'string' ? 1 : m.content.length;
    ends.add(i - 1);
  }
  return units.map((u, k) => ({ ...u, breakpoint: ends.has(k) ? '5m' : undefined }));
}

/** Cuts `text` before the first of `stops` it contains; returns the text and the stop matched. */
function applyStops(text: string, stops: readonly string[]): { text: string; matched: string | null } {
  let at = -1;
  let matched: string | null = null;
  for (const s of stops) {
    const k = s === '' ? -1 : text.indexOf(s);
    if (k !== -1 && (at === -1 || k < at)) { at = k; matched = s; }
  }
  return matched === null ? { text, matched } : { text: text.slice(0, at), matched };
}

interface Answer {
  id: string;
  model: string;
  text: string | null;
  refusal: string | null;
  calls: Array<{ id: string; name: string; arguments: string; block: OutputBlock }>;
  finish: 'stop' | 'length' | 'tool_calls' | 'content_filter';
  matched: string | null;
  usage: JsonObject;
}

function completion(a: Answer, created: number): JsonObject {
  const message: JsonObject = { role: 'assistant', content: a.text, refusal: a.refusal, annotations: [] };
  if (a.calls.length > 0) message['tool_calls'] = a.calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
  const choice: JsonObject = { index: 0, message, logprobs: null, finish_reason: a.finish };
  if (a.matched !== null) choice['stop_reason'] = a.matched;
  return { id: a.id, object: 'chat.completion', created, model: a.model, choices: [choice], usage: a.usage, service_tier: 'default', system_fingerprint: 'fp_sim' };
}

/**
 * Registers `POST /v1/chat/completions` in its own scope (own auth hook and OpenAI-shaped error
 * handler). Directives as in the Messages mode, read the same way; their OpenAI meaning:
 * `status=` / `fault=overloaded` (503) → an OpenAI error body (`retry_after=` adds `retry-after`);
 * `fault=drop` / `drop_after=N` as there; `fault=sse_error_after=N` → a `data: {"error": …}` chunk;
 * `refusal` → `refusal` text, `finish_reason: "content_filter"`; `body=no_usage` → no `usage`
 * (JSON) or no usage chunk (stream); `sse=no_message_stop` → a stream that ends after its content
 * deltas without a finish_reason, a usage chunk or `[DONE]`; `input=` / `cache_read=` / `output=`
 * set `prompt_tokens − cached`, `cached_tokens`, `completion_tokens`.
 */
export function registerOpenAIMode(app: FastifyInstance, opts: OpenAIModeOptions): void {
  const cache = new PromptCache();
  app.register(async (scope) => {
    scope.setErrorHandler((error, _request, reply) => {
      const status = error instanceof SimulatorError ? error.status
        : typeof (error as { statusCode?: unknown }).statusCode === 'number' ? (error as { statusCode: number }).statusCode : 500;
      if (error instanceof SimulatorError) void reply.headers(error.headers);
      const message = error instanceof Error && error.message !== '' ? error.message : 'The server had an error while processing your request.';
      void reply.code(status).send(openAIError(status, message, status === 401 ? 'invalid_api_key' : status === 429 ? 'rate_limit_exceeded' : null));
    });
    scope.addHook('preHandler', async (request) => {
      opts.recorder.record({ method: request.method, url: request.url, headers: { ...request.headers }, body: request.body ?? null });
      const presented = credentialOf(request);
      if (presented === undefined || (opts.apiKey !== undefined && presented !== opts.apiKey)) {
        throw new SimulatorError(401, 'Incorrect API key provided.', 'authentication_error');
      }
    });
    scope.post('/v1/chat/completions', async (request, reply) => handle(request, reply));
  });

  async function handle(request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    if (!isRecord(request.body)) throw invalid('request body must be a JSON object');
    const raw = request.body;
    const body = parseMessagesBody(messagesBodyOf(raw), { requireMaxTokens: true });
    const stream = body.stream;
    const includeUsage = isRecord(raw['stream_options']) && raw['stream_options']['include_usage'] === true;
    const directives: Directives = parseDirectives(lastUserText(body.messages), request.headers);
    const n = request.id.replace(/^req_sim_/, '');
    await sleep(directives.latency_ms ?? opts.latencyMs);
    // A queued fault of this instance first, as on /v1/messages: one upstream of an openai group
    // fails while the others serve (failover tests per upstream).
    const queued = opts.faults?.take();
    if (queued !== undefined) {
      if (queued.delay_ms !== undefined) await sleep(queued.delay_ms);
      if (queued.reset === true) {
        reply.hijack();
        reply.raw.destroy();
        return;
      }
      if (queued.status !== undefined) {
        const message = queued.status === 429 ? 'Rate limit reached for requests' : queued.status >= 500 ? 'The server is overloaded or not ready yet.' : `Simulated error (HTTP ${queued.status})`;
        throw new SimulatorError(queued.status, message, 'api_error', faultHeaders(queued));
      }
    }
    if (directives.fault?.kind === 'drop' || (!stream && directives.fault?.kind === 'drop_after')) {
      reply.hijack();
      reply.raw.destroy();
      return;
    }
    const status = directives.status ?? (directives.fault?.kind === 'overloaded' || (!stream && directives.fault?.kind === 'sse_error_after') ? 503 : undefined);
    if (status !== undefined) {
      const headers: Record<string, string> = directives.retry_after === undefined ? {} : { 'retry-after': String(directives.retry_after) };
      const message = status === 503 ? 'The server is overloaded or not ready yet.' : status === 429 ? 'Rate limit reached for requests' : `Simulated error (HTTP ${status})`;
      throw new SimulatorError(status, message, 'api_error', headers);
    }

    const stops = typeof raw['stop'] === 'string' ? [raw['stop']] : Array.isArray(raw['stop']) ? raw['stop'].map(String) : [];
    const maxTokens = body.maxTokens ?? DEFAULT_MAX_COMPLETION_TOKENS;
    const generated = buildReply({ ...body, maxTokens }, directives, opts.defaultOutputTokens, `call_sim_${n}`);
    const units = withImplicitBreakpoints(promptUnits(body, openAIImageRuleFor(body.model)), body);
    const total = countInputTokens(units);
    const settled = cache.settle(body.model, units);
    const cached = directives.cache_read ?? settled.readTokens;
    const uncached = directives.input ?? Math.max(0, total - settled.readTokens);

    let text: string | null = null;
    let matched: string | null = null;
    let outputTokens = generated.outputTokens;
    const calls: Answer['calls'] = [];
    let finish: Answer['finish'] = generated.stopReason === 'max_tokens' ? 'length' : generated.stopReason === 'tool_use' ? 'tool_calls' : 'stop';
    for (const block of generated.content) {
      if (block.type === 'text') {
        const cut = applyStops(block.text, stops);
        text = cut.text;
        if (cut.matched !== null) {
          matched = cut.matched;
          finish = 'stop';
          if (directives.output === undefined) outputTokens = countWords(cut.text);
          break; // generation ended at the stop: no tool call follows
        }
      } else if (block.type === 'tool_use') {
        calls.push({ id: block.id, name: block.name, arguments: JSON.stringify(block.input), block });
      }
    }
    let refusal: string | null = null;
    if (directives.refusal) {
      text = null;
      calls.length = 0;
      refusal = "I'm sorry, I can't help with that.";
      finish = 'content_filter';
      outputTokens = directives.output ?? 0;
    }
    const usage: JsonObject = {
      prompt_tokens: uncached + cached,
      completion_tokens: outputTokens,
      total_tokens: uncached + cached + outputTokens,
      prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    };
    const answer: Answer = {
      id: `chatcmpl-sim${n}`, model: directives.served_model ?? body.model, text, refusal, calls, finish, matched, usage,
    };
    const created = Math.floor(Date.now() / 1000);
    if (!stream) {
      await sleep(directives.ttft_ms ?? opts.ttftMs);
      const out = completion(answer, created);
      if (directives.body === 'no_usage') delete out['usage'];
      if (directives.body === 'not_json') return reply.code(200).type('application/json').send('not json');
      return reply.code(200).send(out);
    }
    reply.hijack();
    await writeChunks(reply, answer, created, directives, includeUsage).catch(() => reply.raw.destroy());
    return;
  }

  async function writeChunks(reply: FastifyReply, a: Answer, created: number, d: Directives, includeUsage: boolean): Promise<void> {
    const res = reply.raw;
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': reply.request.id });
    const base = { id: a.id, object: 'chat.completion.chunk', created, model: a.model, system_fingerprint: 'fp_sim' };
    const send = (chunk: JsonObject) => new Promise<void>((resolve) => { res.write(`data: ${JSON.stringify(chunk)}\n\n`, () => resolve()); });
    const choice = (delta: JsonObject, finish: string | null = null, extra: JsonObject = {}) =>
      ({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish, ...extra }], ...(includeUsage ? { usage: null } : {}) });
    const faultAfter = d.fault?.kind === 'sse_error_after' || d.fault?.kind === 'drop_after' ? d.fault.after : Infinity;
    let deltas = 0;
    const fire = async (): Promise<boolean> => {
      if (deltas !== faultAfter) return false;
      if (d.fault?.kind === 'drop_after') { res.destroy(); return true; }
      await send({ error: { message: 'The server is overloaded or not ready yet.', type: 'server_error', param: null, code: null } });
      res.end();
      return true;
    };
    await send(choice({ role: 'assistant', content: '', refusal: null }));
    const tps = d.tps ?? opts.tokensPerSecond;
    await sleep(d.ttft_ms ?? opts.ttftMs, undefined, { signal: gone.signal }).catch(() => {});
    const pace = async (tokens: number) => { if (tps > 0) await sleep((tokens * 1000) / tps, undefined, { signal: gone.signal }).catch(() => {}); };
    if (a.refusal !== null) await send(choice({ refusal: a.refusal }));
    if (a.text !== null && a.text !== '') {
      for (const block of streamPlan([{ type: 'text', text: a.text }])) {
        for (const { delta, tokens } of block.deltas) {
          if (await fire()) return;
          await pace(tokens);
          if (delta.type === 'text_delta') await send(choice({ content: delta.text }));
          deltas++;
        }
      }
    }
    for (const [index, call] of a.calls.entries()) {
      if (await fire()) return;
      await send(choice({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] }));
      deltas++;
      for (const block of streamPlan([call.block])) {
        for (const { delta, tokens } of block.deltas) {
          if (await fire()) return;
          await pace(tokens);
          if (delta.type === 'input_json_delta') await send(choice({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] }));
          deltas++;
        }
      }
    }
    // A fault set beyond the last delta still fires, before the finish chunk.
    if (faultAfter !== Infinity) {
      deltas = faultAfter;
      if (await fire()) return;
    }
    if (d.sse === 'no_message_stop') { res.end(); return; }
    await send(choice({}, a.finish, a.matched === null ? {} : { stop_reason: a.matched }));
    if (includeUsage && d.body !== 'no_usage') await send({ ...base, choices: [], usage: a.usage });
    res.write('data: [DONE]\n\n');
    res.end();
  }
}
