// `npm run bench`: what Tollgate adds on top of calling the upstream directly, for
// non-streaming and streaming traffic, in one run. See bench/README.md.
import { availableParallelism, cpus, loadavg } from 'node:os';
import { request } from 'undici';
import { runLoad, type LoadResult, type LoadTarget, type Summary } from './load.ts';
import {
  applyFullAdmission, cpuSeconds, createCustomer, killAllNow, localServicePids, machineBusySeconds, settledBalance, startSimulator, startTollgate, stopAll,
  waitForIdle, whenServiceDies, ServiceFailure,
  UPSTREAM_API_KEY, type Service, type TollgateService,
} from './stack.ts';
import {
  deployment, findServices, LagProbe, redisHostPort, measureConsumers, redisCommandCalls, redisRoundTrips, type RoundTrips, removeAllDeployments, removeDeployment, startRole, warehouseTotals,
  KAFKA_PARTITIONS, WAREHOUSE_FLUSH_MS, type ConsumerFigures, type LagFigures, type Services,
} from './distributed.ts';
import { analyticsEvents, analyticsReport, runAnalyticsBench, type AnalyticsBenchResult } from './analytics.ts';
import { poolReport, runPoolBench, type PoolBenchResult } from './pool.ts';
import { measureConsumerGroups, type ConsumerBenchResult } from './consumers.ts';
import { runDistAb, type DistAbResult } from './dist-ab.ts';
import { consumerRepsReport, distAbReport, issue11Targets, targetsReport, type TargetRow } from './targets.ts';
import { peersReport, runPeersBench, type PeersBenchResult } from './peers.ts';
import { choiceList, commandLine, counted, exitUsage, numberValue, UsageError } from './cli.ts';
import { fixKafkajsRequestQueue } from '@tollgate/events';

const HELP = `Usage: npm run bench -- [options]

Measures the latency and throughput Tollgate adds in front of an Anthropic-compatible upstream
(the simulator, with no artificial latency), by running the same closed-loop load against the
simulator directly and through the gateway. The simulator and Tollgate each run in their own
child process; the load generator runs in this one. All three share this machine's cores.

When Kafka and Redis are reachable (KAFKA_BROKERS / REDIS_URL, else 127.0.0.1:9092 / :6379 as
started by \`bash deploy/services.sh up\`), the same run also measures distributed mode:
consumer throughput per consumer process (warehouse, ledger), the lag from a response to its
balance debit in Redis and to its row in the warehouse, and the gateway-json/-stream load
through a distributed gateway process, as a ratio to the embedded one.

Options:
  --duration <s>       measured seconds per scenario, 0.1 to 3600 (default 8)
  --warmup <s>         unmeasured seconds before each scenario, 0 to 3600 (default 2)
  --concurrency <n>    concurrent requests = connections, 1 to 4096 (default 32)
  --scenarios <a,b>    scenarios to run (default all): SCENARIO_NAMES
  --events <n>         usage events for the single-pass consumer rows, 1 to 10000000 (default
                       30000); the repeated consumer section (bench/consumers.ts) uses
                       BENCH_CONSUMER_EVENTS (default 1000000; 0 skips it)
  --lag-samples <n>    requests followed for the lag figures, 1 to 100000 (default 200)
  --embedded-only      skip everything that needs Kafka and Redis
  --analytics-events <n>  usage events for the analytics and billing section, 10000 to
                       1000000000 (default BENCH_ANALYTICS_EVENTS, else 10000000; about 8
                       minutes at 10M)
  --skip-analytics     skip the analytics and billing section
  --analytics-only     run only the analytics and billing section (no simulator, no Tollgate)
  --skip-pool          skip the upstream-pool section (selection, affinity, failover; about 1 minute)
  --pool-only          run only the upstream-pool section (its own simulators and Tollgate)
  --skip-peers         skip the peers section (Tollgate vs Portkey and LiteLLM, event-loop delay,
                       memory per open stream; about 4 minutes; install peers: bash bench/peers/install.sh)
  --peers-only         run only the peers section
  --peer-reps <n>      repetitions of the peers section's round, 1 to 20 (noise band; default 3)
  --dist-rounds <n>    rounds of the interleaved distributed-vs-embedded section, at concurrency 1
                       and at --concurrency, 0 to 50 (noise band; default 4; 0 skips the section)
  --consumer-reps <n>  repetitions of the 1M-event consumer throughput, 1 to 20 (noise band; default 2)
  --require-services   fail (exit 1) instead of skipping when Kafka or Redis is missing
  --json               print the result as JSON on stdout (progress still goes to stderr)
  -h, --help           show this help

Progress and warnings go to stderr; the report (or --json) to stdout.

Environment:
  KAFKA_BROKERS, REDIS_URL  Kafka and Redis for the distributed sections (default
                       127.0.0.1:9092, redis://127.0.0.1:6379 when they answer)
  CLICKHOUSE_URL       a ClickHouse server for the consumer section's warehouse (default
                       http://127.0.0.1:8123 when it answers; else chDB only)
  BENCH_CONSUMER_EVENTS  events of the repeated consumer section (default 1000000; 0 skips it)
  BENCH_ANALYTICS_EVENTS events of the analytics section when --analytics-events is not given
  BENCH_TOLLGATE_NODE_OPTIONS  extra Node flags for the peers section's Tollgate process
  BENCH_GATEWAY_CPU_PROF a directory for V8 CPU profiles of the distributed gateways

Examples:
  npm run bench -- --duration 2 --warmup 1 --events 5000 --skip-analytics   # quick
  npm run -s bench -- --json > result.json   # -s: npm prints no banner on stdout

Exit status: 0 ok, 1 the run failed (error rate above 1%, metering mismatch, a service
failed, Kafka or Redis missing with --require-services), 2 bad usage, 130 interrupted.`;

// ---- scenarios -----------------------------------------------------------------------------

/** Everything a scenario may point its load at. */
interface BenchContext {
  simulator: Service;
  gateway: TollgateService | undefined;
  /** the customer key for the gateway */
  customerKey: string;
  /** a gateway process of the distributed deployment (Kafka, Redis), and its customer key */
  distGateway?: TollgateService | undefined;
  distCustomerKey?: string;
  /** keys of a second account on the full admission path (applyFullAdmission), embedded and distributed */
  admissionKey?: string;
  distAdmissionKey?: string;
}

interface Scenario {
  name: string;
  description: string;
  /** what it needs besides the simulator: the embedded Tollgate, or the distributed deployment */
  needs: 'simulator' | 'gateway' | 'distributed';
  /** loads the full-admission account's key (its own metering check) instead of the plain one */
  admission?: boolean;
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
    name: 'direct-json', description: 'simulator directly, non-streaming', needs: 'simulator',
    target: (c) => target(c.simulator.url, UPSTREAM_API_KEY, false),
  },
  {
    name: 'gateway-json', description: 'through Tollgate, non-streaming', needs: 'gateway',
    target: (c) => target(c.gateway!.url, c.customerKey, false),
  },
  {
    name: 'direct-stream', description: 'simulator directly, SSE', needs: 'simulator',
    target: (c) => target(c.simulator.url, UPSTREAM_API_KEY, true),
  },
  {
    name: 'gateway-stream', description: 'through Tollgate, SSE', needs: 'gateway',
    target: (c) => target(c.gateway!.url, c.customerKey, true),
  },
  {
    name: 'gateway-json-admission', description: 'through Tollgate, non-streaming, key on the full admission path', needs: 'gateway', admission: true,
    target: (c) => target(c.gateway!.url, c.admissionKey!, false),
  },
  {
    name: 'dist-gateway-json', description: 'through a distributed gateway process (Redis, Kafka), non-streaming', needs: 'distributed',
    target: (c) => target(c.distGateway!.url, c.distCustomerKey!, false),
  },
  {
    name: 'dist-gateway-stream', description: 'through a distributed gateway process (Redis, Kafka), SSE', needs: 'distributed',
    target: (c) => target(c.distGateway!.url, c.distCustomerKey!, true),
  },
  {
    name: 'dist-gateway-json-admission', description: 'through a distributed gateway process, non-streaming, key on the full admission path', needs: 'distributed', admission: true,
    target: (c) => target(c.distGateway!.url, c.distAdmissionKey!, false),
  },
];

/** the full admission path (issue 8 item 9) against the plain gateway, same run */
const ADMISSION_COMPARISONS = [
  { label: 'embedded', plain: 'gateway-json', admission: 'gateway-json-admission' },
  { label: 'distributed', plain: 'dist-gateway-json', admission: 'dist-gateway-json-admission' },
];

/** Redis commands per request of a distributed scenario, from INFO commandstats before and after it. */
interface RedisPerRequest {
  scenario: string;
  /** every request the scenario sent, warmup included */
  requests: number;
  /** Σ calls over INFO commandstats (commands run inside a Lua script included), all clients */
  commandsPerRequest: number;
  /** EVAL / EVALSHA / FCALL: one client round trip each, whatever the script does */
  scriptsPerRequest: number;
  /** commands per request by name, top ones */
  top: Array<[string, number]>;
}

const COMPARISONS: Comparison[] = [
  { label: 'json', baseline: 'direct-json', subject: 'gateway-json' },
  { label: 'stream', baseline: 'direct-stream', subject: 'gateway-stream' },
];

/** distributed gateway vs the embedded one (and both vs the upstream directly) */
const DIST_COMPARISONS = [
  { label: 'json', direct: 'direct-json', embedded: 'gateway-json', distributed: 'dist-gateway-json' },
  { label: 'stream', direct: 'direct-stream', embedded: 'gateway-stream', distributed: 'dist-gateway-stream' },
];

/** sequential requests per key under Redis MONITOR */
const ROUND_TRIP_REQUESTS = 100;
const DEFAULT_EVENTS = 30_000;
const DEFAULT_LAG_SAMPLES = 200;
/** the lag run: steady traffic, not saturation */
const LAG_CONCURRENCY = 8;
const LAG_WARMUP_MS = 1000;
const LAG_DURATION_MS = 10_000;
const LAG_POLL_MS = 5;

// ---- CLI -----------------------------------------------------------------------------------

interface Options {
  durationS: number;
  warmupS: number;
  concurrency: number;
  scenarios: Scenario[];
  events: number;
  lagSamples: number;
  embeddedOnly: boolean;
  requireServices: boolean;
  json: boolean;
  /** the analytics and billing section (bench/analytics.ts): events, or 0 to skip it */
  analyticsEvents: number;
  analyticsOnly: boolean;
  /** the upstream-pool section (bench/pool.ts): skipped, or the only one */
  skipPool: boolean;
  poolOnly: boolean;
  /** the peers section (bench/peers.ts): skipped, or the only one; its repetitions */
  skipPeers: boolean;
  peersOnly: boolean;
  peerReps: number;
  /** the interleaved distributed-vs-embedded section (bench/dist-ab.ts): rounds per concurrency, 0 skips it */
  distRounds: number;
  /** repetitions of bench/consumers.ts' throughput (the first also runs its latency phases) */
  consumerReps: number;
}

function parseOptions(argv: string[]): Options {
  // -h/--help prints HELP and exits 0; a bad command line is one line on stderr, exit 2 (bench/cli.ts).
  const parsed = commandLine({
    name: 'bench',
    usage: HELP.replace('SCENARIO_NAMES', SCENARIOS.map((s) => s.name).join(', ')),
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      concurrency: { type: 'string' },
      scenarios: { type: 'string' },
      events: { type: 'string' },
      'lag-samples': { type: 'string' },
      'embedded-only': { type: 'boolean' },
      'require-services': { type: 'boolean' },
      'analytics-events': { type: 'string' },
      'skip-analytics': { type: 'boolean' },
      'analytics-only': { type: 'boolean' },
      'skip-pool': { type: 'boolean' },
      'pool-only': { type: 'boolean' },
      'skip-peers': { type: 'boolean' },
      'peers-only': { type: 'boolean' },
      'peer-reps': { type: 'string' },
      'dist-rounds': { type: 'string' },
      'consumer-reps': { type: 'string' },
      json: { type: 'boolean' },
    },
  }, argv);
  const v = parsed.values;
  // every numeric option through the shared check (bench/cli.ts): one message shape, `_` as a digit separator
  const num = (name: string, raw: string | undefined, fallback: number, min: number, max: number, integer: boolean) =>
    numberValue(`--${name}`, raw, fallback, { min, max, integer });
  const durationS = num('duration', v.duration, 8, 0.1, 3600, false);
  const warmupS = num('warmup', v.warmup, 2, 0, 3600, false);
  const concurrency = num('concurrency', v.concurrency, 32, 1, 4096, true);
  let scenarios = SCENARIOS;
  if (v.scenarios !== undefined) {
    // the shared list check (an empty entry is unknown like any other)
    const names = choiceList('--scenarios', v.scenarios, SCENARIOS.map((s) => s.name));
    // Keep the canonical order, so a baseline always runs before what is compared to it.
    scenarios = SCENARIOS.filter((s) => names.includes(s.name));
  }
  const events = num('events', v.events, DEFAULT_EVENTS, 1, 10_000_000, true);
  const lagSamples = num('lag-samples', v['lag-samples'], DEFAULT_LAG_SAMPLES, 1, 100_000, true);
  const embeddedOnly = v['embedded-only'] ?? false;
  const requireServices = v['require-services'] ?? false;
  if (embeddedOnly && requireServices) throw new UsageError('--embedded-only and --require-services contradict each other');
  if (v['skip-analytics'] && v['analytics-only']) throw new UsageError('--skip-analytics and --analytics-only contradict each other');
  if (v['skip-pool'] && v['pool-only']) throw new UsageError('--skip-pool and --pool-only contradict each other');
  if (v['pool-only'] && v['analytics-only']) throw new UsageError('--pool-only and --analytics-only contradict each other');
  if (v['skip-peers'] && v['peers-only']) throw new UsageError('--skip-peers and --peers-only contradict each other');
  if (v['peers-only'] && (v['pool-only'] || v['analytics-only'])) throw new UsageError('--peers-only and --pool-only / --analytics-only contradict each other');
  let analyticsEventCount: number;
  try {
    analyticsEventCount = v['skip-analytics'] ? 0 : analyticsEvents(v['analytics-events']);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  // read where the consumer section runs (Number(...)): a typo would otherwise be NaN events
  const consumerEvents = process.env.BENCH_CONSUMER_EVENTS;
  if (consumerEvents !== undefined && !/^\d*$/.test(consumerEvents)) throw new UsageError(`BENCH_CONSUMER_EVENTS: expected a whole number of events (0 skips the section), got "${consumerEvents}"`);
  return {
    durationS, warmupS, concurrency, scenarios, events, lagSamples, embeddedOnly, requireServices, json: v.json ?? false,
    analyticsEvents: analyticsEventCount, analyticsOnly: v['analytics-only'] ?? false,
    skipPool: v['skip-pool'] ?? false, poolOnly: v['pool-only'] ?? false,
    skipPeers: v['skip-peers'] ?? false, peersOnly: v['peers-only'] ?? false, peerReps: num('peer-reps', v['peer-reps'], 3, 1, 20, true),
    distRounds: num('dist-rounds', v['dist-rounds'], 4, 0, 50, true), consumerReps: num('consumer-reps', v['consumer-reps'], 2, 1, 20, true),
  };
}

// ---- measurement helpers ------------------------------------------------------------------

interface ScenarioResult extends LoadResult {
  name: string;
  description: string;
  /**
   * CPU milliseconds per request (warmup included) of each process over the scenario: loadgen,
   * simulator, gateway; for distributed scenarios also aggregator, control, kafka, redis
   */
  cpuMsPerRequest: Record<string, number | undefined>;
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

interface DistComparison {
  label: string;
  embedded: string;
  distributed: string;
  embeddedRps: number;
  distributedRps: number;
  /** distributed req/s ÷ embedded req/s */
  throughputRatio: number;
  embeddedP50Ms: number;
  embeddedP99Ms: number;
  distributedP50Ms: number;
  distributedP99Ms: number;
  /** distributed − direct, when the direct scenario ran */
  addedP50Ms: number | undefined;
  addedP99Ms: number | undefined;
}

function compareDistributed(results: ScenarioResult[]): DistComparison[] {
  const out: DistComparison[] = [];
  for (const c of DIST_COMPARISONS) {
    const e = results.find((r) => r.name === c.embedded);
    const d = results.find((r) => r.name === c.distributed);
    const direct = results.find((r) => r.name === c.direct);
    if (!e || !d) continue;
    out.push({
      label: c.label, embedded: c.embedded, distributed: c.distributed,
      embeddedRps: e.throughput, distributedRps: d.throughput, throughputRatio: d.throughput / e.throughput,
      embeddedP50Ms: e.latency.p50, embeddedP99Ms: e.latency.p99,
      distributedP50Ms: d.latency.p50, distributedP99Ms: d.latency.p99,
      addedP50Ms: direct ? d.latency.p50 - direct.latency.p50 : undefined,
      addedP99Ms: direct ? d.latency.p99 - direct.latency.p99 : undefined,
    });
  }
  return out;
}

interface AdmissionComparison {
  label: string;
  plain: string;
  admission: string;
  plainP50Ms: number;
  plainP99Ms: number;
  admissionP50Ms: number;
  admissionP99Ms: number;
  /** admission − plain, time to last byte, ms */
  addedP50Ms: number;
  addedP99Ms: number;
}

function compareAdmission(results: ScenarioResult[]): AdmissionComparison[] {
  const out: AdmissionComparison[] = [];
  for (const c of ADMISSION_COMPARISONS) {
    const p = results.find((r) => r.name === c.plain);
    const a = results.find((r) => r.name === c.admission);
    if (!p || !a) continue;
    out.push({
      ...c, plainP50Ms: p.latency.p50, plainP99Ms: p.latency.p99, admissionP50Ms: a.latency.p50, admissionP99Ms: a.latency.p99,
      addedP50Ms: a.latency.p50 - p.latency.p50, addedP99Ms: a.latency.p99 - p.latency.p99,
    });
  }
  return out;
}

function admissionReport(comparisons: AdmissionComparison[], redis: RedisPerRequest[], roundTrips: DistributedResult['roundTrips']): string {
  if (!comparisons.length && !redis.length && !roundTrips.length) return '';
  const lines = ['full admission path (plan with every window, key and account spend limits, ip_allowlist, allowed_models) vs the plain key, same run'];
  if (comparisons.length) {
    lines.push(table([
      ['mode', 'plain p50/p99 ms', 'admission p50/p99 ms', 'added p50 ms', 'added p99 ms'],
      ...comparisons.map((c) => [c.label, `${ms(c.plainP50Ms)}/${ms(c.plainP99Ms)}`, `${ms(c.admissionP50Ms)}/${ms(c.admissionP99Ms)}`, signed(c.addedP50Ms), signed(c.addedP99Ms)]),
    ]));
  }
  if (redis.length) {
    lines.push('', 'Redis commands per request (INFO commandstats before and after the scenario, warmup included; every client of that Redis counts)');
    lines.push(table([
      ['scenario', 'requests', 'commands/req', 'EVAL/EVALSHA/FCALL per req', 'top commands per req'],
      ...redis.map((r) => [r.scenario, String(r.requests), r.commandsPerRequest.toFixed(2), r.scriptsPerRequest.toFixed(2),
        r.top.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')]),
    ]));
    lines.push('commands/req includes the commands a Lua script runs inside Redis, the settle after the response and the publish path;',
      'not split into before/after forwarding (commandstats has no per-request timing).');
  }
  if (roundTrips.length) {
    lines.push('', `Redis round trips of the distributed gateway process per request (${roundTrips[0]!.requests} sequential streaming requests per key under MONITOR; aim: admission in at most 2)`);
    lines.push(table([
      ['key', 'gateway cmds/req', 'before headers', 'of which scripts', 'inside Lua', 'aggregator+control', 'gateway commands per req'],
      ...roundTrips.map((r) => [r.key, r.gatewayCommandsPerRequest.toFixed(2), r.gatewayBeforeHeadersPerRequest.toFixed(2), r.gatewayScriptsPerRequest.toFixed(2), r.luaCommandsPerRequest.toFixed(2), r.otherCommandsPerRequest.toFixed(2),
        Object.entries(r.gatewayByCommand).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')]),
    ]));
    lines.push('gateway cmds/req = every command from the gateway\'s own connections (admission, settle, release after the response), an upper',
      'bound of its round trips (a pipelined batch shows as several commands); before headers = those MONITOR timed between sending the',
      'request and its response headers (sent after the upstream answered): the admission path, before forwarding.');
  }
  return lines.join('\n');
}

interface MeteringResult {
  ok: boolean;
  requests: number;
  expectedMicros: string;
  actualMicros: string;
  message: string;
}

interface DistributedResult {
  /** bench/consumers.ts: each group's events/s in one process (1M events, 8 partitions; BENCH_CONSUMER_EVENTS) and p99 lags at 5,000/s */
  consumerGroups?: ConsumerBenchResult | { error: string };
  /** every rep of bench/consumers.ts (the first is `consumerGroups`; the others throughput only), --consumer-reps */
  consumerGroupReps?: ConsumerBenchResult[];
  /** why nothing distributed was measured */
  skipped?: string;
  /** the distributed part started but failed */
  error?: string;
  services?: Services;
  warehouseFlushMs: number;
  partitions: number;
  consumers?: ConsumerFigures;
  lag?: LagFigures & { concurrency: number; durationS: number; requests: number; throughput: number };
  scenarios: ScenarioResult[];
  comparisons: DistComparison[];
  redis: RedisPerRequest[];
  /** MONITOR of sequential requests: what the gateway process itself sends to Redis per request */
  roundTrips: Array<RoundTrips & { key: 'plain' | 'full admission' }>;
  metering?: MeteringResult;
}

function distributedReport(d: DistributedResult, options: Options): string {
  const lines: string[] = [];
  if (d.skipped) return `distributed figures skipped: ${d.skipped}`;
  lines.push(`distributed mode: Kafka ${d.services?.kafka}, Redis ${d.services?.redis}; every Tollgate role in its own process ` +
    `(aggregator, control, gateway), ${d.partitions} partitions per topic, WAREHOUSE_FLUSH_MS=${d.warehouseFlushMs} (the default)`);
  if (d.error) lines.push(`  FAILED: ${d.error}`);
  const c = d.consumers;
  if (c) {
    lines.push('', `consumer throughput, one consumer process each: ${c.events} usage events (${c.accounts} accounts) produced into Kafka first ` +
      `(${c.produceEventsPerS.toFixed(0)} events/s from one KafkaLog), then one aggregator started per group`);
    const rows = [...c.results, ...(c.warehouseFastFlush ? [c.warehouseFastFlush] : [])];
    lines.push(table([
      ['group', 'WAREHOUSE_FLUSH_MS', 'events', 'events/s', 'seconds', 'first seen s', 'startup s', 'cpu ms/1000 ev', 'polled every', 'other cores'],
      ...rows.map((r) => [
        r.group + (r === c.warehouseFastFlush ? ' (diagnostic)' : ''), r.flushMs === undefined ? '-' : String(r.flushMs), String(r.events), r.eventsPerS.toFixed(0), r.seconds.toFixed(2), r.firstSeenS?.toFixed(2) ?? '-',
        r.startupS.toFixed(1), r.cpuMsPer1000?.toFixed(0) ?? '-', `${r.pollMs} ms`, r.otherCores?.toFixed(2) ?? '-',
      ]),
    ]));
    lines.push(
      'events/s = events ÷ seconds from /health answering to the last event consumed (warehouse: /admin/v1/usage totals count all;',
      'ledger: the offsets stored with the debits in Redis reach the end of every partition); startup = spawn to /health, not counted;',
      'other cores = CPU used meanwhile by anything but the consumer, this process, Kafka and Redis.',
      `warehouse totals = Σ produced costs: ${c.warehouseCostOk ? 'ok' : 'MISMATCH'} (${c.costMicros} micro-credits)`,
    );
    if (c.warehouseFastFlush) {
      lines.push(
        'the warehouse sink inserts a batch of 1000 events (the KafkaLog consumer batch) at once, but lets a smaller one (a partition',
        'batch\'s remainder) wait up to WAREHOUSE_FLUSH_MS after the last insert began; the diagnostic row is the same run with less waiting.',
      );
    }
  }
  if (d.scenarios.length) {
    lines.push('', `gateway load through the distributed gateway process (concurrency ${options.concurrency}, warmup ${options.warmupS} s + ${options.durationS} s)`);
    lines.push(table([
      ['scenario', 'requests', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'ttfb p50', 'ttfb p99', 'errors', 'cpu ms/req gen/sim/gw/agg/ctl/kafka/redis', 'other cores'],
      ...d.scenarios.map((r) => [
        r.name, String(r.requests), r.throughput.toFixed(0),
        ms(r.latency.p50), ms(r.latency.p90), ms(r.latency.p99), ms(r.ttfb?.p50), ms(r.ttfb?.p99), String(r.errors),
        ['loadgen', 'simulator', 'gateway', 'aggregator', 'control', 'kafka', 'redis']
          .map((k) => { const v = r.cpuMsPerRequest[k]; return v === undefined ? '-' : v.toFixed(2); }).join('/'),
        r.otherCores === undefined ? '-' : r.otherCores.toFixed(2),
      ]),
    ]));
  }
  if (d.comparisons.length) {
    lines.push('', 'distributed vs embedded gateway (same load, same run)');
    lines.push(table([
      ['traffic', 'embedded req/s', 'distributed req/s', 'ratio dist/emb', 'embedded p50/p99 ms', 'distributed p50/p99 ms', 'dist added p50/p99 vs direct'],
      ...d.comparisons.map((x) => [
        x.label, x.embeddedRps.toFixed(0), x.distributedRps.toFixed(0), `${x.throughputRatio.toFixed(2)}x`,
        `${ms(x.embeddedP50Ms)}/${ms(x.embeddedP99Ms)}`, `${ms(x.distributedP50Ms)}/${ms(x.distributedP99Ms)}`,
        x.addedP50Ms === undefined || x.addedP99Ms === undefined ? '-' : `${signed(x.addedP50Ms)}/${signed(x.addedP99Ms)}`,
      ]),
    ]));
  }
  const l = d.lag;
  if (l) {
    lines.push('', `lag from a response completing to its usage event taking effect: ${l.samples} sampled requests out of ${l.requests} ` +
      `(concurrency ${l.concurrency}, ${l.durationS} s, ${l.throughput.toFixed(0)} req/s, non-streaming), polled every ${l.pollMs} ms`);
    const row = (what: string, s: Summary, timeouts: number) => [what, String(s.count), ms(s.min), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), String(timeouts)];
    lines.push(table([
      ['lag ms', 'seen', 'min', 'p50', 'p90', 'p99', 'max', 'not seen in 30 s'],
      row('event-to-balance (Redis u:<id>)', l.balance, l.balanceTimeouts),
      row('event-to-queryable (ops events/<id>)', l.queryable, l.queryableTimeouts),
    ]));
    lines.push(
      `event-to-queryable is bounded below by WAREHOUSE_FLUSH_MS=${l.warehouseFlushMs} (the default): the sink inserts at most once per that`,
      'interval, so under steady traffic an event waits out most of it before its insert starts; a smaller value means less lag and',
      'more, smaller warehouse inserts. Both lags include the gateway publishing the event after the response, and the 5 ms polling.',
    );
  }
  if (d.metering) lines.push('', `distributed ${d.metering.message}`);
  return lines.join('\n');
}

// ---- main ---------------------------------------------------------------------------------

const log = (line: string) => process.stderr.write(`${line}\n`);

interface Procs { [name: string]: number | undefined }

/** One scenario: load, CPU per process from /proc, and the noise from the rest of the machine. */
async function runScenario(scenario: Scenario, ctx: BenchContext, procs: Procs, options: Options, signal: AbortSignal): Promise<{ result: ScenarioResult; failed: boolean }> {
  // Tollgate keeps working after a run (ledger, warehouse inserts into chDB); that must not
  // steal the cores from the next scenario.
  const idle = await waitForIdle(Object.entries(procs).filter(([k]) => k !== 'loadgen' && k !== 'kafka' && k !== 'redis').map(([, pid]) => pid));
  if (!idle.idle) log(`bench: services still busy (${(idle.load * 100).toFixed(0)}% of a core) after ${idle.waitedS.toFixed(1)} s; starting anyway`);
  else if (idle.waitedS >= 1) log(`bench: waited ${idle.waitedS.toFixed(1)} s for the services to go idle`);
  log(`bench: ${scenario.name} (${scenario.description}): warmup ${options.warmupS} s, measure ${options.durationS} s, concurrency ${options.concurrency}`);
  const before = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const machineBefore = machineBusySeconds();
  const wallBefore = performance.now();
  const result = await runLoad(scenario.target(ctx), {
    concurrency: options.concurrency,
    warmupMs: options.warmupS * 1000,
    durationMs: options.durationS * 1000,
    signal,
    onProgress: (p) => log(`  ${scenario.name.padEnd(19)} ${p.phase.padEnd(7)} ${String(p.elapsedS).padStart(3)} s  done ${String(p.done).padStart(7)}  ${p.rate.toFixed(0).padStart(6)} req/s  errors ${p.errors}`),
  });
  const wallS = (performance.now() - wallBefore) / 1000;
  const machineAfter = machineBusySeconds();
  const total = result.okTotal + result.errorTotal;
  let ours = 0;
  const cpuMsPerRequest: Record<string, number | undefined> = {};
  for (const [k, pid] of Object.entries(procs)) {
    const after = cpuSeconds(pid);
    const b = before[k];
    if (b === undefined || after === undefined) { cpuMsPerRequest[k] = undefined; continue; }
    ours += after - b;
    cpuMsPerRequest[k] = total === 0 ? undefined : ((after - b) * 1000) / total;
  }
  const otherCores = machineBefore === undefined || machineAfter === undefined
    ? undefined
    : Math.max(0, (machineAfter - machineBefore - ours) / wallS);
  if (otherCores !== undefined && otherCores > 0.2) {
    log(`  ${scenario.name}: other processes on this machine used ${otherCores.toFixed(2)} cores meanwhile; the figures are disturbed`);
  }
  log(`  ${scenario.name}: ${result.requests} requests, ${result.throughput.toFixed(0)} req/s, p50 ${ms(result.latency.p50)} ms, p99 ${ms(result.latency.p99)} ms, errors ${result.errors}`);
  let failed = false;
  if (result.errorRate > 0.01) {
    log(`bench: ${scenario.name} error rate ${(result.errorRate * 100).toFixed(2)}% is above 1%; e.g.\n    ${result.errorSamples.join('\n    ')}`);
    failed = true;
  } else if (result.errorSamples.length) {
    log(`  ${scenario.name}: some errors, e.g. ${result.errorSamples[0]}`);
  }
  return { result: { name: scenario.name, description: scenario.description, ...result, cpuMsPerRequest, otherCores }, failed };
}

/** The balance dropped by exactly requests × the per-request cost, once every hold settled. */
async function meteringCheck(controlUrl: string, customer: { accountId: string; balance: bigint }, requests: number, errors: number, perRequestMicros: bigint): Promise<MeteringResult> {
  const expected = BigInt(requests) * perRequestMicros;
  const after = await settledBalance(controlUrl, customer.accountId);
  const actual = customer.balance - after;
  const ok = actual === expected;
  const message = ok
    ? `metering check: ok (${requests} requests, ${actual} micro-credits)`
    : `metering check: FAILED: balance dropped by ${actual} micro-credits, expected ${requests} requests × ${perRequestMicros} = ${expected}` +
      (errors ? ` (${errors} failed requests may have been partly charged)` : '');
  return { ok, requests, expectedMicros: expected.toString(), actualMicros: actual.toString(), message };
}

/** Sends the bench request until the gateway accepts the new key (it learns keys through Kafka and Redis). */
async function firstAcceptedRequest(gatewayUrl: string, key: string, timeoutMs = 15_000): Promise<void> {
  const t = target(gatewayUrl, key, false);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await request(`${t.origin}${t.path}`, { method: 'POST', headers: t.headers, body: t.body });
    const text = await res.body.text();
    if (res.statusCode === 200) return;
    if (res.statusCode !== 401 || Date.now() > deadline) throw new Error(`the distributed gateway refused the bench key: HTTP ${res.statusCode} ${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface DistributedInput {
  options: Options;
  simulator: Service;
  ctx: BenchContext;
  perRequestMicros: bigint;
  signal: AbortSignal;
  /** the embedded scenarios' results, for the ratio */
  embeddedResults: ScenarioResult[];
}

/** Everything that needs Kafka and Redis; throws on failure (the caller keeps what was measured). */
async function runDistributed(services: Services, input: DistributedInput, out: DistributedResult): Promise<boolean> {
  const { options, simulator, ctx, perRequestMicros, signal } = input;
  let failed = false;
  // the Redis URL may carry a password: the result (--json) keeps its host and port only
  out.services = { kafka: services.kafka, redis: redisHostPort(services.redis) };

  // 1. consumer throughput, each consumer group alone in one process
  out.consumers = await measureConsumers(services, simulator.url, options.events, log, signal);
  if (!out.consumers.warehouseCostOk) failed = true;
  if (signal.aborted) return failed;
  // 1b. the consumer code in this process, 1M events on 8 partitions, then lags at 5,000 events/s (issue 11)
  const consumerEvents = Number(process.env.BENCH_CONSUMER_EVENTS ?? 1_000_000);
  // every rep drains the same backlog the same ways (the ledger with 1 and with 2 members)
  const drains = { events: consumerEvents, partitions: 8, accounts: 1000, rate: 5000, modes: ['batch' as const], groups: ['ledger' as const, 'warehouse' as const], ledgerMembers: [1, 2] };
  if (consumerEvents > 0) {
    out.consumerGroups = await measureConsumerGroups({ ...drains, seconds: 20 }, log)
      .catch((err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }));
    if ('error' in out.consumerGroups || out.consumerGroups.throughput.some((f) => !f.exact)) failed = true;
    else {
      // the noise band: the same backlog size drained again by a fresh group, store and warehouse
      // (fresh topics, key prefix, database); the latency phases run once, in the first rep
      out.consumerGroupReps = [out.consumerGroups];
      for (let rep = 2; rep <= options.consumerReps && !signal.aborted; rep++) {
        log(`bench: consumer throughput, rep ${rep}/${options.consumerReps} (--consumer-reps)`);
        try {
          const r = await measureConsumerGroups({ ...drains, seconds: 0 }, log);
          out.consumerGroupReps.push(r);
          if (r.throughput.some((f) => !f.exact)) failed = true;
        } catch (err) {
          log(`bench: consumer throughput rep ${rep} failed: ${err instanceof Error ? err.message : String(err)}`);
          failed = true;
        }
      }
    }
  }
  if (signal.aborted) return failed;

  // 2. + 3. one deployment: aggregator (ledger + warehouse), control, gateway
  const d = deployment(services, 'stack');
  const started: TollgateService[] = [];
  try {
    log(`bench: starting a distributed deployment (Kafka topics ${d.topicPrefix}*, Redis keys ${d.redisPrefix}*): aggregator, then control and gateway`);
    const aggregator = await startRole(d, simulator.url, 'aggregator', 'aggregator', { AGGREGATOR_GROUPS: 'ledger,warehouse' });
    started.push(aggregator);
    const [control, gw] = await Promise.all([
      startRole(d, simulator.url, 'control', 'control'),
      // BENCH_GATEWAY_CPU_PROF=<dir>: a V8 CPU profile of the distributed gateway, written when it stops
      startRole(d, simulator.url, 'gateway', 'gateway',
        process.env.BENCH_GATEWAY_CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_GATEWAY_CPU_PROF}` } : {}),
    ]);
    started.push(control, gw);
    const customer = await createCustomer(control.url, '100000000');
    await firstAcceptedRequest(gw.url, customer.secret);
    let requests = 1;
    let errors = 0;
    const wantAdmission = options.scenarios.some((s) => s.needs === 'distributed' && s.admission);
    const admissionCustomer = wantAdmission ? await createCustomer(control.url, '100000000') : undefined;
    let admissionRequests = 0;
    let admissionErrors = 0;
    if (admissionCustomer) {
      await applyFullAdmission(control.url, admissionCustomer, MODEL);
      await firstAcceptedRequest(gw.url, admissionCustomer.secret);
      admissionRequests = 1;
      // the gateway may have cached the key before its rules: wait out KEY_CACHE_TTL_MS (500 ms)
      await new Promise((r) => setTimeout(r, 1500));
    }
    const dctx: BenchContext = { ...ctx, distGateway: gw, distCustomerKey: customer.secret, distAdmissionKey: admissionCustomer?.secret };
    const local = localServicePids();
    const procs: Procs = {
      loadgen: process.pid, simulator: simulator.child.pid, gateway: gw.child.pid,
      aggregator: aggregator.child.pid, control: control.child.pid, kafka: local.kafka, redis: local.redis,
    };
    log(`bench: distributed gateway ${gw.url}, control ${control.url}, aggregator ${aggregator.url}`);

    for (const scenario of options.scenarios.filter((s) => s.needs === 'distributed')) {
      if (signal.aborted) return failed;
      const counted = !scenario.name.includes('stream');
      const before = counted ? await redisCommandCalls(services.redis) : undefined;
      const r = await runScenario(scenario, dctx, procs, options, signal);
      if (before) {
        const after = await redisCommandCalls(services.redis);
        const sent = r.result.okTotal + r.result.errorTotal;
        const per = (k: string) => ((after.byCommand[k] ?? 0) - (before.byCommand[k] ?? 0)) / sent;
        const top = Object.keys(after.byCommand).map((k): [string, number] => [k, per(k)]).filter(([, v]) => v >= 0.05).sort((a, b) => b[1] - a[1]).slice(0, 6);
        out.redis.push({
          scenario: scenario.name, requests: sent, commandsPerRequest: (after.total - before.total) / sent,
          scriptsPerRequest: per('eval') + per('evalsha') + per('fcall') + per('eval_ro') + per('evalsha_ro'), top,
        });
      }
      out.scenarios.push(r.result);
      if (scenario.admission) {
        admissionRequests += r.result.okTotal;
        admissionErrors += r.result.errorTotal;
      } else {
        requests += r.result.okTotal;
        errors += r.result.errorTotal;
      }
      if (r.failed) failed = true;
    }
    out.comparisons = compareDistributed([...input.embeddedResults, ...out.scenarios]);

    // Round trips: sequential requests under MONITOR, the gateway's own connections told apart.
    const keys: Array<['plain' | 'full admission', string]> = [['plain', customer.secret]];
    if (admissionCustomer) keys.push(['full admission', admissionCustomer.secret]);
    for (const [label, key] of keys) {
      if (signal.aborted) return failed;
      await waitForIdle([simulator.child.pid, gw.child.pid, aggregator.child.pid, control.child.pid]);
      // Streams: the gateway sends its headers only once the upstream answered, so what it sent
      // to Redis before the client saw them is admission (plus nothing of the settle).
      const t = target(gw.url, key, true);
      let ok = 0;
      let bad = 0;
      const rt = await redisRoundTrips(services.redis, gw.child.pid!, ROUND_TRIP_REQUESTS, async () => {
        const res = await request(`${t.origin}${t.path}`, { method: 'POST', headers: t.headers, body: t.body });
        const headersAt = Date.now();
        const text = await res.body.text();
        if (res.statusCode === 200 && text.includes('message_stop')) ok++; else bad++;
        return headersAt;
      });
      if (label === 'plain') { requests += ok; errors += bad; } else { admissionRequests += ok; admissionErrors += bad; }
      if (bad) { log(`bench: round-trip probe (${label}): ${bad} of ${ROUND_TRIP_REQUESTS} requests failed`); failed = true; }
      out.roundTrips.push({ key: label, ...rt });
      log(`  redis round trips (${label} key): gateway ${rt.gatewayCommandsPerRequest.toFixed(2)} commands/request (${rt.gatewayScriptsPerRequest.toFixed(2)} scripts), lua ${rt.luaCommandsPerRequest.toFixed(2)}, other processes ${rt.otherCommandsPerRequest.toFixed(2)}`);
    }

    // Lag: steady (not saturating) traffic, some requests followed to Redis and the warehouse.
    if (signal.aborted) return failed;
    await waitForIdle([simulator.child.pid, gw.child.pid, aggregator.child.pid, control.child.pid]);
    log(`bench: lag: ${LAG_DURATION_MS / 1000} s at concurrency ${LAG_CONCURRENCY} (after ${LAG_WARMUP_MS / 1000} s warmup), ` +
      `following ${options.lagSamples} requests to Redis and the warehouse (polled every ${LAG_POLL_MS} ms)`);
    const probe = new LagProbe(services.redis, d.redisPrefix, aggregator.url, LAG_POLL_MS);
    await probe.start();
    // Sample on a fixed grid (one every `every` ms from the first measured response), so the
    // samples spread over the whole run; 2 % slack so that the last grid point is reached.
    const every = (LAG_DURATION_MS * 0.98) / options.lagSamples;
    let nextPick: number | undefined;
    const lagLoad = await runLoad(target(gw.url, customer.secret, false), {
      concurrency: LAG_CONCURRENCY, warmupMs: LAG_WARMUP_MS, durationMs: LAG_DURATION_MS, signal,
      onProgress: (p) => log(`  ${'lag'.padEnd(19)} ${p.phase.padEnd(7)} ${String(p.elapsedS).padStart(3)} s  done ${String(p.done).padStart(7)}  ${p.rate.toFixed(0).padStart(6)} req/s  sampled ${probe.count}`),
      onResponse: (r) => {
        if (!r.measured || probe.count >= options.lagSamples || (nextPick !== undefined && r.completedAt < nextPick)) return;
        const id = r.headers['request-id'];
        if (typeof id !== 'string') return;
        nextPick = (nextPick ?? r.completedAt) + every;
        probe.add(id, r.completedAt);
      },
    });
    requests += lagLoad.okTotal;
    errors += lagLoad.errorTotal;
    if (lagLoad.errorRate > 0.01) {
      log(`bench: lag run error rate ${(lagLoad.errorRate * 100).toFixed(2)}% is above 1%; e.g.\n    ${lagLoad.errorSamples.join('\n    ')}`);
      failed = true;
    }
    log('  lag: waiting for the last sampled events');
    const lag = await probe.finish();
    out.lag = { ...lag, concurrency: LAG_CONCURRENCY, durationS: LAG_DURATION_MS / 1000, requests: lagLoad.requests, throughput: lagLoad.throughput };
    log(`  lag: event-to-balance p50 ${ms(lag.balance.p50)} ms p99 ${ms(lag.balance.p99)} ms; event-to-queryable p50 ${ms(lag.queryable.p50)} ms p99 ${ms(lag.queryable.p99)} ms`);
    if (lag.balanceTimeouts || lag.queryableTimeouts) failed = true;

    // Metering, distributed: the balance in Redis and the warehouse both show every request.
    log('bench: distributed: waiting for holds to settle and the warehouse to catch up');
    const m = await meteringCheck(control.url, customer, requests, errors, perRequestMicros);
    const deadline = Date.now() + 60_000;
    let wh = await warehouseTotals(aggregator.url, customer.accountId);
    while (wh.requests < requests && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      wh = await warehouseTotals(aggregator.url, customer.accountId);
    }
    const whOk = wh.requests === requests && wh.costMicros === m.expectedMicros;
    out.metering = {
      ...m,
      ok: m.ok && whOk,
      message: `${m.message}; warehouse ${whOk ? 'agrees' : `DISAGREES (${wh.requests} requests, ${wh.costMicros} micro-credits)`}`,
    };
    if (admissionCustomer) {
      const am = await meteringCheck(control.url, admissionCustomer, admissionRequests, admissionErrors, perRequestMicros);
      out.metering = { ...out.metering, ok: out.metering.ok && am.ok, message: `${out.metering.message}; full-admission account ${am.message}` };
    }
    if (!out.metering.ok) failed = true;
    return failed;
  } finally {
    for (const s of started.reverse()) await s.stop();
    await removeDeployment(d);
  }
}

/** The analytics and billing section (bench/analytics.ts) in this process; a failure is reported, not thrown. */
async function runAnalytics(options: Options): Promise<AnalyticsBenchResult | { error: string }> {
  log(`bench: analytics and billing: ${options.analyticsEvents.toLocaleString('en')} synthetic usage events in an embedded chDB (--analytics-events, --skip-analytics)`);
  try {
    return await runAnalyticsBench({ events: options.analyticsEvents, runs: 20, budgetMs: 6000, fullRollupCheck: false, log });
  } catch (err) {
    log(`bench: the analytics and billing section failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** The upstream-pool section (bench/pool.ts) with its own children; a failure is reported, not thrown. */
async function runPool(options: Options, signal: AbortSignal): Promise<PoolBenchResult | { error: string }> {
  try {
    // at most 8 concurrent: the figure is the latency selection adds, not a queue at saturation
    return await runPoolBench({ durationS: options.durationS, warmupS: options.warmupS, concurrency: Math.min(options.concurrency, 8), log, signal });
  } catch (err) {
    log(`bench: the upstream-pool section failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

const poolFailed = (p: PoolBenchResult | { error: string }) => 'error' in p || p.problems.length > 0;
/** The peers section (bench/peers.ts); a failure is reported, not thrown. Phases of at most 5 s: it runs 2 × 4 of them per round. */
async function runPeers(options: Options, signal: AbortSignal): Promise<PeersBenchResult | { error: string }> {
  try {
    return await runPeersBench({
      durationS: Math.min(options.durationS, 5), warmupS: Math.min(options.warmupS, 1), concurrency: options.concurrency,
      reps: options.peerReps, streams: 1000, body: requestBody, log, signal,
    });
  } catch (err) {
    log(`bench: the peers section failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    return { error: err instanceof Error ? err.message : String(err) };
  }
}
const peersFailed = (p: PeersBenchResult | { error: string }) => 'error' in p || p.problems.length > 0;
const peersText = (p: PeersBenchResult | { error: string }) => ('error' in p ? `peers failed: ${p.error}` : peersReport(p));
const poolText = (p: PoolBenchResult | { error: string }) => ('error' in p ? `upstream pools failed: ${p.error}` : poolReport(p));

async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseOptions(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      exitUsage('bench', err.message);
    }
    throw err;
  }

  if (options.analyticsOnly) {
    process.once('SIGINT', () => process.exit(130)); // 'exit' removes the section's chDB directory
    const a = await runAnalytics(options);
    process.stdout.write(options.json ? `${JSON.stringify({ analytics: a, ok: !('error' in a) }, null, 2)}\n` : `${'error' in a ? `analytics and billing failed: ${a.error}` : analyticsReport(a)}\n`);
    return 'error' in a ? 1 : 0;
  }

  const loadAvgStart = loadavg();
  log(`bench: load average (1/5/15 min) at the start: ${loadAvgStart.map((v) => v.toFixed(2)).join(' ')}`);
  const abort = new AbortController();
  // Ctrl-C, in every section alike: the processes the bench started are stopped first, then exit
  // 130 with no report (a half-measured one would read as figures).
  process.once('SIGINT', () => {
    log('bench: interrupted; stopping services');
    abort.abort();
    void stopAll()
      .then(() => Promise.race([removeAllDeployments(), new Promise((r) => setTimeout(r, 5000))]))
      .finally(() => process.exit(130));
  });
  if (options.poolOnly) {
    const p = await runPool(options, abort.signal);
    if (abort.signal.aborted) return 130;
    process.stdout.write(options.json ? `${JSON.stringify({ pool: p, ok: !poolFailed(p) }, null, 2)}\n` : `${poolText(p)}\n`);
    return poolFailed(p) ? 1 : 0;
  }
  if (options.peersOnly) {
    const p = await runPeers(options, abort.signal);
    if (abort.signal.aborted) return 130;
    process.stdout.write(options.json ? `${JSON.stringify({ peers: p, ok: !peersFailed(p) }, null, 2)}\n` : `${peersText(p)}\n`);
    return peersFailed(p) ? 1 : 0;
  }
  let died: ServiceFailure | undefined;
  whenServiceDies((service, status) => {
    died ??= new ServiceFailure(`${service.name} exited unexpectedly (${status}) during the run; its last output:\n${service.output() || '(none)'}`);
    abort.abort();
  });
  // Kafka and Redis first: a missing service is reported before minutes of embedded figures.
  let services: Services | undefined;
  const distributed: DistributedResult = { warehouseFlushMs: WAREHOUSE_FLUSH_MS, partitions: KAFKA_PARTITIONS, scenarios: [], comparisons: [], redis: [], roundTrips: [] };
  let failed = false;
  if (options.embeddedOnly) {
    distributed.skipped = '--embedded-only';
  } else {
    const found = await findServices();
    if ('missing' in found) {
      distributed.skipped = `needs Kafka and Redis (${found.missing.join('; ')}: set KAFKA_BROKERS / REDIS_URL or run \`bash deploy/services.sh up\`)`;
      log(`\n*** bench: distributed figures skipped: needs Kafka and Redis (${found.missing.join('; ')}; ` +
        `set KAFKA_BROKERS / REDIS_URL or run \`bash deploy/services.sh up\`) ***\n`);
      if (options.requireServices) {
        log('bench: --require-services: failing before anything runs');
        return 1;
      }
    } else {
      services = found;
      log(`bench: Kafka ${found.kafka} and Redis ${redisHostPort(found.redis)} answer; the distributed figures follow the embedded ones`);
    }
  }

  const embeddedScenarios = options.scenarios.filter((s) => s.needs !== 'distributed');
  const needsGateway = embeddedScenarios.some((s) => s.needs === 'gateway');
  log('bench: starting the simulator' + (needsGateway ? ' and Tollgate' : '') + ' (child processes)');
  const simulator = await startSimulator();
  const gateway = needsGateway ? await startTollgate(simulator.url) : undefined;
  const probe = await probeUsage(simulator.url);
  const perRequestMicros = BigInt(probe.inputTokens) * INPUT_MICROS_PER_TOKEN + BigInt(OUTPUT_TOKENS) * OUTPUT_MICROS_PER_TOKEN;
  let customer: { accountId: string; secret: string; balance: bigint } | undefined;
  let admissionCustomer: { accountId: string; keyId: string; secret: string; balance: bigint } | undefined;
  if (gateway) customer = await createCustomer(gateway.url, '100000000');
  if (gateway && embeddedScenarios.some((s) => s.admission)) {
    admissionCustomer = await createCustomer(gateway.url, '100000000');
    await applyFullAdmission(gateway.url, admissionCustomer, MODEL);
  }
  log(`bench: simulator ${simulator.url}${gateway ? `, tollgate ${gateway.url}` : ''}; ${probe.inputTokens} input + ${OUTPUT_TOKENS} output tokens per request`);

  const ctx: BenchContext = { simulator, gateway, customerKey: customer?.secret ?? '', admissionKey: admissionCustomer?.secret };
  const results: ScenarioResult[] = [];
  for (const scenario of embeddedScenarios) {
    if (abort.signal.aborted) break;
    const r = await runScenario(scenario, ctx, { loadgen: process.pid, simulator: simulator.child.pid, gateway: gateway?.child.pid }, options, abort.signal);
    results.push(r.result);
    if (r.failed) failed = true;
  }
  if (died) throw died;
  if (abort.signal.aborted) return 130;

  let metering: MeteringResult | undefined;
  if (gateway && customer) {
    log('bench: waiting for holds to settle');
    const gwOf = (admission: boolean) => results.filter((r) => {
      const s = options.scenarios.find((x) => x.name === r.name);
      return s?.needs === 'gateway' && (s.admission ?? false) === admission;
    });
    const gw = gwOf(false);
    metering = await meteringCheck(gateway.url, customer, gw.reduce((n, r) => n + r.okTotal, 0), gw.reduce((n, r) => n + r.errorTotal, 0), perRequestMicros);
    if (admissionCustomer) {
      const ga = gwOf(true);
      const m = await meteringCheck(gateway.url, admissionCustomer, ga.reduce((n, r) => n + r.okTotal, 0), ga.reduce((n, r) => n + r.errorTotal, 0), perRequestMicros);
      metering = { ...metering, ok: metering.ok && m.ok, message: `${metering.message}; full-admission account ${m.message}` };
    }
    if (!metering.ok) failed = true;
    // Its chDB and idle loops have no part in what follows.
    await gateway.stop();
  }

  if (services) {
    try {
      if (await runDistributed(services, { options, simulator, ctx, perRequestMicros, signal: abort.signal, embeddedResults: results }, distributed)) failed = true;
    } catch (err) {
      if (died) throw died;
      if (abort.signal.aborted) return 130;
      distributed.error = err instanceof Error ? err.message : String(err);
      log(`bench: the distributed figures failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      failed = true;
    }
    if (died) throw died;
    if (abort.signal.aborted) return 130;
  }

  // Interleaved distributed vs embedded (bench/dist-ab.ts), at concurrency 1 and --concurrency:
  // the targets take turns in short slices, so the machine's drift hits both alike.
  const distAb: DistAbResult[] = [];
  let distAbSkipped: string | undefined = options.distRounds === 0 ? '--dist-rounds 0' : distributed.skipped;
  if (services && options.distRounds > 0) {
    try {
      for (const c of [...new Set([1, options.concurrency])]) {
        log(`bench: distributed vs embedded, interleaved: concurrency ${c}, ${counted(options.distRounds, 'round')} (--dist-rounds)`);
        distAb.push(await runDistAb({ concurrency: c, rounds: options.distRounds, sliceS: Math.min(options.durationS, 4), log }));
        if (died) throw died;
        if (abort.signal.aborted) return 130;
      }
    } catch (err) {
      if (died) throw died;
      if (abort.signal.aborted) return 130;
      distAbSkipped = `failed: ${err instanceof Error ? err.message : String(err)}`;
      log(`bench: the interleaved distributed section failed: ${distAbSkipped}`);
      failed = true;
    }
  }

  let pool: PoolBenchResult | { error: string } | undefined;
  if (!options.skipPool) {
    pool = await runPool(options, abort.signal);
    if (died) throw died;
    if (abort.signal.aborted) return 130;
    if (poolFailed(pool)) failed = true;
  }

  let peersResult: PeersBenchResult | { error: string } | undefined;
  if (!options.skipPeers) {
    peersResult = await runPeers(options, abort.signal);
    if (died) throw died;
    if (abort.signal.aborted) return 130;
    if (peersFailed(peersResult)) failed = true;
  }

  // Last: its chDB load would land in every figure above.
  let analytics: AnalyticsBenchResult | { error: string } | undefined;
  if (options.analyticsEvents > 0) {
    analytics = await runAnalytics(options);
    if ('error' in analytics) failed = true;
  }

  const loadAvg = { start: loadAvgStart, end: loadavg() };
  const targets: TargetRow[] = issue11Targets({
    consumerReps: distributed.consumerGroupReps, distAb: distAb.length ? distAb : undefined,
    peers: peersResult && !('error' in peersResult) ? peersResult : undefined,
    skipped: {
      consumers: distributed.skipped ?? (distributed.consumerGroups && 'error' in distributed.consumerGroups ? `failed: ${distributed.consumerGroups.error}` : process.env.BENCH_CONSUMER_EVENTS === '0' ? 'BENCH_CONSUMER_EVENTS=0' : undefined),
      distAb: distAbSkipped,
      peers: options.skipPeers ? '--skip-peers' : peersResult && 'error' in peersResult ? `failed: ${peersResult.error}` : undefined,
    },
  });
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
      scenarios: results, comparisons, admission: compareAdmission([...results, ...distributed.scenarios]), metering, distributed, distAb, pool, peers: peersResult, analytics, loadAvg, targets, ok: !failed,
    }, null, 2)}\n`);
  } else {
    const adm = admissionReport(compareAdmission([...results, ...distributed.scenarios]), distributed.redis, distributed.roundTrips);
    process.stdout.write(`${report(header, results, comparisons, metering?.message)}\n\n${distributedReport(distributed, options)}\n${adm ? `\n${adm}\n` : ''}`);
    if (pool) process.stdout.write(`\n${poolText(pool)}\n`);
    if (peersResult) process.stdout.write(`\n${peersText(peersResult)}\n`);
    if (analytics) process.stdout.write(`\n${'error' in analytics ? `analytics and billing failed: ${analytics.error}` : analyticsReport(analytics)}\n`);
    if (distAb.length) process.stdout.write(`\n${distAbReport(distAb)}\n`);
    if (distributed.consumerGroupReps?.length) process.stdout.write(`\n${consumerRepsReport(distributed.consumerGroupReps, Number(process.env.BENCH_CONSUMER_EVENTS ?? 1_000_000))}\n`);
    process.stdout.write(`\n${targetsReport(targets, loadAvg)}\n`);
  }
  if (metering && !metering.ok) log(`bench: ${metering.message}`);
  if (distributed.metering && !distributed.metering.ok) log(`bench: distributed ${distributed.metering.message}`);
  if (distributed.skipped && distributed.skipped !== '--embedded-only') log(`*** bench: distributed figures skipped: ${distributed.skipped} ***`);
  return failed ? 1 : 0;
}

// Warnings go with the progress output. kafkajs' request queue is fixed first (libs/events'
// kafkajs-request-queue.ts: no 1 ms poll per connection, so no negative-timer warning either),
// as in every process with a KafkaLog.
fixKafkajsRequestQueue();
process.removeAllListeners('warning');
process.on('warning', (w) => log(`(node) ${w.name}: ${w.message}`));
process.on('exit', killAllNow);
main(process.argv.slice(2)).then(
  async (code) => {
    await stopAll();
    process.exit(code);
  },
  async (err: unknown) => {
    log(`bench: failed: ${err instanceof ServiceFailure ? err.message : err instanceof Error ? err.stack ?? err.message : String(err)}`);
    await stopAll().catch(() => undefined);
    await removeAllDeployments().catch(() => undefined);
    process.exit(1);
  },
);
