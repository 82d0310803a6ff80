// The README's Errors table is the catalogue (errors.ts) as clients meet it: every code a client
// can get is listed with its HTTP status and Anthropic error type, and no row names a code,
// status or type the catalogue does not give.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS, type ErrorCode } from './errors.ts';

const README = readFileSync(join(import.meta.dirname, '../../../README.md'), 'utf8');

/** The Errors table's rows: status cell, the codes named in the code cell, the type cell. */
function errorRows(): Array<{ status: string; codes: string[]; type: string }> {
  const start = README.indexOf('| status | code | type | when |');
  assert.ok(start >= 0, 'README has the Errors table (status | code | type | when)');
  const end = README.indexOf('\n\n', start);
  return README.slice(start, end).split('\n').slice(2).map((line) => {
    const [status, code, type] = line.split(' | ').map((c) => c.replace(/^\| /, '').trim()) as [string, string, string];
    return { status, codes: [...code.matchAll(/`(\w+)`/g)].map((m) => m[1]!), type };
  });
}

test('the README\'s Errors table lists every code of the catalogue with its status and type, and nothing else', () => {
  const rows = errorRows();
  const listed = new Map<string, { status: string; type: string }>();
  for (const row of rows) for (const code of row.codes) listed.set(code, row);
  for (const [code, spec] of Object.entries(ERRORS)) {
    const row = listed.get(code);
    assert.ok(row, `${code} is in the README's Errors table`);
    assert.equal(row.status, String(spec.status), `${code}: status`);
    assert.equal(row.type, `\`${spec.type}\``, `${code}: type`);
  }
  for (const code of listed.keys()) assert.ok(Object.hasOwn(ERRORS, code as ErrorCode), `the README's ${code} is in the catalogue`);
  // the one row without a code of ours: upstream errors passed on as they came
  assert.deepEqual(rows.filter((r) => r.codes.length === 0).map((r) => [r.status, r.type]), [['429 / 5xx', 'upstream\'s own']]);
});
