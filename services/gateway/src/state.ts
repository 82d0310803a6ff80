import { gatewayError, isGatewayError } from '@tollgate/anthropic';

/**
 * Hot state (Redis) unreachable: fail closed on money. The request is refused with 503 and
 * `retry-after` before anything reaches the upstream, so nothing is served unbilled.
 */
export async function guardState<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (isGatewayError(err)) throw err;
    throw stateUnavailable(err);
  }
}

export function stateUnavailable(cause?: unknown) {
  return gatewayError('state_unavailable', 'Billing state is temporarily unavailable; retry shortly', {
    headers: { 'retry-after': '2' }, ...(cause === undefined ? {} : { cause }),
  });
}
