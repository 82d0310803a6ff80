// A node:test reporter that counts passed, failed and skipped tests (not suites) and keeps each
// failure's name, place and error, as one JSON line, so `npm test` can print every failure again
// just above its one closing line (a CI log's tail is often all that is shown of it).

/** What is kept of one failed test: where it is and the first lines of its error. */
export interface Failure { name: string; file?: string; line?: number; error: string }

interface TestEvent {
  type: string;
  data: { name?: string; file?: string; line?: number; details?: { type?: string; error?: unknown }; skip?: unknown; todo?: unknown };
}

/** The error's text (its cause's message where node:test wraps it), at most 12 lines. */
function describeError(err: unknown): string {
  const cause = (err as { cause?: unknown } | undefined)?.cause ?? err;
  const text = cause instanceof Error ? (cause.stack ?? `${cause.name}: ${cause.message}`) : String(cause);
  return text.split('\n').slice(0, 12).join('\n');
}

export default async function* countReporter(source: AsyncIterable<TestEvent>) {
  let passed = 0;
  let skipped = 0;
  const failures: Failure[] = [];
  for await (const event of source) {
    if (event.data.details?.type === 'suite') continue;
    if (event.type === 'test:pass') {
      if (event.data.skip !== undefined || event.data.todo !== undefined) skipped++;
      else passed++;
    } else if (event.type === 'test:fail') {
      failures.push({ name: event.data.name ?? '(unnamed)', file: event.data.file, line: event.data.line, error: describeError(event.data.details?.error) });
    }
  }
  yield `${JSON.stringify({ passed, failed: failures.length, skipped, failures })}\n`;
}
