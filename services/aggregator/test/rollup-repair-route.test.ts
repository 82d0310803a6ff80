// POST /ops/v1/rollups/repair (`tollgate reconcile --rollups --repair`) judges what is left by
// reconcile's rule: only buckets that have settled fail it. A row still being written under
// traffic (an insert in flight) differs for a moment; the repair leaves it and the answer, and
// the CLI's exit code, must not call it a failure (a tester's LOW: --repair exited 1 when only
// recent buckets differed). A real chDB warehouse and the CLI.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { v2 } from '../../../libs/warehouse/test/usage-fixtures.ts';
import { runTollgate } from '../../../test/support/cli.ts';
import { startOpsApp, type OpsApp } from './ops-app.ts';

const TOKEN = 'test-admin-token-rollup-repair-0123';
let ops: OpsApp;
before(async () => { ops = await startOpsApp({ token: TOKEN, name: 'rollup-repair' }); });
after(async () => { await ops?.close(); });

test('rollup repair with only buckets still being written differing: nothing rebuilt, they are left and reported as recent, ok (exit 0)', async () => {
  // An event of this minute whose raw row is gone: its minute, hour and day rows differ, all recent.
  await ops.warehouse.insertUsage([v2({ event_id: 'now-1', ts: Date.now() - 1000, account_id: 'acc', key_id: 'k', cost_micros: '100' })]);
  await ops.warehouse.command(`DELETE FROM ${ops.warehouse.tables.usage} WHERE event_id = 'now-1'`);
  const res = await fetch(`${ops.url}/ops/v1/rollups/repair`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  const none = { minute: 0, hour: 0, day: 0 };
  const one = { minute: 1, hour: 1, day: 1 };
  assert.deepEqual(await res.json(), {
    repaired: none, left_recent: one, settle_ms: 600_000,
    rollups: { ok: true, mismatched_rows: none, recent_rows: one },
  });
  // reconcile --rollups --repair by the same rule: nothing settled differs, so nothing to repair, exit 0.
  const cli = await runTollgate(['reconcile', '--rollups', '--repair', '--url', ops.url], { ADMIN_TOKEN: TOKEN, DATA_DIR: ops.dir });
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stderr, /rollups equal the raw events in every settled bucket; 3 row\(s\) in buckets still being written differ \(minute 1, hour 1, day 1\): inserts in flight, not counted\ntollgate reconcile: nothing to repair\n/);
});
