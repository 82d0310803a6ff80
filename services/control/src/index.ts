export { buildControl, registerControl } from './app.ts';
export type { ControlDeps } from './deps.ts';
export { planView, requirePlan, registerPlanRoutes } from './plans.ts';
export { registerAnalytics } from './analytics.ts';
export { registerBilling } from './billing.ts';
export type { ReportDeps } from './reports.ts';
export { registerWebhooks, webhookUrl, webhookView, deliveryView, MAX_WEBHOOK_URL_CHARS } from './webhooks.ts';
export type { WebhookRouteDeps } from './webhooks.ts';
