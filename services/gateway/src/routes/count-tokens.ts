import type { FastifyInstance } from 'fastify';
import { gatewayError, isAnthropicErrorBody, upstreamErrorToGateway, validateCountTokensRequest } from '@tollgate/anthropic';
import { sendError } from '@tollgate/http';
import type { GatewayDeps } from '../deps.ts';
import type { Upstream } from '../upstream.ts';
import { guardState } from '../state.ts';
import { resolveOr404 } from './messages.ts';

/** Forwarded like a message, but free: it needs a key and a positive balance, and records no usage. */
export function countTokensRoutes(app: FastifyInstance, deps: GatewayDeps, upstream: Upstream): void {
  const handler = async (request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    const caller = request.caller!;
    const body = validateCountTokensRequest(request.body);
    const resolved = resolveOr404(deps, body.model);
    const { available } = await guardState(() => deps.balances.get(caller.account.id));
    if (available <= 0n) throw gatewayError('insufficient_credits');
    const out = resolved.upstreamModel === body.model ? request.rawBody! : JSON.stringify({ ...body, model: resolved.upstreamModel });
    const q = request.url.indexOf('?');
    const res = await upstream.post('/v1/messages/count_tokens', q === -1 ? '' : request.url.slice(q), request.headers, out);
    const text = await res.body.text();
    if (res.status >= 200 && res.status < 300) return reply.code(res.status).type('application/json').send(text);
    let json: unknown;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return sendError(reply, upstreamErrorToGateway(res.status, isAnthropicErrorBody(json) ? json : undefined));
  };
  app.post('/v1/messages/count_tokens', handler);
  app.post('/api/v1/messages/count_tokens', handler);
}
