// Request checks for the hot path. The gateway validates only what it needs to route, limit and
// hold credit; everything else (Claude Code's `context_management`, `output_config`, betas…) is
// the upstream's business and passes through untouched — the body object is returned as is.

import { ProtocolError } from './errors.ts';
import type { CountTokensRequest, MessagesRequest } from './types.ts';
import { isRecord } from './record.ts';

/** Longest model name accepted: it is stored verbatim in the usage event and the warehouse. */
export const MAX_MODEL_CHARS = 256;

// C0 and C1 control characters, DEL included.
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * The model name travels into the usage event, Kafka and ClickHouse, so it must be text every
 * one of them holds: well-formed Unicode (a lone surrogate has no UTF-8 form and ClickHouse
 * refuses it), no control characters, at most MAX_MODEL_CHARS. Refused here with a 400 rather
 * than answered 200 and then stuck in the pipeline.
 */
function checkStoredText(field: string, v: string): void {
  if (v.length > MAX_MODEL_CHARS) throw new ProtocolError(field, `String should have at most ${MAX_MODEL_CHARS} characters`);
  if (!v.isWellFormed()) throw new ProtocolError(field, 'String should be well-formed Unicode (it contains a lone surrogate)');
  if (CONTROL_RE.test(v)) throw new ProtocolError(field, 'String should not contain control characters');
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

function checkCommon(body: unknown): asserts body is CountTokensRequest {
  if (!isRecord(body)) throw new ProtocolError('', 'Input should be a valid dictionary');
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
 * Checks a `/v1/messages` body: object, non-empty `model`, `messages` array, positive integer
 * `max_tokens`. With `defaultMaxTokens`, an absent `max_tokens` (not a null one) is filled in
 * on `body` itself (the gateway's DEFAULT_MAX_TOKENS, as the seed references default it);
 * without, it is 400 "Field required" as at Anthropic.
 */
export function validateMessagesRequest(body: unknown, defaultMaxTokens?: number): MessagesRequest {
  checkCommon(body);
  if (body.max_tokens === undefined && defaultMaxTokens !== undefined) body.max_tokens = defaultMaxTokens;
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
