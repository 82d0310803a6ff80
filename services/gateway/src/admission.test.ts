// The gateway's admission glue: the body a clamp sends upstream, a caller's spend terms, and
// the refusals a client reads (exact text: clients and operators read these).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KeyEntry } from '@tollgate/keys';
import type { Admission } from '@tollgate/pricing';
import { budgetThinking, clampedBody, refusal, spendTerms } from './admission.ts';

const adm: Admission = { policy: 'clamp', amount: 23_184_000n, base: 144_000n, segments: [{ perOutputToken: 360n, tokens: null }], maxTokens: 64_000, floorTokens: 1_025 };

test('clamped body: max_tokens replaced, a thinking budget scaled by the same ratio and kept in [1,024, max_tokens)', () => {
  const sent = JSON.stringify({ model: 'm', max_tokens: 64_000, thinking: { type: 'enabled', budget_tokens: 32_000 }, messages: [] });
  // 32,000 × 27,377 / 64,000 = 13,688.5 → 13,688
  assert.deepEqual(JSON.parse(clampedBody(sent, 64_000, 27_377, 1_024)),
    { model: 'm', max_tokens: 27_377, thinking: { type: 'enabled', budget_tokens: 13_688 }, messages: [] });
  // at the floor the budget is the minimum, still below max_tokens
  assert.equal(JSON.parse(clampedBody(Buffer.from(sent), 64_000, 1_025, 1_024)).thinking.budget_tokens, 1_024);
  // adaptive thinking and no thinking are left alone
  const adaptive = JSON.stringify({ max_tokens: 64_000, thinking: { type: 'adaptive' } });
  assert.deepEqual(JSON.parse(clampedBody(adaptive, 64_000, 5_000, 1_024)), { max_tokens: 5_000, thinking: { type: 'adaptive' } });
  // a fallbacks entry running at the request's max_tokens has its budget scaled too: 16,000 ×
  // 7,313 / 64,000 = 1,828.25 → 1,828; an entry with its own max_tokens keeps its budget
  const withFallbacks = JSON.stringify({ max_tokens: 64_000, fallbacks: [
    { model: 'a', thinking: { type: 'enabled', budget_tokens: 16_000 } },
    { model: 'b', max_tokens: 32_000, thinking: { type: 'enabled', budget_tokens: 16_000 } },
    { model: 'c', max_tokens: null, thinking: { type: 'enabled', budget_tokens: 2_000 } },
    'd',
  ] });
  assert.deepEqual(JSON.parse(clampedBody(withFallbacks, 64_000, 7_313, 1_024)), { max_tokens: 7_313, fallbacks: [
    { model: 'a', thinking: { type: 'enabled', budget_tokens: 1_828 } },
    { model: 'b', max_tokens: 32_000, thinking: { type: 'enabled', budget_tokens: 16_000 } },
    { model: 'c', max_tokens: null, thinking: { type: 'enabled', budget_tokens: 1_024 } },
    'd',
  ] });
});

test('budget thinking: the client\'s enabled thinking, or a -thinking name of a budget-mode model', () => {
  const budget = { thinking: true, model: { thinking: { mode: 'budget' } } };
  assert.equal(budgetThinking({ thinking: { type: 'enabled', budget_tokens: 2_000 } }, { model: { thinking: { mode: 'adaptive' } } }), true);
  assert.equal(budgetThinking({}, budget), true);
  assert.equal(budgetThinking({}, { ...budget, model: { thinking: { mode: 'adaptive' } } }), false);
  assert.equal(budgetThinking({ thinking: { type: 'disabled' } }, budget), false);
  // a fallbacks entry thinking on a budget at the request's max_tokens
  const plain = { model: { thinking: { mode: 'adaptive' } } };
  assert.equal(budgetThinking({ fallbacks: [{ model: 'a', thinking: { type: 'enabled', budget_tokens: 2_000 } }] }, plain), true);
  assert.equal(budgetThinking({ fallbacks: [{ model: 'a', max_tokens: 4_000, thinking: { type: 'enabled', budget_tokens: 2_000 } }] }, plain), false);
  assert.equal(budgetThinking({ fallbacks: [{ model: 'a', thinking: { type: 'adaptive' } }, null, 'b'] }, plain), false);
});

test('spend terms: key hourly/daily/total and account daily/monthly windows in µc, overdraft (absent = 0)', () => {
  const caller = {
    key: { hourly_credits: '1000000', daily_credits: null, total_credits: '5' },
    account: { daily_credits: undefined, monthly_credits: '7', overdraft_credits: '250' },
  } as unknown as KeyEntry;
  assert.deepEqual(spendTerms(caller), {
    windows: [{ name: 'key_hourly', limit: 1_000_000n }, { name: 'key_total', limit: 5n }, { name: 'account_monthly', limit: 7n }],
    overdraft: 250n,
  });
  assert.deepEqual(spendTerms({ key: {}, account: {} } as unknown as KeyEntry), { windows: [], overdraft: 0n });
});

test('refusals: 402 states the worst case (or the floor hold) and what is available; 429 names the window, its use and reset, with retry-after', () => {
  const full = refusal({ ok: false, reason: 'insufficient_credits', available: 10_000_000n, required: 23_184_000n }, adm);
  assert.equal(full.status, 402);
  assert.equal(full.message, 'Your credit balance is too low for this request: it needs up to 23.184 credits (its worst case at max_tokens 64000) and 10 credits are available');
  // 144,000 + 1,025 × 360 = 513,000 µc at the floor; a debt shows as 0 available
  const floor = refusal({ ok: false, reason: 'insufficient_credits', available: -5n, required: 513_000n }, adm);
  assert.equal(floor.message, 'Your credit balance is too low for this request: it needs up to 0.513 credits (its worst case even at max_tokens 1025, the least this gateway sends) and 0 credits are available');
  const now = Date.UTC(2026, 10, 30, 12, 30);
  const spend = refusal({ ok: false, reason: 'spend_limit_exceeded', available: 1n, window: 'account_monthly', limit: 50_000_000n,
    used: 49_000_000n, resetAt: Date.UTC(2026, 11, 1), required: 23_184_000n }, adm, now);
  assert.equal(spend.status, 429);
  assert.equal(spend.type, 'billing_error');
  assert.equal(spend.code, 'spend_limit_exceeded');
  assert.equal(spend.message, "This request would exceed this account's monthly spend limit (account_monthly) of 50 credits: 49 credits are spent or held and the request needs up to 23.184 (its worst case at max_tokens 64000); it resets at 2026-12-01T00:00:00.000Z");
  assert.deepEqual(spend.headers, { 'retry-after': String(11.5 * 3600) });
  const total = refusal({ ok: false, reason: 'spend_limit_exceeded', available: 1n, window: 'key_total', limit: 1n, used: 1n, resetAt: null, required: 23_184_000n }, adm, now);
  assert.equal(total.headers, undefined);
  assert.match(total.message, /\(key_total\) of 0\.000001 credits: .*; it does not reset$/);
});
