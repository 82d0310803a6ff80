// The forwarded-header verdicts are remembered per (header, value, secrets): a remembered verdict
// must be the one the rules give, and a different caller key must get its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { upstreamHeaders } from './upstream.ts';

const KEY_A = 'sk-tg-AAAAbbbbCCCCddddEEEEffff0000gggg1111';
const KEY_B = 'sk-tg-ZZZZyyyyXXXXwwwwVVVVuuuu2222tttt3333';
const GATEWAY_SECRET = 'upstream-secret-0123456789abcdef';

test('forwarded header verdicts (remembered): the same on every request, per caller key; a fragment of the caller\'s key never leaves', () => {
  const from = (key: string) => ({
    'x-api-key': key, 'x-app': 'bbbbCCCCddddEEEE', 'anthropic-version': '2023-06-01',
    'anthropic-beta': 'files-api-2025-04-14,bbbbCCCCddddEEEEffff', 'user-agent': 'sdk/1.0',
  });
  const forA = {
    'anthropic-version': '2023-06-01', 'anthropic-beta': 'files-api-2025-04-14', 'user-agent': 'sdk/1.0',
    'content-type': 'application/json', 'accept-encoding': 'identity', 'x-api-key': 'up-key',
  };
  // caller A: x-app and the beta member hold a 12+ character run of A's own key: dropped, twice
  assert.deepEqual(upstreamHeaders(from(KEY_A), 'up-key', [GATEWAY_SECRET]), forA);
  assert.deepEqual(upstreamHeaders(from(KEY_A), 'up-key', [GATEWAY_SECRET]), forA);
  // caller B sends the same values: they are not B's key, so they go through
  const forB = {
    'x-app': 'bbbbCCCCddddEEEE', 'anthropic-version': '2023-06-01', 'anthropic-beta': 'files-api-2025-04-14,bbbbCCCCddddEEEEffff',
    'user-agent': 'sdk/1.0', 'content-type': 'application/json', 'accept-encoding': 'identity', 'x-api-key': 'up-key',
  };
  assert.deepEqual(upstreamHeaders(from(KEY_B), 'up-key', [GATEWAY_SECRET]), forB);
  assert.deepEqual(upstreamHeaders(from(KEY_B), 'up-key', [GATEWAY_SECRET]), forB);
  // and A again, after B's verdicts were remembered
  assert.deepEqual(upstreamHeaders(from(KEY_A), 'up-key', [GATEWAY_SECRET]), forA);
  // the gateway's own secret in a header value never leaves, for any caller
  assert.equal(upstreamHeaders({ 'x-api-key': KEY_B, 'x-app': GATEWAY_SECRET }, 'up-key', [GATEWAY_SECRET])['x-app'], undefined);
  assert.equal(upstreamHeaders({ 'x-api-key': KEY_B, 'x-app': GATEWAY_SECRET }, 'up-key', [GATEWAY_SECRET])['x-app'], undefined);
});
