// Issue 10: the pieces of upstream selection on their own — circuit breaker states on a clock,
// how an upstream answer is judged, session keys and pin lifetimes, weighted choice with a
// seeded generator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { ResolvedUpstream, UpstreamRecord } from '@tollgate/pool';
import { MemoryPoolStore } from '@tollgate/pool';
import { UpstreamHealth } from '../src/pool/breaker.ts';
import { affinityTtlMs, AFFINITY_TTL_1H_MS, AFFINITY_TTL_MS, metadataSession, sessionKey } from '../src/pool/session.ts';
import { judge, retryAfterUntil, UpstreamPool, weightedPick } from '../src/pool/selector.ts';
import type { UpstreamResponse } from '../src/upstream.ts';
import { UpstreamClients } from '../src/pool/clients.ts';

/** mulberry32: a seeded [0, 1) generator, so a distribution test gives one answer forever. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function response(status: number, headers: Record<string, string> = {}): UpstreamResponse {
  return { status, headers, secrets: [], scrubEvent: (b: Buffer) => b, body: Object.assign(Readable.from([]), { text: async () => '', arrayBuffer: async () => new ArrayBuffer(0), dump: async () => {}, cancel: () => {} }) } as unknown as UpstreamResponse;
}

function up(id: string, o: Partial<UpstreamRecord> = {}): ResolvedUpstream {
  return {
    apiKey: 'k',
    record: {
      id, name: id, platform: 'anthropic', base_url: 'http://127.0.0.1:9', api_key_sealed: null, models: null, weight: 1, priority: 0,
      max_concurrency: null, status: 'active', created_at: 0, deleted: false, version: 1, ...o,
    },
  };
}

test('circuit breaker: opens at the threshold of consecutive failures, half-open after the open time lets one probe, success closes, failure re-opens', () => {
  let now = 1_000_000;
  const h = new UpstreamHealth('u', { failureThreshold: 3, openMs: 30_000 }, () => now);
  h.begin(); h.failed(); h.end();
  h.begin(); h.failed(); h.end();
  // a success in between resets the count
  h.begin(); h.succeeded(); h.end();
  for (let i = 0; i < 2; i++) { h.begin(); h.failed(); h.end(); }
  assert.equal(h.unavailable(null), null, 'two consecutive failures: still closed');
  h.begin(); h.failed(); h.end();
  assert.equal(h.unavailable(null), 'open');
  assert.equal(h.circuit, 'open');
  now += 29_999;
  assert.equal(h.unavailable(null), 'open');
  now += 1;
  assert.equal(h.circuit, 'half_open');
  assert.equal(h.unavailable(null), null, 'the probe may go');
  h.begin();
  assert.equal(h.unavailable(null), 'probing', 'one probe at a time');
  h.failed(); h.end();
  assert.equal(h.unavailable(null), 'open', 'a failed probe re-opens');
  assert.equal(h.availableAt(), now + 30_000);
  now += 30_000;
  h.begin(); h.succeeded(); h.end();
  assert.equal(h.circuit, 'closed');
  assert.equal(h.unavailable(null), null);
  const snap = h.snapshot('gw');
  assert.deepEqual({ ...snap, at: 0 }, {
    upstream_id: 'u', gateway_id: 'gw', circuit: 'closed', cooldown_until: null, in_flight: 0,
    // counted in the 60 s before `now`: the last two attempts (the earlier ones are 60 s old)
    recent_requests: 2, recent_failures: 1, at: 0,
  });
});

test('a refused credential opens the circuit at once; a cooldown and a full concurrency cap make an upstream unavailable', () => {
  let now = 5_000;
  const h = new UpstreamHealth('u', { failureThreshold: 5, openMs: 1_000 }, () => now);
  h.begin(); h.failed(true); h.end();
  assert.equal(h.unavailable(null), 'open');
  now += 1_000;
  h.begin(); h.succeeded(); h.end();
  h.coolDown(now + 500);
  assert.equal(h.unavailable(null), 'cooldown');
  assert.equal(h.cooldownUntil, now + 500);
  now += 500;
  assert.equal(h.unavailable(null), null);
  h.begin();
  assert.equal(h.unavailable(1), 'full');
  assert.equal(h.unavailable(2), null);
  h.end();
  assert.equal(h.unavailable(1), null);
});

test('a newer record with another URL or credential is judged afresh: the circuit closes and the cooldown goes at once; attempts of before do not move it', () => {
  const now = 10_000;
  const h = new UpstreamHealth('u', { failureThreshold: 5, openMs: 30_000 }, () => now);
  h.rebase(1, 'https://a.example', 'key-1'); // the first look only records what is judged
  const old = h.begin(1);
  const stale = h.begin(1); // an attempt with the old key, still in flight at the rotation
  h.failed(true, old); h.end();
  assert.equal(h.unavailable(null), 'open');
  h.rebase(1, 'https://a.example', 'key-1');
  assert.equal(h.unavailable(null), 'open', 'the same record: still open');
  h.rebase(2, 'https://a.example', 'key-1');
  assert.equal(h.unavailable(null), 'open', 'the same key sent again (sealed anew, a new version): still open');
  h.rebase(3, 'https://a.example', 'key-2'); // the operator rotated the refused key
  assert.equal(h.unavailable(null), null, 'usable at once, not after openMs');
  assert.equal(h.circuit, 'closed');
  h.failed(true, stale); h.coolDown(now + 60_000, stale); h.end();
  assert.equal(h.unavailable(null), null, "the old key's refusal and rate limit arriving late do not count against the new one");
  assert.equal(h.snapshot('gw').recent_failures, 2, 'both failures stay in the window (they happened)');
  // A request routed from an older snapshot: it does not take the judgement back, and what it
  // meets (with the old key) moves nothing.
  const fresh = h.begin(3); h.failed(true, fresh); h.end();
  assert.equal(h.unavailable(null), 'open');
  h.rebase(2, 'https://a.example', 'key-1');
  assert.equal(h.unavailable(null), 'open', 'an older record does not reset the circuit');
  const routedBefore = h.begin(2); h.succeeded(routedBefore); h.end();
  assert.equal(h.unavailable(null), 'open', "an attempt routed with the older record does not close the new key's circuit");
  h.rebase(4, 'https://b.example', 'key-2'); // a dead host replaced
  assert.equal(h.unavailable(null), null);
  const next = h.begin(4); h.succeeded(next); h.coolDown(now + 5_000, next); h.end();
  assert.equal(h.unavailable(null), 'cooldown');
  h.rebase(5, 'https://b.example', undefined); // the key removed: another basis again
  assert.equal(h.unavailable(null), null);
  // failures below the threshold are forgotten too
  for (let i = 0; i < 4; i++) { const g = h.begin(5); h.failed(false, g); h.end(); }
  h.rebase(6, 'https://b.example', 'key-3');
  for (let i = 0; i < 4; i++) { const g = h.begin(6); h.failed(false, g); h.end(); }
  assert.equal(h.unavailable(null), null, '4 + 4 failures across a change are not 5 in a row');
  h.rebase(7, 'https://b.example', 'key-3'); // a weight edit: same URL and key
  const last = h.begin(7); h.failed(false, last); h.end();
  assert.equal(h.unavailable(null), 'open', 'an edit of something else keeps the count: the fifth failure opens');
});

test('pick: an upstream whose circuit a refused key opened is chosen again as soon as the snapshot carries its new key, and not taken back by an older route', () => {
  const pool = new UpstreamPool({
    view: { groupFor: async () => { throw new Error('unused'); }, group: async () => undefined, upstream: async () => undefined },
    store: new MemoryPoolStore(), clients: new UpstreamClients({} as never, { url: 'http://127.0.0.1:9', apiKey: undefined, timeoutMs: 1000 }), gatewayId: 'gw', random: seeded(1),
  });
  const withKey = (version: number, apiKey: string, o: Partial<UpstreamRecord> = {}): ResolvedUpstream => ({ ...up('first', { priority: 10, version, ...o }), apiKey });
  const spare = up('spare', { priority: 0 });
  assert.equal(pool.pick([withKey(1, 'wrong'), spare], new Set(), undefined, false)?.record.id, 'first');
  pool.health('first').failed(true); // 401: open for CIRCUIT_OPEN_MS
  assert.equal(pool.pick([withKey(1, 'wrong'), spare], new Set(), undefined, false)?.record.id, 'spare');
  assert.equal(pool.pick([withKey(2, 'wrong', { weight: 5 }), spare], new Set(), undefined, false)?.record.id, 'spare', 'an edit of something else leaves the judgement');
  assert.equal(pool.pick([withKey(3, 'wrong'), spare], new Set(), undefined, false)?.record.id, 'spare', 'the same key sent again leaves it too');
  assert.equal(pool.pick([withKey(4, 'right'), spare], new Set(), undefined, false)?.record.id, 'first', 'the rotated key is tried at once');
  pool.health('first').coolDown(Date.now() + 60_000); // the new key's own rate limit
  assert.equal(pool.pick([withKey(3, 'wrong'), spare], new Set(), undefined, false)?.record.id, 'spare', 'a route from the older snapshot does not clear it');
  assert.equal(pool.pick([withKey(4, 'right'), spare], new Set(), undefined, false)?.record.id, 'spare');
});

test('an inconclusive answer (a token-counting 429) moves the circuit neither way: failures keep counting to the threshold; a half-open probe it was lets the next request probe', () => {
  let now = 1_000_000;
  const h = new UpstreamHealth('u', { failureThreshold: 3, openMs: 30_000 }, () => now);
  h.begin(); h.failed(); h.end();
  h.begin(); h.failed(); h.end();
  // a success here would reset the count; an inconclusive answer does not
  h.begin(); h.inconclusive(); h.end();
  h.begin(); h.failed(); h.end();
  assert.equal(h.unavailable(null), 'open', 'three failures, the inconclusive one between them not counted');
  now += 30_000;
  h.begin(); // the probe
  assert.equal(h.unavailable(null), 'probing');
  h.inconclusive(); h.end();
  assert.deepEqual([h.circuit, h.unavailable(null)], ['half_open', null], 'the next request probes');
  h.begin(); h.succeeded(); h.end();
  assert.equal(h.circuit, 'closed');
});

test('judging an upstream answer: what fails over, what opens the circuit, what cools down', () => {
  const now = 1_700_000_000_000;
  assert.deepEqual(judge(response(200), now), { kind: 'served' });
  // the client's own request errors are answers
  for (const s of [400, 404, 413, 422]) assert.deepEqual(judge(response(s), now), { kind: 'served' }, String(s));
  for (const s of [408, 500, 502, 503, 504, 529]) assert.deepEqual(judge(response(s), now), { kind: 'failover', open: false, coolUntil: null }, String(s));
  for (const s of [401, 402, 403]) assert.deepEqual(judge(response(s), now), { kind: 'failover', open: true, coolUntil: null }, String(s));
  assert.deepEqual(judge(response(429, { 'retry-after': '7' }), now), { kind: 'failover', open: false, coolUntil: now + 7_000 });
  assert.deepEqual(judge(response(429), now), { kind: 'failover', open: false, coolUntil: null });
  // unified rejected: until its reset (epoch seconds), whatever retry-after says
  const reset = now / 1000 + 3600;
  assert.deepEqual(
    judge(response(429, { 'retry-after': '7', 'anthropic-ratelimit-unified-status': 'rejected', 'anthropic-ratelimit-unified-reset': String(reset) }), now),
    { kind: 'failover', open: false, coolUntil: reset * 1000 },
  );
  // a successful answer is never cooled down, whatever its headers say
  assert.deepEqual(judge(response(200, { 'anthropic-ratelimit-unified-status': 'rejected', 'anthropic-ratelimit-unified-reset': String(reset) }), now), { kind: 'served' });
  // bounded: a year-long retry-after cools for a week at most
  assert.deepEqual(judge(response(429, { 'retry-after': String(365 * 86_400) }), now), { kind: 'failover', open: false, coolUntil: now + 7 * 86_400_000 });
  assert.equal(retryAfterUntil('Wed, 21 Oct 2015 07:28:00 GMT', now), null, 'a date in the past');
  assert.equal(retryAfterUntil(new Date(now + 60_000).toUTCString(), now), now + 60_000);
  assert.equal(retryAfterUntil('soon', now), null);
});

test('session key: x-claude-code-session-id, else metadata.user_id (JSON or legacy), else the key; scoped by account', () => {
  const json = JSON.stringify({ device_id: 'd', account_uuid: 'a', session_id: '3f1c9a6e-0000-4000-8000-000000000001' });
  const legacy = 'user_0123abcd_account_11111111-2222-3333-4444-555555555555_session_3f1c9a6e-0000-4000-8000-000000000001';
  assert.equal(metadataSession({ metadata: { user_id: json } }), '3f1c9a6e-0000-4000-8000-000000000001');
  assert.equal(metadataSession({ metadata: { user_id: legacy } }), '3f1c9a6e-0000-4000-8000-000000000001');
  assert.equal(metadataSession({ metadata: { user_id: 'plain-user' } }), undefined);
  assert.equal(metadataSession({ metadata: { user_id: '{not json' } }), undefined);
  // the JSON and legacy forms of one session are one session
  const a = sessionKey({}, { metadata: { user_id: json } }, 'acc', 'key1');
  const b = sessionKey({}, { metadata: { user_id: legacy } }, 'acc', 'key2');
  assert.equal(a.source, 'metadata');
  assert.equal(a.key, b.key);
  // the header wins over metadata, and is the same session as the id in metadata
  const h = sessionKey({ 'x-claude-code-session-id': '3f1c9a6e-0000-4000-8000-000000000001' }, { metadata: { user_id: 'x' } }, 'acc', 'key1');
  assert.deepEqual(h, { key: a.key, source: 'header' });
  // no session: the key, one pin per key
  const k = sessionKey({}, {}, 'acc', 'key1');
  assert.equal(k.source, 'key');
  assert.notEqual(k.key, sessionKey({}, {}, 'acc', 'key2').key);
  // another account sending the same session id gets its own pin
  assert.notEqual(sessionKey({}, { metadata: { user_id: json } }, 'acc2', 'key1').key, a.key);
  assert.match(a.key, /^[0-9a-f]{64}$/);
});

test('pin lifetime: 5 minutes, 1 hour when any cache_control of the request has ttl 1h', () => {
  const block = (ttl?: string) => ({ type: 'text', text: 'x', cache_control: ttl ? { type: 'ephemeral', ttl } : { type: 'ephemeral' } });
  assert.equal(affinityTtlMs({ messages: [{ role: 'user', content: [block()] }] }), AFFINITY_TTL_MS);
  assert.equal(affinityTtlMs({ system: [block('1h')], messages: [] }), AFFINITY_TTL_1H_MS);
  assert.equal(affinityTtlMs({ tools: [{ name: 't', input_schema: {}, cache_control: { type: 'ephemeral', ttl: '1h' } }], messages: [] }), AFFINITY_TTL_1H_MS);
  assert.equal(affinityTtlMs({ messages: [{ role: 'user', content: [block('5m'), block('1h')] }] }), AFFINITY_TTL_1H_MS);
  assert.equal(affinityTtlMs({ cache_control: { type: 'ephemeral', ttl: '1h' }, messages: [] }), AFFINITY_TTL_1H_MS);
  assert.equal(AFFINITY_TTL_MS, 300_000);
  assert.equal(AFFINITY_TTL_1H_MS, 3_600_000);
});

test('weighted choice 3:1 with a seeded generator over 1,000 picks: 750 ± 60', () => {
  const items = [up('a', { weight: 3 }), up('b', { weight: 1 })];
  const random = seeded(20261130);
  let a = 0;
  for (let i = 0; i < 1000; i++) if (weightedPick(items, random).record.id === 'a') a++;
  assert.ok(Math.abs(a - 750) <= 60, `a picked ${a} times`);
});

test('pick: priority first; the pinned upstream when available; none available on a failover means stop, on a first attempt the soonest back', () => {
  const store = new MemoryPoolStore();
  const pool = new UpstreamPool({
    view: { groupFor: async () => { throw new Error('unused'); }, group: async () => undefined, upstream: async () => undefined },
    store, clients: new UpstreamClients({} as never, { url: 'http://127.0.0.1:9', apiKey: undefined, timeoutMs: 1000 }), gatewayId: 'gw', random: seeded(1),
  });
  const hi = up('hi', { priority: 5 });
  const lo = up('lo', { priority: 0, weight: 1000 });
  const all = [lo, hi];
  for (let i = 0; i < 50; i++) assert.equal(pool.pick(all, new Set(), undefined, false)?.record.id, 'hi');
  assert.equal(pool.pick(all, new Set(), 'lo', false)?.record.id, 'lo', 'the pin wins while it is available');
  assert.equal(pool.pick(all, new Set(['hi']), undefined, false)?.record.id, 'lo');
  pool.health('hi').failed(true);
  assert.equal(pool.pick(all, new Set(), 'hi', false)?.record.id, 'lo', 'a pin to an unavailable upstream is broken');
  pool.health('lo').coolDown(Date.now() + 60_000);
  assert.equal(pool.pick(all, new Set(), undefined, false), undefined, 'a failover never goes to an unhealthy upstream');
  // a first attempt with nothing healthy: the one back soonest (hi's circuit, 30 s, before lo's 60 s cooldown)
  assert.equal(pool.pick(all, new Set(), undefined, true)?.record.id, 'hi');
});

test('pick with failback (the key standing in for a session): a pin to a lower priority yields once a higher one is available; among equals it holds', () => {
  const pool = new UpstreamPool({
    view: { groupFor: async () => { throw new Error('unused'); }, group: async () => undefined, upstream: async () => undefined },
    store: new MemoryPoolStore(), clients: new UpstreamClients({} as never, { url: 'http://127.0.0.1:9', apiKey: undefined, timeoutMs: 1000 }), gatewayId: 'gw', random: seeded(1),
  });
  const hi = up('hi', { priority: 5 });
  const lo = up('lo', { priority: 0 });
  const lo2 = up('lo2', { priority: 0, weight: 1000 });
  assert.equal(pool.pick([hi, lo], new Set(), 'lo', false, false)?.record.id, 'lo', 'a real session stays where its cache is');
  assert.equal(pool.pick([hi, lo], new Set(), 'lo', false, true)?.record.id, 'hi', 'the key goes back to the preferred upstream');
  for (let i = 0; i < 20; i++) assert.equal(pool.pick([lo, lo2], new Set(), 'lo', false, true)?.record.id, 'lo', 'among equals the pin holds');
  pool.health('hi').failed(true);
  assert.equal(pool.pick([hi, lo, lo2], new Set(), 'lo', false, true)?.record.id, 'lo', 'while the preferred one is unavailable the pin holds');
});
