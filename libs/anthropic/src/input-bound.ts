// A proven upper bound of the input-side tokens one /v1/messages request can be billed for,
// computed before the call so the credit hold covers the worst case. Every part of the body is
// bounded by a rule that holds for ANY input, or, where the body cannot bound what the upstream
// will read (a document it fetches, a server tool's results), by the model's context window.
// Cheap on the hot path: the raw body length stands in for the text (no re-serialisation) and
// the content blocks are walked once; only the first bytes of base64 images are decoded.

import { Buffer, isUtf8 } from 'node:buffer';
import { imageSize } from 'image-size';
import { isRecord } from './record.ts';
import { prewarms } from './request.ts';
import type { CountTokensRequest } from './types.ts';

/** What the bound needs to know about the model (from the catalog, see @tollgate/pricing). */
export interface InputBoundLimits {
  /** tokens the model reads in one sampling step for this request (betas applied) */
  readonly contextWindow: number;
  /** the most tokens one image can cost on this model, after the upstream's resizing */
  readonly imageTokenCap: number;
  /**
   * Tokens of one image of a proven `width` × `height` px (a bound, ≤ `imageTokenCap`); default
   * Anthropic's rule, `imageTokens(width, height, imageTokenCap)`. An upstream that counts images
   * its own way (platform `openai`: @tollgate/openai-compat `openAIImageTokens`) gives its rule.
   */
  readonly imageTokensOf?: (width: number, height: number) => number;
  /**
   * False where `contextWindow` does not bound what the upstream bills (platform `openai`: the
   * catalog's window is Claude's, not the served model's, and some OpenAI models bill image
   * tokens beyond their window): the sum of the parts is then never cut to the ceiling, which
   * still bounds the sources only a window can bound. Default true.
   */
  readonly windowBoundsBilling?: boolean;
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
 * names only the type), by the type's family (`memory_20250818` → `memory`). Documented
 * overheads: bash 245 input tokens; text editor 700; computer use 735 per tool plus a
 * 466–499-token system prompt. Each constant at least doubles those. The memory tool and the
 * browser and computer toolsets (one `tools[]` entry declaring a family of up to ~30 actions)
 * are run by the client too (their calls come back as `tool_use` blocks: SDK
 * `BetaMemoryTool20250818`, `BetaBrowserToolset20260801`, `BetaComputerToolset20260801`); their
 * overhead is not documented, so it is bounded generously. A type not listed here and not a
 * custom tool is taken to run on the upstream (a server-tool loop).
 */
export const CLIENT_TOOL_OVERHEAD: Readonly<Record<string, number>> = Object.freeze({
  bash: 1_000,
  text_editor: 1_500,
  computer: 2_500,
  memory: 2_000,
  browser_toolset: 10_000,
  computer_toolset: 10_000,
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

/** Base64 characters decoded first: enough for the header of a PNG or JPEG in most files. */
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

/** Width × height that bounds every size a decoder can give the image. */
export interface ImageDimensions {
  readonly width: number;
  readonly height: number;
}

/**
 * Running maximum of every extent a file declares. `more`: the bytes read end before the
 * structure says the size is settled (read the whole file); `bad`: the structure is not one a
 * bound can be read from (the cap applies).
 */
class Extent {
  width = 0;
  height = 0;
  bad = false;
  more = false;
  add(width: number, height: number): void {
    if (!(width >= 0) || !(height >= 0)) this.bad = true;
    this.width = Math.max(this.width, width);
    this.height = Math.max(this.height, height);
  }
  result(): ImageDimensions | 'more' | undefined {
    if (this.bad) return undefined;
    if (this.more) return 'more';
    return this.width > 0 && this.height > 0 ? { width: this.width, height: this.height } : undefined;
  }
}

/**
 * PNG: IHDR is the canvas. An APNG (an `acTL` chunk before the first IDAT, the only place the
 * format allows it) also declares frames (`fcTL`: size at offset 4 and 8, position at 12 and
 * 16); the spec forbids frames outside the canvas, and the bound does not rely on a decoder
 * enforcing it: each frame's far corner counts too. Without acTL before IDAT, IHDR is the size.
 */
function pngExtent(b: Buffer, complete: boolean): Extent {
  const e = new Extent();
  if (b.length < 24 || b.toString('latin1', 12, 16) !== 'IHDR') {
    e.bad = true;
    return e;
  }
  e.add(b.readUInt32BE(16), b.readUInt32BE(20));
  let animated = false;
  for (let pos = 8; ;) {
    if (pos + 8 > b.length) {
      e.more = !complete;
      return e;
    }
    const length = b.readUInt32BE(pos);
    const type = b.toString('latin1', pos + 4, pos + 8);
    const data = pos + 8;
    if (type === 'IDAT' && !animated) return e;
    if (type === 'IEND') return e;
    if (type === 'acTL') animated = true;
    if (type === 'fcTL') {
      if (data + 20 > b.length) {
        e.more = !complete;
        return e;
      }
      e.add(b.readUInt32BE(data + 12) + b.readUInt32BE(data + 4), b.readUInt32BE(data + 16) + b.readUInt32BE(data + 8));
    }
    pos = data + length + 4;
  }
}

/**
 * GIF: the logical screen (bytes 6–9) is NOT the decoded size: each frame's image descriptor
 * places a w×h frame at (left, top), and decoders either grow the canvas to hold it (Pillow)
 * or clip it (browsers). The bound is the screen and every frame's far corner, so the whole
 * file is walked (blocks are skipped by their lengths). Truncated data ends the walk (no frame
 * can follow); a byte that starts no known block makes the file unreadable: the cap.
 */
function gifExtent(b: Buffer, complete: boolean): Extent {
  const e = new Extent();
  if (!complete) {
    e.more = true;
    return e;
  }
  if (b.length < 13) {
    e.bad = true;
    return e;
  }
  e.add(b.readUInt16LE(6), b.readUInt16LE(8));
  let pos = 13;
  const packed = b[10]!;
  if (packed & 0x80) pos += 3 * 2 ** ((packed & 7) + 1);
  const skipSubBlocks = (): void => {
    while (pos < b.length) {
      const n = b[pos]!;
      pos += 1 + n;
      if (n === 0) return;
    }
  };
  while (pos < b.length) {
    const introducer = b[pos]!;
    if (introducer === 0x3b) break; // trailer
    if (introducer === 0x21) {
      pos += 2; // introducer, label
      skipSubBlocks();
    } else if (introducer === 0x2c) {
      if (pos + 10 > b.length) break;
      e.add(b.readUInt16LE(pos + 1) + b.readUInt16LE(pos + 5), b.readUInt16LE(pos + 3) + b.readUInt16LE(pos + 7));
      const local = b[pos + 9]!;
      pos += 10;
      if (local & 0x80) pos += 3 * 2 ** ((local & 7) + 1);
      pos += 1; // LZW minimum code size
      skipSubBlocks();
    } else {
      e.bad = true;
      break;
    }
  }
  return e;
}

/** JPEG start-of-frame markers (SOF0–3, 5–7, 9–11, 13–15): each declares the frame's size. */
const JPEG_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/**
 * JPEG: the size is in a start-of-frame segment before the first scan (SOS). Segments are
 * walked by their lengths up to SOS: EXIF / ICC segments (APPn, with their thumbnails) are
 * skipped as decoders skip them. A file with several SOFs (libjpeg refuses it, Pillow keeps
 * the last) is bounded by all of them; a height of 0 (defined later by a DNL marker) or bytes
 * that are not a marker where one must be make it unreadable: the cap. EXIF orientation only
 * swaps width and height, which neither ⌈w×h/750⌉ nor the 28-px patch count changes.
 */
function jpegExtent(b: Buffer, complete: boolean): Extent {
  const e = new Extent();
  let pos = 2;
  while (true) {
    if (pos + 4 > b.length) {
      e.more = !complete;
      return e;
    }
    if (b[pos] !== 0xff) {
      e.bad = true;
      return e;
    }
    let marker = b[pos + 1]!;
    while (marker === 0xff && pos + 2 < b.length) marker = b[++pos + 1]!; // fill bytes
    if (marker === 0xda || marker === 0xd9) return e; // start of scan, end of image
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01 || marker === 0xd8) {
      pos += 2;
      continue;
    }
    if (pos + 4 > b.length) {
      e.more = !complete;
      return e;
    }
    const length = b.readUInt16BE(pos + 2);
    if (JPEG_SOF.has(marker)) {
      if (pos + 9 > b.length) {
        e.more = !complete;
        return e;
      }
      const height = b.readUInt16BE(pos + 5);
      const width = b.readUInt16BE(pos + 7);
      if (height === 0 || width === 0) e.bad = true;
      e.add(width, height);
    }
    if (length < 2) {
      e.bad = true;
      return e;
    }
    pos += 2 + length;
  }
}

/**
 * WebP: a RIFF file of chunks. `VP8 ` (lossy: 14-bit size at bytes 6–9) and `VP8L`
 * (lossless: 14-bit size − 1 after the signature byte) are bitstreams; `VP8X` declares the
 * canvas (24-bit size − 1 at bytes 4–9); each `ANMF` frame sits at (2x, 2y) with a 24-bit
 * size − 1 and holds its own bitstream. The bound is the largest of every canvas, frame corner
 * and bitstream in the file (a still VP8X image whose canvas disagrees with its bitstream
 * included), so the whole file is walked.
 */
function webpExtent(b: Buffer, complete: boolean): Extent {
  const e = new Extent();
  if (!complete) {
    e.more = true;
    return e;
  }
  const walk = (start: number, end: number, dx: number, dy: number): void => {
    for (let pos = start; pos + 8 <= end;) {
      const type = b.toString('latin1', pos, pos + 4);
      const size = b.readUInt32LE(pos + 4);
      const d = pos + 8;
      const stop = Math.min(end, d + size);
      if (type === 'VP8 ' && d + 10 <= stop) {
        if (b[d + 3] !== 0x9d || b[d + 4] !== 0x01 || b[d + 5] !== 0x2a) e.bad = true;
        e.add(dx + (b.readUInt16LE(d + 6) & 0x3fff), dy + (b.readUInt16LE(d + 8) & 0x3fff));
      } else if (type === 'VP8L' && d + 5 <= stop) {
        if (b[d] !== 0x2f) e.bad = true;
        const bits = b.readUInt32LE(d + 1);
        e.add(dx + (bits & 0x3fff) + 1, dy + ((bits >>> 14) & 0x3fff) + 1);
      } else if (type === 'VP8X' && d + 10 <= stop) {
        e.add(b.readUIntLE(d + 4, 3) + 1, b.readUIntLE(d + 7, 3) + 1);
      } else if (type === 'ANMF' && d + 16 <= stop) {
        const x = 2 * b.readUIntLE(d, 3);
        const y = 2 * b.readUIntLE(d + 3, 3);
        e.add(x + b.readUIntLE(d + 6, 3) + 1, y + b.readUIntLE(d + 9, 3) + 1);
        walk(d + 16, stop, x, y);
      }
      pos = d + size + (size & 1);
    }
  };
  if (b.length < 12) {
    e.bad = true;
    return e;
  }
  walk(12, b.length, 0, 0);
  return e;
}

/**
 * Width and height that bound the decoded size of base64 image data (PNG, JPEG, GIF, WebP),
 * or undefined when no proven bound can be read (another format, unreadable or malformed
 * structure): the caller then uses the per-model cap. A format's header is a proven bound
 * only where nothing later in the file can enlarge the picture; where something can (GIF
 * frames beyond the logical screen, WebP frames and bitstreams, APNG frames, several JPEG
 * frame headers), every such extent is read and the largest counts (see each format's
 * walker). PNG and JPEG read only their first 8 KB of base64 unless the header runs past it;
 * GIF and WebP are decoded whole. `image-size` reads the header too: its answer only raises
 * the bound.
 */
export function base64ImageDimensions(data: string): ImageDimensions | undefined {
  const measure = (bytes: Buffer, complete: boolean): ImageDimensions | 'more' | undefined => {
    let extent: Extent;
    if (bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47 && bytes.readUInt32BE(4) === 0x0d0a1a0a) extent = pngExtent(bytes, complete);
    else if (bytes.length >= 6 && /^GIF8[79]a$/.test(bytes.toString('latin1', 0, 6))) extent = gifExtent(bytes, complete);
    else if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) extent = jpegExtent(bytes, complete);
    else if (bytes.length >= 12 && bytes.toString('latin1', 0, 4) === 'RIFF' && bytes.toString('latin1', 8, 12) === 'WEBP') extent = webpExtent(bytes, complete);
    else return undefined;
    const walked = extent.result();
    if (walked === 'more' || walked === undefined) return walked;
    try {
      const header = imageSize(bytes);
      if (header.type !== undefined && MEASURABLE_TYPES.has(header.type) && header.width > 0 && header.height > 0) {
        return { width: Math.max(walked.width, header.width), height: Math.max(walked.height, header.height) };
      }
    } catch {
      // the walk read the structure; a library that cannot is no reason to doubt it
    }
    return walked;
  };
  if (data.length > HEADER_BASE64_CHARS) {
    const head = measure(Buffer.from(data.slice(0, HEADER_BASE64_CHARS), 'base64'), false);
    if (head !== 'more') return head;
  }
  const all = measure(Buffer.from(data, 'base64'), true);
  return all === 'more' ? undefined : all;
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
 * - **Images: by a proven bound of their decoded dimensions** (`base64ImageDimensions`: the
 *   header where nothing later can enlarge the picture, else every frame too) at
 *   `imageTokens(w, h, cap)`; its base64 bytes are then not counted as text. An image by URL
 *   or file id, or whose size cannot be proven, costs the cap.
 * - **Tools:** `TOOL_USE_SYSTEM_PROMPT_TOKENS` when `tools` is non-empty, plus
 *   `CLIENT_TOOL_OVERHEAD` per Anthropic-defined client tool (bash, text editor, computer).
 * - **What the body cannot bound** (documents by URL / file id / base64 PDF, citations, any
 *   other `file_id`, server tools, `mcp_servers`, `container`, any tool type not known here):
 *   the context window. With server tools, MCP servers or a container the upstream samples
 *   up to `SERVER_LOOP_ITERATIONS` times in one request (fewer when only web search / fetch
 *   with `max_uses` are present: 1 + Σ max_uses), each step reading at most one window.
 * - The result never exceeds context window × iterations: the upstream cannot bill more input
 *   for one request than it can read (unless `windowBoundsBilling` is false: then the window
 *   bounds only the sources nothing else bounds). A body with `max_tokens: 0` (pre-warming the
 *   prompt cache) has one iteration: it generates nothing, so no tool runs.
 * - Images at `imageTokensOf` where given (an upstream with its own image rule).
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
        imageTokenSum += limits.imageTokensOf ? limits.imageTokensOf(dims.width, dims.height) : imageTokens(dims.width, dims.height, limits.imageTokenCap);
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

  // A pre-warm (`prewarms`) has one step, reading the prompt. What the body cannot bound stays
  // so (a server tool's own definition, an MCP server's tools): that one step's window.
  const looping = !prewarms(body) && (serverLoop || unbounded.includes('mcp_servers') || unbounded.includes('container'));
  const iterations = !looping ? 1 : loopBoundedByMaxUses ? Math.min(SERVER_LOOP_ITERATIONS, loopBound) : SERVER_LOOP_ITERATIONS;
  const ceilingTokens = limits.contextWindow * iterations;

  // An unusable length bounds nothing: fall back to the ceiling rather than to zero.
  const bytes = Number.isSafeInteger(rawBodyBytes) && rawBodyBytes >= 0 ? rawBodyBytes : Number.POSITIVE_INFINITY;
  const textTokens = Math.max(0, bytes - measuredBase64);
  const summed = textTokens + imageTokenSum + overheadTokens;
  // Where the window does not bound billing, it bounds only what nothing else does and the parts
  // are summed whole; elsewhere it also caps the sum.
  const ceiling = limits.windowBoundsBilling === false
    ? !Number.isFinite(summed) || (unbounded.length > 0 && ceilingTokens > summed)
    : unbounded.length > 0 || summed > ceilingTokens;
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
