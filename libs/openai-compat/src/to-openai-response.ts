// Anthropic Messages answers -> OpenAI Chat Completions answers, for OpenAI-format clients of the
// gateway. The gateway meters the Anthropic answer (its usage is the bill); this only rewrites what
// the client reads, so a translation can never change what is charged.
import { isRecord, isTokenCount } from '@tollgate/anthropic';

/** OpenAI's `usage` object of a chat.completion and of the final stream chunk. */
export interface OpenAIUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** OpenAI's error body: `{error: {message, type, param, code}}` (OpenAI API reference, "Error codes"). */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

type Rec = Record<string, unknown>;

/** ms without a byte to an OpenAI-format stream's client after which a dropped event writes a keep-alive comment. */
export const KEEPALIVE_MS = 5_000;

/** A token count as the gateway's usage reader accepts one (`isTokenCount`), else 0. */
function count(v: unknown): number {
  return isTokenCount(v) ? v : 0;
}

/**
 * Anthropic `stop_reason` → OpenAI `finish_reason`: end_turn, stop_sequence, pause_turn → stop;
 * max_tokens, model_context_window_exceeded → length; tool_use → tool_calls; refusal →
 * content_filter; null (not yet known) → null.
 */
export function finishReasonOf(stopReason: unknown): 'stop' | 'length' | 'tool_calls' | 'content_filter' | null {
  switch (stopReason) {
    case null:
    case undefined:
      return null;
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/**
 * Anthropic usage (tokens) → OpenAI usage: prompt_tokens = input + cache read + cache write (OpenAI
 * counts every prompt token, cached or not), completion_tokens = output,
 * prompt_tokens_details.cached_tokens = cache read.
 */
export function usageOf(usage: unknown): OpenAIUsage {
  const u = isRecord(usage) ? usage : {};
  const cacheRead = count(u['cache_read_input_tokens']);
  const prompt = count(u['input_tokens']) + cacheRead + count(u['cache_creation_input_tokens']);
  const completion = count(u['output_tokens']);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cacheRead } };
}

/** The id a chat completion (and each of its chunks) carries: the upstream message's id, prefixed as OpenAI's are. */
function completionId(messageId: unknown): string {
  return `chatcmpl-${typeof messageId === 'string' ? messageId : 'unknown'}`;
}

/**
 * An Anthropic Message (JSON) as an OpenAI `chat.completion` with one choice: the text blocks
 * joined as `content` (null when there are none), `tool_use` blocks as `tool_calls` (arguments
 * as JSON text), thinking and server-tool blocks left out, `finish_reason` by `finishReasonOf`,
 * usage by `usageOf` (left out when the message has none). `created` is in seconds since the epoch.
 */
export function toChatCompletion(message: Rec, created: number): Rec {
  const content = Array.isArray(message['content']) ? message['content'] : [];
  let text: string | null = null;
  const toolCalls: Rec[] = [];
  for (const block of content) {
    if (!isRecord(block)) continue;
    if (block['type'] === 'text' && typeof block['text'] === 'string') text = (text ?? '') + block['text'];
    else if (block['type'] === 'tool_use') {
      toolCalls.push({ id: block['id'], type: 'function', function: { name: block['name'], arguments: JSON.stringify(block['input'] ?? {}) } });
    }
  }
  return {
    id: completionId(message['id']),
    object: 'chat.completion',
    created,
    model: message['model'],
    choices: [{
      index: 0,
      message: { role: 'assistant', content: text, refusal: null, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) },
      logprobs: null,
      finish_reason: finishReasonOf(message['stop_reason']),
    }],
    // A message without usage (the gateway charged nothing): none is invented.
    ...(isRecord(message['usage']) ? { usage: usageOf(message['usage']) } : {}),
  };
}

/**
 * A gateway error (Anthropic shape `{type: "error", error: {type, code, message}}`) in OpenAI's
 * shape. `param` is the parameter a 400 names: the gateway's validation messages start with it
 * ("temperature: must be …"), so it is read from there; null otherwise. `renamed` (the
 * translation's, `ChatRequestTranslation.renamed`): a message naming an Anthropic field the
 * client sent under another name is given the client's name, in `param` and wherever the message
 * names it ("max_tokens: 64001 > 64000, …" → "max_completion_tokens: 64001 > 64000, …"; "… its
 * worst case at max_tokens 64000" → "… at max_completion_tokens 64000"). `code` is the
 * gateway's machine code (e.g. `insufficient_credits`), `type` the Anthropic error type.
 */
export function openAIErrorBody(error: unknown, renamed: Readonly<Record<string, string>> = {}): OpenAIErrorBody {
  const e = isRecord(error) ? error : {};
  let message = typeof e['message'] === 'string' ? e['message'] : 'Error';
  const type = typeof e['type'] === 'string' ? e['type'] : 'api_error';
  let param = type === 'invalid_request_error' ? /^([A-Za-z_][\w.[\]]*): /.exec(message)?.[1] ?? null : null;
  if (param !== null && Object.hasOwn(renamed, param)) param = renamed[param]!;
  // every mention, not only the leading one ("… its worst case at max_tokens 64000 …")
  for (const [from, to] of Object.entries(renamed)) message = message.replace(new RegExp(`(?<![\\w.])${from}(?!\\w)`, 'g'), to);
  const code = typeof e['code'] === 'string' ? e['code'] : null;
  return { error: { message, type, param, code } };
}

/** One parsed SSE event: its `event:` name and joined `data:` lines. */
function parseFrame(raw: string): { event: string; data: string } {
  let event = '';
  const data: string[] = [];
  for (const line of raw.split(/\r\n|\r|\n/)) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  return { event, data: data.join('\n') };
}

/**
 * Rewrites one Anthropic Messages SSE stream as OpenAI `chat.completion.chunk` SSE (OpenAI
 * "Streaming"), one event at a time, keeping no more than the ids and the usage so far:
 * - `message_start` → the first chunk (`delta: {role: "assistant", content: ""}`);
 * - text deltas → `delta.content`; a `tool_use` block start → `delta.tool_calls[{index, id, type,
 *   function: {name, arguments: ""}}]`, its `input_json_delta`s → `function.arguments` pieces
 *   (tool calls are numbered 0, 1, … among themselves, as OpenAI numbers them);
 * - `message_delta` with a stop_reason → a chunk with `finish_reason` and an empty delta;
 * - `message_stop` → with `include_usage`, a last chunk with `choices: []` and `usageOf` the
 *   stream's usage (message_start's, updated by each message_delta's); then `data: [DONE]`;
 * - an `error` event → `data: {"error": {…}}` (`openAIErrorBody`), which the openai SDK throws;
 * - pings, thinking and server-tool blocks, and anything unknown → nothing, except an SSE comment
 *   (`: keep-alive`, which SSE clients, the openai SDK's included, skip) when nothing was written
 *   for `KEEPALIVE_MS`: a model thinking for minutes sends only thinking deltas, and a client or
 *   proxy with an idle timeout would otherwise drop the stream (and be billed for it).
 */
export class ChatChunkStream {
  private readonly includeUsage: boolean;
  private readonly created: number;
  private id = completionId(undefined);
  private model: unknown = null;
  private usage: Rec = {};
  /** message_start's output_tokens is a placeholder (Anthropic sends 1 before any output) until a delta gives the count */
  private outputPlaceholder = false;
  /** Anthropic content block index → OpenAI tool-call index */
  private readonly toolIndex = new Map<number, number>();
  private done = false;
  private readonly now: () => number;
  /** `now()` when bytes were last written */
  private lastWritten: number;

  /** `created`: seconds since the epoch, on every chunk; `now`: the clock of the keep-alives (ms). */
  constructor(options: { includeUsage: boolean; created: number; now?: () => number }) {
    this.includeUsage = options.includeUsage;
    this.created = options.created;
    this.now = options.now ?? Date.now;
    this.lastWritten = this.now();
  }

  /**
   * The OpenAI bytes for one complete Anthropic SSE event: its translation, or, when it has no
   * counterpart, '' or a keep-alive comment if nothing was written for `KEEPALIVE_MS`.
   */
  push(raw: string | Buffer): string {
    const out = this.translate(raw);
    const now = this.now();
    if (out !== '') {
      this.lastWritten = now;
      return out;
    }
    if (this.done || now - this.lastWritten < KEEPALIVE_MS) return '';
    this.lastWritten = now;
    return ': keep-alive\n\n';
  }

  private translate(raw: string | Buffer): string {
    if (this.done) return '';
    const frame = parseFrame(typeof raw === 'string' ? raw : raw.toString('utf8'));
    let data: unknown;
    try { data = JSON.parse(frame.data); } catch { return ''; }
    if (!isRecord(data)) return '';
    const type = frame.event !== '' ? frame.event : data['type'];
    switch (type) {
      case 'message_start': {
        const message = isRecord(data['message']) ? data['message'] : {};
        this.id = completionId(message['id']);
        this.model = message['model'] ?? null;
        if (isRecord(message['usage'])) this.usage = { ...message['usage'] };
        this.outputPlaceholder = true;
        return this.chunk({ role: 'assistant', content: '' }, null);
      }
      case 'content_block_start': {
        const block = isRecord(data['content_block']) ? data['content_block'] : {};
        if (block['type'] !== 'tool_use') return '';
        const index = this.toolIndex.size;
        this.toolIndex.set(count(data['index']), index);
        return this.chunk({ tool_calls: [{ index, id: block['id'], type: 'function', function: { name: block['name'], arguments: '' } }] }, null);
      }
      case 'content_block_delta': {
        const delta = isRecord(data['delta']) ? data['delta'] : {};
        if (delta['type'] === 'text_delta' && typeof delta['text'] === 'string') return this.chunk({ content: delta['text'] }, null);
        const index = this.toolIndex.get(count(data['index']));
        if (delta['type'] === 'input_json_delta' && index !== undefined && typeof delta['partial_json'] === 'string') {
          return this.chunk({ tool_calls: [{ index, function: { arguments: delta['partial_json'] } }] }, null);
        }
        return '';
      }
      case 'message_delta': {
        // Counts in a message_delta are cumulative (Anthropic "Streaming Messages"), read as the
        // gateway meters them (@tollgate/anthropic UsageTally): message_start's output is a
        // placeholder the first delta replaces, every other count only grows, and a count that
        // is not one (negative, a fraction, beyond a safe integer) changes nothing.
        if (isRecord(data['usage'])) {
          for (const [k, v] of Object.entries(data['usage'])) {
            if (v === null || v === undefined) continue;
            if (typeof v !== 'number') { this.usage[k] = v; continue; }
            if (!isTokenCount(v)) continue;
            const placeholder = k === 'output_tokens' && this.outputPlaceholder;
            if (placeholder) this.outputPlaceholder = false;
            this.usage[k] = placeholder ? v : Math.max(count(this.usage[k]), v);
          }
        }
        const delta = isRecord(data['delta']) ? data['delta'] : {};
        const finish = finishReasonOf(delta['stop_reason']);
        return finish === null ? '' : this.chunk({}, finish);
      }
      case 'message_stop': {
        this.done = true;
        // message_start's placeholder output that no delta replaced is no count (as metered)
        if (this.outputPlaceholder) this.usage['output_tokens'] = 0;
        const last = this.includeUsage
          ? this.event({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices: [], usage: usageOf(this.usage) })
          : '';
        return `${last}data: [DONE]\n\n`;
      }
      case 'error':
        this.done = true;
        return this.event(openAIErrorBody(data['error']));
      default:
        return '';
    }
  }

  private chunk(delta: Rec, finishReason: string | null): string {
    return this.event({
      id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(this.includeUsage ? { usage: null } : {}),
    });
  }

  private event(value: unknown): string {
    return `data: ${JSON.stringify(value)}\n\n`;
  }
}
