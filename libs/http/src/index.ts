export { newRequestId, installErrorHandling, sendError, requestIdOptions } from './errors.ts';
export { createHttpServer } from './server.ts';
export type { HttpServerOptions } from './server.ts';
export { loggerOptions } from './logging.ts';
export { requireToken } from './auth.ts';
export { installTelemetry } from './telemetry.ts';
export type { HttpTelemetry } from './telemetry.ts';
