// Unanswered holds: Redis made the reservations but the gateway never got the replies (the
// connection dropped with them in flight). The requests are refused 503 `state_unavailable`,
// and the gateway must give the credit back once Redis answers again (routes/messages.ts,
// `releaseUnanswered`); without that, each stayed held until the hold's TTL. Real Redis,
// reached through a TCP relay of this test's own that drops the connection mid-reply; a direct
// connection reads what Redis holds. Why one release right away is not enough (it can meet the
// same broken connection) is pinned where the retries live: libs/ledger's
// redis-balance-store.test.ts, "unanswered hold".
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisBalanceStore } from '@tollgate/ledger';
import { startGateway } from './support.ts';
import { testRedis } from '../../../test/support/redis.ts';
import { startRelay } from '../../../test/support/redis-relay.ts';
import { requireRedis } from '../../../test/support/services.ts';

const { redis: direct, redisUrl, prefix } = await testRedis('hold-unanswered');

test('unanswered holds: requests whose hold replies were lost to a dropped connection are refused 503, and the reservations Redis made are released once it answers again (only the served requests stay held)', async (t) => {
  if (direct === undefined) {
    await requireRedis(t);
    return;
  }
  const proxy = await startRelay(new URL(redisUrl!));
  // The distributed gateway's connection options (services/tollgate/src/adapters.ts,
  // `standaloneRedisOptions(true)`): fail fast, auto-pipelined, nothing re-sent after a reconnect.
  const gatewayRedis = new Redis({
    host: '127.0.0.1', port: proxy.port, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1,
    commandTimeout: 2000, connectTimeout: 2000, retryStrategy: (times) => Math.min(times * 100, 1000),
    enableAutoPipelining: true, autoResendUnfulfilledCommands: false,
  });
  gatewayRedis.on('error', () => {});
  await gatewayRedis.connect();
  const balances = new RedisBalanceStore({ redis: gatewayRedis, prefix });
  const view = new RedisBalanceStore({ redis: direct, prefix });
  const stack = await startGateway({ balances });
  after(async () => { await stack.close(); gatewayRedis.disconnect(); await proxy.close(); });
  const c = await stack.customer();
  await view.applyLedger({ type: 'ledger', event_id: `g-${randomUUID()}`, ts: Date.now(), account_id: c.accountId, kind: 'grant', amount_micros: '100000000', reference: 'r' });

  // 30 requests at once: their holds go out in one auto-pipeline; the connection drops after
  // the first reply, and ioredis rejects the rest (Redis ran them) while it reconnects.
  proxy.cutAfter(1);
  const answers = await Promise.all(Array.from({ length: 30 }, async () => {
    const res = await fetch(`${stack.gatewayUrl}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': c.secret },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const body = (await res.json()) as { error?: { code: string } };
    return { status: res.status, code: body.error?.code, id: res.headers.get('request-id')! };
  }));
  const refused = answers.filter((a) => a.status === 503);
  assert.ok(refused.length > 0 && refused.every((a) => a.code === 'state_unavailable'), JSON.stringify(answers.map((a) => a.status)));
  // The served requests' holds stay (shrunk to their cost: no ledger consumer applies their
  // usage events here); the refused ones' reservations are given back after the reconnect.
  const served = answers.filter((a) => a.status === 200).map((a) => a.id).sort();
  assert.equal(served.length + refused.length, 30);
  let holds = Object.keys(await direct.hgetall(`${prefix}holds:{${c.accountId}}`)).sort();
  for (let i = 0; i < 100 && JSON.stringify(holds) !== JSON.stringify(served); i++) {
    await new Promise((r) => setTimeout(r, 50));
    holds = Object.keys(await direct.hgetall(`${prefix}holds:{${c.accountId}}`)).sort();
  }
  assert.deepEqual(holds, served);
  // held = Σ of the holds left, read in one MULTI (a served request's shrink may still land)
  const [[, held], [, all]] = (await direct.multi().get(`${prefix}held:{${c.accountId}}`).hgetall(`${prefix}holds:{${c.accountId}}`).exec())! as [[null, string | null], [null, Record<string, string>]];
  assert.equal(BigInt(held ?? '0'), Object.values(all).reduce((sum, v) => sum + BigInt(v), 0n));
});
