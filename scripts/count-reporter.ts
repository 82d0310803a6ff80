// A node:test reporter that counts passed, failed and skipped tests (not suites) and keeps each
// failure's name, place and error, as one JSON line, so `npm test` can print every failure again
// just above its one closing line (a CI log's tail is often all that is shown of it). `npm test`
// itself counts through the progress reporter (Tally, written to TOLLGATE_TEST_COUNTS): a third
// reporter made node:test warn of a possible EventEmitter leak on every run.

/** What is kept of one failed test: where it is and the first lines of its error. */
export interface Failure { name: string; file?: string; line?: number; error: string }

/**
 * The counts of a run as the reporters write them (one JSON line); `skips`: each skip's reason
 * (the text given to `t.skip`, else `(no reason given)`, `todo` for a todo) → how many tests.
 */
export interface Counts { passed: number; failed: number; skipped: number; failures: Failure[]; skips: Record<string, number> }

export interface TestEvent {
  type: string;
  data: { name?: string; file?: string; line?: number; nesting?: number; details?: { type?: string; error?: unknown; duration_ms?: number }; skip?: unknown; todo?: unknown };
}

/** The error's text (its cause's message where node:test wraps it), at most 12 lines. */
function describeError(err: unknown): string {
  const cause = (err as { cause?: unknown } | undefined)?.cause ?? err;
  const text = cause instanceof Error ? (cause.stack ?? `${cause.name}: ${cause.message}`) : String(cause);
  return text.split('\n').slice(0, 12).join('\n');
}

/** Counts tests (not suites) from node:test's events, one `add` per event. */
export class Tally {
  #passed = 0;
  #skipped = 0;
  #failures: Failure[] = [];
  #skips: Record<string, number> = {};

  add(event: TestEvent): void {
    if (event.data.details?.type === 'suite') {
      // A skipped or todo suite reports none of its tests: it counts as one skipped, by its reason.
      if (event.type === 'test:pass' && (event.data.skip !== undefined || event.data.todo !== undefined)) this.#skip(event, '(suite) ');
      return;
    }
    if (event.type === 'test:fail' && event.data.todo !== undefined) {
      // A todo test may fail: node:test does not count it as a failure, nor does this.
      this.#skip(event, '');
      return;
    }
    if (event.type === 'test:pass') {
      if (event.data.skip !== undefined || event.data.todo !== undefined) this.#skip(event, '');
      else this.#passed++;
    } else if (event.type === 'test:fail') {
      this.#failures.push({ name: event.data.name ?? '(unnamed)', file: event.data.file, line: event.data.line, error: describeError(event.data.details?.error) });
    }
  }

  /** One skipped (or todo) test or suite, counted under its reason (`prefix` before it). */
  #skip(event: TestEvent, prefix: string): void {
    this.#skipped++;
    const why = event.data.skip !== undefined ? event.data.skip : event.data.todo;
    const reason = prefix + (typeof why === 'string' && why !== '' ? why : event.data.skip !== undefined ? '(no reason given)' : 'todo');
    this.#skips[reason] = (this.#skips[reason] ?? 0) + 1;
  }

  /** The counts as one JSON line (newline included). */
  line(): string {
    const counts: Counts = { passed: this.#passed, failed: this.#failures.length, skipped: this.#skipped, failures: this.#failures, skips: this.#skips };
    return `${JSON.stringify(counts)}\n`;
  }
}

export default async function* countReporter(source: AsyncIterable<TestEvent>) {
  const tally = new Tally();
  for await (const event of source) tally.add(event);
  yield tally.line();
}
