import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDirectives, stripDirectives } from './directives.ts';

test('text directives merge over headers, later text over earlier', () => {
  const d = parseDirectives('a [[sim output=3 fault=drop_after:2]] b [[sim output=9]]', {
    'x-sim-output': '1',
    'x-sim-cache-write-1h': '40',
    'x-sim-tps': '12.5',
    'x-api-key': 'ignored',
  });
  assert.deepEqual(d, { output: 9, cache_write_1h: 40, tps: 12.5, fault: { kind: 'drop_after', after: 2 } });
});

test('each fault form parses; bad values are rejected with a 400', () => {
  assert.deepEqual(parseDirectives('[[sim fault=overloaded]]', {}).fault, { kind: 'overloaded' });
  assert.deepEqual(parseDirectives('[[sim fault=drop]]', {}).fault, { kind: 'drop' });
  assert.deepEqual(parseDirectives('[[sim fault=sse_error_after:0]]', {}).fault, { kind: 'sse_error_after', after: 0 });
  for (const bad of ['[[sim fault=drop_after]]', '[[sim input=1.5]]', '[[sim tps=-1]]', '[[sim status=302]]', '[[sim nope=1]]', '[[sim output]]']) {
    assert.throws(() => parseDirectives(bad, {}), (err: unknown) => (err as { status?: number }).status === 400, bad);
  }
});

test('text without a directive yields none, and stripping removes only directives', () => {
  assert.deepEqual(parseDirectives('[[not sim]] [sim output=1]', {}), {});
  assert.equal(stripDirectives('hi [[sim output=1]] there'), 'hi   there');
});

test('fault directives parse to their kinds; a value outside the list or a dangling retry_after/echo_key is a 400', () => {
  assert.deepEqual(parseDirectives('[[sim encoding=zstd sse=delta_lower bad_usage=nan]]', { 'x-sim-body': 'not_json' }), {
    encoding: 'zstd',
    sse: 'delta_lower',
    bad_usage: 'nan',
    body: 'not_json',
  });
  assert.deepEqual(parseDirectives('[[sim status=429 retry_after=30 echo_key=1]]', {}), { status: 429, retry_after: 30, echo_key: true });
  assert.deepEqual(parseDirectives('', { 'x-sim-fault': 'overloaded', 'x-sim-retry-after': '0' }), {
    fault: { kind: 'overloaded' },
    retry_after: 0,
  });
  const bad = [
    '[[sim encoding=compress]]',
    '[[sim sse=late]]',
    '[[sim bad_usage=zero]]',
    '[[sim body=empty]]',
    '[[sim status=429 retry_after=1.5]]',
    '[[sim status=401 echo_key=yes]]',
    '[[sim retry_after=5]]',
    '[[sim echo_key=1]]',
  ];
  for (const text of bad) {
    assert.throws(() => parseDirectives(text, {}), (err: unknown) => (err as { status?: number }).status === 400, text);
  }
  assert.throws(() => parseDirectives('[[sim encoding=compress]]', {}), /encoding=compress: expected one of gzip, deflate, br, zstd/);
});
