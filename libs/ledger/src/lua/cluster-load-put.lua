-- Redis Cluster rebuild, one key at a time (see load in redis-balance-store.ts): a write of the
-- rebuild happens only while the key's slot is still loading THIS rebuild's generation. Two
-- rebuilds may overlap (two warehouse owners noticed the loss); the later one re-marks every
-- slot first, so the earlier one's late deletes and writes are refused instead of mixing two
-- snapshots.
-- KEYS[1] the ready marker of the key's slot, KEYS[2] the key
-- ARGV[1] 'L' .. generation (the marker while loading), ARGV[2] op, then its values:
--   'mark' (KEYS[2] = the marker): the slot starts loading this generation, unless a later
--     generation has it already (marker_later, marker-fn.lua, prepended);
--   'del'; 'set' value; 'setpx' value ms; 'hset' field value; 'ready' (KEYS[2] = the marker:
--   the slot turns ready in the generation, value ARGV[3], holds waiting the restore window of
--   ARGV[4] ms (cluster-markers.lua); done already when the marker holds it, so a pass
--   repeated after a per-node call failed part way is not a refusal)
-- Returns 1 done, 0 refused (another rebuild took over).
-- cluster-markers.lua does 'mark' and 'ready' for all the slots of a node in one call.
local op = ARGV[2]
local current = redis.call('GET', KEYS[1])
if op == 'mark' then
  if marker_later(current, ARGV[1]:sub(2)) then return 0 end
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
if op == 'ready' and current == ARGV[3] then return 1 end
if current ~= ARGV[1] then return 0 end
if op == 'del' then redis.call('DEL', KEYS[2])
elseif op == 'set' then redis.call('SET', KEYS[2], ARGV[3])
elseif op == 'ready' then
  redis.call('SET', KEYS[2], ARGV[3])
  local window = tonumber(ARGV[4]) or 0
  if window > 0 then redis.call('SET', KEYS[2] .. ':restoring', '1', 'PX', window) end
elseif op == 'setpx' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
elseif op == 'hset' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
else return redis.error_reply('cluster-load-put: unknown op ' .. op) end
return 1
