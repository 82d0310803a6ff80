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
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });
  return { redis, redisUrl, prefix };
}
