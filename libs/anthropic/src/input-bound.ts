// A proven upper bound of the input-side tokens one /v1/messages request can be billed for,
// computed before the call so the credit hold covers the worst case. Every part of the body is
// bounded by a rule that holds for ANY input, or, where the body cannot bound what the upstream
// will read (a document it fetches, a server tool's results), by the model's context window.
// Cheap on the hot path: the raw body length stands in for the text (no re-serialisation) and
// the content blocks are walked once; only the first bytes of base64 images are decoded.

import { Buffer, isUtf8 } from 'node:buffer';
import { imageSize } from 'image-size';
import { isRecord } from './record.ts';
import type { CountTokensRequest } from './types.ts';

/** What the bound needs to know about the model (from the catalog, see @tollgate/pricing). */
export interface InputBoundLimits {
  /** tokens the model reads in one sampling step for this request (betas applied) */
  readonly contextWindow: number;
  /** the most tokens one image can cost on this model, after the upstream's resizing */
  readonly imageTokenCap: number;
}

/** A part of the request that only the context window bounds. */
export type UnboundedSource =
  | 'document_url' // document fetched by the upstream
  | 'document_file' // document from the Files API
  | 'document_pdf' // base64 PDF: every page is read as text AND as an image
  | 'document_other' // a document source this gateway does not know
  | 'citations' // citations chunk a document into indexed passages (markup per sentence)
  | 'container_upload' // a file the code-execution container reads
  | 'file_reference' // any other `file_id`
  | 'server_tool' // web search / fetch, code execution, tool search…: results come from the upstream
  | 'mcp_servers' // MCP connector: tool results come from a remote server
  | 'container'; // a code-execution container (skills), which reads its own files

/** The bound and which rule bounded each part (for a span attribute and for debugging). */
export interface InputBound {
  /** upper bound of input + cache read + cache write tokens of the whole request */
  readonly tokens: number;
  /** UTF-8 bytes counted one token each: the raw body less the base64 of images measured */
  readonly textTokens: number;
  /** images bounded by their decoded dimensions: count and tokens */
  readonly imagesMeasured: number;
  /** images bounded by the per-model cap (by URL, by file id, unreadable header): count */
  readonly imagesCapped: number;
  readonly imageTokens: number;
  /** the tool-use system prompt and hidden definitions of Anthropic-defined client tools */
  readonly overheadTokens: number;
  /** sources only the context window bounds (deduplicated, in order of discovery) */
  readonly unbounded: readonly UnboundedSource[];
  /** sampling steps the upstream may run for this one request (1, or the server-tool loop) */
  readonly iterations: number;
  /** the context window × iterations ceiling decided `tokens` */
  readonly ceiling: boolean;
}

/**
 * Tool-use system prompt the upstream adds whenever `tools` is non-empty. Anthropic documents
 * 159–530 tokens depending on model and tool_choice (Claude 4 models: 346 for auto/none, 313
 * for any/tool; "Tool use pricing"); 1,000 bounds every documented value with room.
 */
export const TOOL_USE_SYSTEM_PROMPT_TOKENS = 1_000;

/**
 * Anthropic-defined client tools whose definitions the upstream inserts itself (the request
 * names only the type). Documented overheads: bash 245 input tokens; text editor 700; computer
 * use 735 per tool plus a 466–499-token system prompt. Each constant at least doubles those.
 */
export const CLIENT_TOOL_OVERHEAD: Readonly<Record<string, number>> = Object.freeze({
  bash: 1_000,
  text_editor: 1_500,
  computer: 2_500,
});

/**
 * Sampling steps one request can take when the upstream runs tools itself. Anthropic's
 * server-side sampling loop stops after 10 iterations and answers `stop_reason: "pause_turn"`
 * (the client re-sends to continue: a new request with its own hold). Each step re-reads the
 * growing context, at most one context window, so billed input ≤ iterations × window.
 */
export const SERVER_LOOP_ITERATIONS = 10;

/**
 * Server tools whose `max_uses` bounds the loop: each use is one more step, so a request with
 * only these tools takes at most 1 + Σ max_uses steps. Later versions (dynamic filtering) run
 * code execution inside a search, which `max_uses` does not count: they get the full loop.
 */
const MAX_USES_BOUNDS_LOOP = new Set(['web_search_20250305', 'web_fetch_20250910']);

/** Base64 characters decoded first: enough for the header of a PNG, GIF or WebP and most JPEGs. */
const HEADER_BASE64_CHARS = 8192;

const MEASURABLE_TYPES = new Set(['png', 'jpg', 'gif', 'webp']);

/** Keys whose values are the client's own data, never content the upstream expands. */
const OPAQUE_KEYS = new Set(['input', 'input_schema', 'metadata']);

/**
 * Tokens one image of `width` × `height` pixels costs at most: Anthropic's rule is about
 * ⌈w×h/750⌉, and the model sees ⌈w/28⌉×⌈h/28⌉ 28-pixel patches (padded to multiples of 28);
 * the larger of the two bounds both, and a larger image is resized down to at most `cap`
 * ("Images and vision").
 */
export function imageTokens(width: number, height: number, cap: number): number {
  const byArea = Math.ceil((width * height) / 750);
  const byPatches = Math.ceil(width / 28) * Math.ceil(height / 28);
  return Math.min(cap, Math.max(byArea, byPatches, 1));
}

/**
 * Width and height of base64 image data (PNG, JPEG, GIF, WebP), reading only its header when
 * that suffices; undefined when the data is not one of those formats or is unreadable.
 */
export function base64ImageDimensions(data: string): { width: number; height: number } | undefined {
  const attempt = (b64: string) => {
    try {
      const size = imageSize(Buffer.from(b64, 'base64'));
      if (size.type === undefined || !MEASURABLE_TYPES.has(size.type)) return undefined;
      if (!(size.width > 0) || !(size.height > 0)) return undefined;
      return { width: size.width, height: size.height };
    } catch {
      return undefined;
    }
  };
  if (data.length > HEADER_BASE64_CHARS) {
    const head = attempt(data.slice(0, HEADER_BASE64_CHARS));
    if (head) return head;
  }
  // A JPEG whose frame header follows large EXIF / ICC segments: decode it all (rare).
  return attempt(data);
}

/**
 * Upper bound of the input-side tokens (input + cache read + cache writes) the upstream can
 * bill for this request, with the rule that bounded each part. Rules:
 *
 * - **Text: one token per UTF-8 byte of the raw body.** Claude's tokenizer is a byte-level BPE:
 *   every token stands for at least one byte of the text, so a text of n UTF-8 bytes is at most
 *   n tokens, whatever the script (ASCII, CJK, emoji). The raw JSON body contains every text
 *   field's UTF-8 bytes (JSON escapes only lengthen them), plus keys, quotes and brackets that
 *   carry no tokens; that syntax (≥ 25 bytes per message and per block) also covers the few
 *   template tokens the upstream adds around each message and block. Encrypted fields passed
 *   back (thinking `signature`, `redacted_thinking.data`, search `encrypted_content`) are
 *   counted by their bytes too: encryption and base64 do not shrink what they carry.
 * - **Images: by their real dimensions.** The header of base64 data is decoded (PNG, JPEG,
 *   GIF, WebP) and costs `imageTokens(w, h, cap)`; its base64 bytes are then not counted as
 *   text. An image by URL or file id, or whose header cannot be read, costs the cap.
 * - **Tools:** `TOOL_USE_SYSTEM_PROMPT_TOKENS` when `tools` is non-empty, plus
 *   `CLIENT_TOOL_OVERHEAD` per Anthropic-defined client tool (bash, text editor, computer).
 * - **What the body cannot bound** (documents by URL / file id / base64 PDF, citations, any
 *   other `file_id`, server tools, `mcp_servers`, `container`, any tool type not known here):
 *   the context window. With server tools, MCP servers or a container the upstream samples
 *   up to `SERVER_LOOP_ITERATIONS` times in one request (fewer when only web search / fetch
 *   with `max_uses` are present: 1 + Σ max_uses), each step reading at most one window.
 * - The result never exceeds context window × iterations: the upstream cannot bill more input
 *   for one request than it can read.
 *
 * `raw` is the request body as received (decoded from any content-encoding), or just its
 * length; the body is never re-serialised. Given the bytes, they are checked to be UTF-8 (a
 * SIMD scan): a JSON parser turns each invalid byte into U+FFFD, 3 bytes of text, so a body that
 * is not UTF-8 counts 3 tokens a byte. Throws nothing: malformed parts only raise the bound.
 */
export function inputTokenBound(body: CountTokensRequest, raw: Uint8Array | number, limits: InputBoundLimits): InputBound {
  const rawBodyBytes = typeof raw === 'number' ? raw : isUtf8(raw) ? raw.length : 3 * raw.length;
  const unbounded: UnboundedSource[] = [];
  const flag = (s: UnboundedSource) => {
    if (!unbounded.includes(s)) unbounded.push(s);
  };
  let measuredBase64 = 0;
  let imagesMeasured = 0;
  let imagesCapped = 0;
  let imageTokenSum = 0;

  const image = (source: unknown) => {
    if (isRecord(source) && source.type === 'base64' && typeof source.data === 'string') {
      const dims = base64ImageDimensions(source.data);
      if (dims) {
        imagesMeasured++;
        imageTokenSum += imageTokens(dims.width, dims.height, limits.imageTokenCap);
        measuredBase64 += source.data.length;
        return;
      }
    }
    imagesCapped++;
    imageTokenSum += limits.imageTokenCap;
  };

  const document = (source: unknown) => {
    if (!isRecord(source)) return flag('document_other');
    switch (source.type) {
      case 'text': return; // its UTF-8 bytes are in the body
      case 'content': return; // its blocks are walked like any other
      case 'url': return flag('document_url');
      case 'file': return flag('document_file');
      case 'base64': return flag('document_pdf');
      default: return flag('document_other');
    }
  };

  // One iterative walk over the content (no recursion: a hostile body may nest deeply).
  const stack: unknown[] = [body.system, body.messages];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      for (const item of node) if (typeof item === 'object' && item !== null) stack.push(item);
      continue;
    }
    if (!isRecord(node)) continue;
    if (node.type === 'image' && 'source' in node) {
      image(node.source);
      continue;
    }
    if (node.type === 'document' && 'source' in node) {
      document(node.source);
      if (isRecord(node.citations) && node.citations.enabled === true) flag('citations');
      if (isRecord(node.source) && node.source.type === 'content') stack.push(node.source.content);
      continue;
    }
    if (node.type === 'container_upload') flag('container_upload');
    else if ('file_id' in node) flag('file_reference');
    if (isRecord(node.citations) && node.citations.enabled === true) flag('citations');
    for (const key in node) {
      if (OPAQUE_KEYS.has(key)) continue;
      const v = node[key];
      if (typeof v === 'object' && v !== null) stack.push(v);
    }
  }

  let overheadTokens = 0;
  let serverLoop = false;
  let loopBound = 1;
  let loopBoundedByMaxUses = true;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    overheadTokens += TOOL_USE_SYSTEM_PROMPT_TOKENS;
    for (const tool of body.tools) {
      if (!isRecord(tool)) continue;
      const type = tool.type;
      if (type === undefined || type === null || type === 'custom') continue; // definition in the body
      if (typeof type !== 'string') {
        serverLoop = true;
        loopBoundedByMaxUses = false;
        continue;
      }
      const family = /^([a-z_]+?)_\d{8}$/.exec(type)?.[1];
      const client = family === undefined ? undefined : CLIENT_TOOL_OVERHEAD[family];
      if (client !== undefined) {
        overheadTokens += client;
        continue;
      }
      // Anything else runs on the upstream (or is a tool type this gateway does not know).
      serverLoop = true;
      const maxUses = tool.max_uses;
      if (MAX_USES_BOUNDS_LOOP.has(type) && typeof maxUses === 'number' && Number.isSafeInteger(maxUses) && maxUses >= 0) {
        loopBound += maxUses;
      } else {
        loopBoundedByMaxUses = false;
      }
    }
  }
  if (serverLoop) flag('server_tool');
  if (Array.isArray(body.mcp_servers) ? body.mcp_servers.length > 0 : body.mcp_servers !== undefined && body.mcp_servers !== null) {
    flag('mcp_servers');
    loopBoundedByMaxUses = false;
  }
  if (body.container !== undefined && body.container !== null) {
    flag('container');
    loopBoundedByMaxUses = false;
  }

  const looping = serverLoop || unbounded.includes('mcp_servers') || unbounded.includes('container');
  const iterations = !looping ? 1 : loopBoundedByMaxUses ? Math.min(SERVER_LOOP_ITERATIONS, loopBound) : SERVER_LOOP_ITERATIONS;
  const ceilingTokens = limits.contextWindow * iterations;

  // An unusable length bounds nothing: fall back to the ceiling rather than to zero.
  const bytes = Number.isSafeInteger(rawBodyBytes) && rawBodyBytes >= 0 ? rawBodyBytes : Number.POSITIVE_INFINITY;
  const textTokens = Math.max(0, bytes - measuredBase64);
  const summed = textTokens + imageTokenSum + overheadTokens;
  const ceiling = unbounded.length > 0 || summed > ceilingTokens;
  return {
    tokens: ceiling ? ceilingTokens : summed,
    textTokens: Number.isFinite(textTokens) ? textTokens : ceilingTokens,
    imagesMeasured,
    imagesCapped,
    imageTokens: imageTokenSum,
    overheadTokens,
    unbounded,
    iterations,
    ceiling,
  };
}
