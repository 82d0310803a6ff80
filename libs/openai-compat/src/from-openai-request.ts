// OpenAI Chat Completions request -> Anthropic Messages request, for OpenAI-format clients of the
// gateway (`POST /v1/chat/completions`). The result goes through the very pipeline /v1/messages
// uses (validation, model resolution, limits, holds, metering), so only the translation lives here.
// Every parameter is either mapped or refused with a 400 naming it: nothing is accepted and then
// silently dropped (a client asking for n=3 or logprobs must not pay for an answer without them).

import { isRecord, ProtocolError } from '@tollgate/anthropic';

/** The Anthropic request a Chat Completions request becomes, and what the answer's writer needs. */
export interface ChatRequestTranslation {
  /**
   * The Anthropic Messages body. `max_tokens` is absent when the client gave neither
   * `max_tokens` nor `max_completion_tokens`: the gateway's DEFAULT_MAX_TOKENS rule then applies
   * exactly as on /v1/messages.
   */
  body: Record<string, unknown>;
  /** `stream: true` */
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk with `choices: []` and the usage (OpenAI "Streaming") */
  includeUsage: boolean;
  /**
   * The client's name of each top-level field of `body` the client sent under another name
   * (`max_tokens` → `max_completion_tokens`, `stop_sequences` → `stop`), so an error about
   * the Anthropic field names the one the client sent (`openAIErrorBody`).
   */
  renamed: Readonly<Record<string, string>>;
}

/** Anthropic's highest `temperature` (Messages API: 0.0 to 1.0); OpenAI allows up to 2. */
export const ANTHROPIC_MAX_TEMPERATURE = 1;

/** Parameters that are accepted and have no effect on the answer, at the values that mean "off". */
const NEUTRAL: Record<string, (v: unknown) => boolean> = {
  n: (v) => v === 1,
  logprobs: (v) => v === false,
  frequency_penalty: (v) => v === 0,
  presence_penalty: (v) => v === 0,
  logit_bias: (v) => isRecord(v) && Object.keys(v).length === 0,
  store: (v) => v === false,
  // Stored-completions metadata of OpenAI's own platform; meaningless (and unstored) here.
  metadata: (v) => isRecord(v) && Object.keys(v).length === 0,
  response_format: (v) => isRecord(v) && v['type'] === 'text',
  modalities: (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text',
  service_tier: (v) => v === 'auto' || v === 'default',
};

/** Parameters this translation maps (everything else is refused by name). */
const MAPPED = new Set([
  'model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'stop', 'stream', 'stream_options',
  'user', 'tools', 'tool_choice', 'parallel_tool_calls',
]);

function fail(param: string, problem: string): never {
  throw new ProtocolError(param, problem);
}

/**
 * Translates a Chat Completions request body (OpenAI API reference, "Create chat completion")
 * into an Anthropic Messages body (Anthropic "Messages" reference):
 * - `system` / `developer` messages, wherever they are, → `system` text blocks in order (one
 *   string system message stays a string; so do string user, assistant and tool contents, so the
 *   same conversation weighs the same bytes, bound and hold on both routes);
 * - message-level fields mapped or refused by name (`messages[i].name`: refused; an assistant's
 *   `refusal`: kept as text; anything not in OpenAI's message shape: refused);
 * - `user` text and `image_url` parts (a `data:` URL → base64 image source, http(s) → url source);
 * - `assistant` text and `tool_calls` (arguments parsed as JSON) → text and `tool_use` blocks;
 * - `tool` messages → `tool_result` blocks on one user turn (consecutive ones merged; a user
 *   message right after them joins that turn);
 * - `tools` (function `parameters` → `input_schema`), `tool_choice` (auto, none, required → any,
 *   a named function → tool), `parallel_tool_calls: false` → `disable_parallel_tool_use`;
 * - `stop` → `stop_sequences`; `max_completion_tokens` (else `max_tokens`; both: they must agree) → `max_tokens`;
 *   `temperature`, `top_p`; `user` → `metadata.user_id`; `stream`.
 * Throws ProtocolError (400 `invalid_request`, message "param: problem") for a malformed value and
 * for any parameter not mapped (`n` > 1, `logprobs`, `response_format` json_object/json_schema,
 * `audio`, `seed`, `reasoning_effort`, legacy `functions`, …) unless it is at its neutral value;
 * `temperature` above 1 is refused rather than clamped (the answer would not be the one asked for).
 */
export function fromOpenAIRequest(input: unknown): ChatRequestTranslation {
  if (!isRecord(input)) fail('', 'The request body must be a JSON object');
  for (const [name, value] of Object.entries(input)) {
    if (MAPPED.has(name) || value === null || value === undefined) continue;
    const neutral = NEUTRAL[name];
    if (neutral?.(value)) continue;
    fail(name, neutral
      ? `this value is not supported by this gateway (OpenAI-format requests are served by Anthropic models)`
      : `unsupported parameter on this gateway (OpenAI-format requests are served by Anthropic models)`);
  }
  const body: Record<string, unknown> = {};
  if (typeof input['model'] !== 'string') fail('model', input['model'] === undefined ? 'Field required' : 'must be a string');
  body['model'] = input['model'];

  const { system, messages } = translateMessages(input['messages']);
  if (system.length > 0) body['system'] = system;
  body['messages'] = messages;

  const renamed: Record<string, string> = {};
  // Each one given is checked, the older name too: one that is bad, or two that disagree, is a
  // 400 naming it, never a value silently dropped.
  let maxTokens: number | undefined;
  for (const param of ['max_completion_tokens', 'max_tokens'] as const) {
    const v = input[param];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail(param, 'must be a positive integer');
    if ((v as number) > Number.MAX_SAFE_INTEGER) fail(param, `must be at most ${Number.MAX_SAFE_INTEGER}`);
    if (maxTokens === undefined) {
      maxTokens = v as number;
      body['max_tokens'] = maxTokens;
      if (param !== 'max_tokens') renamed['max_tokens'] = param;
    } else if (v !== maxTokens) {
      fail('max_tokens', `${v} differs from max_completion_tokens ${maxTokens}: give one of them (max_tokens is its older name)`);
    }
  }
  const temperature = input['temperature'];
  if (temperature !== undefined && temperature !== null) {
    if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) fail('temperature', 'must be a number from 0 to 1');
    if (temperature > ANTHROPIC_MAX_TEMPERATURE) {
      fail('temperature', `must be at most ${ANTHROPIC_MAX_TEMPERATURE} on this gateway (Anthropic models take 0 to 1; OpenAI's 0 to 2 does not map onto it)`);
    }
    body['temperature'] = temperature;
  }
  const topP = input['top_p'];
  if (topP !== undefined && topP !== null) {
    if (typeof topP !== 'number' || !(topP >= 0 && topP <= 1)) fail('top_p', 'must be a number from 0 to 1');
    body['top_p'] = topP;
  }
  const stop = input['stop'];
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (!Array.isArray(list) || !list.every((s) => typeof s === 'string' && s.length > 0)) fail('stop', 'must be a non-empty string or an array of them');
    if (list.length > 0) {
      body['stop_sequences'] = list;
      renamed['stop_sequences'] = 'stop';
    }
  }
  const user = input['user'];
  if (user !== undefined && user !== null) {
    if (typeof user !== 'string') fail('user', 'must be a string');
    body['metadata'] = { user_id: user };
  }
  const stream = input['stream'];
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') fail('stream', 'must be a boolean');
  if (stream === true) body['stream'] = true;
  let includeUsage = false;
  const options = input['stream_options'];
  if (options !== undefined && options !== null) {
    if (stream !== true) fail('stream_options', 'only allowed when stream is true');
    if (!isRecord(options)) fail('stream_options', 'must be an object');
    for (const key of Object.keys(options)) {
      if (key !== 'include_usage') fail(`stream_options.${key}`, 'unsupported parameter on this gateway');
    }
    const inc = options['include_usage'];
    if (inc !== undefined && inc !== null && typeof inc !== 'boolean') fail('stream_options.include_usage', 'must be a boolean');
    includeUsage = inc === true;
  }
  translateTools(input, body);
  return { body, stream: stream === true, includeUsage, renamed };
}

type Block = Record<string, unknown>;
/** A turn's content: a string while it is one plain string (as the client wrote it), else blocks. */
interface Turn { role: 'user' | 'assistant'; content: string | Block[]; tools: boolean }

/**
 * The message-level fields each role may carry (OpenAI API reference, "Create chat completion",
 * `messages`), and what this translation does with them. Anything else, and `name` (Anthropic has
 * no participant names: the model would never see it), is refused by name; `function_call` and
 * `audio` are refused below; an assistant's `refusal` text is kept as text, as its `refusal`
 * content parts are.
 */
const MESSAGE_FIELDS: Record<string, ReadonlySet<string>> = {
  system: new Set(['role', 'content']),
  developer: new Set(['role', 'content']),
  user: new Set(['role', 'content']),
  assistant: new Set(['role', 'content', 'tool_calls', 'refusal', 'function_call', 'audio']),
  tool: new Set(['role', 'content', 'tool_call_id']),
};

function checkMessageFields(m: Record<string, unknown>, role: string, at: string): void {
  const allowed = MESSAGE_FIELDS[role];
  if (allowed === undefined) return;
  for (const [key, value] of Object.entries(m)) {
    if (allowed.has(key) || value === null || value === undefined) continue;
    fail(`${at}.${key}`, key === 'name'
      ? 'participant names are not supported on this gateway (Anthropic models have no message names)'
      : 'unsupported parameter on this gateway');
  }
}

/** Blocks of a turn's content (a string becomes one text block), to append to. */
function blocksOf(content: string | Block[]): Block[] {
  return typeof content === 'string' ? [{ type: 'text', text: content }] : content;
}

/**
 * The messages as Anthropic turns. Strings stay strings (a user or assistant string content, a
 * single string system message, a tool message's string content), so the same conversation has
 * the same bytes, hence the same input bound and hold, on /v1/chat/completions as on /v1/messages;
 * blocks only where OpenAI's own form was parts or turns had to merge.
 */
function translateMessages(messages: unknown): { system: string | Block[]; messages: Array<{ role: string; content: string | Block[] }> } {
  if (messages === undefined) fail('messages', 'Field required');
  if (!Array.isArray(messages) || messages.length === 0) fail('messages', 'must be a non-empty array');
  const system: Block[] = [];
  let systemString = null as string | null;
  let systemCount = 0;
  const turns: Turn[] = [];
  messages.forEach((m: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isRecord(m)) fail(at, 'must be an object');
    const role = m['role'];
    if (typeof role === 'string') checkMessageFields(m, role, at);
    switch (role) {
      case 'system':
      case 'developer':
        systemCount++;
        if (typeof m['content'] === 'string') systemString = m['content'];
        for (const text of textParts(m['content'], `${at}.content`, false)) system.push({ type: 'text', text });
        return;
      case 'user': {
        const content = m['content'];
        const blocks: string | Block[] = typeof content === 'string' ? content : userContent(content, `${at}.content`);
        const last = turns.at(-1);
        // A user message right after tool results joins their turn (tool_result blocks first).
        if (last?.role === 'user' && last.tools) last.content = [...blocksOf(last.content), ...blocksOf(blocks)];
        else turns.push({ role: 'user', content: blocks, tools: false });
        return;
      }
      case 'assistant': {
        const blocks: Block[] = [];
        if (m['content'] !== undefined && m['content'] !== null) {
          for (const text of textParts(m['content'], `${at}.content`, true)) if (text !== '') blocks.push({ type: 'text', text });
        }
        const refusal = m['refusal'];
        if (refusal !== undefined && refusal !== null) {
          if (typeof refusal !== 'string') fail(`${at}.refusal`, 'must be a string');
          if (refusal !== '') blocks.push({ type: 'text', text: refusal });
        }
        const calls = m['tool_calls'];
        if (calls !== undefined && calls !== null) {
          if (!Array.isArray(calls)) fail(`${at}.tool_calls`, 'must be an array');
          calls.forEach((c: unknown, j) => blocks.push(toolUse(c, `${at}.tool_calls[${j}]`)));
        }
        if (m['function_call'] !== undefined && m['function_call'] !== null) fail(`${at}.function_call`, 'unsupported parameter (deprecated); use tool_calls');
        if (m['audio'] !== undefined && m['audio'] !== null) fail(`${at}.audio`, 'unsupported parameter on this gateway');
        if (blocks.length === 0) fail(`${at}.content`, 'an assistant message needs content or tool_calls');
        const plain = typeof m['content'] === 'string' && blocks.length === 1 && blocks[0]!['type'] === 'text';
        turns.push({ role: 'assistant', content: plain ? m['content'] as string : blocks, tools: false });
        return;
      }
      case 'tool': {
        const id = m['tool_call_id'];
        if (typeof id !== 'string' || id === '') fail(`${at}.tool_call_id`, 'Field required');
        const texts = textParts(m['content'], `${at}.content`, false);
        const result: Block = {
          type: 'tool_result', tool_use_id: id,
          content: typeof m['content'] === 'string' ? m['content'] : texts.map((text) => ({ type: 'text', text })),
        };
        const last = turns.at(-1);
        if (last?.role === 'user' && last.tools) last.content = [...blocksOf(last.content), result];
        else turns.push({ role: 'user', content: [result], tools: true });
        return;
      }
      case 'function':
        fail(`${at}.role`, "the deprecated 'function' role is not supported; use tools and 'tool' messages");
      default:
        fail(`${at}.role`, role === undefined ? 'Field required' : "must be one of 'system', 'developer', 'user', 'assistant', 'tool'");
    }
  });
  if (turns.length === 0) fail('messages', 'at least one user or assistant message is required');
  return { system: systemCount === 1 && systemString !== null ? systemString : system, messages: turns.map(({ role, content }) => ({ role, content })) };
}

/** The texts of a string or an array of `text` (and, for an assistant, `refusal`) parts. */
function textParts(content: unknown, at: string, assistant: boolean): string[] {
  if (typeof content === 'string') return [content];
  if (!Array.isArray(content)) fail(at, content === undefined ? 'Field required' : 'must be a string or an array of content parts');
  return content.map((p: unknown, k) => {
    if (!isRecord(p)) fail(`${at}[${k}]`, 'must be an object');
    if (p['type'] === 'text' && typeof p['text'] === 'string') return p['text'];
    if (assistant && p['type'] === 'refusal' && typeof p['refusal'] === 'string') return p['refusal'];
    return fail(`${at}[${k}].type`, `only text parts are supported here${p['type'] === undefined ? '' : `, not '${String(p['type'])}'`}`);
  });
}

/** `data:<media type>;base64,<data>` (RFC 2397 with base64, as OpenAI documents for images). */
const DATA_URL = /^data:([a-z]+\/[a-z0-9.+-]+);base64,([A-Za-z0-9+/=\s]+)$/i;

function userContent(content: unknown, at: string): Block[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  if (!Array.isArray(content) || content.length === 0) fail(at, content === undefined ? 'Field required' : 'must be a string or a non-empty array of content parts');
  return content.map((p: unknown, k): Block => {
    const where = `${at}[${k}]`;
    if (!isRecord(p)) fail(where, 'must be an object');
    if (p['type'] === 'text') {
      if (typeof p['text'] !== 'string') fail(`${where}.text`, 'must be a string');
      return { type: 'text', text: p['text'] };
    }
    if (p['type'] === 'image_url') {
      const image = p['image_url'];
      const url = isRecord(image) ? image['url'] : undefined;
      if (typeof url !== 'string') fail(`${where}.image_url.url`, 'Field required');
      const data = DATA_URL.exec(url);
      if (data) return { type: 'image', source: { type: 'base64', media_type: data[1]!.toLowerCase(), data: data[2]!.replace(/\s/g, '') } };
      if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } };
      return fail(`${where}.image_url.url`, 'must be an http(s) URL or a base64 data: URL');
    }
    return fail(`${where}.type`, `only 'text' and 'image_url' parts are supported${p['type'] === undefined ? '' : `, not '${String(p['type'])}'`}`);
  });
}

function toolUse(call: unknown, at: string): Block {
  if (!isRecord(call)) fail(at, 'must be an object');
  if (call['type'] !== undefined && call['type'] !== 'function') fail(`${at}.type`, "only 'function' tool calls are supported");
  const id = call['id'];
  if (typeof id !== 'string' || id === '') fail(`${at}.id`, 'Field required');
  const fn = call['function'];
  if (!isRecord(fn) || typeof fn['name'] !== 'string') fail(`${at}.function.name`, 'Field required');
  const args = fn['arguments'];
  let input: unknown = {};
  if (typeof args === 'string' && args.trim() !== '') {
    try { input = JSON.parse(args); } catch { fail(`${at}.function.arguments`, 'must be JSON text'); }
  } else if (args !== undefined && args !== null && args !== '') {
    fail(`${at}.function.arguments`, 'must be JSON text');
  }
  // Anthropic's tool_use.input is an object; OpenAI arguments are whatever JSON the model wrote.
  if (!isRecord(input)) fail(`${at}.function.arguments`, 'must be a JSON object');
  return { type: 'tool_use', id, name: fn['name'], input };
}

function translateTools(input: Record<string, unknown>, body: Record<string, unknown>): void {
  const tools = input['tools'];
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) fail('tools', 'must be an array');
    if (tools.length > 0) {
      body['tools'] = tools.map((t: unknown, i) => {
        const at = `tools[${i}]`;
        if (!isRecord(t)) fail(at, 'must be an object');
        if (t['type'] !== 'function') fail(`${at}.type`, "only 'function' tools are supported");
        const fn = t['function'];
        if (!isRecord(fn) || typeof fn['name'] !== 'string' || fn['name'] === '') fail(`${at}.function.name`, 'Field required');
        const params = fn['parameters'] ?? { type: 'object', properties: {} };
        if (!isRecord(params)) fail(`${at}.function.parameters`, 'must be a JSON Schema object');
        return {
          name: fn['name'],
          ...(typeof fn['description'] === 'string' ? { description: fn['description'] } : {}),
          input_schema: params,
          // `strict` (OpenAI structured outputs) has Anthropic's counterpart of the same name.
          ...(typeof fn['strict'] === 'boolean' ? { strict: fn['strict'] } : {}),
        };
      });
    }
  }
  const choice = input['tool_choice'];
  let mapped: Record<string, unknown> | undefined;
  if (choice !== undefined && choice !== null) {
    if (choice === 'auto') mapped = { type: 'auto' };
    else if (choice === 'none') mapped = { type: 'none' };
    else if (choice === 'required') mapped = { type: 'any' };
    else if (isRecord(choice) && choice['type'] === 'function' && isRecord(choice['function']) && typeof choice['function']['name'] === 'string') {
      mapped = { type: 'tool', name: choice['function']['name'] };
    } else {
      fail('tool_choice', "must be 'auto', 'none', 'required' or {type: 'function', function: {name}}");
    }
    if (mapped['type'] !== 'none' && body['tools'] === undefined) fail('tool_choice', 'requires tools');
  }
  const parallel = input['parallel_tool_calls'];
  if (parallel !== undefined && parallel !== null) {
    if (typeof parallel !== 'boolean') fail('parallel_tool_calls', 'must be a boolean');
    if (parallel === false && body['tools'] !== undefined && mapped?.['type'] !== 'none') mapped = { type: 'auto', ...mapped, disable_parallel_tool_use: true };
  }
  if (mapped !== undefined && !(mapped['type'] === 'none' && body['tools'] === undefined)) body['tool_choice'] = mapped;
}
