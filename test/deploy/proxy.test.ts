// The shipped reverse proxies (deploy/compose/caddy/Caddyfile, deploy/compose/nginx/tollgate.conf)
// checked against docker-compose.yml and the code: upstream hosts and ports, the routes each
// role serves, readiness path, SSE-friendliness, timeouts and body size against the config
// defaults, and TRUST_PROXY naming exactly the proxies' addresses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTollgate } from '@tollgate/tollgate';
import {
  READY_PATH, configOf, environmentOf, loadConfig, read, readYaml, statusOf, tollgateServices,
} from './support.ts';
import type { ComposeFile, ComposeService } from './support.ts';

const compose = readYaml<ComposeFile>('docker-compose.yml');
const caddyfile = read('deploy/compose/caddy/Caddyfile');
const nginx = read('deploy/compose/nginx/tollgate.conf');
const defaults = loadConfig({});
const services = tollgateServices(compose);
/** host:port of every Tollgate service running `role`, from its command line and PORT. */
const addressesOf = (role: string): string[] => services
  .filter(([, s]) => configOf(s).roles.includes(role as never))
  .map(([name, s]) => `${name}:${configOf(s).port}`).sort();
/** Caddy/nginx text without comments. */
const code = (text: string): string => text.split('\n').map((l) => l.replace(/(^|\s)#.*$/, '')).join('\n');
const mounts = (s: ComposeService): string[] => (s.volumes ?? []).map(String);

/** Named path matchers: `@name path /a/* /b/*` → name → its paths. */
function caddyMatchers(): Map<string, string[]> {
  return new Map([...code(caddyfile).matchAll(/^\s*(@\w+)\s+path\s+([^\n{]+)$/gm)].map((m) => [m[1]!, m[2]!.trim().split(/\s+/)]));
}
/**
 * `reverse_proxy a b {` upstreams per `handle` path pattern ('' = the catch-all handle); a
 * named matcher stands for each of its paths.
 */
function caddyRoutes(): Map<string, string[]> {
  const routes = new Map<string, string[]>();
  const named = caddyMatchers();
  for (const m of code(caddyfile).matchAll(/handle\s*([^\s{]*)\s*\{\s*reverse_proxy\s+([^{\n]+?)\s*\{/g)) {
    for (const path of named.get(m[1]!) ?? [m[1]!]) routes.set(path, m[2]!.trim().split(/\s+/).sort());
  }
  return routes;
}
/** nginx `upstream name { server host:port …; }` → name → host:port list. */
function nginxUpstreams(): Map<string, string[]> {
  const ups = new Map<string, string[]>();
  for (const m of code(nginx).matchAll(/upstream\s+(\w+)\s*\{([^}]*)\}/g)) {
    ups.set(m[1]!, [...m[2]!.matchAll(/server\s+([^\s;]+)/g)].map((s) => s[1]!).sort());
  }
  return ups;
}
/** nginx `location PATH { proxy_pass http://NAME; }` → path → upstream name. */
function nginxLocations(): Map<string, string> {
  return new Map([...code(nginx).matchAll(/location\s+(\S+)\s*\{[^}]*proxy_pass\s+http:\/\/(\w+)/g)].map((m) => [m[1]!, m[2]!]));
}
/** Path prefixes of the customer API (served by gateways); `/admin/` is control's. */
const GATEWAY_PREFIXES = ['/v1/', '/api/v1/'];
/** Top-level routes of a process running every role (fastify's route tree, first level). */
async function topLevelRoutes(): Promise<string[]> {
  const tg = await startTollgate(loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-routes-')), LOG_LEVEL: 'silent' }), { listen: false });
  try {
    return [...tg.server.printRoutes({ commonPrefix: false }).matchAll(/^[├└]── (\/\S*) \(/gm)].map((m) => m[1]!);
  } finally {
    await tg.close();
  }
}
/** Which proxy route a request path takes: the upstream group, or undefined (the 404 catch-all). */
function caddyTarget(path: string): string | undefined {
  for (const [pattern, ups] of caddyRoutes()) {
    if (pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern) return ups.join(' ');
  }
  return undefined;
}
function nginxTarget(path: string): string | undefined {
  // nginx picks the longest matching prefix location.
  const best = [...nginxLocations().keys()].filter((l) => path.startsWith(l)).sort((a, b) => b.length - a.length)[0];
  return best === undefined ? undefined : nginxLocations().get(best);
}
const seconds = (v: string): number => {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(v)!;
  assert.ok(m, `duration ${v}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[(m[2] ?? 's') as 's'];
};

test('Caddy upstreams: the customer API goes to every gateway and /admin/* to control, on the ports they listen on', () => {
  const routes = caddyRoutes();
  for (const p of GATEWAY_PREFIXES) assert.deepEqual(routes.get(`${p}*`), addressesOf('gateway'), `${p}* → the gateways`);
  assert.ok(addressesOf('gateway').length >= 2, 'load balanced over several gateways');
  assert.deepEqual(routes.get('/admin/*'), addressesOf('control'), '/admin/* → control');
  assert.deepEqual([...routes.keys()].sort(), ['/admin/*', ...GATEWAY_PREFIXES.map((p) => `${p}*`)].sort(), 'no catch-all to a process');
  assert.ok(compose.services.caddy!.depends_on, 'caddy starts after the processes it proxies');
  assert.ok(mounts(compose.services.caddy!).includes('./deploy/compose/caddy/Caddyfile:/etc/caddy/Caddyfile:ro'));
});

test('nginx upstreams: the same split, on the same ports', () => {
  const ups = nginxUpstreams();
  const locations = nginxLocations();
  for (const p of GATEWAY_PREFIXES) assert.deepEqual(ups.get(locations.get(p)!), addressesOf('gateway'), `${p} → the gateways`);
  assert.deepEqual(ups.get(locations.get('/admin/')!), addressesOf('control'));
  assert.deepEqual([...locations.keys()].sort(), ['/admin/', ...GATEWAY_PREFIXES].sort(), 'no catch-all to a process');
  assert.ok(mounts(compose.services.nginx!).some((m) => m.startsWith('./deploy/compose/nginx/tollgate.conf:/etc/nginx/conf.d/')));
});

test('edge exposure: every API route reaches its role through both proxies; /metrics, /health, /ready and /ops/* get the proxy\'s 404', async () => {
  const routes = await topLevelRoutes();
  const isApi = (r: string) => r.startsWith('/admin/') || GATEWAY_PREFIXES.some((p) => r.startsWith(p));
  const internal = routes.filter((r) => !isApi(r));
  for (const p of ['/metrics', '/health', '/ready', '/ops/v1/rebuild']) assert.ok(internal.includes(p), `${p} is served (and internal)`);
  for (const r of routes) {
    const want = !isApi(r) ? undefined : r.startsWith('/admin/') ? 'control' : 'gateway';
    const caddy = caddyTarget(r);
    const ngx = nginxTarget(r);
    if (want === undefined) {
      assert.equal(caddy, undefined, `Caddy proxies internal ${r}`);
      assert.equal(ngx, undefined, `nginx proxies internal ${r}`);
    } else {
      assert.equal(caddy, addressesOf(want).join(' '), `Caddy ${r} → ${want}`);
      assert.deepEqual(nginxUpstreams().get(ngx!), addressesOf(want), `nginx ${r} → ${want}`);
    }
  }
  // The rest is answered at the edge: 404 in Anthropic's error shape.
  const body = '{"type":"error","error":{"type":"not_found_error","message":"Not found"}}';
  assert.match(code(caddyfile), new RegExp(`handle\\s*\\{\\s*header Content-Type application/json\\s*respond \`${body.replace(/[{}[\]]/g, '\\$&')}\` 404\\s*\\}`));
  assert.match(code(nginx), new RegExp(`location / \\{\\s*default_type application/json;\\s*return 404 '${body.replace(/[{}[\]]/g, '\\$&')}';\\s*\\}`));
});

test('health: the proxy checks readiness at a path the server serves', async () => {
  const paths = [...code(caddyfile).matchAll(/health_uri\s+(\S+)/g)].map((m) => m[1]!);
  assert.ok(paths.length >= 2, 'every upstream group health-checked');
  for (const p of paths) {
    assert.equal(p, READY_PATH, 'a draining or rebuilding process leaves the rotation');
    assert.equal(await statusOf(p), 200);
  }
});

test('streams: no buffering or compression of server-sent events, read timeouts beyond UPSTREAM_TIMEOUT_MS', () => {
  const upstreamS = defaults.upstream.timeoutMs / 1000;
  // Caddy: flush every write, never compress text/event-stream, wait as long as the gateway may.
  const c = code(caddyfile);
  assert.match(c, /flush_interval\s+-1/);
  assert.doesNotMatch(code(nginx), /^\s*gzip\s+on/m);
  assert.doesNotMatch(c, /^\s*encode\b/m, 'Caddy\'s encoder delays SSE (caddyserver/caddy#6293)');
  for (const m of c.matchAll(/(read_timeout|response_header_timeout)\s+(\S+)/g)) {
    assert.ok(seconds(m[2]!) > upstreamS, `Caddy ${m[1]} ${m[2]} ≤ UPSTREAM_TIMEOUT_MS ${upstreamS} s`);
  }
  // nginx: buffering off both ways, HTTP/1.1 keep-alive upstream, long reads.
  const n = code(nginx);
  for (const d of [/proxy_buffering\s+off;/, /proxy_request_buffering\s+off;/, /proxy_http_version\s+1\.1;/]) assert.match(n, d);
  for (const d of ['proxy_read_timeout', 'proxy_send_timeout']) {
    const v = new RegExp(`${d}\\s+(\\S+);`).exec(n);
    assert.ok(v && seconds(v[1]!) > upstreamS, `nginx ${d} ${v?.[1]} ≤ ${upstreamS} s`);
  }
  // Bodies past BODY_LIMIT_BYTES still reach Tollgate, which answers 413 in its own shape: the
  // proxy's limit is strictly above every process's limit (the default and any compose value).
  const body = /client_max_body_size\s+(\d+)([km]?);/.exec(n)!;
  const proxyLimit = Number(body[1]) * { '': 1, k: 1024, m: 1024 ** 2 }[body[2] as ''];
  for (const limit of [defaults.bodyLimitBytes, ...services.map(([, sv]) => configOf(sv).bodyLimitBytes)]) {
    assert.ok(proxyLimit > limit, `nginx client_max_body_size ${body[1]}${body[2]} ≤ BODY_LIMIT_BYTES ${limit}: nginx would answer 413 with its own page`);
  }
  // nginx checks passively only (no /ready): documented in the file, with max_fails on each gateway.
  assert.match(nginx, /no active health checks/);
  for (const line of n.matchAll(/^\s*server\s+(gateway[^\s;]*)([^;]*);/gm)) assert.match(line[2]!, /max_fails=\d+\s+fail_timeout=\d+s/, `${line[1]} passive checks`);
  // A request that reached a gateway is never retried on another (it may be billed already).
  assert.match(n, /proxy_next_upstream\s+error;/);
  assert.doesNotMatch(c, /retry_match/);
});

test('X-Forwarded-For: nginx replaces the client\'s header, and every gateway trusts exactly the proxies\' fixed addresses', () => {
  assert.match(code(nginx), /proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;/, 'replace, not $proxy_add_x_forwarded_for (a client could prepend a forged address)');
  const proxies = ['caddy', 'nginx'].map((name) => {
    const nets = compose.services[name]!.networks as Record<string, { ipv4_address?: string }>;
    const address = nets.tollgate?.ipv4_address;
    assert.ok(address && isIP(address) === 4, `${name} has a fixed address`);
    return address;
  }).sort();
  const [subnet, bits] = compose.networks!.tollgate.ipam.config[0].subnet.split('/');
  const net = new BlockList();
  net.addSubnet(subnet, Number(bits));
  for (const a of proxies) assert.ok(net.check(a), `${a} inside the network ${subnet}/${bits}`);
  // Docker hands out dynamic addresses from ip_range only: a fixed address outside it can never
  // go to another container (which would then be believed as a proxy).
  const range = compose.networks!.tollgate.ipam.config[0].ip_range as string | undefined;
  assert.ok(range, 'the network has an ip_range for dynamic addresses');
  const [rangeNet, rangeBits] = range.split('/');
  const dynamic = new BlockList();
  dynamic.addSubnet(rangeNet!, Number(rangeBits));
  assert.ok(net.check(rangeNet!), `ip_range ${range} inside the subnet`);
  for (const [name, s] of Object.entries(compose.services)) {
    const a = (s.networks as Record<string, { ipv4_address?: string }> | undefined)?.tollgate?.ipv4_address;
    if (a) assert.ok(!dynamic.check(a), `${name}'s fixed ${a} lies inside ip_range ${range}: another container can get it`);
  }
  for (const [, s] of services) {
    for (const a of String(configOf(s).trustProxy).split(',')) assert.ok(!dynamic.check(a.split('/')[0]!), `TRUST_PROXY ${a} inside the dynamic range`);
  }
  for (const [name, s] of services) {
    const trust = configOf(s).trustProxy;
    assert.equal(typeof trust, 'string', `${name}: TRUST_PROXY a list (not true: a client reaching the process directly could forge its address)`);
    assert.deepEqual(String(trust).split(',').sort(), proxies, `${name} TRUST_PROXY`);
  }
  // Caddy's site: its domain comes from the caddy service's environment.
  const site = /^\{\$(\w+)(?::[^}]*)?\}\s*\{/m.exec(code(caddyfile));
  assert.ok(site && site[1]! in environmentOf(compose.services.caddy!), 'site address variable given to caddy');
});

test('README Deploy section documents TRUST_PROXY with the values the config accepts', () => {
  const readme = read('README.md');
  const start = readme.indexOf('\n## Deploy\n');
  assert.ok(start >= 0, 'README has a "## Deploy" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  assert.match(section, /TRUST_PROXY/);
  // Each documented example value is accepted; the refused ones are refused.
  for (const v of ['false', 'true', '172.28.0.10,172.28.0.11', '10.0.0.0/8']) {
    assert.ok(section.includes(v), `Deploy mentions TRUST_PROXY=${v}`);
    assert.doesNotThrow(() => loadConfig({ TRUST_PROXY: v }), v);
  }
  assert.throws(() => loadConfig({ TRUST_PROXY: '2' }), /TRUST_PROXY/, 'hop counts are refused');
  for (const f of ['docker-compose.yml', 'compose.embedded.yml', 'deploy/compose/caddy/Caddyfile', 'deploy/compose/nginx/tollgate.conf', 'deploy/compose/env.example', '/health', '/ready', 'deploy/kubernetes']) {
    assert.ok(section.includes(f), `Deploy mentions ${f}`);
  }
});
