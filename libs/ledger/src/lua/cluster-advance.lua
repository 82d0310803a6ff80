-- Redis Cluster, after every account call of a partition batch returned: move the
-- partition-wide positions up to the last offset handled. It only moves forward (a late call
-- never rewinds), and only in the generation the batch started in: a rebuild in between set
-- the positions its snapshot is exact at, and a stale advance must not lift them past events
-- the rebuilt state does not hold.
-- KEYS[1] {ledger}ready, KEYS[2] {ledger}pos; ARGV[1] generation, then pairs field, offset.
-- Returns 1 advanced (or nothing to do), 0 the generation changed (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  local stored = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > stored then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
return 1
