-- Redis Cluster rebuild, one key at a time (see load in redis-balance-store.ts): a write of the
-- rebuild happens only while the key's slot is still loading THIS rebuild's generation. Two
-- rebuilds may overlap (two warehouse owners noticed the loss); the later one re-marks every
-- slot first, so the earlier one's late deletes and writes are refused instead of mixing two
-- snapshots.
-- KEYS[1] the ready marker of the key's slot, KEYS[2] the key
-- ARGV[1] 'L' .. generation (the marker while loading), ARGV[2] op, then its values:
--   'mark' (KEYS[2] = the marker): the slot starts loading this generation, unless a later
--     generation has it already (generations are `<µs>-<random>` (cluster-load.lua), ordered
--     by their time part, then their text: the latest rebuild wins every slot whatever order
--     the two rebuilds' marks arrive in; a marker of the older counter format is a small number
--     and loses to any);
--   'del'; 'set' value; 'setpx' value ms; 'hset' field value; 'ready' (KEYS[2] = the marker:
--   the slot turns ready in the generation, value ARGV[3])
-- Returns 1 done, 0 refused (another rebuild took over).
local op = ARGV[2]
local current = redis.call('GET', KEYS[1])
if op == 'mark' then
  local gen = ARGV[1]:sub(2)
  if current then
    local held = current:gsub('^L', '')
    local ht, gt = tonumber(held:match('^%d+') or '-1'), tonumber(gen:match('^%d+') or '-1')
    if ht > gt or (ht == gt and held > gen) then return 0 end
  end
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
if current ~= ARGV[1] then return 0 end
if op == 'del' then redis.call('DEL', KEYS[2])
elseif op == 'set' or op == 'ready' then redis.call('SET', KEYS[2], ARGV[3])
elseif op == 'setpx' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
elseif op == 'hset' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
else return redis.error_reply('cluster-load-put: unknown op ' .. op) end
return 1
