// Lost updates of control records (the kind: two changes of one record, each made from what it
// read, made at once on two control processes sharing one Redis and Kafka). Before the record
// lock (services/control/src/record-lock.ts) a rename read before a revocation and written after
// it made the revoked key active again in 14 of 20 rounds, and PATCHes of different fields kept
// only the last writer's. Each change now reads, changes and writes its record alone, in every
// control process: a revocation always stands, and every field a PATCH answered 200 for is kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, useCluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

const run = useCluster(() => startCluster([
  ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
  ['c1', { roles: 'control' }],
  ['c2', { roles: 'control' }],
]));

const ROUNDS = 10;

/** `method path body` on control process c1 or c2 (alternating by `i`); the answer. */
function on(i: number, method: string, path: string, body?: unknown) {
  const c = run.cluster!;
  return c.admin<Record<string, unknown>>(method, path, body, c.url(i % 2 === 0 ? 'c1' : 'c2'));
}

/** GET `path` on control process `name`: the answer's JSON. */
async function read(name: string, path: string): Promise<Record<string, unknown>> {
  const c = run.cluster!;
  return (await c.admin<Record<string, unknown>>('GET', path, undefined, c.url(name))).json;
}

async function newAccountOn(): Promise<string> {
  const a = await on(0, 'POST', '/admin/v1/accounts', { name: 'race' });
  assert.equal(a.status, 201, JSON.stringify(a.json));
  return a.json['id'] as string;
}

test('lost update: a key revocation racing renames on two control processes always stands; each rename is 200 before it or 409 after', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const account = await newAccountOn();
  for (let round = 0; round < ROUNDS; round++) {
    const k = await on(round, 'POST', `/admin/v1/accounts/${account}/keys`, { name: 'start' });
    assert.equal(k.status, 201);
    const id = k.json['id'] as string;
    const renames = Array.from({ length: 8 }, (_, i) => `r${round}-${i}`);
    const answers = await Promise.all([
      ...renames.slice(0, 4).map((name, i) => on(i, 'PATCH', `/admin/v1/keys/${id}`, { name })),
      on(round, 'DELETE', `/admin/v1/keys/${id}`),
      ...renames.slice(4).map((name, i) => on(i + 1, 'PATCH', `/admin/v1/keys/${id}`, { name })),
    ]);
    const revoke = answers[4]!;
    assert.deepEqual([revoke.status, revoke.json['status']], [200, 'revoked'], `round ${round}`);
    const patches = answers.filter((_, i) => i !== 4);
    for (const p of patches) assert.ok(p.status === 200 || p.status === 409, `round ${round}: PATCH answered ${p.status} ${JSON.stringify(p.json)}`);
    const applied = patches.filter((p) => p.status === 200).map((p) => p.json['name']);
    for (const c of ['c1', 'c2']) {
      const now = await read(c, `/admin/v1/keys/${id}`);
      assert.equal(now['status'], 'revoked', `round ${round}: the key is ${String(now['status'])} on ${c} after its revocation answered 200`);
      // the name is the one the revocation saw: the last rename before it, or the first one
      assert.equal(now['name'], revoke.json['name'], `round ${round} on ${c}`);
      assert.ok(revoke.json['name'] === 'start' || applied.includes(revoke.json['name']), `round ${round}: ${String(revoke.json['name'])}`);
    }
  }
});

test('lost update: PATCHes of different fields of one key, account and plan on two control processes keep every field', async (t) => {
  if (!run.cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
  const account = await newAccountOn();
  for (let round = 0; round < ROUNDS; round++) {
    const k = await on(round, 'POST', `/admin/v1/accounts/${account}/keys`, { name: 'fields' });
    const keyId = k.json['id'] as string;
    const p = await on(round, 'POST', '/admin/v1/plans', { name: `race ${round}`, requests_per_minute: 1 });
    assert.equal(p.status, 201, JSON.stringify(p.json));
    const planId = p.json['id'] as string;
    const n = round + 1;
    const keyFields = { name: `k${n}`, hourly_credits: `${n}.000001`, daily_credits: `${n}.5`, total_credits: `${n}00` };
    const accountFields = { name: `a${n}`, daily_credits: `${n}.25`, monthly_credits: `${n}0`, low_balance_credits: `${n}.75` };
    const planFields = { requests_per_minute: 10 + n, requests_per_5h: 20 + n, requests_per_week: 30 + n, tokens_per_minute: 40 + n };
    const patches = [
      ...Object.entries(keyFields).map(([f, v], i) => on(i, 'PATCH', `/admin/v1/keys/${keyId}`, { [f]: v })),
      ...Object.entries(accountFields).map(([f, v], i) => on(i + 1, 'PATCH', `/admin/v1/accounts/${account}`, { [f]: v })),
      ...Object.entries(planFields).map(([f, v], i) => on(i, 'PATCH', `/admin/v1/plans/${planId}`, { [f]: v })),
    ];
    for (const a of await Promise.all(patches)) assert.equal(a.status, 200, `round ${round}: ${JSON.stringify(a.json)}`);
    for (const c of ['c1', 'c2']) {
      const key = await read(c, `/admin/v1/keys/${keyId}`);
      const acct = await read(c, `/admin/v1/accounts/${account}`);
      const plan = await read(c, `/admin/v1/plans/${planId}`);
      assert.deepEqual(Object.fromEntries(Object.keys(keyFields).map((f) => [f, key[f]])), keyFields, `round ${round}, key on ${c}`);
      assert.deepEqual(Object.fromEntries(Object.keys(accountFields).map((f) => [f, acct[f]])), accountFields, `round ${round}, account on ${c}`);
      assert.deepEqual(Object.fromEntries(Object.keys(planFields).map((f) => [f, plan[f]])), planFields, `round ${round}, plan on ${c}`);
    }
  }
});
