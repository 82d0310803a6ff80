// docker-compose.yml (distributed stack) and compose.embedded.yml checked against the code: every
// Tollgate container's settings go through the real loadConfig, every name against the schema,
// every port and path against what the server serves, every dashboard and alert query against
// the metrics the code registers. No Docker engine needed (or present).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '@tollgate/telemetry';
import { startTollgate } from '@tollgate/tollgate';
import {
  CONFIG_VARIABLES, DEFAULT_PORT, NODE_VARIABLES, OPERATOR_ENV, OTEL_STANDARD, READY_PATH, asArgv, configOf, durationMs,
  environmentOf, exists, exposedMetrics, healthcheckUrl, interpolate, loadConfig, portOf, promqlMetrics, read, readYaml,
  refsOf, resolvedEnvironment, simulatorServices, simulatorVariables, statusOf, tollgateServices, unknownMetric,
} from './support.ts';
import type { ComposeFile, ComposeService } from './support.ts';

const FULL = 'docker-compose.yml';
const EMBEDDED = 'compose.embedded.yml';
const full = readYaml<ComposeFile>(FULL);
const embedded = readYaml<ComposeFile>(EMBEDDED);
const SECRETS = ['ADMIN_TOKEN', 'FINANCE_TOKEN', 'KEY_HASH_SECRET', 'UPSTREAM_API_KEY', 'CLICKHOUSE_PASSWORD', 'GRAFANA_ADMIN_PASSWORD', 'GF_SECURITY_ADMIN_PASSWORD'];
/** Shutdown: SHUTDOWN_GRACE_MS, then up to 10 s to settle and flush (services/tollgate/src/main.ts SHUTDOWN_SETTLE_MS). */
const SHUTDOWN_SETTLE_MS = 10_000;
assert.match(read('services/tollgate/src/main.ts'), /const SHUTDOWN_SETTLE_MS = 10_000;/, 'the settle time this test assumes');

const portFromEnv = (s: ComposeService): number => configOf(s).port;

test('every Tollgate container starts with settings loadConfig accepts (roles, URLs, TRUST_PROXY, secrets)', () => {
  for (const [file, compose] of [[FULL, full], [EMBEDDED, embedded]] as const) {
    const services = tollgateServices(compose);
    assert.ok(services.length > 0, `${file}: no Tollgate service`);
    for (const [name, s] of services) {
      assert.doesNotThrow(() => configOf(s), `${file} ${name}`);
    }
  }
});

test('unknown variable names: every environment name given to Tollgate is in the config schema or a standard OTEL_/Node one', () => {
  const known = new Set([...CONFIG_VARIABLES, ...OTEL_STANDARD, ...NODE_VARIABLES]);
  const sim = simulatorVariables();
  for (const [file, compose] of [[FULL, full], [EMBEDDED, embedded]] as const) {
    for (const [name, s] of tollgateServices(compose)) {
      const unknown = Object.keys(environmentOf(s)).filter((k) => !known.has(k));
      assert.deepEqual(unknown, [], `${file} ${name}: variables Tollgate does not read`);
    }
    for (const [name, s] of simulatorServices(compose)) {
      const unknown = Object.keys(environmentOf(s)).filter((k) => !sim.has(k) && !NODE_VARIABLES.has(k));
      assert.deepEqual(unknown, [], `${file} ${name}: variables the simulator does not read`);
    }
  }
});

test('roles: two or more gateways, control, and an aggregator with both groups; gateways stateless of each other', () => {
  const configs = tollgateServices(full).map(([name, s]) => ({ name, c: configOf(s) }));
  const gateways = configs.filter(({ c }) => c.roles.includes('gateway'));
  assert.ok(gateways.length >= 2, `${gateways.length} gateway service(s)`);
  assert.ok(configs.every(({ c }) => c.kafka && c.redis && c.clickhouse), 'every process distributed, on the ClickHouse server');
  assert.ok(configs.some(({ c }) => c.roles.includes('control')), 'a control service');
  const groups = new Set(configs.filter(({ c }) => c.roles.includes('aggregator')).flatMap(({ c }) => c.aggregator.groups));
  assert.deepEqual([...groups].sort(), ['ledger', 'warehouse']);
  // Every event names its gateway (GATEWAY_ID): two gateways with one id could not be told apart.
  const ids = gateways.map(({ c }) => c.gatewayId);
  assert.equal(new Set(ids).size, ids.length, `gateway ids ${ids.join(', ')}`);
  // Each process's spool (DATA_DIR/spool) must be its own.
  const volumes = configs.map(({ name }) => JSON.stringify(full.services[name]!.volumes));
  assert.equal(new Set(volumes).size, volumes.length, 'a data volume shared by two processes');
  // The same secrets in every process (keys hash alike, the admin token works everywhere).
  for (const key of ['KEY_HASH_SECRET', 'ADMIN_TOKEN'] as const) {
    const values = new Set(tollgateServices(full).map(([, s]) => resolvedEnvironment(s)[key]));
    assert.equal(values.size, 1, `${key} differs between processes`);
  }
});

test('secrets have no default baked in: a token is a ${VAR} reference without a non-empty default, never a literal', () => {
  for (const [file, compose] of [[FULL, full], [EMBEDDED, embedded]] as const) {
    for (const [name, s] of Object.entries(compose.services)) {
      for (const [key, raw] of Object.entries(environmentOf(s))) {
        if (!SECRETS.includes(key)) continue;
        const refs = refsOf(raw);
        assert.ok(refs.length === 1 && raw === `\${${refs[0]!.name}${refs[0]!.op}${refs[0]!.arg}}`, `${file} ${name} ${key}=${raw}: not a reference alone`);
        const { op, arg } = refs[0]!;
        assert.ok(!((op === ':-' || op === '-') && arg !== ''), `${file} ${name} ${key} defaults to ${JSON.stringify(arg)}`);
      }
    }
  }
  // Without a .env the distributed stack refuses to start rather than run with no secret.
  const gateway = tollgateServices(full)[0]![1];
  assert.throws(() => Object.values(environmentOf(gateway)).forEach((v) => interpolate(v, {})), /ADMIN_TOKEN|KEY_HASH_SECRET|CLICKHOUSE_PASSWORD|UPSTREAM_API_KEY/);
});

test('the env example names every variable the distributed stack requires', () => {
  const example = read('deploy/compose/env.example');
  const required = new Set<string>();
  for (const s of Object.values(full.services)) for (const v of Object.values(environmentOf(s))) for (const r of refsOf(v)) if (r.op.endsWith('?')) required.add(r.name);
  assert.deepEqual([...required].sort(), Object.keys(OPERATOR_ENV).sort(), 'the operator env of these tests');
  for (const name of required) assert.match(example, new RegExp(`^${name}=`, 'm'), `${name} missing from deploy/compose/env.example`);
});

test('health paths: container healthchecks request a path the server answers 200, on the port the process listens on', async () => {
  for (const [file, compose] of [[FULL, full], [EMBEDDED, embedded]] as const) {
    for (const [name, s] of tollgateServices(compose)) {
      const check = s.healthcheck?.test;
      if (!check) continue; // the image's HEALTHCHECK applies (dockerfile.test.ts)
      const url = healthcheckUrl(check, portFromEnv(s));
      assert.equal(portOf(url.href), portFromEnv(s), `${file} ${name}: healthcheck port`);
      assert.equal(await statusOf(url.pathname), 200, `${file} ${name}: GET ${url.pathname}`);
    }
  }
  assert.ok(tollgateServices(full).every(([, s]) => s.healthcheck && healthcheckUrl(s.healthcheck.test, 8080).pathname === READY_PATH),
    'distributed services are healthy when ready (a rebuilding aggregator is not)');
});

test('ports: the embedded service publishes the port it listens on; the simulator listens where the offline UPSTREAM_URL points', () => {
  const [, tg] = tollgateServices(embedded)[0]!;
  const port = portFromEnv(tg);
  assert.ok((tg.ports ?? []).some((p) => String(p).endsWith(`:${port}`)), `embedded publishes ${JSON.stringify(tg.ports)}, listens on ${port}`);
  assert.equal(DEFAULT_PORT, 8080);
  for (const [file, compose, text] of [[FULL, full, read(FULL)], [EMBEDDED, embedded, read(EMBEDDED)]] as const) {
    const sims = simulatorServices(compose);
    assert.equal(sims.length, 1, `${file}: one simulator`);
    const [simName, sim] = sims[0]!;
    assert.deepEqual(sim.profiles, ['offline'], `${file}: the simulator only in the offline profile`);
    const env = resolvedEnvironment(sim);
    assert.equal(env.SIMULATOR_HOST, '0.0.0.0', `${file}: the simulator must listen beyond its container`);
    const simPort = Number(env.SIMULATOR_PORT);
    const offline = [...text.matchAll(/UPSTREAM_URL=(http:\/\/[^\s]+)/g)].map((m) => new URL(m[1]!));
    assert.ok(offline.length > 0, `${file}: documents the offline UPSTREAM_URL`);
    for (const u of offline) assert.equal(`${u.hostname}:${portOf(u.href)}`, `${simName}:${simPort}`, `${file}: offline UPSTREAM_URL`);
    const hc = sim.healthcheck ? healthcheckUrl(sim.healthcheck.test, simPort) : undefined;
    if (hc) assert.equal(portOf(hc.href), simPort);
  }
  for (const u of [...read('deploy/compose/env.example').matchAll(/UPSTREAM_URL=(http:\/\/[^\s]+)/g)].map((m) => new URL(m[1]!))) {
    const [simName, sim] = simulatorServices(full)[0]!;
    assert.equal(`${u.hostname}:${portOf(u.href)}`, `${simName}:${resolvedEnvironment(sim).SIMULATOR_PORT}`, 'env.example offline UPSTREAM_URL');
  }
});

test('backing services: Kafka, Redis, ClickHouse and the collector are where Tollgate is told to find them', () => {
  const s = full.services;
  const c = configOf(tollgateServices(full)[0]![1]);
  // Kafka KRaft: broker and controller in one node; the advertised listener is the broker list.
  const kafka = resolvedEnvironment(s.kafka!);
  assert.match(s.kafka!.image!, /^apache\/kafka:/);
  assert.match(kafka.KAFKA_PROCESS_ROLES!, /broker/);
  assert.match(kafka.KAFKA_PROCESS_ROLES!, /controller/);
  const advertised = kafka.KAFKA_ADVERTISED_LISTENERS!.split(',').map((l) => l.replace(/^\w+:\/\//, ''));
  assert.deepEqual(c.kafka!.brokers, advertised);
  // Redis and ClickHouse by service name and their images' ports.
  assert.equal(new URL(c.redis!.url).host, 'redis:6379');
  assert.match(s.redis!.image!, /^redis:/);
  const ch = resolvedEnvironment(s.clickhouse!);
  assert.equal(new URL(c.clickhouse!.url).host, 'clickhouse:8123');
  assert.equal(ch.CLICKHOUSE_USER, c.clickhouse!.username);
  assert.equal(ch.CLICKHOUSE_PASSWORD, c.clickhouse!.password);
  assert.equal(ch.CLICKHOUSE_DB, c.clickhouse!.database);
  // OTLP/HTTP to the collector's http receiver; the collector's traces to Jaeger's OTLP port.
  const collector = readYaml('deploy/compose/otel-collector.yaml');
  for (const [, svc] of tollgateServices(full)) {
    const endpoint = new URL(resolvedEnvironment(svc).OTEL_EXPORTER_OTLP_ENDPOINT!);
    assert.equal(endpoint.hostname, 'otel-collector');
    assert.equal(`:${endpoint.port}`, /:\d+$/.exec(collector.receivers.otlp.protocols.http.endpoint)![0]);
    assert.equal(resolvedEnvironment(svc).OTEL_EXPORTER_OTLP_PROTOCOL?.startsWith('http/'), true, 'port 4318 speaks OTLP/HTTP');
  }
  const jaegerExporter = Object.entries(collector.exporters as Record<string, { endpoint?: string }>).find(([k]) => k.startsWith('otlp'))![1];
  assert.equal(jaegerExporter.endpoint, 'jaeger:4317');
  assert.equal(resolvedEnvironment(s.jaeger!).COLLECTOR_OTLP_ENABLED, 'true');
  for (const p of Object.values(collector.service.pipelines as Record<string, { receivers: string[]; exporters: string[] }>)) {
    for (const r of p.receivers) assert.ok(r in collector.receivers, `receiver ${r}`);
    for (const e of p.exporters) assert.ok(e in collector.exporters, `exporter ${e}`);
  }
  // Tollgate waits for its backing services to be healthy, and each has a healthcheck.
  for (const [name, svc] of tollgateServices(full)) {
    for (const dep of ['kafka', 'redis', 'clickhouse']) {
      assert.deepEqual((svc.depends_on as Record<string, unknown>)[dep], { condition: 'service_healthy' }, `${name} → ${dep}`);
      assert.ok(s[dep]!.healthcheck, `${dep} healthcheck`);
    }
  }
});

test('platforms: every service that opens chDB (embedded, or a warehouse owner without CLICKHOUSE_URL) is pinned to linux/amd64', () => {
  let pinned = 0;
  for (const [file, compose] of [[FULL, full], [EMBEDDED, embedded]] as const) {
    for (const [name, s] of tollgateServices(compose)) {
      const config = configOf(s);
      const opensChdb = !config.clickhouse && (!config.kafka || (config.roles.includes('aggregator') && config.aggregator.groups.includes('warehouse')));
      if (opensChdb) {
        assert.equal((s as { platform?: string }).platform, 'linux/amd64', `${file} ${name} opens chDB, which has no arm64 library`);
        pinned++;
      }
    }
  }
  assert.ok(pinned >= 1, 'the embedded service opens chDB');
});

test('documented commands: every `docker compose … exec` passes -T (no terminal, so captured output has no \\r), and the Deploy section runs operator commands in a container', () => {
  const files = ['README.md', 'deploy/README.md', FULL, EMBEDDED];
  let seen = 0;
  for (const f of files) {
    for (const m of read(f).matchAll(/docker compose\b[^\n`]*?\bexec\b([^\n`]*)/g)) {
      seen++;
      assert.match(m[1]!, /^\s+-T\b/, `${f}: "${m[0]}" without -T`);
    }
  }
  assert.ok(seen >= 4, 'the documented exec commands were found');
  const readme = read('README.md');
  const start = readme.indexOf('\n## Deploy\n');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  assert.match(section, /Nothing below needs Node on the host/);
  // The tour's `npm run -s tollgate -- reconcile` in its container form, for both stacks.
  assert.match(section, /docker compose -f compose\.embedded\.yml exec -T tollgate node services\/tollgate\/src\/main\.ts reconcile --url http:\/\/127\.0\.0\.1:8080/);
  assert.match(section, /docker compose exec -T aggregator node services\/tollgate\/src\/main\.ts reconcile --url http:\/\/127\.0\.0\.1:8080/);
});

test('Prometheus scrapes the collector where the collector serves its own metrics (a pull reader on all interfaces)', () => {
  const prom = readYaml<{ scrape_configs: Array<{ job_name: string; static_configs?: Array<{ targets: string[] }> }> }>('deploy/compose/prometheus/prometheus.yml');
  const collector = readYaml<any>('deploy/compose/otel-collector.yaml');
  const targets = prom.scrape_configs.flatMap((j) => (j.static_configs ?? []).flatMap((c) => c.targets)).filter((t) => t.startsWith('otel-collector:'));
  const readers = (collector.service?.telemetry?.metrics?.readers ?? []) as any[];
  const served = readers.map((r) => r.pull?.exporter?.prometheus).filter(Boolean).filter((p: any) => p.host === '0.0.0.0' || p.host === '::');
  for (const t of targets) {
    assert.ok(served.some((p: any) => `otel-collector:${p.port}` === t), `Prometheus scrapes ${t}, which the collector does not serve on a reachable address`);
  }
});

test('graceful drain: a stop never cuts a stream the config allows (SHUTDOWN_GRACE_MS ≥ UPSTREAM_TIMEOUT_MS), and compose waits grace plus settle before SIGKILL', () => {
  for (const [file, compose] of [[FULL, full], [EMBEDDED, embedded]] as const) {
    for (const [name, s] of tollgateServices(compose)) {
      const config = configOf(s);
      if (config.roles.includes('gateway')) {
        assert.ok(config.shutdownGraceMs >= config.upstream.timeoutMs, `${file} ${name}: SHUTDOWN_GRACE_MS ${config.shutdownGraceMs} < UPSTREAM_TIMEOUT_MS ${config.upstream.timeoutMs}: a drain cuts long streams`);
      }
      const needed = config.shutdownGraceMs + SHUTDOWN_SETTLE_MS;
      assert.ok(s.stop_grace_period && durationMs(s.stop_grace_period) >= needed, `${file} ${name}: stop_grace_period ${s.stop_grace_period} < ${needed} ms`);
    }
  }
});

test('no checkout in a container: nothing bind-mounts the repository or runs npm at start; mounted files exist', () => {
  for (const [file, compose] of [[FULL, full], [EMBEDDED, embedded]] as const) {
    for (const [name, s] of Object.entries(compose.services)) {
      const argv = [...asArgv(s.entrypoint), ...asArgv(s.command)].join(' ');
      assert.doesNotMatch(argv, /\bnpm\b|\bsh -c\b/, `${file} ${name}: ${argv}`);
      for (const v of s.volumes ?? []) {
        const source = typeof v === 'string' ? v.split(':')[0]! : v.source ?? '';
        if (!source.startsWith('.')) continue;
        assert.notEqual(source.replace(/\/+$/, ''), '.', `${file} ${name} mounts the checkout`);
        assert.ok(exists(source), `${file} ${name}: ${source} does not exist`);
      }
    }
  }
});

test('embedded compose: one process, every role, embedded adapters, its data on a volume at DATA_DIR', () => {
  const services = tollgateServices(embedded);
  assert.equal(services.length, 1);
  const [, s] = services[0]!;
  const c = configOf(s);
  assert.deepEqual(c.roles, ['gateway', 'aggregator', 'control']);
  assert.equal(c.kafka, undefined);
  assert.equal(c.redis, undefined);
  const named = (s.volumes ?? []).map((v) => String(v).split(':')).find(([src]) => !src!.startsWith('.'));
  assert.ok(named && named[1] === c.dataDir, `volume ${JSON.stringify(s.volumes)} at DATA_DIR ${c.dataDir}`);
  assert.ok(named[0]! in (embedded.volumes ?? {}), 'a named volume');
  // Embedded mode needs no secret: the admin token is generated into DATA_DIR when unset.
  assert.doesNotThrow(() => loadConfig(resolvedEnvironment(s, {}), asArgv(s.command)));
});

test('Prometheus scrapes every Tollgate process on its port at the path that serves metrics', async () => {
  const prom = readYaml('deploy/compose/prometheus/prometheus.yml');
  const job = prom.scrape_configs.find((j: { job_name: string }) => j.job_name === 'tollgate');
  const targets: string[] = job.static_configs.flatMap((sc: { targets: string[] }) => sc.targets);
  const expected = tollgateServices(full).map(([name, s]) => `${name}:${portFromEnv(s)}`);
  assert.deepEqual([...targets].sort(), [...expected].sort());
  assert.equal(await statusOf(job.metrics_path ?? '/metrics'), 200);
  const compose = full.services.prometheus!;
  for (const file of prom.rule_files as string[]) {
    const mount = (compose.volumes ?? []).map(String).find((v) => v.split(':')[1] === file);
    assert.ok(mount, `rule file ${file} is mounted`);
  }
});

test('dashboard and alerts: every metric a query selects is one the code registers', async () => {
  const exposed = await exposedMetrics();
  const dashboard = JSON.parse(read('deploy/compose/grafana/dashboards/tollgate.json')) as { panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }> };
  const alerts = readYaml('deploy/compose/prometheus/alerts.yml');
  const queries = [
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr }))),
    ...alerts.groups.flatMap((g: { rules: Array<{ alert: string; expr: string }> }) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }))),
  ];
  assert.ok(queries.length >= 20);
  const problems = queries.flatMap(({ where, expr }) => {
    const names = promqlMetrics(expr);
    if (names.length === 0) return [`${where}: selects no metric`];
    return names.map((n) => unknownMetric(n, exposed)).filter(Boolean).map((p) => `${where}: ${p}`);
  });
  assert.deepEqual(problems, []);
});

/** Every dashboard panel query and alert expression, with where it is. */
function queriesOf(): Array<{ where: string; expr: string }> {
  const dashboard = JSON.parse(read('deploy/compose/grafana/dashboards/tollgate.json')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  const alerts = readYaml('deploy/compose/prometheus/alerts.yml');
  return [
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr }))),
    ...alerts.groups.flatMap((g: { rules: Array<{ alert: string; expr: string }> }) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }))),
  ];
}

test('dashboard and alerts: every label a query filters or groups by is a label of the metrics it selects, and values of closed sets (route, reason, class) are ones the code produces', async () => {
  // Label names from the code's metric definitions (prom-client keeps them on each metric).
  const metrics = new Metrics();
  const labelsOf = new Map<string, Set<string>>();
  for (const m of metrics.registry.getMetricsAsArray() as unknown as Array<{ name: string; labelNames?: string[]; constructor: { name: string } }>) {
    labelsOf.set(m.name, new Set(m.labelNames ?? []));
  }
  // Labels Prometheus adds at scrape time: job, instance, and the static_configs labels.
  const prom = readYaml('deploy/compose/prometheus/prometheus.yml');
  const targetLabels = new Set(['job', 'instance', ...prom.scrape_configs.flatMap((j: any) => (j.static_configs ?? []).flatMap((c: any) => Object.keys(c.labels ?? {})))]);
  const labelsFor = (name: string): Set<string> | undefined => {
    const base = labelsOf.get(name) ?? labelsOf.get(name.replace(/_(bucket|sum|count)$/, ''));
    if (!base) return undefined;
    return new Set([...base, ...(name.endsWith('_bucket') ? ['le'] : []), ...targetLabels]);
  };
  // Closed value sets, from the code itself. route: the routes a process with every role serves.
  const tg = await startTollgate(loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-labels-')), LOG_LEVEL: 'silent' }), { listen: false });
  const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
  const isRoute = (v: string) => METHODS.some((method) => tg.server.hasRoute({ method, url: v }));
  // class: every token class the gateway meters; reason: the refusals the constructor pre-registers.
  metrics.usage('m', { input: 1, output: 1, cacheRead: 1, cacheWrite5m: 1, cacheWrite1h: 1 }, 0n);
  const text = await metrics.registry.metrics();
  const valuesIn = (metric: string, label: string) => new Set([...text.matchAll(new RegExp(`^${metric}\\{[^}]*\\b${label}="([^"]*)"`, 'gm'))].map((m) => m[1]!));
  const closed: Record<string, (v: string) => boolean> = {
    route: isRoute,
    class: (v) => valuesIn('tollgate_tokens_total', 'class').has(v),
    reason: (v) => valuesIn('tollgate_holds_refused_total', 'reason').has(v),
  };
  const problems: string[] = [];
  try {
    for (const { where, expr } of queriesOf()) {
      const selected = promqlMetrics(expr);
      for (const sel of expr.matchAll(/([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}/g)) {
        const known = labelsFor(sel[1]!);
        for (const mm of sel[2]!.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
          const [, label, op, value] = mm as unknown as [string, string, string, string];
          if (known && !known.has(label)) problems.push(`${where}: ${sel[1]} has no label ${label}`);
          if (op === '=' && closed[label] && !closed[label]!(value)) problems.push(`${where}: ${label}="${value}" is never produced by the code`);
        }
      }
      for (const g of expr.matchAll(/\b(by|without|on|ignoring)\s*\(([^)]*)\)/g)) {
        const sets = selected.map(labelsFor).filter((x): x is Set<string> => x !== undefined);
        if (sets.length === 0) continue;
        for (const label of g[2]!.split(',').map((l) => l.trim()).filter(Boolean)) {
          if (!sets.some((set) => set.has(label))) problems.push(`${where}: ${g[1]} (${label}) names a label none of ${selected.join(', ')} has`);
        }
      }
    }
  } finally {
    await tg.close();
  }
  assert.deepEqual(problems, []);
});

test('dashboard covers traffic, latency, spend, errors, consumer lag, holds and upstream health', () => {
  const dashboard = JSON.parse(read('deploy/compose/grafana/dashboards/tollgate.json')) as { uid: string; panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
  for (const metric of ['tollgate_requests_total', 'tollgate_request_duration_seconds_bucket', 'tollgate_cost_micro_credits_total',
    'tollgate_consumer_lag', 'tollgate_holds_refused_total', 'tollgate_upstream_errors_total', 'tollgate_time_to_first_byte_seconds_bucket']) {
    assert.ok(exprs.includes(metric), `no panel on ${metric}`);
  }
  // Provisioned: the provider's path is where compose mounts the dashboards, the datasource uid is provisioned.
  const provider = readYaml('deploy/compose/grafana/provisioning/dashboards/dashboards.yml').providers[0];
  const mounts = (full.services.grafana!.volumes ?? []).map(String);
  assert.ok(mounts.some((m) => m.startsWith('./deploy/compose/grafana/dashboards:') && m.split(':')[1] === provider.options.path));
  const uids = readYaml('deploy/compose/grafana/provisioning/datasources/datasources.yml').datasources.map((d: { uid: string }) => d.uid);
  assert.ok(read('deploy/compose/grafana/dashboards/tollgate.json').match(/"uid": "([^"]+)"/g)!.every((m) => uids.includes(m.slice(8, -1)) || m === `"uid": "${dashboard.uid}"`));
});
