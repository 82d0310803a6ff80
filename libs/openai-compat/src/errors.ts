// OpenAI error responses → Anthropic's error shape, so the gateway's upstream-error handling
// (libs/anthropic `upstreamErrorToGateway`: statuses, retry advice, redaction) applies unchanged.
import { isRecord } from '@tollgate/anthropic';
import type { OpenAIErrorBody } from './types.ts';

type Json = Record<string, unknown>;

/** The Anthropic error types this mapping produces (Anthropic "Errors" docs). */
export type AnthropicErrorTypeName =
  | 'invalid_request_error' | 'authentication_error' | 'billing_error' | 'permission_error' | 'not_found_error'
  | 'request_too_large' | 'rate_limit_error' | 'api_error' | 'overloaded_error';

/**
 * The Anthropic error type for an OpenAI error, by status first, as the Anthropic path maps an
 * upstream's status (400/422 invalid request, 401 authentication, 402 billing, 403 permission,
 * 404 not found, 413 too large, 429 rate limit, 503 and 529 overloaded, other 5xx api_error,
 * other 4xx invalid request). OpenAI's `code` decides only where it says more than the status:
 * `insufficient_quota` (its 429 for an account out of credit: the operator's problem) →
 * `billing_error`. Without a status (an `error` chunk inside a 200 stream) the code or type
 * decides: insufficient_quota → billing, context_length_exceeded / invalid_request_error →
 * invalid request, rate_limit_exceeded → rate limit, anything else api_error.
 */
export function openAIErrorType(status: number | undefined, error?: Json): AnthropicErrorTypeName {
  const code = error?.code ?? error?.type;
  if (code === 'insufficient_quota' || error?.type === 'insufficient_quota') return 'billing_error';
  if (status === undefined) {
    if (code === 'context_length_exceeded' || code === 'invalid_request_error') return 'invalid_request_error';
    if (code === 'rate_limit_exceeded') return 'rate_limit_error';
    return 'api_error';
  }
  switch (status) {
    case 400: case 422: return 'invalid_request_error';
    case 401: return 'authentication_error';
    case 402: return 'billing_error';
    case 403: return 'permission_error';
    case 404: return 'not_found_error';
    case 413: return 'request_too_large';
    case 429: return 'rate_limit_error';
    case 503: case 529: return 'overloaded_error';
    default: return status >= 400 && status < 500 ? 'invalid_request_error' : 'api_error';
  }
}

/**
 * An OpenAI error response (status and parsed body, or anything unparseable) → the status and
 * Anthropic error body the gateway reads as if an Anthropic upstream had sent it:
 * `{type: "error", error: {type, message}}`. Status: as is, except `insufficient_quota` (OpenAI's
 * 429 for an exhausted account) → 402, so it counts as the operator's problem, not the client's
 * rate limit; and 503 (OpenAI: "engine overloaded") → 529, Anthropic's overloaded status.
 * The message is OpenAI's `error.message`, or `Upstream returned HTTP <status>` without one.
 */
export function openAIErrorToAnthropic(status: number, body: unknown): { status: number; body: { type: 'error'; error: { type: AnthropicErrorTypeName; message: string } } } {
  const error = isRecord(body) && isRecord(body.error) ? (body as unknown as OpenAIErrorBody).error as unknown as Json : undefined;
  const type = openAIErrorType(status, error);
  const mapped = type === 'billing_error' ? 402 : type === 'overloaded_error' ? 529 : status;
  const message = typeof error?.message === 'string' && error.message !== '' ? error.message : `Upstream returned HTTP ${status}`;
  return { status: mapped, body: { type: 'error', error: { type, message } } };
}

/**
 * An OpenAI `error` object met where an answer was due (an `error` chunk in a 200 stream, a 2xx
 * JSON body `{"error": …}` some OpenAI-compatible servers send) → the Anthropic error body an
 * Anthropic upstream sends in that place, `{type: "error", error: {type, message}}` (type by
 * `openAIErrorType` without a status: the code decides), so the gateway treats it as an upstream
 * error (statuses, redaction) exactly as on the Anthropic path.
 */
export function anthropicErrorOf(error: Json): { type: 'error'; error: { type: AnthropicErrorTypeName; message: string } } {
  return { type: 'error', error: { type: openAIErrorType(undefined, error), message: typeof error.message === 'string' && error.message !== '' ? error.message : 'Upstream error' } };
}

/**
 * finish_reasons that say the answer was NOT finished: vLLM's `abort` (the engine aborted the
 * request) and `error`. Such an answer is an interrupted one (an upstream error), never charged
 * as complete.
 */
export const ABORTED_FINISH_REASONS: ReadonlySet<string> = new Set(['abort', 'error']);

/**
 * The OpenAI error a 2xx JSON answer is, if it is one, as an `error` object (for
 * `anthropicErrorOf`): `{"error": {…}}`, `{"error": "text"}`, vLLM's older
 * `{"object": "error", "message": …}` (any of them without choices), or a completion whose
 * first choice's finish_reason says the upstream gave up (`ABORTED_FINISH_REASONS`: an answer
 * it did not finish, never charged as complete).
 */
export function openAIErrorInAnswer(json: Json): Json | undefined {
  if (!Array.isArray(json.choices) || json.choices.length === 0) {
    if (isRecord(json.error)) return json.error;
    if (typeof json.error === 'string') return { message: json.error };
    if (json.object === 'error') return json;
    return undefined;
  }
  const first: unknown = json.choices[0];
  const finish = isRecord(first) ? first.finish_reason : undefined;
  if (typeof finish === 'string' && ABORTED_FINISH_REASONS.has(finish)) {
    return { type: 'server_error', message: `Upstream aborted the answer (finish_reason ${finish})` };
  }
  return undefined;
}
