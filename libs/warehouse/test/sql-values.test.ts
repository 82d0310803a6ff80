// sql-values.ts without an engine: the literal escaping and the max_query_size rule, exact.
// (The engines' side of both is in warehouse.contract.ts, on chDB and on a server.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sizeSettings, sqlString, stringTable } from '@tollgate/warehouse';
import { chunksWithin } from '../src/sql-values.ts';

test('sqlString escapes exactly the backslash and the quote; everything else stands for itself', () => {
  assert.equal(sqlString(''), "''");
  assert.equal(sqlString("it's"), "'it\\'s'");
  assert.equal(sqlString('a\\b'), "'a\\\\b'");
  assert.equal(sqlString("\\'"), "'\\\\\\''");
  assert.equal(sqlString('\n\t"%é𝄞'), "'\n\t\"%é𝄞'");
});

test('stringTable: one JSON row per value, in order, duplicates kept; the empty list spelled out', () => {
  assert.equal(stringTable(['a', "b'", 'a']), `(SELECT v FROM format(JSONCompactEachRow, 'v String', '["a"]\n["b\\'"]\n["a"]'))`);
  assert.equal(stringTable([]), "(SELECT '' AS v WHERE 0)");
});

test('sizeSettings: max_query_size only past 262,144 bytes with 1,024 allowed for the client\'s suffix, counted in UTF-8 bytes', () => {
  assert.deepEqual(sizeSettings('x'.repeat(87_040)), {}); // × 3 + 1,024 = 262,144: below the exact count
  assert.deepEqual(sizeSettings('x'.repeat(261_120)), {}); // 261,120 + 1,024 = 262,144
  assert.deepEqual(sizeSettings('x'.repeat(261_121)), { max_query_size: '262145' });
  assert.deepEqual(sizeSettings('é'.repeat(131_000)), { max_query_size: '263024' }); // 262,000 bytes + 1,024
});

test('chunksWithin: runs in order whose summed cost stays within the budget; an item over the budget is a run of its own; nothing is empty', () => {
  const cost = (s: string) => s.length;
  assert.deepEqual(chunksWithin(['ab', 'cd', 'e', 'fghij', 'k'], 4, cost), [['ab', 'cd'], ['e'], ['fghij'], ['k']]);
  assert.deepEqual(chunksWithin(['abcd', 'efgh'], 4, cost), [['abcd'], ['efgh']]);
  assert.deepEqual(chunksWithin(['a', 'b', 'c'], 10, cost), [['a', 'b', 'c']]);
  assert.deepEqual(chunksWithin([], 10, cost), []);
});
