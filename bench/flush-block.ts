// How long one warehouse flush holds the event loop, on an embedded chDB: the synchronous part
// of `storeEvents` before its first query, the synchronous part of the client's `insert` call
// (the values' encoding), and the longest gap between two turns of the loop while the flush
// runs, split by /proc/self/task/<tid>/schedstat into on-CPU, waiting for a CPU, and the rest.
// See `--help` and bench/README.md, "The tail at concurrency 1".
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createChdbClickHouse, Warehouse, type StoreItem } from '@tollgate/warehouse';
import type { UsageEventV2 } from '@tollgate/events';
import { commandLine, numberList, numberValue, runMain } from './cli.ts';
import { median } from './load.ts';

const HELP = `Usage: node bench/flush-block.ts [--events <n>] [--flushes <n>]

Stores --flushes (default 12) batches of --events (default 250, comma-separated for several
sizes) version-2 usage events, shaped as the gateway publishes them, into a fresh chDB
warehouse with Warehouse.storeEvents (what the embedded warehouse sink does per flush), 20 ms
apart, and prints per size the median and minimum (ms) of:
  store sync    storeEvents' synchronous work before it first waits (decoding, rows)
  insert sync   the client's insert call until it returns its promise (encoding the values)
  longest gap   the longest time between two setImmediate turns during the flush
  …on cpu / …waiting for a cpu   that gap's main-thread time running / runnable but not running
                (/proc/self/task/<tid>/schedstat; Linux only)
Run it from a checkout to measure that checkout's warehouse (e.g. a \`git archive\` of the
commit before a change, with its node_modules).

Options:
  --events <n,…>   events per flush, 1 to 1000000, comma-separated for several sizes (default 250)
  --flushes <n>    flushes per size, 1 to 10000 (default 12)
  -h, --help       show this help

Environment: none read (the chDB warehouse lives in a temporary directory, removed at the end).

Example:
  node bench/flush-block.ts --events 250,1000,4000 --flushes 20

Exit status: 0 done, 1 the run failed (chDB did not load, events quarantined), 2 bad usage.`;

/** A usage event as the gateway's settlement builds it (bench/README.md's ~2 KB request). */
function event(id: string, ts: number): UsageEventV2 {
  return {
    type: 'usage', v: 2, event_id: id, ts, account_id: 'acct_flush_block', key_id: 'key_flush_block',
    model: 'claude-sonnet-4-5-20250929', catalog_model: 'claude-sonnet-4-5-20250929', upstream_model: 'claude-sonnet-4-5-20250929',
    served_model: 'claude-sonnet-4-5-20250929',
    quantities: { input: 412, output: 64, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0, web_search_requests: 0, web_fetch_requests: 0, code_execution_seconds: 0 },
    iterations: [], service_tier: 'standard', inference_geo: null, speed: null, stop_reason: 'end_turn', thinking_tokens: null,
    cost_micros: '52704', upstream_cost_micros: '2196', upstream_currency: 'USD', price_version: '9f8027b1475e', price_list: 'default',
    unit_prices: { input: '72000000', output: '360000000', cache_read: '7200000', cache_write_5m: '90000000', cache_write_1h: '144000000', web_search_requests: '240000', web_fetch_requests: '0' },
    tier: null, multipliers: [], unpriced: [], status: 'ok', http_status: 200, latency_ms: 18, ttft_ms: 16, stream: false,
    upstream_request_id: 'req_sim_1', gateway_id: 'bench-flush-block', upstream_id: 'default', attempts: 1,
  } as UsageEventV2;
}

/** [running ms, waiting-for-a-cpu ms] of this process's main thread so far; zeros where /proc is absent. */
function schedstat(): [number, number] {
  try {
    const [run, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ').map(Number);
    return [run! / 1e6, wait! / 1e6];
  } catch {
    return [0, 0];
  }
}


/** Per size: the figures of HELP over `flushes` flushes. */
export async function flushBlock(sizes: number[], flushes: number): Promise<Array<{ events: number; figures: Record<string, number[]> }>> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-flush-block-'));
  const client = createChdbClickHouse({ path: dir });
  // The insert call's synchronous part: from the call until it hands back its promise.
  let insertSync: number[] = [];
  const insert = client.insert.bind(client);
  client.insert = ((params: Parameters<typeof insert>[0]) => {
    const t0 = performance.now();
    const p = insert(params);
    insertSync.push(performance.now() - t0);
    return p;
  }) as typeof client.insert;
  const wh = new Warehouse({ client, database: 'flush_block' });
  try {
    await wh.migrate();
    let seq = 0;
    const out = [];
    for (const n of sizes) {
      const figures: Record<string, number[]> = { 'store sync': [], 'insert sync': [], 'longest gap': [], '…on cpu': [], '…waiting for a cpu': [] };
      for (let f = 0; f < flushes; f++) {
        const now = Date.now();
        const items: StoreItem[] = Array.from({ length: n }, (_, i) => ({
          topic: 'usage', event: event(`req_flush_block_${seq++}`, now - n + i), position: { partition: 0, offset: BigInt(seq) },
        }));
        await new Promise((r) => setTimeout(r, 20));
        insertSync = [];
        let last = performance.now();
        let lastSs = schedstat();
        let gap = [0, 0, 0];
        let running = true;
        const tick = () => {
          const t = performance.now();
          const ss = schedstat();
          if (t - last > gap[0]!) gap = [t - last, ss[0] - lastSs[0], ss[1] - lastSs[1]];
          last = t;
          lastSs = ss;
          if (running) setImmediate(tick);
        };
        setImmediate(tick);
        const t0 = performance.now();
        const stored = wh.storeEvents(items, 'warehouse');
        figures['store sync']!.push(performance.now() - t0);
        const poison = await stored;
        running = false;
        if (poison.length > 0) throw new Error(`${poison.length} events quarantined: ${poison[0]!.reason}`);
        figures['insert sync']!.push(...insertSync);
        figures['longest gap']!.push(gap[0]!);
        figures['…on cpu']!.push(gap[1]!);
        figures['…waiting for a cpu']!.push(gap[2]!);
      }
      out.push({ events: n, figures });
    }
    return out;
  } finally {
    await wh.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = commandLine({ name: 'bench/flush-block', usage: HELP, options: { events: { type: 'string' }, flushes: { type: 'string' } } });
  runMain('bench/flush-block', async () => {
    const sizes = values.events === undefined ? [250] : numberList('--events', values.events, { min: 1, max: 1_000_000, integer: true });
    const flushes = numberValue('--flushes', values.flushes, 12, { min: 1, max: 10_000, integer: true });
    const rows = await flushBlock(sizes, flushes);
    console.log(`ms, median (min) over ${flushes} flushes`);
    for (const { events, figures } of rows) {
      console.log(`${String(events).padStart(6)} events: ${Object.entries(figures).map(([k, v]) => `${k} ${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)})`).join(', ')}`);
    }
    return 0;
  });
}
