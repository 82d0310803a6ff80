export { newRequestId, installErrorHandling, registerNotServedHere, registerServedElsewhere, sendError, requestIdOptions } from './errors.ts';
export {
  closeUnhandledConnections, NEXT_REQUEST_WAIT_MS, corsHeadersFor, createHttpServer, SHUTTING_DOWN_MESSAGE, STOPPING_DRAIN_MS, defaultMaxConnections, defaultMaxConnectionsPerIp, CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS,
  DEFAULT_REQUEST_TIMEOUT_MS, IDLE_RECLAIM_FRACTION, KEEP_ALIVE_TIMEOUT_MS, MAX_PATH_PARAM_CHARS, UNSTARTED_RECLAIM_MS,
} from './server.ts';
export { addReadinessCheck, HEALTH_PATH, READINESS_CHECK_TIMEOUT_MS, READY_PATH } from './server.ts';
export type { HttpServerOptions, ReadinessCheck } from './server.ts';
export { loggerOptions, redactUrl } from './logging.ts';
export { credentialInUrl, isCredentialName, isCredentialPair, lenientDecode, looksLikeCredential, stripCredentialParams } from './secrets.ts';
export type { UrlCredentialPart } from './secrets.ts';
export { guardOperatorRoutes, requireToken } from './auth.ts';
export { installTelemetry } from './telemetry.ts';
export type { HttpTelemetry } from './telemetry.ts';
export { decodeBody, MAX_CODINGS, MAX_JSON_DEPTH, MAX_JSON_MEMBERS, parseJsonBody, SUPPORTED_ENCODINGS } from './body.ts';
export {
  checkTimeOrder, creditHistoryBody, parseCreditHistoryQuery, parseEnumParam, parseIntParam, parseTime, parseTimeRange, queryParam, refuseUnknownParams, CREDIT_HISTORY_PARAMS,
  type CreditHistoryQuery,
} from './params.ts';
