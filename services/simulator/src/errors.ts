import type { ErrorBody, ErrorType } from './wire.ts';

// The status → error type table the real API uses. Any other status a test forces is
// reported as api_error, which is what clients treat as "unknown server-side failure".
const TYPE_BY_STATUS: ReadonlyMap<number, ErrorType> = new Map<number, ErrorType>([
  [400, 'invalid_request_error'],
  [401, 'authentication_error'],
  [403, 'permission_error'],
  [404, 'not_found_error'],
  [413, 'request_too_large'],
  [429, 'rate_limit_error'],
  [500, 'api_error'],
  [529, 'overloaded_error'],
]);

const DEFAULT_MESSAGE: Readonly<Record<ErrorType, string>> = {
  invalid_request_error: 'Invalid request',
  authentication_error: 'invalid x-api-key',
  permission_error: 'Your API key does not have permission to use the specified resource.',
  not_found_error: 'Not found',
  request_too_large: 'Request exceeds the maximum allowed number of bytes.',
  rate_limit_error: 'Number of requests has exceeded your rate limit',
  api_error: 'Internal server error',
  overloaded_error: 'Overloaded',
};

export function errorTypeForStatus(status: number): ErrorType {
  return TYPE_BY_STATUS.get(status) ?? 'api_error';
}

export function defaultErrorMessage(type: ErrorType): string {
  return DEFAULT_MESSAGE[type];
}

export function errorBody(type: ErrorType, message: string, requestId: string): ErrorBody {
  return { type: 'error', error: { type, message }, request_id: requestId };
}

/** Thrown anywhere in request handling; the app's error handler renders it in Anthropic's shape. */
export class SimulatorError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  /** Extra response headers (retry-after, rate-limit state) the error handler sets. */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    status: number,
    message: string,
    type: ErrorType = errorTypeForStatus(status),
    headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'SimulatorError';
    this.status = status;
    this.type = type;
    this.headers = headers;
  }
}

export function invalidRequest(message: string): SimulatorError {
  return new SimulatorError(400, message, 'invalid_request_error');
}
