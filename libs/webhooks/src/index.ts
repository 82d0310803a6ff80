export {
  WEBHOOK_EVENT_TYPES, DELIVERIES_KEPT, MemoryWebhookStore, RedisWebhookStore,
} from './store.ts';
export type { WebhookEventType, WebhookRecord, DeliveryRecord, WebhookStore } from './store.ts';
export {
  WebhookDispatcher, WEBHOOK_SECRET_PURPOSE, newWebhookSecret, deliveryId, retriable, backoffMs,
} from './dispatcher.ts';
export type { Occurrence, DispatcherOptions, DispatcherLogger } from './dispatcher.ts';
export { balanceLow, spendLimitReached, planWindowExhausted, eventQuarantined } from './triggers.ts';
export { saveWebhook, loadWebhooks, restoreWebhooks } from './durable.ts';
export { alertHooks } from './alerts.ts';
export type { AlertHooks } from './alerts.ts';
