import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { gatewayError, validateCountTokensRequest } from '@tollgate/anthropic';
import { sendError } from '@tollgate/http';
import type { GatewayDeps } from '../deps.ts';
import { searchOf, upstreamErrorOf } from '../upstream.ts';
import type { UpstreamPool } from '../pool/selector.ts';
import { guardState } from '../state.ts';
import { acquireCountTokensLimit, acquireSlot, NO_COUNT_TOKENS_LIMIT, type CountTokensTicket } from '../limits.ts';
import { resolveOr404 } from './messages.ts';
import { checkModelAllowed } from '../auth.ts';
import { spendTerms } from '../admission.ts';

/**
 * Forwarded like a message, but free: it needs a key and an account that could pay for a
 * message (balance + overdraft above 0; holds do not count, nothing is held), and records no
 * usage. Anthropic limits and serves token counting apart from Messages, so its answers here
 * fail over as a message's would but move no Messages circuit or cooldown
 * (`SendContext.separateHealth`), bar a refused credential or a subscription's window, and the
 * plan's `requests_per_minute` limits it in a window of its own (`acquireCountTokensLimit`).
 */
export function countTokensRoutes(app: FastifyInstance, deps: GatewayDeps, pool: UpstreamPool): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const caller = request.caller!;
    const body = validateCountTokensRequest(request.body);
    const resolved = resolveOr404(deps.prices!.current().catalog, body.model);
    checkModelAllowed(caller, resolved.model.id, body.model);
    const { balance } = await guardState(() => deps.balances.get(caller.account.id));
    if (balance + spendTerms(caller).overdraft <= 0n) throw gatewayError('insufficient_credits');
    // the caller's group, as a message would be served (issue 10): its upstreams and model mapping
    const route = await pool.route(caller.account, caller.key, resolved.model.id, body.model);
    const upstreamModel = route.mappedModel ?? resolved.upstreamModel;
    const out = upstreamModel === body.model ? request.rawBody! : JSON.stringify({ ...body, model: upstreamModel });
    // It holds an upstream connection like a message does, so it takes a slot of the same gates
    // (429/503 before its window is touched).
    const release = acquireSlot(deps, request);
    // The plan's per-minute requests, in a token-counting window of its own (429 when spent).
    // Only a count the upstream is asked takes a place: a group of a platform without token
    // counting answers 404 asking none, and a send that asks none gives its place back.
    let limit: CountTokensTicket;
    try {
      limit = route.group.platform === 'openai' ? NO_COUNT_TOKENS_LIMIT : await acquireCountTokensLimit(deps, request);
    } catch (err) {
      release();
      throw err;
    }
    reply.headers(limit.headers);
    let asked = false;
    try {
      // failover before anything reaches the client, as for a message; free, so no usage event
      const sent = await pool.send(route, { headers: request.headers, body, accountId: caller.account.id, keyId: caller.key.id, arrivedAt: Date.now(), separateHealth: true },
        (client) => client.post('/v1/messages/count_tokens', searchOf(request.url), request.headers, out));
      asked = sent.upstreamId !== null;
      try {
        if ('error' in sent.outcome) throw sent.outcome.error;
        const res = sent.outcome.res;
        if (res.status >= 200 && res.status < 300) return reply.code(res.status).type('application/json').send(await res.body.text());
        return sendError(reply, await upstreamErrorOf(res));
      } finally {
        sent.release();
      }
    } finally {
      release();
      if (asked) await limit.done();
      else {
        const after = await limit.refund();
        if (!reply.sent) reply.headers(after);
      }
    }
  };
  app.post('/v1/messages/count_tokens', handler);
  app.post('/api/v1/messages/count_tokens', handler);
}
