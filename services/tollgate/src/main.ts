import { ConfigError, loadConfig } from '@tollgate/config';
import { CatalogError } from '@tollgate/pricing';
import { startTollgate } from './runtime.ts';
import { runOps } from './ops-cli.ts';

const HELP = `Usage: tollgate [--roles gateway,aggregator,control]
       tollgate rebuild|reconcile [--url URL]   (see tollgate rebuild --help)

Runs the Tollgate gateway. With no settings, every role runs in this one process with
embedded adapters (in-memory state, in-process log, chDB under DATA_DIR).

Options:
  --roles LIST   roles to run (default: all three); splitting needs KAFKA_BROKERS and REDIS_URL
  -h, --help     show this help

Settings come from the environment; see README.md ("Configuration").`;

async function main(argv: string[]): Promise<number> {
  const command = argv[0];
  if (command === 'rebuild' || command === 'reconcile') return runOps(command, argv.slice(1), process.env);
  if (command !== undefined && !command.startsWith('-')) {
    process.stderr.write(`tollgate: unknown command ${command}\n${HELP}\n`);
    return 2;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  let config;
  try {
    config = loadConfig(process.env, argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tollgate: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let app;
  try {
    app = await startTollgate(config);
  } catch (err) {
    if (err instanceof CatalogError) {
      process.stderr.write(`tollgate: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = app.server!.log;
  log.info({
    url: app.url, roles: config.roles, catalog: app.catalog.name, credit: app.catalog.credit.description,
    upstream: config.upstream.url, dataDir: config.dataDir,
    // the edge's socket limits in force (MAX_CONNECTIONS defaults from the open-file limit)
    maxConnections: app.server.server.maxConnections, requestTimeoutMs: config.http.requestTimeoutMs,
    cors: config.http.corsOrigins ?? 'off',
  }, 'tollgate started');
  if (app.adminTokenFile) log.info({ file: app.adminTokenFile }, 'admin token (ADMIN_TOKEN unset) is in this file');
  if (!config.upstream.apiKey) log.warn('UPSTREAM_API_KEY is not set: the upstream will see no credential');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      log.error('shutdown grace period exceeded; exiting');
      process.exit(1);
    }, config.shutdownGraceMs).unref();
    await app.close();
    clearTimeout(timer);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  return -1;
}

main(process.argv.slice(2)).then(
  (code) => { if (code >= 0) process.exit(code); },
  (err: unknown) => {
    process.stderr.write(`tollgate: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
