// The program's command line: conventions (help on stdout, diagnostics on stderr, exit codes)
// and config errors that name every bad variable before anything starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAIN = join(import.meta.dirname, '../src/main.ts');
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 });

test('--help prints usage on stdout and exits 0', () => {
  const r = run(['--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^Usage: tollgate/);
  const ops = run(['rebuild', '--help']);
  assert.equal(ops.status, 0);
  assert.match(ops.stdout, /rebuild\s+rebuild hot state/);
});

test('bad settings: every problem named on stderr, exit 2, nothing started', () => {
  const r = run([], { PORT: 'eighty', UPSTREAM_URL: 'not a url', STREAM_ERROR_BILLING: 'maybe', DATA_DIR: mkdtempSync(join(tmpdir(), 'tg-main-')) });
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  for (const name of ['PORT', 'UPSTREAM_URL', 'STREAM_ERROR_BILLING']) assert.match(r.stderr, new RegExp(`- ${name}: `));
});

test('a broken catalog file is refused with its path and problem, exit 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tg-main-'));
  const file = join(dir, 'catalog.json');
  writeFileSync(file, JSON.stringify({ version: 1, name: 'x', credit: { currency: 'USD', unit_per_credit: '0.005' }, price_unit: 'credits', models: [{ id: 'm', upstream_model: 'm', prices: { input: 'cheap' } }] }));
  const r = run([], { PRICING_FILE: file, DATA_DIR: dir, PORT: '0' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /models\[0\]\.prices\.input/);
});

test('unknown commands and bad options exit 2', () => {
  assert.equal(run(['frobnicate']).status, 2);
  const r = run(['reconcile', '--timeout-ms', 'soon'], { ADMIN_TOKEN: 'x'.repeat(20) });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--timeout-ms must be a whole number/);
  const down = run(['reconcile', '--url', 'http://127.0.0.1:1'], { ADMIN_TOKEN: 'x'.repeat(20) });
  assert.equal(down.status, 1);
  assert.match(down.stderr, /cannot reach/);
});
