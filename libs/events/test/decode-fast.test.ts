// The fast path of decodeEvent (issue 11): for every input it must give exactly what the zod
// schemas give (same verdict, same decoded event with the same keys in the same order, same
// reason), and it must actually be taken for well-formed usage and ledger events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeEvent, decodeEventBySchema, decodeEventFast, type UsageEventV2 } from '../src/index.ts';
import { DIMENSION_KEYS } from '@tollgate/pricing';
import { edgeEvents, LEDGER, V1, V2 } from '../../../test/support/event-edges.ts';

const q = (o: Partial<Record<string, number>> = {}) => Object.assign(Object.fromEntries(DIMENSION_KEYS.map((k) => [k, 0])), o);

let fastAccepted = 0;
let compared = 0;
/** decodeEvent === the schema, key order included; the fast path accepts only what the schema accepts, identically. */
function same(value: unknown): void {
  const slow = decodeEventBySchema(value);
  const both = decodeEvent(value);
  const fast = decodeEventFast(value);
  compared++;
  assert.deepStrictEqual(both, slow, JSON.stringify(value, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x))?.slice(0, 300));
  if (fast !== undefined) {
    fastAccepted++;
    assert.ok(slow.ok, `fast path accepted what the schema refuses: ${slow.ok ? '' : slow.reason}`);
    assert.deepStrictEqual(fast, slow.event);
    assert.equal(JSON.stringify(fast), JSON.stringify(slow.event), 'same keys in the same order');
  }
}

test('decode fast path: well-formed usage v1, usage v2 and every ledger kind take it and decode exactly as the schema does', () => {
  for (const e of [V1, V2, ...LEDGER]) {
    assert.ok(decodeEventFast(e) !== undefined, `${e.type} ${'kind' in e ? e.kind : ''} takes the fast path`);
    same(e);
    same({ ...e, added_by_a_newer_producer: { nested: 1 } });
  }
  // v1 without its optional fields, v2 with a quantity missing (0) and an unknown dimension (dropped)
  const { upstream_id: _u, attempts: _a, anomalies: _n, ...bare } = V1;
  same(bare);
  assert.deepEqual((decodeEventFast({ ...V2, quantities: { input: 5, not_a_dimension: 9 } }) as UsageEventV2).quantities, q({ input: 5 }));
  same({ ...V2, quantities: { input: 5, not_a_dimension: 9 } });
});

test('decode fast path: every field of every kind set to every edge value gives the schema\'s verdict, event and reason', () => {
  fastAccepted = 0;
  compared = 0;
  for (const value of edgeEvents()) same(value);
  // enough cases ran, and the fast path took a good share of them
  assert.ok(compared > 10_000, `${compared} cases compared`);
  assert.ok(fastAccepted > 500, `${fastAccepted} cases accepted by the fast path`);
});

test('a "__proto__" key in an event\'s record fields (unit_prices, a price version\'s catalog) is refused naming it, not dropped (zod\'s record parse skips it unchecked)', () => {
  // JSON.parse makes it an own key; whatever its value, the entry would have been lost silently.
  for (const value of ['"-1"', '"1"', '{"x": [1e308, null]}']) {
    const usage = { ...V2, unit_prices: JSON.parse(`{"__proto__": ${value}, "input": "1"}`) };
    assert.deepEqual(decodeEvent(usage), { ok: false, reason: 'unit_prices.__proto__: "__proto__" is not allowed as a name', eventId: V2.event_id });
    same(usage);
  }
  const priceVersion = { type: 'price_version', event_id: 'pv_1', ts: 1, id: '0123456789ab', effective_at: 1, catalog: JSON.parse('{"__proto__": {"version": 1}, "version": 1}') };
  assert.deepEqual(decodeEvent(priceVersion), { ok: false, reason: 'catalog.__proto__: "__proto__" is not allowed as a name', eventId: 'pv_1' });
  // every decoded usage event of the edge corpus keeps every own key of its unit_prices
  for (const value of edgeEvents()) {
    const d = decodeEvent(value);
    if (!d.ok || d.event.type !== 'usage' || d.event.v !== 2) continue;
    assert.deepEqual(Object.keys(d.event.unit_prices), Object.keys((value as { unit_prices: object }).unit_prices));
  }
});
