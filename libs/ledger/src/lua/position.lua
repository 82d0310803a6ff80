-- Shared by the apply scripts: the log position of an event is checked and stored in the same
-- atomic step as its effect ("progress stored with the effect"), so a rebuilt state resumes
-- exactly after the positions it was rebuilt at.
-- pos_key: hash `${topic}:${partition}` -> last applied offset; ready_key: set once hot state
-- is known complete (by a rebuild, or at the first start); field/offset '' = no durable log.
-- Returns nil to go on, or 0 (duplicate: at or before the stored offset), -1 (gap: events
-- between the stored offset and this one were not applied here), -2 (state not ready).
-- Offsets are compared as Lua numbers: exact below 2^53, far beyond any Kafka partition.
local function check_position(ready_key, pos_key, field, offset)
  if ready_key ~= '' and redis.call('EXISTS', ready_key) == 0 then return -2 end
  if offset == '' then return nil end
  local stored = tonumber(redis.call('HGET', pos_key, field) or '-1')
  local off = tonumber(offset)
  if off <= stored then return 0 end
  if off > stored + 1 then return -1 end
  return nil
end

local function advance_position(pos_key, field, offset)
  if offset ~= '' then redis.call('HSET', pos_key, field, offset) end
end
