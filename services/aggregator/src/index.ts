export { applyEvent, isPoisonError, startLedgerConsumer, StateNotReadyError } from './ledger-consumer.ts';
export type { LedgerConsumerDeps } from './ledger-consumer.ts';
export { startWarehouseSink } from './warehouse-sink.ts';
export type { WarehouseSinkDeps } from './warehouse-sink.ts';
export { rebuild, reconcile } from './rebuild.ts';
export type { RebuildReport, ReconcileReport } from './rebuild.ts';
export { registerOps } from './ops-routes.ts';
export type { OpsDeps } from './ops-routes.ts';
