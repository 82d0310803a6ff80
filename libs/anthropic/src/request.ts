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
