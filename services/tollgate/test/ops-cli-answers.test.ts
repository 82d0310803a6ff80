// What `tollgate reconcile` and `tollgate rebuild` say on stderr about a report or an error
// answer, against a stand-in for the operator API that answers exactly what the real one
// answers in those states (the shapes of services/aggregator/src/ops-routes.ts). The real
// routes are covered by cli-admin.test.ts; these states (a settled rollup mismatch, a rebuild
// refused) are hard to make on a real stack.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runTollgate } from '../../../test/support/cli.ts';

const TOKEN = 'admin-token-0123456789abcdef';

test('reconcile and rebuild on stderr: a settled rollup mismatch is named per grain with the repair command (rows of buckets still being written only reported), exit 1; a rebuild error answer names its type and message, exit 1', async () => {
  // Kind: a failed check summarised as "0 difference(s)", and an error shown as its status alone.
  const report = {
    ok: false, accounts: 2, differences: [], positions: {}, quarantined: [],
    rollups: { ok: false, mismatched_rows: { minute: 1, hour: 2, day: 0 }, recent_rows: { minute: 3, hour: 0, day: 1 }, settle_ms: 600_000 },
  };
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/ops/v1/reconcile')) {
      res.writeHead(409, { 'content-type': 'application/json' }).end(JSON.stringify(report));
    } else {
      res.writeHead(503, { 'content-type': 'application/json' })
        .end(JSON.stringify({ type: 'error', error: { type: 'api_error', code: 'warehouse_unavailable', message: 'The warehouse (ClickHouse) is not answering; retry shortly' } }));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const env = { ADMIN_TOKEN: TOKEN, TOLLGATE_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
    const rec = await runTollgate(['reconcile', '--rollups'], env);
    assert.equal(rec.code, 1);
    assert.deepEqual(JSON.parse(rec.stdout), report);
    assert.equal(rec.stderr.split('\n').slice(1).join('\n'), [
      'tollgate reconcile: hot state and warehouse agree on the balances of 2 accounts (every account with a credit or usage)',
      'tollgate reconcile: rollups differ from the raw events in 3 row(s) of settled buckets (minute 1, hour 2, day 0); repair with tollgate reconcile --rollups --repair; 4 row(s) in buckets still being written differ (minute 3, hour 0, day 1): inserts in flight, not counted',
      '',
    ].join('\n'));
    const rebuilt = await runTollgate(['rebuild'], env);
    assert.equal(rebuilt.code, 1);
    assert.match(rebuilt.stderr, /\ntollgate rebuild: failed \(503 api_error\): The warehouse \(ClickHouse\) is not answering; retry shortly\n$/);
  } finally {
    server.close();
  }
});
