// The parts of the Anthropic Messages protocol the gateway reads. Everything else on these
// objects is carried as `unknown` and passed through byte for byte: the gateway never rebuilds
// a request or a response, it only looks at them.

/** Body of `POST /v1/messages/count_tokens`: like a Messages request without `max_tokens`. */
export interface CountTokensRequest {
  model: string;
  messages: unknown[];
  system?: unknown;
  tools?: unknown;
  [key: string]: unknown;
}

/** Body of `POST /v1/messages`. Only the fields the gateway needs are typed. */
export interface MessagesRequest extends CountTokensRequest {
  max_tokens: number;
  stream?: boolean;
  /** `{type: "enabled", budget_tokens}`, `{type: "disabled"}`, `{type: "adaptive"}`, … */
  thinking?: { type: string; budget_tokens?: number; [key: string]: unknown };
  /** `user_id` keys sticky upstream routing so prompt caches hit. */
  metadata?: { user_id?: string; [key: string]: unknown };
}

/** Cache-write breakdown by TTL. */
export interface CacheCreation {
  ephemeral_5m_input_tokens?: number | null;
  ephemeral_1h_input_tokens?: number | null;
  [key: string]: unknown;
}

/**
 * The wire `usage` object of a Message and of `message_delta`. Anthropic sends `null` for
 * counts it does not report; the gateway treats `null` like an absent field.
 */
export interface Usage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  cache_creation?: CacheCreation | null;
  [key: string]: unknown;
}

/** A (non-streaming) Messages response, and `message_start.message`. */
export interface Message {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: unknown[];
  stop_reason: string | null;
  stop_sequence?: string | null;
  usage: Usage;
  [key: string]: unknown;
}

/** Anthropic's error types, plus the 413 type its edge returns. */
export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'billing_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'timeout_error'
  | 'api_error'
  | 'overloaded_error';

/** `error` inside an Anthropic error body or SSE `error` event. */
export interface ErrorObject {
  type: string;
  message: string;
  [key: string]: unknown;
}

/** `{"type":"error","error":{…},"request_id":…}` as Anthropic sends it. */
export interface AnthropicErrorBody {
  type: 'error';
  error: ErrorObject;
  request_id?: string | null;
  [key: string]: unknown;
}

// ---- streaming events (the `data:` of each SSE frame) ----

export interface MessageStartEvent {
  type: 'message_start';
  message: Message;
  [key: string]: unknown;
}

export interface MessageDeltaEvent {
  type: 'message_delta';
  delta: { stop_reason?: string | null; stop_sequence?: string | null; [key: string]: unknown };
  /** Cumulative: each field present replaces the value seen before. */
  usage?: Usage;
  [key: string]: unknown;
}

export interface MessageStopEvent {
  type: 'message_stop';
  [key: string]: unknown;
}

export interface ContentBlockStartEvent {
  type: 'content_block_start';
  index: number;
  content_block: { type: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface ContentBlockDeltaEvent {
  type: 'content_block_delta';
  index: number;
  delta: { type: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface ContentBlockStopEvent {
  type: 'content_block_stop';
  index: number;
  [key: string]: unknown;
}

export interface PingEvent {
  type: 'ping';
  [key: string]: unknown;
}

/** An error reported inside a stream, possibly after HTTP 200 and some content. */
export interface ErrorEvent {
  type: 'error';
  error: ErrorObject;
  [key: string]: unknown;
}

export type StreamEvent =
  | MessageStartEvent
  | MessageDeltaEvent
  | MessageStopEvent
  | ContentBlockStartEvent
  | ContentBlockDeltaEvent
  | ContentBlockStopEvent
  | PingEvent
  | ErrorEvent;

export type StreamEventType = StreamEvent['type'];
