import { invalidRequest } from './errors.ts';
import { isRecord } from './wire.ts';
import type { JsonObject } from './wire.ts';

export type ContentBlock = JsonObject & { type: string };

export interface RequestMessage {
  readonly role: 'user' | 'assistant';
  readonly content: string | readonly ContentBlock[];
}

export type ToolDefinition = JsonObject & { name: string };

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
  readonly thinking: boolean;
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

export function parseMessagesBody(body: unknown, opts: { requireMaxTokens: boolean }): MessagesBody {
  if (!isRecord(body)) throw invalidRequest('request body must be a JSON object');

  const model = body['model'];
  if (typeof model !== 'string' || model === '') throw invalidRequest('model: Field required');

  const rawMessages = body['messages'];
  if (!Array.isArray(rawMessages)) throw invalidRequest('messages: Field required');
  if (rawMessages.length === 0) throw invalidRequest('messages: at least one message is required');
  const messages = rawMessages.map((m: unknown, i): RequestMessage => {
    if (!isRecord(m)) throw invalidRequest(`messages.${i}: expected an object`);
    const role = m['role'];
    if (role !== 'user' && role !== 'assistant') {
      throw invalidRequest(`messages.${i}.role: expected "user" or "assistant"`);
    }
    const content = m['content'];
    if (typeof content === 'string') return { role, content };
    if (Array.isArray(content)) return { role, content: parseBlocks(content, `messages.${i}.content`) };
    throw invalidRequest(`messages.${i}.content: expected a string or an array of content blocks`);
  });

  const rawMax = body['max_tokens'];
  let maxTokens: number | undefined;
  if (rawMax !== undefined || opts.requireMaxTokens) {
    if (rawMax === undefined) throw invalidRequest('max_tokens: Field required');
    if (typeof rawMax !== 'number' || !Number.isSafeInteger(rawMax) || rawMax < 1) {
      throw invalidRequest('max_tokens: must be a positive integer');
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
      if (!isRecord(t) || typeof t['name'] !== 'string') throw invalidRequest(`tools.${i}.name: Field required`);
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

  const rawThinking = body['thinking'];
  const thinkingType = isRecord(rawThinking) ? rawThinking['type'] : undefined;
  const thinking = thinkingType === 'enabled' || thinkingType === 'adaptive';

  return { model, messages, maxTokens, stream: rawStream === true, system, tools, toolChoice, thinking };
}

/**
 * The text of the last user message: string content, text blocks and tool_result text, in
 * order. Directives are read from here because it is the part of a conversation a test writes
 * last and a gateway forwards untouched.
 */
export function lastUserText(messages: readonly RequestMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message === undefined || message.role !== 'user') continue;
    if (typeof message.content === 'string') return message.content;
    const parts: string[] = [];
    for (const block of message.content) {
      if (block.type === 'text' && typeof block['text'] === 'string') parts.push(block['text']);
      if (block.type === 'tool_result') {
        const inner = block['content'];
        if (typeof inner === 'string') parts.push(inner);
        else if (Array.isArray(inner)) {
          for (const b of inner) if (isRecord(b) && b['type'] === 'text' && typeof b['text'] === 'string') parts.push(b['text']);
        }
      }
    }
    return parts.join(' ');
  }
  return '';
}
