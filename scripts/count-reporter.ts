// A node:test reporter that only counts: passed, failed and skipped tests (not suites), as one
// JSON line, so `npm test` can print one closing line for all its phases.
export default async function* countReporter(source: AsyncIterable<{ type: string; data: { details?: { type?: string }; skip?: unknown; todo?: unknown } }>) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for await (const event of source) {
    if (event.data.details?.type === 'suite') continue;
    if (event.type === 'test:pass') {
      if (event.data.skip !== undefined || event.data.todo !== undefined) skipped++;
      else passed++;
    } else if (event.type === 'test:fail') failed++;
  }
  yield `${JSON.stringify({ passed, failed, skipped })}\n`;
}
