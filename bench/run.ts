// `npm run bench`: what Tollgate adds on top of calling the upstream directly, for
// non-streaming and streaming traffic, in one run. See bench/README.md.
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { runLoad, type LoadResult, type LoadTarget, type Summary } from './load.ts';
import {
  cpuSeconds, createCustomer, killAllNow, machineBusySeconds, settledBalance, startSimulator, startTollgate, stopAll,
  waitForIdle, whenServiceDies, ServiceFailure,
  UPSTREAM_API_KEY, type Service, type TollgateService,
} from './stack.ts';

const HELP = `Usage: npm run bench -- [options]

Measures the latency and throughput Tollgate adds in front of an Anthropic-compatible upstream
(the simulator, with no artificial latency), by running the same closed-loop load against the
simulator directly and through the gateway. The simulator and Tollgate each run in their own
child process; the load generator runs in this one. All three share this machine's cores.

Options:
  --duration <s>       measured seconds per scenario (default 8)
  --warmup <s>         unmeasured seconds before each scenario (default 2)
  --concurrency <n>    concurrent requests = connections (default 32)
  --scenarios <a,b>    scenarios to run (default all): SCENARIO_NAMES
  --json               print the result as JSON on stdout (progress still goes to stderr)
  -h, --help           show this help

Exit status: 0 ok, 1 the run failed (error rate above 1%, metering mismatch, a service
failed), 2 bad usage.`;

// ---- scenarios -----------------------------------------------------------------------------

/** Everything a scenario may point its load at; grows as new modes arrive (Kafka, Redis, …). */
interface BenchContext {
  simulator: Service;
  gateway: TollgateService | undefined;
  /** the customer key for the gateway */
  customerKey: string;
}

interface Scenario {
  name: string;
  description: string;
  /** services it needs besides the simulator */
  needsGateway: boolean;
  target(ctx: BenchContext): LoadTarget;
}

interface Comparison {
  label: string;
  baseline: string;
  subject: string;
}

const MODEL = 'claude-sonnet-4-5-20250929';
const OUTPUT_TOKENS = 64;
// Sonnet 4.5 in libs/pricing/catalogs/cny.json: ¥7.20 / ¥36.00 per million input / output
// tokens at 10 credits per ¥, i.e. 72 and 360 micro-credits per token.
const INPUT_MICROS_PER_TOKEN = 72n;
const OUTPUT_MICROS_PER_TOKEN = 360n;

/**
 * A ~2 KB Claude-style request: system prompt, a short multi-turn conversation, metadata, and
 * the simulator directive asking for exactly 64 output tokens. No `cache_control`, so every
 * request reports the same usage and costs the same.
 */
function requestBody(stream: boolean): string {
  const system = [
    'You are a senior software engineer helping a colleague review a pull request in a TypeScript',
    'monorepo. Be concise and concrete: point at the exact file and line, explain why a change is',
    'risky, and suggest the smallest fix. Prefer standard library APIs over new dependencies. When',
    'you are unsure, say so and describe what you would check. Never invent APIs that do not exist.',
  ].join(' ');
  const diff = [
    'diff --git a/libs/ledger/src/memory-balance-store.ts b/libs/ledger/src/memory-balance-store.ts',
    '@@ -41,9 +41,12 @@ export class MemoryBalanceStore implements BalanceStore {',
    '-  async settle(holdId: string, _accountId: string, actual: bigint): Promise<void> {',
    '-    const hold = this.#holds.get(holdId);',
    '+  async settle(holdId: string, accountId: string, actual: bigint): Promise<void> {',
    '+    const hold = this.#holds.get(holdId);',
    '+    if (!hold) throw new LedgerError(`unknown hold ${holdId} for ${accountId}`);',
    '     hold.amount = actual < hold.amount ? actual : hold.amount;',
    '+    this.#touch(accountId);',
  ].join('\n');
  return JSON.stringify({
    model: MODEL,
    max_tokens: 256,
    stream,
    system,
    metadata: { user_id: 'user_bench_0001' },
    temperature: 0.2,
    messages: [
      { role: 'user', content: [{ type: 'text', text: `Here is the change I am about to merge:\n\n${diff}\n\nDoes the new error path leak the hold?` }] },
      { role: 'assistant', content: [{ type: 'text', text: 'It does not leak it, but it throws before the hold is shrunk, so the caller must release it. Where is settle called from, and does that caller catch?' }] },
      { role: 'user', content: [{ type: 'text', text: 'It is called from the gateway metering step after the upstream finished, inside a try/finally that releases the hold on error. Anything else I should look at before merging? Keep it short. [[sim output=64]]' }] },
    ],
  });
}

function target(origin: string, key: string, stream: boolean): LoadTarget {
  return {
    origin,
    path: '/v1/messages',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': key },
    body: requestBody(stream),
    stream,
    // The last event of a complete stream; a JSON message ends with its usage object.
    bodyEndsWith: stream ? 'data: {"type":"message_stop"}' : '}',
  };
}

const SCENARIOS: Scenario[] = [
  {
    name: 'direct-json', description: 'simulator directly, non-streaming', needsGateway: false,
    target: (c) => target(c.simulator.url, UPSTREAM_API_KEY, false),
  },
  {
    name: 'gateway-json', description: 'through Tollgate, non-streaming', needsGateway: true,
    target: (c) => target(c.gateway!.url, c.customerKey, false),
  },
  {
    name: 'direct-stream', description: 'simulator directly, SSE', needsGateway: false,
    target: (c) => target(c.simulator.url, UPSTREAM_API_KEY, true),
  },
  {
    name: 'gateway-stream', description: 'through Tollgate, SSE', needsGateway: true,
    target: (c) => target(c.gateway!.url, c.customerKey, true),
  },
];

const COMPARISONS: Comparison[] = [
  { label: 'json', baseline: 'direct-json', subject: 'gateway-json' },
  { label: 'stream', baseline: 'direct-stream', subject: 'gateway-stream' },
];

// ---- CLI -----------------------------------------------------------------------------------

class UsageError extends Error {}

interface Options {
  durationS: number;
  warmupS: number;
  concurrency: number;
  scenarios: Scenario[];
  json: boolean;
}

function parseOptions(argv: string[]): Options | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        duration: { type: 'string' },
        warmup: { type: 'string' },
        concurrency: { type: 'string' },
        scenarios: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const v = parsed.values;
  if (v.help) return 'help';
  const num = (name: string, raw: string | undefined, fallback: number, min: number, max: number, integer: boolean) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new UsageError(`--${name}: expected a${integer ? 'n integer' : ' number'} from ${min} to ${max}, got "${raw}"`);
    }
    return n;
  };
  const durationS = num('duration', v.duration, 8, 0.1, 3600, false);
  const warmupS = num('warmup', v.warmup, 2, 0, 3600, false);
  const concurrency = num('concurrency', v.concurrency, 32, 1, 4096, true);
  let scenarios = SCENARIOS;
  if (v.scenarios !== undefined) {
    const names = v.scenarios.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
    if (names.length === 0 || unknown.length > 0) {
      throw new UsageError(`--scenarios: unknown ${unknown.join(', ') || '(none)'}; expected any of ${SCENARIOS.map((s) => s.name).join(', ')}`);
    }
    // Keep the canonical order, so a baseline always runs before what is compared to it.
    scenarios = SCENARIOS.filter((s) => names.includes(s.name));
  }
  return { durationS, warmupS, concurrency, scenarios, json: v.json ?? false };
}

// ---- measurement helpers ------------------------------------------------------------------

interface ScenarioResult extends LoadResult {
  name: string;
  description: string;
  /** CPU milliseconds per request (warmup included) of each process over the scenario */
  cpuMsPerRequest: { loadgen?: number | undefined; simulator?: number | undefined; gateway?: number | undefined };
  /** cores used by processes other than ours during the scenario (noise on a shared machine) */
  otherCores: number | undefined;
}

/** The simulator's input token count for our body, and a check that it honours the directive. */
async function probeUsage(simUrl: string): Promise<{ inputTokens: number; outputTokens: number }> {
  const res = await request(`${simUrl}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': UPSTREAM_API_KEY },
    body: requestBody(false),
  });
  const json = (await res.body.json()) as { usage?: { input_tokens?: number; output_tokens?: number } };
  const inputTokens = json.usage?.input_tokens;
  const outputTokens = json.usage?.output_tokens;
  if (res.statusCode !== 200 || typeof inputTokens !== 'number' || typeof outputTokens !== 'number') {
    throw new Error(`probe request to the simulator failed: HTTP ${res.statusCode} ${JSON.stringify(json)}`);
  }
  if (outputTokens !== OUTPUT_TOKENS) throw new Error(`simulator reported ${outputTokens} output tokens, expected ${OUTPUT_TOKENS}`);
  return { inputTokens, outputTokens };
}

// ---- report -------------------------------------------------------------------------------

const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(2));
const signed = (v: number) => (Number.isNaN(v) ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}`);

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

interface ComparisonResult {
  label: string;
  baseline: string;
  subject: string;
  /** time to last byte, subject − baseline, ms */
  addedP50Ms: number;
  addedP99Ms: number;
  /** time to first byte, streams only */
  addedTtfbP50Ms: number | undefined;
  addedTtfbP99Ms: number | undefined;
  /** subject req/s ÷ baseline req/s */
  throughputRatio: number;
}

function compare(results: ScenarioResult[]): ComparisonResult[] {
  const out: ComparisonResult[] = [];
  for (const c of COMPARISONS) {
    const a = results.find((r) => r.name === c.baseline);
    const b = results.find((r) => r.name === c.subject);
    if (!a || !b) continue;
    const diff = (x: Summary | undefined, y: Summary | undefined, k: 'p50' | 'p99') => (x && y ? y[k] - x[k] : undefined);
    out.push({
      ...c,
      addedP50Ms: b.latency.p50 - a.latency.p50,
      addedP99Ms: b.latency.p99 - a.latency.p99,
      addedTtfbP50Ms: diff(a.ttfb, b.ttfb, 'p50'),
      addedTtfbP99Ms: diff(a.ttfb, b.ttfb, 'p99'),
      throughputRatio: b.throughput / a.throughput,
    });
  }
  return out;
}

function report(header: string, results: ScenarioResult[], comparisons: ComparisonResult[], metering: string | undefined): string {
  const lines = [header, ''];
  lines.push(table([
    ['scenario', 'requests', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'ttfb p50', 'ttfb p90', 'ttfb p99', 'errors', 'cpu ms/req gen/sim/gw', 'other cores'],
    ...results.map((r) => [
      r.name, String(r.requests), r.throughput.toFixed(0),
      ms(r.latency.p50), ms(r.latency.p90), ms(r.latency.p99),
      ms(r.ttfb?.p50), ms(r.ttfb?.p90), ms(r.ttfb?.p99),
      String(r.errors),
      [r.cpuMsPerRequest.loadgen, r.cpuMsPerRequest.simulator, r.cpuMsPerRequest.gateway].map((v) => (v === undefined ? '-' : v.toFixed(2))).join('/'),
      r.otherCores === undefined ? '-' : r.otherCores.toFixed(2),
    ]),
  ]));
  lines.push(
    'latency ms = time to last byte (body read in full); ttfb = time to the first body byte (streams);',
    'cpu ms/req = CPU time per request of the load generator / simulator / Tollgate over warmup + measure;',
    'other cores = CPU used meanwhile by processes that are not part of the benchmark (0 on a quiet machine).',
  );
  if (comparisons.length) {
    lines.push('', 'gateway vs direct (latency = time to last byte; the body is read in full)');
    lines.push(table([
      ['traffic', 'added p50 ms', 'added p99 ms', 'added ttfb p50', 'added ttfb p99', 'throughput gw/direct'],
      ...comparisons.map((c) => [
        c.label, signed(c.addedP50Ms), signed(c.addedP99Ms),
        c.addedTtfbP50Ms === undefined ? '-' : signed(c.addedTtfbP50Ms),
        c.addedTtfbP99Ms === undefined ? '-' : signed(c.addedTtfbP99Ms),
        `${c.throughputRatio.toFixed(2)}x`,
      ]),
    ]));
  }
  const busiest = Math.max(0, ...results.map((r) => r.otherCores ?? 0));
  if (busiest > 0.2) {
    lines.push('', `note: other processes on this machine used up to ${busiest.toFixed(2)} cores during the run; the figures are disturbed.`);
  }
  if (metering) lines.push('', metering);
  return lines.join('\n');
}

// ---- main ---------------------------------------------------------------------------------

const log = (line: string) => process.stderr.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseOptions(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\nTry --help.\n`);
      return 2;
    }
    throw err;
  }
  if (options === 'help') {
    process.stdout.write(`${HELP.replace('SCENARIO_NAMES', SCENARIOS.map((s) => s.name).join(', '))}\n`);
    return 0;
  }

  const abort = new AbortController();
  let died: ServiceFailure | undefined;
  whenServiceDies((service, status) => {
    died ??= new ServiceFailure(`${service.name} exited unexpectedly (${status}) during the run; its last output:\n${service.output() || '(none)'}`);
    abort.abort();
  });
  process.once('SIGINT', () => {
    log('bench: interrupted; stopping services');
    abort.abort();
    void stopAll().finally(() => process.exit(130));
  });

  const needsGateway = options.scenarios.some((s) => s.needsGateway);
  log('bench: starting the simulator' + (needsGateway ? ' and Tollgate' : '') + ' (child processes)');
  const simulator = await startSimulator();
  const gateway = needsGateway ? await startTollgate(simulator.url) : undefined;
  const probe = await probeUsage(simulator.url);
  const perRequestMicros = BigInt(probe.inputTokens) * INPUT_MICROS_PER_TOKEN + BigInt(OUTPUT_TOKENS) * OUTPUT_MICROS_PER_TOKEN;
  let customer: { accountId: string; secret: string; balance: bigint } | undefined;
  if (gateway) customer = await createCustomer(gateway.url, '100000000');
  log(`bench: simulator ${simulator.url}${gateway ? `, tollgate ${gateway.url}` : ''}; ${probe.inputTokens} input + ${OUTPUT_TOKENS} output tokens per request`);

  const ctx: BenchContext = { simulator, gateway, customerKey: customer?.secret ?? '' };
  const results: ScenarioResult[] = [];
  let failed = false;
  for (const scenario of options.scenarios) {
    if (abort.signal.aborted) break;
    // Tollgate keeps working after a run (ledger, warehouse inserts into chDB); that must not
    // steal the cores from the next scenario.
    const idle = await waitForIdle([simulator.child.pid, gateway?.child.pid]);
    if (!idle.idle) log(`bench: services still busy (${(idle.load * 100).toFixed(0)}% of a core) after ${idle.waitedS.toFixed(1)} s; starting anyway`);
    else if (idle.waitedS >= 1) log(`bench: waited ${idle.waitedS.toFixed(1)} s for the services to go idle`);
    log(`bench: ${scenario.name} (${scenario.description}): warmup ${options.warmupS} s, measure ${options.durationS} s, concurrency ${options.concurrency}`);
    const pids = { loadgen: process.pid, simulator: simulator.child.pid, gateway: gateway?.child.pid };
    const cpuBefore = { loadgen: cpuSeconds(pids.loadgen), simulator: cpuSeconds(pids.simulator), gateway: cpuSeconds(pids.gateway) };
    const machineBefore = machineBusySeconds();
    const wallBefore = performance.now();
    const result = await runLoad(scenario.target(ctx), {
      concurrency: options.concurrency,
      warmupMs: options.warmupS * 1000,
      durationMs: options.durationS * 1000,
      signal: abort.signal,
      onProgress: (p) => log(`  ${scenario.name.padEnd(15)} ${p.phase.padEnd(7)} ${String(p.elapsedS).padStart(3)} s  done ${String(p.done).padStart(7)}  ${p.rate.toFixed(0).padStart(6)} req/s  errors ${p.errors}`),
    });
    const wallS = (performance.now() - wallBefore) / 1000;
    const machineAfter = machineBusySeconds();
    const total = result.okTotal + result.errorTotal;
    let ours = 0;
    const used = (before: number | undefined, pid: number | undefined) => {
      const after = cpuSeconds(pid);
      if (before === undefined || after === undefined) return undefined;
      ours += after - before;
      return total === 0 ? undefined : ((after - before) * 1000) / total;
    };
    const cpuMsPerRequest = {
      loadgen: used(cpuBefore.loadgen, pids.loadgen),
      simulator: used(cpuBefore.simulator, pids.simulator),
      gateway: used(cpuBefore.gateway, pids.gateway),
    };
    const otherCores = machineBefore === undefined || machineAfter === undefined
      ? undefined
      : Math.max(0, (machineAfter - machineBefore - ours) / wallS);
    results.push({ name: scenario.name, description: scenario.description, ...result, cpuMsPerRequest, otherCores });
    if (otherCores !== undefined && otherCores > 0.2) {
      log(`  ${scenario.name}: other processes on this machine used ${otherCores.toFixed(2)} cores meanwhile; the figures are disturbed`);
    }
    log(`  ${scenario.name}: ${result.requests} requests, ${result.throughput.toFixed(0)} req/s, p50 ${ms(result.latency.p50)} ms, p99 ${ms(result.latency.p99)} ms, errors ${result.errors}`);
    if (result.errorRate > 0.01) {
      log(`bench: ${scenario.name} error rate ${(result.errorRate * 100).toFixed(2)}% is above 1%; e.g.\n    ${result.errorSamples.join('\n    ')}`);
      failed = true;
    } else if (result.errorSamples.length) {
      log(`  ${scenario.name}: some errors, e.g. ${result.errorSamples[0]}`);
    }
  }
  if (died) throw died;
  if (abort.signal.aborted) return 130;

  let metering: { ok: boolean; requests: number; expectedMicros: string; actualMicros: string; message: string } | undefined;
  if (gateway && customer) {
    log('bench: waiting for holds to settle');
    const gw = results.filter((r) => options.scenarios.find((s) => s.name === r.name)?.needsGateway);
    const requests = gw.reduce((n, r) => n + r.okTotal, 0);
    const errors = gw.reduce((n, r) => n + r.errorTotal, 0);
    const expected = BigInt(requests) * perRequestMicros;
    const after = await settledBalance(gateway.url, customer.accountId);
    const actual = customer.balance - after;
    const ok = actual === expected;
    const message = ok
      ? `metering check: ok (${requests} requests, ${actual} micro-credits)`
      : `metering check: FAILED: balance dropped by ${actual} micro-credits, expected ${requests} requests × ${perRequestMicros} = ${expected}` +
        (errors ? ` (${errors} failed requests may have been partly charged)` : '');
    metering = { ok, requests, expectedMicros: expected.toString(), actualMicros: actual.toString(), message };
    if (!ok) failed = true;
  }

  const comparisons = compare(results);
  const cores = availableParallelism();
  const header = `Tollgate bench: node ${process.version}, ${cores} CPU${cores === 1 ? '' : 's'} (${cpus()[0]?.model.trim() ?? 'unknown'}) ` +
    `shared by the load generator, Tollgate and the simulator; concurrency ${options.concurrency}, ` +
    `warmup ${options.warmupS} s + ${options.durationS} s per scenario; ${probe.inputTokens} in / ${OUTPUT_TOKENS} out tokens per request; ` +
    'percentiles exact (nearest rank over all samples)';
  if (options.json) {
    process.stdout.write(`${JSON.stringify({
      node: process.version, cpus: cores, concurrency: options.concurrency, warmupS: options.warmupS, durationS: options.durationS,
      inputTokens: probe.inputTokens, outputTokens: OUTPUT_TOKENS, perRequestMicros: perRequestMicros.toString(),
      scenarios: results, comparisons, metering, ok: !failed,
    }, null, 2)}\n`);
  } else {
    process.stdout.write(`${report(header, results, comparisons, metering?.message)}\n`);
  }
  if (metering && !metering.ok) log(`bench: ${metering.message}`);
  return failed ? 1 : 0;
}

process.on('exit', killAllNow);
main(process.argv.slice(2)).then(
  async (code) => {
    await stopAll();
    process.exit(code);
  },
  async (err: unknown) => {
    log(`bench: failed: ${err instanceof ServiceFailure ? err.message : err instanceof Error ? err.stack ?? err.message : String(err)}`);
    await stopAll().catch(() => undefined);
    process.exit(1);
  },
);
