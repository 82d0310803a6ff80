export type {
  Topic, UsageStatus, UsageEvent, UsageEventBase, UsageEventV1, UsageEventV2, UsageIteration, UsageQuantities, PriceVersionEvent, LedgerKind, LedgerEvent, AccountStatus, KeyStatus, AdmissionPolicy,
  AccountRecord, KeyRecord, PlanRecord, ControlEvent, AnyEvent,
} from './types.ts';
export type {
  EventHeaders, PublishedEvent, ConsumedEvent, BatchHandler, BatchContext, Assignment, Subscription, SubscribeOptions, EventLog,
  DeadLetter, ConsumedDeadLetter, Appended,
} from './event-log.ts';
export { carriedHeaders, EventTooLargeError, finishedWithin, headersProblem, InvalidEventError, MAX_EVENT_BYTES, MAX_RECORD_BYTES, NotPublishedError, NotYetError, partitionKey, PartitionLostError, RESERVED_HEADERS, RewindError } from './event-log.ts';
export { MemoryLog } from './memory-log.ts';
export {
  decodeEvent, decodeEventBySchema, decodeEventFast, decodeDeadLetter, boundedRaw, ownRecord, plainObject, standInId, textProblem, toV2, zeroQuantities, V1_PRICE_VERSION,
  LEDGER_KINDS, MAX_EVENT_ID_CHARS, MAX_MONEY_MICROS, MAX_USAGE_EPOCH_MS, MAX_TEXT_CHARS, MAX_REFERENCE_CHARS, MAX_RAW_BYTES, MAX_LABEL_CHARS, MAX_ITERATIONS, MAX_NAMES, MAX_DECIMAL_CHARS, MAX_CATALOG_BYTES, MAX_ACCESS_ENTRIES, MAX_CIDR_CHARS, MAX_PLAN_LIMIT,
} from './decode.ts';
export type { DecodeResult, UndecodableMessage } from './decode.ts';
export { Journal } from './journal.ts';
export type { JournalRecord, JournalScan, UnreadableJournalLine } from './journal.ts';
export { DEFAULT_LINGER_MS, KafkaLog, producerPartition, SPOOL_RESEND_MS, TOPICS, DEAD_LETTER_TOPIC } from './kafka-log.ts';
export type { KafkaLogOptions, KafkaLogLogger, LagReport } from './kafka-log.ts';
export { fixKafkajsRequestQueue } from './kafkajs-request-queue.ts';
export { KAFKA_COMPRESSIONS, CODEC_SLICE_MS, gunzipOptions, registerKafkaCodecs, SYNC_MAX_BYTES, SYNC_MAX_OUTPUT_BYTES, zstdOptions } from './kafka-codecs.ts';
export type { KafkaCompression, SyncOutputOptions } from './kafka-codecs.ts';
export { DiskExhaustedError, DiskReserveLowError, EXHAUSTED_BYTES, EXHAUSTED_INODES, PROBE_INTERVAL_MS, PROBE_NAME, RESERVE_INODES, WriteAheadHealth, type SpaceWatch } from './write-ahead-health.ts';
