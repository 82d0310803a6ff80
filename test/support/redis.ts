// A test file's own Redis: the client (none when no Redis answers) and a key prefix no other run
// shares; the file's `after` deletes only the keys under that prefix (never a flush: the Redis
// may be shared) and disconnects.
import { after } from 'node:test';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { findRedis } from './services.ts';

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
