// How the suites find their services (test/support/services.ts): the variables first, then a
// probe of this machine's default ports, unless TOLLGATE_TEST_SERVICES=none says to use only
// what the variables name (a shared machine whose default ports serve someone else's services).
// A listener of our own on a free port stands in for a service that answers there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { findClickHouse, findKafka, findRedis, findRedisCluster } from './support/services.ts';

test('service lookup: variables first, then the local port probe; TOLLGATE_TEST_SERVICES=none probes nothing', async (t) => {
  const server = createServer((socket) => socket.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = String((server.address() as { port: number }).port);
  // A TCP listener is what the Kafka probe looks for (a connect).
  assert.equal(await findKafka({ KAFKA_PORT: port }), `127.0.0.1:${port}`);
  assert.equal(await findKafka({ KAFKA_PORT: port, TOLLGATE_TEST_SERVICES: 'none' }), undefined);
  // Named services are used either way.
  const named = { TOLLGATE_TEST_SERVICES: 'none', KAFKA_BROKERS: 'k:1', REDIS_URL: 'redis://r:2', CLICKHOUSE_URL: 'http://c:3', REDIS_CLUSTER_NODES: 'n:4' };
  assert.deepEqual(await Promise.all([findKafka(named), findRedis(named), findClickHouse(named), findRedisCluster(named)]),
    ['k:1', 'redis://r:2', 'http://c:3', 'n:4']);
  const none = { TOLLGATE_TEST_SERVICES: 'none' };
  assert.deepEqual(await Promise.all([findKafka(none), findRedis(none), findClickHouse(none), findRedisCluster(none)]),
    [undefined, undefined, undefined, undefined]);
});
