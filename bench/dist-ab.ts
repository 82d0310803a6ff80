// Distributed vs embedded gateway, interleaved in one run (issue 11 outcome 3), for a machine
// whose other load drifts: `npm run bench` measures each scenario once, one after the other, so
// a neighbour's burst lands in one scenario only and the ratio moves by ±50 % between runs. Here
// the targets take turns in short slices (order rotated every round), so drift hits them alike:
//
//   node bench/dist-ab.ts [--concurrency 1] [--rounds 6] [--slice 3] [--base <checkout>]
//
// Targets: `embedded` (services/tollgate all roles, in-memory hot state, chDB), `dist` (a gateway
// process of a deployment with one aggregator `ledger,warehouse` and one control process, Kafka
// and Redis as the test suites find them) and, with `--base <dir>`, `dist-base`: a second gateway
// of the SAME deployment run from another checkout (e.g. the commit before a change, extracted
// with `git archive`, its node_modules beside it), for a before/after in the same run.
// Reported per target: requests, req/s over all its slices, the median over rounds of the
// slice p50 / p99, gateway CPU ms per request (/proc, the gateway process only), and the ratio
// and added p50 / p99 against `embedded` (medians of the per-round differences).
// BENCH_GATEWAY_CPU_PROF=<dir> writes a V8 CPU profile of each distributed gateway when it stops.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { deployment, findServices, removeDeployment, startRole } from './distributed.ts';
import { runLoad, type LoadTarget } from './load.ts';
import { childEnv } from '../test/support/services.ts';
import {
  ADMIN_TOKEN, UPSTREAM_API_KEY, cpuSeconds, createCustomer, freePort, startSimulator, startTollgate, stopAll, waitForIdle,
} from './stack.ts';

const MODEL = 'claude-sonnet-4-5-20250929';

const { values: opts } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '6' },
    slice: { type: 'string', default: '3' },
    base: { type: 'string' },
    'alt-env': { type: 'string' },
  },
});
const concurrency = Number(opts.concurrency);
const rounds = Number(opts.rounds);
const sliceS = Number(opts.slice);
const log = (m: string) => process.stderr.write(`${m}\n`);

/** The bench's request, shortened: same model, 64 output tokens, no cache_control. */
function body(): string {
  return JSON.stringify({
    model: MODEL, max_tokens: 256, stream: false, metadata: { user_id: 'user_bench_0001' },
    system: 'You are a senior software engineer reviewing a pull request. Be concise and concrete.',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Does the new error path leak the hold? Keep it short. [[sim output=64]]' }] }],
  });
}

function target(origin: string, key: string): LoadTarget {
  return {
    origin, path: '/v1/messages', body: body(), stream: false, bodyEndsWith: '}',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': key },
  };
}

/** A gateway process of the deployment, run from another checkout (`--base`). */
async function startBaseGateway(dir: string, env: Record<string, string>): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-base-'));
  const child = spawn(process.execPath, [join(dir, 'services/tollgate/src/main.ts')], {
    cwd: dir, stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...childEnv(), ...env, DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'error',
      ADMIN_TOKEN, UPSTREAM_API_KEY, SHUTDOWN_GRACE_MS: '5000', KEY_MAX_CONCURRENT_REQUESTS: '100000', UPSTREAM_MAX_CONNECTIONS: '4096',
      ...(process.env.BENCH_GATEWAY_CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_GATEWAY_CPU_PROF}` } : {}),
    },
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`base gateway exited (${child.exitCode})`);
    const ok = await request(`${url}/health`).then(async (r) => { await r.body.dump(); return r.statusCode === 200; }, () => false);
    if (ok) break;
    if (i > 600) throw new Error('base gateway not ready after 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, child,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Sends one request until the gateway knows the new key (it learns keys through Redis). */
async function accepted(url: string, key: string): Promise<void> {
  const t = target(url, key);
  for (let i = 0; ; i++) {
    const res = await request(`${url}/v1/messages`, { method: 'POST', headers: t.headers, body: t.body });
    await res.body.dump();
    if (res.statusCode === 200) return;
    if (i > 150) throw new Error(`${url} refused the bench key: HTTP ${res.statusCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Slice { requests: number; sent: number; seconds: number; p50: number; p99: number; cpuS: number | undefined; errors: number }

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const services = await findServices();
  if ('missing' in services) throw new Error(`needs ${services.missing.join(' and ')}`);
  const sim = await startSimulator();
  const embedded = await startTollgate(sim.url);
  const d = deployment(services, 'ab');
  let base: Awaited<ReturnType<typeof startBaseGateway>> | undefined;
  try {
    const aggregator = await startRole(d, sim.url, 'aggregator', 'aggregator', { AGGREGATOR_GROUPS: 'ledger,warehouse' });
    const prof: Record<string, string> = process.env.BENCH_GATEWAY_CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_GATEWAY_CPU_PROF}` } : {};
    const [control, gw] = await Promise.all([
      startRole(d, sim.url, 'control', 'control'),
      startRole(d, sim.url, 'gateway', 'gateway', prof),
    ]);
    // --alt-env K=V,K=V: a third gateway of this tree, with that environment on top (a knob's A/B)
    const altEnv = Object.fromEntries((opts['alt-env'] ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
    const alt = opts['alt-env'] ? await startRole(d, sim.url, 'gateway-alt', 'gateway', { ...prof, ...altEnv }) : undefined;
    if (opts.base) base = await startBaseGateway(opts.base, { ...d.env, TOLLGATE_ROLES: 'gateway', GATEWAY_ID: 'bench-gateway-base', UPSTREAM_URL: sim.url });
    const embKey = (await createCustomer(embedded.url, '100000000')).secret;
    const distKey = (await createCustomer(control.url, '100000000')).secret;
    await accepted(embedded.url, embKey);
    await accepted(gw.url, distKey);
    if (base) await accepted(base.url, distKey);
    if (alt) await accepted(alt.url, distKey);
    const targets = [
      { name: 'embedded', t: target(embedded.url, embKey), pid: embedded.child.pid },
      { name: 'dist', t: target(gw.url, distKey), pid: gw.child.pid },
      ...(base ? [{ name: 'dist-base', t: target(base.url, distKey), pid: base.child.pid }] : []),
      ...(alt ? [{ name: 'dist-alt', t: target(alt.url, distKey), pid: alt.child.pid }] : []),
    ];
    const background = [sim.child.pid, embedded.child.pid, aggregator.child.pid, control.child.pid, gw.child.pid, base?.child.pid, alt?.child.pid];
    const slices = new Map<string, Slice[]>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < targets.length; i++) {
        const tg = targets[(r + i) % targets.length]!;
        // the previous slice's background work (warehouse inserts, ledger debits) must not land in this one
        await waitForIdle(background, 0.1, 300, 10_000);
        const cpu0 = cpuSeconds(tg.pid);
        const res = await runLoad(tg.t, { concurrency, warmupMs: 500, durationMs: sliceS * 1000 });
        const cpu1 = cpuSeconds(tg.pid);
        const s: Slice = {
          requests: res.requests, sent: res.okTotal + res.errorTotal, seconds: res.elapsedS, p50: res.latency.p50, p99: res.latency.p99,
          cpuS: cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0, errors: res.errorTotal,
        };
        slices.get(tg.name)!.push(s);
        log(`round ${r + 1}/${rounds} ${tg.name.padEnd(9)} ${(s.requests / s.seconds).toFixed(0).padStart(6)} req/s  p50 ${s.p50.toFixed(2)}  p99 ${s.p99.toFixed(2)} ms  cpu ${s.cpuS === undefined ? '-' : ((s.cpuS * 1000) / s.sent).toFixed(2)} ms/req  errors ${s.errors}`);
      }
    }
    const emb = slices.get('embedded')!;
    console.log(`interleaved A/B: concurrency ${concurrency}, ${rounds} rounds × ${sliceS} s per target (+0.5 s warmup each), order rotated per round`);
    console.log('target     requests  served  req/s  p50 ms  p99 ms  gw cpu ms/req  ratio vs emb  added p50/p99 ms  errors');
    console.log('requests/req/s = measured (after each slice\'s warmup); served = every request the process answered in its slices, warmup included');
    console.log('(the denominator of gw cpu ms/req); p50/p99 = median over rounds of the slice percentile; added = median of the per-round differences');
    for (const [name, ss] of slices) {
      const req = ss.reduce((n, s) => n + s.requests, 0);
      const secs = ss.reduce((n, s) => n + s.seconds, 0);
      const sent = ss.reduce((n, s) => n + s.sent, 0);
      const cpu = ss.every((s) => s.cpuS !== undefined) ? (ss.reduce((n, s) => n + s.cpuS!, 0) * 1000) / sent : NaN;
      const rate = req / secs;
      const embRate = emb.reduce((n, s) => n + s.requests, 0) / emb.reduce((n, s) => n + s.seconds, 0);
      const addP50 = median(ss.map((s, i) => s.p50 - emb[i]!.p50));
      const addP99 = median(ss.map((s, i) => s.p99 - emb[i]!.p99));
      console.log(`${name.padEnd(9)} ${String(req).padStart(9)} ${String(sent).padStart(7)} ${rate.toFixed(0).padStart(6)} ${median(ss.map((s) => s.p50)).toFixed(2).padStart(7)} ${median(ss.map((s) => s.p99)).toFixed(2).padStart(7)} ${cpu.toFixed(2).padStart(14)} ${(rate / embRate).toFixed(2).padStart(12)}x ${`${addP50 >= 0 ? '+' : ''}${addP50.toFixed(2)}/${addP99 >= 0 ? '+' : ''}${addP99.toFixed(2)}`.padStart(16)} ${String(ss.reduce((n, s) => n + s.errors, 0)).padStart(7)}`);
    }
  } finally {
    await base?.stop();
    await stopAll();
    await removeDeployment(d);
  }
}

main().catch(async (err: unknown) => {
  log(`dist-ab: failed: ${err instanceof Error ? err.message : String(err)}`);
  await stopAll().catch(() => {});
  process.exit(1);
});
