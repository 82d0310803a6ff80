// `tollgate rerate` over bills the real gateway wrote: the official SDK → embedded Tollgate (its
// runtime publishes the price version it prices with; the warehouse stores it) → the simulator.
// Under their own version the stored events re-price to exactly what was charged (exit 0);
// under a catalog with another price the difference is exact per account (exit 1).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { runTollgate, type CliResult } from '../../../test/support/cli.ts';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledCatalogPath } from '@tollgate/pricing';
import { ADMIN_TOKEN, customer, startStack, type Stack } from '../../../test/support/tollgate.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

function cli(args: string[]): Promise<CliResult> {
  return runTollgate(['rerate', ...args, '--url', stack.url], { ADMIN_TOKEN });
}

test('bills the gateway wrote re-price to the micro-credit under their own version (exit 0), and a price change shows per account (exit 1)', async () => {
  const from = new Date(Date.now() - 60_000).toISOString();
  const a = await customer(stack.url, 10, 'a');
  const b = await customer(stack.url, 10, 'b');
  const user = (text: string) => [{ role: 'user' as const, content: text }];
  // max_tokens 1,000 keeps the holds above these charges (a charge above its hold is capped).
  // haiku: 1,000 × 24 + 100 × 120 = 36,000 µc; sonnet-4-6 US-only: (1,000 × 180 + 200 × 900) × 1.1 = 396,000 µc
  await a.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1000, messages: user('[[sim input=1000 output=100]]') });
  await a.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1000, messages: user('[[sim input=1000 output=100]]') });
  await b.client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 1000, messages: user('[[sim input=1000 output=200 geo=us]]') });
  await stack.tollgate.drain();
  const totals = async (accountId: string) => (await stack.tollgate.warehouse.usageTotals({ accountId })).costMicros;
  assert.deepEqual([await totals(a.accountId), await totals(b.accountId)], [72_000n, 396_000n]);
  const to = new Date(Date.now() + 60_000).toISOString();

  const own = await cli(['--from', from, '--to', to]);
  assert.equal(own.code, 0, own.stderr);
  const report = JSON.parse(own.stdout) as { events: number; differences: unknown[]; versions: Record<string, number> };
  assert.equal(report.events, 3);
  assert.deepEqual(report.differences, []);
  assert.deepEqual(Object.values(report.versions), [3]);

  // Haiku output ¥12 → ¥15 per MTok (120 → 150 µc per token): 100 × 30 more per request for a.
  const doc = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8')) as { models: Array<{ id: string; prices: Record<string, string> }> };
  doc.models.find((m) => m.id.startsWith('claude-haiku-4-5'))!.prices.output = '15.00';
  const file = join(mkdtempSync(join(tmpdir(), 'tollgate-rerate-cat-')), 'prices.json');
  writeFileSync(file, JSON.stringify(doc));
  const preview = await cli(['--from', from, '--to', to, '--catalog', file]);
  assert.equal(preview.code, 1, preview.stderr);
  assert.deepEqual((JSON.parse(preview.stdout) as { differences: unknown[] }).differences, [
    { account_id: a.accountId, events: 2, events_different: 2, stored_micros: '72000', rerated_micros: '78000', difference_micros: '6000' },
  ]);
});
