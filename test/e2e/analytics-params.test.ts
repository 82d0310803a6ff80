// Issue 9, breaker findings on the usage routes' parameters: every 400 names the parameter the
// caller sent (never a default as if it had been sent), a filter value is held to one rule on
// every route that takes it, and an over-long path parameter is named. Against an embedded
// stack: the operator routes, the customer routes and the credit-history routes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_TOKEN, customer, startStack, type Stack } from '../support/tollgate.ts';

describe('usage route parameters', () => {
  let stack: Stack;
  let c: Awaited<ReturnType<typeof customer>>;
  const asAdmin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  let asCustomer: Record<string, string>;

  before(async () => {
    stack = await startStack();
    c = await customer(stack.url, 1, 'params');
    asCustomer = { 'x-api-key': c.secret };
  });
  after(async () => stack.close());

  /** status and error message of GET `path` */
  async function error(path: string, headers: Record<string, string>): Promise<[number, string]> {
    const res = await fetch(`${stack.url}${path}`, { headers });
    const body = (await res.json()) as { error?: { message: string } };
    return [res.status, body.error?.message ?? '(no error)'];
  }

  /** The usage routes that default a missing `from` / `to`, with who may call them. */
  const defaulting = (): Array<[string, Record<string, string>]> => [
    ['/admin/v1/usage', asAdmin],
    ['/v1/usage', asCustomer],
  ];

  test('to alone, too early for the default from (to − 24 h): the 400 names to and says why, never a negative from', async () => {
    for (const [route, headers] of defaulting()) {
      assert.deepEqual(await error(`${route}?to=1000`, headers), [400,
        'to: 1970-01-01T00:00:01.000Z is too early: when from is omitted it defaults to to − 24 h, so to must be at or after 1970-01-02T00:00:00Z'], route);
      // exactly one day after the epoch: from defaults to 0, a valid window
      assert.equal((await fetch(`${stack.url}${route}?to=1970-01-02&granularity=day`, { headers })).status, 200, route);
    }
  });

  test('from alone, after the default to (now): the 400 names from and says to defaulted, never "to: is before from"', async () => {
    for (const [route, headers] of defaulting()) {
      const [status, message] = await error(`${route}?from=9999-01-01`, headers);
      assert.equal(status, 400, route);
      assert.match(message, /^from: 9999-01-01T00:00:00\.000Z is after to, which defaults to now \(\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000Z\); give a later to as well$/, route);
    }
  });

  test('both given, to before from: the 400 names to and shows both as sent', async () => {
    for (const [route, headers] of defaulting()) {
      assert.deepEqual(await error(`${route}?from=2026-02-01&to=2026-01-01`, headers),
        [400, 'to: 2026-01-01T00:00:00.000Z is before from (2026-02-01T00:00:00.000Z)'], route);
    }
    const before = 'to: 2026-01-01T00:00:00.000Z is before from (2026-02-01T00:00:00.000Z)';
    assert.deepEqual(await error('/admin/v1/usage/events?from=2026-02-01&to=2026-01-01', asAdmin), [400, before]);
    assert.deepEqual(await error('/v1/credits/history?from=2026-02-01&to=2026-01-01', asCustomer), [400, before]);
    assert.deepEqual(await error(`/admin/v1/accounts/${c.accountId}/credits/history?from=2026-02-01&to=2026-01-01`, asAdmin), [400, before]);
  });

  test('filter value with a control character or over 256 characters: the same 400 naming it on every route that takes it', async () => {
    const routes: Array<[string, Record<string, string>, string[]]> = [
      ['/admin/v1/usage', asAdmin, ['account_id', 'key_id', 'model', 'upstream_id']],
      ['/admin/v1/usage/events', asAdmin, ['account_id', 'key_id', 'model', 'upstream_id']],
      ['/v1/usage', asCustomer, ['key_id', 'model']],
    ];
    for (const [route, headers, filters] of routes) {
      for (const name of filters) {
        assert.deepEqual(await error(`${route}?${name}=${'a'.repeat(257)}`, headers), [400, `${name}: is 257 characters long; at most 256`], `${route} ${name}`);
        for (const ch of ['%00', '%0A', '%7F', '%C2%85']) {
          assert.deepEqual(await error(`${route}?${name}=ab${ch}cd`, headers), [400, `${name}: contains a control character; ids and model names have none`], `${route} ${name} ${ch}`);
        }
        // 256 characters is a value like any other: it matches nothing
        const res = await fetch(`${stack.url}${route}?${name}=${'a'.repeat(256)}`, { headers });
        assert.equal(res.status, 200, `${route} ${name} 256`);
        assert.deepEqual(((await res.json()) as { data: unknown[] }).data, [], `${route} ${name} 256`);
      }
    }
  });

  test('bad percent-encoding in a query value: the 400 every route gives, never a filter on the literal text', async () => {
    const message = 'Malformed URL (bad percent-encoding in the query string)';
    for (const [path, headers] of [
      ['/admin/v1/usage?upstream_id=%FF', asAdmin],
      ['/admin/v1/usage?account_id=%', asAdmin],
      ['/admin/v1/usage/events?key_id=%C0%80', asAdmin],
      ['/admin/v1/usage/events?model=claude%E2%82', asAdmin],
      ['/v1/usage?model=%ED%A0%80', asCustomer],
      ['/v1/credits/history?cursor=%zz', asCustomer],
      [`/admin/v1/accounts/${c.accountId}/credits/history?limit=1%`, asAdmin],
      // a malformed name is a malformed URL too, before the route's unknown-parameter check
      ['/admin/v1/usage?%FF=1', asAdmin],
      ['/v1/usage?%=1', asCustomer],
    ] as const) {
      assert.deepEqual(await error(path, headers), [400, message], path);
    }
    // The gateway's own route too: refused at the edge, never forwarded upstream.
    const before = ((await (await fetch(`${stack.simUrl}/_sim/requests`)).json()) as unknown[]).length;
    const res = await fetch(`${stack.url}/v1/messages?beta=%FF`, {
      method: 'POST', headers: { ...asCustomer, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(res.status, 400);
    assert.deepEqual(((await res.json()) as { error: unknown }).error, { type: 'invalid_request_error', code: 'invalid_request', message });
    assert.equal(((await (await fetch(`${stack.simUrl}/_sim/requests`)).json()) as unknown[]).length, before, 'nothing reached the upstream');
    // the same request with a well-formed query is served: the refusal was the escape
    const served = await fetch(`${stack.url}/v1/messages?beta=true`, {
      method: 'POST', headers: { ...asCustomer, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(served.status, 200, await served.clone().text());
    await served.arrayBuffer();
    assert.equal(((await (await fetch(`${stack.simUrl}/_sim/requests`)).json()) as unknown[]).length, before + 1);
  });

  test('control character in a path parameter: 400 naming it, not a 404 for an id that cannot exist', async () => {
    for (const [path, name] of [
      ['/admin/v1/usage/events/%00', 'id'],
      ['/admin/v1/usage/events/req_%0A', 'id'],
      ['/admin/v1/accounts/a%7Fb/credits/history', 'id'],
      ['/admin/v1/keys/%C2%85', 'id'],
      [`/admin/v1/accounts/${c.accountId}/invoices/2026-11%09`, 'month'],
    ] as const) {
      assert.deepEqual(await error(path, asAdmin), [400, `${name}: contains a control character; a path parameter has none`], path);
    }
  });

  test('over-long path parameter on the usage and credit-history routes: 400 naming it', async () => {
    const long = 'x'.repeat(101);
    for (const path of [`/admin/v1/usage/events/${long}`, `/admin/v1/accounts/${long}/credits/history`]) {
      const route = path.replace(long, ':id');
      assert.deepEqual(await error(path, asAdmin), [400, 'id: is 101 characters long; a path parameter is at most 100'], route);
    }
  });
});
