// Revenue and margin of an analytics total (moneyView): exact decimal arithmetic on µc and µ of
// the upstream currency, the catalog's optional upstream_exchange_rate, null margin without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { bundledCatalogPath, parseCatalog } from '@tollgate/pricing';
import type { UsageMetrics } from '@tollgate/warehouse';
import { moneyView } from '../src/analytics.ts';

const cny = JSON.parse(readFileSync(bundledCatalogPath('cny'), 'utf8')) as Record<string, unknown>;
const totals = (costMicros: bigint, upstreamCost: Record<string, bigint>, upstreamCostUnknown = 0): UsageMetrics => ({
  requests: 1, errors: 0, quantities: {} as UsageMetrics['quantities'], costMicros, upstreamCost, upstreamCostUnknown, unpricedRequests: 0,
  latencyMs: { avg: null, p50: null, p90: null, p99: null }, ttftMs: { count: 0, avg: null, p50: null, p90: null, p99: null },
  cacheHitRatio: null, outputTokensPerSecond: null,
});

test('margin across currencies: at the catalog\'s upstream_exchange_rate, exact; without one, null with a note naming it', () => {
  // 272,400 µc = 0.2724 credits = ¥0.02724 (10 credits per ¥). Upstream 8,650 µ$ × 7.10 = ¥0.061415.
  // Margin ¥0.02724 − ¥0.061415 = −¥0.034175 (a loss the operator should see).
  const withRate = parseCatalog({ ...cny, upstream_exchange_rate: '7.10' }, 'test');
  assert.deepEqual(moneyView(totals(272_400n, { USD: 8_650n }), withRate), {
    revenue: { micro_credits: '272400', credits: '0.272400', currency: 'CNY', amount: '0.027240' },
    margin: { currency: 'CNY', amount: '-0.034175' },
    margin_note: null,
  });
  const without = moneyView(totals(272_400n, { USD: 8_650n }, 2), parseCatalog(cny, 'test'));
  assert.equal(without['margin'], null);
  assert.equal(without['margin_note'], 'upstream cost in USD cannot be compared with CNY revenue: set "upstream_exchange_rate" (CNY per USD) in the catalog; '
    + '2 charged requests have no upstream cost (version 1 events, models without upstream prices): counted as costing nothing upstream');
  // A rate that does not end: 1 µc at 3 credits per ¥ = ¥0.000000333… → rounded half away from zero to 6 places.
  const thirds = parseCatalog({ ...cny, credit: { currency: 'CNY', credits_per_unit: '3' } }, 'test');
  assert.deepEqual((moneyView(totals(2_000_000n, {}), thirds)['revenue'] as Record<string, string>)['amount'], '0.666667');
  // The same currency on both sides needs no rate: usd sells 1 credit = $0.005, so 1,000,000 µc
  // = $0.005; upstream 1,000 µ$ = $0.001; margin $0.004.
  const usd = parseCatalog(JSON.parse(readFileSync(bundledCatalogPath('usd'), 'utf8')), 'test');
  assert.deepEqual(moneyView(totals(1_000_000n, { USD: 1_000n }), usd), {
    revenue: { micro_credits: '1000000', credits: '1.000000', currency: 'USD', amount: '0.005000' },
    margin: { currency: 'USD', amount: '0.004000' },
    margin_note: null,
  });
});
