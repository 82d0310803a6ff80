-- Redis Cluster: the ready markers of many slots, all served by the node this runs on, in one
-- call (ready(), and load's mark and ready passes, in redis-balance-store.ts), where a command
-- per slot made 16,384 per pass. Sent with the shebang `#!lua flags=allow-cross-slot-keys`
-- (Redis >= 7.0; for 'check' also `no-writes`, by EVALSHA_RO, so a master holding its writes
-- still answers it), which lets one script use keys of several slots of its own node; the markers
-- come in ARGV because KEYS of several slots are refused (CROSSSLOT) whatever the flag. A
-- marker whose slot this node does not serve, or is migrating, fails the call (Redis refuses
-- the access), as does a Redis without script flags: the caller then goes one slot at a time
-- through the Cluster client, which follows redirections. Writes made before such a failure
-- stay, so 'mark' and 'ready' are safe to repeat (cluster-load-put.lua does the same per slot).
-- ARGV[1] op, ARGV[2] and ARGV[3] its values, ARGV[4] the restore window (ms, 'ready' only),
-- ARGV[5..] the markers:
--   'check' v: which markers do not hold v (ready());
--   'mark' 'L'..gen: each slot starts loading the generation, unless a later one has it
--     (marker_later, marker-fn.lua, prepended);
--   'ready' 'L'..gen gen: each slot still loading the generation turns ready in it, and holds
--     wait the restore window (`<marker>:restoring`, hold.lua) while gateways restore theirs.
-- Returns the positions (1 = ARGV[5]) of the markers that do not hold v (check) or that refused
-- (mark, ready: another rebuild took over): empty when none.
local op, v, gen, window = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]) or 0
local out = {}
for i = 5, #ARGV do
  local current = redis.call('GET', ARGV[i])
  local ok
  if op == 'check' then
    ok = current == v
  elseif op == 'mark' then
    ok = not marker_later(current, v:sub(2))
    if ok then redis.call('SET', ARGV[i], v) end
  elseif op == 'ready' then
    ok = current == gen or current == v
    if ok and current ~= gen then
      redis.call('SET', ARGV[i], gen)
      if window > 0 then redis.call('SET', ARGV[i] .. ':restoring', '1', 'PX', window) end
    end
  else
    return redis.error_reply('cluster-markers: unknown op ' .. tostring(op))
  end
  if not ok then out[#out + 1] = i - 4 end
end
return out
