// Standalone simulator for benchmarks and offline demos: `npm run simulator`.
import { enableCompileCache, flushCompileCache } from 'node:module';
import type { SimulatorOptions } from './app.ts';

// Node's compile cache for the server's modules, imported below once the settings are read (as
// services/tollgate/src/main.ts does): NODE_COMPILE_CACHE, else <os tmpdir>/node-compile-cache.
enableCompileCache();

interface Config {
  port: number;
  host: string;
  options: SimulatorOptions;
}

function readConfig(env: NodeJS.ProcessEnv): { config: Config; problems: string[] } {
  const problems: string[] = [];
  const number = (name: string, fallback: number | undefined, max: number, integer: boolean): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0 || value > max || (integer && !Number.isInteger(value))) {
      problems.push(`${name}: expected a${integer ? 'n integer' : ' number'} between 0 and ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  const apiKey = env['SIMULATOR_API_KEY'];
  const options: SimulatorOptions = {
    latencyMs: number('SIMULATOR_LATENCY_MS', undefined, 600_000, false),
    ttftMs: number('SIMULATOR_TTFT_MS', undefined, 600_000, false),
    tokensPerSecond: number('SIMULATOR_TPS', undefined, 1_000_000, false),
    logger: env['SIMULATOR_LOG'] === '1',
  };
  if (apiKey !== undefined && apiKey !== '') options.apiKey = apiKey;
  const config: Config = {
    port: number('SIMULATOR_PORT', 4010, 65_535, true) ?? 4010,
    host: env['SIMULATOR_HOST'] || '127.0.0.1',
    options,
  };
  return { config, problems };
}

const USAGE = `Usage: npm run simulator [-- --help]

An Anthropic-compatible upstream for tests, benchmarks and offline demos (never a production
upstream). Point the gateway at it with UPSTREAM_URL=http://127.0.0.1:<port>. It also serves
OpenAI Chat Completions (POST /v1/chat/completions): an upstream of platform openai with
base_url http://127.0.0.1:<port>/v1. Configured by environment variables:

  SIMULATOR_PORT        port to listen on (default 4010)
  SIMULATOR_HOST        address to bind (default 127.0.0.1)
  SIMULATOR_LATENCY_MS  delay before response headers, ms (default 0)
  SIMULATOR_TTFT_MS     delay before the first content delta, ms (default 0)
  SIMULATOR_TPS         output tokens per second, 0 = unlimited (default 0)
  SIMULATOR_API_KEY     when set, the only credential accepted (default: any non-empty key)
  SIMULATOR_LOG=1       log every request

Per-request control: [[sim key=value ...]] in the last user message's text, or x-sim-<key>
headers. Routes, token rule and directives: services/simulator/README.md.

Example:
  SIMULATOR_PORT=4010 SIMULATOR_TPS=50 npm run simulator

Exit status: 0 stopped by SIGINT/SIGTERM, 1 cannot listen, 2 an unknown argument or a bad setting.
`;

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (args.length > 0) {
  process.stderr.write(`simulator: unknown argument ${JSON.stringify(args[0])}; it is configured by environment variables (see npm run simulator -- --help)\n`);
  process.exit(2);
}

const { config, problems } = readConfig(process.env);
if (problems.length > 0) {
  process.stderr.write(`simulator: invalid configuration\n${problems.map((p) => `  ${p}\n`).join('')}`);
  process.exit(2);
}

const { buildSimulator } = await import('./app.ts');
const app = buildSimulator(config.options);
try {
  const address = await app.listen({ port: config.port, host: config.host });
  flushCompileCache();
  process.stderr.write(`simulator: Anthropic-compatible upstream listening on ${address}\n`);
} catch (error) {
  process.stderr.write(`simulator: cannot listen on ${config.host}:${config.port}: ${String(error)}\n`);
  process.exit(1);
}

let closing = false;
const shutdown = (signal: NodeJS.Signals): void => {
  // A second signal means the operator does not want to wait for open streams.
  if (closing) process.exit(1);
  closing = true;
  process.stderr.write(`simulator: ${signal}, shutting down\n`);
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
