export { applyEvent, startLedgerConsumer } from './ledger-consumer.ts';
export type { LedgerConsumerDeps } from './ledger-consumer.ts';
export { startWarehouseSink } from './warehouse-sink.ts';
export type { WarehouseSinkDeps } from './warehouse-sink.ts';
