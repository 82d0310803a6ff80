// Observes an upstream Messages SSE stream on the side. The gateway forwards every chunk to the
// client as it arrives and also hands it to `push`; the meter never changes, holds back or
// re-emits bytes, and never throws: a metering bug must not break a customer's stream.
//
// Usage rule: `message_start.message.usage`, then every `message_delta.usage` merged over it.
// `message_delta` usage is cumulative, so a field present in a later event replaces the earlier
// value and a field absent (or null) keeps it — never add them up.

import { createParser } from 'eventsource-parser';
import type { EventSourceMessage, EventSourceParser } from 'eventsource-parser';
import type { ErrorObject, Usage } from './types.ts';
import { mergeUsage, usageFromWire } from './usage.ts';
import type { TokenUsage } from './usage.ts';
import { isRecord } from './record.ts';

export interface StreamMeterOptions {
  /**
   * Most characters the parser may buffer for one unfinished event. Past it the meter stops
   * parsing (sets `overflowed`) instead of growing without bound; bytes keep flowing.
   * Default 64 MiB (server tool results can make single events of several MB).
   */
  maxEventBytes?: number;
}

export interface StreamError {
  type: string;
  message: string;
}

export class StreamMeter {
  #parser: EventSourceParser;
  #decoder = new TextDecoder('utf-8');
  #usage: Usage = {};
  #ended = false;

  /** `id` of `message_start.message` */
  messageId: string | null = null;
  /** `model` of `message_start.message` (the upstream's model name) */
  model: string | null = null;
  /** last `message_delta.delta.stop_reason` (or message_start's, if it had one) */
  stopReason: string | null = null;
  sawMessageStart = false;
  /** `message_stop` seen: the upstream finished the message */
  completed = false;
  /** an SSE `error` event (which can arrive after HTTP 200 and some content); the first one wins */
  error: StreamError | null = null;
  /** events parsed (any type, including ignored ones) */
  events = 0;
  /** `data:` payloads that were not JSON objects, and were ignored */
  malformed = 0;
  /** the parser gave up after an event exceeded `maxEventBytes` */
  overflowed = false;

  constructor(options: StreamMeterOptions = {}) {
    this.#parser = createParser({
      onEvent: (e) => this.#onEvent(e),
      onError: (err) => {
        if (err.type === 'max-buffer-size-exceeded') this.overflowed = true;
      },
      maxBufferSize: options.maxEventBytes ?? 64 * 1024 * 1024,
    });
  }

  /** Observe one upstream chunk, exactly as forwarded. Never throws, never changes `chunk`. */
  push(chunk: Uint8Array | string): void {
    if (this.#ended || this.overflowed) return;
    try {
      const text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
      if (text.length > 0) this.#parser.feed(text);
    } catch {
      // the parser throws once terminated (overflow); nothing more to learn from this stream
      this.overflowed = true;
    }
  }

  /**
   * The upstream body ended (or was cut). An unfinished last event is discarded, not guessed:
   * only complete events count. Further pushes are ignored.
   */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    try {
      const rest = this.#decoder.decode();
      if (rest.length > 0 && !this.overflowed) this.#parser.feed(rest);
    } catch {
      this.overflowed = true;
    }
  }

  /** Billable tokens seen so far (merged wire usage, see the rule at the top). */
  usage(): TokenUsage {
    return usageFromWire(this.#usage);
  }

  /** The merged wire usage object, with every field the upstream sent (server_tool_use, …). */
  wireUsage(): Usage {
    return { ...this.#usage };
  }

  #onEvent(e: EventSourceMessage): void {
    this.events++;
    let data: unknown;
    try {
      data = JSON.parse(e.data);
    } catch {
      this.malformed++;
      return;
    }
    if (!isRecord(data)) {
      this.malformed++;
      return;
    }
    // Anthropic puts the event type in both the SSE `event:` field and `data.type`; trust data.
    const type = typeof data.type === 'string' ? data.type : e.event;
    switch (type) {
      case 'message_start':
        this.#onMessageStart(data);
        break;
      case 'message_delta':
        this.#onMessageDelta(data);
        break;
      case 'message_stop':
        this.completed = true;
        break;
      case 'error':
        this.#onError(data);
        break;
      // content_block_*, ping and future event types carry nothing billable
    }
  }

  #onMessageStart(data: Record<string, unknown>): void {
    this.sawMessageStart = true;
    const message = data.message;
    if (!isRecord(message)) return;
    if (this.messageId === null && typeof message.id === 'string') this.messageId = message.id;
    if (this.model === null && typeof message.model === 'string') this.model = message.model;
    if (typeof message.stop_reason === 'string') this.stopReason = message.stop_reason;
    if (isRecord(message.usage)) this.#usage = mergeUsage(this.#usage, message.usage);
  }

  #onMessageDelta(data: Record<string, unknown>): void {
    if (isRecord(data.delta) && typeof data.delta.stop_reason === 'string') {
      this.stopReason = data.delta.stop_reason;
    }
    if (isRecord(data.usage)) this.#usage = mergeUsage(this.#usage, data.usage);
  }

  #onError(data: Record<string, unknown>): void {
    if (this.error !== null) return;
    const err: Partial<ErrorObject> = isRecord(data.error) ? data.error : {};
    this.error = {
      type: typeof err.type === 'string' ? err.type : 'api_error',
      message: typeof err.message === 'string' ? err.message : 'Unknown streaming error',
    };
  }
}

export function createStreamMeter(options?: StreamMeterOptions): StreamMeter {
  return new StreamMeter(options);
}
