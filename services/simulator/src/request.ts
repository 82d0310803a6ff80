import { invalidRequest } from './errors.ts';
import { isRecord } from './wire.ts';
import type { JsonObject } from './wire.ts';

export type ContentBlock = JsonObject & { type: string };

export interface RequestMessage {
  /**
   * `user` and `assistant`, and whatever else a client sends: Claude Code puts `system` messages
   * mid-conversation, and the simulator counts any role's content like text.
   */
  readonly role: string;
  readonly content: string | readonly ContentBlock[];
}

/** A custom tool has a `name`; a typed server or client tool (`{type: "web_search_20250305", …}`, MCP toolsets) may not. */
export type ToolDefinition = JsonObject & { readonly name?: string };

export interface ToolChoice {
  readonly type: string;
  readonly name: string | undefined;
}

/** A validated /v1/messages (or count_tokens) body, reduced to what the simulator interprets. */
export interface MessagesBody {
  readonly model: string;
  readonly messages: readonly RequestMessage[];
  /** Undefined only for count_tokens, where the field is not required. */
  readonly maxTokens: number | undefined;
  readonly stream: boolean;
  readonly system: string | readonly ContentBlock[] | undefined;
  readonly tools: readonly ToolDefinition[];
  readonly toolChoice: ToolChoice | undefined;
  /** Thinking is on: `thinking.type` `enabled` or `adaptive`. */
  readonly thinking: boolean;
}

export interface ParseOptions {
  /** /v1/messages requires max_tokens; count_tokens does not. */
  readonly requireMaxTokens: boolean;
  /** The `anthropic-beta` header values, comma-separated lists flattened. */
  readonly betas?: readonly string[];
}

/**
 * Models older than 4.6, which reject `thinking: {type: "adaptive"}` (Anthropic "Adaptive
 * thinking" docs: Opus 4.6, Sonnet 4.6 and newer; 4.5 and older need `enabled` with a budget).
 * `sonnet-4-2` / `opus-4-2` are the dated 4.0 ids (`claude-sonnet-4-20250514`).
 */
const PRE_ADAPTIVE_MODELS = ['haiku-4-5', 'sonnet-4-5', 'opus-4-5', 'sonnet-4-2', 'opus-4-1', 'opus-4-2', '3-'];

/** Anthropic "Extended thinking" docs: budget_tokens must be at least 1,024. */
export const MIN_THINKING_BUDGET = 1024;

/**
 * What the real API rejects about thinking (Anthropic "Extended thinking" / "Adaptive
 * thinking" docs), so tests can prove a gateway never forwards such a body:
 * - `enabled` needs an integer `budget_tokens` ≥ 1024 and below `max_tokens` (with the
 *   `interleaved-thinking-*` beta the budget may exceed `max_tokens`: it then bounds the whole turn);
 * - `adaptive` only on 4.6 and newer models;
 * - with thinking on: `temperature` only 1, no `top_k`, `top_p` only 0.95–1 (`null` is a value
 *   here, as the API reads it), no forced tool (`tool_choice` `any` / `tool`), and a turn in
 *   progress must have started with thinking (`checkTurnStartsWithThinking`).
 * Returns whether thinking is on; an unknown `type` (a future mode) passes through as off.
 */
function checkThinking(body: JsonObject, model: string, maxTokens: number | undefined, betas: readonly string[]): boolean {
  const raw = body['thinking'];
  if (raw === undefined || raw === null) return false;
  if (!isRecord(raw) || typeof raw['type'] !== 'string') throw invalidRequest('thinking: expected an object with a "type"');
  const type = raw['type'];
  if (type === 'enabled') {
    const budget = raw['budget_tokens'];
    if (budget === undefined) throw invalidRequest('thinking.enabled.budget_tokens: Field required');
    if (typeof budget !== 'number' || !Number.isSafeInteger(budget)) {
      throw invalidRequest('thinking.enabled.budget_tokens: Input should be a valid integer');
    }
    if (budget < MIN_THINKING_BUDGET) {
      throw invalidRequest(`thinking.enabled.budget_tokens: Input should be greater than or equal to ${MIN_THINKING_BUDGET}`);
    }
    const interleaved = betas.some((b) => b.startsWith('interleaved-thinking'));
    if (maxTokens !== undefined && budget >= maxTokens && !interleaved) {
      throw invalidRequest('`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size');
    }
  } else if (type === 'adaptive') {
    if (PRE_ADAPTIVE_MODELS.some((old) => model.includes(old))) {
      throw invalidRequest(`thinking.type: "adaptive" is not supported on model ${model}; use {"type": "enabled", "budget_tokens": N}`);
    }
  } else {
    return false;
  }

  const temperature = body['temperature'];
  if (temperature !== undefined && temperature !== 1) {
    throw invalidRequest('`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility');
  }
  if (body['top_k'] !== undefined) {
    throw invalidRequest('`top_k` is not supported when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility');
  }
  const topP = body['top_p'];
  if (topP !== undefined && (typeof topP !== 'number' || topP < 0.95 || topP > 1)) {
    throw invalidRequest('`top_p` must be greater than or equal to 0.95 and less than or equal to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility');
  }
  const choice = body['tool_choice'];
  if (isRecord(choice) && (choice['type'] === 'any' || choice['type'] === 'tool')) {
    throw invalidRequest('Thinking may not be enabled when tool_choice forces tool use.');
  }
  checkTurnStartsWithThinking(body['messages']);
  return true;
}

/**
 * With thinking on, a body that continues an assistant turn (it ends with tool results, or
 * with an assistant message) must show that turn starting with a thinking block: a tool-use
 * loop is one assistant turn with one thinking mode (Anthropic "Extended thinking" → thinking
 * with tool use). The turn starts after the last user message holding no `tool_result`; its
 * first assistant message must start with `thinking` or `redacted_thinking`. Later steps of
 * the loop need not (without interleaved thinking the model thinks once, at the turn's start).
 * The message is the API's own (reported in kilocode#5219, opencode#3077).
 */
function checkTurnStartsWithThinking(messages: unknown): void {
  if (!Array.isArray(messages) || messages.length === 0) return;
  const toolResults = (m: unknown): boolean =>
    isRecord(m) && m['role'] === 'user' && Array.isArray(m['content']) &&
    m['content'].some((b: unknown) => isRecord(b) && b['type'] === 'tool_result');
  const last: unknown = messages.at(-1);
  if (!((isRecord(last) && last['role'] === 'assistant') || toolResults(last))) return;
  let first = -1;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m: unknown = messages[i];
    if (!isRecord(m)) continue;
    if (m['role'] === 'assistant') first = i;
    else if (m['role'] === 'user' && !toolResults(m)) break;
  }
  if (first < 0) return;
  const content = (messages[first] as JsonObject)['content'];
  const block: unknown = typeof content === 'string' ? { type: 'text' } : Array.isArray(content) ? content[0] : undefined;
  const type = isRecord(block) && typeof block['type'] === 'string' ? block['type'] : 'text';
  if (type === 'thinking' || type === 'redacted_thinking') return;
  throw invalidRequest(
    `messages.${first}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${type}\`. ` +
      'When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). ' +
      'We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. ' +
      'Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking',
  );
}

function isBlock(value: unknown): value is ContentBlock {
  return isRecord(value) && typeof value['type'] === 'string';
}

function parseBlocks(value: unknown[], path: string): ContentBlock[] {
  return value.map((block, i) => {
    if (!isBlock(block)) throw invalidRequest(`${path}.${i}: expected a content block object with a string "type"`);
    return block;
  });
}

/**
 * Validates a /v1/messages or count_tokens body the way the real Messages API does, and no
 * stricter: unknown top-level fields, roles, content block types, tool types and betas pass
 * through (they are counted, never interpreted). Throws a 400 `SimulatorError` for what the real
 * API rejects: missing `model` / `messages` / `max_tokens`, malformed messages or blocks, a
 * custom tool without `name`, and the thinking rules of `checkThinking`.
 */
export function parseMessagesBody(body: unknown, opts: ParseOptions): MessagesBody {
  if (!isRecord(body)) throw invalidRequest('request body must be a JSON object');

  const model = body['model'];
  if (typeof model !== 'string' || model === '') throw invalidRequest('model: Field required');

  const rawMessages = body['messages'];
  if (!Array.isArray(rawMessages)) throw invalidRequest('messages: Field required');
  if (rawMessages.length === 0) throw invalidRequest('messages: at least one message is required');
  const messages = rawMessages.map((m: unknown, i): RequestMessage => {
    if (!isRecord(m)) throw invalidRequest(`messages.${i}: expected an object`);
    const role = m['role'];
    if (typeof role !== 'string' || role === '') throw invalidRequest(`messages.${i}.role: Field required`);
    const content = m['content'];
    if (typeof content === 'string') return { role, content };
    if (Array.isArray(content)) return { role, content: parseBlocks(content, `messages.${i}.content`) };
    throw invalidRequest(`messages.${i}.content: expected a string or an array of content blocks`);
  });

  const rawMax = body['max_tokens'];
  let maxTokens: number | undefined;
  if (rawMax !== undefined || opts.requireMaxTokens) {
    if (rawMax === undefined) throw invalidRequest('max_tokens: Field required');
    // 0 pre-warms the prompt cache: the input is read (and cached), nothing is generated
    // (Anthropic "Prompt caching", "Pre-warming the cache"); not with stream or thinking.
    if (typeof rawMax !== 'number' || !Number.isSafeInteger(rawMax) || rawMax < 0) {
      throw invalidRequest('max_tokens: must be an integer of at least 0');
    }
    maxTokens = rawMax;
  }

  const rawStream = body['stream'];
  if (rawStream !== undefined && typeof rawStream !== 'boolean') throw invalidRequest('stream: must be a boolean');

  const rawSystem = body['system'];
  let system: MessagesBody['system'];
  if (typeof rawSystem === 'string') system = rawSystem;
  else if (Array.isArray(rawSystem)) system = parseBlocks(rawSystem, 'system');
  else if (rawSystem !== undefined) throw invalidRequest('system: expected a string or an array of text blocks');

  const rawTools = body['tools'];
  let tools: ToolDefinition[] = [];
  if (Array.isArray(rawTools)) {
    tools = rawTools.map((t: unknown, i) => {
      if (!isRecord(t)) throw invalidRequest(`tools.${i}: expected an object`);
      const type = t['type'];
      // Only custom tools (no type, or "custom") must be named; typed tools are named by their type.
      const custom = type === undefined || type === null || type === 'custom';
      if (custom && typeof t['name'] !== 'string') throw invalidRequest(`tools.${i}.custom.name: Field required`);
      return t as ToolDefinition;
    });
  } else if (rawTools !== undefined) {
    throw invalidRequest('tools: expected an array');
  }

  const rawChoice = body['tool_choice'];
  let toolChoice: ToolChoice | undefined;
  if (isRecord(rawChoice) && typeof rawChoice['type'] === 'string') {
    const name = rawChoice['name'];
    toolChoice = { type: rawChoice['type'], name: typeof name === 'string' ? name : undefined };
  } else if (rawChoice !== undefined) {
    throw invalidRequest('tool_choice: expected an object with a "type"');
  }

  const thinking = checkThinking(body, model, maxTokens, opts.betas ?? []);
  if (maxTokens === 0 && opts.requireMaxTokens && (rawStream === true || thinking)) {
    throw invalidRequest(`max_tokens: 0 pre-warms the prompt cache and cannot be used with ${rawStream === true ? 'stream' : 'thinking'}`);
  }

  return { model, messages, maxTokens, stream: rawStream === true, system, tools, toolChoice, thinking };
}

/**
 * The user's own words in the last user message: its string content, or its `text` blocks in
 * order. Directives are read from here because it is the part of a conversation a test writes
 * last and a gateway forwards untouched. Tool results are never read: they carry whatever a
 * tool returned (a file that documents directives, such as this simulator's README), and a
 * directive there would turn a real session's tool loop into a simulated fault.
 */
export function lastUserText(messages: readonly RequestMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message === undefined || message.role !== 'user') continue;
    if (typeof message.content === 'string') return message.content;
    const parts: string[] = [];
    for (const block of message.content) {
      if (block.type === 'text' && typeof block['text'] === 'string') parts.push(block['text']);
    }
    return parts.join(' ');
  }
  return '';
}
