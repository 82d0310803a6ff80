export type {
  AnthropicErrorBody,
  AnthropicErrorType,
  CacheCreation,
  ContentBlockDeltaEvent,
  ContentBlockStartEvent,
  ContentBlockStopEvent,
  CountTokensRequest,
  ErrorEvent,
  ErrorObject,
  Message,
  MessageDeltaEvent,
  MessagesRequest,
  MessageStartEvent,
  MessageStopEvent,
  PingEvent,
  StreamEvent,
  StreamEventType,
  Usage,
} from './types.ts';
export {
  CONTROL_CHARACTER,
  mayCompact,
  prewarms,
  validateCountTokensRequest,
  validateModelId,
  validateMessagesRequest,
  integerProblem,
} from './request.ts';
export type { InputBound, InputBoundLimits, UnboundedSource } from './input-bound.ts';
export {
  CLIENT_TOOL_OVERHEAD,
  SERVER_LOOP_ITERATIONS,
  TOOL_USE_SYSTEM_PROMPT_TOKENS,
  base64ImageDimensions,
  imageTokens,
  inputTokenBound,
} from './input-bound.ts';
export type { MessageReport, MessageUsage, TokenUsage, UsageAnomaly, WireIteration } from './usage.ts';
export {
  MAX_ITERATIONS, MAX_LABEL_CHARS, MAX_MODEL_CHARS, MAX_TOKEN_COUNT, USAGE_ANOMALIES, USAGE_LABELS, UsageTally, ZERO_USAGE,
  blockHasOutput, isTokenCount, readMessage, readMessageUsage, usageFromMessage, usageFromWire, wireLabel,
} from './usage.ts';
export type { SseFrame, StreamError, StreamMeterOptions } from './sse.ts';
export { SseFramer, StreamMeter, createStreamMeter, isErrorFrame } from './sse.ts';
export type { ErrorCode, ErrorSpec, GatewayErrorBody, GatewayErrorExtra, GatewayErrorInit, UpstreamErrorOptions } from './errors.ts';
export {
  clientText,
  ERRORS,
  ERROR_CODES,
  GatewayError,
  ProtocolError,
  errorBody,
  gatewayError,
  isAnthropicErrorBody,
  isGatewayError,
  sseErrorEvent,
  toGatewayError,
  redactCredentials,
  randomTokenRuns,
  SecretScrubber,
  secretScrubber,
  publicPrefixLength,
  upstreamErrorToGateway,
  upstreamEventError,
  upstreamRetryHeaders,
} from './errors.ts';
export { isRecord } from './record.ts';
