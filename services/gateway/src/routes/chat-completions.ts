import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ChatChunkStream, fromOpenAIRequest, openAIErrorBody, toChatCompletion } from '@tollgate/openai-compat';
import type { ClientFormat, MessagesPipeline } from './messages.ts';

/** The status and message an OpenAI client gets for a 2xx upstream body that is not a message (nothing is charged for it). */
export const UNREADABLE_STATUS = 503;
export const UNREADABLE_MESSAGE = 'Upstream answered with a body that is not a readable message; nothing was charged';

/** An Anthropic Message's shape (`type: "message"`, content blocks), usage or not. */
function isAnthropicMessage(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && (v as Record<string, unknown>)['type'] === 'message' && Array.isArray((v as Record<string, unknown>)['content']);
}

/** Seconds since the epoch, as OpenAI's `created`. */
function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * OpenAI-format clients (issue 10, outcome 5): the request translated to an Anthropic Messages
 * body (`fromOpenAIRequest`: every parameter mapped or refused with a 400 naming it), the answer
 * written as a `chat.completion` or as `chat.completion.chunk` events ending in `data: [DONE]`.
 */
function openAIFormat(): ClientFormat {
  let includeUsage = false;
  return {
    name: 'openai',
    request: (request) => {
      const translated = fromOpenAIRequest(request.body);
      includeUsage = translated.includeUsage;
      RENAMED.set(request, translated.renamed);
      return { body: translated.body, raw: Buffer.from(JSON.stringify(translated.body)) };
    },
    json: ({ message, parsed, status }) => {
      // A message the pipeline could not meter (no usage) is still a message: the client gets it
      // as a chat.completion, without the usage nobody knows. Anything else is an OpenAI error.
      const answer = message ?? (isAnthropicMessage(parsed) ? parsed : null);
      if (answer !== null) return { status, body: JSON.stringify(toChatCompletion(answer, nowSeconds())) };
      return { status: UNREADABLE_STATUS, body: JSON.stringify(openAIErrorBody({ type: 'api_error', code: 'upstream_error', message: UNREADABLE_MESSAGE })) };
    },
    stream: () => {
      const chunks = new ChatChunkStream({ includeUsage, created: nowSeconds() });
      return (event) => chunks.push(event);
    },
  };
}

/**
 * Rewrites an error body of this route into OpenAI's shape (`{error: {message, type, param,
 * code}}`), status and headers unchanged. Every error reaches the client through `reply.send`
 * (the app's error handler for a thrown error — 401 from authentication, 429 from the plan
 * windows, 402 from the hold — and `sendError` for an upstream's), all in Anthropic's shape with
 * `type: "error"`; only those are rewritten. A stream's errors are events, written by the format.
 */
function openAIErrors(request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (reply.statusCode < 400 || typeof payload !== 'string') return Promise.resolve(payload);
  let body: unknown;
  try { body = JSON.parse(payload); } catch { return Promise.resolve(payload); }
  if (typeof body !== 'object' || body === null || (body as { type?: unknown }).type !== 'error') return Promise.resolve(payload);
  return Promise.resolve(JSON.stringify(openAIErrorBody((body as { error?: unknown }).error, RENAMED.get(request))));
}

/** A request's `ChatRequestTranslation.renamed`, once its body is translated (errors before that name the client's fields already). */
const RENAMED = new WeakMap<FastifyRequest, Readonly<Record<string, string>>>();

/**
 * `POST /v1/chat/completions` (also `/api/v1/chat/completions`): OpenAI Chat Completions, JSON
 * or SSE, served by `pipeline` (the /v1/messages pipeline: same keys — `Authorization: Bearer`
 * as the openai SDK sends, or `x-api-key` — model resolution, plan limits, hold, upstream,
 * metering and usage event), so it is limited and billed exactly as the same conversation sent
 * to /v1/messages. Errors keep the status /v1/messages would give, in OpenAI's shape.
 */
export function chatCompletionsRoutes(app: FastifyInstance, pipeline: MessagesPipeline): void {
  const handler = (request: FastifyRequest, reply: FastifyReply) => pipeline(request, reply, openAIFormat());
  for (const url of ['/v1/chat/completions', '/api/v1/chat/completions']) {
    app.post(url, { onSend: openAIErrors }, handler);
  }
}
