// Breaker brk10a on session affinity and the usage event, against real simulators as the
// upstreams of one group (official SDK as the client): a side request for another model never
// moves the main model's pin (#1), a 1-hour pin is not shortened by a later request (#2, and
// 1-hour breakpoints nested anywhere in the body count), and an `overloaded` refusal's usage
// event carries upstream_id '' and attempts 0 (#5).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import type { FastifyInstance } from 'fastify';
import { seal } from '@tollgate/keys';
import { CachedPoolView, MemoryPoolStore, UPSTREAM_KEY_PURPOSE, type UpstreamRecord } from '@tollgate/pool';
import { buildSimulator } from '@tollgate/simulator';
import { startGateway } from './support.ts';
import { AFFINITY_TTL_1H_MS, AFFINITY_TTL_MS, affinityTtlMs } from '../src/pool/session.ts';

// the fixture's KEY_HASH_SECRET and upstream key (support.ts)
const HASH = 'gateway-test-hash-secret-0123456789';
const UPSTREAM_KEY = 'sk-ant-upstream-test-key';
// Sonnet 4's prices and tier are Sonnet 4.5's; 4.5 reached its end of life (2026-11-30) and the
// SDK warns on every call naming it.
const SONNET = 'claude-sonnet-4-0';
const SONNET_UPSTREAM = 'claude-sonnet-4-20250514';
const HAIKU = 'claude-haiku-4-5';

type Name = 'A' | 'B' | 'C';
const sims = {} as Record<Name, { app: FastifyInstance; url: string }>;
before(async () => {
  for (const name of ['A', 'B', 'C'] as const) {
    const app = buildSimulator({ apiKey: UPSTREAM_KEY });
    sims[name] = { app, url: await app.listen({ port: 0, host: '127.0.0.1' }) };
  }
});
after(async () => {
  for (const s of Object.values(sims)) await s.app.close();
});

/** A gateway whose default group lives in a memory store on a clock the test moves (view TTL 0). */
async function poolGateway() {
  let now = Date.now();
  const store = new MemoryPoolStore({ now: () => now });
  const view = new CachedPoolView({ store, configured: { url: 'http://127.0.0.1:9', apiKey: undefined }, keyHashSecret: HASH, ttlMs: 0 });
  const stack = await startGateway({ pool: { store, view } });
  let version = 0;
  let n = 0;
  const records = new Map<string, UpstreamRecord>();
  return {
    stack,
    advance(ms: number) { now += ms; },
    async upstream(sim: Name, o: Partial<UpstreamRecord> = {}): Promise<string> {
      const id = `up_${sim}_${++n}`;
      const r: UpstreamRecord = {
        id, name: id, platform: 'anthropic', base_url: sims[sim].url, api_key_sealed: seal(UPSTREAM_KEY, HASH, UPSTREAM_KEY_PURPOSE, id),
        models: null, weight: 1, priority: 0, max_concurrency: null, status: 'active', created_at: Date.now(), deleted: false, version: 1, ...o,
      };
      records.set(id, r);
      await store.putUpstream(r);
      return id;
    },
    async patch(id: string, o: Partial<UpstreamRecord>): Promise<void> {
      const r = { ...records.get(id)!, ...o, version: records.get(id)!.version + 1 };
      records.set(id, r);
      await store.putUpstream(r);
    },
    async group(ids: string[]): Promise<void> {
      await store.putGroup({ id: 'default', name: 'default', platform: 'anthropic', upstream_ids: ids, model_mapping: null, created_at: 0, deleted: false, version: ++version });
    },
  };
}

/**
 * Upstreams A (priority 10) and B (priority 0) as the default group, a customer, and `ask`: one
 * sonnet request of one session (100 input, 10 output tokens) answering the upstream that served it.
 */
async function twoUpstreamsOneSession(p: Awaited<ReturnType<typeof poolGateway>>) {
  const a = await p.upstream('A', { priority: 10 });
  const b = await p.upstream('B', { priority: 0 });
  await p.group([a, b]);
  const c = await p.stack.customer();
  const headers = { 'x-claude-code-session-id': randomUUID(), 'x-sim-input': '100', 'x-sim-output': '10' };
  const ask = async (content: Anthropic.MessageParam['content']) => {
    const { response } = await c.client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content }] }, { headers }).withResponse();
    return (await p.stack.usageOf(response.headers.get('request-id')!)).upstream_id;
  };
  return { a, b, c, ask };
}

describe('session affinity (breaker brk10a)', () => {
  let p: Awaited<ReturnType<typeof poolGateway>>;
  before(async () => { p = await poolGateway(); });
  after(async () => p.stack.close());

  test('side request for another model (Claude Code haiku title) with the session id: the main model stays pinned and reads its cache (exact µc)', async () => {
    // A serves only sonnet and is preferred; B and C serve everything at a lower priority
    const a = await p.upstream('A', { priority: 10, models: [SONNET_UPSTREAM] });
    const b = await p.upstream('B');
    const c3 = await p.upstream('C');
    await p.group([a, b, c3]);
    const c = await p.stack.customer();
    const session = { 'x-claude-code-session-id': randomUUID(), 'x-sim-output': '10' };
    const system = [{ type: 'text' as const, text: `Agent 7. ${'You are a coding agent. '.repeat(200)}`, cache_control: { type: 'ephemeral' as const } }];
    const ask = async (model: string) => {
      const body = model === SONNET
        ? { model, max_tokens: 16, system, messages: [{ role: 'user' as const, content: 'next step' }] }
        : { model, max_tokens: 16, messages: [{ role: 'user' as const, content: 'title for this chat' }] };
      const { response } = await c.client.messages.create(body, { headers: session }).withResponse();
      const e = await p.stack.usageOf(response.headers.get('request-id')!);
      return [e.upstream_id, e.input_tokens, e.cache_read_tokens, e.cache_write_5m_tokens, e.cost_micros];
    };
    const first = await ask(SONNET);
    const second = await ask(SONNET);
    const side = await ask(HAIKU);
    const third = await ask(SONNET);
    // sonnet-4-0 (µc per token): input 72, cache write 5m 90, cache read 7.2, output 360.
    // The system prompt is 1,203 tokens, the user turn 2, the output 10 (directive):
    // write: 2 × 72 + 1,203 × 90 + 10 × 360 = 144 + 108,270 + 3,600 = 112,014 µc
    // read:  ⌈2 × 72 + 1,203 × 7.2 + 10 × 360⌉ = ⌈144 + 8,661.6 + 3,600⌉ = 12,406 µc
    assert.deepEqual(first, [a, 2, 0, 1203, '112014']);
    assert.deepEqual(second, [a, 2, 1203, 0, '12406']);
    assert.ok(side[0] === b || side[0] === c3, `haiku went to ${side[0]}`);
    // Before per-model pins the haiku request moved the session to B or C, and this request
    // wrote the cache again there: 112,014 instead of 12,406 µc (+99,608 µc).
    assert.deepEqual(third, [a, 2, 1203, 0, '12406']);
  });

  test('1-hour pin followed by a request without ttl "1h": still pinned 30 minutes later (affinity over priority)', async () => {
    const { a, b, ask } = await twoUpstreamsOneSession(p);
    // the 1-hour breakpoint sits inside a tool_result's content (found since brk10a #2)
    const hour: Anthropic.MessageParam['content'] = [{
      type: 'tool_result', tool_use_id: 'toolu_1',
      content: [{ type: 'text', text: 'file contents', cache_control: { type: 'ephemeral', ttl: '1h' } }],
    }];
    assert.equal(await ask('hello'), a);
    assert.equal(await ask(hour), a);
    assert.equal(await ask('plain follow-up'), a);
    // B is preferred from now on by priority: only a live pin keeps the session on A
    await p.patch(a, { priority: -1 });
    p.advance(30 * 60_000);
    assert.equal(await ask('after 30 minutes'), a);
    // past the hour the pin is gone and priority decides
    p.advance(31 * 60_000);
    assert.equal(await ask('after 61 minutes'), b);
  });

  test('a session served by the only active upstream is pinned there: when the other comes back, even preferred by priority, the session stays where its cache is', async () => {
    const { a, b, c, ask } = await twoUpstreamsOneSession(p);
    assert.equal(await ask('hello'), a);
    // A disabled: B alone serves the session (and writes its prompt cache there)
    await p.patch(a, { status: 'disabled' });
    assert.equal(await ask('next'), b);
    assert.equal(await ask('next'), b);
    // A back, preferred by priority: a new session goes to A, this one stays on B. It went back
    // to A (its pin from before) while pins were kept only in groups of more than one ACTIVE upstream.
    await p.patch(a, { status: 'active' });
    const fresh = await c.client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'new' }] },
      { headers: { 'x-claude-code-session-id': randomUUID() } }).withResponse();
    assert.equal((await p.stack.usageOf(fresh.response.headers.get('request-id')!)).upstream_id, a);
    assert.equal(await ask('next'), b);
  });

  test('every upstream of the group serving the model disabled: 503 api_error naming how many, not 404 model_not_found; a model no member serves, disabled ones included, stays 404', async () => {
    const a = await p.upstream('A');
    const b = await p.upstream('B', { models: [`${HAIKU}-20251001`] });
    await p.group([a, b]);
    const c = await p.stack.customer();
    const status = async (model: string) => {
      try {
        await c.client.messages.create({ model, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }, { maxRetries: 0 });
        return 'served';
      } catch (err) {
        const e = err as { status: number; error: { error: { type: string; message: string } } };
        return `${e.status} ${e.error.error.type}: ${e.error.error.message}`;
      }
    };
    assert.equal(await status(SONNET), 'served');
    // A disabled: B is active but serves only haiku, and A may serve sonnet again
    await p.patch(a, { status: 'disabled' });
    assert.equal(await status(SONNET), `503 api_error: model: ${SONNET} is served by no active upstream of this key's group (1 of its upstreams is disabled or without a usable credential)`);
    await p.patch(b, { status: 'disabled' });
    assert.equal(await status(HAIKU), `503 api_error: model: ${HAIKU} is served by no active upstream of this key's group (2 of its upstreams are disabled or without a usable credential)`);
    // no member serves the model, a disabled one included: that model is not found here
    await p.patch(a, { status: 'active', models: [`${HAIKU}-20251001`] });
    assert.equal(await status(SONNET), `404 not_found_error: model: ${SONNET} is not served by any upstream of this key's group`);
    await p.patch(b, { status: 'active' });
    assert.equal(await status(SONNET), `404 not_found_error: model: ${SONNET} is not served by any upstream of this key's group`);
  });

  test('every upstream at max_concurrency: the 503 overloaded usage event has upstream_id "" and attempts 0', async () => {
    const a = await p.upstream('A', { max_concurrency: 1 });
    await p.group([a]);
    const c = await p.stack.customer();
    const slow = c.client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'slow' }] },
      { headers: { 'x-sim-latency-ms': '1500', 'x-sim-input': '100', 'x-sim-output': '10' } }).withResponse();
    await new Promise((r) => setTimeout(r, 500));
    const err = await c.client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'x' }] })
      .then(() => assert.fail('expected 503'), (e: unknown) => e);
    assert.ok(err instanceof Anthropic.APIError);
    assert.deepEqual([err.status, (err.error as { error: { type: string } }).error.type], [503, 'overloaded_error']);
    const refused = await p.stack.usageOf(err.requestID!);
    assert.deepEqual([refused.upstream_id, refused.attempts, refused.cost_micros], ['', 0, '0']);
    const served = await p.stack.usageOf((await slow).response.headers.get('request-id')!);
    // 100 × 72 + 10 × 360 = 7,200 + 3,600 = 10,800 µc
    assert.deepEqual([served.upstream_id, served.attempts, served.cost_micros], [a, 1, '10800']);
  });
});

test('1-hour cache_control anywhere the Messages API allows it pins for an hour; cache_control inside caller JSON (tool input, schema) does not', () => {
  const hour = { type: 'ephemeral', ttl: '1h' };
  const cases: Array<[string, unknown, number]> = [
    ['top level (automatic caching)', { cache_control: hour, messages: [] }, AFFINITY_TTL_1H_MS],
    ['system block', { system: [{ type: 'text', text: 's', cache_control: hour }], messages: [] }, AFFINITY_TTL_1H_MS],
    ['tool', { tools: [{ name: 't', input_schema: { type: 'object' }, cache_control: hour }], messages: [] }, AFFINITY_TTL_1H_MS],
    ['text in tool_result.content', { messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'x', content: [{ type: 'text', text: 't', cache_control: hour }] }] }] }, AFFINITY_TTL_1H_MS],
    ['image in tool_result.content', { messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'x', content: [{ type: 'image', source: { type: 'url', url: 'https://x/y.png' }, cache_control: hour }] }] }] }, AFFINITY_TTL_1H_MS],
    ['search_result in tool_result.content', { messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'x', content: [{ type: 'search_result', source: 's', title: 't', content: [{ type: 'text', text: 'r' }], cache_control: hour }] }] }] }, AFFINITY_TTL_1H_MS],
    ['document with content source', { messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'content', content: [{ type: 'text', text: 'p', cache_control: hour }] } }] }] }, AFFINITY_TTL_1H_MS],
    ['tool_use block', { messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 'x', name: 't', input: {}, cache_control: hour }] }] }, AFFINITY_TTL_1H_MS],
    ['5-minute breakpoints only', { system: [{ type: 'text', text: 's', cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'x', content: [{ type: 'text', text: 't', cache_control: { type: 'ephemeral', ttl: '5m' } }] }] }] }, AFFINITY_TTL_MS],
    ['cache_control as data in a tool_use input', { messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 'x', name: 't', input: { cache_control: hour } }] }] }, AFFINITY_TTL_MS],
    ['cache_control as a property of a tool schema', { tools: [{ name: 't', input_schema: { type: 'object', properties: { cache_control: hour } } }], messages: [] }, AFFINITY_TTL_MS],
    ['string content', { messages: [{ role: 'user', content: 'cache_control ttl 1h' }] }, AFFINITY_TTL_MS],
  ];
  for (const [name, body, want] of cases) assert.equal(affinityTtlMs(body), want, name);
});
