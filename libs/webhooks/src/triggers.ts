// The four alerts as occurrences: who detects each, its deterministic id, and its body's data.
// Pure functions, so the hooks in the ledger consumer, the gateway and the runtime stay one line.

import { windowBounds, type SpendWindowName } from '@tollgate/ledger';
import { formatCredits } from '@tollgate/pricing';
import type { Occurrence } from './dispatcher.ts';

/**
 * `balance.low` for a usage debit that took the account from ≥ `thresholdMicros` to below it.
 * `balanceAfter` is the balance right after the debit was applied (µc); the balance before is
 * it + the debit. Undefined when the debit did not cross (already below, or still above), so
 * the alert fires again only after a top-up lifted the balance back to the threshold or over.
 * Id: `balance.low:<usage event id>` (the ledger applies each event once).
 */
export function balanceLow(
  usage: { event_id: string; account_id: string; cost_micros: string; ts: number },
  balanceAfter: bigint, thresholdMicros: bigint,
): Occurrence | undefined {
  const before = balanceAfter + BigInt(usage.cost_micros);
  if (!(before >= thresholdMicros && balanceAfter < thresholdMicros)) return undefined;
  return {
    id: `balance.low:${usage.event_id}`, type: 'balance.low', created_at: Date.now(),
    data: {
      account_id: usage.account_id,
      balance_credits: formatCredits(balanceAfter), balance_micro_credits: balanceAfter.toString(),
      threshold_credits: formatCredits(thresholdMicros), threshold_micro_credits: thresholdMicros.toString(),
      usage_event_id: usage.event_id, debit_micro_credits: usage.cost_micros,
    },
  };
}

/**
 * `spend_limit.reached` for a request refused because the spend window `window` is reached.
 * `resetAt` (epoch ms, the store's clock; null for `key_total`) identifies the window, so the
 * id `spend_limit.reached:<scope id>:<window>:<window start ms>:<limit µc>` is the same on every
 * gateway: once per limit per window (a changed limit reached again is a new occurrence).
 * `data.window_start` and `data.resets_at` are RFC 3339, both null for `key_total` (no window).
 */
export function spendLimitReached(r: {
  accountId: string; keyId: string; window: SpendWindowName; limit: bigint; used: bigint; resetAt: number | null;
}): Occurrence {
  const scope = r.window.startsWith('key_') ? 'key' : 'account';
  const scopeId = scope === 'key' ? r.keyId : r.accountId;
  const start = r.resetAt === null ? 0 : windowBounds(r.window, r.resetAt - 1).start;
  return {
    id: `spend_limit.reached:${scopeId}:${r.window}:${start}:${r.limit}`, type: 'spend_limit.reached', created_at: Date.now(),
    data: {
      account_id: r.accountId, key_id: scope === 'key' ? r.keyId : null, limit: r.window,
      limit_credits: formatCredits(r.limit), limit_micro_credits: r.limit.toString(),
      used_credits: formatCredits(r.used), used_micro_credits: r.used.toString(),
      // key_total has no window: null, not the epoch a 0 start would print.
      window_start: r.resetAt === null ? null : new Date(start).toISOString(), resets_at: r.resetAt === null ? null : new Date(r.resetAt).toISOString(),
    },
  };
}

/**
 * `plan_window.exhausted` for a request a plan window refused (`limit`: `requests_per_minute`,
 * `requests_per_5h`, `requests_per_week`, `tokens_per_minute`, `concurrent_requests`).
 * Id: `plan_window.exhausted:<key id>:<limit>:<reset, epoch s>`; since two gateways may see the
 * reset a second apart, a `once` claim per key and limit lasting until the reset makes it one.
 */
export function planWindowExhausted(r: { accountId: string; keyId: string; limit: string; retryAfterMs: number }, now = Date.now()): Occurrence {
  const resetS = Math.ceil((now + r.retryAfterMs) / 1000);
  return {
    id: `plan_window.exhausted:${r.keyId}:${r.limit}:${resetS}`, type: 'plan_window.exhausted', created_at: now,
    once: { key: `plan_window.exhausted:${r.keyId}:${r.limit}`, ttlMs: Math.max(1_000, r.retryAfterMs) },
    data: { account_id: r.accountId, key_id: r.keyId, window: r.limit, resets_at: new Date(resetS * 1000).toISOString() },
  };
}

/**
 * `event.quarantined` for an event a consumer group set aside. Id:
 * `event.quarantined:<group>:<event id>`. The reason is cut to 500 characters.
 */
export function eventQuarantined(group: string, q: {
  event_id: string; topic: string; partition: number; offset: bigint | string; kind: string; reason: string;
}): Occurrence {
  return {
    id: `event.quarantined:${group}:${q.event_id}`, type: 'event.quarantined', created_at: Date.now(),
    data: {
      group, event_id: q.event_id, topic: q.topic, partition: q.partition, offset: q.offset.toString(),
      kind: q.kind, reason: q.reason.slice(0, 500),
    },
  };
}
