import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';

function bearer(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1]!.trim();
  }
  const key = request.headers['x-api-key'];
  return typeof key === 'string' ? key : undefined;
}

/** An onRequest hook admitting only `Authorization: Bearer <token>` (compared in constant time). */
export function requireToken(token: string, what = 'admin token') {
  const expected = Buffer.from(token);
  return async (request: FastifyRequest) => {
    const given = Buffer.from(bearer(request) ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw gatewayError('invalid_api_key', `invalid ${what}`);
    }
  };
}
