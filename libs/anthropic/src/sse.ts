// Observes an upstream Messages SSE stream on the side. The gateway forwards every chunk to the
// client as it arrives and also hands it to `push`; the meter never changes, holds back or
// re-emits bytes, and never throws: a metering bug must not break a customer's stream.
//
// Usage rule (`UsageTally`): `message_start.message.usage` and every `message_delta.usage` are
// reports of one cumulative count; each count is the largest valid value any report gave. A
// field absent (or null) keeps the earlier value — never add them up. What deviates from the
// protocol is recorded in `anomalies` (see `UsageAnomaly`), never thrown.

import { createParser } from 'eventsource-parser';
import type { EventSourceMessage, EventSourceParser } from 'eventsource-parser';
import type { ErrorObject, Usage } from './types.ts';
import { blockHasOutput, MAX_MODEL_CHARS, UsageTally, wireLabel } from './usage.ts';
import type { TokenUsage, UsageAnomaly } from './usage.ts';
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
  #tally = new UsageTally();
  #anomalies = new Set<UsageAnomaly>();
  #ended = false;

  /** `id` of `message_start.message` */
  messageId: string | null = null;
  /** `model` of `message_start.message` (the upstream's name of the serving model; a fallback differs from the request's) */
  model: string | null = null;
  /** last `message_delta.delta.stop_reason` (or message_start's, if it had one) */
  stopReason: string | null = null;
  /**
   * Some content reached the stream: a `content_block_start` of a block that carries output by
   * itself (a tool call, a server tool result), or a delta with text, thinking or tool input.
   * A `refusal` before any of it costs nothing.
   */
  outputSeen = false;
  sawMessageStart = false;
  /** `message_stop` seen: the upstream finished the message */
  completed = false;
  /** a `message_delta` carrying `stop_reason` seen: the answer is complete even without `message_stop` */
  stopped = false;
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
   * only complete events count. Further pushes are ignored. An output count that is still
   * `message_start`'s placeholder is 0 from here on (`UsageTally.endReports`), and
   * `invalid_count` where the answer is complete: its final report gave no output count.
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
    if (this.stopped && !this.completed && this.error === null) this.#anomalies.add('missing_message_stop');
    if (this.#tally.endReports() && this.answered && this.error === null) this.#anomalies.add('invalid_count');
  }

  /**
   * The message is answered in full: `message_stop` came, or the final `message_delta` (the one
   * with `stop_reason`) did. Completeness is judged by the answer, not one framing event.
   */
  get answered(): boolean {
    return this.completed || this.stopped;
  }

  /** At least one valid token count was reported. */
  get hasUsage(): boolean {
    return this.#tally.hasCounts;
  }

  /** Protocol anomalies seen so far (stream framing and usage values), sorted, each once. */
  get anomalies(): UsageAnomaly[] {
    return [...new Set([...this.#anomalies, ...this.#tally.anomalies])].sort();
  }

  /** Billable tokens seen so far (merged wire usage, see the rule at the top). */
  usage(): TokenUsage {
    return this.#tally.usage();
  }

  /** The merged wire usage object, with every field the upstream sent (server_tool_use, …). */
  wireUsage(): Usage {
    return this.#tally.wire();
  }

  /** The usage tally of the message: every dimension, `usage.iterations` and the pricing conditions. */
  get tally(): UsageTally {
    return this.#tally;
  }

  #onEvent(e: EventSourceMessage): void {
    this.events++;
    let data: unknown;
    try {
      data = JSON.parse(e.data);
    } catch {
      this.#malformedEvent(e.data);
      return;
    }
    if (!isRecord(data)) {
      this.#malformedEvent(e.data);
      return;
    }
    // Anthropic puts the event type in both the SSE `event:` field and `data.type`; trust data,
    // except that either one saying `error` makes it an error (as `isErrorFrame` judges it).
    const type = e.event === 'error' ? 'error' : typeof data.type === 'string' ? data.type : e.event;
    if (this.completed) {
      // The message is over: nothing after it may change what it cost.
      this.#anomalies.add('event_after_stop');
      return;
    }
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
      case 'content_block_start': {
        const b = data.content_block;
        // Text and thinking blocks start empty: their deltas say whether anything was written.
        if (isRecord(b) && b.type !== 'text' && b.type !== 'thinking' && blockHasOutput(b)) this.outputSeen = true;
        break;
      }
      case 'content_block_delta': {
        const d = data.delta;
        if (isRecord(d) && ['text', 'thinking', 'partial_json'].some((k) => typeof d[k] === 'string' && (d[k] as string).length > 0)) {
          this.outputSeen = true;
        }
        break;
      }
      // content_block_stop, ping and future event types carry nothing billable
    }
  }

  #malformedEvent(payload: string): void {
    this.malformed++;
    // An empty `data:` (some proxies send it as a keep-alive) carries nothing that was lost.
    if (payload.trim() !== '') this.#anomalies.add('malformed_event');
  }

  #onMessageStart(data: Record<string, unknown>): void {
    // A second message_start is the same message announced again: merge by max, keep the first id.
    if (this.sawMessageStart) this.#anomalies.add('duplicate_message_start');
    this.sawMessageStart = true;
    const message = data.message;
    if (!isRecord(message)) return;
    if (this.messageId === null && typeof message.id === 'string') this.messageId = message.id;
    if (this.model === null && message.model != null) {
      const model = wireLabel(message.model, MAX_MODEL_CHARS);
      if (model === undefined) this.#anomalies.add('invalid_label');
      else this.model = model;
    }
    if (typeof message.stop_reason === 'string') this.#setStopReason(message.stop_reason);
    // message_start's output_tokens is a placeholder (1 before any output): the deltas' count wins.
    if (message.usage !== undefined) this.#tally.add(message.usage, ['output_tokens'], true);
  }

  #onMessageDelta(data: Record<string, unknown>): void {
    if (isRecord(data.delta) && typeof data.delta.stop_reason === 'string') {
      this.#setStopReason(data.delta.stop_reason);
      this.stopped = true;
    }
    if (data.usage !== undefined) this.#tally.add(data.usage);
  }

  /** A stop reason the event can carry (a short label); anything else is kept as null and flagged. */
  #setStopReason(reason: string): void {
    const label = wireLabel(reason);
    if (label === undefined) this.#anomalies.add('invalid_label');
    this.stopReason = label ?? null;
  }

  #onError(data: Record<string, unknown>): void {
    // Completeness is judged by the answer: an error after the final message_delta does not
    // take back an answer the client already has (it is charged, and flagged).
    if (this.stopped) {
      this.#anomalies.add('error_after_answer');
      return;
    }
    if (this.error !== null) return;
    const err: Partial<ErrorObject> = isRecord(data.error) ? data.error : {};
    this.error = {
      type: typeof err.type === 'string' ? err.type : 'api_error',
      message: typeof err.message === 'string' ? err.message : 'Unknown streaming error',
    };
  }
}

/** One complete SSE event as the upstream sent it. */
export interface SseFrame {
  /** the exact bytes, up to and including the blank line that ends the event */
  raw: Buffer;
  /** the `event:` field ('' when absent) */
  event: string;
  /** the `data:` lines joined by \n ('' when none) */
  data: string;
}

const CR = 0x0d;
const LF = 0x0a;

/**
 * Splits an SSE byte stream into complete events without changing a byte, so a relay can look
 * at each event before passing it on (WHATWG HTML "Server-sent events": a line ends at CRLF,
 * LF or CR; a blank line ends the event). The unfinished tail is carried to the next `push`.
 * A tail longer than `maxEventBytes` sets `overflowed` and is dropped (nothing more is framed).
 * Written here rather than taken from eventsource-parser, which yields parsed fields only and
 * never the raw bytes.
 */
export class SseFramer {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** no character seen since the last line ending: the next line ending ends the event */
  #lineEmpty = true;
  /** the last byte seen was a CR, so a next LF is the rest of a CRLF */
  #afterCR = false;
  #max: number;
  /** an unfinished event grew past `maxEventBytes` */
  overflowed = false;

  constructor(options: { maxEventBytes?: number } = {}) {
    this.#max = options.maxEventBytes ?? 64 * 1024 * 1024;
  }

  /** The events `chunk` completes, in order (their `raw` bytes concatenated = the input so far, minus the tail). */
  push(chunk: Uint8Array): SseFrame[] {
    if (this.overflowed) return [];
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const frames: SseFrame[] = [];
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      const b = buf[i]!;
      if (this.#afterCR) {
        this.#afterCR = false;
        if (b === LF) continue;
      }
      if (b !== CR && b !== LF) {
        this.#lineEmpty = false;
        continue;
      }
      this.#afterCR = b === CR;
      if (!this.#lineEmpty) {
        this.#lineEmpty = true;
        continue;
      }
      // A blank line: the event ends after its line ending (CRLF kept whole when both are here).
      let end = i + 1;
      if (b === CR && end < buf.length && buf[end] === LF) {
        end++;
        i++;
        this.#afterCR = false;
      }
      frames.push(this.#frame(buf.subarray(start, end)));
      start = end;
    }
    if (start < buf.length) {
      this.#pending.push(buf.subarray(start));
      this.#pendingBytes += buf.length - start;
      if (this.#pendingBytes > this.#max) {
        this.overflowed = true;
        this.#pending = [];
        this.#pendingBytes = 0;
      }
    }
    return frames;
  }

  /** Bytes of the unfinished last event (discarded: only complete events count). */
  get tailBytes(): number {
    return this.#pendingBytes;
  }

  #frame(last: Buffer): SseFrame {
    const raw = this.#pending.length === 0 ? Buffer.from(last) : Buffer.concat([...this.#pending, last]);
    this.#pending = [];
    this.#pendingBytes = 0;
    let event = '';
    const data: string[] = [];
    for (const line of raw.toString('utf8').split(/\r\n|\r|\n/)) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    return { raw, event, data: data.join('\n') };
  }
}

/**
 * Whether an SSE event is an error report rather than part of the answer: `event: error`, or a
 * JSON `data` whose `type` is `error`. Such an event is never relayed as the upstream wrote it.
 */
export function isErrorFrame(frame: SseFrame): boolean {
  if (frame.event === 'error') return true;
  if (!frame.data.includes('error')) return false;
  try {
    const data: unknown = JSON.parse(frame.data);
    return isRecord(data) && data.type === 'error';
  } catch {
    return false;
  }
}

export function createStreamMeter(options?: StreamMeterOptions): StreamMeter {
  return new StreamMeter(options);
}
