// Issue 8 fields of account and key control events: carried exactly when within the bounds
// every stage holds, refused (naming the field) when not, and optional so that records
// written before them still decode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeEvent, MAX_ACCESS_ENTRIES, MAX_MONEY_MICROS } from '../src/index.ts';

const account = (fields: Record<string, unknown>) => ({
  type: 'account', event_id: 'account:a:2', ts: 1,
  account: { id: 'a', name: 'n', status: 'active', created_at: 1, version: 2, ...fields },
});
const key = (fields: Record<string, unknown>) => ({
  type: 'key', event_id: 'key:k:2', ts: 1,
  key: { id: 'k', account_id: 'a', name: '', prefix: 'sk-tg-ab', hash: 'h', status: 'active', created_at: 1, revoked_at: null, version: 2, ...fields },
});

function reason(value: unknown): string {
  const r = decodeEvent(value);
  return r.ok ? 'ok' : r.reason;
}

test('a record of before issue 8 decodes unchanged (every new field optional)', () => {
  for (const e of [account({}), key({})]) {
    const r = decodeEvent(e);
    assert.ok(r.ok);
    assert.deepEqual(r.event, e);
  }
});

test('every new field round-trips exactly at its bounds', () => {
  const max = MAX_MONEY_MICROS.toString();
  const a = account({ status: 'suspended', plan_id: 'pro', daily_credits: max, monthly_credits: '0', overdraft_credits: '1', low_balance_credits: null, admission_policy: 'strict' });
  const k = key({
    status: 'disabled', plan_id: null, hourly_credits: '0', daily_credits: max, total_credits: null,
    ip_allowlist: Array.from({ length: MAX_ACCESS_ENTRIES }, (_, i) => `10.${i}.0.0/16`),
    allowed_models: ['claude-haiku-4-5-20251001'], expires_at: Date.UTC(2299, 11, 31),
  });
  for (const e of [a, k]) {
    const r = decodeEvent(e);
    assert.ok(r.ok, r.ok ? '' : r.reason);
    assert.deepEqual(r.event, e);
  }
});

test('out-of-bound fields are refused, naming the field', () => {
  const over = (MAX_MONEY_MICROS + 1n).toString();
  assert.match(reason(account({ status: 'paused' })), /account\.status/);
  assert.match(reason(account({ daily_credits: over })), /account\.daily_credits/);
  assert.match(reason(account({ overdraft_credits: '-1' })), /account\.overdraft_credits: must be nonnegative/);
  assert.match(reason(account({ monthly_credits: 5 })), /account\.monthly_credits/);
  assert.match(reason(account({ admission_policy: 'lenient' })), /account\.admission_policy/);
  assert.match(reason(key({ status: 'suspended' })), /key\.status/);
  assert.match(reason(key({ hourly_credits: '1.5' })), /key\.hourly_credits: must be an integer decimal string/);
  assert.match(reason(key({ ip_allowlist: ['10.0.0.0'] })), /key\.ip_allowlist\.0: must be a CIDR/);
  assert.match(reason(key({ ip_allowlist: ['10.0.0.0/8; DROP'] })), /key\.ip_allowlist\.0/);
  assert.match(reason(key({ ip_allowlist: Array.from({ length: MAX_ACCESS_ENTRIES + 1 }, () => '10.0.0.0/8') })), /key\.ip_allowlist/);
  assert.match(reason(key({ allowed_models: [''] })), /key\.allowed_models\.0/);
  assert.match(reason(key({ expires_at: -1 })), /key\.expires_at/);
});
