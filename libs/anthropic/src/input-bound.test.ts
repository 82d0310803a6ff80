import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { bundledCatalogPath, contextWindowFor, holdMicros, loadCatalogFile, resolveModel } from '@tollgate/pricing';
import { base64ImageDimensions, imageTokens, inputTokenBound, type InputBound, type InputBoundLimits } from './input-bound.ts';
import type { MessagesRequest } from './types.ts';

// Holds below are for claude-sonnet-4-5 in the shipped CNY catalog: every input-side token at
// the dearest input-side price (cache write 1 h, ¥14.40/MTok = 144 µc a token) plus max_tokens
// of output at ¥36/MTok = 360 µc a token.
const catalog = loadCatalogFile(bundledCatalogPath('cny'));
const sonnet45 = resolveModel(catalog, 'claude-sonnet-4-5')!.model;
const LIMITS: InputBoundLimits = { contextWindow: 200_000, imageTokenCap: 1_600 };

function bound(body: Omit<MessagesRequest, 'model' | 'max_tokens'> & { max_tokens?: number }, limits = LIMITS): InputBound & { raw: number; hold: bigint } {
  const full = { model: 'claude-sonnet-4-5', max_tokens: 100, ...body } as MessagesRequest;
  const raw = Buffer.byteLength(JSON.stringify(full), 'utf8');
  const b = inputTokenBound(full, raw, limits);
  return { ...b, raw, hold: holdMicros(b.tokens, full.max_tokens, sonnet45.prices) };
}
const say = (text: string) => ({ messages: [{ role: 'user', content: text }] });

// Tiny real image headers of a given size (what the upstream's decoder reads first).
const be32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
function pngChunk(type: string, data: Buffer): Buffer {
  const t = Buffer.from(type, 'latin1');
  return Buffer.concat([be32(data.length), t, data, be32(crc32(Buffer.concat([t, data])))]);
}
function png(w: number, h: number): string {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 6;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IEND', Buffer.alloc(0))]).toString('base64');
}
function jpeg(w: number, h: number, exifBytes = 0): string {
  const app1 = exifBytes > 0 ? [0xff, 0xe1, (exifBytes + 2) >> 8, (exifBytes + 2) & 255, ...Buffer.alloc(exifBytes)] : [];
  return Buffer.from([
    0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, ...app1,
    0xff, 0xc0, 0, 17, 8, h >> 8, h & 255, w >> 8, w & 255, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xff, 0xd9,
  ]).toString('base64');
}
function gif(w: number, h: number): string {
  const b = Buffer.alloc(13);
  b.write('GIF89a', 0, 'latin1'); b.writeUInt16LE(w, 6); b.writeUInt16LE(h, 8);
  return b.toString('base64');
}
function webp(w: number, h: number): string {
  const d = Buffer.alloc(10);
  d.writeUIntLE(w - 1, 4, 3); d.writeUIntLE(h - 1, 7, 3);
  const vp8x = Buffer.concat([Buffer.from('VP8X', 'latin1'), Buffer.from([10, 0, 0, 0]), d]);
  const riff = Buffer.alloc(12);
  riff.write('RIFF', 0, 'latin1'); riff.writeUInt32LE(4 + vp8x.length, 4); riff.write('WEBP', 8, 'latin1');
  return Buffer.concat([riff, vp8x]).toString('base64');
}
const imageBlock = (media: string, data: string) => ({ type: 'image', source: { type: 'base64', media_type: media, data } });
const withImage = (block: unknown) => ({ messages: [{ role: 'user', content: [block, { type: 'text', text: 'what is this?' }] }] });

test('plain ASCII text: one token per byte of the raw body', () => {
  // {"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"Hello, world"}]}
  // = 100 bytes → 100 tokens; hold 100 × 144 + 100 × 360 = 14,400 + 36,000 = 50,400 µc
  const b = bound(say('Hello, world'));
  assert.equal(b.raw, 100);
  assert.deepEqual([b.tokens, b.textTokens, b.unbounded, b.iterations, b.ceiling], [100, 100, [], 1, false]);
  assert.equal(b.hold, 50_400n);
});

test('CJK text: 3 UTF-8 bytes a character, each a possible token', () => {
  // "你好世界" is 4 × 3 = 12 bytes where "Hello, world" was 12 too: 100 bytes, 100 tokens.
  // bytes / 3 would have held 4 tokens for these 4 characters, which can be 4+ tokens alone.
  const b = bound(say('你好世界'));
  assert.equal(b.tokens, 100);
  assert.equal(b.hold, 50_400n); // 100 × 144 + 100 × 360
});

test('emoji: 4 UTF-8 bytes each, counted byte for byte', () => {
  // "😀👍🏽" = 4 + 4 + 4 = 12 bytes: 100 bytes, 100 tokens (a skin-tone modifier is a third codepoint)
  const b = bound(say('😀👍🏽'));
  assert.equal(b.tokens, 100);
  assert.equal(b.hold, 50_400n);
});

test('base64 PNG 1000×1000: ⌈w×h/750⌉ tokens, its base64 not counted as text', () => {
  const data = png(1000, 1000); // 45 bytes → 60 base64 characters
  assert.equal(data.length, 60);
  const b = bound(withImage(imageBlock('image/png', data)));
  // raw 265 bytes − 60 base64 = 205 text tokens; image max(⌈1e6/750⌉ = 1,334, 36 × 36 = 1,296) = 1,334
  assert.deepEqual([b.raw, b.textTokens, b.imageTokens, b.imagesMeasured, b.tokens], [265, 205, 1_334, 1, 1_539]);
  assert.equal(b.hold, 257_616n); // 1,539 × 144 + 36,000
});

test('base64 JPEG 200×200 behind 20 KB of EXIF: 28-px patches (8 × 8 = 64) beat ⌈40,000/750⌉ = 54', () => {
  const data = jpeg(200, 200, 20_000); // the frame header lies past the first 8 KB of base64
  const b = bound(withImage(imageBlock('image/jpeg', data)));
  assert.equal(b.imageTokens, 64);
  assert.equal(b.textTokens, b.raw - data.length);
  assert.equal(b.textTokens, 206); // 206 bytes of JSON around the image ("image/jpeg" is 10)
  assert.equal(b.hold, 74_880n); // (206 + 64) × 144 + 36,000
});

test('base64 GIF 29×1: a thin image costs its patches (2), not ⌈29/750⌉ = 1', () => {
  const b = bound(withImage(imageBlock('image/gif', gif(29, 1))));
  assert.deepEqual([b.imageTokens, b.textTokens, b.tokens], [2, 205, 207]);
  assert.equal(b.hold, 65_808n); // 207 × 144 + 36,000
});

test('base64 WebP 3000×2000: resized by the upstream, so the per-model cap (1,600)', () => {
  const b = bound(withImage(imageBlock('image/webp', webp(3000, 2000))));
  assert.deepEqual([b.imageTokens, b.textTokens, b.tokens], [1_600, 206, 1_806]);
  assert.equal(b.hold, 296_064n); // 1,806 × 144 + 36,000
  // Opus 4.7 reads up to 3.75 MP: its catalog cap is 5,000, and 3000×2000 is resized to it.
  assert.equal(bound(withImage(imageBlock('image/webp', webp(3000, 2000))), { ...LIMITS, imageTokenCap: 5_000 }).imageTokens, 5_000);
});

test('image by URL, by file id, or with an unreadable header: the cap', () => {
  const url = bound(withImage({ type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } }));
  assert.deepEqual([url.imageTokens, url.imagesCapped, url.unbounded], [1_600, 1, []]);
  const file = bound(withImage({ type: 'image', source: { type: 'file', file_id: 'file_011' } }));
  assert.deepEqual([file.imageTokens, file.imagesCapped, file.unbounded], [1_600, 1, []]);
  const junk = bound(withImage(imageBlock('image/png', Buffer.from('not an image at all').toString('base64'))));
  assert.deepEqual([junk.imageTokens, junk.imagesCapped], [1_600, 1]);
  assert.equal(junk.textTokens, junk.raw, 'an unmeasured image keeps its base64 in the text bound');
  // In a tool_result (where screenshots go) too.
  const tool = bound({ messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'image', source: { type: 'url', url: 'https://x/y.png' } }] }] }] });
  assert.equal(tool.imageTokens, 1_600);
});

// Image formats whose header size is not the decoded size. Each fixture is real bytes; the
// sizes in comments are what Pillow 13 reports for them (checked when the fixtures were made).
const le16 = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
const le24 = (n: number) => { const b = Buffer.alloc(3); b.writeUIntLE(n, 0, 3); return b; };
/** A GIF: logical screen sw×sh, a 2-colour global table, then each frame (left, top, w, h) with a GCE and an LZW stub. */
function gifFrames(sw: number, sh: number, frames: Array<[number, number, number, number]>, tail: number[] = [0x3b]): string {
  const parts = [Buffer.from('GIF89a', 'latin1'), le16(sw), le16(sh), Buffer.from([0x80, 0, 0, 0, 0, 0, 255, 255, 255])];
  for (const [l, t, w, h] of frames) {
    parts.push(Buffer.from([0x21, 0xf9, 4, 0, 0, 0, 0, 0, 0x2c]), le16(l), le16(t), le16(w), le16(h), Buffer.from([0, 2, 2, 0x4c, 0x01, 0]));
  }
  return Buffer.concat([...parts, Buffer.from(tail)]).toString('base64');
}
const sof = (w: number, h: number) => [0xff, 0xc0, 0, 17, 8, h >> 8, h & 255, w >> 8, w & 255, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
const JFIF = [0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0];
/** APP1 Exif with one IFD entry: Orientation (0x0112) = 6, "rotate 90° clockwise to display". */
const EXIF_ROTATE = [0xff, 0xe1, 0, 34, ...Buffer.from('Exif\0\0', 'latin1'), 0x4d, 0x4d, 0, 0x2a, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0];
const jpegOf = (...segments: number[][]) => Buffer.from([...JFIF, ...segments.flat(), 0xff, 0xd9]).toString('base64');
const riffChunk = (type: string, data: Buffer) => Buffer.concat([Buffer.from(type, 'latin1'), (() => { const b = Buffer.alloc(4); b.writeUInt32LE(data.length); return b; })(), data, Buffer.alloc(data.length & 1)]);
const vp8x = (w: number, h: number, flags = 0) => riffChunk('VP8X', Buffer.concat([Buffer.from([flags, 0, 0, 0]), le24(w - 1), le24(h - 1)]));
const vp8l = (w: number, h: number) => { const b = Buffer.alloc(9); b[0] = 0x2f; b.writeUInt32LE(((w - 1) | ((h - 1) << 14)) >>> 0, 1); return riffChunk('VP8L', b); };
const anmf = (x: number, y: number, frame: Buffer, w: number, h: number) => riffChunk('ANMF', Buffer.concat([le24(x / 2), le24(y / 2), le24(w - 1), le24(h - 1), Buffer.alloc(4), frame]));
const riffWebp = (...chunks: Buffer[]) => { const body = Buffer.concat([Buffer.from('WEBP', 'latin1'), ...chunks]); const head = Buffer.alloc(8); head.write('RIFF', 0, 'latin1'); head.writeUInt32LE(body.length, 4); return Buffer.concat([head, body]).toString('base64'); };
/** A PNG of w×h whose chunks after IHDR are given (type, data); IEND is appended. */
function pngWith(w: number, h: number, chunks: Array<[string, Buffer]>): string {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 6;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), ...chunks.map(([t, d]) => pngChunk(t, d)), pngChunk('IEND', Buffer.alloc(0))]).toString('base64');
}
const acTL = (): [string, Buffer] => ['acTL', Buffer.from([0, 0, 0, 1, 0, 0, 0, 0])];
const fcTL = (w: number, h: number, x: number, y: number): [string, Buffer] => ['fcTL', Buffer.concat([be32(0), be32(w), be32(h), be32(x), be32(y), Buffer.alloc(6)])];
const IDAT: [string, Buffer] = ['IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])];
const measured = (data: string, media = 'image/png') => {
  const b = bound(withImage(imageBlock(media, data)));
  return { dims: base64ImageDimensions(data), tokens: b.imageTokens, measured: b.imagesMeasured, capped: b.imagesCapped };
};

test('image whose header is not its decoded size: GIF frames beyond the logical screen are bounded by the frames', () => {
  // The breaker's GIF: a 1×1 logical screen holding one 1500×1500 frame (Pillow decodes 1500×1500).
  // ⌈2,250,000 / 750⌉ = 3,000 → the cap, 1,600; the header alone said 1 token.
  assert.deepEqual(measured(gifFrames(1, 1, [[0, 0, 1500, 1500]]), 'image/gif'), { dims: { width: 1500, height: 1500 }, tokens: 1_600, measured: 1, capped: 0 });
  // A later frame placed past the screen's edge: 1000×40 screen, frame 600×40 at x = 900 → 1500×40:
  // max(⌈60,000/750⌉ = 80, 54 × 2 patches = 108) = 108.
  assert.deepEqual(measured(gifFrames(1000, 40, [[0, 0, 10, 10], [900, 0, 600, 40]]), 'image/gif'), { dims: { width: 1500, height: 40 }, tokens: 108, measured: 1, capped: 0 });
  // Frames inside the screen: the screen is the size (29×1 → 2 patches).
  assert.deepEqual(measured(gifFrames(29, 1, [[0, 0, 29, 1]]), 'image/gif').tokens, 2);
  // No trailer (truncated after the frame): every frame there is was read.
  assert.deepEqual(measured(gifFrames(10, 10, [[0, 0, 1500, 10]], []), 'image/gif').dims, { width: 1500, height: 10 });
  // A byte that starts no GIF block: the structure cannot be trusted → the cap.
  assert.deepEqual(measured(gifFrames(1, 1, [[0, 0, 1, 1]], [0x99, 0x3b]), 'image/gif'), { dims: undefined, tokens: 1_600, measured: 0, capped: 1 });
  // A GIF past the first 8 KB of base64: decoded whole (frame after a 9,000-byte comment extension).
  const comment = [0x21, 0xfe, ...Array.from({ length: 40 }, () => [250, ...Buffer.alloc(250)]).flat(), 0];
  const late = Buffer.from(gifFrames(1, 1, [[0, 0, 1500, 1500]]), 'base64');
  const withComment = Buffer.concat([late.subarray(0, 19), Buffer.from(comment), late.subarray(19)]).toString('base64');
  assert.ok(withComment.length > 8192);
  assert.deepEqual(measured(withComment, 'image/gif').dims, { width: 1500, height: 1500 });
});

test('image whose header is not its decoded size: JPEG with several frame headers, DNL height, EXIF orientation', () => {
  // Two SOF segments: image-size reads the first (1×1), Pillow keeps the last (1500×1500): both count.
  assert.deepEqual(measured(jpegOf(sof(1, 1), sof(1500, 1500)), 'image/jpeg'), { dims: { width: 1500, height: 1500 }, tokens: 1_600, measured: 1, capped: 0 });
  assert.deepEqual(measured(jpegOf(sof(1500, 1500), sof(1, 1)), 'image/jpeg').dims, { width: 1500, height: 1500 });
  // Height 0 in the SOF (defined later by a DNL marker): no proven size → the cap.
  assert.deepEqual(measured(jpegOf(sof(300, 0)), 'image/jpeg'), { dims: undefined, tokens: 1_600, measured: 0, capped: 1 });
  // Garbage where a marker must be: the cap.
  assert.deepEqual(measured(Buffer.from([...JFIF, 0x00, 0x00, ...sof(1, 1), 0xff, 0xd9]).toString('base64'), 'image/jpeg').capped, 1);
  // EXIF orientation 6 displays 3000×100 as 100×3000: same tokens either way,
  // max(⌈300,000/750⌉ = 400, 108 × 4 = 432) = 432.
  assert.equal(measured(jpegOf(EXIF_ROTATE, sof(3000, 100)), 'image/jpeg').tokens, 432);
  assert.equal(imageTokens(100, 3000, 1_600), 432);
});

test('image whose header is not its decoded size: WebP canvas, bitstreams and animation frames all count', () => {
  // A still VP8X image whose canvas (1×1) disagrees with its VP8L bitstream (1500×1500).
  assert.deepEqual(measured(riffWebp(vp8x(1, 1), vp8l(1500, 1500)), 'image/webp'), { dims: { width: 1500, height: 1500 }, tokens: 1_600, measured: 1, capped: 0 });
  // An animation frame placed at x = 2000 on a 64×64 canvas: 2064×64 → max(⌈132,096/750⌉ = 177, 74 × 3 = 222) = 222.
  const anim = riffWebp(vp8x(64, 64, 0x02), riffChunk('ANIM', Buffer.alloc(6)), anmf(0, 0, vp8l(64, 64), 64, 64), anmf(2000, 0, vp8l(64, 64), 64, 64));
  assert.deepEqual(measured(anim, 'image/webp'), { dims: { width: 2064, height: 64 }, tokens: 222, measured: 1, capped: 0 });
  // A real two-frame animation written by Pillow (64×64, frames inside): max(⌈4,096/750⌉ = 6, 3 × 3 = 9) = 9.
  const pillow = 'UklGRgQBAABXRUJQVlA4WAoAAAACAAAAPwAAPwAAQU5JTQYAAAAAAAAAAABBTk1GagAAAAAAAAAAAD8AAD8AAAAAAAJWUDggUgAAALAEAJ0BKkAAQAA+bTaZSSQjIqEiCACADYlpBigAmQH4AAiBktlWJj2n15tXQAAA/vCbQ//+QXLC65Gv//yA/5Af8gP/5AflTZnMXkaKqgnwgABBTk1GZgAAAAAAAAAAAD8AAD8AAAAAAABWUDggTgAAADQEAJ0BKkAAQAA+bTKSSQIgAADYlpANWqgH4AfgACLt0ZQYR2nUfk1bsAD+5Yc//7WgODVf5n//+++FEduv9CX6YXsil/xM5+NS/wXAAA==';
  assert.deepEqual(measured(pillow, 'image/webp'), { dims: { width: 64, height: 64 }, tokens: 9, measured: 1, capped: 0 });
});

test('image whose header is not its decoded size: APNG frames, a huge IHDR, chunks past the first 8 KB', () => {
  // APNG (acTL before IDAT) with a 2000×2000 frame on a 100×100 canvas: the frame counts → the cap.
  assert.deepEqual(measured(pngWith(100, 100, [acTL(), fcTL(2000, 2000, 0, 0), IDAT])), { dims: { width: 2000, height: 2000 }, tokens: 1_600, measured: 1, capped: 0 });
  // acTL after IDAT is not an APNG (decoders ignore it): IHDR is the size, max(⌈10,000/750⌉ = 14, 4 × 4 = 16) = 16.
  assert.deepEqual(measured(pngWith(100, 100, [IDAT, acTL(), fcTL(2000, 2000, 0, 0)])).tokens, 16);
  // A huge IHDR is measured and held at the cap, never more, never less.
  assert.deepEqual(measured(pngWith(100_000, 100_000, [IDAT])), { dims: { width: 100_000, height: 100_000 }, tokens: 1_600, measured: 1, capped: 0 });
  // A 10,000-byte text chunk pushes acTL past the first 8 KB of base64: the whole file is read.
  // Frame 3000×10 at (0, 90) on 100×100 → 3000×100: max(400, 108 × 4 = 432) = 432.
  const late = pngWith(100, 100, [['tEXt', Buffer.alloc(10_000, 0x61)], acTL(), fcTL(3000, 10, 0, 90), IDAT]);
  assert.ok(late.length > 8192);
  assert.equal(measured(late).tokens, 432);
});

test('PDF as base64: pages are text and images, only the context window bounds it', () => {
  const b = bound(withImage({ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' } }));
  assert.deepEqual([b.tokens, b.unbounded, b.iterations, b.ceiling], [200_000, ['document_pdf'], 1, true]);
  assert.equal(b.hold, 28_836_000n); // 200,000 × 144 + 36,000
});

test('document by URL and by file id: fetched by the upstream, bounded by the context window', () => {
  const url = bound(withImage({ type: 'document', source: { type: 'url', url: 'https://example.com/big.pdf' } }));
  assert.deepEqual([url.tokens, url.unbounded], [200_000, ['document_url']]);
  const file = bound(withImage({ type: 'document', source: { type: 'file', file_id: 'file_011' } }));
  assert.deepEqual([file.tokens, file.unbounded], [200_000, ['document_file']]);
  // A plain-text document is in the body: its bytes bound it, unless citations chunk it.
  const text = bound(withImage({ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'abc' } }));
  assert.deepEqual([text.unbounded, text.tokens], [[], text.raw]);
  const cited = bound(withImage({ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'a. b.' }, citations: { enabled: true } }));
  assert.deepEqual(cited.unbounded, ['citations']);
  // The 1M-context beta widens the window for Sonnet 4.5 when the request names it.
  assert.equal(contextWindowFor(sonnet45, 'files-api-2025-04-14, context-1m-2025-08-07'), 1_000_000);
  assert.equal(contextWindowFor(sonnet45, undefined), 200_000);
  const wide = bound(withImage({ type: 'document', source: { type: 'url', url: 'https://e/x.pdf' } }), { ...LIMITS, contextWindow: 1_000_000 });
  assert.equal(wide.hold, 144_036_000n); // 1,000,000 × 144 + 36,000
});

test('web_search with max_uses 2: 1 + 2 sampling steps, each up to one context window', () => {
  const b = bound({ ...say('news?'), tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 2 }] });
  assert.deepEqual([b.tokens, b.unbounded, b.iterations], [600_000, ['server_tool'], 3]);
  assert.equal(b.hold, 86_436_000n); // 600,000 × 144 + 36,000
  // Without max_uses, or with a tool that runs code: the server loop's 10 steps.
  assert.equal(bound({ ...say('x'), tools: [{ type: 'web_search_20250305', name: 'web_search' }] }).iterations, 10);
  assert.equal(bound({ ...say('x'), tools: [{ type: 'code_execution_20250825', name: 'code_execution' }] }).tokens, 2_000_000);
});

test('max_tokens 0 (pre-warming the prompt cache): one step whatever the tools, what the body cannot bound still that step\'s window', () => {
  const tools = [{ type: 'web_search_20250305', name: 'web_search', max_uses: 2 }, { type: 'code_execution_20250825', name: 'code_execution' }];
  const b = bound({ ...say('news?'), max_tokens: 0, tools });
  assert.deepEqual([b.tokens, b.unbounded, b.iterations], [200_000, ['server_tool'], 1]);
  assert.equal(b.hold, 28_800_000n); // 200,000 × 144, no output
  const c = bound({ ...say('run it'), max_tokens: 0, container: 'container_011' });
  assert.deepEqual([c.tokens, c.iterations], [200_000, 1]);
  // a plain prewarm is its bytes, as any request
  const p = bound({ ...say('cache me'), max_tokens: 0 });
  assert.deepEqual([p.tokens, p.iterations, p.ceiling], [p.raw, 1, false]);
});

test('container and mcp_servers: the upstream runs its own loop, 10 × the context window', () => {
  const c = bound({ ...say('run it'), container: 'container_011' });
  assert.deepEqual([c.tokens, c.unbounded, c.iterations], [2_000_000, ['container'], 10]);
  assert.equal(c.hold, 288_036_000n); // 2,000,000 × 144 + 36,000
  const m = bound({ ...say('ask it'), mcp_servers: [{ type: 'url', url: 'https://mcp.example.com/sse', name: 'x' }] });
  assert.deepEqual([m.tokens, m.unbounded], [2_000_000, ['mcp_servers']]);
  const up = bound({ messages: [{ role: 'user', content: [{ type: 'container_upload', file_id: 'file_1' }] }] });
  assert.deepEqual(up.unbounded, ['container_upload']);
});

test('tools: the tool-use system prompt, and hidden definitions of Anthropic-defined client tools', () => {
  const custom = bound({ ...say('hi'), tools: [{ name: 'f', input_schema: { type: 'object' } }] });
  assert.equal(custom.overheadTokens, 1_000);
  assert.equal(custom.tokens, custom.raw + 1_000);
  const defined = bound({ ...say('hi'), tools: [{ type: 'bash_20250124', name: 'bash' }, { type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' }, { type: 'computer_20250124', name: 'computer', display_width_px: 1024, display_height_px: 768 }] });
  assert.equal(defined.overheadTokens, 1_000 + 1_000 + 1_500 + 2_500);
  assert.deepEqual(defined.unbounded, []);
  // A tool type this gateway does not know may run upstream: bounded like a server tool.
  assert.deepEqual(bound({ ...say('hi'), tools: [{ type: 'frobnicate_20990101', name: 'f' }] }).unbounded, ['server_tool']);
});

test('the bound never exceeds what one request can be billed: the context window', () => {
  const b = bound(say('x'.repeat(300_000)));
  assert.deepEqual([b.tokens, b.ceiling, b.unbounded], [200_000, true, []]);
});

test('hostile input only raises the bound: deep nesting, bad lengths, odd types', () => {
  let deep: unknown = { type: 'text', text: 'x' };
  for (let i = 0; i < 2_000; i++) deep = { type: 'tool_result', content: [deep] };
  const b = bound({ messages: [{ role: 'user', content: [deep] }] });
  assert.deepEqual([b.tokens, b.unbounded], [b.raw, []]); // walked without recursion; text bound
  const body = { model: 'm', max_tokens: 1, messages: [] } as MessagesRequest;
  assert.equal(inputTokenBound(body, Number.NaN, LIMITS).tokens, 200_000);
  // Invalid UTF-8 is parsed as U+FFFD (3 bytes) per bad byte: 3 tokens a byte of the body.
  assert.equal(inputTokenBound(body, Buffer.from('{"messages":[""]}'), LIMITS).tokens, 17); // 17 valid bytes
  assert.equal(inputTokenBound(body, Buffer.from([...Buffer.from('{"messages":["'), 0xff, 0xfe, ...Buffer.from('"]}')]), LIMITS).tokens, 57); // 3 × 19
  assert.equal(inputTokenBound({ ...body, tools: [{ type: 42 }] } as MessagesRequest, 10, LIMITS).iterations, 10);
});

test('imageTokens and base64ImageDimensions', () => {
  assert.equal(imageTokens(1092, 1092, 1_600), 1_590); // ⌈1,192,464 / 750⌉ = 1,590 ≥ 39 × 39 = 1,521
  assert.equal(imageTokens(784, 1568, 1_600), 1_600); // ⌈1,229,312 / 750⌉ = 1,640 → cap
  assert.equal(imageTokens(1, 1, 1_600), 1);
  assert.deepEqual(base64ImageDimensions(png(3, 7)), { width: 3, height: 7 });
  assert.equal(base64ImageDimensions('!!!!'), undefined);
});

test("an upstream's own image rule (imageTokensOf) and a window that does not bound its billing (windowBoundsBilling: false)", () => {
  const rule = (w: number, h: number) => 100 + w * h;
  const body = withImage(imageBlock('image/png', png(3, 2)));
  const own = bound(body, { ...LIMITS, imageTokensOf: rule });
  // 100 + 3 × 2 = 106 for the measured image (Anthropic's rule: 1), its base64 not counted as text
  assert.deepEqual([own.imagesMeasured, own.imageTokens, own.tokens], [1, 106, own.textTokens + 106]);
  // an image by URL: the cap, whatever the rule
  assert.equal(bound(withImage({ type: 'image', source: { type: 'url', url: 'https://x/y.png' } }), { ...LIMITS, imageTokensOf: rule }).imageTokens, 1_600);
  // 300 images capped at 1,600 = 480,000 tokens: the 200,000 window cuts the sum, unless it does not bound billing
  const many = { messages: [{ role: 'user', content: Array.from({ length: 300 }, () => ({ type: 'image', source: { type: 'url', url: 'https://x/y.png' } })) }] };
  const cut = bound(many);
  assert.deepEqual([cut.tokens, cut.ceiling], [200_000, true]);
  const whole = bound(many, { ...LIMITS, windowBoundsBilling: false });
  assert.deepEqual([whole.tokens, whole.ceiling], [whole.textTokens + 480_000, false]);
  // what only a window bounds (a document by URL) is still that window, or the sum when it is larger
  const doc = { messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'url', url: 'https://x/d.pdf' } }] }] };
  assert.deepEqual([bound(doc, { ...LIMITS, windowBoundsBilling: false }).tokens, bound(doc, { ...LIMITS, windowBoundsBilling: false }).ceiling], [200_000, true]);
});
