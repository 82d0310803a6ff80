// The PoolStore contract, run against both stores (memory; Redis when one is reachable): the
// highest version wins and a tombstone stays a record, session pins expire after their ttl,
// health is one report per gateway and a gateway that stops reporting drops out.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { HEALTH_TTL_MS, MemoryPoolStore, RedisPoolStore, type GroupRecord, type HealthSnapshot, type PoolStore, type UpstreamRecord } from '../src/index.ts';
import { testRedis } from '../../../test/support/redis.ts';
import { NEEDS_REDIS } from '../../../test/support/services.ts';

const T = Date.UTC(2026, 10, 30, 12, 0, 0);
export const upstream = (id: string, version: number, o: Partial<UpstreamRecord> = {}): UpstreamRecord => ({
  id, name: id, platform: 'anthropic', base_url: `https://${id}.example.com`, api_key_sealed: null, models: null,
  weight: 1, priority: 0, max_concurrency: null, status: 'active', created_at: T, deleted: false, version, ...o,
});
export const group = (id: string, version: number, o: Partial<GroupRecord> = {}): GroupRecord => ({
  id, name: id, platform: 'anthropic', upstream_ids: ['up_a'], model_mapping: null, created_at: T, deleted: false, version, ...o,
});
const snap = (upstreamId: string, gatewayId: string, at: number, o: Partial<HealthSnapshot> = {}): HealthSnapshot => ({
  upstream_id: upstreamId, gateway_id: gatewayId, circuit: 'closed', cooldown_until: null, in_flight: 0,
  recent_requests: 0, recent_failures: 0, at, ...o,
});
const byId = <R extends { id: string }>(rs: R[]) => rs.sort((a, b) => (a.id < b.id ? -1 : 1));

const { redis, prefix } = await testRedis('pool');

const stores: Array<[string, () => PoolStore | undefined]> = [
  ['memory', () => new MemoryPoolStore()],
  ['redis', () => (redis ? new RedisPoolStore({ redis, prefix: `${prefix}${randomUUID()}:` }) : undefined)],
];

for (const [name, make] of stores) {
  describe(`${name} pool store`, () => {
    test('an older or equal version never replaces a newer record (warehouse reload, racing writers); tombstones are kept', async (t) => {
      const s = make();
      if (!s) return t.skip(NEEDS_REDIS);
      assert.equal(await s.putUpstream(upstream('up_a', 5, { weight: 7 })), true);
      assert.equal(await s.putUpstream(upstream('up_a', 4, { weight: 1 })), false);
      assert.equal(await s.putUpstream(upstream('up_a', 5, { weight: 2 })), false);
      assert.equal((await s.upstream('up_a'))?.weight, 7);
      assert.equal(await s.putUpstream(upstream('up_a', 6, { deleted: true })), true);
      assert.equal(await s.putUpstream(upstream('up_b', 1, { platform: 'openai', models: ['claude-haiku-4-5-20251001'] })), true);
      assert.deepEqual(byId(await s.upstreams()), [upstream('up_a', 6, { deleted: true }), upstream('up_b', 1, { platform: 'openai', models: ['claude-haiku-4-5-20251001'] })]);
      assert.equal(await s.upstream('up_none'), undefined);

      assert.equal(await s.putGroup(group('grp_a', 3, { model_mapping: { 'claude-haiku-4-5-20251001': 'gpt-4o-mini' } })), true);
      assert.equal(await s.putGroup(group('grp_a', 2, { upstream_ids: ['up_b'] })), false);
      assert.equal(await s.putGroup(group('default', 1, { upstream_ids: ['default', 'up_a'] })), true);
      assert.deepEqual(byId(await s.groups()), [group('default', 1, { upstream_ids: ['default', 'up_a'] }), group('grp_a', 3, { model_mapping: { 'claude-haiku-4-5-20251001': 'gpt-4o-mini' } })]);
      assert.equal(await s.group('grp_none'), undefined);
    });

    test('a session pin expires after its ttl and is per group', async (t) => {
      const s = make();
      if (!s) return t.skip(NEEDS_REDIS);
      await s.setAffinity('grp_a', 'session-1', 'up_a', 150);
      await s.setAffinity('grp_b', 'session-1', 'up_b', 60_000);
      assert.equal(await s.affinity('grp_a', 'session-1'), 'up_a');
      assert.equal(await s.affinity('grp_b', 'session-1'), 'up_b');
      assert.equal(await s.affinity('grp_a', 'session-2'), undefined);
      // a refresh moves the pin (failover re-pins the session)
      await s.setAffinity('grp_b', 'session-1', 'up_c', 60_000);
      assert.equal(await s.affinity('grp_b', 'session-1'), 'up_c');
      // a session key of any length (metadata.user_id JSON) is one pin
      const long = JSON.stringify({ device_id: 'd'.repeat(64), session_id: randomUUID(), pad: 'x'.repeat(4000) });
      await s.setAffinity('grp_a', long, 'up_b', 60_000);
      assert.equal(await s.affinity('grp_a', long), 'up_b');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await s.affinity('grp_a', 'session-1'), undefined);
    });

    test('health: one report per gateway (a newer report replaces it), a gateway silent for HEALTH_TTL_MS drops out', async (t) => {
      const s = make();
      if (!s) return t.skip(NEEDS_REDIS);
      const now = Date.now();
      await s.reportHealth([snap('up_a', 'gw1', now - 500, { in_flight: 1 }), snap('up_b', 'gw1', now - 500)]);
      await s.reportHealth([snap('up_a', 'gw1', now, { in_flight: 3, circuit: 'open' }), snap('up_a', 'gw2', now, { in_flight: 2 })]);
      // gw3 last reported longer ago than HEALTH_TTL_MS: stopped or crashed
      await s.reportHealth([snap('up_a', 'gw3', now - HEALTH_TTL_MS - 1, { in_flight: 50 })]);
      const got = (await s.health('up_a')).sort((a, b) => (a.gateway_id < b.gateway_id ? -1 : 1));
      assert.deepEqual(got, [snap('up_a', 'gw1', now, { in_flight: 3, circuit: 'open' }), snap('up_a', 'gw2', now, { in_flight: 2 })]);
      assert.deepEqual(await s.health('up_b'), [snap('up_b', 'gw1', now - 500)]);
      assert.deepEqual(await s.health('up_none'), []);
      await s.reportHealth([]);
    });
  });
}

test('redis pool store: records live under <prefix>pool: and a pin key does not contain the session key', async (t) => {
  if (!redis) return t.skip(NEEDS_REDIS);
  const p = `${prefix}layout:`;
  const s = new RedisPoolStore({ redis, prefix: p });
  await s.putUpstream(upstream('up_a', 1));
  await s.putGroup(group('grp_a', 1));
  await s.setAffinity('grp_a', 'user-session-xyz', 'up_a', 60_000);
  await s.reportHealth([snap('up_a', 'gw1', Date.now())]);
  const keys = (await redis.keys(`${p}*`)).sort();
  assert.equal(keys.length, 4);
  assert.deepEqual(keys.filter((k) => !k.startsWith(`${p}pool:pin:`)), [`${p}pool:groups`, `${p}pool:health:up_a`, `${p}pool:upstreams`]);
  assert.ok(!keys.some((k) => k.includes('user-session-xyz')));
  const ttl = await redis.pttl(`${p}pool:health:up_a`);
  assert.ok(ttl > 0 && ttl <= HEALTH_TTL_MS, `health hash expires with its last report (pttl ${ttl})`);
});
