// The slice of the Anthropic Messages wire format the simulator reads and writes. Request
// fields the simulator does not interpret stay `unknown`: it only has to count and echo them.

export type JsonObject = { [key: string]: unknown };

export type CacheTtl = '5m' | '1h';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

export interface ErrorBody {
  type: 'error';
  error: { type: ErrorType; message: string };
  request_id: string;
}

export type StopReason = 'end_turn' | 'max_tokens' | 'tool_use' | 'refusal';

export interface CacheCreation {
  ephemeral_5m_input_tokens: number;
  ephemeral_1h_input_tokens: number;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  cache_creation: CacheCreation;
  service_tier: 'standard' | 'priority' | 'batch';
  server_tool_use?: { web_search_requests: number; web_fetch_requests: number };
  inference_geo?: string;
  speed?: 'standard' | 'fast';
  iterations?: JsonObject[];
  [extra: string]: unknown;
}

export interface TextBlock {
  type: 'text';
  text: string;
}

export interface ThinkingBlock {
  type: 'thinking';
  thinking: string;
  signature: string;
}

export interface ToolUseBlock {
  type: 'tool_use';
  id: string;
  name: string;
  input: JsonObject;
}

export type OutputBlock = TextBlock | ThinkingBlock | ToolUseBlock;

export interface Message {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: OutputBlock[];
  stop_reason: StopReason | null;
  stop_sequence: null;
  usage: Usage;
}

export type ContentDelta =
  | { type: 'text_delta'; text: string }
  | { type: 'thinking_delta'; thinking: string }
  | { type: 'signature_delta'; signature: string }
  | { type: 'input_json_delta'; partial_json: string };

export type StreamEvent =
  | { type: 'message_start'; message: Message }
  | { type: 'content_block_start'; index: number; content_block: OutputBlock }
  | { type: 'ping' }
  | { type: 'content_block_delta'; index: number; delta: ContentDelta }
  | { type: 'content_block_stop'; index: number }
  | {
      type: 'message_delta';
      delta: { stop_reason: StopReason; stop_sequence: null };
      usage: {
        output_tokens: number;
        input_tokens: number;
        cache_creation_input_tokens: number;
        cache_read_input_tokens: number;
        [extra: string]: unknown;
      };
    }
  | { type: 'message_stop' }
  | { type: 'error'; error: { type: ErrorType; message: string } };

export function isRecord(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
