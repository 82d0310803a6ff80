// The dispatcher against a real local receiver (node:http), on the memory store and on a real
// Redis (two dispatchers sharing it, as two processes would): Standard Webhooks signatures that
// the library's own verify accepts, retries that keep the id, no retry of a plain 4xx, no
// redirect followed, one delivery per occurrence however many processes see it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { seal } from '@tollgate/keys';
import {
  backoffMs, balanceLow, deliveryId, MemoryWebhookStore, newWebhookSecret, RedisWebhookStore, spendLimitReached, WebhookDispatcher,
  WEBHOOK_SECRET_PURPOSE, type Occurrence, type WebhookEventType, type WebhookRecord, type WebhookStore,
} from '../src/index.ts';
import { testRedis } from '../../../test/support/redis.ts';
import { startReceiver, type Receiver } from './receiver.ts';

const KEY_HASH_SECRET = 'key-hash-secret-for-webhook-tests';

async function hook(store: WebhookStore, url: string, events: WebhookEventType[] = ['balance.low']) {
  const id = `wh_${randomUUID()}`;
  const secret = newWebhookSecret();
  const record: WebhookRecord = {
    id, url, events, description: null, secret_sealed: seal(secret, KEY_HASH_SECRET, WEBHOOK_SECRET_PURPOSE, id),
    created_at: Date.now(), deleted: false, version: 1,
  };
  await store.put(record);
  return { id, secret, record };
}

const occurrence = (id = `balance.low:${randomUUID()}`): Occurrence => ({
  id, type: 'balance.low', created_at: Date.UTC(2026, 10, 30, 12, 0, 0), data: { account_id: 'acct_1', balance_micro_credits: '999999' },
});

test('backoff: base × 2^(n−1) with equal jitter, capped', () => {
  assert.equal(backoffMs(1, 1000, 3_600_000, () => 0), 500);
  assert.equal(backoffMs(1, 1000, 3_600_000, () => 1), 1000);
  assert.equal(backoffMs(4, 1000, 3_600_000, () => 0.5), 6000); // step 8,000: 4,000 + 2,000
  assert.equal(backoffMs(30, 1000, 3_600_000, () => 1), 3_600_000);
});

test('balance.low fires only when a debit crosses the threshold from at-or-above to below', () => {
  const ev = { event_id: 'u1', account_id: 'a', cost_micros: '1000', ts: 0 };
  assert.equal(balanceLow(ev, 4_999_999n, 5_000_000n)?.id, 'balance.low:u1'); // 5,000,999 → 4,999,999
  assert.equal(balanceLow(ev, 4_999_000n, 5_000_000n)?.id, 'balance.low:u1'); // exactly 5,000,000 before
  assert.equal(balanceLow(ev, 5_000_000n, 5_000_000n), undefined); // still at it
  assert.equal(balanceLow(ev, 4_998_999n, 5_000_000n), undefined); // was 4,999,999: already below
});

test('spend_limit.reached for key_total (a limit with no window): window_start and resets_at null, never the 1970 epoch', () => {
  const o = spendLimitReached({ accountId: 'acct_1', keyId: 'key_1', window: 'key_total', limit: 5_000_000n, used: 5_000_001n, resetAt: null });
  assert.equal(o.id, 'spend_limit.reached:key_1:key_total:0:5000000');
  assert.deepEqual(o.data, {
    account_id: 'acct_1', key_id: 'key_1', limit: 'key_total', limit_credits: '5', limit_micro_credits: '5000000',
    used_credits: '5.000001', used_micro_credits: '5000001', window_start: null, resets_at: null,
  });
});

function suite(name: string, makeStore: () => WebhookStore) {
  describe(name, () => {
    let rx: Receiver;
    before(async () => { rx = await startReceiver(); });
    after(async () => { await rx.close(); });

    test('delivery signed per Standard Webhooks: the library verifies it, body {id, type, created_at, data}', async () => {
      const store = makeStore();
      const d = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET, retryBaseMs: 10 });
      const h = await hook(store, rx.url);
      const o = occurrence('balance.low:u-signed');
      const start = rx.received.length;
      d.notify(o);
      await d.idle();
      const got = rx.received.slice(start);
      assert.equal(got.length, 1);
      const id = deliveryId(h.id, o.id);
      assert.equal(got[0]!.headers['webhook-id'], id);
      assert.deepEqual(new Webhook(h.secret).verify(got[0]!.body, got[0]!.headers as Record<string, string>), {
        id, type: 'balance.low', created_at: '2026-11-30T12:00:00.000Z', data: { account_id: 'acct_1', balance_micro_credits: '999999' },
      });
      assert.equal(got[0]!.body, `{"id":"${id}","type":"balance.low","created_at":"2026-11-30T12:00:00.000Z","data":{"account_id":"acct_1","balance_micro_credits":"999999"}}`);
      // Another secret does not verify it.
      assert.throws(() => new Webhook(newWebhookSecret()).verify(got[0]!.body, got[0]!.headers as Record<string, string>));
      const [rec] = await store.deliveries(h.id);
      assert.equal(rec!.state, 'delivered');
      assert.equal(rec!.attempts, 1);
      assert.equal(rec!.last_status, 200);
    });

    test('receiver answers 500 then 503 then 200: retried with the same webhook-id, delivered on the third attempt', async () => {
      const store = makeStore();
      const d = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET, retryBaseMs: 10 });
      const h = await hook(store, rx.url);
      const start = rx.received.length;
      rx.answers.push(500, 503);
      d.notify(occurrence());
      await d.idle();
      const got = rx.received.slice(start);
      assert.equal(got.length, 3);
      assert.equal(new Set(got.map((g) => g.headers['webhook-id'])).size, 1);
      assert.equal(new Set(got.map((g) => g.body)).size, 1);
      for (const g of got) new Webhook(h.secret).verify(g.body, g.headers as Record<string, string>);
      const [rec] = await store.deliveries(h.id);
      assert.deepEqual([rec!.state, rec!.attempts, rec!.last_status], ['delivered', 3, 200]);
    });

    test('receiver answers 400 (and a 302 redirect): failed after one attempt each, never retried or followed', async () => {
      const store = makeStore();
      const d = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET, retryBaseMs: 10 });
      const h = await hook(store, rx.url);
      const start = rx.received.length;
      rx.answers.push(400);
      d.notify(occurrence());
      await d.idle();
      rx.answers.push(302);
      d.notify(occurrence());
      await d.idle();
      assert.equal(rx.received.length - start, 2);
      const recs = await store.deliveries(h.id);
      assert.deepEqual(recs.map((r) => [r.state, r.attempts, r.last_status]).sort(), [['failed', 1, 302], ['failed', 1, 400]]);
    });

    test('unreachable receiver: retried up to WEBHOOK_MAX_ATTEMPTS, then failed with the network error', async () => {
      const store = makeStore();
      const d = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET, retryBaseMs: 5, maxAttempts: 3 });
      const closed = await startReceiver();
      await closed.close(); // a port nothing listens on any more
      const h = await hook(store, closed.url);
      d.notify(occurrence());
      await d.idle();
      const [rec] = await store.deliveries(h.id);
      assert.deepEqual([rec!.state, rec!.attempts, rec!.last_status, rec!.last_error], ['failed', 3, null, 'ECONNREFUSED']);
    });

    test('the same occurrence seen by two dispatchers on one store, and again later: one delivery', async () => {
      const store = makeStore();
      const a = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET });
      const b = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET });
      await hook(store, rx.url);
      const start = rx.received.length;
      const o = occurrence();
      a.notify(o); b.notify(o); a.notify(o);
      await Promise.all([a.idle(), b.idle()]);
      b.notify(o);
      await b.idle();
      assert.equal(rx.received.length - start, 1);
    });

    test('webhook deleted while a retry waits: no more POSTs, the delivery failed "webhook deleted"', async () => {
      const store = makeStore();
      const d = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET, retryBaseMs: 200 });
      const h = await hook(store, `${rx.url}/deleted`);
      rx.answersAt['/hook/deleted'] = [503, 503, 503];
      const start = rx.received.length;
      d.notify(occurrence());
      await rx.waitFor(start + 1);
      while ((await store.deliveries(h.id))[0]?.attempts !== 1) await new Promise((r) => setTimeout(r, 5));
      await store.put({ ...h.record, deleted: true, version: 2 });
      await d.idle();
      assert.equal(rx.received.slice(start).filter((g) => g.path === '/hook/deleted').length, 1);
      const [rec] = await store.deliveries(h.id);
      assert.deepEqual([rec!.state, rec!.attempts, rec!.last_status, rec!.last_error], ['failed', 1, 503, 'webhook deleted']);
      delete rx.answersAt['/hook/deleted'];
    });

    test('webhook URL changed while a retry waits: the next attempt posts to the current URL', async () => {
      const store = makeStore();
      const d = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET, retryBaseMs: 200 });
      const h = await hook(store, `${rx.url}/old`);
      rx.answersAt['/hook/old'] = [503];
      const start = rx.received.length;
      d.notify(occurrence());
      await rx.waitFor(start + 1);
      while ((await store.deliveries(h.id))[0]?.attempts !== 1) await new Promise((r) => setTimeout(r, 5));
      await store.put({ ...h.record, url: `${rx.url}/new`, version: 2 });
      await d.idle();
      const got = rx.received.slice(start).filter((g) => g.path === '/hook/old' || g.path === '/hook/new');
      assert.deepEqual(got.map((g) => g.path), ['/hook/old', '/hook/new']);
      assert.equal(got[0]!.headers['webhook-id'], got[1]!.headers['webhook-id']);
      const [rec] = await store.deliveries(h.id);
      assert.deepEqual([rec!.state, rec!.attempts, rec!.last_status], ['delivered', 2, 200]);
    });

    test('alert burst on the request path: notify only enqueues (no store call before it returns), a full queue drops with onDrop', async () => {
      const inner = makeStore();
      let calls = 0;
      const counted: WebhookStore = {
        put: (r) => inner.put(r), deliveries: (id, l) => inner.deliveries(id, l), recordDelivery: (x) => inner.recordDelivery(x),
        get: (id) => { calls++; return inner.get(id); },
        list: () => { calls++; return inner.list(); },
        claim: (id, ttl) => { calls++; return inner.claim(id, ttl); },
      };
      const dropped: string[] = [];
      const d = new WebhookDispatcher({ store: counted, keyHashSecret: KEY_HASH_SECRET, concurrency: 1, maxQueue: 2, onDrop: (o) => dropped.push(o.id) });
      const h = await hook(inner, rx.url);
      const start = rx.received.length;
      d.notify(occurrence('balance.low:burst-1'));
      d.notify(occurrence('balance.low:burst-2'));
      d.notify(occurrence('balance.low:burst-3'));
      assert.equal(calls, 0);
      assert.deepEqual(dropped, ['balance.low:burst-3']);
      assert.equal(d.dropped, 1);
      await d.idle();
      assert.equal(rx.received.length - start, 2);
      assert.deepEqual((await inner.deliveries(h.id)).map((r) => r.occurrence_id).sort(), ['balance.low:burst-1', 'balance.low:burst-2']);
    });

    test('a retry waiting at shutdown is abandoned and recorded failed, not sent later', async () => {
      const store = makeStore();
      const d = new WebhookDispatcher({ store, keyHashSecret: KEY_HASH_SECRET, retryBaseMs: 60_000 });
      const h = await hook(store, rx.url);
      rx.answers.push(503);
      const start = rx.received.length;
      d.notify(occurrence());
      await rx.waitFor(start + 1);
      while ((await store.deliveries(h.id))[0]?.attempts !== 1) await new Promise((r) => setTimeout(r, 5));
      await d.close();
      const [rec] = await store.deliveries(h.id);
      assert.deepEqual([rec!.state, rec!.attempts, rec!.last_status, rec!.last_error], ['failed', 1, 503, 'abandoned at shutdown']);
      assert.equal(rx.received.length - start, 1);
    });
  });
}

suite('memory store', () => new MemoryWebhookStore());

const { redis, prefix } = await testRedis('wh');
if (redis !== undefined) {
  let n = 0;
  suite('redis store', () => new RedisWebhookStore({ redis, prefix: `${prefix}${n++}:`, cacheMs: 0 }));
} else {
  test('redis store', async (t) => { const { requireRedis } = await import('../../../test/support/services.ts'); await requireRedis(t); });
}
