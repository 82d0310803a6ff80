// Poison events at the warehouse (issue 6): one value the warehouse cannot store must never stop
// the batch it came in, nor any batch after it. Real chDB; the "ClickHouse refuses it" case uses
// a real table CONSTRAINT, so the refusal is ClickHouse's own data error, bisected out.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { standInId } from '@tollgate/events';
import { Warehouse, createChdbClickHouse, isDataError, type StoreItem } from '@tollgate/warehouse';
import { ledger, usage } from './warehouse.contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-quarantine-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function fresh(): Promise<{ w: Warehouse; prefix: string }> {
  const prefix = `q${randomBytes(3).toString('hex')}_`;
  const w = new Warehouse({ client: createChdbClickHouse({ path: dir }), tablePrefix: prefix });
  await w.migrate();
  return { w, prefix };
}

const at = (offset: bigint, partition = 0) => ({ partition, offset });

test('poison events between good ones: good ones stored in order, each poison quarantined with its reason, positions count them', async () => {
  const { w, prefix } = await fresh();
  try {
    // A real ClickHouse data error (VIOLATED_CONSTRAINT) for one model name the decoder accepts.
    const raw = createChdbClickHouse({ path: dir });
    await raw.command({ query: `ALTER TABLE tollgate.${prefix}usage_events ADD CONSTRAINT no_poison CHECK model != 'claude-refused'` });
    await raw.close();

    const missing = { type: 'usage', event_id: 'u-missing', account_id: 'acc_b' };
    const items: StoreItem[] = [
      { topic: 'usage', event: usage({ event_id: 'u-good-1', account_id: 'acc_a', cost_micros: '1000' }), position: at(0n) },
      { topic: 'usage', event: usage({ event_id: 'u-surrogate', model: 'claude-haiku-4-5/\ud800' }), position: at(1n) },
      { topic: 'usage', event: usage({ event_id: 'u-int64', cost_micros: '9223372036854775808' }), position: at(2n) },
      { topic: 'usage', event: usage({ event_id: 'u-2^53', cost_micros: '9007199254740993' }), position: at(3n) },
      { topic: 'usage', event: usage({ event_id: 'u-negative', input_tokens: -1 }), position: at(4n) },
      { topic: 'usage', event: { type: 'refund_all', event_id: 'u-unknown' }, position: at(5n) },
      { topic: 'usage', event: missing, position: at(6n) },
      { topic: 'usage', event: { type: 'undecodable', event_id: 'undecodable:usage:0:7', reason: 'message value is not JSON', raw: '{not json' }, position: at(7n) },
      { topic: 'usage', event: usage({ event_id: 'u-refused', model: 'claude-refused' }), position: at(8n) },
      { topic: 'usage', event: usage({ event_id: 'u-good-2', account_id: 'acc_b', cost_micros: '2500' }), position: at(9n) },
      { topic: 'ledger', event: ledger({ account_id: 'acc_b', reference: 'top-up', amount_micros: '10000' }), position: at(0n, 1) },
      { topic: 'ledger', event: ledger({ account_id: 'acc_b', reference: 'huge', amount_micros: '99999999999999999999999000000' }), position: at(1n, 1) },
    ];
    const poison = await w.storeEvents(items, 'warehouse');
    const byId = new Map(poison.map((q) => [q.event_id, q]));
    assert.deepEqual(poison.map((q) => q.event_id).sort(), [
      'credit:acc_b:huge', 'u-2^53', 'u-int64', 'u-missing', 'u-negative', 'u-refused', 'u-surrogate', 'u-unknown', 'undecodable:usage:0:7',
    ]);
    assert.equal(byId.get('u-surrogate')!.kind, 'invalid_event');
    assert.equal(byId.get('u-surrogate')!.reason, 'model: must be well-formed Unicode (it contains a lone surrogate)');
    assert.equal(byId.get('u-int64')!.reason, 'cost_micros: must be within ±9007199254740991 micro-credits (2^53 − 1)');
    assert.equal(byId.get('u-2^53')!.reason, 'cost_micros: must be within ±9007199254740991 micro-credits (2^53 − 1)');
    assert.equal(byId.get('u-negative')!.reason, 'input_tokens: Too small: expected number to be >=0');
    assert.equal(byId.get('u-unknown')!.reason, 'unknown event type "refund_all"');
    assert.match(byId.get('u-missing')!.reason, /^ts: /);
    assert.equal(byId.get('undecodable:usage:0:7')!.kind, 'undecodable');
    assert.equal(byId.get('u-refused')!.kind, 'rejected_by_warehouse');
    assert.match(byId.get('u-refused')!.reason, /no_poison/);
    assert.equal(byId.get('credit:acc_b:huge')!.topic, 'ledger');

    // Every good event is in; every poison is in the quarantine table, once, with a bounded raw copy.
    assert.deepEqual(await w.usageEventIds({}), ['u-good-1', 'u-good-2']);
    assert.deepEqual(await w.balances(), new Map([['acc_a', -1000n], ['acc_b', 10000n - 2500n]]));
    await w.storeEvents(items, 'warehouse'); // a redelivered batch changes nothing
    const stored = await w.quarantined();
    assert.equal(stored.length, 9);
    assert.deepEqual(stored.find((q) => q.event_id === 'u-missing'), { ...byId.get('u-missing'), ts: stored.find((q) => q.event_id === 'u-missing')!.ts });
    assert.equal(stored.find((q) => q.event_id === 'u-surrogate')!.raw.includes('\\ud800'), true);
    // Positions include quarantined offsets: usage/0 is consumed up to 9, ledger/1 up to 1.
    const positions = await w.logPositions();
    assert.deepEqual(positions.usage, new Map([[0, 9n]]));
    assert.deepEqual(positions.ledger, new Map([[1, 1n]]));
  } finally {
    await w.close();
  }
});

test('conflicting duplicate ledger event (one event id, another amount or kind, stored earlier or earlier in the batch): quarantined, the first fact stays; an identical one is a plain duplicate', async () => {
  const { w } = await fresh();
  try {
    const first = ledger({ account_id: 'acc_c', reference: 'inv-1', amount_micros: '5000000' });
    assert.deepEqual(await w.storeEvents([{ topic: 'ledger', event: first, position: at(0n, 2) }], 'warehouse'), []);
    const poison = await w.storeEvents([
      { topic: 'ledger', event: { ...first, kind: 'refund' }, position: at(1n, 2) },
      { topic: 'ledger', event: { ...first, amount_micros: '7000000' }, position: at(2n, 2) },
      { topic: 'ledger', event: first, position: at(3n, 2) },
      { topic: 'ledger', event: ledger({ account_id: 'acc_c', reference: 'inv-2', amount_micros: '1' }), position: at(4n, 2) },
      { topic: 'ledger', event: ledger({ account_id: 'acc_c', reference: 'inv-2', amount_micros: '1', kind: 'top_up' }), position: at(5n, 2) },
    ], 'warehouse');
    assert.deepEqual(poison.map((q) => [q.event_id, q.kind, q.offset, q.reason]), [
      ['credit:acc_c:inv-1', 'conflicting_duplicate', 1n, 'ledger event credit:acc_c:inv-1 is already stored as 5000000 µc grant; this one says 5000000 µc refund (one event id, one fact: the first stays)'],
      ['credit:acc_c:inv-1', 'conflicting_duplicate', 2n, 'ledger event credit:acc_c:inv-1 is already stored as 5000000 µc grant; this one says 7000000 µc grant (one event id, one fact: the first stays)'],
      ['credit:acc_c:inv-2', 'conflicting_duplicate', 5n, 'ledger event credit:acc_c:inv-2 is already stored as 1 µc grant; this one says 1 µc top_up (one event id, one fact: the first stays)'],
    ]);
    assert.deepEqual(await w.ledgerEntries(), new Map([
      ['credit:acc_c:inv-1', { amount: 5_000_000n, kind: 'grant' }], ['credit:acc_c:inv-2', { amount: 1n, kind: 'grant' }],
    ]));
    assert.equal((await w.balances()).get('acc_c'), 5_000_001n);
    // Positions count the set-aside events: a rebuild resumes after them.
    assert.equal((await w.logPositions()).ledger.get(2), 5n);
  } finally {
    await w.close();
  }
});

test('an event without a usable id is quarantined under the stand-in id every group computes', async () => {
  const { w } = await fresh();
  try {
    const event = { type: 'usage', event_id: 'bad\ud800id' };
    const [q] = await w.storeEvents([{ topic: 'usage', event }], 'journal');
    assert.equal(q!.event_id, standInId(event));
    assert.equal(q!.partition, -1);
    assert.equal(q!.group, 'journal');
  } finally {
    await w.close();
  }
});

test('an outage (connection refused) is not poison: storeEvents rejects and quarantines nothing', async () => {
  const { w } = await fresh();
  const client = createChdbClickHouse({ path: dir });
  // A server that is down refuses every call: the insert and the stored-id check before it.
  const refused = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' }));
  const other = new Warehouse({ client: { ...client, insert: refused, query: refused } as never });
  try {
    await assert.rejects(other.storeEvents([{ topic: 'usage', event: usage({ event_id: 'x' }) }], 'warehouse'), /ECONNREFUSED/);
    assert.equal(isDataError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), false);
  } finally {
    await client.close();
    await w.close();
  }
});

test('usage anomalies are stored and read back (absent when none)', async () => {
  const { w } = await fresh();
  try {
    await w.storeEvents([
      { topic: 'usage', event: usage({ event_id: 'u-anomalous', status: 'usage_anomaly', anomalies: ['cache_exceeds_input', 'negative_tokens'] }) },
      { topic: 'usage', event: usage({ event_id: 'u-plain' }) },
    ], 'warehouse');
    assert.deepEqual((await w.getUsageEvent('u-anomalous'))!.anomalies, ['cache_exceeds_input', 'negative_tokens']);
    assert.equal('anomalies' in (await w.getUsageEvent('u-plain'))!, false);
  } finally {
    await w.close();
  }
});
