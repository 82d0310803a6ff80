// Micro-benchmark of Warehouse.storeEvents (the `warehouse` group's sink) on an embedded chDB in
// a temp dir: N usage events for 50 accounts, stored in batches of --batch, timed end to end.
// node bench/store-events.ts --events 50000 --batch 1000 [--warehouse chdb|server]
// `--warehouse server`: a ClickHouse server (CLICKHOUSE_URL, default http://127.0.0.1:8123), in a
// database of its own dropped at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toV2 } from '@tollgate/events';
import { randomUUID } from 'node:crypto';
import { createChdbClickHouse, createHttpClickHouse, Warehouse } from '@tollgate/warehouse';
import { usageEvent } from './stack.ts';
import { choiceList, commandLine, exitUsage, numberValue, reportUncaught } from './cli.ts';

const USAGE = `Usage: node bench/store-events.ts [options]

Micro-benchmark of Warehouse.storeEvents (the warehouse group's sink): --events usage events
for 50 accounts stored in batches of --batch, timed end to end, then the totals checked. Prints
one line: events, batch size, seconds and events/s. See bench/README.md "Where the warehouse
group's time goes".

Options:
  --events <n>       usage events (default 50000)
  --batch <n>        events per storeEvents call (default 1000)
  --warehouse <w>    chdb (embedded, in a temporary directory) or server (a ClickHouse server,
                     in a database of its own dropped at the end) (default chdb)
  --v1               store v1 events (default: v2, as the gateway publishes them)
  --no-views         diagnostic: drop the rollup views after migrating, to see what they cost
  -h, --help         show this help

Environment:
  CLICKHOUSE_URL     the server for --warehouse server (default http://127.0.0.1:8123)

Example:
  node bench/store-events.ts --events 200000 --batch 20000 --warehouse server

Exit status: 0 done, 1 the run failed (the server unreachable, a count or total wrong), 2 bad usage.`;
const { values } = commandLine({ name: 'bench/store-events', usage: USAGE, options: {
  events: { type: 'string' }, batch: { type: 'string' },
  v1: { type: 'boolean', default: false },
  warehouse: { type: 'string', default: 'chdb' },
  /** diagnostic: drop the rollup views after migrating, to see what they cost (the totals check still holds: raw reads) */
  'no-views': { type: 'boolean', default: false },
} });
let N: number, B: number;
try {
  N = numberValue('--events', values.events, 50_000, { min: 1, max: 100_000_000, integer: true });
  B = numberValue('--batch', values.batch, 1000, { min: 1, max: 10_000_000, integer: true });
  choiceList('--warehouse', values.warehouse, ['chdb', 'server'] as const);
} catch (err) {
  exitUsage('bench/store-events', (err as Error).message);
}
reportUncaught('bench/store-events');
const dir = mkdtempSync(join(tmpdir(), 'store-events-'));
const server = values.warehouse === 'server';
const database = server ? `bench_store_${randomUUID().slice(0, 8)}` : 'tollgate';
const client = server ? createHttpClickHouse({ url: process.env.CLICKHOUSE_URL ?? 'http://127.0.0.1:8123' }) : createChdbClickHouse({ path: dir });
const wh = new Warehouse({ client, database });
try {
  await wh.migrate();
  if (values['no-views']) {
    const views = await (await client.query({ query: "SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView'", format: 'JSONEachRow', query_params: { db: database } })).json<{ name: string }>();
    for (const v of views) await client.command({ query: `DROP TABLE \`${database}\`.\`${v.name}\`` });
  }
  const t0 = Date.now() - N;
  const events = Array.from({ length: N }, (_, i) => (values.v1 ? usageEvent(i, 50, t0 + i) : toV2(usageEvent(i, 50, t0 + i))));
  const start = performance.now();
  for (let i = 0; i < N; i += B) {
    const q = await wh.storeEvents(events.slice(i, i + B).map((event, j) => ({ event, topic: 'usage', position: { partition: 0, offset: BigInt(i + j) } })), 'warehouse');
    if (q.length > 0) throw new Error(`quarantined: ${q[0]!.reason}`);
  }
  const s = (performance.now() - start) / 1000;
  const t = await wh.usageTotals({});
  if (t.requests !== N) throw new Error(`stored ${t.requests} of ${N}`);
  console.log(`${N} events in batches of ${B}: ${s.toFixed(2)} s, ${Math.round(N / s)} events/s`);
} finally {
  if (server) await wh.command(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => {});
  await wh.close();
  rmSync(dir, { recursive: true, force: true });
}
