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

test('pricing directives: server tool counts, conditions, serving model, iterations, refusal, an unknown usage field; bad values are a 400', () => {
  const d = parseDirectives('[[sim web_search=3 web_fetch=1 geo=us tier=batch speed=fast served_model=claude-haiku-4-5 refusal=1 usage_field=hologram_units:2 iterations=message:-:10:2,advisor_message:claude-haiku-4-5:5:1]]', {});
  assert.deepEqual(d, {
    web_search: 3, web_fetch: 1, geo: 'us', tier: 'batch', speed: 'fast', served_model: 'claude-haiku-4-5', refusal: true,
    usage_field: { name: 'hologram_units', value: 2 },
    iterations: [{ type: 'message', model: null, input: 10, output: 2 }, { type: 'advisor_message', model: 'claude-haiku-4-5', input: 5, output: 1 }],
  });
  for (const bad of ['tier=flex', 'speed=warp', 'geo=u s', 'refusal=yes', 'iterations=message:10:2', 'usage_field=x', 'web_search=-1']) {
    assert.throws(() => parseDirectives(`[[sim ${bad}]]`, {}), /simulator directive/, bad);
  }
});
