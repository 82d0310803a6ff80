// OpenAI Chat Completions <-> Anthropic Messages translation (issue 10, outcomes 4 and 5).
// OpenAI-format clients on the gateway (`POST /v1/chat/completions`): request in, answer out.
export { fromOpenAIRequest, type ChatRequestTranslation } from './from-openai-request.ts';
export {
  ChatChunkStream, finishReasonOf, openAIErrorBody, toChatCompletion, usageOf, type OpenAIErrorBody, type OpenAIUsage,
} from './to-openai-response.ts';
