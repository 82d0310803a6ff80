// The Kubernetes manifests (deploy/kubernetes) checked against the code, with no cluster: every
// rendered object is schema-validated (kubernetes-models: the API's OpenAPI schemas compiled to
// validators), then checked statically against libs/config (env names, values, roles, PORT),
// libs/http (probe paths answered by a real server), main.ts (drain timing) and the Secret
// template (referenced keys). Each check also gets a mutation test: one drifted name or number
// must produce exactly the problem that names it, so no check here can silently pass.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import { CONFIG_VARIABLES, ROLES, loadConfig, type Config } from '@tollgate/config';
import { createHttpServer, HEALTH_PATH, READINESS_CHECK_TIMEOUT_MS, READY_PATH } from '@tollgate/http';
import { servicesRequired } from '../support/services.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const K8S = join(ROOT, 'deploy', 'kubernetes');
const OVERLAYS = ['clickhouse'];

/** A parsed Kubernetes object; only the fields these checks read are typed. */
type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [k: string]: any };

function parseDocs(text: string, source: string): Obj[] {
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length) throw new Error(`${source}: ${d.errors[0]!.message}`);
    return d.toJS() as Obj;
  }).filter((o) => o !== null);
}

/**
 * The base rendered without kustomize: its kustomization may hold only `resources` (asserted),
 * so the render is those files' objects in order. Compared with kustomize's own render below
 * whenever a kustomize is at hand.
 */
function renderBaseItself(): Obj[] {
  const dir = join(K8S, 'base');
  const k = parseDocs(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'), 'base/kustomization.yaml')[0] as any;
  const extra = Object.keys(k).filter((key) => !['apiVersion', 'kind', 'resources'].includes(key));
  assert.deepEqual(extra, [], 'base/kustomization.yaml may list only resources (this test renders it itself)');
  return (k.resources as string[]).flatMap((f) => parseDocs(readFileSync(join(dir, f), 'utf8'), `base/${f}`));
}

/** kustomize: $KUSTOMIZE, .tools/bin (deploy/kubernetes/tools.sh), PATH, else `kubectl kustomize`. */
function findKustomize(): string[] | undefined {
  const candidates = [process.env.KUSTOMIZE ? [process.env.KUSTOMIZE] : undefined, [join(ROOT, '.tools/bin/kustomize')], ['kustomize'], ['kubectl', 'kustomize']];
  for (const c of candidates) {
    if (!c) continue;
    if (c[0]!.includes('/') && !existsSync(c[0]!)) continue;
    try {
      execFileSync(c[0]!, [...c.slice(1), '--help'], { stdio: 'ignore' });
      return c;
    } catch { /* next */ }
  }
  return undefined;
}
const kustomize = findKustomize();
const kustomizeMissing = 'SKIPPED: no kustomize (run bash deploy/kubernetes/tools.sh, or install kubectl)';

function kustomizeBuild(dir: string): Obj[] {
  const [cmd, ...args] = kustomize!;
  // `kubectl kustomize DIR`, `kustomize build DIR`
  return parseDocs(execFileSync(cmd!, [...args, ...(cmd === 'kubectl' ? [] : ['build']), dir], { encoding: 'utf8' }), dir);
}

/** Schema problems of one object: its kubernetes-models class validates it (throws on a mismatch). */
async function schemaProblem(o: Obj): Promise<string | undefined> {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : [undefined, o.apiVersion];
  const module = `kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`;
  let Model: new (data: unknown) => { validate(): void };
  try {
    Model = (await import(module))[o.kind];
  } catch {
    return `${o.kind}/${o.metadata?.name}: no schema for ${o.apiVersion} ${o.kind}`;
  }
  try {
    new Model(o).validate();
    return undefined;
  } catch (err) {
    return `${o.kind}/${o.metadata.name}: ${(err as Error).message}`;
  }
}

/** Stand-in values for secretKeyRef variables, so loadConfig sees what a real Secret would give. */
const SECRET_STAND_INS: Record<string, string> = { REDIS_URL: 'redis://redis.test:6379', UPSTREAM_API_KEY: 'sk-ant-test-stand-in' };
const STAND_IN = 'stand-in-secret-of-32-characters';

/** ms main.ts's stop may take past SHUTDOWN_GRACE_MS before it exits 1 (read from the source: it is not exported). */
const SHUTDOWN_SETTLE_MS = (() => {
  const m = /const SHUTDOWN_SETTLE_MS = ([\d_]+);/.exec(readFileSync(join(ROOT, 'services/tollgate/src/main.ts'), 'utf8'));
  assert.ok(m, 'services/tollgate/src/main.ts no longer defines SHUTDOWN_SETTLE_MS as a number');
  return Number(m[1]!.replaceAll('_', ''));
})();

interface Facts {
  /** keys of the Secret template (deploy/kubernetes/secret.template.yaml) */
  secretName: string;
  secretKeys: string[];
  /** status of GET path on a real server made by createHttpServer */
  statusOf: (path: string) => number;
}

/**
 * Every way the rendered objects disagree with the code, one sentence each (empty: none).
 * Pure, so the mutation tests can feed it a drifted copy.
 */
function problemsOf(objs: readonly Obj[], facts: Facts): string[] {
  const problems: string[] = [];
  const byKind = (kind: string) => objs.filter((o) => o.kind === kind);
  const configMaps = new Map(byKind('ConfigMap').map((c) => [c.metadata.name, (c.data ?? {}) as Record<string, string>]));
  const deployments = byKind('Deployment');
  const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v);
  const secretsUsed = new Set<string>();
  const rolesSeen = new Set<string>();

  for (const d of deployments) {
    const name = d.metadata.name;
    const pod = d.spec.template.spec;
    const labels = d.spec.template.metadata.labels ?? {};
    if (!matches(d.spec.selector.matchLabels, labels)) problems.push(`${name}: selector does not match its pod labels`);
    const containers = pod.containers as any[];
    if (containers.length !== 1) { problems.push(`${name}: expected one container, found ${containers.length}`); continue; }
    const c = containers[0];
    // The environment the process sees: envFrom ConfigMaps, then env (later wins, as in Kubernetes).
    const env: Record<string, string> = {};
    const names: string[] = [];
    for (const from of c.envFrom ?? []) {
      const ref = from.configMapRef?.name;
      const data = configMaps.get(ref);
      if (!data) { problems.push(`${name}: envFrom names ConfigMap ${ref}, which is not rendered`); continue; }
      for (const [k, v] of Object.entries(data)) { env[k] = v; names.push(k); }
    }
    for (const e of c.env ?? []) {
      names.push(e.name);
      const ref = e.valueFrom?.secretKeyRef;
      if (ref) {
        secretsUsed.add(ref.key);
        if (ref.name !== facts.secretName) problems.push(`${name}: ${e.name} reads Secret ${ref.name}; the template is ${facts.secretName}`);
        if (!facts.secretKeys.includes(ref.key)) problems.push(`${name}: ${e.name} reads key ${ref.key}, which the Secret template does not have`);
        env[e.name] = SECRET_STAND_INS[e.name] ?? STAND_IN;
      } else if (typeof e.value === 'string') env[e.name] = e.value;
      else problems.push(`${name}: ${e.name} has neither a value nor a secretKeyRef`);
    }
    for (const n of names) if (!CONFIG_VARIABLES.includes(n)) problems.push(`${name}: ${n} is not a setting of libs/config (CONFIG_VARIABLES)`);
    let config: Config;
    try {
      config = loadConfig(env);
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message.replace(/\n\s*/g, ' ')}`);
      continue;
    }
    // One role per Deployment, named by its component label (aggregator-ledger: role aggregator).
    const component = labels['app.kubernetes.io/component'] ?? '';
    if (config.roles.length !== 1 || !component.startsWith(config.roles[0]!)) {
      problems.push(`${name}: component label "${component}" does not name its one role (TOLLGATE_ROLES ${config.roles.join(',')})`);
    }
    for (const r of config.roles) rolesSeen.add(r);
    if (!config.kafka || !config.redis) problems.push(`${name}: not in distributed mode (KAFKA_BROKERS and REDIS_URL)`);

    const http = (c.ports ?? []).find((p: any) => p.name === 'http');
    if (!http) problems.push(`${name}: no container port named http`);
    else if (http.containerPort !== config.port) problems.push(`${name}: containerPort ${http.containerPort} ≠ PORT ${config.port}`);
    const probes: Array<[string, any, string]> = [['startupProbe', c.startupProbe, HEALTH_PATH], ['livenessProbe', c.livenessProbe, HEALTH_PATH], ['readinessProbe', c.readinessProbe, READY_PATH]];
    for (const [kind, probe, path] of probes) {
      const get = probe?.httpGet;
      if (!get) { problems.push(`${name}: no ${kind} httpGet`); continue; }
      if (get.port !== 'http' && get.port !== config.port) problems.push(`${name}: ${kind} port ${get.port} is not the http port`);
      if (get.path !== path) problems.push(`${name}: ${kind} path ${get.path}, the server's is ${path}`);
      const status = facts.statusOf(get.path);
      if (status !== 200) problems.push(`${name}: ${kind} path ${get.path} answers ${status} on the server`);
      if ((probe.timeoutSeconds ?? 1) * 1000 <= READINESS_CHECK_TIMEOUT_MS) problems.push(`${name}: ${kind} timeoutSeconds ≤ the server's check timeout`);
    }

    // Drain: the endpoint goes while preStop sleeps, then SIGTERM; the process may take
    // SHUTDOWN_GRACE_MS + SHUTDOWN_SETTLE_MS before it exits by itself. The kubelet must not kill first.
    const sleep = c.lifecycle?.preStop?.sleep?.seconds;
    if (typeof sleep !== 'number' || sleep < 1) problems.push(`${name}: no preStop sleep (the endpoint must be removed before SIGTERM)`);
    const needMs = (sleep ?? 0) * 1000 + config.shutdownGraceMs + SHUTDOWN_SETTLE_MS;
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    // A stop must not cut a stream the config lets run: the grace covers UPSTREAM_TIMEOUT_MS.
    if (config.roles.includes('gateway') && config.shutdownGraceMs < config.upstream.timeoutMs) {
      problems.push(`${name}: SHUTDOWN_GRACE_MS ${config.shutdownGraceMs} < UPSTREAM_TIMEOUT_MS ${config.upstream.timeoutMs} (a drain cuts long streams)`);
    }
    if (grace * 1000 <= needMs) problems.push(`${name}: terminationGracePeriodSeconds ${grace} ≤ preStop ${sleep ?? 0} s + SHUTDOWN_GRACE_MS ${config.shutdownGraceMs} + ${SHUTDOWN_SETTLE_MS} ms settle`);

    if (pod.securityContext?.runAsNonRoot !== true) problems.push(`${name}: pod is not runAsNonRoot`);
    if (c.securityContext?.readOnlyRootFilesystem !== true) problems.push(`${name}: root filesystem is not read-only`);
    if (c.securityContext?.allowPrivilegeEscalation !== false) problems.push(`${name}: allowPrivilegeEscalation is not false`);
    if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory || !c.resources?.limits?.memory) problems.push(`${name}: no cpu/memory requests and memory limit`);
    const mounts = new Map((c.volumeMounts ?? []).map((m: any) => [m.mountPath, m.name]));
    const dataVolume = (pod.volumes ?? []).find((v: any) => v.name === mounts.get(config.dataDir));
    if (!dataVolume) problems.push(`${name}: DATA_DIR ${config.dataDir} is not a mounted volume (the root filesystem is read-only)`);
    // The write-ahead reserve watches the file system (statfs): an emptyDir's sizeLimit is not
    // one, it is enforced by evicting the pod (its spool with it), which the reserve never sees.
    if (dataVolume?.emptyDir?.sizeLimit !== undefined && !(config.roles.length === 1 && config.roles[0] === 'aggregator' && config.aggregator.groups.includes('warehouse'))) {
      problems.push(`${name}: DATA_DIR's emptyDir has a sizeLimit (${dataVolume.emptyDir.sizeLimit}): WRITE_AHEAD_RESERVE_MB cannot see it, and passing it evicts the pod with its spool`);
    }

    // Scaling rules of the aggregator groups (README "Distributed mode").
    if (config.roles.includes('aggregator')) {
      const replicas = d.spec.replicas ?? 1;
      const partitions = config.kafka?.partitions ?? 0;
      if (config.aggregator.groups.includes('ledger') && replicas * config.aggregator.ledgerConsumers > partitions) {
        problems.push(`${name}: ${replicas} replicas × LEDGER_CONSUMERS ${config.aggregator.ledgerConsumers} > KAFKA_PARTITIONS ${partitions} (idle members)`);
      }
      if (config.aggregator.groups.includes('warehouse')) {
        if (!config.clickhouse) {
          if (replicas !== 1) problems.push(`${name}: chDB warehouse with ${replicas} replicas (chDB allows one process)`);
          if (d.spec.template.spec.nodeSelector?.['kubernetes.io/arch'] !== 'amd64') problems.push(`${name}: chDB warehouse not pinned to kubernetes.io/arch amd64 (chDB has no arm64 library)`);
          if (d.spec.strategy?.type !== 'Recreate') problems.push(`${name}: chDB warehouse must use strategy Recreate (a rolling update runs two)`);
          if (!dataVolume?.persistentVolumeClaim) problems.push(`${name}: chDB warehouse DATA_DIR is not on a PersistentVolumeClaim`);
          else if (!objs.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === dataVolume.persistentVolumeClaim.claimName)) {
            problems.push(`${name}: PersistentVolumeClaim ${dataVolume.persistentVolumeClaim.claimName} is not rendered`);
          }
        } else if (replicas > partitions) problems.push(`${name}: ${replicas} warehouse replicas > KAFKA_PARTITIONS ${partitions}`);
      }
    }
    if (config.roles.includes('gateway')) {
      if (!byKind('HorizontalPodAutoscaler').some((h) => h.spec.scaleTargetRef.kind === 'Deployment' && h.spec.scaleTargetRef.name === name)) problems.push(`${name}: gateways have no HorizontalPodAutoscaler`);
    }
    const pdbs = byKind('PodDisruptionBudget').filter((p) => matches(p.spec.selector.matchLabels, labels));
    if (pdbs.length !== 1) problems.push(`${name}: covered by ${pdbs.length} PodDisruptionBudgets (want 1)`);
  }
  for (const r of ROLES) if (!rolesSeen.has(r)) problems.push(`no Deployment runs role ${r}`);
  for (const k of facts.secretKeys) {
    if (!secretsUsed.has(k)) problems.push(`Secret template key ${k} is read by no Deployment`);
    if (!CONFIG_VARIABLES.includes(k)) problems.push(`Secret template key ${k} is not a setting of libs/config`);
  }
  for (const s of byKind('Service')) {
    const targets = deployments.filter((d) => matches(s.spec.selector, d.spec.template.metadata.labels));
    if (targets.length !== 1) { problems.push(`Service ${s.metadata.name}: selects ${targets.length} Deployments`); continue; }
    const ports = (targets[0]!.spec.template.spec.containers[0].ports ?? []) as any[];
    for (const p of s.spec.ports) {
      if (!ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort)) problems.push(`Service ${s.metadata.name}: targetPort ${p.targetPort} is no port of ${targets[0]!.metadata.name}`);
    }
  }
  for (const h of byKind('HorizontalPodAutoscaler')) {
    if (!deployments.some((d) => d.metadata.name === h.spec.scaleTargetRef.name)) problems.push(`HorizontalPodAutoscaler ${h.metadata.name}: targets ${h.spec.scaleTargetRef.name}, which is not rendered`);
  }
  return problems;
}

const secretTemplate = parseDocs(readFileSync(join(K8S, 'secret.template.yaml'), 'utf8'), 'secret.template.yaml')[0]!;

/** Probe answers of a real server as createHttpServer makes it (the paths every role serves). */
async function serverFacts(): Promise<Facts> {
  const app = createHttpServer({ logger: false, bodyLimitBytes: 1024 });
  await app.ready();
  const statuses = new Map<string, number>();
  for (const path of ['/health', '/ready', '/readyz', '/healthz', HEALTH_PATH, READY_PATH]) {
    statuses.set(path, (await app.inject({ method: 'GET', url: path })).statusCode);
  }
  await app.close();
  return {
    secretName: secretTemplate.metadata.name,
    secretKeys: Object.keys(secretTemplate.stringData ?? {}),
    statusOf: (path) => statuses.get(path) ?? 0,
  };
}
const facts = await serverFacts();
const base = renderBaseItself();

test('the Secret template holds key names only: no secret value is in the repository', () => {
  assert.equal(secretTemplate.kind, 'Secret');
  assert.equal(secretTemplate.data, undefined);
  assert.deepEqual(Object.entries(secretTemplate.stringData).filter(([, v]) => v !== ''), []);
  assert.deepEqual(Object.keys(secretTemplate.stringData).sort(),
    ['ADMIN_TOKEN', 'CLICKHOUSE_PASSWORD', 'FINANCE_TOKEN', 'KEY_HASH_SECRET', 'REDIS_URL', 'UPSTREAM_API_KEY']);
  // and no rendered object carries a Secret at all
  assert.deepEqual(base.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name), []);
});

test('base: every rendered object validates against the Kubernetes API schema', async () => {
  assert.deepEqual(base.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    'ConfigMap/tollgate-config',
    'Deployment/tollgate-aggregator-ledger', 'Deployment/tollgate-aggregator-warehouse', 'Deployment/tollgate-control', 'Deployment/tollgate-gateway',
    'HorizontalPodAutoscaler/tollgate-gateway',
    'PersistentVolumeClaim/tollgate-warehouse',
    'PodDisruptionBudget/tollgate-aggregator-ledger', 'PodDisruptionBudget/tollgate-aggregator-warehouse', 'PodDisruptionBudget/tollgate-control', 'PodDisruptionBudget/tollgate-gateway',
    'Service/tollgate-aggregator', 'Service/tollgate-control', 'Service/tollgate-gateway',
  ]);
  const problems = (await Promise.all([...base, secretTemplate].map(schemaProblem))).filter(Boolean);
  assert.deepEqual(problems, []);
});

test('base: env names, values, roles, ports, probes, drain, secrets and scaling agree with the code', () => {
  assert.deepEqual(problemsOf(base, facts), []);
});

test('schema drift: a wrong type, a missing required field or an unknown apiVersion is a schema problem naming the object', async () => {
  const d = structuredClone(base.find((o) => o.kind === 'Deployment' && o.metadata.name === 'tollgate-gateway')!);
  d.spec.replicas = 'two';
  assert.match((await schemaProblem(d))!, /^Deployment\/tollgate-gateway: .*replicas must be integer/);
  const s = structuredClone(base.find((o) => o.kind === 'Service')!);
  delete s.spec.ports[0].port;
  assert.match((await schemaProblem(s))!, new RegExp(`^Service/${s.metadata.name}: .*ports/0 must have required property port$`));
  const pdb = structuredClone(base.find((o) => o.kind === 'PodDisruptionBudget')!);
  pdb.apiVersion = 'policy/v1beta9';
  assert.equal(await schemaProblem(pdb), `PodDisruptionBudget/${pdb.metadata.name}: no schema for policy/v1beta9 PodDisruptionBudget`);
});

/** `base` with `edit` applied to a copy of the object kind/name. */
function mutated(kind: string, name: string, edit: (o: Obj) => void): Obj[] {
  return base.map((o) => {
    if (o.kind !== kind || o.metadata.name !== name) return o;
    const copy = structuredClone(o);
    edit(copy);
    return copy;
  });
}
const container = (o: Obj) => o.spec.template.spec.containers[0];
const envVar = (o: Obj, name: string) => container(o).env.find((e: any) => e.name === name);

test('name drift in the manifests is caught: each mutation yields exactly the problem that names it', () => {
  const cases: Array<[string, Obj[], string[]]> = [
    ['env name', mutated('Deployment', 'tollgate-gateway', (o) => { envVar(o, 'UPSTREAM_API_KEY').name = 'UPSTREAM_KEY'; }),
      ['tollgate-gateway: UPSTREAM_KEY is not a setting of libs/config (CONFIG_VARIABLES)']],
    ['ConfigMap key', mutated('ConfigMap', 'tollgate-config', (o) => { o.data.LOG_LVL = o.data.LOG_LEVEL; delete o.data.LOG_LEVEL; }),
      ['tollgate-gateway', 'tollgate-control', 'tollgate-aggregator-ledger', 'tollgate-aggregator-warehouse'].map((d) => `${d}: LOG_LVL is not a setting of libs/config (CONFIG_VARIABLES)`)],
    ['PORT', mutated('Deployment', 'tollgate-control', (o) => { o.spec.template.spec.containers[0].env.push({ name: 'PORT', value: '9090' }); }),
      ['tollgate-control: containerPort 8080 ≠ PORT 9090']],
    ['readiness path', mutated('Deployment', 'tollgate-gateway', (o) => { container(o).readinessProbe.httpGet.path = '/readyz'; }),
      ['tollgate-gateway: readinessProbe path /readyz, the server\'s is /ready', 'tollgate-gateway: readinessProbe path /readyz answers 404 on the server']],
    ['role name', mutated('Deployment', 'tollgate-control', (o) => { envVar(o, 'TOLLGATE_ROLES').value = 'admin'; }),
      ['tollgate-control: invalid configuration: - TOLLGATE_ROLES: unknown role(s) admin; expected any of gateway, aggregator, control', 'no Deployment runs role control']],
    ['secret key', mutated('Deployment', 'tollgate-control', (o) => { envVar(o, 'ADMIN_TOKEN').valueFrom.secretKeyRef.key = 'ADMIN_TOKENS'; }),
      ['tollgate-control: ADMIN_TOKEN reads key ADMIN_TOKENS, which the Secret template does not have']],
    ['drain time', mutated('Deployment', 'tollgate-gateway', (o) => { o.spec.template.spec.terminationGracePeriodSeconds = 30; }),
      [`tollgate-gateway: terminationGracePeriodSeconds 30 ≤ preStop 10 s + SHUTDOWN_GRACE_MS 600000 + ${SHUTDOWN_SETTLE_MS} ms settle`]],
    ['stream cut by a drain', mutated('ConfigMap', 'tollgate-config', (o) => { o.data.SHUTDOWN_GRACE_MS = '300000'; }),
      ['tollgate-gateway: SHUTDOWN_GRACE_MS 300000 < UPSTREAM_TIMEOUT_MS 600000 (a drain cuts long streams)']],
    ['chDB on arm64', mutated('Deployment', 'tollgate-aggregator-warehouse', (o) => { delete o.spec.template.spec.nodeSelector; }),
      ['tollgate-aggregator-warehouse: chDB warehouse not pinned to kubernetes.io/arch amd64 (chDB has no arm64 library)']],
    ['chDB warehouse scaled out', mutated('Deployment', 'tollgate-aggregator-warehouse', (o) => { o.spec.replicas = 2; }),
      ['tollgate-aggregator-warehouse: chDB warehouse with 2 replicas (chDB allows one process)']],
    ['ledger beyond partitions', mutated('Deployment', 'tollgate-aggregator-ledger', (o) => { envVar(o, 'LEDGER_CONSUMERS').value = '3'; }),
      ['tollgate-aggregator-ledger: 2 replicas × LEDGER_CONSUMERS 3 > KAFKA_PARTITIONS 4 (idle members)']],
    ['read-write root', mutated('Deployment', 'tollgate-aggregator-ledger', (o) => { container(o).securityContext.readOnlyRootFilesystem = false; }),
      ['tollgate-aggregator-ledger: root filesystem is not read-only']],
    ['Service port name', mutated('Service', 'tollgate-gateway', (o) => { o.spec.ports[0].targetPort = 'web'; }),
      ['Service tollgate-gateway: targetPort web is no port of tollgate-gateway']],
  ];
  for (const [what, objs, expected] of cases) assert.deepEqual(problemsOf(objs, facts), expected, what);
  // a key dropped from the Secret template: every reader of it is named
  assert.deepEqual(problemsOf(base, { ...facts, secretKeys: facts.secretKeys.filter((k) => k !== 'KEY_HASH_SECRET') }),
    ['tollgate-gateway', 'tollgate-control', 'tollgate-aggregator-ledger', 'tollgate-aggregator-warehouse'].map((d) => `${d}: KEY_HASH_SECRET reads key KEY_HASH_SECRET, which the Secret template does not have`));
});

test('base rendered by kustomize equals the base this test renders itself', { skip: kustomize ? false : kustomizeMissing }, () => {
  const key = (o: Obj) => `${o.kind}/${o.metadata.name}`;
  const sort = (objs: Obj[]) => [...objs].sort((a, b) => key(a).localeCompare(key(b)));
  assert.deepEqual(sort(kustomizeBuild(join(K8S, 'base'))), sort(base));
});

for (const overlay of OVERLAYS) {
  test(`overlay ${overlay}: schema-valid and in agreement with the code`, async (t) => {
    if (!kustomize) {
      if (servicesRequired()) assert.fail(`${kustomizeMissing}; required under CI=true`);
      t.skip(kustomizeMissing);
      return;
    }
    const objs = kustomizeBuild(join(K8S, 'overlays', overlay));
    assert.deepEqual((await Promise.all(objs.map(schemaProblem))).filter(Boolean), []);
    assert.deepEqual(problemsOf(objs, facts), []);
    if (overlay === 'clickhouse') {
      const warehouse = objs.find((o) => o.metadata.name === 'tollgate-aggregator-warehouse')!;
      assert.equal(warehouse.spec.replicas, 2);
      assert.equal(warehouse.spec.strategy.type, 'RollingUpdate');
      assert.equal(objs.find((o) => o.kind === 'PersistentVolumeClaim'), undefined);
      assert.equal(objs.find((o) => o.kind === 'ConfigMap')!.data.CLICKHOUSE_URL, 'http://clickhouse:8123');
    }
  });
}

/** Admin routes per registering function, from the real registrations (`onRoute`), HEAD left out. */
async function adminRoutes(): Promise<{ hot: string[]; warehouse: string[] }> {
  const { registerAnalytics, registerBilling, registerControl, registerWebhooks } = await import('@tollgate/control');
  const { Metrics } = await import('@tollgate/telemetry');
  // Registration only reads tokens and keeps references; no request is made here.
  const any = (): any => new Proxy({}, { get: (_t, k) => (k === 'then' ? undefined : () => any()) });
  const deps = { adminToken: STAND_IN, financeToken: undefined, keyHashSecret: STAND_IN, keys: any(), balances: any(), log: any(), catalog: any(), prices: any(), warehouse: any(), store: any(), secrets: [], settle: async () => {} };
  const of = async (...fns: Array<(app: any, deps: any) => void>) => {
    const out: string[] = [];
    for (const f of fns) {
      const app = createHttpServer({ bodyLimitBytes: 1024, telemetry: { metrics: new Metrics({ defaultMetrics: false }) } });
      app.addHook('onRoute', (r) => { if (r.method !== 'HEAD' && r.url.startsWith('/admin/')) out.push(r.url); });
      f(app, deps);
      await app.ready();
      await app.close();
    }
    return [...new Set(out)];
  };
  return { hot: await of(registerControl), warehouse: await of(registerAnalytics, registerBilling, registerWebhooks) };
}

/** The process config of each Deployment of `objs` (ConfigMaps, then env; secrets as stand-ins). */
function deploymentConfigs(objs: readonly Obj[]): Map<string, Config> {
  const maps = new Map(objs.filter((o) => o.kind === 'ConfigMap').map((c) => [c.metadata.name, (c.data ?? {}) as Record<string, string>]));
  const out = new Map<string, Config>();
  for (const d of objs.filter((o) => o.kind === 'Deployment')) {
    const c = d.spec.template.spec.containers[0];
    const env: Record<string, string> = {};
    for (const from of c.envFrom ?? []) Object.assign(env, maps.get(from.configMapRef?.name) ?? {});
    for (const e of c.env ?? []) env[e.name] = e.value ?? (e.valueFrom?.secretKeyRef ? SECRET_STAND_INS[e.name] ?? STAND_IN : '');
    out.set(d.metadata.name, loadConfig(env));
  }
  return out;
}

test('admin routes: deploy/README\'s table sends every /admin route to a Service whose process serves it (base: warehouse reads on the warehouse pod)', async () => {
  const routes = await adminRoutes();
  const text = readFileSync(join(ROOT, 'deploy', 'README.md'), 'utf8');
  const rows = [...text.matchAll(/^\s*\| (`\/[^\n]*?) \| ([^|\n]+) \| ([^|\n]+) \|$/gm)].map((m) => ({
    patterns: [...m[1]!.matchAll(/`(\/[^`]*)`/g)].map((p) => p[1]!.replace(/…$/, '').replace(/\*$/, '')),
    base: /`(tollgate-[\w-]+)`/.exec(m[2]!)?.[1],
  }));
  assert.ok(rows.length >= 3, 'the routing table is in deploy/README.md');
  const rowOf = (route: string) => rows
    .flatMap((r) => r.patterns.filter((p) => route.startsWith(p)).map((p) => ({ p, r })))
    .sort((a, b) => b.p.length - a.p.length)[0]?.r;
  // What each base Service reaches: the roles of the Deployment it selects (runtime.ts rules).
  const configs = deploymentConfigs(base);
  const serves = new Map<string, { hot: boolean; warehouse: boolean }>();
  for (const s of base.filter((o) => o.kind === 'Service')) {
    const d = base.find((o) => o.kind === 'Deployment' && Object.entries(s.spec.selector).every(([k, v]) => o.spec.template.metadata.labels?.[k] === v))!;
    const cfg = configs.get(d.metadata.name)!;
    const ownsWarehouse = cfg.roles.includes('aggregator') && cfg.aggregator.groups.includes('warehouse');
    const control = cfg.roles.includes('control');
    serves.set(s.metadata.name, { hot: control, warehouse: cfg.clickhouse ? control || ownsWarehouse : ownsWarehouse });
  }
  const problems: string[] = [];
  for (const [kind, list] of [['hot', routes.hot], ['warehouse', routes.warehouse]] as const) {
    for (const route of list) {
      const row = rowOf(route);
      if (!row?.base) { problems.push(`${route}: in no row of the table`); continue; }
      if (!serves.get(row.base)?.[kind]) problems.push(`${route}: the table sends it to ${row.base}, whose process does not serve it in the base`);
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(routes.warehouse.includes('/admin/v1/usage') && routes.hot.includes('/admin/v1/accounts'), 'both groups were found');
});
