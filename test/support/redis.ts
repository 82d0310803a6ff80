// A test file's own Redis: the client (none when no Redis answers) and a key prefix no other run
// shares; the file's `after` deletes only the keys under that prefix (never a flush: the Redis
// may be shared) and disconnects.
import { after } from 'node:test';
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { Cluster, Redis, type ClusterOptions } from 'ioredis';
import { findRedis, requireRedisCluster } from './services.ts';

/** `redisUrl` is for a second connection of the file's own; `prefix` is `tg-test-<name>-<uuid>:`; call at the top level of a test file. */
export async function testRedis(name: string): Promise<{ redis: Redis | undefined; redisUrl: string | undefined; prefix: string }> {
  const redisUrl = await findRedis();
  const redis = redisUrl === undefined ? undefined : new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const prefix = `tg-test-${name}-${randomUUID()}:`;
  after(async () => {
    if (!redis) return;
    await deleteKeysUnder(redis, prefix);
    redis.disconnect();
  });
  return { redis, redisUrl, prefix };
}

/** Deletes every key under `prefix` (SCAN, in pages: never a flush, never a blocking KEYS). */
export async function deleteKeysUnder(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** Deletes the keys named in ARGV, of any slots of the node it runs on (Redis ≥ 7.0 script flag). */
const UNLINK_LOCAL = "#!lua flags=allow-cross-slot-keys\nfor i = 1, #ARGV do redis.call('UNLINK', ARGV[i]) end\nreturn #ARGV";

/**
 * Deletes every key under `prefix` on every master of a Redis Cluster (SCAN is per node), or on
 * the one master `only` (`host:port`), the masters at once. A page of keys goes in one script
 * call on its node (a multi-key DEL must stay in one slot; a rebuild leaves 16,384 slot
 * markers), or one DEL per key in a pipeline where that script is refused.
 */
export async function deleteClusterKeysUnder(cluster: Cluster, prefix: string, only?: string): Promise<void> {
  await Promise.all(cluster.nodes('master').map(async (node) => {
    if (only !== undefined && `${node.options.host}:${node.options.port}` !== only) return;
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) {
        await node.eval(UNLINK_LOCAL, 0, ...keys).catch(async () => {
          for (const [err] of (await keys.reduce((p, key) => p.del(key), node.pipeline()).exec()) ?? []) if (err) throw err;
        });
      }
      cursor = next;
    } while (cursor !== '0');
  }));
}

/**
 * A test's own view of the Redis Cluster (REDIS_CLUSTER_NODES or deploy/redis-cluster.sh): an
 * ioredis `Cluster` and a fresh key prefix `test:<name>:<uuid>:`; the test's `after` deletes the
 * prefix's keys on every master and disconnects. Undefined when the test was skipped (loudly,
 * or failed when services are required) because no cluster answers. `options` go to the client.
 */
export async function testRedisCluster(t: TestContext, name: string, options?: ClusterOptions): Promise<{ cluster: Cluster; prefix: string } | undefined> {
  const nodes = await requireRedisCluster(t);
  if (!nodes) return undefined;
  const cluster = new Cluster(nodes.split(',').map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) })), options);
  const prefix = `test:${name}:${randomUUID()}:`;
  t.after(async () => {
    await deleteClusterKeysUnder(cluster, prefix);
    cluster.disconnect();
  });
  return { cluster, prefix };
}
