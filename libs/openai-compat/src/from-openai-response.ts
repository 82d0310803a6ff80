// OpenAI Chat Completions answers → Anthropic Messages answers (issue 10, platform `openai`):
// a whole JSON completion → a Message, and a stream of chunks → Anthropic SSE events, so the
// gateway meters an OpenAI upstream exactly as it meters Anthropic.
import { createParser } from 'eventsource-parser';
import { isRecord, isTokenCount as isCount } from '@tollgate/anthropic';
import type { OpenAIChatChunk, OpenAIChatCompletion, OpenAIFinishReason, OpenAIUsage } from './types.ts';
import { ABORTED_FINISH_REASONS, anthropicErrorOf } from './errors.ts';

type Json = Record<string, unknown>;

/** What the translation needs of the request. */
export interface ResponseContext {
  /** the model to report (the one the gateway asked for, so pricing and `served_model` stay catalog names) */
  model: string;
  /** the request's `stop_sequences`, to tell `stop_sequence` from `end_turn` */
  stopSequences?: readonly string[];
}

/** Anthropic usage of one message (tokens); `cache_creation_input_tokens` is always 0 (OpenAI bills no cache writes). */
export interface AnthropicUsage {
  input_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  output_tokens: number;
}

/**
 * A usage report's counts merged into `into`, count by count: the largest valid count any report
 * gave (OpenAI's are totals so far, so the largest is the latest, and a report that leaves one
 * out or breaks it takes nothing back); a field no report gave validly keeps the first broken
 * value, so the gateway's usage reader still flags it (`invalid_count`). `total_tokens` is not
 * read (the parts are). True when the report carried any of the counts read.
 */
function mergeUsage(into: Json, report: Json): boolean {
  const details = isRecord(report.prompt_tokens_details) ? report.prompt_tokens_details : {};
  const fields: Array<[key: string, value: unknown]> = [
    ['prompt_tokens', report.prompt_tokens], ['completion_tokens', report.completion_tokens], ['cached_tokens', details.cached_tokens],
  ];
  let any = false;
  for (const [key, value] of fields) {
    if (value == null) continue;
    if (key !== 'cached_tokens') any = true;
    const had = into[key];
    if (isCount(value)) into[key] = isCount(had) ? Math.max(had, value) : value;
    else if (had === undefined) into[key] = value;
  }
  return any;
}

/** The merged counts as the OpenAI usage `anthropicUsage` reads. */
function mergedUsage(m: Json): OpenAIUsage {
  return {
    prompt_tokens: m.prompt_tokens, completion_tokens: m.completion_tokens,
    ...(m.cached_tokens !== undefined ? { prompt_tokens_details: { cached_tokens: m.cached_tokens } } : {}),
  } as OpenAIUsage;
}

/**
 * What `cache_read_input_tokens` carries for a `cached_tokens` that cannot be used (not a count,
 * or more than `prompt_tokens`): not a count, so the gateway's usage reader records
 * `invalid_count` and reads 0 cache reads, and the whole `prompt_tokens` is input.
 */
export const UNUSABLE_CACHED_TOKENS = -1;

/**
 * OpenAI usage → Anthropic usage: `cache_read_input_tokens` = `prompt_tokens_details.cached_tokens`,
 * `input_tokens` = `prompt_tokens` − cached (OpenAI counts cached tokens inside prompt_tokens;
 * Anthropic's input_tokens excludes cache reads), `output_tokens` = `completion_tokens` (reasoning
 * tokens included, as OpenAI bills them). A broken count is passed as it comes, so it reaches the
 * gateway's usage checks (`invalid_count`) instead of being repaired here; a `cached_tokens` that
 * is present but unusable (negative, a fraction, a string, more than `prompt_tokens`) is no split
 * of the prompt: `input_tokens` is the whole `prompt_tokens` and `cache_read_input_tokens`
 * `UNUSABLE_CACHED_TOKENS`, never a difference that moves tokens between the two prices.
 */
export function anthropicUsage(usage: OpenAIUsage): AnthropicUsage {
  const cachedRaw = usage.prompt_tokens_details?.cached_tokens as unknown;
  const prompt = usage.prompt_tokens;
  // a cached count splits a prompt: with no prompt count there is nothing to split
  const usable = cachedRaw == null || (isCount(cachedRaw) && isCount(prompt) && cachedRaw <= prompt);
  const cached = !usable ? 0 : isCount(cachedRaw) ? cachedRaw : 0;
  return {
    // a prompt that is no count is passed as it came (the reader flags it), never clamped into one
    input_tokens: isCount(prompt) ? prompt - cached : prompt,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: usable ? cached : UNUSABLE_CACHED_TOKENS,
    output_tokens: usage.completion_tokens,
  };
}

/** `chatcmpl-AbC…` → `msg_chatcmpl_AbC…`: an Anthropic-shaped id that still names the upstream's. */
export function messageIdFor(openAIId: unknown): string {
  const id = typeof openAIId === 'string' && openAIId !== '' ? openAIId : crypto.randomUUID();
  return `msg_${id.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 120)}`;
}

/**
 * finish_reason → [stop_reason, stop_sequence]: stop → `end_turn`, or `stop_sequence` with the
 * sequence when the upstream names which stop string matched (`stop_reason`, a vLLM / SGLang
 * extension; OpenAI itself never says) and it is one of the request's; length → `max_tokens`;
 * tool_calls (and the legacy function_call) → `tool_use`; content_filter → `refusal`.
 */
export function stopReasonFor(finish: OpenAIFinishReason | string | null | undefined, matched: unknown, ctx: ResponseContext): [string, string | null] {
  switch (finish) {
    case 'length': return ['max_tokens', null];
    case 'tool_calls':
    case 'function_call': return ['tool_use', null];
    case 'content_filter': return ['refusal', null];
    default:
      if (typeof matched === 'string' && ctx.stopSequences?.includes(matched)) return ['stop_sequence', matched];
      return ['end_turn', null];
  }
}

/**
 * A tool call's `arguments` text → the `input` object. Models can emit invalid JSON; the call is
 * kept (the client's tool then refuses the input and the model sees why) with the text under
 * `_unparsed_arguments`, rather than dropping the call or failing an answer the upstream billed.
 */
export function toolInput(args: unknown): Json {
  if (typeof args !== 'string' || args.trim() === '') return {};
  try {
    const parsed: unknown = JSON.parse(args);
    if (isRecord(parsed)) return parsed;
  } catch { /* below */ }
  return { _unparsed_arguments: args };
}

/**
 * A non-streaming completion → an Anthropic Message: content `text` (the first choice's content,
 * or its `refusal`), then one `tool_use` per tool call (`id` and `name` kept, `input` parsed by
 * `toolInput`); `stop_reason` by `stopReasonFor`; `usage` by `anthropicUsage`, left out when the
 * upstream sent none (the gateway then records `no_usage`).
 */
export function fromOpenAICompletion(completion: OpenAIChatCompletion, ctx: ResponseContext): Json {
  // Read defensively: a field in a shape no server documents is read as absent, never thrown on
  // (the upstream billed the answer; a 503 here would be retried and billed again).
  const choices = Array.isArray(completion.choices) ? (completion.choices as unknown[]) : [];
  const choice = isRecord(choices[0]) ? choices[0] : undefined;
  const content: Json[] = [];
  const msg = isRecord(choice?.message) ? choice.message : undefined;
  const body = textOf(msg?.content);
  const text = body !== '' ? body : typeof msg?.refusal === 'string' ? msg.refusal : '';
  if (text !== '') content.push({ type: 'text', text });
  const calls = Array.isArray(msg?.tool_calls) ? msg.tool_calls : [];
  for (const call of calls) {
    if (!isRecord(call)) continue;
    const fn = isRecord(call.function) ? call.function : {};
    const args = isRecord(fn.arguments) ? JSON.stringify(fn.arguments) : fn.arguments;
    content.push({
      type: 'tool_use', id: typeof call.id === 'string' && call.id !== '' ? call.id : madeUpToolId(),
      name: typeof fn.name === 'string' ? fn.name : '', input: toolInput(args),
    });
  }
  // Refusal text alone is a refusal; with tool calls the answer calls them (`tool_use`: an agent
  // loop must run them, and Anthropic never ends a tool_use answer `refusal`).
  const called = content.some((b) => b.type === 'tool_use');
  const refused = typeof msg?.refusal === 'string' && msg.refusal !== '' && body === '' && !called;
  const [stopReason, stopSequence] = refused ? ['refusal', null]
    : toolUseIfCalled(stopReasonFor(choice?.finish_reason as string | undefined, choice?.stop_reason, ctx), called);
  const out: Json = {
    id: messageIdFor(completion.id), type: 'message', role: 'assistant', model: ctx.model, content,
    stop_reason: stopReason, stop_sequence: stopSequence,
  };
  if (isRecord(completion.usage)) out.usage = anthropicUsage(completion.usage as OpenAIUsage);
  return out;
}

/**
 * `end_turn` becomes `tool_use` when the answer calls tools: some compatible servers end a
 * tool-calling answer with `finish_reason: "stop"`, and clients loop on `tool_use`.
 */
function toolUseIfCalled(reason: [string, string | null], called: boolean): [string, string | null] {
  return called && reason[0] === 'end_turn' ? ['tool_use', null] : reason;
}

/**
 * An id for a tool call the upstream gave none: unique (`toolu_` and 24 random hex digits), so
 * the calls of different turns of one conversation never share one (the client answers each
 * with its `tool_use_id`).
 */
function madeUpToolId(): string {
  return `toolu_${crypto.randomUUID().replaceAll('-', '').slice(0, 24)}`;
}

/** A message's `content`: a string, or an array of parts whose `text` parts are joined. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((p) => (isRecord(p) && typeof p.text === 'string' ? p.text : '')).join('');
}

/** ms between the `ping`s a stream of reasoning chunks (dropped in translation) is given. */
export const KEEPALIVE_PING_MS = 5_000;

/** One Anthropic SSE event (`{type, …}`). */
export type AnthropicEvent = Json & { type: string };

/** A tool call seen in the stream whose block could not be opened yet (another block is open). */
interface PendingTool {
  id: string;
  name: string;
  args: string;
}

/**
 * Translates a stream of OpenAI chunks into Anthropic stream events, chunk by chunk:
 * `message_start` at the first chunk (usage zero: OpenAI reports it only at the end), a
 * `text` block for content (`text_delta`), one `tool_use` block per tool call
 * (`input_json_delta` carrying the argument text), then `message_delta` (stop reason, and the
 * final usage chunk's counts incl. input and cache reads) and `message_stop`.
 *
 * Blocks are emitted in a protocol-valid order (Anthropic "Streaming Messages": each block
 * start → deltas → stop before the next starts; deltas never follow a block's stop), whatever
 * order the upstream interleaves its pieces in: the first block streams live; a tool call that
 * appears while another block is open is buffered (id, name, argument text) and emitted whole,
 * in the order the calls appeared, when the answer ends; text that comes after a tool call is
 * buffered likewise and emitted last.
 *
 * Usage: every chunk's `usage` with counts replaces the one before (totals so far, so the last
 * one counts; a running usage on content chunks is never the answer's when a later one comes; a
 * usage without counts, `{}`, replaces nothing). The answer ends (`message_delta` + `message_stop`, and nothing after) at the
 * usage chunk `stream_options.include_usage` asks for (no choices, after the finish_reason),
 * without waiting for `data: [DONE]` or the connection's end, so an upstream that leaves the
 * connection open after its answer cannot hold it (issue 10). Usage on the finish chunk itself,
 * or before it, may still be followed by that chunk: `awaitingFinalUsage` tells the relay to
 * wait a moment for it (`anthropicSseFromOpenAI`). At `end()` (DONE, the body's end or a break
 * after the finish, or that wait over): a
 * stream without a finish_reason gets no `message_delta` (the gateway sees an interrupted
 * stream); one with a finish_reason gets the last usage seen, or `usage: {output_tokens: null}`
 * without any (the gateway records `invalid_count` and charges nothing it cannot prove). An
 * `error` chunk becomes an Anthropic `error` event before the finish_reason; after it, the
 * answer is complete and the error closes it (`end()`), as an error after the answer does on
 * the Anthropic path.
 */
export class ChatStreamTranslator {
  readonly #ctx: ResponseContext;
  #started = false;
  /** the block streaming live: text, or the tool call with this OpenAI `index` */
  #open: { index: number; kind: 'text' | 'tool'; tool?: number } | null = null;
  #next = 0;
  /** OpenAI tool-call indexes whose block was opened live */
  readonly #live = new Set<number>();
  /** tool calls waiting for their turn, in the order they appeared */
  readonly #pending = new Map<number, PendingTool>();
  /** text that came while a tool block was open or pending */
  #lateText = '';
  #finish: string | null = null;
  /** content text seen, and refusal text seen: an answer of refusal text only ends `refusal`, as the JSON path's */
  #sawContent = false;
  #sawRefusal = false;
  #matched: unknown = null;
  /** the usage reports' counts merged (`mergeUsage`), or null before any report carried one */
  #usage: Json | null = null;
  /** OpenAI tool-call index of each call id seen without an index (servers that leave it out) */
  readonly #idIndex = new Map<string, number>();
  #lastTool: number | undefined;
  /** the id of the call each upstream index holds, and where a reused index now points */
  readonly #indexId = new Map<number, string>();
  readonly #redirect = new Map<number, number>();
  /** synthetic indexes given so far (negative, apart from any real index) */
  #synthetic = 0;
  /** the name of each call (by index as `#toolIndex` gives it): another name there is another call */
  readonly #names = new Map<number, string>();
  /** a tool_use block was emitted (live or buffered): the answer calls tools */
  #called = false;
  /** performance.now() of the last ping sent for reasoning the translation drops */
  #lastPing = Number.NEGATIVE_INFINITY;
  /** the usage chunk `include_usage` asks for came (no choices, after the finish): nothing follows it */
  #usageFinal = false;
  #ended = false;

  constructor(ctx: ResponseContext) {
    this.#ctx = ctx;
  }

  /** True once `message_stop` (or an `error` event) was emitted: later chunks are ignored. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * True while the answer is complete but for a last word: the finish_reason and a usage are
   * known, and the usage chunk that ends a stream (no choices, after the finish) was not seen
   * (an upstream that reports usage on the finish chunk, or on content chunks, may send a later,
   * final one). The relay waits `FINAL_USAGE_GRACE_MS` from then for it, `[DONE]` or the end of
   * the body, then calls `end()`.
   */
  get awaitingFinalUsage(): boolean {
    return !this.#ended && this.#finish !== null && this.#hasUsage && !this.#usageFinal;
  }

  /** A usage report with a count was seen. */
  get #hasUsage(): boolean {
    return this.#usage !== null && (this.#usage.prompt_tokens !== undefined || this.#usage.completion_tokens !== undefined);
  }

  /**
   * The events an upstream keep-alive yields: `message_start` if none was sent (so the client has
   * its headers), then a `ping`, at most one per `KEEPALIVE_PING_MS`; nothing once the answer ended.
   */
  keepAlive(): AnthropicEvent[] {
    const out: AnthropicEvent[] = [];
    if (this.#ended) return out;
    const started = this.#started;
    this.#start(out, undefined);
    if (!started || performance.now() - this.#lastPing >= KEEPALIVE_PING_MS) {
      this.#lastPing = performance.now();
      out.push({ type: 'ping' });
    }
    return out;
  }

  /** A finish_reason was seen: the answer is complete (its usage may still come). */
  get finished(): boolean {
    return this.#finish !== null;
  }

  #start(out: AnthropicEvent[], id: unknown): void {
    if (this.#started) return;
    this.#started = true;
    out.push({
      type: 'message_start',
      message: {
        id: messageIdFor(id), type: 'message', role: 'assistant', model: this.#ctx.model, content: [],
        stop_reason: null, stop_sequence: null,
        usage: { input_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 0 },
      },
    });
  }

  #close(out: AnthropicEvent[]): void {
    if (this.#open === null) return;
    out.push({ type: 'content_block_stop', index: this.#open.index });
    this.#open = null;
  }

  #text(out: AnthropicEvent[], text: string): void {
    if (this.#open?.kind === 'text') {
      out.push({ type: 'content_block_delta', index: this.#open.index, delta: { type: 'text_delta', text } });
      return;
    }
    if (this.#open !== null || this.#pending.size > 0 || this.#live.size > 0) {
      this.#lateText += text;
      return;
    }
    this.#open = { index: this.#next++, kind: 'text' };
    out.push({ type: 'content_block_start', index: this.#open.index, content_block: { type: 'text', text: '' } });
    out.push({ type: 'content_block_delta', index: this.#open.index, delta: { type: 'text_delta', text } });
  }

  /**
   * The OpenAI index of a streamed tool call piece: its `index`; without one (some compatible
   * servers), the index of its `id` (a new id is a new call), else the call before it continues.
   */
  #toolIndex(call: Json): number {
    const id = typeof call.id === 'string' && call.id !== '' ? call.id : undefined;
    const name = isRecord(call.function) && typeof call.function.name === 'string' && call.function.name !== '' ? call.function.name : undefined;
    // another name where a call is named: another call (a server may repeat a call's own name)
    const otherName = (at: number | undefined) => name !== undefined && at !== undefined && this.#names.has(at) && this.#names.get(at) !== name;
    // A call id seen before: its own call, wherever the piece says it is.
    if (id !== undefined && this.#idIndex.has(id)) return (this.#lastTool = this.#idIndex.get(id)!);
    const fresh = () => -1 - this.#synthetic++; // apart from any real index
    let index: number;
    if (typeof call.index === 'number' && Number.isSafeInteger(call.index)) {
      const held = this.#indexId.get(call.index);
      const current = this.#redirect.get(call.index) ?? call.index;
      // An index reused by another call (Ollama, some bridges): a new id, or, without ids,
      // another name than the call there has.
      if ((id !== undefined && held !== undefined && held !== id) || (id === undefined && otherName(current))) {
        index = fresh();
        this.#redirect.set(call.index, index);
      } else index = current;
      if (id !== undefined) this.#indexId.set(call.index, id);
    } else if (id !== undefined) index = fresh();
    // Neither: the call before continues, unless this piece names another call than that one.
    else index = this.#lastTool === undefined ? 0 : otherName(this.#lastTool) ? fresh() : this.#lastTool;
    if (id !== undefined) this.#idIndex.set(id, index);
    if (name !== undefined && !this.#names.has(index)) this.#names.set(index, name);
    return (this.#lastTool = index);
  }

  #tool(out: AnthropicEvent[], raw: Json): void {
    const fn = isRecord(raw.function) ? raw.function : {};
    const call = {
      index: this.#toolIndex(raw),
      id: typeof raw.id === 'string' ? raw.id : undefined,
      // arguments given as an object (some servers): its JSON text, as the JSON path reads it
      function: { name: typeof fn.name === 'string' ? fn.name : undefined, arguments: isRecord(fn.arguments) ? JSON.stringify(fn.arguments) : fn.arguments },
    };
    const args = typeof call.function?.arguments === 'string' ? call.function.arguments : '';
    if (this.#open?.kind === 'tool' && this.#open.tool === call.index) {
      if (args !== '') out.push({ type: 'content_block_delta', index: this.#open.index, delta: { type: 'input_json_delta', partial_json: args } });
      return;
    }
    const pending = this.#pending.get(call.index);
    if (pending !== undefined) {
      pending.args += args;
      if (pending.name === '' && typeof call.function?.name === 'string') pending.name = call.function.name;
      return;
    }
    // A call opened live and since closed never gets more pieces (blocks close only at the end).
    if (this.#live.has(call.index)) return;
    const id = call.id ?? '';
    const name = call.function?.name ?? '';
    if (this.#open?.kind === 'tool' || this.#pending.size > 0) {
      this.#pending.set(call.index, { id, name, args });
      return;
    }
    this.#close(out);
    const index = this.#next++;
    this.#live.add(call.index);
    this.#called = true;
    this.#open = { index, kind: 'tool', tool: call.index };
    out.push({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: id || madeUpToolId(), name, input: {} } });
    if (args !== '') out.push({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: args } });
  }

  /** Closes the live block, then emits the buffered tool calls and late text, each whole. */
  #flush(out: AnthropicEvent[]): void {
    this.#close(out);
    if (this.#pending.size > 0) this.#called = true;
    for (const tool of this.#pending.values()) {
      const index = this.#next++;
      out.push({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: tool.id || madeUpToolId(), name: tool.name, input: {} } });
      if (tool.args !== '') out.push({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: tool.args } });
      out.push({ type: 'content_block_stop', index });
    }
    this.#pending.clear();
    if (this.#lateText !== '') {
      const index = this.#next++;
      out.push({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
      out.push({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: this.#lateText } });
      out.push({ type: 'content_block_stop', index });
      this.#lateText = '';
    }
  }

  /** The events one parsed chunk (the JSON of one `data:` line) yields. */
  push(chunk: unknown): AnthropicEvent[] {
    const out: AnthropicEvent[] = [];
    if (this.#ended || !isRecord(chunk)) return out;
    if (isRecord(chunk.error)) {
      // A usage the error chunk carries is a report like any other.
      if (isRecord(chunk.usage)) mergeUsage((this.#usage ??= {}), chunk.usage);
      // After the finish_reason the answer is complete: an error then does not take it back
      // (as `error_after_answer` on the Anthropic path); it closes with the usage it has.
      if (this.#finish !== null) return this.end();
      // Before it, the stream failed: what was reported so far goes first (the gateway charges
      // it under STREAM_ERROR_BILLING=usage), then the error.
      out.push(...this.#reportedSoFar(), anthropicErrorOf(chunk.error));
      this.#ended = true;
      return out;
    }
    this.#start(out, chunk.id);
    const finishedBefore = this.#finish !== null;
    // Read defensively: a piece in a shape no server documents is skipped, never thrown on.
    const choices = Array.isArray(chunk.choices) ? chunk.choices : [];
    // Usage reports merge count by count (`mergeUsage`: OpenAI's counts are totals so far, so a
    // running usage on content chunks or an earlier report never outweighs a later one, and a
    // report that leaves a count out takes nothing back); one without any count read replaces nothing.
    // Where servers put it: `usage` (OpenAI), `x_groq.usage` (Groq), or on the choice.
    const reports = [chunk.usage, isRecord(chunk.x_groq) ? chunk.x_groq.usage : undefined, ...choices.map((c) => (isRecord(c) ? c.usage : undefined))];
    let merged = false;
    for (const r of reports) if (isRecord(r) && mergeUsage((this.#usage ??= {}), r)) merged = true;
    if (merged) {
      // The usage chunk (`include_usage`: no choices) after the finish is the last word, once
      // it holds both the prompt and the completion (a report split over two chunks is waited
      // for, one grace at most).
      const u = this.#usage!;
      if (finishedBefore && choices.length === 0 && isCount(u.prompt_tokens) && isCount(u.completion_tokens)) this.#usageFinal = true;
    }
    if (this.#usage !== null && Object.keys(this.#usage).length === 0) this.#usage = null;
    for (const choice of choices) {
      // the first choice: index 0, or none given (null or absent is read as absent)
      if (!isRecord(choice) || (choice.index != null && Number(choice.index) !== 0)) continue;
      if (this.#finish !== null) continue;
      const delta = isRecord(choice.delta) ? choice.delta : {};
      const body = textOf(delta.content);
      const refusal = typeof delta.refusal === 'string' && delta.refusal !== '' ? delta.refusal : '';
      const text = body !== '' ? body : refusal;
      if (body !== '') this.#sawContent = true;
      else if (refusal !== '') this.#sawRefusal = true;
      if (text !== '') this.#text(out, text);
      // Reasoning has no Anthropic counterpart here (an OpenAI model bills it as completion): a
      // `ping` every KEEPALIVE_PING_MS instead, so a long think never leaves the client idle.
      const reasoning = [delta.reasoning_content, delta.reasoning].some((r) => typeof r === 'string' && r !== '');
      if (reasoning && text === '' && performance.now() - this.#lastPing >= KEEPALIVE_PING_MS) {
        this.#lastPing = performance.now();
        out.push({ type: 'ping' });
      }
      if (Array.isArray(delta.tool_calls)) for (const call of delta.tool_calls) if (isRecord(call)) this.#tool(out, call);
      if (typeof choice.finish_reason === 'string' && ABORTED_FINISH_REASONS.has(choice.finish_reason)) {
        // Not a finish: the upstream gave up on the answer. An interrupted stream (the usage so
        // far first, as for any cut before the finish), never charged as complete.
        out.push(...this.#reportedSoFar(), anthropicErrorOf({ type: 'server_error', message: `Upstream aborted the answer (finish_reason ${choice.finish_reason})` }));
        this.#ended = true;
        return out;
      }
      if (typeof choice.finish_reason === 'string' && choice.finish_reason !== '') {
        this.#finish = choice.finish_reason;
        this.#matched = choice.stop_reason;
        this.#flush(out);
      }
    }
    // Finished and counted: the answer is complete now, whatever the connection does next.
    if (this.#finish !== null && this.#usageFinal) out.push(...this.end());
    return out;
  }

  /**
   * A `message_delta` without a stop_reason carrying the usage reported so far, for a stream
   * that ends before its finish_reason; none when nothing was reported.
   */
  #reportedSoFar(): AnthropicEvent[] {
    if (!this.#hasUsage) return [];
    return [{ type: 'message_delta', delta: { stop_reason: null, stop_sequence: null }, usage: anthropicUsage(mergedUsage(this.#usage!)) }];
  }

  /** The closing events, when the answer is complete, at `data: [DONE]` or at the end of the body (idempotent). */
  end(): AnthropicEvent[] {
    const out: AnthropicEvent[] = [];
    if (this.#ended) return out;
    this.#ended = true;
    // Cut before the finish_reason: no answer (the gateway sees an interrupted stream), but the
    // usage reported so far reaches it (charged under STREAM_ERROR_BILLING=usage).
    if (this.#finish === null) return this.#reportedSoFar();
    this.#flush(out);
    // as the JSON path: refusal text alone is a refusal; with tool calls, `tool_use`
    const refused = this.#sawRefusal && !this.#sawContent && !this.#called;
    const [stopReason, stopSequence] = refused ? ['refusal', null] as const
      : toolUseIfCalled(stopReasonFor(this.#finish, this.#matched, this.#ctx), this.#called);
    out.push({
      type: 'message_delta',
      delta: { stop_reason: stopReason, stop_sequence: stopSequence },
      usage: this.#usage === null ? { output_tokens: null } : anthropicUsage(mergedUsage(this.#usage)),
    });
    out.push({ type: 'message_stop' });
    return out;
  }
}

/**
 * ms the relay waits, from the moment the answer has its finish_reason and a usage, for the
 * usage chunk that may still follow (`ChatStreamTranslator.awaitingFinalUsage`) before it ends
 * the answer with the usage it has; keep-alives do not extend it. An upstream that sends
 * `[DONE]` or closes is not waited for.
 */
export const FINAL_USAGE_GRACE_MS = 1_000;

/**
 * Graces the relay waits after a finish_reason that came before any usage (the usage chunk
 * `include_usage` asks for is due right after it): then the answer closes with no usage (the
 * gateway records `invalid_count`), rather than holding the client, its hold and its slot for
 * as long as the upstream sends keep-alives.
 */
export const NO_USAGE_WAIT_GRACES = 5;

/** `p`'s value, or undefined when `ms` pass first (`p` keeps running: its value is dropped). */
async function withinMs<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => {}); // dropped after the wait: its failure (the body cancelled) is nobody's
  try {
    return await Promise.race([p, new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/** `event: <type>\ndata: <json>\n\n`, as Anthropic frames its events. */
export function sseFrame(event: AnthropicEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/**
 * An OpenAI SSE body (bytes, as they arrive) → Anthropic SSE bytes, one frame per event, yielded
 * as soon as a chunk is complete. The message closes at the usage chunk after the
 * finish_reason, at `data: [DONE]`, at the end of the body (or its break, once the
 * finish_reason came), or `graceMs` (default `FINAL_USAGE_GRACE_MS`) after the answer had its
 * finish_reason and a usage, whichever is first (`ChatStreamTranslator`); reading stops there (the caller's `finally`
 * releases the body). A `data:` line that is not JSON is skipped.
 */
export async function* anthropicSseFromOpenAI(body: AsyncIterable<Uint8Array>, ctx: ResponseContext, graceMs = FINAL_USAGE_GRACE_MS): AsyncGenerator<Buffer> {
  const translator = new ChatStreamTranslator(ctx);
  let pending: AnthropicEvent[] = [];
  const parser = createParser({
    // An upstream's keep-alive comment (OpenRouter's `: OPENROUTER PROCESSING`): the client gets
    // one too, so neither it nor a proxy between sees an idle connection while the model works.
    onComment() {
      pending.push(...translator.keepAlive());
    },
    onEvent(event) {
      if (event.data.trim() === '[DONE]') {
        pending.push(...translator.end());
        return;
      }
      let json: unknown;
      try { json = JSON.parse(event.data); } catch { return; }
      // push reads defensively; should it still throw on a shape no server sends, the chunk is
      // skipped like a line that is not JSON, never the answer lost
      try { pending.push(...translator.push(json)); } catch { /* skipped */ }
    },
  });
  const decoder = new TextDecoder();
  const chunks = body[Symbol.asyncIterator]();
  /** performance.now() ms when the finish_reason came */
  let finishedAt: number | undefined;
  const close = () => {
    pending.push(...translator.end());
    return pending.length > 0 ? Buffer.from(pending.map(sseFrame).join(''), 'utf8') : undefined;
  };
  for (;;) {
    let next: IteratorResult<Uint8Array> | undefined;
    try {
      // Finished: the usage chunk may still come, for one grace from the finish once a usage was
      // seen, `NO_USAGE_WAIT_GRACES` of them while none was (keep-alives extend neither).
      if (translator.finished) {
        finishedAt ??= performance.now();
        const deadline = finishedAt + graceMs * (translator.awaitingFinalUsage ? 1 : NO_USAGE_WAIT_GRACES);
        next = await withinMs(chunks.next(), Math.max(0, deadline - performance.now()));
      } else next = await chunks.next();
    } catch (err) {
      // The body broke after the finish_reason: the answer is complete, closed with what it has.
      // Before it: the usage reported so far goes first (`end()`), then the break.
      if (!translator.finished) {
        const last = close();
        if (last !== undefined) yield last;
        throw err;
      }
      next = undefined;
    }
    if (next === undefined) {
      const last = close();
      if (last !== undefined) yield last;
      return;
    }
    if (next.done) break;
    parser.feed(decoder.decode(next.value, { stream: true }));
    if (pending.length > 0) {
      const frames = pending.map(sseFrame).join('');
      pending = [];
      yield Buffer.from(frames, 'utf8');
    }
    // The answer is complete (or failed): nothing the upstream sends after it can change it.
    if (translator.ended) return;
  }
  parser.feed(decoder.decode());
  pending.push(...translator.end());
  if (pending.length > 0) yield Buffer.from(pending.map(sseFrame).join(''), 'utf8');
}
