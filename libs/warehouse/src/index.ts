export { Warehouse, WarehouseInputError, WarehouseUnavailableError, WRITE_SLICE_MS, isDataError, isForeignAnswer, unavailableError } from './warehouse.ts';
export { sizeSettings, sqlString, stringTable } from './sql-values.ts';
export type {
  KeySpend, WarehouseOptions, UsageFilter, UsageGroupBy, UsageTotals, UsageGroup, LedgerTotals, LogPosition, LogPositions,
  QuarantineKind, QuarantineRecord, StoreItem, StoredLedgerEntry, StoredPriceVersionRow, UsageCursor, Row as WarehouseRow,
} from './warehouse.ts';
export { DIMENSION_COLUMNS, LATEST_MIGRATION, PERCENTILE_LEVELS, ROLLUP_GRAINS, migrations, rollupSelect, rollupTable, tableNames } from './schema.ts';
export type { RollupGrain } from './schema.ts';
export type { TableNames } from './schema.ts';
export {
  ANALYTICS_GROUP_BY, GRANULARITIES, MAX_BUCKETS, MAX_FILTER_CHARS, bucketCount, filterValue, pickSource, rebuildRollups, rollupsMatchRaw, usageEventPage,
  usageEventRecord, usageReport,
} from './analytics.ts';
export type {
  AnalyticsFilter, AnalyticsGroupBy, AnalyticsQuery, AnalyticsSource, ErrorCount, EventPage, Granularity, Percentiles,
  RollupCheck, SeriesPoint, Spender, UsageMetrics, UsageReport,
} from './analytics.ts';
export { ADMIN_USAGE_PARAMS, USAGE_PARAMS, USAGE_STATUSES, metricsJson, micros6, parseUsageParams, pointJson, ratio6, seriesCsv } from './analytics-view.ts';
export type { ParamReaders, UsageParams, ViewOptions } from './analytics-view.ts';
export {
  backfillRollups, recentRollupScope, repairMismatchedRollups, repairRollups, restoreRecentIds, rollupMismatches, ROLLUP_CONFIRM_MS, ROLLUP_SETTLE_MS,
  type Exclusive, type RollupMismatches, type RollupRepairReport,
} from './rollup-repair.ts';
export type { RollupRepairResult, RollupRepairStore, RollupScopePair } from './rollup-repair.ts';
export { createChdbClickHouse, isTextOnlyClient } from './chdb-client.ts';
export { LOW_CARDINALITY_VERSION, LowCardinalityValues, NativeWriter, lowCardinalityVersions, nativeBlock } from './native-block.ts';
export type { NativeColumn } from './native-block.ts';
export type { ChdbClickHouseOptions } from './chdb-client.ts';
export { createHttpClickHouse, ForeignAnswerError } from './http-client.ts';
export type { HttpClickHouseOptions } from './http-client.ts';
export type { ClickHouseClient } from '@clickhouse/client';
export {
  BillingInputError, accountDocuments, closeMonth, credits6, creditHistory, creditHistoryPage, invoiceFor, invoiceLinesForMonth, listCloses, monthOf, monthRange,
  nextMonth, parseBillingMonth, parseClosableMonth, SELLER, statementFor,
} from './billing.ts';
export type { BillingPrices, CloseResult, CreditValueTotal, CreditHistoryEntry, CreditHistoryPage, Invoice, InvoiceLine, MonthClose, MonthDocumentHead, Statement } from './billing.ts';
