// Shared by the static deployment tests (test/deploy/*.test.ts): the deployment files parsed, and
// what the code really offers to compare them with (config schema, routes, metrics, roles).
// There is no Docker engine on the test machines, so nothing here runs a container.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, matchesGlob, relative } from 'node:path';
import { parse } from 'yaml';
import { CONFIG_VARIABLES, loadConfig } from '@tollgate/config';
import type { Config } from '@tollgate/config';
import { createHttpServer, HEALTH_PATH, READY_PATH } from '@tollgate/http';
import { Metrics } from '@tollgate/telemetry';

export const ROOT = join(import.meta.dirname, '../..');
export const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
export const exists = (path: string): boolean => existsSync(join(ROOT, path));
/** A YAML file of the repository, `<<` merge keys resolved (compose's `x-` anchors use them). */
export const readYaml = <T = any>(path: string): T => parse(read(path), { merge: true }) as T;

export { CONFIG_VARIABLES, HEALTH_PATH, READY_PATH, loadConfig };
export type { Config };

/** Image the compose files build from the repository's Dockerfile. */
export const TOLLGATE_IMAGE = 'tollgate:local';
/** Default of the config schema's PORT (the port every Tollgate container listens on unless set). */
export const DEFAULT_PORT = loadConfig({}).port;

/**
 * Standard OpenTelemetry SDK variables (opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables
 * and the OTLP exporter spec). Not all are in the config schema: the SDK reads them itself.
 */
export const OTEL_STANDARD = new Set([
  'OTEL_SDK_DISABLED', 'OTEL_SERVICE_NAME', 'OTEL_RESOURCE_ATTRIBUTES', 'OTEL_PROPAGATORS', 'OTEL_LOG_LEVEL',
  'OTEL_TRACES_SAMPLER', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_TRACES_EXPORTER', 'OTEL_METRICS_EXPORTER', 'OTEL_LOGS_EXPORTER',
  'OTEL_BSP_SCHEDULE_DELAY', 'OTEL_BSP_EXPORT_TIMEOUT', 'OTEL_BSP_MAX_QUEUE_SIZE', 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
  'OTEL_METRIC_EXPORT_INTERVAL', 'OTEL_METRIC_EXPORT_TIMEOUT',
  ...['', 'TRACES_', 'METRICS_', 'LOGS_'].flatMap((s) => ['ENDPOINT', 'PROTOCOL', 'HEADERS', 'TIMEOUT', 'COMPRESSION', 'INSECURE', 'CERTIFICATE']
    .map((v) => `OTEL_EXPORTER_OTLP_${s}${v}`)),
]);
/** Node's own: not Tollgate settings, but legitimate in a Node container. */
export const NODE_VARIABLES = new Set(['NODE_ENV', 'NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS', 'TZ']);

/** The SIMULATOR_* variables services/simulator/src/main.ts reads (the quoted names in its code, not its usage text). */
export function simulatorVariables(): Set<string> {
  return new Set([...read('services/simulator/src/main.ts').matchAll(/['"](SIMULATOR_[A-Z_]+)['"]/g)].map((m) => m[1]!));
}

/** A compose reference such as `${ADMIN_TOKEN:?message}`. */
export interface EnvRef { name: string; op: '' | ':-' | '-' | ':?' | '?'; arg: string }
const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?|\?)([^}]*))?\}/g;

/** Every `${NAME…}` reference in a compose value. */
export function refsOf(value: string): EnvRef[] {
  return [...value.matchAll(REF)].map((m) => ({ name: m[1]!, op: (m[2] ?? '') as EnvRef['op'], arg: m[3] ?? '' }));
}

/**
 * Compose interpolation of one value with `env` (the operator's .env): `${X}`, `${X:-default}`,
 * `${X-default}`, `${X:?err}`/`${X?err}` (throws when unset), `$$` → `$`.
 */
export function interpolate(value: string, env: Record<string, string>): string {
  return value.replace(REF, (_all, name: string, op: string | undefined, arg: string | undefined) => {
    const v = env[name];
    if (op === ':?' || op === '?') {
      if (v === undefined || (op === ':?' && v === '')) throw new Error(`${name} is required: ${arg}`);
      return v;
    }
    if (op === ':-') return v === undefined || v === '' ? arg! : v;
    if (op === '-') return v === undefined ? arg! : v;
    return v ?? '';
  }).replaceAll('$$', '$');
}

/** A compose service as the tests use it (after merge keys). */
export interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: Array<string | { target: number; published?: number | string }>;
  volumes?: Array<string | { type: string; source?: string; target: string }>;
  profiles?: string[];
  healthcheck?: { test: string[] | string };
  stop_grace_period?: string;
  networks?: string[] | Record<string, { ipv4_address?: string } | null>;
  depends_on?: string[] | Record<string, unknown>;
}
export interface ComposeFile { services: Record<string, ComposeService>; networks?: Record<string, any>; volumes?: Record<string, unknown> }

/** A service's environment as a name → raw (uninterpolated) value map. */
export function environmentOf(s: ComposeService): Record<string, string> {
  const env = s.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((e) => { const i = e.indexOf('='); return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)]; }));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

/** Values for every required reference: what an operator's filled-in .env would hold. */
export const OPERATOR_ENV: Record<string, string> = {
  ADMIN_TOKEN: 'admin-token-0123456789abcdef', KEY_HASH_SECRET: 'hash-secret-0123456789abcdef',
  CLICKHOUSE_PASSWORD: 'ch-password-0123456789', GRAFANA_ADMIN_PASSWORD: 'grafana-password-0123',
  UPSTREAM_API_KEY: 'sk-ant-test-key',
};

/** A service's environment as the container gets it with OPERATOR_ENV as .env. */
export function resolvedEnvironment(s: ComposeService, env: Record<string, string> = OPERATOR_ENV): Record<string, string> {
  return Object.fromEntries(Object.entries(environmentOf(s)).map(([k, v]) => [k, interpolate(v, env)]));
}

/** The services that run the Tollgate program (the image, its default entrypoint). */
export function tollgateServices(file: ComposeFile): Array<[string, ComposeService]> {
  return Object.entries(file.services).filter(([, s]) => s.image === TOLLGATE_IMAGE && s.entrypoint === undefined);
}
/** The services that run the simulator from the same image. */
export function simulatorServices(file: ComposeFile): Array<[string, ComposeService]> {
  return Object.entries(file.services).filter(([, s]) => s.image === TOLLGATE_IMAGE && JSON.stringify(s.entrypoint ?? '').includes('services/simulator/src/main.ts'));
}
export const asArgv = (v: string[] | string | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(String) : v.split(/\s+/).filter(Boolean));

/** What a Tollgate container would run with: `loadConfig` over its environment and command. */
export function configOf(s: ComposeService): Config {
  return loadConfig(resolvedEnvironment(s), asArgv(s.command));
}

/** The port of a URL (`http://h:8080/x` → 8080; default ports of http/https). */
export function portOf(url: string): number {
  const u = new URL(url);
  return u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
}

/** The http URL a `node -e "fetch('…')"` (or wget/curl) healthcheck requests, `$PORT`-style expressions resolved with `port`. */
export function healthcheckUrl(test: string[] | string, port: number): URL {
  const text = (Array.isArray(test) ? test.join(' ') : test).replace(/'\+\(process\.env\.PORT\|\|\d+\)\+'/g, String(port));
  const m = /https?:\/\/[^'"\s)]+/.exec(text);
  assert.ok(m, `no URL in healthcheck ${text}`);
  return new URL(m[0]);
}

/** `30s`, `1m30s`, `500ms` → ms (compose durations). */
export function durationMs(d: string): number {
  let ms = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s|us)/g)) ms += Number(m[1]) * { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 }[m[2] as 'h']!;
  assert.ok(ms > 0 || /^0/.test(d), `unreadable duration ${d}`);
  return ms;
}

/**
 * What status a GET of `path` gets from the real Tollgate HTTP server (createHttpServer with
 * metrics, as every role builds it; no role routes: health, readiness and /metrics are common).
 */
export async function statusOf(path: string): Promise<number> {
  const app = createHttpServer({ bodyLimitBytes: 1024, telemetry: { metrics: new Metrics({ defaultMetrics: false }) } });
  try {
    return (await app.inject({ method: 'GET', url: path })).statusCode;
  } finally {
    await app.close();
  }
}

/** Source files of the program (no tests), for the metric definitions outside the Metrics class. */
function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (name === 'node_modules' || name === 'test') continue;
    if (statSync(join(ROOT, rel)).isDirectory()) sourceFiles(rel, out);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) out.push(rel);
  }
  return out;
}

/**
 * Every metric a Tollgate process exposes, name → type: the registry of `new Metrics()` (prom-client's
 * default process metrics and Tollgate's own), plus prom-client metrics or OTel instruments named
 * `tollgate_…` anywhere else in the source (e.g. a consumer-lag gauge registered by a consumer).
 */
export async function exposedMetrics(): Promise<Map<string, string>> {
  const metrics = new Metrics();
  const names = new Map<string, string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) names.set(m.name, String(m.type));
  for (const file of [...sourceFiles('libs'), ...sourceFiles('services')]) {
    const text = read(file);
    for (const m of text.matchAll(/new (Counter|Gauge|Histogram|Summary)\(\{\s*name:\s*'(tollgate_[a-z0-9_]+)'/g)) names.set(m[2]!, m[1]!.toLowerCase());
    for (const m of text.matchAll(/create(?:Observable)?(Counter|UpDownCounter|Gauge|Histogram)\(\s*'(tollgate_[a-z0-9_]+)'/g)) names.set(m[2]!, m[1]!.toLowerCase());
  }
  return names;
}

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan', 'Inf', 'NaN']);
/** The metric names a PromQL expression selects (labels, functions, keywords and strings left out). */
export function promqlMetrics(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = [...stripped.matchAll(/(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![a-zA-Z0-9_:]|\s*\()/g)].map((m) => m[1]!);
  return [...new Set(names.filter((n) => !PROMQL_WORDS.has(n)))];
}

/** Why `name` (from a query) is not a metric the code exposes, or undefined when it is. */
export function unknownMetric(name: string, exposed: Map<string, string>): string | undefined {
  if (name === 'up') return undefined; // Prometheus' own, per target
  if (exposed.has(name)) return undefined;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m && (exposed.get(m[1]!) === 'histogram' || exposed.get(m[1]!) === 'summary')) return undefined;
  return `${name} is not a metric of the code`;
}

/** The npm workspaces of the root package.json, expanded (`libs/*` → libs/config, …). */
export function workspaces(): string[] {
  const globs = (JSON.parse(read('package.json')) as { workspaces: string[] }).workspaces;
  return globs.flatMap((g) => {
    const [dir, star] = g.split('/');
    assert.equal(star, '*', `workspace glob ${g}`);
    return readdirSync(join(ROOT, dir!)).filter((n) => exists(join(dir!, n, 'package.json'))).map((n) => `${dir}/${n}`).sort();
  });
}

/**
 * Whether .dockerignore keeps `path` out of the build context. Docker's rules: patterns are
 * relative to the context root, Go filepath.Match plus `**`, a match on a directory excludes
 * everything under it, `!` re-includes, the last matching line wins.
 */
export function dockerIgnored(path: string, dockerignore = read('.dockerignore')): boolean {
  const rules = dockerignore.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    .map((l) => ({ negate: l.startsWith('!'), pattern: l.replace(/^!/, '').replace(/^\/+/, '').replace(/\/+$/, '') }));
  const parts = relative('.', path).split('/');
  let ignored = false;
  for (const { negate, pattern } of rules) {
    for (let i = 1; i <= parts.length; i++) {
      if (matchesGlob(parts.slice(0, i).join('/'), pattern)) { ignored = !negate; break; }
    }
  }
  return ignored;
}
