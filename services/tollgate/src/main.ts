import { readFileSync } from 'node:fs';
import { enableCompileCache, flushCompileCache } from 'node:module';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { cliHelpLines, isCliCommand, runCli } from './cli/index.ts';

// Node's compile cache for everything loaded from here on (the server's modules are imported
// below, after the arguments are read): each file's compiled code, TypeScript stripped, kept on
// disk by its content and Node's version, so a start after the first reads it instead of
// compiling again (~2 s -> ~1 s of module loading on the test machine). The directory is
// NODE_COMPILE_CACHE, else <os tmpdir>/node-compile-cache; NODE_DISABLE_COMPILE_CACHE=1 turns it
// off. An unwritable directory only disables it. Written when the server has started, and at exit.
enableCompileCache();

const HELP = `Usage: tollgate [--roles gateway,aggregator,control]
       tollgate --version
       tollgate <command> [ARGS…] [--url URL]

Runs the Tollgate gateway. With no settings, every role runs in this one process with
embedded adapters (in-memory state, in-process log, chDB under DATA_DIR).

Options:
  --roles LIST   roles to run (default: all three); splitting needs KAFKA_BROKERS and REDIS_URL
  --version      print the version and exit
  -h, --help     show this help

Operator commands (clients of a running Tollgate's operator API; tollgate <command> --help):
${cliHelpLines([
    ['rebuild', 'rebuild hot state from the warehouse'],
    ['reconcile', 'prove hot state and the warehouse agree'],
    ['rerate', 're-price stored usage (prove a bill, preview a price change)'],
  ])}
They reach --url, else $TOLLGATE_URL, else http://127.0.0.1:$PORT (8080), with ADMIN_TOKEN, else
FINANCE_TOKEN, else DATA_DIR/admin-token; exit 0 done, 1 the API refused or failed, 2 bad usage
(rerate: see its --help).

Settings come from the environment, every one listed in README.md ("Configuration"). The
ones most deployments set first:
  PORT, HOST                 where the API listens (8080, 0.0.0.0)
  DATA_DIR                   chDB data, admin token, key-hash secret, event spool (./data)
                             one process's: in distributed mode each process its own
  UPSTREAM_URL, UPSTREAM_API_KEY   the default upstream and its credential
  PRICING_FILE               the catalog (libs/pricing/catalogs/cny.json)
  KAFKA_BROKERS, REDIS_URL   distributed mode (both together); CLICKHOUSE_URL a ClickHouse
                             server instead of chDB

Examples:
  PORT=9000 DATA_DIR=/var/lib/tollgate UPSTREAM_API_KEY=sk-ant-... tollgate
  KAFKA_BROKERS=10.0.0.5:9092 REDIS_URL=redis://10.0.0.6:6379 tollgate --roles gateway

Exit status:
  0  stopped by SIGINT/SIGTERM after a clean shutdown (or --help, --version); a signal
     during the start stops the process once the start has finished
  1  could not start or stopped on a failure: the port is in use or not allowed, DATA_DIR is
     in use by another process, Redis, Kafka (aggregator) or the ClickHouse server could not
     be used, or the stop hung 10 s past SHUTDOWN_GRACE_MS (streams still
     running at the grace's end are cut and settled, which is a clean stop), or a second
     signal during the start (one within 1 s of the first is the same Ctrl-C delivered twice)
  2  bad settings, a bad catalog file, or a bad command line (an unknown option included)`;

/** The version of this Tollgate: the repository's package.json (the workspace root). */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/**
 * The server's own command line, strict like every operator command: only --roles LIST,
 * --version and -h/--help. Anything else is a usage error (exit 2), never a started server.
 * @returns the parsed values, or the message naming what is wrong
 */
function parseServerArgs(argv: readonly string[]): { roles?: string; version: boolean; help: boolean } | { problem: string } {
  try {
    const { values } = parseArgs({
      args: [...argv], strict: true, allowPositionals: false,
      options: { roles: { type: 'string' }, version: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
    return { roles: values.roles, version: values.version === true, help: values.help === true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) throw err;
    // Name the option as typed; parseArgs's own wording varies between Node versions.
    const unknown = argv.find((a) => a.startsWith('-') && a !== '--' && !/^(--roles(=.*)?|--version|--help|-h)$/.test(a));
    if (unknown !== undefined && code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return { problem: `unknown option "${unknown.split('=')[0]}"` };
    return { problem: (err as Error).message };
  }
}

/**
 * One line for the ways listening fails that the operator fixes by configuration; undefined for
 * anything else (a real fault: its stack is printed).
 */
function listenProblem(err: unknown, host: string, port: number): string | undefined {
  switch ((err as NodeJS.ErrnoException | null)?.code) {
    case 'EADDRINUSE': return `port ${port} on ${host} is in use; set PORT (and HOST) to another`;
    case 'EACCES': return `port ${port} on ${host} needs privileges this process lacks; set PORT (and HOST) to another`;
    case 'EADDRNOTAVAIL': return `HOST ${host} is not an address of this machine; set HOST to one (0.0.0.0 for all)`;
    case 'ENOTFOUND': case 'EAI_AGAIN': return `HOST ${host} does not resolve; set HOST to an address (0.0.0.0 for all)`;
    default: return undefined;
  }
}

/**
 * Binds and releases host:port once before anything else opens, so a second `npm start` on the
 * same port says so in one line instead of failing later on DATA_DIR or after minutes of start.
 * Resolves to the listen error, or undefined when the port is free (port 0 is always free).
 */
function probeListen(host: string, port: number): Promise<Error | undefined> {
  if (port === 0) return Promise.resolve(undefined);
  return new Promise((done) => {
    const probe = createServer();
    probe.once('error', (err) => done(err));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => done(undefined)));
  });
}

/**
 * ms a stop may take past SHUTDOWN_GRACE_MS: the cut requests' settlement, the log's flush
 * (Kafka acknowledgements or the spool) and closing the stores. Past it the process exits 1.
 */
const SHUTDOWN_SETTLE_MS = 10_000;

/**
 * ms within which a second SIGINT/SIGTERM during the start is the first one again, not a second
 * request: one Ctrl-C reaches the process twice under `npm start` with another Node on PATH,
 * from the terminal and from the launcher that forwards it (scripts/node24.mjs).
 */
const REPEATED_SIGNAL_MS = 1000;

/** chDB allows one process per directory: the second one's open fails. */
function dataDirInUse(err: unknown): boolean {
  return err instanceof Error && err.name === 'ChdbConnectionError' && /Failed to create connection/.test(err.message);
}

async function main(argv: string[]): Promise<number> {
  const command = argv[0];
  if (command === 'rebuild' || command === 'reconcile') return (await import('./ops-cli.ts')).runOps(command, argv.slice(1), process.env);
  if (command === 'rerate') return (await import('./ops-cli.ts')).runRerate(argv.slice(1), process.env);
  if (isCliCommand(command)) return runCli(argv);
  if (command !== undefined && !command.startsWith('-')) {
    process.stderr.write(`tollgate: unknown command ${command}\n${HELP}\n`);
    return 2;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const args = parseServerArgs(argv);
  if ('problem' in args) {
    process.stderr.write(`tollgate: ${args.problem}\n(see tollgate --help)\n`);
    return 2;
  }
  if (args.version) {
    process.stdout.write(`tollgate ${version()}\n`);
    return 0;
  }
  // A stop asked for while the process is still starting (loading its modules, waiting for
  // Redis, Kafka, the DATA_DIR lock or a rebuild) lets the start finish or fail, then stops as
  // any stop does. Killed by the signal instead, the process exited 143 without a line and left
  // DATA_DIR's lock for the next start to wait out. A second signal (not the same Ctrl-C
  // arriving twice, see REPEATED_SIGNAL_MS), or a start still running past the stop's own bound,
  // exits 1 at once; the bound is cleared when the start ends, and the stop has its own.
  let stopAsked: 'SIGINT' | 'SIGTERM' | undefined;
  let stopAskedAt = 0;
  let startBound: NodeJS.Timeout | undefined;
  /** the defaults' bound (SHUTDOWN_GRACE_MS 15 s + SHUTDOWN_SETTLE_MS) until the configuration is read */
  let startBoundMs = 15_000 + SHUTDOWN_SETTLE_MS;
  const signalDuringStart = (signal: 'SIGINT' | 'SIGTERM') => {
    if (stopAsked) {
      if (performance.now() - stopAskedAt < REPEATED_SIGNAL_MS) return;
      process.stderr.write(`tollgate: ${signal} again during the start; exiting now\n`);
      process.exit(1);
    }
    stopAsked = signal;
    stopAskedAt = performance.now();
    const boundMs = startBoundMs;
    process.stderr.write(`tollgate: ${signal} during the start; stopping once it has finished (at most ${boundMs} ms)\n`);
    startBound = setTimeout(() => {
      process.stderr.write(`tollgate: the start had not finished ${boundMs} ms after ${signal}; exiting\n`);
      process.exit(1);
    }, boundMs).unref();
  };
  const onStartInt = () => signalDuringStart('SIGINT');
  const onStartTerm = () => signalDuringStart('SIGTERM');
  // SIGHUP reloads the catalog once the process runs; during the start it is being read anyway,
  // and Node's default for it would end the process without a line.
  const onStartHangup = () => {};
  process.on('SIGINT', onStartInt);
  process.on('SIGTERM', onStartTerm);
  process.on('SIGHUP', onStartHangup);
  // Loaded only to run the server: the operator commands start several times faster without them.
  const [{ ConfigError, loadConfig }, { CatalogError }, { startTollgate }, { redisEndpoint, ServiceUnavailableAtStart }, { DataDirInUseError }] = await Promise.all([
    import('@tollgate/config'), import('@tollgate/pricing'), import('./runtime.ts'), import('./adapters.ts'), import('./data-dir-lock.ts'),
  ]);
  let config;
  try {
    config = loadConfig(process.env, argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tollgate: ${err.message}\n(see tollgate --help, and README.md "Configuration" for every variable)\n`);
      return 2;
    }
    throw err;
  }
  startBoundMs = config.shutdownGraceMs + SHUTDOWN_SETTLE_MS;
  const busy = await probeListen(config.host, config.port);
  const busyProblem = busy && listenProblem(busy, config.host, config.port);
  if (busyProblem) {
    process.stderr.write(`tollgate: ${busyProblem}\n`);
    return 1;
  }
  let app;
  try {
    app = await startTollgate(config);
  } catch (err) {
    if (err instanceof CatalogError) {
      process.stderr.write(`tollgate: ${err.message}\n(PRICING_FILE names the catalog; see README.md "Model catalog" for its format)\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`tollgate: ${err.message}\n(see tollgate --help, and README.md "Configuration" for every variable)\n`);
      return 2;
    }
    if (err instanceof ServiceUnavailableAtStart || err instanceof DataDirInUseError) {
      process.stderr.write(`tollgate: ${err.message}\n`);
      return 1;
    }
    // Taken between the probe and the real listen: the same one line.
    const problem = listenProblem(err, config.host, config.port);
    if (problem) {
      process.stderr.write(`tollgate: ${problem}\n`);
      return 1;
    }
    if (dataDirInUse(err)) {
      process.stderr.write(`tollgate: DATA_DIR ${resolve(config.dataDir)} is in use by another process (its chDB warehouse allows one); stop it or set DATA_DIR to another\n`);
      return 1;
    }
    throw err;
  }
  // Every module the server needs is loaded: written to the compile cache now, not only at a
  // clean exit (a process killed with SIGKILL never gets there).
  flushCompileCache();
  const log = app.server!.log;
  log.info({
    url: app.url, roles: config.roles, catalog: app.catalog.name, credit: app.catalog.credit.description,
    // the default upstream only where requests are forwarded from
    ...(config.roles.includes('gateway') ? { upstream: config.upstream.url } : {}), dataDir: config.dataDir,
    // the edge's socket limits in force (MAX_CONNECTIONS defaults from the open-file limit)
    maxConnections: app.server.server.maxConnections, requestTimeoutMs: config.http.requestTimeoutMs,
    cors: config.http.corsOrigins ?? 'off',
    // distributed: where events go, in which codec (KAFKA_COMPRESSION) and after which linger (KAFKA_LINGER_MS), the
    // partitions asked of topics it makes (KAFKA_PARTITIONS), for an operator checking a rollout; absent when embedded
    ...(config.kafka ? { kafka: { brokers: config.kafka.brokers, topicPrefix: config.kafka.topicPrefix, partitions: config.kafka.partitions, compression: config.kafka.compression, lingerMs: config.kafka.lingerMs } } : {}),
    // an aggregator: its consumer groups (AGGREGATOR_GROUPS) and, with the ledger group, its members here (LEDGER_CONSUMERS)
    ...(config.roles.includes('aggregator') ? { aggregator: { groups: config.aggregator.groups,
      ...(config.aggregator.groups.includes('ledger') ? { ledgerConsumers: config.aggregator.ledgerConsumers } : {}) } } : {}),
    // and which Redis (host:port, never a password; the ledger's Cluster seeds when set) and
    // which warehouse (a ClickHouse server's origin, never its user or password)
    ...(config.redis ? { redis: { endpoint: redisEndpoint(config.redis.url), ...(config.redis.clusterNodes ? { clusterNodes: config.redis.clusterNodes.map((n) => `${n.host}:${n.port}`) } : {}) } } : {}),
    ...(config.clickhouse ? { clickhouse: new URL(config.clickhouse.url).origin } : {}),
  }, 'tollgate started');
  if (app.adminTokenFile) log.info({ file: app.adminTokenFile }, 'admin token (ADMIN_TOKEN unset) is in this file');
  // Only a gateway calls the upstream: an aggregator or control process has no use for the key.
  if (!config.upstream.apiKey && config.roles.includes('gateway')) log.warn('UPSTREAM_API_KEY is not set: the upstream will see no credential');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const since = performance.now();
    log.info({ signal }, 'shutting down');
    // In-flight requests get SHUTDOWN_GRACE_MS; then their upstream reads are cut and settled
    // (close). The hard stop is only for a settlement or flush that hangs past that.
    const timer = setTimeout(() => {
      log.error('shutdown did not finish after the grace period and SHUTDOWN_SETTLE_MS; exiting');
      process.exit(1);
    }, config.shutdownGraceMs + SHUTDOWN_SETTLE_MS).unref();
    await app.close({ graceMs: config.shutdownGraceMs });
    clearTimeout(timer);
    // The last line of a clean stop: every stream settled, the log drained, the state closed.
    log.info({ signal, ms: Math.round(performance.now() - since) }, 'stopped');
    process.exit(0);
  };
  clearTimeout(startBound);
  process.off('SIGINT', onStartInt);
  process.off('SIGTERM', onStartTerm);
  process.off('SIGHUP', onStartHangup);
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  if (stopAsked) void stop(stopAsked);
  return -1;
}

main(process.argv.slice(2)).then(
  (code) => { if (code >= 0) process.exit(code); },
  (err: unknown) => {
    process.stderr.write(`tollgate: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
