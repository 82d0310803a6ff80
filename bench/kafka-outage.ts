// How long a consumer group applies nothing after Kafka comes back (issue 11, breaker brief:
// "one CI run saw the ledger group apply nothing for > 1 minute after Kafka was stopped 10 s").
// The real KafkaLog subscription (its OffsetCommitter included), `--members` of them in one group
// (each its own Kafka client, as separate processes would have), consume a topic a producer
// KafkaLog keeps publishing to (10 events/s, spooled while Kafka is away). Then the fault:
//   stop   `deploy/kafka.sh stop` (SIGTERM, controlled shutdown), `start` after --outage-ms
//   kill   SIGKILL of the broker, `start` after --outage-ms (an unclean stop)
//   pause  SIGSTOP, SIGCONT after --outage-ms (a frozen broker: sockets stay open)
// and 30 s more of publishing. Reported per run: the first delivery after Kafka is back, the
// longest time without any delivery after that moment, when every published event had arrived,
// how many records the topic holds (more than were published: the producer's own copies), and
// how many events were missing (must be 0) or delivered more than once (producer copies and
// redeliveries, which positions stored with the effects turn into duplicates).
//
//   node bench/kafka-outage.ts [--fault stop|kill|pause] [--outage-ms 10000] [--members 2] [--runs 1]
//
// The broker is a PRIVATE one this tool starts with deploy/kafka.sh in its own state directory
// (BENCH_KAFKA_DIR, default <tmp>/tollgate-kafka-outage) on BENCH_KAFKA_PORT (default 19092;
// controller port + 1), and stops at the end: the shared broker of the suites is never touched.
// The Kafka jars are linked from BENCH_KAFKA_JARS (default: the shared install's,
// $TOLLGATE_DEPLOY_DIR or <repo>/.deploy, then /work/main/.deploy), else installed with mvn.
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaLog, type Subscription } from '@tollgate/events';
import { usageEvent } from '../test/support/events.ts';
import { commandLine, exitUsage, numberValue, reportUncaught, UsageError } from './cli.ts';

const USAGE = `Usage: node bench/kafka-outage.ts [options]

How long a consumer group applies nothing after Kafka comes back. --members real KafkaLog
subscriptions (their OffsetCommitter included) in one group consume a topic a producer KafkaLog
keeps publishing to (10 events/s, spooled while Kafka is away); after 5 s the fault:
  stop   \`deploy/kafka.sh stop\` (SIGTERM, controlled shutdown), \`start\` after --outage-ms
  kill   SIGKILL of the broker, \`start\` after --outage-ms (an unclean stop)
  pause  SIGSTOP, SIGCONT after --outage-ms (a frozen broker: sockets stay open)
and 30 s more of publishing. Prints per run (a table on stdout): the first delivery after Kafka
is back, the longest time without any delivery after that moment, when every published event had
arrived, how many records the topic holds (above the published count: the producer's own
copies), how many events were missing (must be 0) or delivered more than once (those copies and
redeliveries to the group), and the consumer crashes. See bench/README.md "A consumer group after Kafka comes back".

The broker is a PRIVATE one this tool starts with deploy/kafka.sh in its own state directory and
port, and stops at the end: the shared broker of the suites is never touched.

Options:
  --fault <f>        stop, kill or pause (default stop)
  --outage-ms <ms>   how long Kafka is away, ms, 0 to 3600000 (default 10000)
  --members <n>      consumers in the group, each its own Kafka client, 1 to 64 (default 2)
  --runs <n>         runs, one after the other on the same broker, 1 to 100 (default 1)
  -h, --help         show this help

Environment:
  BENCH_KAFKA_DIR      the private broker's state directory (default <tmp>/tollgate-kafka-outage;
                       its data is removed at the end when this is not set); never a shared one
  BENCH_KAFKA_PORT     the private broker's port, 1024 to 65534; the controller's is the next
                       one; neither may be the shared broker's 9092 or 9093 (default 19092)
  BENCH_KAFKA_JARS     the Kafka jars to link (default: the shared install's, under
                       $TOLLGATE_DEPLOY_DIR or <repo>/.deploy, then /work/main/.deploy; else
                       deploy/kafka.sh installs them with mvn)
  TOLLGATE_DEPLOY_DIR  the shared deploy directory: where the jars are looked for, and a state
                       directory this tool refuses to use

Example:
  node bench/kafka-outage.ts --fault kill --outage-ms 10000 --members 2 --runs 2

Exit status: 0 done, 1 the run failed (the broker did not start, Kafka errors), 2 bad usage.`;

const { values: opts } = commandLine({ name: 'bench/kafka-outage', usage: USAGE, options: {
  fault: { type: 'string', default: 'stop' },
  'outage-ms': { type: 'string' },
  members: { type: 'string' },
  runs: { type: 'string' },
} });

const REPO = resolve(import.meta.dirname, '..');
let FAULT: 'stop' | 'kill' | 'pause', OUTAGE_MS: number, MEMBERS: number, RUNS: number, STATE: string, PORT: number, shared: string[];
try {
  const faults = ['stop', 'kill', 'pause'] as const;
  if (!(faults as readonly string[]).includes(opts.fault)) throw new UsageError(`--fault: unknown "${opts.fault}"; expected one of ${faults.join(', ')}`);
  FAULT = opts.fault as (typeof faults)[number];
  OUTAGE_MS = numberValue('--outage-ms', opts['outage-ms'], 10_000, { min: 0, max: 3_600_000, integer: true });
  MEMBERS = numberValue('--members', opts.members, 2, { min: 1, max: 64, integer: true });
  RUNS = numberValue('--runs', opts.runs, 1, { min: 1, max: 100, integer: true });
  STATE = resolve(process.env.BENCH_KAFKA_DIR || join(tmpdir(), 'tollgate-kafka-outage'));
  PORT = numberValue('BENCH_KAFKA_PORT', process.env.BENCH_KAFKA_PORT || undefined, 19092, { min: 1024, max: 65534, integer: true });
  shared = [process.env.TOLLGATE_DEPLOY_DIR, join(REPO, '.deploy'), '/work/main/.deploy'].filter((d): d is string => !!d).map((d) => resolve(d));
  // Never the shared broker's state directory or port: this tool stops and kills its broker.
  if (shared.includes(STATE)) throw new UsageError(`BENCH_KAFKA_DIR ${STATE} is a shared deploy directory; give this tool its own`);
  // nor the shared broker's ports (deploy/kafka.sh's defaults: 9092, controller 9093) for this one's or its controller's (PORT + 1)
  if ([9092, 9093].includes(PORT) || [9092, 9093].includes(PORT + 1)) {
    throw new UsageError(`BENCH_KAFKA_PORT: ${PORT} or its controller port ${PORT + 1} is one of the shared broker's (9092, 9093); give this tool its own`);
  }
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  exitUsage('bench/kafka-outage', err.message);
}
reportUncaught('bench/kafka-outage');
const BROKER = `127.0.0.1:${PORT}`;

/** `bash deploy/kafka.sh <cmd>` on the private broker. */
function kafkaSh(cmd: 'start' | 'stop'): void {
  execFileSync('bash', [join(REPO, 'deploy/kafka.sh'), cmd], {
    env: { ...process.env, TOLLGATE_DEPLOY_DIR: STATE, KAFKA_PORT: String(PORT), KAFKA_CONTROLLER_PORT: String(PORT + 1) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** Signals the private broker (its pid file, never a name). */
function signalBroker(signal: NodeJS.Signals): void {
  process.kill(Number(readFileSync(join(STATE, 'kafka/kafka.pid'), 'utf8').trim()), signal);
}

function linkJars(): void {
  const libs = join(STATE, 'kafka/libs');
  if (existsSync(libs)) return;
  const from = process.env.BENCH_KAFKA_JARS ?? shared.map((d) => join(d, 'kafka/libs')).find((d) => existsSync(join(d, '.stamp')));
  if (!from) return; // deploy/kafka.sh start installs them
  mkdirSync(join(STATE, 'kafka'), { recursive: true });
  symlinkSync(resolve(from), libs);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = { warn() {}, error() {} };

interface RunResult {
  firstDeliveryS: number | null;
  longestGapS: number;
  caughtUpS: number | null;
  published: number;
  missing: number;
  duplicated: number;
  /** records the topic holds: the published events plus the producer's own copies (redeliveries to the group are not in it) */
  written: number;
  crashes: number;
}

async function run(): Promise<RunResult> {
  const prefix = `bench-outage-${randomUUID().slice(0, 8)}-`;
  const retry = { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 };
  const client = (id: string) => new Kafka({ clientId: id, brokers: [BROKER], logLevel: logLevel.NOTHING, connectionTimeout: 3000, retry });
  let crashes = 0;
  const consumers = Array.from({ length: MEMBERS }, (_, i) => new KafkaLog({
    kafka: client(`outage-member-${i}`), topicPrefix: prefix, spoolDir: mkdtempSync(join(tmpdir(), 'outage-c-')),
    // the subscription logs each kafkajs consumer crash as an error line
    logger: { ...quiet, error: (_o: object, msg?: string) => { if (msg?.startsWith('kafka consumer crashed')) crashes++; } },
  }));
  const producer = new KafkaLog({ kafka: client('outage-producer'), topicPrefix: prefix, spoolDir: mkdtempSync(join(tmpdir(), 'outage-p-')), logger: quiet });
  await producer.ensureTopics(4);
  const seen = new Map<string, number>();
  const deliveries: number[] = [];
  const subs: Subscription[] = await Promise.all(consumers.map((log) => log.subscribe({
    group: 'ledger', topics: ['usage'], concurrentPartitions: 4,
    handler: async (events) => {
      for (const e of events) seen.set(e.event.event_id, (seen.get(e.event.event_id) ?? 0) + 1);
      deliveries.push(Date.now());
    },
  })));
  const published: string[] = [];
  let n = 0;
  const publisher = setInterval(() => {
    const id = `e${n++}`;
    published.push(id);
    void producer.publish('usage', [{ event: usageEvent(id, `acct-${n % 7}`), headers: {} }]).catch(() => {});
  }, 100);
  await sleep(5000);
  if (FAULT === 'pause') signalBroker('SIGSTOP');
  else if (FAULT === 'kill') signalBroker('SIGKILL');
  else kafkaSh('stop');
  await sleep(OUTAGE_MS);
  if (FAULT === 'pause') signalBroker('SIGCONT');
  else kafkaSh('start');
  const backAt = Date.now();
  await sleep(30_000);
  clearInterval(publisher);
  for (let i = 0; i < 1800 && published.some((id) => !seen.has(id)); i++) await sleep(100);
  const after = deliveries.filter((d) => d >= backAt);
  let gap = 0;
  let prev = backAt;
  for (const d of after) { gap = Math.max(gap, d - prev); prev = d; }
  const missing = published.filter((id) => !seen.has(id)).length;
  const result: RunResult = {
    firstDeliveryS: after.length > 0 ? (after[0]! - backAt) / 1000 : null,
    longestGapS: gap / 1000,
    caughtUpS: missing === 0 ? (prev - backAt) / 1000 : null,
    published: published.length,
    missing,
    duplicated: [...seen.values()].filter((c) => c > 1).length,
    written: 0,
    crashes,
  };
  for (const s of subs) await s.stop();
  for (const log of consumers) await log.close();
  await producer.close();
  const admin = client('outage-admin').admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(producer.topicName('usage'));
  result.written = offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
  await admin.deleteTopics({ topics: (await admin.listTopics()).filter((t) => t.startsWith(prefix)) }).catch(() => {});
  await admin.deleteGroups([`${prefix}ledger`]).catch(() => {});
  await admin.disconnect();
  return result;
}

linkJars();
kafkaSh('start');
try {
  console.log(`fault ${FAULT} for ${OUTAGE_MS} ms, ${MEMBERS} member(s) in the group, private broker ${BROKER}`);
  console.log('run | first delivery after Kafka is back (s) | longest gap without a delivery (s) | all delivered at (s) | published | records in the topic | missing | delivered twice | consumer crashes');
  for (let i = 1; i <= RUNS; i++) {
    const r = await run();
    console.log(`${i} | ${r.firstDeliveryS ?? 'never'} | ${r.longestGapS} | ${r.caughtUpS ?? 'not yet'} | ${r.published} | ${r.written} | ${r.missing} | ${r.duplicated} | ${r.crashes}`);
  }
} finally {
  kafkaSh('stop');
  if (!process.env.BENCH_KAFKA_DIR) rmSync(join(STATE, 'kafka/data'), { recursive: true, force: true });
}
process.exit(0);
