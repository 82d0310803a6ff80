import { Buffer } from 'node:buffer';
import { imageSize } from 'image-size';
import { invalidRequest } from './errors.ts';
import type { MessagesBody } from './request.ts';
import { isRecord } from './wire.ts';
import type { CacheTtl, JsonObject } from './wire.ts';

/** An image whose size the simulator cannot know (by URL or file id, unreadable data), and every non-text document. */
export const IMAGE_TOKENS = 1000;

/** The API's resize limits ("Images and vision"): long edge ≤ 1568 px and about 1.15 megapixels. */
export const IMAGE_MAX_EDGE = 1568;
export const IMAGE_MAX_PIXELS = 1_150_000;

/**
 * Input tokens of an image of `width` × `height` pixels, as the API bills it ("Images and
 * vision"): an image over 1568 px on its long edge or over ~1.15 megapixels is first scaled
 * down, aspect ratio kept, to fit both; then ⌈w × h / 750⌉ (at least 1).
 * Examples: 200×200 → 54; 1000×1000 → 1334; 2880×1800 → 1356×847 → 1532; 4000×100 → 1568×39 → 82.
 */
export function imageTokensFor(width: number, height: number): number {
  const scale = Math.min(1, IMAGE_MAX_EDGE / Math.max(width, height), Math.sqrt(IMAGE_MAX_PIXELS / (width * height)));
  const w = Math.max(1, Math.floor(width * scale));
  const h = Math.max(1, Math.floor(height * scale));
  return Math.max(1, Math.ceil((w * h) / 750));
}

/** Tokens of an image of `width` × `height` px, by one upstream's rule. */
export type ImageRule = (width: number, height: number) => number;

/**
 * OpenAI's high-detail tile rule (OpenAI "Images and vision", "Calculating costs"): fitted into
 * 2048 × 2048, then scaled down so its shortest side is at most 768, cut into 512-px tiles:
 * `base + perTile × tiles`. gpt-4o: 85 + 170 a tile (1024 × 1024 → 768 × 768 → 4 tiles → 765);
 * gpt-4o-mini: 2,833 + 5,667 a tile (its image price matches gpt-4o's).
 */
export function openAITileTokens(base: number, perTile: number): ImageRule {
  return (width, height) => {
    let w = width;
    let h = height;
    const fit = Math.min(1, 2048 / Math.max(w, h));
    w *= fit;
    h *= fit;
    const short = Math.min(1, 768 / Math.min(w, h));
    w *= short;
    h *= short;
    return base + perTile * Math.max(1, Math.ceil(w / 512)) * Math.max(1, Math.ceil(h / 512));
  };
}

/**
 * The image rule of a model the OpenAI mode is asked for: gpt-4o-mini's and gpt-4o's tile rules
 * (any dated snapshot), else Anthropic's (`imageTokensFor`), as the Messages mode bills.
 */
export function openAIImageRuleFor(model: string): ImageRule {
  if (/^gpt-4o-mini(-|$)/.test(model)) return openAITileTokens(2_833, 5_667);
  if (/^gpt-4o(-|$)/.test(model)) return openAITileTokens(85, 170);
  return imageTokensFor;
}

/** Tokens of an image block's `source`: by its real dimensions when base64 data is readable, else `IMAGE_TOKENS`. */
function imageSourceTokens(source: unknown, rule: ImageRule): number {
  if (!isRecord(source) || source['type'] !== 'base64' || typeof source['data'] !== 'string') return IMAGE_TOKENS;
  try {
    const { width, height } = imageSize(Buffer.from(source['data'], 'base64'));
    if (width > 0 && height > 0) return rule(width, height);
  } catch {
    // not an image the reader knows: the API would reject it; the simulator bills the default
  }
  return IMAGE_TOKENS;
}

/**
 * One cacheable piece of the prompt, in the order the real API builds its cache prefix:
 * tools, then system, then messages. `key` identifies the content for the prompt cache and
 * deliberately leaves out `cache_control`, so moving a breakpoint does not change the prefix.
 */
export interface PromptUnit {
  readonly chars: number;
  /** input tokens of the unit's images and non-text documents */
  readonly imageTokens: number;
  readonly breakpoint: CacheTtl | undefined;
  readonly key: string;
}

export function tokensFor(chars: number, imageTokens: number): number {
  return Math.ceil(chars / 4) + imageTokens;
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
  imageTokens: number;
}

function sizeOfBlock(block: unknown, size: Size, rule: ImageRule): void {
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
      size.imageTokens += imageSourceTokens(block['source'], rule);
      return;
    case 'document': {
      const source = block['source'];
      if (isRecord(source) && source['type'] === 'text' && typeof source['data'] === 'string') {
        size.chars += source['data'].length;
      } else if (isRecord(source) && source['type'] === 'content' && Array.isArray(source['content'])) {
        for (const inner of source['content']) sizeOfBlock(inner, size, rule);
      } else {
        size.imageTokens += IMAGE_TOKENS;
      }
      return;
    }
    case 'tool_use':
      size.chars += text('name') + JSON.stringify(block['input'] ?? {}).length;
      return;
    case 'tool_result': {
      const content = block['content'];
      if (Array.isArray(content)) for (const inner of content) sizeOfBlock(inner, size, rule);
      else sizeOfBlock(content, size, rule);
      return;
    }
    default:
      // Unknown block kinds (server tool results, future types) still cost something
      // proportional to their size, so growing them grows the count.
      size.chars += JSON.stringify(withoutCacheControl(block)).length;
  }
}

function unit(value: JsonObject | string, label: string, breakpoint: CacheTtl | undefined, rule: ImageRule): PromptUnit {
  const size: Size = { chars: 0, imageTokens: 0 };
  let key: string;
  if (typeof value === 'string') {
    size.chars = value.length;
    key = `${label}:${JSON.stringify(value)}`;
  } else {
    sizeOfBlock(value, size, rule);
    key = `${label}:${JSON.stringify(withoutCacheControl(value))}`;
  }
  return { chars: size.chars, imageTokens: size.imageTokens, breakpoint, key };
}

/** The prompt's cacheable units; images at `rule` (default Anthropic's, `imageTokensFor`). */
export function promptUnits(body: MessagesBody, rule: ImageRule = imageTokensFor): PromptUnit[] {
  const units: PromptUnit[] = [];
  body.tools.forEach((tool, i) => {
    // A tool costs its whole definition, as JSON, without the cache marker.
    const json = JSON.stringify(withoutCacheControl(tool));
    units.push({ chars: json.length, imageTokens: 0, breakpoint: breakpointOf(tool, `tools.${i}`), key: `tool:${json}` });
  });
  if (typeof body.system === 'string') units.push(unit(body.system, 'system', undefined, rule));
  else if (body.system !== undefined) {
    body.system.forEach((block, i) => units.push(unit(block, 'system', breakpointOf(block, `system.${i}`), rule)));
  }
  body.messages.forEach((message, m) => {
    if (typeof message.content === 'string') {
      units.push(unit(message.content, message.role, undefined, rule));
      return;
    }
    message.content.forEach((block, i) => {
      units.push(unit(block, message.role, breakpointOf(block, `messages.${m}.content.${i}`), rule));
    });
  });
  return units;
}

export function countInputTokens(units: readonly PromptUnit[]): number {
  let chars = 0;
  let imageTokens = 0;
  for (const u of units) {
    chars += u.chars;
    imageTokens += u.imageTokens;
  }
  return Math.max(1, tokensFor(chars, imageTokens));
}
