// Request checks for the hot path. The gateway validates only what it needs to route, limit and
// hold credit; everything else (Claude Code's `context_management`, `output_config`, betas…) is
// the upstream's business and passes through untouched — the body object is returned as is.

import { ProtocolError, unicodeEscape } from './errors.ts';
import type { CountTokensRequest, MessagesRequest } from './types.ts';
import { isRecord } from './record.ts';

/** Longest model name accepted: it is stored verbatim in the usage event and the warehouse. */
export const MAX_MODEL_CHARS = 256;

/**
 * Matches a C0 or C1 control character, DEL included (U+0000–U+001F, U+007F–U+009F): what no
 * model name, id or path parameter may hold. No `g` flag, so `test` keeps no state.
 */
export const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * The model name travels into the usage event, Kafka and ClickHouse, so it must be text every
 * one of them holds: well-formed Unicode (a lone surrogate has no UTF-8 form and ClickHouse
 * refuses it), no control characters, at most MAX_MODEL_CHARS. Refused here with a 400 rather
 * than answered 200 and then stuck in the pipeline.
 */
function checkStoredText(field: string, v: string): void {
  if (v.length > MAX_MODEL_CHARS) throw new ProtocolError(field, `String should have at most ${MAX_MODEL_CHARS} characters`);
  if (!v.isWellFormed()) throw new ProtocolError(field, 'String should be well-formed Unicode (it contains a lone surrogate)');
  if (CONTROL_CHARACTER.test(v)) throw new ProtocolError(field, 'String should not contain control characters');
}

/**
 * A model id as every route takes it (`model` of /v1/messages and count_tokens, the id of
 * /v1/models/{id}): a non-empty string that `checkStoredText` accepts. Returns it; throws
 * ProtocolError on `model` (400 invalid_request) otherwise.
 */
export function validateModelId(model: unknown): string {
  if (model === undefined) throw new ProtocolError('model', 'Field required');
  if (typeof model !== 'string') throw new ProtocolError('model', 'Input should be a valid string');
  if (model.length === 0) throw new ProtocolError('model', 'String should have at least 1 character');
  checkStoredText('model', model);
  return model;
}

/**
 * The field names of the Messages API's request objects (the body, `thinking`, `tool_choice`,
 * `metadata`, each tool, fallback, message, content block and system block), as Anthropic's API
 * reference spells them: all lowercase. The gateway's own `fallbacks` is one of them.
 */
const API_FIELDS: ReadonlySet<string> = new Set([
  // the body
  'model', 'messages', 'max_tokens', 'system', 'stream', 'temperature', 'top_p', 'top_k', 'stop_sequences', 'metadata',
  'tools', 'tool_choice', 'thinking', 'service_tier', 'speed', 'inference_geo', 'container', 'mcp_servers',
  'context_management', 'output_config', 'output_format', 'fallbacks',
  // thinking, tool_choice, metadata
  'type', 'budget_tokens', 'display', 'name', 'disable_parallel_tool_use', 'user_id',
  // tools
  'description', 'input_schema', 'cache_control', 'max_uses', 'allowed_domains', 'blocked_domains', 'user_location',
  'display_width_px', 'display_height_px', 'display_number', 'strict', 'defer_loading', 'allowed_callers', 'input_examples',
  // messages and content blocks
  'role', 'content', 'text', 'source', 'id', 'input', 'tool_use_id', 'is_error', 'citations', 'signature', 'data',
  'title', 'context', 'server_name', 'file_id', 'media_type', 'url', 'enabled',
]);

/**
 * Whether a case-insensitive reader could fold `key` onto another ASCII lowercase name: it has
 * A–Z, U+017F ſ (folds to s) or U+212A K (folds to k). A loop over the key's code units: most
 * keys are short lowercase ASCII and leave at once.
 */
function mayFold(key: string): boolean {
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c === 0x17f || c === 0x212a) return true;
  }
  return false;
}

/**
 * The first key of `obj` that is not an API field but is one to a reader that matches names
 * without regard to case (Go's encoding/json does, with Unicode simple folding: `MODEL`,
 * `max_toKens` with U+212A KELVIN SIGN, `ſtream` with U+017F), and the field it reads as.
 */
function caseVariant(obj: Record<string, unknown>): [string, string] | undefined {
  for (const key in obj) {
    if (!mayFold(key)) continue;
    const field = key.toLowerCase().replaceAll('\u017f', 's');
    if (API_FIELDS.has(field)) return [key, field];
  }
  return undefined;
}

/** The 400 for `caseVariant`'s find in the object at `path` ('' for the body). */
function caseVariantError(path: string, [key, field]: [string, string]): ProtocolError {
  // A key with a non-ASCII letter is shown with that letter as its \u escape.
  const name = /^[A-Za-z_]\w*$/.test(key)
    ? key
    : `[${JSON.stringify(key).replace(/[^\x20-\x7e]/g, unicodeEscape)}]`;
  const where = path === '' ? name : name.startsWith('[') ? `${path}${name}` : `${path}.${name}`;
  return new ProtocolError(where, `not a field of the Messages API: a reader that ignores case takes it for "${field}" (field names are lowercase)`);
}

/**
 * Refuses a key that differs from a Messages API field only in letter case (400 naming it), in
 * the objects whose fields decide routing, the hold and the price: the body, `thinking`,
 * `tool_choice`, `metadata`, each tool and fallback, each message, and every content block
 * (system's, messages', those inside a `tool_result`) with its `source` and `citations` (a
 * block's `type` and `source` decide its input bound: an image by its dimensions, a PDF by its
 * pages, a document by URL at the whole window). The gateway reads fields by their exact names
 * and forwards the bytes; a relay upstream that matches names case-insensitively (a Go service
 * decoding into structs) would read `{"model":"claude-haiku-4-5","MODEL":"claude-opus-4-6"}` as
 * opus, and Anthropic's API refuses fields it does not know anyway. Paths are built only for
 * the error. Cost: bench/body-parse.ts.
 */
function checkFieldNames(body: Record<string, unknown>): void {
  let found = caseVariant(body);
  if (found) throw caseVariantError('', found);
  for (const name of ['thinking', 'tool_choice', 'metadata'] as const) {
    const v = body[name];
    if (isRecord(v) && (found = caseVariant(v))) throw caseVariantError(name, found);
  }
  for (const name of ['tools', 'fallbacks'] as const) {
    const list = body[name];
    if (!Array.isArray(list)) continue;
    for (let i = 0; i < list.length; i++) {
      const v: unknown = list[i];
      if (isRecord(v) && (found = caseVariant(v))) throw caseVariantError(`${name}[${i}]`, found);
    }
  }
  checkBlocks(body.system, 'system');
  const messages = body.messages;
  if (!Array.isArray(messages)) return;
  for (let i = 0; i < messages.length; i++) {
    const m: unknown = messages[i];
    if (!isRecord(m)) continue;
    if ((found = caseVariant(m))) throw caseVariantError(`messages[${i}]`, found);
    if (Array.isArray(m.content)) checkBlocks(m.content, `messages[${i}].content`);
  }
}

/**
 * `caseVariant` on each content block of `list` (when it is an array), its `source` and
 * `citations` objects, and the blocks of its own `content` array (a `tool_result`'s), at any
 * depth; `path` is the list's.
 */
function checkBlocks(list: unknown, path: string): void {
  if (!Array.isArray(list)) return;
  for (let j = 0; j < list.length; j++) {
    const block: unknown = list[j];
    if (!isRecord(block)) continue;
    let found = caseVariant(block);
    if (found) throw caseVariantError(`${path}[${j}]`, found);
    if (isRecord(block.source) && (found = caseVariant(block.source))) throw caseVariantError(`${path}[${j}].source`, found);
    if (isRecord(block.citations) && (found = caseVariant(block.citations))) throw caseVariantError(`${path}[${j}].citations`, found);
    if (Array.isArray(block.content)) checkBlocks(block.content, `${path}[${j}].content`);
  }
}

function checkCommon(body: unknown): asserts body is CountTokensRequest {
  // The API's own words for a body that is not an object, with what it was: an empty body
  // (undefined) or `[]` gave the same line and left a client guessing.
  if (!isRecord(body)) {
    const got = body === undefined ? 'an empty body' : body === null ? 'null' : Array.isArray(body) ? 'an array' : `a ${typeof body}`;
    throw new ProtocolError('', `Input should be a valid dictionary: the request body must be a JSON object (with model, max_tokens and messages), got ${got}`);
  }
  checkFieldNames(body);
  validateModelId('model' in body ? body.model : undefined);
  if (!('messages' in body) || body.messages === undefined) throw new ProtocolError('messages', 'Field required');
  if (!Array.isArray(body.messages)) throw new ProtocolError('messages', 'Input should be a valid list');
  // As Anthropic: a conversation has at least one message (else the upstream's 400 after a hold).
  if (body.messages.length === 0) throw new ProtocolError('messages', 'List should have at least 1 item');
  // `stream` decides how the answer is metered and relayed: a non-boolean would be read as
  // "not streaming" here and refused upstream, so it is refused at the edge.
  if ('stream' in body && body.stream !== undefined && typeof body.stream !== 'boolean') {
    throw new ProtocolError('stream', 'Input should be a valid boolean');
  }
}

/**
 * Whether a Messages body pre-warms the prompt cache (`max_tokens: 0`): the upstream reads and
 * caches the input and generates nothing, so no tool runs and no loop step follows (the official
 * SDK's `max_tokens` doc; Anthropic "Prompt caching", "Pre-warming the cache"). Any body shape.
 */
export function prewarms(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as { max_tokens?: unknown }).max_tokens === 0;
}

/**
 * Whether a Messages body's `context_management` may compact the conversation, which the
 * upstream bills as a sampling step of its own (`usage.iterations` type `compaction`): any
 * edit but those that only clear content (`clear_tool_uses_*`, `clear_thinking_*`: Claude
 * Code's edits on every request), or a value of another shape. No `context_management`, or one
 * without `edits`: false.
 */
export function mayCompact(body: unknown): boolean {
  const cm = typeof body === 'object' && body !== null ? (body as { context_management?: unknown }).context_management : undefined;
  if (cm === undefined || cm === null) return false;
  if (typeof cm !== 'object') return true;
  const edits = (cm as { edits?: unknown }).edits;
  // no edits: nothing to apply (an empty list too, below)
  if (edits === undefined || edits === null) return false;
  if (!Array.isArray(edits)) return true;
  return edits.some((e) => {
    const type = e !== null && typeof e === 'object' ? (e as { type?: unknown }).type : undefined;
    return typeof type !== 'string' || !/^clear_(tool_uses|thinking)_/.test(type);
  });
}

/**
 * Checks a `/v1/messages` body: object, non-empty `model`, `messages` array, `max_tokens` an
 * integer ≥ 0 (0 pre-warms the prompt cache without generating: Anthropic "Prompt caching",
 * "Pre-warming the cache", and the SDK's `max_tokens` doc). With `defaultMaxTokens`, an absent `max_tokens` (not a null one) is filled in
 * on `body` itself (the gateway's DEFAULT_MAX_TOKENS, as the seed references default it);
 * without, it is 400 "Field required" as at Anthropic.
 */
export function validateMessagesRequest(body: unknown, defaultMaxTokens?: number): MessagesRequest {
  checkCommon(body);
  if (body.max_tokens === undefined && defaultMaxTokens !== undefined) body.max_tokens = defaultMaxTokens;
  const max = body.max_tokens;
  if (max === undefined) throw new ProtocolError('max_tokens', 'Field required');
  const problem = integerProblem(max, 0);
  if (problem !== undefined) throw new ProtocolError('max_tokens', problem);
  return body as MessagesRequest;
}

/**
 * What is wrong with a JSON value given for an integer field of at least `min` (`max_tokens`,
 * a `fallbacks` entry's `max_tokens`), in the API's validation words (Anthropic answers its 400s
 * in pydantic's): undefined when it is an integer from `min` to 2^53 − 1. Not a number (a
 * string, null, a boolean): "Input should be a valid integer"; NaN or ±Infinity (JSON.parse
 * reads `1e400` as Infinity): "Input should be a finite number"; a fraction: "…, got a number
 * with a fractional part"; an integer above 2^53 − 1 (`1e300`, `9007199254740993`), which no
 * stage holds exactly: "Input should be less than or equal to 9007199254740991"; below `min`:
 * "Input should be greater than or equal to <min>".
 */
export function integerProblem(value: unknown, min: number): string | undefined {
  if (typeof value !== 'number') return 'Input should be a valid integer';
  if (!Number.isFinite(value)) return 'Input should be a finite number';
  if (!Number.isInteger(value)) return 'Input should be a valid integer, got a number with a fractional part';
  if (value > Number.MAX_SAFE_INTEGER) return `Input should be less than or equal to ${Number.MAX_SAFE_INTEGER}`;
  if (value < min) return `Input should be greater than or equal to ${min}`;
  return undefined;
}

/** Checks a `/v1/messages/count_tokens` body: as above, without `max_tokens`. */
export function validateCountTokensRequest(body: unknown): CountTokensRequest {
  checkCommon(body);
  return body;
}
