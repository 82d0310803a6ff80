// Request checks for the hot path. The gateway validates only what it needs to route, limit and
// hold credit; everything else (Claude Code's `context_management`, `output_config`, betas…) is
// the upstream's business and passes through untouched — the body object is returned as is.

import { ProtocolError } from './errors.ts';
import type { CountTokensRequest, MessagesRequest } from './types.ts';
import { isRecord } from './record.ts';

function checkCommon(body: unknown): asserts body is CountTokensRequest {
  if (!isRecord(body)) throw new ProtocolError('', 'Input should be a valid dictionary');
  if (!('model' in body) || body.model === undefined) throw new ProtocolError('model', 'Field required');
  if (typeof body.model !== 'string') throw new ProtocolError('model', 'Input should be a valid string');
  if (body.model.length === 0) throw new ProtocolError('model', 'String should have at least 1 character');
  if (!('messages' in body) || body.messages === undefined) throw new ProtocolError('messages', 'Field required');
  if (!Array.isArray(body.messages)) throw new ProtocolError('messages', 'Input should be a valid list');
}

/** Checks a `/v1/messages` body: object, non-empty `model`, `messages` array, positive integer `max_tokens`. */
export function validateMessagesRequest(body: unknown): MessagesRequest {
  checkCommon(body);
  const max = body.max_tokens;
  if (max === undefined) throw new ProtocolError('max_tokens', 'Field required');
  if (typeof max !== 'number' || !Number.isSafeInteger(max)) {
    throw new ProtocolError('max_tokens', 'Input should be a valid integer');
  }
  if (max < 1) throw new ProtocolError('max_tokens', 'Input should be greater than or equal to 1');
  return body as MessagesRequest;
}

/** Checks a `/v1/messages/count_tokens` body: as above, without `max_tokens`. */
export function validateCountTokensRequest(body: unknown): CountTokensRequest {
  checkCommon(body);
  return body;
}

/**
 * Upper bound used per image block. Anthropic resizes images so the long edge is at most 1568 px
 * (~1.15 megapixels), and an image costs about width × height / 750 tokens: ≈1600 at most.
 */
export const IMAGE_TOKEN_BOUND = 1600;

/** Bytes per token assumed by the estimate; real text averages 3.5–4+ bytes a token. */
const BYTES_PER_TOKEN = 3;

/**
 * A cheap, conservative upper bound of the input tokens of a request, to hold credit before the
 * call (the hold shrinks to the actual cost afterwards, so over-estimating only ties up credit
 * briefly; under-estimating could let an account overspend).
 *
 *   ceil(bytes / 3) + 1600 × (number of image blocks)
 *
 * where `bytes` is the UTF-8 length of the JSON of `system`, `messages` and `tools`, or, when
 * the caller already knows it, `rawBodyBytes` (the whole request body: a little larger, and it
 * spares re-serialising an 80 KB+ body). Images are counted by walking the content blocks
 * (no serialisation); an image sent by URL or file id is a few bytes of JSON but still costs
 * up to 1600 tokens, while a base64 image is over-counted by its data length (safe side).
 *
 * Not bounded: documents fetched by URL / file id (PDF pages), and the tokens the upstream adds
 * itself (tool-use system prompt, a few hundred). The JSON overhead (keys, quotes) usually
 * covers the latter.
 */
export function estimateInputTokens(body: CountTokensRequest, rawBodyBytes?: number): number {
  let bytes: number;
  if (rawBodyBytes !== undefined && Number.isFinite(rawBodyBytes) && rawBodyBytes >= 0) {
    bytes = rawBodyBytes;
  } else {
    bytes = jsonBytes(body.system) + jsonBytes(body.messages) + jsonBytes(body.tools);
  }
  return Math.ceil(bytes / BYTES_PER_TOKEN) + IMAGE_TOKEN_BOUND * countImages(body.messages);
}

function jsonBytes(v: unknown): number {
  if (v === undefined) return 0;
  try {
    const s = JSON.stringify(v);
    return s === undefined ? 0 : Buffer.byteLength(s, 'utf8');
  } catch {
    return 0; // not JSON-serialisable (cycles, BigInt): cannot have come from a JSON body
  }
}

/** Image blocks in message content and inside tool_result content (where screenshots go). */
function countImages(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let n = 0;
  for (const m of messages) {
    if (!isRecord(m) || !Array.isArray(m.content)) continue;
    for (const block of m.content) {
      if (!isRecord(block)) continue;
      if (block.type === 'image') n++;
      else if (Array.isArray(block.content)) {
        for (const inner of block.content) if (isRecord(inner) && inner.type === 'image') n++;
      }
    }
  }
  return n;
}
