// One record in a Redis hash (id → JSON), highest `version` wins in one atomic step: shared by the
// stores that keep versioned records in Redis (the pool's upstreams and groups, webhooks).
import type { Redis } from 'ioredis';

const PUT_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local v = tonumber(string.match(cur, '"version":(%d+)'))
  if v and v >= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`;

/**
 * Writes `record` as JSON under its `id` in the hash `hashKey` unless the hash holds that id at
 * the same or a higher `version` already. True when written.
 */
export async function putVersioned(redis: Redis, hashKey: string, record: { id: string; version: number }): Promise<boolean> {
  const r = await redis.eval(PUT_SCRIPT, 1, hashKey, record.id, JSON.stringify(record), String(record.version));
  return r === 1;
}
