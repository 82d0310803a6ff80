import { randomBytes } from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorBody, gatewayError, isGatewayError, toGatewayError, type GatewayError } from '@tollgate/anthropic';

const ID_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** `req_` + 24 base62 characters: unique enough to be the usage event id across a fleet. */
export function newRequestId(): string {
  const bytes = randomBytes(24);
  let id = 'req_';
  for (const b of bytes) id += ID_ALPHABET[b % 62];
  return id;
}

/** Fastify's own errors, in the catalogue's terms. */
function fromFastify(err: FastifyError): GatewayError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return gatewayError('request_too_large');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return gatewayError('invalid_json');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return gatewayError('invalid_request', 'Content-Type must be application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return gatewayError('invalid_request', 'Invalid Content-Length');
  }
  if (err.validation) return gatewayError('invalid_request', err.message);
  if (err instanceof SyntaxError) return gatewayError('invalid_json');
  return undefined;
}

export function sendError(reply: FastifyReply, err: GatewayError): FastifyReply {
  if (err.headers) reply.headers(err.headers);
  return reply.code(err.status).type('application/json').send(errorBody(err, String(reply.request.id)));
}

/**
 * Request ids, the `request-id` response header, and one error handler that renders every
 * error in Anthropic's shape with a machine code. Unknown errors are logged and shown as
 * `internal_error` without their message (it may carry internals).
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    reply.header('request-id', request.id);
  });
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const known = isGatewayError(err) ? err : fromFastify(err);
    const gErr = known ?? toGatewayError(err);
    if (!known || gErr.status >= 500) request.log.error({ err }, 'request failed');
    return sendError(reply, gErr);
  });
  app.setNotFoundHandler((request, reply) => {
    sendError(reply, gatewayError('not_found', `${request.method} ${request.url.split('?')[0]} does not exist`));
  });
}

export const requestIdOptions = {
  genReqId: () => newRequestId(),
  requestIdHeader: false as const,
};
