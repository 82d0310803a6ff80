import { createHash } from 'node:crypto';
import type { Directives } from './directives.ts';
import { stripDirectives } from './directives.ts';
import { invalidRequest } from './errors.ts';
import { lastUserText } from './request.ts';
import type { MessagesBody, ToolDefinition } from './request.ts';
import { isRecord } from './wire.ts';
import type { ContentDelta, JsonObject, OutputBlock, StopReason } from './wire.ts';

const FILLER = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut ' +
  'labore et dolore magna aliqua'
).split(' ');
const ECHO_CHARS = 60;
const WORDS_PER_DELTA = 3;
const JSON_CHARS_PER_DELTA = 16;

export interface Reply {
  readonly content: OutputBlock[];
  readonly stopReason: StopReason;
  /** The usage figure: the `output` directive when given (capped at max_tokens), else the generated count. */
  readonly outputTokens: number;
}

/** Exactly `n` words: the prefix first, then filler, so the count is the token count. */
function words(prefix: string, n: number): string {
  const out = prefix.split(/\s+/).filter((w) => w !== '').slice(0, n);
  for (let i = 0; out.length < n; i++) out.push(FILLER[i % FILLER.length] ?? 'sim');
  return out.join(' ');
}

function sampleValue(schema: unknown, depth: number): unknown {
  if (!isRecord(schema)) return 'sim';
  const choices = schema['enum'];
  if (Array.isArray(choices) && choices.length > 0) return choices[0];
  if ('const' in schema) return schema['const'];
  const declared = schema['type'];
  const type = Array.isArray(declared) ? declared[0] : declared;
  switch (type) {
    case 'number':
    case 'integer':
      return 1;
    case 'boolean':
      return true;
    case 'array':
      return [];
    case 'null':
      return null;
    case 'object':
      return sampleObject(schema, depth + 1);
    default:
      return 'sim';
  }
}

/** Fills only the required properties, so the input is small and predictable. */
function sampleObject(schema: unknown, depth = 0): JsonObject {
  const out: JsonObject = {};
  if (!isRecord(schema) || depth > 8) return out;
  const required = schema['required'];
  const properties = isRecord(schema['properties']) ? schema['properties'] : {};
  if (!Array.isArray(required)) return out;
  for (const name of required) {
    if (typeof name === 'string') out[name] = sampleValue(properties[name], depth);
  }
  return out;
}

function chosenTool(body: MessagesBody, directives: Directives): (ToolDefinition & { name: string }) | undefined {
  let name: string | undefined;
  if (directives.tool !== undefined) name = directives.tool;
  else if (body.tools.length === 0) return undefined;
  else if (body.toolChoice?.type === 'any') {
    // The first custom tool; with only typed (server) tools there is nothing the simulator can call.
    name = body.tools.find((t) => typeof t.name === 'string' && (t['type'] === undefined || t['type'] === 'custom'))?.name;
    if (name === undefined) return undefined;
  } else if (body.toolChoice?.type === 'tool') {
    name = body.toolChoice.name;
    if (name === undefined) throw invalidRequest('tool_choice.name: Field required');
  } else return undefined;
  const tool = body.tools.find((t): t is ToolDefinition & { name: string } => t.name === name);
  if (tool === undefined) throw invalidRequest(`tool "${name}" is not in tools`);
  return tool;
}

export function toolTokens(input: JsonObject): number {
  return Math.ceil(JSON.stringify(input).length / 4);
}

/** The echoed part of the reply: the start of what the user last said, directives removed. */
export function echoOf(body: MessagesBody): string {
  return stripDirectives(lastUserText(body.messages)).replace(/\s+/g, ' ').trim().slice(0, ECHO_CHARS).trim();
}

export function signatureOf(thinking: string): string {
  return createHash('sha256').update(thinking).digest('base64');
}

/**
 * Builds the deterministic reply. The output budget is split: a forced tool_use costs
 * ceil(len(JSON input) / 4); of the remaining words, half (rounded down) go to thinking when it
 * is on and the rest to text. A reply that would exceed max_tokens is cut at max_tokens and
 * never reaches its tool call, like a real truncated generation.
 */
export function buildReply(
  body: MessagesBody & { maxTokens: number },
  directives: Directives,
  defaultOutputTokens: number,
  toolUseId: string,
): Reply {
  const max = body.maxTokens;
  const target = directives.output ?? Math.min(max, defaultOutputTokens);
  // max_tokens 0 (pre-warming the cache) generates nothing and stops at its limit at once.
  let capped = target > max || max === 0;
  let budget = Math.min(target, max);

  let tool = chosenTool(body, directives);
  const input = tool === undefined ? {} : sampleObject(tool['input_schema']);
  const toolCost = tool === undefined ? 0 : toolTokens(input);
  if (tool !== undefined && !capped && toolCost > max) {
    capped = true;
    budget = max;
  }
  if (capped) tool = undefined;

  const wordBudget = Math.max(0, budget - (tool === undefined ? 0 : toolCost));
  const thinkingWords = body.thinking ? Math.floor(wordBudget / 2) : 0;
  const textWords = wordBudget - thinkingWords;
  const echo = echoOf(body);

  const content: OutputBlock[] = [];
  if (thinkingWords > 0) {
    const thinking = words(`Thinking about: ${echo}`, thinkingWords);
    content.push({ type: 'thinking', thinking, signature: signatureOf(thinking) });
  }
  if (textWords > 0) content.push({ type: 'text', text: words(`Simulated reply to: ${echo}`, textWords) });
  if (tool !== undefined) content.push({ type: 'tool_use', id: toolUseId, name: tool.name, input });

  const generated = wordBudget + (tool === undefined ? 0 : toolCost);
  const stopReason: StopReason = capped ? 'max_tokens' : tool !== undefined ? 'tool_use' : 'end_turn';
  return { content, stopReason, outputTokens: directives.output === undefined ? generated : budget };
}

export interface PlannedDelta {
  readonly delta: ContentDelta;
  /** Output tokens this delta carries, for tokens-per-second pacing. */
  readonly tokens: number;
}

export interface PlannedBlock {
  readonly start: OutputBlock;
  readonly deltas: readonly PlannedDelta[];
}

function wordChunks(text: string): string[] {
  const all = text.split(' ');
  const chunks: string[] = [];
  for (let i = 0; i < all.length; i += WORDS_PER_DELTA) {
    chunks.push((i === 0 ? '' : ' ') + all.slice(i, i + WORDS_PER_DELTA).join(' '));
  }
  return chunks;
}

/** How each block is streamed; the deltas concatenate back to exactly the non-streaming content. */
export function streamPlan(content: readonly OutputBlock[]): PlannedBlock[] {
  return content.map((block): PlannedBlock => {
    switch (block.type) {
      case 'text':
        return {
          start: { type: 'text', text: '' },
          deltas: wordChunks(block.text).map((text) => ({ delta: { type: 'text_delta', text }, tokens: text.trim().split(' ').length })),
        };
      case 'thinking':
        return {
          start: { type: 'thinking', thinking: '', signature: '' },
          deltas: [
            ...wordChunks(block.thinking).map((thinking): PlannedDelta => ({
              delta: { type: 'thinking_delta', thinking },
              tokens: thinking.trim().split(' ').length,
            })),
            { delta: { type: 'signature_delta', signature: block.signature }, tokens: 0 },
          ],
        };
      case 'tool_use': {
        const json = JSON.stringify(block.input);
        const deltas: PlannedDelta[] = [];
        for (let i = 0; i < json.length; i += JSON_CHARS_PER_DELTA) {
          const partial = json.slice(i, i + JSON_CHARS_PER_DELTA);
          deltas.push({ delta: { type: 'input_json_delta', partial_json: partial }, tokens: partial.length / 4 });
        }
        return { start: { type: 'tool_use', id: block.id, name: block.name, input: {} }, deltas };
      }
    }
  });
}
