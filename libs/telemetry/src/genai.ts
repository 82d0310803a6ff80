// OpenTelemetry GenAI semantic conventions (gen_ai.*) for the gateway's spans, names from
// @opentelemetry/semantic-conventions (incubating: the GenAI conventions are still experimental,
// so the package is pinned and these names cannot move under us). Ids, model names, counts and
// stop reasons only: never prompt or answer content (`gen_ai.input.messages` and its kind are
// deliberately not set), never a credential.
import {
  ATTR_GEN_AI_OPERATION_NAME, ATTR_GEN_AI_PROVIDER_NAME, ATTR_GEN_AI_REQUEST_MAX_TOKENS, ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_REQUEST_STREAM, ATTR_GEN_AI_RESPONSE_FINISH_REASONS, ATTR_GEN_AI_RESPONSE_ID, ATTR_GEN_AI_RESPONSE_MODEL,
  ATTR_GEN_AI_SYSTEM, ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS, ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_OPERATION_NAME_VALUE_CHAT,
  GEN_AI_PROVIDER_NAME_VALUE_ANTHROPIC,
} from '@opentelemetry/semantic-conventions/incubating';
import type { Attributes, Span } from '@opentelemetry/api';

/** The gen_ai.* attribute names Tollgate sets (semantic-conventions constants). */
export const GEN_AI = {
  operationName: ATTR_GEN_AI_OPERATION_NAME,
  providerName: ATTR_GEN_AI_PROVIDER_NAME,
  /** deprecated by the conventions in favour of `providerName`; still set, as many backends read only it */
  system: ATTR_GEN_AI_SYSTEM,
  requestModel: ATTR_GEN_AI_REQUEST_MODEL,
  requestMaxTokens: ATTR_GEN_AI_REQUEST_MAX_TOKENS,
  requestStream: ATTR_GEN_AI_REQUEST_STREAM,
  responseModel: ATTR_GEN_AI_RESPONSE_MODEL,
  responseId: ATTR_GEN_AI_RESPONSE_ID,
  responseFinishReasons: ATTR_GEN_AI_RESPONSE_FINISH_REASONS,
  inputTokens: ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  outputTokens: ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  cacheReadInputTokens: ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
  cacheCreationInputTokens: ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
} as const;

/** Longest id or model name put on a span; longer ones are left off (they come from the upstream). */
const MAX_LABEL_CHARS = 256;
const label = (v: string | null | undefined): string | undefined => (typeof v === 'string' && v.length > 0 && v.length <= MAX_LABEL_CHARS ? v : undefined);

/**
 * The span name of a GenAI client call: `{operation} {model}` (conventions: "chat claude-…").
 */
export function genAiSpanName(model: string): string {
  return `${GEN_AI_OPERATION_NAME_VALUE_CHAT} ${model}`;
}

/**
 * The request side of a chat call to Anthropic: operation `chat`, provider (and the deprecated
 * system) `anthropic`, the model sent upstream, `max_tokens` as sent (tokens), the stream flag.
 */
export function genAiRequestAttributes(r: { model: string; maxTokens: number; stream: boolean }): Attributes {
  return {
    [GEN_AI.operationName]: GEN_AI_OPERATION_NAME_VALUE_CHAT,
    [GEN_AI.providerName]: GEN_AI_PROVIDER_NAME_VALUE_ANTHROPIC,
    [GEN_AI.system]: GEN_AI_PROVIDER_NAME_VALUE_ANTHROPIC,
    [GEN_AI.requestModel]: r.model,
    [GEN_AI.requestMaxTokens]: r.maxTokens,
    [GEN_AI.requestStream]: r.stream,
  };
}

/** Token counts of one answer as the upstream reported them (Anthropic `usage`, totals over iterations). */
export interface GenAiUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite5m: number;
  cacheWrite1h: number;
}

/**
 * Sets the response side on a span that is still recording: the serving model, the message id
 * (`msg_…`), the stop reason as a one-element `finish_reasons`, and the token counts. Per the
 * conventions `gen_ai.usage.input_tokens` counts every input token, cached ones included
 * (Anthropic's `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens`);
 * the cache attributes carry the parts. Absent values are left off, never set to 0.
 */
export function setGenAiResponse(span: Span, r: {
  model?: string | null; id?: string | null; stopReason?: string | null; usage?: GenAiUsage | null;
}): void {
  if (!span.isRecording()) return;
  const attrs: Attributes = {};
  const model = label(r.model);
  if (model) attrs[GEN_AI.responseModel] = model;
  const id = label(r.id);
  if (id) attrs[GEN_AI.responseId] = id;
  const stop = label(r.stopReason);
  if (stop) attrs[GEN_AI.responseFinishReasons] = [stop];
  const u = r.usage;
  if (u) {
    const cacheWrite = u.cacheWrite5m + u.cacheWrite1h;
    attrs[GEN_AI.inputTokens] = u.input + u.cacheRead + cacheWrite;
    attrs[GEN_AI.outputTokens] = u.output;
    attrs[GEN_AI.cacheReadInputTokens] = u.cacheRead;
    attrs[GEN_AI.cacheCreationInputTokens] = cacheWrite;
  }
  span.setAttributes(attrs);
}
