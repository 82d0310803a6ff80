// The part of OpenAI's Chat Completions wire format (https://platform.openai.com/docs/api-reference/chat)
// that Tollgate translates to and from Anthropic's Messages API. Only the fields read or written
// here; an upstream may send more, which are ignored.

/** A content part of a `user` (text, image) or `tool` / `system` (text) message. */
export type OpenAIContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string; detail?: 'auto' | 'low' | 'high' } };

/** One function call the assistant made; `arguments` is JSON text (possibly invalid: models produce it). */
export interface OpenAIToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export type OpenAIMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string | OpenAIContentPart[] }
  | { role: 'assistant'; content: string | null; tool_calls?: OpenAIToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: string | Array<{ type: 'text'; text: string }> };

export interface OpenAITool {
  type: 'function';
  function: { name: string; description?: string; parameters: Record<string, unknown>; strict?: boolean };
}

export type OpenAIToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

/** `POST /chat/completions` body. */
export interface OpenAIChatRequest {
  model: string;
  messages: OpenAIMessage[];
  max_completion_tokens?: number;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string[];
  user?: string;
  stream?: boolean;
  stream_options?: { include_usage: boolean };
  tools?: OpenAITool[];
  tool_choice?: OpenAIToolChoice;
  parallel_tool_calls?: boolean;
}

/** Token counts; `prompt_tokens` includes the cached ones. */
export interface OpenAIUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number | null } | null;
  completion_tokens_details?: { reasoning_tokens?: number | null } | null;
}

export type OpenAIFinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

/** A non-streaming answer. */
export interface OpenAIChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string | null; refusal?: string | null; tool_calls?: OpenAIToolCall[] };
    finish_reason: OpenAIFinishReason | null;
    /** vLLM / SGLang extension: the stop string that ended the generation (OpenAI itself never says which) */
    stop_reason?: string | number | null;
  }>;
  usage?: OpenAIUsage | null;
}

/** One `data:` event of a streaming answer. The usage chunk (with `stream_options.include_usage`) has no choices. */
export interface OpenAIChatChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: {
      role?: 'assistant';
      content?: string | null;
      refusal?: string | null;
      tool_calls?: Array<{ index: number; id?: string; type?: 'function'; function?: { name?: string; arguments?: string } }>;
    };
    finish_reason: OpenAIFinishReason | null;
    stop_reason?: string | number | null;
  }>;
  usage?: OpenAIUsage | null;
}

/** OpenAI's error body (`{error: {message, type, param, code}}`). */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param?: string | null; code?: string | number | null };
}
