// The ClickHouse HTTP client's own log lines go to the process's logger as one JSON object each
// (kind: a library printing multi-line text blocks into a JSON log, seen during a ClickHouse
// outage), and the failure still reaches the caller. No server needed: the port is closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { createHttpClickHouse } from '@tollgate/warehouse';

test('a ClickHouse request that cannot connect: one warn object in the given logger, nothing on the console, the promise rejects', async () => {
  // a port that was just free: nothing listens there
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const lines: Array<[object, string]> = [];
  const printed: unknown[] = [];
  const original = { error: console.error, warn: console.warn, log: console.log };
  console.error = console.warn = console.log = (...a: unknown[]) => { printed.push(a); };
  const client = createHttpClickHouse({ url: `http://127.0.0.1:${port}`, logger: { warn: (o, m) => { lines.push([o, m]); } } });
  try {
    await assert.rejects(client.query({ query: 'SELECT 1' }), /ECONNREFUSED/);
  } finally {
    Object.assign(console, original);
    await client.close();
  }
  assert.deepEqual(printed, []);
  assert.deepEqual(lines, [[{ module: '@clickhouse/client Connection', err: `connect ECONNREFUSED 127.0.0.1:${port}` }, 'Query: HTTP request error.']]);
});
