// A key revoked through a control process that cannot reach Kafka (its record only in that
// process's spool), then Redis lost its data: the rebuild reads the warehouse, which never got
// the revocation, so the rebuilt state had the key active and served it until that spool reached
// Kafka (any time later: the rebuild waits for a spool only SPOOL_RESEND_MS after Kafka's
// return, and here this process never reaches it). The control process now puts back the records
// the log has not acknowledged when it sees the state rebuilt (ControlRecordRegistry), and the
// rebuilt state admits no request before that (the restore window it announced).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { emptyPrefix, newAccount, startCluster, type Cluster } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS } from '../support/services.ts';

/** The deployment of both tests: `cut-off` is a control process for which Kafka is away (nothing listens there). */
const startDeployment = () => startCluster([
  ['agg', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } }],
  ['control', { roles: 'control' }],
  ['cut-off', { roles: 'control', env: { KAFKA_BROKERS: '127.0.0.1:1' } }],
  ['gw', { roles: 'gateway' }],
]);

/** What a small request with `secret` through the gateway answers: 200, or the error's status. */
function statusOf(c: Cluster, secret: string): () => Promise<number> {
  const client = new Anthropic({ apiKey: secret, baseURL: c.url('gw'), maxRetries: 0, logLevel: 'error' });
  return () => client.messages.create({
    model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: '[[sim input=10 output=2]] hi' }],
  }).then(() => 200, (err: unknown) => (err as { status?: number }).status ?? -1);
}

/** An account and key made through `cut-off`: they are only in its spool. */
async function spoolOnlyAccount(c: Cluster): Promise<{ accountId: string; keyStatus: () => Promise<number> }> {
  const made = await c.admin<{ id: string }>('POST', '/admin/v1/accounts', { name: 'spool-only' }, c.url('cut-off'));
  assert.equal(made.status, 201);
  const madeKey = await c.admin<{ key: string }>('POST', `/admin/v1/accounts/${made.json.id}/keys`, {}, c.url('cut-off'));
  assert.equal(madeKey.status, 201);
  return { accountId: made.json.id, keyStatus: statusOf(c, madeKey.json.key) };
}

/**
 * The spool-only account's answers (200, or 503 while the state is lost, rebuilt or waiting
 * for its restorers) and its key's (402: no credit, or 503), never 404 or 401: logged as runs.
 */
function neverAbsent(t: TestContext, accountAnswers: number[], keyAnswers: number[]): void {
  t.diagnostic(`account: ${runs(accountAnswers)}; key: ${runs(keyAnswers)}`);
  assert.ok(accountAnswers.includes(503) && keyAnswers.includes(503), 'the watch saw the loss');
  assert.deepEqual(accountAnswers.filter((s) => s !== 200 && s !== 503), [], 'the account never answered as absent');
  assert.deepEqual(keyAnswers.filter((s) => s !== 402 && s !== 503), [], 'the key never answered as unknown');
}

/** Answers as runs: `503×12 200×3`. */
function runs(xs: number[]): string {
  return xs.reduce<Array<[number, number]>>((out, x) => {
    if (out.at(-1)?.[0] === x) out.at(-1)![1]++;
    else out.push([x, 1]);
    return out;
  }, []).map(([x, n]) => `${x}×${n}`).join(' ');
}

test('rebuild after a Redis loss with a key revocation, an account and a key only in a control process\'s spool (Kafka away for that process): the revoked key is never served again (401 from the first answer after the rebuild); the account and key are never read as absent (503 until put back, never 404 or 401)', async (t) => {
  const started = await startDeployment();
  if (!started) { t.skip(NEEDS_KAFKA_AND_REDIS); return; }
  const { cluster: c, close } = started;
  const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await c.allReady('agg', 'control', 'cut-off', 'gw');
    const acct = await newAccount(c, 10); // through `control`: every record on the log
    const status = statusOf(c, acct.secret);
    assert.equal(await status(), 200);
    // Revoked through the cut-off process: in Redis at once, its record in that process's spool.
    const revoked = await c.admin('DELETE', `/admin/v1/keys/${acct.keyId}`, undefined, c.url('cut-off'));
    assert.equal(revoked.status, 200);
    await c.eventually('the revocation in force', async () => ((await status()) === 401 ? true : undefined));
    // An account and key made through the cut-off process: they too are only in its spool.
    const { accountId: madeId, keyStatus: spoolOnlyStatus } = await spoolOnlyAccount(c);
    assert.equal(await spoolOnlyStatus(), 402, 'the new account has no credit');
    // Give its poll time to see the epoch before the loss (250 ms apart).
    await new Promise((r) => setTimeout(r, 600));
    // Kind: a record only a spool held, missing from the rebuilt state until its writer puts it
    // back, read meanwhile as absent: control answered 404 "does not exist" for the account, a
    // gateway 401 for its key. Both are watched from the loss until the records are back.
    let watching = true;
    const accountAnswers: number[] = [];
    const keyAnswers: number[] = [];
    // Back to back, two of each at a time: the gap between a load and the put-back is one poll
    // of the registry (≤ 250 ms), and each read takes a few ms.
    const watch = Promise.all([
      ...[0, 1].map(async () => {
        while (watching) accountAnswers.push((await c.admin('GET', `/admin/v1/accounts/${madeId}`, undefined, c.url('cut-off'))).status);
      }),
      ...[0, 1].map(async () => {
        while (watching) keyAnswers.push(await spoolOnlyStatus());
      }),
    ]);
    assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0);
    // From the loss on: 503 while the state is lost or rebuilt (and in its restore window), then
    // 401; never 200.
    const seen: number[] = [];
    const first = await c.eventually('an answer other than 503', async () => {
      const s = await status();
      seen.push(s);
      return s === 503 ? undefined : s;
    }, 40_000);
    assert.equal(first, 401, `answers after the loss: ${seen.join(' ')}`);
    for (let i = 0; i < 10; i++) {
      assert.equal(await status(), 401);
      await new Promise((r) => setTimeout(r, 100));
    }
    await c.eventually('the spool-only account back', async () => (accountAnswers.at(-1) === 200 && keyAnswers.at(-1) === 402 ? true : undefined));
    watching = false;
    await watch;
    // 200 / 402 before the loss was seen, 503 while lost, rebuilding or in the restore window, then 200 / 402 again.
    neverAbsent(t, accountAnswers, keyAnswers);
  } finally {
    redis.disconnect();
    await close();
  }
});

test('rebuild after a Redis loss while the control process that alone holds an account and key (its spool; Kafka away for it) is stalled past the restore window: read through the other processes they are never absent (503 until it is back and has put them back, never 404 or 401), and a key it revoked is never served', async (t) => {
  // Kind: a record only a spool held, read as absent because its writer could not put it back
  // within the restore window (1 s): a GC pause, a frozen VM. Readers now wait for every process
  // that announced something to put back (`<ready>:pending`), up to RESTORE_WAIT_MAX_MS.
  await stalledAcrossTheRebuild(t, 'after it announced');
});

test('the same with the control process stalled since BEFORE the loss (it never announced): the warehouse owner saw its holder mark before the loss and the rebuild waits for it; the revoked key is never served, the account and key never absent', async (t) => {
  // Kind: the same, with no announcement possible (the loss and the load both within the stall).
  // Before session 49 nobody knew of its records: the revoked key was served from the load until
  // it resumed (epoch.lua's `<ready>:record-holders`, holders.lua).
  await stalledAcrossTheRebuild(t, 'before the loss');
});

/** Runs the stalled-control-process scenario, `cut-off` paused after it announced, or before the loss. */
async function stalledAcrossTheRebuild(t: TestContext, pauseAt: 'after it announced' | 'before the loss'): Promise<void> {
  const started = await startDeployment();
  if (!started) { t.skip(NEEDS_KAFKA_AND_REDIS); return; }
  const { cluster: c, close } = started;
  const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const ready = `${c.env.REDIS_PREFIX!}ledger-ready`;
  let paused = false;
  let watching = true;
  try {
    await redis.connect();
    await c.allReady('agg', 'control', 'cut-off', 'gw');
    // A key revoked through the cut-off process: the rebuilt state has it active until that
    // process puts the revocation back (a breaker's HIGH: served while it was stalled).
    const acct = await newAccount(c, 10);
    const revokedStatus = statusOf(c, acct.secret);
    assert.equal(await revokedStatus(), 200);
    assert.equal((await c.admin('DELETE', `/admin/v1/keys/${acct.keyId}`, undefined, c.url('cut-off'))).status, 200);
    await c.eventually('the revocation in force', async () => ((await revokedStatus()) === 401 ? true : undefined));
    const { accountId, keyStatus } = await spoolOnlyAccount(c);
    // Read through the other control process: the account is in Redis (201 above).
    const accountStatus = async () => (await c.admin('GET', `/admin/v1/accounts/${accountId}`, undefined, c.url('control'))).status;
    await c.eventually('the account readable everywhere', async () => ((await accountStatus()) === 200 ? true : undefined));
    assert.equal(await keyStatus(), 402, 'the new account has no credit');
    await new Promise((r) => setTimeout(r, 600)); // its registry's polls see the epoch before the loss
    const accountAnswers: number[] = [];
    const keyAnswers: number[] = [];
    const revokedAnswers: number[] = [];
    const watch = Promise.all([
      (async () => { while (watching) { revokedAnswers.push(await revokedStatus()); await new Promise((r) => setTimeout(r, 20)); } })(),
      (async () => { while (watching) { accountAnswers.push(await accountStatus()); await new Promise((r) => setTimeout(r, 20)); } })(),
      (async () => { while (watching) { keyAnswers.push(await keyStatus()); await new Promise((r) => setTimeout(r, 20)); } })(),
    ]);
    if (pauseAt === 'before the loss') {
      // It marks itself a holder (its polls, every 250 ms), the warehouse owner's watch reads the
      // mark (every 1.5 s), then it stalls, before the loss: it can announce nothing.
      await c.eventually('the cut-off process marked itself a holder', async () => ((await redis.zcard(`${ready}:record-holders`)) > 0 ? true : undefined), 10_000);
      await new Promise((r) => setTimeout(r, 3_500));
      c.pause('cut-off');
      paused = true;
      assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0);
    } else {
      // The warehouse owner held still meanwhile, so the rebuild cannot load (and take the
      // announcement) before it is seen: the set lives only from the announcement to the load
      // (a loaded machine's polls could miss it).
      c.pause('agg');
      try {
        assert.ok(await emptyPrefix(redis, c.env.REDIS_PREFIX!) > 0);
        // It announces what it must put back (its registry's next poll), then stalls.
        await c.eventually('the cut-off process announced', async () => ((await redis.scard(`${ready}:record-restorers`)) > 0 ? true : undefined), 5_000);
        c.pause('cut-off');
        paused = true;
      } finally {
        c.resume('agg');
      }
    }
    await c.eventually('the rebuild loaded', async () => ((await redis.exists(ready)) === 1 ? true : undefined), 40_000);
    // Well past the restore window (1 s): the state is rebuilt, the account and key still missing.
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(await redis.scard(`${ready}:pending`), 1, 'readers wait for the stalled process');
    c.resume('cut-off');
    paused = false;
    await c.eventually('put back', async () => (accountAnswers.at(-1) === 200 && keyAnswers.at(-1) === 402 ? true : undefined), 20_000);
    watching = false;
    await watch;
    neverAbsent(t, accountAnswers, keyAnswers);
    t.diagnostic(`revoked key: ${runs(revokedAnswers)}`);
    assert.deepEqual(revokedAnswers.filter((s) => s !== 401 && s !== 503), [], 'the revoked key never served');
    assert.equal(await redis.exists(`${ready}:pending`), 0, 'done: nobody waited for');
  } finally {
    watching = false;
    if (paused) c.resume('cut-off');
    redis.disconnect();
    await close();
  }
}
