// OpenAI Chat Completions <-> Anthropic Messages translation (issue 10, outcomes 4 and 5).
// OpenAI-format clients on the gateway (`POST /v1/chat/completions`): request in, answer out.
export { fromOpenAIRequest, type ChatRequestTranslation } from './from-openai-request.ts';
export {
  ChatChunkStream, finishReasonOf, KEEPALIVE_MS, openAIErrorBody, toChatCompletion, usageOf, type OpenAIErrorBody, type OpenAIUsage,
} from './to-openai-response.ts';
// Platform `openai` (Anthropic clients served by an OpenAI upstream): request out, answer back.
export type {
  OpenAIChatChunk, OpenAIChatCompletion, OpenAIChatRequest, OpenAIContentPart, OpenAIFinishReason, OpenAIMessage,
  OpenAITool, OpenAIToolCall, OpenAIToolChoice,
} from './types.ts';
export { toOpenAIRequest, TranslationError, type TranslatedRequest } from './to-openai-request.ts';
export {
  anthropicUsage, anthropicSseFromOpenAI, ChatStreamTranslator, KEEPALIVE_PING_MS, FINAL_USAGE_GRACE_MS, fromOpenAICompletion, messageIdFor, NO_USAGE_WAIT_GRACES, sseFrame,
  stopReasonFor, toolInput, UNUSABLE_CACHED_TOKENS, type AnthropicEvent, type AnthropicUsage, type ResponseContext,
} from './from-openai-response.ts';
export { ABORTED_FINISH_REASONS, anthropicErrorOf, openAIErrorInAnswer, openAIErrorToAnthropic, openAIErrorType, type AnthropicErrorTypeName } from './errors.ts';
export {
  DEAREST_OPENAI_IMAGE_RULE, openAIImageRule, openAIImageTokenCap, openAIImageTokens, type OpenAIImageRule,
} from './image-tokens.ts';
