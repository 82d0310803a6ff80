// Query-parameter parsing shared by every route (times, whole numbers, enums): malformed input
// is a 400 that names the parameter, never a 500 and never a silent default.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '@tollgate/anthropic';
import { parseEnumParam, parseIntParam, parseTime, parseTimeRange, queryParam } from '../src/params.ts';

function refused(fn: () => unknown, name: string) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof GatewayError);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'invalid_request');
    assert.match(err.message, new RegExp(`^${name}: `));
    return true;
  });
}

test('time parameter: RFC 3339 date-times, full dates (00:00 UTC) and epoch ms give exact epoch ms', () => {
  // 2026-11-30 is day 20,787 since 1970-01-01 (56 × 365 + 14 leap days + 333): × 86,400,000 ms
  assert.equal(parseTime('2026-11-30', 'from'), 20_787 * 86_400_000);
  assert.equal(parseTime('2026-11-30T00:00:00Z', 'from'), 1_795_996_800_000);
  assert.equal(parseTime('2026-11-30t00:00:00z', 'from'), 1_795_996_800_000);
  assert.equal(parseTime('2026-11-30 08:00:00+08:00', 'from'), 1_795_996_800_000);
  assert.equal(parseTime('2026-11-29T19:30:00-04:30', 'from'), 1_795_996_800_000);
  // a fraction finer than a millisecond rounds up (the first whole ms not before the instant)
  assert.equal(parseTime('2026-11-30T00:00:00.123456789Z', 'from'), 1_795_996_800_124);
  assert.equal(parseTime('2026-11-30T00:00:00.123000000Z', 'from'), 1_795_996_800_123);
  assert.equal(parseTime('2026-11-30T00:00:00.0001Z', 'from'), 1_795_996_800_001);
  assert.equal(parseTime('2026-11-29T23:59:59.9995Z', 'to'), 1_795_996_800_000);
  assert.equal(parseTime('2026-11-30T07:59:59.999000001+08:00', 'to'), 1_795_996_800_000);
  assert.equal(parseTime('2026-11-30T00:00:00.5Z', 'from'), 1_795_996_800_500);
  assert.equal(parseTime('2024-02-29', 'to'), 19_782 * 86_400_000);
  assert.equal(parseTime('1795996800000', 'to'), 1_795_996_800_000);
  assert.equal(parseTime('0', 'to'), 0);
});

test('time parameter: garbage, impossible dates, exponents and out-of-range values are 400s naming it', () => {
  for (const bad of ['abc', '1e30', '1.5', '-1', '2026-11-31', '2025-02-29', '2026-13-01', '2026-11-30T24:00:00Z',
    '2026-11-30T12:00Z', '2026-11-30T12:00:00', '2026-11-30T12:00:00+2:00', '99999999999999999', '1969-12-31',
    '1970-01-01T00:00:00+01:00', ' 2026-11-30', '2026-11-30\n', '１２３']) {
    refused(() => parseTime(bad, 'from'), 'from');
  }
});

test('time parameter: an offset whose "+" a query string turned into a space gets a 400 that says to write it as %2B', () => {
  const hint = 'is not a time: a "+" in a query string reads as a space, so write the offset as %2B (…%2B08:00), or give the time in UTC (…Z)';
  for (const sent of ['2026-12-03T06:48:30 08:00', '2026-12-03 06:48:30 08:00', '2026-12-03T06:48:30.250 05:30']) {
    assert.throws(() => parseTime(sent, 'from'), { message: `from: ${JSON.stringify(sent)} ${hint}` });
  }
  // a space that is not where an offset's '+' was gets the general message
  assert.throws(() => parseTime('2026-12-03T06:48 08:00', 'from'), /^GatewayError: from: "2026-12-03T06:48 08:00" is not a time; expected an RFC 3339/);
});

test('time range: from inclusive, to exclusive, to before from is a 400 naming to', () => {
  assert.deepEqual(parseTimeRange({ from: '2026-11-30', to: '2026-12-01' }), { from: 1_795_996_800_000, to: 1_796_083_200_000 });
  assert.deepEqual(parseTimeRange({ to: undefined }), {});
  // an empty value is a bad value, not an absent one
  refused(() => parseTimeRange({ from: '', to: undefined }), 'from');
  refused(() => parseTimeRange({ from: '2026-12-01', to: '2026-11-30' }), 'to');
  refused(() => parseTimeRange({ from: ['1', '2'] }), 'from');
});

test('whole-number and enum parameters: only exact forms pass', () => {
  assert.equal(parseIntParam('30000', 'timeout_ms', 0, 600_000), 30_000);
  assert.equal(parseIntParam('0', 'timeout_ms', 0, 600_000), 0);
  for (const bad of ['1e3', '10.5', '-1', '0x10', 'abc', '600001', '']) refused(() => parseIntParam(bad, 'timeout_ms', 0, 600_000), 'timeout_ms');
  assert.equal(parseEnumParam('day', 'group_by', ['model', 'day'] as const), 'day');
  for (const bad of ['Day', 'model ', 'account', '__proto__']) refused(() => parseEnumParam(bad, 'group_by', ['model', 'day'] as const), 'group_by');
  assert.equal(queryParam({ a: 'x' }, 'a'), 'x');
  assert.equal(queryParam({}, 'a'), undefined);
  refused(() => queryParam({ a: ['x', 'y'] }, 'a'), 'a');
});
