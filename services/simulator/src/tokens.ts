import { invalidRequest } from './errors.ts';
import type { MessagesBody } from './request.ts';
import { isRecord } from './wire.ts';
import type { CacheTtl, JsonObject } from './wire.ts';

/** Every image (and every non-text document) costs this many input tokens, whatever its size. */
export const IMAGE_TOKENS = 1000;

/**
 * One cacheable piece of the prompt, in the order the real API builds its cache prefix:
 * tools, then system, then messages. `key` identifies the content for the prompt cache and
 * deliberately leaves out `cache_control`, so moving a breakpoint does not change the prefix.
 */
export interface PromptUnit {
  readonly chars: number;
  readonly images: number;
  readonly breakpoint: CacheTtl | undefined;
  readonly key: string;
}

export function tokensFor(chars: number, images: number): number {
  return Math.ceil(chars / 4) + IMAGE_TOKENS * images;
}

/** Output text is counted one token per space-separated word. */
export function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed === '' ? 0 : trimmed.split(/\s+/).length;
}

function withoutCacheControl(value: JsonObject): JsonObject {
  const { cache_control: _ignored, ...rest } = value;
  return rest;
}

function breakpointOf(block: JsonObject, path: string): CacheTtl | undefined {
  const cc = block['cache_control'];
  if (cc === undefined || cc === null) return undefined;
  if (!isRecord(cc) || cc['type'] !== 'ephemeral') {
    throw invalidRequest(`${path}.cache_control: expected {"type":"ephemeral"}`);
  }
  const ttl = cc['ttl'];
  if (ttl === undefined) return '5m';
  if (ttl === '5m' || ttl === '1h') return ttl;
  throw invalidRequest(`${path}.cache_control.ttl: expected "5m" or "1h"`);
}

interface Size {
  chars: number;
  images: number;
}

function sizeOfBlock(block: unknown, size: Size): void {
  if (typeof block === 'string') {
    size.chars += block.length;
    return;
  }
  if (!isRecord(block)) return;
  const text = (field: string): number => {
    const v = block[field];
    return typeof v === 'string' ? v.length : 0;
  };
  switch (block['type']) {
    case 'text':
      size.chars += text('text');
      return;
    case 'thinking':
      size.chars += text('thinking');
      return;
    case 'redacted_thinking':
      size.chars += text('data');
      return;
    case 'image':
      size.images += 1;
      return;
    case 'document': {
      const source = block['source'];
      if (isRecord(source) && source['type'] === 'text' && typeof source['data'] === 'string') {
        size.chars += source['data'].length;
      } else if (isRecord(source) && source['type'] === 'content' && Array.isArray(source['content'])) {
        for (const inner of source['content']) sizeOfBlock(inner, size);
      } else {
        size.images += 1;
      }
      return;
    }
    case 'tool_use':
      size.chars += text('name') + JSON.stringify(block['input'] ?? {}).length;
      return;
    case 'tool_result': {
      const content = block['content'];
      if (Array.isArray(content)) for (const inner of content) sizeOfBlock(inner, size);
      else sizeOfBlock(content, size);
      return;
    }
    default:
      // Unknown block kinds (server tool results, future types) still cost something
      // proportional to their size, so growing them grows the count.
      size.chars += JSON.stringify(withoutCacheControl(block)).length;
  }
}

function unit(value: JsonObject | string, label: string, breakpoint: CacheTtl | undefined): PromptUnit {
  const size: Size = { chars: 0, images: 0 };
  let key: string;
  if (typeof value === 'string') {
    size.chars = value.length;
    key = `${label}:${JSON.stringify(value)}`;
  } else {
    sizeOfBlock(value, size);
    key = `${label}:${JSON.stringify(withoutCacheControl(value))}`;
  }
  return { chars: size.chars, images: size.images, breakpoint, key };
}

export function promptUnits(body: MessagesBody): PromptUnit[] {
  const units: PromptUnit[] = [];
  body.tools.forEach((tool, i) => {
    // A tool costs its whole definition, as JSON, without the cache marker.
    const json = JSON.stringify(withoutCacheControl(tool));
    units.push({ chars: json.length, images: 0, breakpoint: breakpointOf(tool, `tools.${i}`), key: `tool:${json}` });
  });
  if (typeof body.system === 'string') units.push(unit(body.system, 'system', undefined));
  else if (body.system !== undefined) {
    body.system.forEach((block, i) => units.push(unit(block, 'system', breakpointOf(block, `system.${i}`))));
  }
  body.messages.forEach((message, m) => {
    if (typeof message.content === 'string') {
      units.push(unit(message.content, message.role, undefined));
      return;
    }
    message.content.forEach((block, i) => {
      units.push(unit(block, message.role, breakpointOf(block, `messages.${m}.content.${i}`)));
    });
  });
  return units;
}

export function countInputTokens(units: readonly PromptUnit[]): number {
  let chars = 0;
  let images = 0;
  for (const u of units) {
    chars += u.chars;
    images += u.images;
  }
  return Math.max(1, tokensFor(chars, images));
}
