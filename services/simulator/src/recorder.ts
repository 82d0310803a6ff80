import type { IncomingHttpHeaders } from 'node:http';

/** A request as it reached the simulator, so tests can assert what a gateway forwarded. */
export interface RecordedRequest {
  readonly method: string;
  /** Path and query string, e.g. `/v1/messages?beta=true`. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** The parsed JSON body, or null when there was none. */
  readonly body: unknown;
}

/** Keeps the newest `capacity` requests; older ones fall off so a long benchmark stays bounded. */
export class RequestRecorder {
  readonly #capacity: number;
  #items: RecordedRequest[] = [];

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  record(item: RecordedRequest): void {
    if (this.#capacity === 0) return;
    this.#items.push(item);
    if (this.#items.length > this.#capacity) this.#items.splice(0, this.#items.length - this.#capacity);
  }

  /** Oldest first, newest last; `limit` keeps only the newest ones. */
  list(limit?: number): RecordedRequest[] {
    if (limit === undefined) return [...this.#items];
    return limit === 0 ? [] : this.#items.slice(-limit);
  }

  clear(): void {
    this.#items = [];
  }
}
