// The peers section of `npm run bench` (issue 11, outcome 4): Tollgate (embedded, full metering)
// side by side with the Portkey gateway and LiteLLM's proxy in one run, against the same
// simulator; the gateway's event-loop delay, GC pauses and CPU profile; memory per open stream
// and at idle. See bench/README.md "Peers".
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { runLoad, type LoadResult, type LoadTarget } from './load.ts';
import { counted } from './cli.ts';
import type { MemoryReport, ProbeReport, ProfileSummary } from './peers/probe.ts';
import { cpuSeconds, createCustomer, freePort, ROOT, settledBalance, startSimulator, startTollgate, UPSTREAM_API_KEY, type Service, type TollgateService } from './stack.ts';
import { childEnv } from '../test/support/services.ts';

const PEERS_DIR = join(ROOT, 'bench/.peers');
const PORTKEY_START = join(PEERS_DIR, 'portkey/node_modules/@portkey-ai/gateway/build/start-server.js');
const LITELLM_BIN = join(PEERS_DIR, 'litellm-venv/bin/litellm');
const PROBE = join(ROOT, 'bench/peers/probe.ts');
const FLOOR = join(ROOT, 'bench/peers/floor.ts');
const MODEL = 'claude-sonnet-4-5-20250929';
/** LiteLLM refuses to start without a master key (or with a weak one); a fresh strong one per run. */
const LITELLM_MASTER_KEY = `sk-${randomBytes(32).toString('hex')}`;

export interface PeersBenchOptions {
  /** measured seconds per target and phase (throughput, then latency at concurrency 1) */
  durationS: number;
  warmupS: number;
  /** concurrency of the throughput phase */
  concurrency: number;
  /** repetitions of the whole interleaved round (noise band = min–max over them), default 3 */
  reps: number;
  /** streams held open at once for the memory figure, default 1000 */
  streams: number;
  /** the request body (the main bench's ~2 KB Claude-style request) for `stream` */
  body: (stream: boolean) => string;
  log: (line: string) => void;
  signal?: AbortSignal;
}

type TargetName = 'direct' | 'tollgate' | 'floor' | 'portkey' | 'litellm';

/** One repetition's figures of one target. */
export interface PeerRep {
  /** requests/s at `concurrency` */
  rps: number;
  /** ms, time to the last byte at concurrency 1 */
  p50: number;
  p99: number;
  errors: number;
  /** CPU ms per request of the gateway's process (the simulator's for `direct`) over the throughput phase, warmup included; the figure that survives a busy machine */
  cpuMsPerRequest: number | undefined;
}

export interface PeerFigures {
  name: TargetName;
  /** what runs, with its version */
  description: string;
  /** why it was not measured (not installed, failed to start) */
  skipped?: string;
  reps: PeerRep[];
}

export interface MemoryFigures {
  /** the embedded Tollgate after start-up and one account, after a full GC (bytes) */
  idle: MemoryReport & { rssFile: number; rssAnon: number; chdbText: number };
  streams: number;
  /** streams that had received their first event when the sample was taken */
  open: number;
  /** after a full GC with `open` streams in flight, bytes */
  held: MemoryReport;
  /** (held − before) per 1000 open streams, MB (1e6 bytes) */
  rssPer1000MB: number;
  heapPer1000MB: number;
  externalPer1000MB: number;
  /** live JS objects allocated while the streams opened, by allocation site (sampled), largest first */
  liveBySite: Array<{ fn: string; mb: number; pct: number }>;
}

export interface PeersBenchResult {
  concurrency: number;
  durationS: number;
  warmupS: number;
  targets: PeerFigures[];
  /**
   * Event-loop delay (monitorEventLoopDelay, 1 ms resolution) and GC pauses of the Tollgate
   * process, one entry per round: an extra phase at `concurrency` and one at concurrency 1 after
   * the round's compared phases. Watched apart from them, where nothing of the probe runs:
   * watching costs the process CPU and latency of its own (probe.ts), and the peers it is
   * compared with run bare.
   */
  watched: Array<{ throughput: ProbeReport; latency: ProbeReport }>;
  /** CPU profile of the Tollgate process over one extra throughput phase */
  profile?: ProfileSummary;
  memory?: MemoryFigures;
  problems: string[];
}

// ---- processes -------------------------------------------------------------------------------

interface Peer { name: string; url: string; child: ChildProcess; output(): string; stop(): Promise<void> }
const peers = new Set<Peer>();
process.on('exit', () => { for (const p of peers) p.child.kill('SIGKILL'); });

/** A peer gateway as a child process, ready once `readyPath` answers 2xx; stopped with SIGTERM then SIGKILL. */
async function startPeer(name: string, cmd: string, args: string[], env: Record<string, string>, port: number, readyPath: string, cwd: string, cleanup?: () => void): Promise<Peer> {
  const child = spawn(cmd, args, { cwd, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: false });
  let out = '';
  const keep = (c: Buffer) => { out = (out + c.toString('utf8')).slice(-4000); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const peer: Peer = {
    name, url: `http://127.0.0.1:${port}`, child, output: () => out,
    stop: async () => {
      peers.delete(peer);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        if (!await Promise.race([exited.then(() => true), sleep(8000).then(() => false)])) { child.kill('SIGKILL'); await exited; }
      }
      cleanup?.();
    },
  };
  peers.add(peer);
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await peer.stop();
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before it was ready: ${out.slice(-1500)}`);
    }
    try {
      const r = await request(`${peer.url}${readyPath}`, { headersTimeout: 1000, bodyTimeout: 1000 });
      await r.body.arrayBuffer();
      if (r.statusCode < 300) return peer;
    } catch { /* not yet */ }
    if (Date.now() > deadline) { await peer.stop(); throw new Error(`${name} not ready after 120 s: ${out.slice(-1500)}`); }
    await sleep(200);
  }
}

function versionOf(pkgJson: string): string {
  try { return (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version; } catch { return '?'; }
}

async function startPortkey(): Promise<Peer> {
  const port = await freePort();
  // --headless: no UI; NODE_ENV=production: no dev console. Portkey logs nothing per request then.
  return startPeer('portkey', process.execPath, [PORTKEY_START, '--headless', `--port=${port}`], { NODE_ENV: 'production' }, port, '/', join(PEERS_DIR, 'portkey'));
}

/** The bare Node forwarder (bench/peers/floor.ts): node:http + undici, nothing else; part of the repository, always measured. */
async function startFloor(upstream: string): Promise<Peer> {
  const port = await freePort();
  return startPeer('floor', process.execPath, [FLOOR], { FLOOR_PORT: String(port), FLOOR_UPSTREAM: upstream }, port, '/health', ROOT);
}

async function startLitellm(simulatorUrl: string): Promise<Peer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-litellm-'));
  // One deployment of the model pointing at the simulator; no master key, database, cache or
  // callbacks: LiteLLM's leanest proxy configuration, one worker (as Tollgate is one process).
  writeFileSync(join(dir, 'config.yaml'), [
    'model_list:',
    `  - model_name: ${MODEL}`,
    '    litellm_params:',
    `      model: anthropic/${MODEL}`,
    `      api_base: ${simulatorUrl}`,
    `      api_key: ${UPSTREAM_API_KEY}`,
    'general_settings:',
    `  master_key: ${LITELLM_MASTER_KEY}`,
    'litellm_settings:',
    '  telemetry: false',
    '  turn_off_message_logging: true',
    '',
  ].join('\n'));
  return startPeer('litellm', LITELLM_BIN, ['--config', join(dir, 'config.yaml'), '--host', '127.0.0.1', '--port', String(port), '--num_workers', '1'],
    { LITELLM_LOG: 'ERROR', LITELLM_TELEMETRY: 'False', DISABLE_SCHEMA_UPDATE: 'true', NO_DOCS: 'True' }, port, '/health/liveliness', dir,
    () => rmSync(dir, { recursive: true, force: true }));
}

// ---- the probe in the Tollgate process ----------------------------------------------------------

async function probe<T>(probeUrl: string, path: string, method: 'GET' | 'POST' = 'GET'): Promise<T> {
  const r = await request(`${probeUrl}${path}`, { method, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`probe ${path}: ${r.statusCode} ${text}`);
  return JSON.parse(text) as T;
}

/** RssFile / RssAnon of /proc/<pid>/status and the resident part of libchdb.so's mappings, bytes. */
function residentSplit(pid: number): { rssFile: number; rssAnon: number; chdbText: number } {
  const kb = (re: RegExp, text: string) => Number(re.exec(text)?.[1] ?? 0) * 1024;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  let chdbText = 0;
  try {
    // smaps: a header line per mapping, then "Rss: N kB"; sum those of libchdb.so.
    let inChdb = false;
    for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inChdb = line.includes('libchdb');
      else if (inChdb && line.startsWith('Rss:')) chdbText += kb(/Rss:\s+(\d+)/, line);
    }
  } catch { /* smaps unreadable: leave 0 */ }
  return { rssFile: kb(/RssFile:\s+(\d+)/, status), rssAnon: kb(/RssAnon:\s+(\d+)/, status), chdbText };
}

// ---- the run -----------------------------------------------------------------------------------

function loadTarget(name: TargetName, url: string, key: string, body: string, stream = false): LoadTarget {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' };
  if (name === 'portkey') {
    headers['x-portkey-provider'] = 'anthropic';
    headers['x-portkey-custom-host'] = `${key}/v1`; // here: the simulator's origin
    headers['x-api-key'] = UPSTREAM_API_KEY;
  } else if (name === 'litellm') {
    headers.authorization = `Bearer ${LITELLM_MASTER_KEY}`;
  } else {
    // direct, floor (forwards x-api-key to the simulator) and tollgate (the customer's key)
    headers['x-api-key'] = key;
  }
  return { origin: url, path: '/v1/messages', headers, body, stream, bodyEndsWith: stream ? 'data: {"type":"message_stop"}' : '}' };
}

/**
 * Runs the peers section: starts the simulator, the embedded Tollgate (with the probe), Portkey
 * and LiteLLM when installed (`bash bench/peers/install.sh`), then `reps` interleaved rounds of
 * (throughput at `concurrency`, latency at concurrency 1) per target, one profiled Tollgate
 * throughput phase, and the memory figures. Never throws for a peer that cannot start: it is
 * reported as skipped, with the reason.
 */
export async function runPeersBench(o: PeersBenchOptions): Promise<PeersBenchResult> {
  const result: PeersBenchResult = { concurrency: o.concurrency, durationS: o.durationS, warmupS: o.warmupS, targets: [], watched: [], problems: [] };
  const started: Array<Service | Peer> = [];
  try {
    const simulator = await startSimulator();
    started.push(simulator);
    const probePort = await freePort();
    const probeUrl = `http://127.0.0.1:${probePort}`;
    const tollgate: TollgateService = await startTollgate(simulator.url, {
      // BENCH_TOLLGATE_NODE_OPTIONS: extra flags for Tollgate alone (GC experiments, e.g. --max-semi-space-size=32).
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${process.env.BENCH_TOLLGATE_NODE_OPTIONS ?? ''} --import ${PROBE}`.replace(/\s+/g, ' ').trim(), BENCH_PROBE_PORT: String(probePort),
    }, 'tollgate (peers)');
    started.push(tollgate);
    const customer = await createCustomer(tollgate.url, '1000000000');

    const idleMem = await probe<MemoryReport>(probeUrl, '/memory');
    const idle = { ...idleMem, ...residentSplit(tollgate.child.pid!) };

    const jsonBody = o.body(false);
    const targets: Array<{ fig: PeerFigures; target?: LoadTarget; pid?: number }> = [];
    targets.push({ fig: { name: 'direct', description: 'the simulator, no gateway', reps: [] }, target: loadTarget('direct', simulator.url, UPSTREAM_API_KEY, jsonBody), pid: simulator.child.pid });
    targets.push({ fig: { name: 'tollgate', description: 'Tollgate embedded (full metering: holds, ledger, journal, chDB warehouse)', reps: [] }, target: loadTarget('tollgate', tollgate.url, customer.secret, jsonBody), pid: tollgate.child.pid });
    {
      // The floor of any Node gateway: in the repository, so it is always there to measure.
      const fig: PeerFigures = { name: 'floor', description: 'a bare Node forwarder (bench/peers/floor.ts: node:http + undici, no auth, no metering, no logging): the floor of any Node gateway', reps: [] };
      try {
        const floor = await startFloor(simulator.url);
        started.push(floor);
        targets.push({ fig, target: loadTarget('floor', floor.url, UPSTREAM_API_KEY, jsonBody), pid: floor.child.pid });
      } catch (err) {
        fig.skipped = `could not start: ${(err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 400)}`;
        o.log(`bench: peers: floor skipped (${fig.skipped})`);
        targets.push({ fig });
      }
    }
    for (const name of ['portkey', 'litellm'] as const) {
      const installed = name === 'portkey' ? existsSync(PORTKEY_START) : existsSync(LITELLM_BIN);
      // the version only when installed (a missing peer has none to read)
      const version = !installed ? '' : ` ${name === 'portkey' ? versionOf(join(PEERS_DIR, 'portkey/node_modules/@portkey-ai/gateway/package.json')) : litellmVersion()}`;
      const description = name === 'portkey'
        ? `Portkey gateway${version} (npm @portkey-ai/gateway, headless, custom host)`
        : `LiteLLM proxy${version} (PyPI litellm[proxy], 1 worker, /v1/messages, no database)`;
      const fig: PeerFigures = { name, description, reps: [] };
      if (!installed) {
        fig.skipped = 'not installed: run `bash bench/peers/install.sh`';
        o.log(`bench: peers: ${name} skipped (${fig.skipped})`);
        targets.push({ fig });
        continue;
      }
      try {
        o.log(`bench: peers: starting ${name}`);
        const peer = name === 'portkey' ? await startPortkey() : await startLitellm(simulator.url);
        started.push(peer);
        const t = loadTarget(name, peer.url, simulator.url, jsonBody);
        // One request must succeed before it is measured (configuration errors show here).
        const check = await request(`${t.origin}${t.path}`, { method: 'POST', headers: t.headers, body: t.body });
        const text = await check.body.text();
        if (check.statusCode !== 200 || !text.includes('"usage"')) throw new Error(`a first request answered ${check.statusCode}: ${text.slice(0, 300)}`);
        targets.push({ fig, target: t, pid: peer.child.pid });
      } catch (err) {
        fig.skipped = `could not start or proxy: ${(err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 400)}`;
        o.log(`bench: peers: ${name} skipped (${fig.skipped})`);
        targets.push({ fig });
      }
    }
    result.targets = targets.map((t) => t.fig);

    const warmupMs = o.warmupS * 1000;
    const durationMs = o.durationS * 1000;
    const tg = targets.find((t) => t.fig.name === 'tollgate')!.target!;
    // Two more Tollgate phases per round, watched (event-loop delay, GC pauses); not part of the
    // compared figures: watching costs the process CPU and latency of its own (probe.ts).
    const watchedPhase = async (rep: number, concurrency: number): Promise<ProbeReport> => {
      o.log(`bench: peers: round ${rep}/${o.reps}: Tollgate's event-loop delay and GC at concurrency ${concurrency}`);
      await probe(probeUrl, '/reset?watch=on', 'POST');
      await runLoad(tg, { concurrency, warmupMs: 0, durationMs, signal: o.signal });
      const report = await probe<ProbeReport>(probeUrl, '/report');
      await probe(probeUrl, '/reset', 'POST');
      return report;
    };
    for (let rep = 1; rep <= o.reps; rep++) {
      for (const { fig, target, pid } of targets) {
        if (!target || o.signal?.aborted) continue;
        o.log(`bench: peers: round ${rep}/${o.reps}: ${fig.name} at concurrency ${o.concurrency}`);
        const cpu0 = cpuSeconds(pid);
        const thr: LoadResult = await runLoad(target, { concurrency: o.concurrency, warmupMs, durationMs, signal: o.signal });
        const cpu1 = cpuSeconds(pid);
        const sent = thr.okTotal + thr.errorTotal;
        const cpuMsPerRequest = cpu0 !== undefined && cpu1 !== undefined && sent > 0 ? ((cpu1 - cpu0) * 1000) / sent : undefined;
        o.log(`bench: peers: round ${rep}/${o.reps}: ${fig.name} at concurrency 1`);
        const lat: LoadResult = await runLoad(target, { concurrency: 1, warmupMs, durationMs, signal: o.signal });
        const errors = thr.errors + lat.errors;
        if (thr.errorRate > 0.01 || lat.errorRate > 0.01) result.problems.push(`${fig.name} round ${rep}: error rate above 1 % (${thr.errors} + ${lat.errors}; ${[...thr.errorSamples ?? []].slice(0, 2).join('; ')})`);
        fig.reps.push({ rps: thr.throughput, p50: lat.latency.p50, p99: lat.latency.p99, errors, cpuMsPerRequest });
      }
      if (o.signal?.aborted) continue;
      const throughput = await watchedPhase(rep, o.concurrency);
      const latency = await watchedPhase(rep, 1);
      // An aborted run's phases were cut short: their figures would describe nothing.
      if (!o.signal?.aborted) result.watched.push({ throughput, latency });
    }

    // One more Tollgate throughput phase under the CPU profiler (not part of the figures above).
    if (!o.signal?.aborted) {
      o.log('bench: peers: Tollgate under the CPU profiler');
      await probe(probeUrl, '/profile/start', 'POST');
      await runLoad(tg, { concurrency: o.concurrency, warmupMs: 0, durationMs, signal: o.signal });
      result.profile = await probe<ProfileSummary>(probeUrl, '/profile/stop', 'POST');
    }

    // Peers are done: only the simulator and Tollgate take part in the memory figure.
    for (const p of started.splice(2)) await p.stop();
    if (!o.signal?.aborted) result.memory = await memoryPerStream(o, tollgate, probeUrl, customer.secret, idle);
    // Every hold of the aborted streams must settle before the process is stopped (and billing is exact).
    await settledBalance(tollgate.url, customer.accountId).catch(() => undefined);
  } finally {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
  }
  return result;
}

let litellmVersionCache: string | undefined;
function litellmVersion(): string {
  if (litellmVersionCache) return litellmVersionCache;
  try {
    const lib = join(PEERS_DIR, 'litellm-venv/lib');
    const py = readdirSafe(lib).find((d) => d.startsWith('python'));
    const dist = py ? readdirSafe(join(lib, py, 'site-packages')).find((d) => /^litellm-[\d.]+\.dist-info$/.test(d)) : undefined;
    litellmVersionCache = dist ? /^litellm-([\d.]+)\.dist-info$/.exec(dist)![1]! : '?';
  } catch { litellmVersionCache = '?'; }
  return litellmVersionCache;
}
function readdirSafe(dir: string): string[] {
  try { return readdirSync(dir); } catch { return []; }
}

/**
 * Memory per open stream: `streams` streaming requests held open at once by a paced upstream
 * (`[[sim output=64 tps=2]]`: 32 s per stream, a delta every 0.5 s), sampled once every stream
 * has its first event, after a full GC, against the same process before them.
 */
async function memoryPerStream(o: PeersBenchOptions, tollgate: TollgateService, probeUrl: string, key: string, idle: MemoryFigures['idle']): Promise<MemoryFigures> {
  const body = o.body(true).replace('[[sim output=64]]', '[[sim output=64 tps=2]]');
  // Let the throughput phases' garbage and the warehouse's inserts settle first.
  await sleep(3000);
  const before = await probe<MemoryReport>(probeUrl, '/memory');
  await probe(probeUrl, '/live/start', 'POST');
  const agent = new Agent({ connections: o.streams, pipelining: 0, keepAliveTimeout: 1000 });
  const abort = new AbortController();
  let open = 0;
  o.log(`bench: peers: holding ${o.streams} streams open`);
  const streams = Array.from({ length: o.streams }, async () => {
    try {
      const r = await request(`${tollgate.url}/v1/messages`, {
        method: 'POST', dispatcher: agent, signal: abort.signal,
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': key }, body,
      });
      let first = true;
      for await (const _ of r.body) { if (first) { first = false; open++; } }
    } catch { /* aborted below */ }
  });
  const deadline = Date.now() + 20_000;
  while (open < o.streams && Date.now() < deadline) await sleep(100);
  await sleep(1000);
  const openNow = open;
  const held = await probe<MemoryReport>(probeUrl, '/memory');
  const liveBySite = await probe<MemoryFigures['liveBySite']>(probeUrl, '/live/stop', 'POST');
  abort.abort();
  await Promise.allSettled(streams);
  await agent.destroy();
  const per = (a: number, b: number) => Math.round(((a - b) / openNow) * 1000 / 1e4) / 100;
  return {
    idle, streams: o.streams, open: openNow, held, liveBySite,
    rssPer1000MB: per(held.rss, before.rss), heapPer1000MB: per(held.heapUsed, before.heapUsed), externalPer1000MB: per(held.external, before.external),
  };
}

// ---- report ------------------------------------------------------------------------------------

const band = (xs: number[], digits: number) => {
  if (xs.length === 0) return '-';
  const lo = Math.min(...xs), hi = Math.max(...xs);
  return lo.toFixed(digits) === hi.toFixed(digits) ? lo.toFixed(digits) : `${lo.toFixed(digits)}–${hi.toFixed(digits)}`;
};
const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;

/** The peers section as text: one table, the ratios, the tail, the profile and memory. */
export function peersReport(r: PeersBenchResult): string {
  const lines: string[] = [];
  lines.push(`peers: one run against the same simulator, ${counted(r.targets[0]?.reps.length ?? 0, 'interleaved round')} (figures are min–max over the rounds); ` +
    `throughput at concurrency ${r.concurrency}, latency at concurrency 1; warmup ${r.warmupS} s + ${r.durationS} s per phase; non-streaming ~2 KB requests`);
  const direct = r.targets.find((t) => t.name === 'direct');
  const rows: string[][] = [['target', 'req/s', 'cpu ms/req', 'p50 ms', 'p99 ms', 'added p50 ms', 'added p99 ms', 'errors']];
  for (const t of r.targets) {
    if (t.skipped) { rows.push([t.name, `skipped: ${t.skipped}`]); continue; }
    const added = (k: 'p50' | 'p99') => t.name === 'direct' || !direct ? '-' : band(t.reps.map((x, i) => x[k] - (direct.reps[i]?.[k] ?? NaN)), 2);
    rows.push([t.name, band(t.reps.map((x) => x.rps), 0), band(t.reps.flatMap((x) => x.cpuMsPerRequest ?? []), 3), band(t.reps.map((x) => x.p50), 2), band(t.reps.map((x) => x.p99), 2), added('p50'), added('p99'), String(t.reps.reduce((n, x) => n + x.errors, 0))]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.filter((row) => row.length > 2).map((row) => (row[i] ?? '').length)));
  for (const row of rows) lines.push(row.length === 2 ? `${row[0]!.padEnd(widths[0]!)}  ${row[1]}` : row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
  for (const t of r.targets) lines.push(`  ${t.name}: ${t.description}`);
  lines.push('  (cpu ms/req: of the gateway process, of the simulator for direct; warmup included)');
  const tg = r.targets.find((t) => t.name === 'tollgate');
  // both as a ÷ b per round: req/s above 1 = a serves more; CPU per request below 1 = a spends less
  const ratio = (a: PeerFigures, b: PeerFigures) => `req/s ${band(a.reps.map((x, i) => x.rps / (b.reps[i]?.rps ?? NaN)), 2)}× (per round); ` +
    `CPU per request ${band(a.reps.map((x, i) => (x.cpuMsPerRequest ?? NaN) / (b.reps[i]?.cpuMsPerRequest ?? NaN)), 2)}× (below 1: less)`;
  for (const peer of r.targets.filter((t) => (t.name === 'floor' || t.name === 'portkey' || t.name === 'litellm') && !t.skipped)) {
    lines.push(`Tollgate ÷ ${peer.name}: ${ratio(tg!, peer)}`);
  }
  const floor = r.targets.find((t) => t.name === 'floor' && !t.skipped);
  const portkey = r.targets.find((t) => t.name === 'portkey' && !t.skipped);
  if (floor && portkey) lines.push(`floor ÷ portkey: ${ratio(floor, portkey)} (the most a gateway on Node's HTTP stack reaches against Portkey here)`);
  const watched = r.watched;
  if (watched.length > 0) {
    lines.push(`Tollgate process, event-loop delay (monitorEventLoopDelay, 1 ms resolution) and GC pauses, over two extra phases per round (min–max over ${watched.length}; watching is off in the compared phases above: it has a cost of its own):`);
    for (const [label, k] of [[`concurrency ${r.concurrency}`, 'throughput'], ['concurrency 1', 'latency']] as const) {
      const p = (f: (x: ProbeReport) => number) => band(watched.map((w) => f(w[k])), 1);
      lines.push(`  ${label}: delay p50 ${p((x) => x.eld.p50)} ms, p99 ${p((x) => x.eld.p99)} ms, max ${p((x) => x.eld.max)} ms; ` +
        `GC ${p((x) => x.gc.count)} pauses, ${p((x) => x.gc.totalMs)} ms total (${p((x) => (x.gc.totalMs / x.windowMs) * 100)} % of the time), longest ${p((x) => x.gc.maxMs)} ms`);
    }
  }
  if (r.profile) {
    lines.push(`Tollgate CPU profile over one extra throughput phase (${r.profile.totalMs} ms sampled), self time by area:`);
    lines.push(`  ${r.profile.areas.slice(0, 12).map((a) => `${a.area} ${a.pct}%`).join(', ')}`);
    lines.push('  top functions by self time:');
    for (const f of r.profile.top.slice(0, 12)) lines.push(`    ${f.pct.toFixed(1).padStart(5)}%  ${f.fn}`);
    if (r.profile.allocations) {
      lines.push('  top allocators (sampling heap profiler, bytes allocated, collected objects included):');
      for (const a of r.profile.allocations.slice(0, 10)) lines.push(`    ${a.pct.toFixed(1).padStart(5)}%  ${String(a.mb).padStart(7)} MB  ${a.fn}`);
    }
  }
  if (r.memory) {
    const m = r.memory;
    lines.push(`Tollgate memory at idle (after start-up and one account, full GC): RSS ${mb(m.idle.rss)} = file-backed ${mb(m.idle.rssFile)} ` +
      `(of which libchdb.so mapped pages ${mb(m.idle.chdbText)}) + anonymous ${mb(m.idle.rssAnon)}; JS heap used ${mb(m.idle.heapUsed)}, external ${mb(m.idle.external)}`);
    lines.push(`Tollgate memory per 1000 open streams (${m.open} of ${m.streams} open, paced upstream): RSS ${m.rssPer1000MB >= 0 ? '+' : ''}${m.rssPer1000MB} MB, JS heap ${m.heapPer1000MB >= 0 ? '+' : ''}${m.heapPer1000MB} MB, external ${m.externalPer1000MB >= 0 ? '+' : ''}${m.externalPer1000MB} MB`);
    lines.push('  what the open streams hold (live JS objects by allocation site, sampled):');
    for (const a of m.liveBySite.slice(0, 10)) lines.push(`    ${a.pct.toFixed(1).padStart(5)}%  ${String(a.mb).padStart(6)} MB  ${a.fn}`);
  }
  for (const p of r.problems) lines.push(`problem: ${p}`);
  return lines.join('\n');
}

// Run directly (`node bench/peers.ts`): say what to run instead of silently doing nothing.
if (import.meta.main) (await import('./cli.ts')).notACommand(import.meta, 'npm run bench -- --peers-only (see npm run bench -- --help)');
