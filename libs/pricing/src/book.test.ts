// The price book: append-only versions with content ids and effective times.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCatalog } from './catalog.ts';
import type { Catalog } from './catalog.ts';
import { PriceBook, priceVersion } from './book.ts';
import { quantities } from './dimensions.ts';
import { priceRequest } from './price.ts';

function catalog(input: string): Catalog {
  return parseCatalog({
    version: 1, name: 'book', credit: { currency: 'USD', unit_per_credit: '0.005' }, price_unit: 'credits',
    models: [{ id: 'm', prices: { input, output: '10', cache_read: '1', cache_write_5m: '1', cache_write_1h: '1' } }],
  });
}

const T0 = Date.UTC(2026, 10, 1);
const T1 = Date.UTC(2026, 11, 1);

test('a price change appends a version; requests are priced by the version in force when they arrived', () => {
  const v1cat = catalog('100');
  const book = new PriceBook(v1cat, T0);
  const v2 = book.append(catalog('120'), T1);
  const v1 = book.at(T0);
  assert.ok(v1);
  assert.equal(v1.id, v1cat.contentId);
  assert.notEqual(v2.id, v1.id);
  assert.equal(book.at(T0 - 1), undefined);
  assert.equal(book.at(T1 - 1), v1);
  assert.equal(book.at(T1), v2);
  assert.equal(book.current(T1 + 5), v2);
  assert.equal(book.current(T1 - 5), v1);
  assert.equal(book.current(T0 - 5), v1, 'before the first version takes effect, the first applies');
  assert.equal(book.byId(v1.id), v1);
  assert.equal(book.byId('000000000000'), undefined);
  const m1 = v1.catalog.models[0];
  const m2 = v2.catalog.models[0];
  assert.ok(m1 && m2);
  // 1,000 input tokens: 1,000 × 100 credits/MTok = 100,000 µc; then 1,000 × 120 = 120,000 µc
  assert.equal(priceRequest(v1, quantities({ input: 1000 }), { model: m1 }).costMicros, 100_000n);
  assert.equal(priceRequest(v2, quantities({ input: 1000 }), { model: m2 }).costMicros, 120_000n);
  assert.equal(priceRequest(v2, quantities({ input: 1000 }), { model: m2 }).priceVersion, v2.id);
});

test('reloading an unchanged catalog adds no version', () => {
  const book = new PriceBook(catalog('100'), T0);
  const again = book.append(catalog('100'), T1);
  assert.equal(again.effectiveAt, T0);
  assert.equal(book.versions().length, 1);
});

test('history is append-only: a version cannot take effect before the latest one', () => {
  const book = new PriceBook(catalog('100'), T1);
  assert.throws(() => book.append(catalog('120'), T0), RangeError);
  assert.throws(() => priceVersion(catalog('1'), -1), RangeError);
  assert.throws(() => priceVersion(catalog('1'), 1.5), RangeError);
  assert.throws(() => new PriceBook().current(), /empty/);
});

test('a catalog that comes back is a new entry with the old id; byId finds it', () => {
  const book = new PriceBook(catalog('100'), T0);
  book.append(catalog('120'), T0 + 1);
  const back = book.append(catalog('100'), T1);
  assert.equal(book.versions().length, 3);
  assert.equal(back.id, book.versions()[0]?.id);
  assert.equal(book.byId(back.id), back);
});

test('versions round-trip through storage; an altered stored catalog is refused', () => {
  const book = new PriceBook(catalog('100'), T0);
  book.append(catalog('120'), T1);
  const rows = book.toStored();
  const copy = PriceBook.fromStored(JSON.parse(JSON.stringify([...rows].reverse())) as typeof rows);
  assert.deepEqual(copy.versions().map((v) => [v.id, v.effectiveAt]), book.versions().map((v) => [v.id, v.effectiveAt]));
  const tampered = JSON.parse(JSON.stringify(rows)) as Array<{ id: string; effectiveAt: number; catalog: { models: Array<{ prices: { input: string } }> } }>;
  const first = tampered[0]?.catalog.models[0];
  assert.ok(first);
  first.prices.input = '1';
  assert.throws(() => PriceBook.fromStored(tampered), /altered/);
});
