// A rebuild gives the spend windows back what the warehouse counted in them (issue 11, a tester's
// HIGH: after Redis lost its data, or an embedded process restarted, every window started from
// 0 and a key or account could spend its daily limit again). chDB and the memory store, on a
// fixed clock so every window is known: exact µc per window, and the limit binds on them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { UsageEvent } from '@tollgate/events';
import { MemoryKeyDirectory } from '@tollgate/keys';
import { MemoryBalanceStore } from '@tollgate/ledger';
import { randomUUID } from 'node:crypto';
import { createChdbClickHouse, createHttpClickHouse, Warehouse } from '@tollgate/warehouse';
import { rebuild } from '@tollgate/aggregator';
import { requireClickHouse } from '../../../test/support/services.ts';

const HOUR = 3600_000;
/** 2099-11-30T12:00:00Z */
const NOON = Date.UTC(2099, 10, 30, 12);
const DAY = Date.UTC(2099, 10, 30);
const MONTH = Date.UTC(2099, 10, 1);

const usage = (id: string, account: string, key: string, ts: number, cost: string): UsageEvent => ({
  type: 'usage', event_id: id, ts, account_id: account, key_id: key, model: 'm', catalog_model: 'm',
  upstream_model: 'm', input_tokens: 1, output_tokens: 1, cache_read_tokens: 0, cache_write_5m_tokens: 0,
  cache_write_1h_tokens: 0, cost_micros: cost, status: 'ok', http_status: 200, latency_ms: 1, ttft_ms: 1, stream: false,
  upstream_request_id: null, gateway_id: 'g',
});

async function spendWindowsRebuilt(warehouse: Warehouse): Promise<void> {
  {
    await warehouse.migrate();
    const events = [
      usage('u1', 'acct_a', 'k1', NOON + 60_000, '300'), // this hour
      usage('u2', 'acct_a', 'k1', NOON - 1, '1000'), // 11:59:59.999: today, the hour before
      usage('u3', 'acct_a', 'k1', MONTH, '20000'), // this month, not today
      usage('u4', 'acct_a', 'k1', MONTH - 1, '400000'), // last month: the key's lifetime only
      usage('u5', 'acct_a', 'k2', NOON + 1000, '50'),
      usage('u6', 'acct_b', 'k3', NOON, '7'),
      usage('u7', 'acct_a', 'k2', NOON + 2000, '0'), // free: counts nowhere
    ];
    await warehouse.insertUsage(events, events.map((_, i) => ({ partition: 0, offset: BigInt(i) })));
    // Hot state lost: a fresh store (Redis flushed, or the embedded process started again).
    const balances = new MemoryBalanceStore({ now: () => NOON + 120_000 });
    const report = await rebuild({ warehouse, balances, keys: new MemoryKeyDirectory() }, { now: NOON + 120_000 });
    assert.equal(report.spend_windows, 13);
    const used = async (name: Parameters<typeof balances.windowUsed>[0], account: string, key: string) => balances.windowUsed(name, account, key);
    assert.deepEqual(await Promise.all([
      used('key_hourly', 'acct_a', 'k1'), used('key_daily', 'acct_a', 'k1'), used('key_total', 'acct_a', 'k1'),
      used('key_hourly', 'acct_a', 'k2'), used('key_daily', 'acct_a', 'k2'), used('key_total', 'acct_a', 'k2'),
      used('account_daily', 'acct_a', 'any'), used('account_monthly', 'acct_a', 'any'),
      used('key_hourly', 'acct_b', 'k3'), used('key_total', 'acct_b', 'k3'), used('account_daily', 'acct_b', 'any'), used('account_monthly', 'acct_b', 'any'),
    ]), [300n, 1_300n, 421_300n, 50n, 50n, 50n, 1_350n, 21_350n, 7n, 7n, 7n, 7n]);
    // acct_a's balance is −421,350 µc with no credit: give it some, then its daily limit of
    // 1,400 µc leaves exactly 50 for today.
    await balances.applyLedger({ type: 'ledger', event_id: 'credit:acct_a:x', ts: NOON, account_id: 'acct_a', kind: 'grant', amount_micros: '10000000', reference: 'x' });
    const hold = (holdId: string, amount: bigint) => balances.hold({
      holdId, accountId: 'acct_a', keyId: 'k2', amount, ttlMs: HOUR, windows: [{ name: 'account_daily', limit: 1_400n }],
    });
    assert.deepEqual(await hold('h1', 51n), {
      ok: false, reason: 'spend_limit_exceeded', available: 10_000_000n - 421_350n, window: 'account_daily', limit: 1_400n,
      used: 1_350n, resetAt: DAY + 24 * HOUR, required: 51n,
    });
    assert.equal((await hold('h2', 50n)).ok, true);
  }
}

const TITLE = 'spend windows after a lost hot state: a rebuild counts each key\'s hour, day and lifetime and each account\'s day and month from the warehouse, exact µc, and the limits bind on them';

test(`${TITLE} (chDB)`, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-rb-sw-'));
  const warehouse = new Warehouse({ client: createChdbClickHouse({ path: dir }) });
  try {
    await spendWindowsRebuilt(warehouse);
  } finally {
    await warehouse.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`${TITLE} (ClickHouse server)`, async (t) => {
  const url = await requireClickHouse(t);
  if (!url) return;
  const database = `test_rbsw_${randomUUID().slice(0, 8)}`;
  const warehouse = new Warehouse({ client: createHttpClickHouse({ url }), database });
  try {
    await spendWindowsRebuilt(warehouse);
  } finally {
    await warehouse.command(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => {});
    await warehouse.close();
  }
});
