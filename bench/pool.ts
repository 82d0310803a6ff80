// The upstream-pool section of `npm run bench` (issue 10, outcome 7): what selection and session
// affinity add over a group of 10 upstreams against the single default upstream, the pure
// selector cost per call, the time to fail over to a healthy upstream, and what an open circuit
// saves. See bench/README.md "Upstream pools".
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { MemoryPoolStore, type GroupRecord, type PoolView, type ResolvedUpstream, type UpstreamRecord } from '@tollgate/pool';
import { UpstreamPool, type Route } from '../services/gateway/src/pool/selector.ts';
import type { UpstreamClients } from '../services/gateway/src/pool/clients.ts';
import type { UpstreamClient, UpstreamResponse } from '../services/gateway/src/upstream.ts';
import { summarize, type Summary } from './load.ts';
import { ADMIN_TOKEN, admin, createCustomer, freePort, startSimulator, startTollgate, UPSTREAM_API_KEY, type Service, type TollgateService } from './stack.ts';

/** Consecutive failures that open a circuit in the bench's gateway (`CIRCUIT_FAILURE_THRESHOLD`): also the failed requests per fault kind. */
export const POOL_CIRCUIT_THRESHOLD = 40;
/** `UPSTREAM_TIMEOUT_MS` of the bench's gateway: the shortest the configuration allows (ms); the timeout fault waits longer. */
export const POOL_UPSTREAM_TIMEOUT_MS = 1000;
/** How long the timeout fault holds the headers back (ms), well past `POOL_UPSTREAM_TIMEOUT_MS`. */
const FAULT_DELAY_MS = 3000;
/** Requests measured after the circuit opened, per fault kind. */
const AFTER_OPEN_REQUESTS = 80;
/** Concurrency of the failover phases (small: the figure is one request's failover, not throughput). */
const FAILOVER_CONCURRENCY = 4;
/** 10 upstreams: (priority, weight) mixed; the first four share the top priority 10 with weights 1:2:3:4. */
const POOL_SHAPE: Array<{ priority: number; weight: number }> = [
  { priority: 10, weight: 1 }, { priority: 10, weight: 2 }, { priority: 10, weight: 3 }, { priority: 10, weight: 4 },
  { priority: 5, weight: 1 }, { priority: 5, weight: 5 }, { priority: 5, weight: 2 },
  { priority: 0, weight: 1 }, { priority: 0, weight: 1 }, { priority: 0, weight: 3 },
];

export interface PoolBenchOptions {
  /** measured seconds of the interleaved latency run (default 8) */
  durationS: number;
  /** unmeasured seconds before it (default 2) */
  warmupS: number;
  /** concurrent requests of the latency run */
  concurrency: number;
  log: (line: string) => void;
  signal?: AbortSignal;
}

/** The selector alone, in this process (no I/O): ns per call, over batches of `batch` calls. */
export interface MicroFigure {
  name: string;
  calls: number;
  /** mean ns per call over all calls */
  meanNs: number;
  /** p50 / p99 of the per-batch mean ns per call */
  p50Ns: number;
  p99Ns: number;
}

export interface VariantFigure {
  name: string;
  description: string;
  ok: number;
  errors: number;
  /** ms, time to the last byte (non-streaming) */
  latency: Summary;
}

/** Streaming requests of one group in one phase: time to first byte (ms) and `attempts` of their usage events ("2" → count). */
export interface StreamFigure { ok: number; errors: number; ttfb: Summary; attempts: Record<string, number> }

/** One fault kind of the first upstream; each phase interleaves the same number of requests to the no-fault group (`baseline`). */
export interface FailoverFigure {
  kind: 'connection refused' | '503' | 'timeout to headers';
  /** requests while the first upstream's circuit was closed: every one tried it first and failed over */
  closed: { fault: StreamFigure; baseline: StreamFigure };
  /** requests once the circuit had opened: the failing upstream is skipped */
  open: { fault: StreamFigure; baseline: StreamFigure };
}

export interface PoolBenchResult {
  micro: MicroFigure[];
  variants: VariantFigure[];
  failover: FailoverFigure[];
  concurrency: number;
  durationS: number;
  /** errors that make the section fail (a variant's error rate above 1 %, a failover request that failed) */
  problems: string[];
}

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '-');
const signed = (v: number) => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(2)}` : '-');

// ---- the selector alone ------------------------------------------------------------------

function upstreamRecord(i: number, shape: { priority: number; weight: number }, baseUrl: string): UpstreamRecord {
  return {
    id: `up_bench${i}`, name: `bench ${i}`, platform: 'anthropic', base_url: baseUrl, api_key_sealed: null, models: null,
    weight: shape.weight, priority: shape.priority, max_concurrency: null, status: 'active', created_at: 0, deleted: false, version: 1,
  };
}

/**
 * The selector of services/gateway/src/pool with 10 upstreams and nothing else: `pick` (priority,
 * availability, weighted choice) and `send` with a post that answers at once, so what is timed
 * is the session key, the affinity read and write (MemoryPoolStore, as in embedded mode),
 * `pick`, the breaker bookkeeping and `judge`.
 */
async function microBench(): Promise<MicroFigure[]> {
  const candidates: ResolvedUpstream[] = POOL_SHAPE.map((s, i) => ({ record: upstreamRecord(i, s, `http://127.0.0.1:${9000 + i}`), apiKey: 'k' }));
  const group: GroupRecord = {
    id: 'grp_bench', name: 'bench', platform: 'anthropic', upstream_ids: candidates.map((c) => c.record.id), model_mapping: null,
    created_at: 0, deleted: false, version: 1,
  };
  const view: PoolView = {
    groupFor: async () => ({ group, source: 'account' as const, upstreams: candidates, inactive: [] }),
    group: async () => ({ group, source: 'account' as const, upstreams: candidates, inactive: [] }),
    upstream: async (id) => candidates.find((c) => c.record.id === id),
  };
  const client = {} as UpstreamClient;
  const clients = { get: () => client } as unknown as UpstreamClients;
  const pool = new UpstreamPool({ view, store: new MemoryPoolStore(), clients, gatewayId: 'bench' });
  const route: Route = { group, candidates, pinned: candidates.length > 1, mappedModel: undefined, modelId: 'claude-sonnet-4-5' };
  const answer = { status: 200, headers: {}, body: { cancel() {} }, secrets: [] } as unknown as UpstreamResponse;
  const post = async () => answer;
  const body = { model: 'm', max_tokens: 1, metadata: { user_id: 'user_bench' }, messages: [{ role: 'user', content: 'hi' }] };
  const tried = new Set<string>();

  const time = async (name: string, batches: number, batch: number, fn: (i: number) => unknown): Promise<MicroFigure> => {
    for (let i = 0; i < batch * 5; i++) await fn(i); // warm up the JIT
    const perCall: number[] = [];
    let total = 0;
    for (let b = 0; b < batches; b++) {
      const t0 = performance.now();
      for (let i = 0; i < batch; i++) await fn(b * batch + i);
      const ns = (performance.now() - t0) * 1e6;
      total += ns;
      perCall.push(ns / batch);
    }
    const s = summarize(perCall);
    return { name, calls: batches * batch, meanNs: total / (batches * batch), p50Ns: s.p50, p99Ns: s.p99 };
  };
  const headersFixed = { 'x-claude-code-session-id': 'session-bench' };
  const sessions = Array.from({ length: 1000 }, () => randomUUID());
  return [
    await time('pick: 10 upstreams, 3 priorities, weighted', 200, 1000, () => pool.pick(candidates, tried, undefined, true)),
    await time('pick with a pinned upstream', 200, 1000, () => pool.pick(candidates, tried, 'up_bench7', true)),
    await time('send: session header, pin read + write (memory store)', 200, 500, (i) => {
      void i;
      return pool.send(route, { headers: headersFixed, body, accountId: 'acc', keyId: 'key', arrivedAt: Date.now() }, post);
    }),
    await time('send: new session id per call (pin miss, new pin)', 100, 500, (i) => pool.send(route, {
      headers: { 'x-claude-code-session-id': `${sessions[i % 1000]}-${i}` }, body, accountId: 'acc', keyId: 'key', arrivedAt: Date.now(),
    }, post)),
  ];
}

// ---- the gateway, end to end -------------------------------------------------------------

async function simFaults(sim: Service, method: 'POST' | 'DELETE', fault?: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${sim.url}/_sim/faults`, {
    method, headers: fault ? { 'content-type': 'application/json' } : {}, body: fault ? JSON.stringify(fault) : undefined,
  });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`${method} /_sim/faults on ${sim.url}: HTTP ${res.status}`);
}

function messagesBody(stream: boolean, metadata: boolean): string {
  return JSON.stringify({
    model: 'claude-sonnet-4-5-20250929', max_tokens: 64, stream,
    ...(metadata ? { metadata: { user_id: 'user_bench_pool' } } : {}),
    system: 'You are a concise assistant.',
    messages: [{ role: 'user', content: 'Summarise the last deployment in one sentence. [[sim output=16]]' }],
  });
}

interface Variant {
  name: string;
  description: string;
  key: string;
  headers: (worker: number) => Record<string, string>;
}

/**
 * Closed loop of `concurrency` workers; each worker takes the variants in turn, so every variant
 * gets the same share of the run and the same machine noise (the ratio is measured in one run).
 */
async function interleaved(gateway: string, variants: Variant[], o: PoolBenchOptions): Promise<VariantFigure[]> {
  const pool = new Pool(gateway, { connections: o.concurrency, pipelining: 1, headersTimeout: 60_000 });
  const body = messagesBody(false, false);
  const samples = variants.map(() => [] as number[]);
  const ok = variants.map(() => 0);
  const errors = variants.map(() => 0);
  const errorSamples: string[] = [];
  const start = performance.now();
  const measureFrom = start + o.warmupS * 1000;
  const end = measureFrom + o.durationS * 1000;
  const worker = async (w: number) => {
    for (let i = w; performance.now() < end && !o.signal?.aborted; i++) {
      const v = i % variants.length;
      const variant = variants[v]!;
      const t0 = performance.now();
      try {
        const res = await pool.request({
          method: 'POST', path: '/v1/messages', body,
          headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': variant.key, ...variant.headers(w) },
        });
        const text = await res.body.text();
        const t1 = performance.now();
        if (t0 < measureFrom) continue;
        if (res.statusCode === 200 && text.endsWith('}')) {
          ok[v]!++;
          samples[v]!.push(t1 - t0);
        } else {
          errors[v]!++;
          if (errorSamples.length < 3) errorSamples.push(`${variant.name}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
        }
      } catch (err) {
        if (t0 >= measureFrom) errors[v]!++;
        if (errorSamples.length < 3) errorSamples.push(`${variant.name}: ${String(err)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)));
  await pool.close();
  if (errorSamples.length) o.log(`  pool latency: errors, e.g.\n    ${errorSamples.join('\n    ')}`);
  return variants.map((v, i) => ({ name: v.name, description: v.description, ok: ok[i]!, errors: errors[i]!, latency: summarize(samples[i]!) }));
}

/**
 * `n` streaming requests per key, the keys taken in turn, at FAILOVER_CONCURRENCY: time to the
 * first body byte (ms) and the request ids. Each carries a fresh X-Claude-Code-Session-Id: a session pinned to the fallback would skip
 * the failing upstream (affinity comes before priority), and the failover would not be measured.
 */
async function streamed(gateway: string, keys: string[], n: number): Promise<Array<{ ok: number; errors: number; ttfb: number[]; ids: string[]; errorSamples: string[] }>> {
  const pool = new Pool(gateway, { connections: FAILOVER_CONCURRENCY, pipelining: 1, headersTimeout: 60_000 });
  const body = messagesBody(true, true);
  const outs = keys.map(() => ({ ok: 0, errors: 0, ttfb: [] as number[], ids: [] as string[], errorSamples: [] as string[] }));
  let next = 0;
  const worker = async () => {
    while (next < n * keys.length) {
      const k = next++ % keys.length;
      const key = keys[k]!;
      const out = outs[k]!;
      const t0 = performance.now();
      try {
        const res = await pool.request({
          method: 'POST', path: '/v1/messages', body,
          headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': key, 'x-claude-code-session-id': randomUUID() },
        });
        let first: number | undefined;
        let text = '';
        for await (const chunk of res.body) {
          first ??= performance.now();
          text += (chunk as Buffer).toString('utf8');
        }
        const id = res.headers['request-id'];
        if (res.statusCode === 200 && text.includes('"message_stop"') && first !== undefined && typeof id === 'string') {
          out.ok++;
          out.ttfb.push(first - t0);
          out.ids.push(id);
        } else {
          out.errors++;
          if (out.errorSamples.length < 3) out.errorSamples.push(`HTTP ${res.statusCode} ${text.slice(0, 200)}`);
        }
      } catch (err) {
        out.errors++;
        if (out.errorSamples.length < 3) out.errorSamples.push(String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: FAILOVER_CONCURRENCY }, worker));
  await pool.close();
  return outs;
}

/** `attempts` of each request's usage event in the warehouse, counted ("2" → 20). Waits up to 30 s for the rows. */
async function attemptsOf(gateway: string, ids: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const id of ids) {
    let attempts = 'missing';
    for (let i = 0; i < 300; i++) {
      const res = await fetch(`${gateway}/admin/v1/usage/events/${id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      const text = await res.text();
      if (res.status === 200) {
        attempts = String((JSON.parse(text) as { attempts?: unknown }).attempts ?? 'absent');
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    counts[attempts] = (counts[attempts] ?? 0) + 1;
  }
  return counts;
}

/**
 * Runs the section: the micro-benchmark in this process, then 10 simulators and one embedded
 * Tollgate (child processes, stopped at the end) for the latency, failover and circuit figures.
 * Throws when a child cannot start; failed requests are listed in `problems`.
 */
export async function runPoolBench(o: PoolBenchOptions): Promise<PoolBenchResult> {
  const problems: string[] = [];
  o.log('bench: upstream pools: the selector alone (in this process)');
  const micro = await microBench();
  for (const m of micro) o.log(`  ${m.name.padEnd(56)} ${(m.meanNs / 1000).toFixed(2)} µs/call`);

  o.log('bench: upstream pools: starting 10 simulators and a Tollgate (child processes)');
  const started: Service[] = [];
  try {
    const sims = await Promise.all(POOL_SHAPE.map(() => startSimulator()));
    started.push(...sims);
    // sims[0] is the one that fails in the failover phases (faults apply to everything it serves: only the faulty
    // groups use it then); sims[1] is the default upstream, sims[2] the healthy fallback, sims[3] the no-fault group's first.
    const gw: TollgateService = await startTollgate(sims[1]!.url, {
      UPSTREAM_TIMEOUT_MS: String(POOL_UPSTREAM_TIMEOUT_MS),
      CIRCUIT_FAILURE_THRESHOLD: String(POOL_CIRCUIT_THRESHOLD),
      // no half-open probe during the run: after opening, the figures are those of an open circuit
      CIRCUIT_OPEN_MS: '600000',
    }, 'tollgate-pool');
    started.push(gw);

    const upstream = async (name: string, baseUrl: string, priority: number, weight: number) => (await admin<{ id: string }>(gw.url, 'POST', '/admin/v1/upstreams', {
      name, platform: 'anthropic', base_url: baseUrl, api_key: UPSTREAM_API_KEY, weight, priority, max_concurrency: null,
    })).id;
    const group = async (name: string, ids: string[]) => (await admin<{ id: string }>(gw.url, 'POST', '/admin/v1/groups', { name, platform: 'anthropic', upstream_ids: ids })).id;
    const customerIn = async (groupId: string | null) => {
      const c = await createCustomer(gw.url, '100000000');
      if (groupId) await admin(gw.url, 'PATCH', `/admin/v1/accounts/${c.accountId}`, { group_id: groupId });
      return c;
    };

    const poolIds: string[] = [];
    for (const [i, s] of POOL_SHAPE.entries()) poolIds.push(await upstream(`bench pool ${i}`, sims[i]!.url, s.priority, s.weight));
    const pool10 = await group('bench pool of 10', poolIds);
    const fallback = await upstream('bench fallback', sims[2]!.url, 0, 1);
    // a port bound and released: nothing listens on it, so connections to it are refused
    const dead = `http://127.0.0.1:${await freePort()}`;
    // in this order (an object would put '503' first: integer-like keys come first)
    const failGroups: Array<[FailoverFigure['kind'] | 'no fault', string]> = [
      ['no fault', await group('bench no fault', [await upstream('bench first (healthy)', sims[3]!.url, 10, 1), fallback])],
      ['connection refused', await group('bench refused', [await upstream('bench first (refuses)', dead, 10, 1), fallback])],
      ['503', await group('bench 503', [await upstream('bench first (503)', sims[0]!.url, 10, 1), fallback])],
      ['timeout to headers', await group('bench timeout', [await upstream('bench first (timeout)', sims[0]!.url, 10, 1), fallback])],
    ];
    const plain = await customerIn(null);
    const pooled = await customerIn(pool10);
    const failCustomers: Record<string, string> = {};
    for (const [kind, id] of failGroups) failCustomers[kind] = (await customerIn(id)).secret;
    // the gateway's view of the pool is at most POOL_CACHE_TTL_MS (≤ 1 s) old
    await new Promise((r) => setTimeout(r, 1100));

    o.log(`bench: upstream pools: latency, ${o.warmupS} s warmup + ${o.durationS} s, concurrency ${o.concurrency}, four variants interleaved`);
    const variants: Variant[] = [
      { name: 'default (1 upstream)', description: 'account without a group: the configured default upstream, no selection, no affinity', key: plain.secret, headers: () => ({}) },
      { name: 'pool of 10, no session id', description: 'no X-Claude-Code-Session-Id, no metadata.user_id: affinity by the key (one pin, read and slid every request)', key: pooled.secret, headers: () => ({}) },
      { name: 'pool of 10, session id', description: 'X-Claude-Code-Session-Id fixed per worker: pin read (hit) and slid every request', key: pooled.secret, headers: (w) => ({ 'x-claude-code-session-id': `bench-session-${w}` }) },
      { name: 'pool of 10, new session each request', description: 'a fresh X-Claude-Code-Session-Id per request: pin miss, weighted pick, new pin written', key: pooled.secret, headers: () => ({ 'x-claude-code-session-id': randomUUID() }) },
    ];
    const figures = await interleaved(gw.url, variants, o);
    for (const f of figures) {
      o.log(`  ${f.name.padEnd(38)} ${String(f.ok).padStart(6)} ok ${String(f.errors).padStart(3)} errors  p50 ${f.latency.p50.toFixed(2)} ms  p99 ${f.latency.p99.toFixed(2)} ms`);
      if (f.errors > 0.01 * (f.ok + f.errors)) problems.push(`${f.name}: ${f.errors} errors of ${f.ok + f.errors}`);
    }

    const failover: FailoverFigure[] = [];
    const baseKey = failCustomers['no fault']!;
    const figure = async (r: Awaited<ReturnType<typeof streamed>>[number], what: string): Promise<StreamFigure> => {
      if (r.errors) problems.push(`${what}: ${r.errors} failed requests, e.g. ${r.errorSamples.join('; ')}`);
      return { ok: r.ok, errors: r.errors, ttfb: summarize(r.ttfb), attempts: await attemptsOf(gw.url, r.ids) };
    };
    for (const [kind] of failGroups) {
      if (kind === 'no fault') continue;
      if (o.signal?.aborted) break;
      o.log(`bench: upstream pools: failover, first upstream failing (${kind}): ${POOL_CIRCUIT_THRESHOLD} streaming requests (the last opens its circuit), ` +
        `then ${AFTER_OPEN_REQUESTS} with the circuit open; as many to the no-fault group in turn; concurrency ${FAILOVER_CONCURRENCY}`);
      if (kind === '503') await simFaults(sims[0]!, 'POST', { count: POOL_CIRCUIT_THRESHOLD, status: 503 });
      if (kind === 'timeout to headers') await simFaults(sims[0]!, 'POST', { count: POOL_CIRCUIT_THRESHOLD, delay_ms: FAULT_DELAY_MS });
      const [closedFault, closedBase] = await streamed(gw.url, [failCustomers[kind]!, baseKey], POOL_CIRCUIT_THRESHOLD);
      await simFaults(sims[0]!, 'DELETE');
      const [openFault, openBase] = await streamed(gw.url, [failCustomers[kind]!, baseKey], AFTER_OPEN_REQUESTS);
      const f: FailoverFigure = {
        kind: kind as FailoverFigure['kind'],
        closed: { fault: await figure(closedFault!, `${kind}, circuit closed`), baseline: await figure(closedBase!, `no fault next to ${kind}`) },
        open: { fault: await figure(openFault!, `${kind}, circuit open`), baseline: await figure(openBase!, `no fault next to ${kind}`) },
      };
      failover.push(f);
      for (const [c, x] of [['closed', f.closed], ['open', f.open]] as const) {
        o.log(`  circuit ${c.padEnd(6)} ttfb p50 ${ms(x.fault.ttfb.p50)} ms p99 ${ms(x.fault.ttfb.p99)} ms attempts ${fmtAttempts(x.fault.attempts)}; ` +
          `no fault p50 ${ms(x.baseline.ttfb.p50)} ms p99 ${ms(x.baseline.ttfb.p99)} ms attempts ${fmtAttempts(x.baseline.attempts)}`);
      }
    }
    return { micro, variants: figures, failover, concurrency: o.concurrency, durationS: o.durationS, problems };
  } finally {
    for (const s of started.reverse()) await s.stop();
  }
}

function fmtAttempts(a: Record<string, number>): string {
  return Object.entries(a).sort().map(([k, n]) => `${k}×${n}`).join(' ');
}


/** The section as printed tables. */
export function poolReport(r: PoolBenchResult): string {
  const lines: string[] = [];
  lines.push('upstream pools: the selector alone (services/gateway/src/pool, 10 upstreams, in-process, memory store)');
  lines.push(`${'call'.padEnd(58)} ${'calls'.padStart(7)} ${'mean µs'.padStart(8)} ${'p50 µs'.padStart(8)} ${'p99 µs'.padStart(8)}`);
  for (const m of r.micro) {
    lines.push(`${m.name.padEnd(58)} ${String(m.calls).padStart(7)} ${(m.meanNs / 1000).toFixed(2).padStart(8)} ${(m.p50Ns / 1000).toFixed(2).padStart(8)} ${(m.p99Ns / 1000).toFixed(2).padStart(8)}`);
  }
  lines.push('(p50/p99 over batches of calls: the mean per call of each batch)');
  lines.push('');
  const base = r.variants[0];
  lines.push(`upstream pools: added latency through the embedded gateway, non-streaming, ${r.durationS} s, concurrency ${r.concurrency}, variants interleaved per worker`);
  lines.push(`${'variant'.padEnd(38)} ${'requests'.padStart(8)} ${'errors'.padStart(6)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'added p50'.padStart(10)} ${'added p99'.padStart(10)} ${'p50 ratio'.padStart(9)}`);
  for (const v of r.variants) {
    const isBase = v === base;
    lines.push(`${v.name.padEnd(38)} ${String(v.ok).padStart(8)} ${String(v.errors).padStart(6)} ${ms(v.latency.p50).padStart(8)} ${ms(v.latency.p99).padStart(8)} ` +
      `${(isBase || !base ? '' : signed(v.latency.p50 - base.latency.p50)).padStart(10)} ${(isBase || !base ? '' : signed(v.latency.p99 - base.latency.p99)).padStart(10)} ` +
      `${(isBase || !base ? '' : (v.latency.p50 / base.latency.p50).toFixed(3)).padStart(9)}`);
  }
  lines.push('');
  lines.push(`upstream pools: failover to a healthy upstream (first upstream priority 10 failing, fallback priority 0), streaming, time to first byte (ms); ` +
    `UPSTREAM_TIMEOUT_MS ${POOL_UPSTREAM_TIMEOUT_MS}, CIRCUIT_FAILURE_THRESHOLD ${POOL_CIRCUIT_THRESHOLD}; no fault = a group whose first upstream works, requests interleaved with the faulty group's`);
  lines.push(`${'first upstream'.padEnd(20)} ${'circuit'.padEnd(7)} ${'requests'.padStart(8)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'no fault p50'.padStart(12)} ${'p99'.padStart(8)} ${'added p50'.padStart(10)} ${'added p99'.padStart(10)}  attempts (usage events)`);
  for (const f of r.failover) {
    for (const [circuit, x] of [['closed', f.closed], ['open', f.open]] as const) {
      lines.push(`${f.kind.padEnd(20)} ${circuit.padEnd(7)} ${String(x.fault.ok).padStart(8)} ${ms(x.fault.ttfb.p50).padStart(8)} ${ms(x.fault.ttfb.p99).padStart(8)} ` +
        `${ms(x.baseline.ttfb.p50).padStart(12)} ${ms(x.baseline.ttfb.p99).padStart(8)} ${signed(x.fault.ttfb.p50 - x.baseline.ttfb.p50).padStart(10)} ` +
        `${signed(x.fault.ttfb.p99 - x.baseline.ttfb.p99).padStart(10)}  ${fmtAttempts(x.fault.attempts)} (no fault ${fmtAttempts(x.baseline.attempts)})`);
    }
  }
  lines.push('circuit closed: each request tried the failing upstream first (the last of them opened its circuit); open: it is skipped.');
  if (r.problems.length) lines.push(`problems: ${r.problems.join('; ')}`);
  return lines.join('\n');
}

// Run directly (`node bench/pool.ts`): say what to run instead of silently doing nothing.
if (import.meta.main) (await import('./cli.ts')).notACommand(import.meta, 'npm run bench -- --pool-only (see npm run bench -- --help)');
