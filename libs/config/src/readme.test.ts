// Every setting the program reads is documented: the README's "Configuration" table and the
// config schema list the same environment variables, no more, no fewer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_VARIABLES } from './config.ts';

const README = readFileSync(join(import.meta.dirname, '../../../README.md'), 'utf8');

/** The backticked UPPER_CASE names in the first column of the table under "## Configuration". */
function documented(): string[] {
  const start = README.indexOf('\n## Configuration\n');
  assert.ok(start >= 0, 'README has a "## Configuration" section');
  // to the next heading: "### Variables of the other programs" (CLI, simulator, deploy
  // scripts, npm test) is not the server's configuration
  const ends = ['\n## ', '\n### '].map((h) => README.indexOf(h, start + 1)).filter((i) => i >= 0);
  const end = ends.length === 0 ? -1 : Math.min(...ends);
  const section = README.slice(start, end < 0 ? undefined : end);
  const names: string[] = [];
  for (const line of section.split('\n')) {
    if (!line.startsWith('| `')) continue;
    const firstCell = line.split('|')[1]!;
    for (const m of firstCell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.push(m[1]!);
  }
  return names;
}

test('README configuration table lists every variable of the config schema, and only those', () => {
  const table = documented();
  const inTable = new Set(table);
  const inSchema = new Set(CONFIG_VARIABLES);
  assert.deepEqual(CONFIG_VARIABLES.filter((v) => !inTable.has(v)), [], 'read by the config but missing from the README table');
  assert.deepEqual(table.filter((v) => !inSchema.has(v)), [], 'in the README table but not read by the config');
  assert.equal(new Set(table).size, table.length, 'a variable appears twice in the table');
});
