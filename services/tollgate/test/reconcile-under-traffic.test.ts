// Embedded `reconcile` and reports under steady traffic (a tester's MEDIUM: 6 concurrent
// request loops made `tollgate reconcile` run for minutes, 1.9 s idle). Both waited for the
// in-process log to be idle, which steady traffic never allows; reconcile now holds the ledger
// and warehouse groups at one point of the log while it compares them, so it is exact with
// requests flowing, and reports wait only for what was published before them. The real
// program (embedded stack, simulator upstream, official SDK as the client).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { admin, customer, settledBalance, startStack, type Stack } from '../../../test/support/tollgate.ts';

let stack: Stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack.close(); });

test('reconcile, a usage report and rebuilds answer while 6 request loops run; reconcile finds hot state and warehouse equal, and every request is charged once, to the µc', { timeout: 180_000 }, async () => {
  const a = await customer(stack.url, 1_000, 'steady'); // 1,000,000,000 µc
  const ask = () => a.client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: '[[sim input=12 output=5]]' }] });
  // One request alone: what each of these identical requests costs, µc.
  await ask();
  const each = 1_000_000_000n - await settledBalance(stack, a.accountId);
  assert.ok(each > 0n);
  let stop = false;
  let served = 0;
  const loops = Array.from({ length: 6 }, async () => {
    while (!stop) {
      await ask();
      served++;
    }
  });
  try {
    while (served < 60) await new Promise((r) => setTimeout(r, 50));
    const before = served;
    const rec = await admin<{ ok: boolean; accounts: number; differences: unknown[]; problem?: string }>(stack.url, 'GET', '/ops/v1/reconcile?rollups=true');
    assert.deepEqual([rec.status, rec.json.ok, rec.json.differences, rec.json.problem], [200, true, [], undefined]);
    assert.ok(rec.json.accounts >= 1);
    const report = await admin<{ data: unknown[] }>(stack.url, 'GET', `/admin/v1/usage?account_id=${a.accountId}`);
    assert.equal(report.status, 200);
    // Rebuilds under the same traffic (a tester saw 3 of 15 fail with 500: the warehouse's
    // reads never agreed while it was written to): each answers, and no µc is lost or doubled.
    for (let i = 0; i < 4; i++) {
      const rebuilt = await admin<{ balances: number }>(stack.url, 'POST', '/ops/v1/rebuild');
      assert.equal(rebuilt.status, 200, JSON.stringify(rebuilt.json));
    }
    assert.ok(served > before, 'requests were served while reconcile, the report and the rebuilds ran');
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  // Afterwards, quiet: every request charged exactly once, and the same check agrees.
  assert.equal(await settledBalance(stack, a.accountId), 1_000_000_000n - BigInt(served + 1) * each);
  const idle = await admin<{ ok: boolean }>(stack.url, 'GET', '/ops/v1/reconcile');
  assert.equal(idle.json.ok, true);
});
