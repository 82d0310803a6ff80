import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';

function bearer(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth !== 'string') return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
  return m ? m[1]!.trim() : undefined;
}

/**
 * An onRequest hook admitting only `Authorization: Bearer <token>` (compared in constant time),
 * as the README documents for the control and ops APIs. `x-api-key` is the customer API's
 * header and is not accepted here, so an admin token never travels where customer keys do.
 * Throws 401 `invalid_api_key` otherwise.
 */
export function requireToken(token: string, what = 'admin token') {
  const expected = Buffer.from(token);
  return async (request: FastifyRequest) => {
    const given = bearer(request);
    if (given === undefined) {
      throw gatewayError('invalid_api_key', `missing ${what}: send it as Authorization: Bearer <token>`);
    }
    const buf = Buffer.from(given);
    if (buf.length !== expected.length || !timingSafeEqual(buf, expected)) {
      throw gatewayError('invalid_api_key', `invalid ${what}`);
    }
  };
}
