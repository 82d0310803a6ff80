// Issue 6, item 1 (distributed mode): poison published straight into Kafka, behind and between
// good events of other accounts on the same partitions, never stops a consumer group. Real
// processes (aggregator with the ledger and warehouse groups over chDB, two control processes,
// a gateway), real Kafka and Redis. Item 10 (part): fifty parallel grants with one reference
// over two control processes credit once and answer exactly once 201.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { Kafka, logLevel, type Admin, type Producer } from 'kafkajs';
import { fixKafkajsRequestQueue } from '@tollgate/events';
import { Cluster, newAccount } from '../support/cluster.ts';
import { NEEDS_KAFKA_AND_REDIS, requireKafka, requireRedis } from '../support/services.ts';
import { startSimulator, UPSTREAM_KEY } from '../support/tollgate.ts';
import { grantEvent as grant, usageEvent as usage } from '../support/events.ts';

// kafkajs' request queue without its 1 ms poll (libs/events/src/kafkajs-request-queue.ts) for this file's own kafkajs clients
fixKafkajsRequestQueue();

let cluster: Cluster | undefined;
let producer: Producer | undefined;
let kafkaAdmin: Admin | undefined;
let closeSim: (() => Promise<void>) | undefined;

before(async () => {
  const t = { skip: (msg?: string) => { process.stderr.write(`${msg ?? 'skipped'}\n`); } };
  const [kafka, redis] = [await requireKafka(t), await requireRedis(t)];
  if (!kafka || !redis) return;
  const { sim, simUrl } = await startSimulator();
  closeSim = () => sim.close();
  cluster = new Cluster({ kafka, redis, upstreamUrl: simUrl, upstreamKey: UPSTREAM_KEY });
  await cluster.add('agg1', { roles: 'aggregator', env: { AGGREGATOR_GROUPS: 'ledger,warehouse' } });
  await cluster.add('control', { roles: 'control' });
  await cluster.add('control2', { roles: 'control' });
  await cluster.add('gw1', { roles: 'gateway' });
  const client = new Kafka({ brokers: kafka.split(','), logLevel: logLevel.NOTHING });
  producer = client.producer();
  await producer.connect();
  kafkaAdmin = client.admin();
  await kafkaAdmin.connect();
});

after(async () => {
  await producer?.disconnect();
  await kafkaAdmin?.disconnect();
  await cluster?.stopAndRemove();
  await closeSim?.();
});

const HAIKU_10_IN_5_OUT = 10n * 24n + 5n * 120n; // 840 µc: haiku-4-5 input 24, output 120 µc/token



interface Report {
  ok: boolean;
  problem?: string;
  quarantined: Array<{ event_id: string; group: string; topic: string; kind: string; reason: string }>;
}

describe('poison in the distributed pipeline', () => {
  test('poison in Kafka between good events of other accounts: good ones applied and warehoused exactly, each poison quarantined by both groups, counted, listed by reconcile', async (t) => {
    if (!cluster || !producer) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = cluster;
    const a = await newAccount(c, 1); // 1_000_000 µc
    const b = await newAccount(c, 2); // 2_000_000 µc
    const client = new Anthropic({ apiKey: a.secret, baseURL: c.url('gw1'), maxRetries: 0, logLevel: 'error' });
    await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: '[[sim input=10 output=5]]' }] });

    const A = a.accountId;
    const B = b.accountId;
    const topic = (name: string) => `${c.env.KAFKA_TOPIC_PREFIX}${name}`;
    // Keyed by account: B's poison shares a partition (and so an order) with B's good events.
    const send = async (name: 'usage' | 'ledger', key: string, value: string) => {
      const [meta] = await producer!.send({ topic: topic(name), acks: -1, messages: [{ key, value }] });
      return { partition: meta!.partition, offset: meta!.baseOffset };
    };
    const json = (v: unknown) => JSON.stringify(v);
    await send('usage', B, json(usage('p-surrogate', B, { model: 'claude-haiku-4-5/\ud800', cost_micros: '5' })));
    await send('ledger', B, json(grant(B, 'good-top-up', '3000000')));
    await send('ledger', B, json(grant(B, 'p-int64', '99999999999999999999999000000')));
    await send('ledger', B, json(grant(B, 'p-2^53', '9007199254740993')));
    await send('usage', B, json(usage('p-negative', B, { input_tokens: -1, cost_micros: '7' })));
    const notJson = await send('usage', B, '{"type":"usage", this is not json');
    await send('usage', B, json(usage('g-b-1', B, { cost_micros: '1234' })));
    await send('usage', B, json({ type: 'refund_all', event_id: 'p-unknown', account_id: B }));
    await send('usage', B, json({ type: 'usage', event_id: 'p-missing', account_id: B }));
    await send('usage', A, json(usage('g-a-1', A, { cost_micros: '100' })));
    const undecodableId = `undecodable:usage:${notJson.partition}:${notJson.offset}`;

    // Balances, exact: A = 1_000_000 − 840 − 100; B = 2_000_000 + 3_000_000 − 1_234.
    const balance = async (id: string) => BigInt((await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${id}`)).json.balance_micro_credits);
    await c.eventually('A debited', async () => ((await balance(A)) === 999_060n ? true : undefined));
    await c.eventually('B credited and debited', async () => ((await balance(B)) === 4_998_766n ? true : undefined));

    // The warehouse holds every good event.
    const agg = c.url('agg1');
    await c.eventually('g-b-1 warehoused', async () => {
      const r = await c.admin<{ data: Array<{ event_id: string }> }>('GET', `/admin/v1/usage/events?account_id=${B}&limit=1000`, undefined, agg);
      return r.json.data.some((e) => e.event_id === 'g-b-1') ? true : undefined;
    });

    // Reconcile: in agreement, every poison listed by id, once per consumer group, with its reason.
    const rec = await c.eventually('reconcile ok', async () => {
      const r = await c.admin<Report>('GET', '/ops/v1/reconcile?timeout_ms=10000', undefined, agg);
      return r.status === 200 && r.json.quarantined.length === 14 ? r.json : undefined;
    });
    assert.equal(rec.ok, true);
    const expected = [
      ['p-surrogate', 'invalid_event', 'model: must be well-formed Unicode (it contains a lone surrogate)'],
      [`credit:${B}:p-int64`, 'invalid_event', 'amount_micros: must be within ±9007199254740991 micro-credits (2^53 − 1)'],
      [`credit:${B}:p-2^53`, 'invalid_event', 'amount_micros: must be within ±9007199254740991 micro-credits (2^53 − 1)'],
      ['p-negative', 'invalid_event', 'input_tokens: Too small: expected number to be >=0'],
      [undecodableId, 'undecodable', 'message value is not JSON'],
      ['p-unknown', 'invalid_event', 'unknown event type "refund_all"'],
    ].sort();
    for (const group of ['warehouse', 'ledger']) {
      const mine = rec.quarantined.filter((q) => q.group === group);
      assert.deepEqual(
        mine.filter((q) => q.event_id !== 'p-missing').map((q) => [q.event_id, q.kind, q.reason]).sort(),
        expected, group,
      );
      assert.match(mine.find((q) => q.event_id === 'p-missing')!.reason, /^ts: /);
    }

    // The ledger's records reached the warehouse through <prefix>dead-letter, with their positions.
    const stored = await c.eventually('ledger dead letters warehoused', async () => {
      const r = await c.admin<{ data: Array<{ event_id: string; group: string; topic: string; partition: number; offset: string }> }>('GET', '/ops/v1/quarantine', undefined, agg);
      const ledger = r.json.data.filter((q) => q.group === 'ledger');
      return ledger.length === 7 ? ledger : undefined;
    });
    assert.deepEqual(stored.find((q) => q.event_id === undecodableId), {
      ...stored.find((q) => q.event_id === undecodableId), topic: 'usage', partition: notJson.partition, offset: notJson.offset,
    });

    // Counted by group and kind.
    const scrape = await (await fetch(`${agg}/metrics`)).text();
    for (const group of ['warehouse', 'ledger']) {
      assert.match(scrape, new RegExp(`tollgate_events_quarantined_total\\{group="${group}",reason="invalid_event"\\} 6\\n`));
      assert.match(scrape, new RegExp(`tollgate_events_quarantined_total\\{group="${group}",reason="undecodable"\\} 1\\n`));
    }

    // The partitions flow on: B's next request is applied behind the poison.
    const bClient = new Anthropic({ apiKey: b.secret, baseURL: c.url('gw1'), maxRetries: 0, logLevel: 'error' });
    await bClient.messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: '[[sim input=10 output=5]]' }] });
    await c.eventually('B debited again', async () => ((await balance(B)) === 4_998_766n - HAIKU_10_IN_5_OUT ? true : undefined));
  });

  test('fifty parallel grants with one reference over two control processes: one 201, forty-nine 200 duplicate, credited once; another amount is 409', async (t) => {
    if (!cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = cluster;
    const acct = await c.admin<{ id: string }>('POST', '/admin/v1/accounts', { name: 'race' });
    const path = `/admin/v1/accounts/${acct.json.id}/credits`;
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      c.admin<{ duplicate: boolean; balance_micro_credits: string }>('POST', path, { credits: '7', reference: 'race-ref' }, c.url(i % 2 ? 'control' : 'control2'))));
    assert.deepEqual(answers.map((a) => a.status).sort(), [...Array(49).fill(200), 201]);
    assert.equal(answers.filter((a) => a.json.duplicate === true).length, 49);
    for (const a of answers) assert.equal(a.json.balance_micro_credits, '7000000');
    const other = await c.admin<{ error: { message: string } }>('POST', path, { credits: '8', reference: 'race-ref' }, c.url('control2'));
    assert.equal(other.status, 409);
    assert.equal(other.json.error.message, 'reference race-ref was already used for 7 credits (kind grant)');
  });

  test('a credit reference reused with another kind over two control processes is a conflict (409): one reference names one entry, applied or only claimed', async (t) => {
    if (!cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = cluster;
    const acct = await c.admin<{ id: string }>('POST', '/admin/v1/accounts', { name: 'kinds' });
    const path = `/admin/v1/accounts/${acct.json.id}/credits`;
    assert.equal((await c.admin('POST', path, { credits: '4', kind: 'top_up', reference: 'inv-9' })).status, 201);
    for (const kind of ['grant', 'refund', 'adjustment'] as const) {
      const r = await c.admin<{ error: { message: string } }>('POST', path, { credits: '4', kind, reference: 'inv-9' }, c.url('control2'));
      assert.deepEqual([r.status, r.json.error.message], [409, 'reference inv-9 was already used for 4 credits (kind top_up)'], kind);
    }
    const same = await c.admin<{ duplicate: boolean }>('POST', path, { credits: '4', kind: 'top_up', reference: 'inv-9' }, c.url('control2'));
    assert.deepEqual([same.status, same.json.duplicate], [200, true]);
    const race = await Promise.all((['refund', 'grant'] as const).map((kind, i) =>
      c.admin('POST', path, { credits: '2', kind, reference: 'race-kind' }, c.url(i ? 'control' : 'control2'))));
    assert.deepEqual(race.map((r) => r.status).sort(), [201, 409]);
    assert.equal((await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${acct.json.id}`)).json.balance_micro_credits, '6000000');
  });

  test('balance out of range under concurrent grants over two control processes: the ledger applies up to ±(2^53 − 1) µc exactly, refuses the rest atomically (400, quarantined balance_out_of_range)', async (t) => {
    if (!cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = cluster;
    const acct = await c.admin<{ id: string }>('POST', '/admin/v1/accounts', { name: 'overflow-race' });
    const A = acct.json.id;
    const path = `/admin/v1/accounts/${A}/credits`;
    // 9,007,199,253.740991 credits = 2^53 − 1 − 1_000_000 µc: one credit below the bound.
    assert.equal((await c.admin('POST', path, { credits: '9007199253.740991', reference: 'base' })).status, 201);
    // Ten parallel 0.2-credit grants with the ledger consumer held back (SIGSTOP) until all ten
    // are in Kafka: every control process's own check passes (the balance it reads is below the
    // bound), so only the ledger can decide; 5 × 200_000 µc fit exactly. Without the hold, a
    // request that reads the balance after the ledger applied five is refused by control's own
    // check (the same 400, nothing published), and fewer than five reach the ledger.
    const ledgerTopic = `${c.env['KAFKA_TOPIC_PREFIX']}ledger`;
    const admin = kafkaAdmin!;
    const inTopic = async () => (await admin.fetchTopicOffsets(ledgerTopic)).reduce((n, p) => n + Number(p.high), 0);
    const before = await inTopic();
    c.pause('agg1');
    let answers: Array<{ status: number; json: { error?: { type: string; message: string } } }>;
    try {
      const pending = Promise.all(Array.from({ length: 10 }, (_, i) =>
        c.admin<{ error?: { type: string; message: string } }>('POST', path, { credits: '0.2', reference: `race-${i}` }, c.url(i % 2 ? 'control' : 'control2'))));
      await c.eventually('ten grants published', async () => {
        const n = await inTopic() - before;
        if (n < 10) throw new Error(`${n} of 10 grants in ${ledgerTopic}`);
        return n;
      });
      c.resume('agg1');
      answers = await pending;
    } finally {
      c.resume('agg1');
    }
    assert.deepEqual(answers.map((a) => a.status).sort(), [201, 201, 201, 201, 201, 400, 400, 400, 400, 400]);
    for (const a of answers.filter((x) => x.status === 400)) {
      assert.deepEqual([a.json.error?.type, a.json.error?.message], ['invalid_request_error',
        'credits: not applied: the balance would leave ±9007199254.740991 credits (9007199254740991 micro-credits, 2^53 − 1, the bound every stage holds exactly)']);
    }
    const view = await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${A}`);
    assert.equal(view.json.balance_micro_credits, '9007199254740991');
    // Each refused grant is quarantined by the ledger group with its reason.
    const refused = await c.eventually('five refusals dead-lettered', async () => {
      const r = await c.admin<{ data: Array<{ event_id: string; group: string; kind: string; reason: string }> }>('GET', '/ops/v1/quarantine', undefined, c.url('agg1'));
      const mine = r.json.data.filter((q) => q.event_id.startsWith(`credit:${A}:race-`));
      if (mine.length === 5) return mine;
      // What was there at the last look goes into the timeout's message (one CI run timed out
      // with fewer: which ones, and from which group, say where the rest were held up).
      throw new Error(`${mine.length} of 5 in the warehouse's quarantine: ${JSON.stringify(mine.map((q) => [q.event_id, q.group]))}`);
    });
    for (const q of refused) {
      assert.deepEqual([q.group, q.kind], ['ledger', 'apply_failed']);
      assert.equal(q.reason, `balance_out_of_range: 200000 micro-credits would take the balance of ${A} outside ±9007199254740991 micro-credits (2^53 − 1, the bound every stage holds exactly)`);
    }
    // A refused reference stays refused (one event id, one decision), even once the grant would fit.
    const refusedRef = refused[0]!.event_id.split(':').at(-1)!;
    assert.equal((await c.admin('POST', path, { credits: '-0.5', kind: 'adjustment', reference: 'make-room' })).status, 201);
    const again = await c.admin<{ error: { type: string; message: string } }>('POST', path, { credits: '0.2', reference: refusedRef });
    assert.deepEqual([again.status, again.json.error.message], [409, `reference ${refusedRef} was refused by the ledger (balance_out_of_range); a new grant needs a new reference`]);
    assert.equal((await c.admin('POST', path, { credits: '0.2', reference: 'after-room' })).status, 201);
    assert.equal((await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${A}`)).json.balance_micro_credits, '9007199254440991'); // 2^53 − 1 − 500_000 + 200_000
    // The warehouse stored the refused grants as facts, but money reads leave them out: hot state
    // and the warehouse agree to the µc, and a rebuild from the warehouse could not credit them.
    const rec = await c.eventually('reconcile ok after refusals', async () => {
      const r = await c.admin<Report>('GET', '/ops/v1/reconcile?timeout_ms=10000', undefined, c.url('agg1'));
      return r.status === 200 ? r.json : undefined;
    });
    assert.equal(rec.ok, true);
    assert.equal(rec.quarantined.filter((q) => q.event_id.startsWith(`credit:${A}:race-`) && q.group === 'ledger').length, 5);
    // A rebuild from the warehouse keeps every refusal a refusal: the references answer 409 as
    // before (they answered 200 duplicate once the refused rows were loaded as entries), and
    // the balance is the same to the µc.
    const rebuilt = await c.admin('POST', '/ops/v1/rebuild', undefined, c.url('agg1'));
    assert.equal(rebuilt.status, 200);
    for (const q of refused) {
      const ref = q.event_id.split(':').at(-1)!;
      const retry = await c.admin<{ error: { message: string } }>('POST', path, { credits: '0.2', reference: ref }, c.url('control2'));
      assert.deepEqual([retry.status, retry.json.error.message], [409, `reference ${ref} was refused by the ledger (balance_out_of_range); a new grant needs a new reference`]);
    }
    assert.equal((await c.admin<{ balance_micro_credits: string }>('GET', `/admin/v1/accounts/${A}`)).json.balance_micro_credits, '9007199254440991');
  });

  test('a grant beyond 2^53 µc is refused at the edge: 400, nothing published', async (t) => {
    if (!cluster) return t.skip(NEEDS_KAFKA_AND_REDIS);
    const c = cluster;
    const acct = await c.admin<{ id: string }>('POST', '/admin/v1/accounts', { name: 'huge' });
    const r = await c.admin<{ error: { type: string; message: string } }>('POST', `/admin/v1/accounts/${acct.json.id}/credits`, { credits: '99999999999999999999999', reference: 'huge' });
    assert.equal(r.status, 400);
    assert.deepEqual([r.json.error.type, r.json.error.message], ['invalid_request_error', 'credits: must be within ±9007199254.740991']);
  });
});
