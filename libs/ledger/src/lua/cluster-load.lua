-- Redis Cluster rebuild, store-wide part (every key under the `{ledger}` hash tag).
-- ARGV[1] 'start', ARGV[2] 32 random hex digits (128 bits, from the caller), ARGV[3] the
--   caller's clock in µs (a floor: a master that restarted on a clock behind the last rebuild's
--   would otherwise give an older time, and the slots would refuse its marks): a new generation
--   begins; the state stops being ready (holds and applies answer not ready until the end).
--   Returns the new generation: `<16 digits: µs of this master's clock>-<random>`. The random
--   part makes a generation impossible to reuse, even when this master restarts empty and
--   loses KEYS[1] (a counter would start again at 1, and a stalled batch holding the old "1"
--   would pass every equality check); the time part orders rebuilds (cluster-load-put.lua
--   'mark': the later one wins), and is kept above the last one while KEYS[1] lives.
-- ARGV[1] 'finish', ARGV[2] generation, ARGV[3] layout version, then pairs field, offset:
--   the positions the snapshot is exact at, the layout version and the ready marker, set only
--   if no later rebuild started meanwhile. Returns 1, or 0 when superseded.
-- KEYS[1] {ledger}gen, KEYS[2] {ledger}ready, KEYS[3] {ledger}pos, KEYS[4] {ledger}layout
if ARGV[1] == 'start' then
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber((redis.call('GET', KEYS[1]) or ''):match('^(%d+)%-') or '0')
  us = math.max(us, tonumber(ARGV[3] or '0') or 0)
  if us <= last then us = last + 1 end
  local gen = string.format('%016d', us) .. '-' .. ARGV[2]
  redis.call('SET', KEYS[1], gen)
  redis.call('DEL', KEYS[2])
  return gen
end
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[4], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
return 1
