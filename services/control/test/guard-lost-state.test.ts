// guardLostState: the operator routes' other stores (upstream pools, webhooks, the reports' key
// directory and balances) answer 503 state_unavailable while hot state waits for its rebuild,
// instead of reading as empty (a tester's MEDIUM: GET /admin/v1/webhooks was 200 {"data":[]}
// and an existing upstream "does not exist"); their own errors pass unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isGatewayError } from '@tollgate/anthropic';
import { guardLostState } from '@tollgate/control';

class Hooks {
  readonly records = new Map([['wh_1', { id: 'wh_1' }]]);
  async list() { return [...this.records.values()]; }
  async get(id: string) { return this.records.get(id); }
  async exclusive<T>(fn: () => Promise<T>): Promise<T> { return fn(); }
  async busy(): Promise<never> { throw new Error('busy: another change is running'); }
}

test('guardLostState: while the state is lost every method rejects with 503 state_unavailable (retry-after 2) and reads nothing; once present it passes calls and the store\'s own errors through; a "present" answer is reused 250 ms', async () => {
  let lost = true;
  let asked = 0;
  const store = guardLostState(new Hooks(), async () => { asked++; return lost; });
  for (const call of [() => store.list(), () => store.get('wh_1'), () => store.exclusive(async () => 1)]) {
    const err = await call().then(() => undefined, (e: unknown) => e);
    assert.ok(isGatewayError(err), String(err));
    assert.deepEqual([err.status, err.code, err.headers], [503, 'state_unavailable', { 'retry-after': '2' }]);
    assert.equal(err.message, 'Hot state (Redis) is not ready (lost, or not built yet): the process that owns the warehouse rebuilds it; retry shortly');
  }
  assert.equal(asked, 3, 'a lost answer is never reused');
  lost = false;
  assert.deepEqual(await store.list(), [{ id: 'wh_1' }]);
  assert.deepEqual(await store.get('wh_1'), { id: 'wh_1' });
  assert.equal(await store.exclusive(async () => 7), 7);
  assert.equal(asked, 4, 'one check for calls within 250 ms');
  await assert.rejects(store.busy(), /^Error: busy: another change is running$/);
});
