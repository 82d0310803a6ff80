import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { gatewayError } from '@tollgate/anthropic';
import { checkQueryEncoding, refuseUnknownParams } from './params.ts';

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

declare module 'fastify' {
  interface FastifyContextConfig {
    /** true: the finance token may call this route too (reads of usage and billing, month close) */
    finance?: boolean;
    /**
     * The query parameters an operator route takes (`guardOperatorRoutes`): any other is a 400
     * naming it. Absent: the route takes none.
     */
    query?: readonly string[];
    /**
     * Whether an operator route takes a body (`guardOperatorRoutes`). Absent: POST, PUT and PATCH
     * do, DELETE does not. A route that takes none refuses any but an empty one (400 naming the
     * first field): an operator's `{"dry_run": true}` on a month close, a rebuild or a delete
     * must not be ignored while the irreversible thing is done.
     */
    body?: boolean;
  }
  interface FastifyRequest {
    /** which operator token authenticated the request (set by `requireOperator`) */
    operator?: 'admin' | 'finance';
  }
}

/**
 * An onRequest hook for the operator APIs: `Authorization: Bearer <admin token>` may call every
 * route; `Bearer <finance token>` (FINANCE_TOKEN, when set) only routes whose config says
 * `finance: true` (usage analytics, invoices, statements, exports, month close), else 403
 * `permission_error`. Anything else is 401 `invalid_api_key`. Tokens compare in constant time.
 * Sets `request.operator`.
 */
export function requireOperator(tokens: { adminToken: string; financeToken?: string | undefined }) {
  const admin = Buffer.from(tokens.adminToken);
  const finance = tokens.financeToken ? Buffer.from(tokens.financeToken) : undefined;
  const same = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);
  return async (request: FastifyRequest) => {
    const given = bearer(request);
    if (given === undefined) {
      throw gatewayError('invalid_api_key', 'missing admin or finance token: send it as Authorization: Bearer <token>');
    }
    const buf = Buffer.from(given);
    if (same(buf, admin)) {
      request.operator = 'admin';
      return;
    }
    if (finance !== undefined && same(buf, finance)) {
      if (request.routeOptions.config?.finance !== true) {
        throw gatewayError('permission_denied', 'the finance token reads usage and billing and closes months; this route needs the admin token');
      }
      request.operator = 'finance';
      return;
    }
    throw gatewayError('invalid_api_key', 'invalid admin or finance token');
  };
}

/**
 * Guards a scope of operator routes (`/admin/v1/*`, `/ops/v1/*`), the one place their shared
 * rules live: every request must carry an operator token (`requireOperator`: the finance token
 * only where the route's `config.finance` says so), then any query parameter the route does
 * not declare in `config.query` is a 400 `invalid_request` naming it (`refuseUnknownParams`),
 * so no operator route silently ignores a misspelled filter or option. Authentication comes
 * first: a caller without a token learns nothing about a route's parameters.
 */
export function guardOperatorRoutes(scope: FastifyInstance, tokens: { adminToken: string; financeToken?: string | undefined }): void {
  scope.addHook('onRequest', requireOperator(tokens));
  // The names are judged once the query is known to decode (`?%FF=1` is a malformed URL, as on every other route).
  scope.addHook('onRequest', async (request) => {
    checkQueryEncoding(request.raw.url ?? '');
    refuseUnknownParams(request.query, request.routeOptions.config?.query ?? []);
  });
  scope.addHook('preValidation', async (request) => {
    const takesBody = request.routeOptions.config?.body ?? ['POST', 'PUT', 'PATCH'].includes(request.method);
    if (!takesBody) refuseBody(request.body);
  });
}

/**
 * Throws 400 `invalid_request` for a body on a route that takes none: anything but nothing, an
 * empty string or `{}` (a field is named: the first one).
 */
function refuseBody(body: unknown): void {
  if (body === undefined || body === null || body === '') return;
  if (typeof body === 'object' && !Array.isArray(body) && !Buffer.isBuffer(body)) {
    const first = Object.keys(body)[0];
    if (first === undefined) return;
    const name = /^[A-Za-z0-9_.\-[\]]{1,40}$/.test(first) ? first : JSON.stringify(first.slice(0, 40)).replace(/[^\x20-\x7e]/g, '?');
    throw gatewayError('invalid_request', `${name}: unknown field; this route takes no body`);
  }
  throw gatewayError('invalid_request', 'this route takes no body');
}
