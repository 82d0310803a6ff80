// The warehouse consumer's own CPU per usage event, with ClickHouse out of the picture: a Kafka
// value (JSON bytes) through JSON.parse and Warehouse.storeEvents (decodeEvent, then
// insertUsage's row building), the client answering at once. With --base, another checkout's
// warehouse library runs in the same process, taking turns with this one, so the machine's
// drift hits both alike.
// See bench/README.md "The warehouse consumer's rows, A/B in one process".
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { Warehouse, type StoreItem } from '@tollgate/warehouse';
import { benchUsageEvent } from './stack.ts';
import { commandLine, exitUsage, numberValue, runMain } from './cli.ts';

const USAGE = `Usage: node bench/usage-rows.ts [options]

CPU µs per usage event of the warehouse consumer's own work: the event's JSON bytes through
JSON.parse and Warehouse.storeEvents, as the warehouse group calls it (decodeEvent, the rows,
rollup_skip marks, token, body),
with a ClickHouse client that answers at once (the existence check finds nothing; the body is
read and dropped). No services needed. Version 2 events for 1,000 accounts over one hour, in
insert batches of --batch. The first two rounds are warm-up and not counted.

Options:
  --events <n>   events per round, 1 to 10000000 (default 100000)
  --batch <n>    events per storeEvents call, 1 to 1000000 (default 10000)
  --rounds <n>   rounds, 3 to 1000; with --base each round runs both, order alternating
                 (default 12)
  --format <f>   the usage insert's body: native (what a ClickHouse server gets) or json
                 (JSONCompactEachRow, what chDB gets) (default native)
  --base <dir>   another checkout (e.g. git worktree add /tmp/base HEAD~1): its
                 libs/warehouse runs beside this tree's in the same process, asked for the
                 same --format (a checkout from before 2026-12-02 writes json whatever is
                 asked); the bodies both build are compared byte for byte (default none)
  -h, --help     show this help

Prints one line per target on stdout: mean CPU µs per event over the counted rounds, min-max.

Example:
  node bench/usage-rows.ts --base /tmp/base --rounds 20

Exit status: 0 done, 1 the run failed (a body differs from the base's, a module not found), 2 bad usage.`;

const { values } = commandLine({ name: 'bench/usage-rows', usage: USAGE, options: {
  events: { type: 'string' }, batch: { type: 'string' }, rounds: { type: 'string' }, base: { type: 'string' },
  format: { type: 'string' },
} });
let FORMAT: 'native' | 'json' = 'native';
let N: number, B: number, ROUNDS: number;
try {
  N = numberValue('--events', values.events, 100_000, { min: 1, max: 10_000_000, integer: true });
  B = numberValue('--batch', values.batch, 10_000, { min: 1, max: 1_000_000, integer: true });
  ROUNDS = numberValue('--rounds', values.rounds, 12, { min: 3, max: 1000, integer: true });
  if (values.format !== undefined) {
    if (values.format !== 'native' && values.format !== 'json') throw new Error(`--format must be native or json, got ${JSON.stringify(values.format)}`);
    FORMAT = values.format;
  }
  if (values.base !== undefined && !existsSync(resolve(values.base, 'libs/warehouse/src/index.ts'))) {
    throw new Error(`--base ${values.base}: no libs/warehouse/src/index.ts there`);
  }
} catch (err) {
  exitUsage('bench/usage-rows', (err as Error).message);
}

type WarehouseClass = typeof Warehouse;

/** A Warehouse of `W` on a client that answers at once; `sink` gets each insert body, as sent. */
function stubbed(W: WarehouseClass, sink: (body: Buffer) => void): Warehouse {
  const client = {
    query: async () => ({ json: async () => [] }),
    exec: async (p: { values: Readable }) => {
      const chunks: Buffer[] = [];
      for await (const c of p.values) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
      sink(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      return { stream: Readable.from([]) };
    },
    command: async () => {},
  };
  return new W({ client: client as never, insertFormat: FORMAT });
}

runMain('bench/usage-rows', async () => {
  const now = Date.now();
  const bytes = Array.from({ length: N }, (_, k) => Buffer.from(JSON.stringify(benchUsageEvent(2, k, 1000, now - 3_600_000 + Math.floor(k * 3_600_000 / N)))));
  const targets: Array<{ name: string; w: Warehouse; perEvent: number[]; firstBodies: Buffer[] }> = [];
  const add = (name: string, W: WarehouseClass) => {
    const t = { name, w: undefined as unknown as Warehouse, perEvent: [] as number[], firstBodies: [] as Buffer[] };
    t.w = stubbed(W, (body) => { if (t.firstBodies.length < 3) t.firstBodies.push(body); });
    targets.push(t);
  };
  add('this tree', Warehouse);
  if (values.base !== undefined) {
    const mod = await import(pathToFileURL(resolve(values.base, 'libs/warehouse/src/index.ts')).href) as { Warehouse: WarehouseClass };
    add(`base (${values.base})`, mod.Warehouse);
  }
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const c0 = process.cpuUsage();
      for (let i = 0; i < N; i += B) {
        const items: StoreItem[] = [];
        for (let k = i; k < Math.min(N, i + B); k++) {
          items.push({ event: JSON.parse(bytes[k]!.toString('utf8')), topic: 'usage', position: { partition: k % 8, offset: BigInt(k) } });
        }
        const poison = await t.w.storeEvents(items, 'warehouse');
        if (poison.length > 0) throw new Error(`${poison.length} events quarantined: ${poison[0]!.reason}`);
      }
      const c = process.cpuUsage(c0);
      if (r >= 2) t.perEvent.push((c.user + c.system) / N);
    }
    process.stderr.write(`  round ${r + 1}/${ROUNDS}${r < 2 ? ' (warm-up)' : ''}\n`);
  }
  for (const t of targets) {
    const mean = t.perEvent.reduce((a, b) => a + b, 0) / t.perEvent.length;
    console.log(`${t.name.padEnd(24)} ${mean.toFixed(2)} µs/event (${Math.min(...t.perEvent).toFixed(2)}-${Math.max(...t.perEvent).toFixed(2)}) over ${t.perEvent.length} rounds of ${N} events`);
  }
  if (targets.length === 2 && !Buffer.concat(targets[0]!.firstBodies).equals(Buffer.concat(targets[1]!.firstBodies))) {
    process.stderr.write('bench/usage-rows: the insert bodies differ from the base\'s\n');
    return 1;
  }
  return 0;
});
