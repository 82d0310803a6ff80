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
/**
 * decodeEvent === the schema (key order aside where the fast path kept the value's own objects;
 * a copy has the schema's order); the fast path accepts only what the schema accepts,
 * identically, and never changes the value it decodes.
 */
function same(value: unknown): void {
  const before = JSON.stringify(value, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x));
  const slow = decodeEventBySchema(value);
  const both = decodeEvent(value);
  const fast = decodeEventFast(value);
  assert.equal(JSON.stringify(value, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x)), before, 'the value is left as it was');
  compared++;
  assert.deepStrictEqual(both, slow, JSON.stringify(value, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x))?.slice(0, 300));
  if (fast !== undefined) {
    fastAccepted++;
    assert.ok(slow.ok, `fast path accepted what the schema refuses: ${slow.ok ? '' : slow.reason}`);
    assert.deepStrictEqual(fast, slow.event);
    if (fast !== value) assert.deepEqual(Object.keys(fast), Object.keys(slow.event as object), 'a copy has the schema\'s keys in its order');
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

test('decode fast path, kept as it is: a usage v2 event with nothing to drop or fill is the value itself; an unknown field or a missing dimension at any depth makes a copy without touching the value', () => {
  // as the gateway publishes it: own key order, every dimension, nothing unknown
  const published = JSON.parse(JSON.stringify({ ...V2, iterations: [{ ...V2.iterations[0], quantities: q({ input: 7 }) }] })) as Record<string, unknown>;
  assert.equal(decodeEventFast(published), published);
  same(published);
  const cases: Array<[string, (e: Record<string, any>) => void, Array<(e: Record<string, any>) => unknown>, Array<(e: Record<string, any>) => unknown>]> = [
    // what changes, the parts still the value's own, the parts copied
    ['unknown top-level field', (e) => { e['added_later'] = 1; }, [(e) => e['quantities'], (e) => e['iterations'], (e) => e['unit_prices'], (e) => e['multipliers']], [(e) => e]],
    ['unknown quantity name', (e) => { e['quantities'].not_a_dimension = 1; }, [(e) => e['iterations'], (e) => e['unit_prices']], [(e) => e, (e) => e['quantities']]],
    ['missing dimension', (e) => { delete e['quantities'].code_execution_seconds; }, [(e) => e['iterations']], [(e) => e, (e) => e['quantities']]],
    ['unknown iteration field', (e) => { e['iterations'][0].extra = true; }, [(e) => e['quantities']], [(e) => e, (e) => e['iterations'], (e) => e['iterations'][0]]],
    ['iteration dimension missing', (e) => { delete e['iterations'][0].quantities.input; }, [(e) => e['quantities']], [(e) => e, (e) => e['iterations'], (e) => e['iterations'][0]]],
  ];
  for (const [kind, change, shared, copied] of cases) {
    const value = JSON.parse(JSON.stringify(published)) as Record<string, any>;
    change(value);
    const text = JSON.stringify(value);
    const d = decodeEventFast(value);
    assert.ok(d !== undefined, kind);
    assert.equal(JSON.stringify(value), text, `${kind}: the value is unchanged`);
    for (const part of shared) assert.ok(part(d) === part(value), `${kind}: ${part.toString()} is the value's own`);
    for (const part of copied) assert.ok(part(d) !== part(value), `${kind}: ${part.toString()} is a copy`);
    const slow = decodeEventBySchema(value);
    assert.ok(slow.ok, kind);
    assert.deepEqual(Object.keys(d), Object.keys(slow.event), `${kind}: the copy has the schema's order`);
    same(value);
  }
});

test('decode fast path, kept as it is: of several iterations only the one with something to drop is copied; the others stay the value\'s own, in order', () => {
  for (const k of [0, 1, 2]) {
    const value = JSON.parse(JSON.stringify({ ...V2, iterations: [0, 1, 2].map((i) => ({ ...V2.iterations[0], cost_micros: String(i) })) })) as Record<string, any>;
    value['iterations'][k].added_later = true;
    const d = decodeEventFast(value) as unknown as Record<string, any>;
    assert.ok(d !== value && d['iterations'] !== value['iterations'], `item ${k}: event and list are copies`);
    assert.deepEqual(d['iterations'].map((it: { cost_micros: string }) => it.cost_micros), ['0', '1', '2']);
    for (const i of [0, 1, 2]) assert.equal(d['iterations'][i] === value['iterations'][i], i !== k, `item ${i} of 3 (item ${k} has an unknown field)`);
    assert.equal(d['quantities'], value['quantities']);
    same(value);
  }
});

test('decodeEvent never throws: a symbol key in a record field, beside a refused value, is named in the reason (joining its path threw a TypeError)', () => {
  const value = JSON.parse(JSON.stringify(V2)) as Record<string, any>;
  value['unit_prices'][Symbol('x')] = 'x';
  value['cost_micros'] = '-1';
  assert.deepEqual(decodeEvent(value), { ok: false, reason: 'cost_micros: must be nonnegative; unit_prices.Symbol(x): Invalid key in record', eventId: V2.event_id });
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
