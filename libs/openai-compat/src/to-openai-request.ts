// Anthropic Messages request → OpenAI Chat Completions request (issue 10, platform `openai`).
// What has no OpenAI equivalent is either dropped (listed in `dropped`, with the reason in the
// README "Platform openai") or refused with a `TranslationError` naming the field, before
// anything is sent upstream: never accepted and then failing later.
import { isRecord, prewarms } from '@tollgate/anthropic';
import type {
  OpenAIChatRequest, OpenAIContentPart, OpenAIMessage, OpenAITool, OpenAIToolCall, OpenAIToolChoice,
} from './types.ts';

type Json = Record<string, unknown>;

/** A request the OpenAI platform cannot serve faithfully; `field` is the JSON path (`messages.1.content.0`). */
export class TranslationError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'TranslationError';
    this.field = field;
  }
}

export interface TranslatedRequest {
  request: OpenAIChatRequest;
  /** request fields left out because OpenAI has no equivalent (paths, e.g. `thinking`, `system.0.cache_control`) */
  dropped: string[];
}

/**
 * Top-level Anthropic fields dropped without a refusal: they tune how Anthropic serves the request
 * but do not change what a correct answer is (`thinking`: the OpenAI model reasons, or not, on its
 * own, and bills reasoning as completion tokens; `top_k`: no OpenAI sampler; `service_tier`,
 * `inference_geo`, `speed`: Anthropic serving options; `context_management`: Anthropic-side
 * history editing; `output_config` (effort)). Anything else unknown is dropped too and listed.
 */
const HANDLED = new Set(['model', 'messages', 'system', 'max_tokens', 'temperature', 'top_p', 'stop_sequences',
  'metadata', 'stream', 'tools', 'tool_choice']);

/** Fields that, when present and non-empty, need an Anthropic-side feature: refused. */
const REFUSED_TOP = new Set(['mcp_servers', 'container']);

/** Anthropic image `source` → an OpenAI `image_url` (base64 → `data:` URL, `url` as is); `file` refused. */
function imagePart(source: unknown, at: string): OpenAIContentPart {
  if (isRecord(source) && source.type === 'base64' && typeof source.data === 'string' && typeof source.media_type === 'string') {
    return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } };
  }
  if (isRecord(source) && source.type === 'url' && typeof source.url === 'string') {
    return { type: 'image_url', image_url: { url: source.url } };
  }
  throw new TranslationError(`${at}.source`, `image source type ${JSON.stringify(isRecord(source) ? source.type : source)} is not supported on platform openai (use base64 or url)`);
}

/** A `document` with plain-text source becomes text; PDF, file and URL documents have no Chat Completions equivalent. */
function documentPart(block: Json, at: string): OpenAIContentPart {
  const source = block.source;
  if (isRecord(source) && source.type === 'text' && typeof source.data === 'string') {
    const title = typeof block.title === 'string' && block.title !== '' ? `${block.title}\n\n` : '';
    return { type: 'text', text: title + source.data };
  }
  throw new TranslationError(at, `document blocks other than plain text (source type ${JSON.stringify(isRecord(source) ? source.type : source)}) are not supported on platform openai`);
}

/** Text (string or text blocks) of a system prompt or a mid-conversation `system` message, joined by a newline. */
function textOf(content: unknown, at: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw new TranslationError(at, 'expected a string or an array of text blocks');
  return content.map((b, i) => {
    if (isRecord(b) && b.type === 'text' && typeof b.text === 'string') return b.text;
    throw new TranslationError(`${at}.${i}`, 'only text blocks are supported here on platform openai');
  }).join('\n');
}

function toolResultMessages(block: Json, at: string): { tool: OpenAIMessage; images: OpenAIContentPart[] } {
  const id = typeof block.tool_use_id === 'string' ? block.tool_use_id : '';
  const prefix = block.is_error === true ? '[error] ' : '';
  const content = block.content;
  const images: OpenAIContentPart[] = [];
  let text: string;
  if (content === undefined || content === null) text = prefix;
  else if (typeof content === 'string') text = prefix + content;
  else if (Array.isArray(content)) {
    const parts: Array<{ type: 'text'; text: string }> = [];
    content.forEach((inner, i) => {
      const innerAt = `${at}.content.${i}`;
      if (isRecord(inner) && inner.type === 'text' && typeof inner.text === 'string') parts.push({ type: 'text', text: inner.text });
      else if (isRecord(inner) && inner.type === 'image') images.push(imagePart(inner.source, innerAt));
      else if (isRecord(inner) && inner.type === 'document') parts.push(documentPart(inner, innerAt) as { type: 'text'; text: string });
      else throw new TranslationError(innerAt, `tool_result content of type ${JSON.stringify(isRecord(inner) ? inner.type : inner)} is not supported on platform openai`);
    });
    // Text only: one string, which every compatible server reads (some take no part arrays here).
    text = prefix + parts.map((p) => p.text).join('\n');
  } else throw new TranslationError(`${at}.content`, 'expected a string or an array of blocks');
  return { tool: { role: 'tool', tool_call_id: id, content: text }, images };
}

/** One Anthropic message → one or more OpenAI messages (tool results become `tool` messages first). */
function translateMessage(message: unknown, m: number, dropped: string[]): OpenAIMessage[] {
  const at = `messages.${m}`;
  if (!isRecord(message)) throw new TranslationError(at, 'expected an object');
  const { role, content } = message;
  if (role === 'system') return [{ role: 'system', content: textOf(content, `${at}.content`) }];
  if (role === 'assistant') {
    if (typeof content === 'string') return [{ role: 'assistant', content }];
    if (!Array.isArray(content)) throw new TranslationError(`${at}.content`, 'expected a string or an array of blocks');
    let text = '';
    const calls: OpenAIToolCall[] = [];
    content.forEach((b, i) => {
      const bAt = `${at}.content.${i}`;
      if (!isRecord(b)) throw new TranslationError(bAt, 'expected an object');
      if (b.type === 'text' && typeof b.text === 'string') text += b.text;
      else if (b.type === 'tool_use') {
        calls.push({ id: String(b.id), type: 'function', function: { name: String(b.name), arguments: JSON.stringify(b.input ?? {}) } });
      } else if (b.type === 'thinking' || b.type === 'redacted_thinking') dropped.push(bAt);
      else throw new TranslationError(bAt, `assistant content of type ${JSON.stringify(b.type)} is not supported on platform openai`);
    });
    const out: OpenAIMessage = { role: 'assistant', content: text === '' && calls.length > 0 ? null : text };
    if (calls.length > 0) out.tool_calls = calls;
    return [out];
  }
  if (role !== 'user') throw new TranslationError(`${at}.role`, `role ${JSON.stringify(role)} is not supported on platform openai`);
  if (typeof content === 'string') return [{ role: 'user', content }];
  if (!Array.isArray(content)) throw new TranslationError(`${at}.content`, 'expected a string or an array of blocks');
  const tools: OpenAIMessage[] = [];
  const toolImages: OpenAIContentPart[] = [];
  const parts: OpenAIContentPart[] = [];
  content.forEach((b, i) => {
    const bAt = `${at}.content.${i}`;
    if (!isRecord(b)) throw new TranslationError(bAt, 'expected an object');
    if (b.type === 'text' && typeof b.text === 'string') parts.push({ type: 'text', text: b.text });
    else if (b.type === 'image') parts.push(imagePart(b.source, bAt));
    else if (b.type === 'document') parts.push(documentPart(b, bAt));
    else if (b.type === 'tool_result') {
      const r = toolResultMessages(b, bAt);
      tools.push(r.tool);
      toolImages.push(...r.images);
    } else throw new TranslationError(bAt, `content of type ${JSON.stringify(b.type)} is not supported on platform openai`);
  });
  // A tool message can carry text only (OpenAI); a tool result's images follow in a user message.
  const user = [...toolImages, ...parts];
  if (user.length === 0) return tools;
  // Text only: one string (servers without vision often refuse part arrays); images keep the parts.
  const textOnly = user.every((p): p is { type: 'text'; text: string } => p.type === 'text');
  return [...tools, { role: 'user', content: textOnly ? user.map((p) => p.text).join('\n') : user }];
}

function translateTools(tools: unknown): OpenAITool[] {
  if (!Array.isArray(tools)) throw new TranslationError('tools', 'expected an array');
  return tools.map((t, i) => {
    if (!isRecord(t)) throw new TranslationError(`tools.${i}`, 'expected an object');
    if (t.type !== undefined && t.type !== 'custom') {
      throw new TranslationError(`tools.${i}`, `tool type ${JSON.stringify(t.type)} (an Anthropic server or built-in tool) has no equivalent on platform openai`);
    }
    const fn: OpenAITool['function'] = { name: String(t.name), parameters: isRecord(t.input_schema) ? t.input_schema : { type: 'object' } };
    if (typeof t.description === 'string') fn.description = t.description;
    return { type: 'function', function: fn };
  });
}

/** auto → "auto", any → "required", tool → the named function, none → "none". */
function translateToolChoice(choice: unknown): { choice: OpenAIToolChoice; parallel: boolean | undefined } {
  if (!isRecord(choice)) throw new TranslationError('tool_choice', 'expected an object');
  const parallel = choice.disable_parallel_tool_use === true ? false : undefined;
  switch (choice.type) {
    case 'auto': return { choice: 'auto', parallel };
    case 'any': return { choice: 'required', parallel };
    case 'none': return { choice: 'none', parallel };
    case 'tool': return { choice: { type: 'function', function: { name: String(choice.name) } }, parallel };
    default: throw new TranslationError('tool_choice.type', `${JSON.stringify(choice.type)} is not supported on platform openai`);
  }
}

/**
 * Translates an Anthropic Messages request body (already validated by the gateway; `model` is
 * the name the gateway sends, already mapped) into an OpenAI Chat Completions body:
 * - `system` (string or text blocks, joined by "\n") → a leading `system` message;
 * - user text/images (base64 → `data:` URL, `url` as is), plain-text documents as text; content
 *   of text blocks only becomes one string (blocks joined by "\n"), with an image the part array;
 * - assistant `tool_use` → `tool_calls` (`arguments` = the input as JSON text);
 * - `tool_result` → `tool` messages (text as one string, blocks joined by "\n"; `is_error` → text prefixed `[error] `; images
 *   of a tool result in a user message right after, since a tool message holds text only);
 * - `tools` (`input_schema` → `parameters`), `tool_choice`, `disable_parallel_tool_use` →
 *   `parallel_tool_calls: false`;
 * - `max_tokens` → `max_completion_tokens` (OpenAI's current field; `max_tokens` is deprecated
 *   there and refused by its reasoning models); `temperature`, `top_p` as is; `stop_sequences` →
 *   `stop`; `metadata.user_id` → `user`; `stream` → `stream` + `stream_options.include_usage`.
 * Dropped: `thinking` and thinking blocks, `top_k`, any other unknown top-level field (each listed
 * in `dropped`); every `cache_control` (not listed: OpenAI caches prompt prefixes on its own);
 * `tool_choice` when there are no tools (OpenAI refuses one without tools).
 * @throws TranslationError for what cannot be served faithfully: server/built-in tools, PDF or
 *   file documents, file images, unknown block types, `mcp_servers`, `container`, and an
 *   assistant prefill (a last `assistant` message, refused at `messages.<last>`).
 */
export function toOpenAIRequest(body: Json): TranslatedRequest {
  const dropped: string[] = [];
  for (const key of Object.keys(body)) {
    if (REFUSED_TOP.has(key) && body[key] != null && !(Array.isArray(body[key]) && (body[key] as unknown[]).length === 0)) {
      throw new TranslationError(key, 'is not supported on platform openai');
    }
    if (!HANDLED.has(key)) dropped.push(key);
  }
  const messages: OpenAIMessage[] = [];
  if (body.system !== undefined && body.system !== null) {
    const system = textOf(body.system, 'system');
    if (system !== '') messages.push({ role: 'system', content: system });
  }
  if (!Array.isArray(body.messages)) throw new TranslationError('messages', 'expected an array');
  // A last assistant message is a prefill on Anthropic (the answer continues it); Chat Completions
  // has no such thing and would answer it as a finished turn with a new one: refused, not changed.
  const last = body.messages.length - 1;
  const tail: unknown = body.messages[last];
  if (isRecord(tail) && tail.role === 'assistant') {
    throw new TranslationError(`messages.${last}`, 'a final assistant message (prefill) is not supported on platform openai (Chat Completions answers it as a finished turn)');
  }
  body.messages.forEach((m, i) => messages.push(...translateMessage(m, i, dropped)));

  const out: OpenAIChatRequest = { model: String(body.model), messages };
  if (prewarms(body)) {
    // Anthropic's pre-warm of the prompt cache; Chat Completions takes at least 1 and has no such mode.
    throw new TranslationError('max_tokens', '0 (pre-warming the prompt cache) is not supported on platform openai');
  }
  if (typeof body.max_tokens === 'number') out.max_completion_tokens = body.max_tokens;
  if (typeof body.temperature === 'number') out.temperature = body.temperature;
  if (typeof body.top_p === 'number') out.top_p = body.top_p;
  if (Array.isArray(body.stop_sequences) && body.stop_sequences.length > 0) out.stop = body.stop_sequences.map(String);
  if (isRecord(body.metadata) && typeof body.metadata.user_id === 'string') out.user = body.metadata.user_id;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    out.tools = translateTools(body.tools);
    if (body.tool_choice !== undefined) {
      const { choice, parallel } = translateToolChoice(body.tool_choice);
      out.tool_choice = choice;
      if (parallel !== undefined) out.parallel_tool_calls = parallel;
    }
  }
  if (body.stream === true) {
    out.stream = true;
    out.stream_options = { include_usage: true };
  }
  return { request: out, dropped };
}
