-- Redis Cluster rebuild, store-wide part (every key under the `{ledger}` hash tag).
-- ARGV[1] 'start': a new generation begins; the state stops being ready (holds and applies
--   answer not ready until the end). Returns the new generation.
-- ARGV[1] 'finish', ARGV[2] generation, ARGV[3] layout version, then pairs field, offset:
--   the positions the snapshot is exact at, the layout version and the ready marker, set only
--   if no later rebuild started meanwhile. Returns 1, or 0 when superseded.
-- KEYS[1] {ledger}gen, KEYS[2] {ledger}ready, KEYS[3] {ledger}pos, KEYS[4] {ledger}layout
if ARGV[1] == 'start' then
  local gen = redis.call('INCR', KEYS[1])
  redis.call('DEL', KEYS[2])
  return gen
end
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[4], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
return 1
